"""Job schedulers (BullMQ's `upsertJobScheduler`): a factory of jobs on a schedule.

A scheduler holds at most one *pending* job (waiting or delayed, not yet started). Its jobs
are created through the one admission path (`add`) and move through the one lifecycle; the
only thing this module adds is *when* the next one is created: the moment the pending job
starts (is taken: it becomes active), the next is added, delayed to the schedule's next run
time after that start, as BullMQ does ("the scheduler will only generate new jobs when the
last job begins processing").

Pure like the rest of the core: no clock (``now`` comes in), and no calendar: a cron
pattern's next run time is asked of `cron_next`, a pure function of (pattern, time zone,
instant) registered from outside the core (`actorq._schedule`, over the optional cron
library). An ``every`` schedule is arithmetic on a grid: ``anchor + k * every``.

Journal: each change of a scheduler is one ``("scheduler", queue, id, fields)`` record
holding its whole state (the next run time included), and a removal is
``("scheduler-del", queue, id)``. Replay sets what the records say and never recomputes a
run time, so a replay is exact whatever the cron library's version.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import attrs

from .records import JobRecord, JobSpec
from .states import JobState

if TYPE_CHECKING:
    from .commands import Change

#: ``(pattern, tz, after) -> the first run time strictly after `after`, or None``.
CronNext = Callable[[str, str | None, float], float | None]

_cron: list[CronNext] = []

#: States in which a scheduler's job has not started yet: it is the one pending job.
PENDING_STATES: Final = frozenset(
    {JobState.WAITING, JobState.DELAYED, JobState.BLOCKED, JobState.WAITING_CHILDREN}
)


def set_cron(fn: CronNext) -> None:
    """Register the cron calculator (done by `actorq._schedule` when actorq is imported)."""
    _cron[:] = [fn]


def cron_next(pattern: str, tz: str | None, after: float) -> float | None:
    if not _cron:  # pragma: no cover - actorq._schedule registers it on import
        raise RuntimeError("no cron calculator registered (import actorq)")
    return _cron[0](pattern, tz, after)


@attrs.define(slots=True, eq=False)
class SchedulerRecord:
    """One scheduler as the core holds it; its fields are its journal record."""

    id: str
    queue: str
    template: JobSpec
    every: float | None = None
    pattern: str | None = None
    tz: str | None = None
    start_at: float | None = None
    end_at: float | None = None
    limit: int | None = None
    #: Jobs produced so far (the pending one included).
    iterations: int = 0
    #: The run time of the pending job, None when the schedule has ended.
    next: float | None = None
    #: The pending job (not yet started), None when there is none.
    job_id: int | None = None
    created_at: float = 0.0

    def fields(self) -> dict[str, Any]:
        return attrs.asdict(self, recurse=False)

    def after(self, t: float) -> float | None:
        """The first run time of the schedule strictly after `t` (None: there is none)."""
        if self.every is not None:
            anchor = 0.0 if self.start_at is None else self.start_at
            if t < anchor:
                return anchor
            return anchor + (math.floor((t - anchor) / self.every) + 1) * self.every
        assert self.pattern is not None
        return cron_next(self.pattern, self.tz, t)

    def ended(self, run_at: float | None) -> bool:
        return (
            run_at is None
            or (self.limit is not None and self.iterations >= self.limit)
            or (self.end_at is not None and run_at > self.end_at)
        )


class Schedulers:
    """`CoreState`'s job schedulers (a mixin: `CoreState` provides the state)."""

    # Provided by `CoreState`; declared here for mypy.
    jobs: dict[int, JobRecord]
    schedulers: dict[tuple[str, str], SchedulerRecord]
    changes: list[Change] | None

    if TYPE_CHECKING:

        def add(self, specs: Sequence[JobSpec], now: float) -> list[tuple[JobRecord, bool]]: ...
        def remove(self, job_id: int, now: float) -> JobRecord: ...

    def upsert_scheduler(
        self, sched: SchedulerRecord, immediately: bool, now: float
    ) -> JobRecord | None:
        """Create or replace the scheduler `sched` (validated, iterations 0, no job yet):
        the old one's pending job is removed, and the first job of the new schedule added.
        Returns that job (None when the schedule has no run left)."""
        old = self.schedulers.get((sched.queue, sched.id))
        if immediately:
            first: float | None = now if sched.start_at is None else max(now, sched.start_at)
        elif sched.start_at is not None and sched.start_at > now:
            # A run exactly at start_at counts: ask for the first run after just before it.
            first = sched.start_at if sched.every is not None else sched.after(sched.start_at - 1)
        else:
            first = sched.after(now)
        if first is not None and sched.start_at is not None and first < sched.start_at:
            first = sched.after(sched.start_at)
        if old is not None:
            self._drop_pending(old, now)
        sched.created_at = now
        self.schedulers[(sched.queue, sched.id)] = sched
        return self._produce(sched, first, now)

    def remove_scheduler(self, queue: str, scheduler_id: str, now: float) -> bool:
        sched = self.schedulers.pop((queue, scheduler_id), None)
        if sched is None:
            return False
        self._drop_pending(sched, now)
        if self.changes is not None:
            self.changes.append(("scheduler-del", queue, scheduler_id))
        return True

    def _drop_pending(self, sched: SchedulerRecord, now: float) -> None:
        job_id = sched.job_id
        if job_id is None:
            return
        rec = self.jobs.get(job_id)
        if rec is not None and rec.attempts_started == 0 and rec.state in PENDING_STATES:
            self.remove(job_id, now)

    def _produce(
        self, sched: SchedulerRecord, run_at: float | None, now: float
    ) -> JobRecord | None:
        """Add the scheduler's next job at `run_at` (through `add`), or end the schedule."""
        rec = None
        if sched.ended(run_at):
            sched.next = sched.job_id = None
        else:
            assert run_at is not None
            spec = attrs.evolve(
                sched.template, run_at=run_at if run_at > now else None, scheduler_id=sched.id
            )
            [(rec, _created)] = self.add((spec,), now)
            sched.iterations += 1
            sched.next = run_at
            sched.job_id = rec.id
        if self.changes is not None:
            self.changes.append(("scheduler", sched.queue, sched.id, sched.fields()))
        return rec

    def _scheduled_started(self, taken: list[JobRecord], now: float) -> None:
        """Jobs just taken: each that is its scheduler's pending job makes the next."""
        schedulers = self.schedulers
        for rec in taken:
            sid = rec.scheduler_id
            if sid is None:
                continue
            sched = schedulers.get((rec.queue, sid))
            if sched is None or sched.job_id != rec.id:
                continue
            due = sched.next
            # Strictly after both the start and the run time: never a backlog of missed
            # runs (a job that starts late, e.g. after a restart, skips what it missed).
            self._produce(sched, sched.after(now if due is None else max(now, due)), now)

    def replay_scheduler(self, change: Change) -> None:
        if change[0] == "scheduler":
            self.schedulers[(change[1], change[2])] = SchedulerRecord(**change[3])
        else:
            self.schedulers.pop((change[1], change[2]), None)

    def scheduler_changes(self) -> list[Change]:
        return [
            ("scheduler", s.queue, s.id, s.fields()) for _key, s in sorted(self.schedulers.items())
        ]


__all__ = ["PENDING_STATES", "SchedulerRecord", "Schedulers", "cron_next", "set_cron"]
