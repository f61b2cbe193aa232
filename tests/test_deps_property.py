"""Dependencies and tag barriers under random programs, on the pure core.

Hypothesis draws batches of jobs (random tags, barriers, prerequisites that are earlier jobs
of the batch or any job ever added) interleaved with a worker taking, completing and failing
jobs, cancels, removals and time passing; then drains the system. Checked throughout:

* a job is never taken before every prerequisite completed, nor while a job that already
  existed when it left `blocked` still holds its barrier (a job never leaves `blocked` while
  another unfinished job holds its barrier);
* after every transition, no job is `blocked` unless something still blocks it (an
  unfinished prerequisite, or another unfinished job holding its barrier);
* a cascade cancels only blocked jobs, each with a reason naming the job id that ended and
  that it depended on (as a prerequisite or a barrier holder); a failure that will be
  retried cancels nothing;
* a refused add changes nothing; an add naming a failed, cancelled or missing prerequisite
  is refused;
* once quiescent (nothing waiting, active or delayed) no job is left `blocked`, and the
  incremental blocking index equals one rebuilt from the records.

Known bugs the first test finds (both in `CoreState._new_record`, which decides `blocked`
before the new record is indexed, one spec at a time): a job whose own tags cover its barrier
ignores one other holder (`BlockingIndex.barrier_clear` discounts the job itself although it
is not counted yet); a barrier held only by a later job of the same `add_bulk` batch is not
seen; and `CoreState._check_barrier_deadlock` starts its search only from new jobs that have
a barrier, so a new tagged job holding a blocked job's barrier while depending on that job is
accepted and both wait forever; and that check reads `self.jobs[d]` for every prerequisite
of a blocked job it walks, so a completed prerequisite removed since raises KeyError. The
second test avoids those four shapes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hypothesis import event, given, settings
from hypothesis import strategies as st

from actorq._core import CoreState, JobRecord, JobSpec, JobState
from actorq._exceptions import InvalidDependencyError

W, D, A = JobState.WAITING, JobState.DELAYED, JobState.ACTIVE
B, C, F, X = JobState.BLOCKED, JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED
UNFINISHED = frozenset({W, D, A, B})
TAGS = ("a", "b", "c")
QUEUES = ("q", "r")
TOKEN = "worker"
USER_REASON = "cancelled by the test"

PREREQ = re.compile(r"^prerequisite job (\d+) (failed|was cancelled|was removed)$")
HOLDER = re.compile(
    r"^job (\d+) holding barrier \[([a-z, ]+)\] (failed|was cancelled|was removed)$"
)

tag_sets = st.lists(st.sampled_from(TAGS), max_size=3, unique=True).map(tuple)
barriers = st.one_of(
    st.just(()), st.lists(st.sampled_from(TAGS), min_size=1, max_size=2, unique=True).map(tuple)
)


def blockers(core: CoreState, rec: JobRecord) -> list[str]:
    """What keeps `rec` from running, computed from the records alone."""
    out = [
        f"prerequisite {d}"
        for d in rec.depends_on_job_ids
        if (p := core.jobs.get(d)) is not None and p.state is not C
    ]
    if rec.depends_on_tags:
        barrier = frozenset(rec.depends_on_tags)
        out += [
            f"holder {other.id}"
            for other in core.jobs.values()
            if other.id != rec.id and other.state in UNFINISHED and barrier <= set(other.tags)
        ]
    return out


@dataclass
class Sim:
    core: CoreState = field(default_factory=lambda: CoreState(seed=7))
    now: float = 0.0
    ever: list[int] = field(default_factory=list)
    #: job id -> the highest job id that existed when it left `blocked` (or was added free)
    freed_at: dict[int, int] = field(default_factory=dict)
    #: ids of jobs that ended non-completed (failed, cancelled) or were removed unfinished
    ended_badly: set[int] = field(default_factory=set)
    #: ids of jobs that completed (they may be removed since)
    completed: set[int] = field(default_factory=set)
    taken: int = 0
    cascaded: int = 0
    freed_from_blocked: int = 0

    # ------------------------------------------------------------------ bookkeeping

    def states(self) -> dict[int, JobState]:
        return {job_id: rec.state for job_id, rec in self.core.jobs.items()}

    def after(self, before: dict[int, JobState], user_cancelled: int | None = None) -> None:
        """Check what one transition did, given the states before it."""
        core = self.core
        highest = core.next_id - 1
        for job_id, old in before.items():
            rec = core.jobs.get(job_id)
            if rec is None:
                if old in UNFINISHED:
                    self.ended_badly.add(job_id)
            elif rec.state in (F, X) and old not in (F, X):
                self.ended_badly.add(job_id)
            elif rec.state is C:
                self.completed.add(job_id)
        for job_id, old in before.items():
            rec = core.jobs.get(job_id)
            if rec is None:
                continue
            if old is B and rec.state is not B:
                if rec.state is X:
                    if job_id != user_cancelled:
                        self.check_cascade_reason(rec)
                        self.cascaded += 1
                else:
                    assert rec.state in (W, D), (job_id, rec.state)
                    self.freed_at[job_id] = highest
                    self.freed_from_blocked += 1
            elif rec.state is X and old is not X and job_id != user_cancelled:
                raise AssertionError(f"job {job_id} cancelled from {old}: {rec.failed_reason}")
        for job_id, rec in core.jobs.items():
            if job_id not in before and rec.state is not B:
                self.freed_at[job_id] = highest
            if rec.state is B:
                assert blockers(core, rec), f"job {job_id} blocked with nothing blocking it"

    def check_cascade_reason(self, rec: JobRecord) -> None:
        reason = rec.failed_reason or ""
        m = PREREQ.match(reason)
        if m is not None:
            cause = int(m.group(1))
            assert cause in rec.depends_on_job_ids, reason
            assert cause in self.ended_badly, reason
            return
        m = HOLDER.match(reason)
        assert m is not None, f"job {rec.id} cancelled with reason {reason!r}"
        cause = int(m.group(1))
        assert m.group(2).split(", ") == sorted(set(rec.depends_on_tags)), reason
        assert cause != rec.id and cause in self.ended_badly, reason
        holder = self.core.jobs.get(cause)
        if holder is not None:
            assert set(rec.depends_on_tags) <= set(holder.tags), reason

    # ------------------------------------------------------------------ actions

    def add(self, batch: list[JobSpec]) -> None:
        core = self.core
        hopeless = [
            d
            for spec in batch
            for d in spec.depends_on_job_ids
            if (p := core.jobs.get(d)) is None or p.state in (F, X)
        ]
        before_snap, before = core.snapshot(), self.states()
        try:
            added = core.add(batch, self.now)
        except InvalidDependencyError:
            assert core.snapshot() == before_snap, "a refused add changed the state"
            return
        assert not hopeless, f"an add depending on failed/cancelled/missing {hopeless} passed"
        for i, (rec, _created) in enumerate(added):
            self.ever.append(rec.id)
            refs = {added[r][0].id for r in batch[i].depends_on_batch_refs}
            assert set(rec.depends_on_job_ids) == set(batch[i].depends_on_job_ids) | refs
        self.after(before)

    def take(self, queue: str) -> JobRecord | None:
        core = self.core
        before = self.states()
        got = core.take(queue, 1, self.now, TOKEN)
        self.after(before)
        if not got:
            return None
        rec = got[0]
        self.taken += 1
        for d in rec.depends_on_job_ids:
            assert d in self.completed, f"job {rec.id} taken before prerequisite {d}"
        if rec.depends_on_tags:
            barrier = frozenset(rec.depends_on_tags)
            old_holders = [
                o.id
                for o in core.jobs.values()
                if o.id != rec.id
                and o.state in UNFINISHED
                and barrier <= set(o.tags)
                and o.id <= self.freed_at[rec.id]
            ]
            assert not old_holders, f"job {rec.id} taken while {old_holders} hold its barrier"
        return rec

    def finish(self, rec: JobRecord, ok: bool) -> None:
        core = self.core
        before = self.states()
        cancelled = sum(1 for r in core.jobs.values() if r.state is X)
        if ok:
            core.complete(rec.id, TOKEN, b"1", self.now)
        else:
            core.fail(rec.id, TOKEN, "boom", None, self.now)
            if rec.state is not F:  # retried: nothing may cascade
                assert sum(1 for r in core.jobs.values() if r.state is X) == cancelled
        self.after(before)

    def cancel(self, job_id: int) -> None:
        before = self.states()
        self.core.cancel(job_id, self.now, USER_REASON)
        self.after(before, user_cancelled=job_id)

    def remove(self, job_id: int) -> None:
        before = self.states()
        self.core.remove(job_id, self.now)
        self.after(before)

    def advance(self, dt: float) -> None:
        before = self.states()
        self.now += dt
        self.core.promote_due(self.now)
        self.after(before)

    def drain(self) -> None:
        """Run everything that can run, letting time pass, until nothing is left to do."""
        core = self.core
        for _ in range(10_000):
            for rec in [r for r in core.jobs.values() if r.state is A]:
                self.finish(rec, True)
            progressed = False
            for queue in QUEUES:
                while (got := self.take(queue)) is not None:
                    self.finish(got, True)
                    progressed = True
            if not progressed:
                due = core.next_due()
                if due is None:
                    break
                self.advance(max(due - self.now, 0.0))
        left = [r.id for r in core.jobs.values() if r.state in (W, D, A)]
        assert not left, f"not quiescent: {left}"


@st.composite
def batches(draw: st.DrawFn, sim: Sim, avoid_known_bugs: bool) -> list[JobSpec]:
    size = draw(st.integers(1, 4))
    out: list[JobSpec] = []
    tags_of = [draw(tag_sets) for _ in range(size)]
    for i in range(size):
        tags = tags_of[i]
        barrier = draw(barriers)
        # Known bugs (see the module docstring): a barrier its own job's tags cover, and a
        # barrier held only by a later job of the same batch, are mishandled at add.
        if avoid_known_bugs and any(set(barrier) <= set(t) for t in tags_of[i:] if barrier):
            barrier = ()
        refs = draw(st.lists(st.integers(0, i - 1), max_size=2, unique=True)) if i else []
        use_ids: bool = draw(st.booleans())
        ids: list[int] = []
        if sim.ever and use_ids:
            ids = draw(st.lists(st.sampled_from(sim.ever), max_size=2, unique=True))
        if avoid_known_bugs and tags and not barrier:
            # Known bug: a cycle through a tagged job without a barrier of its own (holding
            # a barrier while waiting on its waiter) goes unreported.
            refs, ids = [], []
        out.append(
            JobSpec(
                name=f"j{i}",
                queue=draw(st.sampled_from(QUEUES)),
                data=b"{}",
                tags=tags,
                attempts=draw(st.integers(1, 3)),
                delay=draw(st.sampled_from([None, None, 1.0, 3.0])),
                depends_on_job_ids=tuple(ids),
                depends_on_batch_refs=tuple(refs),
                depends_on_tags=barrier,
            )
        )
    return out


ACTIONS = ("add", "add", "take", "complete", "complete", "fail", "cancel", "remove", "time")


def run_program(data: st.DataObject, avoid_known_bugs: bool) -> Sim:
    sim = Sim()
    core = sim.core
    for _ in range(data.draw(st.integers(1, 40), label="steps")):
        action = data.draw(st.sampled_from(ACTIONS))
        active = sorted(j for j, r in core.jobs.items() if r.state is A)
        unfinished = sorted(j for j, r in core.jobs.items() if r.state in UNFINISHED)
        idle = sorted(
            j
            for j, r in core.jobs.items()
            # Known bug: removing a completed prerequisite of a still blocked job makes the
            # next barrier's deadlock check raise KeyError.
            if r.state is not A and not (avoid_known_bugs and r.state is C)
        )
        if action == "add" or not core.jobs:
            sim.add(data.draw(batches(sim, avoid_known_bugs)))
        elif action == "take":
            sim.take(data.draw(st.sampled_from(QUEUES)))
        elif action in ("complete", "fail") and active:
            sim.finish(core.jobs[data.draw(st.sampled_from(active))], action == "complete")
        elif action == "cancel" and unfinished:
            sim.cancel(data.draw(st.sampled_from(unfinished)))
        elif action == "remove" and idle:
            sim.remove(data.draw(st.sampled_from(idle)))
        elif action == "time":
            sim.advance(data.draw(st.sampled_from([0.5, 1.0, 2.0, 5.0])))
    sim.drain()
    stuck = {r.id: blockers(core, r) for r in core.jobs.values() if r.state is B}
    assert not stuck, f"blocked after quiescence: {stuck}"
    assert core.rebuild_indexes().index_view() == core.index_view()
    event(f"jobs taken: {min(sim.taken, 20) // 5 * 5}+")
    event(f"cascade-cancelled: {'some' if sim.cascaded else 'none'}")
    event(f"released from blocked: {'some' if sim.freed_from_blocked else 'none'}")
    return sim


@settings(deadline=None, max_examples=100, report_multiple_bugs=False)
@given(st.data())
def test_random_dags_and_barriers(data: st.DataObject) -> None:
    run_program(data, avoid_known_bugs=False)


@settings(deadline=None, max_examples=100)
@given(st.data())
def test_random_dags_and_barriers_avoiding_known_bugs(data: st.DataObject) -> None:
    """The same programs minus the four shapes of the known add-time barrier bugs, so that
    every other invariant keeps being checked while those bugs stand."""
    run_program(data, avoid_known_bugs=True)


def test_the_simulation_can_see_a_violation() -> None:
    """The checker is not vacuous: a job put back to waiting by hand while its prerequisite
    is unfinished is caught at take."""
    sim = Sim()
    pre = sim.core.add([JobSpec(name="p", queue="r", data=b"{}")], 0.0)[0][0]
    dep = sim.core.add(
        [JobSpec(name="d", queue="q", data=b"{}", depends_on_job_ids=(pre.id,))], 0.0
    )[0][0]
    sim.freed_at[dep.id] = dep.id
    sim.core._change(dep, {"state": W}, "dependencies_met")
    try:
        sim.take("q")
    except AssertionError as exc:
        assert f"taken before prerequisite {pre.id}" in str(exc)
    else:
        raise AssertionError("the violation went unnoticed")
