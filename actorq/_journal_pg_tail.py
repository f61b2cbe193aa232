"""A warm standby's copy of a journal in PostgreSQL: `LogTail` follows the log into a core.

Theory of operation
-------------------
A thread of its own, on a connection of its own, LISTENs on the log's channel (the leader
NOTIFYs it in the very statement that appends each batch, `_journal_pg_schema.APPEND`) and,
at each notification and at least every `POLL` seconds, reads the batches after the last one
it applied, by seq (`actorq._journal_pg.batches`), and applies them to its core with
`CoreState.apply_changes`, the replay's own way in. The notification only wakes it: one
lost (a reconnection) delays a read by at most `POLL` and skips nothing, since the reads go
by seq. When the batch after its last one is gone (a snapshot covers it and compaction
dropped its partition), it starts again on a fresh core from the newest snapshot.

The core is the thread's until `stop`: each batch is applied under a lock that `stop`
takes, so once it returns the thread applies nothing more and the caller owns `core` and
`applied` (a standby that takes over reads only the batches after `applied`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Final

from . import _journal_pg_schema as sql
from ._core import CoreState
from ._core.commands import Change, Query
from ._journal_pg import LogCompactedError, batches
from ._journal_pg_lease import Options, _connect, close_quietly

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("actorq.journal")

#: Seconds a tail waits for a notification before it reads the log anyway.
POLL: Final = 1.0
#: Seconds between attempts to reconnect a tail whose connection broke.
RECONNECT: Final = 0.2


class LogTail:
    """Follows the log of the journal `options` names into `core`; see the module docstring.
    `start` runs it on a thread; `catch_up` reads once on a connection the caller gives."""

    def __init__(self, options: Options, *, seed: int = 0) -> None:
        self.options = options
        self._seed = seed
        self.core = CoreState(seed=seed)
        #: The seq of the last batch in `core` (None: nothing read yet, not even a snapshot).
        self.applied: int | None = None
        #: How many times it started again from a snapshot (the log was compacted past it).
        self.restarts = 0
        self._lock = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(
            target=self._run, name=f"actorq-tail {options.shown}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        import psycopg  # noqa: PLC0415 - the postgresql extra

        conn: psycopg.Connection[Any] | None = None
        while not self._stopped:
            try:
                if conn is None or conn.closed:
                    conn = _connect(self.options)
                    conn.execute(f"LISTEN {sql.CHANNEL}")
                self.catch_up(conn)
                for _ in conn.notifies(timeout=POLL, stop_after=1):
                    pass
            except psycopg.Error as exc:
                log.warning("journal %s: the tail reconnects: %s", self.options.shown, exc)
                close_quietly(conn)
                conn = None
                time.sleep(RECONNECT)
        close_quietly(conn)

    def catch_up(self, conn: psycopg.Connection[Any]) -> None:
        """Apply every batch committed after `applied` (blocking; on the tail's thread, or
        by a caller that stopped it)."""
        try:
            self._apply(batches(conn, self.options.shown, self.applied))
        except LogCompactedError as exc:
            log.info("%s: the standby loads the snapshot", exc)
            with self._lock:
                if self._stopped:
                    return
                self.core = CoreState(seed=self._seed)
                self.applied = None
                self.restarts += 1
            self._apply(batches(conn, self.options.shown, None))

    def _apply(self, found: Generator[tuple[int, list[Change]]]) -> None:
        with contextlib.closing(found):  # a stop midway ends the read's transaction
            for seq, changes in found:
                with self._lock:
                    if self._stopped:
                        return
                    self.core.apply_changes(changes)
                    self.applied = seq
                    self._lock.notify_all()

    def peek(self, query: Query, now: float) -> Any:
        """Answer a read-only command from the core, between two batches."""
        with self._lock:
            return self.core.handle(query, now)

    def wait_applied(self, seq: int, timeout: float) -> bool:
        """Block until the core holds batch `seq` (or `timeout` seconds pass); whether it does."""
        with self._lock:
            return self._lock.wait_for(lambda: (self.applied or 0) >= seq, timeout)

    def stop(self) -> None:
        """Apply nothing more (blocking: waits for a batch being applied); the thread ends
        after its current read or wait."""
        with self._lock:
            self._stopped = True

    def __repr__(self) -> str:
        return f"<LogTail {self.options.shown!r} applied={self.applied}>"
