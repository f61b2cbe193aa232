"""The `actorq` command line (also ``python -m actorq``)."""

from __future__ import annotations

import argparse
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
        help="serve a runtime to other processes (--listen) and/or its dashboard (actorq[web])",
    )
    serve.add_argument(
        "path",
        nargs="?",
        help="journal folder (a runtime's path=; in memory when omitted), or a host's URL "
        "(actorq://HOST:PORT) to serve the dashboard of",
    )
    serve.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="serve the runtime to other processes there (actorq.connect); 'unix:/path' for "
        "a Unix socket; port 0 picks a free one",
    )
    serve.add_argument(
        "--token-file",
        metavar="FILE",
        help="the token clients must give (required beyond loopback), read from FILE",
    )
    serve.add_argument(
        "--dashboard",
        metavar="HOST:PORT",
        help="serve the dashboard there (the default, 127.0.0.1:8321, without --listen)",
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
        from ._serve import serve_main  # noqa: PLC0415 - loads the runtime only when serving

        return serve_main(args.path, args.listen, args.token_file, args.dashboard, not args.actions)
    code = run_journal_command(args)
    if code is not None:
        return code
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
