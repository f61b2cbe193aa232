"""What a batch hands the world once it is durable (`Outbox`), and the engine's view of a
processor worker it hands jobs to (`WorkerSlot`, whose jobs go to its `Inbox`)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .._core import JobRecord
    from .._core.events import Event
    from .._exceptions import ActorqError
    from .messages import Request


class Inbox(Protocol):
    """Where the jobs dispatched to a worker go: its actor's memory stream, or a runtime
    host's connection to the worker's process."""

    def send_nowait(self, jobs: list[JobRecord], /) -> None: ...


class WorkerSlot:
    """What the engine knows of one processor worker: its queue and free credits."""

    __slots__ = (
        "abort",
        "closing",
        "concurrency",
        "elsewhere",
        "free",
        "inbox",
        "lock_duration",
        "max_stalled_count",
        "queue",
        "sink",
        "take",
        "token",
    )

    def __init__(
        self,
        token: str,
        queue: str,
        concurrency: int,
        inbox: Inbox,
        abort: Callable[[int], None],
        max_stalled_count: int = 1,
        lock_duration: float | None = None,
    ) -> None:
        self.token = token
        self.abort = abort
        # None: a processor in this process, whose lock lives as long as it does. A number:
        # a processor in another process (a runtime host's client), or in this one on a
        # leased journal (`_actors/renewal.py`), whose jobs are locked for that long at
        # dispatch and stall unless it renews them.
        self.lock_duration = lock_duration
        self.max_stalled_count = max_stalled_count
        self.queue = queue
        self.concurrency = concurrency
        self.free = concurrency
        self.inbox = inbox
        # Set while the worker's own report runs inline: jobs for it go straight to the
        # runner that reported, which is about to take them.
        self.sink: deque[JobRecord] | None = None
        self.closing = False
        #: Its jobs are a client's on the same virtual clock, whose own probe counts them.
        self.elsewhere = False


class Outbox:
    """What one batch may show the world, held until the batch's changes are durable.

    Slotted, and made by `step` with ``object.__new__`` and a store per part: the manual
    loop makes one per call, and neither a Python ``__init__`` (a frame of its own) nor a
    named tuple (its fields are reads CPython does not specialize) is as cheap."""

    __slots__ = ("aborts", "answer", "changes", "error", "events", "finished", "replies", "sends")

    changes: list[Any]
    sends: list[tuple[WorkerSlot, list[JobRecord]]]
    aborts: list[tuple[WorkerSlot, int]]
    replies: list[Request]
    events: list[Event]
    finished: list[JobRecord]
    #: The result of the batch's bare command (one run by `Engine.call`), or the error the
    #: core refused it with: its caller, who has no `Request`, reads them after release.
    answer: Any
    error: ActorqError | None
