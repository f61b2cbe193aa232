"""The timed index (delayed jobs, retention expiries) behaves as a sorted list of its
live entries, whatever the order of adds and removals, through compactions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorq._core.timed import TimedIndex

ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "remove", "discard", "first"]),
        st.integers(0, 30),  # job id
        st.integers(0, 5).map(float),  # time: few values, so ties and re-adds happen
    ),
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_matches_a_sorted_list_of_live_entries(script: list[tuple[str, int, float]]) -> None:
    index = TimedIndex()
    model: dict[int, float] = {}
    for op, job_id, at in script:
        entry = (at, job_id)
        if op == "add":
            if job_id in model:
                with pytest.raises(ValueError, match=f"job {job_id} already"):
                    index.add(entry)
            else:
                index.add(entry)
                model[job_id] = at
        elif op == "remove":
            if model.get(job_id) == at:
                index.remove(entry)
                del model[job_id]
            else:
                with pytest.raises(KeyError):
                    index.remove(entry)
        elif op == "discard":
            index.discard(entry)
            if model.get(job_id) == at:
                del model[job_id]
        expected = sorted((t, j) for j, t in model.items())
        if expected:
            assert index[0] == expected[0]
        else:
            with pytest.raises(IndexError):
                index[0]
        assert list(index) == expected
        assert len(index) == len(expected) and bool(index) == bool(expected)
        assert all(e in index for e in expected)
        assert (at, job_id) in index or model.get(job_id) != at


def test_memory_stays_proportional_to_live_entries() -> None:
    # Entries added, then removed long before they would be due.
    index = TimedIndex()
    for job_id in range(100_000):
        index.add((1e9 + job_id, job_id))
        index.remove((1e9 + job_id, job_id))
    index.add((5.0, -1))
    assert len(index._heap) <= 2 * len(index) + 1024 + 1
    assert index[0] == (5.0, -1)


def test_only_the_earliest_entry_is_indexable() -> None:
    index = TimedIndex([(2.0, 1), (1.0, 2)])
    assert index[0] == (1.0, 2)
    with pytest.raises(IndexError, match="index 0"):
        index[1]
