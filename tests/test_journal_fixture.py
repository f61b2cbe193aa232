"""A journal written by an earlier actorq (batch schema version 1) still opens."""

# Stays on Runtime: it opens a journal folder an earlier version wrote, the Runtime's own files.

from __future__ import annotations

import math
import shutil
from pathlib import Path

from actorq import JobState, VirtualClock
from actorq._core.records import MAX_WAIT
from actorq._journal import open_changelog
from actorq._runtime import Runtime

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "journal-v1"


async def test_the_v1_fixture_opens_with_the_expected_counts(tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    shutil.copytree(FIXTURE, folder)
    async with Runtime(path=folder, clock=VirtualClock(start=10_000.0)) as rt:
        counts = await rt.counts()
        assert counts["mail"]["completed"] == 17
        assert counts["mail"]["failed"] == 4
        assert counts["reports"]["waiting"] == 9
        assert counts["reports"]["cancelled"] == 1
        reports, mail = rt.queue("reports"), rt.queue("mail")
        job = await mail.get_job(1)
        assert job is not None
        assert job.state is JobState.COMPLETED
        assert job.return_value == {"sent": 0}
        assert job.progress == {"pct": 100}
        assert job.logs == ["sent 0"]
        failed = await mail.get_job(5)
        assert failed is not None
        assert failed.state is JobState.FAILED
        assert failed.attempts_made == 2
        again = await reports.add("once", "other", idempotency_key="report-once")
        assert again.data == "k"
        new = await mail.add("new", None)
        assert new.id == 32


async def test_a_delayed_job_with_no_due_time_from_an_older_version_opens(tmp_path: Path) -> None:
    # actorq before the bound on waits accepted `DelayedError(delay=inf)` (or an infinite
    # backoff), and the journal wrote the job's due time as null: every reopen then failed.
    # Such a job now opens as delayed until MAX_WAIT, a time no clock reaches (docs/guarantees.md).
    clock = VirtualClock(autojump=False)
    async with Runtime(tmp_path, clock=clock) as rt:
        q = rt.queue("q")
        await q.pause()
        job = await q.add("x", delay=10)
        other = await q.add("y", delay=20)
    changelog = open_changelog(tmp_path, fsync="never")  # commits at once, no await
    changelog.commit([("set", job.id, {"state": JobState.DELAYED, "run_at": math.inf})])
    changelog.close()
    for compact in (False, True):
        async with Runtime(tmp_path, clock=VirtualClock(autojump=False)) as rt:
            q = rt.queue("q")
            again = await q.get_job(job.id)
            assert again is not None and again.state is JobState.DELAYED
            assert again.run_at == MAX_WAIT
            assert (await q.counts())["delayed"] == (1 if compact else 2)
            clock = rt.clock
            assert isinstance(clock, VirtualClock)
            await clock.advance(30)
            # The other one came due (in the first round); this one did not.
            assert (await q.counts())["delayed"] == 1
            came_due = await q.get_job(other.id)
            assert came_due is not None and came_due.state is JobState.WAITING
            if compact:
                await rt.snapshot()  # the second round reads it from the snapshot
