"""Warm standbys of a journal in PostgreSQL (``?actorq_standby=on``, actorq/_standby.py): a
standby serves its callers and runs its workers through the leader, tails the log into a
core that is the leader's state at a quiet point, and takes over when the leader goes — in
one process (both backends) and with real processes, the leader SIGKILLed."""

# Stays on Runtime: standbys and leaders are Runtimes on one journal (a standby's client is tested
# through it).

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.to_thread
import psycopg
import pytest
from pg_cluster import Cluster
from test_pg_takeover import Child, check_every_acknowledged_job_once, completed_by_epoch

from actorq import (
    ConnectionLostError,
    DependsOn,
    InvalidOptionError,
    Job,
    JobCompleted,
    JobFailedError,
    Runtime,
    RuntimeClosedError,
)
from actorq._core import CoreState
from actorq._journal_pg import PostgresChangeLog, batches


async def quiet_seq(rt: Runtime) -> int:
    """The seq of the leader's last committed batch, once nothing more is under way."""
    await rt.queue("q").counts()
    journal = rt._journal
    assert isinstance(journal, PostgresChangeLog)
    return journal.last_seq


@contextlib.asynccontextmanager
async def idle_leader(url: str) -> AsyncIterator[Child]:
    """A leader process (tests/pg_child.py) that listens and runs no worker, once it leads;
    killed on the way out, whatever the test did to it."""
    leader = Child(url, "a", "listen", "idle")
    try:
        await anyio.to_thread.run_sync(leader.wait_for, "leading", 30)
        yield leader
    finally:
        leader.kill()


def epoch(url: str) -> int:
    with psycopg.connect(url) as conn:
        row: Any = conn.execute("SELECT epoch FROM actorq_lease").fetchone()
        return int(row[0])


def replayed(url: str) -> dict[str, Any]:
    """The state a cold replay of the whole journal rebuilds."""
    core = CoreState()
    with psycopg.connect(url, autocommit=True) as conn:
        for _seq, changes in batches(conn, url, None):
            core.apply_changes(changes)
    return core.snapshot()


class Leader:
    """A leading runtime in a task of its own (so it can close while a standby's block in
    the test's task goes on)."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.rt = Runtime(url, listen="127.0.0.1:0", token=token)
        self.close = anyio.Event()
        self.closed = anyio.Event()

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            async with self.rt:
                task_status.started()
                await self.close.wait()
        finally:
            self.closed.set()

    async def stop(self) -> None:
        self.close.set()
        await self.closed.wait()


async def test_a_standby_serves_through_the_leader_and_takes_over_when_it_goes(
    pg_url: str,
) -> None:
    async with anyio.create_task_group() as tg:
        leading = Leader(pg_url + "?actorq_ttl=2")
        await tg.start(leading.run)
        leader = leading.rt
        async with Runtime(pg_url + "?actorq_standby=on&actorq_ttl=2") as rt:
            assert leader.leading and not rt.leading
            q = rt.queue("q")
            ran: list[int] = []

            async def work(job: Job) -> int:
                ran.append(job.id)
                return int(job.data) * 2

            rt.worker(q, work, concurrency=2)
            events = rt.events()  # through the leader, then from its own engine
            first = [await q.add("x", i) for i in range(10)]
            assert [await j.wait_until_finished() for j in first] == [2 * i for i in range(10)]
            assert sorted(ran) == sorted(j.id for j in first)  # run here, through the leader
            assert (await leader.queue("q").counts())["completed"] == 10
            await q.add("waiting", "at the quiet point", delay=3600)

            # A quiet point: the standby's own core is the leader's state, replay-exact.
            seq = await quiet_seq(leader)
            standby = rt._standby
            assert standby is not None
            assert await anyio.to_thread.run_sync(standby.tail.wait_applied, seq, 10.0)
            assert standby.tail.core.snapshot() == leader._core.snapshot()
            assert standby.tail.core.index_view() == leader._core.index_view()
            assert "standby of" in repr(rt) and "11 jobs" in repr(rt)  # from its own core

            await leading.stop()  # a clean close releases the lease
            with anyio.fail_after(15):
                await rt.wait_leading()
            assert rt.leading and epoch(pg_url) == 2
            # The same worker handle goes on processing, now on this runtime's engine.
            more = [await q.add("y", i) for i in range(5)]
            assert [await j.wait_until_finished() for j in more] == [2 * i for i in range(5)]
            assert set(ran) >= {j.id for j in more}
            seen = {e.job_id for e in events.drain_nowait() if isinstance(e, JobCompleted)}
            assert seen >= {j.id for j in first + more}  # one stream, before and after
            events.close()
            counts = await q.counts()
            assert counts["completed"] == 15 and counts["delayed"] == 1
            # The warm core it took over with, and went on from, is the journal's replay.
            assert rt._core.snapshot() == await anyio.to_thread.run_sync(replayed, pg_url)
    async with Runtime(pg_url) as rt:  # the standby released the lease as it closed
        assert (await rt.queue("q").counts())["completed"] == 15


async def test_calls_made_while_no_leader_answers_wait_and_go_to_the_new_engine(
    pg_url: str,
) -> None:
    url = pg_url + "?actorq_ttl=2"
    async with idle_leader(url) as leader, Runtime(url + "&actorq_standby=on") as rt:
        q = rt.queue("q")
        await q.add("x", "through the leader")
        client = rt._standby.client if rt._standby is not None else None
        assert client is not None
        leader.kill()
        with anyio.fail_after(10):
            # Until the client saw the connection go (no event says so: it is polled).
            while client._linked.is_set():  # noqa: ASYNC110
                await anyio.sleep(0.01)
        assert not rt.leading  # the dead leader's lease is still live
        job = await q.add("x", "while no leader answers")  # waits, is never sent there
        assert rt.leading
        got = await q.get_job(job.id)
        assert got is not None and got.data == "while no leader answers"


async def test_a_standbys_sandboxed_processors_follow_it_when_it_takes_over(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = os.path.dirname(__file__)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]))
    async with anyio.create_task_group() as tg:
        leading = Leader(pg_url)
        await tg.start(leading.run)
        url = pg_url + "?actorq_standby=on"
        with pytest.raises(InvalidOptionError, match="listen"):
            async with Runtime(url) as unheard:
                unheard.worker("sb", "sandbox_work:with_job_api", processes=1)
        async with Runtime(url, listen="127.0.0.1:0") as rt:
            q = rt.queue("sb")
            rt.worker(q, "sandbox_work:with_job_api", processes=1)
            job = await q.add("x", 1)
            assert (await job.wait_until_finished(timeout=60))["data"] == 1
            await leading.stop()
            with anyio.fail_after(15):
                await rt.wait_leading()
            job = await q.add("x", 2)  # its child reconnects to it, the new leader
            result = await job.wait_until_finished(timeout=60)
            assert result["data"] == 2 and result["pid"] != os.getpid()


async def test_a_job_running_on_a_standby_at_the_takeover_runs_again_at_once(
    pg_url: str,
) -> None:
    url = pg_url + "?actorq_ttl=2"
    async with idle_leader(url) as leader, Runtime(url + "&actorq_standby=on") as rt:
        q = rt.queue("slow")
        runs: list[bool] = []  # whether each run was this runtime's engine's
        started = anyio.Event()

        async def work(job: Job) -> str:
            runs.append(rt.leading)
            if not rt.leading:
                started.set()
                await anyio.sleep_forever()  # cancelled with the client at the takeover
            return "done"

        rt.worker(q, work, lock_duration=60)
        job = await q.add("x", 1)
        await started.wait()
        leader.kill()
        with anyio.fail_after(15):  # well before its 60 s lock would have expired
            await rt.wait_leading()
            assert await job.wait_until_finished() == "done"
        assert runs == [False, True]
        got = await q.get_job(job.id)
        assert got is not None and got.stalled_counter == 0  # given back, not stalled


async def test_a_standby_that_cannot_serve_once_it_leads_stops_and_says_why(
    pg_url: str,
) -> None:
    with socket.socket() as taken:  # the port the standby is to listen on, once it leads
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with anyio.create_task_group() as tg:
            leading = Leader(pg_url)
            await tg.start(leading.run)
            rt = Runtime(pg_url + "?actorq_standby=on", listen=f"127.0.0.1:{port}")
            with pytest.raises(OSError):
                async with rt:
                    job = await rt.queue("q").add("x", 1)
                    await leading.stop()
                    with anyio.fail_after(15):
                        await rt.wait_stopped()
                    assert not rt.leading
                    with pytest.raises(RuntimeClosedError):
                        await rt.wait_leading()
                    with pytest.raises(RuntimeClosedError) as info:
                        await rt.queue("q").add("x", 2)
                    assert isinstance(info.value.__cause__, OSError)
    async with Runtime(pg_url) as rt:  # it released the lease as it stopped
        assert [j.id for j in await rt.queue("q").get_jobs()] == [job.id]


async def test_a_standby_waits_out_a_restart_of_postgresql_and_still_takes_over(
    pg_url: str, pg_cluster: Cluster
) -> None:
    async with anyio.create_task_group() as tg:
        leading = Leader(pg_url)
        await tg.start(leading.run)
        async with Runtime(pg_url + "?actorq_standby=on") as rt:
            q = rt.queue("q")
            before = await q.add("x", "before the restart")
            await anyio.to_thread.run_sync(pg_cluster.restart)
            after = None
            with anyio.fail_after(30):  # the leader reconnects; the standby goes on with it
                while after is None:
                    try:
                        after = await q.add("x", "after the restart")
                    except ConnectionLostError:
                        await anyio.sleep(0.1)
            assert not rt.leading
            await leading.stop()
            with anyio.fail_after(15):
                await rt.wait_leading()
            jobs = {j.id: j.data for j in await q.get_jobs()}
            assert jobs[before.id] == "before the restart" and jobs[after.id] == "after the restart"


async def test_a_standby_the_leader_refuses_fails_to_enter_and_takes_no_lease(
    pg_url: str,
) -> None:
    async with anyio.create_task_group() as tg:
        leading = Leader(pg_url, token="the-right-token-0123")
        await tg.start(leading.run)
        with anyio.fail_after(10), pytest.raises(ConnectionRefusedError, match="refused"):
            async with Runtime(pg_url + "?actorq_standby=on", token="a-wrong-token-0123"):
                pass
        async with Runtime(pg_url + "?actorq_standby=on", token="the-right-token-0123") as rt:
            assert not rt.leading
            await rt.queue("q").add("x", 1)
        await leading.stop()
    assert epoch(pg_url) == 1


async def test_a_standby_that_stops_withdraws_and_leaves_the_leader_alone(pg_url: str) -> None:
    async with Runtime(pg_url, listen="127.0.0.1:0") as leader:
        async with Runtime(pg_url + "?actorq_standby=on") as rt:
            assert not rt.leading and "standby of" in repr(rt)
            job = await rt.queue("q").add("x", 1)

            async def work(job: Job) -> None:
                return None

            rt.worker("q", work, concurrency=1)
        assert rt._state == "closed" and not rt.leading
        with pytest.raises(RuntimeClosedError):
            await rt.wait_leading()
        got = await leader.queue("q").get_job(job.id)
        assert got is not None
        assert (await leader.queue("q").add("y", 2)).id > job.id
    assert epoch(pg_url) == 1  # the standby never took the lease


async def test_a_standby_url_with_no_leader_leads_at_once(pg_url: str) -> None:
    async with Runtime(pg_url + "?actorq_standby=on") as rt:
        assert rt.leading and rt._standby is None
        await rt.queue("q").add("x", 1)


def serve(url: str) -> subprocess.Popen[str]:
    """`actorq serve URL --listen`: a leader in a process of its own that adds nothing."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "actorq", "serve", url, "--listen", "127.0.0.1:0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert line.startswith("actorq host on"), line
    return proc


def last_seq(url: str) -> int:
    with psycopg.connect(url) as conn:
        row: Any = conn.execute("SELECT coalesce(max(seq), 0) FROM actorq_log").fetchone()
        return int(row[0])


async def test_a_standby_of_a_leader_process_is_replay_exact_before_and_after_it_takes_over(
    pg_url: str,
) -> None:
    url = pg_url + "?actorq_ttl=2"
    leader = await anyio.to_thread.run_sync(serve, url)
    try:
        async with Runtime(url + "&actorq_standby=on") as rt:
            q = rt.queue("q")

            async def work(job: Job) -> int:
                if job.name == "fail":
                    raise ValueError("as asked")
                return int(job.data)

            rt.worker(q, work, concurrency=3)
            first = [await q.add("x", i, priority=i % 3) for i in range(12)]
            failing = await q.add("fail", 0, attempts=2)
            after = await q.add("dep", 99, depends_on=DependsOn(job_ids=[first[0].id]))
            await q.add("later", 0, delay=3600)
            for job in [*first, after]:
                await job.wait_until_finished()
            with pytest.raises(JobFailedError):
                await failing.wait_until_finished()
            await q.counts()  # the leader is quiet: nothing runs, nothing is due
            standby = rt._standby
            assert standby is not None
            seq = await anyio.to_thread.run_sync(last_seq, pg_url)
            assert await anyio.to_thread.run_sync(standby.tail.wait_applied, seq, 10.0)
            assert standby.tail.core.snapshot() == await anyio.to_thread.run_sync(replayed, pg_url)
            leader.kill()
            with anyio.fail_after(10):
                await rt.wait_leading()
            more = [await q.add("y", i) for i in range(5)]
            assert [await j.wait_until_finished() for j in more] == list(range(5))
            counts = await q.counts()
            assert (counts["completed"], counts["failed"], counts["delayed"]) == (18, 1, 1)
            assert rt._core.snapshot() == await anyio.to_thread.run_sync(replayed, pg_url)
    finally:
        leader.kill()
        leader.wait()
        if leader.stderr is not None:
            leader.stderr.close()


def test_a_standby_process_takes_over_from_a_killed_leader_and_its_worker_goes_on(
    pg_url: str,
) -> None:
    ttl = 2
    leader = Child(f"{pg_url}?actorq_ttl={ttl}", "a", "listen", "idle")  # b's worker runs all
    standby: Child | None = None
    try:
        leader.wait_for("leading", 30)
        standby = Child(f"{pg_url}?actorq_ttl={ttl}&actorq_standby=on", "b", "listen")
        standby.wait_for("acked", 30, at_least=100)
        assert standby.standby and not standby.leading
        assert standby.ran, "the standby's worker ran nothing through the leader"
        leader.kill()
        standby.wait_for("leading", ttl + 5)
        acked = len(standby.acked)
        standby.wait_for("acked", 10, at_least=acked + 50)  # adds go on, now on its engine
        start = time.monotonic()
        while len(standby.ran) < standby.lead_at + 20:  # and so does its worker
            assert time.monotonic() - start < 10, "the standby's worker stopped"
            time.sleep(0.02)
            standby.pump()
        standby.kill()
    finally:
        leader.kill()
        if standby is not None:
            standby.kill()
    check_every_acknowledged_job_once([leader, standby], pg_url)
    done = completed_by_epoch(pg_url)
    assert sorted(done) == [1, 2]
    assert not done[1].intersection(standby.ran[standby.lead_at :]), "a completed job ran again"


def test_standbys_follow_each_new_leader_and_take_over_in_turn(pg_url: str) -> None:
    ttl = 2
    url = f"{pg_url}?actorq_ttl={ttl}"
    first = Child(url, "a", "listen", "idle")
    children = [first]
    try:
        first.wait_for("leading", 30)
        standbys = [Child(f"{url}&actorq_standby=on", tag, "listen") for tag in ("b", "c")]
        children += standbys
        for child in standbys:
            child.wait_for("acked", 30, at_least=30)
        start = time.monotonic()
        while not all(child.ran for child in standbys):  # each one's worker runs jobs
            assert time.monotonic() - start < 10, [len(child.ran) for child in standbys]
            time.sleep(0.02)
            for child in standbys:
                child.pump()
        leader = first
        led: list[Child] = []  # the standbys in the order they took over: epochs 2, 3
        for _ in (1, 2):  # kill the leader; a standby leads; the other follows it
            leader.kill()
            start = time.monotonic()
            while not any(c.leading for c in standbys):
                assert time.monotonic() - start < ttl + 5, "no standby took over"
                time.sleep(0.02)
                for child in standbys:
                    child.pump()
            (leader,) = [c for c in standbys if c.leading]
            standbys.remove(leader)
            led.append(leader)
            leader.wait_for("acked", 10, at_least=len(leader.acked) + 30)
            for child in standbys:  # the other standby serves through the new leader
                child.wait_for("acked", 20, at_least=len(child.acked) + 30)
                assert not child.leading
        leader.kill()
    finally:
        for child in children:
            child.kill()
    check_every_acknowledged_job_once(children, pg_url)
    done = completed_by_epoch(pg_url)
    assert sorted(done) == [1, 2, 3]
    for led_epoch, child in enumerate(led, start=2):  # no completed job ran again
        earlier = set().union(*(ids for e, ids in done.items() if e < led_epoch))
        assert not earlier.intersection(child.ran[child.lead_at :]), child.tag
