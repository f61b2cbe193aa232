"""The narrow file-system seam the journal and snapshots go through.

Everything that touches storage calls a `FileSystem`, so a simulation can swap the OS for
`SimFileSystem` and decide exactly which bytes survive a crash. The protocol holds only what
the journal needs; growing it makes every simulated file system harder to keep honest.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
from typing import Protocol

__all__ = ["FileHandle", "FileSystem", "OsFileSystem"]


class FileHandle(Protocol):
    """A file opened for appending: every write lands at the current end."""

    def write(self, data: bytes) -> None:
        """Write all of `data` (into the OS cache, not necessarily to disk)."""

    def flush(self) -> None:
        """Hand buffered bytes to the OS; no durability promise."""

    def fsync(self) -> None:
        """Make every byte written so far durable; raise OSError if the disk says no."""

    def truncate(self, size: int) -> None:
        """Cut the file to `size` bytes (durable only after `fsync`)."""

    def close(self) -> None:
        """Release the handle; idempotent."""


class FileSystem(Protocol):
    """The storage operations the journal uses; paths are plain strings."""

    def makedirs(self, path: str) -> None: ...

    def listdir(self, path: str) -> list[str]: ...

    def exists(self, path: str) -> bool: ...

    def read_bytes(self, path: str) -> bytes: ...

    def open_append(self, path: str) -> FileHandle:
        """Open `path` for appending, creating it empty if missing."""

    def create(self, path: str) -> FileHandle:
        """Open `path` for appending after truncating it (created if missing)."""

    def rename(self, src: str, dst: str) -> None:
        """Atomically replace `dst` with `src` (durable after `fsync_dir`)."""

    def remove(self, path: str) -> None: ...

    def fsync_dir(self, path: str) -> None:
        """Make creates, renames and removes inside folder `path` durable."""

    def lock(self, path: str) -> None:
        """Take an exclusive lock on file `path`; raise BlockingIOError if it is held."""

    def unlock(self, path: str) -> None:
        """Release a lock taken by `lock`; idempotent."""


def _fsync_fd(fd: int) -> None:
    # On macOS plain fsync only reaches the drive's cache; F_FULLFSYNC asks the drive to
    # flush, and some file systems (SMB) refuse it, in which case fsync is the best we have.
    if sys.platform == "darwin":  # pragma: no cover - exercised on macOS only
        try:
            fcntl.fcntl(fd, fcntl.F_FULLFSYNC)
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EINVAL):
                raise
        else:
            return
    os.fsync(fd)


class _OsHandle:
    """An unbuffered O_APPEND descriptor: a returned `write` is in the kernel's cache, so a
    process crash cannot lose it, only an OS crash or power loss can."""

    __slots__ = ("_fd",)

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def _require_fd(self) -> int:
        if self._fd is None:
            raise OSError(errno.EBADF, "file handle is closed")
        return self._fd

    def write(self, data: bytes) -> None:
        fd = self._require_fd()
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]

    def flush(self) -> None:
        self._require_fd()

    def fsync(self) -> None:
        _fsync_fd(self._require_fd())

    def truncate(self, size: int) -> None:
        os.ftruncate(self._require_fd(), size)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


class OsFileSystem:
    """The real file system, through `os` calls."""

    __slots__ = ("_locks",)

    def __init__(self) -> None:
        self._locks: dict[str, int] = {}

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def read_bytes(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def open_append(self, path: str) -> FileHandle:
        return _OsHandle(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644))

    def create(self, path: str) -> FileHandle:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC
        return _OsHandle(os.open(path, flags, 0o644))

    def rename(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def remove(self, path: str) -> None:
        os.remove(path)

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            _fsync_fd(fd)
        finally:
            os.close(fd)

    def lock(self, path: str) -> None:
        # flock belongs to the open file description, so a second open() in this same
        # process conflicts too: two journals on one folder are caught even in one process.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise BlockingIOError(exc.errno, f"{path} is locked") from exc
            raise
        # The pid is a diagnostic for whoever finds the folder locked; the flock is the truth.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._locks[path] = fd

    def unlock(self, path: str) -> None:
        fd = self._locks.pop(path, None)
        if fd is not None:
            os.close(fd)
