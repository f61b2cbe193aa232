"""Job schedulers at the handle: validating a schedule, and the cron calculator.

Cron patterns are parsed and evaluated by `cronsim` (the optional extra ``actorq[cron]``),
time zones by the standard library's `zoneinfo`. The core never sees either: it asks
`cron_next` (registered into it here) for the first run time after an instant, a pure
function of (pattern, time zone, instant), and journals the answer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from ._core.records import JobSpec
from ._core.schedulers import SchedulerRecord, set_cron
from ._exceptions import InvalidOptionError
from ._options import count, job_spec

#: Options of `add` that make no sense in a template: the scheduler sets the run time, and
#: a job it produces is no one's child and waits on nothing.
_NOT_IN_TEMPLATE = frozenset(
    {
        "delay",
        "run_at",
        "parent",
        "depends_on",
        "idempotency_key",
        "scheduler_id",
        "deduplication",
    }
    | {
        "fail_parent_on_failure",
        "ignore_dependency_on_failure",
        "remove_dependency_on_failure",
        "continue_parent_on_failure",
    }
)

_INSTALL = "cron patterns need the cron extra: pip install 'actorq[cron]'"


def _cronsim() -> Any:
    try:
        import cronsim  # noqa: PLC0415 - optional extra, loaded on first use
    except ImportError:
        return None
    return cronsim


@lru_cache(maxsize=256)
def _zone(tz: str | None) -> Any:
    if tz is None:
        return UTC
    from zoneinfo import ZoneInfo  # noqa: PLC0415

    return ZoneInfo(tz)


def cron_next(pattern: str, tz: str | None, after: float) -> float | None:
    """The first time strictly after `after` (seconds since the epoch) that `pattern`
    matches on the wall clock of `tz` (UTC when None); None if it never does again."""
    cronsim = _cronsim()
    if cronsim is None:  # pragma: no cover
        raise InvalidOptionError("pattern", pattern, _INSTALL)
    start = datetime.fromtimestamp(after, _zone(tz))
    try:
        nxt = next(cronsim.CronSim(pattern, start))
    except StopIteration:
        return None
    return float(nxt.timestamp())


set_cron(cron_next)


def _time(field: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidOptionError(field, value, "must be an aware datetime (with a tzinfo)")
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidOptionError(
            field, value, "must be seconds on the runtime's clock or a datetime"
        )
    return float(value)


def _check_tz(tz: Any) -> str | None:
    if tz is None:
        return None
    if not isinstance(tz, str) or not tz:
        raise InvalidOptionError("tz", tz, "must be an IANA time zone name such as 'Europe/Berlin'")
    try:
        _zone(tz)
    except (ValueError, OSError, LookupError):
        raise InvalidOptionError("tz", tz, "is not a known time zone") from None
    return tz


def _check_pattern(pattern: Any, tz: str | None) -> str:
    if not isinstance(pattern, str):
        raise InvalidOptionError("pattern", pattern, "must be a cron string")
    cronsim = _cronsim()
    if cronsim is None:
        raise InvalidOptionError("pattern", pattern, _INSTALL)
    try:
        cronsim.CronSim(pattern, datetime(2000, 1, 1, tzinfo=_zone(tz)))
    except cronsim.CronSimError as exc:
        raise InvalidOptionError(
            "pattern", pattern, f"is not a valid cron pattern: {exc}"
        ) from None
    return pattern


def _template(queue: str, scheduler_id: str, template: Any) -> JobSpec:
    if template is None:
        template = {}
    if not isinstance(template, Mapping):
        raise InvalidOptionError("template", template, "must be a mapping with a 'name'")
    options = dict(template)
    name = options.pop("name", scheduler_id)
    data = options.pop("data", None)
    for key in sorted(options):
        if key in _NOT_IN_TEMPLATE:
            raise InvalidOptionError(
                f"template.{key}", options[key], "is set by the scheduler, not in a template"
            )
    return job_spec(queue, name, data, options, "template.")


def scheduler_record(
    queue: str,
    scheduler_id: Any,
    *,
    every: Any,
    pattern: Any,
    tz: Any,
    start_at: Any,
    end_at: Any,
    limit: Any,
    immediately: Any,
    template: Any,
) -> SchedulerRecord:
    """A validated scheduler (iterations 0, no job yet), or `InvalidOptionError`."""
    if not isinstance(scheduler_id, str) or not scheduler_id:
        raise InvalidOptionError("scheduler_id", scheduler_id, "must be a non-empty string")
    if (every is None) == (pattern is None):
        raise InvalidOptionError(
            "every" if every is not None else "pattern",
            every if every is not None else pattern,
            "give exactly one of every= (seconds) and pattern= (cron)",
        )
    tz = _check_tz(tz)
    if every is not None:
        if (
            isinstance(every, bool)
            or not isinstance(every, int | float)
            or not math.isfinite(every)
            or every <= 0
        ):
            raise InvalidOptionError("every", every, "must be a number of seconds > 0")
        if tz is not None:
            raise InvalidOptionError("tz", tz, "applies to pattern= only, not every=")
        every = float(every)
    else:
        pattern = _check_pattern(pattern, tz)
    start = _time("start_at", start_at)
    end = _time("end_at", end_at)
    if start is not None and end is not None and end < start:
        raise InvalidOptionError("end_at", end_at, "must not be before start_at")
    if limit is not None:
        limit = count("limit", limit, 1)
    if not isinstance(immediately, bool):
        raise InvalidOptionError("immediately", immediately, "must be True or False")
    spec = _template(queue, scheduler_id, template)
    return SchedulerRecord(
        id=scheduler_id,
        queue=queue,
        template=spec,
        every=every,
        pattern=pattern,
        tz=tz,
        start_at=start,
        end_at=end,
        limit=limit,
    )


__all__ = ["cron_next", "scheduler_record"]
