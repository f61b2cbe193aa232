"""`actorq stats|show|verify|compact|dump postgresql://...`: the journal in a database."""

# Stays on Runtime: the CLI reads the journal in PostgreSQL a Runtime wrote.

from __future__ import annotations

import anyio
import orjson
import psycopg
import pytest

from actorq import Runtime, VirtualClock
from actorq._cli import main


async def _make(url: str) -> None:
    async with Runtime(url, clock=VirtualClock()) as rt:
        q = rt.queue("emails")
        await q.add_bulk([{"name": "send", "data": {"n": n}} for n in range(5)])
        await q.cancel(2, reason="typo")
        await rt.queue("other").pause()


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


async def test_read_only_commands_work_while_a_leader_holds_the_lease(
    pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await _make(pg_url)
    async with Runtime(pg_url, clock=VirtualClock()) as rt:
        await rt.queue("emails").add("late", {"n": 9})
        code, out = _run(capsys, "stats", pg_url)
        assert code == 0
        assert "epoch 2, lease held by" in out.splitlines()[0]
        emails = next(line for line in out.splitlines() if line.startswith("emails"))
        assert emails.split()[1:] == ["5", "0", "0", "0", "0", "0", "0", "1", "6"]
        assert "(paused)" in next(line for line in out.splitlines() if line.startswith("other"))

        code, out = _run(capsys, "stats", pg_url, "--json")
        report = orjson.loads(out)
        assert code == 0 and report["lease_live"] and report["rows"] >= 3
        assert report["total"]["total"] == 6

        code, out = _run(capsys, "show", pg_url, "2")
        assert code == 0
        record = orjson.loads(out[: out.index("history of job")])
        assert record["state"] == "cancelled" and record["data"] == {"n": 1}
        assert '"failed_reason":"typo"' in out
        assert _run(capsys, "show", pg_url, "99")[0] == 1

        code, out = _run(capsys, "verify", pg_url)
        assert code == 0 and out.splitlines()[-1].startswith("ok:")

        code, out = _run(capsys, "dump", pg_url, "--jsonl")
        lines = [orjson.loads(line) for line in out.splitlines()]
        assert code == 0
        assert sum(line["change"][0] == "add" for line in lines) == 6

        assert main(["compact", pg_url]) == 1
        assert "the lease is held by" in capsys.readouterr().err
        assert (await rt.counts())["emails"]["waiting"] == 5


async def _add_two(url: str) -> None:
    async with Runtime(url) as rt:
        await rt.queue("emails").add("after", {"n": 10})
        await rt.queue("emails").add("after", {"n": 11})


def test_compact_then_verify_and_damage_is_reported(
    pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    anyio.run(_make, pg_url)
    code, out = _run(capsys, "compact", pg_url)
    assert code == 0 and "snapshot covers seq" in out
    code, out = _run(capsys, "dump", pg_url)
    assert code == 0 and out.lstrip().startswith("snapshot@")
    anyio.run(_add_two, pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DELETE FROM actorq_log WHERE seq = (SELECT max(seq) - 1 FROM actorq_log)")
    code, out = _run(capsys, "verify", pg_url)
    assert code == 1
    assert "missing" in out
    assert main(["stats", pg_url]) == 1
    assert "missing" in capsys.readouterr().err


def test_a_database_without_a_journal_is_refused(
    pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stats", pg_url]) == 2
    assert "holds no actorq journal" in capsys.readouterr().err
    assert main(["stats", pg_url + "?actorq_ttl=x"]) == 2
    assert "actorq_ttl" in capsys.readouterr().err
