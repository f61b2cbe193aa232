"""The swarm: random workloads from a seed (step jobs, flows, manual processing,
dependencies, retries with backoff) under injected faults and crashes, every invariant checked
after every step. A failing seed reports the command that reruns it alone."""

from __future__ import annotations

import os
import time

import pytest
from sim_swarm import run_swarm, seeds


@seeds(200)
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_swarm_asyncio(actorq_seed: int) -> None:
    await run_swarm(actorq_seed)


@seeds(8)
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_swarm_trio(actorq_seed: int) -> None:
    await run_swarm(actorq_seed)


@pytest.mark.slow
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_swarm_long_run() -> None:
    """2,000 seeds (ACTORQ_SWARM_SEEDS to change); prints the figures."""
    n = int(os.environ.get("ACTORQ_SWARM_SEEDS", "2000"))
    totals = {"seeds": 0, "steps": 0, "crashes": 0, "deaths": 0, "faults": 0, "jobs": 0}
    started = time.perf_counter()
    for seed in range(10_000, 10_000 + n):
        try:
            _sim, stats = await run_swarm(seed)
        except AssertionError as exc:
            cmd = f"ACTORQ_SEED={seed} pytest 'tests/test_sim_swarm.py::test_swarm_asyncio'"
            raise AssertionError(f"seed {seed} failed; reproduce with: {cmd}\n{exc}") from None
        totals["seeds"] += 1
        totals["steps"] += stats.steps
        totals["crashes"] += stats.crashes
        totals["deaths"] += stats.deaths
        totals["faults"] += stats.faults
        totals["jobs"] += stats.jobs
    elapsed = time.perf_counter() - started
    print(f"\nswarm long run: {totals}, no invariant broken, {elapsed:.1f}s")
