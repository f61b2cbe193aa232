"""The kinds of runtime the behaviour tests run on (the `make_runtime` fixture).

Each kind is a factory used as ``async with make(clock=VirtualClock(), **options) as rt:``;
`rt` has the public API of a runtime whichever kind it is.

* ``local``: ``Runtime(**options)``, in memory.
* ``remote``: a client (``actorq.connect``) of a host ``Runtime(listen=..., **options)`` in
  this process; both ends share the clock, so a `VirtualClock` sees through the connection.
* ``postgresql``: ``Runtime(url, fsync="never", **options)``, each on a fresh schema.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from remote_fixture import remote_runtime

from actorq import Runtime

KINDS = ("local", "remote", "postgresql")

MakeRuntime = Callable[..., AbstractAsyncContextManager[Any]]


def maker(kind: str, new_database: Callable[[], str] | None = None) -> MakeRuntime:
    if kind == "local":
        return Runtime
    if kind == "remote":
        return remote_runtime
    assert kind == "postgresql" and new_database is not None

    def on_postgresql(**options: Any) -> Runtime:
        options.setdefault("fsync", "never")
        return Runtime(new_database(), **options)

    return on_postgresql


#: Why a test stays off the ``remote`` kind (`@pytest.mark.runtimes(..., why=...)`).
RUNTIME_STOP = (
    "the Runtime's own stop (shutdown_timeout, close, wait_stopped); a client's close ends "
    "its connection (tests/test_remote.py)"
)
