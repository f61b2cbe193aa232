"""A Hypothesis state machine driving the pure core against a small model of it.

The model tracks, per job, what the core's rules say its state and counters must be, and the
finish order of each queue (for count retention); the invariants then check the core's
records against the model and its indexes against a rebuild from scratch, and replaying the
journal of change records reproduces the live state exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from actorq._core import events as ev
from actorq._core.records import Backoff, JobRecord, JobSpec, Retention
from actorq._core.state import Change, CoreState
from actorq._core.states import LEGAL, TERMINAL, JobState
from actorq._exceptions import (
    IllegalTransitionError,
    InvalidOptionError,
    JobNotFoundError,
    LockError,
)
from actorq._journal_codec import add_fields

W, D, A = JobState.WAITING, JobState.DELAYED, JobState.ACTIVE
WC, B = JobState.WAITING_CHILDREN, JobState.BLOCKED
C, F, X = JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED

QUEUES = ("q0", "q1", "q2")
KEYS = ("k0", "k1", "k2")
REPLAY_EVERY = 10

# ---------------------------------------------------------------------- strategies

retentions = st.sampled_from(
    [
        Retention(),
        Retention(count=0),
        Retention(count=1),
        Retention(count=2),
        Retention(age=1.0),
        Retention(count=1, age=2.0),
    ]
)
backoffs = st.one_of(
    st.none(),
    st.builds(
        Backoff.fixed,
        st.sampled_from([0.0, 0.5, 2.0]),
        jitter=st.sampled_from([0.0, 0.5, 1.0]),
    ),
    st.builds(
        Backoff.exponential,
        st.sampled_from([0.0, 0.5, 1.0]),
        jitter=st.sampled_from([0.0, 0.5, 1.0]),
        max_delay=st.sampled_from([None, 0.0, 1.5]),
    ),
)


@st.composite
def job_specs(draw: st.DrawFn, queues: tuple[str, ...]) -> JobSpec:
    return JobSpec(
        name=draw(st.sampled_from(["a", "b"])),
        queue=draw(st.sampled_from(queues)),
        data=b"{}",
        priority=draw(st.integers(-2, 2)),
        lifo=draw(st.booleans()),
        delay=draw(st.sampled_from([None, None, 0.0, 0.5, 1.0, 3.0])),
        attempts=draw(st.integers(1, 3)),
        backoff=draw(backoffs),
        tags=tuple(draw(st.sets(st.sampled_from(["x", "y"])))),
        idempotency_key=draw(st.one_of(st.none(), st.none(), st.sampled_from(KEYS))),
        remove_on_complete=draw(retentions),
        remove_on_fail=draw(retentions),
        max_started_attempts=draw(st.sampled_from([None, None, 1, 2])),
    )


@st.composite
def batches(draw: st.DrawFn) -> list[JobSpec]:
    queues = tuple(draw(st.lists(st.sampled_from(QUEUES), min_size=1, max_size=3, unique=True)))
    return draw(st.lists(job_specs(queues), min_size=1, max_size=5))


# ---------------------------------------------------------------------- the model


@dataclass
class MJob:
    """What the model expects of one job."""

    spec: JobSpec
    state: JobState
    created_at: float
    run_at: float | None = None
    attempts_started: int = 0
    attempts_made: int = 0
    finished_at: float | None = None
    token: str | None = None
    lock_until: float | None = None
    #: Retried without resetting its attempts: `attempts_made` may pass `attempts` (BullMQ).
    over_budget: bool = False
    history: list[JobState] = field(default_factory=list)


def expected_wait(backoff: Backoff | None, made: int) -> tuple[float, float]:
    """Bounds of the backoff wait after the `made`-th attempt (jitter draws in [0, 1))."""
    if backoff is None:
        return 0.0, 0.0
    return backoff.wait(made, 1.0), backoff.wait(made, 0.0)


class CoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.seed = 0
        self.core = CoreState()
        self.now = 0.0
        self.jobs: dict[int, MJob] = {}
        self.next_id = 1
        self.paused: set[str] = set()
        # Per (queue, state) the jobs that finished, oldest first (count retention).
        self.finish_order: dict[tuple[str, JobState], list[int]] = {}
        self.journal: list[Change] = []
        self.journal_states: dict[int, JobState] = {}
        self.tokens = 0
        self.steps = 0
        self.before: dict[int, JobState] = {}

    @initialize(seed=st.integers(0, 2**64 - 1))
    def start(self, seed: int) -> None:
        self.seed = seed
        self.core = CoreState(seed=seed)
        self.core.record_changes(True)
        self.core.publish_events(True)

    # ------------------------------------------------------------------ model helpers

    def token(self) -> str:
        self.tokens += 1
        return f"t{self.tokens}"

    def ids(self, *states: JobState) -> list[int]:
        return sorted(j for j, m in self.jobs.items() if not states or m.state in states)

    def pick(self, ids: list[int], i: int) -> int:
        return ids[i % len(ids)]

    def live_key(self, key: str) -> int | None:
        found = [j for j, m in self.jobs.items() if m.spec.idempotency_key == key]
        assert len(found) <= 1
        return found[0] if found else None

    def m_remove(self, job_id: int) -> None:
        m = self.jobs.pop(job_id)
        line = self.finish_order.get((m.spec.queue, m.state))
        if line is not None and job_id in line:
            line.remove(job_id)

    def m_unfinish(self, m: MJob, job_id: int) -> None:
        line = self.finish_order.get((m.spec.queue, m.state))
        if line is not None and job_id in line:
            line.remove(job_id)

    def m_finish(self, job_id: int, state: JobState, keep: Retention | None) -> None:
        """`job_id` reached `state` now; apply `keep` (None: no retention, as for cancel)."""
        m = self.jobs[job_id]
        m.state = state
        m.finished_at = self.now
        m.token = m.lock_until = None
        if keep is None:
            return
        line = self.finish_order.setdefault((m.spec.queue, state), [])
        line.append(job_id)
        if keep.count == 0:
            self.m_remove(job_id)
        elif keep.count is not None:
            while len(line) > keep.count:
                self.m_remove(line[0])

    def lock_expired(self, m: MJob) -> bool:
        return m.lock_until is not None and m.lock_until <= self.now

    def frozen(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return self.core.snapshot(), self.core.index_view()

    def refused(self, call: Any, kind: type[Exception]) -> str:
        """`call` must raise `kind` and change nothing at all."""
        before = self.frozen()
        n_changes = len(self.core.changes or [])
        n_events = len(self.core.events or [])
        n_finished = len(self.core.finished)
        try:
            call()
        except kind as exc:
            message = str(exc)
        else:
            raise AssertionError(f"expected {kind.__name__}")
        assert self.frozen() == before
        assert len(self.core.changes or []) == n_changes
        assert len(self.core.events or []) == n_events
        assert len(self.core.finished) == n_finished
        return message

    # ------------------------------------------------------------------ rules: add and time

    @rule(specs=batches())
    def add(self, specs: list[JobSpec]) -> None:
        expected: list[tuple[int, bool]] = []
        for spec in specs:
            key = spec.idempotency_key
            existing = self.live_key(key) if key is not None else None
            if existing is not None:
                expected.append((existing, False))
                continue
            job_id = self.next_id
            self.next_id += 1
            run_at = self.now + spec.delay if spec.delay else None
            state = D if run_at is not None and run_at > self.now else W
            self.jobs[job_id] = MJob(spec, state, self.now, run_at=run_at)
            expected.append((job_id, True))
        out = self.core.add(specs, self.now)
        assert [(rec.id, created) for rec, created in out] == expected

    @rule(dt=st.sampled_from([0.25, 0.5, 1.0, 2.5]))
    def advance(self, dt: float) -> None:
        self.now += dt

    @rule()
    def promote_due(self) -> None:
        due = [j for j, m in self.jobs.items() if m.state is D and m.run_at is not None]
        due = [j for j in due if self.jobs[j].run_at <= self.now]  # type: ignore[operator]
        assert self.core.promote_due(self.now) == len(due)
        for j in due:
            self.jobs[j].state = W
            self.jobs[j].run_at = None

    @rule()
    def expire_retention(self) -> None:
        gone = []
        for j, m in self.jobs.items():
            keep = {C: m.spec.remove_on_complete, F: m.spec.remove_on_fail}.get(m.state)
            if (
                keep is not None
                and keep.age is not None
                and m.finished_at is not None
                and m.finished_at + keep.age <= self.now
            ):
                gone.append(j)
        assert self.core.expire_retention(self.now) == len(gone)
        for j in gone:
            self.m_remove(j)

    # ------------------------------------------------------------------ rules: dispatch

    @rule(
        queue=st.sampled_from(QUEUES),
        n=st.integers(0, 4),
        lease=st.sampled_from([None, None, 1.0, 3.0]),
    )
    def take(self, queue: str, n: int, lease: float | None) -> None:
        token = self.token()
        line = [rec.id for rec in self.core.select(queue, [W])]
        assert sorted(line) == sorted(j for j in self.ids(W) if self.jobs[j].spec.queue == queue)
        expected: list[int] = []
        if queue not in self.paused and n > 0:
            for j in line:
                if len(expected) >= n:
                    break
                m = self.jobs[j]
                cap = m.spec.max_started_attempts
                if cap is not None and m.attempts_started + 1 > cap:
                    # As BullMQ: the start over the limit counts, and so does its attempt.
                    m.attempts_started += 1
                    m.attempts_made += 1
                    self.m_finish(j, F, m.spec.remove_on_fail)
                    continue
                m.state = A
                m.attempts_started += 1
                m.token = token
                m.lock_until = None if lease is None else self.now + lease
                expected.append(j)
        lock_until = None if lease is None else self.now + lease
        taken = self.core.take(queue, n, self.now, token, lock_until)
        assert [rec.id for rec in taken] == expected
        for rec in taken:
            # Never a job whose time has not come.
            assert rec.run_at is None or rec.run_at <= self.now
            assert rec.state is A

    # ------------------------------------------------------------------ rules: outcomes

    @precondition(lambda self: any(m.state is A for m in self.jobs.values()))
    @rule(i=st.integers(0, 99), value=st.sampled_from([None, b"1"]))
    def complete(self, i: int, value: bytes | None) -> None:
        j = self.pick(self.ids(A), i)
        m = self.jobs[j]
        if self.lock_expired(m):
            self.refused(lambda: self.core.complete(j, m.token, value, self.now), LockError)
            return
        rec = self.core.complete(j, m.token, value, self.now)
        assert rec.return_value == value
        m.attempts_made += 1
        self.m_finish(j, C, m.spec.remove_on_complete)

    @precondition(lambda self: any(m.state is A for m in self.jobs.values()))
    @rule(i=st.integers(0, 99), unrecoverable=st.booleans(), trace=st.booleans())
    def fail(self, i: int, unrecoverable: bool, trace: bool) -> None:
        j = self.pick(self.ids(A), i)
        m = self.jobs[j]
        stack = "trace" if trace else None
        if self.lock_expired(m):
            call = lambda: self.core.fail(j, m.token, "boom", stack, self.now)  # noqa: E731
            self.refused(call, LockError)
            return
        rec = self.core.fail(j, m.token, "boom", stack, self.now, unrecoverable=unrecoverable)
        m.attempts_made += 1
        assert rec.failed_reason == "boom"
        if unrecoverable or m.attempts_made >= m.spec.attempts:
            self.m_finish(j, F, m.spec.remove_on_fail)
            return
        low, high = expected_wait(m.spec.backoff, m.attempts_made)
        m.token = m.lock_until = None
        if high > 0:
            m.state = D
            assert rec.run_at is not None
            assert self.now + low <= rec.run_at <= self.now + high
            m.run_at = rec.run_at
        else:
            m.state = W

    @precondition(lambda self: any(m.state is A for m in self.jobs.values()))
    @rule(i=st.integers(0, 99), offset=st.sampled_from([None, -1.0, 0.0, 0.5, 2.0]))
    def move_to_delayed(self, i: int, offset: float | None) -> None:
        j = self.pick(self.ids(A), i)
        m = self.jobs[j]
        run_at = None if offset is None else self.now + offset

        def call() -> JobRecord:
            return self.core.move_to_delayed(j, m.token, run_at, b"[]", self.now)

        if self.lock_expired(m):
            self.refused(call, LockError)
            return
        rec = call()
        assert rec.data == b"[]"
        m.token = m.lock_until = None
        if run_at is None:
            m.state = W
        else:
            m.state = D
            m.run_at = max(run_at, self.now)

    @precondition(lambda self: any(m.state is A for m in self.jobs.values()))
    @rule(i=st.integers(0, 99), more=st.sampled_from([0.5, 4.0]))
    def extend_lock(self, i: int, more: float) -> None:
        j = self.pick(self.ids(A), i)
        m = self.jobs[j]
        assert m.token is not None
        token = m.token
        if self.lock_expired(m):
            self.refused(
                lambda: self.core.extend_lock(j, token, self.now + more, self.now), LockError
            )
            return
        self.core.extend_lock(j, token, self.now + more, self.now)
        if m.lock_until is not None:
            m.lock_until = self.now + more

    @rule(
        i=st.integers(0, 99),
        command=st.sampled_from(["complete", "fail", "move_to_delayed", "extend_lock"]),
        how=st.sampled_from(["wrong-token", "no-token", "missing"]),
    )
    def refused_outcome(self, i: int, command: str, how: str) -> None:
        """The same outcomes with a wrong token, on a job not active, or on no job at all."""
        missing = how == "missing" or not self.jobs
        j = self.next_id + i if missing else self.pick(self.ids(), i)
        m = self.jobs.get(j)
        token: str | None = "not-the-token"
        if how == "no-token" and command != "extend_lock":
            token = None
        now = self.now
        calls: dict[str, Any] = {
            "complete": lambda: self.core.complete(j, token, None, now),
            "fail": lambda: self.core.fail(j, token, "r", None, now),
            "move_to_delayed": lambda: self.core.move_to_delayed(j, token, now + 1, None, now),
            "extend_lock": lambda: self.core.extend_lock(j, token or "", now + 1, now),
        }
        if m is None:
            self.refused(calls[command], JobNotFoundError)
        elif m.state is A:
            if token is None:
                return  # no token means "skip the check": that is a legal call
            assert m.token != token
            message = self.refused(calls[command], LockError)
            assert f"job {j}" in message
        else:
            kind = IllegalTransitionError if token is None else LockError
            message = self.refused(calls[command], kind)
            assert f"job {j}" in message
            assert m.state.value in message
            assert command in message

    # ------------------------------------------------------------------ rules: control

    @precondition(lambda self: bool(self.jobs))
    @rule(i=st.integers(0, 99))
    def cancel(self, i: int) -> None:
        j = self.pick(self.ids(), i)
        m = self.jobs[j]
        if m.state in TERMINAL:
            message = self.refused(lambda: self.core.cancel(j, self.now), IllegalTransitionError)
            assert f"job {j}" in message
            assert m.state.value in message
            return
        self.core.cancel(j, self.now, "stop")
        self.m_finish(j, X, None)

    @precondition(lambda self: bool(self.jobs))
    @rule(i=st.integers(0, 99), reset=st.booleans())
    def retry(self, i: int, reset: bool) -> None:
        j = self.pick(self.ids(), i)
        m = self.jobs[j]
        if m.state not in TERMINAL:
            message = self.refused(lambda: self.core.retry(j, self.now), IllegalTransitionError)
            assert f"job {j}" in message
            assert m.state.value in message
            return
        self.core.retry(j, self.now, reset_attempts=reset)
        self.m_unfinish(m, j)
        m.state = W
        m.finished_at = None
        m.run_at = None
        if reset:
            m.attempts_made = m.attempts_started = 0
        else:
            m.over_budget = True

    @precondition(lambda self: bool(self.jobs))
    @rule(i=st.integers(0, 99))
    def remove(self, i: int) -> None:
        j = self.pick(self.ids(), i)
        if self.jobs[j].state is A:
            message = self.refused(lambda: self.core.remove(j, self.now), IllegalTransitionError)
            assert f"job {j}" in message
            return
        self.core.remove(j, self.now)
        self.m_remove(j)

    @rule(queue=st.sampled_from(QUEUES), pause=st.booleans())
    def pause_resume(self, queue: str, pause: bool) -> None:
        if pause:
            self.core.pause(queue)
            self.paused.add(queue)
        else:
            self.core.resume(queue)
            self.paused.discard(queue)

    @rule(queue=st.sampled_from(QUEUES), delayed=st.booleans())
    def drain(self, queue: str, delayed: bool) -> None:
        states = (W, D) if delayed else (W,)
        doomed = [j for j in self.ids(*states) if self.jobs[j].spec.queue == queue]
        assert self.core.drain(queue, self.now, delayed=delayed) == len(doomed)
        for j in doomed:
            self.m_remove(j)

    @rule(
        queue=st.sampled_from(QUEUES),
        grace=st.sampled_from([0.0, 1.0, 5.0]),
        limit=st.sampled_from([None, 0, 1, 3]),
        state=st.sampled_from([W, D, A, C, F, X]),
    )
    def clean(self, queue: str, grace: float, limit: int | None, state: JobState) -> None:
        if state is A:
            call = lambda: self.core.clean(queue, grace, limit, A, self.now)  # noqa: E731
            self.refused(call, InvalidOptionError)
            return
        if state is W:
            order = [rec.id for rec in self.core.select(queue, [W])]
        else:
            order = [j for j in self.ids(state) if self.jobs[j].spec.queue == queue]
        doomed: list[int] = []
        for j in order:
            if limit is not None and len(doomed) >= limit:
                break
            m = self.jobs[j]
            stamp = m.finished_at if m.finished_at is not None else m.created_at
            if stamp <= self.now - grace:
                doomed.append(j)
        assert self.core.clean(queue, grace, limit, state, self.now) == len(doomed)
        for j in doomed:
            self.m_remove(j)

    @rule()
    def restart(self) -> None:
        """Continue on a state rebuilt from the records alone, as after loading a snapshot.

        Nothing the core does next may depend on history the records do not hold.
        """
        self.effects_are_legal()
        rebuilt = self.core.rebuild_indexes()
        assert rebuilt.snapshot() == self.core.snapshot()
        assert rebuilt.index_view() == self.core.index_view()
        rebuilt.record_changes(True)
        rebuilt.publish_events(True)
        self.core = rebuilt

    @precondition(lambda self: bool(self.jobs))
    @rule(i=st.integers(0, 99), what=st.sampled_from(["data", "progress", "log"]))
    def update(self, i: int, what: str) -> None:
        j = self.pick(self.ids(), i)
        if what == "data":
            assert self.core.update_data(j, b'{"v": 2}').data == b'{"v": 2}'
        elif what == "progress":
            assert self.core.update_progress(j, b"50").progress == b"50"
        else:
            before = len(self.core.get(j).logs)
            assert self.core.add_log(j, "line", keep=2) == min(before + 1, 2)

    # ------------------------------------------------------------------ invariants

    @invariant()
    def records_match_the_model(self) -> None:
        core = self.core
        assert sorted(core.jobs) == sorted(self.jobs)
        for j, m in self.jobs.items():
            rec = core.jobs[j]
            got = (rec.state, rec.attempts_started, rec.attempts_made, rec.finished_at)
            assert got == (m.state, m.attempts_started, m.attempts_made, m.finished_at), j
            assert (rec.lock_token, rec.lock_expires_at) == (m.token, m.lock_until), j
            if m.state is D:
                assert rec.run_at == m.run_at, j
        assert core.next_id == self.next_id

    @invariant()
    def effects_are_legal(self) -> None:
        """State changes between steps, and in the journal one by one, are all in `LEGAL`."""
        changes, events, finished = self.core.take_effects()
        for change in changes:
            if change[0] == "add":
                fields = add_fields(change)
                assert (None, fields["state"]) in LEGAL
                self.journal_states[fields["id"]] = fields["state"]
            elif change[0] == "set" and "state" in change[2]:
                old, new = self.journal_states[change[1]], change[2]["state"]
                assert (old, new) in LEGAL, (change[1], old, new)
                self.journal_states[change[1]] = new
            elif change[0] == "del":
                del self.journal_states[change[1]]
        self.journal.extend(changes)
        assert self.journal_states == {j: rec.state for j, rec in self.core.jobs.items()}
        for j, rec in self.core.jobs.items():
            was = self.before.get(j)
            if was is not rec.state:
                assert (was, rec.state) in LEGAL, (j, was, rec.state)
        for event in events:
            if isinstance(event, ev.JobWaiting):
                # The state the job left, which was never waiting.
                assert event.previous is not W, event
                assert event.previous == self.before.get(event.job_id, event.previous), event
        for rec in finished:
            assert rec.state in TERMINAL or rec.id not in self.core.jobs
        self.before = {j: rec.state for j, rec in self.core.jobs.items()}

    @invariant()
    def indexes_hold(self) -> None:
        core = self.core
        recs: list[JobRecord] = list(core.jobs.values())
        for queue, qs in core.queues.items():
            recount = dict.fromkeys(JobState, 0)
            for rec in recs:
                if rec.queue == queue:
                    recount[rec.state] += 1
            assert core.counts(queue) == recount
            assert qs.paused == (queue in self.paused)
            line = list(core.select(queue, [W]))
            assert [(-r.priority, r.order) for r in line] == sorted(
                (-r.priority, r.order) for r in line
            )
            assert {r.id for r in line} == {r.id for r in recs if r.queue == queue and r.state is W}
        assert {r.queue for r in recs} <= set(core.queues)
        assert list(core.delayed) == sorted((r.run_at, r.id) for r in recs if r.state is D)
        keyed = [(r.idempotency_key, r.id) for r in recs if r.idempotency_key is not None]
        assert len({k for k, _ in keyed}) == len(keyed)
        assert core.idempotency == dict(keyed)
        for rec in recs:
            assert (rec.state is A) == (rec.lock_token is not None)
            assert (rec.state in TERMINAL) == (rec.finished_at is not None)
            assert rec.state is not D or rec.run_at is not None
            assert rec.state not in (B, WC)
            if not self.jobs[rec.id].over_budget:
                assert rec.attempts_made <= rec.attempts
            if rec.max_started_attempts is not None and not self.jobs[rec.id].over_budget:
                # One start past the limit, the one that failed the job.
                over = 1 if rec.state is F else 0
                assert rec.attempts_started <= rec.max_started_attempts + over
        rebuilt = core.rebuild_indexes()
        assert rebuilt.index_view() == core.index_view()
        assert rebuilt.snapshot() == core.snapshot()
        due = core.next_due()
        assert due is None or math.isfinite(due)

    @invariant()
    def replay_now_and_then(self) -> None:
        self.steps += 1
        if self.steps % REPLAY_EVERY == 0:
            self.check_replay()

    def check_replay(self) -> None:
        self.effects_are_legal()  # move the latest changes into the journal
        replayed = CoreState(seed=self.seed)
        for change in self.journal:
            replayed.apply_change(change)
        assert replayed.snapshot() == self.core.snapshot()
        assert replayed.index_view() == self.core.index_view()

    def teardown(self) -> None:
        self.check_replay()


CoreMachine.TestCase.settings = settings(
    max_examples=250,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestCoreMachine = CoreMachine.TestCase


# ---------------------------------------------------------------------- regressions


def one_core() -> CoreState:
    core = CoreState(seed=1)
    core.record_changes(True)
    return core


def test_count_retention_keeps_the_job_that_finished_last() -> None:
    """A retried job finishing again at the same instant is the newest, not the oldest."""
    keep = Retention(count=1)
    core = one_core()
    a, b = (rec for rec, _ in core.add([JobSpec("a", "q", b"1", remove_on_complete=keep)] * 2, 0))
    core.take("q", 2, 0.0, "t")
    core.complete(a.id, "t", None, 0.0)
    core.retry(a.id, 0.0)
    core.take("q", 1, 0.0, "t")
    core.complete(b.id, "t", None, 0.0)
    core.complete(a.id, "t", None, 0.0)  # a finished last: b goes
    assert sorted(core.jobs) == [a.id]


def test_count_retention_after_a_restart_removes_what_the_live_state_would() -> None:
    """Two jobs finishing at the same instant: the restarted state trims the same one."""
    plain = JobSpec("a", "q", b"1")
    keep_two = JobSpec("a", "q", b"1", remove_on_complete=Retention(count=2))
    live = one_core()
    first, second, third = (rec.id for rec, _ in live.add([plain, plain, keep_two], 0.0))
    live.take("q", 3, 0.0, "t")
    live.complete(second, "t", None, 0.0)
    live.complete(first, "t", None, 0.0)
    restarted = live.rebuild_indexes()
    for core in (live, restarted):
        core.complete(third, "t", None, 0.0)  # the oldest finisher, `second`, goes
    assert sorted(live.jobs) == [first, third]
    assert restarted.snapshot() == live.snapshot()


def test_waiting_line_compaction_keeps_lifo_order() -> None:
    core = one_core()
    lifo = [rec.id for rec, _ in core.add([JobSpec("l", "q", b"1", lifo=True)] * 3, 0.0)]
    stale = [rec.id for rec, _ in core.add([JobSpec("f", "q", b"1")] * 1100, 0.0)]
    for job_id in stale:
        core.cancel(job_id, 0.0)
    # Compacted once the stale entries passed 1,024, as they went stale (1,103 were held).
    assert len(core.queues["q"].waiting) < 100
    assert [rec.id for rec in core.select("q", [W])] == lifo[::-1]
    assert [rec.id for rec in core.take("q", 1, 0.0, "t")] == [lifo[2]]
    assert [rec.id for rec in core.select("q", [W])] == [lifo[1], lifo[0]]
    assert core.index_view() == core.rebuild_indexes().index_view()
    assert [rec.id for rec in core.take("q", 2, 0.0, "t")] == [lifo[1], lifo[0]]


def test_rebuild_keeps_lifo_order() -> None:
    core = one_core()
    specs = [JobSpec("l", "q", b"1", lifo=True)] * 2 + [JobSpec("f", "q", b"1")]
    ids = [rec.id for rec, _ in core.add(specs, 0.0)]
    assert [rec.id for rec in core.select("q", [W])] == [ids[1], ids[0], ids[2]]
    assert core.rebuild_indexes().index_view() == core.index_view()


def test_replay_with_the_same_seed_reproduces_the_state() -> None:
    core = CoreState(seed=99)
    core.record_changes(True)
    rec = core.add([JobSpec("a", "q", b"1", attempts=3, backoff=Backoff.fixed(5, jitter=1))], 0)
    core.take("q", 1, 0.0, "t")
    core.fail(rec[0][0].id, "t", "r", None, 0.0)
    replayed = CoreState(seed=99)
    for change in core.take_effects()[0]:
        replayed.apply_change(change)
    assert replayed.snapshot() == core.snapshot()
    assert replayed.index_view() == core.index_view()
