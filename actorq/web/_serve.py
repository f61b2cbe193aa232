"""``actorq serve PATH --dashboard HOST:PORT``: open a runtime on a journal folder and serve
its dashboard with uvicorn, on 127.0.0.1 unless told otherwise. PATH may be a runtime host's
address instead (``actorq://HOST:PORT`` or ``unix:/path``): the dashboard is then served by a
client of that host, with ``--token`` (or ``$ACTORQ_TOKEN``)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from .. import RuntimeAPI

DEFAULT_ADDRESS: Final = "127.0.0.1:8321"


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``:PORT``, on 127.0.0.1) as a pair; ValueError when it is not one."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--dashboard takes HOST:PORT (like {DEFAULT_ADDRESS}), not {text!r}")
    return (host.strip("[]") or "127.0.0.1"), int(port)


async def run_dashboard(rt: RuntimeAPI, address: tuple[str, int], read_only: bool) -> None:
    """Serve `rt`'s dashboard with uvicorn until it is stopped (Ctrl-C, SIGTERM)."""
    import uvicorn  # noqa: PLC0415 - the web extra, loaded only here

    from . import dashboard  # noqa: PLC0415

    host, port = address
    app = dashboard(rt, read_only=read_only)
    config = uvicorn.Config(app, host=host, port=port, lifespan="off", log_level="info")
    mode = "read-only" if read_only else "actions on"
    print(f"actorq dashboard ({mode}) on http://{host}:{port}/", file=sys.stderr)
    await uvicorn.Server(config).serve()
