"""The overview's charts: jobs completed and failed per minute, counted from the runtime's
events, so jobs removed as they finish (``remove_on_complete``, ``remove_on_fail``) count.

One bounded subscription per dashboard (`rt.events(buffer=...)`), opened when the dashboard
is made (or, if the runtime was not running yet, at its first request) and read without
waiting whenever the dashboard serves a request or an open page's live stream wakes. Each
event read is counted in the minute it is read: at once while an overview is open, at the
next request otherwise. A subscription that fell more than its buffer behind loses the
oldest events; how many is kept and shown.

What finished before the subscription opened is taken once from the finished lines (the
newest `sample` completed and failed jobs each queue keeps, by their `finished_at`); events
of those same jobs already waiting in the buffer are not counted twice.
"""

from __future__ import annotations

from .. import (
    EventStream,
    JobCompleted,
    JobFailed,
    JobState,
    Lagged,
    RuntimeAPI,
    RuntimeClosedError,
)

__all__ = ["Rates"]


class Rates:
    """Per queue and minute (the runtime clock's, ``now // 60``): [completed, failed]."""

    def __init__(self, rt: RuntimeAPI, *, minutes: int, sample: int, buffer: int) -> None:
        self.rt = rt
        self.minutes = minutes
        self.sample = sample
        self.buffer = buffer
        self.bins: dict[str, dict[int, list[int]]] = {}
        #: Events the subscription dropped before they were read (a `Lagged` notice).
        self.uncounted = 0
        self._stream: EventStream | None = None
        self._seeded = False
        self.open()

    def open(self) -> None:
        if self._stream is None:
            try:
                self._stream = self.rt.events(buffer=self.buffer)
            except RuntimeClosedError:
                return  # not running yet: the first request tries again

    async def seed(self) -> None:
        """Count, once, what the queues' finished lines hold from before the subscription."""
        self.open()
        if self._seeded or self._stream is None:
            return
        self._seeded = True
        now = self.rt.clock.now()
        seen: set[int] = set()
        for name in await self.rt.counts():
            q = self.rt.queue(name)
            for slot, state in enumerate((JobState.COMPLETED, JobState.FAILED)):
                jobs, _after = await q.get_jobs_page(state, limit=self.sample)
                for job in jobs:  # newest finished first
                    at = job.finished_at if job.finished_at is not None else now
                    if now - at >= self.minutes * 60:
                        break
                    self._count(name, int(at // 60), slot)
                    seen.add(job.id)
        self.drain(skip=seen)

    def drain(self, skip: set[int] | None = None) -> None:
        """Count every event the subscription holds (never waits); nothing before `seed`,
        which drains itself."""
        stream = self._stream
        if stream is None or not self._seeded:
            return
        minute = int(self.rt.clock.now() // 60)
        for event in stream.drain_nowait():
            if isinstance(event, JobCompleted | JobFailed):
                if skip and event.job_id in skip:
                    continue
                self._count(event.queue, minute, 0 if isinstance(event, JobCompleted) else 1)
            elif isinstance(event, Lagged):
                self.uncounted += event.dropped
        oldest = minute - self.minutes
        for per_minute in self.bins.values():
            for old in [m for m in per_minute if m <= oldest]:
                del per_minute[old]

    def _count(self, queue: str, minute: int, slot: int) -> None:
        per_minute = self.bins.setdefault(queue, {})
        pair = per_minute.get(minute)
        if pair is None:
            pair = per_minute[minute] = [0, 0]
        pair[slot] += 1

    def of(self, queue: str) -> tuple[list[int], list[int]]:
        """The last `minutes` minutes of `queue`, oldest first: (completed, failed)."""
        now = int(self.rt.clock.now() // 60)
        per_minute = self.bins.get(queue, {})
        span = range(now - self.minutes + 1, now + 1)
        done = [per_minute.get(m, [0, 0])[0] for m in span]
        failed = [per_minute.get(m, [0, 0])[1] for m in span]
        return done, failed
