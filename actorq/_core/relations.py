"""Relations: what one job's transition sets in motion for other jobs.

Prerequisites, barriers and parents with their children tie jobs together. The writer in
`state` (`_moved`, `_remove`) only notes, while it keeps the indexes, which related jobs
may be affected; `_settle` then carries the consequences out as transitions of their own:
it cancels what can no longer run, updates a parent's record of its children, fails or
wakes the parent, and releases blocked jobs whose prerequisites and barriers are met. The
parent's own side, `move_to_waiting_children`, is here too. Separate from `state` so the
rules between jobs read in one place, apart from the moves of a single job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import events as ev
from .records import (
    CONTINUED,
    FAILED,
    IGNORED,
    OPEN_STATUSES,
    PENDING,
    PROCESSED,
    UNRESOLVED,
    JobRecord,
)
from .states import TERMINAL, JobState

if TYPE_CHECKING:
    from .blocking import BlockingIndex
    from .state import Change

W, D, A = JobState.WAITING, JobState.DELAYED, JobState.ACTIVE
WC, B = JobState.WAITING_CHILDREN, JobState.BLOCKED


class Relations:
    """`CoreState`'s consequences between jobs (a mixin: `CoreState` provides the state)."""

    # Provided by `CoreState`; declared here for mypy.
    jobs: dict[int, JobRecord]
    blocking: BlockingIndex
    changes: list[Change] | None
    events: list[ev.Event] | None
    _wake: list[int]
    _cascade: list[tuple[JobRecord, str]]
    _ended_children: list[tuple[JobRecord, str]]

    if TYPE_CHECKING:

        def _change(self, rec: JobRecord, changes: dict[str, Any], command: str) -> None: ...
        def _held(self, job_id: int, token: str | None, command: str, now: float) -> JobRecord: ...
        def _finish_failed(self, rec: JobRecord, now: float, reason: str, command: str) -> None: ...
        def _cancel(self, rec: JobRecord, now: float, reason: str | None) -> None: ...

    def _settle(self, now: float) -> None:
        """Carry out what the last changes set in motion: cascades, parents, releases."""
        while self._cascade or self._ended_children or self._wake:
            while self._cascade:
                rec, verb = self._cascade.pop(0)
                self._cascade_from(rec, verb, now)
            while self._ended_children:
                rec, end = self._ended_children.pop(0)
                if end == "check-parent":
                    self._check_parent(rec, now)
                else:
                    self._child_ended(rec, end, now)
            if self._wake:
                wake = sorted(set(self._wake))
                self._wake.clear()
                for job_id in wake:
                    blocked = self.jobs.get(job_id)
                    if blocked is not None and blocked.state is B and self.blocking.ready(blocked):
                        due = blocked.run_at
                        after = D if due is not None and due > now else W
                        self._change(blocked, {"state": after}, "dependencies_met")
                        if self.events is not None:
                            self.events.append(
                                ev.JobWaiting(blocked.id, blocked.queue, blocked.name, B)
                            )

    def _cascade_from(self, rec: JobRecord, verb: str, now: float) -> None:
        """A job ended without completing: cancel what can no longer run because of it."""
        doomed: list[tuple[int, str]] = []
        for dep in sorted(self.blocking.dependents.get(rec.id, ())):
            doomed.append((dep, f"prerequisite job {rec.id} {verb}"))
        if rec.tags:
            for barrier in self.blocking._barriers_of(rec.tags):
                names = ", ".join(sorted(barrier))
                for waiter in sorted(self.blocking.barrier_waiters.get(barrier, ())):
                    if waiter != rec.id:
                        doomed.append((waiter, f"job {rec.id} holding barrier [{names}] {verb}"))
        if verb != "failed" and rec.children:
            for child_id, (status, _payload) in sorted(rec.children.items()):
                if status == PENDING:
                    doomed.append((child_id, f"parent job {rec.id} {verb}"))
        for job_id, reason in doomed:
            target = self.jobs.get(job_id)
            if target is not None and target.state not in TERMINAL:
                self._cancel(target, now, reason)

    def _child_ended(self, child: JobRecord, end: str, now: float) -> None:
        parent = self.jobs.get(child.parent_id) if child.parent_id is not None else None
        if parent is None or not parent.children or child.id not in parent.children:
            return
        if parent.state in TERMINAL:
            # Keep the bookkeeping true even so: the parent may be retried by hand later.
            if end == JobState.COMPLETED.value:
                self._set_child(parent, child.id, PROCESSED, child.return_value)
            elif end == "retried":
                self._set_child(parent, child.id, PENDING, None)
            elif end == "removed":
                self._set_child(parent, child.id, None, None)
            return
        if end == JobState.COMPLETED.value:
            self._set_child(parent, child.id, PROCESSED, child.return_value)
        elif end in ("removed",):
            self._set_child(parent, child.id, None, None)
        elif end == "retried":
            self._set_child(parent, child.id, PENDING, None)
        else:  # failed or cancelled
            reason = child.failed_reason or end
            policy = child.on_child_failure
            if policy == "fail":
                self._set_child(parent, child.id, FAILED, reason)
            elif policy == "ignore":
                self._set_child(parent, child.id, IGNORED, reason)
            elif policy == "remove":
                self._set_child(parent, child.id, None, None)
            elif policy == "continue":
                self._set_child(parent, child.id, CONTINUED, reason)
                if parent.state is WC:
                    self._to_waiting_after_children(parent, now, "child_failed")
                    return
            else:  # "wait": the parent keeps waiting; the child can be retried
                self._set_child(parent, child.id, UNRESOLVED, reason)
        self._check_parent(parent, now)

    def _check_parent(self, parent: JobRecord, now: float) -> None:
        """Fail a parent a child's failure doomed, or wake it once no child is open."""
        if parent.state in TERMINAL or parent.state is A:
            return
        fatal = _fatal_child(parent)
        if fatal is not None:
            child_id, reason = fatal
            self._finish_failed(
                parent, now, f"child job {child_id} failed: {reason}", "child_failed"
            )
            return
        if parent.state is WC and _open_children(parent) == 0:
            self._to_waiting_after_children(parent, now, "children_done")

    def _to_waiting_after_children(self, parent: JobRecord, now: float, command: str) -> None:
        after = D if parent.run_at is not None and parent.run_at > now else W
        self._change(parent, {"state": after}, command)
        if self.events is not None:
            self.events.append(ev.JobWaiting(parent.id, parent.queue, parent.name, WC))

    def _set_child(
        self, parent: JobRecord, child_id: int, status: str | None, payload: Any
    ) -> None:
        self._apply_child(parent, child_id, status, payload)
        if self.changes is not None:
            self.changes.append(("child", parent.id, child_id, status, payload))

    @staticmethod
    def _apply_child(parent: JobRecord, child_id: int, status: str | None, payload: Any) -> None:
        if parent.children is None:
            parent.children = {}
        if status is None:
            parent.children.pop(child_id, None)
        else:
            parent.children[child_id] = (status, payload)

    def move_to_waiting_children(self, job_id: int, token: str | None, now: float) -> str:
        """The active parent waits for its open children: "waiting"; none open: "done" (it
        keeps running); a child's failure dooms it: "failed" (the parent fails now)."""
        rec = self._held(job_id, token, "move_to_waiting_children", now)
        fatal = _fatal_child(rec)
        if fatal is not None:
            child_id, reason = fatal
            self._finish_failed(
                rec, now, f"child job {child_id} failed: {reason}", "move_to_waiting_children"
            )
            self._settle(now)
            return "failed"
        if _open_children(rec) == 0:
            return "done"
        self._change(
            rec,
            {"state": WC, "lock_token": None, "lock_expires_at": None},
            "move_to_waiting_children",
        )
        if self.events is not None:
            self.events.append(ev.JobWaitingChildren(rec.id, rec.queue, rec.name))
        self._settle(now)
        return "waiting"

    def _wake_barrier_waiters(self, fallen: list[frozenset[str]]) -> None:
        """Barriers whose holder count fell: their waiters may be free now."""
        waiters = self.blocking.barrier_waiters
        for barrier in fallen:
            self._wake.extend(waiters.get(barrier, ()))


def _fatal_child(parent: JobRecord) -> tuple[int, str] | None:
    """The first child whose failure fails the parent, with its reason."""
    if parent.children:
        for child_id, (status, payload) in sorted(parent.children.items()):
            if status == FAILED:
                return child_id, str(payload)
    return None


def _open_children(parent: JobRecord) -> int:
    if not parent.children:
        return 0
    return sum(1 for status, _payload in parent.children.values() if status in OPEN_STATUSES)


__all__ = ["Relations"]
