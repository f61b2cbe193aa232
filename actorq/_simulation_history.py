"""What a `Simulation` injects and records: the faults' probabilities (`Faults`), the error
a job's injected failure raises (`InjectedFault`), and the entries of its history."""

from __future__ import annotations

import attrs

from ._core.events import Event
from ._exceptions import ActorqError

__all__ = ["Faults", "HistoryEntry", "InjectedFault", "describe_error", "event_detail"]


class InjectedFault(ActorqError):
    """The failure `Simulation.maybe_fail` raises inside a job (retried like any error)."""


@attrs.frozen(slots=True)
class Faults:
    """Probabilities of the faults a simulation injects through its hooks.

    ``job_error``: `maybe_fail` raises `InjectedFault`. ``slow_job``: `maybe_delay` sleeps
    up to ``max_delay`` virtual seconds.
    """

    job_error: float = 0.1
    slow_job: float = 0.1
    max_delay: float = 30.0


@attrs.frozen(slots=True)
class HistoryEntry:
    """One operation of the history: virtual time, kind, job (if any) and a detail."""

    time: float
    kind: str
    job: int | None = None
    detail: str = ""

    def __str__(self) -> str:
        job = f" job={self.job}" if self.job is not None else ""
        return f"t={self.time:<10g} {self.kind}{job} {self.detail}".rstrip()


def event_detail(event: Event) -> str:
    fields = attrs.asdict(event, recurse=False) if attrs.has(type(event)) else {}
    parts = [f"{k}={v}" for k, v in fields.items() if k not in ("job_id", "queue", "name")]
    return " ".join(parts)


def describe_error(exc: BaseException) -> str:
    leaves = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
    return "; ".join(f"{type(e).__name__}: {e}" for e in leaves)
