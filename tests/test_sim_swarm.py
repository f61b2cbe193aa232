"""The swarm: random workloads from a seed (step jobs, flows, manual processing,
dependencies, retries with backoff) under injected faults and crashes, every invariant checked
after every step, on the simulated file journal and on the simulated database journal (its
faults: refused commits, lost connections, leader changes). A failing seed reports the
command that reruns it alone."""

# Stays on Runtime: the simulation's runtimes on simulated journals, checked against the core's
# invariants.

from __future__ import annotations

import os
import time

import pytest
from sim_swarm import run_swarm, seeds


@seeds(200)
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_swarm_asyncio(actorq_seed: int) -> None:
    await run_swarm(actorq_seed)


@seeds(8)
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_swarm_trio(actorq_seed: int) -> None:
    await run_swarm(actorq_seed)


@seeds(60)
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_swarm_database_asyncio(actorq_seed: int) -> None:
    await run_swarm(actorq_seed, journal="database")


@seeds(8)
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_swarm_database_trio(actorq_seed: int) -> None:
    await run_swarm(actorq_seed, journal="database")


async def test_the_database_swarm_meets_every_fault_of_the_database() -> None:
    # Seeds 0-9 refuse commits, lose connections after and before a commit landed, and
    # change leaders whose next commit is then fenced: the invariants held through each.
    kinds: set[str] = set()
    for seed in range(10):
        sim, _stats = await run_swarm(seed, journal="database")
        kinds.update(e.kind for e in sim.history if e.kind in {"fenced", "leader-change"})
        kinds.update(e.detail.split()[-1] for e in sim.history if e.kind == "reconnect")
        kinds.update("refused" for e in sim.history if "refused the commit" in e.detail)
    assert kinds == {"fenced", "leader-change", "landed", "absent", "refused"}


async def test_the_swarm_runs_both_roads_into_the_engine() -> None:
    # The simulation's runtime takes the inline road wherever a default `Runtime()` would
    # (its journal's commit does not wait), and the loop for timers, workers' wake-ups and
    # snapshots: the invariants are checked after every step on both.
    inline = loop = 0
    for seed in range(5):
        _sim, stats = await run_swarm(seed)
        inline += stats.inline_batches
        loop += stats.loop_batches
    print(f"swarm seeds 0-4: {inline} inline batches, {loop} loop batches")
    assert inline > 0
    assert loop > 0


@pytest.mark.slow
@pytest.mark.parametrize("journal", ["file", "database"])
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_swarm_long_run(journal: str) -> None:
    """2,000 seeds per journal (ACTORQ_SWARM_SEEDS to change); prints the figures."""
    n = int(os.environ.get("ACTORQ_SWARM_SEEDS", "2000"))
    totals = {
        "seeds": 0,
        "steps": 0,
        "crashes": 0,
        "deaths": 0,
        "faults": 0,
        "leader_changes": 0,
        "jobs": 0,
        "inline_batches": 0,
        "loop_batches": 0,
    }
    started = time.perf_counter()
    for seed in range(10_000, 10_000 + n):
        try:
            _sim, stats = await run_swarm(seed, journal=journal)
        except AssertionError as exc:
            name = "test_swarm_asyncio" if journal == "file" else "test_swarm_database_asyncio"
            cmd = f"ACTORQ_SEED={seed} pytest 'tests/test_sim_swarm.py::{name}'"
            raise AssertionError(f"seed {seed} failed; reproduce with: {cmd}\n{exc}") from None
        totals["seeds"] += 1
        totals["steps"] += stats.steps
        totals["crashes"] += stats.crashes
        totals["deaths"] += stats.deaths
        totals["faults"] += stats.faults
        totals["leader_changes"] += stats.leader_changes
        totals["jobs"] += stats.jobs
        totals["inline_batches"] += stats.inline_batches
        totals["loop_batches"] += stats.loop_batches
    assert totals["loop_batches"] > 0
    assert totals["inline_batches"] > 0 or journal == "database"  # its commits all wait
    elapsed = time.perf_counter() - started
    print(f"\nswarm long run ({journal} journal): {totals}, no invariant broken, {elapsed:.1f}s")
