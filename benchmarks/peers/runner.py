"""Run one peer's workload in this process: ``python -m benchmarks.peers.runner``.

`benchmarks.compare` starts one such process per (peer, workload), so a peer's threads,
connections or crashes cannot affect the next one. Prints one JSON object per repetition on
stdout: ``{"sample": {...}}``, or ``{"skip": reason}`` / ``{"error": reason}``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import inspect
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence

from . import BY_LABEL
from .common import Env, Params

REP_TIMEOUT = 180.0


def emit(obj: dict[str, object]) -> None:
    print(json.dumps(obj), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.peers.runner")
    ap.add_argument("--peer", required=True)
    ap.add_argument("--workload", required=True, choices=("W1", "W2", "W3", "W4"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--params", default="{}")
    ap.add_argument("--redis-url", default="")
    ap.add_argument("--pg-dsn", default="")
    args = ap.parse_args(argv)
    peer = BY_LABEL[args.peer]
    params = Params(**json.loads(args.params))
    try:
        module = importlib.import_module(f"benchmarks.peers.{peer.module}")
    except ImportError as exc:
        emit({"skip": f"package not importable: {exc}"})
        return 0
    fn = getattr(module, args.workload.lower(), None)
    if fn is None:
        emit({"skip": getattr(module, "MISSING", {}).get(args.workload, "not supported")})
        return 0
    tmp = tempfile.mkdtemp(prefix="actorq-peer-")
    env = Env(redis_url=args.redis_url, pg_dsn=args.pg_dsn, tmpdir=tmp)
    try:
        for rep in range(args.reps):
            gc.collect()
            t0 = time.perf_counter()
            try:
                if inspect.iscoroutinefunction(fn):
                    sample = asyncio.run(asyncio.wait_for(fn(params, env, peer.cfg), REP_TIMEOUT))
                else:
                    sample = fn(params, env, peer.cfg)
            except Exception as exc:
                traceback.print_exc(file=sys.stderr)
                emit({"error": f"{type(exc).__name__}: {exc}"[:300]})
                return 0
            print(f"    {peer.label} {args.workload}: rep {rep + 1}/{args.reps} in "
                  f"{time.perf_counter() - t0:.2f} s", file=sys.stderr, flush=True)  # fmt: skip
            emit({"sample": sample})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
