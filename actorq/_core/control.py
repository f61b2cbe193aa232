"""Control: the transitions that come from outside a job's own run.

The timers' work (delayed jobs promoted, expired locks stalled, finished jobs removed when
their retention runs out) and the stalls of a restart; count-based retention; updates of a
job's data, progress and logs; and the commands on jobs and queues: cancel, retry, remove,
promote, change delay or priority, obliterate, pause, resume, drain, clean. Separate from
`state`, which keeps the transitions a job's run drives; each of these is a check and a few
`_change` calls, then `_settle` for what they set in motion.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

from .._exceptions import IllegalTransitionError, InvalidOptionError
from . import events as ev
from .limits import Limiter
from .records import JobRecord, Retention
from .states import ACTIVE_OR_IDLE, TERMINAL, JobState

if TYPE_CHECKING:
    from .locks import LockIndex
    from .state import QueueState
    from .timed import TimedIndex

W, D, A = JobState.WAITING, JobState.DELAYED, JobState.ACTIVE
C, F, X = JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED

#: BullMQ's reason, kept word for word so code matching on it keeps working.
STALLED_LIMIT: Final = "job stalled more than allowable limit"
#: Why a job stalled, for the log: its lock expired, or the runtime stopped while it ran.
LOCK_STALL: Final = "its lock expired"
RESTART_STALL: Final = "it was active when the runtime last stopped"


class Control:
    """`CoreState`'s timers, retention, updates and control commands (a mixin: `CoreState`
    provides the state)."""

    # Provided by `CoreState`; declared here for mypy.
    jobs: dict[int, JobRecord]
    queues: dict[str, QueueState]
    delayed: TimedIndex
    locks: LockIndex
    expiries: TimedIndex
    due_bound: float
    held: dict[str, float]
    events: list[ev.Event] | None
    finished: list[JobRecord]
    aborts: list[tuple[int, str]]
    stalls: list[tuple[JobRecord, str | None, str]]

    if TYPE_CHECKING:

        def get(self, job_id: int) -> JobRecord: ...
        def queue(self, name: str) -> QueueState: ...
        def next_due(self) -> float | None: ...
        def select(
            self,
            queue: str,
            states: Iterable[JobState] | None = None,
            name: str | None = None,
            tags: Sequence[str] = (),
            tag_mode: str = "all",
        ) -> Iterator[JobRecord]: ...
        def _change(self, rec: JobRecord, changes: dict[str, Any], command: str) -> None: ...
        def _after_failed(self, rec: JobRecord) -> None: ...
        def _remove(self, rec: JobRecord) -> None: ...
        def _set_queue(self, qs: QueueState, **settings: Any) -> None: ...
        def _settle(self, now: float) -> None: ...
        def _next_order(self, lifo: bool) -> int: ...

    # ------------------------------------------------------------------ timers

    def run_timers(self, now: float) -> None:
        """Every timer transition due at `now`: delayed jobs promoted, expired locks
        stalled, expired retention removed. Before `due_bound`, a single comparison."""
        if now < self.due_bound:
            return
        self.promote_due(now)
        self.expire_locks(now)
        self.expire_retention(now)
        if self.held:  # rate limits lifted: the batch's dispatch tries those queues again
            for queue in [q for q, until in self.held.items() if until <= now]:
                del self.held[queue]
        due = self.next_due()
        self.due_bound = math.inf if due is None else due

    def promote_due(self, now: float) -> int:
        """Move every delayed job whose time has come to waiting."""
        moved = 0
        delayed = self.delayed
        while delayed and delayed[0][0] <= now:
            self._promote(self.jobs[delayed[0][1]])
            moved += 1
        return moved

    def _promote(self, rec: JobRecord) -> None:
        self._change(rec, {"state": W}, "promote")
        if self.events is not None:
            self.events.append(ev.JobWaiting(rec.id, rec.queue, rec.name, D))

    def expire_locks(self, now: float) -> int:
        """Every job whose lock expired by `now` stalls: back to waiting, or failed."""
        stalled = 0
        earliest = self.locks.earliest
        while (lock := earliest()) is not None and lock[0] <= now:
            self._stall(self.jobs[lock[1]], now)
            stalled += 1
        if stalled:
            self._settle(now)
        return stalled

    def stall_all_active(self, now: float, *, timed: bool = True) -> int:
        """After a restart, every job that was active stalled: its holder is gone (with
        `timed` False, only those under an untimed lock: the others stall at its expiry)."""
        held = [
            rec
            for rec in self.jobs.values()
            if rec.state is A and (timed or rec.lock_expires_at is None)
        ]
        for rec in held:
            self._stall(rec, now, RESTART_STALL)
        self._settle(now)
        return len(held)

    def _stall(self, rec: JobRecord, now: float, why: str = LOCK_STALL) -> None:
        self.stalls.append((rec, rec.lock_token, why))
        count = rec.stalled_counter + 1
        if count > rec.max_stalled_count:
            self._change(
                rec,
                {
                    "state": F,
                    "stalled_counter": count,
                    "attempts_made": rec.attempts_made + 1,
                    "failed_reason": STALLED_LIMIT,
                    "finished_at": now,
                    "lock_token": None,
                    "lock_expires_at": None,
                },
                "stall",
            )
            self._after_failed(rec)
            return
        self._change(
            rec,
            {"state": W, "stalled_counter": count, "lock_token": None, "lock_expires_at": None},
            "stall",
        )
        if self.events is not None:
            self.events.append(ev.JobStalled(rec.id, rec.queue, rec.name, count))

    # ------------------------------------------------------------------ retention

    def _retain(self, rec: JobRecord, keep: Retention) -> None:
        if keep.keeps_all:
            return
        if keep.count == 0:
            self._remove(rec)
            return
        if keep.count is not None:
            qs = self.queues[rec.queue]
            state = rec.state
            line = qs.completed if state is C else qs.failed
            while qs.counts[state] > keep.count:
                oldest = line.pop_oldest(self.jobs)
                if oldest is None:
                    break
                self._remove(oldest)

    def expire_retention(self, now: float) -> int:
        """Remove finished jobs whose `age` retention has run out."""
        removed = 0
        while self.expiries and self.expiries[0][0] <= now:
            self._remove(self.jobs[self.expiries[0][1]])
            removed += 1
        return removed

    # ------------------------------------------------------------------ updates

    def update_data(self, job_id: int, data: bytes) -> JobRecord:
        rec = self.get(job_id)
        self._change(rec, {"data": data}, "update_data")
        return rec

    def update_progress(self, job_id: int, progress: bytes) -> JobRecord:
        rec = self.get(job_id)
        self._change(rec, {"progress": progress}, "update_progress")
        if self.events is not None:
            self.events.append(ev.JobProgress(rec.id, rec.queue, rec.name, progress))
        return rec

    def add_log(self, job_id: int, line: str, keep: int | None = None) -> int:
        rec = self.get(job_id)
        logs = (*rec.logs, line)
        if keep is not None:
            logs = logs[-keep:] if keep > 0 else ()
        self._change(rec, {"logs": logs}, "log")
        return len(logs)

    # ------------------------------------------------------------------ queue control

    def cancel(self, job_id: int, now: float, reason: str | None = None) -> JobRecord:
        """Cancel a job that has not finished; its blocked dependents and its open children
        are cancelled too, transitively, each with a reason naming the cause."""
        rec = self.get(job_id)
        if rec.state not in ACTIVE_OR_IDLE:
            raise IllegalTransitionError(job_id, rec.state, "cancel")
        self._cancel(rec, now, reason)
        self._settle(now)
        return rec

    def _cancel(self, rec: JobRecord, now: float, reason: str | None) -> None:
        if rec.state is A and rec.lock_token is not None:
            self.aborts.append((rec.id, rec.lock_token))
        self._change(
            rec,
            {
                "state": X,
                "finished_at": now,
                "failed_reason": reason,
                "lock_token": None,
                "lock_expires_at": None,
            },
            "cancel",
        )
        if self.events is not None:
            self.events.append(ev.JobCancelled(rec.id, rec.queue, rec.name, reason))
        self.finished.append(rec)

    def retry(self, job_id: int, now: float, *, reset_attempts: bool = False) -> JobRecord:
        """Run a finished job again (BullMQ's `job.retry`); counters kept unless reset."""
        rec = self.get(job_id)
        if rec.state not in TERMINAL:
            raise IllegalTransitionError(job_id, rec.state, "retry", "only finished jobs retry")
        changes: dict[str, Any] = {
            "state": W,
            "finished_at": None,
            "failed_reason": None,
            "return_value": None,
            "run_at": None,
        }
        if reset_attempts:
            changes["attempts_made"] = 0
            changes["attempts_started"] = 0
        previous = rec.state
        self._change(rec, changes, "retry")
        if self.events is not None:
            self.events.append(ev.JobWaiting(rec.id, rec.queue, rec.name, previous))
        self._settle(now)
        return rec

    def remove(self, job_id: int, now: float) -> JobRecord:
        """Remove a job that is not active. Removing an unfinished job cancels its blocked
        dependents and its open children (transitively), as cancelling it would."""
        rec = self.get(job_id)
        if rec.state is A:
            raise IllegalTransitionError(
                job_id, rec.state, "remove", "an active job is held by a worker; cancel it first"
            )
        self._remove(rec)
        self._settle(now)
        return rec

    def promote(self, job_id: int) -> JobRecord:
        """Run a delayed job now (BullMQ's `job.promote`): it goes to waiting, in line as
        if its time had come."""
        rec = self.get(job_id)
        if rec.state is not D:
            raise IllegalTransitionError(job_id, rec.state, "promote", "only delayed jobs")
        self._promote(rec)
        return rec

    def promote_jobs(self, queue: str) -> int:
        """Promote every delayed job of the queue, the soonest due first."""
        jobs = self.jobs
        due = [jobs[job_id] for _, job_id in self.delayed if jobs[job_id].queue == queue]
        for rec in due:
            self._promote(rec)
        return len(due)

    def change_delay(self, job_id: int, delay: float, now: float) -> JobRecord:
        """A delayed job comes due `delay` seconds from now instead (BullMQ's
        `job.changeDelay`)."""
        rec = self.get(job_id)
        if rec.state is not D:
            raise IllegalTransitionError(job_id, rec.state, "change_delay", "only delayed jobs")
        run_at = now + delay
        self._change(rec, {"run_at": run_at}, "change_delay")
        if self.events is not None:
            self.events.append(ev.JobDelayed(rec.id, rec.queue, rec.name, run_at))
        return rec

    def change_priority(self, job_id: int, priority: int, lifo: bool) -> JobRecord:
        """Give a job another priority (BullMQ's `job.changePriority`). A waiting job takes
        its new place in line at once: last among the jobs of that priority, or first with
        `lifo`; a job in another state keeps it for when it next waits."""
        rec = self.get(job_id)
        changes: dict[str, Any] = {"priority": priority}
        if rec.state is W:
            changes["order"] = self._next_order(lifo)
        self._change(rec, changes, "change_priority")
        return rec

    def obliterate(self, queue: str, now: float, *, force: bool) -> int:
        """Remove every job of the queue, whatever its state (BullMQ's `obliterate`), and
        resume it if paused: how many. Refused while a job is active, unless `force`: then
        the active ones are cancelled (their processors with them) and removed too."""
        doomed = list(self.select(queue))
        active = [rec for rec in doomed if rec.state is A]
        if active and not force:
            raise IllegalTransitionError(
                active[0].id,
                A,
                "obliterate",
                f"queue {queue!r} has {len(active)} active job(s); pass force=True",
            )
        for rec in active:
            self._cancel(rec, now, "the queue was obliterated")
        for rec in doomed:
            if rec.id in self.jobs:  # a cascade may have taken it already
                self._remove(rec)
        qs = self.queue(queue)
        if qs.paused:
            self._set_queue(qs, paused=False)
        self._settle(now)
        return len(doomed)

    def set_global_concurrency(self, queue: str, concurrency: int | None) -> None:
        """Cap the queue's active jobs across every worker (None: no cap). Lowering the cap
        below the jobs running now stops nothing: no more start until they are under it."""
        qs = self.queue(queue)
        if qs.concurrency != concurrency:
            self._set_queue(qs, concurrency=concurrency)

    def set_limiter(self, queue: str, max_jobs: int, duration: float) -> None:
        """At most `max_jobs` of the queue's jobs start per `duration` seconds (a worker's
        `limiter`; the last one set wins). A window open keeps its count."""
        qs = self.queue(queue)
        limiter = qs.limiter
        if limiter is None:
            limiter = Limiter()
        elif (limiter.max_jobs, limiter.duration) == (max_jobs, duration):
            return
        limiter.max_jobs, limiter.duration = max_jobs, duration
        self._set_queue(qs, limiter=limiter)

    def rate_limit(self, queue: str, until: float) -> None:
        """No job of the queue starts before `until` (BullMQ's ``worker.rateLimit``)."""
        qs = self.queue(queue)
        limiter = qs.limiter if qs.limiter is not None else Limiter()
        limiter.until = max(limiter.until, until)
        self._set_queue(qs, limiter=limiter)

    def rate_limit_ttl(self, queue: str, now: float) -> float:
        """How long the queue's rate limit holds its jobs from now (0: it does not)."""
        qs = self.queues.get(queue)
        if qs is None or qs.limiter is None:
            return 0.0
        return max(0.0, qs.limiter.blocked_until(now) - now)

    def pause(self, queue: str) -> None:
        qs = self.queue(queue)
        if not qs.paused:
            self._set_queue(qs, paused=True)
            if self.events is not None:
                self.events.append(ev.QueuePaused(queue))

    def resume(self, queue: str) -> None:
        qs = self.queue(queue)
        if qs.paused:
            self._set_queue(qs, paused=False)
            if self.events is not None:
                self.events.append(ev.QueueResumed(queue))

    def drain(self, queue: str, now: float, *, delayed: bool = False) -> int:
        """Remove the queue's waiting jobs (and delayed ones when asked), as BullMQ does."""
        states = {W, D} if delayed else {W}
        doomed = list(self.select(queue, states))
        for rec in doomed:
            if rec.id in self.jobs:  # a cascade may have taken it already
                self._remove(rec)
        self._settle(now)
        return len(doomed)

    def clean(
        self, queue: str, grace: float, limit: int | None, state: JobState, now: float
    ) -> int:
        """Remove up to `limit` jobs in `state` older than `grace` seconds (BullMQ's clean).

        Age is measured from `finished_at` for finished jobs and `created_at` otherwise.
        """
        if state is A:
            raise InvalidOptionError("state", state.value, "active jobs cannot be cleaned")
        removed = 0
        for rec in list(self.select(queue, [state])):
            if limit is not None and removed >= limit:
                break
            stamp = rec.finished_at if rec.finished_at is not None else rec.created_at
            if stamp <= now - grace and rec.id in self.jobs:
                self._remove(rec)
                removed += 1
        self._settle(now)
        return removed


__all__ = ["STALLED_LIMIT", "Control"]
