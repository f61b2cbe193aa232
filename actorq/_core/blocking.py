"""What keeps a `blocked` job blocked: unmet prerequisites and tag-drain barriers.

Both are indexes in the core's sense: a pure function of the records, kept up to date by the
core's one writer as jobs change state, so replay and snapshots rebuild them exactly.

* Prerequisites: for each blocked job, how many of its `depends_on_job_ids` are not yet
  completed, and for each prerequisite the blocked jobs that wait on it (reverse edges). A
  completion touches only its own dependents.
* Listings: for every job that some job lists in its `depends_on_job_ids`, the jobs that
  list it, whatever their state (the relation itself, kept from admission to removal), so a
  job's dependents are read without a scan and a completed prerequisite retried by hand
  finds the blocked jobs that list it among them.
* Barriers: a blocked job with `depends_on_tags = T` waits while another non-terminal job's
  tags are a superset of T. For every barrier set T some blocked job waits on, the index
  counts the non-terminal jobs whose tags ⊇ T. Each barrier is filed under one of its tags
  (its key tag), so a job entering or leaving a non-terminal state looks only at the barriers
  filed under its own tags, finds each candidate once, and keeps those that are subsets of
  its tags — never a scan of all jobs. A barrier first registered counts its holders from the
  tag index (jobs per tag), starting from its rarest tag.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .records import JobRecord
from .states import JobState

Barrier = frozenset[str]


class BlockingIndex:
    __slots__ = (
        "barrier_count",
        "barrier_waiters",
        "barriers_by_tag",
        "dependents",
        "held",
        "listed_by",
        "tagged",
        "unmet",
    )

    def __init__(self) -> None:
        #: blocked job -> prerequisites not yet completed
        self.unmet: dict[int, int] = {}
        #: prerequisite -> blocked jobs waiting on it
        self.dependents: dict[int, set[int]] = {}
        #: job id -> every job whose `depends_on_job_ids` lists it (any state)
        self.listed_by: dict[int, set[int]] = {}
        #: non-terminal jobs per tag
        self.tagged: dict[str, set[int]] = {}
        #: barrier -> non-terminal jobs whose tags are a superset of it
        self.barrier_count: dict[Barrier, int] = {}
        #: barrier -> blocked jobs waiting on it
        self.barrier_waiters: dict[Barrier, set[int]] = {}
        #: key tag -> registered barriers filed under it (each barrier under one tag)
        self.barriers_by_tag: dict[str, set[Barrier]] = {}
        #: non-terminal job -> registered barriers it holds (found once, when it came alive
        #: or when the barrier was registered), so its end needs no search
        self.held: dict[int, set[Barrier]] = {}

    # ------------------------------------------------------------------ live jobs and tags

    def job_alive(self, rec: JobRecord) -> list[Barrier]:
        """A job entered a non-terminal state (or was added in one)."""
        if not rec.tags:
            return []
        for tag in rec.tags:
            self.tagged.setdefault(tag, set()).add(rec.id)
        touched = self._barriers_of(rec.tags)
        if touched:
            self.held[rec.id] = set(touched)
            for barrier in touched:
                self.barrier_count[barrier] += 1
        return touched

    def job_gone(self, rec: JobRecord) -> list[Barrier]:
        """A job left the non-terminal states (finished or removed). Returns the barriers
        whose count fell, so the core can release their waiters."""
        if not rec.tags:
            return []
        for tag in rec.tags:
            holders = self.tagged.get(tag)
            if holders is not None:
                holders.discard(rec.id)
                if not holders:
                    del self.tagged[tag]
        held = self.held.pop(rec.id, None)
        if not held:
            return []
        count = self.barrier_count
        # A barrier unregistered since (no waiter left) is no longer counted.
        touched = [barrier for barrier in held if barrier in count]
        for barrier in touched:
            count[barrier] -= 1
        return touched

    def _barriers_of(self, tags: Iterable[str]) -> list[Barrier]:
        """Registered barriers that are subsets of `tags` (each found once, via its key)."""
        by_tag = self.barriers_by_tag
        if not by_tag:
            return []
        tagset = frozenset(tags)
        out: list[Barrier] = []
        for tag in tagset:
            filed = by_tag.get(tag)
            if filed:
                out.extend(barrier for barrier in filed if barrier <= tagset)
        return out

    def holders(self, barrier: Barrier) -> int:
        count = self.barrier_count.get(barrier)
        if count is not None:
            return count
        return len(self._holders_by_scan(barrier))

    def holder_ids(self, barrier: Barrier) -> set[int]:
        return self._holders_by_scan(barrier)

    def _holders_by_scan(self, barrier: Barrier) -> set[int]:
        sets = sorted((self.tagged.get(tag, set()) for tag in barrier), key=len)
        if not sets or not sets[0]:
            return set()
        return set(sets[0]).intersection(*sets[1:])

    # ------------------------------------------------------------------ listings

    def listed(self, rec: JobRecord) -> None:
        """A job that lists prerequisites came in (added, or replayed)."""
        for dep in rec.depends_on_job_ids:
            self.listed_by.setdefault(dep, set()).add(rec.id)

    def unlisted(self, rec: JobRecord) -> None:
        """A job that lists prerequisites was removed: it no longer depends on them."""
        for dep in rec.depends_on_job_ids:
            listing = self.listed_by.get(dep)
            if listing is not None:
                listing.discard(rec.id)
                if not listing:
                    del self.listed_by[dep]

    # ------------------------------------------------------------------ blocked jobs

    def block(self, rec: JobRecord, unmet_ids: list[int]) -> None:
        """A job entered `blocked`, waiting on `unmet_ids` and its barrier (if any)."""
        if unmet_ids:
            self.unmet[rec.id] = len(unmet_ids)
            for dep in unmet_ids:
                self.dependents.setdefault(dep, set()).add(rec.id)
        if rec.depends_on_tags:
            barrier = frozenset(rec.depends_on_tags)
            waiters = self.barrier_waiters.get(barrier)
            if waiters is None:
                waiters = self.barrier_waiters[barrier] = set()
                holders = self._holders_by_scan(barrier)
                self.barrier_count[barrier] = len(holders)
                for holder in holders:
                    self.held.setdefault(holder, set()).add(barrier)
                self.barriers_by_tag.setdefault(_key_tag(barrier), set()).add(barrier)
            waiters.add(rec.id)

    def unblock(self, rec: JobRecord) -> None:
        """A job left `blocked` (released, cancelled or removed)."""
        if self.unmet.pop(rec.id, None) is not None:
            for dep in rec.depends_on_job_ids:
                waiting = self.dependents.get(dep)
                if waiting is not None:
                    waiting.discard(rec.id)
                    if not waiting:
                        del self.dependents[dep]
        if rec.depends_on_tags:
            barrier = frozenset(rec.depends_on_tags)
            waiters = self.barrier_waiters.get(barrier)
            if waiters is not None:
                waiters.discard(rec.id)
                if not waiters:
                    del self.barrier_waiters[barrier]
                    del self.barrier_count[barrier]
                    key = _key_tag(barrier)
                    filed = self.barriers_by_tag[key]
                    filed.discard(barrier)
                    if not filed:
                        del self.barriers_by_tag[key]

    def completed(self, job_id: int) -> list[int]:
        """A prerequisite completed: its dependents' unmet counts fall; returns them."""
        waiting = self.dependents.pop(job_id, None)
        if not waiting:
            return []
        unmet = self.unmet
        for dep in waiting:
            left = unmet[dep] - 1
            if left:
                unmet[dep] = left
            else:
                del unmet[dep]  # as a rebuild would have it: no entry once all are met
        return sorted(waiting)

    def uncompleted(self, job_id: int, jobs: Mapping[int, JobRecord]) -> None:
        """A completed prerequisite runs again (retried by hand): the blocked jobs that list
        it wait on it again, as a rebuild from the records would count them."""
        for listing in self.listed_by.get(job_id, ()):
            if jobs[listing].state is JobState.BLOCKED:
                self.unmet[listing] = self.unmet.get(listing, 0) + 1
                self.dependents.setdefault(job_id, set()).add(listing)

    def barrier_clear(self, rec: JobRecord, *, counted: bool = True) -> bool:
        """Whether no *other* non-terminal job holds the job's barrier. `counted` says
        whether the job itself is already among the holders the index counts."""
        if not rec.depends_on_tags:
            return True
        barrier = frozenset(rec.depends_on_tags)
        count = self.barrier_count.get(barrier)
        if count is None:
            count = self.holders(barrier)
        own = 1 if counted and barrier <= frozenset(rec.tags) else 0
        return count - own <= 0

    def ready(self, rec: JobRecord) -> bool:
        return self.unmet.get(rec.id, 0) == 0 and self.barrier_clear(rec)

    def view(self) -> dict[str, object]:
        """Plain values, to compare the incremental index with a rebuild."""
        return {
            "unmet": dict(sorted(self.unmet.items())),
            "dependents": {k: sorted(v) for k, v in sorted(self.dependents.items())},
            "listed_by": {k: sorted(v) for k, v in sorted(self.listed_by.items())},
            "barrier_count": {",".join(sorted(b)): n for b, n in self.barrier_count.items()},
            "barrier_waiters": {
                ",".join(sorted(b)): sorted(w) for b, w in self.barrier_waiters.items()
            },
        }


def _key_tag(barrier: Barrier) -> str:
    """The one tag a barrier is filed under (any fixed choice works; the least is simple)."""
    return min(barrier)
