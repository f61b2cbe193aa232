"""The tables of the journal in PostgreSQL, their migration, and the statements on them.

Every statement the journal in PostgreSQL runs is here, as data beside the few functions
that run them; `actorq._journal_pg` decides when. The tables (docs/postgresql.md draws them):

* ``actorq_schema (version)``: one row, the schema version; `migrate` brings an older
  database up to `SCHEMA_VERSION` under an advisory lock, and refuses a newer one.
* ``actorq_lease (name, epoch, holder, address, expires_at, id_high_water)``: one row per
  journal name. The leader holds it while ``expires_at`` (set with the database's clock,
  ``now()``) lies ahead; each takeover adds one to ``epoch``, and every write of a leader
  names the epoch it took, so a leader that lost the lease cannot write any more.
* ``actorq_log (seq, epoch, payload)``: one row per committed batch (the journal codec's
  bytes, as in the file journal), partitioned by ranges of ``seq``: compaction drops the
  partitions a snapshot covers instead of deleting rows.
* ``actorq_snapshot (covers_seq, epoch, payload)``: the snapshots; the two newest are kept.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import psycopg

SCHEMA_VERSION: Final = 1

#: Serialises migrations of one database between concurrent openers.
_MIGRATION_LOCK: Final = 0x61637471  # "actq"

_V1: Final = (
    """CREATE TABLE IF NOT EXISTS actorq_lease (
        name text PRIMARY KEY,
        epoch bigint NOT NULL,
        holder text NOT NULL,
        address text NOT NULL,
        expires_at timestamptz NOT NULL,
        id_high_water bigint NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS actorq_log (
        seq bigint NOT NULL PRIMARY KEY,
        epoch bigint NOT NULL,
        payload bytea NOT NULL
    ) PARTITION BY RANGE (seq)""",
    """CREATE TABLE IF NOT EXISTS actorq_snapshot (
        covers_seq bigint NOT NULL PRIMARY KEY,
        epoch bigint NOT NULL,
        payload bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
)

#: Each version's statements, applied in order to reach it.
MIGRATIONS: Final = {1: _V1}


class SchemaError(Exception):
    """The database holds a schema this actorq cannot use."""


def migrate(conn: psycopg.Connection[Any]) -> int:
    """Create or upgrade the tables (one transaction, under an advisory lock); return the
    version. Raises `SchemaError` for a database written by a newer actorq."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS actorq_schema ("
            "version integer NOT NULL, migrated_at timestamptz NOT NULL DEFAULT now())"
        )
        row = conn.execute("SELECT max(version) FROM actorq_schema").fetchone()
        current = 0 if row is None or row[0] is None else int(row[0])
        if current > SCHEMA_VERSION:
            raise SchemaError(
                f"the actorq tables are at schema version {current}, newer than this "
                f"actorq's {SCHEMA_VERSION}: upgrade actorq"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute("INSERT INTO actorq_schema (version) VALUES (%s)", (version,))
        return SCHEMA_VERSION


def schema_version(conn: psycopg.Connection[Any]) -> int | None:
    """The version of the tables, None when the database has none (read only)."""
    row = conn.execute("SELECT to_regclass('actorq_schema') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return None
    got = conn.execute("SELECT max(version) FROM actorq_schema").fetchone()
    return None if got is None or got[0] is None else int(got[0])


# ---------------------------------------------------------------------------- the lease

ENSURE_LEASE: Final = (
    "INSERT INTO actorq_lease (name, epoch, holder, address, expires_at, id_high_water) "
    "VALUES (%s, 0, '', '', '-infinity', 0) ON CONFLICT (name) DO NOTHING"
)
#: The lease row, locked, with whether it is live by the database's clock.
READ_LEASE: Final = (
    "SELECT epoch, holder, address, expires_at > now(), "
    "CASE WHEN expires_at > now() THEN extract(epoch FROM expires_at - now())::float8 "
    "ELSE 0.0 END, id_high_water "
    "FROM actorq_lease WHERE name = %s FOR UPDATE"
)
TAKE_LEASE: Final = (
    "UPDATE actorq_lease SET epoch = epoch + 1, holder = %s, address = %s, "
    "expires_at = now() + make_interval(secs => %s) WHERE name = %s RETURNING epoch"
)
RENEW_LEASE: Final = (
    "UPDATE actorq_lease SET expires_at = now() + make_interval(secs => %s) "
    "WHERE name = %s AND epoch = %s"
)
RELEASE_LEASE: Final = (
    "UPDATE actorq_lease SET expires_at = '-infinity', id_high_water = %s "
    "WHERE name = %s AND epoch = %s"
)
ADVERTISE: Final = "UPDATE actorq_lease SET address = %s WHERE name = %s AND epoch = %s"
#: The live leader's advertised address (no row: nobody leads now).
LEADER: Final = "SELECT address, epoch FROM actorq_lease WHERE name = %s AND expires_at > now()"
CURRENT_EPOCH: Final = "SELECT epoch, holder FROM actorq_lease WHERE name = %s"


# ---------------------------------------------------------------------------- the log

#: The channel the leader NOTIFYs after each batch (`APPEND`) and standbys LISTEN on.
CHANNEL: Final = "actorq_log"

#: One batch: inserted only while the lease row still names this leader's epoch. The row
#: lock (FOR SHARE) orders the insert and a takeover (which updates that row): a takeover
#: that commits first leaves no row to select, so nothing is inserted; one that comes
#: after waits for this insert, and its replay reads it.
#: The same statement NOTIFYs `CHANNEL` (delivered on commit) when it inserted: a wake-up
#: for warm standbys, which then read the log by seq (the notification carries nothing).
APPEND: Final = (
    "WITH appended AS (INSERT INTO actorq_log (seq, epoch, payload) SELECT %s, epoch, %s "
    "FROM actorq_lease WHERE name = %s AND epoch = %s FOR SHARE RETURNING seq) "
    f"SELECT pg_notify('{CHANNEL}', '') FROM appended"
)
RAISE_ID_MARK: Final = "UPDATE actorq_lease SET id_high_water = %s WHERE name = %s AND epoch = %s"
#: The batch at a seq, read when a commit's outcome was lost with the connection
#: (`actorq._journal_fence.after_lost_commit` decides).
FIND_BATCH: Final = "SELECT payload FROM actorq_log WHERE seq = %s"
LAST_SEQ: Final = "SELECT coalesce(max(seq), 0) FROM actorq_log"
FRAMES_AFTER: Final = "SELECT seq, payload FROM actorq_log WHERE seq > %s ORDER BY seq"
NEWEST_SNAPSHOT: Final = (
    "SELECT covers_seq, payload FROM actorq_snapshot ORDER BY covers_seq DESC LIMIT 1"
)
NEWEST_SNAPSHOT_SEQ: Final = "SELECT max(covers_seq) FROM actorq_snapshot"
WRITE_SNAPSHOT: Final = (
    "INSERT INTO actorq_snapshot (covers_seq, epoch, payload) SELECT %s, epoch, %s "
    "FROM actorq_lease WHERE name = %s AND epoch = %s FOR SHARE"
)
#: Keep the two newest snapshots (the previous generation, as the file journal does).
PRUNE_SNAPSHOTS: Final = (
    "DELETE FROM actorq_snapshot WHERE covers_seq < (SELECT min(covers_seq) FROM "
    "(SELECT covers_seq FROM actorq_snapshot ORDER BY covers_seq DESC LIMIT 2) AS kept)"
)
#: The log's partitions with their bounds.
PARTITIONS: Final = (
    "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
    "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'actorq_log'::regclass"
)

_BOUNDS = re.compile(r"FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")


def partition_name(start: int) -> str:
    return f"actorq_log_{start}"


def create_partition(conn: psycopg.Connection[Any], start: int, size: int) -> None:
    """The partition holding seqs ``start`` to ``start + size - 1`` (if it is missing)."""
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {partition_name(start)} PARTITION OF actorq_log "
        f"FOR VALUES FROM ({int(start)}) TO ({int(start + size)})"
    )


def partitions(conn: psycopg.Connection[Any]) -> list[tuple[str, int, int]]:
    """(name, first seq, last seq + 1) of each partition of the log, in seq order."""
    found: list[tuple[str, int, int]] = []
    for name, bound in conn.execute(PARTITIONS).fetchall():
        match = _BOUNDS.search(str(bound))
        if match is not None:
            found.append((str(name), int(match.group(1)), int(match.group(2))))
    found.sort(key=lambda p: p[1])
    return found


def drop_partitions_below(conn: psycopg.Connection[Any], seq: int) -> int:
    """Drop every partition whose seqs all lie at or below `seq`; return how many."""
    dropped = 0
    for name, _start, end in partitions(conn):
        if end - 1 <= seq:
            conn.execute(f"DROP TABLE {name}")
            dropped += 1
    return dropped


def shown(url: str) -> str:
    """`url` with any password hidden, for messages and logs."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
