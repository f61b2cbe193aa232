"""Replay: change records applied back, snapshots, and indexes rebuilt from scratch.

The live transitions write through `_change` and keep every index incrementally; this
module holds the other way in: `apply_changes` replays the journal's deltas with no
validation and no clock (a snapshot's records load in bulk, every index built once at the
end), `as_changes` writes the state out as such records, and `snapshot`, `index_view` and
`rebuild_indexes` let tests and the invariant checker compare a live state with its replay.
Separate from `state` because none of it runs on the live path.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, Self

from .blocking import BlockingIndex
from .limits import Limiter
from .locks import LockIndex
from .records import MAX_WAIT, JobRecord
from .states import TERMINAL, JobState
from .timed import TimedIndex

if TYPE_CHECKING:
    from .groups import Groups
    from .state import Change, QueueState

W, D, A = JobState.WAITING, JobState.DELAYED, JobState.ACTIVE
B, C, F = JobState.BLOCKED, JobState.COMPLETED, JobState.FAILED

_BY_ORDER: Final = operator.attrgetter("order")


class Replay:
    """`CoreState`'s replay and whole-state views (a mixin: `CoreState` provides the
    state)."""

    # Provided by `CoreState`; declared here for mypy.
    jobs: dict[int, JobRecord]
    queues: dict[str, QueueState]
    next_id: int
    _next_fifo: int
    _next_lifo: int
    rng: int
    delayed: TimedIndex
    locks: LockIndex
    expiries: TimedIndex
    due_bound: float
    idempotency: dict[str, int]
    blocking: BlockingIndex
    _live: bool
    _bulk: bool

    if TYPE_CHECKING:

        def queue(self, name: str) -> QueueState: ...
        def next_due(self) -> float | None: ...
        def _apply(self, rec: JobRecord, changes: dict[str, Any]) -> None: ...
        def _insert(self, rec: JobRecord) -> None: ...
        def _remove_quietly(self, rec: JobRecord) -> list[frozenset[str]]: ...
        def replay_scheduler(self, change: Change) -> None: ...
        def scheduler_changes(self) -> list[Change]: ...
        def replay_dedup(self, change: Change) -> None: ...
        def replay_group(self, change: Change) -> None: ...
        def configure_groups(self, qs: QueueState, fields: Mapping[str, Any]) -> None: ...
        def grouped(self, qs: QueueState) -> Groups: ...
        def dedup_changes(self) -> list[Change]: ...
        def dedup_view(self) -> dict[tuple[str, str], tuple[int, float | None]]: ...
        @staticmethod
        def _apply_child(
            parent: JobRecord, child_id: int, status: str | None, payload: Any
        ) -> None: ...

    def apply_change(self, change: Change) -> None:
        """Replay one change record (no validation, no clock, no new records)."""
        self.apply_changes((change,))

    def apply_changes(self, changes: Iterable[Change]) -> int:
        """Replay change records in order; returns how many. A snapshot's records (from
        ``("snapshot", ...)`` to ``("meta", ...)``) load in bulk: the records go in as they
        come and every index is built once, at the end."""
        self._live = False
        count = 0
        try:
            for change in changes:
                self._replay(change)
                count += 1
        finally:
            self._live = True
        return count

    def _replay(self, change: Change) -> None:
        kind = change[0]
        if kind == "set":
            fields = change[2]
            rec = self.jobs[change[1]]
            if "run_at" in fields and fields["run_at"] is None:
                fields = _never_due(rec, fields)
            self._apply(rec, fields)
            order = fields.get("order")
            if order is not None:
                self._see_order(order)
        elif kind == "add":
            rec = JobRecord.from_fields(change[1])
            if rec.run_at is None and rec.state is JobState.DELAYED:
                rec.run_at = MAX_WAIT  # see `_never_due`
            if self._bulk:
                self.jobs[rec.id] = rec
                if rec.queue not in self.queues:
                    self.queue(rec.queue)
                return
            self.queue(rec.queue)
            self._insert(rec)
            self.next_id = max(self.next_id, rec.id + 1)
            self._see_order(rec.order)
        elif kind == "child":
            self._apply_child(self.jobs[change[1]], change[2], change[3], change[4])
        elif kind == "del":
            self._remove_quietly(self.jobs[change[1]])
        elif kind == "queue":
            qs = self.queue(change[1])
            fields = change[2]
            qs.paused = bool(fields["paused"])
            qs.concurrency = fields.get("concurrency")  # absent before global concurrency
            limiter = fields.get("limiter")
            qs.limiter = None if limiter is None else Limiter.from_fields(limiter)
            self.configure_groups(qs, fields)
        elif kind == "group":
            self.replay_group(change)
        elif kind in ("scheduler", "scheduler-del"):
            self.replay_scheduler(change)
        elif kind in ("dedup", "dedup-del"):
            self.replay_dedup(change)
        elif kind == "rng":
            self.rng = change[1]
        elif kind == "snapshot":
            self._bulk = True
        elif kind == "meta":
            meta = change[1]
            self.next_id = meta["next_id"]
            self._next_fifo = meta["next_fifo"]
            self._next_lifo = meta["next_lifo"]
            self.rng = meta["rng"]
            self._bulk = False
            self._rebuild_all()
        else:
            raise ValueError(f"unknown change record kind {kind!r}")

    def _rebuild_all(self) -> None:
        """Compute every index from the records at once (loading a snapshot)."""
        delayed: list[tuple[float, int]] = []
        locks: list[tuple[float, int]] = []
        expiries: list[tuple[float, int]] = []
        self.idempotency = {}
        for qs in self.queues.values():
            qs.counts = dict.fromkeys(JobState, 0)
            if qs.groups is not None:
                qs.groups.active.clear()
        queues = self.queues
        for rec in self.jobs.values():
            state = rec.state
            queues[rec.queue].counts[state] += 1
            if state is D:
                assert rec.run_at is not None
                delayed.append((rec.run_at, rec.id))
            elif state is A:
                if rec.group is not None:
                    self.grouped(queues[rec.queue]).started(rec.group)
                if rec.lock_expires_at is not None:
                    locks.append((rec.lock_expires_at, rec.id))
            elif state is C or state is F:
                keep = rec.remove_on_complete if state is C else rec.remove_on_fail
                if keep.age is not None:
                    assert rec.finished_at is not None
                    expiries.append((rec.finished_at + keep.age, rec.id))
            if rec.idempotency_key is not None:
                self.idempotency[rec.idempotency_key] = rec.id
        self.delayed = TimedIndex(delayed)
        self.locks = LockIndex(self.jobs, locks)
        self.expiries = TimedIndex(expiries)
        due = self.next_due()
        self.due_bound = math.inf if due is None else due
        self._rebuild_lines()
        self._rebuild_blocking()

    def _see_order(self, order: int) -> None:
        if order > 0:
            self._next_fifo = max(self._next_fifo, order + 1)
        elif order < 0:
            self._next_lifo = min(self._next_lifo, order - 1)

    # ------------------------------------------------------------------ whole-state views

    def snapshot(self) -> dict[str, Any]:
        """Everything that defines the state, as plain values (what replay must reproduce)."""
        return {
            "jobs": {job_id: rec.fields() for job_id, rec in sorted(self.jobs.items())},
            "queues": {
                name: (
                    qs.paused,
                    qs.concurrency,
                    None if qs.limiter is None else qs.limiter.fields(),
                    None if qs.groups is None else qs.groups.settings(),
                    None if qs.groups is None else qs.groups.window_changes(name),
                )
                for name, qs in sorted(self.queues.items())
            },
            "next_id": self.next_id,
            "rng": self.rng,
            "order": (self._next_fifo, self._next_lifo),
            "schedulers": [change[1:] for change in self.scheduler_changes()],
            "dedup": self.dedup_view(),
        }

    def index_view(self) -> dict[str, Any]:
        """The indexes as plain values, to compare the incremental ones with a rebuild."""
        return {
            "waiting": {
                name: [rec.id for rec in qs.waiting.live(self.jobs)]
                for name, qs in sorted(self.queues.items())
            },
            "groups": {
                name: view
                for name, qs in sorted(self.queues.items())
                if qs.groups is not None and (view := qs.groups.view(self.jobs))
            },
            "counts": {name: dict(qs.counts) for name, qs in sorted(self.queues.items())},
            "delayed": list(self.delayed),
            "locks": list(self.locks),
            "expiries": list(self.expiries),
            "idempotency": dict(sorted(self.idempotency.items())),
            "blocking": self.blocking.view(),
        }

    def as_changes(self) -> list[Change]:
        """Change records that rebuild this state from nothing: the content of a snapshot."""
        out: list[Change] = [("snapshot", {"jobs": len(self.jobs)})]
        out.extend(("queue", name, queue_fields(qs)) for name, qs in self.queues.items())
        for name, qs in self.queues.items():
            if qs.groups is not None:
                out.extend(qs.groups.window_changes(name))
        out.extend(("add", rec.row()) for rec in self.jobs.values())
        out.extend(self.scheduler_changes())
        out.extend(self.dedup_changes())
        out.append(
            (
                "meta",
                {
                    "next_id": self.next_id,
                    "next_fifo": self._next_fifo,
                    "next_lifo": self._next_lifo,
                    "rng": self.rng,
                },
            )
        )
        return out

    def rebuild_indexes(self) -> Self:
        """A new state holding these records with indexes computed from scratch."""
        fresh = type(self)()  # seed 0: the snapshot's records carry the generator's state
        for change in self.as_changes():
            fresh.apply_change(change)
        return fresh

    def _rebuild_blocking(self) -> None:
        """Recompute the blocking index once every record of a snapshot is in."""
        self.blocking = BlockingIndex()
        for rec in sorted(self.jobs.values(), key=lambda r: r.id):
            if rec.state not in TERMINAL:
                self.blocking.job_alive(rec)
            if rec.depends_on_job_ids:
                self.blocking.listed(rec)
        for rec in sorted(self.jobs.values(), key=lambda r: r.id):
            if rec.state is B:
                unmet = [
                    d
                    for d in rec.depends_on_job_ids
                    if (p := self.jobs.get(d)) is not None and p.state is not C
                ]
                self.blocking.block(rec, unmet)

    def _rebuild_lines(self) -> None:
        """Recompute the order-dependent indexes (waiting lines, finished lines) by sorting."""
        for qs in self.queues.values():
            qs.waiting.clear()
            if qs.groups is not None:
                qs.groups.clear_lines()
            qs.completed.clear()
            qs.failed.clear()
        by_priority: dict[int, list[JobRecord]] = {}
        for rec in self.jobs.values():
            if rec.state is W:
                by_priority.setdefault(rec.priority, []).append(rec)
        for priority in sorted(by_priority, reverse=True):
            line = by_priority[priority]
            line.sort(key=_BY_ORDER)
            for rec in line:
                qs = self.queues[rec.queue]
                if rec.group is None:
                    qs.waiting.push_back(rec)
                else:
                    self.grouped(qs).push(rec, back=True)
        finished = [rec for rec in self.jobs.values() if rec.state is C or rec.state is F]
        finished.sort(key=_BY_ORDER)
        for rec in finished:
            qs = self.queues[rec.queue]
            (qs.completed if rec.state is C else qs.failed).push(rec)


def queue_fields(qs: QueueState) -> dict[str, Any]:
    """A queue record's fields: `paused` always (what every version reads), the cap and
    the rate limit only when set."""
    fields: dict[str, Any] = {"paused": qs.paused}
    if qs.concurrency is not None:
        fields["concurrency"] = qs.concurrency
    if qs.limiter is not None:
        fields["limiter"] = qs.limiter.fields()
    if qs.groups is not None:
        fields.update(qs.groups.settings())
    return fields


__all__ = ["Replay", "queue_fields"]


def _never_due(rec: JobRecord, fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` with a delayed job's missing due time read as `MAX_WAIT`, a time no clock
    reaches. actorq before waits were bounded accepted an infinite delay, which the journal
    wrote as null; such a folder opens, the job delayed for good (until promoted or removed)."""
    if fields.get("state", rec.state) is not JobState.DELAYED:
        return fields
    return {**fields, "run_at": MAX_WAIT}
