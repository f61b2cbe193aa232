"""`Runtime`: owns the task group, the scheduler, the workers and the clock."""

from __future__ import annotations

import asyncio
import functools
import gc
import itertools
import logging
import math
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._actors.changelog import ChangeLog, MemoryChangeLog, NullChangeLog
from ._actors.messages import Request
from ._actors.scheduler import INLINE_YIELD_MASK, Scheduler, WorkerSlot
from ._actors.worker import WorkerActor
from ._core import CoreState, JobRecord, JobState
from ._core.events import Event
from ._exceptions import InvalidOptionError, RuntimeClosedError
from ._job import Job
from ._journal import open_changelog
from ._options import check_processor, check_queue_name, count, positive
from ._queue import Queue
from ._worker import Worker
from .clock import Clock, SystemClock, VirtualClock

log = logging.getLogger("actorq")
log.addHandler(logging.NullHandler())

_NEW, _RUNNING, _CLOSING, _CLOSED = "new", "running", "closing", "closed"


class Runtime:
    """An in-process job-queue runtime. Use it as ``async with Runtime() as rt:``.

    ``path`` makes it durable: every acknowledged change is journaled in that folder under
    the ``fsync`` policy (``"always"``, ``"interval"`` or ``"never"``; see the durability
    guarantees in the docs), and a runtime opened on the same folder later replays it.
    ``journal`` instead takes a change log (`MemoryChangeLog` keeps every batch in memory, and a new
    runtime given the same log replays it on start); None keeps no history. ``clock``
    defaults to `SystemClock`; pass a `VirtualClock` to run in virtual time. ``seed`` seeds
    the runtime's own random source (backoff jitter). On leaving the block, the runtime stops
    dispatching, gives running jobs up to ``shutdown_timeout`` seconds to finish, then
    cancels what is left; a second cancellation while it waits is immediate.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        fsync: str = "always",
        journal: ChangeLog | None = None,
        clock: Clock | None = None,
        seed: int = 0,
        shutdown_timeout: float = 10.0,
    ) -> None:
        if clock is not None and not isinstance(clock, Clock):
            raise InvalidOptionError("clock", clock, "must be a SystemClock or VirtualClock")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidOptionError("seed", seed, "must be an integer")
        self.clock: Clock = clock or SystemClock()
        self.shutdown_timeout = positive("shutdown_timeout", shutdown_timeout)
        if path is not None and journal is not None:
            raise InvalidOptionError("journal", journal, "give path= or journal=, not both")
        if fsync not in ("always", "interval", "never"):
            raise InvalidOptionError("fsync", fsync, "must be 'always', 'interval' or 'never'")
        self.path = None if path is None else os.fspath(path)
        self.fsync = fsync
        self._journal: ChangeLog = journal if journal is not None else NullChangeLog()
        self._seed = seed
        self._state = _NEW
        # Running or closing (commands are still taken) with no virtual clock to tell of each
        # command, so a caller may run one through `Scheduler.finish_inline` without `_send`.
        self._fast_path = False
        self._vclock = self.clock if isinstance(self.clock, VirtualClock) else None
        self._queues: dict[str, Queue] = {}
        self._workers: dict[str, Worker] = {}
        self._tokens = itertools.count(1)
        self._core = CoreState(seed=seed)
        self._tg: Any = None
        self._tx: MemoryObjectSendStream[Any] | None = None
        self._sched: Scheduler = None  # type: ignore[assignment]  # set on start
        # Every stream end the runtime made, closed when it stops (subscribers' ends too).
        self._streams: list[Any] = []
        self._inline_calls = 0
        self._checkpoint: Callable[[], Awaitable[None]] = anyio.lowlevel.checkpoint

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        if self._state != _NEW:
            raise RuntimeClosedError("a Runtime can be started once")
        if self.path is not None:
            self._journal = await anyio.to_thread.run_sync(
                functools.partial(open_changelog, self.path, fsync=self.fsync)
            )
        # Off the event loop: reading and applying a large journal takes seconds.
        replayed = await anyio.to_thread.run_sync(_load, self._core, self._journal)
        tx, rx = anyio.create_memory_object_stream[Any](math.inf)
        self._tx = tx
        self._checkpoint = _backend_checkpoint()
        timer_tx = tx.clone()
        self._streams += [tx, rx, timer_tx]
        self._sched = Scheduler(self._core, self._journal, self.clock, rx)
        if not replayed and self._core.changes is not None:
            # A new history starts with the seed, so a replay never depends on the runtime
            # that reopens it being given the same one.
            self._core.changes.append(("rng", self._core.rng))
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        try:
            await tg.start(self._sched.run, timer_tx)
            await tg.start(self._sched.run_timer)
            if self._vclock is not None and self._vclock.autojump:
                tg.start_soon(self._vclock.drive)
        except BaseException:
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)
            raise
        self._state = _RUNNING
        self._fast_path = self._vclock is None
        if any(rec.state is JobState.ACTIVE for rec in self._core.jobs.values()):
            # Whoever held them is gone with the previous runtime: they stalled.
            stalled = await self._call(self._core.stall_all_active)
            log.warning("%d jobs that were active at the last stop counted as stalled", stalled)
        log.debug("runtime started (%s, %d jobs replayed)", self.clock, len(self._core.jobs))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        tg = self._tg
        try:
            if exc_type is None and self._state == _RUNNING:
                await self._graceful_stop()
        finally:
            self._state = _CLOSED
            self._fast_path = False
            tg.cancel_scope.cancel()
            try:
                # The block's own exception propagates as itself, not wrapped in a group.
                await tg.__aexit__(None, None, None)
            finally:
                crashed = self._sched.crashed
                self._sched.fail_pending(
                    RuntimeClosedError(f"the runtime crashed: {crashed!r}")
                    if crashed is not None
                    and not isinstance(crashed, anyio.get_cancelled_exc_class())
                    else RuntimeClosedError("the runtime has stopped")
                )
                for stream in self._streams:
                    stream.close()
                for sub in self._sched.subscribers:
                    sub.close()
                await self._journal.aclose()
        return None

    async def _graceful_stop(self) -> None:
        self._state = _CLOSING
        sched = self._sched
        await self._send(Request(sched.op_stop_dispatch, ()))
        with self.clock.deadline(self.clock.now() + self.shutdown_timeout):
            await self._call_deferred(sched.op_wait_workers_idle)

    async def snapshot(self) -> None:
        """Compact the journal now: write the state as a snapshot, drop covered history."""
        req = Request(self._sched.op_snapshot, ())
        req.args = (req,)
        await self._send(req, inline=False)  # the snapshot itself is written by the loop

    async def close(self) -> None:
        """Stop as leaving the ``async with`` block would (for `start_in_background`)."""
        await self.__aexit__(None, None, None)

    # ------------------------------------------------------------------ handles

    def queue(self, name: str) -> Queue:
        """The queue called `name` (created on first use)."""
        q = self._queues.get(name)
        if q is None:
            q = self._queues[check_queue_name(name)] = Queue(self, name)
        return q

    def worker(
        self,
        queue: str | Queue,
        processor: Callable[..., Any] | None = None,
        *,
        concurrency: int = 1,
        run_in_thread: bool = False,
        lock_duration: float = 30.0,
        stalled_interval: float = 30.0,
        max_stalled_count: int = 1,
    ) -> Worker:
        """Start a worker running `processor` (an async function of a `Job`) on `queue`.

        ``concurrency`` jobs run at once. With ``run_in_thread=True`` the processor is a
        plain function run in a worker thread. What it returns (JSON-encodable) becomes the
        job's return value; what it raises fails the attempt. Without a processor the worker
        is manual (see `Worker.get_next_job`): its jobs are locked for ``lock_duration``
        seconds, and stall when a lock expires. A stall is detected the moment the lock
        expires (a sorted index, not a periodic scan), so ``stalled_interval`` is accepted for
        BullMQ compatibility and never delays detection.
        """
        self._check_running()
        name = queue.name if isinstance(queue, Queue) else check_queue_name(queue)
        lock_duration = positive("lock_duration", lock_duration)
        stalled_interval = positive("stalled_interval", stalled_interval)
        max_stalled_count = count("max_stalled_count", max_stalled_count, 0)
        token = f"worker-{next(self._tokens)}"
        if processor is None:
            if run_in_thread:
                raise InvalidOptionError("run_in_thread", True, "a manual worker runs nothing")
            handle = Worker(
                self, None, name, 0, lock_duration, stalled_interval, max_stalled_count, token
            )
            self._workers[token] = handle
            return handle
        check_processor(processor, run_in_thread)
        concurrency = count("concurrency", concurrency)
        inbox_tx, inbox_rx = anyio.create_memory_object_stream[list[JobRecord]](math.inf)
        assert self._tx is not None
        mailbox = self._tx.clone()
        self._streams += [inbox_tx, inbox_rx, mailbox]
        actor = WorkerActor(
            token=token,
            processor=processor,
            make_job=self._job_for_worker,
            concurrency=concurrency,
            run_in_thread=run_in_thread,
            clock=self.clock,
            inbox=inbox_rx,
            inbox_tx=inbox_tx,
            mailbox=mailbox,
            scheduler=self._sched,
        )
        slot = WorkerSlot(token, name, concurrency, inbox_tx, actor.abort, max_stalled_count)
        actor.slot = slot
        self._tg.start_soon(actor.run)
        self._notify(self._sched.op_register, slot)
        handle = Worker(
            self,
            actor,
            name,
            concurrency,
            lock_duration,
            stalled_interval,
            max_stalled_count,
            token,
        )
        self._workers[token] = handle
        return handle

    async def _close_worker(self, worker: Worker) -> None:
        if self._state == _CLOSED:
            return
        self._workers.pop(worker.token, None)
        if worker._actor is None:
            if worker._tokens:
                await self._call_op(self._sched.op_release_tokens, frozenset(worker._tokens))
            return
        await self._call_deferred(self._sched.op_close_worker, worker.token)
        worker._actor.slot.inbox.close()

    def _job_for_worker(self, rec: JobRecord, token: str) -> Job:
        return Job(self, rec, token, None, True)

    def events(self) -> EventStream:
        """Subscribe to lifecycle events: every event after this call, none missed.

        Use as ``async with rt.events() as events: async for event in events: ...``.
        """
        self._check_running()
        tx, rx = anyio.create_memory_object_stream[Event](math.inf)
        self._sched.subscribe(tx)
        return EventStream(self, tx, rx)

    async def counts(self) -> dict[str, dict[str, int]]:
        """Counts by state for every queue."""

        def query() -> dict[str, dict[str, int]]:
            return {
                name: {state.value: n for state, n in qs.counts.items()}
                for name, qs in sorted(self._core.queues.items())
            }

        result: dict[str, dict[str, int]] = await self._call(query, needs_now=False)
        return result

    # ------------------------------------------------------------------ plumbing

    def _check_running(self) -> None:
        if self._state != _RUNNING:
            raise RuntimeClosedError(f"the runtime is {self._state}; use `async with Runtime()`")

    async def _call(
        self, fn: Callable[..., Any], *args: Any, needs_now: bool = True, **kwargs: Any
    ) -> Any:
        """Run `fn(*args[, now])` inside the scheduler's next batch; return after the commit."""
        if kwargs:
            fn = functools.partial(fn, **kwargs)
        sched = self._sched
        if sched is None:
            raise RuntimeClosedError("the runtime is not started; use `async with Runtime()`")
        op = sched.op_call if needs_now else sched.op_plain
        return await self._send(Request(op, (fn, *args)))

    async def _call_op(self, op: Callable[..., Any], *args: Any) -> Any:
        return await self._send(Request(op, args))

    async def _call_deferred(self, op: Callable[..., Any], *args: Any) -> Any:
        req = Request(op, ())
        req.args = (*args, req)
        return await self._send(req)

    def _notify(self, op: Callable[..., Any], *args: Any) -> None:
        """Send a command whose reply nobody awaits."""
        req = Request(op, args)
        req.abandoned = True
        if self._vclock is not None:
            self._vclock.hold()
        assert self._tx is not None
        self._sched.post(self._tx, req)

    async def _send(self, req: Request, *, inline: bool = True) -> Any:
        if self._state in (_NEW, _CLOSED) or self._tx is None:
            raise RuntimeClosedError(f"the runtime is {self._state}")
        vclock = self._vclock
        sched = self._sched
        if inline and sched._commit_nowait is not None:
            # Run the request in this task when the scheduler is idle (see Scheduler.idle).
            # One call in 32 first yields to the loop (a checkpoint: cancellation is seen
            # there, before anything changed), so a caller looping on inline calls, such as
            # a manual consumer polling, cannot starve the other tasks: it holds the loop
            # ~0.1 ms at a time, as a worker's runner does between its batches. The other
            # calls do not suspend: a checkpoint costs as much as the call.
            if not (self._inline_calls + 1) & INLINE_YIELD_MASK:
                await self._checkpoint()
                if self._state is _CLOSED:  # it stopped meanwhile; its loop may still look idle
                    raise RuntimeClosedError("the runtime has stopped")
            if sched.idle():
                self._inline_calls += 1
                if vclock is not None:
                    vclock.hold()
                sched.run_inline(req)
                if req.replied:
                    if vclock is not None:
                        vclock.release()
                    if req.error is not None:
                        raise req.error
                    return req.result
                return await self._reply_of(req)
        if vclock is not None:
            vclock.hold()
        try:
            sched.post(self._tx, req)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            if vclock is not None:
                vclock.release()
            raise RuntimeClosedError("the runtime has stopped") from None
        return await self._reply_of(req)

    async def _reply_of(self, req: Request) -> Any:
        """Wait for the scheduler's reply to `req` (sent, or deferred while run inline)."""
        vclock = self._vclock
        try:
            if not req.replied:
                done = req.done = anyio.Event()
                await done.wait()
            else:
                await anyio.lowlevel.checkpoint()
        except BaseException:
            if req.replied:
                if vclock is not None:
                    vclock.release()
            else:
                req.abandoned = True
            raise
        if vclock is not None:
            vclock.release()
        if req.error is not None:
            raise req.error
        return req.result

    async def wait(self, jobs: Iterable[Job], progress: bool = False) -> list[Any]:
        """Wait for every job to finish; their return values in order. With `progress`, a
        progress bar (tqdm.auto when installed, plain lines otherwise)."""
        from ._display import wait_for  # noqa: PLC0415 - display code loads on first use

        return await wait_for(jobs, progress)

    def _repr_html_(self) -> str:
        from ._display import runtime_html  # noqa: PLC0415 - display code loads on first use

        return runtime_html(self)

    def __repr__(self) -> str:
        return f"<Runtime {self._state}, {len(self._core.jobs)} jobs, {self.clock!r}>"


def _load(core: CoreState, journal: ChangeLog) -> int:
    """Replay the journal into `core`, with the cyclic garbage collector paused: loading
    creates millions of objects that live on, and each collection would walk them all again
    (1.75x faster on 200k jobs)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return core.apply_changes(journal.replay())
    finally:
        if was_enabled:
            gc.enable()


class EventStream:
    """An async iterator over lifecycle events; close it (or leave its block) to unsubscribe."""

    def __init__(
        self,
        rt: Runtime,
        tx: MemoryObjectSendStream[Event],
        rx: MemoryObjectReceiveStream[Event],
    ) -> None:
        self._rt = rt
        self._tx = tx
        self._rx = rx

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._rx.__aiter__()

    async def __anext__(self) -> Event:
        return await self._rx.receive()

    def receive_nowait(self) -> Event:
        return self._rx.receive_nowait()

    def drain_nowait(self) -> list[Event]:
        """Every event already delivered, without waiting (empty when none is)."""
        out: list[Event] = []
        while True:
            try:
                out.append(self._rx.receive_nowait())
            except anyio.WouldBlock:
                return out

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._rt._sched.unsubscribe(self._tx)
        self._tx.close()
        self._rx.close()


__all__ = ["EventStream", "MemoryChangeLog", "Runtime"]


def _backend_checkpoint() -> Callable[[], Awaitable[None]]:
    """The running backend's checkpoint, called directly. On asyncio, anyio's `checkpoint` is
    ``asyncio.sleep(0)`` behind a backend lookup that costs a third of it, and an inline
    caller pays one every 32 calls (see `Runtime._send`)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # not asyncio: trio
        return anyio.lowlevel.checkpoint
    return functools.partial(asyncio.sleep, 0)
