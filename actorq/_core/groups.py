"""Groups (BullMQ Pro's): a queue's jobs with a ``group`` are served round-robin by group.

Each group has its own waiting line (priority first, then order, as the queue's line), and
the groups that may have a job to give wait their turn in a rotation. A take visits the
rotation's head: it takes that group's next job and sends the group to the back, so a group
with 10,000 jobs waiting and one with 10 alternate. The queue's ungrouped jobs are one more
participant of the rotation (always in it, as ``""``: no group has that name), served from
the queue's own line: with no grouped job waiting, a take is what it always was.

A group leaves the rotation when it has nothing to give: no job waiting, as many active as
`concurrency` (``group_concurrency``), or its rate limit (``group_limiter``, a `Limiter` per
group) spent for the window. It does not leave eagerly: the take that meets it at the head
drops it (each visit costs O(1), and each drop pays for an entry's earlier append). It comes
back when that changes: a job of it starts waiting, one of its active jobs ends below the cap,
its window opens (a timer: the core holds the queue until the earliest such time).

Counts are kept per group (waiting, active), so nothing ever scans the groups or their jobs.
The rotation is an index with no record of its own: a restart starts it afresh (each group
joins as its first job is replayed); the limits' windows are journaled, as the queue's are.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from .limits import Limiter
from .records import JobRecord
from .waiting import WaitingLine

if TYPE_CHECKING:
    from .commands import Change
    from .state import QueueState

#: The rotation's name for the queue's ungrouped jobs (a group name is never empty).
UNGROUPED = ""


class Groups:
    """The grouped waiting jobs of one queue, the rotation, and the per-group limits."""

    __slots__ = (
        "active",
        "concurrency",
        "held",
        "held_until",
        "limit",
        "limiters",
        "lines",
        "queued",
        "rotation",
        "touched",
        "ungrouped",
        "waiting",
    )

    def __init__(self, ungrouped: WaitingLine) -> None:
        #: The queue's own line, of its ungrouped jobs: one participant of the rotation.
        self.ungrouped = ungrouped
        self.lines: dict[str, WaitingLine] = {}
        #: Live waiting jobs per group (its line also holds stale entries).
        self.waiting: dict[str, int] = {}
        self.active: dict[str, int] = {}
        self.rotation: deque[str] = deque((UNGROUPED,))
        #: The groups in the rotation (the ungrouped participant aside).
        self.queued: set[str] = set()
        #: At most this many active jobs per group (None: no cap).
        self.concurrency: int | None = None
        #: (max, duration) of each group's rate limit (None: none).
        self.limit: tuple[int, float] | None = None
        self.limiters: dict[str, Limiter] = {}
        #: Groups whose window is spent, until it opens: a heap, and the live entries.
        self.held: list[tuple[float, str]] = []
        self.held_until: dict[str, float] = {}
        #: Groups whose window a take changed (their records are journaled after it).
        self.touched: set[str] = set()

    # ------------------------------------------------------------------ upkeep

    def push(self, rec: JobRecord, back: bool = False) -> None:
        group = rec.group
        assert group is not None
        line = self.lines.get(group)
        if line is None:
            line = self.lines[group] = WaitingLine()
        if back:
            line.push_back(rec)
        else:
            line.push(rec)
        self.waiting[group] = self.waiting.get(group, 0) + 1
        self.offer(group)

    def extend(self, group: str, priority: int, entries: list[tuple[int, int]]) -> None:
        """A run of ``(order, id)`` entries of one priority joins the group's line (see
        `WaitingLine.extend`): the jobs of an ``add_bulk`` sharing their options."""
        line = self.lines.get(group)
        if line is None:
            line = self.lines[group] = WaitingLine()
        line.extend(priority, entries)
        self.waiting[group] = self.waiting.get(group, 0) + len(entries)
        self.offer(group)

    def left(self, rec: JobRecord, jobs: Mapping[int, JobRecord]) -> None:
        """A job of a group left waiting other than by a take (its entry goes stale)."""
        group = rec.group
        assert group is not None
        live = self.waiting[group] = self.waiting[group] - 1
        self.lines[group].maybe_compact(jobs, live)

    def started(self, group: str) -> None:
        """A job of `group` became active (`upkeep` does it inline on the hot path)."""
        self.active[group] = self.active.get(group, 0) + 1

    def offer(self, group: str) -> None:
        """Put `group` in the rotation if it has a job to give and is not there."""
        if group not in self.queued and self._can_give(group):
            self.queued.add(group)
            self.rotation.append(group)

    def _can_give(self, group: str) -> bool:
        cap = self.concurrency
        return (
            self.waiting.get(group, 0) > 0
            and (cap is None or self.active.get(group, 0) < cap)
            and group not in self.held_until
        )

    # ------------------------------------------------------------------ a take

    def popper(self, now: float) -> Callable[[Mapping[int, JobRecord]], JobRecord | None]:
        """`pop` at `now`, taking what `WaitingLine.pop` takes (a take's loop calls either)."""
        return partial(self.pop, now=now)

    def pop(self, jobs: Mapping[int, JobRecord], now: float) -> JobRecord | None:
        """The next job by turn: the head group's next job (the group to the back), or
        None when no participant has one to give."""
        if self.held and self.held[0][0] <= now:
            self._release(now)
        rotation = self.rotation
        waiting = self.waiting
        cap = self.concurrency
        misses = 0
        while True:
            group = rotation[0]
            if group == UNGROUPED:
                rotation.rotate(-1)
                rec = self.ungrouped.pop(jobs)
                if rec is not None:
                    return rec
                misses += 1
                if misses == 2 or len(rotation) == 1:
                    return None
                continue
            if (
                not waiting[group]
                or (cap is not None and self.active.get(group, 0) >= cap)
                or group in self.held_until
                or (self.limit is not None and not self._window(group, now))
            ):
                rotation.popleft()
                self.queued.discard(group)
                if len(rotation) == 1 and misses:
                    return None
                continue
            rec = self.lines[group].pop(jobs)
            assert rec is not None, f"group {group!r} counts a job waiting that its line lacks"
            waiting[group] -= 1
            rotation.rotate(-1)
            if self.limit is not None:
                limiter = self.limiters[group]
                limiter.started(1, now)
                self.touched.add(group)
                if limiter.allowance(now) == 0:
                    self._hold(group, limiter.blocked_until(now))
            return rec

    def _window(self, group: str, now: float) -> bool:
        """Whether the group's rate limit lets a job start now (holding it if not)."""
        assert self.limit is not None
        limiter = self.limiters.get(group)
        if limiter is None:
            limiter = self.limiters[group] = Limiter(*self.limit)
        if limiter.allowance(now) == 0:
            self._hold(group, limiter.blocked_until(now))
            return False
        return True

    def _hold(self, group: str, until: float) -> None:
        self.held_until[group] = until
        heapq.heappush(self.held, (until, group))

    def _release(self, now: float) -> None:
        held = self.held
        while held and held[0][0] <= now:
            until, group = heapq.heappop(held)
            if self.held_until.get(group) == until:
                del self.held_until[group]
                self.offer(group)

    def next_release(self) -> float | None:
        """When the earliest held group's window opens (None: none is held)."""
        held = self.held
        while held and self.held_until.get(held[0][1]) != held[0][0]:
            heapq.heappop(held)
        return held[0][0] if held else None

    # ------------------------------------------------------------------ settings, records

    def configure(self, concurrency: int | None, limit: tuple[int, float] | None) -> None:
        self.concurrency = concurrency
        self.limit = limit
        for limiter in self.limiters.values():
            if limit is not None:
                limiter.max_jobs, limiter.duration = limit
        if limit is None:
            self.limiters.clear()
            self.held.clear()
            self.held_until.clear()
        for group in list(self.waiting):  # a lifted cap lets capped groups take again
            self.offer(group)

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.concurrency is not None:
            out["group_concurrency"] = self.concurrency
        if self.limit is not None:
            out["group_limiter"] = list(self.limit)
        return out

    def window_changes(self, queue: str) -> list[tuple[Any, ...]]:
        """A record per group limiter with a window open (a snapshot's)."""
        return [
            ("group", queue, group, limiter.fields())
            for group, limiter in sorted(self.limiters.items())
            if limiter.window_end is not None
        ]

    def clear_lines(self) -> None:
        """Forget the lines and the rotation (rebuilt from the records); settings stay."""
        self.lines.clear()
        self.waiting.clear()
        self.rotation = deque((UNGROUPED,))
        self.queued.clear()

    def live(self, jobs: Mapping[int, JobRecord]) -> Iterator[JobRecord]:
        """Live waiting jobs, group by group (by name), each in its dispatch order."""
        for group in sorted(self.lines):
            yield from self.lines[group].live(jobs)

    def view(self, jobs: Mapping[int, JobRecord]) -> dict[str, Any]:
        """The lines and counts as plain values (groups with none left out), to compare
        with a rebuild; empty when no group has a job waiting or active."""
        waiting = {g: [rec.id for rec in line.live(jobs)] for g, line in sorted(self.lines.items())}
        out = {
            "waiting": {g: ids for g, ids in waiting.items() if ids},
            "counts": {g: n for g, n in sorted(self.waiting.items()) if n},
            "active": {g: n for g, n in sorted(self.active.items()) if n},
        }
        return out if any(out.values()) else {}


def waiting_live(qs: QueueState, jobs: Mapping[int, JobRecord]) -> Iterator[JobRecord]:
    """A queue's live waiting jobs: its ungrouped ones in dispatch order, then its groups'."""
    yield from qs.waiting.live(jobs)
    if qs.groups is not None:
        yield from qs.groups.live(jobs)


class GroupControl:
    """`CoreState`'s group settings and records (a mixin: `CoreState` provides the state)."""

    # Provided by `CoreState`; declared here for mypy.
    queues: dict[str, QueueState]
    held: dict[str, float]
    changes: list[Change] | None

    if TYPE_CHECKING:

        def queue(self, name: str) -> QueueState: ...
        def _hold(self, queue: str, until: float) -> None: ...
        def _set_queue(self, qs: QueueState, **settings: Any) -> None: ...

    def grouped(self, qs: QueueState) -> Groups:
        groups = qs.groups
        if groups is None:
            groups = qs.groups = Groups(qs.waiting)
        return groups

    def set_group_concurrency(self, queue: str, concurrency: int | None) -> None:
        """At most `concurrency` active jobs per group of `queue` (a worker's
        ``group_concurrency``; the last one set wins)."""
        qs = self.queue(queue)
        groups = self.grouped(qs)
        if groups.concurrency != concurrency:
            groups.configure(concurrency, groups.limit)
            self._set_queue(qs)

    def set_group_limiter(self, queue: str, limit: tuple[int, float] | None) -> None:
        """At most ``limit[0]`` starts per group of `queue` per ``limit[1]`` seconds (a
        worker's ``group_limiter``; the last one set wins). Open windows keep their count."""
        qs = self.queue(queue)
        groups = self.grouped(qs)
        if groups.limit != limit:
            groups.configure(groups.concurrency, limit)
            self._set_queue(qs)

    def _group_windows(self, qs: QueueState, groups: Groups) -> None:
        """After a take: journal the windows it changed, and hold the queue until the
        earliest held group's window opens (the timer tries the queue again then)."""
        if self.changes is not None:
            for group in sorted(groups.touched):
                fields = groups.limiters[group].fields()
                self.changes.append(("group", qs.name, group, fields))
        groups.touched.clear()
        until = groups.next_release()
        if until is not None:
            self._hold(qs.name, min(until, self.held.get(qs.name, until)))

    def replay_group(self, change: Change) -> None:
        groups = self.grouped(self.queue(change[1]))
        groups.limiters[change[2]] = Limiter.from_fields(list(change[3]))

    def configure_groups(self, qs: QueueState, fields: Mapping[str, Any]) -> None:
        """A queue record replayed: its group settings (absent: none)."""
        concurrency = fields.get("group_concurrency")
        raw = fields.get("group_limiter")
        limit = None if raw is None else (raw[0], raw[1])
        groups = qs.groups
        if groups is None and concurrency is None and limit is None:
            return
        groups = self.grouped(qs)
        if (groups.concurrency, groups.limit) != (concurrency, limit):
            groups.configure(concurrency, limit)


__all__ = ["UNGROUPED", "GroupControl", "Groups", "waiting_live"]
