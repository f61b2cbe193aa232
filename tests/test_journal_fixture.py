"""A journal written by an earlier actorq (batch schema version 1) still opens."""

from __future__ import annotations

import shutil
from pathlib import Path

from actorq import JobState, VirtualClock
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
