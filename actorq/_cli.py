"""The `actorq` command line (also ``python -m actorq``)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import __version__
from ._demo import DEFAULT_PATH
from ._demo import main as demo_main
from ._journal_cli import EXIT_CODES, add_journal_commands, run_journal_command


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="actorq",
        description="actorq: an in-process job queue",
        epilog=f"{EXIT_CODES}\n\n`actorq COMMAND --help` describes each command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"actorq {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="run a small workload on a journal in virtual time (run it twice)"
    )
    demo.add_argument(
        "--path", default=DEFAULT_PATH, help=f"journal folder (default {DEFAULT_PATH}/)"
    )
    demo.add_argument("--users", type=int, default=50, help="campaigns per run (default 50)")
    serve = commands.add_parser(
        "serve",
        help="open a runtime on a journal folder and serve its web dashboard (actorq[web])",
    )
    serve.add_argument(
        "path",
        help="journal folder (a runtime's path=), or a runtime host's address "
        "(actorq://HOST:PORT or unix:/path) to serve its dashboard as a client",
    )
    serve.add_argument(
        "--token",
        default=os.environ.get("ACTORQ_TOKEN"),
        help="the runtime host's token, when PATH is its address (default $ACTORQ_TOKEN)",
    )
    serve.add_argument(
        "--dashboard",
        metavar="HOST:PORT",
        default="127.0.0.1:8321",
        help="where to serve it (default 127.0.0.1:8321: this machine only)",
    )
    serve.add_argument(
        "--actions",
        action="store_true",
        help="allow retry, cancel, promote, remove, pause and resume (read-only otherwise)",
    )
    add_journal_commands(commands)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo_main(args.path, args.users)
    if args.command == "serve":
        try:
            from .web._serve import serve_main  # noqa: PLC0415 - needs the web extra
        except ImportError as exc:
            print(f"actorq serve needs the web extra: pip install 'actorq[web]' ({exc})")
            return 2
        return serve_main(args.path, args.dashboard, not args.actions, args.token)
    code = run_journal_command(args)
    if code is not None:
        return code
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
