"""The one add path: jobs of a bulk add that share options share one validated spec, and
are checked and recorded exactly as jobs validated one by one (locally and through a
client)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from runtimes import MakeRuntime

from actorq import InvalidOptionError, Queue
from actorq._options import bulk_specs


@pytest.fixture
async def q(make_runtime: MakeRuntime) -> AsyncIterator[Queue]:
    async with make_runtime() as rt:
        queue = rt.queue("jobs")
        await queue.pause()
        yield queue


def test_jobs_with_the_same_plain_options_share_one_spec() -> None:
    items = [{"name": f"n{i}", "data": i, "priority": 3, "tags": ["a", "b"]} for i in range(4)]
    specs, names, datas = bulk_specs("q", items)
    assert len({id(s) for s in specs}) == 1
    assert names == ["n0", "n1", "n2", "n3"]
    assert datas == [b"0", b"1", b"2", b"3"]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"priority": True}, "jobs[1].priority"),  # equal to 1, but a bool
        ({"priority": 1.0}, "jobs[1].priority"),  # equal to 1, but a float
        ({"name": ""}, "jobs[1].name"),
        ({"data": float("nan")}, "jobs[1].data"),
        ({"data": object()}, "jobs[1].data"),
        ({"tags": ["a", 1]}, "jobs[1].tags"),
    ],
)
async def test_a_job_that_differs_from_a_shared_spec_is_still_checked(
    q: Queue, bad: dict[str, Any], field: str
) -> None:
    good = {"name": "n", "data": None, "priority": 1}
    with pytest.raises(InvalidOptionError) as info:
        await q.add_bulk([good, {**good, **bad}, good])
    assert info.value.field == field
    assert (await q.counts())["waiting"] == 0


async def test_shared_and_own_specs_give_each_job_its_own_fields(q: Queue) -> None:
    jobs = await q.add_bulk(
        [
            {"name": "a", "data": 1, "priority": 2, "tags": ["x"]},
            {"name": "b", "data": 2, "priority": 2, "tags": ("x",)},
            {"name": "c", "data": 3},
            {"name": "d", "data": 4, "priority": 5, "remove_on_complete": {"count": 1}},
            {"name": "e", "data": 5, "lifo": True},
            {"name": "f", "data": 6, "lifo": True},
        ]
    )
    assert [(j.name, j.data, j.priority, j.tags) for j in jobs] == [
        ("a", 1, 2, ("x",)),
        ("b", 2, 2, ("x",)),
        ("c", 3, 0, ()),
        ("d", 4, 5, ()),
        ("e", 5, 0, ()),
        ("f", 6, 0, ()),
    ]
    waiting = await q.get_jobs("waiting")
    # Priority first; within priority 0, LIFO jobs (the last added first) before FIFO ones.
    assert [j.name for j in waiting] == ["d", "a", "b", "f", "e", "c"]


async def test_a_single_add_is_a_batch_of_one(q: Queue) -> None:
    job = await q.add("one", {"k": 1})
    assert (job.name, job.data, job.priority, job.state) == ("one", {"k": 1}, 0, "waiting")
    with pytest.raises(InvalidOptionError) as info:
        await q.add("", None)
    assert info.value.field == "name"
    with pytest.raises(InvalidOptionError) as info:
        await q.add("x", float("inf"))
    assert info.value.field == "data"
