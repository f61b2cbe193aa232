"""What travels over the engine's mailbox besides the workers' `Report` commands."""

from __future__ import annotations

from typing import Any, Final, Protocol


class Waker(Protocol):
    """What a request's reply wakes: its caller's `anyio.Event`, or whatever else waits."""

    def set(self) -> None: ...


class Request:
    """A caller's command and, once the engine has made its effect durable, the reply.

    A command whose answer must wait (a fetch that waits for a job, a wait for a job to
    finish) is kept by the engine, which replies later.
    """

    __slots__ = ("abandoned", "command", "done", "error", "replied", "result", "sent")

    def __init__(self, command: Any) -> None:
        self.command = command
        # Made only by a caller that must wait: an inline request is answered before that.
        self.done: Waker | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.replied = False
        #: Nobody waits for the reply any more (the caller gave up, or never meant to).
        self.abandoned = False
        #: Handed to the engine (`Engine.call` hands back the call that yields unsent).
        self.sent = False


class Tick:
    """The timer's message: a deadline the engine asked to be woken at has come."""

    __slots__ = ()


class Crash:
    """A batch run inline hit a bug: the scheduler's task dies of `exc` on receiving it."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


TICK: Final = Tick()
#: What an engine command returns to keep its request pending.
DEFER: Final[Any] = object()
