"""Reading a queue's groups and rate limit (issue 21): `Queue.get_groups` and
`Queue.get_rate_limit`, in the pure core, in memory, through a client of a host, and from
a journal after a restart."""

from __future__ import annotations

import pytest
from remote_fixture import remote_runtime
from runtimes import MakeRuntime, RuntimeLives

from actorq import InvalidOptionError, Job, VirtualClock
from actorq._core import commands as c
from actorq._core.records import JobSpec
from actorq._core.state import CoreState

NO_GROUPS = {"groups": [], "total": 0, "group_concurrency": None, "group_limiter": None}


def spec(group: str | None) -> JobSpec:
    return JobSpec(name="j", queue="q", data=b"{}", group=group)


def test_the_core_counts_each_group_and_bounds_the_list_by_name() -> None:
    core = CoreState()
    assert core.handle(c.GetGroups("q"), 0.0) == NO_GROUPS
    assert core.handle(c.GetRateLimit("q"), 0.0) is None
    core.add([spec(g) for g in ["b", "b", "a", "c", "c", "c", None]], 0.0)
    core.set_group_concurrency("q", 2)
    core.set_group_limiter("q", (5, 60.0))
    core.set_limiter("q", 10, 1.5)
    taken = core.take("q", 3, 0.0, "t", None, 1)  # the ungrouped one, then b and a
    assert [rec.group for rec in taken] == [None, "b", "a"]
    view = core.handle(c.GetGroups("q"), 0.0)
    assert view == {
        "groups": [
            {"name": "a", "waiting": 0, "active": 1},
            {"name": "b", "waiting": 1, "active": 1},
            {"name": "c", "waiting": 3, "active": 0},
        ],
        "total": 3,
        "group_concurrency": 2,
        "group_limiter": {"max": 5, "duration": 60.0},
    }
    bounded = core.handle(c.GetGroups("q", 2), 0.0)
    assert [g["name"] for g in bounded["groups"]] == ["a", "b"] and bounded["total"] == 3
    assert core.handle(c.GetRateLimit("q"), 0.0) == {"max": 10, "duration": 1.5}
    a_job = next(rec for rec in taken if rec.group == "a")
    core.complete(a_job.id, "t", b"null", 1.0)  # group a has nothing left: it is not listed
    assert [g["name"] for g in core.handle(c.GetGroups("q"), 1.0)["groups"]] == ["b", "c"]


def test_a_manual_rate_limit_alone_sets_no_limit_to_read() -> None:
    core = CoreState()
    core.rate_limit("q", 30.0)
    assert core.handle(c.GetRateLimit("q"), 0.0) is None
    assert core.rate_limit_ttl("q", 0.0) == 30.0


async def test_get_groups_counts_waiting_and_active_jobs(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock(autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")
        assert await q.get_groups() == NO_GROUPS
        assert await q.get_rate_limit() is None

        async def work(job: Job) -> None:
            await clock.sleep(10)

        rt.worker(
            q,
            work,
            concurrency=10,
            group_concurrency=1,
            group_limiter={"max": 4, "duration": 30},
            limiter={"max": 100, "duration": 1},
        )
        await q.add_bulk([{"name": "j", "group": g} for g in ["<b>", "a", "a", "a"]])
        await clock.advance(1)
        view = await q.get_groups()
        assert view == {
            "groups": [
                {"name": "<b>", "waiting": 0, "active": 1},
                {"name": "a", "waiting": 2, "active": 1},
            ],
            "total": 2,
            "group_concurrency": 1,
            "group_limiter": {"max": 4, "duration": 30.0},
        }
        first = await q.get_groups(limit=1)
        assert first["groups"] == [{"name": "<b>", "waiting": 0, "active": 1}]
        assert first["total"] == 2
        assert await q.get_rate_limit() == {"max": 100, "duration": 1.0}
        with pytest.raises(InvalidOptionError) as info:
            await q.get_groups(limit=0)
        assert info.value.field == "limit"
        await clock.advance(60)  # the jobs end (a graceful stop waits for them)
        assert await q.get_groups() == {**view, "groups": [], "total": 0}


async def test_a_remote_host_refuses_a_bad_limit_on_its_own() -> None:
    async with remote_runtime() as client:
        with pytest.raises(InvalidOptionError) as info:
            await client._send(c.GetGroups("q", 0))
        assert info.value.field == "limit" and info.value.value == 0


@pytest.mark.runtimes("local", "remote", "postgresql")
async def test_groups_and_limits_read_back_after_a_restart(runtime_lives: RuntimeLives) -> None:
    async with runtime_lives() as life:
        async with life() as rt:
            q = rt.queue("q")
            rt.worker(
                q,
                group_concurrency=3,
                group_limiter={"max": 2, "duration": 5},
                limiter={"max": 7, "duration": 2},
            )
            await q.add_bulk([{"name": "j", "group": g} for g in ["x", "y", "y"]])
        async with life() as rt:
            q = rt.queue("q")
            assert await q.get_groups() == {
                "groups": [
                    {"name": "x", "waiting": 1, "active": 0},
                    {"name": "y", "waiting": 2, "active": 0},
                ],
                "total": 2,
                "group_concurrency": 3,
                "group_limiter": {"max": 2, "duration": 5.0},
            }
            assert await q.get_rate_limit() == {"max": 7, "duration": 2.0}
