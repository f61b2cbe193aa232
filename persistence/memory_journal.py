"""`MemoryJournal`: the journal's contract with no storage behind it.

For `Runtime(path=None)` and for tests that want the runtime's journaling code path without
a folder. `recover()` returns what a reopen of a file journal would.
"""

from __future__ import annotations

from types import TracebackType

from persistence.errors import JournalError
from persistence.frames import FRAME_HEADER, MAX_PAYLOAD
from persistence.fsync_policy import FsyncPolicy, parse_policy
from persistence.manifest import check_high_water
from persistence.recovery import Recovery

__all__ = ["MemoryJournal"]


class MemoryJournal:
    """An in-memory journal with the same surface as `Journal`."""

    __slots__ = ("_closed", "_high_water", "_policy", "_records", "_snapshot", "_snapshot_seq")

    def __init__(self, *, fsync: FsyncPolicy | str = "always") -> None:
        self._policy = parse_policy(fsync)
        self._records: list[tuple[int, bytes]] = []
        self._snapshot: bytes | None = None
        self._snapshot_seq = 0
        self._high_water = 0
        self._closed = False

    @property
    def policy(self) -> FsyncPolicy:
        return self._policy

    @property
    def last_seq(self) -> int:
        return self._records[-1][0] if self._records else self._snapshot_seq

    @property
    def snapshot_seq(self) -> int:
        return self._snapshot_seq

    @property
    def high_water(self) -> int:
        return self._high_water

    @property
    def size_since_snapshot(self) -> int:
        """What the records after the snapshot would take as frames on disk."""
        return sum(FRAME_HEADER + len(payload) for _, payload in self._records)

    def _check_open(self) -> None:
        if self._closed:
            raise JournalError("memory journal is closed")

    def append(self, payload: bytes) -> int:
        if not isinstance(payload, bytes | bytearray):
            raise TypeError(f"payload must be bytes, got {type(payload).__name__}")
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD} bytes")
        self._check_open()
        seq = self.last_seq + 1
        self._records.append((seq, bytes(payload)))
        return seq

    def sync(self) -> None:
        self._check_open()

    def set_high_water(self, value: int) -> None:
        check_high_water(value)
        self._check_open()
        self._high_water = value

    def write_snapshot(self, payload: bytes, covers_seq: int) -> None:
        if not isinstance(payload, bytes | bytearray):
            raise TypeError(f"payload must be bytes, got {type(payload).__name__}")
        self._check_open()
        if not self._snapshot_seq <= covers_seq <= self.last_seq:
            raise ValueError(
                f"covers_seq={covers_seq!r} must lie between the current snapshot's seq "
                f"{self._snapshot_seq} and last_seq {self.last_seq}"
            )
        self._snapshot = bytes(payload)
        self._snapshot_seq = covers_seq
        self._records = [(seq, p) for seq, p in self._records if seq > covers_seq]

    def recover(self) -> Recovery:
        """The snapshot and records a reopen would return (works after `close` too)."""
        return Recovery(
            snapshot=self._snapshot,
            snapshot_seq=self._snapshot_seq,
            records=list(self._records),
            torn_tail=None,
            next_seq=self.last_seq + 1,
            high_water=self._high_water,
        )

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> MemoryJournal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<MemoryJournal last_seq={self.last_seq}{' closed' if self._closed else ''}>"
