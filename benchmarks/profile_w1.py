"""Profile W1's processing phase once: ``python -m benchmarks.profile_w1 [--cprofile]``.

Uses pyinstrument when it is installed (it is not a dependency of actorq), else cProfile.
Only the worker phase is profiled: the 20,000 jobs are added before the profiler starts.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from collections.abc import Sequence
from typing import Any

import anyio

from actorq import Job, Runtime

from .workloads import W1_CONCURRENCY, W1_JOBS


async def _phase(profiler: Any, start: str, stop: str) -> float:
    done = anyio.Event()
    n = 0

    async def process(job: Job) -> None:
        nonlocal n
        n += 1
        if n == W1_JOBS:
            done.set()

    async with Runtime() as rt:
        q = rt.queue("w1")
        await q.add_bulk([{"name": "noop", "data": None} for _ in range(W1_JOBS)])
        getattr(profiler, start)()
        t0 = time.perf_counter()
        rt.worker(q, process, concurrency=W1_CONCURRENCY)
        await done.wait()
        elapsed = time.perf_counter() - t0
        getattr(profiler, stop)()
    return elapsed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_w1")
    parser.add_argument("--cprofile", action="store_true", help="use cProfile even if "
                        "pyinstrument is installed")  # fmt: skip
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    args = parser.parse_args(argv)
    use_pyinstrument = not args.cprofile
    if use_pyinstrument:
        try:
            from pyinstrument import Profiler  # noqa: PLC0415 (optional tool)
        except ImportError:
            use_pyinstrument = False
    if use_pyinstrument:
        prof: Any = Profiler(interval=0.0001, async_mode="disabled")
        elapsed = anyio.run(_phase, prof, "start", "stop", backend=args.backend)
        print(prof.output_text(unicode=True, color=False, show_all=False))
    else:
        prof = cProfile.Profile()
        elapsed = anyio.run(_phase, prof, "enable", "disable", backend=args.backend)
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue())
    print(f"W1 processing under the profiler: {W1_JOBS / elapsed:,.0f} jobs/s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
