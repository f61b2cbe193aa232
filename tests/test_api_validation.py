"""Bad input is rejected at the call, names the field and the value, and changes nothing:
the same way on a runtime in memory, through a client of a host, and on a journal in
PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from runtimes import MakeRuntime

import actorq
from actorq import Backoff, InvalidOptionError, Queue, RuntimeAPI
from actorq._options import MAX_CONCURRENCY, job_spec

pytestmark = pytest.mark.runtimes("local", "remote", "postgresql")


@pytest.fixture
async def rt(make_runtime: MakeRuntime) -> AsyncIterator[RuntimeAPI]:
    async with make_runtime() as runtime:
        yield runtime


@pytest.fixture
async def q(rt: RuntimeAPI) -> Queue:
    queue = rt.queue("jobs")
    await queue.pause()  # nothing runs: counts only change through adds
    await queue.add("existing", {"n": 1})
    return queue


def check_error(exc: InvalidOptionError, field: str, value: object) -> None:
    assert isinstance(exc, ValueError)
    assert isinstance(exc, actorq.ActorqError)
    assert exc.field == field
    assert exc.value is value or exc.value == value
    assert field in str(exc)
    assert repr(value) in str(exc)


async def test_payload_orjson_cannot_encode_is_rejected(q: Queue) -> None:
    before = await q.counts()
    for payload in (object(), {1, 2, 3}, {"nested": [object()]}):
        with pytest.raises(InvalidOptionError) as info:
            await q.add("bad", payload)
        assert info.value.field == "data"
        assert repr(payload) in str(info.value)
    assert await q.counts() == before


async def test_negative_delay_is_rejected(q: Queue) -> None:
    before = await q.counts()
    with pytest.raises(InvalidOptionError) as info:
        await q.add("bad", delay=-1)
    check_error(info.value, "delay", -1)
    assert await q.counts() == before


async def test_unknown_option_names_it_and_suggests_the_close_one(q: Queue) -> None:
    before = await q.counts()
    with pytest.raises(InvalidOptionError) as info:
        await q.add("bad", dleay=5)
    check_error(info.value, "dleay", 5)
    assert "'delay'" in str(info.value)
    assert await q.counts() == before


@pytest.mark.parametrize("priority", [1.5, "high", True, None])
async def test_non_integer_priority_is_rejected(q: Queue, priority: Any) -> None:
    before = await q.counts()
    with pytest.raises(InvalidOptionError) as info:
        await q.add("bad", priority=priority)
    check_error(info.value, "priority", priority)
    assert await q.counts() == before


@pytest.mark.parametrize("name", ["", "   ", None, 3])
async def test_bad_queue_name_is_rejected(rt: RuntimeAPI, q: Queue, name: Any) -> None:
    before = await rt.counts()
    with pytest.raises(InvalidOptionError) as info:
        rt.queue(name)
    check_error(info.value, "queue", name)
    assert await rt.counts() == before


@pytest.mark.parametrize("attempts", [0, -1, 1.0, "3"])
async def test_attempts_below_one_or_not_int_is_rejected(q: Queue, attempts: Any) -> None:
    before = await q.counts()
    with pytest.raises(InvalidOptionError) as info:
        await q.add("bad", attempts=attempts)
    check_error(info.value, "attempts", attempts)
    assert await q.counts() == before


@pytest.mark.parametrize("timeout", [-5, 0, float("inf"), "5"])
async def test_negative_or_zero_timeout_is_rejected(q: Queue, timeout: Any) -> None:
    before = await q.counts()
    with pytest.raises(InvalidOptionError) as info:
        await q.add("bad", timeout=timeout)
    check_error(info.value, "timeout", timeout)
    assert await q.counts() == before


@pytest.mark.parametrize("jitter", [-0.1, 1.5])
async def test_bad_backoff_jitter_is_rejected(q: Queue, jitter: float) -> None:
    before = await q.counts()
    with pytest.raises(InvalidOptionError) as info:
        Backoff.exponential(1, jitter=jitter)
    check_error(info.value, "backoff.jitter", jitter)
    with pytest.raises(InvalidOptionError) as info:
        Backoff.fixed(1, jitter=jitter)
    check_error(info.value, "backoff.jitter", jitter)
    assert await q.counts() == before


async def test_bad_backoff_value_is_rejected(q: Queue) -> None:
    before = await q.counts()
    with pytest.raises(InvalidOptionError) as info:
        await q.add("bad", attempts=3, backoff="exponential")
    check_error(info.value, "backoff", "exponential")
    with pytest.raises(InvalidOptionError) as info:
        await q.add("bad", attempts=3, backoff=-2)
    check_error(info.value, "backoff", -2)
    assert await q.counts() == before


@pytest.mark.parametrize(
    ("value", "field", "bad"),
    [
        (-1, "remove_on_complete", -1),
        ("yes", "remove_on_complete", "yes"),
        (1.5, "remove_on_complete", 1.5),
        ({"age": -3}, "remove_on_complete.age", -3),
        ({"count": "x"}, "remove_on_complete.count", "x"),
        ({"agee": 3}, "remove_on_complete.agee", 3),
    ],
)
async def test_bad_remove_on_complete_is_rejected(
    q: Queue, value: Any, field: str, bad: Any
) -> None:
    before = await q.counts()
    with pytest.raises(InvalidOptionError) as info:
        await q.add("bad", remove_on_complete=value)
    check_error(info.value, field, bad)
    assert await q.counts() == before


async def test_bad_remove_on_fail_is_rejected(q: Queue) -> None:
    before = await q.counts()
    with pytest.raises(InvalidOptionError) as info:
        await q.add("bad", remove_on_fail=-2)
    check_error(info.value, "remove_on_fail", -2)
    assert await q.counts() == before


async def test_add_bulk_with_one_bad_entry_adds_none(q: Queue) -> None:
    before = await q.counts()
    jobs_before = [j.id for j in await q.get_jobs()]
    batch: list[dict[str, Any]] = [
        {"name": "a", "data": 1},
        {"name": "b", "data": 2},
        {"name": "c", "data": 3, "delay": -4},
        {"name": "d", "data": 4},
    ]
    with pytest.raises(InvalidOptionError) as info:
        await q.add_bulk(batch)
    check_error(info.value, "jobs[2].delay", -4)
    assert await q.counts() == before
    assert [j.id for j in await q.get_jobs()] == jobs_before


async def test_add_bulk_with_unencodable_entry_adds_none(q: Queue) -> None:
    before = await q.counts()
    bad = {1, 2}
    with pytest.raises(InvalidOptionError) as info:
        await q.add_bulk([{"name": "a"}, {"name": "b", "data": bad}])
    assert info.value.field == "jobs[1].data"
    assert "jobs[1]" in str(info.value)
    assert repr(bad) in str(info.value)
    assert await q.counts() == before


async def test_add_bulk_with_unknown_option_names_the_index(q: Queue) -> None:
    before = await q.counts()
    with pytest.raises(InvalidOptionError) as info:
        await q.add_bulk([{"name": "a"}, {"name": "b", "priorty": 3}])
    check_error(info.value, "jobs[1].priorty", 3)
    assert "priority" in str(info.value).split("priorty", 2)[-1]
    assert await q.counts() == before


async def test_delay_and_run_at_together_are_rejected(q: Queue) -> None:
    before = await q.counts()
    with pytest.raises(InvalidOptionError) as info:
        await q.add("bad", delay=5, run_at=100.0)
    assert info.value.field in ("run_at", "delay")
    assert info.value.field in str(info.value)
    assert "delay" in str(info.value)
    assert "run_at" in str(info.value)
    assert await q.counts() == before


async def test_invalid_state_name_in_get_jobs_is_rejected(q: Queue) -> None:
    before = await q.counts()
    with pytest.raises(InvalidOptionError) as info:
        await q.get_jobs("finished")
    check_error(info.value, "state", "finished")
    with pytest.raises(InvalidOptionError) as info:
        await q.get_jobs(["waiting", "compleed"])
    check_error(info.value, "state", "compleed")
    assert await q.counts() == before


async def test_bad_tag_mode_and_tags_in_get_jobs_are_rejected(q: Queue) -> None:
    with pytest.raises(InvalidOptionError) as info:
        await q.get_jobs(tags=["x"], tag_mode="some")
    check_error(info.value, "tag_mode", "some")
    with pytest.raises(InvalidOptionError) as info:
        await q.get_jobs(tags="x")
    check_error(info.value, "tags", "x")


async def test_bad_job_name_is_rejected(q: Queue) -> None:
    before = await q.counts()
    with pytest.raises(InvalidOptionError) as info:
        await q.add("", {"n": 2})
    check_error(info.value, "name", "")
    assert await q.counts() == before


async def test_bad_worker_concurrency_is_rejected(rt: RuntimeAPI, q: Queue) -> None:
    async def proc(job: actorq.Job) -> None:
        return None

    for bad in (0, -1, 2.5, MAX_CONCURRENCY + 1, 300_000):
        with pytest.raises(InvalidOptionError) as info:
            rt.worker(q, proc, concurrency=bad)
        check_error(info.value, "concurrency", bad)
    assert f"must be within [1, {MAX_CONCURRENCY}]" in str(info.value)


async def test_the_largest_concurrency_is_accepted(rt: RuntimeAPI, q: Queue) -> None:
    async def proc(job: actorq.Job) -> None:
        return None

    worker = rt.worker(q, proc, concurrency=MAX_CONCURRENCY)
    assert worker.concurrency == MAX_CONCURRENCY
    await worker.close()


async def test_bad_event_buffer_is_rejected(rt: RuntimeAPI) -> None:
    for bad in (0, -1, 2.5, None):
        with pytest.raises(InvalidOptionError) as info:
            rt.events(buffer=bad)
        check_error(info.value, "buffer", bad)
    async with rt.events(buffer=1) as events:
        assert events.capacity == 1


async def test_valid_input_is_accepted(q: Queue) -> None:
    """The checks are not over-eager: the boundary values all pass."""
    before = await q.counts()
    await q.add("ok", {"t": (1, 2)}, priority=-3, delay=0, attempts=1, timeout=0.5)
    await q.add("ok", None, remove_on_complete={"count": 0, "age": 0}, lifo=True)
    await q.add("ok", [1], backoff=Backoff.fixed(0, jitter=1.0), attempts=2)
    after = await q.counts()
    assert after["waiting"] == before["waiting"] + 3


def test_a_job_with_no_options_gets_what_the_full_validation_gives() -> None:
    # Adding with no options takes a shortcut; it must build the very same spec (defaults
    # included) as the full path, and still reject a bad name or payload.
    for data in (None, {"x": [1, 2.5, "s"]}, "text"):
        assert job_spec("q", "n", data, {}) == job_spec("q", "n", data, {"priority": 0})
    with pytest.raises(InvalidOptionError, match="name"):
        job_spec("q", "", None, {})
    with pytest.raises(InvalidOptionError, match="data"):
        job_spec("q", "n", {1, 2}, {})
