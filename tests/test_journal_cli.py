"""`actorq stats|show|verify|compact|dump` on a journal folder."""

# Stays on Runtime: the CLI reads the journal folder a Runtime wrote, its own files.

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import anyio
import orjson
import pytest

import actorq
from actorq import Backoff, DependsOn, FlowJob, FlowProducer, Job, JobState, VirtualClock
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


# ---------------------------------------------------------------------- every kind of job


async def _make_every_kind(folder: Path) -> None:
    """A journal holding every kind of job and option the runtime writes, and a job in
    every state when the runtime stops."""
    clock = VirtualClock()
    async with Runtime(path=folder, clock=clock) as rt:
        mail, held = rt.queue("mail"), rt.queue("held")
        await held.pause()

        async def processor(job: Job) -> Any:
            if job.name.startswith("boom"):
                raise ValueError("boom")
            if job.name == "step" and job.data.get("step") != "check":
                await job.move_to_delayed(clock.now() + 5, next_step="check")
            await job.log("a line")
            await job.update_progress({"pct": 50})
            return {"ok": job.id}

        rt.worker(mail, processor, concurrency=2)
        await mail.add(
            "send",
            {"to": "ada@example.com"},
            priority=3,
            tags=["import"],
            attempts=2,
            backoff=Backoff.exponential(1.0, jitter=0.2, max_delay=float("inf")),
            remove_on_complete={"count": 5, "age": 100.0},
            idempotency_key="k1",
            timeout=10,
        )
        await mail.add("boom", {}, attempts=2, backoff=Backoff.fixed(1.0))  # retried, failed
        await mail.add("step", {"step": "send"})
        later = await mail.add("later", {"x": 1}, delay=3600, lifo=True, remove_on_fail=True)
        await mail.add("blocked", depends_on=DependsOn(job_ids=[later.id], tags=["import"]))
        await mail.add_bulk([{"name": "bulk", "data": {"n": n}} for n in range(10)])
        await FlowProducer(rt).add(
            FlowJob(
                "parent",
                "mail",
                {},
                children=[
                    FlowJob("child", "mail", {"n": 1}),
                    FlowJob("boom-child", "mail", opts={"ignore_dependency_on_failure": True}),
                ],
            )
        )
        await FlowProducer(rt).add(
            FlowJob("waits", "mail", children=[FlowJob("held-child", "held")])
        )
        await (await mail.add("cancel-me", delay=10)).cancel("typo")
        await (await mail.add("remove-me", delay=10)).remove()
        await clock.sleep(60)
        manual = rt.worker("manual", lock_duration=5)
        await rt.queue("manual").add("stalls")
        assert await manual.get_next_job("t1") is not None
        await clock.sleep(60)  # its lock expired: stalled, back to waiting
        await rt.queue("manual").add("held-active")
        await rt.queue("manual").add("waits")
        assert await manual.get_next_job("t2") is not None
        counts = await rt.counts()
        assert all(sum(q[state.value] for q in counts.values()) for state in JobState), counts


@pytest.mark.parametrize("compacted", [False, True], ids=["frames", "snapshot"])
def test_every_subcommand_reads_a_journal_holding_every_kind_of_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], compacted: bool
) -> None:
    anyio.run(_make_every_kind, tmp_path)
    path = str(tmp_path)
    if compacted:
        code, out = _run(capsys, "compact", path)
        assert code == 0, out
    code, out = _run(capsys, "stats", path, "--json")
    assert code == 0
    stats = orjson.loads(out)
    assert all(stats["total"]["counts"].values()), stats["total"]
    for argv in (["stats"], ["verify"], ["verify", "--json"], ["dump"], ["dump", "--frames"]):
        code, out = _run(capsys, *argv, path)
        assert code == 0, (argv, out)
    code, out = _run(capsys, "dump", path, "--jsonl")
    assert code == 0
    changes = [orjson.loads(line)["change"] for line in out.splitlines()]
    adds = {c[1]["name"]: c[1] for c in changes if c[0] == "add"}
    ids = {c[1]["id"]: c[1]["name"] for c in changes if c[0] == "add"}
    assert adds["boom"]["backoff"] == {
        "kind": "fixed",
        "delay": 1.0,
        "jitter": 0.0,
        "max_delay": None,
    }
    child_id = next(i for i in ids if ids[i] == "child")
    if compacted:  # the snapshot holds live jobs only, a parent's children in its record
        assert [child_id, "processed", {"ok": child_id}] in adds["parent"]["children"]
    else:
        assert adds["send"]["backoff"] == {
            "kind": "exponential",
            "delay": 1.0,
            "jitter": 0.2,
            "max_delay": "inf",
        }
        assert adds["send"]["remove_on_complete"] == {"count": 5, "age": 100.0}
        children = {ids[c[2]]: c[3:] for c in changes if c[0] == "child"}
        assert children["child"] == ["processed", {"ok": child_id}]
        assert children["boom-child"] == ["ignored", "ValueError: boom"]
    for job_id in range(1, max(ids) + 3):  # removed jobs and ids never used too
        code, out = _run(capsys, "show", path, str(job_id), "--json")
        report = orjson.loads(out)
        # Found: in the current state or in a frame still on disk (the previous generation
        # is kept back after a snapshot, so a removed job's history may still be there).
        assert code == (0 if report["record"] or report["history"] else 1), (job_id, out)
        if job_id in ids:
            assert code == 0, (job_id, out)
        if job_id > max(ids):
            assert code == 1 and report["record"] is None and not report["history"]
        assert _run(capsys, "show", path, str(job_id))[0] == code
    code, out = _run(capsys, "show", path, "2", "--json")
    shown = orjson.loads(out)
    assert shown["record"]["state"] == "failed"
    assert shown["record"]["backoff"]["kind"] == "fixed"


# ---------------------------------------------------------------------- the command surface


@pytest.mark.parametrize(
    "argv", [["stats"], ["show", "1"], ["verify", "--json"], ["compact"], ["dump"]]
)
def test_a_folder_that_is_not_a_journal_is_refused_with_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    # The demo's --path holds its journal one level down, in <path>/journal.
    anyio.run(_make, tmp_path / "journal")
    (tmp_path / "demo-state.json").write_text("{}")
    command, *rest = argv
    assert main([command, str(tmp_path), *rest]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{tmp_path} is not an actorq journal folder" in captured.err
    assert f"hint: a journal folder is inside it: {tmp_path / 'journal'}" in captured.err
    assert sorted(os.listdir(tmp_path)) == ["demo-state.json", "journal"]  # nothing written

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([command, str(empty), *rest]) == 2
    err = capsys.readouterr().err
    assert "is not an actorq journal folder" in err and "inside it" not in err
    assert os.listdir(empty) == []


def test_json_output_of_stats_show_and_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    anyio.run(_make, tmp_path)
    path = str(tmp_path)
    code, out = _run(capsys, "stats", path, "--json")
    stats = orjson.loads(out)
    assert code == 0
    assert stats["last_seq"] == 3 and stats["snapshot_seq"] == 0 and stats["torn_tail"] is None
    assert stats["queues"]["emails"]["counts"]["waiting"] == 4
    assert stats["queues"]["emails"]["counts"]["cancelled"] == 1
    assert stats["queues"]["emails"]["total"] == 5
    assert stats["queues"]["other"]["paused"] is True
    assert stats["total"]["total"] == 5

    code, out = _run(capsys, "show", path, "2", "--json")
    shown = orjson.loads(out)
    assert code == 0
    assert shown["record"]["state"] == "cancelled" and shown["record"]["data"] == {"n": 1}
    assert [entry["seq"] for entry in shown["history"]] == [1, 2]
    assert shown["history"][1]["change"][2]["failed_reason"] == "typo"
    code, out = _run(capsys, "show", path, "99", "--json")
    assert code == 1
    assert orjson.loads(out) == {
        "job_id": 99,
        "record": None,
        "history": [],
        "compacted_into_snapshot": None,
    }

    code, out = _run(capsys, "verify", path, "--json")
    assert code == 0
    assert orjson.loads(out) == {
        "path": path,
        "ok": True,
        "problems": [],
        "frames": 3,
        "segments": 1,
        "snapshot_seq": 0,
        "torn_tail": None,
    }
    (segment,) = [p for p in tmp_path.iterdir() if p.name.startswith("journal-")]
    data = bytearray(segment.read_bytes())
    data[len(data) // 3] ^= 1
    segment.write_bytes(bytes(data))
    code, out = _run(capsys, "verify", path, "--json")
    report = orjson.loads(out)
    assert code == 1
    assert report["ok"] is False and report["problems"]


def test_version_and_exit_codes_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"actorq {actorq.__version__}\n"
    for argv in (["--help"], ["verify", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        assert "exit codes:" in out and "not a journal folder" in out


FIXTURE_V1 = Path(__file__).resolve().parent / "fixtures" / "journal-v1"


def test_every_read_only_subcommand_reads_the_v1_fixture_and_a_torn_tail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An older format (a v1 snapshot and frames), then a frame cut short by a "crash".
    folder = tmp_path / "journal"
    shutil.copytree(FIXTURE_V1, folder)
    anyio.run(_make_every_kind, folder)
    segment = max(p for p in folder.iterdir() if p.name.startswith("journal-"))
    with segment.open("ab") as f:
        f.write(b"\x07" * 11)
    path = str(folder)
    for argv in (
        ["stats"],
        ["stats", "--json"],
        ["verify"],
        ["dump"],
        ["dump", "--jsonl"],
        ["dump", "--frames"],
        ["show", "1"],
        ["show", "5", "--json"],
    ):
        code, out = _run(capsys, argv[0], path, *argv[1:])
        assert code == 0, (argv, out)
    code, out = _run(capsys, "verify", path, "--json")
    report = orjson.loads(out)
    assert code == 0 and report["ok"] is True
    assert report["torn_tail"] == {"file": str(segment), "offset": ANY, "bytes": 11}
    stats = orjson.loads(_run(capsys, "stats", path, "--json")[1])
    assert stats["torn_tail"] == {"segment": segment.name, "bytes": 11}
    assert stats["queues"]["mail"]["counts"]["completed"] >= 17  # the fixture's and ours
