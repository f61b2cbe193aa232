"""`actorq stats|show|verify|compact|dump` on a journal folder."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import orjson
import pytest

from actorq import VirtualClock
from actorq._cli import main
from actorq._journal import open_changelog
from actorq._runtime import Runtime


async def _make(folder: Path) -> None:
    async with Runtime(path=folder, clock=VirtualClock()) as rt:
        q = rt.queue("emails")
        await q.add_bulk([{"name": "send", "data": {"n": n}} for n in range(5)])
        await q.cancel(2, reason="typo")
        await rt.queue("other").pause()


async def _add_one(folder: Path) -> None:
    async with Runtime(path=folder, clock=VirtualClock()) as rt:
        await rt.queue("emails").add("one more", None)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


async def test_read_only_commands_work_while_a_runtime_holds_the_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await _make(tmp_path)
    async with Runtime(path=tmp_path, clock=VirtualClock()) as rt:
        await rt.queue("emails").add("late", {"n": 9})
        path = str(tmp_path)
        code, out = _run(capsys, "stats", path)
        assert code == 0
        emails = next(line for line in out.splitlines() if line.startswith("emails"))
        assert emails.split()[1:] == ["5", "0", "0", "0", "0", "0", "0", "1", "6"]
        assert "(paused)" in next(line for line in out.splitlines() if line.startswith("other"))

        code, out = _run(capsys, "show", path, "2")
        assert code == 0
        record = orjson.loads(out[: out.index("history of job")])
        assert record["state"] == "cancelled"
        assert record["data"] == {"n": 1}
        assert "seq 1: " in out and '"failed_reason":"typo"' in out

        code, out = _run(capsys, "show", path, "99")
        assert code == 1

        code, out = _run(capsys, "verify", path)
        assert code == 0
        assert out.splitlines()[-1].startswith("ok:")

        code, out = _run(capsys, "dump", path, "--jsonl")
        lines = [orjson.loads(line) for line in out.splitlines()]
        assert code == 0
        assert all("seq" in line for line in lines)
        assert sum(line["change"][0] == "add" for line in lines) == 6

        assert main(["compact", path]) == 1
        assert "locked" in capsys.readouterr().err
        assert (await rt.counts())["emails"]["waiting"] == 5


def test_compact_then_dump_shows_the_snapshot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    anyio.run(_make, tmp_path)
    code, out = _run(capsys, "compact", str(tmp_path))
    assert code == 0 and "snapshot covers seq" in out
    code, out = _run(capsys, "dump", str(tmp_path), "--jsonl")
    lines = [orjson.loads(line) for line in out.splitlines()]
    assert {line.get("snapshot") for line in lines} == {3}
    code, out = _run(capsys, "stats", str(tmp_path))
    assert "snapshot covers seq 3" in out
    # The first snapshot's fallback is a replay from seq 1: the history stays until the next.
    code, out = _run(capsys, "show", str(tmp_path), "1")
    assert code == 0 and "seq 1: " in out and "compacted" not in out
    anyio.run(_add_one, tmp_path)
    code, out = _run(capsys, "compact", str(tmp_path))
    assert code == 0
    code, out = _run(capsys, "show", str(tmp_path), "1")
    assert code == 0 and "compacted into the snapshot" in out


def test_verify_reports_damage_with_exit_code_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    anyio.run(_make, tmp_path)
    (segment,) = [p for p in tmp_path.iterdir() if p.name.startswith("journal-")]
    data = bytearray(segment.read_bytes())
    data[len(data) // 3] ^= 1
    segment.write_bytes(bytes(data))
    code, out = _run(capsys, "verify", str(tmp_path))
    assert code == 1
    assert "problem:" in out and str(segment) in out and "expected seq" in out
    code, _ = _run(capsys, "stats", str(tmp_path))
    assert code == 1


def test_compact_refuses_a_locked_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    changelog = open_changelog(tmp_path)
    try:
        code = main(["compact", str(tmp_path)])
        err = capsys.readouterr().err
        assert code == 1
        assert "cannot compact" in err and str(tmp_path) in err and "locked" in err
    finally:
        changelog.close()
    assert sorted(os.listdir(tmp_path)) == ["LOCK", "MANIFEST", "journal-00000000000000000001.seg"]


def test_dump_text_and_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", str(tmp_path / "nope")]) == 2
    anyio.run(_make, tmp_path)
    code, out = _run(capsys, "dump", str(tmp_path))
    assert code == 0
    assert out.splitlines()[0].split()[:2] == ["seq", "1"]


async def _make_many(folder: Path) -> None:
    changelog = open_changelog(folder, segment_bytes=600)
    async with Runtime(journal=changelog, clock=VirtualClock()) as rt:
        for n in range(30):
            await rt.queue("emails").add("send", {"n": n, "pad": "x" * 40})


def test_verify_reports_deleted_newest_segment_with_file_and_offset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    anyio.run(_make_many, tmp_path)
    segments = sorted(p for p in tmp_path.iterdir() if p.name.startswith("journal-"))
    assert len(segments) > 2
    segments[-1].unlink()
    code, out = _run(capsys, "verify", str(tmp_path))
    assert code == 1
    problem = next(line for line in out.splitlines() if line.startswith("problem:"))
    assert str(segments[-1]) in problem and "offset 0" in problem and "missing" in problem
    assert main(["stats", str(tmp_path)]) == 1
    assert str(segments[-1]) in capsys.readouterr().err


def test_verify_reports_a_frame_boundary_cut_after_a_clean_close(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    anyio.run(_make, tmp_path)
    (segment,) = [p for p in tmp_path.iterdir() if p.name.startswith("journal-")]
    data = segment.read_bytes()
    # Drop the last frame whole: its header says how long it is.
    offsets, pos = [], 24
    while pos < len(data):
        offsets.append(pos)
        pos += 16 + int.from_bytes(data[pos : pos + 4], "little")
    segment.write_bytes(data[: offsets[-1]])
    code, out = _run(capsys, "verify", str(tmp_path))
    assert code == 1
    assert f"{segment} at byte offset {offsets[-1]}" in out
    assert "was durable" in out


def test_compact_cuts_a_zero_filled_tail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    anyio.run(_make, tmp_path)
    (segment,) = [p for p in tmp_path.iterdir() if p.name.startswith("journal-")]
    with segment.open("ab") as f:
        f.write(bytes(4096))
    code, out = _run(capsys, "verify", str(tmp_path))
    assert code == 0
    assert "note: 4096 byte(s)" in out and "unfinished append" in out
    code, out = _run(capsys, "compact", str(tmp_path))
    assert code == 0, capsys.readouterr().err
    code, out = _run(capsys, "stats", str(tmp_path))
    emails = next(line for line in out.splitlines() if line.startswith("emails"))
    assert emails.split()[-1] == "5"
    assert any(
        p.name.endswith(".torn-" + str(len(segment.read_bytes()))) for p in tmp_path.iterdir()
    )


def test_stats_survives_a_file_deleted_under_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    anyio.run(_make, tmp_path)
    real_getsize = os.path.getsize

    def vanished(path: str) -> int:
        # As a live runtime's snapshot deleting a segment between the listing and the look.
        if path.endswith(".seg"):
            raise FileNotFoundError(path)
        return real_getsize(path)

    monkeypatch.setattr(os.path, "getsize", vanished)
    code, out = _run(capsys, "stats", str(tmp_path))
    assert code == 0 and "on disk" in out
