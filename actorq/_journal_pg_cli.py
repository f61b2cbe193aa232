"""``actorq stats|show|verify|compact|dump postgresql://...``: look into a journal in
PostgreSQL.

`stats`, `show`, `verify` and `dump` only read, in one read-only REPEATABLE READ
transaction (one consistent view while a leader goes on committing), and take no lease.
`compact` takes the lease as a runtime would, so it refuses while a leader holds it.
A database with no actorq tables is refused with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TextIO

import anyio
import orjson

from . import _journal_pg_schema as sql
from ._core import CoreState
from ._core.commands import Change
from ._exceptions import InvalidOptionError
from ._journal import JournalError
from ._journal_codec import PayloadError, decode_batch, decode_snapshot, human_change
from ._journal_pg import open_pg_changelog
from ._journal_pg_lease import LEASE_NAME, _connect, parse_url

if TYPE_CHECKING:
    import psycopg

__all__ = ["run_pg_command"]


def run_pg_command(args: argparse.Namespace, out: TextIO) -> int:
    """Run a journal subcommand on the database `args.path` names."""
    from ._journal_cli import print_job, print_stats, touches  # noqa: PLC0415 - imports us

    try:
        options = parse_url(args.path)
    except InvalidOptionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import psycopg  # noqa: PLC0415 - the postgresql extra

    url = options.shown
    try:
        if args.command == "compact":
            return _compact(args.path, out)
        conn = _connect(options, autocommit=False)
    except psycopg.OperationalError as exc:
        print(f"error: cannot connect to {url}: {exc}", file=sys.stderr)
        return 1
    except JournalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    with conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        if sql.schema_version(conn) is None:
            print(f"error: {url} holds no actorq journal (no actorq_schema table)", file=sys.stderr)
            return 2
        reader = _Reader(conn, url)
        try:
            if args.command == "stats":
                summary = reader.summary()
                headline = (
                    f"journal {url}: epoch {summary['epoch']}, lease "
                    + (
                        f"held by {summary['holder']} for {summary['lease_left_s']} s"
                        + (f" (listening at {summary['address']})" if summary["address"] else "")
                        if summary["lease_live"]
                        else "free"
                    )
                    + f", last seq {summary['last_seq']}, snapshot covers seq "
                    f"{summary['snapshot_seq']}, {summary['rows']} row(s) in "
                    f"{summary['partitions']} partition(s), {summary['payload_bytes']} payload "
                    f"bytes, {summary['bytes_on_disk']} bytes on disk"
                )
                return print_stats(reader.load(), summary, headline, out, as_json=args.json)
            if args.command == "show":
                history = [(seq, ch) for seq, ch in reader.frames() if touches(ch, args.job_id)]
                core = reader.load()
                compacted = reader.snapshot_seq if reader.first_seq() > 1 else None
                return print_job(core, args.job_id, history, compacted, out, as_json=args.json)
            if args.command == "verify":
                return _verify(reader, out, as_json=args.json)
            return _dump(reader, out, jsonl=args.jsonl, frames=args.frames)
        except (PayloadError, JournalError) as exc:
            print(f"error: {url}: {exc}", file=sys.stderr)
            return 1


class _Reader:
    def __init__(self, conn: psycopg.Connection[Any], url: str) -> None:
        self.conn = conn
        self.url = url
        row = conn.execute(sql.NEWEST_SNAPSHOT).fetchone()
        self.snapshot_seq = 0 if row is None else int(row[0])
        self.snapshot = None if row is None else bytes(row[1])

    def first_seq(self) -> int:
        row = self.conn.execute("SELECT coalesce(min(seq), 0) FROM actorq_log").fetchone()
        return 0 if row is None else int(row[0])

    def rows(self, after: int) -> Iterator[tuple[int, int, bytes]]:
        cur = self.conn.execute(
            "SELECT seq, epoch, payload FROM actorq_log WHERE seq > %s ORDER BY seq", (after,)
        )
        for seq, epoch, payload in cur:
            yield int(seq), int(epoch), bytes(payload)

    def frames(self, after: int = 0) -> Iterator[tuple[int, Change]]:
        for seq, _epoch, payload in self.rows(after):
            try:
                batch = decode_batch(payload)
            except PayloadError as exc:
                raise PayloadError(f"cannot read batch seq {seq}: {exc}") from None
            for change in batch:
                yield seq, change

    def replay(self) -> Iterator[tuple[int | None, Change]]:
        if self.snapshot is not None:
            try:
                for change in decode_snapshot(self.snapshot):
                    yield None, change
            except PayloadError as exc:
                raise PayloadError(
                    f"cannot read the snapshot covering seq {self.snapshot_seq}: {exc}"
                ) from None
        expected = self.snapshot_seq + 1
        for seq, change in self.frames(self.snapshot_seq):
            if seq > expected:
                raise JournalError(f"batch seq {expected} is missing (the next is {seq})")
            expected = seq + 1
            yield seq, change

    def load(self) -> CoreState:
        core = CoreState()
        for _seq, change in self.replay():
            core.apply_change(change)
        return core

    def summary(self) -> dict[str, Any]:
        lease = self.conn.execute(
            "SELECT epoch, holder, address, expires_at > now(), "
            "CASE WHEN expires_at > now() THEN extract(epoch FROM expires_at - now())::float8 "
            "ELSE 0.0 END FROM actorq_lease WHERE name = %s",
            (LEASE_NAME,),
        ).fetchone()
        counts = self.conn.execute(
            "SELECT count(*), coalesce(max(seq), 0), coalesce(sum(length(payload)), 0) "
            "FROM actorq_log"
        ).fetchone()
        assert counts is not None
        parts = sql.partitions(self.conn)
        size = self.conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "WHERE c.relname = 'actorq_snapshot' OR c.relname = 'actorq_lease' "
            "OR c.relname = ANY(%s)",
            ([name for name, _s, _e in parts],),
        ).fetchone()
        return {
            "path": self.url,
            "epoch": None if lease is None else int(lease[0]),
            "holder": None if lease is None else (lease[1] or None),
            "address": None if lease is None else (lease[2] or None),
            "lease_live": bool(lease and lease[3]),
            "lease_left_s": None if lease is None else round(float(lease[4]), 1),
            "rows": int(counts[0]),
            "last_seq": max(int(counts[1]), self.snapshot_seq),
            "payload_bytes": int(counts[2]),
            "partitions": len(parts),
            "snapshot_seq": self.snapshot_seq,
            "bytes_on_disk": 0 if size is None else int(size[0]),
        }


def _verify(reader: _Reader, out: TextIO, *, as_json: bool) -> int:
    problems: list[str] = []
    rows = 0
    last_epoch = 0
    expected: int | None = None
    for seq, epoch, payload in reader.rows(0):
        rows += 1
        if expected is not None and seq != expected:
            problems.append(f"batch seqs {expected} to {seq - 1} are missing")
        if epoch < last_epoch:
            problems.append(f"batch seq {seq} has epoch {epoch}, older than before it")
        last_epoch, expected = max(last_epoch, epoch), seq + 1
        try:
            decode_batch(payload)
        except PayloadError as exc:
            problems.append(f"batch seq {seq}: {exc}")
    first = reader.first_seq()
    if first > reader.snapshot_seq + 1:
        problems.append(
            f"batches {reader.snapshot_seq + 1} to {first - 1} are missing after the snapshot"
        )
    if reader.snapshot is not None:
        try:
            for _change in decode_snapshot(reader.snapshot):
                pass
        except PayloadError as exc:
            problems.append(f"snapshot covering seq {reader.snapshot_seq}: {exc}")
    if as_json:
        report = {"path": reader.url, "ok": not problems, "problems": problems, "rows": rows}
        report["snapshot_seq"] = reader.snapshot_seq
        print(orjson.dumps(report).decode(), file=out)
    else:
        for problem in problems:
            print(f"problem: {problem}", file=out)
        verdict = "ok" if not problems else f"{len(problems)} problem(s)"
        print(f"{verdict}: {rows} row(s), snapshot covers seq {reader.snapshot_seq}", file=out)
    return 0 if not problems else 1


def _dump(reader: _Reader, out: TextIO, *, jsonl: bool, frames: bool) -> int:
    items = reader.frames() if frames else reader.replay()
    snapshot_seq = reader.snapshot_seq
    for seq, change in items:
        human = human_change(change)
        if jsonl:
            line: dict[str, Any] = (
                {"seq": seq, "change": human}
                if seq is not None
                else {"snapshot": snapshot_seq, "change": human}
            )
            out.write(orjson.dumps(line, option=orjson.OPT_NON_STR_KEYS).decode() + "\n")
        else:
            where = f"seq {seq}" if seq is not None else f"snapshot@{snapshot_seq}"
            out.write(f"{where:>14}  {orjson.dumps(human).decode()}\n")
    return 0


def _compact(url: str, out: TextIO) -> int:
    changelog = open_pg_changelog(url)
    try:
        core = CoreState()
        for change in changelog.replay():
            core.apply_change(change)
        changelog.guard_ids(core)
        covers = changelog.last_seq
        anyio.run(changelog.snapshot, core.as_changes())
    finally:
        changelog.close()
    print(
        f"compacted {changelog.url}: snapshot covers seq {covers}, {len(core.jobs)} job(s)",
        file=out,
    )
    return 0
