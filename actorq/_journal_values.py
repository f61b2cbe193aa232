"""Decoding of the option values a journal stores as JSON (a backoff, a retention, a float
that JSON could not spell), shared by the job records' codec and the schedulers'."""

from __future__ import annotations

from typing import Any

from ._core.records import Backoff, Retention


def _float_in(value: Any) -> Any:
    return float(value) if type(value) is str else value


def _backoff(value: Any) -> Backoff | None:
    if value is None:
        return None
    return Backoff(
        value["kind"],
        _float_in(value["delay"]),
        _float_in(value.get("jitter", 0.0)),
        _float_in(value.get("max_delay")),
    )


def _retention(value: Any) -> Retention:
    return Retention(count=value.get("count"), age=_float_in(value.get("age")))
