"""What a runtime host accepts from a client: the commands, their types, their ranges.

A local runtime's handles validate every option before they build a command (`_options`),
so the core trusts the commands it gets. A client in another process may run other code,
or none of ours: the host checks each decoded command here before the engine sees it. A
command that fails is refused with `InvalidOptionError`, naming the field, and changes
nothing; the engine never meets a value its handlers were not written for.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable, Container, Sequence
from typing import Any, Final

import attrs
import orjson

from .._core import commands as c
from .._core.records import CHILD_FAILURE_POLICIES, MAX_WAIT, JobSpec
from .._core.schedulers import SchedulerRecord
from .._exceptions import InvalidOptionError
from .._options import (
    MAX_CONCURRENCY,
    MAX_COUNT,
    MAX_PRIORITY,
    _int,
    _number,
    absolute_time,
    check_queue_name,
    deduplication,
    tags,
    text,
)
from .._schedule import _check_pattern, _check_tz

#: The commands only the runtime itself sends: registering a worker's in-process slot (a
#: client's processor workers are registered by the host for it), stalling everything at
#: start, stopping dispatch, dropping a worker whose connection broke, closing a worker (a
#: client closes its own through the host), a worker's report (it has a message of its own).
RUNTIME_ONLY: Final = frozenset(
    {
        c.RegisterWorker,
        c.StallAllActive,
        c.StopDispatch,
        c.DropWorker,
        c.CloseWorker,
        c.Report,
    }
)

#: The commands a client may send: every other command the core and the engine take.
ALLOWED: Final = frozenset(
    cls
    for cls in vars(c).values()
    if isinstance(cls, type)
    and issubclass(cls, c.Command)
    and cls not in (c.Command, c.Query)
    and cls not in RUNTIME_ONLY
)

#: Commands naming a processor worker by token: only the client that registered it may.
_OWNED: Final = (c.PauseWorker, c.WaitWorkersIdle)

_LOW: Final = -(2**63)


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _fits(value: Any, hint: Any) -> bool:
    """Whether `value` is of the annotated type `hint` (the subset commands use)."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(_fits(value, arm) for arm in typing.get_args(hint))
    if hint is None or hint is type(None):
        return value is None
    if hint is float:
        return type(value) in (float, int) and _finite(value)
    if hint is int:
        return type(value) is int and _LOW <= value <= MAX_COUNT
    if hint is bool or hint is str or hint is bytes:
        return type(value) is hint
    if origin is None:
        return isinstance(value, hint) and (not attrs.has(hint) or _fields_fit(value))
    args = typing.get_args(hint)
    if origin is tuple:
        if type(value) is not tuple:
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        return len(value) == len(args) and all(map(_fits, value, args))
    if origin in (list, Sequence) or origin is typing.get_origin(Sequence[int]):
        return type(value) in (list, tuple) and all(_fits(v, args[0]) for v in value)
    if origin is frozenset:
        return type(value) is frozenset and all(_fits(v, args[0]) for v in value)
    if origin is dict:
        return type(value) is dict and all(
            _fits(k, args[0]) and _fits(v, args[1]) for k, v in value.items()
        )
    return False


def _finite(value: float) -> bool:
    return math.isfinite(value) and abs(value) <= MAX_WAIT * 1e3


def _fields_fit(value: Any) -> bool:
    hints = _hints(type(value))
    return all(_fits(getattr(value, f.name), hints[f.name]) for f in attrs.fields(type(value)))


def _refuse(field: str, value: object, why: str) -> InvalidOptionError:
    return InvalidOptionError(field, value, why)


def _at_least(field: str, value: float | None, low: float) -> None:
    if value is not None and value < low:
        raise _refuse(field, value, f"must be at least {low}")


def check_spec(spec: JobSpec, where: str) -> None:
    """The checks `_options.job_spec` makes of a job added in this process, by the same
    validators; `where` prefixes the field names as there (``"jobs[3]."``)."""
    check_queue_name(spec.queue)
    text(f"{where}name", spec.name, "a job name must be a non-empty string")
    _int(f"{where}priority", spec.priority, -MAX_PRIORITY, MAX_PRIORITY)
    _int(f"{where}attempts", spec.attempts, 1)
    if spec.delay is not None:
        _number(f"{where}delay", spec.delay)
    if spec.run_at is not None:
        absolute_time(f"{where}run_at", spec.run_at)
    if spec.timeout is not None:
        _number(f"{where}timeout", spec.timeout, positive=True)
    if spec.max_started_attempts is not None:
        _int(f"{where}max_started_attempts", spec.max_started_attempts, 1)
    tags(f"{where}tags", spec.tags)
    if spec.idempotency_key is not None:
        text(f"{where}idempotency_key", spec.idempotency_key)
    if spec.group is not None:
        text(f"{where}group", spec.group, "a group must be a non-empty string")
    dd = spec.deduplication
    if dd is not None:
        delayed = bool(spec.delay) or spec.run_at is not None
        options = {"id": dd.id, "ttl": dd.ttl, "extend": dd.extend, "replace": dd.replace}
        deduplication(options, where, delayed)
    if spec.on_child_failure not in CHILD_FAILURE_POLICIES:
        raise _refuse(f"{where}on_child_failure", spec.on_child_failure, "is not a policy")
    for ref in (spec.parent_ref, *spec.depends_on_batch_refs):
        _at_least(f"{where}batch_ref", ref, 0)
    _json(f"{where}data", spec.data)


def _check_add(cmd: c.Add) -> None:
    checked: set[int] = set()  # a bulk add shares one spec among jobs of the same options
    for i, spec in enumerate(cmd.specs):
        if id(spec) not in checked:
            check_spec(spec, "" if len(cmd.specs) == 1 else f"jobs[{i}].")
            checked.add(id(spec))
    n = len(cmd.specs)
    for field, column in (("names", cmd.names), ("datas", cmd.datas)):
        if column is not None and len(column) != n:
            raise _refuse(field, len(column), f"must hold one item per job ({n})")
    for i, name in enumerate(cmd.names or ()):
        if not name:
            raise _refuse(f"jobs[{i}].name", name, "must be a non-empty string")
    for i, data in enumerate(cmd.datas or ()):
        _json(f"jobs[{i}].data", data)


def _json(field: str, data: bytes) -> None:
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        raise _refuse(field, data[:80], "must be JSON") from None


def _check_take(take: c.Take | None) -> None:
    if take is None:
        return
    check_queue_name(take.queue)
    if not 1 <= take.n <= MAX_CONCURRENCY:
        raise _refuse("take.n", take.n, f"must be in [1, {MAX_CONCURRENCY}]")
    if take.lock_duration is None or take.lock_duration <= 0:
        # An untimed lock is a live processor's in the host's own process; a client's
        # lock must expire, or a client that dies would hold its jobs forever.
        raise _refuse("lock_duration", take.lock_duration, "must be a positive number")
    _at_least("max_stalled_count", take.max_stalled_count, 0)


def _check_group_limit(limit: tuple[int, float] | None) -> None:
    if limit is not None:
        _int("group_limiter.max", limit[0], 1)
        if not _TINY <= limit[1] <= MAX_WAIT:
            raise _refuse(
                "group_limiter.duration", limit[1], f"must be in [{_TINY:g}, {MAX_WAIT:g}]"
            )


def _check_scheduler(cmd: c.UpsertScheduler) -> None:
    rec: SchedulerRecord = cmd.scheduler
    check_spec(rec.template, "template.")
    if (rec.every is None) == (rec.pattern is None):
        raise _refuse("every", rec.every, "give every= or pattern=, one of them")
    if rec.every is not None and rec.every <= 0:
        raise _refuse("every", rec.every, "must be positive")
    if rec.pattern is not None:
        _check_pattern(rec.pattern, _check_tz(rec.tz))


_TINY: Final = 1e-9  # "positive": at least this (a float range has no open end here)

#: Per command, the fields with a range: (field, lowest, highest or None).
_RANGES: Final[dict[type[Any], tuple[tuple[str, float, float | None], ...]]] = {
    c.ExtendLock: (("duration", _TINY, MAX_WAIT),),
    c.ExtendLocks: (("duration", _TINY, MAX_WAIT),),
    c.SetLimiter: (("max_jobs", 1, None), ("duration", _TINY, MAX_WAIT)),
    c.RateLimit: (("seconds", 0, MAX_WAIT),),
    c.SetGlobalConcurrency: (("concurrency", 1, None),),
    c.SetGroupConcurrency: (("concurrency", 1, None),),
    c.ChangeDelay: (("delay", 0, MAX_WAIT),),
    c.ChangePriority: (("priority", 0, MAX_PRIORITY),),
    c.Clean: (("grace", 0, None), ("limit", 0, None)),
    c.GetPage: (("limit", 1, None), ("budget", 1, None)),
    c.GetJobs: (("start", 0, None), ("end", -1, None)),
    c.MoveToDelayed: (("delay", 0, MAX_WAIT),),
}

#: Per command, a check of what a range cannot say.
_CHECKS: Final[dict[type[Any], Callable[[Any], None]]] = {
    c.Add: _check_add,
    c.UpsertScheduler: _check_scheduler,
    c.Take: _check_take,
    c.SetGroupLimiter: lambda cmd: _check_group_limit(cmd.limit),
    c.Fetch: lambda cmd: _check_take(cmd.take),
    c.Complete: lambda cmd: _check_take(cmd.then),
    c.Fail: lambda cmd: _check_take(cmd.then),
}


def check_command(cmd: Any, own: Container[str]) -> None:
    """Refuse (InvalidOptionError) a command a client may not send as it is."""
    kind: Any = type(cmd)
    if kind not in ALLOWED:
        raise _refuse("command", kind.__name__, "is not one a client may send")
    if not _fields_fit(cmd):
        bad = next(
            f.name
            for f in attrs.fields(kind)
            if not _fits(getattr(cmd, f.name), _hints(kind)[f.name])
        )
        raise _refuse(f"{kind.__name__}.{bad}", getattr(cmd, bad), "is not of its type")
    if isinstance(cmd, _OWNED) and cmd.token is not None and cmd.token not in own:
        raise _refuse("token", cmd.token, "is not a worker of this connection")
    for field, low, high in _RANGES.get(kind, ()):
        value = getattr(cmd, field)
        if value is not None and not (low <= value and (high is None or value <= high)):
            raise _refuse(field, value, f"must be in [{low:g}, {'∞' if high is None else high}]")
    check = _CHECKS.get(kind)
    if check is not None:
        check(cmd)
