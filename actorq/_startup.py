"""What a runtime needs to find out as it starts: whether it runs in a Jupyter kernel, its
OpenTelemetry instruments, the backend's checkpoint; the journal its path names (a folder,
or a ``postgresql://`` URL), its replay, and the watch some journals keep while it runs."""

from __future__ import annotations

import asyncio
import functools
import gc
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

import anyio.lowlevel
import anyio.to_thread

from ._actors.changelog import ChangeLog
from ._core import CoreState
from ._exceptions import InvalidOptionError
from ._journal import GuardsIds
from .clock import Clock, SystemClock

if TYPE_CHECKING:
    from ._actors.engine import Engine
    from ._runtime import Runtime
    from .otel import Instruments, Telemetry


def in_notebook_kernel() -> bool:
    """Whether this is a Jupyter kernel's own loop (ipykernel, asyncio, the main thread),
    where each cell runs in a task of its own."""
    if "ipykernel" not in sys.modules or threading.current_thread() is not threading.main_thread():
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # trio (%autoawait trio): no loop outlives a cell there anyway
        return False
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def instruments(rt: Runtime, option: bool | Telemetry | None) -> Instruments | None:
    """The runtime's OpenTelemetry instruments, or None. None (auto) looks first whether the
    program imported the OpenTelemetry API at all: a provider cannot have been set without
    it, so a program that never touched OpenTelemetry imports none of it, installed or not."""
    if option is False:
        return None
    if option is None and not (_OTEL_API.intersection(sys.modules)):
        return None
    try:
        from . import otel  # noqa: PLC0415 - only with the otel extra
    except ImportError:
        if option is None:
            return None
        raise InvalidOptionError(
            "telemetry", option, "needs opentelemetry-api: pip install 'actorq[otel]'"
        ) from None
    return otel.enable(rt, option)


#: The modules through which a program sets a global tracer or meter provider.
_OTEL_API: Final = frozenset({"opentelemetry.trace", "opentelemetry.metrics"})


def load(core: CoreState, journal: ChangeLog) -> int:
    """Replay the journal into `core`, with the cyclic garbage collector paused: loading
    creates millions of objects that live on, and each collection would walk them all again
    (docs/benchmarks.md has the figure). Then a journal that guards ids starts the core's
    past every id an earlier life may have handed out."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        replayed = core.apply_changes(journal.replay())
    finally:
        if was_enabled:
            gc.enable()
    if isinstance(journal, GuardsIds):
        journal.guard_ids(core)
    return replayed


def backend_checkpoint() -> Callable[[], Awaitable[None]]:
    """The running backend's checkpoint, called directly. On asyncio, anyio's `checkpoint` is
    ``asyncio.sleep(0)`` behind a backend lookup, and a caller pays one every 32 calls (see
    `Engine.call`)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # not asyncio: trio
        return anyio.lowlevel.checkpoint
    return functools.partial(asyncio.sleep, 0)


async def open_log(path: str, fsync: str) -> ChangeLog | None:
    """The change log `path` names, opened in a worker thread: the journal in PostgreSQL
    for a ``postgresql://`` (or ``postgres://``) URL, else the journal folder. Cancelled
    while it waits for a PostgreSQL journal's lease, it withdraws and takes none. None for
    a URL that asks for a standby (``actorq_standby=on``) while another runtime leads: the
    runtime then starts as one (`actorq._standby`)."""
    from ._journal import open_changelog  # noqa: PLC0415 - with its module's own imports
    from ._journal_pg_lease import LeaseHeldError, is_postgres_url, parse_url  # noqa: PLC0415

    if not is_postgres_url(path):
        return await anyio.to_thread.run_sync(functools.partial(open_changelog, path, fsync=fsync))
    if not parse_url(path).standby:
        return await open_pg(path, fsync)
    try:
        return await open_pg(path, fsync, wait=0.0)
    except LeaseHeldError:
        return None


async def open_pg(url: str, fsync: str, wait: float | None = None) -> ChangeLog:
    """`open_pg_changelog` in a worker thread (waiting `wait` seconds for the lease, when
    given), withdrawn when cancelled."""
    from ._journal_pg import CandidacyWithdrawn, open_pg_changelog  # noqa: PLC0415 - as above

    withdraw = threading.Event()

    async def withdraw_when_cancelled() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            withdraw.set()

    opened: ChangeLog | None = None
    refused: Exception | None = None  # raised out here, not wrapped in the group's
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(withdraw_when_cancelled)
            try:
                opened = await anyio.to_thread.run_sync(
                    functools.partial(
                        open_pg_changelog, url, fsync=fsync, withdraw=withdraw, wait=wait
                    )
                )
            except CandidacyWithdrawn:
                pass  # by the cancellation the checkpoint below raises
            except Exception as exc:
                refused = exc
            tg.cancel_scope.cancel()
        if refused is not None:
            raise refused
        # The cancellation that withdrew it, or one that came as it took the lease.
        await anyio.lowlevel.checkpoint()
    except BaseException:
        if opened is not None:
            with anyio.CancelScope(shield=True):
                await opened.aclose()
        raise
    if opened is None:
        raise RuntimeError("a PostgreSQL journal's candidacy was withdrawn uncancelled")
    return opened


@runtime_checkable
class Watched(Protocol):
    """A change log that can fail while nothing is committed (a lease that lapses): the
    runtime runs its `watch` beside the loop, and stops when it raises."""

    async def watch(self) -> None: ...


async def watch(engine: Engine, journal: ChangeLog) -> None:
    """Run the log's watch, if it keeps one; its error becomes the engine's crash (what
    callers are told)."""
    if not isinstance(journal, Watched):
        return
    try:
        await journal.watch()
    except BaseException as exc:
        if engine.crashed is None and not isinstance(exc, anyio.get_cancelled_exc_class()):
            engine.crashed = exc
        raise


async def advertise(journal: ChangeLog, address: str) -> None:
    """Tell a journal that names its leader (the one in PostgreSQL) where clients reach it."""
    tell = getattr(journal, "advertise", None)
    if tell is not None:
        await tell(address)


def journal_clock(clock: Clock, journal: ChangeLog) -> Clock:
    """The clock a runtime keeps on `journal`: the database's time for a journal in
    PostgreSQL when the runtime was given the wall clock (`DatabaseClock`), else `clock`."""
    skew = getattr(journal, "clock_skew", None)
    if type(clock) is not SystemClock or skew is None:
        return clock
    from ._journal_pg import DatabaseClock  # noqa: PLC0415 - the postgresql extra

    return DatabaseClock(skew)
