"""The journals a `Simulation` runs on, each telling the simulation what it committed.

`SimFileJournal` is the file journal over a `persistence.SimFileSystem`, committing on the
event loop. `SimDatabaseJournal` leads a `SimDatabase`, the journal in PostgreSQL's tables in
memory, with that journal's rules (actorq._journal_fence: the fence, the lookup of a commit
whose connection was lost, the id mark): pure and deterministic, no database. Every journal
tells its `Recorder` (the simulation) each batch it committed, and each batch whose commit
failed with its outcome in doubt, so the simulation keeps a *shadow* state: what a replay of
the durable journal builds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

import attrs

import persistence
from persistence import FsyncPolicy

from . import _journal_fence as fence
from ._core.commands import Change
from ._journal import IdCounter, JournalChangeLog, JournalFailedError, JournalFormatError
from ._journal_codec import decode_batch, decode_snapshot, encode_batch, encode_snapshot
from ._journal_pg_lease import FencedError

__all__ = [
    "Recorder",
    "SimConnectionLost",
    "SimDatabase",
    "SimDatabaseError",
    "SimDatabaseJournal",
    "SimFileJournal",
]


@attrs.frozen
class Recorder:
    """What a simulated journal tells the simulation: the batches it committed (a replay
    applies them), the batch whose failed commit left it in doubt (a replay may apply it or
    not), and operations for the history."""

    committed: Callable[[list[Change]], None]
    in_doubt: Callable[[list[Change]], None]
    note: Callable[..., None]


class SimFileJournal:
    """A `ChangeLog` over a `JournalChangeLog`: commits inline, feeds the shadow state.

    Its commit does not wait (the file system is memory, and a sync is a copy), so calls run
    inline whenever the engine is idle: the road a default `Runtime()` takes.
    """

    records = True
    waits = False

    def __init__(self, inner: JournalChangeLog, sim: Recorder) -> None:
        self.inner = inner
        self._sim = sim
        self.replayed: list[Change] = list(inner.replay())
        self.abandoned = False

    def _failed(self, exc: BaseException) -> BaseException:
        return self.inner._fail(exc)

    @property
    def id_high_water(self) -> int:
        return self.inner.id_high_water

    def guard_ids(self, ids: IdCounter) -> None:
        self.inner.guard_ids(ids)

    def commit(self, changes: list[Change]) -> None:
        inner = self.inner
        inner._check()
        inner.keep_ids_ahead()
        payload = encode_batch(changes)
        try:
            inner.journal.append(payload)
            if inner.policy is FsyncPolicy.ALWAYS:
                inner.journal.sync()
        except (persistence.JournalError, OSError) as exc:
            # A failed write or fsync leaves the batch in doubt: its bytes may or may not be
            # on disk. Its callers got an error; a replay may show it applied, or not.
            self._sim.in_doubt(changes)
            raise self._failed(exc) from exc
        self._sim.committed(changes)

    def replay(self) -> Iterator[Change]:
        return iter(self.replayed)

    def wants_snapshot(self) -> bool:
        return self.inner.wants_snapshot()

    async def snapshot(self, changes: list[Change]) -> None:
        inner = self.inner
        inner._check()
        covers = inner.journal.last_seq
        if covers == inner.journal.snapshot_seq:
            return
        try:
            inner._write_snapshot(changes, covers)
        except (persistence.JournalError, OSError) as exc:
            raise self._failed(exc) from exc
        self._sim.note("snapshot", detail=f"covers seq {covers}")

    async def aclose(self) -> None:
        if self.abandoned or self.inner.failed:
            return  # a dead process closes nothing: no final fsync
        self.inner.close()


class SimDatabaseError(Exception):
    """A commit the simulated database refused (an injected fault): its transaction rolled
    back, nothing of it was written."""


class SimConnectionLost(Exception):
    """The simulated connection dropped under a commit (an injected fault)."""


@attrs.define
class SimDatabase:
    """The tables of the journal in PostgreSQL, in memory, for every life of a simulation
    (a database outlives the processes that lead it): the lease row's epoch and id mark, the
    log by ``seq``, the two newest snapshots. Each method is one transaction: it writes all of
    its rows or none. ``faults`` lists what the next commits meet, in order: ``"error"``
    (refused, nothing written), ``"lost-landed"`` (committed, the reply lost with the
    connection), ``"lost-absent"`` (the connection lost before it reached the server)."""

    epoch: int = 0
    id_high_water: int = 0
    log: dict[int, bytes] = attrs.Factory(dict)
    #: (covers_seq, payload), oldest first.
    snapshots: list[tuple[int, bytes]] = attrs.Factory(list)
    faults: list[str] = attrs.Factory(list)

    def take_lease(self) -> tuple[int, int]:
        """Take the lease (after its holder let it lapse): the new epoch and the id mark."""
        self.epoch += 1
        return self.epoch, self.id_high_water

    def last_seq(self) -> int:
        return max(self.log, default=self.snapshots[-1][0] if self.snapshots else 0)

    def append(self, epoch: int, seq: int, payload: bytes, mark: int | None) -> bool:
        """Insert batch `seq` (and raise the id mark) if the fence lets `epoch` write."""
        fault = self.faults.pop(0) if self.faults else None
        if fault == "error":
            raise SimDatabaseError(f"injected: the database refused the commit of seq {seq}")
        if fault == "lost-absent":
            raise SimConnectionLost(f"injected: connection lost before seq {seq} was sent")
        if not fence.accepts_write(self.epoch, epoch, seq_taken=seq in self.log):
            return False
        if mark is not None:
            self.id_high_water = mark
        self.log[seq] = payload
        if fault == "lost-landed":
            raise SimConnectionLost(f"injected: connection lost after seq {seq} committed")
        return True

    def write_snapshot(self, epoch: int, covers: int, payload: bytes) -> bool:
        """Insert a snapshot covering `covers` if the fence lets `epoch` write; keep the two
        newest and drop the log rows the older of them covers (the partitions' drop)."""
        if not fence.accepts_write(self.epoch, epoch):
            return False
        self.snapshots = [*self.snapshots, (covers, payload)][-2:]
        oldest = self.snapshots[0][0]
        self.log = {seq: row for seq, row in self.log.items() if seq > oldest}
        return True

    def replay(self) -> Iterator[Change]:
        """The newest snapshot's changes, then every batch after it, in ``seq`` order."""
        covers = 0
        if self.snapshots:
            covers, payload = self.snapshots[-1]
            yield from decode_snapshot(payload)
        for expected, seq in enumerate(sorted(s for s in self.log if s > covers), covers + 1):
            if seq != expected:
                raise JournalFormatError(f"simulated database: batch seq {expected} is missing")
            yield from decode_batch(self.log[seq])


class SimDatabaseJournal:
    """A `ChangeLog` on a `SimDatabase` with the journal in PostgreSQL's semantics: it takes
    the lease as it opens (epoch + 1); each commit is one transaction fenced by that epoch,
    awaited before the batch's replies (`waits`); a refused commit fails the journal and the
    runtime stops loudly; a commit whose connection was lost is looked up by its ``seq``
    (`after_lost_commit`) and written again only if it never landed."""

    records = True
    waits = True
    leased = True

    def __init__(self, db: SimDatabase, sim: Recorder, *, snapshot_bytes: int) -> None:
        self.db = db
        self._sim = sim
        self.snapshot_bytes = snapshot_bytes
        self.epoch, self._id_mark = db.take_lease()
        self.replayed: list[Change] = list(db.replay())
        self.last_seq = db.last_seq()
        self._snapshot_seq = db.snapshots[-1][0] if db.snapshots else 0
        self._snapshot_size = len(db.snapshots[-1][1]) if db.snapshots else 0
        self._since_snapshot = 0
        self._ids: IdCounter | None = None
        self.failure: BaseException | None = None
        self.abandoned = False

    @property
    def id_high_water(self) -> int:
        return self._id_mark

    def guard_ids(self, ids: IdCounter) -> None:
        ids.next_id = max(ids.next_id, self._id_mark)
        self._ids = ids

    def _fail(self, exc: BaseException) -> BaseException:
        if self.failure is None:
            self.failure = exc
        return self.failure

    def _fenced(self) -> FencedError:
        return FencedError(
            f"simulated database: epoch {self.db.epoch} holds the lease; this runtime's "
            f"epoch {self.epoch} is fenced off and it stops"
        )

    def _check(self) -> None:
        if self.failure is not None:
            raise self.failure

    def commit(self, changes: list[Change]) -> Awaitable[None]:
        self._check()
        ids = self._ids
        mark = fence.id_mark_to_raise(None if ids is None else ids.next_id, self._id_mark)
        if mark is not None:
            self._id_mark = mark
        payload = encode_batch(changes)
        self.last_seq = seq = self.last_seq + 1
        self._since_snapshot += len(payload)
        return self._append(seq, payload, mark, changes)

    async def _append(
        self, seq: int, payload: bytes, mark: int | None, changes: list[Change]
    ) -> None:
        unsure = False
        while True:
            try:
                if unsure:
                    found = fence.after_lost_commit(self.db.log.get(seq), payload)
                    self._sim.note("reconnect", detail=f"seq {seq} {found.value}")
                    if found is fence.LostCommit.LANDED:
                        break
                    if found is fence.LostCommit.FENCED:
                        raise self._fail(self._fenced())
                    unsure = False
                if not self.db.append(self.epoch, seq, payload, mark):
                    raise self._fail(self._fenced())
                break
            except SimConnectionLost:
                unsure = True
            except SimDatabaseError as exc:
                raise self._fail(JournalFailedError(f"simulated database: {exc}")) from exc
        self._sim.committed(changes)

    def replay(self) -> Iterator[Change]:
        return iter(self.replayed)

    def wants_snapshot(self) -> bool:
        return self._since_snapshot > max(self.snapshot_bytes, 2 * self._snapshot_size)

    async def snapshot(self, changes: list[Change]) -> None:
        self._check()
        covers = self.last_seq
        if covers == self._snapshot_seq:
            return
        payload = encode_snapshot(changes)
        if not self.db.write_snapshot(self.epoch, covers, payload):
            raise self._fail(self._fenced())
        self._snapshot_seq, self._snapshot_size, self._since_snapshot = covers, len(payload), 0
        self._sim.note("snapshot", detail=f"covers seq {covers}")

    async def aclose(self) -> None:
        return None  # the lease lapses; the next life takes it with the next epoch
