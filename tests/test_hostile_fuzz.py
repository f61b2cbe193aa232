"""Whatever a caller passes or a processor does, a journaled runtime goes on (issue 15).

Hypothesis draws calls (`add`, `add_bulk`, `update_data`) with option values and payloads
from a hostile domain (huge and negative numbers, NaN and infinities, lone surrogates,
wrong types, unknown option names) and processor outcomes (odd return values, exceptions
whose text cannot be read, bad `DelayedError` delays, `BaseException`s). The same calls run
on an in-memory runtime and on a journaled one. Each call is either refused with
`InvalidOptionError` naming a field, changing nothing, or accepted; both runtimes decide
alike and end in the same state, and the journal reopens to exactly that state.
"""

# Stays on Runtime: it compares an in-memory core with a journaled one and its reopen, the engine's
# own state.

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from actorq import (
    Backoff,
    DelayedError,
    InvalidOptionError,
    Job,
    Runtime,
    UnrecoverableError,
    VirtualClock,
)
from actorq._options import JOB_OPTIONS
from tests.test_journal_runtime import replay_folder

SURROGATE = "caf\udce9"

numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2**31, 2**63 - 1, 2**63, 2**64]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e300]),
)
texts = st.one_of(st.text(max_size=8), st.just(SURROGATE), st.just(""))
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
payloads = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(texts, st.integers(0, 3)), inner, max_size=3),
        st.tuples(inner, inner),
    ),
    max_leaves=6,
)
backoffs = st.one_of(
    st.builds(Backoff.fixed, st.floats(0, 100)),
    st.builds(Backoff.exponential, st.floats(0, 10)),
    st.builds(
        lambda kind, delay: {"type": kind, "delay": delay},
        st.sampled_from(["fixed", "exponential", "linear", SURROGATE]),
        numbers,
    ),
)
option_values = st.one_of(
    scalars, st.lists(scalars, max_size=3), backoffs, st.dictionaries(texts, scalars, max_size=2)
)
known_options = st.sampled_from([n for n in JOB_OPTIONS if n not in ("parent", "depends_on")])
# Mostly real names, so the values behind them are what is tried; a few unknown ones.
option_names = st.one_of(
    known_options, known_options, known_options, st.sampled_from(["priorty", SURROGATE])
)
names = st.one_of(st.sampled_from(["send", "report"]), st.sampled_from(["send"]), texts)
options = st.dictionaries(option_names, option_values, max_size=3)

adds = st.tuples(st.just("add"), names, payloads, options)
bulks = st.tuples(
    st.just("add_bulk"),
    st.lists(st.tuples(names, payloads, options), min_size=1, max_size=3),
)
updates = st.tuples(st.just("update_data"), st.integers(0, 5), payloads)
calls = st.lists(st.one_of(adds, bulks, updates), min_size=1, max_size=8)


class Unreadable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text here")


class OwnBase(BaseException):
    pass


def outcome(kind: str, value: Any) -> Callable[[Job], Any]:
    async def run(job: Job) -> Any:
        if kind == "return":
            return value
        if kind == "return-object":
            return {1, 2}  # a set: JSON has none
        if kind == "raise":
            raise ValueError(value)
        if kind == "unreadable":
            raise Unreadable()
        if kind == "delayed" and job.attempts_started == 1:
            # Only once: a DelayedError counts no attempt, so a job delayed by 0 s at every
            # start would run forever within one virtual instant.
            raise DelayedError(delay=value)
        if kind == "delayed":
            return None
        if kind == "unrecoverable":
            raise UnrecoverableError(SURROGATE)
        if kind == "base":
            raise OwnBase(value)
        raise SystemExit(3)

    return run


outcomes = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "return",
                "return-object",
                "raise",
                "unreadable",
                "delayed",
                "unrecoverable",
                "base",
                "exit",
            ]
        ),
        payloads,
    ),
    min_size=1,
    max_size=4,
)


async def play(rt: Runtime, clock: VirtualClock, script: list[Any], plan: list[Any]) -> list[str]:
    """Run the calls; what each one did ("ok" or the field it was refused for)."""
    q = rt.queue("fuzz")
    await q.pause()
    seen: list[str] = []
    jobs: list[Job] = []
    for call in script:
        before = rt._core.snapshot()
        try:
            if call[0] == "add":
                _, name, data, opts = call
                jobs.append(await q.add(name, data, **opts))
            elif call[0] == "add_bulk":
                entries = [{"name": n, "data": d, **o} for n, d, o in call[1]]
                jobs += await q.add_bulk(entries)
            elif jobs:
                _, index, data = call
                await jobs[index % len(jobs)].update_data(data)
            seen.append("ok")
        except InvalidOptionError as exc:
            assert exc.field, exc
            assert rt._core.snapshot() == before, f"refused {call!r} yet changed the state"
            seen.append(f"refused {exc.field}")
    runners = [outcome(kind, value) for kind, value in plan]

    async def processor(job: Job) -> Any:
        return await runners[job.id % len(runners)](job)

    rt.worker(q, processor)
    await q.resume()
    await clock.advance(3600)  # retries and delays within the hour run; the rest wait
    counts = await q.counts()
    seen.append(f"counts {sorted(counts.items())}")
    return seen


async def both(script: list[Any], plan: list[Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        results, states = [], []
        for path in (None, Path(folder) / "j"):
            clock = VirtualClock()
            async with Runtime(path, clock=clock, seed=3, fsync="never") as rt:
                results.append(await play(rt, clock, script, plan))
            states.append(rt._core.snapshot())
        assert results[0] == results[1]
        for seen in results[0][:-1]:
            # For --hypothesis-show-statistics: how often each kind of call was refused.
            event(seen.split(".")[0].split("[")[0].encode("ascii", "backslashreplace").decode())
        assert states[0] == states[1]
        reopened, _ = replay_folder(Path(folder) / "j")
        assert reopened.snapshot() == states[1]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=calls, plan=outcomes)
def test_hostile_calls_are_refused_or_stored_and_replayed_exactly(
    backend: str, script: list[Any], plan: list[Any]
) -> None:
    anyio.run(both, script, plan, backend=backend)
