"""The wire (actorq._remote.wire) and the host's checks (actorq._remote.checks), without a
runtime: what a value becomes on the way to another process and back, and what the host
refuses before its engine sees it."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from actorq import InvalidOptionError, JobNotFoundError, JobState, LockError
from actorq._core import JobRecord
from actorq._core import commands as c
from actorq._core.events import JobCompleted
from actorq._core.records import KEEP_ALL, Backoff, JobSpec, Retention
from actorq._remote.checks import check_command
from actorq._remote.wire import (
    ProtocolError,
    RemoteError,
    decode_error,
    decode_value,
    encode_error,
    encode_value,
)


def travel(value: Any) -> Any:
    """`value` through a frame's JSON and back."""
    return decode_value(orjson.loads(orjson.dumps(encode_value(value))))


SPEC = JobSpec(
    "send",
    "mail",
    b'{"to": "a@b"}',
    priority=3,
    delay=1.5,
    backoff=Backoff.exponential(2, max_delay=float("inf")),
    tags=("t1", "t2"),
    remove_on_complete=Retention(count=10),
)


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        7,
        -2.5,
        "text",
        b"\xff\x00 not utf-8",
        b'{"json": 1}',
        float("inf"),
        (1, "a", None),
        [1, [2, (3,)]],
        frozenset({"x", "y"}),
        {1: ("processed", b"2"), "k": None},
        JobState.WAITING,
        SPEC,
        KEEP_ALL,
        JobCompleted(4, "q", "n", b"1"),
        c.Add([SPEC, SPEC]),
        c.Report("w-1", [(1, None), (2, b"3"), c.Fail(3, "w-1", "boom", "trace")], 3),
        JobRecord(9, "n", "q", b"null", JobState.ACTIVE, 0, ("t",), None, 1, 12.5),
    ],
    ids=repr,
)
def test_values_come_back_as_they_went(value: Any) -> None:
    back = travel(value)
    if isinstance(value, JobRecord):
        assert repr(back) == repr(value)  # records compare by identity
    else:
        assert back == value and type(back) is type(value)


def test_a_shared_spec_travels_once_and_stays_shared() -> None:
    specs = [SPEC] * 1000
    raw = encode_value(specs)
    assert raw[0] == "M" and len(raw[1]) == 1
    back = decode_value(orjson.loads(orjson.dumps(raw)))
    assert back == specs and all(item is back[0] for item in back)


def test_float_nan_travels() -> None:
    back = travel(float("nan"))
    assert back != back  # noqa: PLR0124 - NaN is the one float unequal to itself


@pytest.mark.parametrize(
    "raw",
    [
        {"a": 1},
        [],
        ["Q", 1],
        [5],
        ["A", "NoSuchClass"],
        ["A", "JobSpec", "too", "few"],
        ["A", "os.system", "rm"],
        ["E", "JobState", "no-such-state"],
        ["E", "NotAnEnum", 1],
        ["D", 1],
        ["Y", "***"],
        ["F", "1e400x"],
        ["K", 99],
        ["M", [["A", "Retention", None, None]], [5]],
    ],
    ids=repr,
)
def test_what_is_not_a_value_is_a_protocol_error(raw: Any) -> None:
    with pytest.raises(ProtocolError):
        decode_value(raw)


def test_errors_come_back_with_their_fields() -> None:
    err = decode_error(orjson.loads(orjson.dumps(encode_error(InvalidOptionError("a", 1, "no")))))
    assert isinstance(err, InvalidOptionError) and err.field == "a" and err.value == 1
    assert str(err) == "invalid a=1: no"
    lock = decode_error(encode_error(LockError(5, "expired")))
    assert isinstance(lock, LockError) and lock.job_id == 5
    gone = decode_error(encode_error(JobNotFoundError(7)))
    assert isinstance(gone, JobNotFoundError) and "7" in str(gone)
    other = decode_error(encode_error(ZeroDivisionError("x")))
    assert isinstance(other, RemoteError) and "ZeroDivisionError: x" in str(other)


# ---------------------------------------------------------------- the host's checks


def test_a_valid_command_passes() -> None:
    check_command(c.Add([SPEC] * 3), ())
    check_command(c.Fetch(c.Take("q", 1, "tok", 30.0)), ())


@pytest.mark.parametrize(
    ("cmd", "field"),
    [
        (c.StallAllActive(), "command"),
        (c.DropWorker("w"), "command"),
        (c.Add([JobSpec("n", "q", "not bytes")]), "Add.specs"),  # type: ignore[arg-type]
        (c.Add([JobSpec("n", "q", b"{")]), "data"),
        (c.Add([JobSpec("", "q", b"1")]), "name"),
        (c.Add([JobSpec("n", "q", b"1", priority=2**40)]), "priority"),
        (c.Add([JobSpec("n", "q", b"1", attempts=0)]), "attempts"),
        (c.Add([JobSpec("n", "q", b"1", delay=-1.0)]), "delay"),
        (c.Add([JobSpec("n", "q", b"1")] * 2, names=["a"]), "names"),
        (c.Take("q", 0, "t", 30.0), "take.n"),
        (c.Fetch(c.Take("q", 1, "t", None)), "lock_duration"),  # a lock that never expires
        (c.ExtendLock(1, "t", float("inf")), "duration"),
        (c.ExtendLock(1, "t", float("nan")), "ExtendLock.duration"),
        (c.ChangeDelay(1, -3.0), "delay"),
        (c.SetLimiter("q", 0, 1.0), "max_jobs"),
        (c.PauseWorker("someone-else", True), "token"),
        (c.GetJob("not an id"), "GetJob.job_id"),  # type: ignore[arg-type]
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, str) else v,
)
def test_a_bad_command_is_refused_naming_the_field(cmd: Any, field: str) -> None:
    with pytest.raises(InvalidOptionError) as info:
        check_command(cmd, ())
    assert info.value.field.endswith(field)


def test_a_worker_token_of_this_connection_is_accepted() -> None:
    check_command(c.PauseWorker("mine", True), {"mine"})
