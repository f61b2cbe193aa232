"""``actorq serve PATH --dashboard HOST:PORT``: open a runtime on a journal folder and serve
its dashboard with uvicorn, on 127.0.0.1 unless told otherwise. PATH may be a runtime host's
address instead (``actorq://HOST:PORT`` or ``unix:/path``): the dashboard is then served by a
client of that host, with ``--token`` (or ``$ACTORQ_TOKEN``)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Final

from .. import Runtime, connect

DEFAULT_ADDRESS: Final = "127.0.0.1:8321"


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``:PORT``, on 127.0.0.1) as a pair; ValueError when it is not one."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--dashboard takes HOST:PORT (like {DEFAULT_ADDRESS}), not {text!r}")
    return (host.strip("[]") or "127.0.0.1"), int(port)


def is_host_address(path: str) -> bool:
    """Whether `path` names a runtime host to connect to rather than a journal folder."""
    return path.startswith(("actorq://", "unix:"))


async def _serve(path: str, host: str, port: int, read_only: bool, token: str | None) -> None:
    import uvicorn  # noqa: PLC0415 - the web extra, loaded only here

    from . import dashboard  # noqa: PLC0415

    opened = connect(path, token=token) if is_host_address(path) else Runtime(path)
    async with opened as rt:
        app = dashboard(rt, read_only=read_only)
        config = uvicorn.Config(app, host=host, port=port, lifespan="off", log_level="info")
        mode = "read-only" if read_only else "actions on"
        print(f"actorq dashboard ({mode}) on http://{host}:{port}/", file=sys.stderr)
        await uvicorn.Server(config).serve()


def serve_main(path: str, address: str, read_only: bool, token: str | None = None) -> int:
    try:
        host, port = parse_address(address)
    except ValueError as exc:
        print(f"actorq serve: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the Ctrl-C it met
        asyncio.run(_serve(path, host, port, read_only, token))
    return 0
