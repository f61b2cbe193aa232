"""Static types of the public API: the job options as a `TypedDict`, state names as a
`Literal`, and the type variables `Job`, `Queue` and processors are generic in.

Nothing here runs anything: `Queue.add` still validates every option at run time (this only
lets mypy or pyright flag ``q.add("x", priorty=5)`` before it runs). `JOB_OPTIONS` in
`_options` and `JobOptions` list the same names; a test keeps them equal.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Required, TypeAlias, TypedDict

if TYPE_CHECKING:
    # PEP 696 defaults (`Job` alone means `Job[Any, Any]`); typing's own TypeVar takes a
    # default only from Python 3.13, so the run-time variables below have none.
    from typing_extensions import TypeVar

    from ._core.records import Backoff, Retention
    from ._job import Job
    from ._relations import DependsOn

    DataT = TypeVar("DataT", default=Any)
    ResultT = TypeVar("ResultT", default=Any)
else:
    from typing import TypeVar

    DataT = TypeVar("DataT")
    ResultT = TypeVar("ResultT")

#: A job state's name, as `Queue.get_jobs` and `Queue.clean` take it (or a `JobState`).
StateName: TypeAlias = Literal[
    "waiting",
    "delayed",
    "active",
    "waiting-children",
    "blocked",
    "completed",
    "failed",
    "cancelled",
]

#: A set of tags: any collection of strings but a string itself (``tags="a"`` is refused).
Tags: TypeAlias = "list[str] | tuple[str, ...] | set[str] | frozenset[str]"


class RetentionOptions(TypedDict, total=False):
    """``remove_on_complete={"count": n, "age": seconds}``: keep at most `count` jobs, none
    older than `age` seconds."""

    count: int
    age: float


#: What ``remove_on_complete`` / ``remove_on_fail`` take: True (remove at once), False or
#: None (keep all), a count to keep, a `RetentionOptions` mapping or a `Retention`.
RetentionLike: TypeAlias = "bool | int | RetentionOptions | Retention | None"


class DeduplicationOptions(TypedDict, total=False):
    """``deduplication={"id": key, "ttl": seconds, "extend": bool, "replace": bool}``: see
    docs/deduplication.md."""

    id: Required[str]
    ttl: float | None
    extend: bool
    replace: bool


class JobOptions(TypedDict, total=False):
    """The options of `Queue.add` (and of each item of `Queue.add_bulk`); see `Queue.add`.

    An option typed ``X | None`` takes None as "the default"; the others do not.
    """

    priority: int
    delay: float | None
    run_at: float | datetime | None
    attempts: int
    backoff: Backoff | float | None
    timeout: float | None
    lifo: bool
    tags: Tags | None
    idempotency_key: str | None
    remove_on_complete: RetentionLike
    remove_on_fail: RetentionLike
    max_started_attempts: int | None
    parent: Job[Any, Any] | int | None
    depends_on: DependsOn | None
    fail_parent_on_failure: bool | None
    ignore_dependency_on_failure: bool | None
    remove_dependency_on_failure: bool | None
    continue_parent_on_failure: bool | None
    deduplication: DeduplicationOptions | None
    group: str | None


class BulkJob(JobOptions, total=False):
    """One item of `Queue.add_bulk`: a ``name``, optional ``data``, and any job option."""

    name: Required[str]
    data: Any


#: A processor: an async function of a `Job` whose return value becomes the job's.
Processor: TypeAlias = "Callable[[Job[DataT, ResultT]], Awaitable[ResultT]]"
#: A processor run with ``run_in_thread=True``: a plain function of a `Job`.
SyncProcessor: TypeAlias = "Callable[[Job[DataT, ResultT]], ResultT]"

__all__ = [
    "BulkJob",
    "DataT",
    "DeduplicationOptions",
    "JobOptions",
    "Processor",
    "ResultT",
    "RetentionLike",
    "RetentionOptions",
    "StateName",
    "SyncProcessor",
    "Tags",
]
