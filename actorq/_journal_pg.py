"""The journal in PostgreSQL: `Runtime("postgresql://user@host:port/db")`.

Theory of operation
-------------------
`open_pg_changelog` (called in a worker thread as the runtime starts) connects, migrates the
tables (`actorq._journal_pg_schema`), and takes the lease: the row ``actorq_lease`` names
the leader and, by the database's clock, until when it leads; taking it adds one to its
``epoch``. A live lease held by another process is a `LeaseHeldError`, unless the URL asks
to wait as a candidate (``?actorq_wait=SECONDS``): then it polls until the holder releases it
or lets it expire, and takes over. Other processes reach the leader with
``actorq.connect(url)``, through the address it advertises in the lease row.

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
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from . import _journal_pg_schema as sql
from ._core.commands import Change
from ._exceptions import InvalidOptionError
from ._journal import (
    DEFAULT_SNAPSHOT_BYTES,
    IdCounter,
    JournalError,
    JournalFailedError,
    JournalFormatError,
)
from ._journal_codec import (
    PayloadError,
    decode_batch,
    decode_snapshot,
    encode_batch,
    encode_snapshot,
)
from ._journal_fence import LostCommit, after_lost_commit, id_mark_to_raise
from ._journal_pg_lease import (
    LEASE_NAME,
    FencedError,
    LeaseHeldError,
    LeaseLostError,
    Options,
    PostgresJournalError,
    _connect,
    _fenced,
    _Lease,
    close_quietly,
    is_postgres_url,
    parse_url,
)
from .clock import DeadlineScope, SystemClock

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "FencedError",
    "LeaseHeldError",
    "LeaseLostError",
    "LogCompactedError",
    "PostgresChangeLog",
    "PostgresJournalError",
    "batches",
    "is_postgres_url",
    "leader_address",
    "open_pg_changelog",
]

log = logging.getLogger("actorq.journal")


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

    def stop(self, timeout: float) -> bool:
        """Stop after the work queued; whether it did within `timeout` seconds."""
        self._queue.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()


class PostgresChangeLog:
    """A `ChangeLog` that commits every batch to PostgreSQL; see the module docstring."""

    records = True
    waits = True
    #: Several processes lead it in turn: local processors hold timed locks too.
    leased = True

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
        clock_skew: float = 0.0,
    ) -> None:
        self.options = options
        self.url = options.shown
        self.fsync = fsync
        self.epoch = epoch
        self.snapshot_bytes = snapshot_bytes
        #: This host's clock minus the database's, measured as the lease was taken.
        self.clock_skew = clock_skew
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
        #: The seq up to which the core `replay` rebuilds already holds the log (a warm
        #: standby's, `actorq._standby`): the replay reads only the batches after it.
        self.resume_after: int | None = None
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
                    row = conn.execute(sql.FIND_BATCH, (seq,)).fetchone()
                    found = after_lost_commit(None if row is None else bytes(row[0]), payload)
                    if found is LostCommit.LANDED:
                        return
                    if found is LostCommit.FENCED:
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
                close_quietly(conn)
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
        ids = self._ids
        mark = id_mark_to_raise(None if ids is None else ids.next_id, self._id_mark)
        if mark is not None:
            self._id_mark = mark
        payload = encode_batch(changes)
        self.last_seq = seq = self.last_seq + 1
        self._since_snapshot += len(payload)
        return self._on_thread(lambda: self._append(seq, payload, mark))

    def replay(self) -> Iterator[Change]:
        if self._replayed:
            raise RuntimeError("a PostgresChangeLog replays once, into the runtime that opened it")
        self._replayed = True
        found = batches(self._conn, self.url, self.resume_after)
        return (change for _seq, batch in found for change in batch)

    def rewind(self) -> None:
        """Let `replay` run once more, from the snapshot (a standby whose tail the log was
        compacted past: `LogCompactedError` came before any change)."""
        self._replayed = False
        self.resume_after = None

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

    async def advertise(self, address: str) -> None:
        """Put `address` (where clients reach this leader) in the lease row, unless the URL
        named one (``actorq_address``)."""
        if self.options.address:
            return

        def write() -> None:
            conn = self._connection()
            if conn.execute(sql.ADVERTISE, (address, LEASE_NAME, self.epoch)).rowcount != 1:
                raise _fenced(self.options, conn, self.epoch)

        await self._on_thread(write)

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
        # A thread stuck in a statement still holds the connection: leave the lease to lapse.
        idle = self._thread is None or self._thread.stop(self.options.ttl)
        with contextlib.suppress(Exception):
            if idle and self._failure is None and self.lease.error is None:
                next_id = self._ids.next_id if self._ids is not None else self._id_mark
                if self._conn.closed:
                    self._conn = _connect(self.options)
                self._conn.execute(sql.RELEASE_LEASE, (next_id, LEASE_NAME, self.epoch))
        close_quietly(self._conn)

    async def aclose(self) -> None:
        if not self._closed:
            await anyio.to_thread.run_sync(self.close)

    def __repr__(self) -> str:
        state = "failed" if self._failure else "closed" if self._closed else "open"
        return (
            f"<PostgresChangeLog {self.url!r} epoch={self.epoch} fsync={self.fsync} "
            f"last_seq={self.last_seq} {state}>"
        )


class LogCompactedError(PostgresJournalError):
    """The batch after the one a reader holds is gone: a snapshot covers it and its
    partition was dropped. The reader starts again from the snapshot."""


def batches(
    conn: psycopg.Connection[Any], shown: str, after: int | None
) -> Generator[tuple[int, list[Change]]]:
    """The log as ``(seq, changes)`` in order: with `after` None the newest snapshot (as the
    seq it covers) and every batch after it; else only the batches after seq `after`
    (`LogCompactedError` when the next one is gone). A gap in ``seq`` is an error naming
    the missing batch."""
    covers = after
    if covers is None:
        covers = 0
        snap = conn.execute(sql.NEWEST_SNAPSHOT).fetchone()
        if snap is not None:
            covers = int(snap[0])
            try:
                yield covers, list(decode_snapshot(bytes(snap[1])))
            except PayloadError as exc:
                raise _unreadable(shown, f"the snapshot covering seq {covers}: {exc}") from None
    import psycopg  # noqa: PLC0415 - the postgresql extra

    expected = covers + 1
    cur = conn.cursor(name="actorq_replay")
    try:
        with conn.transaction(), cur:
            cur.itersize = 2000
            cur.execute(sql.FRAMES_AFTER, (covers,))
            for seq, payload in cur:
                if seq != expected:
                    if after is not None and expected == after + 1:
                        raise LogCompactedError(
                            f"journal {shown}: batch seq {expected} was compacted away"
                        )
                    raise PostgresJournalError(
                        f"journal {shown}: batch seq {expected} is missing (the next is "
                        f"{seq}); the log cannot be replayed past it"
                    )
                try:
                    batch = decode_batch(bytes(payload))
                except PayloadError as exc:
                    raise _unreadable(shown, f"batch seq {seq}: {exc}") from None
                yield seq, batch
                expected += 1
    except psycopg.OperationalError:
        # The connection broke under the read: closed, the cursor closes with no round
        # trip (else it stays open, and warns when it is collected).
        conn.close()
        cur.close()
        raise
    if after is not None and expected == after + 1:  # nothing after it: compacted away?
        row = conn.execute(sql.NEWEST_SNAPSHOT_SEQ).fetchone()
        if row is not None and row[0] is not None and int(row[0]) > after:
            raise LogCompactedError(f"journal {shown}: a snapshot covers seq {after + 1}")


def _unreadable(shown: str, what: str) -> JournalFormatError:
    return JournalFormatError(f"journal {shown}: cannot read {what}")


#: How far this host's clock may stray from the database's before a leader warns.
CLOCK_SKEW_WARNING = 1.0


def _check_clock(conn: psycopg.Connection[Any], shown: str) -> float:
    """This host's clock minus the database's (seconds, the round trip's midpoint), which a
    runtime on the journal subtracts from its clock (`DatabaseClock`); a large one is
    logged."""
    before = time.time()
    row = conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
    after = time.time()
    skew = 0.0 if row is None else (before + after) / 2 - float(row[0])
    if abs(skew) > CLOCK_SKEW_WARNING:
        log.warning(
            "journal %s: this host's clock is %+.1f s off the database's; the runtime keeps "
            "the database's time (`DatabaseClock`), but the host's other programs do not: "
            "synchronise the clocks (NTP)",
            shown,
            skew,
        )
    return skew


class DatabaseClock(SystemClock):
    """The wall clock moved onto the database's, as measured when the lease was taken: a
    runtime on the journal in PostgreSQL stamps and times every job with it, so the deadlines
    one leader journals mean the same instant to the next, whatever their hosts' clocks."""

    def __init__(self, skew: float) -> None:
        self.skew = skew

    def now(self) -> float:
        return time.time() - self.skew

    def deadline(self, at: float) -> DeadlineScope:
        return anyio.move_on_after(max(0.0, at - self.now()))

    async def sleep_until(self, at: float) -> None:
        await anyio.sleep(max(0.0, at - self.now()))

    def __repr__(self) -> str:
        return f"DatabaseClock(skew={self.skew:+.6f})"


def leader_address(url: str) -> str | None:
    """The address the live leader of the journal at `url` advertised (``HOST:PORT`` or
    ``unix:PATH``, what `actorq.connect` takes after ``actorq://``); None when nobody leads
    or the leader does not listen. Blocking."""
    options = parse_url(url)
    with _connect(options) as conn:
        if sql.schema_version(conn) is None:
            return None
        row = conn.execute(sql.LEADER, (LEASE_NAME,)).fetchone()
    return None if row is None or not row[0] else str(row[0])


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class CandidacyWithdrawn(Exception):
    """`open_pg_changelog`'s ``withdraw`` was set while it waited for the lease."""


def open_pg_changelog(
    url: str,
    *,
    fsync: str = "always",
    snapshot_bytes: int = DEFAULT_SNAPSHOT_BYTES,
    withdraw: threading.Event | None = None,
    wait: float | None = None,
) -> PostgresChangeLog:
    """Connect to `url`, migrate its tables, take the lease (waiting as a candidate when the
    URL says ``actorq_wait``, or for `wait` seconds when given), and return the log a
    runtime replays and commits to. Blocking: a runtime calls it in a worker thread, and
    sets `withdraw` to stop a wait for the lease (`CandidacyWithdrawn`)."""
    withdraw = withdraw if withdraw is not None else threading.Event()
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
        deadline = time.monotonic() + (options.wait if wait is None else wait)
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
                    "when it lapses, or reach the leader with actorq.connect(URL)",
                )
            if withdraw.wait(max(0.05, min(remaining, 0.25, deadline - now))):
                raise CandidacyWithdrawn(options.shown)
        if fsync != "always":
            conn.execute("SET synchronous_commit = off")
        log.info("journal %s: leading at epoch %d as %s", options.shown, epoch, holder)
        skew = _check_clock(conn, options.shown)
        return PostgresChangeLog(
            options,
            conn,
            epoch=epoch,
            sent_at=sent,
            id_mark=int(id_mark),
            fsync=fsync,
            snapshot_bytes=snapshot_bytes,
            clock_skew=skew,
        )
    except BaseException:
        conn.close()
        raise
