"""A timed index: at most one ``(time, job_id)`` entry per job, read earliest first.

The core keeps two (delayed jobs by due time, finished jobs by retention expiry; manual
locks have a `LockIndex`, which reads the records instead of keeping a dict). A job may pass
through one on its hot path, while the earliest entry is only read by the timers. So entries sit
in a binary heap beside a dict of the live ones: adding costs a push, removing costs a
dict deletion and leaves the heap entry stale, to be dropped when it reaches the top. A
sorted list would pay a bisection and a shift on both. Stale entries are compacted away once
they outnumber the live ones, so memory stays proportional to the live entries.

It answers the part of `SortedList`'s interface the core uses: `add`, `remove`, `discard`,
``index[0]``, ``in``, `len`, and iteration in order (sorted on demand: queries and checks).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator

Entry = tuple[float, int]

#: Stale entries tolerated before a compaction, beyond as many as there are live ones.
_SLACK = 1024


class TimedIndex:
    __slots__ = ("_heap", "_live")

    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self._live: dict[int, float] = {job_id: at for at, job_id in entries}
        self._heap: list[Entry] = [(at, job_id) for job_id, at in self._live.items()]
        heapq.heapify(self._heap)

    def add(self, entry: Entry) -> None:
        at, job_id = entry
        live = self._live
        if job_id in live:
            raise ValueError(f"job {job_id} already has an entry at {live[job_id]}")
        live[job_id] = at
        heap = self._heap
        heapq.heappush(heap, entry)
        if len(heap) > 2 * len(live) + _SLACK:
            self._compact()

    def remove(self, entry: Entry) -> None:
        at, job_id = entry
        if self._live.get(job_id) != at:
            raise KeyError(entry)
        del self._live[job_id]

    def discard(self, entry: Entry) -> None:
        at, job_id = entry
        if self._live.get(job_id) == at:
            del self._live[job_id]

    def __getitem__(self, index: int) -> Entry:
        if index != 0:
            raise IndexError("a timed index gives its earliest entry only: index 0")
        heap = self._heap
        live = self._live
        while heap:
            at, job_id = top = heap[0]
            if live.get(job_id) == at:
                return top
            heapq.heappop(heap)
        raise IndexError("the timed index is empty")

    def __contains__(self, entry: object) -> bool:
        if not isinstance(entry, tuple) or len(entry) != 2:
            return False
        at, job_id = entry
        live = self._live
        return job_id in live and live[job_id] == at

    def __len__(self) -> int:
        return len(self._live)

    def __bool__(self) -> bool:
        return bool(self._live)

    def __iter__(self) -> Iterator[Entry]:
        return iter(sorted((at, job_id) for job_id, at in self._live.items()))

    def _compact(self) -> None:
        self._heap = [(at, job_id) for job_id, at in self._live.items()]
        heapq.heapify(self._heap)

    def __repr__(self) -> str:
        return f"TimedIndex({list(self)!r})"
