"""Validation of what callers pass: every check runs in the caller's task, before anything
is sent to the scheduler, so bad input raises an error naming the field and the value and
changes nothing.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Final

import attrs
import orjson

from ._codec import encode
from ._core.records import (
    KEEP_ALL,
    MAX_WAIT,
    REMOVE_AT_ONCE,
    Backoff,
    Deduplication,
    JobSpec,
    Retention,
)
from ._exceptions import InvalidDependencyError, InvalidOptionError
from ._relations import BatchRef, DependsOn

_NULL_JSON: Final = b"null"
#: Priorities are bounded so an ordering key never needs more than a machine word.
MAX_PRIORITY: Final = 2**31
#: The largest count a call accepts (attempts, retention counts, concurrency...): what the
#: journal stores as a signed 64-bit integer.
MAX_COUNT: Final = 2**63 - 1
#: The most processors one worker runs at once. Each slot is a task started with the
#: worker, so the cost of a start grows with it whatever the load; past this it takes
#: seconds and hundreds of megabytes, which no single worker needs.
MAX_CONCURRENCY: Final = 10_000
#: Option names `Queue.add` takes, besides `name` and `data`.
JOB_OPTIONS: Final = (
    "priority",
    "delay",
    "run_at",
    "attempts",
    "backoff",
    "timeout",
    "lifo",
    "tags",
    "idempotency_key",
    "remove_on_complete",
    "remove_on_fail",
    "max_started_attempts",
    "parent",
    "depends_on",
    "fail_parent_on_failure",
    "ignore_dependency_on_failure",
    "remove_dependency_on_failure",
    "continue_parent_on_failure",
    "deduplication",
    "group",
)
_DEDUP_KEYS: Final = ("id", "ttl", "extend", "replace")
_CHILD_POLICIES: Final = (
    ("ignore_dependency_on_failure", "ignore"),
    ("remove_dependency_on_failure", "remove"),
    ("continue_parent_on_failure", "continue"),
)


def unknown_option(field: str, value: object, known: Iterable[str]) -> InvalidOptionError:
    key = field.rsplit(".", 1)[-1]  # the hint matches the option, not its path
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return InvalidOptionError(field, value, f"unknown option{hint}")


def text(field: str, value: object, what: str = "must be a non-empty string") -> str:
    """A non-empty string that can be stored: valid Unicode, so UTF-8 can encode it (a lone
    surrogate, as `os.fsdecode` makes of undecodable bytes, cannot be journaled)."""
    if not isinstance(value, str) or not value:
        raise InvalidOptionError(field, value, what)
    return unicode(field, value)


def unicode(field: str, value: str) -> str:
    """`value`, refused if it holds a lone surrogate (it could not be journaled)."""
    if not value.isascii():  # ASCII (the common case) is valid UTF-8 as it stands
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidOptionError(
                field, value, f"holds a lone surrogate at index {exc.start}; not valid Unicode"
            ) from None
    return value


def check_queue_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidOptionError("queue", name, "a queue name must be a non-empty string")
    if len(name) > 200:
        raise InvalidOptionError("queue", name, "a queue name is at most 200 characters")
    return unicode("queue", name)


def _number(field: str, value: object, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidOptionError(field, value, "must be a number of seconds")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise InvalidOptionError(
            field,
            value,
            "must be a finite number > 0" if positive else "must be a finite number >= 0",
        )
    return float(value)


def _int(field: str, value: object, low: int, high: int = MAX_COUNT) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidOptionError(field, value, "must be an integer")
    if value < low or value > high:
        raise InvalidOptionError(field, value, f"must be within [{low}, {high}]")
    return value


def absolute_time(field: str, value: object) -> float:
    """Seconds on the runtime's clock, from a number or an aware or naive `datetime`."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidOptionError(field, value, "must be a number of seconds or a datetime")
    return float(value)


def retention(field: str, value: object) -> Retention:
    if value is None or value is False:
        return KEEP_ALL
    if value is True:
        return REMOVE_AT_ONCE
    if isinstance(value, Retention):
        return value
    if isinstance(value, int):
        return Retention(count=_int(field, value, 0))
    if isinstance(value, Mapping):
        extra = set(value) - {"count", "age"}
        if extra:
            key = sorted(extra)[0]
            raise unknown_option(f"{field}.{key}", value[key], ("count", "age"))
        count = value.get("count")
        age = value.get("age")
        return Retention(
            count=None if count is None else _int(f"{field}.count", count, 0),
            age=None if age is None else _number(f"{field}.age", age),
        )
    raise InvalidOptionError(
        field, value, "must be a bool, a count, or {'count': n, 'age': seconds}"
    )


def backoff(field: str, value: object) -> Backoff | None:
    if value is None or isinstance(value, Backoff):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Backoff.fixed(_number(field, value))
    raise InvalidOptionError(
        field, value, "must be a Backoff or a number of seconds (fixed backoff)"
    )


def tags(field: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InvalidOptionError(field, value, "must be a list of strings")
    out = set()
    for tag in value:
        if not isinstance(tag, str) or not tag:
            raise InvalidOptionError(field, value, f"tag {tag!r} is not a non-empty string")
        out.add(unicode(field, tag))
    return tuple(sorted(out))


def child_failure_policy(options: Mapping[str, Any], where: str) -> str:
    """BullMQ's mutually exclusive child-failure options, as one policy name."""
    chosen: list[tuple[str, str]] = []
    fail_parent = options.get("fail_parent_on_failure")
    if fail_parent is not None and not isinstance(fail_parent, bool):
        raise InvalidOptionError(f"{where}fail_parent_on_failure", fail_parent, "must be a bool")
    for option, policy in _CHILD_POLICIES:
        value = options.get(option)
        if value is None or value is False:
            continue
        if value is not True:
            raise InvalidOptionError(f"{where}{option}", value, "must be a bool")
        chosen.append((option, policy))
    if fail_parent is True:
        chosen.insert(0, ("fail_parent_on_failure", "fail"))
    if len(chosen) > 1:
        names = " and ".join(option for option, _ in chosen)
        raise InvalidOptionError(
            f"{where}{chosen[1][0]}", True, f"{names} are mutually exclusive: pick one"
        )
    if chosen:
        return chosen[0][1]
    return "wait" if fail_parent is False else "fail"


def depends_on(
    value: object, where: str, *, in_batch: bool
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[str, ...]]:
    """(job ids, batch indexes, barrier tags) from a `DependsOn`."""
    if value is None:
        return (), (), ()
    if not isinstance(value, DependsOn):
        raise InvalidOptionError(f"{where}depends_on", value, "must be a DependsOn(...)")
    ids: list[int] = []
    refs: list[int] = []
    if isinstance(value.job_ids, str | bytes) or not isinstance(value.job_ids, Iterable):
        raise InvalidOptionError(f"{where}depends_on.job_ids", value.job_ids, "must be a list")
    for item in value.job_ids:
        if isinstance(item, BatchRef):
            if not in_batch:
                raise InvalidDependencyError(
                    f"{where}depends_on.job_ids: {item!r}: batch_ref() only refers to jobs "
                    "of the same add_bulk call"
                )
            refs.append(item.index)
        elif isinstance(item, int) and not isinstance(item, bool) and item > 0:
            ids.append(item)
        else:
            raise InvalidOptionError(
                f"{where}depends_on.job_ids", item, "must be a job id (int > 0) or a batch_ref"
            )
    barrier = tags(f"{where}depends_on.tags", value.tags)
    return tuple(dict.fromkeys(ids)), tuple(dict.fromkeys(refs)), barrier


def deduplication(value: object, where: str, delayed: bool) -> Deduplication | None:
    """BullMQ's ``deduplication={"id": key, "ttl": s, "extend": b, "replace": b}``."""
    if value is None:
        return None
    field = f"{where}deduplication"
    if not isinstance(value, Mapping):
        raise InvalidOptionError(field, value, 'must be {"id": key, "ttl": seconds, ...}')
    for key in value:
        if key not in _DEDUP_KEYS:
            raise unknown_option(f"{field}.{key}", value[key], _DEDUP_KEYS)
    key = text(f"{field}.id", value.get("id"))
    ttl = value.get("ttl")
    if ttl is not None:
        ttl = _number(f"{field}.ttl", ttl, positive=True)
        if ttl > MAX_WAIT:
            raise InvalidOptionError(f"{field}.ttl", ttl, f"must be at most {MAX_WAIT:g} seconds")
    flags = {}
    for name in ("extend", "replace"):
        flag = value.get(name, False)
        if not isinstance(flag, bool):
            raise InvalidOptionError(f"{field}.{name}", flag, "must be True or False")
        flags[name] = flag
    if flags["extend"] and ttl is None:
        raise InvalidOptionError(
            f"{field}.extend", True, "extends the ttl: give deduplication.ttl too"
        )
    if flags["replace"] and not delayed:
        raise InvalidOptionError(
            f"{field}.replace", True, "replaces a job still delayed: give the job a delay"
        )
    return Deduplication(key, ttl, flags["extend"], flags["replace"])


def parent_id(value: object, where: str) -> int | None:
    if value is None:
        return None
    job_id = getattr(value, "id", value)  # a Job, or an id
    if isinstance(job_id, bool) or not isinstance(job_id, int) or job_id <= 0:
        raise InvalidOptionError(f"{where}parent", value, "must be a Job or a job id")
    return job_id


def job_spec(
    queue: str,
    name: object,
    data: object,
    options: Mapping[str, Any],
    where: str = "",
    *,
    in_batch: bool = False,
) -> JobSpec:
    """A validated `JobSpec`; `where` prefixes field names (``"jobs[3]."`` in a bulk add)."""
    if not options:  # the common case: every option at its default, nothing else to check
        checked = text(f"{where}name", name, "a job name must be a non-empty string")
        return JobSpec(name=checked, queue=queue, data=encode(f"{where}data", data), **_DEFAULTS)
    for key, value in options.items():
        if key not in JOB_OPTIONS:
            raise unknown_option(f"{where}{key}", value, JOB_OPTIONS)
    checked = text(f"{where}name", name, "a job name must be a non-empty string")
    raw = encode(f"{where}data", data)
    get = options.get
    delay = get("delay")
    run_at = get("run_at")
    if delay is not None and run_at is not None:
        raise InvalidOptionError(f"{where}run_at", run_at, "give delay or run_at, not both")
    attempts = get("attempts", 1)
    max_started = get("max_started_attempts")
    timeout = get("timeout")
    lifo = get("lifo", False)
    if not isinstance(lifo, bool):
        raise InvalidOptionError(f"{where}lifo", lifo, "must be True or False")
    idem = get("idempotency_key")
    if idem is not None:
        text(f"{where}idempotency_key", idem)
    group = get("group")
    if group is not None:
        text(f"{where}group", group, "a group must be a non-empty string")
    dep_ids, dep_refs, barrier = depends_on(get("depends_on"), where, in_batch=in_batch)
    return JobSpec(
        name=checked,
        queue=queue,
        data=raw,
        priority=_int(f"{where}priority", get("priority", 0), -MAX_PRIORITY, MAX_PRIORITY),
        delay=None if delay is None else _number(f"{where}delay", delay),
        run_at=None if run_at is None else absolute_time(f"{where}run_at", run_at),
        attempts=_int(f"{where}attempts", attempts, 1),
        backoff=backoff(f"{where}backoff", get("backoff")),
        timeout=None if timeout is None else _number(f"{where}timeout", timeout, positive=True),
        lifo=lifo,
        tags=tags(f"{where}tags", get("tags")),
        idempotency_key=idem,
        remove_on_complete=retention(f"{where}remove_on_complete", get("remove_on_complete")),
        remove_on_fail=retention(f"{where}remove_on_fail", get("remove_on_fail")),
        max_started_attempts=None
        if max_started is None
        else _int(f"{where}max_started_attempts", max_started, 1),
        parent_id=parent_id(get("parent"), where),
        depends_on_job_ids=dep_ids,
        depends_on_batch_refs=dep_refs,
        depends_on_tags=barrier,
        on_child_failure=child_failure_policy(options, where),
        deduplication=deduplication(get("deduplication"), where, bool(delay) or run_at is not None),
        group=group,
    )


#: Option values whose equality is their identity as options: a run of jobs whose options
#: are such values, equal and of the same types, shares one validated spec. (Anything else,
#: a mapping, a `DependsOn`, a `Job`, is validated per job.)
_SHARED_TYPES: Final = frozenset({int, float, str, bool, type(None)})
_NAME_DATA: Final = frozenset({"name", "data"})
#: The spec of a job added with no options, per queue name (bounded: cleared when full).
_PLAIN: dict[str, JobSpec] = {}
_PLAIN_MAX: Final = 1024


def plain_spec(queue: str) -> JobSpec:
    """The options of a job added with none (its name and data travel apart; see
    `CoreState.add`): one shared spec per queue."""
    spec = _PLAIN.get(queue)
    if spec is None:
        if len(_PLAIN) >= _PLAIN_MAX:
            _PLAIN.clear()
        spec = _PLAIN[queue] = JobSpec(name="-", queue=queue, data=_NULL_JSON, **_DEFAULTS)
    return spec


def job_name(name: object, index: int | None = None) -> str:
    """A job's name, checked as `job_spec` checks it (`index`: its place in a bulk add)."""
    if type(name) is str and name and name.isascii():  # the common case: nothing to check
        return name
    return text(f"{_where(index)}name", name, "a job name must be a non-empty string")


def job_data(data: object, index: int | None = None) -> bytes:
    """A job's data encoded, checked as `job_spec` checks it (the field is named only when
    the value is refused)."""
    if data is None:
        return _NULL_JSON
    try:
        raw = orjson.dumps(data)
    except TypeError:
        raw = encode(f"{_where(index)}data", data)  # raises, naming the field
    if _NULL_JSON in raw:  # may hide a NaN: the full check
        raw = encode(f"{_where(index)}data", data)
    return raw


def _where(index: int | None) -> str:
    return "" if index is None else f"jobs[{index}]."


def _shared_key(item: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """What a run of jobs with the same options shares (the options of a bulk add's item,
    its name and data left out), or None when some value is not a plain one (then the
    job's options are validated on their own)."""
    key: list[Any] = []
    for option, value in item.items():
        kind = type(value)
        if kind in _SHARED_TYPES:
            if option not in _NAME_DATA:
                key.append((option, kind, value))
        elif option == "data":
            continue
        elif (kind is list or kind is tuple) and all(type(tag) is str for tag in value):
            key.append((option, kind, tuple(value)))  # equal lists of strings: same tags
        else:
            return None
    return tuple(key)


def bulk_specs(queue: str, jobs: Iterable[object]) -> tuple[list[JobSpec], list[str], list[bytes]]:
    """The validated jobs of an ``add_bulk``: per job its options (a spec shared by every job
    whose options are the same plain values, validated once), its name and its data.

    Each job is checked as `job_spec` checks it, with the same errors naming ``jobs[i]``:
    a run of jobs sharing options differs only in what is validated again for each.
    """
    specs: list[JobSpec] = []
    names: list[str] = []
    datas: list[bytes] = []
    plain = plain_spec(queue)
    shared: dict[tuple[Any, ...], JobSpec] = {}
    for i, given in enumerate(jobs):
        item = given
        if type(item) is not dict:
            if not isinstance(item, Mapping):
                raise InvalidOptionError(f"jobs[{i}]", item, "must be a mapping with a 'name'")
            item = dict(item)
        if "name" not in item:
            raise InvalidOptionError(f"jobs[{i}].name", None, "every job needs a name")
        if len(item) <= 2 and (len(item) == 1 or "data" in item):
            # No options: the plain spec; the name and data are all there is to check.
            names.append(job_name(item["name"], i))
            datas.append(job_data(item.get("data"), i))
            specs.append(plain)
            continue
        key = _shared_key(item)
        spec = None if key is None else shared.get(key)
        if spec is None:
            options = {k: v for k, v in item.items() if k not in _NAME_DATA}
            where = f"jobs[{i}]."
            spec = job_spec(queue, item["name"], item.get("data"), options, where, in_batch=True)
            if key is not None:
                shared[key] = spec
            names.append(spec.name)
            datas.append(spec.data)
        else:
            names.append(job_name(item["name"], i))
            datas.append(job_data(item.get("data"), i))
        specs.append(spec)
    return specs, names, datas


def check_processor(processor: object, run_in_thread: bool) -> Callable[[Any], Any]:
    if not callable(processor):
        raise InvalidOptionError("processor", processor, "must be callable")
    is_async = inspect.iscoroutinefunction(processor) or inspect.iscoroutinefunction(
        getattr(processor, "__call__", None)  # noqa: B004 - an object's async __call__
    )
    if run_in_thread and is_async:
        raise InvalidOptionError(
            "processor", processor, "run_in_thread=True takes a plain (sync) function"
        )
    if not run_in_thread and not is_async:
        raise InvalidOptionError(
            "processor",
            processor,
            "must be an async function; pass run_in_thread=True to run a sync one in a thread",
        )
    return processor


def rate_limiter(value: object, field: str = "limiter") -> tuple[int, float]:
    """(max, duration) from a worker's ``limiter={"max": n, "duration": seconds}`` (or its
    ``group_limiter``: `field`)."""
    if not isinstance(value, Mapping):
        raise InvalidOptionError(field, value, 'must be {"max": n, "duration": seconds}')
    for key in value:
        if key not in ("max", "duration"):
            raise unknown_option(f"{field}.{key}", value[key], ("max", "duration"))
    if "max" not in value or "duration" not in value:
        raise InvalidOptionError(field, dict(value), 'needs both "max" and "duration"')
    return (
        _int(f"{field}.max", value["max"], 1),
        _number(f"{field}.duration", value["duration"], positive=True),
    )


def non_negative(field: str, value: object) -> float:
    return _number(field, value)


def positive(field: str, value: object) -> float:
    return _number(field, value, positive=True)


def count(field: str, value: object, low: int = 1, high: int = MAX_COUNT) -> int:
    return _int(field, value, low, high)


#: Every `JobSpec` field a job added with no options gets, as the full path computes them.
_DEFAULTS: Final[dict[str, Any]] = {
    field: value
    for field, value in attrs.asdict(
        job_spec("q", "n", None, {"priority": 0}), recurse=False
    ).items()
    # trace_context is set by actorq.otel only; left out, the keywords stay few enough that
    # the call's dict of them needs no resize
    if field not in ("name", "queue", "data", "trace_context")
}
