"""`Queue`: add jobs, look them up, count them, and control the queue."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Literal, Unpack

from ._codec import decode
from ._core import JobState
from ._core import commands as c
from ._exceptions import InvalidOptionError
from ._job import Job
from ._options import (
    MAX_PRIORITY,
    bulk_specs,
    count,
    job_data,
    job_name,
    job_spec,
    non_negative,
    plain_spec,
    text,
)
from ._schedule import scheduler_record
from ._typing import BulkJob, DataT, JobOptions, ResultT, StateName

if TYPE_CHECKING:
    from ._api import RuntimeAPI
    from ._worker import Worker

_TAG_MODES = ("all", "any", "none", "exact")


def _states(
    value: StateName | JobState | Iterable[StateName | JobState] | None,
) -> list[JobState] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str | JobState) else list(value)
    out = []
    for item in items:
        try:
            out.append(JobState(item))
        except ValueError:
            raise InvalidOptionError(
                "state", item, f"must be one of {', '.join(s.value for s in JobState)}"
            ) from None
    return out


def _scheduler_view(fields: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in fields.items() if k not in ("queue", "template", "created_at")}
    spec = fields["template"]
    out["template"] = {"name": spec.name, "data": decode(spec.data)}
    return out


class Queue(Generic[DataT, ResultT]):
    """A named queue of the runtime. Get one with ``rt.queue(name)``.

    Generic for type checkers in the data its jobs carry and what their processor returns:
    ``emails: Queue[EmailData, Receipt] = rt.queue("emails")`` makes ``emails.add`` take an
    ``EmailData`` and return a ``Job[EmailData, Receipt]``. Plain ``Queue`` is
    ``Queue[Any, Any]``.
    """

    __slots__ = ("_rt", "name")

    def __init__(self, rt: RuntimeAPI, name: str) -> None:
        self._rt = rt
        self.name = name

    async def add(
        self,
        name: str,
        data: DataT = None,  # type: ignore[assignment]  # no data is None, whatever DataT is
        **options: Unpack[JobOptions],
    ) -> Job[DataT, ResultT]:
        """Add one job and return it once the runtime has recorded it.

        Options: ``priority`` (int, higher runs first), ``delay`` (seconds) or ``run_at``
        (seconds on the runtime's clock, or a datetime), ``attempts``, ``backoff`` (a
        `Backoff` or seconds), ``timeout`` (seconds), ``lifo``, ``tags``,
        ``idempotency_key`` (a duplicate returns the existing job, with its own data),
        ``remove_on_complete`` / ``remove_on_fail`` (True, a count to keep, or
        ``{"count": n, "age": seconds}``), ``max_started_attempts``, ``parent`` (a Job or id:
        this job becomes its child), ``depends_on`` (a `DependsOn`), and for a child one of
        ``fail_parent_on_failure`` (the default), ``ignore_dependency_on_failure``,
        ``remove_dependency_on_failure``, ``continue_parent_on_failure``, or
        ``fail_parent_on_failure=False`` (the parent waits; the child can be retried);
        ``deduplication={"id": key, "ttl": s, "extend": b, "replace": b}`` (a duplicate
        while the key is set returns the job it names: docs/deduplication.md) and
        ``group`` (waiting jobs are served round-robin between groups: docs/groups.md).
        """
        rt = self._rt
        if options:
            cmd = c.Add((job_spec(self.name, name, data, options),))
        else:  # a batch of one with no options: the queue's plain spec, as in `add_bulk`
            cmd = c.Add((plain_spec(self.name),), (job_name(name),), (job_data(data),))
        if rt._telemetry is not None:  # an `add` span, whose context the job carries
            return Job(rt, (await rt._telemetry.add(cmd))[0])
        [(rec, _created)] = await rt._send(cmd)
        return Job(rt, rec)

    async def add_bulk(self, jobs: Iterable[BulkJob]) -> list[Job[DataT, ResultT]]:
        """Add many jobs atomically: all or none. Each item is a mapping with ``name``,
        optional ``data`` and any option of `add`; an error names the item's index."""
        specs, names, datas = bulk_specs(self.name, jobs)
        if not specs:
            return []
        rt = self._rt
        cmd = c.Add(specs, names, datas)
        if rt._telemetry is not None:
            return [Job(rt, rec) for rec in await rt._telemetry.add(cmd)]
        added = await rt._send(cmd)
        return [Job(rt, rec) for rec, _created in added]

    async def get_job(self, job_id: int) -> Job[DataT, ResultT] | None:
        """The job with that id in this queue, or None."""
        rt = self._rt
        rec = await rt._send(c.GetJob(job_id, self.name))
        return None if rec is None else Job(rt, rec)

    async def get_jobs(
        self,
        state: StateName | JobState | Iterable[StateName | JobState] | None = None,
        *,
        name: str | None = None,
        tags: Sequence[str] = (),
        tag_mode: Literal["all", "any", "none", "exact"] = "all",
        start: int = 0,
        end: int | None = None,
    ) -> list[Job[DataT, ResultT]]:
        """Jobs by state(s), name and tags (`tag_mode`: all, any, none or exact).

        Waiting jobs come in the order they will run, the others by id; `start` and `end`
        slice the result.
        """
        states = _states(state)
        if tag_mode not in _TAG_MODES:
            raise InvalidOptionError("tag_mode", tag_mode, "must be one of all, any, none, exact")
        if isinstance(tags, str):
            raise InvalidOptionError("tags", tags, "must be a list of strings")
        rt = self._rt
        query = c.GetJobs(
            self.name,
            None if states is None else tuple(states),
            name,
            tuple(tags),
            tag_mode,
            start,
            end,
        )
        return [Job(rt, rec) for rec in await rt._send(query)]

    async def get_jobs_page(
        self,
        state: StateName | JobState,
        *,
        cursor: int | None = None,
        limit: int = 50,
        name: str | None = None,
        tag: str | None = None,
        sort: Literal["id", "-id"] | None = None,
    ) -> tuple[list[Job[DataT, ResultT]], int | None]:
        """One page of the jobs in `state`, and the cursor of the next page (None at the end).

        Waiting jobs come in the order they will run, completed and failed ones newest
        finished first, the others newest first; ``sort="id"`` gives any state oldest added
        first (ids ascending) and ``sort="-id"`` newest added first. Pass the cursor back
        (with the same `sort`) for the next page: each job that stays in the state comes
        exactly once. A page reads a bounded part of the state's index (or of the ids)
        however many jobs the queue holds, so with a `name` or `tag` filter, or among jobs
        of other queues and states, it may come back short (even empty) with a cursor to
        read on.
        """
        [job_state] = _states(state) or []
        limit = count("limit", limit, 1, 10_000)
        if cursor is not None:
            cursor = count("cursor", cursor, 0)
        if sort not in (None, "id", "-id"):
            raise InvalidOptionError(
                "sort",
                sort,
                "must be 'id' (oldest added first), '-id' (newest added first) or None",
            )
        rt = self._rt
        page = c.GetPage(self.name, job_state, cursor, limit, name, tag, sort=sort)
        recs, after = await rt._send(page)
        return [Job(rt, rec) for rec in recs], after

    async def is_paused(self) -> bool:
        """Whether the queue is paused (BullMQ's ``isPaused``)."""
        paused: bool = await self._rt._send(c.IsPaused(self.name))
        return paused

    async def counts(self) -> dict[str, int]:
        """How many jobs the queue holds in each state (every state listed)."""
        raw = await self._rt._send(c.GetCounts(self.name))
        return {state.value: n for state, n in raw.items()}

    async def set_global_concurrency(self, concurrency: int) -> None:
        """At most `concurrency` jobs of this queue active at once, across every worker
        (BullMQ's ``setGlobalConcurrency``); journaled. Lowering it cancels nothing: no job
        starts until fewer than that run."""
        checked = count("concurrency", concurrency)
        await self._rt._send(c.SetGlobalConcurrency(self.name, checked))

    async def get_global_concurrency(self) -> int | None:
        """The cap `set_global_concurrency` set, or None."""
        cap: int | None = await self._rt._send(c.GetGlobalConcurrency(self.name))
        return cap

    async def remove_global_concurrency(self) -> None:
        """No cap: each worker's own concurrency is the only limit again."""
        await self._rt._send(c.SetGlobalConcurrency(self.name, None))

    async def get_rate_limit_ttl(self) -> float:
        """Seconds until the queue's rate limit lets a job start again (0: it does now)."""
        ttl: float = await self._rt._send(c.GetRateLimitTtl(self.name))
        return ttl

    async def get_rate_limit(self) -> dict[str, Any] | None:
        """The queue's rate limit, as a worker's ``limiter`` set it: ``{"max": n,
        "duration": seconds}``, or None when none is set."""
        limit: dict[str, Any] | None = await self._rt._send(c.GetRateLimit(self.name))
        return limit

    async def get_groups(self, limit: int | None = None) -> dict[str, Any]:
        """The queue's groups with a job waiting or active, by name, and its group settings
        (see docs/groups.md): ``{"groups": [{"name", "waiting", "active"}, ...], "total": n,
        "group_concurrency": n or None, "group_limiter": {"max", "duration"} or None}``.
        `limit` (an int >= 1) lists only the first groups by name; ``total`` counts all."""
        if limit is not None:
            limit = count("limit", limit)
        view: dict[str, Any] = await self._rt._send(c.GetGroups(self.name, limit))
        return view

    async def get_deduplication_job_id(self, key: str) -> int | None:
        """The id of the job the deduplication key `key` names while it is set, or None
        (see docs/deduplication.md)."""
        text("key", key)
        job_id: int | None = await self._rt._send(c.GetDeduplicationJobId(self.name, key))
        return job_id

    async def remove_deduplication_key(self, key: str) -> bool:
        """Unset the deduplication key `key`: the next add with it makes a job. Whether it
        was set."""
        text("key", key)
        removed: bool = await self._rt._send(c.RemoveDeduplicationKey(self.name, key))
        return removed

    async def pause(self) -> None:
        """Stop dispatching this queue's jobs; they stay waiting. Running jobs finish."""
        await self._rt._send(c.Pause(self.name))

    async def resume(self) -> None:
        await self._rt._send(c.Resume(self.name))

    async def drain(self, *, delayed: bool = False) -> int:
        """Remove every waiting job (and delayed ones when asked); returns how many."""
        if not isinstance(delayed, bool):
            raise InvalidOptionError("delayed", delayed, "must be True or False")
        removed: int = await self._rt._send(c.Drain(self.name, delayed))
        return removed

    async def clean(
        self,
        grace: float = 0.0,
        limit: int | None = None,
        state: StateName | JobState = "completed",
    ) -> int:
        """Remove up to `limit` jobs in `state` finished (or created) over `grace` s ago."""
        grace = non_negative("grace", grace)
        if limit is not None:
            limit = count("limit", limit, 0)
        [job_state] = _states(state) or []
        removed: int = await self._rt._send(c.Clean(self.name, grace, limit, job_state))
        return removed

    async def promote(self, job_id: int) -> None:
        """Run a delayed job now: it goes to waiting. Only delayed jobs
        (`IllegalTransitionError` otherwise)."""
        await self._rt._send(c.Promote(job_id))

    async def promote_jobs(self) -> int:
        """Promote every delayed job of the queue, the soonest due first; returns how many
        (BullMQ's ``promoteJobs``)."""
        promoted: int = await self._rt._send(c.PromoteJobs(self.name))
        return promoted

    async def change_delay(self, job_id: int, delay: float) -> None:
        """A delayed job comes due `delay` seconds from now instead. Only delayed jobs."""
        await self._rt._send(c.ChangeDelay(job_id, non_negative("delay", delay)))

    async def change_priority(self, job_id: int, priority: int, *, lifo: bool = False) -> None:
        """Give a job another priority (higher runs first). A waiting one moves in line at
        once, to the back of its new priority (the front with `lifo`)."""
        if not isinstance(lifo, bool):
            raise InvalidOptionError("lifo", lifo, "must be True or False")
        checked = count("priority", priority, -MAX_PRIORITY, MAX_PRIORITY)
        await self._rt._send(c.ChangePriority(job_id, checked, lifo))

    async def obliterate(self, *, force: bool = False) -> int:
        """Remove every job of the queue, whatever its state, and resume it if paused;
        returns how many. Refused (`IllegalTransitionError`) while a job is active, unless
        `force`: then those are cancelled, their processors with them, and removed."""
        if not isinstance(force, bool):
            raise InvalidOptionError("force", force, "must be True or False")
        removed: int = await self._rt._send(c.Obliterate(self.name, force))
        return removed

    def get_workers(self) -> list[Worker[Any, Any]]:
        """The open workers of this queue, processor and manual, oldest first."""
        return self._rt._workers_of(self.name)

    async def cancel(self, job_id: int, *, reason: str | None = None) -> None:
        """Cancel a job that has not finished; a running one has its processor cancelled."""
        await self._rt._send(c.Cancel(job_id, reason))

    async def retry(self, job_id: int, *, reset_attempts: bool = False) -> None:
        """Run a finished (completed, failed or cancelled) job again."""
        await self._rt._send(c.Retry(job_id, reset_attempts))

    async def remove(self, job_id: int) -> None:
        """Remove a job that is not active. Raises `JobNotFoundError` if there is none."""
        await self._rt._send(c.Remove(job_id))

    async def upsert_job_scheduler(
        self,
        scheduler_id: str,
        *,
        every: float | None = None,
        pattern: str | None = None,
        tz: str | None = None,
        start_at: Any = None,
        end_at: Any = None,
        limit: int | None = None,
        immediately: bool = False,
        template: Mapping[str, Any] | None = None,
    ) -> Job | None:
        """Create or replace the job scheduler `scheduler_id` (BullMQ's upsertJobScheduler).

        Exactly one of ``every`` (seconds, > 0; runs on the grid of its multiples, or of
        ``start_at`` plus them) and ``pattern`` (cron, 5 fields or 6 with seconds first;
        needs ``actorq[cron]``) with ``tz`` (an IANA name; UTC when None). ``start_at`` /
        ``end_at`` (seconds on the runtime's clock or aware datetimes) bound the runs,
        ``limit`` caps them, ``immediately`` runs the first now. ``template`` is an
        `add_bulk` item without ``run_at``/``delay``/dependencies: ``{"name": ..., "data":
        ..., **options}`` (the name defaults to the scheduler's id).

        The scheduler holds one pending job at a time; the next is added, delayed to the
        next run time, when that one starts. Upserting an id again replaces its schedule and
        its pending job. Returns the pending job (None when no run is left).
        """
        sched = scheduler_record(
            self.name,
            scheduler_id,
            every=every,
            pattern=pattern,
            tz=tz,
            start_at=start_at,
            end_at=end_at,
            limit=limit,
            immediately=immediately,
            template=template,
        )
        rt = self._rt
        rec = await rt._send(c.UpsertScheduler(sched, immediately))
        return None if rec is None else Job(rt, rec)

    async def remove_job_scheduler(self, scheduler_id: str) -> bool:
        """Remove the scheduler and its pending job; False if there was none. A job of it
        that already started runs on (it is an ordinary job)."""
        if not isinstance(scheduler_id, str):
            raise InvalidOptionError("scheduler_id", scheduler_id, "must be a string")
        removed: bool = await self._rt._send(c.RemoveScheduler(self.name, scheduler_id))
        return removed

    async def get_job_schedulers(self) -> list[dict[str, Any]]:
        """The queue's job schedulers by id, each a dict: ``id``, ``every``, ``pattern``,
        ``tz``, ``start_at``, ``end_at``, ``limit``, ``iterations`` (jobs produced so far),
        ``next`` (the pending job's run time, None once ended), ``job_id`` (the pending
        job), and ``template`` (``name``, ``data``)."""
        raw = await self._rt._send(c.GetSchedulers(self.name))
        return [_scheduler_view(fields) for fields in raw]

    async def get_job_scheduler(self, scheduler_id: str) -> dict[str, Any] | None:
        """One scheduler as `get_job_schedulers` shows it, or None."""
        for view in await self.get_job_schedulers():
            if view["id"] == scheduler_id:
                return view
        return None

    def _repr_html_(self) -> str:
        from ._display import queue_snapshot_html  # noqa: PLC0415 - loads on first use

        return queue_snapshot_html(self)

    def __repr__(self) -> str:
        return f"<Queue {self.name!r}>"
