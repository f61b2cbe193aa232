"""Groups (issue 17, BullMQ Pro's): ``group=`` on a job; waiting jobs served round-robin by
group; a worker's ``group_concurrency`` and ``group_limiter`` per group of the queue, across
workers and restarts. Exact on a virtual clock."""

from __future__ import annotations

from typing import Any

import pytest
from runtimes import MakeRuntime, RuntimeLives

from actorq import InvalidOptionError, Job, MemoryChangeLog, Runtime, VirtualClock
from actorq._core import CoreState

#: Fairness is the core's: through a client each take of one job is a round trip, on
#: PostgreSQL a commit, and ten thousand of them show nothing a local run does not.
ONE_AT_A_TIME = "ten thousand jobs taken one at a time: a round trip or a commit each"


@pytest.mark.runtimes("local", why=ONE_AT_A_TIME)
async def test_a_small_group_is_not_starved_by_a_big_one(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock(autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")
        await q.add_bulk([{"name": "big", "group": "big"} for _ in range(10_000)])
        await q.add_bulk([{"name": "small", "group": "small"} for _ in range(10)])
        order: list[str] = []

        async def work(job: Job) -> None:
            order.append(job.name)

        rt.worker(q, work)  # one at a time: the order of starts is the order of takes
        await clock.advance(1)
        assert len(order) == 10_010
        assert order[:20].count("small") == 10  # taken in turn, from the first take
        assert order[:20] == ["big", "small"] * 10


async def test_ungrouped_jobs_take_their_turn_beside_the_groups(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock(autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")
        await q.add_bulk([{"name": "plain"} for _ in range(3)])
        await q.add_bulk([{"name": "a", "group": "a"} for _ in range(3)])
        order: list[str] = []

        async def work(job: Job) -> None:
            order.append(job.name)

        rt.worker(q, work)
        await clock.advance(1)
        assert order == ["plain", "a"] * 3


async def test_priorities_hold_within_a_group(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock(autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")
        for i, priority in enumerate([0, 5, 1, 5]):
            await q.add("a", i, group="a", priority=priority)
        await q.add("b", 9, group="b")
        got: list[Any] = []

        async def work(job: Job) -> None:
            got.append(job.data)

        rt.worker(q, work)
        await clock.advance(1)
        # Group a in priority order (FIFO among equals), b's one job in its turn.
        assert got == [1, 9, 3, 2, 0]
        waiting = await q.get_jobs("waiting")
        assert waiting == []


async def test_group_concurrency_caps_each_group_across_two_workers(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")
        active: dict[str, int] = {"a": 0, "b": 0}
        most: dict[str, int] = {"a": 0, "b": 0}
        ends: list[tuple[str, float]] = []

        async def work(job: Job) -> None:
            group = job.group
            assert group is not None
            active[group] += 1
            most[group] = max(most[group], active[group])
            await clock.sleep(1)
            active[group] -= 1
            ends.append((group, clock.now()))

        rt.worker(q, work, concurrency=10, group_concurrency=2)
        rt.worker(q, work, concurrency=10)
        await q.add_bulk([{"name": "j", "group": g} for g in ("a", "b") for _ in range(6)])
        await clock.advance(10)
        assert most == {"a": 2, "b": 2}
        assert len(ends) == 12
        # Two of each group per second: three seconds for six jobs each.
        assert sorted({t for _, t in ends}) == [1.0, 2.0, 3.0]


async def test_group_limiter_limits_each_group_on_its_own(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")
        starts: list[tuple[str | None, float]] = []

        async def work(job: Job) -> None:
            starts.append((job.group, clock.now()))

        rt.worker(q, work, concurrency=10, group_limiter={"max": 2, "duration": 10})
        await q.add_bulk([{"name": "j", "group": "a"} for _ in range(5)])
        await q.add_bulk([{"name": "j", "group": "b"} for _ in range(3)])
        await q.add("plain")  # ungrouped: not limited
        await clock.advance(60)
        times = {g: [t for h, t in starts if h == g] for g in ("a", "b", None)}
        assert times == {"a": [0.0, 0.0, 10.0, 10.0, 20.0], "b": [0.0, 0.0, 10.0], None: [0.0]}


async def test_bad_group_options_are_refused_naming_the_field(make_runtime: MakeRuntime) -> None:
    async def work(job: Job) -> None:
        return None

    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("q")
        for bad in ("", 5):
            with pytest.raises(InvalidOptionError) as info:
                await q.add("j", group=bad)  # type: ignore[arg-type]
            assert info.value.field == "group"
        with pytest.raises(InvalidOptionError) as bulk:
            await q.add_bulk([{"name": "j"}, {"name": "j", "group": ""}])
        assert bulk.value.field == "jobs[1].group"
        assert (await q.counts())["waiting"] == 0
        cases: list[tuple[dict[str, Any], str]] = [
            ({"group_concurrency": 0}, "group_concurrency"),
            ({"group_concurrency": "2"}, "group_concurrency"),
            ({"group_limiter": {"max": 0, "duration": 1}}, "group_limiter.max"),
            ({"group_limiter": {"max": 1, "duration": -1}}, "group_limiter.duration"),
            ({"group_limiter": {"max": 1}}, "group_limiter"),
            ({"group_limiter": {"max": 1, "duration": 1, "x": 1}}, "group_limiter.x"),
        ]
        for options, field in cases:
            with pytest.raises(InvalidOptionError) as info:
                rt.worker(q, work, **options)
            assert info.value.field == field
        assert q.get_workers() == []


# Local: it compares the core's state with a replay of its change log.
async def test_the_groups_replay_exactly_from_the_log() -> None:
    clock = VirtualClock(autojump=False)
    log = MemoryChangeLog()
    async with Runtime(journal=log, clock=clock) as rt:
        q = rt.queue("q")

        async def work(job: Job) -> None:
            await clock.sleep(1)

        rt.worker(q, work, concurrency=4, group_concurrency=1)
        rt.worker(q, work, group_limiter={"max": 1, "duration": 30})
        await q.add_bulk(
            [{"name": "j", "group": f"g{i % 3}", "priority": i % 2} for i in range(12)]
        )
        await q.add_bulk([{"name": "plain"} for _ in range(2)])
        await clock.advance(2.5)
        core = CoreState()
        core.apply_changes(log.replay())
        assert core.snapshot() == rt._core.snapshot()
        assert core.index_view() == rt._core.index_view()
        fresh = rt._core.rebuild_indexes()
        assert fresh.index_view() == rt._core.index_view()
        assert rt._core.index_view()["groups"]["q"]["active"] == {}


@pytest.mark.runtimes("local", "remote", "postgresql")
async def test_settings_and_windows_hold_across_a_restart(runtime_lives: RuntimeLives) -> None:
    clock = VirtualClock(autojump=False)
    starts: list[tuple[str | None, float]] = []

    async def work(job: Job) -> None:
        starts.append((job.group, clock.now()))

    async with runtime_lives(clock=clock) as life:
        async with life() as rt:
            q = rt.queue("q")
            rt.worker(q, work, group_limiter={"max": 1, "duration": 60}, group_concurrency=3)
            await q.add_bulk([{"name": "j", "group": "a"} for _ in range(3)])
            await clock.advance(1)
            assert starts == [("a", 0.0)]
        async with life() as rt:  # on the same clock: the time goes on from the stop
            q = rt.queue("q")
            jobs = await q.get_jobs("waiting")
            assert [j.group for j in jobs] == ["a", "a"]
            rt.worker(q, work)  # no group options: the queue's stay as they were
            await clock.advance(30)
            assert starts == [("a", 0.0)]  # the window opened before the restart still holds
            await clock.advance(30)
            assert starts == [("a", 0.0), ("a", 60.0)]


def _group_index(rt: Any) -> dict[str, Any] | None:
    """The core's group index, equal to one rebuilt from the records; None through a client
    (the engine is the host's)."""
    if not isinstance(rt, Runtime):
        return None
    view = rt._core.index_view()
    assert view == rt._core.rebuild_indexes().index_view()
    return dict(view["groups"])


async def test_cancel_remove_and_priority_changes_keep_the_group_lines_right(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock(autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")
        a = await q.add_bulk([{"name": "a", "data": i, "group": "a"} for i in range(4)])
        b = await q.add_bulk([{"name": "b", "data": i, "group": "b"} for i in range(2)])
        await a[0].cancel()
        await b[0].remove()
        await b[1].cancel()  # group b has nothing left: it leaves the rotation
        await a[3].change_priority(5)  # moves to the front of its group's line
        assert [j.data for j in await q.get_jobs("waiting")] == [3, 1, 2]
        groups = _group_index(rt)
        assert groups is None or groups["q"]["counts"] == {"a": 3}
        got: list[Any] = []

        async def work(job: Job) -> None:
            got.append((job.group, job.data))

        rt.worker(q, work)
        await clock.advance(1)
        assert got == [("a", 3), ("a", 1), ("a", 2)]
        groups = _group_index(rt)
        assert groups is None or groups == {}
