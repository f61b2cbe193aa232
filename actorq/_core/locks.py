"""Manual locks by expiry: a heap of ``(expires_at, job_id)`` checked against the records.

A manual consumer takes a lock and gives it up for every job it handles, while the stalled
checker only reads the earliest expiry. A `TimedIndex` would keep a dict entry per lock
beside its heap entry, set on take and deleted on release: most of the lock's cost on the
manual loop's path. Here the job's record is that dict: a heap entry is live while its job
is active with that expiry. So giving a lock up (a completion, a failure, a stall, an
extension) writes nothing here, and the entry it leaves behind goes stale by itself: it is
dropped when it reaches the top, or at a compaction: once the heap holds more than twice
the live locks counted at the previous compaction, plus 1,024.

A job whose lock ends and is taken again with the same expiry (a virtual clock makes that
easy) has two equal entries: both read as live, and the second is dropped once the first
has been acted on. Reads that list entries see each once.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator

from .records import JobRecord
from .states import JobState

Entry = tuple[float, int]

_ACTIVE = JobState.ACTIVE
#: Entries tolerated beyond twice the live ones before a compaction.
_SLACK = 1024


class LockIndex:
    __slots__ = ("_heap", "_jobs", "_limit")

    def __init__(self, jobs: dict[int, JobRecord], entries: Iterable[Entry] = ()) -> None:
        self._jobs = jobs
        self._heap: list[Entry] = list(entries)
        heapq.heapify(self._heap)
        self._limit = 2 * len(self._heap) + _SLACK

    def add(self, expires_at: float, job_id: int) -> None:
        """File the lock `job_id`'s record now holds until `expires_at`."""
        heap = self._heap
        heapq.heappush(heap, (expires_at, job_id))
        if len(heap) > self._limit:
            self._compact()

    def _live(self, entry: Entry) -> bool:
        rec = self._jobs.get(entry[1])
        return rec is not None and rec.state is _ACTIVE and rec.lock_expires_at == entry[0]

    def earliest(self) -> Entry | None:
        """The live lock that expires first, or None when no manual lock is held."""
        heap = self._heap
        while heap:
            if self._live(top := heap[0]):
                return top
            heapq.heappop(heap)
        return None

    def __iter__(self) -> Iterator[Entry]:
        """The live locks by expiry (a sort of the heap: for queries and checks)."""
        return iter(sorted({entry for entry in self._heap if self._live(entry)}))

    def __len__(self) -> int:
        return len({entry for entry in self._heap if self._live(entry)})

    def __bool__(self) -> bool:
        return self.earliest() is not None

    def __contains__(self, entry: object) -> bool:
        """Whether `entry` is filed and live (a scan of the heap: for checks)."""
        return entry in self._heap and self._live(entry)

    def _compact(self) -> None:
        # `_live` spelled out: with many locks held at once, every entry is checked here.
        # `dict.fromkeys` drops equal entries and keeps the heap's order, which `heapify`
        # then restores in linear time (a sort of thousands of live locks would not be).
        jobs = self._jobs
        heap = list(
            dict.fromkeys(
                entry
                for entry in self._heap
                if (rec := jobs.get(entry[1])) is not None
                and rec.state is _ACTIVE
                and rec.lock_expires_at == entry[0]
            )
        )
        heapq.heapify(heap)
        self._heap = heap
        self._limit = 2 * len(heap) + _SLACK

    def __repr__(self) -> str:
        return f"LockIndex({list(self)!r})"


def held_by(
    locks: Iterable[Entry], jobs: dict[int, JobRecord], tokens: frozenset[str], now: float
) -> list[int]:
    """The jobs locked under one of `tokens` whose lock has not expired (one that has is the
    stalled check's, which runs after the commands of the same batch)."""
    return [
        job_id for expiry, job_id in locks if expiry > now and jobs[job_id].lock_token in tokens
    ]
