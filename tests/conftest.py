"""Every async test runs on asyncio and on trio (anyio's pytest plugin, auto mode).

`make_runtime` is the kind of runtime a behaviour test runs on: ``local`` (a `Runtime` in
memory), ``remote`` (a client of a host in this process, sharing the test's clock) and,
where a module or test asks with ``@pytest.mark.runtimes(...)``, ``postgresql`` (a
`Runtime` on a journal in a fresh database). `runtime_lives` is the same kinds for a
test that restarts a runtime on its journal. Narrowing the kinds takes a reason:
``@pytest.mark.runtimes("local", why="reads the core's indexes")``.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pg_cluster as pg_cluster_module
import pytest
import runtimes
from pg_cluster import Cluster


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow", action="store_true", default=False, help="run the long soak tests too"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "runtimes(*kinds, why=...): the kinds of runtime `make_runtime` gives"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if not {"make_runtime", "runtime_lives"} & set(metafunc.fixturenames):
        return
    marker = metafunc.definition.get_closest_marker("runtimes")
    kinds = DEFAULT_KINDS if marker is None else marker.args
    unknown = set(kinds) - set(runtimes.KINDS)
    if unknown or not kinds:
        raise pytest.UsageError(f"runtimes{kinds!r}: the kinds are {runtimes.KINDS}")
    if marker is not None and "remote" not in kinds and not marker.kwargs.get("why"):
        raise pytest.UsageError(
            f"{metafunc.definition.nodeid}: runtimes{kinds!r} without remote needs why=..."
        )
    metafunc.parametrize("runtime_kind", kinds)


#: What `make_runtime` runs on when no `runtimes` marker says otherwise.
DEFAULT_KINDS = ("local", "remote")


@pytest.fixture
def make_runtime(request: pytest.FixtureRequest, runtime_kind: str) -> runtimes.MakeRuntime:
    """``async with make_runtime(clock=VirtualClock(), **options) as rt:`` on this test's
    kind of runtime (tests/runtimes.py)."""
    if runtime_kind != "postgresql":
        return runtimes.maker(runtime_kind)
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    return runtimes.maker(runtime_kind, lambda: _new_schema(cluster))


@pytest.fixture
def runtime_lives(
    request: pytest.FixtureRequest, runtime_kind: str, tmp_path: Path
) -> runtimes.RuntimeLives:
    """``async with runtime_lives(clock=VirtualClock(), **options) as life:`` then
    ``async with life() as rt:`` for each life of a runtime restarted on one journal, on
    this test's kind (tests/runtimes.py: through a client, the host restarts and the client
    reconnects)."""
    folder = tmp_path / "journal"
    if runtime_kind != "postgresql":
        return runtimes.lives(runtime_kind, folder)
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    return runtimes.lives(runtime_kind, folder, lambda: _new_schema(cluster))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="long soak run: opt in with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A throwaway PostgreSQL cluster for the session (tests/pg_cluster.py). Without the
    server binaries or psycopg the tests that use it skip, saying how to install them;
    with ACTORQ_REQUIRE_PG=1 (.ci/run) they fail instead."""
    bindir = pg_cluster_module.find_bindir()
    missing = bindir is None or importlib.util.find_spec("psycopg") is None
    if missing or bindir is None:
        if os.environ.get("ACTORQ_REQUIRE_PG") == "1":
            pytest.fail(f"ACTORQ_REQUIRE_PG=1: {pg_cluster_module.INSTALL_HINT}")
        pytest.skip(pg_cluster_module.INSTALL_HINT)
    with pg_cluster_module.cluster(bindir) as made:
        yield made


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    """The URL of a new, empty database of the session's cluster, one per test."""
    return _new_database(pg_cluster)


def _new_database(pg_cluster: Cluster) -> str:
    import psycopg  # noqa: PLC0415 - only where PostgreSQL is tested

    name = f"t{next(_databases)}"
    with psycopg.connect(pg_cluster.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE template0 STRATEGY file_copy")
    return pg_cluster.url_of(name)


_databases = itertools.count(1)


def _new_schema(pg_cluster: Cluster) -> str:
    """The URL of a new, empty schema (a journal of its own, through ``search_path``) in one
    database of the session: a schema costs a catalog row, where a database per runtime
    copied a template's files (and removing hundreds of them took minutes at the end)."""
    import psycopg  # noqa: PLC0415 - only where PostgreSQL is tested

    global _runtimes_db
    if _runtimes_db is None:
        _runtimes_db = _new_database(pg_cluster)
    name = f"s{next(_databases)}"
    with psycopg.connect(_runtimes_db, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    return f"{_runtimes_db}?options=-csearch_path%3D{name}"


_runtimes_db: str | None = None
