"""Dynamic children: `queue.add(..., parent=job)` from a processor, `move_to_waiting_children`,
`get_children_values`, `get_dependencies` / `get_dependencies_count`, and bad parents."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from runtimes import MakeRuntime

from actorq import (
    FlowJob,
    FlowProducer,
    InvalidDependencyError,
    Job,
    JobState,
    VirtualClock,
)


async def test_a_parent_spawns_children_waits_and_runs_again_after_the_last(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        orch = rt.queue("orchestrator")
        sub = rt.queue("subtasks")
        parent_runs: list[tuple[str, float, int]] = []
        after_wait: list[int] = []
        children: list[Job] = []

        async def parent(job: Job) -> dict[str, Any]:
            step = job.data.get("step", "spawn")
            parent_runs.append((step, clock.now(), job.attempts_started))
            if step == "spawn":
                for i in range(3):
                    children.append(await sub.add("chunk", {"i": i}, parent=job))
                await job.update_data({"step": "merge"})
                await job.move_to_waiting_children()
                after_wait.append(job.id)  # never runs: children are pending
            values = await job.get_children_values()
            return {"values": {str(k): v for k, v in values.items()}}

        async def child(job: Job) -> int:
            await clock.sleep(10 * (job.data["i"] + 1))
            return int(job.data["i"]) * 100

        rt.worker(orch, parent)
        rt.worker(sub, child, concurrency=3)
        top = await orch.add("merge", {})
        await clock.sleep(15)  # t=15: child 0 done, children 1 and 2 still running
        assert top.state is JobState.WAITING_CHILDREN
        assert [c.parent_id for c in children] == [top.id] * 3
        deps = await top.get_dependencies()
        assert deps["processed"] == {children[0].id: 0}
        assert deps["pending"] == [children[1].id, children[2].id]
        assert deps["failed"] == {}
        assert deps["ignored"] == {}
        assert await top.get_dependencies_count() == {
            "processed": 1,
            "pending": 2,
            "failed": 0,
            "ignored": 0,
        }
        assert await top.get_children_values() == {children[0].id: 0}
        with anyio.fail_after(5):
            result = await top.wait_until_finished()
        assert after_wait == []
        assert result == {"values": {str(c.id): i * 100 for i, c in enumerate(children)}}
        assert [(step, started) for step, _at, started in parent_runs] == [
            ("spawn", 1),
            ("merge", 2),
        ]
        second_start = parent_runs[1][1]
        assert top.processed_at == second_start == 30.0
        for c in children:
            assert c.state is JobState.COMPLETED
            assert c.finished_at is not None
            assert c.finished_at <= second_start
        assert max(c.finished_at or 0.0 for c in children) == second_start
        assert top.attempts_made == 1
        assert await top.get_children_values() == {c.id: i * 100 for i, c in enumerate(children)}
        assert await top.get_dependencies_count() == {
            "processed": 3,
            "pending": 0,
            "failed": 0,
            "ignored": 0,
        }


async def test_move_to_waiting_children_with_zero_children_returns_false(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("orchestrator")
        outcomes: list[bool] = []

        async def parent(job: Job) -> str:
            outcomes.append(await job.move_to_waiting_children())
            return "carried on"

        rt.worker(q, parent)
        job = await q.add("lonely")
        with anyio.fail_after(5):
            assert await job.wait_until_finished() == "carried on"
        assert outcomes == [False]
        assert job.attempts_started == 1
        assert await job.get_children_values() == {}
        assert await job.get_dependencies_count() == {
            "processed": 0,
            "pending": 0,
            "failed": 0,
            "ignored": 0,
        }


async def test_move_to_waiting_children_when_every_child_already_finished(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        orch = rt.queue("orchestrator")
        sub = rt.queue("subtasks")
        outcomes: list[bool] = []
        seen: list[dict[int, Any]] = []

        async def parent(job: Job) -> int:
            kids = [await sub.add("k", i, parent=job) for i in range(2)]
            for kid in kids:  # the children need no time, so this cannot stall the clock
                await kid.wait_until_finished()
            outcomes.append(await job.move_to_waiting_children())
            values = await job.get_children_values()
            seen.append(values)
            return sum(values.values())

        async def child(job: Job) -> int:
            return int(job.data) + 1

        rt.worker(orch, parent)
        rt.worker(sub, child)
        job = await orch.add("p")
        with anyio.fail_after(5):
            assert await job.wait_until_finished() == 3
        assert outcomes == [False]
        assert len(seen) == 1
        assert sorted(seen[0].values()) == [1, 2]
        assert job.attempts_started == 1


async def test_a_child_added_from_outside_a_processor_holds_its_waiting_parent(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        orch = rt.queue("orchestrator")
        sub = rt.queue("subtasks")
        runs: list[float] = []

        async def parent(job: Job) -> Any:
            runs.append(clock.now())
            if job.data["step"] == "wait":
                await job.update_data({"step": "done"})
                await job.move_to_waiting_children()
            values = await job.get_children_values()
            return {str(k): v for k, v in values.items()}

        async def child(job: Job) -> str:
            await clock.sleep(50)
            return "late"

        await orch.pause()
        top = await orch.add("p", {"step": "wait"})
        kid = await sub.add("k", parent=top.id)  # by id, from outside
        rt.worker(orch, parent)
        rt.worker(sub, child)
        await orch.resume()
        with anyio.fail_after(5):
            assert await top.wait_until_finished() == {str(kid.id): "late"}
        assert runs == [0.0, 50.0]
        assert kid.finished_at == 50.0


async def test_a_parent_that_does_not_exist_is_rejected_and_nothing_is_added(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("subtasks")
        before = await q.counts()
        with pytest.raises(InvalidDependencyError) as info:
            await q.add("orphan", parent=424242)
        message = str(info.value)
        assert "parent" in message
        assert "424242" in message
        assert "does not exist" in message
        assert await q.counts() == before
        assert await q.get_jobs() == []
        # in a bulk add too, with the item named
        with pytest.raises(InvalidDependencyError) as bulk:
            await q.add_bulk([{"name": "ok"}, {"name": "orphan", "parent": 424242}])
        assert "jobs[1]" in str(bulk.value)
        assert await q.get_jobs() == []


async def test_a_finished_parent_is_rejected_and_nothing_is_added(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        done = rt.queue("done")
        sub = rt.queue("subtasks")

        async def noop(job: Job) -> None:
            return None

        rt.worker(done, noop)
        finished = await done.add("finished")
        with anyio.fail_after(5):
            await finished.wait_until_finished()
        cancelled = await done.add("cancelled", delay=100)
        await cancelled.cancel()
        for gone, state in ((finished, "completed"), (cancelled, "cancelled")):
            with pytest.raises(InvalidDependencyError) as info:
                await sub.add("late child", parent=gone)
            message = str(info.value)
            assert "parent" in message
            assert str(gone.id) in message
            assert state in message
        assert await sub.get_jobs() == []
        assert (await sub.counts())["waiting"] == 0
        assert await finished.get_dependencies_count() == {
            "processed": 0,
            "pending": 0,
            "failed": 0,
            "ignored": 0,
        }


async def test_a_running_job_chains_a_whole_flow_under_itself(make_runtime: MakeRuntime) -> None:
    # BullMQ's "chaining flows": the flow's root names the running job as its parent, so
    # the job waits for the whole tree and then reads the root's value.
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")
        order: list[str] = []

        async def work(job: Job) -> Any:
            order.append(job.name)
            if job.name == "orchestrate" and job.data.get("step") != "collect":
                tree = FlowJob(
                    "report",
                    "q",
                    opts={"parent": job},
                    children=[FlowJob("part", "q", {"n": n}) for n in range(2)],
                )
                root = await FlowProducer(rt).add(tree)
                assert root.job.parent_id == job.id
                await job.update_data({"step": "collect"})
                await job.move_to_waiting_children()
            if job.name == "part":
                return job.data["n"]
            if job.name == "report":
                return sum((await job.get_children_values()).values())
            return list((await job.get_children_values()).values())

        rt.worker(q, work)
        top = await q.add("orchestrate", {})
        with anyio.fail_after(5):
            assert await top.wait_until_finished() == [1]
        assert order == ["orchestrate", "part", "part", "report", "orchestrate"]
