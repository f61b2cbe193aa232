"""Small HTML views for Jupyter and a progress-aware wait.

`runtime_html`, `queue_html` and `job_html` return HTML tables (everything user-supplied is
escaped); they read what the handles already hold and never await, so they suit
``_repr_html_``. `wait_for` awaits jobs with a progress bar (tqdm's, when it is installed).
"""

from __future__ import annotations

import html
import importlib
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from ._core import JobState, commands

if TYPE_CHECKING:
    from ._job import Job
    from ._queue import Queue
    from ._runtime import Runtime

PREVIEW = 120
_STYLE = "border-collapse:collapse;font-family:monospace;font-size:90%"
_CELL = "padding:2px 8px;border:1px solid #ccc;text-align:{align}"


def _cell(value: object, tag: str = "td", align: str = "right") -> str:
    return f'<{tag} style="{_CELL.format(align=align)}">{html.escape(str(value))}</{tag}>'


def preview(value: object, limit: int = PREVIEW) -> str:
    """`repr(value)` cut to `limit` characters (not escaped)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def counts_table(title: str, counts: Mapping[str, Mapping[str, int]]) -> str:
    """One row per queue, one column per state."""
    states = [s.value for s in JobState]
    head = _cell("queue", "th", "left") + "".join(_cell(s, "th") for s in states)
    rows = [
        "<tr>" + _cell(name, align="left") + "".join(_cell(c.get(s, 0)) for s in states) + "</tr>"
        for name, c in counts.items()
    ]
    if not rows:
        rows = [f'<tr><td colspan="{len(states) + 1}"><i>no queues yet</i></td></tr>']
    return (
        f"<div><b>{html.escape(title)}</b>"
        f'<table style="{_STYLE}"><tr>{head}</tr>{"".join(rows)}</table></div>'
    )


def runtime_html(rt: Runtime) -> str:
    """Counts by state for every queue of the runtime, from its in-memory state."""
    jobs, raw = rt._peek(commands.Summary())
    counts = {name: {state.value: n for state, n in by.items()} for name, by in raw.items()}
    title = f"actorq Runtime ({rt._state}, {jobs} jobs, {rt.clock!r})"
    return counts_table(title, counts)


def queue_html(counts: Mapping[str, int], name: str = "queue") -> str:
    """A queue's counts by state (as `Queue.counts` returns them)."""
    return counts_table(f"actorq Queue {name!r}", {name: counts})


def queue_snapshot_html(queue: Queue) -> str:
    """A queue's counts by state, read from the runtime's in-memory state (no await)."""
    raw = queue._rt._peek(commands.GetCounts(queue.name))
    return queue_html({state.value: n for state, n in raw.items()}, queue.name)


def _when(at: float | None) -> str:
    return "—" if at is None else f"{at:.3f}"


def job_html(job: Job) -> str:
    """A job's state, attempts, timings and a preview of its payloads."""
    rows: list[tuple[str, object]] = [
        ("id", job.id),
        ("name", job.name),
        ("queue", job.queue),
        ("state", job.state.value),
        ("attempts", f"{job.attempts_made} made / {job.attempts_started} started / {job.attempts}"),
        ("created_at", _when(job.created_at)),
        ("processed_at", _when(job.processed_at)),
        ("finished_at", _when(job.finished_at)),
    ]
    if job.run_at is not None:
        rows.append(("run_at", _when(job.run_at)))
    if job.processed_at is not None and job.finished_at is not None:
        rows.append(("duration", f"{job.finished_at - job.processed_at:.3f} s"))
    rows.append(("data", preview(job.data)))
    if job.state is JobState.COMPLETED:
        rows.append(("return_value", preview(job.return_value)))
    if job.failed_reason:
        rows.append(("failed_reason", preview(job.failed_reason)))
    if job.tags:
        rows.append(("tags", ", ".join(job.tags)))
    body = "".join(f"<tr>{_cell(k, 'th', 'left')}{_cell(v, align='left')}</tr>" for k, v in rows)
    return f'<table style="{_STYLE}">{body}</table>'


class _PlainBar:
    """A text fallback for tqdm: a line at every tenth of the way."""

    def __init__(self, total: int, desc: str) -> None:
        self.total = total
        self.desc = desc
        self.n = 0
        self._step = max(1, total // 10)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.n % self._step == 0 or self.n == self.total:
            print(f"{self.desc}: {self.n}/{self.total}", file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


def _bar(total: int, desc: str) -> Any:
    try:
        auto = importlib.import_module("tqdm.auto")  # optional: the `notebook` extra
    except ImportError:
        return _PlainBar(total, desc)
    try:
        return auto.tqdm(total=total, desc=desc)
    except ImportError:  # tqdm.notebook without ipywidgets: the text bar
        return importlib.import_module("tqdm.std").tqdm(total=total, desc=desc)


async def wait_for(
    jobs: Iterable[Any],
    progress: bool = False,
    *,
    desc: str = "jobs",
    return_exceptions: bool = False,
) -> list[Any]:
    """Wait for every job to finish; return their return values in order.

    With ``progress=True`` a `tqdm.auto` bar (a plain text line per tenth without tqdm)
    counts finished jobs. A job that failed or was cancelled raises its error once all have
    finished, or, with ``return_exceptions=True``, takes the error's place in the list.
    Jobs may be `Job` handles or the async facades of `start_in_background`.
    """
    jobs = list(jobs)
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException | None] = [None] * len(jobs)
    bar = _bar(len(jobs), desc) if progress else None

    async def one(i: int, job: Any) -> None:
        try:
            results[i] = await job.wait_until_finished()
        except Exception as exc:  # a job's failure is its result here
            errors[i] = exc
            results[i] = exc
        if bar is not None:
            bar.update(1)

    try:
        async with anyio.create_task_group() as tg:
            for i, job in enumerate(jobs):
                tg.start_soon(one, i, job)
    finally:
        if bar is not None:
            bar.close()
    if not return_exceptions:
        for error in errors:
            if error is not None:
                raise error
    return results


__all__ = [
    "counts_table",
    "job_html",
    "preview",
    "queue_html",
    "queue_snapshot_html",
    "runtime_html",
    "wait_for",
]
