"""The lock index reads as a sorted list of the locks the records hold, whatever the order of
takes, extensions, releases and removals, through compactions: a release writes nothing to
it, and memory stays proportional to the locks held."""

from __future__ import annotations

from typing import cast
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from actorq._core import locks as locks_module
from actorq._core.locks import LockIndex
from actorq._core.records import JobRecord
from actorq._core.states import JobState


class _Rec:
    """The two fields of a record the lock index reads."""

    def __init__(self) -> None:
        self.state = JobState.WAITING
        self.lock_expires_at: float | None = None


def _table() -> tuple[dict[int, _Rec], LockIndex]:
    jobs: dict[int, _Rec] = {}
    return jobs, LockIndex(cast(dict[int, JobRecord], jobs))


def _lock(jobs: dict[int, _Rec], index: LockIndex, job_id: int, at: float) -> _Rec:
    """What the core does when `job_id` is taken with a lock until `at`."""
    rec = jobs[job_id] = _Rec()
    rec.state, rec.lock_expires_at = JobState.ACTIVE, at
    index.add(at, job_id)
    return rec


def _drain(jobs: dict[int, _Rec], index: LockIndex) -> list[float]:
    """Stall every held lock, earliest first, as the stalled check does; their expiries."""
    expiries = []
    while (first := index.earliest()) is not None:
        expiries.append(first[0])
        jobs[first[1]].state, jobs[first[1]].lock_expires_at = JobState.WAITING, None
    return expiries


ops = st.lists(
    st.tuples(
        st.sampled_from(["take", "extend", "release", "complete", "remove", "stall"]),
        st.integers(0, 12),  # job id
        st.integers(0, 4).map(float),  # time: few values, so equal expiries recur
    ),
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_matches_the_locks_the_records_hold(script: list[tuple[str, int, float]]) -> None:
    with mock.patch.object(locks_module, "_SLACK", 2):  # compactions happen within a script
        jobs, index = _table()
        for op, job_id, at in script:
            rec = jobs.setdefault(job_id, _Rec())
            active = rec.state is JobState.ACTIVE
            if op == "take" and not active:
                rec.state, rec.lock_expires_at = JobState.ACTIVE, at
                index.add(at, job_id)
            elif op == "extend" and active:
                rec.lock_expires_at = at
                index.add(at, job_id)
            elif op == "release" and active:
                rec.state, rec.lock_expires_at = JobState.WAITING, None
            elif op == "complete" and active:
                rec.state, rec.lock_expires_at = JobState.COMPLETED, None
            elif op == "remove":
                del jobs[job_id]
            elif op == "stall":
                first = index.earliest()
                if first is not None and first[0] <= at:
                    stalled = jobs[first[1]]
                    stalled.state, stalled.lock_expires_at = JobState.WAITING, None
            expected = sorted(
                (r.lock_expires_at, i)
                for i, r in jobs.items()
                if r.state is JobState.ACTIVE and r.lock_expires_at is not None
            )
            assert list(index) == expected
            assert index.earliest() == (expected[0] if expected else None)
            assert len(index) == len(expected) and bool(index) == bool(expected)
            assert all(entry in index for entry in expected)
            assert (at, job_id) in index or (at, job_id) not in expected


def test_a_manual_loop_keeps_the_heap_small() -> None:
    # Each lock is taken, then given up by its completion long before it would expire.
    jobs, index = _table()
    for job_id in range(100_000):
        rec = _lock(jobs, index, job_id, 1e9 + job_id)
        rec.state, rec.lock_expires_at = JobState.COMPLETED, None
    _lock(jobs, index, -1, 5.0)
    assert len(index._heap) <= 2 * len(index) + 1024 + 1
    assert index.earliest() == (5.0, -1) and list(index) == [(5.0, -1)]


def test_many_locks_held_at_once_survive_compactions() -> None:
    jobs, index = _table()
    for job_id in range(10_000):
        # Expiries out of order, so the compacted heap must be rebuilt as a heap.
        _lock(jobs, index, job_id, float((job_id * 7919) % 10_000))
    assert len(index) == 10_000
    assert _drain(jobs, index) == [float(t) for t in range(10_000)]


def test_a_compaction_keeps_the_earliest_first() -> None:
    # Dropping entries from the middle of a heap leaves a list that is no heap: the
    # compaction must rebuild one, or a later expiry would be read before an earlier one.
    jobs, index = _table()
    for job_id in range(3_000):
        _lock(jobs, index, job_id, float((job_id * 7919) % 3_000))
    for job_id in range(0, 3_000, 3):  # a third released: their entries go stale
        jobs[job_id].state, jobs[job_id].lock_expires_at = JobState.COMPLETED, None
    job_id = 3_000
    compacted = False
    while not compacted:  # more locks, until a compaction drops the stale third
        before = len(index._heap)
        _lock(jobs, index, job_id, 1e6 + job_id)
        compacted = len(index._heap) <= before
        job_id += 1
    assert len(index._heap) == len(jobs) - 1_000
    drained = _drain(jobs, index)
    assert drained == sorted(drained) and len(drained) == len(jobs) - 1_000
