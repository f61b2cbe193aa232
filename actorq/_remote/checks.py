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
from collections.abc import Callable, Container
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


Check = Callable[[Any], bool]
_CHECKERS: dict[Any, Check] = {}


def _a_number(value: Any) -> bool:
    # Infinity is a value some fields take (a backoff without a cap); NaN is none's.
    return type(value) in (float, int) and not math.isnan(value)


def _int_ok(value: Any) -> bool:
    return type(value) is int and _LOW <= value <= MAX_COUNT


def checker(hint: Any) -> Check:
    """Whether a value is of the annotated type `hint` (the subset the core's classes use),
    as a function made once per type: the host runs it over every value a client sends."""
    found = _CHECKERS.get(hint)
    if found is None:
        found = _CHECKERS[hint] = _make_checker(hint)
    return found


def _make_checker(hint: Any) -> Check:
    if hint is Any:
        return lambda value: True
    if hint is None or hint is type(None):
        return lambda value: value is None
    if hint is float:
        return _a_number
    if hint is int:
        return _int_ok
    if hint in (bool, str, bytes):
        return lambda value: type(value) is hint
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        arms = [checker(arm) for arm in args]
        return lambda value: any(arm(value) for arm in arms)
    if origin is None:
        return _class_checker(hint)
    if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        parts = [checker(arg) for arg in args]
        return lambda value: (
            type(value) is tuple
            and len(value) == len(parts)
            and all(part(v) for part, v in zip(parts, value, strict=True))
        )
    if origin is dict:
        key, item = checker(args[0]), checker(args[1])
        return lambda value: (
            type(value) is dict and all(key(k) and item(v) for k, v in value.items())
        )
    kinds = {tuple: (tuple,), frozenset: (frozenset,)}.get(origin, (list, tuple))
    each = checker(args[0])

    def items(value: Any) -> bool:
        if type(value) not in kinds:
            return False
        seen: set[int] = set()  # a bulk add repeats one spec: check each instance once
        for v in value:
            if id(v) not in seen:
                if not each(v):
                    return False
                seen.add(id(v))
        return True

    return items


def _class_checker(cls: type[Any]) -> Check:
    if not attrs.has(cls):
        return lambda value: isinstance(value, cls)
    hints = typing.get_type_hints(cls)
    fields = [(f.name, hints[f.name]) for f in attrs.fields(cls)]
    parts: list[tuple[str, Check]] = []

    def check(value: Any) -> bool:
        if type(value) is not cls:
            return False
        if not parts:  # made on first use: a class's fields may name classes after it
            parts.extend((name, checker(hint)) for name, hint in fields)
        return all(part(getattr(value, name)) for name, part in parts)

    return check


def _first_misfit(cmd: Any) -> str:
    hints = typing.get_type_hints(type(cmd))
    names: list[str] = [f.name for f in attrs.fields(type(cmd))]
    return next(name for name in names if not checker(hints[name])(getattr(cmd, name)))


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
    if take.lock_duration is None or not 0 < take.lock_duration <= MAX_WAIT:
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


def _check_page(cmd: c.GetPage) -> None:
    if cmd.sort not in (None, "id", "-id"):
        raise _refuse("sort", cmd.sort, "must be 'id', '-id' or None")


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
    c.GetGroups: (("limit", 1, None),),
    c.MoveToDelayed: (("delay", 0, MAX_WAIT),),
}

#: Per command, a check of what a range cannot say.
_CHECKS: Final[dict[type[Any], Callable[[Any], None]]] = {
    c.Add: _check_add,
    c.UpsertScheduler: _check_scheduler,
    c.Take: _check_take,
    c.GetPage: _check_page,
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
    if not checker(kind)(cmd):
        bad = _first_misfit(cmd)
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
