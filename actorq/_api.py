"""`RuntimeAPI`: the calls a runtime offers its handles and users, whatever carries them.

A `Runtime` carries them to its own engine; a client of a runtime host (`actorq.connect`)
carries them over a connection. Handles (`Queue`, `Job`, `Worker`, `FlowProducer`, `Task`)
hold a `RuntimeAPI` and reach the engine only through `_send`, so the same handle code runs
in the host's process and in any other.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

import attrs

from ._core import JobRecord
from ._core import commands as c
from ._exceptions import InvalidOptionError, RuntimeClosedError
from ._job import Job
from ._options import (
    MAX_CONCURRENCY,
    check_processor,
    check_queue_name,
    count,
    positive,
    rate_limiter,
    text,
)
from ._queue import Queue
from ._remote.sandbox import Sandbox, processor_spec
from ._tasks import Task, dispatcher, is_registry
from ._typing import DataT, ResultT
from ._worker import Worker
from .clock import Clock

if TYPE_CHECKING:
    from ._actors.subscription import EventStream
    from .otel import Instruments

NEW, RUNNING, CLOSING, CLOSED = "new", "running", "closing", "closed"


@attrs.frozen
class Processor:
    """A processor worker as its carrier starts it: the worker's token, its queue, the call
    that runs a job, and its settings (see `RuntimeAPI.worker`)."""

    token: str
    queue: str
    call: Callable[[Any], Any]
    concurrency: int
    run_in_thread: bool
    lock_duration: float
    max_stalled_count: int


class RuntimeAPI:
    """The public calls of a runtime, over the few its carriers define (`_send` and kin)."""

    #: The OpenTelemetry instruments while running with them (see `actorq.otel`).
    _telemetry: Instruments | None = None
    #: What this runtime's worker tokens start with (a host's clients each have their own).
    _token_prefix = ""

    def __init__(self, clock: Clock) -> None:
        self.clock: Clock = clock
        self._state = NEW
        self._queues: dict[str, Queue[Any, Any]] = {}
        self._workers: dict[str, Worker[Any, Any]] = {}
        self._tokens = itertools.count(1)

    # ------------------------------------------------------------------ carriers

    def _send(self, command: c.Command) -> Coroutine[Any, Any, Any]:
        """Hand `command` to the engine; awaited, its result once it is durable (or the
        error it met). The one way handles reach the engine."""
        raise NotImplementedError

    async def _send_within(self, command: c.Command, timeout: float) -> tuple[bool, Any]:
        """`_send`, giving up after `timeout` seconds on the runtime's clock: ``(True,
        result)``, or ``(False, None)`` when the time ran out first."""
        raise NotImplementedError

    def _notify(self, command: c.Command) -> None:
        """Send a command whose reply nobody awaits."""
        raise NotImplementedError

    def _peek(self, query: c.Query) -> Any:
        """Answer a read-only command now, for what cannot await (`repr`, a notebook's
        display); None where the engine is not in this process."""
        return None

    def _start_processor(self, processor: Processor) -> Any:
        """Start running `processor`'s call over the jobs of its queue dispatched to its
        worker token; the actor that runs them (the `Worker` handle's, for `pause` and
        `close`)."""
        raise NotImplementedError

    async def _close_runner(self, worker: Worker[Any, Any]) -> None:
        """Stop the processor worker `worker`: no more jobs come, running ones finish."""
        raise NotImplementedError

    def events(self, *, buffer: int = 1024) -> EventStream:
        """Subscribe to lifecycle events (see `Runtime.events`)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ handles

    def queue(self, name: str) -> Queue[Any, Any]:
        """The queue called `name` (created on first use)."""
        q = self._queues.get(name)
        if q is None:
            q = self._queues[check_queue_name(name)] = Queue(self, name)
        return q

    @overload
    def worker(
        self,
        queue: str | Queue[DataT, ResultT],
        processor: None = None,
        *,
        concurrency: int = 1,
        run_in_thread: Literal[False] = False,
        lock_duration: float = 30.0,
        stalled_interval: float = 30.0,
        max_stalled_count: int = 1,
        limiter: Mapping[str, Any] | None = None,
        group_concurrency: int | None = None,
        group_limiter: Mapping[str, Any] | None = None,
    ) -> Worker[DataT, ResultT]: ...

    @overload
    def worker(
        self,
        queue: str | Queue[DataT, ResultT],
        processor: Callable[[Job[DataT, ResultT]], Awaitable[ResultT]],
        *,
        concurrency: int = 1,
        run_in_thread: Literal[False] = False,
        lock_duration: float = 30.0,
        stalled_interval: float = 30.0,
        max_stalled_count: int = 1,
        limiter: Mapping[str, Any] | None = None,
        group_concurrency: int | None = None,
        group_limiter: Mapping[str, Any] | None = None,
    ) -> Worker[DataT, ResultT]: ...

    @overload
    def worker(
        self,
        queue: str | Queue[DataT, ResultT],
        processor: Callable[[Job[DataT, ResultT]], ResultT],
        *,
        concurrency: int = 1,
        run_in_thread: Literal[True],
        lock_duration: float = 30.0,
        stalled_interval: float = 30.0,
        max_stalled_count: int = 1,
        limiter: Mapping[str, Any] | None = None,
        group_concurrency: int | None = None,
        group_limiter: Mapping[str, Any] | None = None,
    ) -> Worker[DataT, ResultT]: ...

    @overload
    def worker(
        self,
        queue: str | Queue[Any, Any],
        processor: Mapping[str, Callable[[Job[Any, Any]], Awaitable[Any]]]
        | Iterable[Task[Any, Any]],
        *,
        concurrency: int = 1,
        run_in_thread: Literal[False] = False,
        lock_duration: float = 30.0,
        stalled_interval: float = 30.0,
        max_stalled_count: int = 1,
        limiter: Mapping[str, Any] | None = None,
        group_concurrency: int | None = None,
        group_limiter: Mapping[str, Any] | None = None,
    ) -> Worker[Any, Any]: ...

    @overload
    def worker(
        self,
        queue: str | Queue[Any, Any],
        processor: Mapping[str, Callable[[Job[Any, Any]], Any]],
        *,
        concurrency: int = 1,
        run_in_thread: Literal[True],
        lock_duration: float = 30.0,
        stalled_interval: float = 30.0,
        max_stalled_count: int = 1,
        limiter: Mapping[str, Any] | None = None,
        group_concurrency: int | None = None,
        group_limiter: Mapping[str, Any] | None = None,
    ) -> Worker[Any, Any]: ...

    @overload
    def worker(
        self,
        queue: str | Queue[Any, Any],
        processor: str,
        *,
        concurrency: int = 1,
        lock_duration: float = 30.0,
        stalled_interval: float = 30.0,
        max_stalled_count: int = 1,
        limiter: Mapping[str, Any] | None = None,
        group_concurrency: int | None = None,
        group_limiter: Mapping[str, Any] | None = None,
        processes: int = 1,
    ) -> Worker[Any, Any]: ...

    def worker(
        self,
        queue: str | Queue[Any, Any],
        processor: Callable[..., Any]
        | Mapping[str, Callable[..., Any]]
        | Iterable[Task[Any, Any]]
        | str
        | None = None,
        *,
        concurrency: int = 1,
        run_in_thread: bool = False,
        lock_duration: float = 30.0,
        stalled_interval: float = 30.0,
        max_stalled_count: int = 1,
        limiter: Mapping[str, Any] | None = None,
        group_concurrency: int | None = None,
        group_limiter: Mapping[str, Any] | None = None,
        processes: int | None = None,
    ) -> Worker[Any, Any]:
        """Start a worker running `processor` (an async function of a `Job`) on `queue`.

        ``concurrency`` jobs run at once (at most 10,000). With ``run_in_thread=True`` the
        processor is a plain function run in a worker thread. What it returns
        (JSON-encodable) becomes the job's return value; what it raises fails the attempt.
        ``processor`` may instead be a table of processors by job name, ``{"send": send,
        "report": report}`` or a list of `Task` (see `task`): each job runs its name's, and a
        job whose name is not in the table fails for good (`UnrecoverableError`).
        Without a processor the worker is manual (see `Worker.get_next_job`): its jobs are
        locked for ``lock_duration`` seconds, and stall when a lock expires. A stall is
        detected the moment the lock expires (a sorted index, not a periodic scan), so
        ``stalled_interval`` is accepted for BullMQ compatibility and never delays detection.
        ``limiter={"max": n, "duration": seconds}`` (BullMQ's) starts at most ``n`` of the
        queue's jobs per ``duration`` seconds, across all its workers and restarts: the
        limit is the queue's (the last worker to set one sets it).
        ``group_concurrency=n`` runs at most ``n`` active jobs per group of the queue and
        ``group_limiter={"max": n, "duration": seconds}`` starts at most ``n`` per group per
        window; the queue's, as ``limiter`` is (see docs/groups.md).
        """
        self._check_running()
        name = queue.name if isinstance(queue, Queue) else check_queue_name(queue)
        lock_duration = positive("lock_duration", lock_duration)
        stalled_interval = positive("stalled_interval", stalled_interval)
        max_stalled_count = count("max_stalled_count", max_stalled_count, 0)
        limit = None if limiter is None else rate_limiter(limiter)
        per_group = None if group_limiter is None else rate_limiter(group_limiter, "group_limiter")
        if group_concurrency is not None:
            group_concurrency = count("group_concurrency", group_concurrency)
        token = f"{self._token_prefix}worker-{next(self._tokens)}"
        if limit is not None:
            self._notify(c.SetLimiter(name, *limit))
        if group_concurrency is not None:
            self._notify(c.SetGroupConcurrency(name, group_concurrency))
        if per_group is not None:
            self._notify(c.SetGroupLimiter(name, per_group))
        # Whatever runs it, a worker's handle is made and kept here, once.
        keep = functools.partial(
            self._keep_worker, name, lock_duration, stalled_interval, max_stalled_count, token
        )
        if processor is None:
            if run_in_thread:
                raise InvalidOptionError("run_in_thread", True, "a manual worker runs nothing")
            return keep(None, 0)
        concurrency = count("concurrency", concurrency, 1, MAX_CONCURRENCY)
        if isinstance(processor, str) or processes is not None:
            sandbox = Sandbox(
                self,
                token,
                name,
                processor_spec(processor, run_in_thread),
                count("processes", 1 if processes is None else processes, 1, 256),
                concurrency,
                lock_duration,
                max_stalled_count,
            )
            self._start_sandbox(sandbox)
            return keep(sandbox, concurrency)
        call = (
            dispatcher(processor, name, run_in_thread)
            if is_registry(processor)
            else check_processor(processor, run_in_thread)
        )
        actor = self._start_processor(
            Processor(
                token, name, call, concurrency, run_in_thread, lock_duration, max_stalled_count
            )
        )
        return keep(actor, concurrency)

    def _keep_worker(
        self,
        queue: str,
        lock_duration: float,
        stalled_interval: float,
        max_stalled_count: int,
        token: str,
        actor: Any,
        concurrency: int,
    ) -> Worker[Any, Any]:
        handle: Worker[Any, Any] = Worker(
            self,
            actor,
            queue,
            concurrency,
            lock_duration,
            stalled_interval,
            max_stalled_count,
            token,
        )
        self._workers[token] = handle
        return handle

    def _start_sandbox(self, sandbox: Sandbox) -> None:
        """Start `sandbox`'s child processes, clients of this runtime (see `_remote.sandbox`)."""
        raise NotImplementedError

    def _workers_of(self, queue: str) -> list[Worker[Any, Any]]:
        return [w for w in self._workers.values() if w.queue == queue]

    def task(
        self, queue: str | Queue[Any, Any], *, name: str | None = None
    ) -> Callable[[Callable[[Job[DataT, ResultT]], Awaitable[ResultT]]], Task[DataT, ResultT]]:
        """Decorator: register an async function as the processor of the jobs called `name`
        (default: the function's name) on `queue`, as a `Task`.

        ``await send.add(data, **options)`` then adds such a job, typed from the function's
        annotations; ``rt.worker(queue, [send, report])`` runs the tasks of a queue. It may be
        used before the runtime starts (``rt = Runtime(...)`` at module level).
        """
        queue_name = queue.name if isinstance(queue, Queue) else check_queue_name(queue)
        if name is not None:
            text("name", name, "a job name must be a non-empty string")

        def register(
            fn: Callable[[Job[DataT, ResultT]], Awaitable[ResultT]],
        ) -> Task[DataT, ResultT]:
            check_processor(fn, False)
            job_name = name if name is not None else getattr(fn, "__name__", None)
            return Task(self, fn, queue_name, text("name", job_name))

        return register

    async def _close_worker(self, worker: Worker[Any, Any]) -> None:
        if self._state == CLOSED:
            return
        self._workers.pop(worker.token, None)
        if worker._actor is None:
            if worker._tokens:
                await self._send(c.CloseManual(frozenset(worker._tokens)))
            return
        if isinstance(worker._actor, Sandbox):
            await worker._actor.aclose()
            return
        await self._close_runner(worker)

    def _check_pausable(self, worker: Worker[Any, Any]) -> None:
        """`Worker.pause` / `Worker.resume` refuse a sandboxed worker, changing nothing."""
        if isinstance(worker._actor, Sandbox):
            # Its processors are workers of its child processes, which register (and are
            # replaced) on their own: pausing the parent's token would stop none of them.
            raise InvalidOptionError(
                "worker",
                worker,
                "a sandboxed worker cannot be paused or resumed; pause its queue "
                "(Queue.pause) or close the worker",
            )

    def _job_for_worker(self, rec: JobRecord, token: str) -> Job[Any, Any]:
        return Job(self, rec, token, None, True)

    async def counts(self) -> dict[str, dict[str, int]]:
        """Counts by state for every queue."""
        raw = await self._send(c.GetCounts())
        return {
            name: {state.value: n for state, n in counts.items()} for name, counts in raw.items()
        }

    # ------------------------------------------------------------------ plumbing

    def _check_running(self) -> None:
        if self._state != RUNNING:
            raise RuntimeClosedError(f"the runtime is {self._state}; use `async with Runtime()`")

    async def wait(self, jobs: Iterable[Job[Any, Any]], progress: bool = False) -> list[Any]:
        """Wait for every job to finish; their return values in order. With `progress`, a
        progress bar (tqdm.auto when installed, plain lines otherwise)."""
        from ._display import wait_for  # noqa: PLC0415 - display code loads on first use

        return await wait_for(jobs, progress)
