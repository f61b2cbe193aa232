"""`Job`: a handle on one job, given by `Queue.add`, `Queue.get_job` and to processors."""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic

from ._codec import decode, encode
from ._core import JobRecord, JobState
from ._core import commands as c
from ._core.handlers import children_view
from ._core.states import TERMINAL
from ._exceptions import (
    DelayedError,
    InvalidOptionError,
    JobCancelledError,
    JobFailedError,
    JobNotFoundError,
    UnrecoverableError,
    WaitingChildrenError,
)
from ._failures import reason as reason_of
from ._options import absolute_time, positive, unicode
from ._typing import DataT, ResultT

if TYPE_CHECKING:
    from ._api import RuntimeAPI
    from ._worker import Worker


class Job(Generic[DataT, ResultT]):
    """A job, read live from the runtime's record (fields show its latest state).

    Generic in its data and its processor's result for type checkers: a processor typed
    ``async def send(job: Job[EmailData, Receipt]) -> Receipt`` reads ``job.data`` as an
    ``EmailData``, and ``wait_until_finished()`` on a ``Job[EmailData, Receipt]`` returns a
    ``Receipt``. Plain ``Job`` is ``Job[Any, Any]``. Nothing is checked at run time: the
    parameters are what the code promises, not a schema.

    Created by the runtime, never by user code. Payloads (`data`, `return_value`,
    `progress`) are decoded from the JSON the runtime keeps, so mutating what you read changes
    nothing in the queue: call `update_data` for that.
    """

    __slots__ = ("_data", "_in_processor", "_moved", "_raw", "_rec", "_rt", "_token", "_worker")

    def __init__(
        self,
        rt: RuntimeAPI,
        rec: JobRecord,
        token: str | None = None,
        worker: Worker | None = None,
        in_processor: bool = False,
    ) -> None:
        # Positional parameters: a manual loop makes one Job per job, and a keyword
        # argument costs a third of the construction.
        self._rt = rt
        self._rec = rec
        self._token = token
        self._worker = worker
        self._in_processor = in_processor
        self._moved = False
        self._raw: bytes | None = None
        self._data: DataT = None  # type: ignore[assignment]  # decoded on first read

    # ------------------------------------------------------------------ fields

    @property
    def id(self) -> int:
        return self._rec.id

    @property
    def name(self) -> str:
        return self._rec.name

    @property
    def queue(self) -> str:
        return self._rec.queue

    @property
    def scheduler_id(self) -> str | None:
        """The job scheduler that produced this job, or None."""
        return self._rec.scheduler_id

    @property
    def deduplication_id(self) -> str | None:
        """The ``deduplication`` id the job was added with (see docs/deduplication.md)."""
        return self._rec.deduplication_id

    @property
    def group(self) -> str | None:
        """The group the job was added to (see docs/groups.md), or None."""
        return self._rec.group

    @property
    def data(self) -> DataT:
        raw = self._rec.data
        if raw is not self._raw:
            self._data = decode(raw)
            self._raw = raw
        return self._data

    @property
    def state(self) -> JobState:
        return self._rec.state

    @property
    def priority(self) -> int:
        return self._rec.priority

    @property
    def tags(self) -> tuple[str, ...]:
        return self._rec.tags

    @property
    def run_at(self) -> float | None:
        return self._rec.run_at

    @property
    def attempts(self) -> int:
        return self._rec.attempts

    @property
    def attempts_started(self) -> int:
        return self._rec.attempts_started

    @property
    def attempts_made(self) -> int:
        return self._rec.attempts_made

    @property
    def stalled_counter(self) -> int:
        return self._rec.stalled_counter

    @property
    def progress(self) -> Any:
        return decode(self._rec.progress)

    @property
    def return_value(self) -> ResultT | None:
        """What the processor returned once the job completed; None before."""
        value: ResultT | None = decode(self._rec.return_value)
        return value

    @property
    def failed_reason(self) -> str | None:
        return self._rec.failed_reason

    @property
    def stacktrace(self) -> list[str]:
        return list(self._rec.stacktrace)

    @property
    def logs(self) -> list[str]:
        return list(self._rec.logs)

    @property
    def created_at(self) -> float:
        return self._rec.created_at

    @property
    def processed_at(self) -> float | None:
        return self._rec.processed_at

    @property
    def finished_at(self) -> float | None:
        return self._rec.finished_at

    @property
    def parent_id(self) -> int | None:
        return self._rec.parent_id

    @property
    def depends_on_job_ids(self) -> tuple[int, ...]:
        return self._rec.depends_on_job_ids

    @property
    def depends_on_tags(self) -> tuple[str, ...]:
        return self._rec.depends_on_tags

    @property
    def idempotency_key(self) -> str | None:
        return self._rec.idempotency_key

    @property
    def timeout(self) -> float | None:
        return self._rec.timeout

    @property
    def lock_token(self) -> str | None:
        return self._rec.lock_token

    @property
    def lock_expires_at(self) -> float | None:
        """When a manual consumer's lock expires; None while unlocked or held by a processor."""
        return self._rec.lock_expires_at

    # ------------------------------------------------------------------ commands

    async def update_data(self, data: DataT) -> None:
        """Replace the job's data (journaled; a retry or the next step sees it)."""
        await self._rt._send(c.UpdateData(self.id, encode("data", data)))

    async def update_progress(self, progress: Any) -> None:
        await self._rt._send(c.UpdateProgress(self.id, encode("progress", progress)))

    async def log(self, line: str) -> int:
        """Append a line to the job's log; returns how many lines it holds."""
        if not isinstance(line, str):
            raise InvalidOptionError("line", line, "a log line must be a string")
        unicode("line", line)
        count: int = await self._rt._send(c.AddLog(self.id, line))
        return count

    async def move_to_delayed(
        self,
        timestamp: float | datetime,
        next_step: Any = None,
        token: str | None = None,
    ) -> None:
        """Step job: delay this active job until `timestamp`, then unwind the processor.

        Sets ``data["step"] = next_step`` in the same transition when `next_step` is given
        (the data must then be a dict). A past timestamp makes the job due at once. Inside a
        processor it then raises `DelayedError`, which the worker catches: the job is neither
        completed nor failed, and `attempts_made` is unchanged. In manual mode pass the
        `token` holding the lock; it returns normally.
        """
        at = absolute_time("timestamp", timestamp)
        raw: bytes | None = None
        if next_step is not None:
            data = self.data
            if not isinstance(data, dict):
                raise InvalidOptionError(
                    "next_step", next_step, f"needs dict data to set 'step' in (data is {data!r})"
                )
            raw = encode("data", {**data, "step": next_step})
        await self._rt._send(c.MoveToDelayed(self.id, token or self._token, at, raw))
        self._moved = True
        if self._in_processor:
            raise DelayedError(delay=max(0.0, at - self._rt.clock.now()))

    # ------------------------------------------------------------------ children

    async def move_to_waiting_children(self, token: str | None = None) -> bool:
        """Wait for this parent's open children (the dynamic-children pattern).

        Inside a processor: while children are open, the job moves to `waiting-children`
        and the processor unwinds with `WaitingChildrenError` (caught by the worker); it runs
        again once the last child finishes. With no open child (zero children included) it
        returns False and the processor carries on. If a child's failure has doomed the
        parent (``fail_parent_on_failure``), the parent fails now and the processor unwinds.
        In manual mode pass the `token`: returns True when the job moved, False when no child
        is open, and raises `JobFailedError` when the parent failed.
        """
        outcome = await self._rt._send(c.MoveToWaitingChildren(self.id, token or self._token))
        if outcome == "done":
            return False
        self._moved = True
        if self._in_processor:
            raise WaitingChildrenError()
        if outcome == "failed":
            raise JobFailedError(self.id, self._rec.failed_reason)
        return True

    async def get_children_values(self) -> dict[int, Any]:
        """Return values of the children that completed, keyed by child id."""
        deps = await self.get_dependencies()
        processed: dict[int, Any] = deps["processed"]
        return processed

    async def get_dependencies(self) -> dict[str, Any]:
        """This job's children and prerequisites, as BullMQ and dataqueue report them.

        ``processed`` {child id: return value}, ``pending`` [child ids] (including children
        that failed under ``fail_parent_on_failure=False`` and may be retried), ``failed``
        {child id: reason}, ``ignored`` {child id: reason}; ``unmet_job_ids`` (prerequisites
        not yet completed) and ``blocking_job_ids`` (unfinished jobs holding its tag barrier).
        """
        deps: dict[str, Any] | None = await self._rt._send(c.GetDependencies(self.id))
        if deps is None:  # removed since (retention): what this handle saw last
            deps = {**children_view(self._rec), "unmet_job_ids": [], "blocking_job_ids": []}
        deps["processed"] = {k: decode(v) for k, v in deps["processed"].items()}
        return deps

    async def get_dependents(self) -> dict[str, Any]:
        """The jobs that depend on this one (the other way from `get_dependencies`).

        ``job_ids``: every job listing this one in ``depends_on=DependsOn(job_ids=...)``,
        whatever its state; ``blocked_job_ids``: those of them still blocked until this job
        completes; ``barriers``: the tag-drain barriers this unfinished job holds (its tags
        are a superset of theirs), each as ``{"tags": [...], "waiting_job_ids": [...]}``
        with the blocked jobs waiting for it to drain. Read from the runtime's relation
        index: the cost is the number of dependents, not of jobs. A job removed since still
        answers with the jobs that listed it.
        """
        dependents: dict[str, Any] = await self._rt._send(c.GetDependents(self.id))
        return dependents

    async def get_dependencies_count(self) -> dict[str, int]:
        """How many children are processed, pending, failed and ignored."""
        deps = await self.get_dependencies()
        return {key: len(deps[key]) for key in ("processed", "pending", "failed", "ignored")}

    # ------------------------------------------------------------------ manual mode

    async def extend_lock(self, token: str, duration: float) -> None:
        """Keep the lock of `token` for `duration` more seconds from now."""
        duration = positive("duration", duration)
        await self._rt._send(c.ExtendLock(self.id, token, duration))

    async def move_to_completed(
        self, value: ResultT, token: str, fetch_next: bool = True
    ) -> Job[DataT, ResultT] | None:
        """Complete this job held under `token`; return the next job locked under the same
        token when `fetch_next` (None if nothing waits)."""
        raw = None if value is None else encode("value", value)
        then = self._then(token, fetch_next)
        rec = await self._rt._send(c.Complete(self._rec.id, token, raw, then))
        return None if rec is None else Job(self._rt, rec, token, self._worker)

    async def move_to_failed(
        self, error: BaseException | str, token: str, fetch_next: bool = True
    ) -> Job[DataT, ResultT] | None:
        """Fail this attempt (retried with backoff while attempts remain, as for processors);
        an `UnrecoverableError` fails the job for good. Returns the next job as
        `move_to_completed` does."""
        if isinstance(error, BaseException):
            reason = reason_of(error)
            unrecoverable = isinstance(error, UnrecoverableError)
        elif isinstance(error, str):
            reason, unrecoverable = unicode("error", error), False
        else:
            raise InvalidOptionError("error", error, "must be an exception or a string")
        then = self._then(token, fetch_next)
        rec = await self._rt._send(c.Fail(self._rec.id, token, reason, None, unrecoverable, then))
        return None if rec is None else Job(self._rt, rec, token, self._worker)

    def _then(self, token: str, fetch_next: bool) -> c.Take | None:
        """The take of the next job under `token`, when a manual finish fetches next."""
        if not isinstance(token, str) or not token:
            raise InvalidOptionError("token", token, "must be a non-empty string")
        if not fetch_next:
            return None
        worker = self._worker
        if worker is None:
            return c.Take(self._rec.queue, 1, token, 30.0, 1)
        # The worker's take for this token, made at its first job (a manual loop asks at
        # every job, and a call per job costs more than the lookup).
        return worker._takes.get(token) or worker._take(token)

    async def wait_until_finished(self, timeout: float | None = None) -> ResultT:
        """Wait for the job to finish and return its return value.

        Raises `JobFailedError` or `JobCancelledError` if it ended so, `JobNotFoundError`
        if it was removed before it finished, and `TimeoutError` after `timeout` seconds (on
        the runtime's clock).
        """
        rt = self._rt
        if timeout is not None and (
            not isinstance(timeout, int | float) or math.isnan(timeout) or timeout < 0
        ):
            raise InvalidOptionError("timeout", timeout, "must be a number of seconds >= 0")
        if timeout is None:
            rec = await rt._send(c.WaitFinished(self.id))
        else:
            done, rec = await rt._send_within(c.WaitFinished(self.id), timeout)
            if not done:
                raise TimeoutError(f"job {self.id} did not finish within {timeout} s")
        if rec is None and self._rec.state in TERMINAL:
            rec = self._rec  # finished, then removed (retention): this handle saw the end
        if rec is None or rec.state not in TERMINAL:
            raise JobNotFoundError(self.id, "it was removed before it finished")
        self._rec = rec
        if rec.state is JobState.FAILED:
            raise JobFailedError(rec.id, rec.failed_reason)
        if rec.state is JobState.CANCELLED:
            raise JobCancelledError(rec.id, rec.failed_reason)
        value: ResultT = decode(rec.return_value)
        return value

    async def promote(self) -> None:
        """Run this delayed job now (`Queue.promote`)."""
        await self._rt.queue(self.queue).promote(self.id)

    async def change_delay(self, delay: float) -> None:
        """This delayed job comes due `delay` seconds from now (`Queue.change_delay`)."""
        await self._rt.queue(self.queue).change_delay(self.id, delay)

    async def change_priority(self, priority: int, *, lifo: bool = False) -> None:
        """Give this job another priority (`Queue.change_priority`)."""
        await self._rt.queue(self.queue).change_priority(self.id, priority, lifo=lifo)

    async def cancel(self, reason: str | None = None) -> None:
        await self._rt.queue(self.queue).cancel(self.id, reason=reason)

    async def retry(self, *, reset_attempts: bool = False) -> None:
        await self._rt.queue(self.queue).retry(self.id, reset_attempts=reset_attempts)

    async def remove(self) -> None:
        await self._rt.queue(self.queue).remove(self.id)

    def _repr_html_(self) -> str:
        from ._display import job_html  # noqa: PLC0415 - display code loads on first use

        return job_html(self)

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.name!r} on {self.queue!r}: {self.state.value}>"
