"""The worker actor: runs a processor over the jobs the scheduler hands it.

Theory of operation
-------------------
The scheduler sends a worker lists of jobs, never more in flight than its `concurrency`.
`concurrency` long-lived runner tasks share the worker's local line; there is no task per job.
A runner that finds the line empty reports the outcomes gathered so far to the scheduler in
one message, then parks on the inbox.

A runner starts each job's coroutine by hand (``coro.send(None)``). A processor that finishes
without suspending, the common case for short jobs, costs no trip through the event loop at
all: the runner takes the next job at once. A processor that does suspend is handed to
`_Resume`, which carries on delegating exactly as ``await`` would, and before awaiting it the
runner reports what it has and wakes an idle runner for the rest of the line, so jobs that
wait on I/O still run `concurrency` at a time.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import Any

import anyio
import anyio.lowlevel
import orjson
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._core import JobRecord
from .._exceptions import DelayedError, UnrecoverableError, WaitingChildrenError
from ..clock import Clock, VirtualClock, _holds_token
from .messages import DELAY, FAIL, OK, RELEASED, Outcome, Outcomes
from .scheduler import Scheduler

log = logging.getLogger("actorq.worker")

_NULL = b"null"


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
        inbox: MemoryObjectReceiveStream[list[JobRecord]],
        inbox_tx: MemoryObjectSendStream[list[JobRecord]],
        mailbox: MemoryObjectSendStream[Any],
        scheduler: Scheduler,
    ) -> None:
        self.token = token
        self.slot: Any = None  # the scheduler's WorkerSlot, set at registration
        self._processor = processor
        self._make_job = make_job
        self._concurrency = concurrency
        self._run_in_thread = run_in_thread
        self._clock = clock
        self._vclock = clock if isinstance(clock, VirtualClock) else None
        self._inbox = inbox
        self._inbox_tx = inbox_tx
        self._mailbox = mailbox
        self._sched = scheduler
        self._local: deque[JobRecord] = deque()
        self._reports: list[Outcome] = []
        self._idle = 0
        self._running: dict[int, anyio.CancelScope] = {}

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(self._concurrency):
                tg.start_soon(self._runner)
            task_status.started()

    def abort(self, job_id: int) -> None:
        """Cancel the processor running `job_id` (the job was cancelled)."""
        scope = self._running.get(job_id)
        if scope is not None:
            scope.cancel()

    def _flush(self, *, keep: bool = False) -> None:
        """Report the outcomes gathered so far. With `keep`, jobs the scheduler hands this
        worker in return, when it runs the report inline, go straight to the local line
        (the caller is a runner about to take them) instead of through the inbox."""
        if self._reports:
            reports, self._reports = self._reports, []
            slot = self.slot
            msg = Outcomes(slot, reports)
            sched = self._sched
            if sched.idle():  # no mailbox round trip: see Scheduler.run_inline
                if keep:
                    slot.sink = self._local
                try:
                    sched.run_inline(msg)
                finally:
                    slot.sink = None
            else:
                sched.post(self._mailbox, msg)

    async def _runner(self) -> None:
        while True:
            # One cancel scope serves every job this runner runs until one is aborted (the
            # job was cancelled): a scope per job would cost more than a no-op job itself.
            current: list[int] = []
            with anyio.CancelScope() as scope:
                if await self._run_until_aborted(scope, current):
                    return
            if current:  # the scope was cancelled by `abort` while this job ran
                self._running.pop(current[0], None)
                self._reports.append((RELEASED, current[0]))

    async def _run_until_aborted(self, scope: anyio.CancelScope, current: list[int]) -> bool:
        """Run jobs; True once the inbox is closed, False after an abort hit this scope."""
        local = self._local
        running = self._running
        # Without a thread or a virtual clock to tend, a job without a timeout is stepped
        # right here: `_execute` spelled out, one coroutine fewer per job.
        direct = not self._run_in_thread and self._vclock is None
        processor = self._processor
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
            # Not `self._reports.append(await ...)`: that binds the list before the await,
            # and a flush during the await replaces it, losing this outcome.
            if rec.timeout is not None:
                outcome = await self._run_one(rec)
            elif not direct:
                outcome = await self._execute(make_job(rec, token), rec)
            else:
                job = make_job(rec, token)
                try:
                    coro = processor(job)
                    first = coro.send(None)
                except StopIteration as stop:
                    value = stop.value
                    outcome = (OK, job_id, None) if value is None else _ok(job_id, value)
                except Exception as exc:
                    outcome = _classify(job, exc)
                else:
                    outcome = await self._resume(job, rec, coro, first)
            current.pop()
            del running[job_id]
            self._reports.append(outcome)
            if scope.cancel_called:  # aborted, but the processor finished anyway
                return False

    async def _run_one(self, rec: JobRecord) -> Outcome:
        """Run a job that has a timeout: fail it once the timeout is over."""
        job = self._make_job(rec, self.token)
        assert rec.timeout is not None and rec.processed_at is not None
        deadline = self._clock.deadline(rec.processed_at + rec.timeout)
        with deadline:
            return await self._execute(job, rec)
        return (FAIL, rec.id, f"job timed out after {rec.timeout} s", None, False)

    async def _execute(self, job: Any, rec: JobRecord) -> Outcome:
        if self._run_in_thread:
            return await self._run_in_worker_thread(job, rec)
        vclock = self._vclock
        reset = _holds_token.set(True) if vclock is not None else None
        try:
            try:
                coro = self._processor(job)
                first = coro.send(None)
            except StopIteration as stop:
                return _ok(rec.id, stop.value)
            except Exception as exc:
                return _classify(job, exc)
            return await self._resume(job, rec, coro, first)
        finally:
            if reset is not None:
                _holds_token.reset(reset)

    async def _resume(
        self, job: Any, rec: JobRecord, coro: Coroutine[Any, Any, Any], first: Any
    ) -> Outcome:
        """The processor suspended: report what we have, let an idle runner take the rest
        of the line while this one waits, and carry on with the coroutine."""
        if self._local and self._idle:
            self._inbox_tx.send_nowait([])
        self._flush()
        try:
            value = await _Resume(coro, first)
        except Exception as exc:
            return _classify(job, exc)
        return _ok(rec.id, value)

    async def _run_in_worker_thread(self, job: Any, rec: JobRecord) -> Outcome:
        reset = _holds_token.set(True) if self._vclock is not None else None
        try:
            value = await anyio.to_thread.run_sync(self._processor, job)
        except Exception as exc:
            return _classify(job, exc)
        finally:
            if reset is not None:
                _holds_token.reset(reset)
        return _ok(rec.id, value)


def _ok(job_id: int, value: Any) -> Outcome:
    if value is None:
        return (OK, job_id, None)
    try:
        return (OK, job_id, orjson.dumps(value))
    except TypeError as exc:
        return (FAIL, job_id, f"return value cannot be encoded as JSON: {exc}", None, False)


def _classify(job: Any, exc: Exception) -> Outcome:
    """The outcome a processor's exception means: a control signal or a failed attempt."""
    job_id = job.id
    if isinstance(exc, DelayedError):
        return (RELEASED, job_id) if job._moved else (DELAY, job_id, exc.delay)
    if isinstance(exc, WaitingChildrenError):
        return (RELEASED, job_id)
    return (FAIL, job_id, _reason(exc), _trace(exc), isinstance(exc, UnrecoverableError))


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_ADDRESS = re.compile(r"\b(?:0x)?[0-9a-f]{9,16}\b")


def _trace(exc: BaseException) -> str:
    # Memory addresses (a cancel scope's repr in a chained cancellation) would make the
    # journal differ between two runs of the same simulation seed.
    return _ADDRESS.sub("0x…", "".join(traceback.format_exception(exc)))
