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
"""

from __future__ import annotations

import math
import operator
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final

from .._exceptions import (
    IllegalTransitionError,
    InvalidDependencyError,
    InvalidOptionError,
    JobNotFoundError,
    LockError,
)
from . import events as ev
from .blocking import BlockingIndex
from .records import (
    CONTINUED,
    FAILED,
    FIELD_NAMES,
    IGNORED,
    KEEP_ALL,
    OPEN_STATUSES,
    PENDING,
    PROCESSED,
    UNRESOLVED,
    JobRecord,
    JobSpec,
    Retention,
)
from .states import ACTIVE_OR_IDLE, LEGAL, TERMINAL, TRANSITIONS, JobState
from .timed import TimedIndex
from .waiting import WaitingLine

W, D, A = JobState.WAITING, JobState.DELAYED, JobState.ACTIVE
WC, B = JobState.WAITING_CHILDREN, JobState.BLOCKED
C, F, X = JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED

#: Fields whose change moves a job within an index even when its state stays the same.
_INDEXED: Final = frozenset({"state", "run_at", "lock_expires_at", "priority", "order"})
_MASK64: Final = (1 << 64) - 1
_BY_ORDER: Final = operator.attrgetter("order")
#: BullMQ keeps the last ten stack traces of a job.
STACKTRACE_LIMIT: Final = 10
#: BullMQ's reason, kept word for word so code matching on it keeps working.
STALLED_LIMIT: Final = "job stalled more than allowable limit"

Change = tuple[Any, ...]


class QueueState:
    """Per-queue indexes and counters."""

    __slots__ = ("completed", "counts", "failed", "name", "paused", "waiting")

    def __init__(self, name: str) -> None:
        self.name = name
        self.paused = False
        self.waiting = WaitingLine()
        self.counts: dict[JobState, int] = dict.fromkeys(JobState, 0)
        # Finished jobs in the order they finished, for count-based retention: (order, id).
        # Entries of jobs removed or retried since are stale and skipped (their order, stamped
        # anew at every finish, no longer matches).
        self.completed: deque[tuple[float, int]] = deque()
        self.failed: deque[tuple[float, int]] = deque()


class CoreState:
    def __init__(self, *, seed: int = 0) -> None:
        self.jobs: dict[int, JobRecord] = {}
        self.queues: dict[str, QueueState] = {}
        self.next_id = 1
        self._next_fifo = 1
        self._next_lifo = -1
        self.rng = seed & _MASK64
        self.delayed = TimedIndex()
        self.locks = TimedIndex()
        self.expiries = TimedIndex()
        #: No timer work is due before this time: a lower bound of `next_due`, lowered by
        #: every entry added to the three timed indexes above and made exact by
        #: `run_timers`. A batch that reads it pays one comparison instead of three lookups.
        self.due_bound = math.inf
        self.idempotency: dict[str, int] = {}
        self.blocking = BlockingIndex()
        self.changes: list[Change] | None = None
        self.events: list[ev.Event] | None = None
        self.finished: list[JobRecord] = []
        #: Active jobs cancelled since the last `take_effects`: (job id, lock token), so the
        #: scheduler can stop their processors.
        self.aborts: list[tuple[int, str]] = []
        # Work the index layer found for the transition layer (live only, never in replay):
        # blocked jobs that may be ready, jobs whose end cascades, children that ended.
        self._live = True
        self._bulk = False  # loading a snapshot: indexes wait for its end
        self._wake: list[int] = []
        self._cascade: list[tuple[JobRecord, str]] = []
        self._ended_children: list[tuple[JobRecord, str]] = []

    # ------------------------------------------------------------------ effects

    def record_changes(self, on: bool) -> None:
        self.changes = [] if on else None

    def publish_events(self, on: bool) -> None:
        if on and self.events is None:
            self.events = []
        elif not on:
            self.events = None

    def take_effects(self) -> tuple[list[Change], list[ev.Event], list[JobRecord]]:
        """Hand over what the transitions since the last call produced, and start afresh."""
        changes = self.changes
        if changes is not None and changes:
            self.changes = []
        events = self.events
        if events is not None and events:
            self.events = []
        finished = self.finished
        if finished:
            self.finished = []
        return changes or [], events or [], finished

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
        for index in (self.delayed, self.locks, self.expiries):
            if index and (due is None or index[0][0] < due):
                due = index[0][0]
        return due

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
        match = _tag_matcher(tag_mode, tagset)
        qs = self.queues.get(queue)
        if qs is None:
            return
        if W in wanted:
            for rec in qs.waiting.live(self.jobs):
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

    # ------------------------------------------------------------------ add

    def add(self, specs: Sequence[JobSpec], now: float) -> list[tuple[JobRecord, bool]]:
        """Add a batch atomically: every spec is checked before any is applied.

        Returns ``(record, created)`` per spec; `created` is False where an idempotency key
        matched a job that already exists (that job is returned, with its own data).
        """
        if len(specs) == 1:
            spec = specs[0]
            if (
                spec.idempotency_key is None
                and spec.parent_id is None
                and spec.parent_ref is None
                and not spec.depends_on_job_ids
                and not spec.depends_on_batch_refs
                and not spec.depends_on_tags
            ):
                # One job that waits on nothing and names nothing: none of the checks or
                # orderings below can apply (a job that cannot be blocked closes no cycle).
                job_id = self.next_id
                self.next_id = job_id + 1
                return [(self._new_record(spec, now, [], job_id), True)]
        for i, spec in enumerate(specs):
            self._check_spec(i, spec, specs)
        _check_batch_cycles(specs)
        self._check_barrier_deadlock(specs)

        # Ids follow the batch's order; records are created prerequisites (and parents)
        # first, so every job a new job waits on exists when it is indexed, here and in replay.
        ids: list[int] = []
        created: list[bool] = []
        first_with_key: dict[str, int] = {}
        next_id = self.next_id
        for i, spec in enumerate(specs):
            key = spec.idempotency_key
            existing = None
            if key is not None:
                existing = self.idempotency.get(key)
                if existing is None and key in first_with_key:
                    existing = ids[first_with_key[key]]
            if existing is not None:
                ids.append(existing)
                created.append(False)
                continue
            if key is not None:
                first_with_key[key] = i
            ids.append(next_id)
            created.append(True)
            next_id += 1
        # A flow parent waits only for children this batch creates: a child deduplicated onto
        # an existing job (idempotency key) is that job, not a new child of this parent.
        with_children = {
            spec.parent_ref
            for i, spec in enumerate(specs)
            if created[i] and spec.parent_ref is not None
        }
        for i in _creation_order(specs, created):
            self._new_record(specs[i], now, ids, ids[i], wait_children=i in with_children)
        self.next_id = next_id
        return [(self.jobs[ids[i]], created[i]) for i in range(len(specs))]

    def _check_spec(self, i: int, spec: JobSpec, specs: Sequence[JobSpec]) -> None:
        where = f"jobs[{i}]." if len(specs) > 1 else ""
        if spec.parent_id is not None:
            parent = self.jobs.get(spec.parent_id)
            if parent is None:
                raise InvalidDependencyError(f"{where}parent: job {spec.parent_id} does not exist")
            if parent.state in TERMINAL:
                raise InvalidDependencyError(
                    f"{where}parent: job {spec.parent_id} is already {parent.state}"
                )
        if spec.parent_ref is not None and not 0 <= spec.parent_ref < i:
            raise InvalidDependencyError(
                f"{where}parent: a flow parent must come before its children in the batch"
            )
        for dep in spec.depends_on_job_ids:
            prereq = self.jobs.get(dep)
            if prereq is None:
                raise InvalidDependencyError(f"{where}depends_on.job_ids: job {dep} does not exist")
            if prereq.state is F or prereq.state is X:
                raise InvalidDependencyError(
                    f"{where}depends_on.job_ids: job {dep} is already {prereq.state}, "
                    "so this job could never run"
                )
        for ref in spec.depends_on_batch_refs:
            if not 0 <= ref < len(specs):
                raise InvalidOptionError(
                    f"{where}depends_on.job_ids", f"batch_ref({ref})", "out of the batch"
                )
            if ref == i:
                raise InvalidDependencyError(f"{where}depends_on: a job cannot depend on itself")

    def _check_barrier_deadlock(self, specs: Sequence[JobSpec]) -> None:
        """Reject a batch that would leave jobs blocked on each other forever.

        A blocked job waits on its unmet prerequisites and on the holders of its barrier
        (unfinished jobs whose tags are a superset). Only blocked jobs can wait in a circle,
        so one depth-first search over the new jobs and the blocked jobs they reach finds any
        cycle the batch would close, in time linear in what it visits (bounded; a tangle past
        the bound is let through and shows as jobs that stay blocked).
        """
        blocking = self.blocking
        any_barrier = any(spec.depends_on_tags for spec in specs)
        if not any_barrier and not blocking.barrier_waiters:
            return
        by_tag = _batch_tags(specs)
        jobs = self.jobs
        Node = tuple[bool, int]  # (is new, batch index or job id)

        def holders(barrier: frozenset[str], me: Node) -> list[Node]:
            out: list[Node] = [
                (True, j) for j in _batch_holders(specs, by_tag, barrier) if (True, j) != me
            ]
            for job_id in blocking.holder_ids(barrier):
                held = jobs.get(job_id)
                if held is not None and held.state is B and (False, job_id) != me:
                    out.append((False, job_id))
            return out

        def waits_on(node: Node) -> list[Node]:
            is_new, key = node
            if is_new:
                spec = specs[key]
                out: list[Node] = [(True, j) for j in spec.depends_on_batch_refs]
                deps: Iterable[int] = spec.depends_on_job_ids
                barrier = frozenset(spec.depends_on_tags)
            else:
                rec = jobs[key]
                out = []
                deps = rec.depends_on_job_ids
                barrier = frozenset(rec.depends_on_tags)
            for dep in deps:
                prereq = jobs.get(dep)
                if prereq is not None and prereq.state is B:
                    out.append((False, dep))
            if barrier:
                out.extend(holders(barrier, node))
            return out

        colour: dict[Node, int] = {}  # 1 on the path, 2 done
        budget = 200_000
        for start in range(len(specs)):
            root: Node = (True, start)
            if root in colour:
                continue
            colour[root] = 1
            path: list[Node] = [root]
            stack = [iter(waits_on(root))]
            while stack:
                nxt = next(stack[-1], None)
                if nxt is None:
                    colour[path.pop()] = 2
                    stack.pop()
                    continue
                budget -= 1
                if budget < 0:
                    return
                seen = colour.get(nxt)
                if seen == 1:
                    cycle = path[path.index(nxt) :]
                    raise InvalidDependencyError(self._deadlock_message(specs, cycle))
                if seen is None:
                    colour[nxt] = 1
                    path.append(nxt)
                    stack.append(iter(waits_on(nxt)))

    def _deadlock_message(self, specs: Sequence[JobSpec], cycle: list[tuple[bool, int]]) -> str:
        for is_new, key in cycle:
            tags = specs[key].depends_on_tags if is_new else self.jobs[key].depends_on_tags
            if tags:
                where = f"jobs[{key}]" if is_new else f"job {key}"
                names = ", ".join(tags)
                break
        else:  # pragma: no cover - a cycle without a barrier is caught as a batch cycle
            where, names = "jobs", ""
        return (
            f"{where}.depends_on.tags: the barrier [{names}] can never clear: "
            "jobs blocked on each other's tags would wait forever"
        )

    def _new_record(
        self,
        spec: JobSpec,
        now: float,
        batch_ids: list[int],
        job_id: int,
        *,
        wait_children: bool = False,
    ) -> JobRecord:
        run_at = spec.run_at
        if run_at is None and spec.delay:
            run_at = now + spec.delay
        deps = spec.depends_on_job_ids + tuple(batch_ids[r] for r in spec.depends_on_batch_refs)
        parent_id = spec.parent_id if spec.parent_ref is None else batch_ids[spec.parent_ref]
        rec = JobRecord(
            id=job_id,
            name=spec.name,
            queue=spec.queue,
            data=spec.data,
            state=W,
            priority=spec.priority,
            tags=spec.tags,
            run_at=run_at,
            attempts=spec.attempts,
            created_at=now,
            parent_id=parent_id,
            depends_on_job_ids=deps,
            depends_on_tags=spec.depends_on_tags,
            idempotency_key=spec.idempotency_key,
            backoff=spec.backoff,
            timeout=spec.timeout,
            lifo=spec.lifo,
            remove_on_complete=spec.remove_on_complete,
            remove_on_fail=spec.remove_on_fail,
            max_started_attempts=spec.max_started_attempts,
            on_child_failure=spec.on_child_failure,
        )
        # Not yet inserted: the index does not count this job among its barrier's holders.
        blocked = any((p := self.jobs.get(d)) is not None and p.state is not C for d in deps) or (
            bool(rec.depends_on_tags) and not self.blocking.barrier_clear(rec, counted=False)
        )
        if blocked:
            rec.state = B
        elif spec.wait_children and wait_children:
            rec.state = WC
        elif run_at is not None and run_at > now:
            rec.state = D
        else:
            rec.order = self._next_order(rec.lifo)
        self.queue(spec.queue)
        self._insert(rec)
        if self.changes is not None:
            self.changes.append(("add", rec.fields()))
        if self.events is not None:
            self.events.append(ev.JobAdded(rec.id, rec.queue, rec.name, rec.state))
        if parent_id is not None:
            self._set_child(self.jobs[parent_id], rec.id, PENDING, None)
        return rec

    def _next_order(self, lifo: bool) -> int:
        if lifo:
            order = self._next_lifo
            self._next_lifo -= 1
        else:
            order = self._next_fifo
            self._next_fifo += 1
        return order

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
        taken: list[JobRecord] = []
        jobs = self.jobs
        pop = qs.waiting.pop
        counts = qs.counts
        events = self.events
        while len(taken) < n:
            rec = pop(jobs)
            if rec is None:
                break
            started = rec.attempts_started + 1
            if rec.max_started_attempts is not None and started > rec.max_started_attempts:
                self._finish_failed(
                    rec,
                    now,
                    f"job started more than max_started_attempts ({rec.max_started_attempts})",
                    "exceed_started_attempts",
                )
                continue
            if max_stalled_count == rec.max_stalled_count:
                # `_change` for waiting → active, spelled out: every job passes here, and the
                # generic path (a dict, a legality check, the index dispatch) costs twice the
                # work. A waiting job's line entry goes stale by itself; only the counts and
                # the lock index follow. Replay applies the same delta through `_apply`.
                counts[W] -= 1
                counts[A] += 1
                rec.state = A
                rec.attempts_started = started
                rec.processed_at = now
                rec.lock_token = token
                rec.lock_expires_at = lock_until
                if lock_until is not None:
                    self.locks.add((lock_until, rec.id))
                    self.due_bound = min(self.due_bound, lock_until)
                if self.changes is not None:
                    self.changes.append(
                        (
                            "set",
                            rec.id,
                            {
                                "state": A,
                                "attempts_started": started,
                                "processed_at": now,
                                "lock_token": token,
                                "lock_expires_at": lock_until,
                            },
                        )
                    )
            else:
                self._change(
                    rec,
                    {
                        "state": A,
                        "attempts_started": started,
                        "processed_at": now,
                        "lock_token": token,
                        "lock_expires_at": lock_until,
                        "max_stalled_count": max_stalled_count,
                    },
                    "take",
                )
            if events is not None:
                events.append(ev.JobActive(rec.id, rec.queue, rec.name, started))
            taken.append(rec)
        if not counts[W] and taken and events is not None:
            events.append(ev.QueueDrained(queue))
        qs.waiting.maybe_compact(jobs, counts[W])
        if self._cascade or self._ended_children or self._wake:
            self._settle(now)
        return taken

    def run_timers(self, now: float) -> None:
        """Every timer transition due at `now`: delayed jobs promoted, expired locks
        stalled, expired retention removed. Before `due_bound`, a single comparison."""
        if now < self.due_bound:
            return
        self.promote_due(now)
        self.expire_locks(now)
        self.expire_retention(now)
        due = self.next_due()
        self.due_bound = math.inf if due is None else due

    def promote_due(self, now: float) -> int:
        """Move every delayed job whose time has come to waiting."""
        moved = 0
        delayed = self.delayed
        while delayed and delayed[0][0] <= now:
            rec = self.jobs[delayed[0][1]]
            self._change(rec, {"state": W}, "promote")
            if self.events is not None:
                self.events.append(ev.JobWaiting(rec.id, rec.queue, rec.name, D))
            moved += 1
        return moved

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
        self._complete_one(rec, value, now)
        if self.events is not None:
            self.events.append(ev.JobCompleted(rec.id, rec.queue, rec.name, value))
        self.finished.append(rec)
        keep = rec.remove_on_complete
        if keep is not KEEP_ALL:
            self._retain(rec, keep)
        if self._cascade or self._ended_children or self._wake:
            self._settle(now)
        return rec

    def _complete_one(self, rec: JobRecord, value: bytes | None, now: float) -> None:
        """`_change` for active → completed, spelled out (see `take`)."""
        qs = self.queues[rec.queue]
        counts = qs.counts
        counts[A] -= 1
        counts[C] += 1
        if rec.lock_expires_at is not None:
            self.locks.remove((rec.lock_expires_at, rec.id))
        made = rec.attempts_made + 1
        order = self._next_order(False)
        rec.state = C
        rec.attempts_made = made
        rec.finished_at = now
        rec.return_value = value
        rec.lock_token = None
        rec.lock_expires_at = None
        rec.order = order
        qs.completed.append((order, rec.id))
        age = rec.remove_on_complete.age
        if age is not None:
            self.expiries.add((now + age, rec.id))
            self.due_bound = min(self.due_bound, now + age)
        # `_moved(rec, A)` for this one move: a live job ends, and it completed.
        if rec.tags:
            fallen = self.blocking.job_gone(rec)
            if self._live and fallen:
                self._wake_barrier_waiters(fallen)
        if rec.id in self.blocking.dependents:
            released = self.blocking.completed(rec.id)
            if self._live:
                self._wake.extend(released)
        if self._live and rec.parent_id is not None:
            self._ended_children.append((rec, C.value))
        if self.changes is not None:
            self.changes.append(
                (
                    "set",
                    rec.id,
                    {
                        "state": C,
                        "attempts_made": made,
                        "finished_at": now,
                        "return_value": value,
                        "lock_token": None,
                        "lock_expires_at": None,
                        "order": order,
                    },
                )
            )

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

    def _finish_failed(self, rec: JobRecord, now: float, reason: str, command: str) -> None:
        self._change(
            rec,
            {
                "state": F,
                "failed_reason": reason,
                "finished_at": now,
                "lock_token": None,
                "lock_expires_at": None,
            },
            command,
        )
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

    def release(self, job_id: int, token: str, now: float) -> JobRecord:
        """Give a held job back to waiting unfinished (a consumer closing); no stall counted."""
        rec = self._held(job_id, token, "release", now)
        self._change(rec, {"state": W, "lock_token": None, "lock_expires_at": None}, "release")
        if self.events is not None:
            self.events.append(ev.JobWaiting(rec.id, rec.queue, rec.name, A))
        self._settle(now)
        return rec

    def expire_locks(self, now: float) -> int:
        """Every job whose lock expired by `now` stalls: back to waiting, or failed."""
        stalled = 0
        locks = self.locks
        while locks and locks[0][0] <= now:
            self._stall(self.jobs[locks[0][1]], now)
            stalled += 1
        if stalled:
            self._settle(now)
        return stalled

    def stall_all_active(self, now: float) -> int:
        """After a restart, every job that was active stalled: its holder is gone."""
        held = [rec for rec in self.jobs.values() if rec.state is A]
        for rec in held:
            self._stall(rec, now)
        self._settle(now)
        return len(held)

    def _stall(self, rec: JobRecord, now: float) -> None:
        count = rec.stalled_counter + 1
        if count > rec.max_stalled_count:
            self._change(
                rec,
                {
                    "state": F,
                    "stalled_counter": count,
                    "attempts_made": rec.attempts_made + 1,
                    "failed_reason": STALLED_LIMIT,
                    "finished_at": now,
                    "lock_token": None,
                    "lock_expires_at": None,
                },
                "stall",
            )
            self._after_failed(rec)
            return
        self._change(
            rec,
            {"state": W, "stalled_counter": count, "lock_token": None, "lock_expires_at": None},
            "stall",
        )
        if self.events is not None:
            self.events.append(ev.JobStalled(rec.id, rec.queue, rec.name, count))

    # ------------------------------------------------------------------ updates

    def update_data(self, job_id: int, data: bytes) -> JobRecord:
        rec = self.get(job_id)
        self._change(rec, {"data": data}, "update_data")
        return rec

    def update_progress(self, job_id: int, progress: bytes) -> JobRecord:
        rec = self.get(job_id)
        self._change(rec, {"progress": progress}, "update_progress")
        if self.events is not None:
            self.events.append(ev.JobProgress(rec.id, rec.queue, rec.name, progress))
        return rec

    def add_log(self, job_id: int, line: str, keep: int | None = None) -> int:
        rec = self.get(job_id)
        logs = (*rec.logs, line)
        if keep is not None:
            logs = logs[-keep:] if keep > 0 else ()
        self._change(rec, {"logs": logs}, "log")
        return len(logs)

    # ------------------------------------------------------------------ queue control

    def cancel(self, job_id: int, now: float, reason: str | None = None) -> JobRecord:
        """Cancel a job that has not finished; its blocked dependents and its open children
        are cancelled too, transitively, each with a reason naming the cause."""
        rec = self.get(job_id)
        if rec.state not in ACTIVE_OR_IDLE:
            raise IllegalTransitionError(job_id, rec.state, "cancel")
        self._cancel(rec, now, reason)
        self._settle(now)
        return rec

    def _cancel(self, rec: JobRecord, now: float, reason: str | None) -> None:
        if rec.state is A and rec.lock_token is not None:
            self.aborts.append((rec.id, rec.lock_token))
        self._change(
            rec,
            {
                "state": X,
                "finished_at": now,
                "failed_reason": reason,
                "lock_token": None,
                "lock_expires_at": None,
            },
            "cancel",
        )
        if self.events is not None:
            self.events.append(ev.JobCancelled(rec.id, rec.queue, rec.name, reason))
        self.finished.append(rec)

    def retry(self, job_id: int, now: float, *, reset_attempts: bool = False) -> JobRecord:
        """Run a finished job again (BullMQ's `job.retry`); counters kept unless reset."""
        rec = self.get(job_id)
        if rec.state not in TERMINAL:
            raise IllegalTransitionError(job_id, rec.state, "retry", "only finished jobs retry")
        changes: dict[str, Any] = {
            "state": W,
            "finished_at": None,
            "failed_reason": None,
            "return_value": None,
            "run_at": None,
        }
        if reset_attempts:
            changes["attempts_made"] = 0
            changes["attempts_started"] = 0
        previous = rec.state
        self._change(rec, changes, "retry")
        if self.events is not None:
            self.events.append(ev.JobWaiting(rec.id, rec.queue, rec.name, previous))
        self._settle(now)
        return rec

    def remove(self, job_id: int, now: float) -> JobRecord:
        """Remove a job that is not active. Removing an unfinished job cancels its blocked
        dependents and its open children (transitively), as cancelling it would."""
        rec = self.get(job_id)
        if rec.state is A:
            raise IllegalTransitionError(
                job_id, rec.state, "remove", "an active job is held by a worker; cancel it first"
            )
        self._remove(rec)
        self._settle(now)
        return rec

    def pause(self, queue: str) -> None:
        qs = self.queue(queue)
        if not qs.paused:
            self._set_queue(qs, paused=True)
            if self.events is not None:
                self.events.append(ev.QueuePaused(queue))

    def resume(self, queue: str) -> None:
        qs = self.queue(queue)
        if qs.paused:
            self._set_queue(qs, paused=False)
            if self.events is not None:
                self.events.append(ev.QueueResumed(queue))

    def drain(self, queue: str, now: float, *, delayed: bool = False) -> int:
        """Remove the queue's waiting jobs (and delayed ones when asked), as BullMQ does."""
        states = {W, D} if delayed else {W}
        doomed = list(self.select(queue, states))
        for rec in doomed:
            if rec.id in self.jobs:  # a cascade may have taken it already
                self._remove(rec)
        self._settle(now)
        return len(doomed)

    def clean(
        self, queue: str, grace: float, limit: int | None, state: JobState, now: float
    ) -> int:
        """Remove up to `limit` jobs in `state` older than `grace` seconds (BullMQ's clean).

        Age is measured from `finished_at` for finished jobs and `created_at` otherwise.
        """
        if state is A:
            raise InvalidOptionError("state", state.value, "active jobs cannot be cleaned")
        removed = 0
        for rec in list(self.select(queue, [state])):
            if limit is not None and removed >= limit:
                break
            stamp = rec.finished_at if rec.finished_at is not None else rec.created_at
            if stamp <= now - grace and rec.id in self.jobs:
                self._remove(rec)
                removed += 1
        self._settle(now)
        return removed

    # ------------------------------------------------------------------ retention

    def _retain(self, rec: JobRecord, keep: Retention) -> None:
        if keep.keeps_all:
            return
        if keep.count == 0:
            self._remove(rec)
            return
        if keep.count is not None:
            qs = self.queues[rec.queue]
            state = rec.state
            line = qs.completed if state is C else qs.failed
            while qs.counts[state] > keep.count and line:
                stamp, job_id = line.popleft()
                old = self.jobs.get(job_id)
                if old is not None and old.state is state and old.order == stamp:
                    self._remove(old)

    def expire_retention(self, now: float) -> int:
        """Remove finished jobs whose `age` retention has run out."""
        removed = 0
        while self.expiries and self.expiries[0][0] <= now:
            self._remove(self.jobs[self.expiries[0][1]])
            removed += 1
        return removed

    # ------------------------------------------------------------------ consequences

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

    # ------------------------------------------------------------------ the one writer

    def _change(self, rec: JobRecord, changes: dict[str, Any], command: str) -> None:
        """Apply `changes` to `rec`, keep the indexes and counters, record the delta."""
        old = rec.state
        new = changes.get("state", old)
        if new is not old:
            if (old, new) not in LEGAL or old not in TRANSITIONS[command]:
                raise AssertionError(f"core bug: {command} moved job {rec.id} {old} -> {new}")
            if "order" not in changes:
                # `order` places a job in its waiting line while it waits, and in its
                # finished line once it completes or fails (for count retention).
                if new is W:
                    changes["order"] = self._next_order(rec.lifo)
                elif new is C or new is F:
                    changes["order"] = self._next_order(False)
        self._apply(rec, changes)
        if self.changes is not None:
            self.changes.append(("set", rec.id, changes))

    def _apply(self, rec: JobRecord, changes: dict[str, Any]) -> None:
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
        was_alive = old is not None and old not in TERMINAL
        alive = new not in TERMINAL
        if alive and not was_alive:
            self.blocking.job_alive(rec)
        elif was_alive and not alive:
            fallen = self.blocking.job_gone(rec)
            if self._live and fallen:
                self._wake_barrier_waiters(fallen)
        if new is C:
            released = self.blocking.completed(rec.id)
            if self._live:
                self._wake.extend(released)
        elif old is C and alive:  # a completed job retried by hand: a scan, but a rare one
            self.blocking.uncompleted(rec.id, (r for r in self.jobs.values() if r.state is B))
        if not self._live:
            return
        if new is F or new is X:
            self._cascade.append((rec, "failed" if new is F else "was cancelled"))
        if rec.parent_id is not None:
            if was_alive and not alive:
                self._ended_children.append((rec, new.value))
            elif alive and old is not None and not was_alive:
                self._ended_children.append((rec, "retried"))
        if old is A and alive and rec.children:
            self._ended_children.append((rec, "check-parent"))

    def _set_queue(self, qs: QueueState, *, paused: bool) -> None:
        qs.paused = paused
        if self.changes is not None:
            self.changes.append(("queue", qs.name, {"paused": paused}))

    def _insert(self, rec: JobRecord) -> None:
        self.jobs[rec.id] = rec
        if rec.idempotency_key is not None:
            self.idempotency[rec.idempotency_key] = rec.id
        self._index(rec)
        self._moved(rec, None)

    def _remove(self, rec: JobRecord) -> None:
        previous = rec.state
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

    def _index(self, rec: JobRecord) -> None:
        qs = self.queues[rec.queue]
        state = rec.state
        qs.counts[state] += 1
        if state is W:
            qs.waiting.push(rec)
        elif state is D:
            assert rec.run_at is not None
            self.delayed.add((rec.run_at, rec.id))
            self.due_bound = min(self.due_bound, rec.run_at)
        elif state is A:
            if rec.lock_expires_at is not None:
                self.locks.add((rec.lock_expires_at, rec.id))
                self.due_bound = min(self.due_bound, rec.lock_expires_at)
        elif state is B:
            jobs = self.jobs
            unmet = [
                d
                for d in rec.depends_on_job_ids
                if (p := jobs.get(d)) is not None and p.state is not C
            ]
            self.blocking.block(rec, unmet)
        elif state is C or state is F:
            assert rec.finished_at is not None
            (qs.completed if state is C else qs.failed).append((rec.order, rec.id))
            keep = rec.remove_on_complete if state is C else rec.remove_on_fail
            if keep.age is not None:
                self.expiries.add((rec.finished_at + keep.age, rec.id))
                self.due_bound = min(self.due_bound, rec.finished_at + keep.age)

    def _unindex(self, rec: JobRecord) -> None:
        qs = self.queues[rec.queue]
        state = rec.state
        qs.counts[state] -= 1
        # A waiting entry goes stale by itself once the record leaves waiting.
        if state is D:
            assert rec.run_at is not None
            self.delayed.remove((rec.run_at, rec.id))
        elif state is A:
            if rec.lock_expires_at is not None:
                self.locks.remove((rec.lock_expires_at, rec.id))
        elif state is B:
            self.blocking.unblock(rec)
        elif state is C or state is F:
            assert rec.finished_at is not None
            keep = rec.remove_on_complete if state is C else rec.remove_on_fail
            if keep.age is not None:
                self.expiries.discard((rec.finished_at + keep.age, rec.id))

    # ------------------------------------------------------------------ replay

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
            self._apply(self.jobs[change[1]], fields)
            order = fields.get("order")
            if order is not None:
                self._see_order(order)
        elif kind == "add":
            rec = JobRecord.from_fields(change[1])
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
            self.queue(change[1]).paused = bool(change[2]["paused"])
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
        queues = self.queues
        for rec in self.jobs.values():
            state = rec.state
            queues[rec.queue].counts[state] += 1
            if state is D:
                assert rec.run_at is not None
                delayed.append((rec.run_at, rec.id))
            elif state is A:
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
        self.locks = TimedIndex(locks)
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
            "queues": {name: qs.paused for name, qs in sorted(self.queues.items())},
            "next_id": self.next_id,
            "rng": self.rng,
            "order": (self._next_fifo, self._next_lifo),
        }

    def index_view(self) -> dict[str, Any]:
        """The indexes as plain values, to compare the incremental ones with a rebuild."""
        return {
            "waiting": {
                name: [rec.id for rec in qs.waiting.live(self.jobs)]
                for name, qs in sorted(self.queues.items())
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
        out.extend(("queue", name, {"paused": qs.paused}) for name, qs in self.queues.items())
        out.extend(("add", rec.fields()) for rec in self.jobs.values())
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

    def rebuild_indexes(self) -> CoreState:
        """A new state holding these records with indexes computed from scratch."""
        fresh = CoreState(seed=0)
        for change in self.as_changes():
            fresh.apply_change(change)
        return fresh

    def _wake_barrier_waiters(self, fallen: list[frozenset[str]]) -> None:
        """Barriers whose holder count fell: their waiters may be free now."""
        waiters = self.blocking.barrier_waiters
        for barrier in fallen:
            self._wake.extend(waiters.get(barrier, ()))

    def _remove_quietly(self, rec: JobRecord) -> list[frozenset[str]]:
        """Drop a record and its index entries (replay's `del`); returns the barriers whose
        holder count fell."""
        previous = rec.state
        self._unindex(rec)
        del self.jobs[rec.id]
        if rec.idempotency_key is not None and self.idempotency.get(rec.idempotency_key) == rec.id:
            del self.idempotency[rec.idempotency_key]
        return self.blocking.job_gone(rec) if previous not in TERMINAL else []

    def _rebuild_blocking(self) -> None:
        """Recompute the blocking index once every record of a snapshot is in."""
        self.blocking = BlockingIndex()
        for rec in sorted(self.jobs.values(), key=lambda r: r.id):
            if rec.state not in TERMINAL:
                self.blocking.job_alive(rec)
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
                self.queues[rec.queue].waiting.push_back(rec)
        finished = [rec for rec in self.jobs.values() if rec.state is C or rec.state is F]
        finished.sort(key=_BY_ORDER)
        for rec in finished:
            qs = self.queues[rec.queue]
            (qs.completed if rec.state is C else qs.failed).append((rec.order, rec.id))


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


def _tag_matcher(mode: str, tags: frozenset[str]) -> Any:
    if not tags:
        return lambda _tags: True
    if mode == "all":
        return tags.issubset
    if mode == "any":
        return lambda job_tags: not tags.isdisjoint(job_tags)
    if mode == "none":
        return tags.isdisjoint
    if mode == "exact":
        return lambda job_tags: tags == frozenset(job_tags)
    raise InvalidOptionError("tag_mode", mode, "must be one of all, any, none, exact")


def _batch_tags(specs: Sequence[JobSpec]) -> dict[str, list[int]]:
    """The indexes of a batch's specs, per tag."""
    by_tag: dict[str, list[int]] = {}
    for i, spec in enumerate(specs):
        for tag in spec.tags:
            by_tag.setdefault(tag, []).append(i)
    return by_tag


def _batch_holders(
    specs: Sequence[JobSpec], by_tag: dict[str, list[int]], barrier: frozenset[str]
) -> list[int]:
    """Indexes of the batch's specs whose tags hold `barrier`, found from its rarest tag."""
    rarest = min(barrier, key=lambda tag: len(by_tag.get(tag, ())))
    return [j for j in by_tag.get(rarest, ()) if barrier <= frozenset(specs[j].tags)]


def _creation_order(specs: Sequence[JobSpec], created: list[bool]) -> list[int]:
    """Indexes of the specs to create, each after the batch jobs it waits on: its
    prerequisites, its parent, and the holders of its barrier. (Waits in a circle were
    refused already; a guard still keeps this from looping.)"""
    by_tag: dict[str, list[int]] = {}
    for i, spec in enumerate(specs):
        for tag in spec.tags:
            by_tag.setdefault(tag, []).append(i)

    def before(i: int) -> list[int]:
        spec = specs[i]
        out = list(spec.depends_on_batch_refs)
        if spec.parent_ref is not None:
            out.append(spec.parent_ref)
        if spec.depends_on_tags:
            barrier = frozenset(spec.depends_on_tags)
            rarest = min(barrier, key=lambda tag: len(by_tag.get(tag, ())))
            out.extend(
                j for j in by_tag.get(rarest, ()) if j != i and barrier <= frozenset(specs[j].tags)
            )
        return out

    order: list[int] = []
    state = [0] * len(specs)  # 0 new, 1 in progress, 2 placed
    for root in range(len(specs)):
        if state[root]:
            continue
        state[root] = 1
        stack = [(root, iter(before(root)))]
        while stack:
            node, pending = stack[-1]
            nxt = next(pending, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                if created[node]:
                    order.append(node)
            elif state[nxt] == 0:
                state[nxt] = 1
                stack.append((nxt, iter(before(nxt))))
    return order


def _check_batch_cycles(specs: Sequence[JobSpec]) -> None:
    """Reject a batch whose `batch_ref` edges form a cycle (existing jobs cannot close one)."""
    state = [0] * len(specs)  # 0 new, 1 on the path, 2 done
    for start in range(len(specs)):
        if state[start]:
            continue
        stack: list[tuple[int, Iterator[int]]] = [(start, iter(specs[start].depends_on_batch_refs))]
        state[start] = 1
        while stack:
            node, refs = stack[-1]
            nxt = next(refs, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state[nxt] == 1:
                raise InvalidDependencyError(
                    f"jobs[{start}].depends_on: batch_ref edges form a cycle through jobs[{nxt}]"
                )
            elif state[nxt] == 0:
                state[nxt] = 1
                stack.append((nxt, iter(specs[nxt].depends_on_batch_refs)))


__all__ = ["FIELD_NAMES", "CoreState", "QueueState"]
