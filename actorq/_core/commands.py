"""Commands: every call a handle makes, as a value that names what it does.

A handle (`Queue`, `Job`, `Worker`, `FlowProducer`) builds one of these and gives it to the
`Runtime`, which hands it to the engine; the engine applies it in a batch. The commands
about jobs and queues are applied by one entry, `CoreState.handle(command, now)`; the rest
(`Fetch`, `WaitFinished`, the worker and shutdown commands) are the engine's own, because
they wait for something or concern the actors, but they are values all the same: a batch
can be logged, compared and fuzzed as data.

Times are relative where a command is built before its batch's `now` is known (a lock's
``lock_duration``, an outcome's ``delay``) and absolute where the caller chose the instant
(``run_at``).

A processor worker's outcomes travel as one `Report` per batch of jobs, however many ended:
that is the one outcome record (see `Report`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar, dataclass_transform

import attrs

from .records import JobSpec
from .schedulers import SchedulerRecord
from .states import JobState

Change = tuple[Any, ...]
"""A change record: a delta the core produced, journaled and replayed (see `replay`)."""

_C = TypeVar("_C", bound=type)


@dataclass_transform(frozen_default=True)
def command(cls: _C) -> _C:
    """Make `cls` a command class: slotted attrs fields, read-only to the type checker.

    Not ``attrs.frozen`` at run time: a frozen class's ``__init__`` writes each field through
    ``object.__setattr__``, which makes a manual call's command cost three times as much to
    build, and nothing writes a command after it is built (mypy refuses it)."""
    made: Callable[[_C], _C] = attrs.define(slots=True)
    return made(cls)


@command
class Command:
    """Base of every command."""


@command
class Query(Command):
    """A command that reads and changes nothing (it may run between batches)."""


# ---------------------------------------------------------------------- adding


@command
class Add(Command):
    """Add a batch of jobs, all or none: ``[(record, created), ...]``."""

    specs: Sequence[JobSpec]
    #: The jobs' names and data as columns, when ``specs[i]`` gives only job i's options
    #: (shared by the jobs of a bulk add whose options are the same); see `CoreState.add`.
    names: Sequence[str] | None = None
    datas: Sequence[bytes] | None = None


@command
class UpsertScheduler(Command):
    """Create or replace a job scheduler: the record of its first job, or None."""

    scheduler: SchedulerRecord
    immediately: bool = False


@command
class RemoveScheduler(Command):
    """Remove a job scheduler and its pending job: whether there was one."""

    queue: str
    scheduler_id: str


@command
class GetSchedulers(Query):
    """The job schedulers of `queue` (each as a dict of its fields), by id."""

    queue: str


# ---------------------------------------------------------------------- a job's run


@command
class Take(Command):
    """Move up to `n` waiting jobs of `queue` to active under `token`: their records.

    ``lock_duration`` None: a processor holds them (an untimed lock); a number: a manual
    consumer holds each until ``now + lock_duration`` unless it extends the lock.
    """

    queue: str
    n: int
    token: str
    lock_duration: float | None = None
    max_stalled_count: int = 1


@command
class Complete(Command):
    """End the attempt of a job held under `token` in success; with `then`, take the next
    job under the same token in the same batch and return its record (else None)."""

    job_id: int
    token: str | None
    value: bytes | None
    then: Take | None = None


@command
class Fail(Command):
    """End an attempt in failure (retried while attempts remain); `then` as `Complete`."""

    job_id: int
    token: str | None
    reason: str
    stacktrace: str | None = None
    unrecoverable: bool = False
    then: Take | None = None


@command
class MoveToDelayed(Command):
    """A step: the held job waits until `run_at` (absolute) or ``now + delay``; with
    neither, it goes back to waiting. `data` replaces its data in the same transition."""

    job_id: int
    token: str | None
    run_at: float | None = None
    data: bytes | None = None
    delay: float | None = None


@command
class MoveToWaitingChildren(Command):
    """Wait for the held parent's open children: ``"moved"``, ``"done"`` or ``"failed"``."""

    job_id: int
    token: str | None


@command
class ExtendLock(Command):
    """Keep the lock of `token` for `duration` more seconds from the batch's `now`."""

    job_id: int
    token: str
    duration: float


@command
class Report(Command):
    """A processor worker's outcomes since its last report, in the order they happened.

    Each outcome is ``(job_id, value)`` for a job that completed (the common case, kept a
    pair), or the `Fail` / `MoveToDelayed` command the processor's end means. An outcome
    whose job already left active through another command (cancelled, removed, stepped)
    has nothing left to end and changes nothing. ``freed`` counts every job the worker is
    done with, those that left by a command included: the credits it gets back.
    """

    token: str
    outcomes: Sequence[tuple[int, bytes | None] | Fail | MoveToDelayed]
    freed: int


# ---------------------------------------------------------------------- updates


@command
class UpdateData(Command):
    job_id: int
    data: bytes


@command
class UpdateProgress(Command):
    job_id: int
    progress: bytes


@command
class AddLog(Command):
    """Append a line to a job's log: the number of lines it holds."""

    job_id: int
    line: str


# ---------------------------------------------------------------------- control


@command
class Cancel(Command):
    job_id: int
    reason: str | None = None


@command
class Retry(Command):
    job_id: int
    reset_attempts: bool = False


@command
class Remove(Command):
    job_id: int


@command
class Promote(Command):
    job_id: int


@command
class PromoteJobs(Command):
    """Promote every delayed job of the queue, soonest first: how many."""

    queue: str


@command
class ChangeDelay(Command):
    job_id: int
    delay: float


@command
class ChangePriority(Command):
    job_id: int
    priority: int
    lifo: bool = False


@command
class Obliterate(Command):
    """Remove every job of the queue (active ones too with `force`): how many."""

    queue: str
    force: bool = False


@command
class SetLimiter(Command):
    queue: str
    max_jobs: int
    duration: float


@command
class RateLimit(Command):
    """Hold every start of the queue for `seconds` from now (a manual rate limit)."""

    queue: str
    seconds: float


@command
class GetRateLimitTtl(Query):
    queue: str


@command
class GetRateLimit(Query):
    """The queue's rate limit (``{"max", "duration"}``), or None."""

    queue: str


@command
class GetGroups(Query):
    """The queue's groups (the first `limit` by name; None: all), their waiting and active
    counts, and its group settings (see `settings_view.groups_view`)."""

    queue: str
    limit: int | None = None


@command
class SetGroupConcurrency(Command):
    """At most `concurrency` active jobs per group of the queue (None: no cap)."""

    queue: str
    concurrency: int | None


@command
class SetGroupLimiter(Command):
    """At most ``limit[0]`` starts per group per ``limit[1]`` seconds (None: no limit)."""

    queue: str
    limit: tuple[int, float] | None


@command
class GetDeduplicationJobId(Query):
    """The id of the job a live deduplication key names, or None."""

    queue: str
    key: str


@command
class RemoveDeduplicationKey(Command):
    """Unset a deduplication key: whether it was set."""

    queue: str
    key: str


@command
class SetGlobalConcurrency(Command):
    queue: str
    concurrency: int | None


@command
class Pause(Command):
    queue: str


@command
class Resume(Command):
    queue: str


@command
class Drain(Command):
    """Remove the waiting jobs (and the delayed ones when asked): how many."""

    queue: str
    delayed: bool = False


@command
class Clean(Command):
    """Remove up to `limit` jobs in `state` older than `grace` seconds: how many."""

    queue: str
    grace: float
    limit: int | None
    state: JobState


@command
class StallAllActive(Command):
    """After a restart: every job still active stalled, its holder gone. How many.

    ``timed`` False leaves the jobs under a timed lock active: their holder may still run
    them (a leader change on a leased journal), and they stall when their lock expires."""

    timed: bool = True


@command
class Release(Command):
    """Give the job locked under `token` back to waiting, no stall counted (a fetch whose
    caller was cancelled as its job arrived)."""

    job_id: int
    token: str


@command
class ReleaseHeld(Command):
    """Give every job locked under one of `tokens` back to waiting, no stall counted (a
    manual worker closing): how many. A lock already past its expiry is left to the
    stalled check of the same batch, which counts it."""

    tokens: frozenset[str]


@command
class EnsureQueue(Command):
    """Create the queue if it does not exist yet (a worker registered on it)."""

    queue: str


# ---------------------------------------------------------------------- queries


@command
class GetJob(Query):
    """The record of a job (in `queue`, when given), or None."""

    job_id: int
    queue: str | None = None


@command
class GetJobs(Query):
    """Records by state(s), name and tags; waiting ones in dispatch order, others by id."""

    queue: str
    states: tuple[JobState, ...] | None = None
    name: str | None = None
    tags: tuple[str, ...] = ()
    tag_mode: str = "all"
    start: int = 0
    end: int | None = None


@command
class GetGlobalConcurrency(Query):
    queue: str


@command
class GetPage(Query):
    """One page of a queue's jobs in `state`: ``(records, next_cursor)``, next_cursor None
    at the end. Waiting jobs come in dispatch order, completed and failed ones newest
    finished first, the others newest id first. `cursor` is the previous page's
    next_cursor. ``sort="id"`` (oldest added first) or ``"-id"`` (newest added first)
    orders any state by id instead, the cursor then the last id read. At most `budget`
    entries of the state's index (or ids) are read per page, so a page costs the same
    however many jobs the runtime holds; a filtered page may come back short with a cursor
    to read on."""

    queue: str
    state: JobState
    cursor: int | None = None
    limit: int = 50
    name: str | None = None
    tag: str | None = None
    budget: int = 20_000
    sort: str | None = None


@command
class IsPaused(Query):
    """Whether the queue is paused."""

    queue: str


@command
class GetCounts(Query):
    """Counts by state of one queue, or of every queue (``queue=None``)."""

    queue: str | None = None


@command
class GetDependencies(Query):
    """A job's children and prerequisites, as BullMQ and dataqueue report them."""

    job_id: int


@command
class GetDependents(Query):
    """The jobs that depend on a job: those listing it in `depends_on_job_ids`, and the
    tag-drain barriers it holds with the jobs waiting on each."""

    job_id: int


@command
class GetFlow(Query):
    """The tree under a job as nested ``(record, [subtrees])``, or None."""

    job_id: int


@command
class Summary(Query):
    """How many jobs the runtime holds, and counts by state per queue."""


# ---------------------------------------------------------------------- the engine's own


@command
class Fetch(Command):
    """A manual ``get_next_job``: lock the next waiting job under `token` (as `Take`), or
    with `wait` wait for one until the caller gives up; None when nothing came."""

    take: Take
    wait: bool = False


@command
class WaitFinished(Command):
    """Answer with the job's record once it is finished, or None once it is gone."""

    job_id: int


@command
class RegisterWorker(Command):
    """A processor worker starts: `slot` is the engine's view of it (queue, credits)."""

    slot: Any


@command
class CloseWorker(Command):
    """Give the worker no more jobs; answer once it holds none, and forget it."""

    token: str


@command
class DropWorker(Command):
    """A processor worker in another process is gone: forget it; its jobs stall at lock
    expiry."""

    token: str


@command
class ExtendLocks(Command):
    """Renew the locks of many jobs held under one token (a remote worker's batch); the ids
    whose lock was renewed (the others are no longer its)."""

    token: str
    job_ids: tuple[int, ...]
    duration: float


@command
class FailHeld(Command):
    """Fail the attempts of the jobs locked under `tokens` (a sandboxed processor's child
    process died running them): each is retried or fails as any failed attempt is."""

    tokens: frozenset[str]
    reason: str


@command
class CloseManual(Command):
    """A manual worker closes: its pending fetches get None, its held jobs go back."""

    tokens: frozenset[str]


@command
class StopDispatch(Command):
    """Shutdown begins: no job is handed out from now on."""


@command
class WaitWorkersIdle(Command):
    """Answer once no processor worker holds a job (a graceful shutdown), or, with a
    `token`, once that worker holds none (a worker paused)."""

    token: str | None = None


@command
class PauseWorker(Command):
    """Give the worker no more jobs (`paused`), or again (not `paused`)."""

    token: str
    paused: bool


@command
class Snapshot(Command):
    """Compact the journal once this batch is durable; answer when it is written."""


__all__ = [
    "Add",
    "AddLog",
    "Cancel",
    "Change",
    "Clean",
    "CloseManual",
    "CloseWorker",
    "Command",
    "Complete",
    "Drain",
    "DropWorker",
    "EnsureQueue",
    "ExtendLock",
    "ExtendLocks",
    "Fail",
    "FailHeld",
    "Fetch",
    "GetCounts",
    "GetDependencies",
    "GetDependents",
    "GetFlow",
    "GetGroups",
    "GetJob",
    "GetJobs",
    "GetPage",
    "GetSchedulers",
    "IsPaused",
    "MoveToDelayed",
    "MoveToWaitingChildren",
    "Pause",
    "Query",
    "RegisterWorker",
    "Release",
    "ReleaseHeld",
    "Remove",
    "RemoveScheduler",
    "Report",
    "Resume",
    "Retry",
    "Snapshot",
    "StallAllActive",
    "StopDispatch",
    "Summary",
    "Take",
    "UpdateData",
    "UpdateProgress",
    "UpsertScheduler",
    "WaitFinished",
    "WaitWorkersIdle",
]
