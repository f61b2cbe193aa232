"""`Worker`: runs a processor over a queue's jobs, `concurrency` at a time."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._actors.worker import WorkerActor

if TYPE_CHECKING:
    from ._runtime import Runtime


class Worker:
    """A worker of the runtime. Get one with ``rt.worker(queue, processor, ...)``."""

    __slots__ = ("_actor", "_closed", "_rt", "concurrency", "queue", "token")

    def __init__(self, rt: Runtime, actor: WorkerActor, queue: str, concurrency: int) -> None:
        self._rt = rt
        self._actor = actor
        self._closed = False
        self.queue = queue
        self.concurrency = concurrency
        self.token = actor.token

    async def close(self) -> None:
        """Take no new job, let the running ones finish, then stop. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._rt._close_worker(self)

    def __repr__(self) -> str:
        return f"<Worker {self.token} on {self.queue!r}, concurrency {self.concurrency}>"
