"""Clocks: `SystemClock` for production, `VirtualClock` for tests and simulations.

The runtime reads time only through its clock and waits only through `Clock.deadline`, a
cancel scope that the clock itself ends at the deadline. `SystemClock` maps that onto the
event loop's timers. `VirtualClock` keeps a list of open deadline scopes and ends them when
its own time reaches them, so time moves only when the clock is told to move it.

How `VirtualClock` knows the runtime is idle
--------------------------------------------
It asks. Every runtime on the clock attaches its engine (`attach`), which answers three
things (`Probe`): whether it is *quiet* (no batch queued or under way), whether it is *idle*
(quiet, and every job it dispatched is done or its processor sleeps on this clock), and a
count of its *activity* that every batch bumps. The clock adds what only it can know: the
deadline scopes it has ended whose tasks have not run yet, and which processors sleep on it
(`sleep_until` tells the engine of the processor that calls it). Nothing else keeps count.

* Autojump (`drive`, on by default) jumps to the next deadline only when every engine is
  idle, nothing woken is pending, and a few loop turns pass with no activity (so tasks the
  clock cannot see, such as subscribers or the test itself, get to run first). A processor
  awaiting anything but the clock keeps time still; a manual consumer holding a lock does
  not (it is not a dispatched job): see docs/testing.md.
* An explicit `advance` moves time by exactly what it is told, whatever user code awaits: it
  stops at every deadline on the way, and at each lets the runtime settle (quiet, no woken
  task pending, no activity for a few turns) without waiting for processors. Autojump
  pauses while an advance runs, so time never moves past an advance's target, and never
  backwards.

A host and its clients in one process may share one clock (``actorq.connect(url,
clock=...)``). Each client attaches a probe of its own (idle while every job its workers hold
is done or asleep on the clock), the host leaves the jobs of those clients' workers to them,
and each connection between two ends on the same clock has a `Transit`: the frames one end
wrote and the other has not handled yet. The clock moves only when no frame is in transit,
so it sees through the socket as it sees through a mailbox. A client on another clock, or in
another process, shares no transit: nothing is counted for it, and nothing costs.

No real sleep, no polling, and the same on asyncio and trio.
"""

from __future__ import annotations

import contextvars
import itertools
import math
import secrets
import time
from types import TracebackType
from typing import Protocol, runtime_checkable

import anyio
import anyio.lowlevel
from sortedcontainers import SortedList

__all__ = ["Clock", "DeadlineScope", "Probe", "SystemClock", "Transit", "VirtualClock"]


class Probe(Protocol):
    """What a `VirtualClock` asks a runtime's engine."""

    #: Dispatched jobs whose processors sleep on the clock (kept by `sleep_until`).
    asleep: int
    #: Bumped by every batch: a sign that something moved.
    activity: int

    def quiet(self) -> bool:
        """No batch is queued or under way."""
        ...

    def idle(self) -> bool:
        """Quiet, and every dispatched job is done or asleep on the clock."""
        ...


#: Set by a worker's runner task: the engine whose jobs its processors run.
running_for: contextvars.ContextVar[Probe | None] = contextvars.ContextVar(
    "actorq_running_for", default=None
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
    ``advance(3600)``, and a job's `timeout` fires at its virtual deadline even while its
    processor awaits something else. With ``autojump=True`` (the default) time also jumps to
    the next deadline by itself whenever the runtime is idle, so
    ``await job.wait_until_finished()`` on a job due in 24 hours returns at once, its
    timestamps exactly 24 hours later. Time never moves backwards. One clock can serve one
    runtime after another.
    """

    #: Loop turns given to tasks the clock cannot see (subscribers, the test) before a move.
    SETTLE_TURNS = 8

    def __init__(self, start: float = 0.0, *, autojump: bool = True) -> None:
        if not math.isfinite(start):
            raise ValueError(f"invalid start={start!r}: must be a finite number of seconds")
        self._now = float(start)
        self.autojump = autojump
        self._scopes: SortedList[tuple[float, int]] = SortedList()
        self._by_seq: dict[int, _VirtualScope] = {}
        self._seq = itertools.count()
        self._probes: list[Probe] = []
        self._woken = 0  # scopes this clock ended whose tasks have not left them yet
        self._advancing = 0  # explicit advances under way: autojump waits for them
        self._moves = 0  # bumped on every change the clock sees, to notice activity
        self._changed: anyio.Event | None = None
        self._transits: dict[str, Transit] = {}  # open links between ends on this clock
        self._in_transit = 0  # frames written by one end and not yet handled by the other

    def now(self) -> float:
        return self._now

    def deadline(self, at: float) -> DeadlineScope:
        return _VirtualScope(self, at)

    async def sleep_until(self, at: float) -> None:
        probe = running_for.get()
        if probe is not None:
            probe.asleep += 1  # a processor asleep here does not hold time still
            self.poke()
        try:
            with self.deadline(at):
                await anyio.sleep_forever()
        finally:
            if probe is not None:
                probe.asleep -= 1
                self.poke()

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._now + seconds)

    # ----------------------------------------------------------------- runtimes

    def attach(self, probe: Probe) -> None:
        """A runtime starts on this clock: its engine answers whether it is idle."""
        self._probes.append(probe)
        self.poke()

    def detach(self, probe: Probe) -> None:
        """The runtime stopped: the clock no longer waits for it."""
        if probe in self._probes:
            self._probes.remove(probe)
        self.poke()

    def open_transit(self) -> Transit:
        """A new link's frames, counted once its other end joins (`join_transit`)."""
        transit = Transit(self)
        self._transits[transit.key] = transit
        return transit

    def join_transit(self, key: object) -> Transit | None:
        """The transit `key` names if it is this clock's (both ends share it), else None."""
        transit = self._transits.get(key) if type(key) is str else None
        if transit is not None:
            transit.shared = True
        return transit

    def poke(self) -> None:
        """Something the clock waits on may have changed: look again."""
        self._moves += 1
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def _activity(self) -> int:
        return self._moves + sum(probe.activity for probe in self._probes)

    def _ready(self, strict: bool) -> bool:
        if self._woken or self._in_transit:
            return False
        if strict:
            return all(probe.idle() for probe in self._probes)
        return all(probe.quiet() for probe in self._probes)

    async def _wait_change(self) -> None:
        changed = self._changed
        if changed is None:
            changed = self._changed = anyio.Event()
        await changed.wait()

    async def _settle(self, strict: bool) -> None:
        """Return once the runtimes are quiet (`strict`: idle) and nothing moved for a few
        loop turns."""
        while True:
            while not self._ready(strict):
                await self._wait_change()
            before = self._activity()
            for _ in range(self.SETTLE_TURNS):
                await anyio.lowlevel.checkpoint()
            if self._ready(strict) and self._activity() == before:
                return

    async def wait_idle(self) -> None:
        """Return once every runtime on the clock is idle and nothing moved for a while."""
        await self._settle(strict=True)

    # ----------------------------------------------------------------- moving time

    def _move_to(self, at: float) -> None:
        """Set the time (never backwards) and end every open scope now due."""
        self._now = max(self._now, at)
        while self._scopes and self._scopes[0][0] <= self._now:
            _at, seq = self._scopes.pop(0)
            scope = self._by_seq.pop(seq)
            scope.woken = True
            self._woken += 1
            scope.cancel()
        self.poke()

    async def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, stopping at each deadline on the way."""
        if not seconds >= 0 or not math.isfinite(seconds):
            raise ValueError(f"invalid seconds={seconds!r}: time only moves forward")
        await self.advance_to(self._now + seconds)

    async def advance_to(self, at: float) -> None:
        """Move time forward to `at`, stopping at each deadline on the way."""
        if not at >= self._now or not math.isfinite(at):
            raise ValueError(f"invalid at={at!r}: the clock is already at {self._now}")
        self._advancing += 1
        try:
            await self._settle(strict=False)
            while self._scopes and self._scopes[0][0] <= at:
                self._move_to(self._scopes[0][0])
                await self._settle(strict=False)
            self._move_to(at)
            await self._settle(strict=False)
        finally:
            self._advancing -= 1
            self.poke()

    async def run_until_idle(self) -> None:
        """Let the runtime settle at the current time (no jump): quiet, nothing moving.
        Processors awaiting something else are not waited for."""
        await self._settle(strict=False)

    async def drive(self) -> None:
        """The autojump loop; a runtime runs it in its task group when `autojump` is on."""
        while True:
            await self._settle(strict=True)
            if self._advancing or not self._scopes:
                await self._wait_change()
                continue
            self._move_to(self._scopes[0][0])

    def __repr__(self) -> str:
        return (
            f"VirtualClock(now={self._now}, runtimes={len(self._probes)}, "
            f"deadlines={len(self._scopes)})"
        )


class Transit:
    """The frames of one connection whose two ends share a `VirtualClock`: the sender
    counts each frame it queues (`sent`), the receiver each one it has handled
    (`handled`); the clock moves only while none is in between. Until the other end joins
    (`shared`), and once either end closes it, it counts nothing."""

    __slots__ = ("_clock", "count", "key", "shared")

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self.key = secrets.token_hex(8)  # what the client names it by in its hello
        self.count = 0
        self.shared = False

    def sent(self) -> None:
        if self.shared:
            self.count += 1
            self._clock._in_transit += 1

    def handled(self, frames: int) -> None:
        if self.shared:
            self.count -= frames
            clock = self._clock
            clock._in_transit -= frames
            clock.poke()

    def close(self) -> None:
        """The connection ended: what it still carried will never be handled."""
        clock = self._clock
        clock._transits.pop(self.key, None)
        if self.shared:
            self.shared = False
            clock._in_transit -= self.count
            self.count = 0
            clock.poke()


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
            clock.poke()
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
            clock._woken -= 1
            clock.poke()
        return bool(self._scope.__exit__(exc_type, exc, tb))
