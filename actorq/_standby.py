"""A runtime's life as a warm standby of a journal in PostgreSQL (``?actorq_standby=on``).

Theory of operation
-------------------
A `Runtime` whose URL asks for a standby opens the journal as usual; when another runtime
holds the lease, `open_log` says so (None) and the runtime enters as a standby instead of
waiting: `Standby.run`, a task of the runtime's outer task group, runs three things.

* **The leader's client.** A `RemoteRuntime` of the same URL (it finds the leader through
  the address in the lease row, at every connection, with the runtime's ``token`` and
  ``ssl_context``) carries the runtime's calls while it stands by: `Runtime._exchange`,
  `_notify`, `events` and the processor workers go to it while the runtime has no engine.
  A processor worker runs here, as a client's does: its jobs are locked on the leader for
  ``lock_duration`` and renewed by the client; worker tokens take the client's random
  prefix, unique among the leader's clients. A sandboxed worker's children are clients of
  the journal's URL themselves, so they follow whichever runtime leads. The block is
  entered once the client is connected (or the runtime leads), so nothing the application
  sends first is dropped.
* **The tail** (`LogTail`): the log read by seq into a core of the runtime's own, on a
  thread, woken by the leader's NOTIFY.
* **The candidacy**: `open_pg` waiting for the lease, withdrawn when the runtime is asked to
  stop.

When the lease is taken (the leader released it or let it lapse) the standby takes over
(`_take_over`): the client goes first — calls in flight on it fail with
`ConnectionLostError(may_have_applied=True)`, as at any reconnection; calls not yet sent
(waiting for a connection, or made from then on) wait and then go to the new engine, since
they were never applied anywhere. The tail stops, and the journal replays only the batches
after the tail's last (``resume_after``; from the snapshot when compaction dropped the next
one), then the runtime starts its engine on that core: its clock moves onto the database's
(`journal_clock`), on a leased journal its processors hold timed locks (`_lease_locks`), it
listens and advertises itself, and the jobs that were active stall (as their timed locks
expire). Event streams move from the client to the engine (the standby is their hub).
Last, the jobs its own workers held go back to waiting at once (`ReleaseHeld`: their runs,
whose outcome the old leader can no longer journal, were cancelled with the client, so
nothing runs them), and each processor worker gets a new actor on the engine under the same
token: those jobs run again here, at least once, as after any takeover.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from ._actors.messages import Request
from ._actors.subscription import EventStream
from ._api import CLOSED, RUNNING, Processor
from ._core import CoreState
from ._core import commands as c
from ._exceptions import ConnectionLostError, InvalidOptionError
from ._journal_pg import LogCompactedError, PostgresChangeLog, PostgresJournalError
from ._journal_pg_lease import parse_url
from ._journal_pg_tail import LogTail
from ._remote.client import _GONE, HostRefusedError, NotSentError, RemoteRuntime
from ._remote.wire import ProtocolError
from ._startup import journal_clock, load, open_pg

if TYPE_CHECKING:
    from ._actors.worker import WorkerActor
    from ._remote.sandbox import Sandbox
    from ._runtime import Runtime
    from ._worker import Worker

log = logging.getLogger("actorq.journal")

#: Seconds between a standby's attempts to wait for the lease while the database is gone.
RETRY = 1.0


class Standby:
    """See the module docstring."""

    def __init__(self, rt: Runtime, url: str) -> None:
        self.rt = rt
        self.url = url
        self.client = RemoteRuntime(url, token=rt._host_token, ssl_context=rt._ssl)
        # Its workers register with the leader: their tokens must be unique across its
        # clients (each standby's own), and they keep them once it leads.
        rt._token_prefix = self.client._token_prefix
        self.tail = LogTail(parse_url(url), seed=rt._seed)
        #: Set once the block may be entered: the client is connected, or the runtime leads
        #: (or it stopped: the runtime's crash says why).
        self.ready = anyio.Event()
        #: Set once the runtime's engine serves (or the standby stopped without one).
        self.settled = anyio.Event()
        self._processors: dict[str, Processor] = {}
        #: The event streams subscribed on this runtime (through the client, then the engine).
        self._streams: list[EventStream] = []

    # ------------------------------------------------------------------ the carrier

    async def send(self, req: Request) -> Any:
        """Carry `req` to the leader; once this runtime leads (or when the call could not
        be sent before the switch), to its own engine."""
        if not self.settled.is_set():
            try:
                req.result = await self.client._send(req.command)
            except NotSentError:
                await self.settled.wait()
            else:
                req.replied = True
                return req.result
        return await self.rt._exchange(req)

    def notify(self, command: c.Command) -> None:
        self.client._notify(command)

    def events(self, buffer: int) -> EventStream:
        """The leader's events through the client; once this runtime leads, its own engine's
        (the stream moves over at the takeover: what the dead leader published after the
        client lost it is not in it, as after any reconnection)."""
        return EventStream(self, buffer)

    def subscribe(self, stream: EventStream) -> None:
        self._streams.append(stream)
        self._hub().subscribe(stream)

    def unsubscribe(self, stream: EventStream) -> None:
        if stream in self._streams:
            self._streams.remove(stream)
        self._hub().unsubscribe(stream)

    def _hub(self) -> Any:
        engine = self.rt._engine
        return self.client if engine is None else engine

    def start_processor(self, processor: Processor) -> WorkerActor:
        self._processors[processor.token] = processor
        return self.client._start_processor(processor)

    def start_sandbox(self, sandbox: Sandbox) -> None:
        """Its children are clients of whichever runtime leads (the journal's URL): the
        leader now, this runtime once it took over, which they then reach at its listener."""
        rt = self.rt
        if rt._listen is None:
            raise InvalidOptionError(
                "processes",
                sandbox.processes,
                "a standby runs sandboxed processors only when it listens (listen=): its "
                "children reach it there once it leads",
            )
        assert rt._outer is not None
        rt._outer.start_soon(sandbox.run, self.url, rt._host_token)

    async def close_runner(self, worker: Worker[Any, Any]) -> None:
        self._processors.pop(worker.token, None)
        await self.client._close_runner(worker)

    # ------------------------------------------------------------------ its life

    async def enter(self) -> None:
        """Start standing by, in the runtime's outer task group (entered here, by the task
        that enters the runtime); return once the client is connected or the runtime leads,
        or raise what stopped it first."""
        rt = self.rt
        rt._state = RUNNING
        try:
            rt._outer = await rt._stack.enter_async_context(anyio.create_task_group())
            rt._outer.start_soon(self.run)
            await self.ready.wait()
        except BaseException:
            rt._state = CLOSED
            if rt._outer is not None:
                rt._outer.cancel_scope.cancel()
            await rt._stack.aclose()
            raise
        if rt._crash is not None:
            rt._state = CLOSED
            rt._outer.cancel_scope.cancel()
            await rt._stack.aclose()
            raise rt._crash

    async def run(self) -> None:
        rt = self.rt
        try:
            journal: PostgresChangeLog | None = None
            await self.client._begin(await self._first_link())
            self.tail.start()
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._ready_when_linked)
                    journal = await self._candidacy()
                    tg.cancel_scope.cancel()
                if journal is not None:  # its subscribers go over to the engine
                    for stream in self._streams:
                        self.client.unsubscribe(stream)
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self.tail.stop)
                await self._leave_client()  # its task group's scope is the current one here
            if journal is not None:
                await self._take_over(journal)
        except BaseException as exc:
            if not isinstance(exc, anyio.get_cancelled_exc_class()) and rt._crash is None:
                rt._crash = exc
            if rt._tg is not None:  # the engine started before it failed: it stops too
                rt._tg.cancel_scope.cancel()
            if not isinstance(exc, Exception):
                raise
        finally:
            self.ready.set()
            self.settled.set()
            if rt._tg is None:  # it stopped before its engine ran: nothing else will say so
                rt._stopped.set()
                for stream in self._streams:
                    stream.end()

    async def _first_link(self) -> Any:
        """A first connection to the leader, or None when none can be made now (the client
        keeps trying). A leader that refuses this runtime (its ``token``) is an error: the
        block fails at once rather than wait for ever."""
        try:
            return await self.client._open()
        except HostRefusedError:
            raise
        except (TimeoutError, ProtocolError, *_GONE):
            return None

    async def _ready_when_linked(self) -> None:
        await self.client._linked.wait()
        self.ready.set()

    async def _candidacy(self) -> PostgresChangeLog | None:
        """Wait for the lease; None when the runtime was asked to stop first."""
        rt = self.rt
        journal: Any = None
        with anyio.CancelScope() as scope:

            async def stop_asked() -> None:
                await rt._stop_asked.wait()
                scope.cancel()

            async with anyio.create_task_group() as tg:
                tg.start_soon(stop_asked)
                journal = await self._wait_for_lease()
                tg.cancel_scope.cancel()
        if journal is None:  # asked to stop: the workers finish as a client's do
            for worker in list(rt._workers.values()):
                with anyio.move_on_after(rt.shutdown_timeout):
                    await worker.close()
        assert journal is None or isinstance(journal, PostgresChangeLog)
        return journal

    async def _wait_for_lease(self) -> Any:
        """`open_pg`, waiting as long as it takes; the database gone meanwhile (a restart,
        a failover) is waited out, since the standby serves through the leader anyway."""
        import psycopg  # noqa: PLC0415 - the postgresql extra

        while True:
            try:
                return await open_pg(self.url, self.rt.fsync, wait=math.inf)
            except (psycopg.OperationalError, PostgresJournalError) as exc:
                log.warning("journal %s: the standby's candidacy retries: %s", self.client.url, exc)
                await anyio.sleep(RETRY)

    async def _leave_client(self) -> None:
        """Close the leader's client: calls in flight on it may have been applied there."""
        client = self.client
        if client._tg is None:
            return
        client._fail_pending(
            ConnectionLostError(
                f"the standby's connection to the leader of {client.url} closed during the call",
                may_have_applied=True,
            )
        )
        await client.close()

    async def _take_over(self, journal: PostgresChangeLog) -> None:
        rt = self.rt
        core, applied = self.tail.core, self.tail.applied
        journal.resume_after = applied
        try:
            await anyio.to_thread.run_sync(load, core, journal)
        except LogCompactedError:  # the log was compacted past the tail: from the snapshot
            core = CoreState(seed=rt._seed)
            journal.rewind()
            await anyio.to_thread.run_sync(load, core, journal)
        rt._core = core
        rt._journal = journal
        rt.clock = journal_clock(rt.clock, journal)
        rt._lease_locks()
        await rt._start_engine(fresh=journal.last_seq == 0)
        engine = rt._engine
        assert engine is not None
        for stream in self._streams:
            engine.subscribe(stream)
        if self._processors:
            # Their runs here were cancelled with the client: what they held goes back to
            # waiting now, before their timed locks would expire, no stall counted.
            await rt._send(c.ReleaseHeld(frozenset(self._processors)))
        for token, processor in self._processors.items():
            worker = rt._workers.get(token)
            if worker is not None:
                worker._actor = rt._run_processor(processor)
        self._processors.clear()
        self.settled.set()
