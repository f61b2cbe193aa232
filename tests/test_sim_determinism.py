"""The same seed gives the same history and the same journal bytes, twice in a row."""

from __future__ import annotations

import pytest
from sim_swarm import run_swarm

from actorq.testing import Simulation


def _files(sim: Simulation) -> dict[str, bytes]:
    fs = sim.fs
    return {name: fs.read_bytes(f"{sim.path}/{name}") for name in fs.listdir(sim.path)}


@pytest.mark.parametrize("seed", [3, 43])
async def test_same_seed_same_history_and_journal_bytes(seed: int) -> None:
    first, _ = await run_swarm(seed)
    second, _ = await run_swarm(seed)
    assert [str(e) for e in first.history] == [str(e) for e in second.history]
    assert first.history == second.history
    assert _files(first) == _files(second)
    assert any(e.kind in {"crash", "died"} for e in first.history) or seed == 3


@pytest.mark.parametrize("seed", [5])
async def test_same_seed_same_history_and_log_on_the_database_journal(seed: int) -> None:
    first, _ = await run_swarm(seed, journal="database")
    second, _ = await run_swarm(seed, journal="database")
    assert first.history == second.history
    assert first.db == second.db
    assert first.leader_changes + first.deaths > 0


async def test_different_seeds_differ() -> None:
    a, _ = await run_swarm(1)
    b, _ = await run_swarm(2)
    assert a.history != b.history
