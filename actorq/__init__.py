"""actorq: an in-process job-queue runtime.

BullMQ's and dataqueue's features — priorities, delays, retries with backoff, step jobs,
lifecycle events — for one async program, with no server, and exact under a virtual clock.
"""

from ._actors.changelog import ChangeLog, MemoryChangeLog, NullChangeLog
from ._core import Backoff, JobState, Retention
from ._core.events import (
    Event,
    JobActive,
    JobAdded,
    JobCancelled,
    JobCompleted,
    JobDelayed,
    JobEvent,
    JobFailed,
    JobProgress,
    JobRemoved,
    JobRetrying,
    JobStalled,
    JobWaiting,
    QueueDrained,
    QueueEvent,
    QueuePaused,
    QueueResumed,
)
from ._exceptions import (
    ActorqError,
    DelayedError,
    IllegalTransitionError,
    InvalidDependencyError,
    InvalidOptionError,
    JobCancelledError,
    JobFailedError,
    JobNotFoundError,
    LockError,
    RuntimeClosedError,
    UnrecoverableError,
    WaitingChildrenError,
)
from ._job import Job
from ._queue import Queue
from ._runtime import EventStream, Runtime
from ._worker import Worker
from .clock import Clock, SystemClock, VirtualClock

__version__ = "0.1.0"

__all__ = [
    "ActorqError",
    "Backoff",
    "ChangeLog",
    "Clock",
    "DelayedError",
    "Event",
    "EventStream",
    "IllegalTransitionError",
    "InvalidDependencyError",
    "InvalidOptionError",
    "Job",
    "JobActive",
    "JobAdded",
    "JobCancelled",
    "JobCancelledError",
    "JobCompleted",
    "JobDelayed",
    "JobEvent",
    "JobFailed",
    "JobFailedError",
    "JobNotFoundError",
    "JobProgress",
    "JobRemoved",
    "JobRetrying",
    "JobStalled",
    "JobState",
    "JobWaiting",
    "LockError",
    "MemoryChangeLog",
    "NullChangeLog",
    "Queue",
    "QueueDrained",
    "QueueEvent",
    "QueuePaused",
    "QueueResumed",
    "Retention",
    "Runtime",
    "RuntimeClosedError",
    "SystemClock",
    "UnrecoverableError",
    "VirtualClock",
    "WaitingChildrenError",
    "Worker",
]
