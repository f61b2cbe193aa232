"""The simulation's database journal: the journal in PostgreSQL's semantics (one fenced
transaction per commit) under its faults, a refused commit, a lost connection and a leader
change, with every invariant checked; and the checks fail when its rules are removed."""

from __future__ import annotations

from typing import Any

import pytest

from actorq import Job, JobState, RuntimeClosedError
from actorq import _journal_fence as fence
from actorq._journal_pg_lease import FencedError
from actorq.testing import InvariantViolation, Simulation

SEED = 7


async def _echo(job: Job) -> Any:
    return job.data


def _sim(**options: Any) -> Simulation:
    def setup(rt: Any) -> None:
        rt.worker("q", _echo)

    return Simulation(seed=SEED, journal="database", autojump=False, setup=setup, **options)


async def test_each_life_leads_with_the_next_epoch_and_replays_the_log() -> None:
    async with _sim() as sim:
        job = await sim.add("q", "a", 1)
        await sim.check()
        assert sim.runtime._core.jobs[job.id].state is JobState.COMPLETED
        first = sim.db.epoch
        await sim.crash()
        await sim.restart()  # replay-exact and no-acked-job-lost are checked here
        assert sim.db.epoch == first + 1
        assert sim.runtime._core.jobs[job.id].return_value == b"1"
        later = await sim.add("q", "b", 2)
        assert later.id > job.id  # no-id-reused across lives
        await sim.check()


async def test_a_refused_commit_stops_the_runtime_and_writes_nothing() -> None:
    async with _sim() as sim:
        kept = await sim.add("q", "a", 1)
        await sim.check()
        rows = dict(sim.db.log)
        sim.fail_next_commit()
        with pytest.raises(RuntimeClosedError):
            await sim.add("q", "b", 2)
        await sim.settle()
        assert not sim.alive
        assert sim.deaths == 1
        assert sim.db.log == rows  # nothing half-written
        await sim.restart()  # the replay equals what was committed, exactly
        assert set(sim.runtime._core.jobs) == {kept.id}
        await sim.check()


@pytest.mark.parametrize("landed", [True, False], ids=["landed", "not-landed"])
async def test_a_commit_whose_connection_is_lost_is_written_once(landed: bool) -> None:
    async with _sim() as sim:
        await sim.add("q", "a", 1)
        await sim.check()
        before = sim.db.last_seq()
        sim.lose_next_connection(landed=landed)
        job = await sim.add("q", "b", 2)
        await sim.check()
        assert sim.alive
        assert sim.runtime._core.jobs[job.id].state is JobState.COMPLETED
        outcome = "landed" if landed else "absent"
        assert any(e.detail == f"seq {before + 1} {outcome}" for e in sim.history)
        await sim.crash()
        await sim.restart()  # the batch replays once: replay-exact holds
        assert sim.runtime._core.jobs[job.id].return_value == b"2"


async def test_without_the_lookup_a_landed_commit_would_be_written_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The lookup is what keeps the runtime going: without it, the retry of a batch that
    # landed hits its own row and the leader stops, fenced by itself.
    monkeypatch.setattr(fence, "after_lost_commit", lambda stored, payload: fence.LostCommit.ABSENT)
    async with _sim() as sim:
        sim.lose_next_connection(landed=True)
        with pytest.raises(RuntimeClosedError):
            await sim.add("q", "a", 1)
        await sim.settle()
        assert not sim.alive


async def test_a_leader_change_fences_the_old_leader_and_the_new_one_serves() -> None:
    async with _sim() as sim:
        old = sim.runtime
        done = await sim.add("q", "a", 1)
        await sim.check()
        new = await sim.leader_change()
        assert new is not old and sim.leader_changes == 1
        died = [e for e in sim.history if e.kind == "died"]
        assert len(died) == 1 and "FencedError" in died[0].detail
        assert isinstance(old._engine.crashed, FencedError)  # type: ignore[union-attr]
        # The old leader's caller was told; nothing it tried is in the log.
        assert all(rec.queue != "stale" for rec in new._core.jobs.values())
        assert new._core.jobs[done.id].state is JobState.COMPLETED
        job = await sim.add("q", "b", 2)
        await sim.check()
        assert new._core.jobs[job.id].return_value == b"2"


async def test_a_stale_leaders_commit_accepted_breaks_the_invariants(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Remove the epoch from the fence: the old leader's commit lands beside the new
    # leader's history, and acknowledges a job the new leader never sees.
    monkeypatch.setattr(
        fence, "accepts_write", lambda lease, epoch, *, seq_taken=False: not seq_taken
    )
    async with _sim() as sim:
        await sim.add("q", "a", 1)
        await sim.check()
        with pytest.raises(InvariantViolation) as caught:
            await sim.leader_change()
    assert caught.value.invariant in {"no-acked-job-lost", "replay-exact"}


async def test_the_database_faults_belong_to_the_database_journal() -> None:
    async with Simulation(seed=SEED, autojump=False) as sim:
        with pytest.raises(RuntimeError, match="journal='database'"):
            sim.fail_next_commit()
        with pytest.raises(RuntimeError, match="journal='database'"):
            await sim.leader_change()
    async with _sim() as sim:
        with pytest.raises(RuntimeError, match="journal='file'"):
            sim.fail_next_fsync()
