"""Task registry: one processor per job name on a worker.

Two spellings of the same thing. BullMQ users write a ``switch (job.name)`` in one processor;
here that is a mapping, ``rt.worker(queue, {"send": send, "report": report})``. taskiq, huey
and Celery users decorate functions; here ``@rt.task("emails")`` makes a `Task`, whose
``await send.add(data, **options)`` adds a job of that name (typed from the function), and
``rt.worker("emails", [send, report])`` runs them.

A job whose name the worker has no processor for fails for good (an `UnrecoverableError`,
logged at ERROR like any final failure): every attempt would meet the same table, so retries
could only delay the error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, Unpack

from ._exceptions import InvalidOptionError, UnrecoverableError
from ._options import check_processor, text
from ._typing import DataT, JobOptions, ResultT

if TYPE_CHECKING:
    from ._api import RuntimeAPI
    from ._job import Job
    from ._queue import Queue


class Task(Generic[DataT, ResultT]):
    """A processor registered for one job name on one queue (made by `Runtime.task`).

    Calling it calls the function (``await send(job)`` in a unit test); ``await
    send.add(data, **options)`` adds a job of this name to this queue; a worker given it
    (``rt.worker(queue, [send, ...])``) runs it for the jobs of this name.
    """

    __slots__ = ("__wrapped__", "_rt", "name", "queue")

    def __init__(
        self,
        rt: RuntimeAPI,
        fn: Callable[[Job[DataT, ResultT]], Awaitable[ResultT]],
        queue: str,
        name: str,
    ) -> None:
        self._rt = rt
        self.__wrapped__ = fn
        self.queue = queue
        self.name = name

    def __call__(self, job: Job[DataT, ResultT]) -> Awaitable[ResultT]:
        return self.__wrapped__(job)

    async def add(
        self,
        data: DataT = None,  # type: ignore[assignment]  # no data is None, whatever DataT is
        **options: Unpack[JobOptions],
    ) -> Job[DataT, ResultT]:
        """Add a job of this task's name to its queue (`Queue.add`'s options)."""
        queue: Queue[DataT, ResultT] = self._rt.queue(self.queue)
        return await queue.add(self.name, data, **options)

    def __repr__(self) -> str:
        return f"<Task {self.name!r} on {self.queue!r}>"


def is_registry(processor: object) -> bool:
    """Whether a worker's `processor` is a table of processors by job name: a mapping, a
    `Task`, or a list (any non-callable iterable) of them."""
    return isinstance(processor, Mapping | Task) or (
        not callable(processor) and isinstance(processor, Iterable)
    )


def dispatcher(processor: object, queue: str, run_in_thread: bool) -> Callable[[Any], Any]:
    """The one processor a worker runs for a table of them: it calls the job's name's own
    (no extra coroutine: it returns that processor's), and fails an unknown name for good."""
    table: dict[str, Callable[[Any], Any]] = {}
    if isinstance(processor, Mapping):
        items: list[tuple[object, object]] = list(processor.items())
    else:
        tasks = [processor] if isinstance(processor, Task) else list(processor)  # type: ignore[call-overload]
        items = []
        for i, task in enumerate(tasks):
            if not isinstance(task, Task):
                raise InvalidOptionError(
                    f"processor[{i}]", task, "a list of processors holds Tasks (see rt.task)"
                )
            if task.queue != queue:
                raise InvalidOptionError(
                    f"processor[{i}]", task, f"is a task of queue {task.queue!r}, not {queue!r}"
                )
            items.append((task.name, task))
    where = "processor"
    if not items:
        raise InvalidOptionError(where, processor, "needs at least one job name")
    for name, value in items:
        fn = value.__wrapped__ if isinstance(value, Task) else value
        key = text(f"{where}[{name!r}]", name, "a job name must be a non-empty string")
        if key in table:
            raise InvalidOptionError(f"{where}[{key!r}]", fn, "two processors for one job name")
        table[key] = check_processor(fn, run_in_thread)
    known = ", ".join(repr(name) for name in sorted(table))
    get = table.get

    def dispatch(job: Any) -> Any:
        fn = get(job.name)
        if fn is None:
            raise UnrecoverableError(
                f"no processor for job name {job.name!r} on this worker of {queue!r} "
                f"(it handles {known})"
            )
        return fn(job)

    return dispatch


__all__ = ["Task", "dispatcher", "is_registry"]
