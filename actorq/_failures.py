"""How an exception becomes a failed attempt's reason and stack trace: text that can always
be stored, whatever the exception does; and how failures and stalls are logged.

Logging (the ``actorq`` logger, a `logging.NullHandler` until the program configures
logging): a processor's failed attempt that will be retried is a WARNING on
``actorq.worker``, one that fails the job for good an ERROR, both with the exception; a stall
(a job whose lock expired, or that was active when the runtime stopped) a WARNING on
``actorq.stall``, an ERROR when it fails the job. Each record carries ``job_id``, ``queue``,
``job_name`` and ``attempt`` as attributes. Nothing is logged for a job that completes.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._core.states import JobState

if TYPE_CHECKING:
    from ._core.records import JobRecord

_ADDRESS = re.compile(r"\b(?:0x)?[0-9a-f]{9,16}\b")
worker_log = logging.getLogger("actorq.worker")
stall_log = logging.getLogger("actorq.stall")


def storable(text: str) -> str:
    """`text` with lone surrogates escaped (``\\udce9``): an exception's message may hold
    them (`os.fsdecode` of undecodable bytes), and the journal stores only valid Unicode."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def reason(exc: BaseException) -> str:
    """``"TypeName: message"``, or the type's name alone; never raises (a `__str__` that
    does gives the type's name and says so)."""
    name = type(exc).__name__
    try:
        text = str(exc)
    except Exception as broken:
        return f"{name} (its message could not be read: {type(broken).__name__})"
    return storable(f"{name}: {text}" if text else name)


def trace(exc: BaseException) -> str:
    """The formatted traceback, or a note that formatting it failed."""
    try:
        text = "".join(traceback.format_exception(exc))
    except Exception as broken:
        return f"(the traceback could not be formatted: {type(broken).__name__})"
    # Memory addresses (a cancel scope's repr in a chained cancellation) would make the
    # journal differ between two runs of the same simulation seed.
    return storable(_ADDRESS.sub("0x…", text))


def log_failed_attempt(
    rec: JobRecord, why: str, exc: BaseException | None, *, unrecoverable: bool = False
) -> None:
    """Log a processor's failed attempt on `rec` (still active: the failure is not applied
    yet), at ERROR if it fails the job for good, by the rule the core applies."""
    attempt = rec.attempts_made + 1
    final = unrecoverable or attempt >= rec.attempts
    extra = _extra(rec, attempt)
    level, outcome = (
        (logging.ERROR, "failed on attempt %d of %d, for good")
        if final
        else (logging.WARNING, "failed attempt %d of %d, will retry")
    )
    worker_log.log(
        level,
        "job %d (queue %r, name %r) " + outcome + ": %s",
        rec.id,
        rec.queue,
        rec.name,
        attempt,
        rec.attempts,
        why,
        exc_info=exc,
        extra=extra,
    )


def log_stalls(stalls: list[tuple[JobRecord, str | None, str]]) -> None:
    """Log the stalls a batch made (`CoreState.stalls`, emptied): each record has already
    moved, to waiting or, past its `max_stalled_count`, to failed."""
    batch: Iterable[tuple[JobRecord, str | None, str]] = list(stalls)
    stalls.clear()
    for rec, token, why in batch:
        failed = rec.state is JobState.FAILED
        level = logging.ERROR if failed else logging.WARNING
        outcome = f"failed: {rec.failed_reason}" if failed else "back to waiting"
        stall_log.log(
            level,
            "job %d (queue %r, name %r) stalled, %s (lock %s; stall %d, %d allowed): %s",
            rec.id,
            rec.queue,
            rec.name,
            why,
            token,
            rec.stalled_counter,
            rec.max_stalled_count,
            outcome,
            extra=_extra(rec, rec.attempts_started),
        )


def _extra(rec: JobRecord, attempt: int) -> dict[str, Any]:
    return {"job_id": rec.id, "queue": rec.queue, "job_name": rec.name, "attempt": attempt}
