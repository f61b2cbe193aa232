"""The examples: imported and run on both backends (their `main` returns what happened), and
run as scripts, the way the README tells users to."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest

from actorq import VirtualClock

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NAMES = ["drip_campaign", "orchestrator", "pipeline"]
HOUR = 3600.0


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"actorq_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def run(name: str, clock: VirtualClock | None = None) -> tuple[dict[str, Any], float]:
    """Run an example's `main`; a hang fails after 5 s rather than never."""
    module = load(name)
    t0 = time.perf_counter()
    with anyio.fail_after(5):
        result: dict[str, Any] = await module.main(clock)
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.0, f"{name} took {elapsed:.2f} s of real time"
    return result, elapsed


async def test_drip_campaign() -> None:
    clock = VirtualClock(start=1_000.0)
    result, _elapsed = await run("drip_campaign", clock)
    assert result["results"] == {
        "ada@example.com": "opened",
        "alan@example.com": "followed up",
        "grace@example.com": "opened",
        "linus@example.com": "followed up",
    }
    welcomes = [(h, to) for h, what, to in result["outbox"] if what == "welcome"]
    followups = [(h, to) for h, what, to in result["outbox"] if what == "follow-up"]
    assert sorted(to for _h, to in welcomes) == sorted(result["results"])
    assert all(h == 0.0 for h, _to in welcomes)
    # the follow-up goes out 24 h (wait) + 1 h (grace) after the welcome, never earlier
    assert followups == [(25.0, "alan@example.com"), (25.0, "linus@example.com")]
    assert result["hours"]["ada@example.com"] == 24.0
    assert result["hours"]["alan@example.com"] == 25.0
    assert result["attempts_started"] == {
        "ada@example.com": 2,
        "alan@example.com": 3,
        "grace@example.com": 2,
        "linus@example.com": 3,
    }
    assert set(result["attempts_made"].values()) == {1}  # steps never count as attempts
    assert result["virtual_hours"] == 25.0
    assert clock.now() == 1_000.0 + 25 * HOUR


async def test_orchestrator() -> None:
    result, _elapsed = await run("orchestrator")
    merged = result["merged"]
    module = load("orchestrator")
    words: list[str] = module.TEXT.split()
    expected: dict[str, int] = {}
    for word in words:
        expected[word] = expected.get(word, 0) + 1
    assert merged["counts"] == dict(sorted(expected.items()))
    assert merged["children"] == -(-len(words) // module.CHUNK)
    assert result["parent_runs"] == 2
    assert result["children_parent_ids"] == [result["parent_id"]]
    finished = result["children_finished_at"]
    assert len(finished) == merged["children"]
    assert all(at is not None and at <= result["parent_second_start"] for at in finished.values())
    assert max(finished.values()) == result["parent_second_start"]
    whats = [what for _at, what in result["timeline"]]
    assert whats[0] == "parent runs at step 'spawn'"
    assert whats[-1] == "parent runs at step 'merge'"


async def test_pipeline() -> None:
    result, _elapsed = await run("pipeline")
    assert result["result"] == {
        "order": "A-1001",
        "lines": [
            {"sku": "ink", "amount": 8.0},
            {"sku": "pad", "amount": 11.25},
            {"sku": "pen", "amount": 4.5},
        ],
        "total": 23.75,
    }
    assert result["steps_started"] == 3  # validate, spawn, collect
    assert result["children"] == 3
    timeline = result["timeline"]
    assert timeline[0] == (0.0, "validated; waiting 5 minutes for approval")
    assert timeline[1] == (300.0, "approved; spawning 3 item jobs")  # not a second early
    assert timeline[-1] == (305.0, "collecting")
    assert result["children_done_by"] == 305.0
    assert result["finished_after"] == 305.0


@pytest.mark.parametrize("name", NAMES)
def test_examples_run_as_scripts(name: str) -> None:
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    elapsed = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert len(lines) >= 3
    assert {
        "drip_campaign": "campaign took 25 virtual hours",
        "orchestrator": "parent ran 2 times",
        "pipeline": "3 steps, done after 305 s",
    }[name] == lines[-1]
    assert elapsed < 30
