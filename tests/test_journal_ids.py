"""Job ids are never handed out twice, even when a crash or a cut tail loses the records
that held them; without a crash they run on without a gap."""

# Stays on Runtime: it cuts and loses a journal's frames, the Runtime's own files.

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

import persistence
from actorq import VirtualClock
from actorq._journal import ID_BLOCK, open_changelog
from actorq._runtime import Runtime

FOLDER = "/j"


def crash_image(sim: persistence.SimFileSystem) -> persistence.SimFileSystem:
    """What the disk of `sim` would hold if the power went out now."""
    image = persistence.SimFileSystem()
    image.makedirs(FOLDER)
    for name in sim.listdir(FOLDER):
        data = sim.synced_bytes(f"{FOLDER}/{name}")
        if data:
            handle = image.create(f"{FOLDER}/{name}")
            handle.write(data)
            handle.fsync()
            handle.close()
    image.fsync_dir(FOLDER)
    return image


async def _add(fs: persistence.SimFileSystem, fsync: str, count: int) -> list[int]:
    changelog = open_changelog(FOLDER, fs=fs, fsync=fsync)
    async with Runtime(journal=changelog, clock=VirtualClock()) as rt:
        return [(await rt.queue("q").add("a", i)).id for i in range(count)]


async def test_ids_lost_with_unsynced_frames_are_not_handed_out_again() -> None:
    sim = persistence.SimFileSystem()
    changelog = open_changelog(FOLDER, fs=sim, fsync="never")
    async with Runtime(journal=changelog, clock=VirtualClock()) as rt:
        handed_out = [(await rt.queue("q").add("a", i)).id for i in range(6)]
        image = crash_image(sim)  # under "never", none of those frames was fsynced
    assert handed_out == [1, 2, 3, 4, 5, 6]
    changelog = open_changelog(FOLDER, fs=image, fsync="never")
    async with Runtime(journal=changelog, clock=VirtualClock()) as rt:
        assert await rt.queue("q").get_job(1) is None  # lost, as "never" allows
        new = await rt.queue("q").add("b", None)
    assert new.id not in handed_out
    assert new.id <= handed_out[-1] + ID_BLOCK + 1


async def test_the_id_of_a_job_in_a_cut_last_frame_is_not_reused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim = persistence.SimFileSystem()
    changelog = open_changelog(FOLDER, fs=sim, fsync="always")
    async with Runtime(journal=changelog, clock=VirtualClock()) as rt:
        handed_out = [(await rt.queue("q").add("a", i)).id for i in range(3)]
        image = crash_image(sim)  # under "always", every acknowledged frame is there
    segment = f"{FOLDER}/journal-00000000000000000001.seg"
    data = bytearray(image.read_bytes(segment))
    data[-1] ^= 0xFF  # the last frame, acknowledged, rots
    handle = image.create(segment)
    handle.write(bytes(data))
    handle.close()
    caplog.set_level(logging.WARNING, logger="actorq.journal")
    changelog = open_changelog(FOLDER, fs=image)
    assert changelog.torn_tail is not None and changelog.torn_tail.whole_frame
    assert "may have been acknowledged" in caplog.text
    async with Runtime(journal=changelog, clock=VirtualClock()) as rt:
        assert await rt.queue("q").get_job(handed_out[-1]) is None
        new = await rt.queue("q").add("b", None)
    assert new.id not in handed_out


async def test_a_short_torn_tail_is_reported_as_never_acknowledged_under_always(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim = persistence.SimFileSystem()
    await _add(sim, "always", 2)
    changelog = open_changelog(FOLDER, fs=sim)
    sim.tear_next_write(5)
    changelog.journal.append(b"an append the crash cut short")
    image = crash_image(sim)
    changelog.close()
    caplog.set_level(logging.WARNING, logger="actorq.journal")
    changelog = open_changelog(FOLDER, fs=image)
    assert changelog.torn_tail is not None and not changelog.torn_tail.whole_frame
    assert 'never acknowledged under fsync="always"' in caplog.text
    changelog.close()


async def test_ids_run_on_without_a_gap_across_clean_restarts(tmp_path: Path) -> None:
    ids = []
    for _ in range(3):
        async with Runtime(path=tmp_path, clock=VirtualClock(), fsync="interval") as rt:
            ids.append((await rt.queue("q").add("a", None)).id)
            ids.append((await rt.queue("q").add("a", None)).id)
    assert ids == [1, 2, 3, 4, 5, 6]
    assert "MANIFEST" in os.listdir(tmp_path)


async def test_the_mark_is_raised_a_block_ahead_only_when_ids_reach_it() -> None:
    sim = persistence.SimFileSystem()
    changelog = open_changelog(FOLDER, fs=sim, fsync="interval")
    async with Runtime(journal=changelog, clock=VirtualClock()) as rt:
        await rt.queue("q").add("a", None)
        assert changelog.journal.high_water == 2 + ID_BLOCK
        await rt.queue("q").add_bulk([{"name": "b", "data": i} for i in range(10)])
        assert changelog.journal.high_water == 2 + ID_BLOCK
    assert changelog.journal.high_water == 12  # lowered to the next id on a clean close
