"""``actorq stats|show|verify|compact|dump PATH``: look into a journal folder (or, given a
``postgresql://`` URL, the journal in that database: actorq/_journal_pg_cli.py).

`stats`, `show`, `verify` and `dump` only read: they take no lock and write nothing, so they
work while a live runtime holds the folder (a frame it is appending at that moment shows as a
torn tail and is left alone, and a read the runtime's snapshot changed under is done again).
`compact` opens the folder as a runtime would, so it refuses while a runtime holds it, and
repairs what an open repairs (a torn or zero-filled tail is cut).

PATH must be a journal folder (what a runtime's ``path=`` names): one holding a segment, a
snapshot or the lock file. Any other folder is refused with exit code 2, naming a journal
folder one level down if there is one (``actorq demo --path D`` journals to ``D/journal``),
rather than read as an empty journal.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, TextIO

import anyio
import orjson

import persistence
from persistence import OsFileSystem, TornTail
from persistence.layout import LOCK_NAME, parse_segment_name, parse_snapshot_name
from persistence.live_read import read_consistently
from persistence.recovery import RecoveryPlan, plan_recovery

from ._core import CoreState, JobState
from ._core.commands import Change
from ._journal import JournalError, JournalLockedError, open_changelog
from ._journal_codec import (
    PayloadError,
    add_fields,
    decode_batch,
    decode_snapshot,
    human_change,
    human_fields,
)
from ._journal_pg import is_postgres_url

__all__ = [
    "EXIT_CODES",
    "JOURNAL_COMMANDS",
    "add_journal_commands",
    "is_journal_folder",
    "run_journal_command",
]

JOURNAL_COMMANDS = ("stats", "show", "verify", "compact", "dump")

#: Exit codes of the journal subcommands, for ``--help``.
EXIT_CODES: Final = """exit codes:
  0  done (verify: no damage found; a torn tail alone is not damage)
  1  the journal is damaged or unreadable, show's job is nowhere in it, or
     compact found the folder locked by a runtime
  2  bad usage: wrong arguments, or PATH is missing or not a journal folder"""

_PATH_HELP: Final = "the journal folder or postgresql:// URL (what a runtime's path= names)"


def add_journal_commands(commands: Any) -> None:
    """Register the journal subcommands on an argparse subparsers object."""

    def command(name: str, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(
            name,
            help=help,
            description=help,
            epilog=EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument("path", help=_PATH_HELP)
        return parser

    stats = command("stats", "job counts by queue and state in a journal folder")
    stats.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    show = command("show", "one job's record and every change that touched it")
    show.add_argument("job_id", type=int)
    show.add_argument("--json", action="store_true", help="one JSON object: record and history")
    verify = command("verify", "check every snapshot and frame; exit 1 if damaged")
    verify.add_argument("--json", action="store_true", help="one JSON object: the report")
    command("compact", "write a snapshot and drop the history it covers (folder must be idle)")
    dump = command("dump", "print the change records (snapshot, then tail)")
    dump.add_argument("--jsonl", action="store_true", help="one JSON object per line")
    dump.add_argument(
        "--frames",
        action="store_true",
        help="every intact frame on disk (including those a snapshot covers), no snapshot",
    )


def run_journal_command(args: argparse.Namespace, out: TextIO | None = None) -> int | None:
    """Run the journal subcommand `args.command`; None if it is not one of them."""
    out = sys.stdout if out is None else out
    command = args.command
    if command not in JOURNAL_COMMANDS:
        return None
    folder = os.fspath(args.path)
    if is_postgres_url(folder):
        from ._journal_pg_cli import run_pg_command  # noqa: PLC0415 - the postgresql extra

        return run_pg_command(args, out)
    if not os.path.isdir(folder):
        print(f"error: {folder} is not a folder", file=sys.stderr)
        return 2
    if not is_journal_folder(folder):
        print(_not_a_journal(folder), file=sys.stderr)
        return 2
    try:
        if command == "stats":
            return _stats(folder, out, as_json=args.json)
        if command == "show":
            return _show(folder, args.job_id, out, as_json=args.json)
        if command == "verify":
            return _verify(folder, out, as_json=args.json)
        if command == "compact":
            return _compact(folder, out)
        return _dump(folder, out, jsonl=args.jsonl, frames=args.frames)
    except (persistence.JournalError, JournalError, PayloadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `actorq dump ... | head`: the reader left; say nothing more.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


# ---------------------------------------------------------------------- the folder


def is_journal_folder(folder: str) -> bool:
    """Whether `folder` holds a journal: a segment, a snapshot or the lock file."""
    try:
        names = os.listdir(folder)
    except OSError:
        return False
    return any(
        name == LOCK_NAME
        or parse_segment_name(name) is not None
        or parse_snapshot_name(name) is not None
        for name in names
    )


def _not_a_journal(folder: str) -> str:
    message = (
        f"error: {folder} is not an actorq journal folder "
        "(it holds no journal-*.seg, snapshot-*.snap or LOCK file)"
    )
    try:
        below = sorted(
            path
            for name in os.listdir(folder)
            if os.path.isdir(path := os.path.join(folder, name)) and is_journal_folder(path)
        )
    except OSError:
        below = []
    if below:
        found = ", ".join(below)
        return f"{message}\nhint: a journal folder is inside it: {found}; pass that path instead"
    return f"{message}\nhint: pass the folder a runtime was given as path="


# ---------------------------------------------------------------------- reading


@dataclass
class _Loaded:
    plan: RecoveryPlan
    core: CoreState


def _plan(folder: str) -> RecoveryPlan:
    fs = OsFileSystem()
    return read_consistently(fs, folder, lambda: plan_recovery(fs, folder))


def _torn_note(length: int, offset: int, file: str, whole_frame: bool) -> str:
    shape = (
        "a whole frame failing its checksum: an unfinished append, or damage to the last "
        "record, which may have been acknowledged"
        if whole_frame
        else "an unfinished append: a live runtime writing, or a crash"
    )
    return (
        f"note: {length} byte(s) at offset {offset} of {file} do not parse ({shape}); "
        "recovery cuts them and keeps them beside the segment"
    )


def _decoded(payload: bytes, where: str) -> list[Change]:
    try:
        return decode_batch(payload)
    except PayloadError as exc:
        raise PayloadError(f"cannot read {where}: {exc}") from None


def _replay(plan: RecoveryPlan) -> Iterator[tuple[int | None, Change]]:
    """(seq or None for the snapshot, change) in replay order."""
    if plan.snapshot is not None:
        where = f"the snapshot covering seq {plan.snapshot_seq}"
        try:
            for change in decode_snapshot(plan.snapshot):
                yield None, change
        except PayloadError as exc:
            raise PayloadError(f"cannot read {where}: {exc}") from None
    for seq, payload in plan.records:
        for change in _decoded(payload, f"frame seq {seq}"):
            yield seq, change


def _load(folder: str) -> _Loaded:
    plan = _plan(folder)
    core = CoreState()
    for _, change in _replay(plan):
        core.apply_change(change)
    return _Loaded(plan, core)


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _folder_bytes(folder: str) -> int:
    total = 0
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        # A live runtime's snapshot may delete a file between the listing and this look.
        with contextlib.suppress(FileNotFoundError):
            if os.path.isfile(path):
                total += os.path.getsize(path)
    return total


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.2f} MiB"


# ---------------------------------------------------------------------- commands


def _stats(folder: str, out: TextIO, *, as_json: bool = False) -> int:
    loaded = _load(folder)
    plan, core = loaded.plan, loaded.core
    last_seq = plan.next_seq - 1
    torn = (
        None
        if plan.torn_segment is None
        else {"segment": plan.torn_segment, "bytes": len(plan.torn_bytes)}
    )
    summary = {
        "path": folder,
        "segments": len(plan.segments),
        "last_seq": last_seq,
        "snapshot_seq": plan.snapshot_seq,
        "frames_after_snapshot": len(plan.records),
        "bytes_on_disk": _folder_bytes(folder),
        "torn_tail": torn,
    }
    headline = (
        f"journal {folder}: {len(plan.segments)} segment(s), last seq {last_seq}, "
        f"snapshot covers seq {plan.snapshot_seq}, {len(plan.records)} frame(s) after it, "
        f"{_mib(_folder_bytes(folder))} on disk"
    )
    if plan.torn_segment is not None:
        file = os.path.join(folder, plan.torn_segment)
        note = _torn_note(len(plan.torn_bytes), plan.torn_offset, file, plan.torn_whole_frame)
        headline += "\n" + note
    return print_stats(core, summary, headline, out, as_json=as_json)


def print_stats(
    core: CoreState, summary: dict[str, Any], headline: str, out: TextIO, *, as_json: bool
) -> int:
    """The counts by queue and state of `core`, after `headline` (or as JSON, in `summary`)."""
    states = list(JobState)
    totals = dict.fromkeys(states, 0)
    queues: dict[str, Any] = {}
    for name, qs in sorted(core.queues.items()):
        for s in states:
            totals[s] += qs.counts[s]
        queues[name] = {
            "counts": {s.value: qs.counts[s] for s in states},
            "total": sum(qs.counts.values()),
            "paused": qs.paused,
        }
    if as_json:
        report = {
            **summary,
            "queues": queues,
            "total": {
                "counts": {s.value: totals[s] for s in states},
                "total": sum(totals.values()),
            },
        }
        print(_json(report), file=out)
        return 0
    print(headline, file=out)
    width = max(len(name) for name in ["queue", "total", *core.queues])
    cols = [max(len(s.value), 7) for s in states]
    header = f"{'queue':<{width}}" + "".join(
        f"  {s.value:>{w}}" for s, w in zip(states, cols, strict=True)
    )
    print(header + f"  {'total':>7}", file=out)
    for name, row_data in queues.items():
        row = f"{name:<{width}}" + "".join(
            f"  {row_data['counts'][s.value]:>{w}}" for s, w in zip(states, cols, strict=True)
        )
        paused = "  (paused)" if row_data["paused"] else ""
        print(row + f"  {row_data['total']:>7}{paused}", file=out)
    row = f"{'total':<{width}}" + "".join(
        f"  {totals[s]:>{w}}" for s, w in zip(states, cols, strict=True)
    )
    print(row + f"  {sum(totals.values()):>7}", file=out)
    return 0


def touches(change: Change, job_id: int) -> bool:
    """Whether `change` is about job `job_id`."""
    kind = change[0]
    if kind == "add":
        return bool(add_fields(change).get("id") == job_id)
    if kind in ("set", "del"):
        return bool(change[1] == job_id)
    return False


def _show(folder: str, job_id: int, out: TextIO, *, as_json: bool = False) -> int:
    loaded = _load(folder)
    history: list[tuple[int, Change]] = []
    first_seq: int | None = None
    for seq, payload in persistence.iter_frames(folder):
        if first_seq is None:
            first_seq = seq
        history.extend(
            (seq, change)
            for change in _decoded(payload, f"frame seq {seq}")
            if touches(change, job_id)
        )
    snapshot_seq = loaded.plan.snapshot_seq
    compacted = bool(snapshot_seq and (first_seq is None or first_seq > 1))
    return print_job(
        loaded.core, job_id, history, snapshot_seq if compacted else None, out, as_json=as_json
    )


def print_job(
    core: CoreState,
    job_id: int,
    history: list[tuple[int, Change]],
    compacted: int | None,
    out: TextIO,
    *,
    as_json: bool,
) -> int:
    """Job `job_id`'s record in `core` and its `history`; exit 1 when it is in neither.
    `compacted`: the seq of the snapshot earlier history went into."""
    rec = core.jobs.get(job_id)
    record = None if rec is None else human_fields(rec.fields())
    code = 0 if rec is not None or history else 1
    if as_json:
        report = {
            "job_id": job_id,
            "record": record,
            "history": [{"seq": seq, "change": human_change(change)} for seq, change in history],
            "compacted_into_snapshot": compacted,
        }
        print(_json(report), file=out)
        return code
    if record is None:
        print(f"job {job_id} is not in the journal's current state", file=out)
    else:
        print(orjson.dumps(record, option=orjson.OPT_INDENT_2).decode(), file=out)
    print(f"history of job {job_id}:", file=out)
    if compacted:
        print(
            f"  (earlier history was compacted into the snapshot covering seq {compacted})",
            file=out,
        )
    for seq, change in history:
        print(f"  seq {seq}: {_json(human_change(change))}", file=out)
    if not history:
        print("  (no change on disk touches it)", file=out)
    return code


def _verify(folder: str, out: TextIO, *, as_json: bool = False) -> int:
    report = persistence.verify(folder)
    problems = list(report.problems)
    if report.ok:
        # Every intact frame and the snapshot must also decode as actorq batches.
        try:
            for seq, payload in persistence.iter_frames(folder):
                try:
                    decode_batch(payload)
                except PayloadError as exc:
                    problems.append(f"frame seq {seq}: {exc}")
            plan = _plan(folder)
            if plan.snapshot is not None:
                try:
                    for _change in decode_snapshot(plan.snapshot):
                        pass
                except PayloadError as exc:
                    problems.append(f"snapshot covering seq {plan.snapshot_seq}: {exc}")
        except persistence.JournalError as exc:
            problems.append(str(exc))
    tail: TornTail | None = report.torn_tail
    code = 0 if not problems else 1
    if as_json:
        summary = {
            "path": folder,
            "ok": not problems,
            "problems": problems,
            "frames": report.frames,
            "segments": report.segments,
            "snapshot_seq": report.snapshot_seq,
            "torn_tail": None
            if tail is None
            else {"file": tail.file, "offset": tail.offset, "bytes": tail.length},
        }
        print(_json(summary), file=out)
        return code
    for problem in problems:
        print(f"problem: {problem}", file=out)
    if tail is not None:
        print(_torn_note(tail.length, tail.offset, tail.file, tail.whole_frame), file=out)
    verdict = "ok" if not problems else f"{len(problems)} problem(s)"
    print(
        f"{verdict}: {report.frames} frame(s) in {report.segments} segment(s), "
        f"snapshot covers seq {report.snapshot_seq}",
        file=out,
    )
    return code


def _compact(folder: str, out: TextIO) -> int:
    before = _folder_bytes(folder)
    try:
        changelog = open_changelog(folder)
    except JournalLockedError as exc:
        print(
            f"error: cannot compact {folder}: {exc}; stop the runtime using it first",
            file=sys.stderr,
        )
        return 1
    try:
        core = CoreState()
        for change in changelog.replay():
            core.apply_change(change)
        changelog.guard_ids(core)
        anyio.run(changelog.snapshot, core.as_changes())
        covers = changelog.journal.snapshot_seq
    finally:
        changelog.close()
    after = _folder_bytes(folder)
    print(
        f"compacted {folder}: snapshot covers seq {covers}, {len(core.jobs)} job(s); "
        f"{_mib(before)} -> {_mib(after)} on disk",
        file=out,
    )
    return 0


def _dump(folder: str, out: TextIO, *, jsonl: bool, frames: bool) -> int:
    items: Iterator[tuple[int | None, Change]]
    snapshot_seq = 0
    if frames:
        items = (
            (seq, change)
            for seq, payload in persistence.iter_frames(folder)
            for change in _decoded(payload, f"frame seq {seq}")
        )
    else:
        plan = _plan(folder)
        snapshot_seq = plan.snapshot_seq
        items = _replay(plan)
    for seq, change in items:
        human = human_change(change)
        if jsonl:
            line: dict[str, Any] = (
                {"seq": seq, "change": human}
                if seq is not None
                else {"snapshot": snapshot_seq, "change": human}
            )
            out.write(_json(line) + "\n")
        else:
            where = f"seq {seq}" if seq is not None else f"snapshot@{snapshot_seq}"
            out.write(f"{where:>14}  {_json(human)}\n")
    return 0
