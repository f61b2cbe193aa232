"""`actorq demo`: two runs on one journal folder; the second replays the first."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from actorq._cli import main


def test_demo_twice_replays_the_first_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "demo-data"
    t0 = time.perf_counter()
    assert main(["demo", "--path", str(folder)]) == 0
    first = capsys.readouterr().out
    assert "run 1" in first
    assert "a new journal: nothing to recover" in first
    assert "barrier: vacuum ran" in first
    assert "chain: load" in first
    assert "flow: report over 8 resized images" in first
    assert "summary after run 1 (journal: 167 jobs)" in first
    assert (folder / "journal").is_dir()
    # The command it suggests works on the journal it wrote (which holds jobs with a backoff).
    assert f"`actorq stats {folder / 'journal'}`" in first
    for argv in (["stats"], ["dump"], ["show", "1"], ["verify"]):
        assert main([argv[0], str(folder / "journal"), *argv[1:]]) == 0, argv
    capsys.readouterr()

    assert main(["demo", "--path", str(folder)]) == 0
    second = capsys.readouterr().out
    assert time.perf_counter() - t0 < 10
    assert "run 2" in second
    assert "recovered 167 jobs from the journal" in second
    assert "50 campaigns were sleeping between steps: they resume now" in second
    assert "50 campaigns from earlier runs finished their last step in this run" in second
    assert "virtual time from day  2.0" in second
    # The summary table: every campaign of run 1 completed, run 2's are sleeping.
    drip = next(line for line in second.split("summary")[1].splitlines() if "drip" in line)
    assert drip.split() == ["drip", "50", "50"]


def test_demo_as_a_command(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "actorq", "demo", "--path", str(tmp_path / "d"), "--users", "5"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "summary after run 1" in out.stdout
