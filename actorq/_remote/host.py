"""The runtime host: serves a runtime's engine to clients in other processes.

Theory of operation
-------------------
Each connection starts with a hello: the client's protocol version and token, in a frame of
at most `MAX_HELLO` bytes, within `HELLO_TIMEOUT` seconds. A wrong token, a missing one, or
another version gets a refusal naming why, and the connection is closed; nothing else is
read from it. The token is compared in constant time (`hmac.compare_digest`).

Then the client sends messages; every one is a list whose first item is its kind:

=================================  ============================================================
``["c", id, command]``             a call: the host answers ``["r", id, result]`` or
                                   ``["x", id, error]`` once the engine has (durably) done it
``["n", command]``                 a call whose answer nobody awaits
``["z", id]``                      the caller gave up on call `id` (a timeout): the host
                                   answers ``["g", id]`` when it dropped the call unanswered
``["w", id, token, queue, n,       register a processor worker in the client: the host makes
lock, stalls]``                    it a slot whose jobs go to the client as
                                   ``["j", token, [job, ...]]``, locked for `lock` seconds
``["u", token, outcomes, freed]``  that worker's report (its jobs' outcomes, credits freed)
``["k", id, token]``               close that worker (answered once it holds no job)
``["e", id, buffer]``              subscribe to events: they come as ``["v", id, [event, ...]]``
``["q", id]``                      unsubscribe
``["d", [job_id, count, ...]]``    the client's records of these jobs died (`watch`)
``["W", [job_id, ...]]``           after a reconnect: the jobs the client holds records of
=================================  ============================================================

and the host may send ``["a", token, job_id]``: abort that job's processor (it was cancelled),
``["s", [job, ...]]``: the fresh records of watched jobs a batch changed, before the
batch's other messages (`watch`), and ``["g", id]`` (see ``"z"``).

Calls go to the engine in the order they came (`Engine.submit`, in the reading task), and
their replies go back whenever they are ready: a reply is written by the engine's own reply
(`Request.done`), with no task per call. A connection may have at most `MAX_IN_FLIGHT`
calls waiting; past that a call is refused. Everything the host sends a client is bounded:
jobs by the worker's credits, replies by the in-flight cap, events by the subscription's
buffer (a slow reader lags, as a local subscriber does). A client that sends what is not
this protocol is disconnected; the engine never sees it, and other clients never notice.
When a connection ends, its workers are dropped: their jobs stall when their locks expire
and run elsewhere, and whatever the client reports later is refused by token.
"""

from __future__ import annotations

import contextlib
import hmac
import itertools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import anyio
from anyio.abc import ByteStream, TaskGroup

from .._actors.engine import Engine
from .._actors.messages import Request
from .._actors.outbox import WorkerSlot
from .._actors.subscription import EventStream
from .._core import commands as c
from .._exceptions import ActorqError, InvalidOptionError, RuntimeClosedError
from .._options import MAX_CONCURRENCY, check_queue_name
from ..clock import Transit, VirtualClock
from .checks import check_command
from .watch import Watchers, fresh_message, records_in
from .wire import (
    MAX_HELLO,
    PROTOCOL,
    FrameReader,
    ProtocolError,
    decode_value,
    encode_error,
    encode_value,
    frame,
)

if TYPE_CHECKING:
    from .._runtime import Runtime

log = logging.getLogger("actorq.host")

#: Calls one connection may have waiting at once (the client keeps to it).
MAX_IN_FLIGHT: Final = 4096
#: Seconds a new connection has to say hello.
HELLO_TIMEOUT: Final = 10.0
#: Seconds the news of watched jobs waits for a message to go with before it goes alone:
#: a busy host changes them batch after batch, and a frame per batch would cost more than
#: the batches.
FRESH_DELAY: Final = 0.002
#: Bytes queued to a client past which its event forwarding waits (and its events lag).
_EVENTS_BACKLOG: Final = 1 << 20
_STOPPED: Final = (anyio.ClosedResourceError, anyio.BrokenResourceError, RuntimeClosedError)
_GONE: Final = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)


def token_matches(expected: str | None, given: object) -> bool:
    """Whether a client's `given` token is the host's (in constant time)."""
    if expected is None:
        return True
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


class Host:
    """Serves `rt`'s engine on the connections a listener accepts."""

    def __init__(self, rt: Runtime, token: str | None) -> None:
        self._rt = rt
        self._token = token
        self._ids = itertools.count(1)
        self.connections: set[Connection] = set()
        self._watchers: Watchers | None = None

    async def serve(self, listener: Any, tg: TaskGroup) -> None:
        await listener.serve(self._connection, tg)

    async def _connection(self, stream: ByteStream) -> None:
        engine = self._rt._engine
        assert engine is not None
        if self._watchers is None or self._watchers.engine is not engine:
            self._watchers = Watchers(engine)
        conn = Connection(engine, stream, next(self._ids), self._watchers)
        async with stream:
            try:
                if not await self._hello(conn):
                    return
            except (ProtocolError, TimeoutError, *_GONE) as exc:
                log.info("connection %d refused: %s", conn.number, exc)
                return
            self.connections.add(conn)
            try:
                await conn.run()
            except Exception:
                # A bug met while serving one client ends that connection, never the
                # runtime: the host's connections run in the runtime's own task group.
                log.exception("connection %d closed on an error", conn.number)
            finally:
                self.connections.discard(conn)
                conn.drop()

    async def _hello(self, conn: Connection) -> bool:
        with anyio.fail_after(HELLO_TIMEOUT):
            (hello,) = await conn.reader.read(MAX_HELLO, most=1)
        why = None
        if hello[0] != "h" or len(hello) != 2 or type(hello[1]) is not dict:
            why = "the first message must be a hello"
        elif hello[1].get("protocol") != PROTOCOL:
            why = (
                f"this host speaks actorq protocol {PROTOCOL}, the client "
                f"{hello[1].get('protocol')!r}: install the same actorq version on both sides"
            )
        elif not token_matches(self._token, hello[1].get("token")):
            why = "wrong or missing token"
        if why is not None:
            await conn.stream.send(frame(["refused", why]))
            log.warning("connection %d refused: %s", conn.number, why)
            return False
        clock = self._rt.clock
        if isinstance(clock, VirtualClock):
            # A client in this process on the host's own clock: count the frames between us.
            conn.transit = clock.join_transit(hello[1].get("clock"))
        await conn.stream.send(frame(["hello", {"protocol": PROTOCOL}]))
        return True


class _Reply:
    """Writes a deferred call's reply the moment the engine gives it (as `Request.done`)."""

    __slots__ = ("conn", "id", "req")

    def __init__(self, conn: Connection, call_id: int, req: Request) -> None:
        self.conn = conn
        self.id = call_id
        self.req = req

    def set(self) -> None:
        conn = self.conn
        conn.pending.pop(self.id, None)
        conn.reply(self.id, self.req)


class _Forward:
    """A remote worker's inbox, as the engine sees it: jobs sent go to the client."""

    __slots__ = ("conn", "token")

    def __init__(self, conn: Connection, token: str) -> None:
        self.conn = conn
        self.token = token

    def send_nowait(self, jobs: list[Any]) -> None:
        if jobs:
            conn = self.conn
            # Not after the news: the jobs go whole (the news of them is dropped), and the
            # rest waits for a reply or an event, merging with what comes meanwhile.
            conn.send(["j", self.token, encode_value(jobs)], news_first=False)
            conn.watchers.watch(conn, jobs)

    def close(self) -> None:
        return None


class _Forwarded(EventStream):
    """A client's subscription on the host: the engine's events go to the client at once,
    in the same write as the replies of their batch, while the client keeps up (under
    `_EVENTS_BACKLOG` bytes queued); else they wait here, bounded as any subscriber's,
    for `Connection._forward_events`."""

    __slots__ = ("_conn", "_sub_id")

    def __init__(self, conn: Connection, sub_id: int, capacity: int) -> None:
        self._conn = conn
        self._sub_id = sub_id
        super().__init__(conn.engine, capacity)

    def publish(self, events: list[Any]) -> None:
        conn = self._conn
        if self._buffer or self._dropped or self._ended or conn._queued > _EVENTS_BACKLOG:
            super().publish(events)
        else:
            conn.send(["v", self._sub_id, encode_value(events)])


class Connection:
    """One client's connection: reads its messages, writes what goes back."""

    def __init__(self, engine: Engine, stream: ByteStream, number: int, watchers: Watchers) -> None:
        self.engine = engine
        self.watchers = watchers
        #: The jobs this client holds records of: job id -> [the core's record, records of
        #: it sent and not yet accounted for by the client] (`watch`).
        self.watched: dict[int, list[Any]] = {}
        #: What batches changed of watched jobs since this connection last sent anything:
        #: job id -> the fields set (merged), or the core's record to send whole.
        self.fresh: dict[int, Any] = {}
        self._fresh_owed = False
        self._freshened = anyio.Event()
        self.stream = stream
        self.number = number
        self.reader = FrameReader(stream)
        self.pending: dict[int, Request] = {}
        #: The processor workers this client registered, by token.
        self.slots: dict[str, WorkerSlot] = {}
        self.subscriptions: dict[int, EventStream] = {}
        self._out: list[bytes] = []
        self._queued = 0
        self._wake = anyio.Event()
        self._drained = anyio.Event()
        self._closed = False
        self._tg: TaskGroup | None = None
        #: Set when the client shares the host's virtual clock (`Host._hello`).
        self.transit: Transit | None = None

    # ------------------------------------------------------------------ writing

    def send(self, message: list[Any], news_first: bool = True) -> None:
        """Queue `message` for the client, after the news of its watched jobs unless told
        not to (`news_first`). Called from the engine's release too: whatever goes wrong
        here ends this connection, never the engine."""
        if self._closed:
            return
        if self._fresh_owed and news_first:
            self._send_fresh()
        try:
            data = frame(message)
        except (TypeError, ValueError):  # nothing we send should fail; if it does, say so
            self._fail_to_send(message[0])
            return
        self._out.append(data)
        self._queued += len(data)
        if self.transit is not None:
            self.transit.sent()
        self._wake.set()

    def freshened(self) -> None:
        """A batch changed watched jobs: their news goes before the next message, or alone
        after `FRESH_DELAY`. Counted as a frame on its way from now (a virtual clock then
        waits for it)."""
        if not self._fresh_owed:
            self._fresh_owed = True
            if self.transit is not None:
                self.transit.sent()
            self._freshened.set()

    def _fail_to_send(self, kind: str) -> None:
        log.exception("connection %d: a %r message could not be sent", self.number, kind)
        self._closed = True
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    def _send_fresh(self) -> None:
        self._fresh_owed = False
        try:
            data = frame(fresh_message(self.fresh))
        except (TypeError, ValueError, KeyError):  # as in `send`: this connection ends
            self._fail_to_send("s")
            return
        self._out.append(data)
        self._queued += len(data)

    async def _push_fresh(self) -> None:
        while True:
            await self._freshened.wait()
            self._freshened = anyio.Event()
            if not self._fresh_owed:
                continue  # it went with the message that followed its batch (the common case)
            await anyio.sleep(FRESH_DELAY)
            if self._fresh_owed:
                self._wake.set()

    def reply(self, call_id: int, req: Request) -> None:
        if req.error is not None:
            self.send(["x", call_id, encode_error(req.error)])
            return
        try:
            result = encode_value(req.result)
        except TypeError as exc:  # a result no client can use: say so rather than break
            self.send(["x", call_id, encode_error(RuntimeClosedError(str(exc)))])
            return
        self.send(["r", call_id, result])
        recs: list[Any] = []
        records_in(req.result, recs)
        if recs:
            self.watchers.watch(self, recs)

    async def _write(self) -> None:
        stream = self.stream
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            if self._fresh_owed and not self._closed:
                self._send_fresh()
            out, self._out = self._out, []
            self._queued = 0
            self._drained.set()
            self._drained = anyio.Event()
            if out:
                await stream.send(b"".join(out))

    async def drained(self) -> None:
        """Wait until what is queued for the client is under `_EVENTS_BACKLOG` bytes."""
        while self._queued > _EVENTS_BACKLOG and not self._closed:
            await self._drained.wait()

    # ------------------------------------------------------------------ reading

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._write)
                tg.start_soon(self._push_fresh)
                try:
                    while True:
                        messages = await self.reader.read()
                        for message in messages:
                            self._handle(message)
                        if self.transit is not None:
                            self.transit.handled(len(messages))
                finally:
                    tg.cancel_scope.cancel()
        except ProtocolError as exc:
            log.warning("connection %d closed: %s", self.number, exc)
        except _GONE:
            pass
        except BaseExceptionGroup as group:
            rest = group.split((ProtocolError, *_GONE))[1]
            if rest is not None:
                raise rest from None
            log.info(
                "connection %d closed: %r",
                self.number,
                group.exceptions[0],
                exc_info=group.exceptions[0],
            )

    def _handle(self, message: list[Any]) -> None:
        kind = message[0]
        handler = _HANDLERS.get(kind)
        if handler is None:
            raise ProtocolError(f"{kind!r} is not a message kind")
        try:
            handler(self, *message[1:])
        except TypeError as exc:  # the wrong number of parts
            raise ProtocolError(f"malformed {kind!r} message: {exc}") from exc
        except RecursionError:  # a value nested deeper than any the protocol sends
            raise ProtocolError(f"a {kind!r} message nests too deep") from None

    def _call(self, call_id: Any, raw: Any) -> None:
        if type(call_id) is not int or call_id in self.pending:
            raise ProtocolError(f"call id {call_id!r} is not a new integer")
        req = Request(None)
        try:
            req.command = cmd = decode_value(raw)
            check_command(cmd, self.slots.keys())
            if len(self.pending) >= MAX_IN_FLIGHT:
                raise InvalidOptionError("calls", len(self.pending), "too many in flight")
        except ActorqError as exc:
            if isinstance(exc, ProtocolError):
                raise
            req.error = exc
            self.reply(call_id, req)
            return
        self._submit(req)
        self._answer(call_id, req)

    def _answer(self, call_id: int, req: Request) -> None:
        """Reply now if the engine has, else when it does (its reply wakes `_Reply`)."""
        if req.replied:
            self.reply(call_id, req)
        else:
            self.pending[call_id] = req
            req.done = _Reply(self, call_id, req)

    def _submit(self, req: Request) -> None:
        try:
            self.engine.submit(req)
        except _STOPPED as exc:  # closed, or it crashed running this inline
            req.error = (
                exc
                if isinstance(exc, RuntimeClosedError)
                else RuntimeClosedError("the runtime has stopped")
            )
            req.replied = True

    def _notify(self, raw: Any) -> None:
        cmd = decode_value(raw)
        try:
            check_command(cmd, self.slots.keys())
        except InvalidOptionError as exc:
            log.warning("connection %d: a notice refused: %s", self.number, exc)
            return
        req = Request(cmd)
        req.abandoned = True
        self._submit(req)

    def _give_up(self, call_id: Any) -> None:
        req = self.pending.pop(call_id, None)
        if req is not None:
            req.abandoned = True
            self.engine.forget(req)
            # The client keeps the call for a late reply until it hears this: a wait or
            # fetch the engine just dropped has none. A call still in the mailbox may yet
            # be answered after it; the client reads that reply as any late one.
            self.send(["g", call_id])

    def _register(
        self, call_id: Any, token: Any, queue: Any, n: Any, lock: Any, stalls: Any
    ) -> None:
        req = Request(None)
        try:
            if not isinstance(token, str) or not token or token in self.engine.slots:
                raise InvalidOptionError("token", token, "must be a new worker token")
            check_queue_name(queue)
            if type(n) is not int or not 1 <= n <= MAX_CONCURRENCY:
                raise InvalidOptionError("concurrency", n, f"must be in [1, {MAX_CONCURRENCY}]")
            if type(lock) not in (int, float) or not 0 < lock < 1e9:
                raise InvalidOptionError("lock_duration", lock, "must be a positive number")
            if type(stalls) is not int or stalls < 0:
                raise InvalidOptionError("max_stalled_count", stalls, "must be at least 0")
        except InvalidOptionError as exc:
            req.error = exc
            self.reply(call_id, req)
            return
        abort: Callable[[int], None] = lambda job_id: self.send(["a", token, job_id])  # noqa: E731
        slot = WorkerSlot(token, queue, n, _Forward(self, token), abort, stalls, float(lock))
        # A client on the host's virtual clock tells the clock about its jobs itself.
        slot.elsewhere = self.transit is not None
        self.slots[token] = slot
        req.command = c.RegisterWorker(slot)
        self._submit(req)
        self.reply(call_id, req)

    def _report(self, token: Any, raw: Any, freed: Any) -> None:
        slot = self.slots.get(token) if isinstance(token, str) else None
        if slot is None or type(freed) is not int or freed < 0:
            raise ProtocolError(f"a report for {token!r} that is not this client's")
        outcomes = decode_value(raw)
        if type(outcomes) is not list or not all(_outcome_of(o, token) for o in outcomes):
            raise ProtocolError("a report's outcomes are not its worker's")
        # Never more credits back than the worker was given: a confused or hostile client
        # cannot make the engine hand it more jobs than its concurrency.
        freed = min(freed, slot.concurrency - slot.free)
        # A runtime that stopped meanwhile dealt with the jobs as it closed.
        with contextlib.suppress(*_STOPPED):
            self.engine.submit(c.Report(token, outcomes, freed))

    def _close_worker(self, call_id: Any, token: Any) -> None:
        req = Request(c.CloseWorker(token))
        if token not in self.slots:
            req.error = InvalidOptionError("token", token, "is not a worker of this connection")
            self.reply(call_id, req)
            return
        self._submit(req)
        if req.replied:
            self.slots.pop(token, None)
        self._answer(call_id, req)

    def _subscribe(self, sub_id: Any, buffer: Any) -> None:
        if type(sub_id) is not int or sub_id in self.subscriptions:
            raise ProtocolError(f"subscription id {sub_id!r} is not a new integer")
        if type(buffer) is not int or not 1 <= buffer <= 1_000_000:
            raise ProtocolError(f"subscription buffer {buffer!r} is not in [1, 1000000]")
        stream = self.subscriptions[sub_id] = _Forwarded(self, sub_id, buffer)
        assert self._tg is not None
        self._tg.start_soon(self._forward_events, sub_id, stream)

    async def _forward_events(self, sub_id: int, stream: EventStream) -> None:
        """Send what a subscription buffered while the client was behind (`_Forwarded`)."""
        async for first in stream:
            self.send(["v", sub_id, encode_value([first, *stream.drain_nowait()])])
            await self.drained()

    def _unsubscribe(self, sub_id: Any) -> None:
        stream = self.subscriptions.pop(sub_id, None)
        if stream is not None:
            stream.close()

    def _drop(self, pairs: Any) -> None:
        self.watchers.drop(self, pairs)

    def _rewatch(self, ids: Any) -> None:
        self.watchers.rewatch(self, ids)

    # ------------------------------------------------------------------ the end

    def drop(self) -> None:
        """The client is gone: forget its calls, workers and subscriptions."""
        self._closed = True
        if self.transit is not None:
            self.transit.close()
        self.watchers.forget(self)
        engine = self.engine
        for req in self.pending.values():
            req.abandoned = True
            engine.forget(req)
        self.pending.clear()
        for stream in self.subscriptions.values():
            stream.close()
        self.subscriptions.clear()
        for token in self.slots:
            req = Request(c.DropWorker(token))
            req.abandoned = True
            self._submit(req)
        self.slots.clear()


def _outcome_of(outcome: Any, token: str) -> bool:
    if type(outcome) is tuple:
        return (
            len(outcome) == 2
            and type(outcome[0]) is int
            and (outcome[1] is None or type(outcome[1]) is bytes)
        )
    if isinstance(outcome, c.Fail | c.MoveToDelayed):
        try:
            check_command(outcome, ())
        except InvalidOptionError:
            return False
        return outcome.token == token
    return False


_HANDLERS: Final[dict[str, Callable[..., None]]] = {
    "c": Connection._call,
    "n": Connection._notify,
    "z": Connection._give_up,
    "w": Connection._register,
    "u": Connection._report,
    "k": Connection._close_worker,
    "e": Connection._subscribe,
    "q": Connection._unsubscribe,
    "d": Connection._drop,
    "W": Connection._rewatch,
}
