"""A queue's rate limit: at most `max` starts per window of `duration` seconds.

BullMQ's limiter, counted the same way: a window opens with the first start after the last
one closed and lasts `duration` seconds; once `max` jobs started in it, no job of the queue
starts until it closes. A manual limit (`Worker.rate_limit`) holds the queue until a given
time whatever the count. The limiter is the queue's, whichever worker set it, so it holds
across every worker and, journaled with the queue, across restarts.
"""

from __future__ import annotations

from typing import Any


class Limiter:
    __slots__ = ("count", "duration", "max_jobs", "until", "window_end")

    def __init__(
        self,
        max_jobs: int | None = None,
        duration: float = 0.0,
        window_end: float | None = None,
        count: int = 0,
        until: float = 0.0,
    ) -> None:
        self.max_jobs = max_jobs
        self.duration = duration
        #: When the open window closes (None: no window open).
        self.window_end = window_end
        self.count = count
        #: A manual limit holds every start until then.
        self.until = until

    def allowance(self, now: float) -> int | None:
        """How many jobs may start at `now` (None: any number). Reads only: a window past
        its end counts as closed here and is replaced by `started`."""
        if now < self.until:
            return 0
        if self.max_jobs is None:
            return None
        if self.window_end is None or now >= self.window_end:
            return self.max_jobs
        return self.max_jobs - self.count

    def started(self, n: int, now: float) -> None:
        if self.max_jobs is None:
            return
        if self.window_end is None or now >= self.window_end:
            self.window_end = now + self.duration
            self.count = n
        else:
            self.count += n

    def blocked_until(self, now: float) -> float:
        """When a start may next happen (`now` or earlier: at once)."""
        end = self.until
        window = self.window_end
        if (
            self.max_jobs is not None
            and window is not None
            and now < window
            and self.count >= self.max_jobs
        ):
            end = max(end, window)
        return end

    def fields(self) -> list[Any]:
        return [self.max_jobs, self.duration, self.window_end, self.count, self.until]

    @classmethod
    def from_fields(cls, fields: list[Any]) -> Limiter:
        return cls(*fields)


__all__ = ["Limiter"]
