"""Leaders in real processes on one journal in PostgreSQL (tests/pg_child.py): a leader
SIGKILLed is replaced by a waiting candidate within ttl + 5 s with every acknowledged job
there once; a leader SIGSTOPped past its lease comes back to find a newer leader and stops
without writing; PostgreSQL restarted under load loses nothing acknowledged."""

# Stays on Runtime: leaders in real processes taking over one journal.

from __future__ import annotations

import math
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

from actorq import Job, JobState, Runtime
from actorq._journal_codec import decode_batch

CHILD = str(Path(__file__).with_name("pg_child.py"))


class Child:
    """A child process and the lines it printed so far (read on a thread)."""

    def __init__(self, url: str, tag: str, *options: str) -> None:
        self.tag = tag
        self.proc = subprocess.Popen(
            [sys.executable, CHILD, url, tag, *options],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.acked: dict[int, int] = {}  # job id -> i
        self.acked_at: dict[int, float] = {}  # job id -> when its add returned
        self.called_at: dict[int, float] = {}  # job id -> when its add was called
        self.ran: list[int] = []  # job ids, as the processor started them
        #: (job id, time) of each start and each return of the processor, in order.
        self.starts: list[tuple[int, float]] = []
        self.dones: list[tuple[int, float]] = []
        self.stopped: str | None = None
        self.leading = False
        self.standby = False  # it entered as a standby
        self.lead_at = 0  # how many runs it had started when it printed "leading"
        self.lost: list[int] = []  # the i of adds whose connection broke
        self.applied = 0  # a standby's tail: the last seq it said it applied
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
                self.lead_at = len(self.ran)
            elif line == "standby\n":
                self.standby = True
            elif line.startswith("lost "):
                self.lost.append(int(line.split()[1]))
            elif line.startswith("applied "):
                self.applied = int(line.split()[1])
            elif line.startswith("ran "):
                _ran, job_id, at = line.split()
                self.ran.append(int(job_id))
                self.starts.append((int(job_id), float(at)))
            elif line.startswith("done ") and line.endswith("\n"):
                _done, job_id, at = line.split()
                self.dones.append((int(job_id), float(at)))
            elif line.startswith("stopped "):
                self.stopped = line.strip()
            elif line.endswith("\n"):
                job_id, _tag, i, called, at = line.split()
                self.acked[int(job_id)] = int(i)
                self.called_at[int(job_id)] = float(called)
                self.acked_at[int(job_id)] = float(at)

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


def jobs_in(url: str) -> dict[int, Job]:
    """Every job in the journal (its lease expired first so a runtime may open it)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE actorq_lease SET expires_at = now() - interval '1 second'")

    async def read() -> dict[int, Job]:
        async with Runtime(url) as rt:
            return {j.id: j for j in await rt.queue("q").get_jobs()}

    return anyio.run(read)


def completed_by_epoch(url: str) -> dict[int, set[int]]:
    """The ids each leader's epoch journaled as completed, read from the log's rows."""
    done: dict[int, set[int]] = {}
    with psycopg.connect(url) as conn:
        for epoch, payload in conn.execute("SELECT epoch, payload FROM actorq_log ORDER BY seq"):
            for change in decode_batch(bytes(payload)):
                if change[0] == "set" and change[2].get("state") == "completed":
                    done.setdefault(int(epoch), set()).add(change[1])
    return done


def check_every_acknowledged_job_once(children: list[Child], url: str) -> dict[int, Job]:
    """Every job a child was told was added is in the journal once; the jobs found."""
    found = jobs_in(url)
    for child in children:
        for job_id, i in child.acked.items():
            job = found.get(job_id)
            assert job is not None and (job.data["tag"], job.data["i"]) == (child.tag, i)
    keys = [(j.data["tag"], j.data["i"]) for j in found.values()]
    assert len(keys) == len(set(keys)), "a job is in the journal twice"
    for job in found.values():  # no dependency violated
        if job.name == "dep" and job.state is JobState.COMPLETED:
            (before,) = [found[i] for i in job.depends_on_job_ids]
            assert before.state is JobState.COMPLETED
            assert before.finished_at is not None and job.processed_at is not None
            assert before.finished_at <= job.processed_at
    return found


def check_no_barrier_or_dependency_crossed(
    children: list[Child], found: dict[int, Job]
) -> tuple[int, int]:
    """From the run record of every leader (each add's call and return, each start and
    return of a processor, on the machine's one monotonic clock): no job started before each
    of its prerequisites had returned for the last time, and none of them started again
    after it; no tag-drain job was released while a job with the tag was unfinished: none
    first started while a job with the tag, whose add returned before the barrier job's add
    was called, still had a run to return (a barrier job that stalls and runs again has
    passed its barrier already). The numbers of starts of dependents and of barrier jobs
    checked."""
    starts = sorted(s for child in children for s in child.starts)
    first_start: dict[int, float] = {}
    last_start: dict[int, float] = {}
    last_done: dict[int, float] = {}
    for job_id, at in starts:
        first_start.setdefault(job_id, at)
        last_start[job_id] = at
    for job_id, at in sorted(d for child in children for d in child.dones):
        last_done[job_id] = at
    acked_at = {j: at for child in children for j, at in child.acked_at.items()}
    called_at = {j: at for child in children for j, at in child.called_at.items()}
    tagged = [j for j, job in found.items() if "imp" in job.tags]
    deps = barriers = 0
    for job_id, at in starts:
        job = found[job_id]
        for before in job.depends_on_job_ids:
            deps += 1
            assert before in last_done and last_done[before] <= at, (job_id, before)
            assert last_start[before] <= at, f"{before} ran again after {job_id} started"
        if job.depends_on_tags and first_start[job_id] == at and job_id in called_at:
            barriers += 1
            for other in tagged:
                if acked_at.get(other, math.inf) < called_at[job_id] and other in last_done:
                    assert last_done[other] <= at, f"{job_id} crossed the barrier of {other}"
    return deps, barriers


def test_candidates_take_over_from_killed_leaders_within_ttl_plus_5_s(pg_url: str) -> None:
    ttl = 2
    leader = Child(f"{pg_url}?actorq_ttl={ttl}", "a")
    children = [leader]
    try:
        leader.wait_for("leading", 30)
        leader.wait_for("acked", 30, at_least=50)
        waiting = [
            Child(f"{pg_url}?actorq_ttl={ttl}&actorq_wait=forever", tag) for tag in ("b", "c")
        ]
        children += waiting
        for _ in (1, 2):  # kill the leader; one candidate leads; then again
            time.sleep(1.0)
            for child in waiting:
                child.pump()
                assert not child.leading, "a candidate leads while the leader's lease is live"
            leader.kill()
            start = time.monotonic()
            while not any(c.leading for c in waiting):
                assert time.monotonic() - start < ttl + 5, "no candidate took over"
                time.sleep(0.02)
                for child in waiting:
                    child.pump()
            (leader,) = [c for c in waiting if c.leading]
            waiting.remove(leader)
            leader.wait_for("acked", 10, at_least=50)
        leader.kill()
    finally:
        for child in children:
            child.kill()
    found = check_every_acknowledged_job_once(children, pg_url)
    deps, barriers = check_no_barrier_or_dependency_crossed(children, found)
    assert deps > 0 and barriers > 0, (deps, barriers)
    # No job a leader journaled as completed was run again by a later one.
    done = completed_by_epoch(pg_url)
    assert sorted(done) == [1, 2, 3] and all(child.ran for child in children)
    order = sorted(children, key=lambda c: min(c.acked, default=0))
    for epoch, child in enumerate(order, start=1):
        earlier = set().union(*(ids for e, ids in done.items() if e < epoch))
        assert not earlier.intersection(child.ran), child.tag
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT epoch FROM actorq_lease").fetchone() == (4,)  # + ours


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
