"""Sandboxed processors: ``rt.worker(queue, "package.module:function", processes=n)``.

BullMQ's sandboxed processors, for work that would hold the event loop (CPU-bound code, a
library that blocks). The runtime starts `n` child processes; each is a client of the
runtime (`actorq.connect`, over the runtime's listener, or a private Unix socket when it
has none) and runs the function as an ordinary processor worker, with the whole job API
inside (progress, logs, data updates, step moves). An ``async def`` runs on the child's
event loop; a plain function in a worker thread of the child, so the child's connection
keeps renewing its jobs' locks while it computes.

A child that dies (killed, crashed, out of memory) fails the attempts it was running, and
only those: the pool tells the engine (`FailHeld`) and starts a new child. Each child's
worker token is known to the pool for that reason: ``{pool token}.{child number}.``
prefixes it.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import anyio
from anyio.abc import Process

from .._core import commands as c
from .._exceptions import InvalidOptionError

if TYPE_CHECKING:
    from .._api import RuntimeAPI

log = logging.getLogger("actorq.sandbox")

#: Seconds a child has to finish its jobs and exit once asked, before it is killed.
CLOSE_TIMEOUT: Final = 30.0


def processor_spec(processor: object, run_in_thread: bool) -> str:
    """A sandboxed worker's processor, checked in this process: it must import here too."""
    if run_in_thread:
        raise InvalidOptionError(
            "run_in_thread", True, "a sandboxed processor runs in its own process"
        )
    load(processor)
    assert isinstance(processor, str)
    return processor


def load(spec: object) -> Callable[..., Any]:
    """The function ``"package.module:function"`` names (InvalidOptionError: none)."""
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise InvalidOptionError(
            "processor", spec, "a sandboxed processor is named 'package.module:function'"
        )
    module_name, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise InvalidOptionError("processor", spec, f"cannot be imported: {exc}") from None
    if not callable(fn):
        raise InvalidOptionError("processor", spec, "is not a function")
    return fn  # type: ignore[no-any-return]


class Sandbox:
    """A pool of child processes running one processor over one queue (the `Worker`'s
    actor for a sandboxed worker)."""

    def __init__(
        self,
        rt: RuntimeAPI,
        token: str,
        queue: str,
        spec: str,
        processes: int,
        concurrency: int,
        lock_duration: float,
        max_stalled_count: int,
    ) -> None:
        self.rt = rt
        self.token = token
        self.queue = queue
        self.spec = spec
        self.processes = processes
        self.concurrency = concurrency
        self.lock_duration = lock_duration
        self.max_stalled_count = max_stalled_count
        self.children: dict[int, Process] = {}
        self._closing = False
        self._closed = anyio.Event()
        self._started = 0

    async def run(self, url: str, token: str | None) -> None:
        try:
            async with anyio.create_task_group() as tg:
                for number in range(self.processes):
                    tg.start_soon(self._keep, number, url, token)
        finally:
            self._closed.set()

    async def _keep(self, number: int, url: str, token: str | None) -> None:
        """Run child `number`, and a new one each time it dies, until the pool closes."""
        while not self._closing:
            prefix = f"{self.token}.{number}.{self._started}."
            self._started += 1
            env = {**os.environ, "ACTORQ_TOKEN": token or "", "ACTORQ_TOKEN_PREFIX": prefix}
            args = [url, self.queue, self.spec, str(self.concurrency)]
            args += [repr(self.lock_duration), str(self.max_stalled_count)]
            child = await anyio.open_process(
                [sys.executable, "-m", "actorq._remote.sandbox_child", *args],
                stdin=subprocess.PIPE,
                stdout=None,
                stderr=None,
                env=env,
            )
            self.children[number] = child
            try:
                code = await child.wait()
            finally:
                with anyio.CancelScope(shield=True):
                    if child.returncode is None:
                        child.kill()
                        await child.wait()
                    if child.stdin is not None:
                        await child.stdin.aclose()
            if self._closing and code == 0:
                return
            log.warning("sandboxed processor %s: child %d exited %s", self.spec, number, code)
            # Its jobs fail now, each its attempt only, rather than at their locks' expiry.
            await self.rt._send(
                c.FailHeld(
                    frozenset({f"{prefix}worker-1"}),
                    f"the sandboxed processor's process exited with {code}",
                )
            )
            await anyio.sleep(0.1)  # a child that dies at start does not spin the CPU

    async def aclose(self) -> None:
        """Ask every child to finish its jobs and exit; kill what is left after a while."""
        self._closing = True
        for child in list(self.children.values()):
            if child.stdin is not None:
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await child.stdin.aclose()
        with anyio.move_on_after(CLOSE_TIMEOUT):
            await self._closed.wait()
        for child in self.children.values():
            if child.returncode is None:
                child.kill()
