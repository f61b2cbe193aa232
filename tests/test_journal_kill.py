"""SIGKILL a child process that adds jobs on a durable runtime, at seeded random moments;
after each kill, reopen the folder: every acknowledged id is there, ids are unique, and no job
was added twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actorq._core import CoreState
from actorq._journal import open_changelog

HERE = Path(__file__).resolve().parent
CHILD = HERE / "journal_kill_child.py"
ROOT = HERE.parent


def _kill_loop(folder: Path, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    acked: list[int] = []
    for run in range(kills):
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(folder), str(run)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        if ready != b"ready\n":
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"run {run}: child did not start: {err.decode(errors='replace')}")
        time.sleep(rng.uniform(0.0, 0.2))
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL, err.decode(errors="replace")
        # The last piece after the final newline (if any) was never a whole line.
        acked.extend(int(line) for line in out.split(b"\n")[:-1])

        changelog = open_changelog(folder)
        try:
            core = CoreState()
            for change in changelog.replay():
                core.apply_change(change)
        finally:
            changelog.close()
        missing = [job_id for job_id in acked if job_id not in core.jobs]
        assert not missing, f"run {run} (seed {seed}): acknowledged jobs lost: {missing[:10]}"
        assert len(set(acked)) == len(acked), f"run {run}: an id was acknowledged twice"
        keys = [(rec.data, rec.id) for rec in core.jobs.values()]
        datas = [data for data, _ in keys]
        assert len(set(datas)) == len(datas), f"run {run}: a job was added twice"
    assert len(acked) > kills, "the children acknowledged almost nothing"


def test_sigkill_never_loses_an_acknowledged_job(tmp_path: Path) -> None:
    _kill_loop(tmp_path, kills=20, seed=20240601)


@pytest.mark.slow
def test_sigkill_soak(tmp_path: Path) -> None:
    _kill_loop(tmp_path, kills=200, seed=7)
