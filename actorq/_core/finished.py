"""The finished line of one queue and end state: the jobs that completed (or failed) in the
order they finished, for count-based retention (keep the N newest).

A job that leaves the line other than from its head (removed by hand, by its age, retried)
is not searched for: its entry goes stale, recognised because the job's ``order``, stamped
anew at every finish, no longer matches it, and is skipped when it reaches the head. Stale
entries are compacted once they outnumber the live ones, so the line stays proportional to
the finished jobs kept, whatever number of jobs went through it. A job its own retention
removes at once is never entered at all (see `upkeep`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping

from .records import JobRecord
from .states import JobState

#: Stale entries tolerated before a compaction is considered: below this the scan would cost
#: more than the entries do.
COMPACT_AFTER = 1024


class FinishedLine(deque[tuple[int, int]]):
    """The entries ``(order, job id)``, oldest first: a deque itself, so entering a job is
    one `append` made in C (``line.append((rec.order, rec.id))``), which every completion
    pays, and no Python call."""

    __slots__ = ("state",)

    def __init__(self, state: JobState) -> None:
        super().__init__()
        self.state = state

    def push(self, rec: JobRecord) -> None:
        self.append((rec.order, rec.id))

    def pop_oldest(self, jobs: Mapping[int, JobRecord]) -> JobRecord | None:
        """Take the oldest job still finished in this state, or None when there is none."""
        while self:
            order, job_id = self.popleft()
            rec = jobs.get(job_id)
            if rec is not None and rec.state is self.state and rec.order == order:
                return rec
        return None

    def live(self, jobs: Mapping[int, JobRecord]) -> Iterator[JobRecord]:
        """Live entries, oldest first."""
        state = self.state
        for order, job_id in self:
            rec = jobs.get(job_id)
            if rec is not None and rec.state is state and rec.order == order:
                yield rec

    def newest(self, jobs: Mapping[int, JobRecord]) -> Iterator[JobRecord]:
        """Live entries, newest first (a page reads from the end, never the whole line)."""
        state = self.state
        for order, job_id in reversed(self):
            rec = jobs.get(job_id)
            if rec is not None and rec.state is state and rec.order == order:
                yield rec

    def maybe_compact(self, jobs: Mapping[int, JobRecord], live: int) -> None:
        """`len` counts entries held, stale ones included (the core keeps the live count)."""
        stale = len(self) - live
        if stale > COMPACT_AFTER and stale > live:
            survivors = [(rec.order, rec.id) for rec in self.live(jobs)]
            self.clear()
            self.extend(survivors)
