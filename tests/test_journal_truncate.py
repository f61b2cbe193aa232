"""Cut the last segment of a real run's journal at every byte offset and reopen it: never an
error, always the state after some prefix of whole batches, every acknowledged add there."""

# Stays on Runtime: it cuts a journal segment at every offset, the Runtime's own files.

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import persistence
from actorq import VirtualClock
from actorq._core import CoreState
from actorq._journal import JournalChangeLog, open_changelog
from actorq._runtime import Runtime
from persistence.frames import FRAME_HEADER, SEGMENT_HEADER, scan_segment
from persistence.layout import parse_segment_name


async def _run(
    folder: Path,
) -> tuple[dict[int, dict[str, Any]], dict[int, int], dict[int, int]]:
    """A small run of acknowledged calls: the state after each, by the journal's last seq;
    the seq by which each acknowledged add was durable; the seq that removed a job."""
    states: dict[int, dict[str, Any]] = {}
    added: dict[int, int] = {}
    gone: dict[int, int] = {}
    changelog = open_changelog(folder, segment_bytes=1200)
    async with Runtime(journal=changelog, clock=VirtualClock(), seed=5) as rt:
        states[changelog.last_seq] = rt._core.snapshot()

        def mark() -> None:
            states[changelog.last_seq] = rt._core.snapshot()
            for job_id in added:
                if job_id not in rt._core.jobs:
                    gone.setdefault(job_id, changelog.last_seq)

        a, b = rt.queue("a"), rt.queue("b")
        for i in range(4):
            job = await a.add("x", {"i": i, "pad": "p" * (i * 7)}, priority=i % 3)
            added[job.id] = changelog.last_seq
            mark()
        await b.pause()
        mark()
        for job in await b.add_bulk([{"name": "y", "data": i, "lifo": i == 1} for i in range(3)]):
            added[job.id] = changelog.last_seq
        mark()
        await a.cancel(2, reason="no")
        mark()
        await rt.snapshot()
        mark()
        for i in range(6):
            job = await a.add("z", [i, None, 1.25], delay=10 + i, tags=["t"])
            added[job.id] = changelog.last_seq
            mark()
        await a.remove(1)
        mark()
        await b.resume()
        mark()
        await a.drain()
        mark()
        for i in range(8):
            job = await b.add("last", {"n": i}, idempotency_key=f"k{i % 5}")
            added[job.id] = changelog.last_seq
            mark()
        await b.pause()
        mark()
    return states, added, gone


def _sim_with(files: dict[str, bytes]) -> persistence.SimFileSystem:
    sim = persistence.SimFileSystem()
    sim.makedirs("/j")
    for name, data in files.items():
        handle = sim.create(f"/j/{name}")
        handle.write(data)
        handle.close()
    return sim


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_every_cut_of_the_last_segment_reopens_to_a_prefix_of_batches(
    tmp_path: Path,
) -> None:
    states, added, gone = await _run(tmp_path)
    files = {
        name: (tmp_path / name).read_bytes()
        for name in os.listdir(tmp_path)
        if name.startswith(("journal-", "snapshot-"))
    }
    segments = sorted(n for n in files if n.startswith("journal-"))
    assert len(segments) >= 2, "the run should span segments"
    last = segments[-1]
    first_seq = parse_segment_name(last)
    assert first_seq is not None
    data = files[last]
    scan = scan_segment(data, first_seq)
    assert scan.damage is None
    ends: list[tuple[int, int]] = []  # (offset just past the frame, its seq)
    offset = SEGMENT_HEADER
    for seq, payload in scan.frames:
        offset += FRAME_HEADER + len(payload)
        ends.append((offset, seq))
    assert offset == len(data)
    assert len(ends) >= 5
    all_states = list(states.values())
    boundaries = {SEGMENT_HEADER, *(end for end, _ in ends)}

    checked = 0
    for cut in range(len(data) + 1):
        sim = _sim_with({**files, last: data[:cut]})
        changelog: JournalChangeLog = open_changelog("/j", fs=sim)
        try:
            core = CoreState()
            for change in changelog.replay():
                core.apply_change(change)
        finally:
            changelog.close()
        durable = max((seq for end, seq in ends if end <= cut), default=first_seq - 1)
        got = core.snapshot()
        if durable in states:
            assert got == states[durable], f"cut at byte {cut}"
        else:
            assert got in all_states, f"cut at byte {cut}"
        for job_id, seq in added.items():
            if seq <= durable < gone.get(job_id, durable + 1):
                assert job_id in core.jobs, f"cut at byte {cut}: acknowledged job {job_id} lost"
        if cut in boundaries or cut == 0:
            assert changelog.torn_tail is None, f"cut at byte {cut}"
        else:
            assert changelog.torn_tail is not None, f"cut at byte {cut}"
            assert changelog.torn_tail.length == cut - max(
                (b for b in boundaries if b <= cut), default=0
            )
        # The journal accepts appends after the repaired tail.
        assert changelog.last_seq == durable
        checked += 1
    assert checked == len(data) + 1
