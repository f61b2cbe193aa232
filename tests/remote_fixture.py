"""A client of a runtime host, for tests that run on a local runtime and through a client."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

from actorq import RemoteRuntime, Runtime
from actorq._remote import address


class HostedClient(RemoteRuntime):
    """A client of a host (a `Runtime` on loopback in this process, given `host`'s options)
    that starts when the client enters and stops when it exits: the client is what the test
    uses, made and entered as a `Runtime` would be. Given a ``clock``, the client shares it
    with the host, so a `VirtualClock` sees through the connection (docs/testing.md)."""

    def __init__(self, **host: Any) -> None:
        self._served = Runtime(listen="127.0.0.1:0", **host)  # bad options refused here
        super().__init__("actorq://127.0.0.1:1", clock=host.get("clock"))

    async def __aenter__(self) -> Self:
        served = self._served
        await served.__aenter__()
        try:
            self.url = f"actorq://{served.address}"
            self._address = address.parse("url", self.url)
            return await super().__aenter__()
        except BaseException as exc:
            await served.__aexit__(type(exc), exc, exc.__traceback__)
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        try:
            await super().__aexit__(exc_type, exc, tb)
        finally:
            await self._served.__aexit__(exc_type, exc, tb)
        return None


def remote_runtime(**host: Any) -> HostedClient:
    """`HostedClient(**host)`: use as ``async with remote_runtime(clock=...) as rt:``."""
    return HostedClient(**host)
