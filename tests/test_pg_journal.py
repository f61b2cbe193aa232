"""The journal in PostgreSQL (actorq/_journal_pg.py), in one process: the lease and its
epoch fence, stepping down, options refused at the door, the schema's version, compaction by
partitions. The contract every log keeps is in tests/test_changelog_contract.py; processes
that die, stop and take over are in tests/test_pg_takeover.py."""

from __future__ import annotations

from typing import Any

import anyio
import psycopg
import pytest

from actorq import InvalidOptionError, Runtime, RuntimeClosedError
from actorq._journal_pg import (
    FencedError,
    LeaseHeldError,
    LeaseLostError,
    PostgresJournalError,
    open_pg_changelog,
)


def sql(url: str, statement: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement, args)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def expire_lease(url: str) -> None:
    """What a lease looks like once its holder stopped renewing it for longer than its ttl."""
    sql(url, "UPDATE actorq_lease SET expires_at = now() - interval '1 second'")


async def test_a_second_runtime_is_refused_while_the_lease_is_live(pg_url: str) -> None:
    async with Runtime(pg_url) as rt:
        await rt.queue("q").add("x", 1)
        with pytest.raises(LeaseHeldError) as info:
            async with Runtime(pg_url):
                pass
        message = str(info.value)
        assert "the lease is held by" in message and "epoch 1" in message
        assert "actorq_wait" in message
        # The refused opener changed nothing: the leader goes on committing.
        job = await rt.queue("q").add("x", 2)
        assert (await rt.queue("q").counts())["waiting"] == 2
    assert sql(pg_url, "SELECT epoch FROM actorq_lease") == [(1,)]
    async with Runtime(pg_url) as rt:  # a clean close released the lease at once
        got = await rt.queue("q").get_job(job.id)
        assert got is not None and got.data == 2


async def test_a_leader_fenced_off_by_a_newer_one_stops_at_its_next_commit(pg_url: str) -> None:
    with pytest.raises(FencedError) as stopped:
        async with Runtime(pg_url) as rt:
            q = rt.queue("q")
            kept = await q.add("x", "acknowledged by the old leader")
            expire_lease(pg_url)
            newer = await anyio.to_thread.run_sync(open_pg_changelog, pg_url)
            try:
                with pytest.raises(RuntimeClosedError) as info:
                    await q.add("x", "refused")
                assert isinstance(info.value.__cause__, FencedError)
                assert "epoch 1 is fenced off" in str(info.value.__cause__)
                with pytest.raises(RuntimeClosedError):
                    await q.counts()
            finally:
                newer.close()
    assert "(epoch 2)" in str(stopped.value)
    # Nothing of the refused call reached the log; what was acknowledged is there once.
    assert sql(pg_url, "SELECT count(*) FROM actorq_log WHERE epoch = 2") == [(0,)]
    async with Runtime(pg_url) as rt:
        jobs = await rt.queue("q").get_jobs(["waiting"])
        assert [j.data for j in jobs] == [kept.data]


async def test_a_leader_whose_renewal_finds_the_epoch_taken_stops_by_itself(pg_url: str) -> None:
    with pytest.raises(FencedError):
        async with Runtime(pg_url + "?actorq_ttl=1") as rt:
            job = await rt.queue("q").add("x", 1)  # no worker: it waits until the stop
            sql(pg_url, "UPDATE actorq_lease SET epoch = epoch + 1, holder = 'someone else'")
            with anyio.fail_after(10), pytest.raises(RuntimeClosedError) as info:
                await job.wait_until_finished()
            assert isinstance(info.value.__cause__, FencedError)
            assert "someone else" in str(info.value.__cause__)


async def test_a_leader_that_cannot_renew_steps_down_within_its_trust_window(
    pg_url: str,
) -> None:
    ttl = 1.5
    holder = psycopg.connect(pg_url)  # holds the lease row locked: every renewal hangs
    try:
        with pytest.raises(LeaseLostError):
            async with Runtime(pg_url + f"?actorq_ttl={ttl}") as rt:
                job = await rt.queue("q").add("x", 1)
                holder.execute("SELECT * FROM actorq_lease FOR UPDATE")
                started = anyio.current_time()
                with anyio.fail_after(10), pytest.raises(RuntimeClosedError) as info:
                    await job.wait_until_finished()
                assert isinstance(info.value.__cause__, LeaseLostError)
                assert anyio.current_time() - started < ttl  # before the lease could lapse
    finally:
        holder.rollback()
        holder.close()


async def test_bad_options_in_the_url_are_refused_naming_the_field(pg_url: str) -> None:
    for query, field in [
        ("actorq_ttl=-1", "actorq_ttl"),
        ("actorq_ttl=soon", "actorq_ttl"),
        ("actorq_wait=-3", "actorq_wait"),
        ("actorq_partition=0", "actorq_partition"),
        ("actorq_tll=5", "actorq_tll"),
    ]:
        with pytest.raises(InvalidOptionError) as info:
            async with Runtime(f"{pg_url}?{query}"):
                pass
        assert info.value.field == field, query
        assert query.split("=")[1] in str(info.value)
    # Refused before connecting: no table was made.
    assert sql(pg_url, "SELECT to_regclass('actorq_lease') IS NULL") == [(True,)]


async def test_the_schema_is_versioned_and_a_newer_one_is_refused(pg_url: str) -> None:
    async with Runtime(pg_url):
        pass
    assert sql(pg_url, "SELECT version FROM actorq_schema") == [(1,)]
    async with Runtime(pg_url):  # migrating again changes nothing
        pass
    assert sql(pg_url, "SELECT version FROM actorq_schema") == [(1,)]
    sql(pg_url, "INSERT INTO actorq_schema (version) VALUES (99)")
    with pytest.raises(PostgresJournalError, match="schema version 99, newer"):
        async with Runtime(pg_url):
            pass


async def test_snapshots_drop_the_partitions_they_cover(pg_url: str) -> None:
    url = pg_url + "?actorq_partition=4"
    async with Runtime(url) as rt:
        q = rt.queue("q")
        jobs = [await q.add("x", i) for i in range(20)]
        parts_before = sql(pg_url, "SELECT count(*) FROM pg_inherits")[0][0]
        await rt.snapshot()
        await q.add("x", 20)
        await rt.snapshot()  # the older of the two kept snapshots covers the first 20 adds
        await q.add("x", 21)
    parts_after = sql(pg_url, "SELECT count(*) FROM pg_inherits")[0][0]
    assert parts_before >= 5 and parts_after < parts_before
    assert sql(pg_url, "SELECT count(*) FROM actorq_snapshot") == [(2,)]
    async with Runtime(url) as rt:
        got = await rt.queue("q").get_jobs(["waiting"])
        assert sorted(j.data for j in got) == list(range(22))
        assert {j.id for j in jobs} <= {j.id for j in got}


async def test_job_ids_are_never_handed_out_twice_across_leaders(pg_url: str) -> None:
    async with Runtime(pg_url) as rt:
        first = await rt.queue("q").add("x", 1)
        # While it leads, the mark runs a block ahead: a leader that dies hands out no id
        # the next one could hand out again.
        ((mark,),) = sql(pg_url, "SELECT id_high_water FROM actorq_lease")
        assert mark > first.id + 1000
    # A clean close lowers it to the next id: ids run on without a gap.
    assert sql(pg_url, "SELECT id_high_water FROM actorq_lease") == [(first.id + 1,)]
    async with Runtime(pg_url) as rt:
        second = await rt.queue("q").add("x", 2)
    assert second.id == first.id + 1
