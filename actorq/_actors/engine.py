"""The engine: the one synchronous step every command goes through.

Theory of operation
-------------------
`Engine.step(batch, now)` applies a batch of messages to the core with one `now`: each
request's command (the core's through `CoreState.handle`, the engine's own — waits,
workers, shutdown — through `_ops`), each worker's `Report`, then the timer transitions
that came due, jobs handed to workers with free credits and to waiting manual fetches,
processors to abort. It returns the batch's `Outbox`: the change records to commit, and
what the world may see once they are durable (replies, jobs to send, events, waiters).

There are two roads into `step`, and they differ in one thing only: whether the commit is
awaited before `release(outbox)`.

* The loop (`Scheduler.run`) drains the mailbox into a batch, steps it, awaits the change
  log's `commit` when the log says it waits (``fsync="always"``), then releases.
* `submit(message)` — the door every caller and worker comes through — runs the message as a
  batch of one, right away in the caller's task, when the loop is *parked*: it waits on an
  empty mailbox (so no batch is half done and no earlier message would be overtaken) and
  the log does not wait. The step, the commit and the release are the same calls; it saves
  the two task switches of a mailbox round trip, which cost more than most commands.
  Otherwise `submit` posts the message to the mailbox. `call(command)` is the same door for
  a caller's command: run inline, a command of the core's needs no `Request` at all (the
  outbox carries its answer back); else `call` makes the request and submits it.

A log that waits never lets a call run inline; a log that does not wait takes the inline
road whenever the loop is parked, whatever the clock. That rule is `parked`, set by `rest`
and cleared by `post`, and read by `submit` and `call` alone.

Snapshots are taken by the loop between batches (where the state equals the durable one);
an inline batch that wants one (the log grew, or a caller asked) wakes the loop for it.

The engine is also what a `VirtualClock` asks whether the runtime is idle (`quiet`, `idle`,
`activity`): it knows whether a batch is queued or under way and how many dispatched jobs
have not reported back; nothing else keeps count.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from .._core import CoreState, JobRecord, JobState
from .._core import commands as c
from .._core.events import Event
from .._core.handlers import HANDLERS
from .._core.states import TERMINAL
from .._exceptions import ActorqError, RuntimeClosedError
from .._failures import log_stalls
from .changelog import ChangeLog
from .messages import DEFER, TICK, Crash, Request, Tick
from .outbox import Outbox, WorkerSlot

if TYPE_CHECKING:
    from .subscription import EventStream

#: A caller's calls are counted, and the one whose count has these bits clear (one in 32)
#: yields to the event loop first (see `Engine.call`).
INLINE_YIELD_MASK: Final = 31
_TAKE: Final = HANDLERS[c.Take]
#: The empty part of an outbox: shared, so never appended to.
_NOTHING: Final[list[Any]] = []
#: The batch of `call`'s bare command: no message beside it.
_NO_BATCH: Final[tuple[()]] = ()
_REPORT: Final = HANDLERS[c.Report]
_NEW: Final = object.__new__


class Engine:
    """The sole owner of the core state while a runtime runs (see the module docstring)."""

    # Slotted: a manual loop reads a dozen of these per call, and CPython does not specialize
    # reads from an instance dict of over 30 keys (it stops sharing it).
    __slots__ = (
        "_aborts",
        "_ops",
        "_replies",
        "_sends",
        "activity",
        "asleep",
        "calls",
        "closing",
        "core",
        "crashed",
        "fetchers",
        "idle_waiters",
        "inflight",
        "inline_batches",
        "log",
        "loop_batches",
        "mailbox",
        "now",
        "on_idle",
        "parked",
        "resting",
        "running",
        "slots",
        "snapshot_asked",
        "snapshot_waiters",
        "subscribers",
        "timer_changed",
        "timer_due",
        "waiters",
        "watch",
        "workers",
    )

    def __init__(self, core: CoreState, log: ChangeLog, now: Callable[[], float]) -> None:
        self.core = core
        self.log = log
        self.now = now
        core.record_changes(log.records)
        self.workers: dict[str, list[WorkerSlot]] = {}
        self.slots: dict[str, WorkerSlot] = {}
        self.waiters: dict[int, list[Request]] = {}
        self.subscribers: list[EventStream] = []
        self.idle_waiters: list[Request] = []
        self.closing: dict[str, Request] = {}
        # Manual consumers waiting in get_next_job, per queue, oldest first.
        self.fetchers: dict[str, deque[Request]] = {}
        self.snapshot_waiters: list[Request] = []
        self.snapshot_asked = False
        self.crashed: BaseException | None = None
        #: The batch whose commit is under way: if it fails, its callers still get an answer.
        self.inflight: Outbox | None = None
        #: The loop waits on an empty mailbox (set by the loop, cleared by `post`).
        self.resting = False
        #: Resting with a log that does not wait: calls may run inline (see `submit`).
        self.parked = False
        #: Jobs handed to processors whose outcome has not come back; of those, how many
        #: processors sleep on the virtual clock (kept by `VirtualClock.sleep_until`).
        self.running = 0
        self.asleep = 0
        #: Bumped by every batch and every rest: a virtual clock's sign that things moved.
        self.activity = 0
        self.inline_batches = 0
        self.loop_batches = 0
        self.calls = 0
        #: Told when the engine may have become idle (a virtual clock's `poke`).
        self.on_idle: Callable[[], None] | None = None
        #: Shown every outbox first, while a runtime host's client holds handles on jobs
        #: (`actorq._remote.watch`): the fresh records go out before the batch's replies.
        self.watch: Callable[[Outbox], None] | None = None
        self.mailbox: MemoryObjectSendStream[Any] | None = None
        # The timer task sleeps until `timer_due` (inf: no timer); `timer_changed` wakes it
        # to re-read it.
        self.timer_due = math.inf
        self.timer_changed = anyio.Event()
        # The outbox of the batch being built.
        self._replies: list[Request] = []
        self._sends: list[tuple[WorkerSlot, list[JobRecord]]] = []
        self._aborts: list[tuple[WorkerSlot, int]] = []
        self._ops: dict[type[c.Command], Callable[[Request, Any, float], Any]] = {
            c.Fetch: self._fetch,
            c.WaitFinished: self._wait_finished,
            c.RegisterWorker: self._register,
            c.CloseWorker: self._close_worker,
            c.PauseWorker: self._pause_worker,
            c.CloseManual: self._close_manual,
            c.DropWorker: self._drop_worker,
            c.StopDispatch: self._stop_dispatch,
            c.WaitWorkersIdle: self._wait_workers_idle,
            c.Snapshot: self._snapshot,
        }

    # ------------------------------------------------------------------ the door

    def submit(self, msg: Request | c.Report, sink: deque[JobRecord] | None = None) -> None:
        """Run `msg` now as a batch of its own when the loop is parked; else post it.

        `sink`: for a worker's report, where jobs handed back to that worker go when the
        report runs inline (its runner's local line).
        """
        if not self.parked:
            self.post(msg)
            return
        slot = self.slots.get(msg.token) if sink is not None and isinstance(msg, c.Report) else None
        if slot is not None:
            slot.sink = sink
        try:
            self._inline((msg,))
        finally:
            if slot is not None:
                slot.sink = None

    def call(self, command: c.Command) -> Any:
        """`command`'s answer, when the loop is parked and the core answers it: run inline
        as a batch of one, which needs no `Request` (the outbox carries the answer, and the
        caller reads it when the batch is released). Otherwise the `Request` carrying
        `command`, for the caller to await: submitted (``sent``) when the loop is busy or the
        command is the engine's own, which may keep its request to answer later.

        A call while the loop is parked is counted, and the one in 32 (the count's low bits
        clear, `INLINE_YIELD_MASK`) comes back unsent, for its caller to submit after it
        yielded to the event loop: a caller looping on inline calls (a manual consumer
        polling) cannot starve the other tasks, and holds the loop about as long as a
        worker's runner does between its batches. The other calls do not suspend: a
        checkpoint costs as much as the call.

        A command the core refused raises here, after its batch was released, as
        `Request.error` would."""
        if self.parked:
            calls = self.calls = self.calls + 1
            if not calls & INLINE_YIELD_MASK:
                return Request(command)
            if type(command) in HANDLERS:
                outbox = self._inline(_NO_BATCH, command)
                if outbox.error is not None:
                    raise outbox.error
                return outbox.answer
        req = Request(command)
        self.submit(req)
        req.sent = True
        return req

    def _inline(self, batch: Sequence[Any], command: c.Command | None = None) -> Outbox:
        """Step, commit and release a batch of one (a message, or `call`'s bare command),
        in the caller's task."""
        try:
            outbox = self.step(batch, self.now(), command)
            if outbox.changes and self.log.commit(outbox.changes) is not None:
                raise TypeError(f"{self.log!r} says it does not wait, but its commit did")
            self.inline_batches += 1
            self.release(outbox)
            if not self.snapshot_asked and (
                self.snapshot_waiters or (outbox.changes and self.log.wants_snapshot())
            ):
                # Snapshots are the loop's to take, between its batches: wake it for one.
                self.snapshot_asked = True
                self.post(TICK)
        except BaseException as exc:
            # A bug in the core, or a commit that failed: the scheduler's task must die of
            # it, as it would have on the loop; no later command may run on a state the log
            # lost. The caller hears of it as a caller on the loop would.
            self.crashed = exc
            self.parked = False
            self.post(Crash(exc))
            if isinstance(exc, Exception):
                raise crashed_error(exc) from exc
            raise
        return outbox

    def post(self, msg: Any) -> None:
        """Put `msg` in the mailbox: the loop is no longer resting once a message waits."""
        self.resting = self.parked = False
        assert self.mailbox is not None
        self.mailbox.send_nowait(msg)

    def rest(self) -> None:
        """The loop is about to wait on an empty mailbox."""
        self.resting = True
        self.parked = not self.log.waits and self.crashed is None
        self.activity += 1
        if self.on_idle is not None:
            self.on_idle()

    # ------------------------------------------------------------------ what the clock asks

    def quiet(self) -> bool:
        """No batch is queued or under way (processors may still be running)."""
        return self.resting

    def idle(self) -> bool:
        """Quiet, and every dispatched job's processor is asleep on the virtual clock (the
        jobs of a client on the same clock are that client's to count)."""
        if not self.resting:
            return False
        elsewhere = sum(s.concurrency - s.free for s in self.slots.values() if s.elsewhere)
        return self.running - elsewhere == self.asleep

    # ------------------------------------------------------------------ the step

    def step(self, batch: Sequence[Any], now: float, command: c.Command | None = None) -> Outbox:
        """Apply one batch to the core with one `now`; return what it may show once durable.

        `command`: a bare command of the core's, for a caller with no `Request` (`call`):
        applied before the batch, its answer or refusal carried back in the outbox."""
        self.activity += 1
        core = self.core
        answer: Any = None
        error: ActorqError | None = None
        if command is not None:
            try:
                answer = HANDLERS[type(command)](core, command, now)
            except ActorqError as exc:
                error = exc  # the core changed nothing; the rest of the batch runs
        for msg in batch:
            kind = type(msg)
            if kind is Request:
                # A request runs here, not in a method of its own: a manual call is a batch
                # of one, and a call per layer is what it costs most. The core's handler
                # comes straight from its table (what `CoreState.handle` looks up); the
                # engine's own commands otherwise.
                cmd = msg.command
                handler = HANDLERS.get(type(cmd))
                try:
                    if handler is not None:
                        result = handler(core, cmd, now)
                    else:
                        result = self._own(cmd)(msg, cmd, now)
                except ActorqError as exc:
                    msg.error = exc  # the core changed nothing; the rest of the batch runs
                else:
                    if result is DEFER:
                        continue
                    msg.result = result
                self._replies.append(msg)
            elif kind is c.Report:
                self._report(msg, now)
            elif kind is Tick:
                pass  # the timer's wake-up: the timers run below, as in every batch
            elif kind is Crash:
                raise msg.exc
            else:
                raise TypeError(f"the engine got an unknown message {msg!r}")
        if now >= core.due_bound:
            core.run_timers(now)
        if core.dispatching:
            if self.workers:
                self._dispatch(now)
            if self.fetchers:
                self._serve_fetchers(now)
        if core.aborts:
            self._collect_aborts()
        if core.stalls:
            log_stalls(core.stalls)
        changes, events, finished = core.take_effects()
        # A part the batch left empty is handed over as the shared empty list (never
        # appended to), and the engine keeps its own: most batches fill one part of three.
        sends = self._sends
        if sends:
            self._sends = []
        else:
            sends = _NOTHING
        aborts = self._aborts
        if aborts:
            self._aborts = []
        else:
            aborts = _NOTHING
        replies = self._replies
        if replies:
            self._replies = []
        else:
            replies = _NOTHING
        out = _NEW(Outbox)
        out.changes = changes
        out.sends = sends
        out.aborts = aborts
        out.replies = replies
        out.events = events
        out.finished = finished
        out.answer = answer
        out.error = error
        return out

    def _own(self, cmd: c.Command) -> Callable[[Request, Any, float], Any]:
        op = self._ops.get(type(cmd))
        if op is None:
            raise TypeError(f"neither the core nor the engine has a handler for {cmd!r}")
        return op

    def _report(self, report: c.Report, now: float) -> None:
        slot = self.slots.get(report.token)
        if slot is not None:  # else a dropped worker's late report: its jobs were not counted
            slot.free += report.freed
            self.running -= report.freed
        _REPORT(self.core, report, now)

    def _dispatch(self, now: float) -> None:
        core = self.core
        for queue, slots in self.workers.items():
            qs = core.queues.get(queue)
            if qs is None or qs.paused or not qs.counts[JobState.WAITING]:
                continue
            for slot in slots:
                if slot.free <= 0 or slot.closing:
                    continue
                lock = slot.lock_duration
                jobs = core.take(
                    queue,
                    slot.free,
                    now,
                    slot.token,
                    None if lock is None else now + lock,
                    slot.max_stalled_count,
                )
                if not jobs:
                    break
                slot.free -= len(jobs)
                self.running += len(jobs)
                self._sends.append((slot, jobs))

    def _serve_fetchers(self, now: float) -> None:
        core = self.core
        for queue, waiting in list(self.fetchers.items()):
            qs = core.queues.get(queue)
            while waiting and qs is not None and qs.counts[JobState.WAITING] and not qs.paused:
                req = waiting.popleft()
                if req.abandoned:  # its caller timed out; its token went with the deferral
                    continue
                jobs = _TAKE(core, req.command.take, now)
                if not jobs:
                    waiting.appendleft(req)
                    break
                req.result = jobs[0]
                self._replies.append(req)
            if not waiting:
                del self.fetchers[queue]

    def _collect_aborts(self) -> None:
        """Processors to cancel: jobs the batch cancelled or removed while they ran."""
        core = self.core
        for job_id, token in core.aborts:
            slot = self.slots.get(token)
            if slot is not None:
                self._aborts.append((slot, job_id))
        core.aborts.clear()

    # ------------------------------------------------------------------ release

    def release(self, outbox: Outbox) -> None:
        """Show the world what a durable batch did: jobs, aborts, replies, events."""
        if self.watch is not None:
            self.watch(outbox)
        for slot, jobs in outbox.sends:
            if slot.sink is not None:
                slot.sink.extend(jobs)
            else:
                slot.inbox.send_nowait(jobs)
        for slot, job_id in outbox.aborts:
            slot.abort(job_id)
        if outbox.events and self.subscribers:
            # Before the replies: a runtime host's client then reads a call's events
            # before its reply, as a local caller finds them in its stream on return.
            self._publish(outbox.events)
        for req in outbox.replies:
            _reply(req)
        if outbox.finished and self.waiters:
            for rec in outbox.finished:
                waiting = self.waiters.pop(rec.id, None)
                if waiting:
                    for req in waiting:
                        req.result = rec
                        _reply(req)
        due = self.core.due_bound  # may be early (a lock since released): fires for nothing
        if due < self.timer_due:
            # Wake the timer only when the next due time moves earlier. A due time that
            # moved later makes it fire early once; that batch finds nothing due.
            self.timer_due = due
            self.timer_changed.set()
        if self.closing or self.idle_waiters:
            self._reply_idle_waiters()
        if self.on_idle is not None:
            self.on_idle()

    def _publish(self, events: list[Event]) -> None:
        for sub in self.subscribers:
            sub.publish(events)  # bounded, never blocks (see `subscription`)

    def _reply_idle_waiters(self) -> None:
        """Workers closing or a shutdown waiting for idle workers: answer those now idle."""
        if self.closing:
            for token in [t for t in self.closing if self._slot_idle(t)]:
                self._unregister(token)
                _reply(self.closing.pop(token))
        if self.idle_waiters:
            ready: list[Request] = []
            still: list[Request] = []
            for req in self.idle_waiters:
                (ready if self._idle_for(req.command) else still).append(req)
            self.idle_waiters = still
            for req in ready:
                _reply(req)

    def _idle_for(self, cmd: c.WaitWorkersIdle) -> bool:
        return self._workers_idle() if cmd.token is None else self._slot_idle(cmd.token)

    def reply_snapshot_waiters(self) -> None:
        for req in self.snapshot_waiters:
            _reply(req)
        self.snapshot_waiters.clear()

    def fail_pending(self, error: BaseException, unread: list[Any]) -> None:
        """The engine is gone: every caller still waiting gets `error`, none hangs."""
        pending: list[Request] = [
            *self._replies,
            *self.idle_waiters,
            *self.closing.values(),
            *self.snapshot_waiters,
            *(msg for msg in unread if type(msg) is Request),
        ]
        if self.inflight is not None:
            pending.extend(self.inflight.replies)
        for waiting in self.waiters.values():
            pending.extend(waiting)
        for fetching in self.fetchers.values():
            pending.extend(fetching)
        self._replies.clear()
        self.idle_waiters.clear()
        self.closing.clear()
        self.waiters.clear()
        self.fetchers.clear()
        self.snapshot_waiters.clear()
        for req in pending:
            if not req.replied:
                req.error = error
                _reply(req)

    # ------------------------------------------------------------------ the engine's commands

    def _fetch(self, req: Request, cmd: c.Fetch, now: float) -> Any:
        """Manual `get_next_job`: lock the next waiting job under the token, or wait."""
        if req.abandoned:  # its caller gave up while it sat in the mailbox: lock nothing
            return None
        jobs = _TAKE(self.core, cmd.take, now)
        if jobs:
            return jobs[0]
        if not cmd.wait:
            return None
        self.fetchers.setdefault(cmd.take.queue, deque()).append(req)
        return DEFER

    def _wait_finished(self, req: Request, cmd: c.WaitFinished, now: float) -> Any:
        rec = self.core.jobs.get(cmd.job_id)
        if rec is None or rec.state in TERMINAL or req.abandoned:
            return rec
        self.waiters.setdefault(cmd.job_id, []).append(req)
        return DEFER

    def _register(self, req: Request, cmd: c.RegisterWorker, now: float) -> None:
        slot: WorkerSlot = cmd.slot
        self.slots[slot.token] = slot
        self.workers.setdefault(slot.queue, []).append(slot)
        self.core.handle(c.EnsureQueue(slot.queue), now)

    def _unregister(self, token: str) -> None:
        slot = self.slots.pop(token, None)
        if slot is not None:
            self._undispatch(slot)

    def _undispatch(self, slot: WorkerSlot) -> None:
        slots = self.workers.get(slot.queue)
        if slots is not None and slot in slots:
            slots.remove(slot)
            if not slots:
                del self.workers[slot.queue]

    def _pause_worker(self, req: Request, cmd: c.PauseWorker, now: float) -> None:
        # A paused worker leaves the dispatch lists (dispatch costs nothing more for it);
        # its slot stays, so its running jobs still report and free their credits.
        slot = self.slots.get(cmd.token)
        if slot is None:
            return
        if cmd.paused:
            self._undispatch(slot)
        elif slot not in self.workers.get(slot.queue, ()):
            self.workers.setdefault(slot.queue, []).append(slot)

    def _close_worker(self, req: Request, cmd: c.CloseWorker, now: float) -> Any:
        slot = self.slots.get(cmd.token)
        if slot is None:
            return None
        slot.closing = True
        if self._slot_idle(cmd.token):
            self._unregister(cmd.token)
            return None
        self.closing[cmd.token] = req
        return DEFER

    def _drop_worker(self, req: Request, cmd: c.DropWorker, now: float) -> None:
        """A worker in another process is gone (its connection broke): forget it now. Its
        jobs keep their timed locks and stall when those expire, as BullMQ's do; whatever
        it reports later is refused by token."""
        slot = self.slots.get(cmd.token)
        if slot is None:
            return
        self.running -= slot.concurrency - slot.free
        slot.free = slot.concurrency
        self._unregister(cmd.token)
        closing = self.closing.pop(cmd.token, None)
        if closing is not None:
            self._replies.append(closing)

    def _close_manual(self, req: Request, cmd: c.CloseManual, now: float) -> int:
        """A manual worker closes: its pending fetches get None, its held jobs go back."""
        tokens = cmd.tokens
        for queue, waiting in list(self.fetchers.items()):
            for pending in [r for r in waiting if r.command.take.token in tokens]:
                waiting.remove(pending)
                if not pending.abandoned:
                    pending.result = None
                    self._replies.append(pending)
            if not waiting:
                del self.fetchers[queue]
        released: int = self.core.handle(c.ReleaseHeld(tokens), now)
        return released

    def _stop_dispatch(self, req: Request, cmd: c.StopDispatch, now: float) -> None:
        self.core.dispatching = False

    def _wait_workers_idle(self, req: Request, cmd: c.WaitWorkersIdle, now: float) -> Any:
        if self._idle_for(cmd):
            return None
        self.idle_waiters.append(req)
        return DEFER

    def _snapshot(self, req: Request, cmd: c.Snapshot, now: float) -> Any:
        self.snapshot_waiters.append(req)
        return DEFER

    def _slot_idle(self, token: str) -> bool:
        slot = self.slots.get(token)
        return slot is None or slot.free == slot.concurrency

    def _workers_idle(self) -> bool:
        return all(slot.free == slot.concurrency for slot in self.slots.values())

    def forget(self, req: Request) -> None:
        """Its caller gave up on `req` (a timeout, a cancellation): a wait it kept pending is
        dropped now, not when its job finishes or a job arrives, which may be never."""
        cmd = req.command
        kind = type(cmd)
        if kind is c.WaitFinished:
            _discard(self.waiters, cmd.job_id, req)
        elif kind is c.Fetch:
            _discard(self.fetchers, cmd.take.queue, req)

    # ------------------------------------------------------------------ subscribers

    def subscribe(self, stream: EventStream) -> None:
        self.subscribers.append(stream)
        self.core.publish_events(True)

    def unsubscribe(self, stream: EventStream) -> None:
        if stream in self.subscribers:
            self.subscribers.remove(stream)
        if not self.subscribers:
            self.core.publish_events(False)


def crashed_error(exc: BaseException) -> RuntimeClosedError:
    """What a caller hears when the engine died of `exc` (its commit failed, or a bug):
    the same on either road, the cause attached."""
    error = RuntimeClosedError(f"the runtime crashed: {exc!r}")
    error.__cause__ = exc
    return error


def _discard(pending: dict[Any, Any], key: Any, req: Request) -> None:
    """Take `req` out of the requests kept pending under `key`, and the key once empty."""
    waiting = pending.get(key)
    if waiting is not None and req in waiting:
        waiting.remove(req)
        if not waiting:
            del pending[key]


def _reply(req: Request) -> None:
    req.replied = True
    if req.done is not None:
        req.done.set()
