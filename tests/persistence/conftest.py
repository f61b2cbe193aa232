"""Backends for the journal contract tests: one contract, three ways to keep it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import pytest

from persistence import (
    FileSystem,
    Journal,
    MemoryJournal,
    OsFileSystem,
    Recovery,
    SimFileSystem,
    open_journal,
)


class Backend(Protocol):
    name: str
    fs: FileSystem | None
    folder: str

    def open(self, **options: Any) -> tuple[Journal | MemoryJournal, Recovery]: ...

    def reopen(
        self, journal: Journal | MemoryJournal, **options: Any
    ) -> tuple[Journal | MemoryJournal, Recovery]: ...


class FileBackend:
    def __init__(self, name: str, fs: FileSystem, folder: str) -> None:
        self.name = name
        self.fs: FileSystem | None = fs
        self.folder = folder

    def open(self, **options: Any) -> tuple[Journal | MemoryJournal, Recovery]:
        assert self.fs is not None
        return open_journal(self.folder, fs=self.fs, **options)

    def reopen(
        self, journal: Journal | MemoryJournal, **options: Any
    ) -> tuple[Journal | MemoryJournal, Recovery]:
        journal.close()
        return self.open(**options)

    def files(self) -> list[str]:
        assert self.fs is not None
        return self.fs.listdir(self.folder)


class MemoryBackend:
    def __init__(self) -> None:
        self.name = "memory"
        self.fs: FileSystem | None = None
        self.folder = ""

    def open(self, **options: Any) -> tuple[Journal | MemoryJournal, Recovery]:
        journal = MemoryJournal(fsync=options.get("fsync", "always"))
        return journal, journal.recover()

    def reopen(
        self, journal: Journal | MemoryJournal, **options: Any
    ) -> tuple[Journal | MemoryJournal, Recovery]:
        assert isinstance(journal, MemoryJournal)
        return journal, journal.recover()


@pytest.fixture(params=["memory", "os", "sim"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "memory":
        return MemoryBackend()
    if request.param == "os":
        return FileBackend("os", OsFileSystem(), os.fspath(tmp_path / "journal"))
    return FileBackend("sim", SimFileSystem(), "/data/journal")


@pytest.fixture(params=["os", "sim"])
def file_backend(request: pytest.FixtureRequest, tmp_path: Path) -> FileBackend:
    if request.param == "os":
        return FileBackend("os", OsFileSystem(), os.fspath(tmp_path / "journal"))
    return FileBackend("sim", SimFileSystem(), "/data/journal")
