"""The journal in PostgreSQL (actorq/_journal_pg.py), in one process: the lease and its
epoch fence, stepping down, options refused at the door, the schema's version, compaction by
partitions. The contract every log keeps is in tests/test_changelog_contract.py; processes
that die, stop and take over are in tests/test_pg_takeover.py."""

# Stays on Runtime: the journal in PostgreSQL's lease, fence, schema and compaction, the Runtime's
# own.

from __future__ import annotations

import argparse
import io
import time
from typing import Any

import anyio
import psycopg
import pytest

from actorq import InvalidOptionError, Runtime, RuntimeClosedError, connect
from actorq._journal_cli import add_journal_commands, run_journal_command
from actorq._journal_pg import (
    FencedError,
    LeaseHeldError,
    LeaseLostError,
    PostgresJournalError,
    leader_address,
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
        ("actorq_standby=maybe", "actorq_standby"),
        ("actorq_standby=on&actorq_wait=5", "actorq_wait"),
    ]:
        with pytest.raises(InvalidOptionError) as info:
            async with Runtime(f"{pg_url}?{query}"):
                pass
        assert info.value.field == field, query
        assert query.split("=")[-1] in str(info.value)
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


@pytest.mark.parametrize(("fsync", "expected"), [("always", "on"), ("interval", "off")])
async def test_the_fsync_policy_sets_the_commit_connections_synchronous_commit(
    pg_url: str, fsync: str, expected: str
) -> None:
    async with Runtime(pg_url, fsync=fsync) as rt:
        await rt.queue("q").add("x", 1)
        log: Any = rt._journal
        assert log.waits is True  # acknowledged only once PostgreSQL committed
        ((setting,),) = await anyio.to_thread.run_sync(
            lambda: log._conn.execute("SHOW synchronous_commit").fetchall()
        )
        assert setting == expected


def test_a_leader_whose_clock_strays_from_the_database_says_so(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 30.0)
    with caplog.at_level("WARNING", logger="actorq.journal"):
        log = open_pg_changelog(pg_url)
        log.close()
    assert any("+30.0 s off the database's" in r.getMessage() for r in caplog.records)
    monkeypatch.setattr(time, "time", real)
    caplog.clear()
    with caplog.at_level("WARNING", logger="actorq.journal"):
        open_pg_changelog(pg_url).close()
    assert not [r for r in caplog.records if "off the database" in r.getMessage()]


async def test_a_listening_leader_advertises_its_address_in_the_lease(pg_url: str) -> None:
    assert await anyio.to_thread.run_sync(leader_address, pg_url) is None  # no tables yet
    async with Runtime(pg_url, listen="127.0.0.1:0") as rt:
        address = await anyio.to_thread.run_sync(leader_address, pg_url)
        assert address is not None and address == rt.address
        # What a standby, or any process, finds there is the leader's API.
        async with connect(f"actorq://{address}") as client:
            job = await client.queue("q").add("x", {"from": "a client"})
        got = await rt.queue("q").get_job(job.id)
        assert got is not None and got.data == {"from": "a client"}
        out = io.StringIO()
        assert await anyio.to_thread.run_sync(run_cli, ["stats", pg_url], out) == 0
        assert f"(listening at {address})" in out.getvalue()
    # Nobody leads once it closed.
    assert await anyio.to_thread.run_sync(leader_address, pg_url) is None
    async with Runtime(pg_url + "?actorq_address=jobs.internal:7000", listen="127.0.0.1:0"):
        assert await anyio.to_thread.run_sync(leader_address, pg_url) == "jobs.internal:7000"


def run_cli(argv: list[str], out: io.StringIO) -> int | None:
    parser = argparse.ArgumentParser()
    add_journal_commands(parser.add_subparsers(dest="command"))
    return run_journal_command(parser.parse_args(argv), out)


async def test_a_candidate_cancelled_while_it_waits_withdraws_and_takes_no_lease(
    pg_url: str,
) -> None:
    async with Runtime(pg_url) as rt:
        job = await rt.queue("q").add("x", 1)
        started = anyio.current_time()
        with anyio.move_on_after(0.5) as waited:
            async with Runtime(pg_url + "?actorq_wait=8"):
                raise AssertionError("a candidate led while the lease was live")
        assert waited.cancelled_caught
        assert anyio.current_time() - started < 5  # it stopped waiting when cancelled
        assert (await rt.queue("q").get_job(job.id)) is not None  # the leader goes on
        assert sql(pg_url, "SELECT epoch FROM actorq_lease") == [(1,)]
    async with Runtime(pg_url + "?actorq_wait=5") as rt:  # and the lease is free at once
        assert (await rt.queue("q").get_job(job.id)) is not None
    assert sql(pg_url, "SELECT epoch FROM actorq_lease") == [(2,)]


async def test_deadlines_keep_the_database_clock_across_leaders_with_strayed_clocks(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 30.0)  # this host runs 30 s ahead
    async with Runtime(pg_url) as rt:
        assert abs(rt.clock.now() - real()) < 1.0
        job = await rt.queue("q").add("x", 1, delay=5.0)
        assert job.run_at is not None and abs(job.run_at - (real() + 5.0)) < 1.0
    monkeypatch.setattr(time, "time", real)  # the next leader's host is right
    async with Runtime(pg_url) as rt:
        again = await rt.queue("q").get_job(job.id)
        assert again is not None and again.state.value == "delayed"
        assert again.run_at is not None and 3.0 < again.run_at - rt.clock.now() < 6.0


async def test_journals_in_separate_schemas_of_one_database_lead_side_by_side(
    pg_url: str,
) -> None:
    sql(pg_url, "CREATE SCHEMA tenant_a")
    sql(pg_url, "CREATE SCHEMA tenant_b")
    a_url = pg_url + "?options=-csearch_path%3Dtenant_a"
    b_url = pg_url + "?options=-csearch_path%3Dtenant_b&actorq_ttl=1"
    async with Runtime(a_url) as a, Runtime(b_url) as b:  # two leases, two leaders
        job_a = await a.queue("q").add("x", "a")
        job_b = await b.queue("q").add("x", "b")
        # b's lease is renewed (every ttl / 3, on the lease's own connection) in its schema.
        query = "SELECT expires_at FROM tenant_b.actorq_lease"
        (first,) = sql(pg_url, query)
        for _ in range(100):  # at most 5 s
            if sql(pg_url, query) != [first]:
                break
            await anyio.sleep(0.05)
        assert sql(pg_url, query) != [first], "b's lease was not renewed in its schema"
    assert sql(pg_url, "SELECT count(*) FROM tenant_a.actorq_lease") == [(1,)]
    assert sql(pg_url, "SELECT to_regclass('public.actorq_lease') IS NULL") == [(True,)]
    async with Runtime(a_url) as a:
        assert [j.data for j in await a.queue("q").get_jobs()] == ["a"]
        assert job_a.id == job_b.id  # each journal hands out its own ids
