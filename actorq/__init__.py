"""actorq: an in-process job-queue runtime.

BullMQ's and dataqueue's features — priorities, delays, retries with backoff, step jobs,
lifecycle events — for one async program, with no server, and exact under a virtual clock.
"""

from ._actors.changelog import ChangeLog, MemoryChangeLog, NullChangeLog
from ._api import RuntimeAPI
from ._background import BackgroundRuntime, start_in_background
from ._core import Backoff, JobState, Retention
from ._core.events import (
    Event,
    JobActive,
    JobAdded,
    JobCancelled,
    JobCompleted,
    JobDeduplicated,
    JobDelayed,
    JobEvent,
    JobFailed,
    JobProgress,
    JobRemoved,
    JobRetrying,
    JobStalled,
    JobWaiting,
    JobWaitingChildren,
    QueueDrained,
    QueueEvent,
    QueuePaused,
    QueueResumed,
)
from ._exceptions import (
    ActorqError,
    ConnectionLostError,
    DelayedError,
    IllegalTransitionError,
    InvalidDependencyError,
    InvalidOptionError,
    JobCancelledError,
    JobFailedError,
    JobNotFoundError,
    LockError,
    RateLimitError,
    RuntimeClosedError,
    UnrecoverableError,
    WaitingChildrenError,
)
from ._flow import FlowProducer, JobNode
from ._job import Job
from ._journal import (
    JournalCorruptError,
    JournalError,
    JournalFailedError,
    JournalFolderError,
    JournalFormatError,
    JournalLockedError,
    JournalMissingRecordsError,
)
from ._queue import Queue
from ._relations import BatchRef, DependsOn, FlowJob, batch_ref
from ._remote.client import RemoteRuntime, connect
from ._runtime import EventStream, Lagged, Runtime
from ._tasks import Task
from ._typing import BulkJob, DeduplicationOptions, JobOptions, RetentionOptions, StateName
from ._worker import Worker
from .clock import Clock, SystemClock, VirtualClock

__version__ = "0.1.0"

__all__ = [
    "ActorqError",
    "BackgroundRuntime",
    "Backoff",
    "BatchRef",
    "BulkJob",
    "ChangeLog",
    "Clock",
    "ConnectionLostError",
    "DeduplicationOptions",
    "DelayedError",
    "DependsOn",
    "Event",
    "EventStream",
    "FlowJob",
    "FlowProducer",
    "IllegalTransitionError",
    "InvalidDependencyError",
    "InvalidOptionError",
    "Job",
    "JobActive",
    "JobAdded",
    "JobCancelled",
    "JobCancelledError",
    "JobCompleted",
    "JobDeduplicated",
    "JobDelayed",
    "JobEvent",
    "JobFailed",
    "JobFailedError",
    "JobNode",
    "JobNotFoundError",
    "JobOptions",
    "JobProgress",
    "JobRemoved",
    "JobRetrying",
    "JobStalled",
    "JobState",
    "JobWaiting",
    "JobWaitingChildren",
    "JournalCorruptError",
    "JournalError",
    "JournalFailedError",
    "JournalFolderError",
    "JournalFormatError",
    "JournalLockedError",
    "JournalMissingRecordsError",
    "Lagged",
    "LockError",
    "MemoryChangeLog",
    "NullChangeLog",
    "Queue",
    "QueueDrained",
    "QueueEvent",
    "QueuePaused",
    "QueueResumed",
    "RateLimitError",
    "RemoteRuntime",
    "Retention",
    "RetentionOptions",
    "Runtime",
    "RuntimeAPI",
    "RuntimeClosedError",
    "StateName",
    "SystemClock",
    "Task",
    "UnrecoverableError",
    "VirtualClock",
    "WaitingChildrenError",
    "Worker",
    "batch_ref",
    "connect",
    "start_in_background",
]
