"""Index upkeep per state: what entering and leaving each state does to the core's indexes
(counts aside). `CoreState._change`, `_index` and `_unindex` look these up by the job's
state, so every move of every transition keeps the indexes the same way."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from .states import JobState

if TYPE_CHECKING:
    from .records import JobRecord
    from .state import CoreState, QueueState

W, D, A, B = JobState.WAITING, JobState.DELAYED, JobState.ACTIVE, JobState.BLOCKED
C, F, X = JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED


def _enter_waiting(core: CoreState, qs: QueueState, rec: JobRecord) -> None:
    qs.waiting.push(rec)


def _leave_waiting(core: CoreState, qs: QueueState, rec: JobRecord) -> None:
    # Its entry in the line goes stale by itself (unless `take` popped it): the one place
    # where stale entries appear, so the one place to compact them. The record still reads
    # as waiting here, so a compaction now keeps its entry, one stale entry more until the
    # next; the count is right either way.
    qs.waiting.maybe_compact(core.jobs, qs.counts[W])


def _enter_delayed(core: CoreState, qs: QueueState, rec: JobRecord) -> None:
    run_at = rec.run_at
    assert run_at is not None
    core.delayed.add((run_at, rec.id))
    core.due_bound = min(core.due_bound, run_at)


def _leave_delayed(core: CoreState, qs: QueueState, rec: JobRecord) -> None:
    assert rec.run_at is not None
    core.delayed.remove((rec.run_at, rec.id))


def _enter_active(core: CoreState, qs: QueueState, rec: JobRecord) -> None:
    expires = rec.lock_expires_at
    if expires is not None:
        core.locks.add(expires, rec.id)
        core.due_bound = min(core.due_bound, expires)


def _nothing(core: CoreState, qs: QueueState, rec: JobRecord) -> None:
    """A lock entry goes stale by itself once its record leaves active (`LockIndex`)."""


def _enter_blocked(core: CoreState, qs: QueueState, rec: JobRecord) -> None:
    jobs = core.jobs
    unmet = [
        d for d in rec.depends_on_job_ids if (p := jobs.get(d)) is not None and p.state is not C
    ]
    core.blocking.block(rec, unmet)


def _leave_blocked(core: CoreState, qs: QueueState, rec: JobRecord) -> None:
    core.blocking.unblock(rec)


def _enter_finished(core: CoreState, qs: QueueState, rec: JobRecord) -> None:
    finished_at = rec.finished_at
    assert finished_at is not None
    completed = rec.state is C
    (qs.completed if completed else qs.failed).append((rec.order, rec.id))
    age = (rec.remove_on_complete if completed else rec.remove_on_fail).age
    if age is not None:
        core.expiries.add((finished_at + age, rec.id))
        core.due_bound = min(core.due_bound, finished_at + age)


def _leave_finished(core: CoreState, qs: QueueState, rec: JobRecord) -> None:
    assert rec.finished_at is not None
    keep = rec.remove_on_complete if rec.state is C else rec.remove_on_fail
    if keep.age is not None:
        core.expiries.discard((rec.finished_at + keep.age, rec.id))


_Upkeep = Any  # Callable[[CoreState, QueueState, JobRecord], None]
ENTER: Final[dict[JobState, _Upkeep]] = {
    W: _enter_waiting,
    D: _enter_delayed,
    A: _enter_active,
    JobState.WAITING_CHILDREN: _nothing,
    B: _enter_blocked,
    C: _enter_finished,
    F: _enter_finished,
    X: _nothing,
}
LEAVE: Final[dict[JobState, _Upkeep]] = {
    W: _leave_waiting,
    D: _leave_delayed,
    A: _nothing,
    JobState.WAITING_CHILDREN: _nothing,
    B: _leave_blocked,
    C: _leave_finished,
    F: _leave_finished,
    X: _nothing,
}
