"""The kinds of runtime the behaviour tests run on (the `make_runtime` fixture).

Each kind is a factory used as ``async with make(clock=VirtualClock(), **options) as rt:``;
`rt` has the public API of a runtime whichever kind it is.

* ``local``: ``Runtime(**options)``, in memory.
* ``remote``: a client (``actorq.connect``) of a host ``Runtime(listen=..., **options)`` in
  this process; both ends share the clock, so a `VirtualClock` sees through the connection.
* ``postgresql``: ``Runtime(url, fsync="never", **options)``, each on a fresh schema.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Self

from remote_fixture import remote_runtime

from actorq import RemoteRuntime, Runtime

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


#: ``async with runtime_lives(clock=...) as life:``, then ``async with life() as rt:`` once
#: per life: a runtime stopped and started again on one journal (a restart).
RuntimeLives = Callable[..., AbstractAsyncContextManager[Callable[..., Any]]]


def lives(kind: str, folder: Path, new_database: Callable[[], str] | None = None) -> RuntimeLives:
    """Successive lives of one runtime on one journal, each ``life(**more)`` given the
    block's options and `more`:

    * ``local``: ``Runtime(folder, **options)``, a new runtime each life;
    * ``remote``: a host ``Runtime(folder, listen=..., **options)`` each life, on one
      address, and one client for the whole block, which reconnects to each new host (what
      a host's users see at its restart). A life's end closes the client's processor
      workers before its host stops (a runtime's stop ends its workers; a client would
      register them on the next host) and forgets its manual workers after (their tokens
      went with the host);
    * ``postgresql``: ``Runtime(url, fsync="never", **options)`` on one fresh schema.
    """

    @asynccontextmanager
    async def block(**options: Any) -> AsyncIterator[Callable[..., Any]]:
        if kind == "local":
            yield lambda **more: Runtime(folder, **{**options, **more})
        elif kind == "postgresql":
            assert new_database is not None
            url = new_database()
            options.setdefault("fsync", "never")
            yield lambda **more: Runtime(url, **{**options, **more})
        else:
            assert kind == "remote"
            async with _RemoteLives(folder, options) as remote:
                yield remote.life

    return block


class _RemoteLives:
    def __init__(self, folder: Path, options: dict[str, Any]) -> None:
        self._folder, self._options = folder, options
        # A Unix socket each host binds in turn (a stale one is removed): a short path,
        # as a socket's path has a length limit a test's tmp_path can pass.
        self._sockets = tempfile.TemporaryDirectory(prefix="aq")
        self._listen = f"unix:{self._sockets.name}/host"
        self.client = RemoteRuntime(f"actorq://{self._listen}", clock=options.get("clock"))

    async def __aenter__(self) -> Self:
        # Connecting in the background, as a warm standby's client does: the first host
        # starts inside the block, and the client's task group must be entered first.
        await self.client._begin(None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.client.close()
        finally:
            self._sockets.cleanup()

    @asynccontextmanager
    async def life(self, **more: Any) -> AsyncIterator[RemoteRuntime]:
        options = {**self._options, **more}
        if options.get("clock") is not self._options.get("clock"):
            raise ValueError("the client of every life shares the block's clock")
        client = self.client
        async with Runtime(self._folder, listen=self._listen, **options):
            try:
                yield client
            finally:
                for worker in list(client._workers.values()):
                    if not worker.manual:
                        await worker.close()
        for worker in list(client._workers.values()):
            worker._closed = True
            client._workers.pop(worker.token, None)
