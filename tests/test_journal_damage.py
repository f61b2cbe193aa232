"""What a runtime opening a damaged folder does: falls back to the previous snapshot
generation, refuses a folder missing durable records, names a file it cannot use."""

# Stays on Runtime: it damages a journal folder's files and opens it, the Runtime's own
# construction.

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import persistence
from actorq import (
    JournalCorruptError,
    JournalError,
    JournalFolderError,
    JournalMissingRecordsError,
    VirtualClock,
)
from actorq._journal import open_changelog
from actorq._runtime import Runtime


def _newest(folder: Path, pattern: str) -> Path:
    return sorted(folder.glob(pattern))[-1]


def _count(folder: Path, pattern: str) -> int:
    return len(list(folder.glob(pattern)))


async def _run(folder: Path) -> dict[int, str]:
    """Jobs across several snapshots and segments; their states at the clean close."""
    changelog = open_changelog(folder, segment_bytes=800, snapshot_bytes=1500)
    async with Runtime(journal=changelog, clock=VirtualClock()) as rt:
        q = rt.queue("q")
        for n in range(60):
            job = await q.add("j", {"n": n, "pad": "p" * 30})
            if n % 7 == 0:
                await q.cancel(job.id)
        jobs = {job.id: job.state.value for job in await q.get_jobs()}
    assert _count(folder, "snapshot-*.snap") == 2
    assert _count(folder, "journal-*.seg") > 2
    return jobs


async def _states(folder: Path) -> dict[int, str]:
    async with Runtime(path=folder, clock=VirtualClock()) as rt:
        return {job.id: job.state.value for job in await rt.queue("q").get_jobs()}


async def test_a_damaged_newest_snapshot_falls_back_to_the_previous_generation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    expected = await _run(tmp_path)
    newest = _newest(tmp_path, "snapshot-*.snap")
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0x10
    newest.write_bytes(bytes(data))
    caplog.set_level(logging.WARNING, logger="actorq.journal")
    assert await _states(tmp_path) == expected
    assert "skipped a damaged snapshot" in caplog.text and newest.name in caplog.text
    assert (tmp_path / (newest.name + ".corrupt")).exists()


async def test_a_deleted_newest_snapshot_loses_nothing(tmp_path: Path) -> None:
    expected = await _run(tmp_path)
    _newest(tmp_path, "snapshot-*.snap").unlink()
    assert await _states(tmp_path) == expected


async def test_a_missing_newest_segment_is_refused_naming_it(tmp_path: Path) -> None:
    await _run(tmp_path)
    newest = _newest(tmp_path, "journal-*.seg")
    newest.unlink()
    with pytest.raises(JournalMissingRecordsError) as info:
        async with Runtime(path=tmp_path, clock=VirtualClock()):
            pass
    err = info.value
    assert isinstance(err, JournalCorruptError)
    assert isinstance(err, persistence.MissingRecordsError)
    assert (err.file, err.offset) == (str(newest), 0)


async def test_a_file_the_journal_cannot_use_is_a_journal_error_naming_it(
    tmp_path: Path,
) -> None:
    await _run(tmp_path)
    newest = _newest(tmp_path, "journal-*.seg")
    newest.unlink()
    newest.mkdir()
    with pytest.raises(JournalFolderError) as info:
        async with Runtime(path=tmp_path, clock=VirtualClock()):
            pass
    assert isinstance(info.value, JournalError)
    assert info.value.file == str(newest)
