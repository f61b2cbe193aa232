"""`start_in_background`: a `Runtime` on its own thread and event loop.

For notebooks and plain scripts. ipykernel 7 runs each cell in its own task and stalls
background tasks between cells: a plain `Runtime` kept across cells works (it lives in a task
of its own, see `Runtime._enter_hosted`) but runs jobs only while a cell runs. Here the
runtime runs on a thread of its own, behind an anyio blocking portal, and its jobs progress
between cells too.

Two facades over that one portal:

* sync, for scripts: ``bg.queue("x").add(...)`` returns the job, and
  ``job.wait_until_finished()`` blocks until it is done;
* async, for another event loop (a notebook cell): ``await bg.aqueue("x").add(...)``,
  ``await job.wait_until_finished()``, ``await bg.call(async_fn, ...)``. The caller's loop
  is never blocked: it awaits the portal's future.

Processors given to `BackgroundRuntime.worker` run on the runtime's own loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import inspect
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.from_thread
import anyio.to_thread

from ._api import RuntimeAPI
from ._exceptions import RuntimeClosedError
from ._flow import FlowProducer, JobNode
from ._job import Job
from ._queue import Queue
from ._remote.client import RemoteRuntime
from ._runtime import Runtime
from ._worker import Worker

_WRAPPED = (Job, Queue, Worker, FlowProducer, JobNode)


async def _invoke(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call `fn` on the runtime's loop; await what it returns if it is awaitable."""
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


async def _await_future(fut: concurrent.futures.Future[Any]) -> Any:
    """Await a concurrent future from any event loop without blocking that loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # trio (or another loop): wait in a worker thread
    else:
        return await asyncio.wrap_future(fut)
    try:
        return await anyio.to_thread.run_sync(fut.result, abandon_on_cancel=True)
    except anyio.get_cancelled_exc_class():
        fut.cancel()
        raise


class BackgroundRuntime:
    """A handle on a runtime running on its own thread; see `start_in_background`."""

    def __init__(
        self, backend: str = "asyncio", connect: str | None = None, **runtime_kwargs: Any
    ) -> None:
        self._lock = threading.Lock()
        self._stopped = False
        self._portal_cm = anyio.from_thread.start_blocking_portal(backend)
        self._portal = self._portal_cm.__enter__()
        try:
            self.runtime: RuntimeAPI = (
                Runtime(**runtime_kwargs)
                if connect is None
                else RemoteRuntime(connect, **runtime_kwargs)
            )
            self._rt_cm = self._portal.wrap_async_context_manager(self.runtime)
            self._rt_cm.__enter__()
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            raise
        _register_exit(self)

    # ------------------------------------------------------------------ core: one portal

    def _submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fn(*args, **kwargs)` on the runtime's loop; block for the result."""
        if self._stopped:
            raise RuntimeClosedError("the background runtime has stopped")
        return self._portal.call(_invoke, fn, args, kwargs)

    def _future(
        self, fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[Any]:
        if self._stopped:
            raise RuntimeClosedError("the background runtime has stopped")
        return self._portal.start_task_soon(_invoke, fn, args, kwargs)

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fn` (sync or async) on the runtime's loop and return its result (blocking)."""
        return _wrap(self, self._submit(fn, *args, **kwargs), sync=True)

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fn` (sync or async) on the runtime's loop; await it from the caller's loop."""
        return _wrap(self, await _await_future(self._future(fn, *args, **kwargs)), sync=False)

    # ------------------------------------------------------------------ facades

    def queue(self, name: str) -> Facade:
        """The queue `name`, with blocking methods (``.add(...)`` returns a job)."""
        return Facade(self, self._submit(self.runtime.queue, name), sync=True)

    def aqueue(self, name: str) -> Facade:
        """The queue `name`, with awaitable methods for use from another event loop."""
        return Facade(self, self._submit(self.runtime.queue, name), sync=False)

    def flow_producer(self, *, sync: bool = True) -> Facade:
        """A `FlowProducer` on this runtime (blocking methods, or awaitable with sync=False)."""
        return Facade(self, FlowProducer(self.runtime), sync=sync)

    def worker(
        self, queue: str | Queue | Facade, processor: Callable[..., Any], **options: Any
    ) -> Facade:
        """Start a worker (options as `Runtime.worker`); the processor runs on the runtime's
        loop. The returned handle's ``close()`` blocks until the worker has stopped."""
        target: str | Queue = queue._target if isinstance(queue, Facade) else queue
        made = self._submit(functools.partial(self.runtime.worker, target, processor, **options))
        return Facade(self, made, sync=True)

    def counts(self) -> dict[str, dict[str, int]]:
        """Counts by state for every queue (blocking)."""
        result: dict[str, dict[str, int]] = self._submit(self.runtime.counts)
        return result

    async def acounts(self) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = await self.call(self.runtime.counts)
        return result

    # ------------------------------------------------------------------ lifecycle

    @property
    def stopped(self) -> bool:
        return self._stopped

    def stop(self) -> None:
        """Stop gracefully (as leaving ``async with Runtime()``) and join the thread.

        Idempotent. An error the runtime ended with (a crash) is raised here.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        _forget(self)
        try:
            self._rt_cm.__exit__(None, None, None)
        finally:
            self._portal_cm.__exit__(None, None, None)

    async def astop(self) -> None:
        """`stop` from an event loop, without blocking it."""
        await anyio.to_thread.run_sync(self.stop)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _repr_html_(self) -> str:
        from ._display import counts_table  # noqa: PLC0415 - display is optional

        if self._stopped:
            return "<p><b>actorq background runtime</b>: stopped</p>"
        return counts_table("actorq background runtime", self.counts())

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running"
        return f"<BackgroundRuntime {state}: {self.runtime!r}>"


def _wrap(bg: BackgroundRuntime, value: Any, *, sync: bool) -> Any:
    """Wrap handles that live on the runtime's loop so their methods go through the portal."""
    if isinstance(value, _WRAPPED):
        return Facade(bg, value, sync=sync)
    if isinstance(value, list):
        return [_wrap(bg, item, sync=sync) for item in value]
    return value


class Facade:
    """A `Job`, `Queue`, `Worker`, `FlowProducer` or `JobNode` seen from another thread.

    Attributes read through; coroutine methods run on the runtime's loop and either block
    (sync facade) or return an awaitable (async facade). Jobs, queues and workers they return
    come wrapped the same way.
    """

    __slots__ = ("_bg", "_sync", "_target")

    def __init__(self, bg: BackgroundRuntime, target: Any, *, sync: bool) -> None:
        self._bg = bg
        self._target = target
        self._sync = sync

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if inspect.iscoroutinefunction(attr):
            bg = self._bg
            if self._sync:

                def blocking(*args: Any, **kwargs: Any) -> Any:
                    return bg.run(attr, *args, **kwargs)

                return functools.update_wrapper(blocking, attr)

            async def awaitable(*args: Any, **kwargs: Any) -> Any:
                return await bg.call(attr, *args, **kwargs)

            return functools.update_wrapper(awaitable, attr)
        return _wrap(self._bg, attr, sync=self._sync)

    @property
    def unwrapped(self) -> Any:
        """The object itself (use it only on the runtime's loop, e.g. inside a processor)."""
        return self._target

    def _repr_html_(self) -> str | None:
        method = getattr(self._target, "_repr_html_", None)
        if method is not None:
            result: str | None = method()
            return result
        if isinstance(self._target, Job):
            from ._display import job_html  # noqa: PLC0415 - display is optional

            return job_html(self._target)
        return None

    def __repr__(self) -> str:
        return repr(self._target)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Facade):
            return bool(self._target == other._target)
        return bool(self._target == other)

    def __hash__(self) -> int:
        return hash(self._target)


def start_in_background(
    *, backend: str = "asyncio", connect: str | None = None, **runtime_kwargs: Any
) -> BackgroundRuntime:
    """Start a `Runtime(**runtime_kwargs)` on its own thread and event loop; return a handle.

    With ``connect="actorq://HOST:PORT"`` (and ``token=``), a client of that runtime host
    instead (`actorq.connect`): the same blocking calls, carried to the host.

    Usable in a notebook cell or a script (it is a plain function). Stop it with
    ``handle.stop()`` or use the handle as a context manager; a runtime still running when
    the interpreter exits is stopped then.
    """
    return BackgroundRuntime(backend, connect, **runtime_kwargs)


# ---------------------------------------------------------------------- at interpreter exit

_live: set[BackgroundRuntime] = set()
_live_lock = threading.Lock()
_hook_installed = False


def _stop_all() -> None:
    with _live_lock:
        live = list(_live)
        _live.clear()
    for bg in live:
        with contextlib.suppress(Exception):
            bg.stop()


def _register_exit(bg: BackgroundRuntime) -> None:
    """Stop the runtime before the interpreter joins its threads (else the join would hang:
    the portal's thread runs until the portal closes)."""
    global _hook_installed
    with _live_lock:
        _live.add(bg)
        if not _hook_installed:
            _hook_installed = True
            # Threading's exit hooks run before it joins executor threads (reverse order of
            # registration); `atexit` hooks run too late for that.
            register = getattr(threading, "_register_atexit", None)
            if register is not None:
                register(_stop_all)
            else:  # pragma: no cover - every CPython >= 3.9 has it
                import atexit  # noqa: PLC0415

                atexit.register(_stop_all)


def _forget(bg: BackgroundRuntime) -> None:
    with _live_lock:
        _live.discard(bg)


__all__ = ["BackgroundRuntime", "Facade", "start_in_background"]
