"""A throwaway PostgreSQL cluster for the tests: initdb in a temporary folder, started on
127.0.0.1 on a free port, stopped at the end of the session.

It needs PostgreSQL's server binaries (Debian: ``apt-get install postgresql``, which puts
them in /usr/lib/postgresql/<version>/bin) and psycopg (the ``actorq[postgresql]`` extra).
PostgreSQL refuses to run as root: as root the cluster's folder is given to the
``postgres`` user and every server command runs through ``runuser -u postgres``.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs

INSTALL_HINT = (
    "PostgreSQL's server binaries (initdb, pg_ctl) were not found: install them "
    "(Debian/Ubuntu: `apt-get install postgresql`; elsewhere put initdb on PATH) and "
    "`pip install 'actorq[postgresql]'`; .ci/run does both and sets ACTORQ_REQUIRE_PG=1"
)


def find_bindir() -> Path | None:
    """The folder holding initdb and pg_ctl: on PATH, else Debian's newest version."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    versions = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    versions.sort(key=lambda b: int(b.parent.name) if b.parent.name.isdigit() else 0)
    return versions[-1] if versions else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@attrs.define
class Cluster:
    bindir: Path
    folder: Path
    port: int
    #: The command prefix that runs a server command as the cluster's owner.
    as_owner: list[str]
    user: str

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def url_of(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        data = str(self.folder / "data")
        return subprocess.run(
            [*self.as_owner, str(self.bindir / "pg_ctl"), "-D", data, "-w", "-t", "60", *args],
            check=check,
            capture_output=True,
            text=True,
        )

    def start(self) -> None:
        log = str(self.folder / "server.log")
        self.ctl("-l", log, "start")

    def stop(self, mode: str = "fast") -> None:
        self.ctl("-m", mode, "stop", check=False)

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def cluster(bindir: Path) -> Iterator[Cluster]:
    """initdb, start, yield, stop and remove."""
    root = os.geteuid() == 0
    folder = Path(tempfile.mkdtemp(prefix="actorq-pg-"))
    as_owner: list[str] = []
    user = os.environ.get("USER") or "actorq"
    if root:
        if shutil.which("runuser") is None:
            raise RuntimeError("running as root: PostgreSQL needs runuser to run as postgres")
        subprocess.run(["chown", "postgres:postgres", str(folder)], check=True)
        as_owner = ["runuser", "-u", "postgres", "--"]
        user = "postgres"
    folder.chmod(0o700)
    data = folder / "data"
    subprocess.run(
        [
            *as_owner,
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            user,
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    port = free_port()
    settings = (
        f"listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{folder}'\n"
        "max_connections = 200\nshared_buffers = 64MB\nlog_min_messages = warning\n"
    )
    conf = data / "postgresql.conf"
    if root:
        # The file belongs to postgres; append through it.
        subprocess.run(
            [*as_owner, "sh", "-c", f"cat >> {conf}"], input=settings, text=True, check=True
        )
    else:
        with conf.open("a") as f:
            f.write(settings)
    made = Cluster(bindir, folder, port, as_owner, user)
    try:
        made.start()
    except subprocess.CalledProcessError as exc:
        log = folder / "server.log"
        detail = log.read_text() if log.exists() else ""
        raise RuntimeError(f"pg_ctl start failed: {exc.stderr}\n{detail}") from exc
    try:
        yield made
    finally:
        made.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)
