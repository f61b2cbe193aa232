"""Throw-away Redis and PostgreSQL servers on 127.0.0.1: a temporary data dir, a free port,
stopped (and the dir removed) at the end. A server that cannot start raises `Unavailable`."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

PG_DIRS = ("/usr/lib/postgresql",)


class Unavailable(Exception):
    """The server's binary is missing or it did not start; the message says why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise Unavailable(f"server exited with code {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise Unavailable(f"server did not listen on port {port} within {timeout:.0f} s")


@contextlib.contextmanager
def redis_server(*, fsync_always: bool) -> Iterator[str]:
    """Yield a redis:// URL. `fsync_always`: AOF on, ``appendfsync always``; else defaults."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise Unavailable("redis-server not found (apt-get install redis-server)")
    port = free_port()
    data = tempfile.mkdtemp(prefix="actorq-peer-redis-")
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", data]
    args += ["--daemonize", "no", "--logfile", os.path.join(data, "redis.log")]
    if fsync_always:
        args += ["--appendonly", "yes", "--appendfsync", "always"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port, proc, 10)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(data, ignore_errors=True)


def _pg_bin() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    for root in PG_DIRS:
        versions = sorted(Path(root).glob("*/bin/pg_ctl"))
        if versions:
            return versions[-1].parent
    raise Unavailable("PostgreSQL binaries (pg_ctl, initdb) not found (apt-get install postgresql)")


def _as_user(user: str | None, args: list[str]) -> list[str]:
    return args if user is None else ["runuser", "-u", user, "--", *args]


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Yield a libpq DSN to a fresh cluster (initdb defaults) on a free port."""
    pg = _pg_bin()
    user = None
    if os.geteuid() == 0:  # postgres refuses to run as root
        try:
            pwd.getpwnam("postgres")
        except KeyError as exc:
            raise Unavailable("running as root and no 'postgres' user to run the server") from exc
        user = "postgres"
    root = tempfile.mkdtemp(prefix="actorq-peer-pg-")
    data = os.path.join(root, "data")
    if user is not None:
        shutil.chown(root, user)
    port = free_port()

    def run(args: list[str]) -> None:
        out = subprocess.run(_as_user(user, args), capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise Unavailable(f"{Path(args[0]).name} failed: {out.stderr.strip()[-300:]}")

    started = False
    try:
        run([str(pg / "initdb"), "-D", data, "-U", "bench", "--auth=trust", "-E", "UTF8"])
        opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
        log = os.path.join(root, "pg.log")
        run([str(pg / "pg_ctl"), "-D", data, "-o", opts, "-l", log, "-w", "start"])
        started = True
        _wait_port(port, None, 10)
        yield f"postgresql://bench@127.0.0.1:{port}/postgres"
    finally:
        if started:
            with contextlib.suppress(Unavailable):
                run([str(pg / "pg_ctl"), "-D", data, "-m", "fast", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)
