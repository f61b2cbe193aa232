"""What travels over the actors' mailboxes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import anyio

#: Outcome kinds a worker reports for each job it was given.
OK: Final = 0  # (OK, job_id, return_value_bytes)
FAIL: Final = 1  # (FAIL, job_id, reason, stacktrace, unrecoverable)
DELAY: Final = 2  # (DELAY, job_id, delay_or_None): job code raised DelayedError itself
RELEASED: Final = 3  # (RELEASED, job_id): the job already left active through a command

Outcome = tuple[Any, ...]


class Request:
    """A caller's command and, once the scheduler has journaled its effect, the reply.

    `fn` is a scheduler method taking ``(now, *args)``; returning `DEFER` keeps the request
    pending (a waiter) until the scheduler replies later.
    """

    __slots__ = ("abandoned", "args", "done", "error", "fn", "replied", "result")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        # Made only by a caller that must wait: an inline request is answered before that.
        self.done: anyio.Event | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.replied = False
        self.abandoned = False


class Outcomes:
    """A worker's batch of job outcomes; one message however many jobs ended."""

    __slots__ = ("items", "worker")

    def __init__(self, worker: Any, items: list[Outcome]) -> None:
        self.worker = worker
        self.items = items


class Tick:
    """The timer's message: a deadline the scheduler asked to be woken at has come."""

    __slots__ = ()


class Crash:
    """A request run inline hit a bug: the scheduler's task dies of `exc` on receiving it."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


TICK: Final = Tick()
DEFER: Final = object()
