"""Each invariant catches a planted bug, and reports the invariant, the job and the seed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from actorq import JobState
from actorq._core import CoreState
from actorq.testing import InvariantViolation, Observation, Simulation, check_core

SEED = 4242


def _set(core: CoreState, job_id: int, **fields: Any) -> None:
    rec = core.jobs[job_id]
    for name, value in fields.items():
        setattr(rec, name, value)


def plant_state(core: CoreState, ids: list[int]) -> CoreState:
    _set(core, ids[0], state=JobState.DELAYED, run_at=5.0)  # not in the delayed index
    return core


def plant_index(core: CoreState, ids: list[int]) -> CoreState:
    core.queues["q"].counts[JobState.WAITING] += 1
    return core


def plant_lock(core: CoreState, ids: list[int]) -> CoreState:
    _set(core, ids[0], lock_token="ghost")
    return core.rebuild_indexes()


def plant_early(core: CoreState, ids: list[int]) -> CoreState:
    _set(core, ids[0], state=JobState.COMPLETED, run_at=100.0, processed_at=1.0, finished_at=1.0)
    return core.rebuild_indexes()


def plant_attempts(core: CoreState, ids: list[int]) -> CoreState:
    _set(core, ids[0], attempts_made=5)
    return core.rebuild_indexes()


def plant_idempotency(core: CoreState, ids: list[int]) -> CoreState:
    _set(core, ids[1], idempotency_key="dup")
    return core.rebuild_indexes()


def plant_dependency(core: CoreState, ids: list[int]) -> CoreState:
    _set(core, ids[1], depends_on_job_ids=(ids[0],), state=JobState.ACTIVE, lock_token="t")
    _set(core, ids[1], processed_at=0.0)
    return core.rebuild_indexes()


def plant_stuck(core: CoreState, ids: list[int]) -> CoreState:
    _set(core, ids[1], state=JobState.BLOCKED)  # blocked on nothing
    return core.rebuild_indexes()


Plant = Callable[[CoreState, list[int]], CoreState]
CASES: list[tuple[str, Plant]] = [
    ("one-state-per-job", plant_state),
    ("indexes-match-records", plant_index),
    ("single-lock-holder", plant_lock),
    ("delayed-never-early", plant_early),
    ("attempts-bounded", plant_attempts),
    ("idempotency-unique", plant_idempotency),
    ("dependencies-respected", plant_dependency),
    ("dependencies-respected", plant_stuck),
]


@pytest.mark.parametrize(("invariant", "plant"), CASES, ids=[c[1].__name__ for c in CASES])
async def test_planted_bug_is_caught(invariant: str, plant: Plant) -> None:
    async with Simulation(seed=SEED, autojump=False) as sim:
        a = await sim.add("q", "a", 1, idempotency_key="dup")
        b = await sim.add("q", "b", 2)
        await sim.check()
        # Plant on a copy of the state (the live runtime stays sound).
        core = plant(sim.runtime._core.rebuild_indexes(), [a.id, b.id])
        with pytest.raises(InvariantViolation) as caught:
            check_core(core, now=sim.now(), seed=SEED)
    err = caught.value
    assert err.invariant == invariant, str(err)
    assert err.seed == SEED
    assert f"seed {SEED}" in str(err)
    assert err.job_id in (None, a.id, b.id)


async def test_live_state_diverging_from_the_journal_is_caught() -> None:
    async with Simulation(seed=SEED, autojump=False) as sim:
        job = await sim.add("q", "a", 1)
        await sim.check()
        sim.runtime._core.jobs[job.id].priority = 7  # changed without a change record
        with pytest.raises(InvariantViolation) as caught:
            sim.assert_invariants()
        assert caught.value.invariant == "replay-exact"
        assert caught.value.job_id == job.id


async def test_acknowledged_job_lost_in_a_crash_is_caught() -> None:
    async with Simulation(seed=SEED, autojump=False) as sim:
        job = await sim.add("q", "a", 1)
        sim._shadow.jobs.pop(job.id)  # pretend the journal never had it
        sim.fs.crash()  # and the bytes are gone
        path = sim.path
        for name in sim.fs.listdir(path):
            # The manifest too: with it, the journal itself refuses a folder missing segments.
            if name.endswith(".seg") or name == "MANIFEST":
                sim.fs.remove(f"{path}/{name}")
                sim.fs.fsync_dir(path)
        await sim.crash()
        with pytest.raises(InvariantViolation) as caught:
            await sim.restart()
        assert caught.value.invariant == "no-acked-job-lost"
        assert caught.value.job_id == job.id
        assert caught.value.seed == SEED


async def test_reply_before_commit_is_caught() -> None:
    async with Simulation(seed=SEED, autojump=False) as sim:
        job = await sim.runtime.queue("q").add("a", 1)
        sim._shadow.jobs.pop(job.id)  # as if the reply came before the commit
        with pytest.raises(InvariantViolation) as caught:
            sim.acknowledged(job)
        assert caught.value.invariant == "reply-after-durable"
        sim._shadow.jobs[job.id] = sim.runtime._core.jobs[job.id]


async def test_two_lock_holders_are_caught() -> None:
    async with Simulation(seed=SEED, autojump=False) as sim:
        manual = sim.runtime.worker("q", lock_duration=30)
        await sim.add("q", "a", 1)
        job = await manual.get_next_job("t1")
        assert job is not None
        sim.lock_taken(job)
        sim.runtime._core.jobs[job.id].lock_token = "t2"  # a second holder while valid
        with pytest.raises(InvariantViolation) as caught:
            sim.lock_taken(job)
        assert caught.value.invariant == "single-lock-holder"
        sim.runtime._core.jobs[job.id].lock_token = "t1"


async def test_barrier_and_parent_transitions_are_caught() -> None:
    async with Simulation(seed=SEED, autojump=False) as sim:
        holder = await sim.add("q", "h", 1, tags=["red"])
        core = sim.runtime._core
        rec = core.jobs[holder.id]
        rec.depends_on_tags = ("red",)
        other = await sim.add("q", "o", 2, tags=["red"])
        prev = Observation({holder.id: JobState.BLOCKED}, {other.id: ("red",)})
        with pytest.raises(InvariantViolation) as caught:
            check_core(core, seed=SEED, previous=prev)
        assert caught.value.invariant == "barriers-respected"
        rec.depends_on_tags = ()
        rec.children = {other.id: ("pending", None)}
        prev = Observation({holder.id: JobState.WAITING_CHILDREN}, {})
        with pytest.raises(InvariantViolation) as caught:
            check_core(core, seed=SEED, previous=prev)
        assert caught.value.invariant == "parent-after-children"
        rec.children = None


async def test_a_job_id_handed_out_again_after_a_crash_is_caught() -> None:
    async with Simulation(seed=SEED, autojump=False) as sim:
        await sim.add("q", "a", 1)
        await sim.crash()
        sim._shadow.next_id = 2**40  # pretend ids far past the high-water mark went out
        with pytest.raises(InvariantViolation) as caught:
            await sim.restart()
        assert caught.value.invariant == "no-id-reused"


async def test_ids_lost_with_unsynced_frames_are_not_reused_after_a_crash() -> None:
    async with Simulation(seed=SEED, autojump=False, fsync="never", check_every_step=False) as sim:
        for i in range(5):
            await sim.add("q", "a", i)
        await sim.crash()  # under "never" the frames holding those ids are gone
        await sim.restart()  # no-id-reused holds
        job = await sim.add("q", "b", None)
        assert job.id > 5
