"""Every error actorq raises, and the control signals job code raises.

Errors the library raises at its callers live under `ActorqError`; where a builtin fits they
also subclass it, so ``except KeyError`` keeps working for a missing job. Control signals are
raised *by job code* to steer its own job; they are not errors and do not subclass
`ActorqError`, so a broad ``except ActorqError`` in user code never swallows one.
"""

from __future__ import annotations

__all__ = [
    "ActorqError",
    "ConnectionLostError",
    "DelayedError",
    "IllegalTransitionError",
    "InvalidDependencyError",
    "InvalidOptionError",
    "JobCancelledError",
    "JobFailedError",
    "JobNotFoundError",
    "LockError",
    "RateLimitError",
    "RuntimeClosedError",
    "UnrecoverableError",
    "WaitingChildrenError",
]


class ActorqError(Exception):
    """Base class of every error actorq raises at its callers."""


class InvalidOptionError(ActorqError, ValueError):
    """A call got an argument it cannot accept; nothing was changed.

    `field` names the argument (``"priority"``, ``"jobs[3].delay"``) and `value` is what was
    passed, so a caller can report it without parsing the message.
    """

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"invalid {field}={value!r}: {reason}")


class JobNotFoundError(ActorqError, KeyError):
    """No job has that id (it never existed, or it was removed)."""

    def __init__(self, job_id: object, detail: str = "") -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id!r} not found{': ' + detail if detail else ''}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class IllegalTransitionError(ActorqError):
    """A command cannot apply to a job in its current state; nothing was changed."""

    def __init__(self, job_id: int, state: str, command: str, detail: str = "") -> None:
        self.job_id = job_id
        self.state = state
        self.command = command
        extra = f" ({detail})" if detail else ""
        super().__init__(f"cannot {command} job {job_id}: it is {state}{extra}")


class LockError(ActorqError):
    """A token does not hold the job's lock: wrong token, expired lock, or job not active."""

    def __init__(self, job_id: int, reason: str) -> None:
        self.job_id = job_id
        self.reason = reason
        super().__init__(f"lock error on job {job_id}: {reason}")


class InvalidDependencyError(ActorqError, ValueError):
    """`depends_on` or `parent` names something that cannot be a prerequisite."""


class RuntimeClosedError(ActorqError, RuntimeError):
    """The runtime is not running (not started yet, shutting down, or stopped)."""


class ConnectionLostError(ActorqError):
    """The connection to a runtime host broke while a call was in flight.

    `may_have_applied` says whether the host may have done the call before the break (it
    was sent): retry it only if doing it twice is harmless, or with an idempotency key,
    which makes a second `add` return the first job.
    """

    def __init__(self, message: str, *, may_have_applied: bool) -> None:
        self.may_have_applied = may_have_applied
        super().__init__(message)


class JobFailedError(ActorqError):
    """Raised by `Job.wait_until_finished` when the job ended in `failed`."""

    def __init__(self, job_id: int, reason: str | None) -> None:
        self.job_id = job_id
        self.reason = reason
        super().__init__(f"job {job_id} failed: {reason}")


class JobCancelledError(ActorqError):
    """Raised by `Job.wait_until_finished` when the job ended in `cancelled`."""

    def __init__(self, job_id: int, reason: str | None) -> None:
        self.job_id = job_id
        self.reason = reason
        super().__init__(f"job {job_id} was cancelled: {reason}")


class DelayedError(Exception):
    """Control signal: the job moves to delayed (or back to waiting); not a failure.

    Raised by `Job.move_to_delayed` after the move, or by job code itself, BullMQ style:
    ``raise DelayedError()`` puts the active job back to waiting, ``DelayedError(delay=60)``
    delays it by 60 s. `attempts_made` is unchanged either way.
    """

    def __init__(self, delay: float | None = None) -> None:
        self.delay = delay
        super().__init__("job moved to delayed" if delay else "job moved back to waiting")


class RateLimitError(DelayedError):
    """Control signal: the job goes back to waiting, no attempt counted, after a
    `Worker.rate_limit` (BullMQ's ``Worker.RateLimitError()``)."""

    def __init__(self) -> None:
        super().__init__(None)


class WaitingChildrenError(Exception):
    """Control signal: the job waits for its pending children; not a failure."""


class UnrecoverableError(Exception):
    """Raised by job code: fail the job now, with no retry left, whatever `attempts` says."""
