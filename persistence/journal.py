"""The file journal: an append-only log of opaque byte records in a folder.

Theory of operation
-------------------
A journal folder holds::

    LOCK                                   flock'ed by the one opener
    MANIFEST                               newest segment, durable seq, caller's high water
    journal-<first seq, 20 digits>.seg     segments, each a header then frames
    snapshot-<covered seq, 20 digits>.snap the two newest snapshot generations
    *.torn-<offset>, *.snap.corrupt        bytes recovery moved aside; never deleted

Every record gets the next sequence number; frames carry it, segments are named by their
first one, snapshots by the last one they cover. Recovery takes the newest snapshot that
checks out, then replays every frame after it and insists the numbers run without a gap.

Two snapshot generations are kept, and with them every segment the older one needs: a
segment goes only once a snapshot *newer* than everything in it is not the newest any more.
So when the newest snapshot is damaged, the previous one and the records after it rebuild
the same state.

What a gap cannot show (the newest segments deleted, the last one cut exactly at a frame
boundary) the manifest (`persistence.manifest`) can, up to what it knew: it names the newest
segment and the last seq known durable, and is rewritten at open, at every rollover and
snapshot, at a clean close, and when the caller sets its high-water mark
(`Journal.set_high_water`, a number kept beside the records that a lost tail cannot take
back). Records missing below that seq, or the named segment gone, are a
`MissingRecordsError`; damage below it is never a torn tail.

`append` writes a frame into the OS cache and returns; `sync` fsyncs (a flush only under
`FsyncPolicy.NEVER`). The runtime replies to a caller only after the `sync` covering its
record, so at most the frames after the last `sync` can be lost, and they can only be lost
from the end of the last segment. That is what makes the torn-tail rule sound: damage that
runs to the end of the last segment (zero bytes included, which some file systems leave
where a crash cut an append short), with no intact frame after it and nothing showing it
was durable, is taken for an interrupted append and is cut (the bytes saved beside the
segment); damage anywhere else hit durable data and recovery refuses to guess, naming file,
offset, expected seq and reason. A cut frame whose bytes are all there but fail their CRC
may also be a synced record that rotted: `TornTail.whole_frame` says which shape it had.

Some things are fsynced whatever the policy, because getting them wrong corrupts the folder
rather than losing the unsynced tail: a segment before the next one is created (a newer
segment must never exist on disk beside an older one whose end is missing), a new segment's
header and its folder entry, the current segment and then a snapshot (temp file, rename,
folder) when one is installed, a torn-tail cut, the last segment at open, the manifest, and
the final state on `close`.

A folder that cannot be used (a file that is no regular file, cannot be read or written) is
a `JournalFolderError` naming the file, never a bare OSError.

An fsync error is final (PostgreSQL's "fsyncgate": after a failed fsync the kernel may have
dropped the dirty pages, and a retry can succeed without writing them). Any OSError from a
write or fsync poisons the journal; every later call raises `JournalFailedError` and the
only way on is to reopen the folder and replay what really reached the disk.

Calls are serialised by one lock, so the runtime may run `append` and `sync` on its flush
thread while the event loop reads `last_seq`; the fsync of `sync` runs under a second lock,
the handle's, so an append never waits for a background fsync.
"""

from __future__ import annotations

import os
import threading
from types import TracebackType
from typing import NoReturn

from persistence.errors import (
    JournalError,
    JournalFailedError,
    JournalFolderError,
    JournalLockedError,
)
from persistence.filesystem import FileHandle, FileSystem, OsFileSystem
from persistence.frames import MAX_PAYLOAD, SEGMENT_HEADER, encode_frame, encode_segment_header
from persistence.fsync_policy import FsyncPolicy, parse_policy
from persistence.layout import LOCK_NAME, segment_name, snapshot_name, snapshot_tmp_name, torn_name
from persistence.manifest import Manifest, check_high_water, write_manifest
from persistence.recovery import Recovery, RecoveryPlan, SegmentState, TornTail, plan_recovery
from persistence.snapshot_files import encode_snapshot

__all__ = ["Journal", "open_journal"]

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
_SNAPSHOT_GENERATIONS = 2


def _create_segment(fs: FileSystem, folder: str, first_seq: int) -> tuple[FileHandle, SegmentState]:
    name = segment_name(first_seq)
    handle = fs.create(os.path.join(folder, name))
    try:
        handle.write(encode_segment_header(first_seq))
        handle.fsync()
        fs.fsync_dir(folder)
    except BaseException:
        handle.close()
        raise
    return handle, SegmentState(name, first_seq, first_seq - 1, SEGMENT_HEADER)


class Journal:
    """An open journal folder; obtain one from `open_journal`."""

    __slots__ = (
        "_closed",
        "_durable_seq",
        "_failure",
        "_folder",
        "_fs",
        "_handle",
        "_handle_lock",
        "_high_water",
        "_lock",
        "_lock_path",
        "_next_seq",
        "_policy",
        "_segment_bytes",
        "_segments",
        "_snapshot_seq",
        "_snapshot_seqs",
    )

    def __init__(
        self,
        *,
        fs: FileSystem,
        folder: str,
        lock_path: str,
        policy: FsyncPolicy,
        segment_bytes: int,
        segments: list[SegmentState],
        handle: FileHandle,
        next_seq: int,
        snapshot_seq: int,
        snapshot_seqs: list[int],
        high_water: int,
    ) -> None:
        self._fs = fs
        self._folder = folder
        self._lock_path = lock_path
        self._policy = policy
        self._segment_bytes = segment_bytes
        self._segments = segments
        self._handle = handle
        self._next_seq = next_seq
        self._snapshot_seq = snapshot_seq
        self._snapshot_seqs = snapshot_seqs
        self._high_water = high_water
        #: Every record up to here is on disk (open fsyncs what it found).
        self._durable_seq = next_seq - 1
        self._failure: OSError | None = None
        self._closed = False
        self._lock = threading.Lock()
        #: Held while the handle is fsynced, closed or replaced; taken after `_lock`, or alone.
        self._handle_lock = threading.Lock()

    # -- properties ------------------------------------------------------------------------

    @property
    def policy(self) -> FsyncPolicy:
        return self._policy

    @property
    def folder(self) -> str:
        return self._folder

    @property
    def last_seq(self) -> int:
        """Seq of the last record appended (0 for a journal that never held one)."""
        return self._next_seq - 1

    @property
    def snapshot_seq(self) -> int:
        return self._snapshot_seq

    @property
    def high_water(self) -> int:
        """The caller's high-water mark as last set (0 if never)."""
        return self._high_water

    @property
    def size_since_snapshot(self) -> int:
        """Bytes of segment files holding records the newest snapshot does not cover."""
        return sum(s.size for s in self._segments if s.last_seq > self._snapshot_seq)

    # -- writing ---------------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self._failure is not None:
            raise JournalFailedError(
                f"journal {self._folder} failed earlier ({self._failure}); reopen it to recover"
            ) from self._failure
        if self._closed:
            raise JournalError(f"journal {self._folder} is closed")

    def _fail(self, exc: OSError) -> NoReturn:
        self._failure = exc
        raise JournalFailedError(
            f"journal {self._folder} failed ({exc}); it takes no more writes, reopen it to recover"
        ) from exc

    def _write_manifest(self) -> None:
        manifest = Manifest(self._segments[-1].first_seq, self._durable_seq, self._high_water)
        write_manifest(self._fs, self._folder, manifest)

    def _roll(self) -> None:
        with self._handle_lock:  # after a `sync` fsyncing the handle outside the lock
            self._handle.fsync()
            self._durable_seq = self._next_seq - 1
            self._handle.close()
            self._handle, segment = _create_segment(self._fs, self._folder, self._next_seq)
        self._segments.append(segment)
        self._write_manifest()

    def append(self, payload: bytes) -> int:
        """Write one record into the OS cache (not synced) and return its seq."""
        if not isinstance(payload, bytes | bytearray):
            raise TypeError(f"payload must be bytes, got {type(payload).__name__}")
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD} bytes")
        with self._lock:
            self._check_writable()
            seq = self._next_seq
            frame = encode_frame(seq, bytes(payload))
            current = self._segments[-1]
            try:
                holds_frames = current.last_seq >= current.first_seq
                if holds_frames and current.size + len(frame) > self._segment_bytes:
                    self._roll()
                    current = self._segments[-1]
                self._handle.write(frame)
            except OSError as exc:
                self._fail(exc)
            current.size += len(frame)
            current.last_seq = seq
            self._next_seq = seq + 1
            return seq

    def sync(self) -> None:
        """Make every appended record durable (only flush under `FsyncPolicy.NEVER`).

        The fsync runs under the handle's own lock, not the journal's: appends (from the event
        loop, under ``"interval"``) go on meanwhile, and a rollover or `close` waits for it
        before closing the handle. Records appended before the call are in the current
        segment or an older one (fsynced at the rollover).
        """
        with self._lock:  # waits out a rollover, which holds it throughout
            self._check_writable()
            covered = self._next_seq - 1
        try:
            with self._handle_lock:
                if self._closed:
                    raise JournalError(f"journal {self._folder} is closed")
                if self._policy is FsyncPolicy.NEVER:
                    self._handle.flush()
                else:
                    self._handle.fsync()
                    self._durable_seq = max(self._durable_seq, covered)
        except OSError as exc:
            with self._lock:
                self._fail(exc)

    def set_high_water(self, value: int) -> None:
        """Keep `value` durably beside the records (in the manifest), whatever the policy:
        a caller's mark that must survive even when unsynced records are lost, returned as
        `Recovery.high_water` by the next open. Fsyncs before it returns."""
        check_high_water(value)
        with self._lock:
            self._check_writable()
            self._high_water = value
            try:
                self._write_manifest()
            except OSError as exc:
                self._fail(exc)

    def write_snapshot(self, payload: bytes, covers_seq: int) -> None:
        """Install `payload` as the state after record `covers_seq`, atomically, then drop
        snapshot generations older than the previous one and the segments only they needed.
        """
        if not isinstance(payload, bytes | bytearray):
            raise TypeError(f"payload must be bytes, got {type(payload).__name__}")
        with self._lock:
            self._check_writable()
            if not self._snapshot_seq <= covers_seq <= self.last_seq:
                raise ValueError(
                    f"covers_seq={covers_seq!r} must lie between the current snapshot's seq "
                    f"{self._snapshot_seq} and last_seq {self.last_seq}"
                )
            try:
                self._install_snapshot(bytes(payload), covers_seq)
            except OSError as exc:
                self._fail(exc)

    def _install_snapshot(self, payload: bytes, covers_seq: int) -> None:
        fs, folder = self._fs, self._folder
        current = self._segments[-1]
        if covers_seq == self.last_seq and current.last_seq >= current.first_seq:
            # A fresh segment lets every older one go as a whole file.
            self._roll()
        else:
            # The records this snapshot covers are the previous generation's fallback: they
            # must be on disk before the snapshot can make anything else redundant.
            with self._handle_lock:
                self._handle.fsync()
                self._durable_seq = self.last_seq
        tmp = os.path.join(folder, snapshot_tmp_name(covers_seq))
        handle = fs.create(tmp)
        try:
            handle.write(encode_snapshot(payload, covers_seq))
            handle.fsync()
        finally:
            handle.close()
        fs.rename(tmp, os.path.join(folder, snapshot_name(covers_seq)))
        fs.fsync_dir(folder)
        self._snapshot_seq = covers_seq
        self._snapshot_seqs = sorted({*self._snapshot_seqs, covers_seq})
        self._write_manifest()
        # Only once the new snapshot is durable may anything go, and only what the generation
        # before it does not need: if the new one is damaged, that one is the fallback.
        for old in self._snapshot_seqs[:-_SNAPSHOT_GENERATIONS]:
            fs.remove(os.path.join(folder, snapshot_name(old)))
        self._snapshot_seqs = self._snapshot_seqs[-_SNAPSHOT_GENERATIONS:]
        fallback_seq = self._snapshot_seqs[0] if len(self._snapshot_seqs) > 1 else 0
        while len(self._segments) > 1 and self._segments[0].last_seq <= fallback_seq:
            fs.remove(os.path.join(folder, self._segments.pop(0).name))
        fs.fsync_dir(folder)

    # -- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        """Fsync what is left (whatever the policy) and release the folder; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                with self._handle_lock:
                    try:
                        if self._failure is None:
                            try:
                                self._handle.fsync()
                                self._durable_seq = self.last_seq
                                self._write_manifest()
                            except OSError as exc:
                                self._fail(exc)
                    finally:
                        self._handle.close()
            finally:
                self._fs.unlock(self._lock_path)

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "failed" if self._failure else "closed" if self._closed else "open"
        return f"<Journal {self._folder!r} last_seq={self.last_seq} {state}>"


def _lock_detail(fs: FileSystem, lock_path: str) -> str:
    try:
        pid = fs.read_bytes(lock_path).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f"held by pid {pid}" if pid else ""


def _unused_name(fs: FileSystem, folder: str, name: str) -> str:
    candidate, n = name, 1
    while fs.exists(os.path.join(folder, candidate)):
        candidate, n = f"{name}.{n}", n + 1
    return candidate


def _repair(fs: FileSystem, folder: str, plan: RecoveryPlan) -> TornTail | None:
    """Apply what recovery decided: drop temp files, move bad bytes aside, cut the tail."""
    changed = False
    for name in plan.stale_tmp:
        fs.remove(os.path.join(folder, name))
        changed = True
    for name in plan.corrupt_snapshots:
        aside = _unused_name(fs, folder, name + ".corrupt")
        fs.rename(os.path.join(folder, name), os.path.join(folder, aside))
        changed = True
    torn: TornTail | None = None
    if plan.torn_segment is not None:
        segment_path = os.path.join(folder, plan.torn_segment)
        if plan.torn_bytes:
            saved = os.path.join(
                folder, _unused_name(fs, folder, torn_name(plan.torn_segment, plan.torn_offset))
            )
            handle = fs.create(saved)
            try:
                handle.write(plan.torn_bytes)
                handle.fsync()
            finally:
                handle.close()
            torn = TornTail(
                segment_path,
                plan.torn_offset,
                len(plan.torn_bytes),
                saved,
                plan.torn_reason,
                plan.torn_whole_frame,
            )
        if plan.torn_removes_segment:
            fs.remove(segment_path)
        else:
            handle = fs.open_append(segment_path)
            try:
                handle.truncate(plan.torn_offset)
                handle.fsync()
            finally:
                handle.close()
        changed = True
    if changed:
        fs.fsync_dir(folder)
    return torn


def open_journal(
    path: str | os.PathLike[str],
    *,
    fs: FileSystem | None = None,
    segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    fsync: FsyncPolicy | str = "always",
) -> tuple[Journal, Recovery]:
    """Lock the folder `path` (creating it if missing), recover what it holds, and return a
    journal ready to append after the last intact record."""
    policy = parse_policy(fsync)
    if isinstance(segment_bytes, bool) or not isinstance(segment_bytes, int) or segment_bytes < 1:
        raise ValueError(f"segment_bytes={segment_bytes!r} must be a positive int")
    fs = OsFileSystem() if fs is None else fs
    folder = os.fspath(path)
    lock_path = os.path.join(folder, LOCK_NAME)
    try:
        fs.makedirs(folder)
        fs.lock(lock_path)
    except BlockingIOError as exc:
        raise JournalLockedError(folder, _lock_detail(fs, lock_path)) from exc
    except OSError as exc:
        raise JournalFolderError.from_os_error(exc, folder) from exc
    try:
        plan = plan_recovery(fs, folder)
        torn = _repair(fs, folder, plan)
        segments = plan.segments
        if segments:
            handle = fs.open_append(os.path.join(folder, segments[-1].name))
            # What recovery read may still be only in the OS cache (a process crash under
            # "interval" or "never"): the manifest below calls it durable.
            handle.fsync()
        else:
            handle, segment = _create_segment(fs, folder, plan.next_seq)
            segments.append(segment)
        manifest = Manifest(segments[-1].first_seq, plan.next_seq - 1, plan.high_water)
        write_manifest(fs, folder, manifest)
    except OSError as exc:
        fs.unlock(lock_path)
        raise JournalFolderError.from_os_error(exc, folder) from exc
    except BaseException:
        fs.unlock(lock_path)
        raise
    journal = Journal(
        fs=fs,
        folder=folder,
        lock_path=lock_path,
        policy=policy,
        segment_bytes=segment_bytes,
        segments=segments,
        handle=handle,
        next_seq=plan.next_seq,
        snapshot_seq=plan.snapshot_seq,
        snapshot_seqs=plan.snapshot_seqs,
        high_water=plan.high_water,
    )
    recovery = Recovery(
        snapshot=plan.snapshot,
        snapshot_seq=plan.snapshot_seq,
        records=plan.records,
        torn_tail=torn,
        next_seq=plan.next_seq,
        high_water=plan.high_water,
        damaged_snapshots=tuple(plan.snapshot_problems),
    )
    return journal, recovery
