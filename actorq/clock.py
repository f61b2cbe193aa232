"""Clocks: `SystemClock` for production, `VirtualClock` for tests and simulations.

The runtime reads time only through its clock and waits only through `Clock.deadline`, a
cancel scope that the clock itself ends at the deadline. `SystemClock` maps that onto the
event loop's timers. `VirtualClock` keeps a list of open deadline scopes and ends them when
its own time reaches them, so time moves only when the clock is told to move it.

How `VirtualClock` knows the runtime is idle (and may jump)
-----------------------------------------------------------
It keeps a count of *busy tokens*: one per request a caller sent and has not yet received the
reply of, one per job dispatched to a worker until its outcome is back at the scheduler, one
for the scheduler while it is not parked in its idle wait, one per deadline scope the clock
ended until its task runs again. When the count falls to zero, nothing in the runtime can make
progress without time passing; the clock then lets every other ready task run for a few
loop turns (subscribers, the test's own task), checks the count is still zero and nothing
moved meanwhile, and jumps to the earliest open deadline. No real sleep, no polling, and the
same on asyncio and trio. A processor that sleeps through `clock.sleep` gives its token back
while it sleeps; a processor awaiting real I/O keeps it, so time never jumps under it.
"""

from __future__ import annotations

import contextvars
import itertools
import math
import time
from types import TracebackType
from typing import Protocol, runtime_checkable

import anyio
import anyio.lowlevel
from sortedcontainers import SortedList

__all__ = ["Clock", "DeadlineScope", "SystemClock", "VirtualClock"]

#: Set while a worker runs a processor under a VirtualClock: that task holds a busy token.
_holds_token: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "actorq_holds_token", default=False
)


class DeadlineScope(Protocol):
    """A context manager that cancels its body when the clock reaches its deadline."""

    def __enter__(self) -> object: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool: ...

    @property
    def cancelled_caught(self) -> bool: ...


@runtime_checkable
class Clock(Protocol):
    """What the runtime needs from time: read it, and wait until a deadline."""

    def now(self) -> float:
        """Seconds; absolute. The runtime stamps jobs with it."""
        ...

    def deadline(self, at: float) -> DeadlineScope:
        """A scope whose body is cancelled when the clock reaches `at`."""
        ...

    async def sleep_until(self, at: float) -> None: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Wall-clock seconds since the epoch (`time.time`); waits on the event loop's timers."""

    def now(self) -> float:
        return time.time()

    def deadline(self, at: float) -> DeadlineScope:
        return anyio.move_on_after(max(0.0, at - time.time()))

    async def sleep_until(self, at: float) -> None:
        await anyio.sleep(max(0.0, at - time.time()))

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


class VirtualClock:
    """Time that moves only when told, or (with `autojump`) when the runtime is idle.

    `advance(seconds)` moves time forward, stopping at every deadline on the way and letting
    the runtime settle after each, so a job due at t=60 runs at t=60 even within
    ``advance(3600)``. With ``autojump=True`` (the default) time also jumps to the next
    deadline by itself whenever the runtime is idle, so ``await job.wait_until_finished()``
    on a job due in 24 hours returns at once, its timestamps exactly 24 hours later.
    """

    #: Loop turns given to tasks the clock cannot see (subscribers, the test) before a jump.
    SETTLE_TURNS = 8

    def __init__(self, start: float = 0.0, *, autojump: bool = True) -> None:
        if not math.isfinite(start):
            raise ValueError(f"invalid start={start!r}: must be a finite number of seconds")
        self._now = float(start)
        self.autojump = autojump
        self._scopes: SortedList[tuple[float, int]] = SortedList()
        self._by_seq: dict[int, _VirtualScope] = {}
        self._seq = itertools.count()
        self._busy = 0
        self._moves = 0  # bumped on every change, to notice activity while settling
        self._idle: list[anyio.Event] = []  # one per task waiting for idleness
        self._changed: anyio.Event | None = None

    def now(self) -> float:
        return self._now

    @property
    def busy(self) -> int:
        """Busy tokens outstanding (zero: nothing can progress without time passing)."""
        return self._busy

    def deadline(self, at: float) -> DeadlineScope:
        return _VirtualScope(self, at)

    async def sleep_until(self, at: float) -> None:
        holds = _holds_token.get()
        if holds:
            self.release()
        try:
            with self.deadline(at):
                await anyio.sleep_forever()
        finally:
            if holds:
                self.hold()

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._now + seconds)

    # ----------------------------------------------------------------- busy tokens

    def hold(self, n: int = 1) -> None:
        self._busy += n
        self._touch()

    def release(self, n: int = 1) -> None:
        self._busy -= n
        self._touch()
        if self._busy < 0:
            raise AssertionError("VirtualClock busy count went negative")
        if self._busy == 0 and self._idle:
            for event in self._idle:
                event.set()
            self._idle.clear()

    def _touch(self) -> None:
        self._moves += 1
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    # ----------------------------------------------------------------- moving time

    def _fire_due(self) -> None:
        """End every open scope whose deadline has come; each woken task holds a token."""
        while self._scopes and self._scopes[0][0] <= self._now:
            _at, seq = self._scopes.pop(0)
            scope = self._by_seq.pop(seq)
            scope.woken = True
            self.hold()
            scope.cancel()

    async def wait_idle(self) -> None:
        """Return once no busy token is out and nothing moved for a few loop turns."""
        while True:
            while self._busy:
                idle = anyio.Event()
                self._idle.append(idle)
                await idle.wait()
            moves = self._moves
            for _ in range(self.SETTLE_TURNS):
                await anyio.lowlevel.checkpoint()
            if self._busy == 0 and self._moves == moves:
                return

    async def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, stopping at each deadline on the way."""
        if not seconds >= 0:
            raise ValueError(f"invalid seconds={seconds!r}: time only moves forward")
        await self.advance_to(self._now + seconds)

    async def advance_to(self, at: float) -> None:
        if not at >= self._now:
            raise ValueError(f"invalid at={at!r}: the clock is already at {self._now}")
        await self.wait_idle()
        while self._scopes and self._scopes[0][0] <= at:
            self._now = max(self._now, self._scopes[0][0])
            self._fire_due()
            await self.wait_idle()
        self._now = at
        self._fire_due()
        await self.wait_idle()

    async def run_until_idle(self) -> None:
        """Let the runtime settle at the current time (no jump)."""
        await self.wait_idle()

    async def drive(self) -> None:
        """The autojump loop; a runtime runs it in its task group when `autojump` is on."""
        while True:
            await self.wait_idle()
            if self._scopes:
                self._now = max(self._now, self._scopes[0][0])
                self._fire_due()
            else:
                changed = self._changed = anyio.Event()
                await changed.wait()

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now}, busy={self._busy}, deadlines={len(self._scopes)})"


class _VirtualScope:
    """A cancel scope registered with a VirtualClock until it exits."""

    __slots__ = ("_clock", "_scope", "_seq", "at", "woken")

    def __init__(self, clock: VirtualClock, at: float) -> None:
        self._clock = clock
        self.at = at
        self._scope = anyio.CancelScope()
        self._seq = -1
        self.woken = False

    @property
    def cancelled_caught(self) -> bool:
        return self._scope.cancelled_caught

    def cancel(self) -> None:
        self._scope.cancel()

    def __enter__(self) -> _VirtualScope:
        self._scope.__enter__()
        clock = self._clock
        if self.at <= clock._now:
            self._scope.cancel()
        else:
            self._seq = next(clock._seq)
            clock._scopes.add((self.at, self._seq))
            clock._by_seq[self._seq] = self
            clock._touch()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        clock = self._clock
        if self._seq in clock._by_seq:
            del clock._by_seq[self._seq]
            clock._scopes.remove((self.at, self._seq))
        if self.woken:
            self.woken = False
            clock.release()
        return bool(self._scope.__exit__(exc_type, exc, tb))
