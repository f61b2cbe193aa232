"""Admission: `add`, which admits a batch of jobs all or nothing, and the checks it runs.

Separate from `state` because it is the one transition that reasons about a whole batch
before touching anything: references inside the batch, cycles among its `batch_ref` edges,
barrier deadlocks it would close with jobs already blocked, and the order in which its
records are created so that everything a new job waits on exists when it is indexed.

One path for every add, a single one included (a batch of one): the checks run only when
some job of the batch refers to others (they are vacuous otherwise), and `_new_records`
makes the records, working out what a spec's options decide once per run of jobs sharing
that spec, and putting a run of plain waiting jobs in its line in one step.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import repeat
from typing import TYPE_CHECKING, Any, Final

from .._exceptions import InvalidDependencyError
from . import events as ev
from .records import FIELD_NAMES, PENDING, JobRecord, JobSpec
from .states import TERMINAL, JobState

if TYPE_CHECKING:
    from .blocking import BlockingIndex
    from .dedup import DedupKey
    from .groups import Groups
    from .state import Change, QueueState

W, D, WC = JobState.WAITING, JobState.DELAYED, JobState.WAITING_CHILDREN
B, C, F, X = JobState.BLOCKED, JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED


class Admission:
    """`CoreState`'s batch admission (a mixin: `CoreState` provides the state)."""

    # Provided by `CoreState`; declared here for mypy.
    jobs: dict[int, JobRecord]
    next_id: int
    _next_fifo: int
    _next_lifo: int
    idempotency: dict[str, int]
    blocking: BlockingIndex
    dedup: dict[tuple[str, str], DedupKey]
    changes: list[Change] | None
    events: list[ev.Event] | None

    if TYPE_CHECKING:

        def queue(self, name: str) -> QueueState: ...
        def _next_order(self, lifo: bool) -> int: ...
        def dedup_purge(self, now: float) -> None: ...
        def grouped(self, qs: QueueState) -> Groups: ...
        def dedup_match(self, spec: JobSpec, now: float) -> tuple[int | None, JobRecord | None]: ...
        def dedup_replaces(self, spec: JobSpec, rec: JobRecord | None) -> bool: ...
        def dedup_replace(self, spec: JobSpec, job_id: int, now: float) -> float | None: ...
        def dedup_added(
            self,
            spec: JobSpec,
            rec: JobRecord,
            replaced: int | None,
            old_expires: float | None,
            now: float,
        ) -> None: ...
        def dedup_ignored(self, spec: JobSpec, job_id: int, rec: JobRecord, now: float) -> None: ...
        def _insert(self, rec: JobRecord) -> None: ...
        def _set_child(
            self, parent: JobRecord, child_id: int, status: str | None, payload: Any
        ) -> None: ...

    def add(
        self,
        specs: Sequence[JobSpec],
        now: float,
        names: Sequence[str] | None = None,
        datas: Sequence[bytes] | None = None,
    ) -> list[tuple[JobRecord, bool]]:
        """Add a batch atomically: every spec is checked before any is applied.

        Returns ``(record, created)`` per spec; `created` is False where an idempotency key
        matched a job that already exists (that job is returned, with its own data).

        `names` and `datas`, when given, are the jobs' names and data, column by column, and
        ``specs[i]`` gives only job i's options (a bulk add shares one validated spec among
        the jobs whose options are the same: consecutive jobs may be the same object). A
        single add is a batch of one; there is no other path.
        """
        n = len(specs)
        related = keyed = deduping = False
        last = None
        seen: set[int] = set()
        for spec in specs:  # once per distinct spec
            if spec is last or id(spec) in seen:
                continue
            last = spec
            seen.add(id(spec))
            if _related(spec):
                related = True
            if spec.idempotency_key is not None:
                keyed = True
            if spec.deduplication is not None:
                keyed = deduping = True
        next_id = self.next_id
        if not related and not keyed:
            # Nothing in the batch refers to anything: every check below is vacuous, ids are
            # consecutive and records are made in the batch's order.
            self.next_id = next_id + n
            recs = self._new_records(specs, names, datas, now, range(next_id, next_id + n))
            return list(zip(recs, repeat(True)))
        if related:
            for i, spec in enumerate(specs):
                self._check_spec(i, spec, specs)
            _check_batch_cycles(specs)
            self._check_barrier_deadlock(specs)

        # Ids follow the batch's order; records are created prerequisites (and parents)
        # first, so every job a new job waits on exists when it is indexed, here and in replay.
        ids: list[int] = []
        created: list[bool] = []
        first_with_key: dict[str, int] = {}
        deduped = _Deduped(self, now) if deduping else None
        for i, spec in enumerate(specs):
            key = spec.idempotency_key
            existing = None
            if key is not None:
                existing = self.idempotency.get(key)
                if existing is None and key in first_with_key:
                    existing = ids[first_with_key[key]]
            if existing is None and spec.deduplication is not None:
                assert deduped is not None
                existing = deduped.match(i, spec, ids)
            if existing is not None:
                ids.append(existing)
                created.append(False)
                continue
            if key is not None:
                first_with_key[key] = i
            ids.append(next_id)
            created.append(True)
            next_id += 1
        if deduped is not None:
            deduped.replace(specs)
        # A flow parent waits only for children this batch creates: a child deduplicated onto
        # an existing job (idempotency key) is that job, not a new child of this parent.
        with_children = {
            spec.parent_ref
            for i, spec in enumerate(specs)
            if created[i] and spec.parent_ref is not None
        }
        order = _creation_order(specs, created) if related else [i for i in range(n) if created[i]]
        self._new_records(specs, names, datas, now, ids, order, with_children)
        self.next_id = next_id
        jobs = self.jobs
        if deduped is not None:
            return deduped.done(specs, ids, created)
        return [(jobs[ids[i]], created[i]) for i in range(n)]

    def _new_records(
        self,
        specs: Sequence[JobSpec],
        names: Sequence[str] | None,
        datas: Sequence[bytes] | None,
        now: float,
        ids: Sequence[int],
        order: Iterable[int] | None = None,
        with_children: set[int] | frozenset[int] = frozenset(),
    ) -> list[JobRecord]:
        """Make, index and record the jobs ``specs[i]`` for `i` in `order` (default: the
        batch's order), job i with id ``ids[i]``; the records in the order made.

        What a spec's options decide (its queue, due time, whether its jobs can need more
        than a place in a waiting line) is worked out once per run of jobs sharing it. A job
        that needs only its place (no relation, no tag, no key, due now) is put in the jobs
        and, with the others of its run, in its line in one step; any other goes through
        `_insert`, as a record replayed does. The change record is the record's row, built
        once for both.
        """
        jobs = self.jobs
        changes = self.changes
        events = self.events
        out: list[JobRecord] = []
        # (order, id) of plain waiting jobs, per line they join: (queue, group, priority,
        # LIFO); each line's entries in the order made, all joining at once (before any job
        # that goes through `_insert`, so that one finds the line as it would be).
        runs: dict[tuple[QueueState, str | None, int, bool], list[tuple[int, int]]] = {}
        pending: list[tuple[int, int]] = []
        qs: QueueState | None = None
        last: JobSpec | None = None
        plain = related = delayed = False
        run_at: float | None = None
        state = W
        # What each distinct spec decides, by identity: a bulk add's jobs share few specs,
        # interleaved (jobs of many groups, each group's sharing one).
        decided: dict[int, tuple[Any, ...]] = {}
        line: tuple[QueueState, str | None, int, bool] | None = None
        for i in range(len(specs)) if order is None else order:
            spec = specs[i]
            if spec is not last:
                last = spec
                known = decided.get(id(spec))
                if known is None:
                    qs = self.queue(spec.queue)
                    run_at = spec.run_at
                    if run_at is None and spec.delay:
                        run_at = now + spec.delay
                    delayed = run_at is not None and run_at > now
                    related = _related(spec) or spec.wait_children
                    plain = not (
                        related or spec.tags or spec.idempotency_key is not None or delayed
                    )
                    line = (qs, spec.group, spec.priority, spec.lifo) if plain else None
                    known = decided[id(spec)] = (qs, run_at, delayed, related, plain, line)
                qs, run_at, delayed, related, plain, line = known
                state = D if delayed else W
                if line is not None:
                    pending = runs.get(line) or runs.setdefault(line, [])
            assert qs is not None
            job_id = ids[i]
            name = spec.name if names is None else names[i]
            data = spec.data if datas is None else datas[i]
            if related:  # its state depends on the jobs it refers to
                if runs:
                    _flush(self, runs)
                    pending = []
                rec = self._new_related(spec, job_id, name, data, run_at, delayed, now, ids,
                                        wait_children=i in with_children)  # fmt: skip
                row = rec.row()
            else:
                place = 0
                if not delayed:
                    if spec.lifo:
                        place = self._next_lifo
                        self._next_lifo = place - 1
                    else:
                        place = self._next_fifo
                        self._next_fifo = place + 1
                row = _row(spec, job_id, name, data, state, run_at, now, None, (), place)
                rec = JobRecord(*row)
                if plain:  # only a place in its line: with the rest of its run, below
                    jobs[job_id] = rec
                    if not pending:  # the line's run was flushed since the spec came
                        assert line is not None
                        pending = runs.setdefault(line, [])
                    pending.append((place, job_id))
                else:  # tags (barriers count it), a key, or a due time: every index it enters
                    if runs:
                        _flush(self, runs)
                        pending = []
                    self._insert(rec)
            out.append(rec)
            if changes is not None:
                changes.append(("add", row))
            if events is not None:
                events.append(ev.JobAdded(job_id, rec.queue, rec.name, rec.state))
            if rec.parent_id is not None:
                self._set_child(jobs[rec.parent_id], job_id, PENDING, None)
        if runs:
            _flush(self, runs)
        return out

    def _new_related(
        self,
        spec: JobSpec,
        job_id: int,
        name: str,
        data: bytes,
        run_at: float | None,
        delayed: bool,
        now: float,
        batch_ids: Sequence[int],
        *,
        wait_children: bool,
    ) -> JobRecord:
        """A job that may wait on others, be waited on, or be due later: its state worked
        out from what it waits on, then inserted with every index it enters."""
        deps = spec.depends_on_job_ids + tuple(batch_ids[r] for r in spec.depends_on_batch_refs)
        parent_id = spec.parent_id if spec.parent_ref is None else batch_ids[spec.parent_ref]
        rec = JobRecord(*_row(spec, job_id, name, data, W, run_at, now, parent_id, deps, 0))
        # Not yet inserted: the index does not count this job among its barrier's holders.
        jobs = self.jobs
        blocked = any((p := jobs.get(d)) is not None and p.state is not C for d in deps) or (
            bool(rec.depends_on_tags) and not self.blocking.barrier_clear(rec, counted=False)
        )
        if blocked:
            rec.state = B
        elif spec.wait_children and wait_children:
            rec.state = WC
        elif delayed:
            rec.state = D
        else:
            rec.order = self._next_order(rec.lifo)
        self._insert(rec)
        return rec

    def _check_spec(self, i: int, spec: JobSpec, specs: Sequence[JobSpec]) -> None:
        where = f"jobs[{i}]." if len(specs) > 1 else ""
        if spec.parent_id is not None:
            parent = self.jobs.get(spec.parent_id)
            if parent is None:
                raise InvalidDependencyError(f"{where}parent: job {spec.parent_id} does not exist")
            if parent.state in TERMINAL:
                raise InvalidDependencyError(
                    f"{where}parent: job {spec.parent_id} is already {parent.state}"
                )
        if spec.parent_ref is not None and not 0 <= spec.parent_ref < i:
            raise InvalidDependencyError(
                f"{where}parent: a flow parent must come before its children in the batch"
            )
        for dep in spec.depends_on_job_ids:
            prereq = self.jobs.get(dep)
            if prereq is None:
                raise InvalidDependencyError(f"{where}depends_on.job_ids: job {dep} does not exist")
            if prereq.state is F or prereq.state is X:
                raise InvalidDependencyError(
                    f"{where}depends_on.job_ids: job {dep} is already {prereq.state}, "
                    "so this job could never run"
                )
        for ref in spec.depends_on_batch_refs:
            if not 0 <= ref < len(specs):
                raise InvalidDependencyError(
                    f"{where}depends_on.job_ids: batch_ref({ref}) is out of the batch "
                    f"of {len(specs)} jobs"
                )
            if ref == i:
                raise InvalidDependencyError(f"{where}depends_on: a job cannot depend on itself")

    def _check_barrier_deadlock(self, specs: Sequence[JobSpec]) -> None:
        """Reject a batch that would leave jobs blocked on each other forever.

        A blocked job waits on its unmet prerequisites and on the holders of its barrier
        (unfinished jobs whose tags are a superset). Only blocked jobs can wait in a circle,
        so one depth-first search over the new jobs and the blocked jobs they reach finds any
        cycle the batch would close, in time linear in what it visits (bounded; a tangle past
        the bound is let through and shows as jobs that stay blocked).
        """
        blocking = self.blocking
        any_barrier = any(spec.depends_on_tags for spec in specs)
        if not any_barrier and not blocking.barrier_waiters:
            return
        by_tag = _batch_tags(specs)
        jobs = self.jobs
        Node = tuple[bool, int]  # (is new, batch index or job id)

        def holders(barrier: frozenset[str], me: Node) -> list[Node]:
            out: list[Node] = [
                (True, j) for j in _batch_holders(specs, by_tag, barrier) if (True, j) != me
            ]
            for job_id in blocking.holder_ids(barrier):
                held = jobs.get(job_id)
                if held is not None and held.state is B and (False, job_id) != me:
                    out.append((False, job_id))
            return out

        def waits_on(node: Node) -> list[Node]:
            is_new, key = node
            if is_new:
                spec = specs[key]
                out: list[Node] = [(True, j) for j in spec.depends_on_batch_refs]
                deps: Iterable[int] = spec.depends_on_job_ids
                barrier = frozenset(spec.depends_on_tags)
            else:
                rec = jobs[key]
                out = []
                deps = rec.depends_on_job_ids
                barrier = frozenset(rec.depends_on_tags)
            for dep in deps:
                prereq = jobs.get(dep)
                if prereq is not None and prereq.state is B:
                    out.append((False, dep))
            if barrier:
                out.extend(holders(barrier, node))
            return out

        colour: dict[Node, int] = {}  # 1 on the path, 2 done
        budget = 200_000
        for start in range(len(specs)):
            root: Node = (True, start)
            if root in colour:
                continue
            colour[root] = 1
            path: list[Node] = [root]
            stack = [iter(waits_on(root))]
            while stack:
                nxt = next(stack[-1], None)
                if nxt is None:
                    colour[path.pop()] = 2
                    stack.pop()
                    continue
                budget -= 1
                if budget < 0:
                    return
                seen = colour.get(nxt)
                if seen == 1:
                    cycle = path[path.index(nxt) :]
                    raise InvalidDependencyError(self._deadlock_message(specs, cycle))
                if seen is None:
                    colour[nxt] = 1
                    path.append(nxt)
                    stack.append(iter(waits_on(nxt)))

    def _deadlock_message(self, specs: Sequence[JobSpec], cycle: list[tuple[bool, int]]) -> str:
        for is_new, key in cycle:
            tags = specs[key].depends_on_tags if is_new else self.jobs[key].depends_on_tags
            if tags:
                where = f"jobs[{key}]" if is_new else f"job {key}"
                names = ", ".join(tags)
                break
        else:  # pragma: no cover - a cycle without a barrier is caught as a batch cycle
            where, names = "jobs", ""
        return (
            f"{where}.depends_on.tags: the barrier [{names}] can never clear: "
            "jobs blocked on each other's tags would wait forever"
        )


class _Deduped:
    """What deduplication decides for one batch: made before anything changes (beyond
    dropping expired keys), carried out around the creation of the records."""

    __slots__ = ("core", "first", "ignored", "now", "replaced")

    def __init__(self, core: Admission, now: float) -> None:
        self.core = core
        self.now = now
        #: The first job of the batch created with a key, by key.
        self.first: dict[tuple[str, str], int] = {}
        #: (batch index, id of the job it duplicates, its record if it exists already).
        self.ignored: list[tuple[int, int, JobRecord | None]] = []
        #: Batch index -> (id of the delayed job it replaces, that key's expiry).
        self.replaced: dict[int, tuple[int, float | None]] = {}
        core.dedup_purge(now)

    def match(self, i: int, spec: JobSpec, ids: list[int]) -> int | None:
        """The job an add of ``specs[i]`` duplicates (None: it is created)."""
        dd = spec.deduplication
        assert dd is not None
        key = (spec.queue, dd.id)
        j = self.first.get(key)
        if j is not None:  # a duplicate of a job of this batch: ignored, whatever the mode
            self.ignored.append((i, ids[j], None))
            return ids[j]
        found, rec = self.core.dedup_match(spec, self.now)
        if found is not None:
            if not self.core.dedup_replaces(spec, rec):
                self.ignored.append((i, found, rec))
                return found
            self.replaced[i] = (found, None)
        self.first[key] = i
        return None

    def replace(self, specs: Sequence[JobSpec]) -> None:
        """Remove the delayed jobs that jobs of the batch take the place of."""
        for i, (old, _) in self.replaced.items():
            self.replaced[i] = (old, self.core.dedup_replace(specs[i], old, self.now))

    def done(
        self, specs: Sequence[JobSpec], ids: list[int], created: list[bool]
    ) -> list[tuple[JobRecord, bool]]:
        """Set the keys of the jobs created, note the duplicates; the batch's result."""
        core, now = self.core, self.now
        jobs = core.jobs
        for i, spec in enumerate(specs):
            if created[i] and spec.deduplication is not None:
                old, expires = self.replaced.get(i, (None, None))
                core.dedup_added(spec, jobs[ids[i]], old, expires, now)
        out = [(jobs.get(ids[i]), created[i]) for i in range(len(specs))]
        for i, job_id, rec in self.ignored:
            kept = jobs[job_id] if rec is None else rec
            core.dedup_ignored(specs[i], job_id, kept, now)
            out[i] = (kept, False)
        return out  # type: ignore[return-value]  # every None was a duplicate, replaced


def _related(spec: JobSpec) -> bool:
    """Whether the spec's job refers to other jobs: a parent, prerequisites, a barrier."""
    return (
        spec.parent_id is not None
        or spec.parent_ref is not None
        or bool(spec.depends_on_job_ids)
        or bool(spec.depends_on_batch_refs)
        or bool(spec.depends_on_tags)
    )


def _flush(
    core: Admission, runs: dict[tuple[QueueState, str | None, int, bool], list[tuple[int, int]]]
) -> None:
    """Runs of plain waiting jobs join their lines (a group's, or the queue's) and their
    counts, each in one step; `runs` is left empty."""
    for (qs, group, priority, _lifo), pending in runs.items():
        if group is None:
            qs.waiting.extend(priority, pending)
        else:
            core.grouped(qs).extend(group, priority, pending)
        qs.counts[W] += len(pending)
    runs.clear()


#: `JobRecord`'s fields in the order `_row` builds them (checked against the record's).
_ROW_FIELDS: Final = (
    "id", "name", "queue", "data", "state", "priority", "tags", "run_at", "attempts",
    "created_at", "attempts_started", "attempts_made", "stalled_counter", "progress",
    "return_value", "failed_reason", "stacktrace", "logs", "processed_at", "finished_at",
    "parent_id", "depends_on_job_ids", "depends_on_tags", "idempotency_key", "backoff",
    "timeout", "lifo", "remove_on_complete", "remove_on_fail", "max_started_attempts",
    "on_child_failure", "order", "lock_token", "lock_expires_at", "max_stalled_count",
    "children", "trace_context", "scheduler_id", "deduplication_id",
    "group",
)  # fmt: skip
if _ROW_FIELDS != FIELD_NAMES:  # pragma: no cover - a field added to JobRecord: add it here
    raise AssertionError(f"admission builds rows of {_ROW_FIELDS}, records have {FIELD_NAMES}")


def _row(
    spec: JobSpec,
    job_id: int,
    name: str,
    data: bytes,
    state: JobState,
    run_at: float | None,
    now: float,
    parent_id: int | None,
    deps: tuple[int, ...],
    order: int,
) -> tuple[Any, ...]:
    """A new job's every field in `FIELD_NAMES` order: its record is made from it, and an
    ``add`` change record is it (what `JobRecord.row` gives)."""
    return (
        job_id, name, spec.queue, data, state, spec.priority, spec.tags, run_at,
        spec.attempts, now, 0, 0, 0, None, None, None, (), (), None, None, parent_id, deps,
        spec.depends_on_tags, spec.idempotency_key, spec.backoff, spec.timeout, spec.lifo,
        spec.remove_on_complete, spec.remove_on_fail, spec.max_started_attempts,
        spec.on_child_failure, order, None, None, 1, None, spec.trace_context,
        spec.scheduler_id, None if spec.deduplication is None else spec.deduplication.id,
        spec.group,
    )  # fmt: skip


def _batch_tags(specs: Sequence[JobSpec]) -> dict[str, list[int]]:
    """The indexes of a batch's specs, per tag."""
    by_tag: dict[str, list[int]] = {}
    for i, spec in enumerate(specs):
        for tag in spec.tags:
            by_tag.setdefault(tag, []).append(i)
    return by_tag


def _batch_holders(
    specs: Sequence[JobSpec], by_tag: dict[str, list[int]], barrier: frozenset[str]
) -> list[int]:
    """Indexes of the batch's specs whose tags hold `barrier`, found from its rarest tag."""
    rarest = min(barrier, key=lambda tag: len(by_tag.get(tag, ())))
    return [j for j in by_tag.get(rarest, ()) if barrier <= frozenset(specs[j].tags)]


def _creation_order(specs: Sequence[JobSpec], created: list[bool]) -> list[int]:
    """Indexes of the specs to create, each after the batch jobs it waits on: its
    prerequisites, its parent, and the holders of its barrier. (Waits in a circle were
    refused already; a guard still keeps this from looping.)"""
    by_tag: dict[str, list[int]] = {}
    for i, spec in enumerate(specs):
        for tag in spec.tags:
            by_tag.setdefault(tag, []).append(i)

    def before(i: int) -> list[int]:
        spec = specs[i]
        out = list(spec.depends_on_batch_refs)
        if spec.parent_ref is not None:
            out.append(spec.parent_ref)
        if spec.depends_on_tags:
            barrier = frozenset(spec.depends_on_tags)
            rarest = min(barrier, key=lambda tag: len(by_tag.get(tag, ())))
            out.extend(
                j for j in by_tag.get(rarest, ()) if j != i and barrier <= frozenset(specs[j].tags)
            )
        return out

    order: list[int] = []
    state = [0] * len(specs)  # 0 new, 1 in progress, 2 placed
    for root in range(len(specs)):
        if state[root]:
            continue
        state[root] = 1
        stack = [(root, iter(before(root)))]
        while stack:
            node, pending = stack[-1]
            nxt = next(pending, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                if created[node]:
                    order.append(node)
            elif state[nxt] == 0:
                state[nxt] = 1
                stack.append((nxt, iter(before(nxt))))
    return order


def _check_batch_cycles(specs: Sequence[JobSpec]) -> None:
    """Reject a batch whose `batch_ref` edges form a cycle (existing jobs cannot close one)."""
    state = [0] * len(specs)  # 0 new, 1 on the path, 2 done
    for start in range(len(specs)):
        if state[start]:
            continue
        stack: list[tuple[int, Iterator[int]]] = [(start, iter(specs[start].depends_on_batch_refs))]
        state[start] = 1
        while stack:
            node, refs = stack[-1]
            nxt = next(refs, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state[nxt] == 1:
                raise InvalidDependencyError(
                    f"jobs[{start}].depends_on: batch_ref edges form a cycle through jobs[{nxt}]"
                )
            elif state[nxt] == 0:
                state[nxt] = 1
                stack.append((nxt, iter(specs[nxt].depends_on_batch_refs)))


__all__ = ["Admission"]
