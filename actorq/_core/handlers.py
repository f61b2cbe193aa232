"""The core's one entry: which transition or query each command runs.

`CoreState.handle(command, now)` looks the command's type up in `HANDLERS` and runs the
function found there. Each function unpacks its command and calls the transition (or reads
the state, for a `Query`); the transitions themselves live in the mixins of `CoreState`,
and every state change among them goes through `_change` and the lifecycle table.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice
from typing import TYPE_CHECKING, Any, Final

from .._exceptions import ActorqError
from . import commands as c
from .groups import waiting_live
from .locks import held_by
from .settings_view import groups_view, rate_limit_view
from .states import TERMINAL, JobState

if TYPE_CHECKING:
    from .records import JobRecord
    from .state import CoreState

Handler = Callable[["CoreState", Any, float], Any]

W, A, B, C = JobState.WAITING, JobState.ACTIVE, JobState.BLOCKED, JobState.COMPLETED


def _add(core: CoreState, cmd: c.Add, now: float) -> Any:
    return core.add(cmd.specs, now, cmd.names, cmd.datas)


def _take(core: CoreState, cmd: c.Take, now: float) -> list[JobRecord]:
    if not core.dispatching:
        return []
    duration = cmd.lock_duration
    return core.take(
        cmd.queue,
        cmd.n,
        now,
        cmd.token,
        None if duration is None else now + duration,
        cmd.max_stalled_count,
    )


def _then(core: CoreState, then: c.Take | None, now: float) -> JobRecord | None:
    if then is None:
        return None
    jobs = _take(core, then, now)
    return jobs[0] if jobs else None


def _complete(core: CoreState, cmd: c.Complete, now: float) -> JobRecord | None:
    core.complete(cmd.job_id, cmd.token, cmd.value, now)
    return _then(core, cmd.then, now)


def _fail(core: CoreState, cmd: c.Fail, now: float) -> JobRecord | None:
    core.fail(
        cmd.job_id, cmd.token, cmd.reason, cmd.stacktrace, now, unrecoverable=cmd.unrecoverable
    )
    return _then(core, cmd.then, now)


def _move_to_delayed(core: CoreState, cmd: c.MoveToDelayed, now: float) -> None:
    run_at = cmd.run_at
    if run_at is None and cmd.delay:
        run_at = now + cmd.delay
    core.move_to_delayed(cmd.job_id, cmd.token, run_at, cmd.data, now)


def _report(core: CoreState, cmd: c.Report, now: float) -> None:
    token = cmd.token
    complete = core.complete
    for outcome in cmd.outcomes:
        try:
            if isinstance(outcome, c.Command):
                HANDLERS[type(outcome)](core, outcome, now)
            else:
                complete(outcome[0], token, outcome[1], now)
        except ActorqError:
            # The job left active through a command while its processor ran (cancelled,
            # removed, stepped by hand): the outcome has nothing left to end.
            continue


def _extend_locks(core: CoreState, cmd: c.ExtendLocks, now: float) -> tuple[int, ...]:
    renewed = []
    until = now + cmd.duration
    for job_id in cmd.job_ids:
        try:
            core.extend_lock(job_id, cmd.token, until, now)
        except ActorqError:
            continue  # stalled, cancelled or finished meanwhile: no longer this worker's
        renewed.append(job_id)
    return tuple(renewed)


def _fail_held(core: CoreState, cmd: c.FailHeld, now: float) -> int:
    held = held_by(core.locks, core.jobs, cmd.tokens, now)
    for job_id in held:
        token = core.jobs[job_id].lock_token
        core.fail(job_id, token, cmd.reason, None, now)
    return len(held)


def children_view(rec: JobRecord) -> dict[str, Any]:
    """A parent's children by standing: ``processed`` {id: raw return value}, ``pending``
    [ids], ``failed`` {id: reason}, ``ignored`` {id: reason}."""
    out: dict[str, Any] = {"processed": {}, "pending": [], "failed": {}, "ignored": {}}
    for child_id, (status, payload) in sorted((rec.children or {}).items()):
        if status == "processed":
            out["processed"][child_id] = payload
        elif status in ("pending", "unresolved"):
            out["pending"].append(child_id)
        if status in ("failed", "continued", "unresolved"):
            out["failed"][child_id] = payload
        elif status == "ignored":
            out["ignored"][child_id] = payload
    return out


def _dependencies(core: CoreState, cmd: c.GetDependencies, now: float) -> dict[str, Any] | None:
    rec = core.jobs.get(cmd.job_id)
    if rec is None:
        return None
    out = children_view(rec)
    jobs = core.jobs
    out["unmet_job_ids"] = [
        d for d in rec.depends_on_job_ids if (p := jobs.get(d)) is not None and p.state is not C
    ]
    blocking: list[int] = []
    if rec.depends_on_tags and rec.state not in TERMINAL:
        holders = core.blocking.holder_ids(frozenset(rec.depends_on_tags))
        blocking = sorted(holders - {rec.id})
    out["blocking_job_ids"] = blocking
    return out


def _dependents(core: CoreState, cmd: c.GetDependents, now: float) -> dict[str, Any]:
    """From the relation index alone: the listing (kept while the jobs listing it exist, so
    a removed prerequisite still answers), those of them still waiting on it, and the
    registered barriers it holds, each with its waiters."""
    blocking = core.blocking
    job_id = cmd.job_id
    waiters = blocking.barrier_waiters
    held = sorted(
        (sorted(barrier), sorted(waiters[barrier] - {job_id}))
        for barrier in blocking.held.get(job_id, ())
        if barrier in waiters
    )
    return {
        "job_ids": sorted(blocking.listed_by.get(job_id, ())),
        "blocked_job_ids": sorted(blocking.dependents.get(job_id, ())),
        "barriers": [{"tags": t, "waiting_job_ids": w} for t, w in held if w],
    }


def _flow(core: CoreState, cmd: c.GetFlow, now: float) -> Any:
    jobs = core.jobs

    def build(node_id: int) -> Any:
        rec = jobs.get(node_id)
        if rec is None:
            return None
        kids = [build(child) for child in sorted(rec.children or {})]
        return (rec, [kid for kid in kids if kid is not None])

    return build(cmd.job_id)


def _page(core: CoreState, cmd: c.GetPage, now: float) -> tuple[list[JobRecord], int | None]:
    qs = core.queues.get(cmd.queue)
    if qs is None:
        return [], None
    state, name, tag, limit = cmd.state, cmd.name, cmd.tag, cmd.limit
    start = cmd.cursor or 0
    out: list[JobRecord] = []

    def wanted(rec: JobRecord) -> bool:
        return (name is None or rec.name == name) and (tag is None or tag in rec.tags)

    if cmd.sort is None and (state is W or state is C or state is JobState.FAILED):
        # An index of this queue and state: the cursor counts the live entries read so far.
        if state is W:
            source: Any = waiting_live(qs, core.jobs)
        else:
            source = (qs.completed if state is C else qs.failed).newest(core.jobs)
        position = start
        for rec in islice(source, start, start + cmd.budget):
            position += 1
            if wanted(rec):
                out.append(rec)
                if len(out) == limit:
                    break
        else:
            if position < start + cmd.budget:  # the index ended before the budget did
                return out, None
        return out, position
    jobs = core.jobs
    queue = cmd.queue
    if cmd.sort == "id":  # ids upward from the cursor (the oldest first), `budget` of them
        end = core.next_id
        job_id = _lowest_id(core) - 1 if cmd.cursor is None else cmd.cursor
        high = min(end, job_id + 1 + cmd.budget)
        while job_id + 1 < high and len(out) < limit:
            job_id += 1
            rec = jobs.get(job_id)
            if rec is not None and rec.state is state and rec.queue == queue and wanted(rec):
                out.append(rec)
        return out, (job_id if job_id + 1 < end else None)
    # Sorted newest first, or no index of its own: ids downward from the cursor, `budget` of
    # them.
    top = core.next_id if cmd.cursor is None else cmd.cursor
    low = max(1, top - cmd.budget)
    job_id = top
    while job_id > low and len(out) < limit:
        job_id -= 1
        rec = jobs.get(job_id)
        if rec is not None and rec.state is state and rec.queue == queue and wanted(rec):
            out.append(rec)
    return out, (job_id if job_id > 1 else None)


def _lowest_id(core: CoreState) -> int:
    """The lowest id a job holds now (`next_id` when none does). Ids are never reused, so
    the lowest can only rise: the search starts where the last one ended, and over the
    state's life passes each id once."""
    low, jobs, end = core.lowest_id, core.jobs, core.next_id
    while low < end and low not in jobs:
        low += 1
    core.lowest_id = low
    return low


def _is_paused(core: CoreState, cmd: c.IsPaused, now: float) -> bool:
    qs = core.queues.get(cmd.queue)
    return qs is not None and qs.paused


def _get_job(core: CoreState, cmd: c.GetJob, now: float) -> JobRecord | None:
    rec = core.jobs.get(cmd.job_id)
    if rec is None or (cmd.queue is not None and rec.queue != cmd.queue):
        return None
    return rec


def _counts(core: CoreState, cmd: c.GetCounts, now: float) -> Any:
    if cmd.queue is not None:
        return core.counts(cmd.queue)
    return {name: dict(qs.counts) for name, qs in sorted(core.queues.items())}


def _summary(core: CoreState, cmd: c.Summary, now: float) -> Any:
    return len(core.jobs), _counts(core, c.GetCounts(), now)


HANDLERS: Final[dict[type[c.Command], Handler]] = {
    c.Add: _add,
    c.Take: _take,
    c.Complete: _complete,
    c.Fail: _fail,
    c.MoveToDelayed: _move_to_delayed,
    c.Report: _report,
    c.ExtendLocks: _extend_locks,
    c.FailHeld: _fail_held,
    c.MoveToWaitingChildren: lambda core, cmd, now: core.move_to_waiting_children(
        cmd.job_id, cmd.token, now
    ),
    c.ExtendLock: lambda core, cmd, now: core.extend_lock(
        cmd.job_id, cmd.token, now + cmd.duration, now
    ),
    c.UpdateData: lambda core, cmd, now: core.update_data(cmd.job_id, cmd.data),
    c.UpdateProgress: lambda core, cmd, now: core.update_progress(cmd.job_id, cmd.progress),
    c.AddLog: lambda core, cmd, now: core.add_log(cmd.job_id, cmd.line),
    c.Cancel: lambda core, cmd, now: core.cancel(cmd.job_id, now, cmd.reason),
    c.Retry: lambda core, cmd, now: core.retry(cmd.job_id, now, reset_attempts=cmd.reset_attempts),
    c.Remove: lambda core, cmd, now: core.remove(cmd.job_id, now),
    c.Promote: lambda core, cmd, now: core.promote(cmd.job_id),
    c.PromoteJobs: lambda core, cmd, now: core.promote_jobs(cmd.queue),
    c.ChangeDelay: lambda core, cmd, now: core.change_delay(cmd.job_id, cmd.delay, now),
    c.ChangePriority: lambda core, cmd, now: core.change_priority(
        cmd.job_id, cmd.priority, cmd.lifo
    ),
    c.Obliterate: lambda core, cmd, now: core.obliterate(cmd.queue, now, force=cmd.force),
    c.SetLimiter: lambda core, cmd, now: core.set_limiter(cmd.queue, cmd.max_jobs, cmd.duration),
    c.RateLimit: lambda core, cmd, now: core.rate_limit(cmd.queue, now + cmd.seconds),
    c.GetRateLimitTtl: lambda core, cmd, now: core.rate_limit_ttl(cmd.queue, now),
    c.GetRateLimit: lambda core, cmd, now: rate_limit_view(core.queues.get(cmd.queue)),
    c.GetGroups: lambda core, cmd, now: groups_view(core.queues.get(cmd.queue), cmd.limit),
    c.SetGroupConcurrency: lambda core, cmd, now: core.set_group_concurrency(
        cmd.queue, cmd.concurrency
    ),
    c.SetGroupLimiter: lambda core, cmd, now: core.set_group_limiter(cmd.queue, cmd.limit),
    c.GetDeduplicationJobId: lambda core, cmd, now: core.dedup_job_id(cmd.queue, cmd.key, now),
    c.RemoveDeduplicationKey: lambda core, cmd, now: core.remove_dedup_key(cmd.queue, cmd.key, now),
    c.SetGlobalConcurrency: lambda core, cmd, now: core.set_global_concurrency(
        cmd.queue, cmd.concurrency
    ),
    c.GetGlobalConcurrency: lambda core, cmd, now: (
        None if (qs := core.queues.get(cmd.queue)) is None else qs.concurrency
    ),
    c.Pause: lambda core, cmd, now: core.pause(cmd.queue),
    c.Resume: lambda core, cmd, now: core.resume(cmd.queue),
    c.Drain: lambda core, cmd, now: core.drain(cmd.queue, now, delayed=cmd.delayed),
    c.Clean: lambda core, cmd, now: core.clean(cmd.queue, cmd.grace, cmd.limit, cmd.state, now),
    c.StallAllActive: lambda core, cmd, now: core.stall_all_active(now, timed=cmd.timed),
    c.Release: lambda core, cmd, now: core.release(cmd.job_id, cmd.token, now),
    c.ReleaseHeld: lambda core, cmd, now: core.release_held(cmd.tokens, now),
    c.EnsureQueue: lambda core, cmd, now: core.queue(cmd.queue),
    c.GetJob: _get_job,
    c.GetJobs: lambda core, cmd, now: list(
        core.select(cmd.queue, cmd.states, cmd.name, cmd.tags, cmd.tag_mode)
    )[cmd.start : cmd.end],
    c.GetPage: _page,
    c.IsPaused: _is_paused,
    c.GetCounts: _counts,
    c.GetDependencies: _dependencies,
    c.GetDependents: _dependents,
    c.GetFlow: _flow,
    c.Summary: _summary,
    c.UpsertScheduler: lambda core, cmd, now: core.upsert_scheduler(
        cmd.scheduler, cmd.immediately, now
    ),
    c.RemoveScheduler: lambda core, cmd, now: core.remove_scheduler(
        cmd.queue, cmd.scheduler_id, now
    ),
    c.GetSchedulers: lambda core, cmd, now: [
        s.fields() for (queue, _id), s in sorted(core.schedulers.items()) if queue == cmd.queue
    ],
}
