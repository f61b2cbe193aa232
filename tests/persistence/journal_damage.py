"""Helpers the damage tests share: leave a journal as a killed process would, write and
flip bytes of its files."""

from __future__ import annotations

from persistence import FileSystem, Journal


def abandon(journal: Journal) -> None:
    """Leave `journal` as a killed process would: no close, so no final fsync and no
    manifest update; the kernel closes its file and releases its lock."""
    journal._handle.close()
    journal._fs.unlock(journal._lock_path)


def write_file(fs: FileSystem, path: str, data: bytes) -> None:
    handle = fs.create(path)
    handle.write(data)
    handle.fsync()
    handle.close()


def flip(fs: FileSystem, path: str, offset: int) -> None:
    data = bytearray(fs.read_bytes(path))
    data[offset] ^= 0xFF
    write_file(fs, path, bytes(data))
