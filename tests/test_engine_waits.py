"""The engine keeps a wait pending only while its caller still waits: a request its caller
gave up on before the engine reached it (it sat in the mailbox) is never registered, and a
fetch so given up locks no job. Driven through `Engine.step`, without a runtime."""

from __future__ import annotations

from actorq._actors.changelog import NullChangeLog
from actorq._actors.engine import Engine
from actorq._actors.messages import Request
from actorq._core import CoreState, JobState
from actorq._core import commands as c
from actorq._core.records import JobSpec


def engine_with_one_job() -> tuple[Engine, int]:
    core = CoreState()
    engine = Engine(core, NullChangeLog(), lambda: 0.0)
    [(rec, _created)] = core.add([JobSpec("j", "q", b"{}")], 0.0)
    return engine, rec.id


def given_up(command: c.Command) -> Request:
    req = Request(command)
    req.abandoned = True
    return req


async def test_a_wait_given_up_in_the_mailbox_is_never_registered() -> None:
    engine, job_id = engine_with_one_job()
    engine.step([given_up(c.WaitFinished(job_id))], 1.0)
    assert engine.waiters == {}
    kept = Request(c.WaitFinished(job_id))
    engine.step([kept], 1.0)
    assert engine.waiters == {job_id: [kept]}


async def test_a_fetch_given_up_in_the_mailbox_locks_nothing() -> None:
    engine, job_id = engine_with_one_job()
    take = c.Take("q", 1, "t", 30.0, 1)
    outbox = engine.step([given_up(c.Fetch(take, wait=True))], 1.0)
    assert engine.core.jobs[job_id].state is JobState.WAITING
    assert engine.fetchers == {}
    assert [req.result for req in outbox.replies] == [None]
    wanted = Request(c.Fetch(take, wait=True))
    outbox = engine.step([wanted], 1.0)
    assert outbox.replies == [wanted]
    assert wanted.result is engine.core.jobs[job_id]
    assert wanted.result.state is JobState.ACTIVE


async def test_forget_drops_a_pending_wait_and_its_key() -> None:
    engine, job_id = engine_with_one_job()
    engine.core.handle(c.Pause("q"), 1.0)
    first, second = Request(c.WaitFinished(job_id)), Request(c.WaitFinished(job_id))
    fetch = Request(c.Fetch(c.Take("q", 1, "t", 30.0, 1), wait=True))
    engine.step([first, second, fetch], 1.0)
    assert engine.waiters == {job_id: [first, second]}
    assert list(engine.fetchers["q"]) == [fetch]
    engine.forget(first)
    assert engine.waiters == {job_id: [second]}
    engine.forget(second)
    engine.forget(fetch)
    assert engine.waiters == {}
    assert engine.fetchers == {}
    engine.forget(fetch)  # forgetting twice, or what was answered, is harmless
