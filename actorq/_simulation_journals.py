"""The journals a `Simulation` runs on, each feeding the simulation what it committed.

`SimFileJournal` is the file journal over a `persistence.SimFileSystem`, committing on the
event loop. Every journal tells its `Recorder` (the simulation) each batch it committed, and
each batch whose commit failed with its outcome in doubt, so the simulation keeps a *shadow*
state: what a replay of the durable journal builds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import attrs

import persistence
from persistence import FsyncPolicy

from ._core.commands import Change
from ._journal import IdCounter, JournalChangeLog
from ._journal_codec import encode_batch

__all__ = ["Recorder", "SimFileJournal"]


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
