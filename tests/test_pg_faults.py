"""Faults of the database under a journal in PostgreSQL, injected in one process: a commit
whose reply is lost after it landed, connections cut between commits, a commit that finds
the database gone past the trust window. Whatever happens, an acknowledged job is there
once, and a job whose call failed was never acknowledged."""

# Stays on Runtime: faults injected under a Runtime's own journal in PostgreSQL.

from __future__ import annotations

from typing import Any

import anyio
import psycopg
import pytest

from actorq import Runtime, RuntimeClosedError
from actorq import _journal_pg_schema as sql
from actorq._journal_pg import LeaseLostError


class LosesReplies:
    """The commit connection, except that the next `APPEND` (or every one, with
    ``land=False``, before it runs) is followed by a lost connection."""

    def __init__(self, conn: psycopg.Connection[Any], *, land: bool, times: int = 1) -> None:
        self.conn = conn
        self.land = land
        self.times = times

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    def execute(self, query: Any, params: Any = None) -> Any:
        if query is sql.APPEND and self.times > 0:
            self.times -= 1
            if self.land:
                self.conn.execute(query, params)
            self.conn.close()
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return self.conn.execute(query, params)


def rows(url: str) -> list[tuple[int, int]]:
    with psycopg.connect(url) as conn:
        return [(int(a), int(b)) for a, b in conn.execute("SELECT seq, epoch FROM actorq_log")]


@pytest.mark.parametrize("land", [True, False], ids=["landed", "lost"])
async def test_a_commit_whose_connection_is_lost_is_written_once(
    pg_url: str, land: bool, caplog: pytest.LogCaptureFixture
) -> None:
    async with Runtime(pg_url) as rt:
        q = rt.queue("q")
        first = await q.add("x", 1)
        log: Any = rt._journal
        log._conn = LosesReplies(log._conn, land=land)
        second = await q.add("x", 2)  # acknowledged: it is in the log, once
        assert isinstance(log._conn, psycopg.Connection)  # reconnected
        third = await q.add("x", 3)
    seqs = [seq for seq, _epoch in rows(pg_url)]
    assert len(seqs) == len(set(seqs)) and sorted(seqs) == list(range(1, len(seqs) + 1))
    assert "interrupted" in caplog.text
    async with Runtime(pg_url) as rt:
        got = {j.id: j.data for j in await rt.queue("q").get_jobs()}
    assert got == {first.id: 1, second.id: 2, third.id: 3}


async def test_connections_cut_between_commits_are_reopened(pg_url: str) -> None:
    async with Runtime(pg_url) as rt:
        q = rt.queue("q")
        rt.worker(q, _value)
        before = [await q.add("x", i) for i in range(5)]
        with psycopg.connect(pg_url, autocommit=True) as conn:
            cut = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'actorq' AND datname = current_database()"
            ).fetchall()
        assert cut  # the commit connection (and the lease's, once it renewed)
        after = [await q.add("x", i) for i in range(5, 10)]
        values = [await job.wait_until_finished() for job in before + after]
        assert values == list(range(10))


async def test_a_database_gone_past_the_trust_window_fails_the_commit(pg_url: str) -> None:
    holder = psycopg.connect(pg_url)  # renewals hang on the lease row, as on a dead server
    try:
        with pytest.raises(LeaseLostError):
            async with Runtime(pg_url + "?actorq_ttl=1") as rt:
                q = rt.queue("q")
                await q.add("x", 1)
                log: Any = rt._journal
                log._conn = LosesReplies(log._conn, land=False, times=1_000_000)
                log._connection = _always_down(log)
                holder.execute("SELECT * FROM actorq_lease FOR UPDATE")
                with anyio.fail_after(10), pytest.raises(RuntimeClosedError) as info:
                    await q.add("x", 2)  # never acknowledged
                assert isinstance(info.value.__cause__, LeaseLostError)
    finally:
        holder.rollback()
        holder.close()
    # The lease lapses up to 0.2 x ttl after the leader stepped down: wait for it.
    async with Runtime(pg_url + "?actorq_wait=5") as rt:
        assert [j.data for j in await rt.queue("q").get_jobs()] == [1]


def _always_down(log: Any) -> Any:
    """A `_connection` that finds the server down until the lease's trust window ends."""
    import time  # noqa: PLC0415 - local to the fault

    def connection() -> psycopg.Connection[Any]:
        while True:
            log.lease.check()
            time.sleep(0.05)

    return connection


async def _value(job: Any) -> int:
    value: int = job.data
    return value
