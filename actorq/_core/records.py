"""The job record and the validated values the core's transitions take.

User payloads (`data`, `return_value`, `progress`) are kept as the JSON bytes encoded once at
the call, never as live Python objects: the core cannot be mutated behind its back by a
caller holding a reference, and the state after a restart equals the state before it.
"""

from __future__ import annotations

import operator
from typing import Any, Final

import attrs

from .._exceptions import InvalidOptionError
from .states import JobState

#: The longest wait a backoff gives, in seconds (about 31.7 million years): the cap of an
#: exponential backoff without `max_delay`, and the most a delay given to one may be.
MAX_WAIT: Final = 1e15


@attrs.frozen(slots=True)
class Backoff:
    """How long to wait before a retry: fixed or exponential, with jitter and a cap.

    ``exponential`` waits ``delay * 2 ** (attempts_made - 1)`` as BullMQ does. ``jitter`` in
    [0, 1] takes a random share off the wait (``jitter=0.5`` gives a wait between half and all
    of it), drawn from the runtime's own seeded generator so a replay is exact. ``max_delay``
    caps the wait before jitter.
    """

    kind: str = attrs.field(validator=attrs.validators.in_(("fixed", "exponential")))
    delay: float = attrs.field(converter=float)
    jitter: float = attrs.field(default=0.0, converter=float)
    max_delay: float | None = None

    def __attrs_post_init__(self) -> None:
        # Finite: a retry's due time is journaled, and an infinite one cannot be.
        if not 0 <= self.delay <= MAX_WAIT:
            raise InvalidOptionError(
                "backoff.delay",
                self.delay,
                f"must be a finite number of seconds in [0, {MAX_WAIT:g}]",
            )
        if not 0.0 <= self.jitter <= 1.0:
            raise InvalidOptionError("backoff.jitter", self.jitter, "must be within [0, 1]")
        if self.max_delay is not None and not self.max_delay >= 0:
            # inf is allowed (no cap, as None): every wait is capped at MAX_WAIT anyway.
            raise InvalidOptionError("backoff.max_delay", self.max_delay, "must be >= 0 seconds")

    @classmethod
    def fixed(cls, delay: float, *, jitter: float = 0.0, max_delay: float | None = None) -> Backoff:
        return cls("fixed", delay, jitter, max_delay)

    @classmethod
    def exponential(
        cls, delay: float, *, jitter: float = 0.0, max_delay: float | None = None
    ) -> Backoff:
        return cls("exponential", delay, jitter, max_delay)

    def wait(self, attempts_made: int, unit: float) -> float:
        """Seconds to wait after the `attempts_made`-th attempt failed; `unit` in [0, 1)."""
        if self.kind == "fixed":
            wait = self.delay
        else:
            # Past 2**64 the wait is beyond MAX_WAIT anyway; the exponent is bounded so a
            # job retried without end never overflows a float.
            wait = self.delay * 2.0 ** min(attempts_made - 1, 64)
        if self.max_delay is not None:
            wait = min(wait, self.max_delay)
        wait = min(wait, MAX_WAIT)
        return wait * (1.0 - self.jitter * unit)


@attrs.frozen(slots=True)
class Retention:
    """How many finished jobs of a queue to keep, and for how long (BullMQ's `KeepJobs`).

    Applied the moment a job finishes (and, for `age`, by a timer): never lazily.
    """

    count: int | None = None
    age: float | None = None

    @property
    def keeps_all(self) -> bool:
        return self.count is None and self.age is None


KEEP_ALL: Final = Retention()
REMOVE_AT_ONCE: Final = Retention(count=0)

#: What a child's final failure does to its parent (BullMQ's mutually exclusive options).
CHILD_FAILURE_POLICIES: Final = ("fail", "ignore", "remove", "continue", "wait")


@attrs.frozen(slots=True)
class Deduplication:
    """A job's ``deduplication`` option (BullMQ 5), validated: see `actorq._core.dedup`.

    No `ttl`: duplicates are ignored until the job finishes. A `ttl`: for `ttl` seconds from
    the first add (`extend`: from the last duplicate). `replace`: a duplicate takes the place
    of a job still delayed (debounce).
    """

    id: str
    ttl: float | None = None
    extend: bool = False
    replace: bool = False


@attrs.frozen(slots=True)
class JobSpec:
    """A validated request to add one job; everything the core needs, nothing to re-check."""

    name: str
    queue: str
    data: bytes
    priority: int = 0
    delay: float | None = None
    run_at: float | None = None
    attempts: int = 1
    backoff: Backoff | None = None
    timeout: float | None = None
    lifo: bool = False
    tags: tuple[str, ...] = ()
    idempotency_key: str | None = None
    remove_on_complete: Retention = KEEP_ALL
    remove_on_fail: Retention = KEEP_ALL
    parent_id: int | None = None
    depends_on_job_ids: tuple[int, ...] = ()
    depends_on_batch_refs: tuple[int, ...] = ()
    depends_on_tags: tuple[str, ...] = ()
    max_started_attempts: int | None = None
    on_child_failure: str = "fail"
    #: Index, in the same batch, of this job's parent (a flow); resolved to `parent_id`.
    parent_ref: int | None = None
    #: Start in `waiting-children` (a flow node whose children come in the same batch).
    wait_children: bool = False
    #: The W3C ``traceparent`` of the span that added the job (OpenTelemetry, when enabled).
    trace_context: str | None = None
    #: The job scheduler that produced this job (see `schedulers`).
    scheduler_id: str | None = None
    #: The ``deduplication`` option: duplicates of this job are ignored or replace it.
    deduplication: Deduplication | None = None
    #: The group whose turn the job waits for (see `groups`), or None.
    group: str | None = None


#: A child's standing in its parent's bookkeeping. FAILED fails the parent; CONTINUED
#: failed but lets the parent go on; UNRESOLVED failed and keeps the parent waiting.
PENDING, PROCESSED, FAILED, CONTINUED, IGNORED, UNRESOLVED = (
    "pending",
    "processed",
    "failed",
    "continued",
    "ignored",
    "unresolved",
)
#: Statuses that keep a parent in `waiting-children` (an unresolved child failed under
#: ``fail_parent_on_failure=False`` and can still be retried).
OPEN_STATUSES: Final = frozenset({PENDING, UNRESOLVED})


@attrs.define(slots=True, eq=False)
class JobRecord:
    """One job as the core holds it. Mutated only by `CoreState` transitions."""

    id: int
    name: str
    queue: str
    data: bytes
    state: JobState
    priority: int
    tags: tuple[str, ...]
    run_at: float | None
    attempts: int
    created_at: float
    attempts_started: int = 0
    attempts_made: int = 0
    stalled_counter: int = 0
    progress: bytes | None = None
    return_value: bytes | None = None
    failed_reason: str | None = None
    stacktrace: tuple[str, ...] = ()
    logs: tuple[str, ...] = ()
    processed_at: float | None = None
    finished_at: float | None = None
    parent_id: int | None = None
    depends_on_job_ids: tuple[int, ...] = ()
    depends_on_tags: tuple[str, ...] = ()
    idempotency_key: str | None = None
    backoff: Backoff | None = None
    timeout: float | None = None
    lifo: bool = False
    remove_on_complete: Retention = KEEP_ALL
    remove_on_fail: Retention = KEEP_ALL
    max_started_attempts: int | None = None
    on_child_failure: str = "fail"
    #: Place in its queue's waiting line: positive and increasing for FIFO, negative and
    #: decreasing for LIFO, so sorting by it (within a priority) gives the dispatch order.
    order: int = 0
    lock_token: str | None = None
    lock_expires_at: float | None = None
    #: Stalls allowed before the job fails; set by the worker that takes it.
    max_stalled_count: int = 1
    #: A parent's children: child id -> (status, return value bytes or failure reason).
    #: Kept on the parent, so a child removed by retention still leaves its value.
    children: dict[int, tuple[str, Any]] | None = None
    #: The W3C ``traceparent`` of the span that added the job, when OpenTelemetry is enabled:
    #: each attempt's span continues that trace. Journaled like any field (a journal written
    #: before it existed reads as None).
    trace_context: str | None = None
    #: The job scheduler that produced this job (see `schedulers`), or None.
    scheduler_id: str | None = None
    #: The deduplication id the job was added with (BullMQ's ``job.deduplicationId``).
    deduplication_id: str | None = None
    #: The group whose turn the job waits for (see `groups`), or None.
    group: str | None = None

    def fields(self) -> dict[str, Any]:
        """Every field by name: the insert record of the journal, and what tests compare."""
        out = dict(
            zip(FIELD_NAMES, _all_fields(self), strict=True)
        )  # built in C, unlike a dictcomp
        if self.children is not None:
            out["children"] = dict(self.children)
        return out

    def row(self) -> tuple[Any, ...]:
        """Every field in `FIELD_NAMES` order: `fields` without the dict (an ``add`` change
        may hold either; a row costs a fraction to build, and to journal)."""
        row = _all_fields(self)
        if self.children is not None:  # the change must not share the record's dict
            row = (*row[:_CHILDREN_AT], dict(self.children), *row[_CHILDREN_AT + 1 :])
        return row

    @classmethod
    def from_fields(cls, fields: dict[str, Any] | tuple[Any, ...]) -> JobRecord:
        """The record an ``add`` change holds: its fields by name (missing ones take their
        defaults), or a tuple of every field in `FIELD_NAMES` order (a row of a snapshot,
        built positionally: several times faster than by keyword)."""
        rec = cls(*fields) if isinstance(fields, tuple) else cls(**fields)
        if rec.children is not None:  # the record must not share the change's dict
            rec.children = dict(rec.children)
        return rec


FIELD_NAMES: Final[tuple[str, ...]] = tuple(f.name for f in attrs.fields(JobRecord))
_all_fields: Final = operator.attrgetter(*FIELD_NAMES)
_CHILDREN_AT: Final = FIELD_NAMES.index("children")


def tag_matcher(mode: str, tags: frozenset[str]) -> Any:
    """A test of a job's tags against `tags` under `mode` (the queries' ``tag_mode``)."""
    if not tags:
        return lambda _tags: True
    if mode == "all":
        return tags.issubset
    if mode == "any":
        return lambda job_tags: not tags.isdisjoint(job_tags)
    if mode == "none":
        return tags.isdisjoint
    if mode == "exact":
        return lambda job_tags: tags == frozenset(job_tags)
    raise InvalidOptionError("tag_mode", mode, "must be one of all, any, none, exact")
