"""`Simulation`: a real `Runtime` on a simulated journal and a virtual clock, with faults.

Theory of operation
-------------------
Each *life* of the simulated process is one `Runtime` given ``journal=`` a simulated journal
(actorq._simulation_journals) and a fresh `VirtualClock` started where the previous life's
clock stopped. The runtime runs in a *host* task of the simulation's own task group, so
`crash()` can cancel it from the outside exactly as a dying process stops: no graceful
shutdown, no final fsync (the journal is abandoned). `restart()` opens a new life on the
same journal: it is recovered and replayed, and jobs active at the crash count as stalled. A
journal error (an injected fault) kills the runtime loudly: the host records the death.

``journal="file"`` (the default) is the file journal over a `persistence.SimFileSystem`,
which knows written from synced bytes: a crash drops every unsynced byte, and so does the
next `restart()` after a death, as the process would have died. ``journal="database"`` is a
`SimDatabase` with the journal in PostgreSQL's semantics: each life takes the lease with the
next epoch, each commit is one transaction fenced by it, and the database keeps every commit
through any crash. Its faults: a commit refused (nothing of it written), a connection lost
under a commit (the journal looks the batch up and writes it only if it did not land), and
`leader_change()`, a new life leading while the old one still runs, whose next commit is
fenced (it stops).

Both journals commit on the event loop (no worker thread), so the runtime's interleavings
depend on nothing but the event loop, and every committed batch is also applied to a
*shadow* `CoreState`: the state a replay of the durable journal builds. That gives four
invariants no runtime state alone can give:

* replay-exact: when idle, the live state equals the shadow; after a crash the replayed state
  equals the shadow of the life that crashed (under ``fsync="always"``; the next job id may
  start further on, past the journal's high-water mark);
* no-id-reused: after a restart, job ids start past every id committed before, under any
  fsync policy;
* no-acked-job-lost: every job whose `add` returned is in the replayed state unless a
  committed change removed it (one acknowledged by a leader that was already fenced too);
* reply-after-durable: whatever a caller or a processor receives is already in the shadow.

Fault decisions for a job (`maybe_fail`, `maybe_delay`) are drawn from a generator seeded by
(seed, kind, job id, attempt), so they do not depend on which task asked first.
"""

from __future__ import annotations

import inspect
import random
import sys
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

import anyio
import attrs
from anyio.abc import TaskGroup, TaskStatus

from persistence import SimFileSystem

from ._core import CoreState
from ._core.commands import Change
from ._core.events import Event
from ._exceptions import InvalidOptionError, RuntimeClosedError
from ._invariants import (
    InvariantViolation,
    Observation,
    check_core,
    first_differing_job,
    snapshot_difference,
)
from ._job import Job
from ._journal import open_changelog
from ._runtime import Runtime
from ._simulation_history import Faults, HistoryEntry, InjectedFault, describe_error, event_detail
from ._simulation_journals import Recorder, SimDatabase, SimDatabaseJournal, SimFileJournal
from .clock import VirtualClock

__all__ = ["Simulation"]

Setup = Callable[[Runtime], Awaitable[None] | None]


@attrs.define(eq=False)
class _Life:
    """One life of the simulated process: its runtime and journal, and its host task's."""

    rt: Runtime
    journal: SimFileJournal | SimDatabaseJournal
    alive: bool = False
    stop: anyio.Event = attrs.Factory(anyio.Event)
    done: anyio.Event = attrs.Factory(anyio.Event)
    scope: anyio.CancelScope | None = None
    #: Calls and waits of the simulation's task, cancelled if this life dies under them.
    guards: set[anyio.CancelScope] = attrs.Factory(set)


class Simulation:
    """Run a real `Runtime` under a virtual clock on a simulated disk, with injected faults.

    Use as ``async with Simulation(seed=1) as sim:``; `sim.runtime` is the current runtime
    (a new one after each `restart`), `sim.clock` its clock. ``setup(rt)`` (sync or async)
    runs on every start, to register workers again after a restart. With ``autojump=False``
    time moves only through `advance` (what a swarm wants); with the default it also jumps
    whenever the runtime is idle, so ``await job.wait_until_finished()`` returns at once.

    Call `crash` and `restart` from the task that entered the block (not from a job).
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        path: str = "sim",
        fsync: str = "always",
        autojump: bool = True,
        start: float = 0.0,
        faults: Faults | None = None,
        setup: Setup | None = None,
        snapshot_bytes: int = 1 << 20,
        shutdown_timeout: float = 10.0,
        check_every_step: bool = True,
        journal: str = "file",
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed={seed!r} must be an int")
        if journal not in ("file", "database"):
            raise InvalidOptionError("journal", journal, "must be 'file' or 'database'")
        if fsync not in ("always", "never"):
            raise ValueError(
                f"fsync={fsync!r}: a simulation runs 'always' or 'never' ('interval' syncs"
                " from a thread, which no seed can replay)"
            )
        self.seed = seed
        self.journal = journal
        self.path = path
        self.fsync = fsync
        self.autojump = autojump
        self.faults = faults if faults is not None else Faults()
        self.setup = setup
        self.snapshot_bytes = snapshot_bytes
        self.shutdown_timeout = shutdown_timeout
        self.check_every_step = check_every_step
        #: Seeded source for the test's own choices (and the swarm's workload).
        self.random = random.Random(seed)
        self.fs = SimFileSystem()
        #: The database a ``journal="database"`` simulation leads (every life the same one).
        self.db = SimDatabase()
        self.clock = VirtualClock(start, autojump=autojump)
        self.history: list[HistoryEntry] = []
        self.crashes = 0
        self.restarts = 0
        self.deaths = 0
        #: Batches every life ran inline (in the caller's task) and on the scheduler's loop:
        #: the two roads into the engine's one step, both taken as a default runtime takes them.
        self.inline_batches = 0
        self.loop_batches = 0
        self.leader_changes = 0
        self._life: _Life | None = None
        self._shadow = CoreState(seed=seed)
        self._deleted: set[int] = set()
        self._in_doubt: list[Change] = []
        self._recorder = Recorder(self._committed, self._doubt, self._note)
        self._acked: set[int] = set()
        self._retried: set[int] = set()
        self._held: dict[int, tuple[str, float | None]] = {}
        self._obs: Observation | None = None
        self._tg: TaskGroup | None = None
        self._fs_dirty = False  # the process died: crash the disk before the next life
        #: A violation seen inside the runtime's tasks, raised at the next check.
        self._pending: InvariantViolation | None = None

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        _seed_trio_scheduler(self.seed)
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        try:
            await self._start_life()
        except BaseException:
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        tg = self._tg
        assert tg is not None
        try:
            life = self._life
            if life is not None and life.alive:
                if exc_type is None:
                    if not self.autojump:
                        tg.start_soon(self.clock.drive)  # let the shutdown deadline pass
                    life.stop.set()
                    await life.done.wait()
                else:
                    await self._kill()
        finally:
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)
        return None

    @property
    def runtime(self) -> Runtime:
        """The runtime of the current life."""
        if self._life is None:
            raise RuntimeError("the simulation is not started; use `async with Simulation()`")
        return self._life.rt

    @property
    def alive(self) -> bool:
        """Whether the current runtime is running (False after a crash or a death)."""
        return self._life is not None and self._life.alive

    async def _start_life(self) -> None:
        if self._fs_dirty:
            self.fs.crash()
            self._fs_dirty = False
        first = self._life is None
        self.clock = VirtualClock(self.clock.now(), autojump=self.autojump)
        journal = self._open_journal()
        replayed = CoreState(seed=self.seed)
        replayed.apply_changes(journal.replayed)
        # As the runtime's guard_ids does: ids start past every one handed out before.
        replayed.next_id = max(replayed.next_id, journal.id_high_water)
        if not first:
            self._check_replay(replayed)
        # Deletions of an in-doubt batch that did reach the disk are real from now on.
        self._deleted.update(
            c[1] for c in self._in_doubt if c[0] == "del" and c[1] not in replayed.jobs
        )
        self._in_doubt = []
        self._shadow = replayed
        if self.journal == "file":
            self._held.clear()  # stalled as the next life starts; on a database they expire
        self._obs = None
        rt = Runtime(
            journal=journal,
            clock=self.clock,
            seed=self.seed,
            shutdown_timeout=self.shutdown_timeout,
        )
        self._life = life = _Life(rt, journal)
        assert self._tg is not None
        await self._tg.start(self._host, life)
        if self.setup is not None and life.alive:
            result = self.setup(rt)
            if inspect.isawaitable(result):
                await result

    def _open_journal(self) -> SimFileJournal | SimDatabaseJournal:
        if self.journal == "database":
            return SimDatabaseJournal(self.db, self._recorder, snapshot_bytes=self.snapshot_bytes)
        inner = open_changelog(
            self.path, fs=self.fs, fsync=self.fsync, snapshot_bytes=self.snapshot_bytes
        )
        if inner.torn_tail is not None:
            self._note("torn-tail-cut", detail=f"{inner.torn_tail.length} bytes")
        return SimFileJournal(inner, self._recorder)

    async def _host(self, life: _Life, *, task_status: TaskStatus[None]) -> None:
        rt = life.rt
        started = died = False
        try:
            with anyio.CancelScope() as scope:
                life.scope = scope
                async with rt:
                    stream = rt.events()
                    try:
                        life.alive = started = True
                        task_status.started()
                        async with anyio.create_task_group() as tg:
                            tg.start_soon(self._pump, stream)
                            # Asked to stop, or the runtime stopped of itself (its journal
                            # failed): leaving the block raises what stopped it.
                            tg.start_soon(_cancel_when, life.stop, tg.cancel_scope)
                            await rt.wait_stopped()
                            tg.cancel_scope.cancel()
                    finally:
                        stream.close()
        except Exception as exc:
            if not started and not isinstance(exc, RuntimeClosedError):
                raise
            self.deaths += 1  # its journal failed, maybe on its first commit as it started
            died = True
            self._fs_dirty = True
            self._note("died", detail=describe_error(exc))
        finally:
            stats = rt.statistics()
            self.inline_batches += stats.inline_batches
            self.loop_batches += stats.loop_batches
            life.alive = False
            for guard in life.guards:
                guard.cancel()
            life.done.set()
            if died and not started:
                task_status.started()

    async def _pump(self, stream: Any) -> None:
        async for event in stream:
            self._observe_event(event)

    async def _kill(self) -> None:
        life = self._life
        if life is None:
            return
        life.journal.abandoned = True
        if life.alive and life.scope is not None:
            life.scope.cancel()
            await life.done.wait()

    async def crash(self) -> None:
        """Kill the runtime abruptly and drop every byte not synced (a power loss; on a
        database journal, only the process dies: the database keeps what it committed)."""
        await self._kill()
        self.fs.crash()
        self._fs_dirty = False
        self.crashes += 1
        self._note("crash")

    async def restart(self) -> Runtime:
        """Start a new runtime on the same disk: recover, replay, stall what was active.

        Checks the crash invariants (nothing acknowledged lost, replay exact) on the way.
        """
        if self.alive:
            raise RuntimeError("the runtime is running: crash() it before restart()")
        self.restarts += 1
        await self._start_life()
        self._note("restart", detail=f"{len(self.runtime._core.jobs)} jobs")
        if self.check_every_step:
            await self.check()
        return self.runtime

    # ------------------------------------------------------------------ time

    async def _guarded(self, fn: Callable[[], Awaitable[None]]) -> None:
        life = self._life
        if life is None or not life.alive:
            return
        with anyio.CancelScope() as scope:
            life.guards.add(scope)
            try:
                await fn()
            finally:
                life.guards.discard(scope)

    def now(self) -> float:
        return self.clock.now()

    async def call(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """Await ``fn(*args, **kwargs)`` (a runtime call), or raise `RuntimeClosedError` if
        the runtime dies first: a caller whose batch failed to commit is never left hanging.
        """
        life = self._life
        if life is None:
            raise RuntimeClosedError("the simulated runtime is down: restart() it")
        return await self._call_in(life, fn, *args, **kwargs)

    async def _call_in(
        self, life: _Life, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
    ) -> Any:
        if not life.alive:
            raise RuntimeClosedError("the simulated runtime is down: restart() it")
        result: Any = None
        with anyio.CancelScope() as scope:
            life.guards.add(scope)
            try:
                result = await fn(*args, **kwargs)
            finally:
                life.guards.discard(scope)
        if scope.cancelled_caught:
            raise RuntimeClosedError("the simulated runtime died during the call")
        return result

    async def advance(self, seconds: float) -> None:
        """Move virtual time forward, stopping at every deadline (returns early on a death)."""
        clock = self.clock
        target = clock.now() + seconds
        await self._guarded(lambda: clock.advance_to(target))
        if not self.alive and clock.now() < target:
            self.clock = VirtualClock(target, autojump=self.autojump)

    async def settle(self) -> None:
        """Let the runtime run until it is idle at the current time."""
        clock = self.clock
        await self._guarded(clock.run_until_idle)

    async def check(self) -> None:
        """`settle`, then `assert_invariants`."""
        await self.settle()
        self.assert_invariants()

    # ------------------------------------------------------------------ faults

    def _draw(self, kind: str, job: Job) -> random.Random:
        return random.Random(f"{self.seed}/{kind}/{job.id}/{job.attempts_started}")

    async def maybe_fail(self, job: Job) -> None:
        """Call from a processor: raise `InjectedFault` with probability ``faults.job_error``
        (decided by the seed, the job and its attempt)."""
        try:
            self._observe_job(job, "dispatch")
        except InvariantViolation as exc:
            self._pending = self._pending or exc  # raised at the next check, not in the job
        if self._draw("fail", job).random() < self.faults.job_error:
            self._note("fault", job.id, f"job error, attempt {job.attempts_started}")
            raise InjectedFault(f"injected failure (seed {self.seed})")

    async def maybe_delay(self, job: Job) -> None:
        """Call from a processor: sleep up to ``faults.max_delay`` virtual seconds with
        probability ``faults.slow_job``."""
        draw = self._draw("delay", job)
        if draw.random() < self.faults.slow_job:
            seconds = round(draw.random() * self.faults.max_delay, 3)
            self._note("fault", job.id, f"slow job, {seconds:g}s")
            await self.clock.sleep(seconds)

    def _needs(self, journal: str, fault: str) -> None:
        if self.journal != journal:
            raise RuntimeError(f"{fault} is a fault of journal={journal!r}, not {self.journal!r}")

    def fail_next_fsync(self) -> None:
        """The next fsync fails: the runtime dies loudly; `restart()` brings it back."""
        self._needs("file", "fail_next_fsync")
        self.fs.fail_next_fsync()
        self._note("fault", detail="next fsync fails")

    def tear_next_write(self, keep: int) -> None:
        """The next write keeps only `keep` bytes if a crash comes before its fsync."""
        self._needs("file", "tear_next_write")
        self.fs.tear_next_write(keep)
        self._note("fault", detail=f"next write torn at {keep} bytes")

    def fail_next_commit(self) -> None:
        """The database refuses the next commit, writing nothing of it: the runtime dies
        loudly; `restart()` brings it back (``journal="database"``)."""
        self._needs("database", "fail_next_commit")
        self.db.faults.append("error")
        self._note("fault", detail="next commit refused")

    def lose_next_connection(self, *, landed: bool) -> None:
        """The connection drops under the next commit, after the database committed it
        (`landed`) or before it reached it: the journal reconnects, looks the batch up, and
        writes it again only if it did not land (``journal="database"``)."""
        self._needs("database", "lose_next_connection")
        self.db.faults.append("lost-landed" if landed else "lost-absent")
        self._note("fault", detail=f"connection lost under the next commit, landed={landed}")

    async def leader_change(self) -> Runtime:
        """A new life takes the database's lease (epoch + 1) while the current one still
        runs, as when a leader paused past its lease: the new life replays and serves; the
        old one, resumed, has a caller add a job, whose commit is fenced, and stops. Returns
        the new runtime (``journal="database"``)."""
        self._needs("database", "leader_change")
        old = self._life
        if old is None or not old.alive:
            raise RuntimeError("no leader runs: restart() it")
        self.leader_changes += 1
        await self._start_life()
        self._note("leader-change", detail=f"epoch {self.db.epoch} took the lease")
        try:
            job = await self._call_in(old, old.rt.queue("stale").add, "stale", None)
        except RuntimeClosedError as exc:
            self._note("fenced", detail=describe_error(exc.__cause__ or exc))
            await old.done.wait()
        else:  # the old leader acknowledged it: the job must survive like any other
            self.acknowledged(job, "add-stale")
        if self.check_every_step:
            await self.check()
        return self.runtime

    # ------------------------------------------------------------------ history

    def _note(self, kind: str, job: int | None = None, detail: str = "") -> None:
        self.history.append(HistoryEntry(self.clock.now(), kind, job, detail))

    def record(self, kind: str, job: int | None = None, detail: str = "") -> None:
        """Add your own operation to the history."""
        self._note(kind, job, detail)

    def trace(self, last: int = 20) -> str:
        """The last operations of the history, one a line."""
        return "\n".join(str(entry) for entry in self.history[-last:])

    def acknowledged(self, job: Job, what: str = "add") -> Job:
        """Record that `job`'s add returned: it must survive any crash from now on."""
        self._acked.add(job.id)
        self._note(what, job.id, f"{job.queue}/{job.name} {job.state.value}")
        self._observe_job(job, what)
        return job

    async def add(self, queue: str, name: str, data: Any = None, **options: Any) -> Job:
        """`runtime.queue(queue).add(...)`, recorded and checked as acknowledged."""
        job: Job = await self.call(self.runtime.queue(queue).add, name, data, **options)
        return self.acknowledged(job)

    def retried_by_hand(self, job_id: int) -> None:
        """Exempt a job retried by hand from the attempts bound."""
        self._retried.add(job_id)
        self._note("retry", job_id)

    def lock_taken(self, job: Job) -> None:
        """Record that a manual consumer holds `job` (from `get_next_job`)."""
        now = self.clock.now()
        token = job.lock_token
        assert token is not None
        held = self._held.get(job.id)
        if held is not None and held[0] != token and (held[1] is None or held[1] > now):
            raise self._violation(
                "single-lock-holder",
                f"locked by {token} while {held[0]} holds a lock valid until {held[1]}",
                job.id,
            )
        self._held[job.id] = (token, job.lock_expires_at)
        self._note("lock", job.id, f"{token} until {job.lock_expires_at}")

    def lock_released(self, job_id: int, token: str, accepted: bool) -> None:
        """Record a manual consumer's finish under `token`: accepted, or rejected."""
        held = self._held.get(job_id)
        if accepted and (held is None or held[0] != token):
            current = held[0] if held is not None else None
            raise self._violation(
                "single-lock-holder",
                f"finish under {token} accepted while the lock is {current}'s",
                job_id,
            )
        if accepted:
            del self._held[job_id]
        self._note("finish" if accepted else "finish-rejected", job_id, token)

    # ------------------------------------------------------------------ invariants

    def _violation(self, invariant: str, detail: str, job_id: int | None) -> InvariantViolation:
        detail = f"{detail}\nlast operations:\n{self.trace()}"
        return InvariantViolation(
            invariant, detail, job_id=job_id, seed=self.seed, time=self.clock.now()
        )

    def _doubt(self, changes: list[Change]) -> None:
        self._in_doubt = list(changes)

    def _committed(self, changes: list[Change]) -> None:
        self._shadow.apply_changes(changes)
        for change in changes:
            if change[0] == "del":
                self._deleted.add(change[1])

    def _observe_job(self, job: Job, what: str) -> None:
        rec = self._shadow.jobs.get(job.id)
        if rec is None and job.id not in self._deleted:
            raise self._violation(
                "reply-after-durable", f"{what} seen before its batch was committed", job.id
            )
        if what == "dispatch" and rec is not None and rec.attempts_started < job.attempts_started:
            raise self._violation(
                "reply-after-durable",
                f"attempt {job.attempts_started} dispatched; the journal has "
                f"{rec.attempts_started}",
                job.id,
            )

    def _observe_event(self, event: Event) -> None:
        job_id = getattr(event, "job_id", None)
        if job_id is not None and job_id not in self._shadow.jobs and job_id not in self._deleted:
            self._pending = self._pending or self._violation(
                "reply-after-durable", f"event {type(event).__name__} before its commit", job_id
            )
        detail = event_detail(event)
        self._note(type(event).__name__, job_id, detail)

    def _check_replay(self, replayed: CoreState) -> None:
        always = self.fsync == "always" or self.journal == "database"
        doubtful = {change[1] for change in self._in_doubt if change[0] == "del"}
        for job_id in sorted(self._acked) if always else ():
            if job_id not in replayed.jobs and job_id not in self._deleted | doubtful:
                raise self._violation(
                    "no-acked-job-lost", "acknowledged, not removed, missing after replay", job_id
                )
        if replayed.next_id < self._shadow.next_id:
            raise self._violation(
                "no-id-reused",
                f"ids restart at {replayed.next_id}, but ids up to {self._shadow.next_id - 1} "
                "were handed out",
                replayed.next_id,
            )
        if not always:
            return
        after = replayed.snapshot()

        def before(core: CoreState) -> dict[str, Any]:
            # A restart may start ids further on (past the high-water mark), never back.
            return {**core.snapshot(), "next_id": after["next_id"]}

        expected = before(self._shadow)
        if expected != after and self._in_doubt:
            # The batch whose commit failed may have reached the disk whole.
            applied = self._shadow.rebuild_indexes()
            applied.apply_changes(self._in_doubt)
            expected = before(applied)
        if expected != after:
            raise self._violation(
                "replay-exact",
                snapshot_difference(expected, after),
                first_differing_job(expected, after),
            )

    def assert_invariants(self) -> None:
        """Check every invariant on the current state (call when idle: after `settle`)."""
        if self._pending is not None:
            raise self._pending
        if not self.alive:
            return
        core = self.runtime._core
        try:
            self._obs = check_core(
                core,
                now=self.clock.now(),
                seed=self.seed,
                previous=self._obs,
                retried=self._retried,
            )
        except InvariantViolation as exc:
            raise self._violation(exc.invariant, exc.detail, exc.job_id) from None
        live, shadow = core.snapshot(), self._shadow.snapshot()
        if live != shadow:
            raise self._violation(
                "replay-exact",
                "live state differs from the journal's: " + snapshot_difference(shadow, live),
                first_differing_job(shadow, live),
            )
        for job_id in self._acked:
            if job_id not in core.jobs and job_id not in self._deleted:
                raise self._violation("no-acked-job-lost", "acknowledged job is gone", job_id)

    def __repr__(self) -> str:
        state = "alive" if self.alive else "down"
        return (
            f"<Simulation seed={self.seed} {state} t={self.clock.now():g} ops={len(self.history)}>"
        )


def _seed_trio_scheduler(seed: int) -> None:
    """Trio shuffles each batch of runnable tasks with a module-level generator; seed it so
    a simulation on trio replays the same interleaving too."""
    if "trio" not in sys.modules:
        return
    try:
        import sniffio  # noqa: PLC0415

        if sniffio.current_async_library() != "trio":
            return
        from trio._core import _run  # noqa: PLC0415

        _run._r.seed(seed)
    except Exception:  # a trio without it: interleavings may vary, results still checked
        return


async def _cancel_when(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
