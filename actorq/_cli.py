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
    add_journal_commands(commands)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo_main(args.path, args.users)
    code = run_journal_command(args)
    if code is not None:
        return code
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
