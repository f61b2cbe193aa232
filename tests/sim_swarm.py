"""The swarm workload: a random mix of operations from a seed, under faults and crashes.

Shared by tests/test_sim_swarm.py and tests/test_sim_determinism.py.
"""

from __future__ import annotations

import os
import random
from typing import Any

import attrs
import pytest

from actorq import (
    ActorqError,
    Backoff,
    DependsOn,
    FlowJob,
    FlowProducer,
    Job,
    Runtime,
    RuntimeClosedError,
)
from actorq._core import TERMINAL
from actorq._invariants import InvariantViolation, check_starts
from actorq.testing import Faults, Simulation

QUEUES = ("work", "steps", "manual", "fair", "fair-auto")
TAGS = ("red", "blue", "green")


def seeds(n: int) -> pytest.MarkDecorator:
    """Parametrize ``actorq_seed`` over 0..n-1, or only ``ACTORQ_SEED`` when set (what the
    ``actorq_seeds(n)`` marker does once the plugin is registered before collection)."""
    only = os.environ.get("ACTORQ_SEED")
    chosen = [int(only)] if only else list(range(n))
    return pytest.mark.parametrize("actorq_seed", chosen, ids=[f"seed={s}" for s in chosen])


@attrs.define
class SwarmStats:
    steps: int = 0
    crashes: int = 0
    deaths: int = 0
    jobs: int = 0
    faults: int = 0
    leader_changes: int = 0
    inline_batches: int = 0
    loop_batches: int = 0


def make_simulation(seed: int, journal: str = "file") -> Simulation:
    sim: Simulation

    async def work(job: Job) -> Any:
        await sim.maybe_delay(job)
        await sim.maybe_fail(job)
        return job.id

    async def steps(job: Job) -> Any:
        await sim.maybe_fail(job)
        step = job.data["step"]
        if step < job.data["n"]:
            await job.move_to_delayed(sim.now() + 5 * (step + 1), next_step=step + 1)
        return step

    async def fair(job: Job) -> Any:
        # No sleep here: the manual consumer of "fair" holds jobs active across checks.
        starts["fair-auto"].append((job.group, job.processed_at))
        await sim.maybe_fail(job)
        return job.id

    def setup(rt: Runtime) -> None:
        rt.worker("work", work, concurrency=1 + seed % 3)
        rt.worker("steps", steps)
        sim.manual = rt.worker("manual", lock_duration=20)  # type: ignore[attr-defined]
        # "fair-auto": processors (instant) under the limits; "fair": a manual consumer,
        # whose jobs stay active across checks (until it completes them or their locks
        # expire), so the caps' invariants see active jobs.
        rt.worker("fair-auto", fair, concurrency=4, **FAIR_LIMITS)
        rt.worker("fair-auto", fair, concurrency=2)
        fair_manual = rt.worker("fair", lock_duration=15, **FAIR_LIMITS)
        sim.fair_manual = fair_manual  # type: ignore[attr-defined]
        sim.fair_held.clear()  # type: ignore[attr-defined]

    sim = Simulation(
        seed=seed,
        autojump=False,
        setup=setup,
        faults=Faults(job_error=0.2, slow_job=0.2, max_delay=20.0),
        snapshot_bytes=4096,
        journal=journal,
    )
    #: Per queue, (group, start time) of every start its consumers saw, across restarts.
    starts: dict[str, list[tuple[str | None, float | None]]] = {"fair": [], "fair-auto": []}
    sim.fair_starts = starts  # type: ignore[attr-defined]
    sim.fair_held = []  # type: ignore[attr-defined]
    return sim


#: The "fair" queue's limits: set by its first worker at every start of the runtime, never
#: changed (the caps' invariants hold for caps that stay put).
FAIR_LIMITS: dict[str, Any] = {
    "limiter": {"max": 6, "duration": 10},
    "group_concurrency": 1,
    "group_limiter": {"max": 3, "duration": 10},
}
FAIR_GLOBAL_CONCURRENCY = 2
GROUPS = ("g0", "g1", "g2", None)


async def _fair_op(sim: Simulation, rng: random.Random) -> None:
    """Add a job (or a few) to "fair": grouped or not, some deduplicated in each mode;
    drawn from a generator of its own, so the other draws stay as they were."""
    if rng.random() < 0.4:
        await _fair_manual_op(sim, rng)
        return
    q = sim.runtime.queue(rng.choice(("fair", "fair-auto")))
    opts: dict[str, Any] = {}
    group = rng.choice(GROUPS)
    if group is not None:
        opts["group"] = group
    if rng.random() < 0.3:
        opts["priority"] = rng.randint(0, 2)
    roll = rng.random()
    if roll < 0.2:
        opts["deduplication"] = {"id": f"s{rng.randint(0, 2)}"}
    elif roll < 0.35:
        opts["deduplication"] = {"id": f"t{rng.randint(0, 1)}", "ttl": rng.choice([5, 15])}
    elif roll < 0.45:
        opts["deduplication"] = {"id": "d", "ttl": 10, "extend": True, "replace": True}
        opts["delay"] = rng.choice([2, 5])
    if rng.random() < 0.2:
        n = rng.randint(2, 6)
        items = [{"name": "fair", "data": {"i": i}, **opts} for i in range(n)]
        for job in await sim.call(q.add_bulk, items):
            sim.acknowledged(job, "add-fair")
    else:
        sim.acknowledged(await sim.call(q.add, "fair", {"i": 0}, **opts), "add-fair")


async def _fair_manual_op(sim: Simulation, rng: random.Random) -> None:
    """The manual consumer of "fair" takes a job and holds it, or completes the oldest it
    holds (which fails if its lock expired or the runtime restarted since)."""
    held: list[tuple[Job, str]] = sim.fair_held  # type: ignore[attr-defined]
    if held and rng.random() < 0.5:
        job, token = held.pop(0)
        try:
            await sim.call(job.move_to_completed, None, token, False)
            sim.lock_released(job.id, token, True)
        except ActorqError as exc:
            if isinstance(exc, RuntimeClosedError):
                raise
            sim.lock_released(job.id, token, False)
        return
    token = f"fair{rng.randint(0, 1)}"
    job = await sim.call(sim.fair_manual.get_next_job, token)  # type: ignore[attr-defined]
    if job is not None:
        sim.lock_taken(job)
        sim.fair_starts["fair"].append((job.group, job.processed_at))  # type: ignore[attr-defined]
        held.append((job, token))


def check_fair_dedup(sim: Simulation) -> None:
    """Simple mode ("s" keys, never removed by hand here): never two unfinished jobs of one
    key (the core's own rule, dedup-key-unique, allows them after a key removed by hand)."""
    if not sim.alive:
        return
    live: dict[tuple[str, str], list[int]] = {}
    for rec in sim.runtime._core.jobs.values():
        key = rec.deduplication_id
        if key is not None and key.startswith("s") and rec.state not in TERMINAL:
            live.setdefault((rec.queue, key), []).append(rec.id)
    for key, ids in sorted(live.items()):
        if len(ids) > 1:
            detail = f"unfinished jobs {ids} share the simple key {key}"
            raise InvariantViolation("dedup-key-unique", detail, seed=sim.seed)


def check_fair_starts(sim: Simulation) -> None:
    """Every window of the queue's limiter, and of each group's, held at most its starts."""
    limit = FAIR_LIMITS["limiter"]
    per_group = FAIR_LIMITS["group_limiter"]
    for queue, starts in sim.fair_starts.items():  # type: ignore[attr-defined]
        times = [t for _g, t in starts if t is not None]
        check_starts(times, limit["max"], limit["duration"], what=f"queue {queue!r}")
        for group in GROUPS[:-1]:
            mine = [t for g, t in starts if g == group and t is not None]
            where = f"group {group!r} of {queue!r}"
            check_starts(mine, per_group["max"], per_group["duration"], what=where)


def _options(rng: random.Random, known: list[int]) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if rng.random() < 0.3:
        opts["delay"] = rng.choice([1, 5, 30, 120])
    if rng.random() < 0.4:
        opts["attempts"] = rng.randint(2, 4)
        opts["backoff"] = Backoff.exponential(rng.choice([1, 2, 5]), jitter=rng.random() / 2)
    if rng.random() < 0.2:
        opts["priority"] = rng.randint(0, 3)
    if rng.random() < 0.4:
        opts["tags"] = rng.sample(TAGS, rng.randint(1, 2))
    if rng.random() < 0.15:
        opts["idempotency_key"] = f"k{rng.randint(0, 4)}"
    deps: dict[str, Any] = {}
    if known and rng.random() < 0.25:
        deps["job_ids"] = rng.sample(known, min(len(known), rng.randint(1, 2)))
    if rng.random() < 0.15:
        deps["tags"] = [rng.choice(TAGS)]
    if deps:
        opts["depends_on"] = DependsOn(**deps)
    return opts


async def _op(sim: Simulation, rng: random.Random, known: list[int], stats: SwarmStats) -> None:
    rt = sim.runtime
    roll = rng.random()
    if roll < 0.30:
        queue = rng.choice(("work", "work", "manual"))
        job = await sim.add(queue, "job", {"i": len(known)}, **_options(rng, known))
        known.append(job.id)
    elif roll < 0.38:
        n = rng.randint(1, 3)
        job = await sim.add("steps", "step", {"step": 0, "n": n}, max_started_attempts=n + 3)
        known.append(job.id)
    elif roll < 0.45:
        kids = [FlowJob(f"c{i}", "work", {"c": i}) for i in range(rng.randint(1, 3))]
        node = await sim.call(FlowProducer(rt).add, FlowJob("parent", "work", {}, children=kids))
        sim.acknowledged(node.job, "add-flow")
        known.append(node.job.id)
    elif roll < 0.58:
        manual = sim.manual  # type: ignore[attr-defined]
        token = f"tok{rng.randint(0, 2)}"
        job = await sim.call(manual.get_next_job, token)
        if job is not None:
            sim.lock_taken(job)
            choice = rng.random()
            if choice < 0.6:
                try:
                    await sim.call(job.move_to_completed, {"by": token}, token, False)
                    sim.lock_released(job.id, token, True)
                except ActorqError as exc:
                    if isinstance(exc, RuntimeClosedError):
                        raise
                    sim.lock_released(job.id, token, False)
            elif choice < 0.8:
                await sim.call(job.move_to_failed, "manual failure", token, False)
                sim.lock_released(job.id, token, True)
            # else: keep it; its lock expires when time passes (a stall)
    elif roll < 0.65 and known:
        job_id = rng.choice(known)
        verb = rng.choice(("cancel", "retry", "remove"))
        q = rt.queue("work")
        await sim.call(getattr(q, verb), job_id)
        sim.record(verb, job_id)
        if verb == "retry":
            sim.retried_by_hand(job_id)
    elif roll < 0.68:
        await sim.call(rt.snapshot)
    elif roll < 0.74:
        if sim.journal == "database":
            fault = rng.random()
            if fault < 0.4:
                sim.fail_next_commit()
            else:
                sim.lose_next_connection(landed=fault < 0.7)
        else:
            sim.fail_next_fsync()
            if rng.random() < 0.5:
                sim.tear_next_write(rng.randint(0, 40))
        stats.faults += 1
    elif roll < 0.80:
        if sim.journal == "database" and rng.random() < 0.5:
            await sim.leader_change()  # the old leader runs on until its commit is fenced
            stats.leader_changes += 1
            return
        await sim.crash()
        stats.crashes += 1
        await sim.restart()
    else:
        await sim.advance(rng.choice([0.5, 3, 10, 25, 60, 200]))


#: Schedules the swarm's job schedulers draw from (every= seconds, or cron with seconds).
SCHEDULES: tuple[dict[str, Any], ...] = (
    {"every": 2, "limit": 30},
    {"every": 7, "limit": 5},
    {"every": 30, "immediately": True, "limit": 12},
    {"pattern": "*/20 * * * * *", "end_at": 900},
    {"pattern": "0 * * * * *", "tz": "Europe/Berlin", "end_at": 1200},
)


async def _scheduler_op(sim: Simulation, rng: random.Random) -> None:
    """Upsert (three times in four) or remove one of three job schedulers on "work"; drawn
    from the swarm's second generator, so the main workload's draws stay as they were."""
    q = sim.runtime.queue("work")
    sid = f"s{rng.randint(0, 2)}"
    if rng.random() < 0.25:
        removed = await sim.call(q.remove_job_scheduler, sid)
        sim.record("remove-scheduler", detail=f"{sid} {removed}")
        return
    schedule = rng.choice(SCHEDULES)
    template = {"name": "sched", "data": {"s": sid}, "attempts": rng.randint(1, 3)}
    job = await sim.call(q.upsert_job_scheduler, sid, **schedule, template=template)
    sim.record("upsert-scheduler", detail=f"{sid} {schedule}")
    if job is not None:
        sim.acknowledged(job, "upsert-scheduler")


async def run_swarm(
    seed: int, steps: int | None = None, journal: str = "file"
) -> tuple[Simulation, SwarmStats]:
    """Run one seed's workload on a simulated `journal` ("file" or "database"); raises
    InvariantViolation on a broken invariant."""
    rng = random.Random(seed * 7919 + 1)
    n_steps = steps if steps is not None else rng.randint(20, 50)
    sim = make_simulation(seed, journal)
    stats = SwarmStats()
    known: list[int] = []
    schedulers_rng = random.Random(seed * 104_729 + 3)
    fair_rng = random.Random(seed * 15_485_863 + 5)
    async with sim:
        for queue in ("fair", "fair-auto"):
            fair_queue = sim.runtime.queue(queue)
            await sim.call(fair_queue.set_global_concurrency, FAIR_GLOBAL_CONCURRENCY)
        for _ in range(n_steps):
            stats.steps += 1
            if not sim.alive:
                await sim.restart()
            try:
                if stats.steps % 4 == 1:
                    await _scheduler_op(sim, schedulers_rng)
                if stats.steps % 2 == 0:
                    await _fair_op(sim, fair_rng)
                await _op(sim, rng, known, stats)
            except RuntimeClosedError:
                pass  # the runtime died under an injected fault; restarted next step
            except ActorqError as exc:
                sim.record("rejected", detail=type(exc).__name__)
            await sim.check()
            check_fair_starts(sim)
            check_fair_dedup(sim)
        # Liveness phase: no new faults; let every timer run out.
        if not sim.alive:
            await sim.restart()
        await sim.advance(10_000)
        await sim.check()
        check_fair_starts(sim)
        check_fair_dedup(sim)
        stats.jobs = len(sim.runtime._core.jobs)
    stats.deaths = sim.deaths
    stats.inline_batches = sim.inline_batches
    stats.loop_batches = sim.loop_batches
    return sim, stats
