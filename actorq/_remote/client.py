"""`RemoteRuntime`: the `Runtime` API in another process, carried to a runtime host.

``async with actorq.connect("actorq://127.0.0.1:7311", token=...) as rt:`` gives the calls a
local runtime has — queues, jobs, flows, workers, events, counts — with every command sent
to the host's engine (see `host` for the messages). Handles are the same classes as a local
runtime's: only `_send` and its kin differ.

A processor worker here runs its processor in this process, as a `WorkerActor` whose jobs
come from the host and whose reports go back to it. Its jobs are locked on the host for
``lock_duration`` seconds and renewed every half of that in one message per worker; if this
process dies or is cut off, they stall when the locks expire and run elsewhere.

When the connection breaks, calls in flight fail with `ConnectionLostError`; the client
reconnects with backoff (0.05 s doubling to 2 s), registers its workers and subscriptions
again (after the queue settings of workers made meanwhile), and calls made meanwhile wait
for the new connection, as ioredis's offline queue does for BullMQ.
"""

from __future__ import annotations

import itertools
import logging
import os
import ssl
from collections import deque
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Final, Self

import anyio
from anyio.abc import ByteStream, TaskGroup

from .._actors.renewal import renew_held, renewal_interval
from .._actors.subscription import DEFAULT_CAPACITY, EventStream
from .._actors.worker import WorkerActor
from .._api import CLOSED, NEW, RUNNING, Processor, RuntimeAPI
from .._core import JobRecord
from .._core import commands as c
from .._exceptions import ConnectionLostError, InvalidOptionError, RuntimeClosedError
from .._journal_pg_lease import is_postgres_url, parse_url
from .._options import count
from .._worker import Worker
from ..clock import Clock, SystemClock, Transit, VirtualClock
from . import address as addresses
from .sandbox import Sandbox
from .watch import Records
from .wire import (
    PROTOCOL,
    FrameReader,
    ProtocolError,
    decode_error,
    decode_value,
    encode_value,
    frame,
)

log = logging.getLogger("actorq.client")

#: Calls this client has in flight at most (the host's cap, `host.MAX_IN_FLIGHT`).
MAX_IN_FLIGHT: Final = 4096
_BACKOFF: Final = (0.05, 2.0)
_GONE: Final = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)


class HostRefusedError(ConnectionRefusedError):
    """The host answered and refused this client (a wrong token, another protocol)."""


class NotSentError(RuntimeClosedError):
    """The client is closed, or closed while the call waited for a connection: the call
    was never sent, so it is safe to make again elsewhere (a standby that took over)."""


class _Call:
    __slots__ = ("command", "done", "error", "replied", "result")

    def __init__(self, command: c.Command) -> None:
        self.command = command
        self.done = anyio.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.replied = False


class _Link:
    """One connection to the host: what is queued to send, and the task that sends it;
    `transit`, when the host shares this client's virtual clock."""

    def __init__(self, stream: ByteStream, dropped: list[int]) -> None:
        self.stream = stream
        self.reader = FrameReader(stream)
        #: The client's dead records (`Records.dropped`), told the host with what goes next.
        self.dropped = dropped
        self._out: list[bytes] = []
        self._wake = anyio.Event()
        self.broken = False
        self.transit: Transit | None = None

    def send(self, message: list[Any]) -> None:
        if self.broken:
            raise ConnectionLostError("not connected to the host", may_have_applied=False)
        dropped = self.dropped
        if dropped:
            told = dropped[:]
            del dropped[: len(told)]
            self._out.append(frame(["d", told]))
            if self.transit is not None:
                self.transit.sent()
        self._out.append(frame(message))
        if self.transit is not None:
            self.transit.sent()
        self._wake.set()

    async def write(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            out, self._out = self._out, []
            await self.stream.send(b"".join(out))


class _Held:
    """The jobs this client's workers hold: what a `VirtualClock` asks of the client (its
    `Probe`), and what `_renew_locks` waits for."""

    def __init__(self) -> None:
        #: Jobs received from the host whose outcome has not gone back; of those, how many
        #: processors sleep on the virtual clock (kept by `VirtualClock.sleep_until`).
        self.running = 0
        self.asleep = 0
        self.activity = 0
        #: Set while some job is held; the lock renewal sleeps in `renewal` meanwhile.
        self.holding = anyio.Event()
        self.renewal: anyio.CancelScope | None = None

    def quiet(self) -> bool:
        return True  # the frames it writes or reads are the connection's `Transit`

    def idle(self) -> bool:
        return self.running == self.asleep

    def took(self, jobs: int) -> None:
        if not self.running:
            self.holding.set()
        self.running += jobs

    def freed(self, jobs: int) -> None:
        self.activity += 1
        self.running -= jobs
        if not self.running and jobs:
            self.holding = anyio.Event()
            if self.renewal is not None:
                self.renewal.cancel()


class _Door:
    """A client worker's reports, sent to the host (the `WorkerActor`'s engine)."""

    __slots__ = ("rt", "token")

    def __init__(self, rt: RemoteRuntime, token: str) -> None:
        self.rt = rt
        self.token = token

    def submit(self, msg: c.Report, sink: deque[JobRecord] | None = None) -> None:
        rt = self.rt
        rt._post(["u", self.token, encode_value(list(msg.outcomes)), msg.freed])
        rt._held.freed(msg.freed)
        # Unsent when not connected: the jobs stall at lock expiry and run again, which is
        # the contract of a job whose worker was cut off.


class _RemoteWorker:
    __slots__ = ("actor", "concurrency", "lock_duration", "max_stalled", "queue")

    def __init__(
        self,
        actor: WorkerActor,
        queue: str,
        concurrency: int,
        lock_duration: float,
        max_stalled: int,
    ) -> None:
        self.actor = actor
        self.queue = queue
        self.concurrency = concurrency
        self.lock_duration = lock_duration
        self.max_stalled = max_stalled

    def registration(self) -> list[Any]:
        """The message that registers it on the host (at start, and after a reconnect)."""
        args = [self.queue, self.concurrency, self.lock_duration, self.max_stalled]
        return ["w", 0, self.actor.token, *args]


class RemoteRuntime(RuntimeAPI):
    """A runtime host's client (made by `actorq.connect`); the `Runtime` API."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        clock: Clock | None = None,
    ) -> None:
        if clock is not None and not isinstance(clock, Clock):
            raise InvalidOptionError("clock", clock, "must be a SystemClock or VirtualClock")
        super().__init__(clock or SystemClock())
        #: The host's clock when the host runs in this process on it (see `actorq.clock`).
        self._vclock = clock if isinstance(clock, VirtualClock) else None
        self._held = _Held()
        #: The one record per job id that this client's handles share (`watch`).
        self._records = Records()
        self.url = url
        #: A journal in PostgreSQL whose leader this client follows (`_find_leader`).
        self._leader_of: str | None = None
        self._address: tuple[str, int] | str = ""
        if isinstance(url, str) and is_postgres_url(url):
            self.url = parse_url(url).shown  # bad actorq_* options are refused here
            self._leader_of = url
        else:
            self._address = addresses.parse("url", url)
        if token is not None and not isinstance(token, str):
            raise InvalidOptionError("token", type(token).__name__, "must be a string")
        self._token = token
        self._ssl = ssl_context
        # Worker tokens are the engine's names for this process's workers: unique across
        # every client of the host, and kept across reconnects.
        self._token_prefix = f"{os.urandom(6).hex()}."
        self._ids = itertools.count(1)
        self._pending: dict[int, _Call] = {}
        self._given_up: dict[int, c.Command] = {}
        self._slots = anyio.Semaphore(MAX_IN_FLIGHT)
        self._link: _Link | None = None
        self._linked = anyio.Event()
        self._remote_workers: dict[str, _RemoteWorker] = {}
        self._unsent_settings: list[c.Command] = []
        self._subs: dict[int, EventStream] = {}
        self._sub_ids: dict[int, int] = {}  # id(stream) -> subscription id
        self._tg: TaskGroup | None = None
        self._cm: Any = None
        self._streams: list[Any] = []  # the workers' inboxes, closed at the end

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        if self._state != NEW:
            raise RuntimeClosedError("a client can be started once")
        link = await self._open()  # a host that is not there fails the block at once
        await self._begin(link)
        return self

    async def _begin(self, link: _Link | None) -> None:
        """Run: serve `link`, or (None) connect in the background, calls waiting meanwhile
        (a warm standby's client, `actorq._standby`). Left by `close`, in the same task."""
        if self._vclock is not None:
            self._vclock.attach(self._held)
        self._cm = anyio.create_task_group()
        self._tg = await self._cm.__aenter__()
        self._state = RUNNING
        if link is not None:
            # Linked now, not when `_keep` first runs: what the caller sends next (a worker's
            # limiter, its registration) goes on this link in order, not into the void. (A
            # standby's client connects in the background: its calls wait for `_serve`.)
            self._link = link
            self._linked.set()
        self._tg.start_soon(self._keep, link)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        try:
            if exc_type is None:
                for worker in list(self._workers.values()):
                    with anyio.move_on_after(10):
                        await worker.close()
        finally:
            self._state = CLOSED
            self._linked.set()  # calls waiting for a connection give up: `NotSentError`
            if self._vclock is not None:
                self._vclock.detach(self._held)
            for sub in list(self._subs.values()):
                sub.end()
            self._fail_pending(RuntimeClosedError("the client is closed"))
            assert self._tg is not None
            # The task group's scope holds this task too: leave it before awaiting anything.
            self._tg.cancel_scope.cancel()
            # The block's own exception propagates as itself, not wrapped in a group.
            await self._cm.__aexit__(None, None, None)
            for stream in self._streams:
                stream.close()
            if self._link is not None:
                await self._link.stream.aclose()
        return None

    async def close(self) -> None:
        await self.__aexit__(None, None, None)

    async def _open(self) -> _Link:
        address = self._address if self._leader_of is None else await self._find_leader()
        stream = await addresses.connect(address, self._ssl)
        link = _Link(stream, self._records.dropped)
        hello: dict[str, Any] = {"protocol": PROTOCOL, "token": self._token}
        if self._vclock is not None:
            # A host on the same clock object joins this transit (`VirtualClock.join_transit`).
            link.transit = self._vclock.open_transit()
            hello["clock"] = link.transit.key
        try:
            await stream.send(frame(["h", hello]))
            with anyio.fail_after(10):
                (answer, *_) = await link.reader.read()
        except BaseException:
            await _close(link)
            raise
        if link.transit is not None and not link.transit.shared:
            link.transit.close()  # a host on another clock: nothing to count
            link.transit = None
        if answer[0] != "hello":
            await _close(link)
            why = answer[1] if answer[0] == "refused" and len(answer) > 1 else answer
            raise HostRefusedError(f"the host at {self.url} refused: {why}")
        return link

    async def _find_leader(self) -> tuple[str, int] | str:
        """Where the live leader of the journal in PostgreSQL listens, from its lease row:
        looked up at every (re)connection, so the client follows a takeover."""
        from .._journal_pg import leader_address  # noqa: PLC0415 - the postgresql extra

        assert self._leader_of is not None
        try:
            found = await anyio.to_thread.run_sync(leader_address, self._leader_of)
        except Exception as exc:
            raise ConnectionRefusedError(f"cannot read the lease of {self.url}: {exc}") from exc
        if found is None:
            raise ConnectionRefusedError(f"no leader of {self.url} listens now")
        return addresses.parse("url", f"actorq://{found}")

    async def _keep(self, link: _Link | None) -> None:
        """Serve the connection; when it breaks, reconnect with backoff, forever."""
        delay = _BACKOFF[0]
        while True:
            if link is None:
                try:
                    link = await self._open()
                except (OSError, TimeoutError, ProtocolError, *_GONE) as exc:
                    log.info("reconnecting to %s in %.2f s: %s", self.url, delay, exc)
                    await anyio.sleep(delay)
                    delay = min(delay * 2, _BACKOFF[1])
                    continue
                delay = _BACKOFF[0]
            await self._serve(link)
            link = None

    async def _serve(self, link: _Link) -> None:
        if self._link is not link:  # a new connection (the first is linked on entry)
            self._link = link
            self._rejoin(link)
            self._linked.set()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._renew_locks)
                try:
                    await self._read(link, tg)
                finally:
                    tg.cancel_scope.cancel()
        except* (ProtocolError, *_GONE) as group:
            log.warning("lost the host at %s: %s", self.url, group.exceptions[0])
        finally:
            link.broken = True
            self._linked = anyio.Event()
            self._fail_pending(
                ConnectionLostError(
                    f"the connection to {self.url} broke during the call", may_have_applied=True
                )
            )
            await _close(link)

    def _rejoin(self, link: _Link) -> None:
        """A new connection: the queue settings not sent yet, this process's workers and
        subscriptions registered again, and the jobs this client holds records of named
        (the host sends them fresh)."""
        unsent, self._unsent_settings = self._unsent_settings, []
        for command in unsent:
            link.send(["n", encode_value(command)])
        held = self._records.restart()
        if held:
            link.send(["W", held])
        for worker in self._remote_workers.values():
            link.send(worker.registration())
        for sub_id, stream in self._subs.items():
            link.send(_subscription(sub_id, stream))

    async def _read(self, link: _Link, tg: TaskGroup) -> None:
        tg.start_soon(link.write)
        reader = link.reader
        transit = link.transit
        while True:
            messages = await reader.read()
            for message in messages:
                self._handle(message)
            if transit is not None:
                transit.handled(len(messages))

    def _handle(self, message: list[Any]) -> None:
        kind = message[0]
        if kind in ("r", "x"):
            call = self._pending.pop(message[1], None)
            if call is None:
                self._late(message)
                return
            if kind == "r":
                call.result = self._records.adopt(decode_value(message[2]))
            else:
                call.error = decode_error(message[2])
            call.replied = True
            call.done.set()
        elif kind == "j":
            # Held even when the worker is gone: the host counts what it sent.
            jobs = self._records.dispatched(message[2])
            worker = self._remote_workers.get(message[1])
            if worker is not None:
                self._held.took(len(jobs))
                worker.actor.inbox_tx.send_nowait(jobs)
        elif kind == "a":
            worker = self._remote_workers.get(message[1])
            if worker is not None:
                worker.actor.abort(message[2])
        elif kind == "s":
            self._records.refresh(message[1], message[2])
        elif kind == "g":  # a call given up on that the host dropped: no reply will come
            self._given_up.pop(message[1], None)
        elif kind == "v":
            stream = self._subs.get(message[1])
            if stream is not None:
                stream.publish(decode_value(message[2]))
        else:
            raise ProtocolError(f"{kind!r} is not a message the host sends")

    def _late(self, message: list[Any]) -> None:
        """A reply to a call its caller gave up on: a job a fetch locked for it goes back."""
        cmd = self._given_up.pop(message[1], None)
        if message[0] == "r":
            # Held as any reply's records are, and dropped with the result: counted alike.
            job = self._records.adopt(decode_value(message[2]))
            if isinstance(cmd, c.Fetch) and isinstance(job, JobRecord):
                self._notify(c.Release(job.id, cmd.take.token))
        elif message[0] == "x" and message[1] == 0:  # a worker's registration
            log.error("the host refused a worker: %s", decode_error(message[2]))

    def _fail_pending(self, error: BaseException) -> None:
        # A call given up on hears nothing more once its connection is gone.
        self._given_up.clear()
        pending, self._pending = self._pending, {}
        for call in pending.values():
            call.error = error
            call.replied = True
            call.done.set()

    # ------------------------------------------------------------------ carriers

    def _send(self, command: c.Command) -> Coroutine[Any, Any, Any]:
        return self._call(command)

    async def _call(self, command: c.Command, within: float | None = None) -> Any:
        if self._state != RUNNING:
            raise NotSentError(f"the client is {self._state}")
        async with self._slots:
            link = self._link
            if link is None or link.broken:
                await self._linked.wait()
                if self._state != RUNNING:
                    raise NotSentError("the client closed before the call was sent")
                link = self._link
                assert link is not None
            call_id = next(self._ids)
            call = _Call(command)
            self._pending[call_id] = call
            try:
                link.send(["c", call_id, encode_value(command)])
            except ConnectionLostError:
                self._pending.pop(call_id, None)
                raise
            try:
                if within is None:
                    await call.done.wait()
                else:
                    with self.clock.deadline(self.clock.now() + within):
                        await call.done.wait()
            finally:
                if not call.replied:
                    self._give_up(call_id, call)
        if not call.replied:
            return _TIMED_OUT
        if call.error is not None:
            raise call.error
        return call.result

    def _give_up(self, call_id: int, call: _Call) -> None:
        self._pending.pop(call_id, None)
        self._given_up[call_id] = call.command
        self._post(["z", call_id])

    async def _send_within(self, command: c.Command, timeout: float) -> tuple[bool, Any]:
        result = await self._call(command, timeout)
        if result is _TIMED_OUT:
            return False, None
        return True, result

    def _post(self, message: list[Any]) -> bool:
        """Send `message` if connected (what is not sent is redone or moot after a
        reconnect: registrations and subscriptions are sent again); whether it went."""
        link = self._link
        if link is None or link.broken:
            return False
        link.send(message)
        return True

    def _notify(self, command: c.Command) -> None:
        if not self._post(["n", encode_value(command)]) and isinstance(command, _SETTINGS):
            # A queue's settings from a worker made while not connected: the host needs them
            # as much as the worker's registration, which the next connection sends too.
            self._unsent_settings.append(command)

    def _start_processor(self, processor: Processor) -> WorkerActor:
        token = processor.token
        actor = WorkerActor(
            token=token,
            processor=processor.call,
            make_job=self._job_for_worker,
            concurrency=processor.concurrency,
            run_in_thread=processor.run_in_thread,
            clock=self.clock,
            engine=_Door(self, token),
            probe=self._held,
        )
        self._streams += actor.streams()
        worker = _RemoteWorker(
            actor,
            processor.queue,
            processor.concurrency,
            processor.lock_duration,
            processor.max_stalled_count,
        )
        self._remote_workers[token] = worker
        assert self._tg is not None
        self._tg.start_soon(actor.run)
        self._post(worker.registration())
        return actor

    def _start_sandbox(self, sandbox: Sandbox) -> None:
        assert self._tg is not None
        self._tg.start_soon(sandbox.run, self.url, self._token)

    async def _close_runner(self, worker: Worker[Any, Any]) -> None:
        token = worker.token
        try:
            async with self._slots:
                call_id = next(self._ids)
                call = self._pending[call_id] = _Call(c.CloseWorker(token))
                if self._post(["k", call_id, token]):
                    await call.done.wait()
                else:
                    self._pending.pop(call_id, None)
        finally:
            remote = self._remote_workers.pop(token, None)
            if remote is not None:
                remote.actor.close()

    async def _renew_locks(self) -> None:
        """While this process's workers hold jobs, renew their locks every half of the
        shortest `lock_duration` (on the client's clock, the host's time when shared), one
        message per worker. Holding nothing, it waits: no timer for a clock to jump to."""
        held = self._held
        while True:
            await held.holding.wait()
            with anyio.CancelScope() as held.renewal:
                await self.clock.sleep(renewal_interval(self._remote_workers.values()))
                renew_held(self._remote_workers, self._notify)
            held.renewal = None

    def events(self, *, buffer: int = DEFAULT_CAPACITY) -> EventStream:
        """Subscribe to the host's lifecycle events (see `Runtime.events`)."""
        self._check_running()
        return EventStream(self, count("buffer", buffer))

    def subscribe(self, stream: EventStream) -> None:
        sub_id = next(self._ids)
        self._subs[sub_id] = stream
        self._sub_ids[id(stream)] = sub_id
        self._post(_subscription(sub_id, stream))

    def unsubscribe(self, stream: EventStream) -> None:
        sub_id = self._sub_ids.pop(id(stream), None)
        if sub_id is None:
            return
        self._subs.pop(sub_id, None)
        self._post(["q", sub_id])

    def __repr__(self) -> str:
        return f"<RemoteRuntime {self._state} of {self.url}>"


_TIMED_OUT: Final[Any] = object()
#: What `RuntimeAPI.worker` notifies about its queue, kept until a connection takes it.
_SETTINGS: Final = (c.SetLimiter, c.SetGroupConcurrency, c.SetGroupLimiter)


async def _close(link: _Link) -> None:
    if link.transit is not None:
        link.transit.close()
    await link.stream.aclose()


def _subscription(sub_id: int, stream: EventStream) -> list[Any]:
    return ["e", sub_id, stream.capacity]


def connect(
    url: str,
    *,
    token: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    clock: Clock | None = None,
) -> RemoteRuntime:
    """A client of the runtime host at `url` (``"actorq://HOST:PORT"`` or
    ``"unix:/path"``): use as ``async with actorq.connect(url, token=...) as rt:``. Given a
    journal's ``postgresql://`` URL, the client of its leader, found through the lease row
    at each (re)connection, so it follows a takeover (docs/postgresql.md). ``clock``: the
    client's time (job timeouts, lock renewal, call timeouts); a host in this process on the
    same `VirtualClock` shares it exactly (docs/testing.md)."""
    return RemoteRuntime(url, token=token, ssl_context=ssl_context, clock=clock)
