"""An append-only journal of opaque byte records, with snapshots, for actorq's durability.

The package knows nothing about jobs: it stores bytes under gap-free sequence numbers and
gives them back after a crash. See `persistence.journal` for the theory of operation.
"""

from persistence.errors import (
    CorruptJournalError,
    JournalError,
    JournalFailedError,
    JournalFolderError,
    JournalLockedError,
    MissingRecordsError,
)
from persistence.filesystem import FileHandle, FileSystem, OsFileSystem
from persistence.fsync_policy import FsyncPolicy
from persistence.journal import Journal, open_journal
from persistence.memory_journal import MemoryJournal
from persistence.recovery import Recovery, TornTail
from persistence.sim_filesystem import SimFileSystem
from persistence.verify import VerifyReport, iter_frames, verify

__all__ = [
    "CorruptJournalError",
    "FileHandle",
    "FileSystem",
    "FsyncPolicy",
    "Journal",
    "JournalError",
    "JournalFailedError",
    "JournalFolderError",
    "JournalLockedError",
    "MemoryJournal",
    "MissingRecordsError",
    "OsFileSystem",
    "Recovery",
    "SimFileSystem",
    "TornTail",
    "VerifyReport",
    "iter_frames",
    "open_journal",
    "verify",
]
