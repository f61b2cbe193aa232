"""The seam between the engine and durability: where each batch's changes are committed.

The engine hands every batch of change records to `ChangeLog.commit` and replies to no
caller, dispatches no job and publishes no event of that batch before the commit is done.
A log declares, once and for all, whether its commit *waits* (`waits`):

* ``waits = False``: `commit` writes the batch and returns None; the batch is as durable as
  the log promises when it returns. Calls may then run inline in their caller's task
  whenever the engine is idle (see `Engine.submit`). The in-memory logs, and a journal under
  ``fsync="interval"`` or ``"never"``, are such logs.
* ``waits = True``: `commit` returns an awaitable, and the engine's loop awaits it before
  the outbox is released (a journal under ``fsync="always"``, whose fsync runs off the event
  loop). Every call then goes through the mailbox.

A log whose class sets ``leased = True`` (the journal in PostgreSQL) is led by one process at a
time under a lease, and a previous leader may still run: the runtime then gives its own
processors timed locks (`actorq._actors.renewal`) and leaves jobs under a timed lock active at
start, to stall when the lock expires.

`MemoryChangeLog` keeps the batches so a test (or a restart within one process) can replay
them; `NullChangeLog` keeps nothing, for a runtime with no durability at all. One contract
suite (tests/test_changelog_contract.py) runs over every log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterator
from typing import Protocol

from .._core.commands import Change


class ChangeLog(Protocol):
    #: Whether the engine should produce change records at all.
    records: bool
    #: Whether `commit` returns an awaitable that must be awaited (True) or is done when it
    #: returns None (False). Fixed for the log's life.
    waits: bool

    def commit(self, changes: list[Change]) -> Awaitable[None] | None:
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
    waits = False

    def commit(self, changes: list[Change]) -> None:
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
    waits = False

    def __init__(self) -> None:
        self.batches: list[list[Change]] = []

    def commit(self, changes: list[Change]) -> None:
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
