"""Processors that tests/test_remote_sandbox.py runs in sandboxed child processes."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from actorq import Job


def spin(job: Job[Any, Any]) -> int:
    """CPU-bound: a busy loop of `job.data` iterations, in a plain function."""
    total = 0
    for i in range(job.data):
        total += i * i
    return os.getpid()


async def with_job_api(job: Job[Any, Any]) -> dict[str, Any]:
    await job.update_progress(50)
    await job.log(f"in {os.getpid()}")
    return {"pid": os.getpid(), "data": job.data}


def hang_first(job: Job[Any, Any]) -> str:
    """Writes its pid to the file `job.data` names, then, on its first attempt, hangs."""
    Path(job.data).write_text(str(os.getpid()))
    if job.attempts_made == 0:
        time.sleep(3600)
    return "second attempt"
