"""actorq's pytest plugin under plain pytest: an unmarked ``async def`` test runs (on anyio's
backends), with the plugin's fixtures; tests another plugin runs are left to it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

UNMARKED = """
from actorq import Runtime
from actorq.testing import Simulation


async def test_unmarked(simulation: Simulation, actorq_runtime: Runtime) -> None:
    job = await actorq_runtime.queue("q").add("j")
    assert job.id == 1
    await simulation.advance(10)
    assert simulation.now() == 10
"""

CHOSEN_BACKEND = """
import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


async def test_on_trio() -> None:
    import sniffio

    assert sniffio.current_async_library() == "trio"


@pytest.mark.anyio
async def test_marked_already() -> None:
    pass


def test_sync() -> None:
    pass
"""


def _pytest(folder: Path, ini: str, *files: str) -> subprocess.CompletedProcess[str]:
    (folder / "pytest.ini").write_text(ini)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", *files],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_unmarked_async_tests_run_under_plain_pytest(tmp_path: Path) -> None:
    (tmp_path / "test_unmarked.py").write_text(UNMARKED)
    (tmp_path / "test_chosen.py").write_text(CHOSEN_BACKEND)
    run = _pytest(tmp_path, "[pytest]\n", "test_unmarked.py", "test_chosen.py")
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "test_unmarked.py::test_unmarked[asyncio] PASSED" in out
    assert "test_unmarked.py::test_unmarked[trio] PASSED" in out
    assert "test_chosen.py::test_on_trio PASSED" in out
    assert "test_chosen.py::test_marked_already PASSED" in out
    assert "5 passed" in out


def test_anyio_auto_mode_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "test_unmarked.py").write_text(UNMARKED)
    run = _pytest(tmp_path, "[pytest]\nanyio_mode = auto\n", "test_unmarked.py")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed" in run.stdout
