"""The finished lines count retention reads hold no more than the finished jobs kept: a queue
whose jobs are removed as they finish, by their age or by hand, keeps no entry per job."""

from __future__ import annotations

from typing import Any

import pytest

from actorq._core.finished import COMPACT_AFTER
from actorq._core.records import REMOVE_AT_ONCE, JobSpec, Retention
from actorq._core.state import CoreState
from actorq._core.states import JobState

C, F = JobState.COMPLETED, JobState.FAILED
TOKEN = "tok"
#: Enough jobs that a line keeping one entry per job would outgrow any compaction threshold.
JOBS = 3 * COMPACT_AFTER


def core_with(n: int, **options: Any) -> tuple[CoreState, list[int]]:
    core = CoreState()
    core.record_changes(True)
    added = core.add([JobSpec("j", "q", b"{}", **options) for _ in range(n)], 0.0)
    return core, [rec.id for rec, _created in added]


def run_all(core: CoreState, ids: list[int], *, fail: bool = False) -> None:
    taken = core.take("q", len(ids), 1.0, TOKEN)
    assert [rec.id for rec in taken] == ids
    for job_id in ids:
        if fail:
            core.fail(job_id, TOKEN, "no", None, 1.0)
        else:
            core.complete(job_id, TOKEN, None, 1.0)


def test_jobs_removed_on_complete_leave_no_entry() -> None:
    core, ids = core_with(JOBS, remove_on_complete=REMOVE_AT_ONCE)
    run_all(core, ids)
    assert core.jobs == {}
    assert len(core.queues["q"].completed) == 0


def test_jobs_removed_on_fail_leave_no_entry() -> None:
    core, ids = core_with(JOBS, remove_on_fail=REMOVE_AT_ONCE)
    run_all(core, ids, fail=True)
    assert core.jobs == {}
    assert len(core.queues["q"].failed) == 0


def test_replaying_removed_on_complete_jobs_leaves_no_entry() -> None:
    core, ids = core_with(JOBS, remove_on_complete=REMOVE_AT_ONCE)
    run_all(core, ids)
    assert core.changes is not None
    replayed = CoreState()
    replayed.apply_changes(core.changes)
    assert replayed.jobs == {}
    assert len(replayed.queues["q"].completed) == 0


def test_jobs_removed_by_their_age_leave_a_bounded_line() -> None:
    core, ids = core_with(JOBS, remove_on_complete=Retention(age=5.0))
    run_all(core, ids)
    assert len(core.queues["q"].completed) == JOBS  # kept for five seconds: all live
    core.run_timers(10.0)
    assert core.jobs == {}
    assert len(core.queues["q"].completed) <= COMPACT_AFTER + 1


@pytest.mark.parametrize("state", [C, F])
def test_jobs_removed_by_hand_leave_a_bounded_line(state: JobState) -> None:
    core, ids = core_with(JOBS)
    run_all(core, ids, fail=state is F)
    for job_id in ids:
        core.remove(job_id, 2.0)
    line = core.queues["q"].completed if state is C else core.queues["q"].failed
    assert len(line) <= COMPACT_AFTER + 1


def test_count_retention_keeps_the_newest_after_a_compaction() -> None:
    core, ids = core_with(JOBS)
    run_all(core, ids)
    kept_by_hand = ids[-200:]
    for job_id in ids[:-200]:  # enough removals to compact the line
        core.remove(job_id, 2.0)
    assert len(core.queues["q"].completed) < JOBS // 2
    added = core.add([JobSpec("j", "q", b"{}", remove_on_complete=Retention(count=50))], 3.0)
    last = added[0][0].id
    run_all(core, [last])
    survivors = sorted(rec.id for rec in core.jobs.values())
    assert survivors == [*kept_by_hand[-49:], last]
