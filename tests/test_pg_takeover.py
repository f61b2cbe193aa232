"""Leaders in real processes on one journal in PostgreSQL (tests/pg_child.py): a leader
SIGKILLed is replaced by a waiting candidate within ttl + 5 s with every acknowledged job
there once; a leader SIGSTOPped past its lease comes back to find a newer leader and stops
without writing; PostgreSQL restarted under load loses nothing acknowledged."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from pg_cluster import Cluster

from actorq import Runtime

CHILD = str(Path(__file__).with_name("pg_child.py"))


class Child:
    """A child process and the lines it printed so far (read on a thread)."""

    def __init__(self, url: str, tag: str) -> None:
        self.tag = tag
        self.proc = subprocess.Popen(
            [sys.executable, CHILD, url, tag],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.acked: dict[int, int] = {}  # job id -> i
        self.stopped: str | None = None
        self.leading = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def pump(self) -> None:
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return
            if line == "leading\n":
                self.leading = True
            elif line.startswith("stopped "):
                self.stopped = line.strip()
            elif line.endswith("\n"):
                job_id, _tag, i = line.split()
                self.acked[int(job_id)] = int(i)

    def wait_for(self, what: str, timeout: float, *, at_least: int = 0) -> float:
        """Wait until it leads / has acknowledged `at_least` jobs / stopped; the time taken."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            self.pump()
            done = {
                "leading": self.leading,
                "acked": len(self.acked) >= at_least,
                "stopped": self.stopped is not None,
            }[what]
            if done:
                return time.monotonic() - start
            if self.proc.poll() is not None and what != "stopped":
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"{self.tag} exited {self.proc.returncode}: {err[-2000:]}")
            time.sleep(0.02)
        raise AssertionError(f"{self.tag}: no {what} within {timeout} s")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._reader.join(5)
        self.pump()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def jobs_in(url: str) -> dict[int, tuple[str, int]]:
    """Every job in the journal (its lease expired first so a runtime may open it)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE actorq_lease SET expires_at = now() - interval '1 second'")

    async def read() -> dict[int, tuple[str, int]]:
        async with Runtime(url) as rt:
            return {j.id: (j.data["tag"], j.data["i"]) for j in await rt.queue("q").get_jobs()}

    return anyio.run(read)


def check_every_acknowledged_job_once(children: list[Child], url: str) -> None:
    found = jobs_in(url)
    for child in children:
        for job_id, i in child.acked.items():
            assert found.get(job_id) == (child.tag, i), (child.tag, job_id)
    keys = list(found.values())
    assert len(keys) == len(set(keys)), "a job is in the journal twice"


def test_a_candidate_takes_over_from_a_killed_leader_within_ttl_plus_5_s(pg_url: str) -> None:
    ttl = 2
    leader = Child(f"{pg_url}?actorq_ttl={ttl}", "a")
    candidate: Child | None = None
    try:
        leader.wait_for("leading", 30)
        leader.wait_for("acked", 30, at_least=50)
        candidate = Child(f"{pg_url}?actorq_ttl={ttl}&actorq_wait=forever", "b")
        time.sleep(1.0)
        candidate.pump()
        assert not candidate.leading, "a candidate leads while the leader's lease is live"
        leader.kill()
        took = candidate.wait_for("leading", ttl + 5)
        candidate.wait_for("acked", 10, at_least=20)
        candidate.kill()
    finally:
        leader.kill()
        if candidate is not None:
            candidate.kill()
    assert took < ttl + 5
    check_every_acknowledged_job_once([leader, candidate], pg_url)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT epoch FROM actorq_lease").fetchone() == (3,)  # + ours


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP")
def test_a_leader_stopped_past_its_lease_resumes_fenced_off_and_stops(pg_url: str) -> None:
    ttl = 1.5
    old = Child(f"{pg_url}?actorq_ttl={ttl}", "old")
    new: Child | None = None
    try:
        old.wait_for("acked", 30, at_least=20)
        os.kill(old.proc.pid, signal.SIGSTOP)
        new = Child(f"{pg_url}?actorq_ttl={ttl}&actorq_wait=forever", "new")
        new.wait_for("leading", ttl + 10)
        new.wait_for("acked", 10, at_least=10)
        os.kill(old.proc.pid, signal.SIGCONT)
        old.wait_for("stopped", 10)
        assert old.stopped is not None
        assert "FencedError" in old.stopped or "LeaseLostError" in old.stopped, old.stopped
        assert old.proc.wait(10) == 3
        new.wait_for("acked", 10, at_least=len(new.acked) + 10)  # the new leader goes on
        new.kill()
    finally:
        old.kill()
        if new is not None:
            new.kill()
    with psycopg.connect(pg_url) as conn:
        row: Any = conn.execute(
            "SELECT count(*) FROM actorq_log WHERE epoch = 1 AND seq > "
            "(SELECT min(seq) FROM actorq_log WHERE epoch = 2)"
        ).fetchone()
        assert row == (0,), "the old leader wrote after the new one took over"
    check_every_acknowledged_job_once([old, new], pg_url)


def test_postgresql_restarted_under_load_loses_nothing_acknowledged(
    pg_url: str, pg_cluster: Cluster
) -> None:
    leader = Child(f"{pg_url}?actorq_ttl=10", "a")
    try:
        leader.wait_for("acked", 30, at_least=50)
        pg_cluster.restart()  # fast shutdown: every connection is cut mid-commit
        before = len(leader.acked)
        leader.wait_for("acked", 30, at_least=len(leader.acked) + 50)
        assert leader.stopped is None and leader.proc.poll() is None
        assert len(leader.acked) > before
        leader.kill()
    finally:
        leader.kill()
    check_every_acknowledged_job_once([leader], pg_url)
