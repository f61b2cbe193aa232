"""pytest plugin for actorq simulations: fixtures, the ``actorq_seeds(n)`` marker, and a
one-line reproduction for a failing seed.

Enable it with the entry point (``[project.entry-points.pytest11] actorq =
"actorq.pytest_plugin"``), with ``-p actorq.pytest_plugin``, or with
``pytest_plugins = ["actorq.pytest_plugin"]`` in a test module.

* ``virtual_clock``: a `VirtualClock` at t=0 (autojump on).
* ``actorq_runtime``: a started `Runtime` on ``virtual_clock`` seeded by ``actorq_seed``.
* ``simulation``: a started `Simulation` seeded by ``actorq_seed``.
* ``actorq_seed``: the seed; ``@pytest.mark.actorq_seeds(n)`` runs the test over seeds
  0..n-1 (``--actorq-seeds=N`` overrides n); ``--actorq-seed=S`` (or ``ACTORQ_SEED=S``)
  runs only seed S. A failing seeded test prints the command that reruns just that seed.

An ``async def`` test that no async plugin would run (no ``anyio``, ``asyncio`` or ``trio``
marker, and neither anyio's nor pytest-asyncio's auto mode configured) is marked
``anyio``, so it runs under plain pytest, on anyio's default backends (define an
``anyio_backend`` fixture to choose). Tests another plugin runs are left alone.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import AsyncIterator, Generator
from typing import Any

import pytest

from ._runtime import Runtime
from ._simulation import Simulation
from .clock import VirtualClock

_ENV = "ACTORQ_SEED"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("actorq")
    group.addoption(
        "--actorq-seed",
        type=int,
        default=None,
        help="run seeded actorq tests with this seed only (also ACTORQ_SEED=...)",
    )
    group.addoption(
        "--actorq-seeds",
        type=int,
        default=None,
        help="run tests marked actorq_seeds(n) over this many seeds instead of n",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "actorq_seeds(n): run the test once per seed 0..n-1 (fixture actorq_seed)"
    )


_ASYNC_MARKERS = ("anyio", "asyncio", "trio")


def _ini(config: pytest.Config, name: str) -> Any:
    try:
        return config.getini(name)
    except ValueError:  # the plugin that declares it is not installed
        return None


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> None:
    """Mark an async test no plugin would run for anyio (as anyio's auto mode would): the
    marker and the ``anyio_backend`` fixture, so an ``anyio_backend`` fixture of the
    user's chooses the backend."""
    if not collector.istestfunction(obj, name):
        return
    hypothesis = getattr(obj, "hypothesis", None)
    inner = obj if hypothesis is None else hypothesis.inner_test
    if not inspect.iscoroutinefunction(inner):
        return
    config = collector.config
    if not config.pluginmanager.has_plugin("anyio") or _ini(config, "anyio_mode") == "auto":
        return
    if config.pluginmanager.has_plugin("asyncio") and _ini(config, "asyncio_mode") == "auto":
        return
    own = [mark.name for mark in getattr(obj, "pytestmark", ())]
    if any(m in own or collector.get_closest_marker(m) for m in _ASYNC_MARKERS):
        return
    pytest.mark.anyio(obj)
    pytest.mark.usefixtures("anyio_backend")(obj)


def _option(config: pytest.Config, name: str) -> Any:
    try:
        return config.getoption(name)
    except ValueError:  # the plugin was loaded after the command line was parsed
        return None


def _only_seed(config: pytest.Config) -> int | None:
    seed = _option(config, "actorq_seed")
    if seed is None and os.environ.get(_ENV):
        seed = int(os.environ[_ENV])
    return None if seed is None else int(seed)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("actorq_seeds")
    if marker is None or "actorq_seed" not in metafunc.fixturenames:
        return
    only = _only_seed(metafunc.config)
    if only is not None:
        seeds = [only]
    else:
        n = _option(metafunc.config, "actorq_seeds")
        if n is None:
            n = int(marker.args[0]) if marker.args else int(marker.kwargs.get("n", 10))
        seeds = list(range(n))
    metafunc.parametrize("actorq_seed", seeds, ids=[f"seed={s}" for s in seeds])


@pytest.fixture
def actorq_seed(request: pytest.FixtureRequest) -> int:
    """The simulation seed (parametrized by ``actorq_seeds``; else --actorq-seed or 0)."""
    param = getattr(request, "param", None)
    if param is not None:
        return int(param)
    only = _only_seed(request.config)
    return 0 if only is None else only


@pytest.fixture
def virtual_clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
async def actorq_runtime(virtual_clock: VirtualClock, actorq_seed: int) -> AsyncIterator[Runtime]:
    async with Runtime(clock=virtual_clock, seed=actorq_seed) as rt:
        yield rt


@pytest.fixture
async def simulation(actorq_seed: int) -> AsyncIterator[Simulation]:
    async with Simulation(seed=actorq_seed) as sim:
        yield sim


def reproduce_command(config: pytest.Config, nodeid: str, seed: int) -> str:
    """The one command that reruns `nodeid` with only `seed`."""
    path = nodeid.split("[", 1)[0]
    if _option(config, "actorq_seed") is not None or hasattr(config.option, "actorq_seed"):
        return f"pytest '{path}' --actorq-seed={seed}"
    return f"{_ENV}={seed} pytest '{path}'"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome: Any = yield
    report = outcome.get_result()
    if not report.failed:
        return
    funcargs = getattr(item, "funcargs", {})
    seed = funcargs.get("actorq_seed")
    if seed is None:
        sim = funcargs.get("simulation")
        seed = getattr(sim, "seed", None)
    if seed is None:
        return
    line = f"reproduce with: {reproduce_command(item.config, item.nodeid, int(seed))}"
    report.sections.append(("actorq seed", line))
