"""Timed locks of processors' jobs, renewed in batches: one `ExtendLocks` per worker.

A processor in another process (a runtime host's client) always holds timed locks; a
processor in the leader's own process holds them too when the journal is *leased*
(`LeasedLocks`), since a leader change may leave the old leader running its jobs: then the
new leader waits for their locks to expire before it counts them as stalled, instead of
running them again at once. Both renew the same way (`renew_held`): every half of the
shortest lock, each worker sends the ids of the jobs it holds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

import anyio
import attrs

from .._core import JobRecord
from .._core import commands as c

if TYPE_CHECKING:
    from .outbox import Inbox, WorkerSlot

__all__ = ["HoldsLocks", "LeasedLocks", "renew_held", "renewal_interval"]


class _Holder(Protocol):
    def held(self) -> list[int]: ...


class HoldsLocks(Protocol):
    """A worker whose jobs hold timed locks: its runner (`held`) and their duration."""

    @property
    def actor(self) -> _Holder: ...

    @property
    def lock_duration(self) -> float: ...


def renewal_interval(workers: Iterable[HoldsLocks]) -> float:
    """How long to wait between renewals: half of the shortest lock (2.5 s with none)."""
    return min((w.lock_duration for w in workers), default=5.0) / 2


def renew_held(workers: Mapping[str, HoldsLocks], notify: Callable[[c.Command], None]) -> None:
    """Send one `ExtendLocks` per worker (by token) that holds jobs."""
    for token, worker in list(workers.items()):
        held = worker.actor.held()
        if held:
            notify(c.ExtendLocks(token, tuple(held), worker.lock_duration))


@attrs.define(eq=False)
class _LocalWorker:
    actor: _Holder
    lock_duration: float
    slot: WorkerSlot


class _WakingInbox:
    """A local worker's inbox that wakes the renewal as jobs are sent to it."""

    __slots__ = ("_inbox", "_locks")

    def __init__(self, inbox: Inbox, locks: LeasedLocks) -> None:
        self._inbox = inbox
        self._locks = locks

    def send_nowait(self, jobs: list[JobRecord], /) -> None:
        self._inbox.send_nowait(jobs)
        self._locks.wake.set()


class LeasedLocks:
    """The timed locks of a leader's own processors on a leased journal: `add` wraps a
    worker's inbox as it registers, `run` renews while any of them holds a job dispatched
    and not yet reported (the engine's own count, `WorkerSlot.free`), and sleeps on the
    runtime's clock only then, so an idle runtime keeps no timer."""

    def __init__(
        self, notify: Callable[[c.Command], None], sleep: Callable[[float], Awaitable[None]]
    ) -> None:
        self.workers: dict[str, _LocalWorker] = {}
        self.wake = anyio.Event()
        self._notify = notify
        self._sleep = sleep

    def add(self, actor: _Holder, slot: WorkerSlot) -> None:
        """Renew the locks of `slot`'s jobs (its `lock_duration` is set) from now on."""
        assert slot.lock_duration is not None
        self.workers[slot.token] = _LocalWorker(actor, slot.lock_duration, slot)
        slot.inbox = _WakingInbox(slot.inbox, self)

    def remove(self, token: str) -> None:
        self.workers.pop(token, None)

    def _outstanding(self) -> bool:
        return any(w.slot.free < w.slot.concurrency for w in self.workers.values())

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            await self._sleep(renewal_interval(self.workers.values()))
            try:
                renew_held(self.workers, self._notify)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return  # the engine has stopped

            if not self._outstanding():
                self.wake = anyio.Event()  # re-armed: the next dispatch sets it
