"""Reading a folder that a live journal may change under the reader.

The read-only tools (`verify`, `iter_frames`, the CLI's inspections) take no lock, so a live
journal may roll to a new segment, install a snapshot and delete what it replaces while they
read. A read is trusted only if the folder's names and its manifest were the same before and
after it and no file vanished meanwhile; otherwise it is done again. Appends to the last
segment change neither, and a reader sees a prefix of them, which is a consistent journal.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from persistence.errors import JournalFolderError
from persistence.filesystem import FileSystem
from persistence.layout import MANIFEST_NAME

__all__ = ["read_bytes", "read_consistently"]

T = TypeVar("T")

#: A live journal changes its folder names only at a rollover or a snapshot, far apart next
#: to one read; a few tries outlast a burst of them.
ATTEMPTS = 8


def read_bytes(fs: FileSystem, path: str) -> bytes:
    """The bytes of `path`; an OSError other than a vanished file is a JournalFolderError
    naming it (a vanished file is left to `read_consistently`, or to the caller)."""
    try:
        return fs.read_bytes(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise JournalFolderError.from_os_error(exc, path) from exc


def _fingerprint(fs: FileSystem, folder: str) -> tuple[list[str], bytes | None]:
    try:
        names = fs.listdir(folder)
    except OSError as exc:
        raise JournalFolderError.from_os_error(exc, folder) from exc
    try:
        manifest: bytes | None = read_bytes(fs, os.path.join(folder, MANIFEST_NAME))
    except FileNotFoundError:
        manifest = None
    return names, manifest


def read_consistently(fs: FileSystem, folder: str, read: Callable[[], T]) -> T:
    """`read()`, done again while the folder changes under it; JournalFolderError if it
    never holds still for one whole read."""
    for _ in range(ATTEMPTS):
        before = _fingerprint(fs, folder)
        try:
            result = read()
        except FileNotFoundError as exc:
            if _fingerprint(fs, folder) == before:
                # Listed but unreadable while nothing changed: a dangling link, say.
                raise JournalFolderError.from_os_error(exc, folder) from exc
            continue
        if _fingerprint(fs, folder) == before:
            return result
    raise JournalFolderError(
        folder, f"the folder changed under each of {ATTEMPTS} reads (a live journal at work)"
    )
