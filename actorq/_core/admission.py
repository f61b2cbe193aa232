"""Admission: `add`, which admits a batch of jobs all or nothing, and the checks it runs.

Separate from `state` because it is the one transition that reasons about a whole batch
before touching anything: references inside the batch, cycles among its `batch_ref` edges,
barrier deadlocks it would close with jobs already blocked, and the order in which its
records are created so that everything a new job waits on exists when it is indexed.
The single-job fast path at the top of `add` stays here, with the rest of `add`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .._exceptions import InvalidDependencyError, InvalidOptionError
from . import events as ev
from .records import PENDING, JobRecord, JobSpec
from .states import TERMINAL, JobState

if TYPE_CHECKING:
    from .blocking import BlockingIndex
    from .state import Change, QueueState

W, D, WC = JobState.WAITING, JobState.DELAYED, JobState.WAITING_CHILDREN
B, C, F, X = JobState.BLOCKED, JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED


class Admission:
    """`CoreState`'s batch admission (a mixin: `CoreState` provides the state)."""

    # Provided by `CoreState`; declared here for mypy.
    jobs: dict[int, JobRecord]
    next_id: int
    idempotency: dict[str, int]
    blocking: BlockingIndex
    changes: list[Change] | None
    events: list[ev.Event] | None

    if TYPE_CHECKING:

        def queue(self, name: str) -> QueueState: ...
        def _next_order(self, lifo: bool) -> int: ...
        def _insert(self, rec: JobRecord) -> None: ...
        def _set_child(
            self, parent: JobRecord, child_id: int, status: str | None, payload: Any
        ) -> None: ...

    def add(self, specs: Sequence[JobSpec], now: float) -> list[tuple[JobRecord, bool]]:
        """Add a batch atomically: every spec is checked before any is applied.

        Returns ``(record, created)`` per spec; `created` is False where an idempotency key
        matched a job that already exists (that job is returned, with its own data).
        """
        if len(specs) == 1:
            spec = specs[0]
            if (
                spec.idempotency_key is None
                and spec.parent_id is None
                and spec.parent_ref is None
                and not spec.depends_on_job_ids
                and not spec.depends_on_batch_refs
                and not spec.depends_on_tags
            ):
                # One job that waits on nothing and names nothing: none of the checks or
                # orderings below can apply (a job that cannot be blocked closes no cycle).
                job_id = self.next_id
                self.next_id = job_id + 1
                return [(self._new_record(spec, now, [], job_id), True)]
        for i, spec in enumerate(specs):
            self._check_spec(i, spec, specs)
        _check_batch_cycles(specs)
        self._check_barrier_deadlock(specs)

        # Ids follow the batch's order; records are created prerequisites (and parents)
        # first, so every job a new job waits on exists when it is indexed, here and in replay.
        ids: list[int] = []
        created: list[bool] = []
        first_with_key: dict[str, int] = {}
        next_id = self.next_id
        for i, spec in enumerate(specs):
            key = spec.idempotency_key
            existing = None
            if key is not None:
                existing = self.idempotency.get(key)
                if existing is None and key in first_with_key:
                    existing = ids[first_with_key[key]]
            if existing is not None:
                ids.append(existing)
                created.append(False)
                continue
            if key is not None:
                first_with_key[key] = i
            ids.append(next_id)
            created.append(True)
            next_id += 1
        # A flow parent waits only for children this batch creates: a child deduplicated onto
        # an existing job (idempotency key) is that job, not a new child of this parent.
        with_children = {
            spec.parent_ref
            for i, spec in enumerate(specs)
            if created[i] and spec.parent_ref is not None
        }
        for i in _creation_order(specs, created):
            self._new_record(specs[i], now, ids, ids[i], wait_children=i in with_children)
        self.next_id = next_id
        return [(self.jobs[ids[i]], created[i]) for i in range(len(specs))]

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
                raise InvalidOptionError(
                    f"{where}depends_on.job_ids", f"batch_ref({ref})", "out of the batch"
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

    def _new_record(
        self,
        spec: JobSpec,
        now: float,
        batch_ids: list[int],
        job_id: int,
        *,
        wait_children: bool = False,
    ) -> JobRecord:
        run_at = spec.run_at
        if run_at is None and spec.delay:
            run_at = now + spec.delay
        deps = spec.depends_on_job_ids + tuple(batch_ids[r] for r in spec.depends_on_batch_refs)
        parent_id = spec.parent_id if spec.parent_ref is None else batch_ids[spec.parent_ref]
        rec = JobRecord(
            id=job_id,
            name=spec.name,
            queue=spec.queue,
            data=spec.data,
            state=W,
            priority=spec.priority,
            tags=spec.tags,
            run_at=run_at,
            attempts=spec.attempts,
            created_at=now,
            parent_id=parent_id,
            depends_on_job_ids=deps,
            depends_on_tags=spec.depends_on_tags,
            idempotency_key=spec.idempotency_key,
            backoff=spec.backoff,
            timeout=spec.timeout,
            lifo=spec.lifo,
            remove_on_complete=spec.remove_on_complete,
            remove_on_fail=spec.remove_on_fail,
            max_started_attempts=spec.max_started_attempts,
            on_child_failure=spec.on_child_failure,
            scheduler_id=spec.scheduler_id,
        )
        # Not yet inserted: the index does not count this job among its barrier's holders.
        blocked = any((p := self.jobs.get(d)) is not None and p.state is not C for d in deps) or (
            bool(rec.depends_on_tags) and not self.blocking.barrier_clear(rec, counted=False)
        )
        if blocked:
            rec.state = B
        elif spec.wait_children and wait_children:
            rec.state = WC
        elif run_at is not None and run_at > now:
            rec.state = D
        else:
            rec.order = self._next_order(rec.lifo)
        self.queue(spec.queue)
        self._insert(rec)
        if self.changes is not None:
            self.changes.append(("add", rec.row()))
        if self.events is not None:
            self.events.append(ev.JobAdded(rec.id, rec.queue, rec.name, rec.state))
        if parent_id is not None:
            self._set_child(self.jobs[parent_id], rec.id, PENDING, None)
        return rec


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
