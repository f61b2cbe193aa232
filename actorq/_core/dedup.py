"""Deduplication (BullMQ 5's ``deduplication`` option): a key per queue naming one job.

A job added with ``deduplication={"id": key, ...}`` sets the key of its queue to itself; while
the key is set, an add with the same key makes no job and returns the one the key names
(`JobDeduplicated` says so), except in replace mode (below). When the key is unset:

* simple mode (no ``ttl``): when its job finishes (completed, failed, cancelled) or is
  removed unfinished;
* throttle mode (``ttl``): ``ttl`` seconds after it was set (``extend``: after the last
  duplicate), whatever becomes of the job; removing the job unfinished unsets it too;
* by `remove_key` (``queue.remove_deduplication_key``), at any time.

Replace mode (``replace``, debounce with ``extend``): a duplicate arriving while the key's job
is still delayed removes that job and is added in its place, the key naming the new job (its
expiry reset with ``extend``, kept without). A duplicate arriving once the job has left delayed
is ignored as in the other modes.

Time: a key with a ttl is live while ``now < expires_at``; the core reads no clock, so expiry
is read at each lookup with the ``now`` of the command, and expired keys are dropped (with a
change record) by the next add that uses deduplication, earliest first, from a heap.

Journal: ``("dedup", queue, key, job_id, expires_at, row)`` sets a key (``row``: None, or, in
a snapshot, the record of a job already removed that a throttle key still names), and
``("dedup-del", queue, key)`` unsets one. Replay sets what the records say.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any

from . import events as ev
from .records import JobRecord, JobSpec
from .states import JobState

if TYPE_CHECKING:
    from .commands import Change

D = JobState.DELAYED

Key = tuple[str, str]


class DedupKey:
    """One key: the job it names, when it expires (None: when the job finishes), and the
    job's record (kept after the job is removed, for the handle a duplicate returns)."""

    __slots__ = ("expires_at", "job_id", "rec")

    def __init__(self, job_id: int, expires_at: float | None, rec: JobRecord | None) -> None:
        self.job_id = job_id
        self.expires_at = expires_at
        self.rec = rec

    def live(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at


class Dedup:
    """`CoreState`'s deduplication keys (a mixin: `CoreState` provides the state)."""

    # Provided by `CoreState`; declared here for mypy.
    jobs: dict[int, JobRecord]
    dedup: dict[Key, DedupKey]
    dedup_expiries: list[tuple[float, str, str]]
    changes: list[Change] | None
    events: list[ev.Event] | None

    if TYPE_CHECKING:

        def remove(self, job_id: int, now: float) -> JobRecord: ...

    # ------------------------------------------------------------------ queries, control

    def dedup_job_id(self, queue: str, key: str, now: float) -> int | None:
        entry = self.dedup.get((queue, key))
        return entry.job_id if entry is not None and entry.live(now) else None

    def remove_dedup_key(self, queue: str, key: str, now: float) -> bool:
        """Unset a key (BullMQ's ``removeDeduplicationKey``): True if it was set."""
        entry = self.dedup.get((queue, key))
        if entry is None:
            return False
        self._dedup_del((queue, key))
        return entry.live(now)

    # ------------------------------------------------------------------ admission

    def dedup_match(self, spec: JobSpec, now: float) -> tuple[int | None, JobRecord | None]:
        """What an add of `spec` (which has the option) meets: ``(job id, record)`` of the
        job a live key names (None, None when the key is free). Reads only."""
        dd = spec.deduplication
        assert dd is not None
        entry = self.dedup.get((spec.queue, dd.id))
        if entry is None or not entry.live(now):
            return None, None
        rec = self.jobs.get(entry.job_id, entry.rec)
        return entry.job_id, rec

    def dedup_replaces(self, spec: JobSpec, rec: JobRecord | None) -> bool:
        """Whether a duplicate of `spec` takes the place of `rec`, the job its key names."""
        dd = spec.deduplication
        assert dd is not None
        return dd.replace and rec is not None and rec.state is D and rec.id in self.jobs

    def dedup_replace(self, spec: JobSpec, job_id: int, now: float) -> float | None:
        """Remove the delayed job `job_id` whose place an add of `spec` takes; the expiry
        its key had."""
        dd = spec.deduplication
        assert dd is not None
        entry = self.dedup[(spec.queue, dd.id)]
        expires = entry.expires_at
        self.remove(job_id, now)
        return expires

    def dedup_added(
        self,
        spec: JobSpec,
        rec: JobRecord,
        replaced: int | None,
        old_expires: float | None,
        now: float,
    ) -> None:
        """`rec` was just added with the option: its key names it (`replaced`: the job it
        took the place of, already removed; `old_expires`: when that job's key expired)."""
        dd = spec.deduplication
        assert dd is not None
        key = (spec.queue, dd.id)
        if replaced is not None and not dd.extend:
            expires = old_expires  # debounce without extend: the first add's window
        else:
            expires = None if dd.ttl is None else now + dd.ttl
        self._dedup_set(key, rec.id, expires, rec)
        if replaced is not None and self.events is not None:
            self.events.append(ev.JobDeduplicated(rec.id, rec.queue, rec.name, dd.id, replaced))

    def dedup_ignored(self, spec: JobSpec, job_id: int, rec: JobRecord, now: float) -> None:
        """An add of `spec` was ignored as a duplicate of `job_id` (``extend``: its window
        starts again)."""
        dd = spec.deduplication
        assert dd is not None
        key = (spec.queue, dd.id)
        if dd.extend and dd.ttl is not None:
            self._dedup_set(key, job_id, now + dd.ttl, rec)
        if self.events is not None:
            self.events.append(ev.JobDeduplicated(job_id, spec.queue, rec.name, dd.id, None))

    def dedup_purge(self, now: float) -> None:
        """Drop keys whose ttl ran out (earliest first; stale heap entries are skipped)."""
        heap = self.dedup_expiries
        while heap and heap[0][0] <= now:
            at, queue, key = heapq.heappop(heap)
            entry = self.dedup.get((queue, key))
            if entry is not None and entry.expires_at == at:
                self._dedup_del((queue, key))

    # ------------------------------------------------------------------ a job ends

    def _dedup_released(self, rec: JobRecord) -> None:
        """`rec` finished or was removed unfinished: a key without a ttl naming it is unset
        (live only: replay has the ``dedup-del``)."""
        assert rec.deduplication_id is not None
        key = (rec.queue, rec.deduplication_id)
        entry = self.dedup.get(key)
        if entry is not None and entry.job_id == rec.id and entry.expires_at is None:
            self._dedup_del(key)

    def _dedup_removed(self, rec: JobRecord, finished: bool) -> None:
        """`rec` is being removed: a key naming it is unset when the job had not finished
        (a throttle key outlives a finished job, keeping its record for the handle)."""
        assert rec.deduplication_id is not None
        key = (rec.queue, rec.deduplication_id)
        entry = self.dedup.get(key)
        if entry is not None and entry.job_id == rec.id and not finished:
            self._dedup_del(key)

    # ------------------------------------------------------------------ records

    def _dedup_set(
        self, key: Key, job_id: int, expires: float | None, rec: JobRecord | None
    ) -> None:
        self.dedup[key] = DedupKey(job_id, expires, rec)
        if expires is not None:
            heapq.heappush(self.dedup_expiries, (expires, *key))
        if self.changes is not None:
            self.changes.append(("dedup", key[0], key[1], job_id, expires, None))

    def _dedup_del(self, key: Key) -> None:
        del self.dedup[key]
        if self.changes is not None:
            self.changes.append(("dedup-del", key[0], key[1]))

    def replay_dedup(self, change: Change) -> None:
        key = (change[1], change[2])
        if change[0] == "dedup-del":
            self.dedup.pop(key, None)
            return
        job_id, expires, row = change[3], change[4], change[5]
        rec = self.jobs.get(job_id)
        if rec is None:
            old = self.dedup.get(key)
            if row is not None:
                rec = JobRecord.from_fields(row)
            elif old is not None and old.job_id == job_id:
                rec = old.rec  # an extended window of a job removed since
        self.dedup[key] = DedupKey(job_id, expires, rec)
        if expires is not None:
            heapq.heappush(self.dedup_expiries, (expires, *key))

    def dedup_changes(self) -> list[Change]:
        """The keys as change records (a snapshot's): a removed job's record goes along."""
        out: list[Change] = []
        for (queue, key), entry in sorted(self.dedup.items()):
            gone = entry.job_id not in self.jobs and entry.rec is not None
            row: Any = entry.rec.row() if gone and entry.rec is not None else None
            out.append(("dedup", queue, key, entry.job_id, entry.expires_at, row))
        return out

    def dedup_view(self) -> dict[Key, tuple[int, float | None]]:
        return {key: (e.job_id, e.expires_at) for key, e in sorted(self.dedup.items())}


__all__ = ["Dedup", "DedupKey"]
