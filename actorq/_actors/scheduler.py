"""The scheduler: the engine's loop, its timer, and its snapshots.

Theory of operation
-------------------
One task loops: wait for a message, take every other message already in the mailbox
(``receive_nowait``, no further checkpoint), run them through `Engine.step` with one `now`,
commit the batch's change records (awaiting the commit when the log says it waits), then
`Engine.release` the outbox: only then are callers answered, events published and jobs sent
to workers, so nothing anybody saw can be lost in a crash. While it waits on an empty
mailbox the engine is *resting*, and calls may run inline meanwhile (`Engine.submit`).

Between batches, where the state equals the durable one, it takes the snapshot the log
wants or a caller asked for.

Workers pull with credits: a worker announces its concurrency once, and every job it
reports frees one credit; the engine never sends a worker more jobs than it has free
slots, so a job that is active is running (or about to run) on a processor.

The loop never sleeps on a timer itself: awaiting `receive()` inside a cancel scope could
drop a message delivered at the moment the scope fires. A small timer task sleeps until the
earliest due time the core reports and then sends a `Tick` into the mailbox.
"""

from __future__ import annotations

import math
from typing import Any

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream

from ..clock import Clock
from .engine import Engine
from .messages import TICK

#: Most messages applied in one batch; bounds how long a batch holds the loop.
MAX_BATCH = 4096


class Scheduler:
    def __init__(self, engine: Engine, clock: Clock, mailbox: MemoryObjectReceiveStream[Any]):
        self.engine = engine
        self.clock = clock
        self._rx = mailbox
        #: The batch being stepped: if the loop dies in it, its callers are still answered.
        self._batch: list[Any] = []

    async def run(self, *, task_status: TaskStatus[None]) -> None:
        engine = self.engine
        rx = self._rx
        task_status.started()
        try:
            while True:
                try:
                    first = rx.receive_nowait()
                except anyio.WouldBlock:
                    # Resting from here until a sender clears the flag (`Engine.post`):
                    # calls run inline meanwhile, even before `receive` registers this task.
                    engine.rest()
                    try:
                        first = await rx.receive()
                    finally:
                        engine.resting = engine.parked = False
                batch = self._batch = [first]
                try:
                    while len(batch) < MAX_BATCH:
                        batch.append(rx.receive_nowait())
                except anyio.WouldBlock:
                    pass
                await self._process(batch)
                self._batch = []
        except anyio.EndOfStream:
            return
        except BaseException as exc:
            # A crash found elsewhere (a change log's watch) cancels the loop: it stays the cause.
            if engine.crashed is None or not isinstance(exc, anyio.get_cancelled_exc_class()):
                engine.crashed = exc
            raise

    async def _process(self, batch: list[Any]) -> None:
        engine = self.engine
        log = engine.log
        outbox = engine.step(batch, self.clock.now())
        engine.loop_batches += 1
        if outbox.changes:
            engine.inflight = outbox  # if the commit fails, its callers still get an answer
            pending = log.commit(outbox.changes)
            if pending is not None:
                await pending
            engine.inflight = None
        engine.release(outbox)
        if (
            engine.snapshot_waiters
            or engine.snapshot_asked
            or (outbox.changes and log.wants_snapshot())
        ):
            engine.snapshot_asked = False
            await log.snapshot(engine.core.as_changes())
            engine.reply_snapshot_waiters()

    def unread(self) -> list[Any]:
        """Messages the loop did not finish, the batch it died in first, then the mailbox's
        (for failing their callers once the loop is gone)."""
        out: list[Any] = self._batch
        self._batch = []
        try:
            while True:
                out.append(self._rx.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            pass
        return out

    async def run_timer(self, *, task_status: TaskStatus[None]) -> None:
        """Sleep until the core's next due time, then wake the loop with a Tick."""
        engine = self.engine
        task_status.started()
        while True:
            changed = engine.timer_changed = anyio.Event()
            due = engine.timer_due
            if due == math.inf:
                await changed.wait()
                continue
            scope = self.clock.deadline(due)
            with scope:
                await changed.wait()
            if scope.cancelled_caught:
                engine.timer_due = math.inf
                engine.post(TICK)
