"""What OpenTelemetry costs per job: ``python -m benchmarks.otel [--jobs N] [--repeats R]``.

W1 (no-op jobs, a worker of concurrency 50, on ``Runtime()``), processing phase timed, best of
`repeats` runs per mode, each mode in a fresh child process (a global provider can be set
only once per process):

* ``off``: ``Runtime(telemetry=False)``, the baseline;
* ``api-no-sdk``: opentelemetry-api imported by the program but no SDK configured (the
  default ``telemetry=None`` then instruments nothing);
* ``sdk-noop``: an SDK tracer provider whose span processor drops every span and an SDK
  meter provider with a reader never collected: the cost of making the spans and recording
  the metrics, without any export.

It needs the ``otel`` extra and opentelemetry-sdk (both in ``dev``). A benchmark, not a
test: this machine's timings swing by a quarter between runs (see docs/benchmarks.md), so
read the ratio of one run's modes; `benchmarks.instructions` counts instructions for the
``off`` path when a few percent matter.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from typing import Any

MODES = ("off", "api-no-sdk", "sdk-noop")


async def _w1(jobs: int, telemetry: Any) -> float:
    import anyio  # noqa: PLC0415

    from actorq import Runtime  # noqa: PLC0415

    done = anyio.Event()
    finished = 0

    async def noop(job: Any) -> None:
        nonlocal finished
        finished += 1
        if finished == jobs:
            done.set()

    async with Runtime(telemetry=telemetry) as rt:
        q = rt.queue("w1")
        await q.add_bulk([{"name": "noop"} for _ in range(jobs)])
        t0 = time.perf_counter()
        rt.worker(q, noop, concurrency=50)
        await done.wait()
        return time.perf_counter() - t0


def child(mode: str, jobs: int, repeats: int) -> None:
    import anyio  # noqa: PLC0415

    telemetry: Any = False
    if mode == "api-no-sdk":
        import opentelemetry.trace  # noqa: F401, PLC0415 - the program uses the API

        telemetry = None
    elif mode == "sdk-noop":
        from opentelemetry.sdk.metrics import MeterProvider  # noqa: PLC0415
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: PLC0415
        from opentelemetry.sdk.trace import SpanProcessor, TracerProvider  # noqa: PLC0415

        from actorq.otel import Telemetry  # noqa: PLC0415

        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SpanProcessor())  # the base class: drops spans
        meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        telemetry = Telemetry(tracer_provider, meter_provider)
    best = min(anyio.run(_w1, jobs, telemetry) for _ in range(repeats))
    print(best / jobs * 1e6)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", metavar="MODE")
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.jobs, args.repeats)
        return
    base = None
    print(f"| mode | µs/job (best of {args.repeats}) | × off |")
    print("|---|---|---|")
    for mode in MODES:
        cmd = [sys.executable, "-m", "benchmarks.otel", "--child", mode]
        cmd += ["--jobs", str(args.jobs), "--repeats", str(args.repeats)]
        us = float(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
        base = base or us
        print(f"| {mode} | {us:.2f} | {us / base:.2f} |", flush=True)


if __name__ == "__main__":
    main()
