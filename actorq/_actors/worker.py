"""The worker actor: runs a processor over the jobs the engine hands it.

Theory of operation
-------------------
The engine sends a worker lists of jobs, never more in flight than its `concurrency`.
`concurrency` long-lived runner tasks share the worker's local line; there is no task per job.
A runner that finds the line empty reports the outcomes gathered so far to the engine in
one `Report` (through `Engine.submit`, inline when the engine is idle), then parks on the
inbox.

A runner starts each job's coroutine by hand (``coro.send(None)``). A processor that finishes
without suspending, the common case for short jobs, costs no trip through the event loop at
all: the runner takes the next job at once. A processor that does suspend is handed to
`_Resume`, which carries on delegating exactly as ``await`` would, and before awaiting it the
runner reports what it has and wakes an idle runner for the rest of the line, so jobs that
wait on I/O still run `concurrency` at a time. A processor run in a thread is the same: its
coroutine is `anyio.to_thread.run_sync`'s. A job's `timeout` is a deadline around the wait.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any, Protocol, cast

import anyio
import anyio.lowlevel
import anyio.to_thread
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._codec import encode
from .._core import JobRecord
from .._core import commands as c
from .._core.records import MAX_WAIT
from .._exceptions import DelayedError, InvalidOptionError, UnrecoverableError, WaitingChildrenError
from .._failures import log_failed_attempt, reason, storable, trace
from ..clock import Clock, Probe, VirtualClock, running_for

if TYPE_CHECKING:
    from .engine import Engine

Outcome = tuple[int, bytes | None] | c.Fail | c.MoveToDelayed


class Door(Protocol):
    """Where a worker's reports go: the engine itself (`Engine.submit`), or, for a worker
    in a runtime host's client, the connection to the host."""

    def submit(self, msg: c.Report, sink: deque[JobRecord] | None = None) -> None: ...


class _Resume:
    """Await a coroutine that has already been stepped once and yielded `first`."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro = self.coro
        value = self.first
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # cancellation and the like go into the coroutine
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


class WorkerActor:
    def __init__(
        self,
        *,
        token: str,
        processor: Callable[[Any], Any],
        make_job: Callable[[JobRecord, str], Any],
        concurrency: int,
        run_in_thread: bool,
        clock: Clock,
        engine: Door,
        probe: Probe | None = None,
    ) -> None:
        self.token = token
        self._call: Callable[[Any], Any] = (
            (lambda job: anyio.to_thread.run_sync(processor, job)) if run_in_thread else processor
        )
        self._make_job = make_job
        self._concurrency = concurrency
        self._clock = clock
        self._vclock = clock if isinstance(clock, VirtualClock) else None
        inbox_tx, inbox = anyio.create_memory_object_stream[list[JobRecord]](math.inf)
        #: Where the engine's jobs for it go (its slot's inbox); closed by `close`.
        self.inbox_tx: MemoryObjectSendStream[list[JobRecord]] = inbox_tx
        self._inbox: MemoryObjectReceiveStream[list[JobRecord]] = inbox
        self._inbox_tx = inbox_tx
        self._engine = engine
        #: What a virtual clock asks about its jobs: the engine, or a client's own probe.
        self._probe = probe if probe is not None else cast("Engine", engine)
        self._local: deque[JobRecord] = deque()
        self._reports: list[Outcome] = []
        self._freed = 0
        self._idle = 0
        self._running: dict[int, anyio.CancelScope] = {}
        self._aborted = False

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(self._concurrency):
                tg.start_soon(self._runner)
            task_status.started()

    def abort(self, job_id: int) -> None:
        """Cancel the processor running `job_id` (the job was cancelled)."""
        scope = self._running.get(job_id)
        if scope is not None:
            # Runners ask their scope whether it was cancelled only once some job was.
            self._aborted = True
            scope.cancel()

    def held(self) -> list[int]:
        """The ids of the jobs it holds: running, or waiting on its local line."""
        return [*self._running, *(rec.id for rec in self._local)]

    def close(self) -> None:
        """No more jobs will come: the runners stop once the line is empty."""
        self._inbox_tx.close()

    def streams(self) -> list[Any]:
        """Both ends of its inbox, for its runtime to close when it stops."""
        return [self._inbox_tx, self._inbox]

    def _flush(self, *, keep: bool = False) -> None:
        """Report the outcomes gathered so far. With `keep`, jobs the engine hands this
        worker in return, when it runs the report inline, go straight to the local line
        (the caller is a runner about to take them) instead of through the inbox."""
        if self._freed:
            report = c.Report(self.token, self._reports, self._freed)
            self._reports = []
            self._freed = 0
            self._engine.submit(report, self._local if keep else None)

    async def _runner(self) -> None:
        if self._vclock is not None:
            # This task's processors run for the engine: the clock tells it when they sleep.
            running_for.set(self._probe)
        while True:
            # One cancel scope serves every job this runner runs until one is aborted (the
            # job was cancelled): a scope per job would cost more than a no-op job itself.
            current: list[int] = []
            with anyio.CancelScope() as scope:
                if await self._run_until_aborted(scope, current):
                    return
            if current:  # the scope was cancelled by `abort` while this job ran
                self._running.pop(current[0], None)
                self._freed += 1

    async def _run_until_aborted(self, scope: anyio.CancelScope, current: list[int]) -> bool:
        """Run jobs; True once the inbox is closed, False after an abort hit this scope."""
        local = self._local
        running = self._running
        make_job = self._make_job
        token = self.token
        while True:
            if not local:
                self._flush(keep=True)
                if local:
                    # This runner's own outcomes, applied inline, brought the next jobs
                    # straight here. Yield once per batch so the rest of the program runs,
                    # but wake no other runner: one hot runner beats fifty taking turns.
                    await anyio.lowlevel.checkpoint()
                    continue
                self._idle += 1
                try:
                    batch = await self._inbox.receive()
                except anyio.EndOfStream:
                    return True
                finally:
                    self._idle -= 1
                local.extend(batch)
                continue
            rec = local.popleft()
            job_id = rec.id
            running[job_id] = scope
            current.append(job_id)
            job = make_job(rec, token)
            # Not `self._reports.append(await ...)`: that binds the list before the await,
            # and a flush during the await replaces it, losing this outcome.
            if rec.timeout is None:  # no deadline: no scope to enter and leave per job
                outcome = self._begin(job)
                if isinstance(outcome, _Resume):
                    outcome = await self._wait(job, outcome)
            else:
                outcome = await self._run_timed(job, rec)
            current.pop()
            del running[job_id]
            self._freed += 1
            if outcome is not None:
                self._reports.append(outcome)
            if self._aborted and scope.cancel_called:  # aborted, but the processor finished
                return False

    def _begin(self, job: Any) -> Outcome | _Resume | None:
        """Start the processor: its outcome if it ended without suspending (None: the job
        already left active through a command), else the `_Resume` to await."""
        try:
            coro = self._call(job)
            first = coro.send(None)
        except StopIteration as stop:
            value = stop.value
            # A processor that returns nothing (most do) needs no encoding: no call for it.
            return (job._rec.id, None) if value is None else _ok(job, value, self.token)
        except BaseException as exc:
            if not _processors_own(exc):
                raise
            return _classify(job, exc, self.token)
        return _Resume(coro, first)

    async def _wait(self, job: Any, resume: _Resume) -> Outcome | None:
        """The processor suspended: report what we have, let an idle runner take the rest
        of the line while this one waits, and carry on with the coroutine."""
        if self._local and self._idle:
            self._inbox_tx.send_nowait([])
        self._flush()
        try:
            return _ok(job, await resume, self.token)
        except BaseException as exc:
            if not _processors_own(exc):
                raise
            return _classify(job, exc, self.token)

    async def _run_timed(self, job: Any, rec: JobRecord) -> Outcome | None:
        """Run a job that has a timeout: a deadline around the whole run, entered before
        the processor's first step, so scopes the processor opens nest inside it."""
        assert rec.timeout is not None and rec.processed_at is not None
        deadline = self._clock.deadline(rec.processed_at + rec.timeout)
        with deadline:
            started = self._begin(job)
            return await self._wait(job, started) if isinstance(started, _Resume) else started
        why = f"job timed out after {rec.timeout} s"  # the deadline cancelled the run
        log_failed_attempt(rec, why, None)
        return c.Fail(rec.id, self.token, why)


def _processors_own(exc: BaseException) -> bool:
    """Whether `exc`, out of a processor, is the processor's own outcome (any exception, an
    `asyncio.CancelledError` it raised itself, a `SystemExit`) rather than a cancellation
    of the runner (shutdown, an abort, the job's timeout) or the user's Ctrl-C."""
    if isinstance(exc, Exception):
        return True
    if isinstance(exc, KeyboardInterrupt | GeneratorExit):
        return False
    cancelled = anyio.get_cancelled_exc_class()
    if isinstance(exc, cancelled):
        # A real cancellation of this task is counted by asyncio; trio's `Cancelled` cannot
        # be raised by user code at all.
        if cancelled is not asyncio.CancelledError:
            return False
        task = asyncio.current_task()
        return task is not None and task.cancelling() == 0
    return True


def _ok(job: Any, value: Any, token: str) -> Outcome:
    job_id = job._rec.id  # not the `id` property: every job's outcome passes here
    if value is None:
        return (job_id, None)
    try:
        return (job_id, encode("return value", value))
    except InvalidOptionError as exc:
        why = storable(str(exc))
        log_failed_attempt(job._rec, why, exc)
        return c.Fail(job_id, token, why)


def _classify(job: Any, exc: BaseException, token: str) -> Outcome | None:
    """The outcome a processor's exception means: a control signal or a failed attempt."""
    job_id = job.id
    if isinstance(exc, DelayedError):
        if job._moved:
            return None
        delay = exc.delay
        if delay is not None and (
            isinstance(delay, bool)
            or not isinstance(delay, int | float)
            or not 0 <= delay <= MAX_WAIT
        ):
            # A delay that cannot be a due time fails the attempt; the runtime goes on.
            why = f"DelayedError: delay={delay!r} must be a number of seconds in [0, {MAX_WAIT:g}]"
            log_failed_attempt(job._rec, storable(why), exc)
            return c.Fail(job_id, token, storable(why), trace(exc))
        return c.MoveToDelayed(job_id, token, delay=delay)
    if isinstance(exc, WaitingChildrenError):
        return None
    why = reason(exc)
    unrecoverable = isinstance(exc, UnrecoverableError)
    log_failed_attempt(job._rec, why, exc, unrecoverable=unrecoverable)
    return c.Fail(job_id, token, why, trace(exc), unrecoverable)
