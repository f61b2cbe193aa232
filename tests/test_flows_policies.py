"""What a child's failure does to its parent, one policy per test, and what removing or
cancelling a parent does to its open children."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from runtimes import MakeRuntime

from actorq import (
    FlowJob,
    FlowProducer,
    InvalidOptionError,
    Job,
    JobFailedError,
    JobState,
    Runtime,
    VirtualClock,
)

#: State that must hold on every kind of runtime, PostgreSQL's journal included.
pytestmark = pytest.mark.runtimes("local", "remote", "postgresql")


def family(bad_opts: dict[str, Any]) -> FlowJob:
    """A parent on "parents" with a child that fails at t=5 and one that completes at t=100."""
    return FlowJob(
        "parent",
        "parents",
        {"step": "start"},
        children=[
            FlowJob("bad", "kids", {"sleep": 5, "fail": True}, opts=bad_opts),
            FlowJob("slow", "kids", {"sleep": 100, "fail": False}),
        ],
    )


def make_kid(clock: VirtualClock) -> Any:
    async def kid(job: Job) -> str:
        await clock.sleep(job.data["sleep"])
        if job.data["fail"]:
            raise RuntimeError(f"{job.name} broke")
        return f"{job.name} ok"

    return kid


def start_workers(
    rt: Runtime, clock: VirtualClock, parent_runs: list[tuple[float, dict[str, Any]]]
) -> None:
    async def parent(job: Job) -> Any:
        deps = await job.get_dependencies()
        parent_runs.append((clock.now(), deps))
        # whatever is still open, wait for it (returns False when nothing is)
        await job.move_to_waiting_children()
        values = await job.get_children_values()
        return sorted(values.values())

    rt.worker("parents", parent)
    rt.worker("kids", make_kid(clock), concurrency=4)


def nodes(tree: Any) -> tuple[Job, Job, Job]:
    return tree.job, tree.children[0].job, tree.children[1].job


async def test_by_default_a_failed_child_fails_its_waiting_parent_at_once(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        runs: list[tuple[float, dict[str, Any]]] = []
        start_workers(rt, clock, runs)
        parent, bad, slow = nodes(await FlowProducer(rt).add(family({})))
        with anyio.fail_after(5), pytest.raises(JobFailedError) as info:
            await parent.wait_until_finished()
        assert runs == []  # the parent never ran
        assert parent.state is JobState.FAILED
        assert parent.failed_reason is not None
        assert f"child job {bad.id}" in parent.failed_reason
        assert "bad broke" in parent.failed_reason
        assert info.value.reason == parent.failed_reason
        assert parent.finished_at == bad.finished_at == 5.0  # as soon as the child failed
        assert slow.state is JobState.ACTIVE  # the sibling is still running meanwhile


async def test_by_default_a_running_parent_fails_once_it_stops_running(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        kids = rt.queue("kids")
        reached: list[str] = []

        async def parent(job: Job) -> str:
            child = await kids.add("bad", {"sleep": 1, "fail": True}, parent=job)
            await clock.sleep(10)  # the child fails at t=1 while the parent runs
            assert child.state is JobState.FAILED
            assert job.state is JobState.ACTIVE  # not failed under its running processor
            reached.append("before wait")
            await job.move_to_waiting_children()
            reached.append("after wait")
            return "unreachable"

        rt.worker("parents", parent)
        rt.worker("kids", make_kid(clock))
        top = await rt.queue("parents").add("p")
        with anyio.fail_after(5), pytest.raises(JobFailedError):
            await top.wait_until_finished()
        assert reached == ["before wait"]
        assert top.failed_reason is not None
        assert "child job" in top.failed_reason
        assert "bad broke" in top.failed_reason
        assert top.finished_at == 10.0


async def test_ignore_dependency_on_failure_lets_the_parent_complete(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        runs: list[tuple[float, dict[str, Any]]] = []
        start_workers(rt, clock, runs)
        tree = await FlowProducer(rt).add(family({"ignore_dependency_on_failure": True}))
        parent, bad, slow = nodes(tree)
        with anyio.fail_after(5):
            assert await parent.wait_until_finished() == ["slow ok"]
        assert [at for at, _deps in runs] == [100.0]
        deps = runs[0][1]
        assert list(deps["ignored"]) == [bad.id]
        assert "bad broke" in deps["ignored"][bad.id]
        assert deps["processed"] == {slow.id: "slow ok"}
        assert deps["pending"] == []
        assert deps["failed"] == {}
        assert bad.state is JobState.FAILED
        assert await parent.get_dependencies_count() == {
            "processed": 1,
            "pending": 0,
            "failed": 0,
            "ignored": 1,
        }


async def test_remove_dependency_on_failure_drops_the_dependency(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        runs: list[tuple[float, dict[str, Any]]] = []
        start_workers(rt, clock, runs)
        tree = await FlowProducer(rt).add(family({"remove_dependency_on_failure": True}))
        parent, bad, slow = nodes(tree)
        await clock.sleep(10)  # t=10: the bad child failed, the slow one still runs
        assert parent.state is JobState.WAITING_CHILDREN
        deps = await parent.get_dependencies()
        assert deps["pending"] == [slow.id]
        assert bad.id not in deps["failed"]
        assert bad.id not in deps["ignored"]
        with anyio.fail_after(5):
            assert await parent.wait_until_finished() == ["slow ok"]
        assert [at for at, _deps in runs] == [100.0]
        assert await parent.get_dependencies() == {
            "processed": {slow.id: "slow ok"},
            "pending": [],
            "failed": {},
            "ignored": {},
            "unmet_job_ids": [],
            "blocking_job_ids": [],
        }
        assert bad.state is JobState.FAILED
        flow = await FlowProducer(rt).get_flow(parent.id)
        assert flow is not None
        assert [c.job.id for c in flow.children] == [slow.id]


async def test_continue_parent_on_failure_starts_the_parent_when_the_child_fails(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        runs: list[tuple[float, dict[str, Any]]] = []
        start_workers(rt, clock, runs)
        tree = await FlowProducer(rt).add(family({"continue_parent_on_failure": True}))
        parent, bad, slow = nodes(tree)
        with anyio.fail_after(5):
            assert await parent.wait_until_finished() == ["slow ok"]
        # first run as soon as the bad child failed, while the slow one still ran
        assert [at for at, _deps in runs] == [5.0, 100.0]
        first = runs[0][1]
        assert bad.finished_at == 5.0
        assert list(first["failed"]) == [bad.id]
        assert "bad broke" in first["failed"][bad.id]
        assert first["pending"] == [slow.id]
        assert first["processed"] == {}
        assert parent.attempts_started == 2
        assert parent.attempts_made == 1


async def test_fail_parent_on_failure_false_keeps_the_parent_waiting_for_a_retry(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        runs: list[tuple[float, dict[str, Any]]] = []
        start_workers(rt, clock, runs)
        tree = await FlowProducer(rt).add(family({"fail_parent_on_failure": False}))
        parent, bad, slow = nodes(tree)
        with anyio.fail_after(5), pytest.raises(JobFailedError):
            await bad.wait_until_finished()
        with anyio.fail_after(5):
            assert await slow.wait_until_finished() == "slow ok"
        await clock.sleep(1_000)
        # both children ended long ago; the parent still waits, BullMQ style
        assert parent.state is JobState.WAITING_CHILDREN
        assert runs == []
        deps = await parent.get_dependencies()
        assert deps["pending"] == [bad.id]
        assert list(deps["failed"]) == [bad.id]
        assert deps["processed"] == {slow.id: "slow ok"}
        # fix the cause, retry the child: once it completes, the parent runs
        await bad.update_data({"sleep": 5, "fail": False})
        await bad.retry()
        retried_at = clock.now()
        with anyio.fail_after(5):
            assert await parent.wait_until_finished() == ["bad ok", "slow ok"]
        assert bad.state is JobState.COMPLETED
        assert bad.finished_at == retried_at + 5
        assert [at for at, _deps in runs] == [retried_at + 5]
        assert parent.processed_at == bad.finished_at
        assert runs[0][1]["failed"] == {}
        assert runs[0][1]["pending"] == []


async def test_two_child_failure_policies_at_once_are_rejected_at_add(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        parents, kids = rt.queue("parents"), rt.queue("kids")
        await parents.pause()
        top = await parents.add("p")
        with pytest.raises(InvalidOptionError) as info:
            await kids.add(
                "k",
                parent=top,
                ignore_dependency_on_failure=True,
                remove_dependency_on_failure=True,
            )
        assert "ignore_dependency_on_failure" in str(info.value)
        assert "remove_dependency_on_failure" in str(info.value)
        assert "mutually exclusive" in str(info.value)
        with pytest.raises(InvalidOptionError) as both:
            await kids.add(
                "k", parent=top, fail_parent_on_failure=True, continue_parent_on_failure=True
            )
        assert "continue_parent_on_failure" in str(both.value)
        tree = FlowJob(
            "p",
            "parents",
            children=[
                FlowJob(
                    "k",
                    "kids",
                    opts={"ignore_dependency_on_failure": True, "continue_parent_on_failure": True},
                )
            ],
        )
        with pytest.raises(InvalidOptionError) as flow:
            await FlowProducer(rt).add(tree)
        assert flow.value.field.startswith("children[0].opts.")
        assert await kids.get_jobs() == []
        assert [j.id for j in await parents.get_jobs()] == [top.id]
        assert await top.get_dependencies_count() == {
            "processed": 0,
            "pending": 0,
            "failed": 0,
            "ignored": 0,
        }


def deep_family() -> FlowJob:
    return FlowJob(
        "root",
        "parents",
        children=[
            FlowJob("mid", "kids", children=[FlowJob("leaf", "kids")]),
            FlowJob("other", "kids"),
        ],
    )


async def test_removing_a_parent_cancels_its_open_children(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        tree = await FlowProducer(rt).add(deep_family())
        root, mid, other = tree.job, tree.children[0].job, tree.children[1].job
        leaf = tree.children[0].children[0].job
        await rt.queue("parents").remove(root.id)
        assert await rt.queue("parents").get_job(root.id) is None
        for child in (mid, other):
            assert child.state is JobState.CANCELLED
            assert child.failed_reason is not None
            assert f"parent job {root.id}" in child.failed_reason
            assert "removed" in child.failed_reason
        assert leaf.state is JobState.CANCELLED  # transitively, naming its own parent
        assert leaf.failed_reason is not None
        assert f"parent job {mid.id}" in leaf.failed_reason


async def test_cancelling_a_parent_cancels_its_open_children(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        done_first = rt.queue("kids")

        async def quick(job: Job) -> str:
            return "done"

        tree = await FlowProducer(rt).add(
            FlowJob(
                "root",
                "parents",
                children=[
                    FlowJob("finished", "kids"),
                    FlowJob("open", "later", children=[FlowJob("leaf", "later")]),
                ],
            )
        )
        root, finished, still_open = tree.job, tree.children[0].job, tree.children[1].job
        leaf = tree.children[1].children[0].job
        rt.worker(done_first, quick)
        with anyio.fail_after(5):
            assert await finished.wait_until_finished() == "done"
        await root.cancel(reason="not needed")
        assert root.state is JobState.CANCELLED
        assert root.failed_reason == "not needed"
        assert finished.state is JobState.COMPLETED  # a finished child is left alone
        assert still_open.state is JobState.CANCELLED
        assert still_open.failed_reason is not None
        assert f"parent job {root.id}" in still_open.failed_reason
        assert "cancelled" in still_open.failed_reason
        assert leaf.state is JobState.CANCELLED
        assert leaf.failed_reason is not None
        assert f"parent job {still_open.id}" in leaf.failed_reason


async def test_a_child_failure_that_will_be_retried_does_not_touch_the_parent(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        tries: list[float] = []

        async def flaky(job: Job) -> str:
            tries.append(clock.now())
            if len(tries) == 1:
                raise RuntimeError("transient")
            return "fine"

        async def parent(job: Job) -> Any:
            values = await job.get_children_values()
            return sorted(values.values())

        rt.worker("kids", flaky)
        rt.worker("parents", parent)
        tree = await FlowProducer(rt).add(
            FlowJob(
                "p", "parents", children=[FlowJob("k", "kids", opts={"attempts": 2, "backoff": 10})]
            )
        )
        await clock.sleep(5)  # between the attempts
        assert tree.job.state is JobState.WAITING_CHILDREN
        assert await tree.job.get_dependencies_count() == {
            "processed": 0,
            "pending": 1,
            "failed": 0,
            "ignored": 0,
        }
        with anyio.fail_after(5):
            assert await tree.job.wait_until_finished() == ["fine"]
        assert tries == [0.0, 10.0]
        assert tree.job.processed_at == 10.0


async def test_removing_the_last_open_child_releases_a_waiting_parent(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        starts: list[float] = []

        async def parent(job: Job) -> Any:
            starts.append(clock.now())
            values = await job.get_children_values()
            return sorted(values.values())

        rt.worker("parents", parent)
        tree = await FlowProducer(rt).add(
            FlowJob("p", "parents", children=[FlowJob("k", "nobody-works-here")])
        )
        await clock.sleep(5)
        assert starts == []
        await rt.queue("nobody-works-here").remove(tree.children[0].job.id)
        with anyio.fail_after(5):
            assert await tree.job.wait_until_finished() == []
        assert starts == [5.0]


async def test_by_default_cancelling_a_child_fails_its_waiting_parent(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        tree = await FlowProducer(rt).add(
            FlowJob("p", "parents", children=[FlowJob("k", "nobody-works-here")])
        )
        child = tree.children[0].job
        await child.cancel(reason="no longer wanted")
        assert child.state is JobState.CANCELLED
        assert tree.job.state is JobState.FAILED
        assert tree.job.failed_reason is not None
        assert f"child job {child.id}" in tree.job.failed_reason
        assert "no longer wanted" in tree.job.failed_reason


async def test_a_deduplicated_child_in_a_flow_does_not_leave_its_parent_waiting_forever(
    make_runtime: MakeRuntime,
) -> None:
    """A flow child whose idempotency key matches an existing job is that job (as `add`
    returns it); the parent must still run once its children have finished, not hang."""
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        kids = rt.queue("kids")

        async def value(job: Job) -> str:
            return "v"

        rt.worker(kids, value)
        rt.worker("parents", value)
        old = await kids.add("k", idempotency_key="K1")
        with anyio.fail_after(5):
            assert await old.wait_until_finished() == "v"
        tree = await FlowProducer(rt).add(
            FlowJob("p", "parents", children=[FlowJob("k", "kids", opts={"idempotency_key": "K1"})])
        )
        assert tree.children[0].job.id == old.id
        with anyio.fail_after(5):
            try:
                await tree.job.wait_until_finished(timeout=3600)
            except TimeoutError:
                pytest.fail(
                    f"parent stayed {tree.job.state.value} for an hour: its deduplicated child "
                    f"{old.id} (completed) is not linked to it, so nothing ever wakes it"
                )
        assert tree.job.state is JobState.COMPLETED
