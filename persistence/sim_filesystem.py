"""An in-memory `FileSystem` that remembers what a crash would keep.

Each file is an inode holding two byte strings: *written* (what reads see now) and *synced*
(what the last fsync made durable). Folders hold two name tables the same way: the live one
and the one the last `fsync_dir` made durable. `crash()` throws away everything volatile, so a
test can ask "what does recovery see if the power went out right here?" at any point.

Fault injection models the two failures that matter for a journal: an fsync that reports an
error (`fail_next_fsync`) and an append that reaches the disk only partly (`tear_next_write`).
"""

from __future__ import annotations

import errno
import posixpath

__all__ = ["SimFileSystem"]


class _Inode:
    __slots__ = ("data", "synced", "torn_at", "torn_keep")

    def __init__(self) -> None:
        self.data = bytearray()
        self.synced = b""
        # A torn write keeps its first bytes across a crash even though it was never synced;
        # that is how a real disk leaves half a frame at the end of a file.
        self.torn_at: int | None = None
        self.torn_keep = b""

    def bytes_after_crash(self) -> bytes:
        if self.torn_at is not None and self.torn_at >= len(self.synced):
            # The OS may have written back everything before the torn write, too.
            return bytes(self.data[: self.torn_at]) + self.torn_keep
        return self.synced


class _SimHandle:
    __slots__ = ("_closed", "_epoch", "_fs", "_inode")

    def __init__(self, fs: SimFileSystem, inode: _Inode) -> None:
        self._fs = fs
        self._inode = inode
        self._epoch = fs._epoch
        self._closed = False

    def _check(self) -> _Inode:
        if self._closed:
            raise OSError(errno.EBADF, "file handle is closed")
        if self._epoch != self._fs._epoch:
            raise OSError(errno.EBADF, "file handle was opened before a crash")
        return self._inode

    def write(self, data: bytes) -> None:
        inode = self._check()
        if self._fs._fail_writes:
            self._fs._fail_writes -= 1
            raise OSError(errno.EIO, "injected write failure")
        if self._fs._tear_keep is not None:
            inode.torn_at = len(inode.data)
            inode.torn_keep = bytes(data[: self._fs._tear_keep])
            self._fs._tear_keep = None
        inode.data += data

    def flush(self) -> None:
        self._check()

    def fsync(self) -> None:
        inode = self._check()
        self._fs._consume_fsync_fault()
        inode.synced = bytes(inode.data)
        inode.torn_at = None
        inode.torn_keep = b""

    def truncate(self, size: int) -> None:
        inode = self._check()
        del inode.data[size:]
        if inode.torn_at is not None and inode.torn_at >= size:
            inode.torn_at = None
            inode.torn_keep = b""

    def close(self) -> None:
        self._closed = True


class SimFileSystem:
    """A deterministic in-memory file system with crash and fault injection.

    Folders created with `makedirs` are durable at once (the journal creates its folder once;
    modelling that too would only add noise). Locks are bookkeeping on this instance and are
    released by `crash()`, as a dead process releases its flocks.
    """

    def __init__(self) -> None:
        self._names: dict[str, _Inode] = {}
        self._durable_names: dict[str, _Inode] = {}
        self._dirs: set[str] = {"/", "."}
        self._locks: set[str] = set()
        self._epoch = 0
        self._fail_fsyncs = 0
        self._fail_writes = 0
        self._tear_keep: int | None = None

    # -- fault injection -------------------------------------------------------------------

    def crash(self) -> None:
        """Lose everything not synced: file bytes, creates, renames and removes."""
        survivors: dict[int, bytes] = {}
        for inode in self._durable_names.values():
            survivors.setdefault(id(inode), inode.bytes_after_crash())
        for inode in self._durable_names.values():
            kept = survivors[id(inode)]
            inode.data = bytearray(kept)
            inode.synced = kept
            inode.torn_at = None
            inode.torn_keep = b""
        self._names = dict(self._durable_names)
        self._locks.clear()
        self._epoch += 1
        self._tear_keep = None
        self._fail_fsyncs = 0
        self._fail_writes = 0

    def fail_next_fsync(self) -> None:
        """Make the next fsync (of a file or a folder) raise OSError(EIO)."""
        self._fail_fsyncs += 1

    def fail_next_write(self) -> None:
        """Make the next write raise OSError(EIO) without writing anything."""
        self._fail_writes += 1

    def tear_next_write(self, keep: int) -> None:
        """Make the next write keep only its first `keep` bytes at the next crash."""
        if keep < 0:
            raise ValueError(f"keep={keep!r} must be >= 0")
        self._tear_keep = keep

    def _consume_fsync_fault(self) -> None:
        if self._fail_fsyncs:
            self._fail_fsyncs -= 1
            raise OSError(errno.EIO, "injected fsync failure")

    # -- FileSystem ------------------------------------------------------------------------

    @staticmethod
    def _norm(path: str) -> str:
        return posixpath.normpath(path)

    def _parent_must_exist(self, path: str) -> None:
        parent = posixpath.dirname(path) or "."
        if parent not in self._dirs:
            raise FileNotFoundError(errno.ENOENT, "no such folder", parent)

    def makedirs(self, path: str) -> None:
        path = self._norm(path)
        while path not in self._dirs:
            self._dirs.add(path)
            path = posixpath.dirname(path) or "."

    def listdir(self, path: str) -> list[str]:
        path = self._norm(path)
        if path not in self._dirs:
            raise FileNotFoundError(errno.ENOENT, "no such folder", path)
        names = {posixpath.basename(p) for p in self._names if posixpath.dirname(p) == path}
        names.update(
            posixpath.basename(d) for d in self._dirs if d != path and posixpath.dirname(d) == path
        )
        return sorted(names)

    def exists(self, path: str) -> bool:
        path = self._norm(path)
        return path in self._names or path in self._dirs

    def read_bytes(self, path: str) -> bytes:
        inode = self._names.get(self._norm(path))
        if inode is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", path)
        return bytes(inode.data)

    def open_append(self, path: str) -> _SimHandle:
        path = self._norm(path)
        inode = self._names.get(path)
        if inode is None:
            self._parent_must_exist(path)
            inode = self._names[path] = _Inode()
        return _SimHandle(self, inode)

    def create(self, path: str) -> _SimHandle:
        handle = self.open_append(path)
        handle.truncate(0)
        return handle

    def rename(self, src: str, dst: str) -> None:
        src, dst = self._norm(src), self._norm(dst)
        if src not in self._names:
            raise FileNotFoundError(errno.ENOENT, "no such file", src)
        self._parent_must_exist(dst)
        self._names[dst] = self._names.pop(src)

    def remove(self, path: str) -> None:
        path = self._norm(path)
        if self._names.pop(path, None) is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", path)

    def fsync_dir(self, path: str) -> None:
        path = self._norm(path)
        self._consume_fsync_fault()
        for name in [n for n in self._durable_names if posixpath.dirname(n) == path]:
            del self._durable_names[name]
        for name, inode in self._names.items():
            if posixpath.dirname(name) == path:
                self._durable_names[name] = inode

    def lock(self, path: str) -> None:
        path = self._norm(path)
        if path in self._locks:
            raise BlockingIOError(errno.EWOULDBLOCK, f"{path} is locked")
        self.open_append(path).close()
        self._locks.add(path)

    def unlock(self, path: str) -> None:
        self._locks.discard(self._norm(path))

    # -- inspection for tests --------------------------------------------------------------

    def synced_bytes(self, path: str) -> bytes:
        """What `path` would hold after a crash right now (b"" if its name would be lost)."""
        inode = self._durable_names.get(self._norm(path))
        return b"" if inode is None else inode.bytes_after_crash()
