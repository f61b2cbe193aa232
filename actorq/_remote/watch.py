"""Live job handles through a client: the host's watch sets, and the client's records.

A local `Job` handle reads the core's own `JobRecord`, which the engine changes in place. A
client's handles read the client's copy of it, kept as fresh as this:

* The client holds ONE record per job id (`Records`): a record decoded from a reply or a
  worker's dispatch for an id it already holds is copied into the held one, so every handle
  of a job shares one record, as locally. The record lives as long as some handle (or
  anything else) refers to it.
* Every job record the host sends in a reply or a dispatch is *watched* on that connection
  (`Watchers.watch`): the host keeps the core's own record and a count of the records sent.
  When the engine releases a batch whose change records touch watched jobs, the host sends
  their fresh records first, ``["s", [record, ...]]``, before the batch's dispatches,
  replies and events on that connection (`Watchers.__call__`, the engine's `watch`). A job
  removed meanwhile is sent as it was last (what a local handle shows) and unwatched.
* When the client's record of a job dies, the client tells the host with the count of
  records of it that it had received, ``["d", [id, count, ...]]``, piggybacked on the next
  message it sends; the host unwatches the job once every record it sent is accounted for
  (a record still on its way keeps it watched). After a reconnect the client names the jobs
  it holds, ``["W", [id, ...]]``, and the host sends their records at once.

Change records are what a batch knows of the jobs it changed; a runtime whose log keeps
none (in memory) records them while some connection watches a job, and only then: with no
watcher the engine pays one attribute check per batch.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from .._core import JobRecord
from .._core.records import FIELD_NAMES
from .wire import (
    ProtocolError,
    decode_fields_into,
    decode_job_into,
    decode_value,
    encode_fields,
    encode_value,
)

if TYPE_CHECKING:
    from .._actors.engine import Engine
    from .._actors.outbox import Outbox
    from .host import Connection

#: The change records that change one job's record, the job's id second.
_JOB_CHANGES: Final = frozenset({"set", "del", "child"})
_NESTED: Final = (JobRecord, list, tuple, dict)


def records_in(value: Any, out: list[JobRecord]) -> None:
    """Append the job records in `value` (a reply's result) to `out`: the same walk as
    `Records.adopt` makes of the decoded result, so both sides count the same records."""
    kind = type(value)
    if kind is JobRecord:
        out.append(value)
    elif kind is list or kind is tuple:
        for item in value:
            if type(item) is JobRecord:
                out.append(item)
            elif type(item) in _NESTED:
                records_in(item, out)
    elif kind is dict:
        for item in value.values():
            if type(item) in _NESTED:
                records_in(item, out)


class Watchers:
    """The jobs each connection of one engine watches; the engine's `watch` while any does."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: The connections watching some job.
        self.connections: set[Connection] = set()

    def watch(self, conn: Connection, recs: list[JobRecord], counted: bool = True) -> None:
        """`recs` went (`counted`) or will go to `conn`: watch them there."""
        watched = conn.watched
        for rec in recs:
            entry = watched.get(rec.id)
            if entry is None:
                watched[rec.id] = [rec, 1 if counted else 0]
            elif counted:
                entry[1] += 1
        if watched and conn not in self.connections:
            self.connections.add(conn)
            engine = self.engine
            if engine.watch is None:
                engine.watch = self
                if not engine.log.records:
                    engine.core.record_changes(True)

    def drop(self, conn: Connection, pairs: Any) -> None:
        """The client's records of these jobs died, having received `count` records each."""
        if type(pairs) is not list or len(pairs) % 2:
            raise ProtocolError("a drop names jobs and counts")
        watched = conn.watched
        for at in range(0, len(pairs), 2):
            entry = watched.get(pairs[at])
            if entry is not None:
                count = pairs[at + 1]
                if type(count) is not int:
                    raise ProtocolError(f"a drop count {count!r} is not an integer")
                entry[1] -= count
                if entry[1] <= 0:
                    del watched[pairs[at]]
                    conn.fresh.pop(pairs[at], None)  # news no record will read
        if not watched:
            self.forget(conn)

    def rewatch(self, conn: Connection, ids: Any) -> None:
        """A client that reconnected holds these jobs: watch them, and send them now."""
        if type(ids) is not list:
            raise ProtocolError("a rewatch names jobs")
        jobs = self.engine.core.jobs
        recs = [rec for job_id in ids if (rec := jobs.get(job_id)) is not None]
        # Not counted: the client counts records it adopts, and these only refresh.
        self.watch(conn, recs, counted=False)
        if recs:
            conn.send(["s", [], encode_value(recs)])

    def forget(self, conn: Connection) -> None:
        """`conn` watches nothing now (or is gone)."""
        conn.watched.clear()
        self.connections.discard(conn)
        engine = self.engine
        if not self.connections and engine.watch is self:
            engine.watch = None
            if not engine.log.records:
                engine.core.record_changes(False)

    def __call__(self, outbox: Outbox) -> None:
        """A batch is released: note, for each connection, what it changed of the jobs
        watched there, to go before anything else the connection sends (`fresh_message`)."""
        changes = outbox.changes
        if not changes:
            return
        for conn in list(self.connections):
            watched = conn.watched
            fresh = conn.fresh
            gone = False
            for change in changes:
                kind = change[0]
                if kind in _JOB_CHANGES and change[1] in watched:
                    job_id = change[1]
                    if kind == "set":
                        # Fields set since the last message merge into one delta (a
                        # new dict: the change record is the journal's).
                        known = fresh.get(job_id)
                        if known is None:
                            fresh[job_id] = change[2]
                        elif type(known) is dict:
                            fresh[job_id] = {**known, **change[2]}
                    elif kind == "child":
                        # A child's news of a parent: the parent's whole record.
                        fresh[job_id] = watched[job_id][0]
                    else:
                        # Removed: nothing more to tell (the client's record is as the job
                        # was last, which is what a local handle shows), nor to watch.
                        del watched[job_id]
                        gone = True
            if fresh:
                for slot, jobs in outbox.sends:
                    # A job dispatched to this client goes whole in its dispatch, right after.
                    if getattr(slot.inbox, "conn", None) is conn:
                        for rec in jobs:
                            fresh.pop(rec.id, None)
                if fresh:
                    conn.freshened()
            if gone and not watched:
                self.forget(conn)


def fresh_message(fresh: dict[int, Any]) -> list[Any]:
    """The ``["s", deltas, records]`` message of a connection's `fresh` news, emptied."""
    deltas = []
    whole = []
    for job_id, news in fresh.items():
        if type(news) is dict:
            deltas.append(encode_fields(job_id, news))
        else:
            whole.append(news)
    fresh.clear()
    return ["s", deltas, encode_value(whole)]


class _Ref(weakref.ref[JobRecord]):
    """The client's reference to its record of one job, and how many it received."""

    __slots__ = ("count", "id")

    id: int
    count: int


def _copier() -> Callable[[JobRecord, JobRecord], None]:
    """``copy(held, fresh)``: every field of `fresh` into `held`, as straight-line code."""
    body = "".join(f"    held.{name} = fresh.{name}\n" for name in FIELD_NAMES if name != "id")
    space: dict[str, Any] = {}
    exec(compile(f"def copy(held, fresh):\n{body}", "<actorq record copy>", "exec"), space)
    copy: Callable[[JobRecord, JobRecord], None] = space["copy"]
    return copy


_copy: Final = _copier()


class Records:
    """A client's records of the jobs it holds handles on (see the module docstring)."""

    def __init__(self) -> None:
        self.held: dict[int, _Ref] = {}
        self._gone_callback = self._gone  # one bound method, not one per record
        #: Jobs whose record died, and the records of each received: ``[id, count, ...]``,
        #: for the next message to the host to carry.
        self.dropped: list[int] = []

    def adopt(self, value: Any) -> Any:
        """`value` (a decoded reply or dispatch) with each job record in it replaced by the
        one held for its id, refreshed from it; new ones are held from now on."""
        kind = type(value)
        if kind is JobRecord:
            return self.own(value)
        if kind is list:
            for at, item in enumerate(value):
                if type(item) in _NESTED:
                    value[at] = self.adopt(item)
        elif kind is tuple:
            items = None
            for at, item in enumerate(value):
                if type(item) in _NESTED:
                    adopted = self.adopt(item)
                    if adopted is not item:  # a record held already takes its place
                        if items is None:
                            items = list(value)
                        items[at] = adopted
            if items is not None:
                return tuple(items)
        elif kind is dict:
            for key, item in value.items():
                if type(item) in _NESTED:
                    value[key] = self.adopt(item)
        return value

    def own(self, rec: JobRecord) -> JobRecord:
        ref = self.held.get(rec.id)
        if ref is not None:
            held = ref()
            if held is not None:
                ref.count += 1
                if held is not rec:
                    _copy(held, rec)
                return held
        ref = self.held[rec.id] = _Ref(rec, self._gone_callback)
        ref.id = rec.id
        ref.count = 1
        return rec

    def dispatched(self, raw: Any) -> Any:
        """`adopt(decode_value(raw))` for a worker's jobs (a list of job records): a job
        held already is decoded straight into the held record."""
        if type(raw) is not list or not raw or raw[0] != "L":
            return self.adopt(decode_value(raw))
        held = self.held
        out = []
        for item in raw[1:]:
            if type(item) is list and len(item) > 2 and item[:2] == ["A", "JobRecord"]:
                ref = held.get(item[2])
                if ref is not None and (mine := ref()) is not None:
                    decode_job_into(mine, item)
                    ref.count += 1
                    out.append(mine)
                    continue
            out.append(self.adopt(decode_value(item)))
        return out

    def refresh(self, deltas: Any, raw: Any) -> None:
        """The host's news of watched jobs (`Watchers.__call__`): fields that changed, and
        whole records, applied to the records still held; the rest are moot."""
        held = self.held
        if type(deltas) is not list:
            raise ProtocolError("a refresh's deltas are a list")
        for delta in deltas:
            if type(delta) is not list or not delta:
                raise ProtocolError("a job's delta is its id, then names and values")
            ref = held.get(delta[0])
            if ref is not None and (mine := ref()) is not None:
                decode_fields_into(mine, delta)
        recs = decode_value(raw)
        if type(recs) is not list or not all(type(rec) is JobRecord for rec in recs):
            raise ProtocolError("a refresh's records are a list of job records")
        for rec in recs:
            ref = held.get(rec.id)
            if ref is not None and (mine := ref()) is not None:
                _copy(mine, rec)

    def restart(self) -> list[int]:
        """A new connection: the ids held, each counted afresh (the host counts anew)."""
        ids = []
        for ref in list(self.held.values()):
            ref.count = 0
            ids.append(ref.id)
        return ids

    def _gone(self, ref: weakref.ref[JobRecord]) -> None:
        assert isinstance(ref, _Ref)
        if self.held.get(ref.id) is ref:
            del self.held[ref.id]
            self.dropped += (ref.id, ref.count)
