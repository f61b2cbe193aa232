"""A client of a runtime host, for tests that run on a local runtime and through a client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import actorq
from actorq import RemoteRuntime, Runtime


@asynccontextmanager
async def remote_runtime(**host: Any) -> AsyncIterator[RemoteRuntime]:
    """A host (a `Runtime` on loopback, given `host`'s options) and a client of it: the
    client is what the test uses. Given a ``clock``, the client shares it with the host, so a
    `VirtualClock` sees through the connection (docs/testing.md)."""
    async with (
        Runtime(listen="127.0.0.1:0", **host) as served,
        actorq.connect(f"actorq://{served.address}", clock=host.get("clock")) as client,
    ):
        yield client
