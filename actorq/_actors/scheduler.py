"""The scheduler actor: sole owner of the core state.

Theory of operation
-------------------
One task loops: wait for a message, take every other message already in the mailbox
(``receive_nowait``, no further checkpoint), apply them all to the core with one `now`, run
the timer transitions (due delayed jobs, expired retention), hand waiting jobs to workers with
free capacity, then commit the batch's change records to the change log. Only after the commit
returns does it reply to callers, publish events and send jobs to workers: the *outbox* is
held until the batch is durable, so nothing anybody saw can be lost in a crash.

Workers pull with credits: a worker announces its concurrency once, and every outcome it
reports frees one credit; the scheduler never sends a worker more jobs than it has free
slots, so a job that is active is running (or about to run) on a processor.

The scheduler never sleeps on a timer itself: awaiting `receive()` inside a cancel scope could
drop a message delivered at the moment the scope fires. A small timer task sleeps until the
earliest due time the core reports and then sends a `Tick` into the mailbox.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._core import CoreState, JobRecord, JobState
from .._core.events import Event
from .._exceptions import ActorqError
from ..clock import Clock, VirtualClock
from .changelog import Change, ChangeLog
from .messages import (
    DEFER,
    DELAY,
    FAIL,
    OK,
    RELEASED,
    Crash,
    Outcome,
    Outcomes,
    Request,
    Tick,
)

log = logging.getLogger("actorq.scheduler")

#: Most messages applied in one batch; bounds how long a batch holds the loop.
MAX_BATCH = 4096
#: A caller's inline calls are counted, and the one whose count has these bits clear (one in
#: 32) yields to the event loop first (see `Runtime._send`).
INLINE_YIELD_MASK = 31


class WorkerSlot:
    """What the scheduler knows of one processor worker: its queue and free credits."""

    __slots__ = (
        "abort",
        "closing",
        "concurrency",
        "free",
        "inbox",
        "max_stalled_count",
        "queue",
        "sink",
        "token",
    )

    def __init__(
        self,
        token: str,
        queue: str,
        concurrency: int,
        inbox: MemoryObjectSendStream[Any],
        abort: Callable[[int], None],
        max_stalled_count: int = 1,
    ) -> None:
        self.token = token
        self.abort = abort
        self.max_stalled_count = max_stalled_count
        self.queue = queue
        self.concurrency = concurrency
        self.free = concurrency
        self.inbox = inbox
        # Set by the worker while it has its own outcomes applied inline: jobs for it go
        # straight to its local line.
        self.sink: deque[JobRecord] | None = None
        self.closing = False


class Outbox:
    """What one batch may show the world, held until the batch's changes are durable."""

    __slots__ = ("aborts", "changes", "events", "finished", "releases", "replies", "sends")

    def __init__(
        self,
        changes: list[Any],
        sends: list[tuple[WorkerSlot, list[JobRecord]]],
        aborts: list[tuple[WorkerSlot, int]],
        replies: list[Request],
        events: list[Event],
        finished: list[JobRecord],
        releases: int,
    ) -> None:
        self.changes = changes
        self.sends = sends
        self.aborts = aborts
        self.replies = replies
        self.events = events
        self.finished = finished
        self.releases = releases


class Scheduler:
    def __init__(
        self,
        core: CoreState,
        changelog: ChangeLog,
        clock: Clock,
        mailbox: MemoryObjectReceiveStream[Any],
    ) -> None:
        self.core = core
        self.changelog = changelog
        self.clock = clock
        self.vclock = clock if isinstance(clock, VirtualClock) else None
        self._rx = mailbox
        core.record_changes(changelog.records)
        self.workers: dict[str, list[WorkerSlot]] = {}
        self.slots: dict[str, WorkerSlot] = {}
        self.waiters: dict[int, list[Request]] = {}
        self.subscribers: list[MemoryObjectSendStream[Event]] = []
        self.idle_waiters: list[Request] = []
        self.closing: dict[str, Request] = {}
        # Manual consumers waiting in get_next_job, per queue, oldest first.
        self.fetchers: dict[str, deque[Request]] = {}
        self.dispatching = True
        # The outbox of the batch being built: released only after the commit.
        self._replies: list[Request] = []
        self._sends: list[tuple[WorkerSlot, list[JobRecord]]] = []
        self._aborts: list[tuple[WorkerSlot, int]] = []
        self._releases = 0
        # Timer task state.
        self._timer_due: float | None = None
        self._timer_changed = anyio.Event()
        self._timer_tx: MemoryObjectSendStream[Any] | None = None
        self.crashed: BaseException | None = None
        self._snapshot_waiters: list[Request] = []
        self._inflight: Outbox | None = None
        # True while the loop waits on an empty mailbox and requests may run inline meanwhile
        # (see `idle`): never with a change log that must be awaited, nor after a crash.
        self.parked = False
        # An inline batch asked the loop for a snapshot it has not taken yet.
        self._snapshot_asked = False
        # A change log that commits without waiting lets idle-time requests run inline.
        self._commit_nowait = _commit_nowait(changelog)

    # ------------------------------------------------------------------ loop

    async def run(
        self, timer_tx: MemoryObjectSendStream[Any], *, task_status: TaskStatus[None]
    ) -> None:
        self._timer_tx = timer_tx
        vclock = self.vclock
        rx = self._rx
        if vclock is not None:
            vclock.hold()  # the scheduler is busy whenever it is not parked below
        task_status.started()
        try:
            while True:
                try:
                    first = rx.receive_nowait()
                except anyio.WouldBlock:
                    # Parked from here until a sender clears the flag (see `post`): requests
                    # run inline meanwhile, even before `receive` registers this task.
                    self.parked = self._commit_nowait is not None
                    if vclock is not None:
                        vclock.release()
                    try:
                        first = await rx.receive()
                    finally:
                        self.parked = False
                        if vclock is not None:
                            vclock.hold()
                batch = [first]
                try:
                    while len(batch) < MAX_BATCH:
                        batch.append(rx.receive_nowait())
                except anyio.WouldBlock:
                    pass
                await self._process(batch)
        except anyio.EndOfStream:
            return
        except BaseException as exc:
            self.crashed = exc
            raise

    def fail_pending(self, error: BaseException) -> None:
        """The scheduler is gone: every caller still waiting gets `error`, none hangs."""
        pending: list[Request] = [
            *self._replies,
            *self.idle_waiters,
            *self.closing.values(),
            *self._snapshot_waiters,
        ]
        if self._inflight is not None:
            pending.extend(self._inflight.replies)

        for waiting in self.waiters.values():
            pending.extend(waiting)
        try:
            while True:
                msg = self._rx.receive_nowait()
                if type(msg) is Request:
                    pending.append(msg)
        except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            pass
        self._replies.clear()
        self.idle_waiters.clear()
        self.closing.clear()
        self.waiters.clear()
        for req in pending:
            if not req.replied:
                req.error = error
                req.replied = True
                if req.done is not None:
                    req.done.set()

    async def _process(self, batch: list[Any]) -> None:
        outbox = self._apply(batch)
        if outbox.changes:
            self._inflight = outbox  # if the commit fails, its callers still get an answer
            await self.changelog.commit(outbox.changes)
            self._inflight = None
        self._flush_outbox(outbox)
        await self._after_flush(bool(outbox.changes))

    def idle(self) -> bool:
        """Whether a request may run inline, in its caller's task: the change log commits
        without waiting, and the scheduler is parked on an empty mailbox, so no batch is
        half done and no message sent earlier would be overtaken."""
        return self.parked

    def post(self, tx: MemoryObjectSendStream[Any], msg: Any) -> None:
        """Put `msg` in the mailbox through `tx`. Every sender goes through here: the
        scheduler is no longer idle once a message waits for it."""
        self.parked = False
        tx.send_nowait(msg)

    def run_inline(self, req: Request | Outcomes) -> None:
        """Apply `req` as a batch of its own, now, in the caller's task (see `idle`).

        The steps of `_apply` and `_process` for a batch of one request, in the same order
        (command, timers, dispatch, commit, outbox), minus what a lone request never needs.
        It saves the two task switches of a mailbox round trip, which cost more than the
        work of most commands. The caller's reply is marked last, after the commit.
        """
        now = self.clock.now()
        deferred = True
        try:
            if type(req) is Outcomes:
                self._apply_outcomes(req, now)
            else:
                assert isinstance(req, Request)
                deferred = not self._run_request(req, now)
            self._end_inline(now)
        except BaseException as exc:
            self._crash_inline(exc)
            raise
        if not deferred:
            assert isinstance(req, Request)
            req.replied = True

    def finish_inline(
        self,
        job_id: int,
        token: str,
        failed: bool,
        payload: Any,
        fetch: tuple[str, float, int] | None,
    ) -> JobRecord | None:
        """`op_finish` run inline, with no request object: the manual loop's one call per
        job (`move_to_completed(..., fetch_next=True)`), so every step it saves counts."""
        now = self.clock.now()
        refused: ActorqError | None = None
        rec = None
        try:
            rec = self.op_finish(now, job_id, token, failed, payload, fetch)
        except ActorqError as exc:
            refused = exc  # the core changed nothing; the rest of the batch runs
        except BaseException as exc:
            self._crash_inline(exc)
            raise
        try:
            self._end_inline(now)
        except BaseException as exc:
            # A commit that failed (the journal's write, say) ends the scheduler, as it
            # would on the loop: no later command may run on a state the log lost.
            self._crash_inline(exc)
            raise
        if refused is not None:
            raise refused
        return rec

    def _end_inline(self, now: float) -> None:
        """The rest of an inline batch after its command: timers, dispatch, commit, outbox."""
        changes, events, finished = self._after_commands(now)
        if changes:
            commit_nowait = self._commit_nowait
            assert commit_nowait is not None
            commit_nowait(changes)
            if not self._snapshot_asked and self.changelog.wants_snapshot():
                self._ask_snapshot()
        if (
            self._sends
            or self._aborts
            or self._replies
            or events
            or self._releases
            or (finished and self.waiters)
        ):
            self._flush_outbox(self._outbox(changes, events, finished))
        elif self.core.due_bound != self._timer_due:
            self._rearm_timer()
        if self.closing or self.idle_waiters:
            self._reply_idle_waiters()

    def _ask_snapshot(self) -> None:
        """The log wants a snapshot, and this batch ran inline: the loop takes snapshots
        (between its batches, where the state equals the durable one), so ask it to."""
        self._snapshot_asked = True
        req = Request(self.op_snapshot, ())
        req.args = (req,)
        req.abandoned = True  # nobody waits for the reply
        if self.vclock is not None:
            self.vclock.hold()
        assert self._timer_tx is not None
        self.post(self._timer_tx, req)

    def _crash_inline(self, exc: BaseException) -> None:
        """A bug in the core hit an inline batch: the scheduler's task must die of it, as it
        would have had the request gone through the mailbox (the caller hears of it too)."""
        self.crashed = exc
        self.parked = False
        if self._timer_tx is not None:
            self.post(self._timer_tx, Crash(exc))

    def _apply(self, batch: list[Any]) -> Outbox:
        """Apply one batch to the core with one `now`; return what it may show once durable."""
        now = self.clock.now()
        replies = self._replies
        for msg in batch:
            kind = type(msg)
            if kind is Outcomes:
                self._apply_outcomes(msg, now)
            elif kind is Request:
                if self._run_request(msg, now):
                    replies.append(msg)
            elif kind is Tick:
                self._releases += 1
            elif kind is Crash:
                raise msg.exc
            else:
                raise TypeError(f"scheduler got an unknown message {msg!r}")
        return self._outbox(*self._after_commands(now))

    def _run_request(self, req: Request, now: float) -> bool:
        """Run `req`'s command; True when it has its answer now, False when it waits (its
        caller is then not busy: the virtual clock may move)."""
        try:
            result = req.fn(now, *req.args)
        except ActorqError as exc:
            req.error = exc
            return True
        if result is DEFER:
            if self.vclock is not None:
                self.vclock.release()
            return False
        req.result = result
        return True

    def _after_commands(self, now: float) -> tuple[list[Change], list[Event], list[JobRecord]]:
        """What every batch does after its commands, inline or not: timer transitions, jobs
        to workers and to waiting manual fetches, processors to abort; then the effects."""
        core = self.core
        if now >= core.due_bound:
            core.run_timers(now)
        if self.dispatching:
            if self.workers:
                self._dispatch(now)
            if self.fetchers:
                self._serve_fetchers(now)
        if core.aborts:
            self._collect_aborts()
        return core.take_effects()

    def _outbox(
        self, changes: list[Change], events: list[Event], finished: list[JobRecord]
    ) -> Outbox:
        """The batch's outbox, taking over what it gathered to send, abort and reply."""
        outbox = Outbox(
            changes, self._sends, self._aborts, self._replies, events, finished, self._releases
        )
        self._sends, self._aborts, self._replies, self._releases = [], [], [], 0
        return outbox

    def _collect_aborts(self) -> None:
        """Processors to cancel: jobs the batch cancelled or removed while they ran."""
        core = self.core
        for job_id, token in core.aborts:
            slot = self.slots.get(token)
            if slot is not None:
                self._aborts.append((slot, job_id))
        core.aborts.clear()

    async def _after_flush(self, wrote: bool) -> None:
        """Snapshot when asked or due (between batches, so the state equals the durable
        one), then answer whoever waits for the workers or the snapshot."""
        if self._snapshot_waiters or (wrote and self.changelog.wants_snapshot()):
            self._snapshot_asked = False
            await self.changelog.snapshot(self.core.as_changes())
            for req in self._snapshot_waiters:
                if self.vclock is not None:
                    self.vclock.hold()
                _reply(req, self.vclock)
            self._snapshot_waiters.clear()
        self._reply_idle_waiters()

    def op_snapshot(self, now: float, req: Request) -> Any:
        """Take a snapshot once this batch is durable; reply when it is written."""
        del now
        self._snapshot_waiters.append(req)
        return DEFER

    def _flush_outbox(self, outbox: Outbox) -> None:
        vclock = self.vclock
        for slot, jobs in outbox.sends:
            if vclock is not None:
                vclock.hold(len(jobs))
            if slot.sink is not None:
                slot.sink.extend(jobs)
            else:
                slot.inbox.send_nowait(jobs)
        for slot, job_id in outbox.aborts:
            slot.abort(job_id)
        for req in outbox.replies:
            _reply(req, vclock)
        if outbox.finished and self.waiters:
            for rec in outbox.finished:
                waiting = self.waiters.pop(rec.id, None)
                if waiting:
                    for req in waiting:
                        req.result = rec
                        if vclock is not None:
                            vclock.hold()
                        _reply(req, vclock)
        if outbox.events and self.subscribers:
            self._publish(outbox.events)
        if outbox.releases and vclock is not None:
            vclock.release(outbox.releases)
        self._rearm_timer()

    def _reply_idle_waiters(self) -> None:
        """Workers closing or a shutdown waiting for idle workers: answer those now idle."""
        vclock = self.vclock
        if self.closing:
            for token in [t for t in self.closing if self._slot_idle(t)]:
                self.op_unregister(0.0, token)
                if vclock is not None:
                    vclock.hold()
                _reply(self.closing.pop(token), vclock)
        if self.idle_waiters and self._workers_idle():
            for req in self.idle_waiters:
                if vclock is not None:
                    vclock.hold()
                _reply(req, vclock)
            self.idle_waiters.clear()

    def _publish(self, events: list[Event]) -> None:
        dead = []
        for sub in self.subscribers:
            try:
                for event in events:
                    sub.send_nowait(event)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                dead.append(sub)
        for sub in dead:
            self.subscribers.remove(sub)

    def _rearm_timer(self) -> None:
        """Wake the timer only when the next due time moves earlier. A due time that moved
        later makes the timer fire early once; that batch finds nothing due and re-arms."""
        due = self.core.due_bound  # may be early (a lock since released): fires once for nothing
        if due != math.inf and (self._timer_due is None or due < self._timer_due):
            self._timer_due = due
            self._timer_changed.set()

    async def run_timer(self, *, task_status: TaskStatus[None]) -> None:
        """Sleep until the core's next due time, then wake the scheduler with a Tick."""
        tx = self._timer_tx
        assert tx is not None
        vclock = self.vclock
        task_status.started()
        while True:
            changed = self._timer_changed = anyio.Event()
            due = self._timer_due
            if due is None:
                await changed.wait()
                continue
            scope = self.clock.deadline(due)
            with scope:
                await changed.wait()
            if scope.cancelled_caught:
                self._timer_due = None
                if vclock is not None:
                    vclock.hold()
                self.post(tx, Tick())

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, now: float) -> None:
        core = self.core
        for queue, slots in self.workers.items():
            qs = core.queues.get(queue)
            if qs is None or qs.paused or not qs.counts[JobState.WAITING]:
                continue
            for slot in slots:
                if slot.free <= 0 or slot.closing:
                    continue
                jobs = core.take(queue, slot.free, now, slot.token, None, slot.max_stalled_count)
                if not jobs:
                    break
                slot.free -= len(jobs)
                self._sends.append((slot, jobs))

    def _serve_fetchers(self, now: float) -> None:
        core = self.core
        for queue, waiting in list(self.fetchers.items()):
            qs = core.queues.get(queue)
            while waiting and qs is not None and qs.counts[JobState.WAITING] and not qs.paused:
                req = waiting.popleft()
                if req.abandoned:  # its caller timed out; its token went with the deferral
                    continue
                _queue, token, lock_duration, max_stalled, _wait, _req = req.args
                jobs = core.take(queue, 1, now, token, now + lock_duration, max_stalled)
                if not jobs:
                    waiting.appendleft(req)
                    break
                req.result = jobs[0]
                if self.vclock is not None:
                    self.vclock.hold()
                self._replies.append(req)
            if not waiting:
                del self.fetchers[queue]

    def _apply_outcomes(self, msg: Outcomes, now: float) -> None:
        slot: WorkerSlot = msg.worker
        core = self.core
        items: list[Outcome] = msg.items
        slot.free += len(items)
        self._releases += len(items)
        token = slot.token
        for item in items:
            kind = item[0]
            job_id = item[1]
            rec = core.jobs.get(job_id)
            if rec is None or rec.state is not JobState.ACTIVE or rec.lock_token != token:
                # Cancelled, removed or moved while it ran: the outcome has nothing to end.
                continue
            if kind is OK:
                core.complete(job_id, token, item[2], now)
            elif kind is FAIL:
                core.fail(job_id, token, item[2], item[3], now, unrecoverable=item[4])
            elif kind is DELAY:
                delay = item[2]
                core.move_to_delayed(job_id, token, None if not delay else now + delay, None, now)
            elif kind is RELEASED:
                pass
            else:
                raise TypeError(f"unknown outcome kind {kind!r}")

    def _slot_idle(self, token: str) -> bool:
        slot = self.slots.get(token)
        return slot is None or slot.free == slot.concurrency

    def _workers_idle(self) -> bool:
        return all(slot.free == slot.concurrency for slot in self.slots.values())

    # ------------------------------------------------------------------ commands
    # Each takes `now` first; called inside a batch, result replied after the commit.

    def op_call(self, now: float, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a core transition or query that needs `now`."""
        return fn(*args, now)

    def op_plain(self, now: float, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a core transition or query that does not need `now`."""
        del now
        return fn(*args)

    def op_register(self, now: float, slot: WorkerSlot) -> None:
        del now
        self.slots[slot.token] = slot
        self.workers.setdefault(slot.queue, []).append(slot)
        self.core.queue(slot.queue)

    def op_unregister(self, now: float, token: str) -> None:
        del now
        slot = self.slots.pop(token, None)
        if slot is not None:
            self.workers[slot.queue].remove(slot)
            if not self.workers[slot.queue]:
                del self.workers[slot.queue]

    def op_close_worker(self, now: float, token: str, req: Request) -> Any:
        """Give the worker no more jobs; reply once it holds none, and forget it."""
        slot = self.slots.get(token)
        if slot is None:
            return None
        slot.closing = True
        if self._slot_idle(token):
            self.op_unregister(now, token)
            return None
        self.closing[token] = req
        return DEFER

    def op_fetch(
        self,
        now: float,
        queue: str,
        token: str,
        lock_duration: float,
        max_stalled: int,
        wait: bool,
        req: Request,
    ) -> Any:
        """Manual `get_next_job`: lock the next waiting job under `token`, or wait for one."""
        if self.dispatching:
            jobs = self.core.take(queue, 1, now, token, now + lock_duration, max_stalled)
            if jobs:
                return jobs[0]
        if not wait:
            return None
        self.fetchers.setdefault(queue, deque()).append(req)
        return DEFER

    def op_finish(
        self,
        now: float,
        job_id: int,
        token: str,
        failed: bool,
        payload: Any,
        fetch: tuple[str, float, int] | None,
    ) -> JobRecord | None:
        """Manual `move_to_completed` / `move_to_failed`, then maybe lock the next job."""
        core = self.core
        if failed:
            reason, stacktrace, unrecoverable = payload
            core.fail(job_id, token, reason, stacktrace, now, unrecoverable=unrecoverable)
        else:
            core.complete(job_id, token, payload, now)
        if fetch is None or not self.dispatching:
            return None
        queue, lock_duration, max_stalled = fetch
        jobs = core.take(queue, 1, now, token, now + lock_duration, max_stalled)
        return jobs[0] if jobs else None

    def op_release_tokens(self, now: float, tokens: frozenset[str]) -> int:
        """A manual worker closes: its pending `get_next_job` calls get None, and every job
        still locked under one of its tokens goes back to waiting."""
        for queue, waiting in list(self.fetchers.items()):
            for req in [r for r in waiting if r.args[1] in tokens]:
                waiting.remove(req)
                if not req.abandoned:
                    req.result = None
                    if self.vclock is not None:
                        self.vclock.hold()
                    self._replies.append(req)
            if not waiting:
                del self.fetchers[queue]
        core = self.core
        # A lock already past its expiry is left to the stalled check, which runs after the
        # commands of this same batch: that job stalled, and counts it.
        held = [
            job_id
            for expiry, job_id in core.locks
            if expiry > now and core.jobs[job_id].lock_token in tokens
        ]
        for job_id in held:
            rec = core.jobs[job_id]
            assert rec.lock_token is not None
            core.release(job_id, rec.lock_token, now)
        return len(held)

    def op_wait(self, now: float, job_id: int, req: Request) -> Any:
        """Reply with the record once the job is finished, or None once it is gone."""
        del now
        rec = self.core.jobs.get(job_id)
        if rec is None or rec.state in _TERMINAL:
            return rec
        self.waiters.setdefault(job_id, []).append(req)
        return DEFER

    def op_stop_dispatch(self, now: float) -> None:
        del now
        self.dispatching = False

    def op_wait_workers_idle(self, now: float, req: Request) -> Any:
        """Reply once no worker holds a job (for a graceful shutdown)."""
        del now
        if self._workers_idle():
            return None
        self.idle_waiters.append(req)
        return DEFER

    def subscribe(self, tx: MemoryObjectSendStream[Event]) -> None:
        self.subscribers.append(tx)
        self.core.publish_events(True)

    def unsubscribe(self, tx: MemoryObjectSendStream[Event]) -> None:
        if tx in self.subscribers:
            self.subscribers.remove(tx)
        if not self.subscribers:
            self.core.publish_events(False)


def _commit_nowait(changelog: ChangeLog) -> Callable[[list[Any]], None] | None:
    """The log's synchronous commit, when it has one that does what its `commit` does: both
    defined by the same class (a subclass that overrides only `commit`, say to inject a
    fault, keeps every batch going through its `commit`)."""
    nowait: Callable[[list[Any]], None] | None = getattr(changelog, "commit_nowait", None)
    if nowait is None:
        return None
    mro = type(changelog).__mro__
    owner_commit = next((c for c in mro if "commit" in c.__dict__), None)
    owner_nowait = next((c for c in mro if "commit_nowait" in c.__dict__), None)
    return nowait if owner_commit is owner_nowait else None


_TERMINAL = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})


def _reply(req: Request, vclock: VirtualClock | None) -> None:
    req.replied = True
    if req.abandoned:
        if vclock is not None:
            vclock.release()
        return
    if req.done is not None:
        req.done.set()
