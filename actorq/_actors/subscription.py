"""A subscriber's events: a bounded buffer that drops its oldest events when the subscriber
falls behind, and tells it so.

The engine publishes every durable batch's events to each subscriber at once and never
waits for one: a subscriber that reads slowly, or not at all, must not hold up the queue nor
grow without end. So each subscription keeps at most `capacity` events; one more pushes the
oldest out, and the reader's next event is a `Lagged` notice carrying how many it lost,
followed by the events still held, in order (tokio's ``broadcast`` channel does the same
with ``RecvError::Lagged``). A subscriber that keeps up never sees one.
"""

from __future__ import annotations

from collections import deque
from typing import Final, Protocol, Self

import anyio
import attrs

from .._core.events import Event

#: Events a subscription holds unless told otherwise: BullMQ trims its events stream to
#: about as many (``streams.events.maxLen``).
DEFAULT_CAPACITY: Final = 10_000


@attrs.frozen(slots=True)
class Lagged(Event):
    """The subscriber fell behind: the `dropped` oldest events it had not read were dropped
    to keep its buffer bounded. The events after this notice follow with no further gap."""

    dropped: int


class Hub(Protocol):
    """What publishes to a stream: the engine, or a runtime host's client (which forwards
    what the host's engine publishes)."""

    def subscribe(self, stream: EventStream) -> None: ...

    def unsubscribe(self, stream: EventStream) -> None: ...


class EventStream:
    """An async iterator over lifecycle events; close it (or leave its block) to unsubscribe.

    Holds at most `capacity` unread events: past that the oldest are dropped and a `Lagged`
    notice, next in line, says how many.
    """

    __slots__ = ("_buffer", "_dropped", "_ended", "_engine", "_wakeup", "capacity")

    def __init__(self, engine: Hub, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._engine = engine
        self._buffer: deque[Event] = deque(maxlen=capacity)
        #: Events dropped since the reader last read: its next event is a notice of them.
        self._dropped = 0
        #: No event will come any more (closed, or the runtime stopped).
        self._ended = False
        #: Set when events come, for a reader waiting on an empty buffer.
        self._wakeup: anyio.Event | None = None
        engine.subscribe(self)

    # ------------------------------------------------------------------ the engine's side

    def publish(self, events: list[Event]) -> None:
        """Take a batch's events (the engine's call: never blocks, never raises)."""
        if self._ended:
            return
        buffer = self._buffer
        overflow = len(buffer) + len(events) - self.capacity
        if overflow > 0:
            self._dropped += overflow
        buffer.extend(events)  # the buffer's maxlen pushes the oldest out
        self._wake()

    def end(self) -> None:
        """No more events will come: the reader gets what is held, then the end."""
        self._ended = True
        self._wake()

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            wakeup.set()

    # ------------------------------------------------------------------ the reader's side

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        while True:
            try:
                return self.receive_nowait()
            except anyio.WouldBlock:
                pass
            except anyio.EndOfStream:
                raise StopAsyncIteration from None
            if self._wakeup is None:
                self._wakeup = anyio.Event()
            await self._wakeup.wait()

    def receive_nowait(self) -> Event:
        """The next event: a `Lagged` notice first if events were dropped. Raises
        `anyio.WouldBlock` when none is held, `anyio.EndOfStream` once none will come."""
        dropped = self._dropped
        if dropped:
            self._dropped = 0
            return Lagged(dropped)
        if self._buffer:
            return self._buffer.popleft()
        if self._ended:
            raise anyio.EndOfStream
        raise anyio.WouldBlock

    def drain_nowait(self) -> list[Event]:
        """Every event held, without waiting (empty when none is)."""
        out: list[Event] = []
        if self._dropped:
            out.append(Lagged(self._dropped))
            self._dropped = 0
        out.extend(self._buffer)
        self._buffer.clear()
        return out

    def __len__(self) -> int:
        """Events held and not yet read (a pending `Lagged` notice aside)."""
        return len(self._buffer)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Unsubscribe: what is held is dropped, and iterating ends."""
        self._engine.unsubscribe(self)
        self._buffer.clear()
        self._dropped = 0
        self.end()
