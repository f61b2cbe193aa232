"""`Runtime`: owns the task group, the scheduler, the workers and the clock."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
import os
import secrets
import shutil
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.lowlevel
import attrs
from anyio.abc import TaskGroup, TaskStatus

from ._actors.changelog import ChangeLog, MemoryChangeLog, NullChangeLog
from ._actors.engine import Engine, crashed_error
from ._actors.messages import Request
from ._actors.outbox import WorkerSlot
from ._actors.renewal import LeasedLocks
from ._actors.scheduler import Scheduler
from ._actors.subscription import DEFAULT_CAPACITY, EventStream, Lagged
from ._actors.worker import WorkerActor
from ._api import CLOSED, CLOSING, NEW, RUNNING, Processor, RuntimeAPI
from ._core import CoreState, JobRecord, JobState
from ._core import commands as c
from ._exceptions import InvalidOptionError, RuntimeClosedError
from ._options import (
    count,
    positive,
)
from ._remote.address import bound as bound_address
from ._remote.address import is_loopback
from ._remote.address import listen as open_listener
from ._remote.address import parse as parse_address
from ._remote.sandbox import Sandbox
from ._startup import (
    advertise,
    backend_checkpoint,
    in_notebook_kernel,
    instruments,
    journal_clock,
    load,
    open_log,
    watch,
)
from ._worker import Worker
from .clock import Clock, SystemClock, VirtualClock

if TYPE_CHECKING:
    from ._standby import Standby
    from .otel import Instruments, Telemetry

log = logging.getLogger("actorq")
log.addHandler(logging.NullHandler())

_NEW, _RUNNING, _CLOSING, _CLOSED = NEW, RUNNING, CLOSING, CLOSED

#: The runtime whose own tasks (loop, workers, processors) the current task is one of.
_within: contextvars.ContextVar[Runtime | None] = contextvars.ContextVar("_within", default=None)


class Runtime(RuntimeAPI):
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
    ``telemetry``: OpenTelemetry traces and metrics (`actorq.otel`, the ``actorq[otel]``
    extra). None (the default) turns them on when opentelemetry-api is installed and an SDK
    has set a global provider; False never; True always (it needs the extra); a
    `actorq.otel.Telemetry` names the providers to use.
    """

    # Slotted (`RuntimeAPI`'s own stay in its dict): handles' calls read these, and CPython
    # does not specialize reads from an instance dict of over 30 keys (it stops sharing it).
    # fmt: off
    __slots__ = (
        "_checkpoint", "_core", "_crash", "_door", "_door_lock", "_engine", "_exited",
        "_halted", "_host", "_host_exit", "_host_task", "_host_token", "_journal",
        "_leased", "_listen", "_outer", "_sched", "_seed", "_ssl", "_stack", "_standby",
        "_stop_asked", "_stopped", "_streams", "_telemetry_option", "_tg", "_vclock",
        "address", "fsync", "path", "shutdown_timeout",
    )
    # fmt: on

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        fsync: str = "always",
        journal: ChangeLog | None = None,
        clock: Clock | None = None,
        seed: int = 0,
        shutdown_timeout: float = 10.0,
        telemetry: bool | Telemetry | None = None,
        listen: str | None = None,
        token: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if clock is not None and not isinstance(clock, Clock):
            raise InvalidOptionError("clock", clock, "must be a SystemClock or VirtualClock")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidOptionError("seed", seed, "must be an integer")
        super().__init__(clock or SystemClock())
        self.shutdown_timeout = positive("shutdown_timeout", shutdown_timeout)
        if path is not None and journal is not None:
            raise InvalidOptionError("journal", journal, "give path= or journal=, not both")
        if fsync not in ("always", "interval", "never"):
            raise InvalidOptionError("fsync", fsync, "must be 'always', 'interval' or 'never'")
        if telemetry is not None and not isinstance(telemetry, bool):
            from .otel import Telemetry  # noqa: PLC0415 - only with the otel extra

            if not isinstance(telemetry, Telemetry):
                raise InvalidOptionError(
                    "telemetry", telemetry, "must be None (auto), True, False or a Telemetry"
                )
        self._telemetry_option = telemetry
        self._listen = None if listen is None else parse_address("listen", listen)
        if token is not None and (not isinstance(token, str) or len(token) < 16):
            raise InvalidOptionError("token", "…", "must be a string of at least 16 characters")
        if self._listen is not None and token is None and not is_loopback(self._listen):
            raise InvalidOptionError(
                "token", None, f"is required to listen on {listen!r}, beyond this machine"
            )
        self._host_token = token
        self._ssl = ssl_context
        #: Where clients connect (`actorq.connect`) while it listens; None when it does not.
        self.address: str | None = None
        self._door: tuple[str, str | None] | None = None  # its sandboxes' private socket
        self._door_lock: anyio.Lock | None = None  # made on first use, on the event loop
        #: The OpenTelemetry instruments while running with them (see `actorq.otel`).
        self._telemetry: Instruments | None = None
        self.path = None if path is None else os.fspath(path)
        self.fsync = fsync
        self._journal: ChangeLog = journal if journal is not None else NullChangeLog()
        self._seed = seed
        self._vclock = self.clock if isinstance(self.clock, VirtualClock) else None
        self._core = CoreState(seed=seed)
        self._engine: Engine | None = None
        self._sched: Scheduler | None = None
        self._stack = contextlib.AsyncExitStack()
        self._tg: Any = None
        #: On a leased journal (several processes lead it in turn): the timed locks of this
        #: runtime's own processors, renewed in batches.
        self._leased: LeasedLocks | None = None
        self._outer: TaskGroup | None = None
        self._host_task: int | None = None  # the task that entered the runtime
        self._crash: BaseException | None = None
        self._halted = False
        self._exited = False
        self._stop_asked: anyio.Event  # made on start: an Event needs the event loop
        self._stopped: anyio.Event
        # Every stream end the runtime made, closed when it stops (subscribers' ends too).
        self._streams: list[Any] = []
        self._checkpoint: Callable[[], Awaitable[None]] = anyio.lowlevel.checkpoint
        #: In a notebook, the task the runtime lives in and what stops it (`_enter_hosted`).
        self._host: tuple[asyncio.Task[None], asyncio.Event] | None = None
        self._host_exit: tuple[Any, Any, Any] = (None, None, None)
        #: While it stands by for another runtime's lease (`actorq._standby`).
        self._standby: Standby | None = None

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        if self._state != _NEW:
            raise RuntimeClosedError("a Runtime can be started once")
        if in_notebook_kernel():
            await self._enter_hosted()
        else:
            await self._enter()
        return self

    async def _enter(self) -> None:
        self._telemetry = instruments(self, self._telemetry_option)  # before it holds anything
        if self.path is not None:
            journal = await open_log(self.path, self.fsync)
            if journal is None:  # another runtime leads, and the URL asks for a standby
                from ._standby import Standby  # noqa: PLC0415 - only a standby needs it

                self._prepare()
                self._standby = Standby(self, self.path)
                await self._standby.enter()
                return
            self._journal = journal
            self.clock = journal_clock(self.clock, self._journal)
        self._lease_locks()
        # Off the event loop: reading and applying a large journal takes seconds.
        replayed = await anyio.to_thread.run_sync(load, self._core, self._journal)
        self._prepare()
        try:
            self._outer = await self._stack.enter_async_context(anyio.create_task_group())
        except BaseException:
            await self._stack.aclose()
            raise
        try:
            await self._start_engine(fresh=not replayed)
        except BaseException as exc:  # its first commit failed, say: stop as a crash does
            await self._exit(type(exc), exc, exc.__traceback__)
            raise

    def _lease_locks(self) -> None:
        """On a leased journal (several processes lead it in turn), this runtime's own
        processors hold timed locks too, under tokens unique across leaders."""
        if getattr(self._journal, "leased", False):
            self._leased = LeasedLocks(self._notify, self.clock.sleep)
            # Tokens unique across leaders: the last one's locks may still be held.
            self._token_prefix = f"epoch{getattr(self._journal, 'epoch', 0)}."

    def _prepare(self) -> None:
        self._host_task = anyio.get_current_task().id
        self._stop_asked = anyio.Event()
        self._stopped = anyio.Event()

    async def _start_engine(self, *, fresh: bool) -> None:
        """Run the engine on the replayed core: its loop, timer and workers' task group, its
        listener; the jobs that were active stall. On entering, or when a standby takes
        over (in the outer task group, entered already)."""
        tx, rx = anyio.create_memory_object_stream[Any](math.inf)
        self._checkpoint = backend_checkpoint()
        self._streams += [tx, rx]
        engine = Engine(self._core, self._journal, self.clock.now)
        engine.mailbox = tx
        self._sched = Scheduler(engine, self.clock, rx)
        if self._telemetry is not None:
            engine.subscribe(self._telemetry)  # type: ignore[arg-type]  # counts its events
        if fresh and self._core.changes is not None:
            # A new history starts with the seed, so a replay never depends on the runtime
            # that reopens it being given the same one.
            self._core.changes.append(("rng", self._core.rng))
        assert self._outer is not None
        self._engine = engine
        self._tg = await self._outer.start(self._supervise)
        if self._vclock is not None:
            self._stack.callback(self._vclock.detach, engine)
        if self._listen is not None:
            await self._serve(self._listen)
        self._state = _RUNNING
        if any(rec.state is JobState.ACTIVE for rec in self._core.jobs.values()):
            # Whoever held them is gone with the previous runtime: they stalled.
            # On a leased journal the last leader may still run them: they stall as their
            # timed locks expire.
            stalled = await self._send(c.StallAllActive(timed=self._leased is None))
            log.warning("%d jobs that were active at the last stop counted as stalled", stalled)
        log.debug("runtime started (%s, %d jobs replayed)", self.clock, len(self._core.jobs))

    @property
    def leading(self) -> bool:
        """Whether this runtime runs the engine now: every running runtime but a standby
        that has not taken over (``actorq_standby=on``; docs/postgresql.md)."""
        return self._engine is not None and not self._halted

    async def wait_leading(self) -> None:
        """Return once this runtime runs the engine (at once unless it is a standby);
        raises `RuntimeClosedError` when it stopped first."""
        standby = self._standby
        if standby is not None:
            await standby.settled.wait()
        if not self.leading:
            raise self._closed_error() from self._crash

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        host = self._host
        if host is None:
            return await self._exit(exc_type, exc, tb)
        task, stop = host
        if not stop.is_set():
            self._host_exit = (exc_type, exc, tb)
            stop.set()
        await asyncio.shield(task)  # the host's result: what its exit raised, if anything
        return None

    async def _enter_hosted(self) -> None:
        """Start in a task of its own on the kernel's loop (a notebook: `in_notebook_kernel`).

        ipykernel runs each cell in its own task, and a task group must be left by the task
        that entered it: a runtime entered in one cell and closed in another would fail with
        anyio's "exit cancel scope in a different task". Here the host task enters and leaves
        it, whichever cells call ``__aenter__`` and ``close``.
        """
        loop = asyncio.get_running_loop()
        entered: asyncio.Future[None] = loop.create_future()
        stop = asyncio.Event()

        async def host() -> None:
            try:
                await self._enter()
            except BaseException as exc:
                entered.set_exception(exc)
                return
            entered.set_result(None)
            try:
                await stop.wait()
            except BaseException as exc:  # the runtime crashed: its task group cancelled us
                await self._exit(type(exc), exc, exc.__traceback__)
                raise
            await self._exit(*self._host_exit)

        self._host = (loop.create_task(host(), name="actorq runtime"), stop)
        await entered

    async def _serve(self, where: tuple[str, int] | str) -> None:
        """Listen for clients in other processes (see `actorq._remote.host`)."""
        listener = await self._start_host(where, self._ssl, self._host_token)
        self.address = bound_address(listener, where)
        await advertise(self._journal, self.address)

    async def _start_host(
        self, where: tuple[str, int] | str, tls: ssl.SSLContext | None, token: str | None
    ) -> Any:
        """Listen on `where` and serve this runtime's engine there (`actorq._remote.host`)
        until the runtime stops; the listener."""
        from ._remote.host import Host  # noqa: PLC0415 - only a listening runtime needs it

        listener = await open_listener(where, tls)
        self._stack.push_async_callback(listener.aclose)
        self._tg.start_soon(Host(self, token).serve, listener, self._tg)
        return listener

    async def _exit(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if self._exited:  # `close()` already did it
            return None
        self._exited = True
        assert self._outer is not None
        try:
            if exc_type is None and self._state == _RUNNING:
                self._ask_stop()
            if exc_type is None:
                await self._stopped.wait()  # the supervisor stops gracefully (`_supervise`)
        finally:
            self._state = _CLOSED
            self._outer.cancel_scope.cancel()
            try:
                # The block's own exception propagates as itself, not wrapped in a group.
                await self._stack.aclose()
            finally:
                self._halt()
                await self._journal.aclose()
        crash = self._crash
        if exc_type is None and crash is not None:
            raise crash  # the runtime stopped of it: it comes out of the block
        return None

    async def _supervise(self, *, task_status: TaskStatus[TaskGroup]) -> None:
        """Run the runtime's own tasks (its loop, timer, clock and workers) in a task group
        of their own, and stop them when asked or when one dies. Inside the block's task
        group they would take the block down with them: a journal that fails would cancel
        the caller awaiting `add` instead of telling it `RuntimeClosedError`, and a `close()`
        from a processor would wait on itself."""
        engine, sched = self._engine, self._sched
        assert engine is not None and sched is not None
        _within.set(self)  # the tasks started below inherit it
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(sched.run)
                await tg.start(sched.run_timer)
                tg.start_soon(watch, engine, self._journal)
                if self._leased is not None:
                    tg.start_soon(self._leased.run)
                if self._vclock is not None:
                    engine.on_idle = self._vclock.poke
                    self._vclock.attach(engine)
                    if self._vclock.autojump:
                        tg.start_soon(self._vclock.drive)
                task_status.started(tg)
                await self._stop_asked.wait()
                await self._graceful_stop()
                tg.cancel_scope.cancel()
        except BaseException as exc:
            if isinstance(exc, anyio.get_cancelled_exc_class()):
                raise
            crashed = engine.crashed
            if crashed is None or isinstance(crashed, anyio.get_cancelled_exc_class()):
                crashed = engine.crashed = exc
            self._crash = crashed
        finally:
            self._halt()
            self._stopped.set()

    async def _own(self, run: Callable[[], Awaitable[None]]) -> None:
        """Run one of the runtime's own tasks, marked as such for `close()`: a task's
        context is copied from the task that started it, not from its task group."""
        _within.set(self)
        await run()

    def _ask_stop(self) -> None:
        if self._state == _RUNNING:
            self._state = _CLOSING
            self._stop_asked.set()

    def _halt(self) -> None:
        """The engine is gone: every caller still waiting hears so, later calls are refused
        (the mailbox is closed), subscriptions end. Idempotent."""
        engine, sched = self._engine, self._sched
        if self._halted or engine is None or sched is None:
            return
        self._halted = True
        engine.fail_pending(self._closed_error(), sched.unread())
        for stream in self._streams:
            stream.close()
        for sub in engine.subscribers:
            sub.end()

    def _closed_error(self) -> RuntimeClosedError:
        if self._crash is not None:
            return crashed_error(self._crash)
        return RuntimeClosedError("the runtime has stopped")

    async def _graceful_stop(self) -> None:
        self._state = _CLOSING
        await self._send(c.StopDispatch())
        with self.clock.deadline(self.clock.now() + self.shutdown_timeout):
            for worker in list(self._workers.values()):
                if isinstance(worker._actor, Sandbox):  # its children finish their jobs
                    await worker._actor.aclose()
            await self._send(c.WaitWorkersIdle())

    def _start_sandbox(self, sandbox: Sandbox) -> None:
        if self._engine is None:
            assert self._standby is not None
            self._standby.start_sandbox(sandbox)
            return

        async def run() -> None:
            url, token = await self._door_for_children()
            await sandbox.run(url, token)

        self._tg.start_soon(run)

    async def _door_for_children(self) -> tuple[str, str | None]:
        """Where this runtime's child processes connect: its listener, or else a Unix
        socket of its own in a private folder, with a token of its own."""
        if self.address is not None:
            return self.address, self._host_token
        if self._door_lock is None:
            self._door_lock = anyio.Lock()
        async with self._door_lock:
            if self._door is None:
                folder = tempfile.mkdtemp(prefix="actorq-")
                self._stack.callback(shutil.rmtree, folder, True)
                path = os.path.join(folder, "runtime.sock")
                token = secrets.token_urlsafe(24)
                await self._start_host(path, None, token)
                self._door = (f"unix:{path}", token)
        return self._door

    async def snapshot(self) -> None:
        """Compact the journal now: write the state as a snapshot, drop covered history."""
        await self._send(c.Snapshot())

    async def close(self) -> None:
        """Stop as leaving the ``async with`` block would (for `start_in_background`).

        From one of the runtime's own processors it asks for that stop and returns at once
        (waiting there would wait on itself): dispatch stops, and the processor's job, like
        every running job, has ``shutdown_timeout`` seconds to finish. From another task it
        waits until the runtime has stopped; the block that entered it still has to exit."""
        if self._state in (_NEW, _CLOSED):
            return
        if _within.get() is self:
            self._ask_stop()
        elif self._host is not None or anyio.get_current_task().id == self._host_task:
            await self.__aexit__(None, None, None)  # a notebook's host task, or the block's
        else:
            self._ask_stop()
            await self._stopped.wait()

    async def wait_stopped(self) -> None:
        """Return once the runtime has stopped: closed, or crashed (its journal failed).

        A service whose block awaits something else (a server, a lifespan) learns of a crash
        here; leaving the block then raises what stopped it."""
        if self._state is _NEW:
            raise RuntimeClosedError("the runtime is not started")
        await self._stopped.wait()

    def statistics(self) -> RuntimeStatistics:
        """How the runtime's batches ran so far (trio's ``statistics()`` convention)."""
        engine = self._engine
        if engine is None:
            return RuntimeStatistics(0, 0, 0, 0)
        return RuntimeStatistics(
            inline_batches=engine.inline_batches,
            loop_batches=engine.loop_batches,
            jobs_running=engine.running,
            calls=engine.calls,
        )

    # ------------------------------------------------------------------ handles

    def _start_processor(self, processor: Processor) -> WorkerActor:
        if self._telemetry is not None:
            call = self._telemetry.wrap(processor.call, processor.queue, processor.run_in_thread)
            processor = attrs.evolve(processor, call=call)
        if self._engine is None:
            assert self._standby is not None
            return self._standby.start_processor(processor)
        return self._run_processor(processor)

    def _run_processor(self, processor: Processor) -> WorkerActor:
        """Run `processor` over its queue's jobs on this runtime's engine."""
        engine = self._engine
        assert engine is not None
        token, concurrency = processor.token, processor.concurrency
        actor = WorkerActor(
            token=token,
            processor=processor.call,
            make_job=self._job_for_worker,
            concurrency=concurrency,
            run_in_thread=processor.run_in_thread,
            clock=self.clock,
            engine=engine,
        )
        self._streams += actor.streams()
        leased = self._leased
        # Untimed (None) unless leased: a lock held as long as its processor runs.
        lock = None if leased is None else processor.lock_duration
        slot = WorkerSlot(
            token,
            processor.queue,
            concurrency,
            actor.inbox_tx,
            actor.abort,
            processor.max_stalled_count,
            lock,
        )
        if leased is not None:
            leased.add(actor, slot)
        self._tg.start_soon(self._own, actor.run)
        self._notify(c.RegisterWorker(slot))
        return actor

    async def _close_runner(self, worker: Worker[Any, Any]) -> None:
        if self._engine is None:
            assert self._standby is not None
            await self._standby.close_runner(worker)
            return
        await self._send(c.CloseWorker(worker.token))
        worker._actor.close()
        if self._leased is not None:
            self._leased.remove(worker.token)

    def events(self, *, buffer: int = DEFAULT_CAPACITY) -> EventStream:
        """Subscribe to lifecycle events: every event after this call, in order.

        Use as ``async with rt.events() as events: async for event in events: ...``. The
        runtime never waits for a subscriber: one that falls more than ``buffer`` events
        behind loses the oldest, and reads a `Lagged` notice of how many before the rest.
        """
        self._check_running()
        if self._engine is None:
            assert self._standby is not None
            return self._standby.events(count("buffer", buffer))
        return EventStream(self._engine, count("buffer", buffer))

    # ------------------------------------------------------------------ plumbing

    async def _send(self, command: c.Command) -> Any:
        """Hand `command` to the engine; its result once it is durable (or the error it
        met). The one way handles reach the engine: `Engine.call` answers it at once when it
        can run inline, else hands back the `Request` to await."""
        out = self._call_engine(command)
        if type(out) is Request:
            return await self._exchange(out)
        return out

    async def _send_within(self, command: c.Command, timeout: float) -> tuple[bool, Any]:
        """`_send`, giving up after `timeout` seconds on the runtime's clock: ``(True,
        result)``, or ``(False, None)`` when the time ran out first. A reply that came at the
        very moment the time ran out still counts (a job locked for the caller is its own)."""
        req = self._call_engine(command)
        if type(req) is not Request:
            return True, req
        try:
            with self.clock.deadline(self.clock.now() + timeout):
                await self._exchange(req, give_back=False)
        except BaseException:
            self._give_back(req)
            raise
        if not req.replied:
            return False, None
        if req.error is not None:
            raise req.error
        return True, req.result

    def _call_engine(self, command: c.Command) -> Any:
        """`Engine.call`: the answer, or the `Request` to `_exchange` (not sent while the
        runtime does not run)."""
        engine = self._engine
        if engine is None or self._state in (_NEW, _CLOSED):
            return Request(command)  # `_exchange` sends it to the leader, or says why not
        try:
            return engine.call(command)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise self._closed_error() from self._crash

    async def _exchange(self, req: Request, give_back: bool = True) -> Any:
        """Wait for `req`'s reply, having submitted it first if `Engine.call` did not (the
        call in 32 that yields first, or one made while the runtime was not running): its
        result, or its error raised. A caller cancelled as the reply came gives back what it
        was handed (`_give_back`) unless `give_back` is False: `_send_within`'s deadline may
        be what cancelled it, and then the reply still counts."""
        engine = self._engine
        if not req.sent:
            if engine is None or self._state in (_NEW, _CLOSED):
                standby = self._standby
                if engine is None and standby is not None and not standby.settled.is_set():
                    return await standby.send(req)  # to the leader, while it stands by
                raise self._closed_error() from self._crash
            await self._checkpoint()  # cancellation is seen here, before anything changed
            if self._state is _CLOSED:  # it stopped meanwhile; its loop may look parked
                raise RuntimeClosedError("the runtime has stopped")
            try:
                engine.submit(req)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                raise self._closed_error() from self._crash
            req.sent = True
        assert engine is not None
        if not req.replied:
            try:
                done = anyio.Event()
                req.done = done
                await done.wait()
            except BaseException:
                if not req.replied:
                    req.abandoned = True
                    engine.forget(req)
                elif give_back:
                    self._give_back(req)
                raise
        if req.error is not None:
            raise req.error
        return req.result

    def _give_back(self, req: Request) -> None:
        """A caller cancelled after its reply came will never see it: a job a fetch locked
        for it goes back to waiting now, no stall counted, instead of staying locked by
        nobody until the lock expires (and then counting as a stall)."""
        job = req.result
        fetched = req.replied and type(req.command) is c.Fetch and isinstance(job, JobRecord)
        if fetched and self._engine is not None:
            gone = (anyio.ClosedResourceError, anyio.BrokenResourceError)
            with contextlib.suppress(*gone):  # the runtime stopped: its close released it
                self._notify(c.Release(job.id, req.command.take.token))

    def _notify(self, command: c.Command) -> None:
        """Send a command whose reply nobody awaits."""
        engine = self._engine
        if engine is None:
            assert self._standby is not None
            self._standby.notify(command)
            return
        req = Request(command)
        req.abandoned = True
        engine.post(req)

    def _peek(self, query: c.Query) -> Any:
        """Run a read-only command now, outside any batch, for what cannot await (a
        notebook's HTML display, `repr`). While a batch is being committed it may show that
        batch's effects a moment before they are durable. A standby answers from the core
        its tail keeps (as of the last batch it read)."""
        if self._engine is None and self._standby is not None:
            return self._standby.tail.peek(query, self.clock.now())
        return self._core.handle(query, self.clock.now())

    def _repr_html_(self) -> str:
        from ._display import runtime_html  # noqa: PLC0415 - display code loads on first use

        return runtime_html(self)

    def __repr__(self) -> str:
        jobs, _counts = self._peek(c.Summary())
        if self._engine is None and self._standby is not None:
            url = self._standby.client.url
            return f"<Runtime {self._state}, standby of {url}, {jobs} jobs, {self.clock!r}>"
        return f"<Runtime {self._state}, {jobs} jobs, {self.clock!r}>"


@attrs.frozen(slots=True)
class RuntimeStatistics:
    """What `Runtime.statistics` reports.

    ``inline_batches``: batches run in their caller's task (the engine was idle and its log
    does not wait); ``loop_batches``: batches the scheduler's loop ran from its mailbox;
    ``jobs_running``: jobs handed to processors whose outcome is not back yet; ``calls``:
    commands handles sent.
    """

    inline_batches: int
    loop_batches: int
    jobs_running: int
    calls: int


__all__ = ["EventStream", "Lagged", "MemoryChangeLog", "Runtime", "RuntimeStatistics"]
