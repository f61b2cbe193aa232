"""A warm standby's tail of the journal in PostgreSQL (actorq/_journal_pg_tail.py): the
leader NOTIFYs each batch, the tail reads by seq into a core of its own, that core is the
leader's state at a quiet point (replay-exact), and a tail the log was compacted past starts
again from the snapshot."""

# Stays on Runtime: a standby's tail of the leader's log, read into a core of its own.

from __future__ import annotations

import anyio
import anyio.to_thread
import psycopg

from actorq import Job, Runtime
from actorq._journal_pg import PostgresChangeLog
from actorq._journal_pg_lease import parse_url
from actorq._journal_pg_tail import LogTail


async def quiet_seq(rt: Runtime) -> int:
    """The seq of the leader's last committed batch, once nothing more is under way."""
    await rt.queue("q").counts()  # a batch of its own: every earlier one is committed
    journal = rt._journal
    assert isinstance(journal, PostgresChangeLog)
    return journal.last_seq


async def test_each_batch_notifies_the_log_channel_on_commit(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as listener:
        async with Runtime(pg_url) as rt:
            listener.execute("LISTEN actorq_log")
            await rt.queue("q").add("x", 1)

            def heard() -> list[str]:
                return [n.channel for n in listener.notifies(timeout=5, stop_after=1)]

            assert await anyio.to_thread.run_sync(heard) == ["actorq_log"]


async def test_a_tail_follows_the_leader_into_the_same_state(pg_url: str) -> None:
    async with Runtime(pg_url) as rt:
        q = rt.queue("q")
        await q.add_bulk([{"name": "x", "data": i} for i in range(30)])
        tail = LogTail(parse_url(pg_url))
        tail.start()
        try:

            async def work(job: Job) -> int:
                return int(job.data) * 2

            worker = rt.worker(q, work, concurrency=3)
            jobs = [await q.add("y", i, delay=0.05 if i % 3 else None) for i in range(20)]
            for job in jobs:
                await job.wait_until_finished()
            await worker.close()
            await q.add("z", "waiting at the quiet point", priority=3)
            seq = await quiet_seq(rt)
            assert await anyio.to_thread.run_sync(tail.wait_applied, seq, 10.0)
            await anyio.to_thread.run_sync(tail.stop)
            assert tail.applied == seq
            assert tail.core.snapshot() == rt._core.snapshot()
            assert tail.core.index_view() == rt._core.index_view()
        finally:
            tail.stop()


async def test_a_tail_compacted_past_starts_again_from_the_snapshot(pg_url: str) -> None:
    url = pg_url + "?actorq_partition=2"
    async with Runtime(url) as rt:
        q = rt.queue("q")
        tail = LogTail(parse_url(url))
        with psycopg.connect(pg_url, autocommit=True) as conn:
            for i in range(3):
                await q.add("x", i)
            tail.catch_up(conn)
            assert tail.applied == await quiet_seq(rt)
            for round_ in range(2):  # the older kept snapshot covers what the tail holds
                for i in range(5):
                    await q.add("x", (round_, i))
                await rt.snapshot()
            first = tail.core
            await q.add("x", "after the snapshots")
            tail.catch_up(conn)
        assert tail.restarts == 1 and tail.core is not first
        assert tail.applied == await quiet_seq(rt)
        assert tail.core.snapshot() == rt._core.snapshot()
