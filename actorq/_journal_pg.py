"""The journal in PostgreSQL: `Runtime("postgresql://user@host:port/db")`.

Theory of operation
-------------------
`open_pg_changelog` (called in a worker thread as the runtime starts) connects, migrates the
tables (`actorq._journal_pg_schema`), and takes the lease: the row ``actorq_lease`` names
the leader and, by the database's clock, until when it leads; taking it adds one to its
``epoch``. A live lease held by another process is a `LeaseHeldError`, unless the URL asks
to wait as a candidate (``?actorq_wait=SECONDS``): then it polls until the holder releases it
or lets it expire, and takes over. Serving from a standby comes with the remote clients
(issue 19).

Each commit (one scheduler batch) is one statement, so one transaction and one round trip:
an insert of the batch's bytes (the file journal's codec) at the next ``seq``, made only
while the lease row still holds this leader's epoch (`APPEND`). A leader that lost the lease
to a newer one inserts nothing: `FencedError`, the runtime stops, and its callers get
`RuntimeClosedError` with that cause. Every commit waits (`waits` is True): the batch is
acknowledged once PostgreSQL has committed it. The fsync policies map onto
``synchronous_commit``: ``always`` keeps the server's setting (on: the WAL is flushed, and
with synchronous replication configured, replicated, before the commit returns);
``interval`` and ``never`` set it off for the journal's connection: PostgreSQL acknowledges
before its WAL flush (which its WAL writer does within 3 × ``wal_writer_delay``), so a
crash of the client loses nothing acknowledged and a crash of the server at most that much.

All database I/O of the log runs on a thread of its own (`_DbThread`), so the engine is
never blocked; the awaiting task is woken through its loop's thread-safe call (asyncio or
trio). A connection lost under a commit is reopened until the lease's trust window ends:
then the log looks up whether the batch landed before retrying it, so a retry never writes
twice. The lease is renewed every ttl / 3 by a second thread on a connection of its own;
`watch` (run by the runtime beside its loop) waits, with no I/O, for the trust window to
end without a renewal (0.8 × ttl after the last renewal was sent, so before the lease can
expire in the database) or for a renewal to find the epoch taken, and stops the runtime
then (`LeaseLostError`, `FencedError`). Commits still waiting then fail with it.

The log is partitioned by ranges of ``seq`` (``?actorq_partition=FRAMES``, 100,000 by
default); a snapshot is inserted (fenced the same way) when the rows since the last one
exceed ``snapshot_bytes``, the two newest are kept, and the partitions the older of them
covers are dropped. Job ids are guarded across lives as in the file journal, with the
high-water mark kept in the lease row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import queue
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import attrs

from . import _journal_pg_schema as sql
from ._core.commands import Change
from ._exceptions import InvalidOptionError
from ._journal import (
    DEFAULT_SNAPSHOT_BYTES,
    ID_BLOCK,
    IdCounter,
    JournalError,
    JournalFailedError,
    JournalFormatError,
    JournalLockedError,
)
from ._journal_codec import (
    PayloadError,
    decode_batch,
    decode_snapshot,
    encode_batch,
    encode_snapshot,
)

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "FencedError",
    "LeaseHeldError",
    "LeaseLostError",
    "PostgresChangeLog",
    "PostgresJournalError",
    "is_postgres_url",
    "open_pg_changelog",
]

log = logging.getLogger("actorq.journal")

#: The lease row's name (one journal per database, or per schema through ``search_path``).
LEASE_NAME = "journal"
DEFAULT_TTL = 10.0
DEFAULT_PARTITION = 100_000
#: The share of the ttl after a renewal was sent within which the leader trusts its lease.
TRUST = 0.8
_URL_PREFIXES = ("postgresql://", "postgres://")


def is_postgres_url(path: str) -> bool:
    return path.startswith(_URL_PREFIXES)


class PostgresJournalError(JournalError):
    """The journal in PostgreSQL cannot be opened or read (names the database)."""


class LeaseHeldError(JournalLockedError):
    """Another runtime holds the journal's lease; the message names it and how long its
    lease has left."""

    def __init__(self, url: str, detail: str = "") -> None:
        super().__init__(url, detail)
        self.args = (f"journal {url}: {detail}",)


class FencedError(JournalFailedError):
    """A newer leader took the lease: this runtime's writes are refused and it stops."""


class LeaseLostError(JournalFailedError):
    """The lease could not be renewed within its trust window: the runtime stepped down."""


@attrs.frozen
class Options:
    conninfo: str
    shown: str
    ttl: float = DEFAULT_TTL
    wait: float = 0.0
    partition: int = DEFAULT_PARTITION
    address: str = ""


def parse_url(url: str) -> Options:
    """Split the ``actorq_*`` parameters off `url` (libpq refuses unknown ones)."""
    parts = urllib.parse.urlsplit(url)
    keep: list[tuple[str, str]] = []
    ours: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if not key.startswith("actorq_"):
            keep.append((key, value))
            continue
        name = key.removeprefix("actorq_")
        if name in ("ttl", "wait"):
            seconds = math.inf if name == "wait" and value == "forever" else _number(key, value)
            if not seconds > 0 and not (name == "wait" and seconds == 0):
                raise InvalidOptionError(key, value, "must be a positive number of seconds")
            ours[name] = seconds
        elif name == "partition":
            if not value.isdigit() or int(value) < 1:
                raise InvalidOptionError(key, value, "must be a positive whole number of rows")
            ours[name] = int(value)
        elif name == "address":
            ours[name] = value
        else:
            raise InvalidOptionError(
                key, value, "is not an option (actorq_ttl, actorq_wait, actorq_partition)"
            )
    conninfo = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(keep)))
    return Options(conninfo, sql.shown(conninfo), **ours)


def _number(key: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise InvalidOptionError(key, value, "must be a number of seconds") from None


def _connect(options: Options, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    import psycopg  # noqa: PLC0415 - the postgresql extra

    timeout = max(1, math.ceil(options.ttl / 3))
    return psycopg.connect(
        options.conninfo,
        autocommit=autocommit,
        connect_timeout=timeout,
        keepalives=1,
        keepalives_idle=timeout,
        keepalives_interval=1,
        keepalives_count=3,
        application_name="actorq",
    )


def _call_soon() -> Callable[..., object]:
    """The running loop's thread-safe `call_soon` (asyncio or trio)."""
    try:
        return asyncio.get_running_loop().call_soon_threadsafe
    except RuntimeError:
        import trio  # noqa: PLC0415 - the other backend anyio runs on

        return trio.lowlevel.current_trio_token().run_sync_soon


Done = Callable[[BaseException | None], None]


class _DbThread:
    """Runs the log's database work, in order, on one daemon thread."""

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[tuple[Callable[[], None], Done] | None]
        self._queue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, work: Callable[[], None], done: Done) -> None:
        self._queue.put((work, done))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            work, done = item
            error: BaseException | None = None
            try:
                work()
            except BaseException as exc:
                error = exc
            done(error)
            del item, work, done, error

    def stop(self, timeout: float) -> None:
        self._queue.put(None)
        self._thread.join(timeout)


class _Lease:
    """Renews the lease every ttl / 3 on its own thread and connection, and knows until when
    the leader may trust it (`trusted_until`, monotonic)."""

    def __init__(self, options: Options, epoch: int, sent_at: float) -> None:
        self.options = options
        self.epoch = epoch
        self.trusted_until = sent_at + TRUST * options.ttl
        self.error: JournalFailedError | None = None
        self.on_fail: Callable[[JournalFailedError], None] = lambda error: None
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name=f"actorq-lease {options.shown}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        import psycopg  # noqa: PLC0415 - the postgresql extra

        ttl = self.options.ttl
        conn: psycopg.Connection[Any] | None = None
        pause = ttl / 3
        while True:
            with self._cond:
                if self._cond.wait_for(lambda: self._stopping or self.error, timeout=pause):
                    break
            sent = time.monotonic()
            try:
                if conn is None or conn.closed:
                    conn = _connect(self.options)
                renewed = conn.execute(sql.RENEW_LEASE, (ttl, LEASE_NAME, self.epoch)).rowcount
            except psycopg.Error as exc:
                log.warning("journal %s: lease renewal failed: %s", self.options.shown, exc)
                with contextlib.suppress(Exception):
                    if conn is not None:
                        conn.close()
                conn = None
                pause = min(ttl / 10, 1.0)
                continue
            if renewed != 1:
                self.fail(_fenced(self.options, conn, self.epoch))
                break
            with self._cond:
                self.trusted_until = sent + TRUST * ttl
                self._cond.notify_all()
            pause = ttl / 3
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def fail(self, error: JournalFailedError) -> None:
        with self._cond:
            if self.error is not None:
                return
            self.error = error
            self._cond.notify_all()
        self.on_fail(error)

    def check(self) -> None:
        """Raise the lease's error if it was lost, or if its trust window ended."""
        if self.error is None and time.monotonic() >= self.trusted_until:
            self.fail(self._lost())
        if self.error is not None:
            raise self.error

    def _lost(self) -> LeaseLostError:
        return LeaseLostError(
            f"journal {self.options.shown}: the lease (epoch {self.epoch}) could not be "
            f"renewed within {TRUST * self.options.ttl:g} s of the last renewal; the runtime "
            "stepped down before the lease could expire"
        )

    def wait_lost(self) -> JournalFailedError | None:
        """Block until the lease is lost (its error) or the log closes (None); no I/O."""
        with self._cond:
            while not self._stopping:
                if self.error is not None:
                    return self.error
                remaining = self.trusted_until - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            else:
                return None
        self.fail(self._lost())
        return self.error

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(self.options.ttl)


def _fenced(options: Options, conn: psycopg.Connection[Any] | None, epoch: int) -> FencedError:
    newer = "a newer leader"
    with contextlib.suppress(Exception):
        if conn is not None:
            row = conn.execute(sql.CURRENT_EPOCH, (LEASE_NAME,)).fetchone()
            if row is not None:
                newer = f"{row[1] or 'a newer leader'} (epoch {row[0]})"
    return FencedError(
        f"journal {options.shown}: {newer} holds the lease; this runtime's epoch {epoch} "
        "is fenced off and it stops"
    )


class PostgresChangeLog:
    """A `ChangeLog` that commits every batch to PostgreSQL; see the module docstring."""

    records = True
    waits = True

    def __init__(
        self,
        options: Options,
        conn: psycopg.Connection[Any],
        *,
        epoch: int,
        sent_at: float,
        id_mark: int,
        fsync: str,
        snapshot_bytes: int,
    ) -> None:
        self.options = options
        self.url = options.shown
        self.fsync = fsync
        self.epoch = epoch
        self.snapshot_bytes = snapshot_bytes
        self._conn = conn
        snap = conn.execute(sql.NEWEST_SNAPSHOT).fetchone()
        self._snapshot_seq = 0 if snap is None else int(snap[0])
        self._snapshot_size = 0 if snap is None else len(snap[1])
        row = conn.execute(sql.LAST_SEQ).fetchone()
        self.last_seq = max(self._snapshot_seq, 0 if row is None else int(row[0]))
        ends = [end for _name, _start, end in sql.partitions(conn)]
        self._part_end = max(ends, default=0)
        self._since_snapshot = 0
        self._id_mark = id_mark
        self._ids: IdCounter | None = None
        self._failure: JournalError | None = None
        self._closed = False
        self._replayed = False
        self._waiting: set[Done] = set()
        self._lock = threading.Lock()
        self._thread: _DbThread | None = None
        self.lease = _Lease(options, epoch, sent_at)
        self.lease.on_fail = self._lease_failed

    # ------------------------------------------------------------------ failures

    def _fail(self, exc: BaseException) -> JournalError:
        if isinstance(exc, JournalError):
            error = exc
        else:
            error = JournalFailedError(f"journal {self.url} failed: {exc!r}")
        if self._failure is None:
            self._failure = error
            log.error("journal %s failed, the runtime stops: %s", self.url, error)
        return error

    def _check(self) -> None:
        if self._failure is not None:
            raise self._failure
        self.lease.check()

    def _lease_failed(self, error: JournalFailedError) -> None:
        """The lease is gone: every commit still waiting fails with it (whatever its
        statement does later, the batch is not acknowledged)."""
        with self._lock:
            waiting = list(self._waiting)
        for done in waiting:
            done(error)

    # ------------------------------------------------------------------ the thread

    async def _on_thread(self, work: Callable[[], None]) -> None:
        """Run `work` on the log's thread; return (or raise) once it is done, or once the
        lease is lost, whatever cancellation comes meanwhile."""
        call_soon = _call_soon()
        event = anyio.Event()
        outcome: list[BaseException | None] = []

        def settle(error: BaseException | None) -> None:
            if not outcome:
                outcome.append(error)
                event.set()

        def done(error: BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                call_soon(settle, error)

        thread = self._thread
        if thread is None:
            thread = self._thread = _DbThread(f"actorq-journal-pg {self.url}")
        with self._lock:
            self._waiting.add(done)
        try:
            thread.submit(work, done)
            with anyio.CancelScope(shield=True):
                await event.wait()
        finally:
            with self._lock:
                self._waiting.discard(done)
        if outcome[0] is not None:
            raise self._fail(outcome[0])

    def _connection(self) -> psycopg.Connection[Any]:
        """The commit connection, reopened while the lease is trusted (on the thread)."""
        import psycopg  # noqa: PLC0415 - the postgresql extra

        while True:
            self.lease.check()
            if not self._conn.closed:
                return self._conn
            try:
                self._conn = _connect(self.options)
                if self.fsync != "always":
                    self._conn.execute("SET synchronous_commit = off")
                log.warning("journal %s: reconnected", self.url)
            except psycopg.OperationalError as exc:
                log.warning("journal %s: reconnecting: %s", self.url, exc)
                time.sleep(0.2)

    def _append(self, seq: int, payload: bytes, mark: int | None) -> None:
        """Insert batch `seq` under this epoch (on the thread); after a lost connection,
        look whether it landed before inserting it again."""
        import psycopg  # noqa: PLC0415 - the postgresql extra

        unsure = False
        while True:
            conn = self._connection()
            try:
                if unsure:
                    row = conn.execute(sql.FIND_BATCH, (payload, seq)).fetchone()
                    if row is not None:
                        if row[0]:
                            return  # the lost commit had landed
                        raise _fenced(self.options, conn, self.epoch)
                    unsure = False
                if seq >= self._part_end:
                    start = max(self._part_end, seq - seq % self.options.partition)
                    sql.create_partition(conn, start, self.options.partition)
                    self._part_end = start + self.options.partition
                fence = (LEASE_NAME, self.epoch)
                if mark is not None:
                    raised = conn.execute(sql.RAISE_ID_MARK, (mark, *fence)).rowcount
                    if raised != 1:
                        raise _fenced(self.options, conn, self.epoch)
                if conn.execute(sql.APPEND, (seq, payload, *fence)).rowcount != 1:
                    raise _fenced(self.options, conn, self.epoch)
                return
            except psycopg.errors.UniqueViolation:
                raise _fenced(self.options, conn, self.epoch) from None
            except psycopg.OperationalError as exc:
                log.warning("journal %s: commit of seq %d interrupted: %s", self.url, seq, exc)
                with contextlib.suppress(Exception):
                    conn.close()
                unsure = True

    # ------------------------------------------------------------------ ChangeLog

    @property
    def id_high_water(self) -> int:
        return self._id_mark

    def guard_ids(self, ids: IdCounter) -> None:
        ids.next_id = max(ids.next_id, self._id_mark)
        self._ids = ids

    def commit(self, changes: list[Change]) -> Awaitable[None]:
        self._check()
        mark: int | None = None
        ids = self._ids
        if ids is not None and ids.next_id > self._id_mark:
            mark = self._id_mark = ids.next_id + ID_BLOCK
        payload = encode_batch(changes)
        self.last_seq = seq = self.last_seq + 1
        self._since_snapshot += len(payload)
        return self._on_thread(lambda: self._append(seq, payload, mark))

    def replay(self) -> Iterator[Change]:
        if self._replayed:
            raise RuntimeError("a PostgresChangeLog replays once, into the runtime that opened it")
        self._replayed = True
        return self._replay()

    def _replay(self) -> Iterator[Change]:
        conn = self._conn
        snap = conn.execute(sql.NEWEST_SNAPSHOT).fetchone()
        covers = 0
        if snap is not None:
            covers = int(snap[0])
            try:
                yield from decode_snapshot(bytes(snap[1]))
            except PayloadError as exc:
                raise self._unreadable(f"the snapshot covering seq {covers}: {exc}") from None
        expected = covers + 1
        with conn.transaction(), conn.cursor(name="actorq_replay") as cur:
            cur.itersize = 2000
            cur.execute(sql.FRAMES_AFTER, (covers,))
            for seq, payload in cur:
                if seq != expected:
                    raise PostgresJournalError(
                        f"journal {self.url}: batch seq {expected} is missing (the next is "
                        f"{seq}); the log cannot be replayed past it"
                    )
                try:
                    batch = decode_batch(bytes(payload))
                except PayloadError as exc:
                    raise self._unreadable(f"batch seq {seq}: {exc}") from None
                yield from batch
                expected += 1

    def _unreadable(self, what: str) -> JournalFormatError:
        return JournalFormatError(f"journal {self.url}: cannot read {what}")

    def wants_snapshot(self) -> bool:
        return self._since_snapshot > max(self.snapshot_bytes, 2 * self._snapshot_size)

    def _write_snapshot(self, changes: list[Change], covers: int) -> None:
        payload = encode_snapshot(changes)
        conn = self._connection()
        with conn.transaction():
            fence = (LEASE_NAME, self.epoch)
            if conn.execute(sql.WRITE_SNAPSHOT, (covers, payload, *fence)).rowcount != 1:
                raise _fenced(self.options, conn, self.epoch)
            conn.execute(sql.PRUNE_SNAPSHOTS)
            oldest = conn.execute("SELECT min(covers_seq) FROM actorq_snapshot").fetchone()
            if oldest is not None and oldest[0] is not None:
                sql.drop_partitions_below(conn, int(oldest[0]))
        self._snapshot_size = len(payload)

    async def snapshot(self, changes: list[Change]) -> None:
        self._check()
        covers = self.last_seq
        if covers == self._snapshot_seq:
            return
        await self._on_thread(lambda: self._write_snapshot(changes, covers))
        self._snapshot_seq = covers
        self._since_snapshot = 0
        log.info("journal %s: snapshot covering seq %d", self.url, covers)

    async def watch(self) -> None:
        """Return when the log closes; raise when the lease is lost (the runtime runs it
        beside its loop, so a leader that cannot renew stops though it commits nothing)."""
        error = await anyio.to_thread.run_sync(self.lease.wait_lost, abandon_on_cancel=True)
        if error is not None:
            raise self._fail(error)

    def close(self) -> None:
        """Release the lease (when still held) and the connections (blocking)."""
        if self._closed:
            return
        self._closed = True
        self.lease.stop()
        if self._thread is not None:
            self._thread.stop(self.options.ttl)
        with contextlib.suppress(Exception):
            if self._failure is None and self.lease.error is None:
                next_id = self._ids.next_id if self._ids is not None else self._id_mark
                if self._conn.closed:
                    self._conn = _connect(self.options)
                self._conn.execute(sql.RELEASE_LEASE, (next_id, LEASE_NAME, self.epoch))
        with contextlib.suppress(Exception):
            self._conn.close()

    async def aclose(self) -> None:
        if not self._closed:
            await anyio.to_thread.run_sync(self.close)

    def __repr__(self) -> str:
        state = "failed" if self._failure else "closed" if self._closed else "open"
        return (
            f"<PostgresChangeLog {self.url!r} epoch={self.epoch} fsync={self.fsync} "
            f"last_seq={self.last_seq} {state}>"
        )


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def open_pg_changelog(
    url: str, *, fsync: str = "always", snapshot_bytes: int = DEFAULT_SNAPSHOT_BYTES
) -> PostgresChangeLog:
    """Connect to `url`, migrate its tables, take the lease (waiting as a candidate when the
    URL says ``actorq_wait``), and return the log a runtime replays and commits to.
    Blocking: a runtime calls it in a worker thread."""
    options = parse_url(url)
    try:
        import psycopg  # noqa: PLC0415 - the postgresql extra
    except ImportError:
        need = "a PostgreSQL journal needs psycopg: pip install 'actorq[postgresql]'"
        raise InvalidOptionError("path", options.shown, need) from None
    try:
        conn = _connect(options)
    except psycopg.OperationalError as exc:
        raise PostgresJournalError(f"journal {options.shown}: cannot connect: {exc}") from None
    try:
        try:
            sql.migrate(conn)
        except sql.SchemaError as exc:
            raise PostgresJournalError(f"journal {options.shown}: {exc}") from None
        holder = _holder()
        deadline = time.monotonic() + options.wait
        while True:
            sent = time.monotonic()
            with conn.transaction():
                conn.execute(sql.ENSURE_LEASE, (LEASE_NAME,))
                row = conn.execute(sql.READ_LEASE, (LEASE_NAME,)).fetchone()
                assert row is not None
                epoch, who, address, live, remaining, id_mark = row
                if not live:
                    took = conn.execute(
                        sql.TAKE_LEASE, (holder, options.address, options.ttl, LEASE_NAME)
                    ).fetchone()
                    assert took is not None
                    epoch = int(took[0])
                    break
            now = time.monotonic()
            if now >= deadline:
                where = f" at {address}" if address else ""
                raise LeaseHeldError(
                    options.shown,
                    f"the lease is held by {who}{where} (epoch {epoch}) for another "
                    f"{remaining:.1f} s; one runtime leads a journal at a time. Add "
                    "?actorq_wait=SECONDS (or forever) to wait as a candidate and take over "
                    "when it lapses (standbys that serve come with actorq.connect, issue 19)",
                )
            time.sleep(max(0.05, min(remaining, 0.25, deadline - now)))
        if fsync != "always":
            conn.execute("SET synchronous_commit = off")
        log.info("journal %s: leading at epoch %d as %s", options.shown, epoch, holder)
        return PostgresChangeLog(
            options,
            conn,
            epoch=epoch,
            sent_at=sent,
            id_mark=int(id_mark),
            fsync=fsync,
            snapshot_bytes=snapshot_bytes,
        )
    except BaseException:
        conn.close()
        raise
