"""Deduplication (issue 17, BullMQ 5's ``deduplication`` option): simple mode (ignored until
the job finishes), throttle (``ttl``), ``extend``, debounce (``replace`` with a delay), the
key calls, the `JobDeduplicated` event, bad input, and the keys across a restart. Exact on a
virtual clock."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from runtimes import MakeRuntime, RuntimeLives

from actorq import (
    FlowJob,
    FlowProducer,
    InvalidOptionError,
    Job,
    JobDeduplicated,
    JobState,
    MemoryChangeLog,
    Runtime,
    VirtualClock,
)
from actorq._core import CoreState
from actorq._journal_codec import decode_batch, decode_snapshot, encode_batch, encode_snapshot


def dedup_events(events: Any) -> list[tuple[int, str, int | None]]:
    return [
        (e.job_id, e.deduplication_id, e.deduplicated_job_id)
        for e in events.drain_nowait()
        if isinstance(e, JobDeduplicated)
    ]


#: Keys are state: they must hold on every kind of runtime, PostgreSQL's journal included.
pytestmark = pytest.mark.runtimes("local", "remote", "postgresql")


async def test_simple_mode_ignores_duplicates_until_the_job_completes(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock(autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")
        async with rt.events() as events:
            first = await q.add("j", 1, deduplication={"id": "k"})
            again = await q.add("j", 2, deduplication={"id": "k"})
            assert again.id == first.id and again.data == 1  # the existing job, its own data
            assert dedup_events(events) == [(first.id, "k", None)]
        assert await q.get_deduplication_job_id("k") == first.id
        assert (await q.counts())["waiting"] == 1

        async def work(job: Job) -> None:
            return None

        rt.worker(q, work)
        await clock.advance(1)
        assert (await q.get_job(first.id)).state is JobState.COMPLETED  # type: ignore[union-attr]
        assert await q.get_deduplication_job_id("k") is None
        third = await q.add("j", 3, deduplication={"id": "k"})
        assert third.id != first.id


async def test_simple_mode_frees_the_key_when_the_job_finally_fails_or_is_removed(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock(autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")

        async def work(job: Job) -> None:
            raise ValueError("no")

        failing = await q.add("j", deduplication={"id": "f"}, attempts=2)
        rt.worker(q, work)
        await clock.advance(1)
        assert (await q.get_job(failing.id)).state is JobState.FAILED  # type: ignore[union-attr]
        assert (await q.add("j", deduplication={"id": "f"})).id != failing.id

        delayed = await q.add("j", deduplication={"id": "r"}, delay=100)
        await delayed.remove()
        assert await q.get_deduplication_job_id("r") is None
        assert (await q.add("j", deduplication={"id": "r"})).id != delayed.id


async def test_keys_are_per_queue(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock(autojump=False)) as rt:
        a = await rt.queue("a").add("j", deduplication={"id": "k"})
        b = await rt.queue("b").add("j", deduplication={"id": "k"})
        assert a.id != b.id


async def test_throttle_ignores_duplicates_for_the_ttl_even_after_the_job_finished(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock(autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")

        async def work(job: Job) -> None:
            return None

        rt.worker(q, work)
        first = await q.add("j", 1, deduplication={"id": "t", "ttl": 10}, remove_on_complete=True)
        await clock.advance(5)
        assert await q.get_job(first.id) is None  # done and removed: the key still holds
        again = await q.add("j", 2, deduplication={"id": "t", "ttl": 10})
        assert again.id == first.id
        assert await q.get_deduplication_job_id("t") == first.id
        await clock.advance(5)  # t = 10: the window closed
        assert await q.get_deduplication_job_id("t") is None
        later = await q.add("j", 3, deduplication={"id": "t", "ttl": 10})
        assert later.id != first.id


async def test_extend_starts_the_window_again_at_each_duplicate(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock(autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")
        opts: Any = {"id": "e", "ttl": 10, "extend": True}
        first = await q.add("j", deduplication=opts)
        await clock.advance(8)
        assert (await q.add("j", deduplication=opts)).id == first.id  # window now ends at 18
        await clock.advance(8)  # t = 16: without extend it would have closed at 10
        assert (await q.add("j", deduplication=opts)).id == first.id  # ends at 26
        await clock.advance(10)  # t = 26
        assert (await q.add("j", deduplication=opts)).id != first.id


async def test_debounce_runs_only_the_last_of_a_burst_after_the_quiet_delay(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock(autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")
        ran: list[tuple[int, float]] = []

        async def work(job: Job) -> None:
            ran.append((job.data, clock.now()))

        rt.worker(q, work)
        opts: Any = {"id": "d", "ttl": 5, "extend": True, "replace": True}
        added = []
        async with rt.events() as events:
            for i in range(4):
                added.append(await q.add("j", i, delay=5, deduplication=opts))
                await clock.advance(2)
            seen = dedup_events(events)
        # Each duplicate took the place of the one before (removed), the key naming it.
        assert seen == [(added[i + 1].id, "d", added[i].id) for i in range(3)]
        assert await q.get_deduplication_job_id("d") == added[-1].id
        assert [await q.get_job(j.id) for j in added[:-1]] == [None, None, None]
        await clock.advance(10)
        assert ran == [(3, 11.0)]  # added at t = 6 with a 5 s delay


async def test_replace_without_extend_keeps_the_first_window(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock(autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")
        opts: Any = {"id": "d", "ttl": 5, "replace": True}
        first = await q.add("j", 1, delay=10, deduplication=opts)
        await clock.advance(3)
        second = await q.add("j", 2, delay=10, deduplication=opts)
        assert second.id != first.id and await q.get_job(first.id) is None
        await clock.advance(2)  # t = 5: the window of the first add closed
        third = await q.add("j", 3, delay=10, deduplication=opts)
        assert third.id not in (first.id, second.id)
        assert (await q.get_job(second.id)).state is JobState.DELAYED  # type: ignore[union-attr]


async def test_a_duplicate_of_a_job_no_longer_delayed_is_ignored_even_in_replace_mode(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock(autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")
        opts: Any = {"id": "d", "ttl": 100, "replace": True}
        first = await q.add("j", 1, delay=1, deduplication=opts)
        await clock.advance(2)  # due: waiting now
        again = await q.add("j", 2, delay=1, deduplication=opts)
        assert again.id == first.id and again.data == 1


async def test_remove_deduplication_key_lets_the_next_add_make_a_job(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime(clock=VirtualClock(autojump=False)) as rt:
        q = rt.queue("q")
        first = await q.add("j", deduplication={"id": "k", "ttl": 60})
        assert await q.remove_deduplication_key("k") is True
        assert await q.remove_deduplication_key("k") is False
        assert await q.remove_deduplication_key("never") is False
        assert (await q.add("j", deduplication={"id": "k"})).id != first.id


async def test_add_bulk_and_flows_take_the_option(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock(autojump=False)) as rt:
        q = rt.queue("q")
        jobs = await q.add_bulk(
            [
                {"name": "a", "data": 1, "deduplication": {"id": "k"}},
                {"name": "b", "data": 2},
                {"name": "a", "data": 3, "deduplication": {"id": "k"}},
            ]
        )
        assert jobs[0].id == jobs[2].id and jobs[2].data == 1
        assert (await q.counts())["waiting"] == 2
        tree = await FlowProducer(rt).add(
            FlowJob("p", "q", children=[FlowJob("c", "q", opts={"deduplication": {"id": "k"}})])
        )
        # The child is the existing job, not a new child: the parent has nothing to wait on.
        assert tree.children[0].job.id == jobs[0].id


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"deduplication": {"ttl": 5}}, "deduplication.id"),
        ({"deduplication": {"id": ""}}, "deduplication.id"),
        ({"deduplication": {"id": 7}}, "deduplication.id"),
        ({"deduplication": {"id": "k", "ttl": 0}}, "deduplication.ttl"),
        ({"deduplication": {"id": "k", "ttl": -1}}, "deduplication.ttl"),
        ({"deduplication": {"id": "k", "ttl": float("inf")}}, "deduplication.ttl"),
        ({"deduplication": {"id": "k", "ttl": float("nan")}}, "deduplication.ttl"),
        ({"deduplication": {"id": "k", "extend": True}}, "deduplication.extend"),
        ({"deduplication": {"id": "k", "ttl": 1, "extend": 1}}, "deduplication.extend"),
        ({"deduplication": {"id": "k", "ttl": 1, "replace": True}}, "deduplication.replace"),
        ({"deduplication": {"id": "k", "tll": 1}}, "deduplication.tll"),
        ({"deduplication": "k"}, "deduplication"),
    ],
)
async def test_bad_deduplication_is_refused_naming_the_field(
    options: dict[str, Any],
    field: str,
    make_runtime: MakeRuntime,
    runtime_lives: RuntimeLives,
) -> None:
    clock = VirtualClock(autojump=False)
    # The same refusal on this kind of runtime and on it on a journal (a folder's, locally
    # and under a client's host).
    async with runtime_lives(clock=clock) as life:
        for opened in (make_runtime(clock=clock), life()):
            async with opened as rt:
                q = rt.queue("q")
                with pytest.raises(InvalidOptionError) as info:
                    await q.add("j", **options)
                assert info.value.field == field
                with pytest.raises(InvalidOptionError) as bulk:
                    await q.add_bulk([{"name": "ok"}, {"name": "j", **options}])
                assert bulk.value.field == f"jobs[1].{field}"
                assert (await q.counts())["waiting"] == 0


@pytest.mark.runtimes("local", why="compares the core's state with a replay of its log")
async def test_the_keys_replay_exactly_from_the_log() -> None:
    clock = VirtualClock(autojump=False)
    log = MemoryChangeLog()
    async with Runtime(journal=log, clock=clock) as rt:
        q = rt.queue("q")

        async def work(job: Job) -> None:
            return None

        rt.worker(q, work)
        await q.add("j", deduplication={"id": "simple"})
        await q.add("j", deduplication={"id": "throttle", "ttl": 30}, remove_on_complete=True)
        debounce: Any = {"id": "debounce", "ttl": 5, "extend": True, "replace": True}
        await q.add("j", delay=5, deduplication=debounce)
        await clock.advance(1)
        await q.add("j", delay=5, deduplication=debounce)
        await q.add("j", delay=50, deduplication={"id": "held"})
        await q.add("j", deduplication={"id": "expired", "ttl": 0.5})
        await clock.advance(1)
        await q.add("j", deduplication={"id": "purges", "ttl": 1})  # drops "expired"
        core = CoreState()
        core.apply_changes(log.replay())
        assert core.snapshot() == rt._core.snapshot()
        assert set(core.snapshot()["dedup"]) == {
            ("q", "throttle"),
            ("q", "debounce"),
            ("q", "held"),
            ("q", "purges"),
        }
        # and from a snapshot of the state (a removed job's record goes with its key)
        fresh = CoreState()
        fresh.apply_changes(decode_snapshot(encode_snapshot(rt._core.as_changes())))
        assert fresh.snapshot() == rt._core.snapshot()
        assert fresh.dedup[("q", "throttle")].rec is not None  # its job's record came along


async def test_each_mode_holds_across_a_restart(runtime_lives: RuntimeLives) -> None:
    clock = VirtualClock(autojump=False)

    async def work(job: Job) -> None:
        return None

    async with runtime_lives(clock=clock) as life:
        async with life() as rt:
            q = rt.queue("q")
            simple = await q.add("j", delay=100, deduplication={"id": "s"})
            throttled = await q.add(
                "j", deduplication={"id": "t", "ttl": 30}, remove_on_complete=True
            )
            debounce: Any = {"id": "d", "ttl": 10, "extend": True, "replace": True}
            debounced = await q.add("j", 1, delay=10, deduplication=debounce)
            rt.worker(q, work)
            await clock.advance(5)
        async with life() as rt:  # on the same clock: the time goes on from the stop
            q = rt.queue("q")
            assert (await q.add("j", deduplication={"id": "s"})).id == simple.id
            again = await q.add("j", deduplication={"id": "t", "ttl": 30})
            assert again.id == throttled.id  # finished and removed before the restart
            replacing = await q.add("j", 2, delay=10, deduplication=debounce)
            assert await q.get_job(debounced.id) is None
            assert await q.get_deduplication_job_id("d") == replacing.id
            await clock.advance(25)  # t = 30: the throttle window closed
            assert await q.get_deduplication_job_id("t") is None
            assert (await q.add("j", deduplication={"id": "t", "ttl": 30})).id != throttled.id


def test_a_frame_holding_keys_is_schema_4_and_one_without_is_written_as_before() -> None:
    keyed = [("dedup", "q", "k", 1, 5.0, None), ("dedup-del", "q", "k")]
    assert orjson.loads(encode_batch(keyed))["v"] == 4
    assert decode_batch(encode_batch(keyed)) == keyed
    assert orjson.loads(encode_batch([("del", 1)]))["v"] == 1
