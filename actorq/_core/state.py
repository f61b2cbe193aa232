"""The core: every job, every index, and every transition. Pure: no I/O, no clock, no awaits.

Theory of operation
-------------------
`CoreState` is a state machine driven by the scheduler actor, its only owner. Each public
method is a transition: it validates its arguments against the current state (raising an
`ActorqError` that names the job, its state and the command, having changed nothing), then
mutates, then leaves behind what it did:

* change records in `changes` (when recording): the journal's content. They are *deltas*
  ("add this record", "set these fields of job N", "delete job N"), not commands, so replay
  needs no validation and no clock, and an old journal replays the same after the rules change;
* lifecycle events in `events` (when someone listens);
* jobs that reached a terminal state or were removed, in `finished`, for the waiters.

The scheduler applies a whole mailbox drain, then takes these buffers with `take_effects()`,
journals the changes as one batch, and only then replies, publishes and dispatches.

Every field write goes through `_change`, which also keeps the indexes: they are a pure
function of the records (`rebuild_indexes` recomputes them from scratch, which is how a
snapshot loads and how the invariant checker tests the incremental upkeep). `now`, and
every random draw (a splitmix64 generator whose state is part of the state), come in from
outside or from the state itself, so replaying the changes rebuilds the same state.

Layout
------
`CoreState` is one class assembled from mixins, one concern per module; each mixin declares
(for mypy only) the attributes and the methods of the others that it uses:

* this module: the state itself, its effect buffers and lookups, the transitions a job's own
  run drives (`take`, `complete`, `fail` and the steps of a held job), and the one writer
  (`_change`) with the index upkeep of each state, looked up by state;
* `admission`: `add`, and the checks that make a batch all or nothing;
* `relations`: what spreads from one job to others (prerequisites, barriers, parents and
  children), carried out by `_settle`;
* `control`: transitions from outside a job's run: the timers (`run_timers`), retention,
  updates, cancel, retry, remove, and the queue-wide commands;
* `replay`: applying change records, snapshots, and rebuilding the indexes from scratch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final

from .._exceptions import IllegalTransitionError, JobNotFoundError, LockError
from . import events as ev
from .admission import Admission
from .blocking import BlockingIndex
from .commands import Change, Command
from .control import STALLED_LIMIT, Control
from .dedup import Dedup, DedupKey
from .finished import FinishedLine
from .groups import GroupControl, Groups, waiting_live
from .handlers import HANDLERS
from .limits import Limiter
from .locks import LockIndex, held_by
from .moves import MOVES as _MOVES
from .moves import move
from .records import FIELD_NAMES, KEEP_ALL, JobRecord, tag_matcher
from .relations import Relations, _fatal_child, _open_children
from .replay import Replay, queue_fields
from .schedulers import SchedulerRecord, Schedulers
from .states import TERMINAL, JobState
from .timed import TimedIndex
from .upkeep import ENTER as _ENTER
from .upkeep import LEAVE as _LEAVE
from .upkeep import MOVED as _MOVED
from .waiting import WaitingLine

W, D, A = JobState.WAITING, JobState.DELAYED, JobState.ACTIVE
#: The empty list `take_effects` hands back for "none": shared, so never appended to.
_NONE: Final[list[Any]] = []
B = JobState.BLOCKED
C, F, X = JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED

#: Fields whose change moves a job within an index even when its state stays the same.
_INDEXED: Final = frozenset({"state", "run_at", "lock_expires_at", "priority", "order"})
_MASK64: Final = (1 << 64) - 1
#: BullMQ keeps the last ten stack traces of a job.
STACKTRACE_LIMIT: Final = 10
_TAKE_FIELDS: Final = ("state", "attempts_started", "processed_at", "lock_token", "lock_expires_at")
#: ``_TAKE(core, qs, rec, A, attempts_started, processed_at, lock_token, lock_expires_at)``.
_TAKE: Final = move("take", W, A, _TAKE_FIELDS)
_TAKE_STALLS: Final = move("take", W, A, (*_TAKE_FIELDS, "max_stalled_count"))
_END_FIELDS: Final = ("state", "attempts_made", "finished_at", "lock_token", "lock_expires_at")
#: ``_COMPLETE(core, qs, rec, C, attempts_made, finished_at, None, None, return_value)``.
_COMPLETE: Final = move("complete", A, C, (*_END_FIELDS, "return_value"))


class QueueState:
    """Per-queue indexes and counters."""

    __slots__ = (
        "completed",
        "concurrency",
        "counts",
        "failed",
        "groups",
        "limiter",
        "name",
        "paused",
        "waiting",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.paused = False
        #: The queue's global concurrency: at most this many of its jobs active at once,
        #: across every worker (None: no cap).
        self.concurrency: int | None = None
        #: Its rate limit, once a worker set one or a processor limited it by hand.
        self.limiter: Limiter | None = None
        self.groups: Groups | None = None  # its grouped waiting jobs, once it had one
        self.waiting = WaitingLine()
        self.counts: dict[JobState, int] = dict.fromkeys(JobState, 0)
        self.completed = FinishedLine(C)
        self.failed = FinishedLine(F)


class CoreState(Admission, Relations, Control, Replay, Schedulers, Dedup, GroupControl):
    """The queue's whole state and its transitions (see the module docstring)."""

    def __init__(self, *, seed: int = 0) -> None:
        self.jobs: dict[int, JobRecord] = {}
        self.queues: dict[str, QueueState] = {}
        self.next_id = 1
        #: No job has an id below this (a bound the id-sorted pages raise as they find it).
        self.lowest_id = 1
        self._next_fifo = 1
        self._next_lifo = -1
        self.rng = seed & _MASK64
        self.delayed = TimedIndex()
        self.locks = LockIndex(self.jobs)
        self.expiries = TimedIndex()
        #: No timer work is due before this time: a lower bound of `next_due`, lowered by
        #: every entry added to the three indexes above and made exact by
        #: `run_timers`. A batch that reads it pays one comparison instead of three lookups.
        self.due_bound = math.inf
        #: Queues a rate limit stopped, and when it lifts (a timer: dispatch tries again).
        self.held: dict[str, float] = {}
        self.idempotency: dict[str, int] = {}
        self.blocking = BlockingIndex()
        self.changes: list[Change] | None = None
        self.events: list[ev.Event] | None = None
        self.finished: list[JobRecord] = []
        #: Active jobs cancelled since the last `take_effects`: (job id, lock token), so the
        #: scheduler can stop their processors.
        self.aborts: list[tuple[int, str]] = []
        #: Jobs that stalled since the engine last looked (it logs them): (record, the lock
        #: token it was held under, why).
        self.stalls: list[tuple[JobRecord, str | None, str]] = []
        # Work the index layer found for the transition layer (live only, never in replay):
        # blocked jobs that may be ready, jobs whose end cascades, children that ended.
        self._live = True
        self._bulk = False  # loading a snapshot: indexes wait for its end
        self._wake: list[int] = []
        self._cascade: list[tuple[JobRecord, str]] = []
        self._ended_children: list[tuple[JobRecord, str]] = []
        #: False once the runtime shuts down: `Take` hands out nothing (not journaled).
        self.dispatching = True
        #: Job schedulers by (queue, scheduler id); see `schedulers`.
        self.schedulers: dict[tuple[str, str], SchedulerRecord] = {}
        self.dedup: dict[tuple[str, str], DedupKey] = {}  # by (queue, key); see `dedup`
        self.dedup_expiries: list[tuple[float, str, str]] = []

    # ------------------------------------------------------------------ the one entry

    def handle(self, command: Command, now: float) -> Any:
        """Apply `command` at time `now` (see `handlers`): its result, or an `ActorqError`
        that names what was wrong, having changed nothing."""
        handler = HANDLERS.get(type(command))
        if handler is None:
            raise TypeError(f"the core has no handler for {command!r}")
        return handler(self, command, now)

    # ------------------------------------------------------------------ effects

    def record_changes(self, on: bool) -> None:
        self.changes = [] if on else None

    def publish_events(self, on: bool) -> None:
        if on and self.events is None:
            self.events = []
        elif not on:
            self.events = None

    def take_effects(self) -> tuple[list[Change], list[ev.Event], list[JobRecord]]:
        """Hand over what the transitions since the last call produced, and start afresh.
        Nothing is allocated for what is empty: the lists handed back then are shared
        empty ones, not to be appended to."""
        changes = self.changes
        if changes:
            self.changes = []
        else:
            changes = _NONE
        events = self.events
        if events:
            self.events = []
        else:
            events = _NONE
        finished = self.finished
        if finished:
            self.finished = []
        return changes, events, finished

    # ------------------------------------------------------------------ lookups

    def get(self, job_id: int) -> JobRecord:
        rec = self.jobs.get(job_id)
        if rec is None:
            raise JobNotFoundError(job_id)
        return rec

    def queue(self, name: str) -> QueueState:
        qs = self.queues.get(name)
        if qs is None:
            qs = self.queues[name] = QueueState(name)
            if self.changes is not None:
                self.changes.append(("queue", name, {"paused": False}))
        return qs

    def counts(self, queue: str) -> dict[JobState, int]:
        qs = self.queues.get(queue)
        return dict(qs.counts) if qs else dict.fromkeys(JobState, 0)

    def next_due(self) -> float | None:
        """The earliest time at which a timer transition has work to do."""
        due: float | None = None
        for index in (self.delayed, self.expiries):
            if index and (due is None or index[0][0] < due):
                due = index[0][0]
        lock = self.locks.earliest()
        if lock is not None and (due is None or lock[0] < due):
            due = lock[0]
        if self.held:
            first = min(self.held.values())
            if due is None or first < due:
                due = first
        return due

    def _hold(self, queue: str, until: float) -> None:
        """The queue's rate limit stopped a take: wake the timer when it lifts."""
        self.held[queue] = until
        self.due_bound = min(self.due_bound, until)

    def select(
        self,
        queue: str,
        states: Iterable[JobState] | None = None,
        name: str | None = None,
        tags: Sequence[str] = (),
        tag_mode: str = "all",
    ) -> Iterator[JobRecord]:
        """Jobs of `queue` matching the filters; waiting ones in dispatch order, others by id."""
        wanted = frozenset(states) if states is not None else frozenset(JobState)
        tagset = frozenset(tags)
        match = tag_matcher(tag_mode, tagset)
        qs = self.queues.get(queue)
        if qs is None:
            return
        if W in wanted:
            for rec in waiting_live(qs, self.jobs):
                if (name is None or rec.name == name) and match(rec.tags):
                    yield rec
        others = wanted - {W}
        if others:
            for rec in self.jobs.values():
                if (
                    rec.queue == queue
                    and rec.state in others
                    and (name is None or rec.name == name)
                    and match(rec.tags)
                ):
                    yield rec

    # ------------------------------------------------------------------ randomness

    def _random(self) -> float:
        """A uniform draw in [0, 1) from splitmix64; the state is journaled with its use."""
        self.rng = (self.rng + 0x9E3779B97F4A7C15) & _MASK64
        z = self.rng
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        z ^= z >> 31
        if self.changes is not None:
            self.changes.append(("rng", self.rng))
        return (z >> 11) / float(1 << 53)

    # ------------------------------------------------------------------ dispatch

    def take(
        self,
        queue: str,
        n: int,
        now: float,
        token: str,
        lock_until: float | None = None,
        max_stalled_count: int = 1,
    ) -> list[JobRecord]:
        """Move up to `n` waiting jobs of `queue` to active under `token`, in dispatch order.

        `lock_until` None means the lock is held by a live processor and renews itself; a time
        means a manual consumer holds it until then unless it extends it.
        """
        qs = self.queues.get(queue)
        if qs is None or qs.paused or n <= 0:
            return []
        if qs.concurrency is not None:
            n = min(n, qs.concurrency - qs.counts[A])
            if n <= 0:
                return []
        limiter = qs.limiter
        if limiter is not None:
            allowed = limiter.allowance(now)
            if allowed is not None and allowed < n:
                n = allowed
            if n <= 0:
                self._hold(qs.name, limiter.blocked_until(now))
                return []
        taken: list[JobRecord] = []
        jobs = self.jobs
        groups = qs.groups
        pop = qs.waiting.pop if groups is None else groups.popper(now)
        events = self.events
        while len(taken) < n:
            rec = pop(jobs)
            if rec is None:
                break
            started = rec.attempts_started + 1
            if rec.max_started_attempts is not None and started > rec.max_started_attempts:
                # As BullMQ: the start that went over the limit counts, and so does its
                # attempt, though no processor ran.
                self._finish_failed(
                    rec,
                    now,
                    f"job started more than max_started_attempts ({rec.max_started_attempts})",
                    "exceed_started_attempts",
                    {"attempts_started": started, "attempts_made": rec.attempts_made + 1},
                )
                continue
            if max_stalled_count == rec.max_stalled_count:
                _TAKE(self, qs, rec, A, started, now, token, lock_until)
            else:
                _TAKE_STALLS(self, qs, rec, A, started, now, token, lock_until, max_stalled_count)
            if events is not None:
                events.append(ev.JobActive(rec.id, rec.queue, rec.name, started))
            taken.append(rec)
        if taken and events is not None and not qs.counts[W]:
            events.append(ev.QueueDrained(queue))
        if groups is not None and (groups.touched or groups.held):
            self._group_windows(qs, groups)
        if limiter is not None and taken:
            limiter.started(len(taken), now)
            self._set_queue(qs)  # the window's count is journaled: it holds across restarts
        if self.schedulers and taken:
            self._scheduled_started(taken, now)
        if self._cascade or self._ended_children or self._wake:
            self._settle(now)
        return taken

    # ------------------------------------------------------------------ outcomes

    def _held(self, job_id: int, token: str | None, command: str, now: float) -> JobRecord:
        """The active job `job_id`, checked to be held by `token` (None: skip the check)."""
        rec = self.jobs.get(job_id)
        if rec is None:
            raise JobNotFoundError(job_id)
        if rec.state is not A:
            if token is None:
                raise IllegalTransitionError(job_id, rec.state, command)
            raise LockError(job_id, f"job is {rec.state}, not active; {command} needs its lock")
        if token is not None:
            if rec.lock_token != token:
                raise LockError(
                    job_id, f"token {token!r} does not hold the lock (held by {rec.lock_token!r})"
                )
            if rec.lock_expires_at is not None and rec.lock_expires_at <= now:
                raise LockError(job_id, f"lock of token {token!r} expired at {rec.lock_expires_at}")
        return rec

    def complete(
        self, job_id: int, token: str | None, value: bytes | None, now: float
    ) -> JobRecord:
        """End the attempt in success. A parent with a child whose failure dooms it, or with
        children still open, fails instead, saying so (BullMQ refuses such a completion)."""
        rec = self._held(job_id, token, "complete", now)
        if rec.children:
            fatal = _fatal_child(rec)
            reason = None
            if fatal is not None:
                reason = f"child job {fatal[0]} failed: {fatal[1]}"
            elif (open_count := _open_children(rec)) > 0:
                reason = (
                    f"job {rec.id} cannot complete with {open_count} unfinished children; "
                    "await job.move_to_waiting_children() first"
                )
            if reason is not None:
                self._change(rec, {"attempts_made": rec.attempts_made + 1}, "complete")
                self._finish_failed(rec, now, reason, "complete")
                self._settle(now)
                return rec
        _COMPLETE(
            self, self.queues[rec.queue], rec, C, rec.attempts_made + 1, now, None, None, value
        )
        if self.events is not None:
            self.events.append(ev.JobCompleted(rec.id, rec.queue, rec.name, value))
        self.finished.append(rec)
        keep = rec.remove_on_complete
        if keep is not KEEP_ALL:
            self._retain(rec, keep)
        if self._cascade or self._ended_children or self._wake:
            self._settle(now)
        return rec

    def fail(
        self,
        job_id: int,
        token: str | None,
        reason: str,
        stacktrace: str | None,
        now: float,
        *,
        unrecoverable: bool = False,
    ) -> JobRecord:
        """End an attempt in failure: retry (after the backoff) while attempts remain."""
        rec = self._held(job_id, token, "fail", now)
        made = rec.attempts_made + 1
        trace = rec.stacktrace
        if stacktrace is not None:
            trace = (*trace, stacktrace)[-STACKTRACE_LIMIT:]
        common = {
            "attempts_made": made,
            "failed_reason": reason,
            "stacktrace": trace,
            "lock_token": None,
            "lock_expires_at": None,
        }
        if unrecoverable or made >= rec.attempts:
            common["state"] = F
            common["finished_at"] = now
            self._change(rec, common, "fail")
            self._after_failed(rec)
            self._settle(now)
            return rec
        wait = (
            rec.backoff.wait(made, self._random() if rec.backoff.jitter else 0.0)
            if (rec.backoff is not None)
            else 0.0
        )
        if wait > 0:
            common["state"] = D
            common["run_at"] = now + wait
        else:
            common["state"] = W
        self._change(rec, common, "fail")
        if self.events is not None:
            self.events.append(
                ev.JobRetrying(rec.id, rec.queue, rec.name, reason, made, rec.run_at)
            )
        self._settle(now)
        return rec

    def _finish_failed(
        self,
        rec: JobRecord,
        now: float,
        reason: str,
        command: str,
        counters: dict[str, Any] | None = None,
    ) -> None:
        changes = {
            "state": F,
            "failed_reason": reason,
            "finished_at": now,
            "lock_token": None,
            "lock_expires_at": None,
        }
        if counters is not None:
            changes.update(counters)
        self._change(rec, changes, command)
        self._after_failed(rec)

    def _after_failed(self, rec: JobRecord) -> None:
        if self.events is not None:
            self.events.append(ev.JobFailed(rec.id, rec.queue, rec.name, rec.failed_reason))
        self.finished.append(rec)
        self._retain(rec, rec.remove_on_fail)

    def move_to_delayed(
        self, job_id: int, token: str | None, run_at: float | None, data: bytes | None, now: float
    ) -> JobRecord:
        """A step: the active job goes to delayed until `run_at` (waiting if None).

        A past `run_at` still goes through delayed and is promoted at once. `data`, when
        given, replaces the job's data in the same transition. `attempts_made` is unchanged.
        """
        rec = self._held(job_id, token, "move_to_delayed", now)
        changes: dict[str, Any] = {"lock_token": None, "lock_expires_at": None}
        if data is not None:
            changes["data"] = data
        if run_at is None:
            changes["state"] = W
        else:
            changes["state"] = D
            changes["run_at"] = max(run_at, now)
        self._change(rec, changes, "move_to_delayed")
        if self.events is not None:
            if run_at is None:
                self.events.append(ev.JobWaiting(rec.id, rec.queue, rec.name, A))
            else:
                self.events.append(ev.JobDelayed(rec.id, rec.queue, rec.name, changes["run_at"]))
        self._settle(now)
        return rec

    def extend_lock(self, job_id: int, token: str, until: float, now: float) -> JobRecord:
        rec = self._held(job_id, token, "extend_lock", now)
        if rec.lock_expires_at is not None:
            self._change(rec, {"lock_expires_at": until}, "extend_lock")
        return rec

    def release_held(self, tokens: frozenset[str], now: float) -> int:
        """Give every job locked under one of `tokens` back to waiting (a manual worker
        closes). A lock already past its expiry is left to the stalled check, which runs
        after the commands of the same batch: that job stalled, and counts it."""
        held = held_by(self.locks, self.jobs, tokens, now)
        for job_id in held:
            rec = self.jobs[job_id]
            assert rec.lock_token is not None
            self.release(job_id, rec.lock_token, now)
        return len(held)

    def release(self, job_id: int, token: str, now: float) -> JobRecord:
        """Give a held job back to waiting unfinished (a consumer closing); no stall counted."""
        rec = self._held(job_id, token, "release", now)
        self._change(rec, {"state": W, "lock_token": None, "lock_expires_at": None}, "release")
        if self.events is not None:
            self.events.append(ev.JobWaiting(rec.id, rec.queue, rec.name, A))
        self._settle(now)
        return rec

    # ------------------------------------------------------------------ the one writer

    def _change(self, rec: JobRecord, changes: dict[str, Any], command: str) -> None:
        """Apply `changes` to `rec`, keep the indexes and counters, record the delta.

        A change of state must be a row of the lifecycle table: that row's function
        (`moves`, written out from the row's `Plan`) does what leaving the old state,
        entering the new one and the move itself do to the indexes, and which order the job
        takes. The hottest transitions (`take`, `complete`) call their rows' functions
        themselves, fetched once for their exact field sets.
        """
        old = rec.state
        new = changes.get("state", old)
        if new is not old:
            try:
                move = _MOVES[command][old][new]
            except KeyError:
                raise AssertionError(
                    f"core bug: {command} moved job {rec.id} {old} -> {new}"
                ) from None
            move(self, rec, changes)
            return
        self._apply(rec, changes)  # the same state: fields, and the indexes they move
        if self.changes is not None:
            self.changes.append(("set", rec.id, changes))

    def _next_order(self, lifo: bool) -> int:
        if lifo:
            order = self._next_lifo
            self._next_lifo -= 1
        else:
            order = self._next_fifo
            self._next_fifo += 1
        return order

    def _apply(self, rec: JobRecord, changes: dict[str, Any]) -> None:
        """A ``set`` change record replayed: the fields, the indexes, no checks."""
        old = rec.state
        reindex = not _INDEXED.isdisjoint(changes)
        if reindex:
            self._unindex(rec)
        for name, value in changes.items():
            setattr(rec, name, value)
        if reindex:
            self._index(rec)
            if rec.state is not old:
                self._moved(rec, old)

    def _moved(self, rec: JobRecord, old: JobState | None) -> None:
        """Index upkeep that depends on where a job came from, not only where it is."""
        new = rec.state
        moved = _MOVED[(old, new)]
        if moved is not None:
            moved(self, rec, old)
        if (rec.parent_id is not None or rec.children) and self._live:
            was_alive = old is not None and old not in TERMINAL
            self._moved_in_tree(rec, old, was_alive, new not in TERMINAL)

    def _moved_in_tree(
        self, rec: JobRecord, old: JobState | None, was_alive: bool, alive: bool
    ) -> None:
        """A parent or a child moved: what its family must hear of it (live only)."""
        if rec.parent_id is not None:
            if was_alive and not alive:
                self._ended_children.append((rec, rec.state.value))
            elif alive and old is not None and not was_alive:
                self._ended_children.append((rec, "retried"))
        if old is A and alive and rec.children:
            self._ended_children.append((rec, "check-parent"))

    def _set_queue(self, qs: QueueState, **settings: Any) -> None:
        """Change a queue's settings (`paused`, `concurrency`) and record them all."""
        for name, value in settings.items():
            setattr(qs, name, value)
        if self.changes is not None:
            self.changes.append(("queue", qs.name, queue_fields(qs)))

    def _insert(self, rec: JobRecord) -> None:
        self.jobs[rec.id] = rec
        if rec.idempotency_key is not None:
            self.idempotency[rec.idempotency_key] = rec.id
        if rec.depends_on_job_ids:
            self.blocking.listed(rec)
        self._index(rec)
        self._moved(rec, None)

    def _remove(self, rec: JobRecord) -> None:
        previous = rec.state
        if rec.deduplication_id is not None:
            self._dedup_removed(rec, previous in TERMINAL)
        fallen = self._remove_quietly(rec)
        if previous not in TERMINAL:
            # Live only (replay has these as their own change records): what the removal of
            # an unfinished job sets in motion.
            if fallen:
                self._wake_barrier_waiters(fallen)
            self._cascade.append((rec, "was removed"))
            if rec.parent_id is not None:
                self._ended_children.append((rec, "removed"))
        if self.changes is not None:
            self.changes.append(("del", rec.id))
        if self.events is not None:
            self.events.append(ev.JobRemoved(rec.id, rec.queue, rec.name, previous))
        self.finished.append(rec)

    def _remove_quietly(self, rec: JobRecord) -> list[frozenset[str]]:
        """Drop a record and its index entries (replay's `del`); returns the barriers whose
        holder count fell."""
        previous = rec.state
        self._unindex(rec)
        del self.jobs[rec.id]
        if rec.idempotency_key is not None and self.idempotency.get(rec.idempotency_key) == rec.id:
            del self.idempotency[rec.idempotency_key]
        if rec.depends_on_job_ids:
            self.blocking.unlisted(rec)
        return self.blocking.job_gone(rec) if previous not in TERMINAL else []

    def _index(self, rec: JobRecord) -> None:
        qs = self.queues[rec.queue]
        qs.counts[rec.state] += 1
        _ENTER[rec.state](self, qs, rec)

    def _unindex(self, rec: JobRecord) -> None:
        qs = self.queues[rec.queue]
        qs.counts[rec.state] -= 1
        _LEAVE[rec.state](self, qs, rec)


__all__ = ["FIELD_NAMES", "STALLED_LIMIT", "Change", "CoreState", "QueueState"]
