"""Other processes (actorq._remote): a runtime host and its clients, in one process here.

The same public-API scenarios run on a local runtime and through a client of a host
(`rt` is parametrised ``local``/``remote``): code written against one runs on the other.
Then what only a client has: timed locks renewed while its processors run, its jobs
stalling when it is gone, tokens, the protocol's refusals. Real subprocesses are in
tests/test_remote_processes.py.
"""

from __future__ import annotations

import contextlib
import random
import ssl
from collections.abc import AsyncIterator
from typing import Any

import anyio
import attrs
import pytest
import trustme

import actorq
from actorq import (
    ConnectionLostError,
    DependsOn,
    FlowJob,
    FlowProducer,
    InvalidOptionError,
    Job,
    JobCompleted,
    JobFailedError,
    JobStalled,
    Runtime,
)
from actorq._api import RuntimeAPI
from actorq._core import commands as c
from actorq._core.records import Deduplication
from actorq._options import job_spec
from actorq._remote import host as host_module
from actorq._remote.checks import check_command
from actorq._remote.wire import PROTOCOL, FrameReader, frame

TOKEN = "s3cret-token-of-16+chars"


@pytest.fixture(params=["local", "remote"])
async def rt(request: pytest.FixtureRequest) -> AsyncIterator[RuntimeAPI]:
    async with Runtime(listen="127.0.0.1:0", token=TOKEN) as host:
        if request.param == "local":
            yield host
        else:
            assert host.address is not None
            async with actorq.connect(f"actorq://{host.address}", token=TOKEN) as client:
                yield client


async def double(job: Job[int, int]) -> int:
    return job.data * 2


# ---------------------------------------------------------------- the same API, either side


async def test_add_process_and_wait(rt: RuntimeAPI) -> None:
    q = rt.queue("q")
    rt.worker(q, double, concurrency=4)
    jobs = await q.add_bulk([{"name": "d", "data": i} for i in range(200)])
    single = await q.add("d", 21)
    assert await single.wait_until_finished(timeout=10) == 42
    assert [await j.wait_until_finished(timeout=10) for j in jobs] == [2 * i for i in range(200)]
    counts = await rt.counts()
    assert counts["q"]["completed"] == 201


async def test_a_failure_reaches_the_waiter_with_its_reason(rt: RuntimeAPI) -> None:
    async def boom(job: Job[Any, Any]) -> None:
        raise ValueError("no luck")

    q = rt.queue("f")
    rt.worker(q, boom)
    job = await q.add("x", None, attempts=2)
    with pytest.raises(JobFailedError, match="no luck"):
        await job.wait_until_finished(timeout=10)
    again = await q.get_job(job.id)
    assert again is not None and again.attempts_made == 2


async def test_bad_input_is_refused_naming_the_field(rt: RuntimeAPI) -> None:
    q = rt.queue("v")
    with pytest.raises(InvalidOptionError) as info:
        await q.add("x", 1, priority=2**40)
    assert info.value.field == "priority"
    assert (await q.counts())["waiting"] == 0


async def test_progress_logs_and_steps(rt: RuntimeAPI) -> None:
    async def steps(job: Job[Any, Any]) -> str:
        await job.update_progress(50)
        await job.log("halfway")
        return "done"

    q = rt.queue("s")
    rt.worker(q, steps)
    job = await q.add("x", {"a": [1, 2]})
    assert await job.wait_until_finished(timeout=10) == "done"
    seen = await q.get_job(job.id)
    assert seen is not None
    assert seen.progress == 50 and seen.logs == ["halfway"] and seen.data == {"a": [1, 2]}


async def test_manual_worker_fetch_extend_complete(rt: RuntimeAPI) -> None:
    q = rt.queue("m")
    worker = rt.worker(q, lock_duration=5)
    await q.add_bulk([{"name": "m", "data": i} for i in range(3)])
    job = await worker.get_next_job("tok", timeout=5)
    done = []
    while job is not None:
        await job.extend_lock("tok", 10)
        done.append(job.data)
        job = await job.move_to_completed(job.data, "tok", fetch_next=True)
    assert done == [0, 1, 2]
    assert (await q.counts())["completed"] == 3
    assert await worker.get_next_job("tok", timeout=0.05) is None


async def test_flows_and_dependencies(rt: RuntimeAPI) -> None:
    async def total(job: Job[Any, Any]) -> Any:
        if job.name == "parent":
            return sum((await job.get_children_values()).values())
        return job.data

    q = rt.queue("fl")
    rt.worker(q, total, concurrency=3)
    node = await FlowProducer(rt).add(
        FlowJob("parent", "fl", None, children=[FlowJob("c", "fl", i) for i in (1, 2, 3)])
    )
    assert await node.job.wait_until_finished(timeout=10) == 6
    first = await q.add("c", 7)
    after = await q.add("c", 8, depends_on=DependsOn(job_ids=[first.id]))
    assert await after.wait_until_finished(timeout=10) == 8


async def test_events_reach_a_subscriber(rt: RuntimeAPI) -> None:
    q = rt.queue("e")
    async with rt.events() as events:
        rt.worker(q, double)
        job = await q.add("x", 1)
        with anyio.fail_after(10):
            async for event in events:
                if isinstance(event, JobCompleted) and event.job_id == job.id:
                    break


async def test_pausing_a_worker_and_the_queue(rt: RuntimeAPI) -> None:
    q = rt.queue("p")
    worker = rt.worker(q, double)
    await worker.pause()
    job = await q.add("x", 2)
    await anyio.sleep(0.05)
    assert (await q.counts())["waiting"] == 1
    await worker.resume()
    assert await job.wait_until_finished(timeout=10) == 4
    await q.pause()
    assert await q.is_paused()
    await q.resume()


# ---------------------------------------------------------------- what only a client has


@pytest.fixture
async def host() -> AsyncIterator[Runtime]:
    async with Runtime(listen="127.0.0.1:0", token=TOKEN) as rt:
        yield rt


async def _raw_client(host: Runtime) -> tuple[Any, FrameReader]:
    """A bare connection, saying hello: the protocol as any client speaks it."""
    assert host.address is not None
    hostname, port = host.address.rsplit(":", 1)
    stream = await anyio.connect_tcp(hostname, int(port))
    await stream.send(frame(["h", {"protocol": PROTOCOL, "token": TOKEN}]))
    reader = FrameReader(stream)
    assert (await reader.read())[0][0] == "hello"
    return stream, reader


async def test_a_client_gone_mid_job_loses_it_at_lock_expiry(host: Runtime) -> None:
    q = host.queue("lost")
    job = await q.add("x", 1)
    events = host.events()
    stream, reader = await _raw_client(host)
    async with stream:
        await stream.send(frame(["w", 1, "gone.worker-1", "lost", 1, 0.3, 1]))
        kinds = set()
        with anyio.fail_after(5):
            while "j" not in kinds:
                kinds |= {m[0] for m in await reader.read()}
    # Gone without a report: the job stays active until its lock expires, then stalls.
    assert (await q.get_job(job.id)).state.value == "active"  # type: ignore[union-attr]
    with anyio.fail_after(5):
        async for event in events:
            if isinstance(event, JobStalled):
                break
    seen = await q.get_job(job.id)
    assert seen is not None and seen.state.value == "waiting" and seen.stalled_counter == 1
    host.worker(q, double)
    assert await job.wait_until_finished(timeout=5) == 2


async def test_a_late_report_from_a_dropped_worker_is_refused(host: Runtime) -> None:
    q = host.queue("late")
    job = await q.add("x", 1)
    stream, reader = await _raw_client(host)
    async with stream:
        await stream.send(frame(["w", 1, "late.worker-1", "late", 1, 0.2, 1]))
        with anyio.fail_after(5):
            while not any(m[0] == "j" for m in await reader.read()):
                pass
        await anyio.sleep(0.5)  # its lock expired: the job stalled and waits again
        other = host.worker(q, lock_duration=30)
        taken = await other.get_next_job("other", timeout=5)
        assert taken is not None and taken.id == job.id
        await stream.send(frame(["u", "late.worker-1", ["L", ["T", job.id, ["B", "1"]]], 1]))
        await anyio.sleep(0.1)
    seen = await q.get_job(job.id)
    assert seen is not None and seen.state.value == "active"  # still the other's


async def test_a_long_remote_job_keeps_its_lock(host: Runtime) -> None:
    async def slow(job: Job[Any, Any]) -> str:
        await anyio.sleep(1.0)
        return "kept"

    async with actorq.connect(f"actorq://{host.address}", token=TOKEN) as client:
        q = client.queue("long")
        client.worker(q, slow, lock_duration=0.3)
        job = await q.add("x", None)
        assert await job.wait_until_finished(timeout=10) == "kept"
        seen = await q.get_job(job.id)
        assert seen is not None and seen.stalled_counter == 0


@pytest.mark.parametrize("token", [None, "wrong-token-of-16-chars"])
async def test_a_wrong_or_missing_token_is_refused(host: Runtime, token: str | None) -> None:
    with pytest.raises(ConnectionRefusedError, match="wrong or missing token"):
        async with actorq.connect(f"actorq://{host.address}", token=token):
            pass
    assert (await host.counts()) == {}


async def test_another_protocol_version_is_refused_clearly(host: Runtime) -> None:
    assert host.address is not None
    hostname, port = host.address.rsplit(":", 1)
    async with await anyio.connect_tcp(hostname, int(port)) as stream:
        await stream.send(frame(["h", {"protocol": PROTOCOL + 1, "token": TOKEN}]))
        (answer,) = await FrameReader(stream).read()
    assert answer[0] == "refused" and f"protocol {PROTOCOL}" in answer[1]


async def test_a_token_is_required_beyond_loopback() -> None:
    with pytest.raises(InvalidOptionError) as info:
        Runtime(listen="0.0.0.0:7311")
    assert info.value.field == "token"


async def test_calls_in_flight_at_a_break_say_they_may_have_applied(host: Runtime) -> None:
    async with actorq.connect(f"actorq://{host.address}", token=TOKEN) as client:
        q = client.queue("w")
        job = await q.add("x", 1)
        failed: list[BaseException] = []

        async def wait() -> None:
            try:
                await job.wait_until_finished(timeout=10)
            except ConnectionLostError as exc:
                failed.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.sleep(0.1)
            link = client._link
            assert link is not None
            await link.stream.aclose()
        assert len(failed) == 1 and failed[0].may_have_applied  # type: ignore[attr-defined]
        # It reconnected: the next call goes through.
        with anyio.fail_after(10):
            assert (await q.counts())["waiting"] == 1


async def test_the_client_reconnects_after_a_host_restart(tmp_path: Any) -> None:
    path = tmp_path / "journal"
    stop, stopped = anyio.Event(), anyio.Event()

    async def first_host(*, task_status: Any) -> None:
        async with Runtime(path, listen="127.0.0.1:0", token=TOKEN) as first:
            task_status.started(first.address)
            await stop.wait()
        stopped.set()

    async with anyio.create_task_group() as tg:
        where = await tg.start(first_host)
        async with actorq.connect(f"actorq://{where}", token=TOKEN) as client:
            q = client.queue("rc")
            client.worker(q, double)
            assert await (await q.add("x", 1)).wait_until_finished(timeout=10) == 2
            stop.set()
            await stopped.wait()
            async with Runtime(path, listen=where, token=TOKEN):
                with anyio.fail_after(10):
                    job = await q.add("x", 2)  # waits for the new connection, then goes
                    assert await job.wait_until_finished(timeout=10) == 4
                assert (await q.counts())["completed"] == 2


def _deep(levels: int) -> bytes:
    """A call whose value nests `levels` lists deep (JSON written by hand: orjson writes no
    more than 254 levels, a hostile client has no such limit)."""
    body = ('["c", 1, ' + '["L", ' * levels + "1" + "]" * levels + "]").encode()
    return len(body).to_bytes(4, "big") + body


def _malformed() -> list[bytes]:
    """Frames and byte strings no client of this protocol sends."""
    rng = random.Random(19)
    hello = frame(["h", {"protocol": PROTOCOL, "token": TOKEN}])
    cases = [
        b"\xff\xff\xff\xff",  # a frame over the limit
        (5).to_bytes(4, "big") + b"nope!",  # not JSON
        frame({"a": 1}),  # type: ignore[arg-type]  # not a list
        frame([]),
        frame(["h"]),  # a hello without its fields
        frame(["c", 1, ["A", "Add"]]),  # before the hello
    ]
    after_hello = [
        frame(["?", 1]),
        frame(["c", "one", 5]),
        frame(["c", 1, ["A", "NoSuchCommand", 1]]),
        frame(["c", 1, ["A", "Add", ["L", ["A", "JobSpec"]], None, None]]),
        frame(["c", 1, ["Z", 1]]),
        frame(["c", 1, ["D", 1]]),
        frame(["c", 1, ["Y", "not base64!"]]),
        frame(["c", 1, {"x": 1}]),
        frame(["u", "nobody", ["L"], 1]),
        frame(["e", 1, -5]),
        frame(["w", 1]),
        frame(["d", 5]),  # drops of watched jobs: ids and counts
        frame(["d", [1, "x"]]),
        frame(["d", [[1], 1]]),
        frame(["W", {"x": 1}]),  # a rewatch: ids
        frame(["W", [[1]]]),
        _deep(600),  # nested past the interpreter's recursion limit
    ]
    cases += [hello + bad for bad in after_hello]
    cases += [
        hello + bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64))) for _ in range(20)
    ]
    return cases


async def test_malformed_frames_close_only_their_connection(host: Runtime) -> None:
    assert host.address is not None
    hostname, port = host.address.rsplit(":", 1)
    async with actorq.connect(f"actorq://{host.address}", token=TOKEN) as bystander:
        q = bystander.queue("fuzz")
        bystander.worker(q, double)
        for i, data in enumerate(_malformed()):
            async with await anyio.connect_tcp(hostname, int(port)) as stream:
                await stream.send(data)
                await stream.send_eof()  # what it sent is all it sends: a frame cut short
                with anyio.fail_after(5):  # the host ends this connection, soon
                    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                        while await stream.receive():
                            pass
            # The other client never noticed: its calls still go through.
            assert await (await q.add("x", i)).wait_until_finished(timeout=10) == 2 * i
        assert (await host.counts())["fuzz"]["completed"] == len(_malformed())


async def test_deduplication_and_groups_either_side(rt: RuntimeAPI) -> None:
    q = rt.queue("dg")
    first = await q.add("x", 1, deduplication={"id": "k"}, group="a")
    again = await q.add("x", 2, deduplication={"id": "k"}, group="a")
    assert again.id == first.id and again.group == "a"
    assert await q.get_deduplication_job_id("k") == first.id
    rt.worker(q, double, group_concurrency=1, group_limiter={"max": 5, "duration": 1})
    assert await first.wait_until_finished(timeout=10) == 2
    assert await q.get_deduplication_job_id("k") is None


def test_a_clients_group_and_deduplication_are_checked_by_the_host() -> None:
    spec = job_spec("q", "x", None, {"priority": 0})
    bad: list[tuple[Any, str]] = [
        (c.Add((attrs.evolve(spec, group=""),)), "group"),
        (c.Add((attrs.evolve(spec, deduplication=Deduplication("k", -1.0)),)), "deduplication.ttl"),
        (c.Add((attrs.evolve(spec, deduplication=Deduplication("k", replace=True)),)),
         "deduplication.replace"),
        (c.SetGroupConcurrency("q", 0), "concurrency"),
        (c.SetGroupLimiter("q", (1, 0.0)), "group_limiter.duration"),
    ]  # fmt: skip
    for cmd, field in bad:
        with pytest.raises(InvalidOptionError) as info:
            check_command(cmd, ())
        assert info.value.field == field


async def test_tls_carries_the_protocol_and_refuses_a_client_that_does_not_trust_the_host() -> None:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    async with Runtime(listen="127.0.0.1:0", token=TOKEN, ssl_context=server) as host:
        url = f"actorq://{host.address}"
        async with actorq.connect(url, token=TOKEN, ssl_context=trusting) as rt:
            q = rt.queue("tls")
            rt.worker(q, double)
            assert await (await q.add("x", 5)).wait_until_finished(timeout=10) == 10
        stranger = ssl.create_default_context()  # trusts only the system's CAs
        with pytest.raises(ssl.SSLError):
            async with actorq.connect(url, token=TOKEN, ssl_context=stranger):
                pass
        with pytest.raises((ConnectionRefusedError, anyio.EndOfStream, OSError)):
            async with actorq.connect(url, token=TOKEN):  # plain TCP to a TLS host
                pass


async def test_a_reply_that_cannot_be_sent_ends_that_connection_not_the_engine(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On a journal that waits, the reply is written by the engine's release, after the
    # commit: that is where a failure must not reach.
    host = await contextlib.AsyncExitStack().enter_async_context(
        Runtime(tmp_path / "j", fsync="always", listen="127.0.0.1:0", token=TOKEN)
    )
    real = host_module.frame

    def failing(message: list[Any]) -> bytes:
        if message[0] == "r":
            raise TypeError("cannot write this reply")
        return real(message)

    async with actorq.connect(f"actorq://{host.address}", token=TOKEN) as client:
        monkeypatch.setattr(host_module, "frame", failing)
        with pytest.raises(ConnectionLostError):
            await client.queue("x").add("x", 1)
        monkeypatch.setattr(host_module, "frame", real)
        assert (await host.queue("x").counts())["waiting"] == 1  # the engine goes on
    await host.__aexit__(None, None, None)
