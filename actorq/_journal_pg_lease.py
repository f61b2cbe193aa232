"""The lease of the journal in PostgreSQL, the URL's options and the connections.

`parse_url` splits actorq's ``actorq_*`` parameters off a ``postgresql://`` URL; `_connect`
opens a connection with the timeouts and keepalives the lease needs; `_Lease` renews the
lease every ttl / 3 on its own thread and connection and knows until when the leader may
trust it (actorq/_journal_pg.py's docstring tells the whole story); the errors are the ones
a runtime on such a journal raises.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from . import _journal_pg_schema as sql
from ._exceptions import InvalidOptionError
from ._journal import JournalError, JournalFailedError, JournalLockedError

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("actorq.journal")

#: The lease row's name (one journal per database, or per schema through ``search_path``).
LEASE_NAME = "journal"
DEFAULT_TTL = 10.0
DEFAULT_PARTITION = 100_000
#: The share of the ttl after a renewal was sent within which the leader trusts its lease.
TRUST = 0.8
_URL_PREFIXES = ("postgresql://", "postgres://")
_SWITCH = {"on": True, "off": False, "true": True, "false": False, "1": True, "0": False}


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
    #: Serve as a warm standby while another runtime leads (`actorq._standby`).
    standby: bool = False


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
        elif name == "standby":
            if value not in _SWITCH:
                raise InvalidOptionError(key, value, "must be on or off")
            ours[name] = _SWITCH[value]
        else:
            raise InvalidOptionError(
                key,
                value,
                "is not an option (actorq_ttl, actorq_wait, actorq_partition, "
                "actorq_address, actorq_standby)",
            )
    if ours.get("standby") and "wait" in ours:
        raise InvalidOptionError(
            "actorq_wait",
            ours["wait"],
            "a standby (actorq_standby=on) waits for the lease as long as it runs: leave "
            "actorq_wait out",
        )
    conninfo = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(keep)))
    return Options(conninfo, sql.shown(conninfo), **ours)


def _number(key: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise InvalidOptionError(key, value, "must be a number of seconds") from None


def _connect(
    options: Options, *, autocommit: bool = True, statement_timeout: float | None = None
) -> psycopg.Connection[Any]:
    """A connection with timeouts and keepalives within the lease's ttl; with
    `statement_timeout` (seconds) the server cancels any statement running longer (set with
    SET, so the URL's own ``options`` stay as given)."""
    import psycopg  # noqa: PLC0415 - the postgresql extra

    timeout = max(1, math.ceil(options.ttl / 3))
    conn = psycopg.connect(
        options.conninfo,
        autocommit=autocommit,
        connect_timeout=timeout,
        keepalives=1,
        keepalives_idle=timeout,
        keepalives_interval=1,
        keepalives_count=3,
        application_name="actorq",
    )
    if statement_timeout is not None:
        ms = max(1, int(statement_timeout * 1000))
        conn.execute(f"SET statement_timeout = {ms}")
    return conn


def close_quietly(conn: psycopg.Connection[Any] | None) -> None:
    """Close `conn` (if any), whatever state it is in: a broken connection's close may
    raise too, and there is nothing left to do with it."""
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()


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
                    # A renewal stuck on a lock gives up in time to be tried again.
                    conn = _connect(self.options, statement_timeout=ttl / 3)
                renewed = conn.execute(sql.RENEW_LEASE, (ttl, LEASE_NAME, self.epoch)).rowcount
            except psycopg.Error as exc:
                log.warning("journal %s: lease renewal failed: %s", self.options.shown, exc)
                close_quietly(conn)
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
        close_quietly(conn)

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
