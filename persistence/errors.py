"""The errors the journal raises; every one derives from `JournalError`."""

from __future__ import annotations

__all__ = [
    "CorruptJournalError",
    "JournalError",
    "JournalFailedError",
    "JournalFolderError",
    "JournalLockedError",
    "MissingRecordsError",
]


class JournalError(Exception):
    """Base class of every error raised by `persistence`."""


class CorruptJournalError(JournalError):
    """A snapshot or frame is damaged somewhere recovery cannot safely cut.

    Carries enough to find the damage with a hex editor: the file, the byte offset in it, the
    sequence number recovery expected there, and why the bytes were rejected.
    """

    def __init__(self, file: str, offset: int, expected_seq: int, reason: str) -> None:
        self.file = file
        self.offset = offset
        self.expected_seq = expected_seq
        self.reason = reason
        super().__init__(
            f"corrupt journal: {file} at byte offset {offset}, "
            f"expected seq {expected_seq}: {reason}"
        )

    def __reduce__(self) -> tuple[type[CorruptJournalError], tuple[str, int, int, str]]:
        return (type(self), (self.file, self.offset, self.expected_seq, self.reason))


class MissingRecordsError(CorruptJournalError):
    """Records the folder itself shows were durable are gone: a segment deleted, a sequence
    gap, a snapshot whose following records are missing, or a last segment that ends before
    the seq its manifest says was durable. Names the file and offset where they should be."""


class JournalFolderError(JournalError):
    """A file of the journal folder cannot be used as the journal needs: it is no regular
    file, cannot be read or written, or kept changing under a read-only inspection."""

    def __init__(self, file: str, reason: str) -> None:
        self.file = file
        self.reason = reason
        super().__init__(f"journal folder problem: {file}: {reason}")

    def __reduce__(self) -> tuple[type[JournalFolderError], tuple[str, str]]:
        return (type(self), (self.file, self.reason))

    @classmethod
    def from_os_error(cls, exc: OSError, fallback_file: str) -> JournalFolderError:
        reason = exc.strerror or str(exc) or type(exc).__name__
        file = exc.filename if isinstance(exc.filename, str) else fallback_file
        return cls(file, f"{reason} ({type(exc).__name__})")


class JournalLockedError(JournalError):
    """Another opener (this process or another) holds the journal folder."""

    def __init__(self, folder: str, detail: str = "") -> None:
        self.folder = folder
        self.detail = detail
        suffix = f" ({detail})" if detail else ""
        super().__init__(f"journal folder {folder} is locked by another opener{suffix}")

    def __reduce__(self) -> tuple[type[JournalLockedError], tuple[str, str]]:
        return (type(self), (self.folder, self.detail))


class JournalFailedError(JournalError):
    """A write or fsync failed earlier; the journal refuses all further writes.

    After a failed fsync the kernel may have dropped the dirty pages and a retry can report
    success for data that never reached the disk (PostgreSQL's "fsyncgate"), so the only safe
    way forward is to reopen the folder and replay what is really there.
    """
