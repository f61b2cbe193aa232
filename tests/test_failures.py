"""Failures and stalls on the `actorq` logger: a failed attempt at WARNING, a final failure at
ERROR, with the job and the exception; stalls; journal recovery and damage; nothing per
completed job; locally and through a client (whose processors run, and log, in the
client's process). Not on PostgreSQL: a leased journal's next leader stalls held jobs at
lock expiry, not at start (docs/postgresql.md)."""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import pytest
from runtimes import MakeRuntime, RuntimeLives

from actorq import (
    Backoff,
    Job,
    JournalCorruptError,
    Runtime,
    UnrecoverableError,
    VirtualClock,
)

#: The loggers of a host's connections and of a client's.
CONNECTION = ("actorq.host", "actorq.client")


def _records(caplog: pytest.LogCaptureFixture, logger: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger]


def _flip_a_byte(folder: Path) -> None:
    """Damage a frame in the middle of the journal's segment (not its tail)."""
    (segment,) = [p for p in folder.iterdir() if p.name.startswith("journal-")]
    data = bytearray(segment.read_bytes())
    data[len(data) // 3] ^= 1
    segment.write_bytes(bytes(data))


def _about(record: logging.LogRecord) -> tuple[int, str, str, int]:
    return (record.job_id, record.queue, record.job_name, record.attempt)  # type: ignore[attr-defined]


async def test_a_failed_attempt_is_a_warning_and_the_final_failure_an_error(
    make_runtime: MakeRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="actorq")
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("mail")

        async def send(job: Job) -> int:
            if job.name == "ok":
                return job.id
            raise ValueError(f"no route to {job.data['to']}")

        rt.worker(q, send, concurrency=4)
        job = await q.add("welcome", {"to": "ada"}, attempts=2, backoff=Backoff.fixed(1.0))
        await rt.wait(await q.add_bulk([{"name": "ok"} for _ in range(100)]))
        with anyio.fail_after(5), pytest.raises(Exception, match="no route"):
            await job.wait_until_finished()
    # The two records of the failing job; nothing (not even DEBUG) for the jobs completed.
    # (Through a client, the host's and the client's records of the connection are about it,
    # not about jobs.)
    assert not [
        r
        for r in caplog.records
        if r.levelno >= logging.INFO and r.name not in ("actorq.worker", *CONNECTION)
    ]
    assert {_about(r)[0] for r in caplog.records if hasattr(r, "job_id")} == {job.id}
    warning, error = _records(caplog, "actorq.worker")
    assert (warning.levelno, error.levelno) == (logging.WARNING, logging.ERROR)
    assert _about(warning) == (job.id, "mail", "welcome", 1)
    assert _about(error) == (job.id, "mail", "welcome", 2)
    assert warning.getMessage() == (
        f"job {job.id} (queue 'mail', name 'welcome') failed attempt 1 of 2, will retry: "
        "ValueError: no route to ada"
    )
    assert "failed on attempt 2 of 2, for good: ValueError: no route to ada" in error.getMessage()
    for record in (warning, error):
        assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)
    assert "Traceback" in caplog.text and "in send" in caplog.text


async def test_unrecoverable_threaded_timed_out_and_unstorable_attempts_are_errors(
    make_runtime: MakeRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="actorq")
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:

        async def unrecoverable(job: Job) -> None:
            raise UnrecoverableError("bad input")

        def threaded(job: Job) -> None:
            raise KeyError("k")

        async def slow(job: Job) -> None:
            await clock.sleep(100)

        async def nan(job: Job) -> float:
            return float("nan")

        rt.worker("a", unrecoverable)
        rt.worker("b", threaded, run_in_thread=True)
        rt.worker("c", slow)
        rt.worker("d", nan)
        jobs = [
            await rt.queue("a").add("x", attempts=3),
            await rt.queue("b").add("y"),
            await rt.queue("c").add("z", timeout=5),
            await rt.queue("d").add("w"),
        ]
        for job in jobs:
            with anyio.fail_after(5), pytest.raises(Exception):  # noqa: B017
                await job.wait_until_finished()
    records = sorted(_records(caplog, "actorq.worker"), key=lambda r: _about(r)[1])
    assert [(r.levelno, _about(r)[1:]) for r in records] == [
        (logging.ERROR, ("a", "x", 1)),
        (logging.ERROR, ("b", "y", 1)),
        (logging.ERROR, ("c", "z", 1)),
        (logging.ERROR, ("d", "w", 1)),
    ]
    assert "UnrecoverableError: bad input" in records[0].getMessage()
    assert records[1].exc_info is not None and isinstance(records[1].exc_info[1], KeyError)
    assert records[2].getMessage().endswith("for good: job timed out after 5.0 s")
    assert "for good: invalid return value=nan" in records[3].getMessage()


async def test_a_stall_is_a_warning_and_the_stall_over_the_limit_an_error(
    make_runtime: MakeRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="actorq")
    clock = VirtualClock(autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("m")
        w = rt.worker(q, lock_duration=30)
        added = await q.add("j")
        assert await w.get_next_job("t1") is not None
        await clock.advance_to(30)
        (stall,) = _records(caplog, "actorq.stall")
        assert stall.levelno == logging.WARNING
        assert _about(stall) == (added.id, "m", "j", 1)
        assert stall.getMessage() == (
            f"job {added.id} (queue 'm', name 'j') stalled, its lock expired "
            "(lock t1; stall 1, 1 allowed): back to waiting"
        )
        assert await w.get_next_job("t2") is not None
        await clock.advance(30)
        _, second = _records(caplog, "actorq.stall")
        assert second.levelno == logging.ERROR
        assert "(lock t2; stall 2, 1 allowed): failed: job stalled more than allowable" in (
            second.getMessage()
        )


async def test_a_job_active_at_a_restart_is_logged_as_stalled(
    runtime_lives: RuntimeLives, caplog: pytest.LogCaptureFixture
) -> None:
    async with runtime_lives(clock=VirtualClock()) as life:
        async with life() as rt:
            await rt.queue("m").add("held")
            assert await rt.worker("m").get_next_job("t") is not None
        caplog.set_level(logging.WARNING, logger="actorq")
        async with life():
            pass
    (stall,) = _records(caplog, "actorq.stall")
    assert stall.levelno == logging.WARNING
    assert "stalled, it was active when the runtime last stopped (lock t;" in stall.getMessage()


@pytest.mark.runtimes("local", why="damages the journal's files, the Runtime's own")
async def test_journal_recovery_is_info_and_damage_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="actorq")
    async with Runtime(path=tmp_path, clock=VirtualClock()) as rt:
        for n in range(5):
            await rt.queue("q").add("j", {"n": n})  # a frame each
    assert not _records(caplog, "actorq.journal")  # a new journal: nothing recovered
    async with Runtime(path=tmp_path, clock=VirtualClock()):
        pass
    (recovered,) = _records(caplog, "actorq.journal")
    assert recovered.levelno == logging.INFO
    assert recovered.getMessage() == f"journal {tmp_path}: recovering 5 frame(s)"
    caplog.clear()
    _flip_a_byte(tmp_path)
    with pytest.raises(JournalCorruptError):
        async with Runtime(path=tmp_path, clock=VirtualClock()):
            pass
    (damaged,) = _records(caplog, "actorq.journal")
    assert damaged.levelno == logging.ERROR
    assert f"journal {tmp_path} is damaged and was not opened" in damaged.getMessage()
    assert f"`actorq verify {tmp_path}`" in damaged.getMessage()
