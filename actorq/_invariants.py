"""The invariants a simulation checks after every step (see docs/testing.md).

Theory of operation
-------------------
`check_core` reads a `CoreState` (never mutates it) and raises `InvariantViolation` for the
first rule it finds broken, naming the rule, the job and the seed. Most rules are *static*:
they hold in every state the scheduler commits (indexes agree with the records, one lock
holder per job, attempts bounded...). A few are about *transitions* (a job left `blocked`
while a barrier holder was still unfinished; a parent left `waiting-children` while a child
was open): for those the caller passes the `Observation` returned by the previous check, and
the rule compares the two.

The rules that need more than one runtime's state (nothing acknowledged lost across a crash,
no reply before the batch is durable, replay exact) live in `actorq._simulation`, which has
the journal and the history; they raise the same exception.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import attrs

from ._core import CoreState, JobRecord, JobState
from ._core.records import OPEN_STATUSES

if TYPE_CHECKING:
    from ._runtime import Runtime

__all__ = [
    "INVARIANTS",
    "InvariantViolation",
    "Observation",
    "check_core",
    "check_invariants",
    "check_starts",
    "first_differing_job",
    "snapshot_difference",
]

W, D, A = JobState.WAITING, JobState.DELAYED, JobState.ACTIVE
WC, B = JobState.WAITING_CHILDREN, JobState.BLOCKED
C, F, X = JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED
_TERMINAL = frozenset({C, F, X})
_STARTED = frozenset({W, A, C})  # states a job reaches by leaving blocked/waiting-children

#: Every invariant by name, with what it means (the names InvariantViolation carries).
INVARIANTS: dict[str, str] = {
    "no-acked-job-lost": "every job whose add returned is present after a crash and replay",
    "reply-after-durable": "no reply or dispatch is seen for a batch not yet durable",
    "replay-exact": "the state replayed after a crash equals the state committed before it",
    "one-state-per-job": "each job is in exactly one state; its state fields agree with it",
    "indexes-match-records": "indexes and counters equal their recomputation from the records",
    "single-lock-holder": "no two holders of a valid lock on one job",
    "delayed-never-early": "a job never starts before its run_at",
    "dependencies-respected": "a job leaves blocked only once its prerequisites completed",
    "barriers-respected": "a job leaves blocked only once no unfinished job holds its barrier",
    "parent-after-children": "a parent never resumes before its last child finished",
    "attempts-bounded": "attempts_made <= attempts; attempts_started <= max_started_attempts "
    "(one more for the start that failed the job)",
    "idempotency-unique": "at most one job per idempotency key",
    "scheduler-one-pending": "a job scheduler never has two jobs that have not started",
    "scheduler-never-early": "a scheduler's job never starts before its run time, and a "
    "scheduler never runs past its limit or end_at",
    "concurrency-respected": "no job starts while its queue has as many active as its global "
    "concurrency, or its group as many as the queue's group_concurrency",
    "limiter-respected": "no window of a queue's limiter, or of a group's, holds more starts "
    "than it allows",
    "dedup-key-unique": "while a deduplication key is set, no job with that key is added after "
    "the job it names; a key without a ttl names an unfinished job",
}


class InvariantViolation(AssertionError):
    """A simulation invariant broke: names the invariant, the job, the seed and the detail."""

    def __init__(
        self,
        invariant: str,
        detail: str,
        *,
        job_id: int | None = None,
        seed: int | None = None,
        time: float | None = None,
    ) -> None:
        self.invariant = invariant
        self.detail = detail
        self.job_id = job_id
        self.seed = seed
        self.time = time
        where = [f"job {job_id}"] if job_id is not None else []
        if seed is not None:
            where.append(f"seed {seed}")
        if time is not None:
            where.append(f"t={time:g}")
        suffix = f" ({', '.join(where)})" if where else ""
        super().__init__(f"invariant {invariant!r} broken{suffix}: {detail}")


@attrs.frozen(slots=True)
class Observation:
    """What a check saw, for the next check's transition rules."""

    states: dict[int, JobState]
    #: Barrier holders then: job id -> tags, for non-terminal jobs with tags.
    tagged: dict[int, tuple[str, ...]]


def check_invariants(rt: Runtime, *, seed: int | None = None) -> Observation:
    """Check the static invariants on a running (or stopped) runtime's state.

    Call it while the runtime is idle (between steps): mid-batch the state is in flux.
    Raises `InvariantViolation`; returns an `Observation` for `check_core(previous=...)`.
    """
    return check_core(rt._core, now=rt.clock.now(), seed=seed)


def check_core(
    core: CoreState,
    *,
    now: float | None = None,
    seed: int | None = None,
    previous: Observation | None = None,
    retried: Collection[int] = (),
) -> Observation:
    """Check `core`; `retried`: jobs retried by hand (exempt from the attempts bound)."""

    def fail(invariant: str, detail: str, job_id: int | None = None) -> InvariantViolation:
        return InvariantViolation(invariant, detail, job_id=job_id, seed=seed, time=now)

    jobs = core.jobs
    keys: dict[str, int] = {}
    locks = set(core.locks)  # one read of the lock index, not one scan per locked job
    for job_id, rec in jobs.items():
        _check_record(rec, job_id, core, locks, now, retried, fail)
        key = rec.idempotency_key
        if key is not None:
            other = keys.setdefault(key, job_id)
            if other != job_id:
                raise fail("idempotency-unique", f"key {key!r} held by jobs {other} and {job_id}")
            if core.idempotency.get(key) != job_id:
                raise fail(
                    "idempotency-unique",
                    f"key {key!r} maps to {core.idempotency.get(key)!r}, not to its job",
                    job_id,
                )
        if rec.state is B:
            _check_still_blocked(rec, core, fail)
        if rec.children is not None and job_id not in retried:
            _check_children(rec, core, previous, fail)
    _check_indexes(core, fail)
    _check_limiters(core, now, fail)
    if core.dedup:
        _check_dedup(core, now, fail)
    if previous is not None:
        _check_caps(core, previous, fail)
    if core.schedulers or any(r.scheduler_id is not None for r in jobs.values()):
        _check_schedulers(core, retried, fail)
    if previous is not None:
        _check_unblocked(core, previous, fail)
    tagged = {i: r.tags for i, r in jobs.items() if r.tags and r.state not in _TERMINAL}
    return Observation({i: r.state for i, r in jobs.items()}, tagged)


def _check_schedulers(core: CoreState, retried: Collection[int], fail: Any) -> None:
    """One unstarted job per scheduler, the one it points at; none early; bounds kept.
    (A started job that goes back to waiting or delayed, a retry or a stall, is no longer
    its scheduler's pending job: the next one was made when it started.)"""
    unstarted: dict[tuple[str, str], list[int]] = {}
    for job_id, rec in core.jobs.items():
        sid = rec.scheduler_id
        if sid is None:
            continue
        if rec.attempts_started == 0 and rec.state not in _TERMINAL and job_id not in retried:
            unstarted.setdefault((rec.queue, sid), []).append(job_id)
        due = rec.created_at if rec.run_at is None else rec.run_at
        first = rec.processed_at
        if first is not None and first < due and job_id not in retried:
            raise fail("scheduler-never-early", f"started at {first:g}, due at {due:g}", job_id)
    for key, ids in sorted(unstarted.items()):
        if len(ids) > 1:
            raise fail("scheduler-one-pending", f"scheduler {key} has unstarted jobs {ids}")
        sched = core.schedulers.get(key)
        if sched is None or sched.job_id != ids[0]:
            detail = f"job of scheduler {key} unstarted, not the scheduler's pending job"
            raise fail("scheduler-one-pending", detail, ids[0])
    for key, sched in sorted(core.schedulers.items()):
        if sched.limit is not None and sched.iterations > sched.limit:
            detail = f"scheduler {key}: {sched.iterations} jobs made, limit {sched.limit}"
            raise fail("scheduler-never-early", detail, sched.job_id)
        if sched.next is not None and sched.end_at is not None and sched.next > sched.end_at:
            detail = f"scheduler {key}: next run {sched.next:g} after end_at {sched.end_at:g}"
            raise fail("scheduler-never-early", detail, sched.job_id)
        if sched.next is not None and sched.job_id is not None:
            pending = core.jobs.get(sched.job_id)
            if pending is not None and pending.run_at is not None and pending.run_at != sched.next:
                detail = f"scheduler {key}: next {sched.next:g}, its job due {pending.run_at:g}"
                raise fail("scheduler-never-early", detail, sched.job_id)


def _check_caps(core: CoreState, previous: Observation, fail: Any) -> None:
    """No job started (is active now, was not at the previous check) while its queue or its
    group holds more active jobs than the cap allows (a cap lowered under the jobs already
    active is no violation until one more starts)."""
    started: dict[str, list[JobRecord]] = {}
    for job_id, rec in core.jobs.items():
        if rec.state is A and previous.states.get(job_id) is not A:
            started.setdefault(rec.queue, []).append(rec)
    for queue, recs in sorted(started.items()):
        qs = core.queues[queue]
        if qs.concurrency is not None and qs.counts[A] > qs.concurrency:
            detail = f"queue {queue!r}: {qs.counts[A]} active, global concurrency {qs.concurrency}"
            raise fail("concurrency-respected", detail, recs[0].id)
        groups = qs.groups
        if groups is None or groups.concurrency is None:
            continue
        for rec in recs:
            group = rec.group
            if group is not None and groups.active.get(group, 0) > groups.concurrency:
                detail = (
                    f"group {group!r} of {queue!r}: {groups.active[group]} active, "
                    f"group_concurrency {groups.concurrency}"
                )
                raise fail("concurrency-respected", detail, rec.id)


def _check_limiters(core: CoreState, now: float | None, fail: Any) -> None:
    """An open window never counts more starts than its limiter allows."""
    for name, qs in sorted(core.queues.items()):
        limiters = [("", qs.limiter)] if qs.limiter is not None else []
        if qs.groups is not None:
            limiters += sorted(qs.groups.limiters.items())
        for group, limiter in limiters:
            assert limiter is not None
            end = limiter.window_end
            if limiter.max_jobs is None or end is None or (now is not None and now >= end):
                continue
            if limiter.count > limiter.max_jobs:
                where = f"group {group!r} of {name!r}" if group else f"queue {name!r}"
                detail = f"{where}: {limiter.count} starts in a window of {limiter.max_jobs}"
                raise fail("limiter-respected", detail)


def check_starts(
    starts: Collection[float], max_jobs: int, duration: float, *, what: str = "a queue"
) -> None:
    """Check start times against a limiter of `max_jobs` per `duration` seconds, counted as
    the limiter counts (a window opens at the first start after the last one closed)."""
    end: float | None = None
    count = 0
    for t in sorted(starts):
        if end is None or t >= end:
            end, count = t + duration, 1
        else:
            count += 1
        if count > max_jobs:
            detail = f"{what}: {count} starts in the window ending at {end:g} (max {max_jobs})"
            raise InvariantViolation("limiter-respected", detail, time=t)


def _check_dedup(core: CoreState, now: float | None, fail: Any) -> None:
    later: dict[tuple[str, str], list[JobRecord]] = {}
    for rec in core.jobs.values():
        if rec.deduplication_id is not None:
            later.setdefault((rec.queue, rec.deduplication_id), []).append(rec)
    for key, entry in sorted(core.dedup.items()):
        if now is not None and not entry.live(now):
            continue
        for rec in later.get(key, ()):
            if rec.id > entry.job_id:
                detail = f"key {key} names job {entry.job_id}, yet job {rec.id} was added with it"
                raise fail("dedup-key-unique", detail, rec.id)
        if entry.expires_at is None:
            named = core.jobs.get(entry.job_id)
            if named is None or named.state in _TERMINAL:
                state = "gone" if named is None else named.state.value
                detail = f"key {key} (no ttl) still names job {entry.job_id}, {state}"
                raise fail("dedup-key-unique", detail, entry.job_id)


def _normalized(view: dict[str, Any]) -> dict[str, Any]:
    # BlockingIndex.completed leaves a zero unmet count behind while the job still waits on
    # its barrier (a rebuild has no entry): equivalent, so compare without zero counts.
    blocking = dict(view["blocking"])
    blocking["unmet"] = {k: v for k, v in blocking["unmet"].items() if v}
    return {**view, "blocking": blocking}


def _check_indexes(core: CoreState, fail: Any) -> None:
    view = _normalized(core.index_view())
    fresh = _normalized(core.rebuild_indexes().index_view())
    if view != fresh:
        for name in view:
            if view[name] != fresh.get(name):
                detail = f"index {name!r} is {view[name]!r}; from the records: {fresh[name]!r}"
                raise fail("indexes-match-records", detail)
    totals: dict[JobState, int] = dict.fromkeys(JobState, 0)
    for qs in core.queues.values():
        for state, n in qs.counts.items():
            totals[state] += n
    for rec in core.jobs.values():
        totals[rec.state] -= 1
    wrong = {s.value: n for s, n in totals.items() if n}
    if wrong:
        raise fail("indexes-match-records", f"counters off by {wrong} from the job table")


def _check_record(
    rec: JobRecord,
    job_id: int,
    core: CoreState,
    locks: set[tuple[float, int]],
    now: float | None,
    retried: Collection[int],
    fail: Any,
) -> None:
    state = rec.state
    if rec.id != job_id or not isinstance(state, JobState):
        raise fail(
            "one-state-per-job", f"record {rec.id} state {state!r} filed as {job_id}", job_id
        )
    if rec.queue not in core.queues:
        raise fail("one-state-per-job", f"queue {rec.queue!r} is unknown", job_id)
    in_delayed = rec.run_at is not None and (rec.run_at, job_id) in core.delayed
    if (state is D) != in_delayed:
        detail = f"state {state.value} but in the delayed index: {in_delayed}"
        raise fail("one-state-per-job", detail, job_id)
    if state is A:
        if rec.lock_token is None:
            raise fail("single-lock-holder", "an active job without a lock holder", job_id)
        if rec.lock_expires_at is not None:
            if (rec.lock_expires_at, job_id) not in locks:
                raise fail(
                    "single-lock-holder", "a manual lock missing from the lock index", job_id
                )
            if now is not None and rec.lock_expires_at < now:
                detail = f"lock of {rec.lock_token} expired at {rec.lock_expires_at:g}, still held"
                raise fail("single-lock-holder", detail, job_id)
        if rec.processed_at is None:
            raise fail("one-state-per-job", "active but never started", job_id)
    elif rec.lock_token is not None or rec.lock_expires_at is not None:
        detail = f"{state.value} but still locked by {rec.lock_token!r}"
        raise fail("single-lock-holder", detail, job_id)
    if (state in _TERMINAL) != (rec.finished_at is not None) and state is not X:
        raise fail("one-state-per-job", f"{state.value} with finished_at={rec.finished_at}", job_id)
    if (
        state in (A, C)
        and rec.run_at is not None
        and rec.processed_at is not None
        and rec.processed_at < rec.run_at
    ):
        detail = f"started at {rec.processed_at:g}, due at {rec.run_at:g}"
        raise fail("delayed-never-early", detail, job_id)
    if rec.attempts_made > rec.attempts and job_id not in retried:
        detail = f"attempts_made={rec.attempts_made} > attempts={rec.attempts}"
        raise fail("attempts-bounded", detail, job_id)
    cap = rec.max_started_attempts
    over = 1 if state is F else 0  # the start past the limit, that failed the job, counts
    if cap is not None and rec.attempts_started > cap + over and job_id not in retried:
        detail = f"attempts_started={rec.attempts_started} > max_started_attempts={cap}"
        raise fail("attempts-bounded", detail, job_id)
    if state in (A, C) and rec.depends_on_job_ids:
        for dep in rec.depends_on_job_ids:
            prereq = core.jobs.get(dep)
            if prereq is not None and prereq.state is not C and not {job_id, dep} & set(retried):
                detail = f"{state.value} while prerequisite {dep} is {prereq.state.value}"
                raise fail("dependencies-respected", detail, job_id)


def _holds(tags: tuple[str, ...], barrier: tuple[str, ...]) -> bool:
    return bool(barrier) and set(barrier) <= set(tags)


def _check_still_blocked(rec: JobRecord, core: CoreState, fail: Any) -> None:
    """A blocked job has a reason to be: an unmet prerequisite or a barrier holder."""
    for dep in rec.depends_on_job_ids:
        prereq = core.jobs.get(dep)
        if prereq is not None and prereq.state is not C:
            return
    barrier = rec.depends_on_tags
    if barrier:
        for other in core.jobs.values():
            if other.id != rec.id and other.state not in _TERMINAL and _holds(other.tags, barrier):
                return
    detail = "still blocked though every prerequisite completed and no barrier holder is left"
    raise fail("dependencies-respected", detail, rec.id)


def _check_unblocked(core: CoreState, previous: Observation, fail: Any) -> None:
    """Jobs that left blocked since the previous check: no barrier holder was unfinished
    throughout (unfinished then, unfinished now)."""
    for job_id, rec in core.jobs.items():
        if previous.states.get(job_id) is not B or rec.state not in _STARTED:
            continue
        barrier = rec.depends_on_tags
        if not barrier:
            continue
        for other_id, tags in previous.tagged.items():
            other = core.jobs.get(other_id)
            if (
                other_id != job_id
                and other is not None
                and other.state not in _TERMINAL
                and _holds(tags, barrier)
            ):
                detail = f"left blocked while job {other_id} {tags} still holds barrier {barrier}"
                raise fail("barriers-respected", detail, job_id)


def _check_children(
    parent: JobRecord, core: CoreState, previous: Observation | None, fail: Any
) -> None:
    assert parent.children is not None
    open_children = [
        cid for cid, (status, _v) in parent.children.items() if status in OPEN_STATUSES
    ]
    for cid in open_children:
        child = core.jobs.get(cid)
        if parent.state not in _TERMINAL and child is not None and child.state in (C, X):
            detail = f"child {cid} is {child.state.value} but still counted open by its parent"
            raise fail("parent-after-children", detail, parent.id)
    if not open_children:
        return
    resumed = previous is not None and previous.states.get(parent.id) is WC
    if parent.state is C or (resumed and parent.state in _STARTED):
        detail = f"{parent.state.value} while children {open_children} are unfinished"
        raise fail("parent-after-children", detail, parent.id)


def first_differing_job(a: dict[str, Any], b: dict[str, Any]) -> int | None:
    """The first job (by id) whose record differs between two `CoreState.snapshot` views."""
    for job_id in sorted(set(a["jobs"]) | set(b["jobs"])):
        if a["jobs"].get(job_id) != b["jobs"].get(job_id):
            return int(job_id)
    return None


def snapshot_difference(a: dict[str, Any], b: dict[str, Any]) -> str:
    """How two `CoreState.snapshot` views differ: the first differing job's fields, else
    the differing keys."""
    job_id = first_differing_job(a, b)
    if job_id is not None:
        ra, rb = a["jobs"].get(job_id), b["jobs"].get(job_id)
        if ra is None or rb is None:
            return f"job {job_id} present in only one: {ra is not None} / {rb is not None}"
        fields = {k: (ra[k], rb.get(k)) for k in ra if ra[k] != rb.get(k)}
        return f"job {job_id} differs: {fields}"
    keys = [k for k in a if a[k] != b.get(k)]
    return f"differs in {keys}"
