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
import traceback
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import Any

import anyio
import orjson
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._core import JobRecord
from .._exceptions import DelayedError, UnrecoverableError, WaitingChildrenError
from ..clock import Clock, VirtualClock, _holds_token
from .messages import DELAY, FAIL, OK, RELEASED, Outcome, Outcomes

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
        self._local: deque[JobRecord] = deque()
        self._reports: list[Outcome] = []
        self._idle = 0
        self._running: dict[int, anyio.CancelScope] = {}
        self.aborted: set[int] = set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(self._concurrency):
                tg.start_soon(self._runner)
            task_status.started()

    def abort(self, job_id: int) -> None:
        """Cancel the processor running `job_id` (the job was cancelled)."""
        scope = self._running.get(job_id)
        if scope is not None:
            self.aborted.add(job_id)
            scope.cancel()

    def _flush(self) -> None:
        if self._reports:
            reports, self._reports = self._reports, []
            self._mailbox.send_nowait(Outcomes(self.slot, reports))

    async def _runner(self) -> None:
        local = self._local
        while True:
            if not local:
                self._flush()
                self._idle += 1
                try:
                    batch = await self._inbox.receive()
                except anyio.EndOfStream:
                    return
                finally:
                    self._idle -= 1
                local.extend(batch)
                continue
            rec = local.popleft()
            # Not `self._reports.append(await ...)`: that binds the list before the await,
            # and a flush during the await replaces it, losing this outcome.
            outcome = await self._run_one(rec)
            self._reports.append(outcome)

    async def _run_one(self, rec: JobRecord) -> Outcome:
        job = self._make_job(rec, self.token)
        if self._run_in_thread:
            return await self._run_in_worker_thread(job, rec)
        vclock = self._vclock
        reset = _holds_token.set(True) if vclock is not None else None
        try:
            coro = self._processor(job)
            first = coro.send(None)
        except StopIteration as stop:
            return _ok(rec.id, stop.value)
        except Exception as exc:
            return _classify(job, exc)
        finally:
            if reset is not None:
                _holds_token.reset(reset)
        # The processor suspended: only now does it need a cancel scope (for an abort) and a
        # deadline (for its timeout); a job that never suspends cannot be interrupted anyway.
        if self._local and self._idle:
            self._inbox_tx.send_nowait([])  # an idle runner takes the rest of the line
        self._flush()
        return await self._resume(job, rec, coro, first)

    async def _resume(
        self, job: Any, rec: JobRecord, coro: Coroutine[Any, Any, Any], first: Any
    ) -> Outcome:
        job_id = rec.id
        scope = anyio.CancelScope()
        self._running[job_id] = scope
        reset = _holds_token.set(True) if self._vclock is not None else None
        try:
            with scope:
                if rec.timeout is None:
                    value = await _Resume(coro, first)
                else:
                    assert rec.processed_at is not None
                    deadline = self._clock.deadline(rec.processed_at + rec.timeout)
                    with deadline:
                        value = await _Resume(coro, first)
                    if deadline.cancelled_caught:
                        return (FAIL, job_id, f"job timed out after {rec.timeout} s", None, False)
                return _ok(job_id, value)
            # Only an abort cancels this scope: the job was cancelled while it ran.
            return (RELEASED, job_id)
        except Exception as exc:
            return _classify(job, exc)
        finally:
            if reset is not None:
                _holds_token.reset(reset)
            del self._running[job_id]
            self.aborted.discard(job_id)

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


def _trace(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))
