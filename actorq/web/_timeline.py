"""A job's timeline, told from its own record: no other job is read, and no history is
kept beside the record, so the timeline says what the record can vouch for.

The record keeps when the job was added (`created_at`), when its latest attempt started
(`processed_at`), when it finished (`finished_at`), how many attempts started and ended
(`attempts_started`, `attempts_made`), the stack traces of its last ten failed attempts, its
latest failure reason, its latest progress, its logs, its stall count, and where it is now
(`state`, `run_at`). Entries with a time come from those timestamps; the others (earlier
failures, retries) are placed in the order they must have happened, without a time.
"""

from __future__ import annotations

from .. import Job

#: (time or None, kind, text): kinds are added, failed, retried, started, stalled, progress,
#: log, delayed, waiting, waiting-children, blocked, active, completed, cancelled.
Entry = tuple[float | None, str, str]


def _last_line(trace: str) -> str:
    lines = [line for line in trace.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else trace


def timeline(job: Job) -> list[Entry]:
    """The job's events, oldest first (see the module's docstring for what is known)."""
    state = job.state.value
    out: list[Entry] = [(job.created_at, "added", f"added to queue {job.queue}")]
    made, started = job.attempts_made, job.attempts_started
    # Attempts that ended in failure: every ended one but a final completion.
    failures = made - (1 if state == "completed" else 0)
    final_failure = state == "failed" and failures > 0 and job.finished_at is not None
    traces = job.stacktrace
    earlier = failures - (1 if final_failure else 0)
    for n in range(1, earlier + 1):
        # The traces kept are those of the latest failed attempts, in order.
        at = n - 1 - (failures - len(traces))
        why = _last_line(traces[at]) if 0 <= at < len(traces) else "no stack trace kept"
        out.append((None, "failed", f"attempt {n} failed: {why}"))
        out.append((None, "retried", f"retried (attempt {n + 1} to come)"))
    if started:
        more = started - made - (1 if state == "active" else 0)
        note = f" ({more} more starts than ended attempts: steps or resumes)" if more > 0 else ""
        out.append(
            (job.processed_at, "started", f"attempt {started} of {job.attempts} started{note}")
        )
    if job.stalled_counter:
        times = "once" if job.stalled_counter == 1 else f"{job.stalled_counter} times"
        out.append((None, "stalled", f"stalled {times} (its lock expired)"))
    if job.progress is not None:
        out.append((None, "progress", f"progress (latest): {job.progress!r}"))
    out.extend((None, "log", f"log: {line}") for line in job.logs)
    if state == "delayed":
        why = "retry after a failure, " if earlier and job.failed_reason else ""
        out.append((job.run_at, "delayed", f"delayed: {why}due then"))
    elif state == "waiting-children":
        out.append((None, "waiting-children", "waiting for its children to finish"))
    elif state == "blocked":
        on = []
        if job.depends_on_job_ids:
            on.append("its prerequisites")
        if job.depends_on_tags:
            on.append(f"its tag barrier [{', '.join(job.depends_on_tags)}]")
        out.append((None, "blocked", f"blocked on {' and '.join(on) or 'its prerequisites'}"))
    elif state == "waiting":
        out.append((None, "waiting", "waiting for a worker"))
    elif state == "active":
        out.append((job.processed_at, "active", "running now"))
    elif state == "completed":
        out.append((job.finished_at, "completed", "completed"))
    elif state == "failed":
        out.append((job.finished_at, "failed", f"failed for good: {job.failed_reason}"))
    elif state == "cancelled":
        out.append((job.finished_at, "cancelled", f"cancelled: {job.failed_reason or ''}"))
    return out
