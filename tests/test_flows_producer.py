"""`FlowProducer.add`: trees across queues, bottom-up completion, `get_flow`, and the
all-or-nothing validation of a whole tree."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from runtimes import MakeRuntime

from actorq import (
    DependsOn,
    FlowJob,
    FlowProducer,
    InvalidDependencyError,
    InvalidOptionError,
    Job,
    JobNode,
    JobState,
    Runtime,
    VirtualClock,
)


def three_levels() -> FlowJob:
    """root (top) ← [A (mid) ← [a1 (mid), a2 (top)], B (top) ← [b1 (mid)]]."""
    return FlowJob(
        "root",
        "top",
        {"d": 1},
        children=[
            FlowJob(
                "A",
                "mid",
                {"d": 2},
                children=[FlowJob("a1", "mid", {"d": 5}), FlowJob("a2", "top", {"d": 3})],
            ),
            FlowJob("B", "top", {"d": 1}, children=[FlowJob("b1", "mid", {"d": 7})]),
        ],
    )


def walk(node: JobNode) -> list[JobNode]:
    out = [node]
    for child in node.children:
        out += walk(child)
    return out


def shape(node: JobNode) -> Any:
    return (node.job.id, node.job.name, node.job.queue, [shape(c) for c in node.children])


async def test_a_three_level_flow_across_two_queues_completes_bottom_up(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        started: dict[str, float] = {}
        ended: dict[str, float] = {}

        async def processor(job: Job) -> Any:
            started[job.name] = clock.now()
            await clock.sleep(job.data["d"])
            values = await job.get_children_values()
            ended[job.name] = clock.now()
            return [job.name, sorted(values.values())]

        tree = await FlowProducer(rt).add(three_levels())

        assert isinstance(tree, JobNode)
        names = [node.job.name for node in walk(tree)]
        assert names == ["root", "A", "a1", "a2", "B", "b1"]
        assert [n.job.queue for n in walk(tree)] == ["top", "mid", "mid", "top", "top", "mid"]
        by_name = {node.job.name: node for node in walk(tree)}
        for node in walk(tree):
            for child in node.children:
                assert child.job.parent_id == node.job.id
        assert tree.job.parent_id is None
        # parents wait for their children from the start; leaves are ready
        read = await FlowProducer(rt).get_flow(tree.job.id)
        assert read is not None
        assert shape(read) == shape(tree)
        assert {n.job.name: n.job.state for n in walk(read)} == {
            "root": JobState.WAITING_CHILDREN,
            "A": JobState.WAITING_CHILDREN,
            "B": JobState.WAITING_CHILDREN,
            "a1": JobState.WAITING,
            "a2": JobState.WAITING,
            "b1": JobState.WAITING,
        }
        rt.worker("top", processor, concurrency=4)
        rt.worker("mid", processor, concurrency=4)
        with anyio.fail_after(5):
            result = await tree.job.wait_until_finished()
        assert result == [
            "root",
            [["A", [["a1", []], ["a2", []]]], ["B", [["b1", []]]]],
        ]
        # children run before parents, and finish first, all the way up
        for node in walk(tree):
            for child in node.children:
                assert ended[child.job.name] <= started[node.job.name]
                assert child.job.finished_at is not None
                assert node.job.processed_at is not None
                assert child.job.finished_at <= node.job.processed_at
        a1, a_, root = by_name["a1"].job, by_name["A"].job, tree.job
        assert a1.finished_at is not None and a_.finished_at is not None
        assert root.finished_at is not None
        assert a1.finished_at < a_.finished_at < root.finished_at
        assert started == {"a1": 0.0, "a2": 0.0, "b1": 0.0, "B": 7.0, "A": 5.0, "root": 8.0}
        assert root.finished_at == 9.0
        after = await FlowProducer(rt).get_flow(tree.job.id)
        assert after is not None
        assert shape(after) == shape(tree)
        assert all(n.job.state is JobState.COMPLETED for n in walk(after))
        assert await FlowProducer(rt).get_flow(999_999) is None


async def test_a_bad_option_deep_in_the_tree_adds_nothing(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        top, mid = rt.queue("top"), rt.queue("mid")
        await top.add("already")
        before = (await top.counts(), await mid.counts())
        bad = FlowJob(
            "root",
            "top",
            children=[
                FlowJob("A", "mid"),
                FlowJob("B", "top", children=[FlowJob("b1", "mid", opts={"priority": "x"})]),
            ],
        )
        with pytest.raises(InvalidOptionError) as info:
            await FlowProducer(rt).add(bad)
        assert info.value.field == "children[1].children[0].opts.priority"
        assert "children[1].children[0]" in str(info.value)
        assert info.value.value == "x"
        assert (await top.counts(), await mid.counts()) == before
        assert [j.name for j in await top.get_jobs()] == ["already"]
        assert await mid.get_jobs() == []


async def test_a_tree_the_core_rejects_adds_nothing_either() -> None:
    async with Runtime(clock=VirtualClock()) as rt:
        top, mid = rt.queue("top"), rt.queue("mid")
        before = (await top.counts(), await mid.counts())
        bad = FlowJob(
            "root",
            "top",
            children=[
                FlowJob("A", "mid"),
                FlowJob(
                    "B",
                    "top",
                    children=[FlowJob("b1", "mid", opts={"depends_on": DependsOn([777])})],
                ),
            ],
        )
        with pytest.raises(InvalidDependencyError) as info:
            await FlowProducer(rt).add(bad)
        assert "777" in str(info.value)
        assert (await top.counts(), await mid.counts()) == before
        assert await top.get_jobs() == []
        assert await mid.get_jobs() == []


async def test_the_same_flow_job_twice_is_rejected(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        shared = FlowJob("leaf", "mid")
        tree = FlowJob("root", "top", children=[shared, FlowJob("B", "top", children=[shared])])
        with pytest.raises(InvalidOptionError) as info:
            await FlowProducer(rt).add(tree)
        assert "twice" in str(info.value)
        assert info.value.field == "children[1].children[0]"
        assert await rt.queue("top").get_jobs() == []
        assert await rt.queue("mid").get_jobs() == []


async def test_an_unknown_option_in_a_flow_is_named(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        tree = FlowJob("root", "top", children=[FlowJob("A", "mid", opts={"priorty": 3})])
        with pytest.raises(InvalidOptionError) as info:
            await FlowProducer(rt).add(tree)
        assert info.value.field == "children[0].opts.priorty"
        assert "priorty" in str(info.value)
        assert "unknown option" in str(info.value)
        # and the tree decides who is whose parent
        owned = FlowJob("root", "top", children=[FlowJob("A", "mid", opts={"parent": 1})])
        with pytest.raises(InvalidOptionError) as parent:
            await FlowProducer(rt).add(owned)
        assert parent.value.field == "children[0].opts.parent"
        assert await rt.queue("top").get_jobs() == []
        assert await rt.queue("mid").get_jobs() == []


async def test_an_unknown_option_deep_in_a_flow_gets_the_same_hint_as_in_add(
    make_runtime: MakeRuntime,
) -> None:
    """`queue.add` and `add_bulk` suggest the option meant; a flow node should too."""
    async with make_runtime(clock=VirtualClock()) as rt:
        with pytest.raises(InvalidOptionError) as direct:
            await rt.queue("top").add("x", priorty=3)
        assert "did you mean 'priority'" in str(direct.value)
        tree = FlowJob("root", "top", children=[FlowJob("A", "mid", opts={"priorty": 3})])
        with pytest.raises(InvalidOptionError) as info:
            await FlowProducer(rt).add(tree)
        assert info.value.field == "children[0].opts.priorty"
        assert "did you mean 'priority'" in str(info.value)
