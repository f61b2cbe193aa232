"""`Engine.call`: a command the core answers runs inline as a batch of one when the loop is
parked and its answer (or refusal) comes back with no `Request`; otherwise the caller gets
the submitted `Request` to await. Driven without a runtime: the mailbox is a memory stream."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from actorq._actors.changelog import NullChangeLog
from actorq._actors.engine import INLINE_YIELD_MASK, Engine
from actorq._actors.messages import Request
from actorq._core import CoreState, JobState
from actorq._core import commands as c
from actorq._core.records import JobSpec
from actorq._exceptions import JobNotFoundError


@contextlib.contextmanager
def parked_engine() -> Iterator[tuple[Engine, int, MemoryObjectReceiveStream[object]]]:
    """An engine whose loop rests on an empty mailbox, with one waiting job."""
    core = CoreState()
    engine = Engine(core, NullChangeLog(), lambda: 1.0)
    [(rec, _created)] = core.add([JobSpec("j", "q", b"{}")], 0.0)
    send, receive = anyio.create_memory_object_stream[object](10)
    with send, receive:
        engine.mailbox = send
        engine.rest()
        yield engine, rec.id, receive


async def test_a_core_command_runs_inline_and_returns_its_answer() -> None:
    with parked_engine() as (engine, job_id, mailbox):
        rec = engine.call(c.Fetch(c.Take("q", 1, "tok", 30.0, 1), wait=False))
        # Fetch is the engine's own: it comes back as its request, answered inline.
        assert type(rec) is Request and rec.replied and rec.result.id == job_id
        assert engine.call(c.GetJob(job_id)).state is JobState.ACTIVE
        assert engine.inline_batches == 2
        assert mailbox.statistics().current_buffer_used == 0


async def test_a_refused_command_raises_after_its_batch_and_changes_nothing() -> None:
    with parked_engine() as (engine, job_id, _mailbox):
        with pytest.raises(JobNotFoundError):
            engine.call(c.Cancel(job_id + 1, None))
        assert engine.core.jobs[job_id].state is JobState.WAITING
        assert engine.inline_batches == 1 and engine.parked


async def test_a_busy_loop_gets_the_request_posted() -> None:
    with parked_engine() as (engine, job_id, mailbox):
        engine.post(c.Report("nobody", (), 0))  # something queued: the loop is not parked
        req = engine.call(c.GetJob(job_id))
        assert type(req) is Request and not req.replied
        assert mailbox.statistics().current_buffer_used == 2
        assert engine.inline_batches == 0


async def test_the_call_that_yields_comes_back_unsent_and_changes_nothing() -> None:
    with parked_engine() as (engine, job_id, mailbox):
        answers = [engine.call(c.GetJob(job_id)) for _ in range(INLINE_YIELD_MASK)]
        assert all(type(a) is not Request for a in answers)
        req = engine.call(c.Fetch(c.Take("q", 1, "tok", 30.0, 1), wait=False))
        # Its caller yields, then submits it: nothing ran, nothing was posted.
        assert type(req) is Request and not req.sent and not req.replied
        assert engine.core.jobs[job_id].state is JobState.WAITING
        assert engine.inline_batches == INLINE_YIELD_MASK
        assert mailbox.statistics().current_buffer_used == 0
        engine.submit(req)
        assert req.replied and req.result.id == job_id
