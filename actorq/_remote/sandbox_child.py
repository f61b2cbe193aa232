"""A sandboxed processor's child process (see `sandbox`): a client of the runtime that runs
the processor as a worker until its stdin closes.

``python -m actorq._remote.sandbox_child URL QUEUE SPEC CONCURRENCY LOCK STALLS``, with the
token in ``$ACTORQ_TOKEN`` and its worker tokens' prefix in ``$ACTORQ_TOKEN_PREFIX``.
"""

from __future__ import annotations

import inspect
import os
import sys

import anyio

from .client import RemoteRuntime
from .sandbox import load


async def _child(
    url: str, queue: str, spec: str, concurrency: int, lock: float, stalls: int
) -> None:
    fn = load(spec)
    rt = RemoteRuntime(url, token=os.environ.get("ACTORQ_TOKEN") or None)
    rt._token_prefix = os.environ["ACTORQ_TOKEN_PREFIX"]
    async with rt:
        threaded = not inspect.iscoroutinefunction(fn)
        worker = rt.worker(
            queue,
            fn,
            concurrency=concurrency,
            run_in_thread=threaded,  # type: ignore[call-overload]
            lock_duration=lock,
            max_stalled_count=stalls,
        )
        # The pool closes our stdin to ask us to stop.
        await anyio.to_thread.run_sync(sys.stdin.read)
        await worker.close()


if __name__ == "__main__":
    _url, _queue, _spec, _n, _lock, _stalls = sys.argv[1:]
    anyio.run(_child, _url, _queue, _spec, int(_n), float(_lock), int(_stalls))
