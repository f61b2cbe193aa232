"""``actorq serve [PATH|URL] [--listen HOST:PORT] [--token-file FILE] [--dashboard HOST:PORT]``.

A runtime host with no code of its own: a runtime on PATH (a journal folder, or in memory
when PATH is omitted) served to other processes on ``--listen``, its dashboard on
``--dashboard``, or both. Given a host's URL (``actorq://HOST:PORT``, ``unix:/path``) instead
of a PATH, it serves that host's dashboard as one of its clients.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import anyio

from ._api import RuntimeAPI
from ._exceptions import ActorqError
from ._remote.client import RemoteRuntime
from ._runtime import Runtime


def _token(token_file: str | None) -> str | None:
    """The token: read from `token_file`, else $ACTORQ_TOKEN (a file keeps it out of the
    process list and the shell's history)."""
    if token_file is None:
        return os.environ.get("ACTORQ_TOKEN")
    return Path(token_file).read_text().strip()


def is_remote(target: str | None) -> bool:
    return target is not None and target.startswith(("actorq://", "unix:"))


async def _serve(
    target: str | None,
    listen: str | None,
    token: str | None,
    dashboard: tuple[str, int] | None,
    read_only: bool,
) -> None:
    rt: RuntimeAPI
    if is_remote(target):
        assert target is not None
        rt = RemoteRuntime(target, token=token)
    else:
        rt = Runtime(target, listen=listen, token=token)
    async with rt:
        if isinstance(rt, Runtime) and rt.address is not None:
            print(f"actorq host on {rt.address}", file=sys.stderr, flush=True)
        if dashboard is not None:
            from .web._serve import run_dashboard  # noqa: PLC0415 - needs the web extra

            await run_dashboard(rt, dashboard, read_only)  # until Ctrl-C or SIGTERM
            return
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break


def serve_main(
    target: str | None,
    listen: str | None,
    token_file: str | None,
    dashboard: str | None,
    read_only: bool,
) -> int:
    if listen is None and dashboard is None:
        dashboard = "127.0.0.1:8321"
    where = None
    if dashboard is not None:
        try:
            from .web._serve import parse_address  # noqa: PLC0415 - needs the web extra
        except ImportError as exc:
            print(
                f"actorq serve --dashboard needs the web extra: pip install 'actorq[web]' ({exc})"
            )
            return 2
        try:
            where = parse_address(dashboard)
        except ValueError as exc:
            print(f"actorq serve: {exc}", file=sys.stderr)
            return 2
    if listen is not None and is_remote(target):
        print("actorq serve: --listen serves a runtime of its own, not a host's", file=sys.stderr)
        return 2
    try:
        anyio.run(_serve, target, listen, _token(token_file), where, read_only)
    except (ActorqError, OSError) as exc:
        print(f"actorq serve: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it met
        pass
    return 0
