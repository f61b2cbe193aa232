"""Typed lifecycle events, produced by the core's transitions and fanned out to subscribers.

Values users set (return values, progress) travel as the JSON bytes the core holds and are
decoded when read, so producing an event never copies a payload. The core imports no orjson;
the stdlib decoder reads orjson's output to equal values.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from .states import JobState


def _decode(raw: bytes | None) -> Any:
    return None if raw is None else json.loads(raw)


@attrs.frozen(slots=True)
class Event:
    """Base of every event."""


@attrs.frozen(slots=True)
class JobEvent(Event):
    job_id: int
    queue: str
    name: str


@attrs.frozen(slots=True)
class JobAdded(JobEvent):
    state: JobState


@attrs.frozen(slots=True)
class JobWaiting(JobEvent):
    previous: JobState


@attrs.frozen(slots=True)
class JobActive(JobEvent):
    attempts_started: int


@attrs.frozen(slots=True)
class JobCompleted(JobEvent):
    raw_return_value: bytes | None = attrs.field(repr=False)

    @property
    def return_value(self) -> Any:
        return _decode(self.raw_return_value)


@attrs.frozen(slots=True)
class JobFailed(JobEvent):
    """The job ended in `failed`: attempts exhausted, unrecoverable, or a policy said so."""

    reason: str | None


@attrs.frozen(slots=True)
class JobRetrying(JobEvent):
    """An attempt failed and the job will run again (at `run_at`, or now if None)."""

    reason: str | None
    attempts_made: int
    run_at: float | None


@attrs.frozen(slots=True)
class JobDelayed(JobEvent):
    run_at: float


@attrs.frozen(slots=True)
class JobProgress(JobEvent):
    raw_progress: bytes | None = attrs.field(repr=False)

    @property
    def progress(self) -> Any:
        return _decode(self.raw_progress)


@attrs.frozen(slots=True)
class JobWaitingChildren(JobEvent):
    """The parent waits for its open children."""


@attrs.frozen(slots=True)
class JobStalled(JobEvent):
    stalled_counter: int


@attrs.frozen(slots=True)
class JobCancelled(JobEvent):
    reason: str | None


@attrs.frozen(slots=True)
class JobRemoved(JobEvent):
    previous: JobState


@attrs.frozen(slots=True)
class JobDeduplicated(JobEvent):
    """An add with ``deduplication`` met a live key: `job_id` is the job the key names
    (`name` its name). `deduplicated_job_id` is the delayed job a replace removed (None:
    the add was ignored and made no job)."""

    deduplication_id: str
    deduplicated_job_id: int | None


@attrs.frozen(slots=True)
class QueueEvent(Event):
    queue: str


@attrs.frozen(slots=True)
class QueuePaused(QueueEvent):
    pass


@attrs.frozen(slots=True)
class QueueResumed(QueueEvent):
    pass


@attrs.frozen(slots=True)
class QueueDrained(QueueEvent):
    """No job is left waiting in the queue (BullMQ's `drained`)."""
