"""`Worker`: runs a processor over a queue's jobs, or hands them out by hand (manual mode)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic

from ._core import commands as c
from ._exceptions import InvalidOptionError
from ._job import Job
from ._options import non_negative
from ._typing import DataT, ResultT

if TYPE_CHECKING:
    from ._api import RuntimeAPI


class Worker(Generic[DataT, ResultT]):
    """A worker of the runtime. Get one with ``rt.worker(queue, processor, ...)``.

    Without a processor it is a *manual* worker: fetch jobs with `get_next_job`, finish them
    with `Job.move_to_completed` / `Job.move_to_failed`. A job so fetched is locked for
    `lock_duration` seconds under the caller's token; `Job.extend_lock` keeps it longer. A lock
    that expires makes the job *stalled*: back to waiting, or failed once it stalled more than
    `max_stalled_count` times ("job stalled more than allowable limit").
    """

    __slots__ = (
        "_actor",
        "_closed",
        "_paused",
        "_rt",
        "_takes",
        "_tokens",
        "concurrency",
        "lock_duration",
        "max_stalled_count",
        "queue",
        "stalled_interval",
        "token",
    )

    def __init__(
        self,
        rt: RuntimeAPI,
        actor: Any,  # the runtime's worker actor (None: manual); the handle only closes it
        queue: str,
        concurrency: int,
        lock_duration: float,
        stalled_interval: float,
        max_stalled_count: int,
        token: str,
    ) -> None:
        self._rt = rt
        self._actor = actor
        self._closed = False
        self._paused = False
        self._tokens: set[str] = set()
        self._takes: dict[str, c.Take] = {}
        self.queue = queue
        self.concurrency = concurrency
        self.lock_duration = lock_duration
        self.stalled_interval = stalled_interval
        self.max_stalled_count = max_stalled_count
        self.token = token

    @property
    def manual(self) -> bool:
        return self._actor is None

    async def get_next_job(
        self, token: str, timeout: float | None = None
    ) -> Job[DataT, ResultT] | None:
        """Lock the next waiting job under `token` and return it (manual mode).

        With no `timeout`, returns None at once when nothing is waiting; with one, waits up to
        `timeout` seconds (on the runtime's clock) for a job.
        """
        if not self.manual:
            raise InvalidOptionError(
                "processor", "set", "get_next_job is for workers created without a processor"
            )
        if self._closed:
            raise InvalidOptionError("worker", self, "this worker is closed")
        if not isinstance(token, str) or not token:
            raise InvalidOptionError("token", token, "must be a non-empty string")
        wait = timeout is not None and non_negative("timeout", timeout) > 0
        if self._paused:
            return None  # as BullMQ's worker: a paused worker takes no job
        self._tokens.add(token)
        rt = self._rt
        take = self._take(token)
        if not wait:
            rec = await rt._send(c.Fetch(take))
        else:
            assert timeout is not None
            _done, rec = await rt._send_within(c.Fetch(take, wait=True), timeout)
        return None if rec is None else Job(rt, rec, token, self)

    def _take(self, token: str) -> c.Take:
        """The take of one job under `token` with this worker's lock settings (one value per
        token, made once: a manual loop asks for it at every job)."""
        take = self._takes.get(token)
        if take is None:
            take = self._takes[token] = c.Take(
                self.queue, 1, token, self.lock_duration, self.max_stalled_count
            )
        return take

    @property
    def paused(self) -> bool:
        """Whether `pause` stopped this worker taking jobs (BullMQ's ``isPaused()``)."""
        return self._paused

    async def pause(self, *, wait: bool = True) -> None:
        """Take no new job until `resume` (BullMQ's ``worker.pause()``); idempotent.

        Only this worker stops: the queue's other workers go on (`Queue.pause` stops them
        all). Running jobs finish; with `wait` (the default) this returns once they have,
        as BullMQ's does unless ``doNotWaitActive``. A paused manual worker's
        `get_next_job` returns None.
        """
        if not isinstance(wait, bool):
            raise InvalidOptionError("wait", wait, "must be True or False")
        if self._closed:
            raise InvalidOptionError("worker", self, "this worker is closed")
        self._rt._check_pausable(self)
        self._paused = True
        if self._actor is not None:
            await self._rt._send(c.PauseWorker(self.token, True))
            if wait:
                await self._rt._send(c.WaitWorkersIdle(self.token))

    async def resume(self) -> None:
        """Take jobs again after `pause`; idempotent."""
        if self._closed:
            raise InvalidOptionError("worker", self, "this worker is closed")
        self._rt._check_pausable(self)
        self._paused = False
        if self._actor is not None:
            await self._rt._send(c.PauseWorker(self.token, False))

    async def rate_limit(self, seconds: float) -> None:
        """Start no job of this worker's queue for `seconds` (BullMQ's ``rateLimit``), on
        every worker of the queue. Inside a processor, follow it with ``raise
        RateLimitError()`` to put the job back to waiting without counting an attempt."""
        await self._rt._send(c.RateLimit(self.queue, non_negative("seconds", seconds)))

    async def close(self) -> None:
        """Take no new job and stop; idempotent.

        A processor worker lets its running jobs finish first. A manual worker gives every
        job still locked under a token it handed out back to waiting (no stall counted), so
        none is lost and none waits for its lock to expire.
        """
        if self._closed:
            return
        self._closed = True
        await self._rt._close_worker(self)

    def __repr__(self) -> str:
        kind = "manual" if self.manual else f"concurrency {self.concurrency}"
        paused = ", paused" if self._paused else ""
        return f"<Worker {self.token} on {self.queue!r}, {kind}{paused}>"
