"""The seam between the scheduler and durability: where each batch's changes are committed.

The scheduler hands every batch of change records to `ChangeLog.commit` and replies to no
caller, dispatches no job and publishes no event of that batch before `commit` returns. The
in-memory `MemoryChangeLog` keeps the batches so a test (or a restart within one process)
can replay them; `NullChangeLog` keeps nothing, for a runtime with no durability at all.

A log may also have ``commit_nowait(changes)``, a `commit` that never waits. Both of ours
do: then a request that arrives while the scheduler is idle runs inline, in the caller's
task, with no mailbox round trip (see `Scheduler.idle`). A subclass that overrides `commit`
alone goes back to the awaited path, so its `commit` still sees every batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

Change = tuple[Any, ...]


class ChangeLog(Protocol):
    #: Whether the scheduler should produce change records at all.
    records: bool

    async def commit(self, changes: list[Change]) -> None:
        """Make `changes` durable under this log's policy; raise if that failed."""
        ...

    def replay(self) -> Iterator[Change]:
        """Changes that rebuild the committed state: the snapshot's, then the tail's."""
        ...

    def wants_snapshot(self) -> bool:
        """Whether the log has grown enough since the last snapshot to take one now."""
        ...

    async def snapshot(self, changes: list[Change]) -> None:
        """Replace the history with `changes`, which rebuild the current state."""
        ...

    async def aclose(self) -> None: ...


class NullChangeLog:
    records = False

    async def commit(self, changes: list[Change]) -> None:
        return None

    def commit_nowait(self, changes: list[Change]) -> None:
        return None

    def replay(self) -> Iterator[Change]:
        return iter(())

    def wants_snapshot(self) -> bool:
        return False

    async def snapshot(self, changes: list[Change]) -> None:
        return None

    async def aclose(self) -> None:
        return None


class MemoryChangeLog:
    """Keeps every committed batch in memory; survives the runtime, not the process."""

    records = True

    def __init__(self) -> None:
        self.batches: list[list[Change]] = []

    async def commit(self, changes: list[Change]) -> None:
        self.batches.append(changes)

    def commit_nowait(self, changes: list[Change]) -> None:
        """`commit` without waiting: nothing here is slow, so requests may run inline."""
        self.batches.append(changes)

    def replay(self) -> Iterator[Change]:
        for batch in self.batches:
            yield from batch

    def wants_snapshot(self) -> bool:
        return False

    async def snapshot(self, changes: list[Change]) -> None:
        self.batches = [changes]

    async def aclose(self) -> None:
        return None

    def __len__(self) -> int:
        return sum(len(batch) for batch in self.batches)
