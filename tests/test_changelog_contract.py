"""The change-log contract (actorq/_actors/changelog.py), over every log a runtime can run on:
none, memory, the file journal under ``always``, ``interval`` and ``never``, and the
simulation's. A new log (the PostgreSQL journal) joins by adding a `Subject` below.

What every log promises the engine, and so the user:

* ``waits`` is declared, a bool, and `commit` keeps to it: an awaitable when the log waits,
  None when it does not;
* no caller hears of a change before the commit that carries it is done;
* calls run inline (in the caller's task) exactly when the log does not wait;
* a log that records gives back, after a restart, what it acknowledged; a snapshot changes
  nothing of that;
* a commit that fails stops the runtime: that call and every later one raise
  `RuntimeClosedError`, whose cause is the log's error, and the block raises.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest

from actorq import MemoryChangeLog, Runtime, RuntimeClosedError
from actorq._actors.changelog import ChangeLog
from actorq._core.records import JobRecord
from actorq.testing import Simulation


class CommitFailed(Exception):
    """The error a failing log's commit raises."""


@attrs.define
class Spy:
    """Wraps a running log's `commit` (on the instance, so the engine's calls go through
    it): which change records were committed, when their commit was done, and a failure
    to inject on the next commit."""

    log: ChangeLog
    done: list[Any] = attrs.Factory(list)
    calls: int = 0
    fail_next: bool = False

    def install(self) -> None:
        commit = self.log.commit

        def spying(changes: list[Any]) -> Awaitable[None] | None:
            self.calls += 1
            if self.fail_next:
                self.fail_next = False
                raise CommitFailed("the disk is gone")
            pending = commit(changes)
            if pending is None:
                self.done.extend(changes)
                return None
            return self._finish(pending, changes)

        self.log.commit = spying  # type: ignore[method-assign]

    async def _finish(self, pending: Awaitable[None], changes: list[Any]) -> None:
        await pending
        self.done.extend(changes)

    def inserted(self, job_id: int) -> bool:
        return any(ch[0] == "add" and JobRecord.from_fields(ch[1]).id == job_id for ch in self.done)


Lives = Callable[[], AbstractAsyncContextManager[Runtime]]


@attrs.frozen
class Subject:
    name: str
    #: Whether a later life sees what an earlier one acknowledged.
    durable: bool
    #: Enter it for a test: yields a function that starts one life of a runtime on the
    #: log (the same storage each time).
    open: Callable[[Path], AbstractAsyncContextManager[Lives]]
    #: Whether the runtime's block raises when the runtime dies (a `Simulation` records
    #: the death instead, as a supervisor would, and restarts on request).
    block_raises: bool = True
    #: For a log in PostgreSQL: given a fresh database's URL, the `open` to use.
    on_database: Callable[[str], Callable[[Path], AbstractAsyncContextManager[Lives]]] | None = None


@asynccontextmanager
async def _plain(make: Callable[[], Runtime], tmp_path: Path) -> AsyncIterator[Lives]:
    @asynccontextmanager
    async def life() -> AsyncIterator[Runtime]:
        async with make() as rt:
            yield rt

    yield life


def _null(tmp_path: Path) -> AbstractAsyncContextManager[Lives]:
    return _plain(Runtime, tmp_path)


def _memory(tmp_path: Path) -> AbstractAsyncContextManager[Lives]:
    log = MemoryChangeLog()
    return _plain(functools.partial(Runtime, journal=log), tmp_path)


def _journal(fsync: str) -> Callable[[Path], AbstractAsyncContextManager[Lives]]:
    def open_(tmp_path: Path) -> AbstractAsyncContextManager[Lives]:
        return _plain(functools.partial(Runtime, tmp_path / "journal", fsync=fsync), tmp_path)

    return open_


@asynccontextmanager
async def _simulated(tmp_path: Path) -> AsyncIterator[Lives]:
    async with Simulation(seed=3) as sim:
        lives = 0

        @asynccontextmanager
        async def life() -> AsyncIterator[Runtime]:
            nonlocal lives
            if lives:
                # A new life on the same disk: a power loss, then a restart (fsync="always"
                # keeps everything acknowledged).
                await sim.crash()
                await sim.restart()
            lives += 1
            yield sim.runtime

        yield life


def _postgres(fsync: str) -> Callable[[str], Callable[[Path], AbstractAsyncContextManager[Lives]]]:
    def on(url: str) -> Callable[[Path], AbstractAsyncContextManager[Lives]]:
        def open_(tmp_path: Path) -> AbstractAsyncContextManager[Lives]:
            return _plain(functools.partial(Runtime, url, fsync=fsync), tmp_path)

        return open_

    return on


def _needs_database(tmp_path: Path) -> AbstractAsyncContextManager[Lives]:
    raise AssertionError("the subject fixture gives a PostgreSQL subject its database")


SUBJECTS = [
    Subject("null", False, _null),
    Subject("memory", True, _memory),
    Subject("journal-always", True, _journal("always")),
    Subject("journal-interval", True, _journal("interval")),
    Subject("journal-never", True, _journal("never")),
    Subject("simulation", True, _simulated, block_raises=False),
    Subject("postgresql-always", True, _needs_database, on_database=_postgres("always")),
    Subject("postgresql-interval", True, _needs_database, on_database=_postgres("interval")),
]


@pytest.fixture(params=SUBJECTS, ids=lambda s: s.name)
def subject(request: pytest.FixtureRequest) -> Subject:
    param: Subject = request.param
    if param.on_database is not None:
        return attrs.evolve(param, open=param.on_database(request.getfixturevalue("pg_url")))
    return param


async def test_a_log_declares_whether_it_waits_and_its_commit_keeps_to_it(
    subject: Subject, tmp_path: Path
) -> None:
    async with subject.open(tmp_path) as life, life() as rt:
        log = rt._journal
        assert isinstance(log.waits, bool)
        assert isinstance(log.records, bool)
        returned: list[Any] = []
        commit = log.commit

        def watching(changes: list[Any]) -> Awaitable[None] | None:
            pending = commit(changes)
            returned.append(pending)
            return pending

        log.commit = watching  # type: ignore[method-assign]
        await rt.queue("q").add("x", 1)
        if log.records:
            assert returned, "a log that records is given the batch that added a job"
        for pending in returned:
            assert (pending is not None) is log.waits


async def test_no_caller_hears_of_a_change_before_its_commit_is_done(
    subject: Subject, tmp_path: Path
) -> None:
    async with subject.open(tmp_path) as life, life() as rt:
        spy = Spy(rt._journal)
        spy.install()
        q = rt.queue("q")
        rt.worker(q, _double)
        job = await q.add("x", 21)
        if not rt._journal.records:
            assert spy.calls == 0  # nothing to commit: no change records at all
            assert await job.wait_until_finished() == 42
            return
        assert spy.inserted(job.id)
        assert await job.wait_until_finished() == 42
        assert any(
            ch[0] == "set" and ch[1] == job.id and ch[2].get("state") == "completed"
            for ch in spy.done
        )


async def test_calls_run_inline_exactly_when_the_log_does_not_wait(
    subject: Subject, tmp_path: Path
) -> None:
    async with subject.open(tmp_path) as life, life() as rt:
        q = rt.queue("q")
        worker = rt.worker(q)
        await q.add_bulk([{"name": "x", "data": i} for i in range(20)])
        before = rt.statistics()
        job = await worker.get_next_job("t")
        while job is not None:
            job = await job.move_to_completed(None, "t")
        after = rt.statistics()
        inline = after.inline_batches - before.inline_batches
        if rt._journal.waits:
            assert inline == 0
            assert after.loop_batches > before.loop_batches
        else:
            assert inline > 0


async def test_a_later_life_sees_what_an_earlier_one_acknowledged(
    subject: Subject, tmp_path: Path
) -> None:
    async with subject.open(tmp_path) as life:
        async with life() as rt:
            q = rt.queue("q")
            rt.worker(q, _double)
            done = await q.add("x", 5)
            assert await done.wait_until_finished() == 10
            waiting = await q.add("x", 7, delay=3600)
            await rt.snapshot()  # a snapshot changes nothing of what a replay gives back
            after = await q.add("x", 8, delay=3600)
            ids = (done.id, waiting.id, after.id)
        if not subject.durable:
            return
        async with life() as rt:
            q = rt.queue("q")
            jobs = [await q.get_job(i) for i in ids]
            assert [j.state.value if j else None for j in jobs] == [
                "completed",
                "delayed",
                "delayed",
            ]
            assert jobs[0] is not None and jobs[0].return_value == 10
            assert [j.data for j in jobs[1:] if j] == [7, 8]


async def test_a_failed_commit_stops_the_runtime_and_every_call_after_it(
    subject: Subject, tmp_path: Path
) -> None:
    async with subject.open(tmp_path) as life:
        with pytest.raises(BaseException) as stopped:
            async with life() as rt:
                if not rt._journal.records:
                    raise CommitFailed("a log that records nothing has no commit to fail")
                spy = Spy(rt._journal)
                spy.install()
                q = rt.queue("q")
                await q.add("x", 1)
                spy.fail_next = True
                with pytest.raises(RuntimeClosedError) as info:
                    await q.add("x", 2)
                assert isinstance(info.value.__cause__, CommitFailed)
                with pytest.raises(RuntimeClosedError):
                    await q.counts()
                if not subject.block_raises:
                    raise CommitFailed("the simulation recorded the death")
        assert "CommitFailed" in repr(stopped.value)


async def _double(job: Any) -> int:
    value: int = job.data * 2
    return value
