"""Other processes, for real: a runtime host and client processes on loopback
(tests/remote_child.py), SIGKILLed where the issue says. Each runs on asyncio and on trio
(the children's backend); the journal is read afterwards in this process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import actorq
from actorq import Runtime

CHILD = str(Path(__file__).with_name("remote_child.py"))
TOKEN = "a-token-for-the-process-tests"
BACKENDS = pytest.mark.parametrize("backend", ["asyncio", "trio"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Child:
    """A child process whose stdout lines are collected as they come."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, CHILD, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # a child's traceback shows in the failure
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def wait_for(self, seen: Callable[[list[str]], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not seen(self.lines):
            if self.proc.poll() is not None and not seen(self.lines):
                raise AssertionError(f"child exited {self.proc.returncode}: {self.lines[-20:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; last lines {self.lines[-5:]}")
            time.sleep(0.02)

    def said(self, word: str) -> list[int]:
        return [int(line.split()[1]) for line in self.lines if line.startswith(word + " ")]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._thread.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def children() -> Iterator[list[Child]]:
    made: list[Child] = []
    yield made
    for child in made:
        child.kill()


def start(children: list[Child], *args: str) -> Child:
    child = Child(*args)
    children.append(child)
    return child


def start_host(children: list[Child], backend: str, folder: Path, address: str) -> Child:
    host = start(children, "host", backend, str(folder), address, TOKEN)
    host.wait_for(lambda lines: "ready" in lines)
    return host


def read_jobs(folder: Path) -> list[Any]:
    async def read() -> list[Any]:
        async with Runtime(folder) as rt:
            return await rt.queue("work").get_jobs()

    return anyio.run(read)


@BACKENDS
def test_three_client_processes_add_and_process_every_job_once(
    backend: str, tmp_path: Path, children: list[Child]
) -> None:
    address = f"127.0.0.1:{free_port()}"
    host = start_host(children, backend, tmp_path, address)
    clients = [start(children, "work", backend, address, TOKEN, f"c{i}", "200") for i in range(3)]
    for client in clients:
        client.wait_for(lambda lines: "done" in lines)
    acked = [job_id for client in clients for job_id in client.said("acked")]
    ran = [job_id for client in clients for job_id in client.said("ran")]
    for child in [*clients, host]:
        child.kill()
    jobs = read_jobs(tmp_path)
    assert len(set(acked)) == len(acked) == 600
    assert sorted(ran) == sorted(acked)  # every job ran once, in one of the clients
    assert {job.id for job in jobs} == set(acked)
    assert all(job.state.value == "completed" and job.attempts_started == 1 for job in jobs)


@BACKENDS
def test_a_client_killed_mid_job_loses_it_to_another_at_lock_expiry(
    backend: str, tmp_path: Path, children: list[Child]
) -> None:
    address = f"127.0.0.1:{free_port()}"
    host = start_host(children, backend, tmp_path, address)

    async def add_one() -> int:
        async with actorq.connect(f"actorq://{address}", token=TOKEN) as rt:
            return (await rt.queue("work").add("w", 1)).id

    job_id = anyio.run(add_one)
    doomed = start(children, "hang", backend, address, TOKEN)
    doomed.wait_for(lambda lines: f"started {job_id}" in lines)
    doomed.kill()
    rescuer = start(children, "work", backend, address, TOKEN, "r", "0")
    rescuer.wait_for(lambda lines: "done" in lines)
    assert rescuer.said("ran") == [job_id]
    rescuer.kill()
    host.kill()
    (job,) = read_jobs(tmp_path)
    assert job.state.value == "completed" and job.stalled_counter == 1
    assert job.attempts_started == 2


@BACKENDS
def test_a_host_killed_and_restarted_loses_no_acknowledged_job(
    backend: str, tmp_path: Path, children: list[Child]
) -> None:
    address = f"127.0.0.1:{free_port()}"
    host = start_host(children, backend, tmp_path, address)
    clients = [start(children, "work", backend, address, TOKEN, f"c{i}", "300") for i in range(3)]
    for client in clients:  # all connected: the first connection needs a host
        client.wait_for(lambda lines: "connected" in lines)
    clients[0].wait_for(lambda lines: len([x for x in lines if x.startswith("acked")]) >= 50)
    host.kill()  # SIGKILL mid-load: adds in flight, jobs active
    acked_before = {job_id for client in clients for job_id in client.said("acked")}
    host = start_host(children, backend, tmp_path, address)
    for client in clients:
        client.wait_for(lambda lines: "done" in lines, timeout=120)
    acked = {job_id for client in clients for job_id in client.said("acked")}
    for child in [*clients, host]:
        child.kill()
    jobs = {job.id: job for job in read_jobs(tmp_path)}
    assert acked_before <= acked and len(acked) == 900  # idempotency keys: none twice
    assert set(jobs) == acked
    assert all(job.state.value == "completed" for job in jobs.values())


@BACKENDS
def test_actorq_serve_is_a_host_with_no_code_of_its_own(backend: str, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    command = ["serve", "--listen", "127.0.0.1:0", "--token-file", str(token_file)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "actorq", *command],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        lines = []
        while not (lines and lines[-1].startswith("actorq host on ")):
            lines.append(proc.stderr.readline())  # a warning may come first
            assert lines[-1], lines  # it exited
        address = lines[-1].split()[-1]
        assert address.startswith("127.0.0.1:")

        async def use() -> Any:
            async with actorq.connect(f"actorq://{address}", token=TOKEN) as rt:
                q = rt.queue("cli")

                async def double(job: actorq.Job[int, int]) -> int:
                    return job.data * 2

                rt.worker(q, double)
                return await (await q.add("x", 21)).wait_until_finished(timeout=10)

        assert anyio.run(use, backend=backend) == 42
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
