"""The waiting line of one queue: priority first (higher runs first), then order.

One deque per priority present, and the priorities present in a heap (a line is only ever
dropped from the head, once it is empty). Pushing and popping the head cost O(1) plus a log
of the number of *distinct* priorities (a handful in practice). A job
that leaves the line other than from its head (cancelled, removed, drained) is not searched
for: its entry goes stale and is skipped when it reaches the head, since a stale entry's
``order`` no longer matches its record. Stale entries are compacted once they outnumber the
live ones (the core knows the live count), so memory stays proportional to the jobs
waiting.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator, Mapping

from .records import JobRecord
from .states import JobState

_WAITING = JobState.WAITING


class WaitingLine:
    __slots__ = ("_lines", "_priorities", "_size")

    def __init__(self) -> None:
        self._lines: dict[int, deque[tuple[int, int]]] = {}
        # A heap of negated priorities, so the first element is the highest one.
        self._priorities: list[int] = []
        self._size = 0

    def push(self, rec: JobRecord) -> None:
        line = self._lines.get(rec.priority)
        if line is None:
            line = self._lines[rec.priority] = deque()
            heapq.heappush(self._priorities, -rec.priority)
        if rec.order < 0:
            line.appendleft((rec.order, rec.id))
        else:
            line.append((rec.order, rec.id))
        self._size += 1

    def extend(self, priority: int, entries: list[tuple[int, int]]) -> None:
        """Push a run of ``(order, id)`` entries of one priority, in the order they were
        given their places: FIFO ones (positive orders) at the back, LIFO ones at the front
        (each new one before the last). The line of a batch of adds, in one step."""
        line = self._lines.get(priority)
        if line is None:
            line = self._lines[priority] = deque()
            heapq.heappush(self._priorities, -priority)
        if entries[0][0] < 0:
            line.extendleft(entries)
        else:
            line.extend(entries)
        self._size += len(entries)

    def push_back(self, rec: JobRecord) -> None:
        """Append at the back whatever the order's sign (rebuilding from a sorted list)."""
        line = self._lines.get(rec.priority)
        if line is None:
            line = self._lines[rec.priority] = deque()
            heapq.heappush(self._priorities, -rec.priority)
        line.append((rec.order, rec.id))
        self._size += 1

    def pop(self, jobs: Mapping[int, JobRecord]) -> JobRecord | None:
        """Take the next live job, or None when the line is empty."""
        lines = self._lines
        while self._priorities:
            priority = -self._priorities[0]
            line = lines[priority]
            while line:
                order, job_id = line.popleft()
                self._size -= 1
                rec = jobs.get(job_id)
                if rec is not None and rec.state is _WAITING and rec.order == order:
                    if not line:
                        del lines[priority]
                        heapq.heappop(self._priorities)
                    return rec
            del lines[priority]
            heapq.heappop(self._priorities)
        return None

    def live(self, jobs: Mapping[int, JobRecord]) -> Iterator[JobRecord]:
        """Live entries in dispatch order (for queries and invariant checks)."""
        for negated in sorted(self._priorities):
            for order, job_id in self._lines[-negated]:
                rec = jobs.get(job_id)
                if rec is not None and rec.state is _WAITING and rec.order == order:
                    yield rec

    def maybe_compact(self, jobs: Mapping[int, JobRecord], live: int) -> None:
        stale = self._size - live
        if stale > 1024 and stale > live:
            survivors = list(self.live(jobs))
            self.clear()
            for rec in survivors:  # already in dispatch order: keep it, LIFO entries too
                self.push_back(rec)

    def clear(self) -> None:
        self._lines.clear()
        self._priorities.clear()
        self._size = 0

    def __len__(self) -> int:
        """Entries held, stale ones included (the core keeps the live count)."""
        return self._size
