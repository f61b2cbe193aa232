"""The durable change log: the scheduler's batches as frames of a `persistence` journal.

Theory of operation
-------------------
`Runtime(path=...)` calls `open_changelog` (in a worker thread) and gets a `JournalChangeLog`,
the `ChangeLog` the scheduler commits every batch to. One batch of change records becomes one
frame (`actorq._journal_codec`), so a batch is atomic on replay, and the engine replies to
nobody before the commit is done.

When the commit is done, per fsync policy (only ``always`` makes it wait: `waits`):

* ``"always"`` (default): the frame is written *and fsynced* (append and sync run together
  in a worker thread, off the event loop: on asyncio a dedicated one, `_Flusher`, whose round
  trip costs a third of `anyio.to_thread`'s). Nothing acknowledged is lost, even on power loss.
* ``"interval"``: the frame is written (into the OS cache) before `commit` returns, and a
  background thread fsyncs at most every `sync_interval` seconds (0.1 s by default) while
  there is something to sync. A process crash loses nothing acknowledged; a power loss or OS
  crash loses at most what was acknowledged in the last `sync_interval` plus one fsync's
  duration. The append runs on the event loop and does not wait for the thread's fsync (the
  journal fsyncs outside its lock).
* ``"never"``: the frame is written and left to the OS (the journal still fsyncs segment
  rollovers, snapshots, and the final state on close).

Any write or fsync error is final: `commit` raises `JournalFailedError` (the scheduler
crashes, the runtime stops, waiting callers get `RuntimeClosedError`), and every later call
raises it again. An fsync is never retried: after a failed fsync the kernel may have dropped
the dirty pages, and a retry could report success for data that never reached the disk.
Under ``"interval"`` a failure of the background fsync surfaces at the next `commit`.

`replay` yields the newest snapshot's change records, then those of every frame after it.
A torn tail that recovery cut is logged on the ``actorq.journal`` logger and kept in
`JournalChangeLog.torn_tail`; the message says what its shape allows: bytes that stop short
of a whole frame were never fsynced (so under ``"always"`` never acknowledged), a whole frame
failing its checksum may also be an acknowledged record that was damaged. A damaged newest
snapshot replaced by the previous generation is logged too.

Job ids are never handed out twice, even when a crash loses the tail that recorded them
(unsynced frames under ``"interval"`` or ``"never"``, a damaged last frame under any
policy): the journal keeps a high-water mark of ids in its manifest, raised (durably,
before the commit that would pass it returns) a block ahead of the ids in use, and a runtime
that reopens the folder starts past it (`guard_ids`). A clean close lowers it to the next id,
so ids run on without a gap unless a crash came between.

`wants_snapshot` turns true once the segments written since the last snapshot exceed
`snapshot_bytes` (and twice the last snapshot's size, so a large state is not rewritten over
and over); `snapshot` encodes the state and installs it in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
from collections.abc import Awaitable, Callable, Iterator
from itertools import chain
from typing import Protocol, runtime_checkable

import anyio
import anyio.to_thread

import persistence
from persistence import FileSystem, FsyncPolicy, Journal, Recovery, TornTail

from ._core.commands import Change
from ._exceptions import ActorqError
from ._journal_codec import (
    PayloadError,
    decode_batch,
    decode_snapshot,
    encode_batch,
    encode_snapshot,
)

__all__ = [
    "DEFAULT_SEGMENT_BYTES",
    "DEFAULT_SNAPSHOT_BYTES",
    "DEFAULT_SYNC_INTERVAL",
    "GuardsIds",
    "JournalChangeLog",
    "JournalCorruptError",
    "JournalError",
    "JournalFailedError",
    "JournalFolderError",
    "JournalFormatError",
    "JournalLockedError",
    "JournalMissingRecordsError",
    "open_changelog",
]

log = logging.getLogger("actorq.journal")
log.addHandler(logging.NullHandler())


DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
DEFAULT_SNAPSHOT_BYTES = 256 * 1024 * 1024
DEFAULT_SYNC_INTERVAL = 0.1
#: How far ahead of the ids in use the high-water mark is raised: each raise costs a manifest
#: write (two fsyncs) on the commit that needs it, and a crash skips at most this many ids.
ID_BLOCK = 1 << 16


class IdCounter(Protocol):
    """What `JournalChangeLog.guard_ids` watches: the next job id the core will hand out."""

    next_id: int


@runtime_checkable
class GuardsIds(Protocol):
    """A change log that keeps job ids from being handed out twice across lives."""

    def guard_ids(self, ids: IdCounter) -> None: ...


class JournalError(ActorqError):
    """Base class of the errors a durable runtime's journal raises."""


class JournalLockedError(JournalError, persistence.JournalLockedError):
    """Another runtime (in this process or another) has the journal folder open."""


class JournalCorruptError(JournalError, persistence.CorruptJournalError):
    """The journal folder is damaged where recovery cannot safely cut; names the file, the
    byte offset, the sequence number expected there and the reason."""


class JournalMissingRecordsError(JournalCorruptError, persistence.MissingRecordsError):
    """Records the folder shows were durable are gone (a segment deleted, a sequence gap, a
    last segment cut short of what the manifest says was durable); names file and offset."""


class JournalFolderError(JournalError, persistence.JournalFolderError):
    """A file of the journal folder cannot be used (no regular file, unreadable, unwritable);
    names the file."""


class JournalFailedError(JournalError, persistence.JournalFailedError):
    """A write or fsync failed; the journal takes no more writes. Reopen the folder (a new
    runtime on it) to recover what reached the disk."""


class JournalFormatError(JournalError):
    """A frame checks out but its content is not a batch this actorq can read (for example
    one written by a newer version)."""


def _wrapped(exc: persistence.JournalError) -> JournalError:
    if isinstance(exc, JournalError):
        return exc
    if isinstance(exc, persistence.JournalLockedError):
        return JournalLockedError(exc.folder, exc.detail)
    if isinstance(exc, persistence.MissingRecordsError):
        return JournalMissingRecordsError(exc.file, exc.offset, exc.expected_seq, exc.reason)
    if isinstance(exc, persistence.JournalFolderError):
        return JournalFolderError(exc.file, exc.reason)
    if isinstance(exc, persistence.CorruptJournalError):
        return JournalCorruptError(exc.file, exc.offset, exc.expected_seq, exc.reason)
    if isinstance(exc, persistence.JournalFailedError):
        return JournalFailedError(str(exc))
    return JournalError(str(exc))


class _IntervalSyncer:
    """A daemon thread that fsyncs the journal at most every `interval` seconds while there
    are unsynced appends; the first error stops it and is kept in `error`."""

    def __init__(self, journal: Journal, interval: float) -> None:
        self._journal = journal
        self._interval = interval
        self._cond = threading.Condition()
        self._dirty = False
        self._stopping = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"actorq-journal-sync {journal.folder}", daemon=True
        )
        self._thread.start()

    def kick(self) -> None:
        """Something was appended: sync it within the interval."""
        if self._dirty:  # already due; the sync reads every append made before it
            return
        with self._cond:
            self._dirty = True
            self._cond.notify()

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._dirty and not self._stopping:
                    cond.wait()
                if self._stopping:
                    return  # close() fsyncs what is left
                self._dirty = False
            try:
                self._journal.sync()
            except BaseException as exc:
                self.error = exc
                log.error("journal %s: background fsync failed: %s", self._journal.folder, exc)
                return
            with cond:
                cond.wait_for(lambda: self._stopping, timeout=self._interval)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()


def _asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop; None on another backend (trio)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class _Flusher:
    """A daemon thread that appends and fsyncs the frames of ``"always"`` commits made on an
    asyncio loop, and wakes the loop when each is durable.

    The same round trip as `anyio.to_thread.run_sync` (which trio commits still take) at a
    third of its cost: a queue put and a `call_soon_threadsafe`, no capacity limiter, no
    worker pool, no context copy. It is on the path of every acknowledgement under
    ``"always"``: the scheduler waits for it before replying, dispatching and publishing.
    """

    def __init__(self, work: Callable[[bytes], None], name: str) -> None:
        self._work = work
        self._queue: queue.SimpleQueue[
            tuple[bytes, asyncio.AbstractEventLoop, asyncio.Future[None]] | None
        ] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            payload, loop, future = item
            error: BaseException | None = None
            try:
                self._work(payload)
            except BaseException as exc:
                error = exc
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_settle, future, error)
            del item, future, error

    async def run(self, loop: asyncio.AbstractEventLoop, payload: bytes) -> None:
        """Append and sync `payload` in the thread; return (or raise) once it is done,
        whatever cancellation comes meanwhile (like `anyio.to_thread.run_sync`)."""
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put((payload, loop, future))
        with anyio.CancelScope(shield=True):
            await future

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join()


class JournalChangeLog:
    """A `ChangeLog` that journals every batch in a folder; see the module docstring."""

    records = True

    def __init__(
        self,
        journal: Journal,
        recovery: Recovery,
        *,
        snapshot_bytes: int = DEFAULT_SNAPSHOT_BYTES,
        sync_interval: float = DEFAULT_SYNC_INTERVAL,
    ) -> None:
        self.journal = journal
        self.policy: FsyncPolicy = journal.policy
        #: Only ``always`` makes a commit wait (for its fsync); see `ChangeLog.waits`.
        self.waits = self.policy is FsyncPolicy.ALWAYS
        self.snapshot_bytes = snapshot_bytes
        self.sync_interval = sync_interval
        self.torn_tail: TornTail | None = recovery.torn_tail
        self.replayed_records = len(recovery.records)
        self._recovery: Recovery | None = recovery
        self._snapshot_size = len(recovery.snapshot) if recovery.snapshot is not None else 0
        self._failure: JournalError | None = None
        self._closed = False
        self._syncer = (
            _IntervalSyncer(journal, sync_interval) if self.policy is FsyncPolicy.INTERVAL else None
        )
        self._flusher: _Flusher | None = None
        self._ids: IdCounter | None = None
        self._id_mark = recovery.high_water
        for problem in recovery.damaged_snapshots:
            log.warning(
                "journal %s: skipped a damaged snapshot for the previous generation, which "
                "the records after it bring to the same state: %s",
                journal.folder,
                problem,
            )
        if recovery.snapshot is not None or recovery.records:
            log.info(
                "journal %s: recovering %s%d frame(s)",
                journal.folder,
                ""
                if recovery.snapshot is None
                else f"the snapshot covering seq {recovery.snapshot_seq} and ",
                len(recovery.records),
            )
        if self.torn_tail is not None:
            tail = self.torn_tail
            log.warning(
                "journal %s: cut a torn tail of %d bytes at offset %d of %s (%s; %s); saved to %s",
                journal.folder,
                tail.length,
                tail.offset,
                tail.file,
                tail.reason,
                _torn_tail_meaning(tail),
                tail.saved_to,
            )

    # ------------------------------------------------------------------ properties

    @property
    def folder(self) -> str:
        return self.journal.folder

    @property
    def last_seq(self) -> int:
        """Seq of the last frame written (each frame is one batch)."""
        return self.journal.last_seq

    @property
    def failed(self) -> bool:
        return self._failure is not None

    # ------------------------------------------------------------------ ChangeLog

    def _fail(self, exc: BaseException) -> JournalError:
        error = (
            _wrapped(exc)
            if isinstance(exc, persistence.JournalError)
            else JournalFailedError(f"journal {self.folder} failed: {exc!r}")
        )
        if self._failure is None:
            self._failure = error
            log.error("journal %s failed, the runtime stops: %s", self.folder, error)
        return error

    @property
    def id_high_water(self) -> int:
        """No job id at or above it was ever handed out on this folder (ids below it may
        have been, even if the records holding them were lost)."""
        return self._id_mark

    def guard_ids(self, ids: IdCounter) -> None:
        """Start `ids` past every id an earlier life on this folder may have handed out, and
        from now on keep the journal's high-water mark ahead of it. A runtime calls it once,
        after replay and before its first commit."""
        ids.next_id = max(ids.next_id, self._id_mark)
        self._ids = ids

    def keep_ids_ahead(self) -> None:
        """Before a commit: if the batch holds ids at or past the high-water mark, raise the
        mark first, so no id it hands out can be handed out again after a crash."""
        ids = self._ids
        if ids is not None and ids.next_id > self._id_mark:
            self._raise_id_mark(ids.next_id)

    def _raise_id_mark(self, next_id: int) -> None:
        """Durably mark every id below `next_id` + a block as possibly handed out
        (blocking: rare, a block at a time)."""
        self._check()
        mark = next_id + ID_BLOCK
        try:
            self.journal.set_high_water(mark)
        except persistence.JournalError as exc:
            raise self._fail(exc) from exc
        self._id_mark = mark

    def _check(self) -> None:
        if self._failure is not None:
            raise self._failure
        syncer = self._syncer
        if syncer is not None and syncer.error is not None:
            raise self._fail(syncer.error) from syncer.error

    def _append_and_sync(self, payload: bytes) -> None:
        self.journal.append(payload)
        self.journal.sync()

    def commit(self, changes: list[Change]) -> Awaitable[None] | None:
        """Write `changes` as one frame. Under ``always``, an awaitable that returns once
        the frame is synced (the fsync runs off the event loop); under ``interval`` and
        ``never`` the frame is handed to the OS here and None is returned (`waits`)."""
        self.keep_ids_ahead()
        if not self.waits:
            self._write(changes)
            return None
        return self._commit_synced(changes)

    async def _commit_synced(self, changes: list[Change]) -> None:
        self._check()
        payload = encode_batch(changes)
        try:
            loop = _asyncio_loop()
            if loop is not None:
                flusher = self._flusher
                if flusher is None:
                    name = f"actorq-journal-flush {self.folder}"
                    flusher = self._flusher = _Flusher(self._append_and_sync, name)
                await flusher.run(loop, payload)
            else:
                await anyio.to_thread.run_sync(self._append_and_sync, payload)
        except persistence.JournalError as exc:
            raise self._fail(exc) from exc

    def _write(self, changes: list[Change]) -> None:
        """Append `changes` as one frame (``interval``: the syncer fsyncs it soon)."""
        self._check()
        payload = encode_batch(changes)
        try:
            self.journal.append(payload)
            if self._syncer is not None:
                self._syncer.kick()
        except persistence.JournalError as exc:
            raise self._fail(exc) from exc

    def _frame(self, record: tuple[int, bytes]) -> list[Change]:
        seq, payload = record
        try:
            return decode_batch(payload)
        except PayloadError as exc:
            raise self._unreadable(f"cannot read frame seq {seq}: {exc}") from None

    def _snapshot_changes(self, recovery: Recovery) -> Iterator[Change]:
        if recovery.snapshot is not None:
            where = f"the snapshot covering seq {recovery.snapshot_seq}"
            try:
                yield from decode_snapshot(recovery.snapshot)
            except PayloadError as exc:
                raise self._unreadable(f"cannot read {where}: {exc}") from None

    def _unreadable(self, what: str) -> JournalFormatError:
        error = JournalFormatError(f"journal {self.folder}: {what}")
        log.error("%s; the runtime cannot start on it", error)
        return error

    def replay(self) -> Iterator[Change]:
        """The snapshot's change records, then every frame's after it, decoded (once)."""
        recovery = self._recovery
        if recovery is None:
            raise RuntimeError("a JournalChangeLog replays once, into the runtime that opened it")
        self._recovery = None
        # Chained in C: no Python frame per record between the decoder and the core.
        frames = chain.from_iterable(map(self._frame, recovery.records))
        return chain(self._snapshot_changes(recovery), frames)

    def wants_snapshot(self) -> bool:
        limit = max(self.snapshot_bytes, 2 * self._snapshot_size)
        return self.journal.size_since_snapshot > limit

    def _write_snapshot(self, changes: list[Change], covers_seq: int) -> None:
        payload = encode_snapshot(changes)
        self.journal.write_snapshot(payload, covers_seq)
        self._snapshot_size = len(payload)

    async def snapshot(self, changes: list[Change]) -> None:
        """Install `changes` (the whole state) as the snapshot covering every frame so far."""
        self._check()
        covers = self.journal.last_seq
        if covers == self.journal.snapshot_seq:
            return  # nothing written since the last snapshot
        try:
            await anyio.to_thread.run_sync(self._write_snapshot, changes, covers)
        except persistence.JournalError as exc:
            raise self._fail(exc) from exc
        log.info(
            "journal %s: snapshot covering seq %d (%d bytes)",
            self.folder,
            covers,
            self._snapshot_size,
        )

    def close(self) -> None:
        """Stop the background sync, fsync what is left and release the folder (blocking)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._syncer is not None:
                self._syncer.stop()
            if self._flusher is not None:
                self._flusher.stop()
            if self._ids is not None and self._failure is None:
                # Every id handed out lies below the next one: a reopen needs no block gap.
                self.journal.set_high_water(self._ids.next_id)
            self.journal.close()
        except persistence.JournalError as exc:
            raise self._fail(exc) from exc

    async def aclose(self) -> None:
        if not self._closed:
            await anyio.to_thread.run_sync(self.close)

    def __repr__(self) -> str:
        state = "failed" if self._failure else "closed" if self._closed else "open"
        return (
            f"<JournalChangeLog {self.folder!r} fsync={self.policy.value} "
            f"last_seq={self.last_seq} {state}>"
        )


def _torn_tail_meaning(tail: TornTail) -> str:
    if tail.whole_frame:
        return (
            "a whole frame failing its checksum: an append interrupted by a crash, or damage "
            "to the last record, which may have been acknowledged under any fsync policy"
        )
    return (
        "an append cut short by a crash: never fsynced, so never acknowledged under "
        'fsync="always"; under "interval" or "never" it may have been'
    )


def open_changelog(
    path: str | os.PathLike[str],
    *,
    fsync: FsyncPolicy | str = "always",
    segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    snapshot_bytes: int = DEFAULT_SNAPSHOT_BYTES,
    sync_interval: float = DEFAULT_SYNC_INTERVAL,
    fs: FileSystem | None = None,
) -> JournalChangeLog:
    """Lock the journal folder `path` (created if missing), recover it, and return the change
    log a runtime replays and commits to. Blocking: a runtime calls it in a worker thread.

    Raises `JournalLockedError` if another runtime has the folder open, `JournalCorruptError`
    if it is damaged anywhere but a torn tail. `fs` swaps the file system (a
    `persistence.SimFileSystem` in tests).
    """
    if isinstance(snapshot_bytes, bool) or not isinstance(snapshot_bytes, int):
        raise TypeError(f"snapshot_bytes={snapshot_bytes!r} must be an int")
    if snapshot_bytes < 1:
        raise ValueError(f"snapshot_bytes={snapshot_bytes!r} must be positive")
    if not sync_interval > 0:
        raise ValueError(f"sync_interval={sync_interval!r} must be positive (seconds)")
    try:
        journal, recovery = persistence.open_journal(
            path, fs=fs, segment_bytes=segment_bytes, fsync=fsync
        )
    except persistence.JournalError as exc:
        error = _wrapped(exc)
        if isinstance(error, JournalCorruptError):
            log.error(
                "journal %s is damaged and was not opened: %s (`actorq verify %s` lists "
                "every problem)",
                os.fspath(path),
                error,
                os.fspath(path),
            )
        raise error from exc
    return JournalChangeLog(
        journal, recovery, snapshot_bytes=snapshot_bytes, sync_interval=sync_interval
    )
