"""What a runtime needs to find out as it starts: whether it runs in a Jupyter kernel, its
OpenTelemetry instruments, the backend's checkpoint; and the replay of its journal."""

from __future__ import annotations

import asyncio
import functools
import gc
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

import anyio.lowlevel

from ._actors.changelog import ChangeLog
from ._core import CoreState
from ._exceptions import InvalidOptionError

if TYPE_CHECKING:
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
    (docs/benchmarks.md has the figure)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return core.apply_changes(journal.replay())
    finally:
        if was_enabled:
            gc.enable()


def backend_checkpoint() -> Callable[[], Awaitable[None]]:
    """The running backend's checkpoint, called directly. On asyncio, anyio's `checkpoint` is
    ``asyncio.sleep(0)`` behind a backend lookup, and a caller pays one every 32 calls (see
    `Engine.yield_due`)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # not asyncio: trio
        return anyio.lowlevel.checkpoint
    return functools.partial(asyncio.sleep, 0)
