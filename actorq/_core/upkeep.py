"""Index upkeep per state and per move, as tables the core looks up.

* `ENTER` / `LEAVE`: what entering and leaving each state does to the core's indexes (counts
  aside). `_index` and `_unindex` look these up by the job's state.
* `MOVED`: the upkeep that depends on where a job came from as well as where it went (a
  live job ended, a finished one came back), one function per kind of move, looked up by
  ``(old, new)`` state; None where a move needs nothing more (from one live state to
  another). What a parent or a child must hear of a move is the core's `_moved_in_tree`,
  called for family members only.
* `PLANS`: for every row ``(command, old, new)`` of the lifecycle table, looked up as
  ``PLANS[command][old][new]``, the `Plan` that `CoreState._change` follows: the upkeep
  functions above for that move, and which order the job takes. Derived from the tables
  once, so the hottest moves (`take`, `complete`) cost no lookups and no calls for upkeep
  they do not need, and a move outside the table has no plan.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from .finished import COMPACT_AFTER
from .states import MOVES, TERMINAL, JobState

if TYPE_CHECKING:
    from .records import JobRecord
    from .state import CoreState, QueueState

W, D, A, B = JobState.WAITING, JobState.DELAYED, JobState.ACTIVE, JobState.BLOCKED
C, F, X = JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED
WC = JobState.WAITING_CHILDREN


def _enter_waiting(core: CoreState, qs: QueueState, rec: JobRecord) -> None:
    if rec.group is None:
        qs.waiting.push(rec)
    else:
        core.grouped(qs).push(rec)


def _leave_waiting(core: CoreState, qs: QueueState, rec: JobRecord) -> None:
    # Its entry in the line goes stale by itself (unless `take` popped it): the one place
    # where stale entries appear, so the one place to compact them. The record still reads
    # as waiting here, so a compaction now keeps its entry, one stale entry more until the
    # next; the count is right either way.
    if rec.group is not None:
        assert qs.groups is not None
        qs.groups.left(rec, core.jobs)
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
    group = rec.group
    if group is not None:
        active = core.grouped(qs).active
        active[group] = active.get(group, 0) + 1
    expires = rec.lock_expires_at
    if expires is not None:
        core.locks.add(expires, rec.id)
        if expires < core.due_bound:  # noqa: PLR1730 - a manual take's path: no min() call
            core.due_bound = expires


def _leave_active(core: CoreState, qs: QueueState, rec: JobRecord) -> None:
    # The lock entry goes stale by itself (`LockIndex`); a group counts its active jobs.
    group = rec.group
    if group is not None:
        groups = qs.groups
        assert groups is not None
        groups.active[group] -= 1
        if group not in groups.queued:  # it may have left the rotation at its cap
            groups.offer(group)


def _nothing(core: CoreState, qs: QueueState, rec: JobRecord) -> None:
    """No index to keep for the state."""


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
    keep = rec.remove_on_complete if completed else rec.remove_on_fail
    if keep.count != 0:  # else its retention removes it at once: its entry would be stale
        (qs.completed if completed else qs.failed).append((rec.order, rec.id))
    age = keep.age
    if age is not None:
        core.expiries.add((finished_at + age, rec.id))
        core.due_bound = min(core.due_bound, finished_at + age)


def _leave_finished(core: CoreState, qs: QueueState, rec: JobRecord) -> None:
    assert rec.finished_at is not None
    completed = rec.state is C
    keep = rec.remove_on_complete if completed else rec.remove_on_fail
    if keep.age is not None:
        core.expiries.discard((rec.finished_at + keep.age, rec.id))
    # As in `_leave_waiting`: where stale entries appear, so where they are compacted. A
    # short line (the one of jobs removed at once stays empty) costs one comparison.
    line = qs.completed if completed else qs.failed
    if len(line) > COMPACT_AFTER:
        line.maybe_compact(core.jobs, qs.counts[line.state])


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
    A: _leave_active,
    JobState.WAITING_CHILDREN: _nothing,
    B: _leave_blocked,
    C: _leave_finished,
    F: _leave_finished,
    X: _nothing,
}


# ---------------------------------------------------------------------- per move


def _holder_gone(core: CoreState, rec: JobRecord) -> None:
    """A tagged job ended: the barriers whose holder count fell wake their waiters."""
    fallen = core.blocking.job_gone(rec)
    if core._live and fallen:
        core._wake_barrier_waiters(fallen)


def _dependents_released(core: CoreState, rec: JobRecord) -> None:
    """A job others depend on completed: those now free to run are woken (live only)."""
    released = core.blocking.completed(rec.id)
    if core._live:
        core._wake.extend(released)


def _moved_revived(core: CoreState, rec: JobRecord, old: JobState | None) -> None:
    """A new job, or a finished one back to life (a retry)."""
    if rec.tags:
        core.blocking.job_alive(rec)
    if old is C:  # a completed job retried by hand: the jobs listing it wait again
        core.blocking.uncompleted(rec.id, core.jobs)


def _moved_completed(core: CoreState, rec: JobRecord, old: JobState | None) -> None:
    """A live job completed: its barriers and its dependents hear."""
    if rec.tags:
        _holder_gone(core, rec)
    if rec.id in core.blocking.dependents:
        _dependents_released(core, rec)


def _moved_failed(core: CoreState, rec: JobRecord, old: JobState | None) -> None:
    """A live job failed or was cancelled: its barriers hear, its end cascades."""
    if rec.tags:
        _holder_gone(core, rec)
    if core._live:
        core._cascade.append((rec, "failed" if rec.state is F else "was cancelled"))


def _moved_dead(core: CoreState, rec: JobRecord, old: JobState | None) -> None:
    """Into a terminal state from none or another terminal one (a record replayed)."""
    new = rec.state
    if new is C:
        if rec.id in core.blocking.dependents:
            _dependents_released(core, rec)
    elif old is C and core._live:
        core._cascade.append((rec, "failed" if new is F else "was cancelled"))


def _moved_kind(old: JobState | None, new: JobState) -> _Upkeep | None:
    was_alive = old is not None and old not in TERMINAL
    if new not in TERMINAL:
        return None if was_alive else _moved_revived
    if not was_alive:
        return _moved_dead
    return _moved_completed if new is C else _moved_failed


#: Per move, the upkeep beyond entering and leaving (None: nothing). What a job's family
#: must hear is not here: `CoreState._moved_in_tree` does it for every move of a member.
MOVED: Final[dict[tuple[JobState | None, JobState], _Upkeep | None]] = {
    (old, new): _moved_kind(old, new) for old in (None, *JobState) for new in JobState
}


#: Upkeep that does nothing unless a cheap test holds, with that test (Python over ``core``,
#: ``qs`` and ``rec``): a move written out as code (`moves`) makes the test in place and
#: calls the upkeep only when it holds, which saves a call for most jobs (one with no group,
#: no manual lock, no tags and no dependents). Each test is the upkeep's own first tests,
#: so the upkeep stays right when called without it.
GUARDS: Final[dict[Any, str]] = {
    _leave_active: "rec.group is not None",
    _enter_active: "rec.group is not None or rec.lock_expires_at is not None",
    _moved_completed: "rec.tags or rec.id in core.blocking.dependents",
}


class Plan:
    """How `CoreState._change` carries out one row of the lifecycle table."""

    __slots__ = ("alive", "enter", "leave", "moved", "order", "was_alive")

    def __init__(self, command: str, old: JobState, new: JobState) -> None:
        leave = LEAVE[old]
        if command == "take":
            leave = None  # `take` popped the job's entry from its waiting line itself
        #: Upkeep on leaving `old` and entering `new` (None: nothing to do).
        self.leave: _Upkeep | None = None if leave is _nothing else leave
        self.enter: _Upkeep | None = None if ENTER[new] is _nothing else ENTER[new]
        self.moved: _Upkeep | None = MOVED[(old, new)]
        #: Whether the job lives before and after the move (for its family, if it has one).
        self.was_alive = old not in TERMINAL
        self.alive = new not in TERMINAL
        #: The job's new `order`, unless the change sets it: a place in its waiting line
        #: ("line"), in its finished line for count retention ("finished"), or none.
        self.order = "line" if new is W else "finished" if new in (C, F) else None


def _plans() -> dict[str, dict[JobState, dict[JobState, Plan]]]:
    plans: dict[str, dict[JobState, dict[JobState, Plan]]] = {}
    for command, old, new in sorted(MOVES, key=str):
        if old is not None:  # "add" makes a record; it does not move one
            plans.setdefault(command, {}).setdefault(old, {})[new] = Plan(command, old, new)
    return plans


#: ``PLANS[command][old][new]``: nested rather than keyed by the triple, since three lookups
#: of strings whose hash is cached cost half of building and hashing a tuple per move.
PLANS: Final = _plans()
