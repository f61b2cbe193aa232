"""Job schedulers (BullMQ's upsertJobScheduler), on virtual time, on both backends."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from runtimes import MakeRuntime, RuntimeLives

from actorq import InvalidOptionError, Job, JobState, Runtime, VirtualClock

BERLIN = ZoneInfo("Europe/Berlin")
Y2026 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()

#: State that must hold on every kind of runtime, PostgreSQL's journal included.
pytestmark = pytest.mark.runtimes("local", "remote", "postgresql")


def recorder(clock: VirtualClock, starts: list[tuple[float, str | None]]) -> Any:
    async def record(job: Job) -> None:
        starts.append((clock.now(), job.scheduler_id))

    return record


def weekday_nine_berlin(year: int) -> list[float]:
    """09:00 on every weekday of `year`, Berlin wall time, computed with zoneinfo alone."""
    out = []
    day = date(year, 1, 1)
    while day.year == year:
        if day.weekday() < 5:
            out.append(datetime(day.year, day.month, day.day, 9, tzinfo=BERLIN).timestamp())
        day += timedelta(days=1)
    return out


async def test_a_year_of_weekday_nine_in_berlin_runs_each_at_the_exact_second(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock(start=Y2026)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("cron")
        starts: list[tuple[float, str | None]] = []
        rt.worker(q, recorder(clock, starts))
        first = await q.upsert_job_scheduler(
            "report",
            pattern="0 0 9 * * 1-5",  # seconds first, as BullMQ
            tz="Europe/Berlin",
            template={"name": "daily-report", "data": {"k": 1}},
        )
        assert first is not None
        assert first.state is JobState.DELAYED
        assert first.scheduler_id == "report"
        await clock.advance(datetime(2027, 1, 1, tzinfo=UTC).timestamp() - Y2026)
        expected = weekday_nine_berlin(2026)
        assert len(expected) == 261
        assert starts == [(t, "report") for t in expected]
        # Both DST changes: winter is UTC+1 (08:00Z), summer UTC+2 (07:00Z).
        hours = {datetime.fromtimestamp(t, UTC).hour for t, _ in starts}
        assert hours == {7, 8}
        done = await q.get_jobs("completed")
        assert [j.processed_at for j in done] == expected
        assert {j.name for j in done} == {"daily-report"}
        assert {j.data["k"] for j in done} == {1}
        [view] = await q.get_job_schedulers()
        assert view["iterations"] == 262  # 261 ran, the pending one is 2027's first
        assert view["next"] == weekday_nine_berlin(2027)[0]
        assert (await q.counts())["delayed"] == 1


async def test_every_runs_on_its_grid_with_one_pending_job(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock(start=1000.5, autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("tick")
        starts: list[tuple[float, str | None]] = []
        rt.worker(q, recorder(clock, starts))
        job = await q.upsert_job_scheduler("t", every=10)
        assert job is not None and job.run_at == 1010.0  # the next multiple, as BullMQ
        await clock.advance(45)
        assert [t for t, _ in starts] == [1010.0, 1020.0, 1030.0, 1040.0]
        assert (await q.counts())["delayed"] == 1
        [view] = await q.get_job_schedulers()
        assert view["every"] == 10.0 and view["next"] == 1050.0 and view["iterations"] == 5


async def test_the_next_job_is_made_when_the_pending_one_starts_not_before(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock(start=0.0, autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("busy")
        await q.upsert_job_scheduler("s", every=5)
        await clock.advance(30)  # no worker: the due job waits, no other is made
        assert [j.scheduler_id for j in await q.get_jobs()] == ["s"]
        assert (await q.counts())["waiting"] == 1
        starts: list[tuple[float, str | None]] = []
        rt.worker(q, recorder(clock, starts))
        await clock.advance(0)
        await clock.advance(6)
        # The late one ran at 30; its successor at the first grid time after that, not a
        # backlog of the five runs missed.
        assert [t for t, _ in starts] == [30.0, 35.0]


async def test_limit_end_at_and_start_at(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock(start=0.0)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("bounds")
        starts: list[tuple[float, str | None]] = []
        rt.worker(q, recorder(clock, starts))
        await q.upsert_job_scheduler("lim", every=1, limit=3, template={"name": "lim"})
        await q.upsert_job_scheduler("end", every=2, end_at=7, template={"name": "end"})
        await q.upsert_job_scheduler(
            "later", every=3, start_at=100, limit=2, template={"name": "later"}
        )
        await clock.advance(1000)
        by: dict[str | None, list[float]] = {}
        for t, sid in starts:
            by.setdefault(sid, []).append(t)
        assert by == {"lim": [1, 2, 3], "end": [2, 4, 6], "later": [100, 103]}
        views = {v["id"]: v for v in await q.get_job_schedulers()}
        assert {k: (v["next"], v["job_id"]) for k, v in views.items()} == {
            "end": (None, None),
            "later": (None, None),
            "lim": (None, None),
        }
        assert (await q.counts())["delayed"] == 0


async def test_immediately_runs_the_first_now(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock(start=Y2026 + 3600)  # 01:00 UTC
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("now")
        starts: list[tuple[float, str | None]] = []
        rt.worker(q, recorder(clock, starts))
        job = await q.upsert_job_scheduler("n", pattern="0 12 * * *", immediately=True)
        assert job is not None and job.run_at is None  # not delayed: due now
        await clock.advance(86400)
        assert [t for t, _ in starts] == [Y2026 + 3600, Y2026 + 12 * 3600]


async def test_upsert_replaces_without_duplicating_and_remove_stops(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock(start=0.0)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("up")
        first = await q.upsert_job_scheduler("s", every=10, template={"data": 1})
        again = await q.upsert_job_scheduler("s", every=10, template={"data": 2})
        third = await q.upsert_job_scheduler("s", every=4, template={"data": 3})
        assert first is not None and again is not None and third is not None
        assert await q.get_job(first.id) is None and await q.get_job(again.id) is None
        [pending] = await q.get_jobs()
        assert pending.id == third.id and pending.data == 3 and pending.run_at == 4.0
        assert pending.name == "s"  # a template's name defaults to the scheduler's id
        [view] = await q.get_job_schedulers()
        assert view["every"] == 4.0 and view["iterations"] == 1
        assert await q.remove_job_scheduler("s") is True
        assert await q.remove_job_scheduler("s") is False
        assert await q.get_jobs() == [] and await q.get_job_schedulers() == []
        starts: list[tuple[float, str | None]] = []
        rt.worker(q, recorder(clock, starts))
        await clock.advance(100)
        assert starts == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"every": 1, "pattern": "* * * * *"}, "every"),
        ({}, "pattern"),
        ({"pattern": "61 * * * *"}, "pattern"),
        ({"pattern": "not cron"}, "pattern"),
        ({"every": 0}, "every"),
        ({"every": -1}, "every"),
        ({"every": float("nan")}, "every"),
        ({"pattern": "* * * * *", "tz": "Mars/Olympus"}, "tz"),
        ({"every": 1, "limit": 0}, "limit"),
        ({"every": 1, "template": {"name": ""}}, "template.name"),
        ({"every": 1, "template": {"priority": "high"}}, "template.priority"),
        ({"every": 1, "template": {"delay": 5}}, "template.delay"),
        ({"every": 1, "template": {"colour": "red"}}, "template.colour"),
        ({"every": 1, "template": ["x"]}, "template"),
        ({"every": 1, "start_at": "soon"}, "start_at"),
        ({"every": 1, "start_at": 10, "end_at": 5}, "end_at"),
        ({"every": 1, "immediately": 1}, "immediately"),
    ],
)
@pytest.mark.parametrize("journaled", [False, True])
async def test_bad_input_is_refused_naming_the_field_and_changes_nothing(
    make_runtime: MakeRuntime,
    runtime_lives: RuntimeLives,
    kwargs: dict[str, Any],
    field: str,
    journaled: bool,
) -> None:
    clock = VirtualClock(start=0.0)

    async def refused(rt: Any) -> None:
        q = rt.queue("bad")
        await q.upsert_job_scheduler("keep", every=7)
        with pytest.raises(InvalidOptionError) as err:
            await q.upsert_job_scheduler("keep", **kwargs)
        assert err.value.field == field
        [view] = await q.get_job_schedulers()
        assert view["every"] == 7.0 and view["iterations"] == 1
        assert len(await q.get_jobs()) == 1

    if not journaled:
        async with make_runtime(clock=clock) as rt:
            await refused(rt)
        return
    async with runtime_lives(clock=clock) as life:
        async with life() as rt:
            await refused(rt)
        async with life() as rt:
            [view] = await rt.queue("bad").get_job_schedulers()
            assert view["every"] == 7.0


@pytest.mark.parametrize("sid", [3, None, "", b"x"])
async def test_a_scheduler_id_must_be_a_string(sid: Any, make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        with pytest.raises(InvalidOptionError) as err:
            await rt.queue("q").upsert_job_scheduler(sid, every=1)
        assert err.value.field == "scheduler_id"


async def test_schedulers_survive_a_restart_without_a_backlog(
    runtime_lives: RuntimeLives,
) -> None:
    clock = VirtualClock(start=0.0)
    async with runtime_lives(clock=clock) as life:
        async with life() as rt:
            q = rt.queue("durable")
            starts: list[tuple[float, str | None]] = []
            rt.worker(q, recorder(clock, starts))
            await q.upsert_job_scheduler(
                "cron", pattern="*/10 * * * * *", template={"name": "c", "attempts": 2}
            )
            await q.upsert_job_scheduler("tick", every=60, template={"name": "t", "data": [1]})
            await clock.advance(65)
            assert sorted(starts) == sorted(
                [(float(t), "cron") for t in range(10, 70, 10)] + [(60.0, "tick")]
            )
            before = {v["id"]: v for v in await q.get_job_schedulers()}
        # Down for an hour: 360 cron runs and 60 ticks are missed.
        await clock.advance(3600)
        async with life() as rt:
            q = rt.queue("durable")
            assert {v["id"]: v for v in await q.get_job_schedulers()} == before
            starts2: list[tuple[float, str | None]] = []
            rt.worker(q, recorder(clock, starts2))
            await clock.advance(20)
            now0 = 3665.0
            # Each overdue pending job runs once, at the reopen; the next ones follow the
            # schedule from then on.
            assert sorted(starts2) == [
                (now0, "cron"),
                (now0, "tick"),
                (3670.0, "cron"),
                (3680.0, "cron"),
            ]
            jobs = await q.get_jobs("completed")
            assert {j.attempts for j in jobs if j.scheduler_id == "cron"} == {2}
            assert {tuple(j.data) for j in jobs if j.scheduler_id == "tick"} == {(1,)}


@pytest.mark.runtimes(
    "local", "postgresql", why="Runtime.snapshot is the runtime's own call: a client cannot"
)
async def test_a_snapshot_holds_the_schedulers(runtime_lives: RuntimeLives) -> None:
    clock = VirtualClock(start=0.0)
    async with runtime_lives(clock=clock) as life:
        async with life() as rt:
            q = rt.queue("snap")
            await q.upsert_job_scheduler("a", every=5, limit=4, template={"backoff": 2})
            await q.upsert_job_scheduler("b", pattern="0 * * * *", tz="Asia/Tokyo")
            await q.upsert_job_scheduler("gone", every=1)
            await q.remove_job_scheduler("gone")
            await rt.snapshot()
            await q.upsert_job_scheduler("c", every=9, template={"tags": ["x"]})
            before = await q.get_job_schedulers()
            jobs = {j.id: (j.scheduler_id, j.run_at) for j in await q.get_jobs()}
            assert len(jobs) == 3
        async with life() as rt:
            q = rt.queue("snap")
            assert await q.get_job_schedulers() == before
            assert {j.id: (j.scheduler_id, j.run_at) for j in await q.get_jobs()} == jobs


# Local: the sync facade (start_in_background) runs a Runtime of its own in a thread.
def test_the_sync_facade_has_the_scheduler_calls() -> None:
    from actorq import start_in_background  # noqa: PLC0415

    with start_in_background(clock=VirtualClock()) as bg:
        q = bg.queue("sync")
        job = q.upsert_job_scheduler("s", every=3)
        assert job.scheduler_id == "s"
        assert [v["id"] for v in q.get_job_schedulers()] == ["s"]
        assert q.remove_job_scheduler("s") is True


def test_without_the_cron_extra_a_pattern_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import actorq._schedule as schedule  # noqa: PLC0415

    monkeypatch.setattr(schedule, "_cronsim", lambda: None)
    with pytest.raises(InvalidOptionError, match=r"actorq\[cron\]") as err:
        schedule.scheduler_record(
            "q",
            "s",
            every=None,
            pattern="* * * * *",
            tz=None,
            start_at=None,
            end_at=None,
            limit=None,
            immediately=False,
            template=None,
        )
    assert err.value.field == "pattern"
    # every= needs nothing.
    schedule.scheduler_record(
        "q",
        "s",
        every=1,
        pattern=None,
        tz=None,
        start_at=None,
        end_at=None,
        limit=None,
        immediately=False,
        template=None,
    )


# Local: it plants bugs in the runtime's own core.
async def test_the_scheduler_invariants_catch_planted_bugs() -> None:
    from actorq.testing import InvariantViolation, check_core  # noqa: PLC0415

    clock = VirtualClock(start=0.0)
    async with Runtime(clock=clock) as rt:
        q = rt.queue("inv")
        job = await q.upsert_job_scheduler("s", every=10, limit=3)
        other = await q.add("plain")
        assert job is not None
        core = rt._core
        check_core(core.rebuild_indexes(), now=0.0)

        twice = core.rebuild_indexes()
        twice.jobs[other.id].scheduler_id = "s"  # a second unstarted job of "s"
        with pytest.raises(InvariantViolation) as caught:
            check_core(twice, now=0.0)
        assert caught.value.invariant == "scheduler-one-pending"

        over = core.rebuild_indexes()
        over.schedulers[("inv", "s")].iterations = 4
        with pytest.raises(InvariantViolation) as caught:
            check_core(over, now=0.0)
        assert caught.value.invariant == "scheduler-never-early"

        moved = core.rebuild_indexes()
        moved.schedulers[("inv", "s")].next = 5.0  # the job is due at 10
        with pytest.raises(InvariantViolation) as caught:
            check_core(moved, now=0.0)
        assert caught.value.invariant == "scheduler-never-early"


def test_the_journal_records_of_a_scheduler_round_trip_and_read_as_json() -> None:
    import orjson  # noqa: PLC0415

    from actorq._core import CoreState  # noqa: PLC0415
    from actorq._core import commands as c  # noqa: PLC0415
    from actorq._journal_codec import decode_batch, encode_batch, human_change  # noqa: PLC0415
    from actorq._schedule import scheduler_record  # noqa: PLC0415

    core = CoreState()
    core.record_changes(True)
    sched = scheduler_record(
        "q",
        "s",
        every=None,
        pattern="*/5 * * * *",
        tz="America/New_York",
        start_at=None,
        end_at=None,
        limit=9,
        immediately=False,
        template={"name": "n", "data": {"x": [1, None]}, "backoff": 3, "tags": ["a"]},
    )
    core.handle(c.UpsertScheduler(sched), 0.0)
    core.handle(c.RemoveScheduler("q", "s"), 1.0)
    changes, _, _ = core.take_effects()
    payload = encode_batch(changes)
    assert orjson.loads(payload)["v"] == 3
    kinds = ("scheduler", "scheduler-del")
    decoded = [ch for ch in decode_batch(payload) if ch[0] in kinds]
    assert decoded == [ch for ch in changes if ch[0] in kinds]
    assert [ch[0] for ch in decoded] == ["scheduler", "scheduler-del"]
    [record] = [human_change(ch) for ch in changes if ch[0] == "scheduler"]
    assert record[3]["template"]["data"] == {"x": [1, None]}
    assert record[3]["template"]["backoff"]["delay"] == 3.0
    # A batch without scheduler records is written as before (version 1).
    assert orjson.loads(encode_batch([("del", 1)]))["v"] == 1


def test_the_scheduler_benchmark_keeps_one_pending_job_per_scheduler() -> None:
    from benchmarks.schedulers import one_core  # noqa: PLC0415

    # Not timed: its own asserts check every tick ran and each scheduler holds one job.
    assert one_core(50, 200) > 0


async def test_a_retried_job_of_a_scheduler_makes_no_second_next_job(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock(start=0.0, autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("retry")
        starts: list[tuple[float, int]] = []

        async def flaky(job: Job) -> None:
            starts.append((clock.now(), job.id))
            if job.attempts_made == 0 and job.id == 1:
                raise RuntimeError("first attempt fails")

        rt.worker(q, flaky)
        await q.upsert_job_scheduler("s", every=10, template={"attempts": 2, "backoff": 1})
        await clock.advance(15)
        # Job 1 started at 10 (making job 2, due at 20), failed, and ran again at 11: its
        # second start is not its scheduler's pending job starting, so nothing more is made.
        assert starts == [(10.0, 1), (11.0, 1)]
        assert [j.id for j in await q.get_jobs("delayed")] == [2]
        [view] = await q.get_job_schedulers()
        assert view["iterations"] == 2 and view["job_id"] == 2
