"""Job control in the pure core (no runtime): promote, change_delay, change_priority and
obliterate keep the indexes, record their changes, and replay to the same state."""

from __future__ import annotations

from typing import Any

import pytest

from actorq._core.records import JobSpec
from actorq._core.state import CoreState
from actorq._core.states import JobState
from actorq._exceptions import IllegalTransitionError

W, D, A = JobState.WAITING, JobState.DELAYED, JobState.ACTIVE


def spec(name: str, **kw: Any) -> JobSpec:
    return JobSpec(name=name, queue="q", data=b"{}", **kw)


def fresh() -> CoreState:
    core = CoreState(seed=1)
    core.record_changes(True)
    return core


def replayed(core: CoreState) -> CoreState:
    again = CoreState(seed=1)
    again.apply_changes(core.changes or [])
    return again


def taken(core: CoreState, now: float) -> list[str]:
    return [rec.name for rec in core.take("q", 100, now, "t", None, 1)]


def test_change_priority_reorders_the_waiting_line_and_replays() -> None:
    core = fresh()
    _a, b, c = (core.add([spec(n)], 0.0)[0][0] for n in "abc")
    core.change_priority(c.id, 9, lifo=False)
    core.change_priority(b.id, 0, lifo=True)
    assert core.index_view() == replayed(core).index_view()
    assert core.snapshot() == replayed(core).snapshot()
    assert taken(core, 1.0) == ["c", "b", "a"]


def test_change_delay_and_promote_move_the_timed_index() -> None:
    core = fresh()
    early = core.add([spec("early", delay=100.0)], 0.0)[0][0]
    late = core.add([spec("late", delay=10.0)], 0.0)[0][0]
    core.change_delay(early.id, 1.0, now=2.0)
    core.run_timers(3.0)
    assert early.state is W and late.state is D
    core.promote(late.id)
    assert late.state is W and not core.delayed
    with pytest.raises(IllegalTransitionError):
        core.promote(late.id)
    with pytest.raises(IllegalTransitionError):
        core.change_delay(late.id, 1.0, now=3.0)
    assert core.snapshot() == replayed(core).snapshot()
    assert taken(core, 4.0) == ["early", "late"]


def test_obliterate_refuses_active_jobs_unless_forced_and_empties_the_queue() -> None:
    core = fresh()
    for n in range(3):
        core.add([spec(f"j{n}")], 0.0)
    core.add([spec("d", delay=5.0)], 0.0)
    [held] = core.take("q", 1, 0.0, "t", None, 1)
    before = core.snapshot()
    with pytest.raises(IllegalTransitionError):
        core.obliterate("q", 1.0, force=False)
    assert core.snapshot() == before
    assert core.obliterate("q", 1.0, force=True) == 4
    assert core.jobs == {} and set(core.counts("q").values()) == {0}
    assert core.aborts == [(held.id, "t")]  # the engine cancels its processor
    assert core.snapshot() == replayed(core).snapshot()


def test_stall_all_active_can_leave_timed_locks_to_expire() -> None:
    # A leader on a leased journal stalls at start only the jobs under untimed locks; a
    # timed one stays active, its holder's, until its lock expires.
    core = fresh()
    core.add([spec("untimed"), spec("timed")], 0.0)
    (untimed,) = core.take("q", 1, 1.0, "old", None, 1)
    (timed,) = core.take("q", 1, 1.0, "old-timed", 30.0, 1)
    assert core.stall_all_active(2.0, timed=False) == 1
    assert (untimed.state, untimed.stalled_counter) == (W, 1)
    assert (timed.state, timed.lock_token, timed.lock_expires_at) == (A, "old-timed", 30.0)
    assert core.snapshot() == replayed(core).snapshot()
    assert core.expire_locks(29.0) == 0
    assert core.expire_locks(30.0) == 1
    assert (timed.state, timed.stalled_counter) == (W, 1)
    assert core.stall_all_active(31.0) == 0
    core.take("q", 2, 31.0, "new", 40.0, 1)
    assert core.stall_all_active(32.0) == 2  # the default stalls every active job
