"""On a leased journal (the journal in PostgreSQL, and the simulation's database) a leader's
own processors hold timed locks, renewed in batches while their jobs run, with tokens unique
to the leader's epoch; after a leader change a job the old leader was running stays active
until its lock expires, then stalls and runs again. On a memory or file journal they stay
untimed (one process, whose locks live as long as it does)."""

# Stays on Runtime: the leader's own processors' locks on a leased journal (read from its core).

from __future__ import annotations

from typing import Any

import anyio

from actorq import Job, JobState, Runtime
from actorq.testing import Simulation

LOCK = 10.0


def _slow_sim(journal: str = "database") -> Simulation:
    sim: Simulation

    async def slow(job: Job) -> Any:
        await sim.clock.sleep(100)
        return job.id

    def setup(rt: Runtime) -> None:
        rt.worker("q", slow, lock_duration=LOCK)

    sim = Simulation(seed=3, journal=journal, autojump=False, setup=setup)
    return sim


async def test_a_processor_on_a_leased_journal_holds_a_timed_lock_renewed_while_it_runs() -> None:
    async with _slow_sim() as sim:
        job = await sim.add("q", "a", 1)
        await sim.check()
        rec = sim.runtime._core.jobs[job.id]
        assert rec.state is JobState.ACTIVE
        assert rec.lock_expires_at == LOCK
        assert rec.lock_token is not None and rec.lock_token.startswith("epoch1.")
        await sim.advance(3 * LOCK)
        assert rec.lock_expires_at is not None and rec.lock_expires_at > 3 * LOCK
        await sim.advance(100)
        rec = sim.runtime._core.jobs[job.id]
        assert rec.state is JobState.COMPLETED
        assert (rec.attempts_started, rec.stalled_counter) == (1, 0)


async def test_after_a_leader_change_the_old_leaders_job_stalls_at_its_lock_expiry() -> None:
    async with _slow_sim() as sim:
        job = await sim.add("q", "a", 1)
        await sim.advance(30)  # renewed at 30: locked until 40
        await sim.leader_change()  # the old leader is fenced and stops
        rec = sim.runtime._core.jobs[job.id]
        assert rec.state is JobState.ACTIVE and rec.lock_expires_at == 40
        assert rec.lock_token is not None and rec.lock_token.startswith("epoch1.")
        await sim.advance(9.5)
        assert rec.state is JobState.ACTIVE and rec.attempts_started == 1  # not run twice
        await sim.advance(1)
        rec = sim.runtime._core.jobs[job.id]
        assert rec.stalled_counter == 1 and rec.attempts_started == 2
        assert rec.lock_token is not None and rec.lock_token.startswith("epoch2.")
        restarted = [e for e in sim.history if e.kind == "JobActive" and e.job == job.id]
        assert [e.time for e in restarted] == [0, 40]
        await sim.advance(100)
        assert sim.runtime._core.jobs[job.id].state is JobState.COMPLETED
        await sim.check()


async def test_a_resumed_old_leader_is_fenced_by_its_own_lock_renewal() -> None:
    async with _slow_sim() as sim:
        job = await sim.add("q", "a", 1)
        await sim.advance(1)
        await sim.leader_change(resume=30)  # its clock runs on: it renews, and is fenced
        died = [e for e in sim.history if e.kind == "died"]
        assert len(died) == 1 and "FencedError" in died[0].detail
        assert not any(e.kind in {"fenced", "add-stale"} for e in sim.history)  # no caller
        rec = sim.runtime._core.jobs[job.id]
        assert rec.state is JobState.ACTIVE and rec.lock_expires_at == LOCK  # renewal refused
        await sim.advance(LOCK)
        assert sim.runtime._core.jobs[job.id].stalled_counter == 1
        await sim.check()


async def test_a_crash_leaves_a_timed_job_active_until_its_lock_expires() -> None:
    async with _slow_sim() as sim:
        job = await sim.add("q", "a", 1)
        await sim.advance(1)
        await sim.crash()
        await sim.restart()
        rec = sim.runtime._core.jobs[job.id]
        assert rec.state is JobState.ACTIVE and rec.stalled_counter == 0
        await sim.advance(LOCK)
        assert sim.runtime._core.jobs[job.id].stalled_counter == 1


async def test_a_file_journal_keeps_processors_locks_untimed() -> None:
    async with _slow_sim("file") as sim:
        job = await sim.add("q", "a", 1)
        await sim.check()
        rec = sim.runtime._core.jobs[job.id]
        assert rec.state is JobState.ACTIVE
        assert (rec.lock_token, rec.lock_expires_at) == ("worker-1", None)
        await sim.crash()
        await sim.restart()  # its holder is gone with the process: it stalls at once
        assert sim.runtime._core.jobs[job.id].stalled_counter == 1


async def test_a_leader_on_postgresql_renews_its_processors_timed_locks(pg_url: str) -> None:
    async with Runtime(pg_url) as rt:
        started, release = anyio.Event(), anyio.Event()

        async def hold(job: Job) -> int:
            started.set()
            await release.wait()
            return 1

        q = rt.queue("q")
        rt.worker(q, hold, lock_duration=0.4)
        added = await q.add("a", None)
        with anyio.fail_after(10):
            await started.wait()
        job = await q.get_job(added.id)
        assert job is not None and job.lock_token is not None
        assert job.lock_token.startswith("epoch1.")
        first = job.lock_expires_at
        assert first is not None
        await anyio.sleep(1.0)  # past two locks' length: renewed, not stalled
        later = await q.get_job(added.id)
        assert later is not None and later.state is JobState.ACTIVE
        assert later.lock_expires_at is not None and later.lock_expires_at > first
        release.set()
        await added.wait_until_finished()
        done = await q.get_job(added.id)
        assert done is not None
        assert (done.state, done.stalled_counter, done.attempts_started) == (
            JobState.COMPLETED,
            0,
            1,
        )


async def test_a_standby_that_takes_over_gives_its_processors_timed_locks(pg_url: str) -> None:
    from test_pg_standby import Leader  # noqa: PLC0415 - the PostgreSQL tests' helper

    async with anyio.create_task_group() as tg:
        leading = Leader(pg_url + "?actorq_ttl=2")
        await tg.start(leading.run)
        async with Runtime(pg_url + "?actorq_standby=on&actorq_ttl=2") as rt:
            started, release = anyio.Event(), anyio.Event()

            async def hold(job: Job) -> int:
                started.set()
                await release.wait()
                return 1

            q = rt.queue("q")
            standing = rt.worker(q, hold, lock_duration=5)  # made while it stands by
            await leading.stop()
            with anyio.fail_after(15):
                await rt.wait_leading()
            added = await q.add("a", None)
            with anyio.fail_after(10):
                await started.wait()
            job = await q.get_job(added.id)
            assert job is not None and job.lock_expires_at is not None
            # It keeps the token it registered with the leader under (its client's prefix).
            assert job.lock_token == standing.token
            assert not standing.token.startswith("epoch")
            assert rt.worker(q, hold).token.startswith("epoch2.")  # made once it leads
            release.set()
            assert await added.wait_until_finished() == 1
