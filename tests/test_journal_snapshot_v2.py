"""Snapshot schema version 2 (columns of jobs) round-trips exactly; older snapshots still read."""

# Stays on Runtime: the snapshot files' schema, the Runtime's own.

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson
import pytest

import actorq._journal as journal_module
import actorq._journal_codec as codec
from actorq import Runtime
from actorq._core import CoreState
from actorq._core.records import FIELD_NAMES, KEEP_ALL, Backoff, JobRecord, Retention
from actorq._core.states import JobState
from actorq._journal import open_changelog
from actorq._journal_codec import (
    SNAPSHOT_MAGIC,
    PayloadError,
    add_fields,
    decode_batch,
    decode_snapshot,
    encode_batch,
    encode_snapshot,
    human_change,
)

Change = tuple[Any, ...]


def _record(i: int) -> JobRecord:
    """Job `i` of a mixed population: every field kind, defaults and not, odd payloads."""
    finished = i % 4 == 0
    return JobRecord(
        id=i,
        name=f"n{i % 3}",
        queue="q" if i % 3 else "r",
        data=b'{"a":"\\"quoted\\" \xe2\x98\x83"}' if i % 2 else b"null",
        state=JobState.COMPLETED if finished else JobState.WAITING,
        priority=i % 2,
        tags=("a", "b") if i % 5 == 0 else (),
        run_at=None,
        attempts=1 + i % 3,
        created_at=float(i) / 3,
        attempts_made=1 if finished else 0,
        progress=b"null" if i % 3 == 0 else None,  # a user's null, not "never set"
        return_value=b"[1,2.5]" if finished else None,
        stacktrace=("tb",) if i % 9 == 0 else (),
        logs=("l1", "l2") if i % 10 == 0 else (),
        finished_at=100.0 + i if finished else None,
        depends_on_tags=("t",) if i % 11 == 0 else (),
        idempotency_key=f"k{i}" if i % 6 == 0 else None,
        backoff=Backoff.fixed(1.0, max_delay=math.inf) if i % 6 == 0 else None,
        timeout=5 if i % 7 == 0 else (5.0 if i % 7 == 1 else None),  # int and float: kept apart
        lifo=i % 8 == 0,
        remove_on_complete=Retention(count=3, age=60.0) if i % 8 == 0 else KEEP_ALL,
        remove_on_fail=Retention(count=3, age=60) if i % 8 == 4 else KEEP_ALL,
        on_child_failure="ignore" if i % 12 == 0 else "fail",
        order=i,
        children={7: ("processed", b'{"a":1}'), 8: ("failed", "boom"), 9: ("pending", None)}
        if i % 13 == 0
        else None,
    )


def _state(n: int) -> CoreState:
    core = CoreState(seed=5)
    for i in range(1, n + 1):
        core.apply_change(("add", _record(i).fields()))
    core.apply_change(("queue", "r", {"paused": True}))
    return core


def _replayed(changes: Any) -> CoreState:
    core = CoreState()
    core.apply_changes(changes)
    return core


def _typed(value: Any) -> Any:
    """`value` with the type of every scalar in it, so 1 == 1.0 == True do not pass."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return (type(value).__name__, [_typed(v) for v in value])
    return (type(value).__name__, value)


@pytest.mark.parametrize("chunk", [3, 7, 10_000])
def test_a_v2_snapshot_rebuilds_the_state_exactly(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(codec, "SNAPSHOT_CHUNK", chunk)
    live = _state(40)
    live.jobs[3].data = b'{"a": "\\u2603"}'  # not as orjson writes it: kept byte for byte
    payload = encode_snapshot(live.as_changes())
    assert payload.startswith(SNAPSHOT_MAGIC)
    loaded = _replayed(decode_snapshot(payload))
    assert _typed(loaded.snapshot()) == _typed(live.snapshot())
    assert loaded.index_view() == live.index_view()
    # and the record objects are separate: children dicts are not shared between loads
    again = _replayed(decode_snapshot(payload))
    assert again.jobs[13].children is not loaded.jobs[13].children


def test_v2_rows_are_whole_records_in_field_order() -> None:
    live = _state(5)
    adds = [c for c in decode_snapshot(encode_snapshot(live.as_changes())) if c[0] == "add"]
    assert [type(c[1]) for c in adds] == [tuple] * 5
    assert all(len(c[1]) == len(FIELD_NAMES) for c in adds)
    assert JobRecord.from_fields(adds[0][1]).fields() == live.jobs[1].fields()
    assert add_fields(adds[0]) == live.jobs[1].fields()
    assert human_change(adds[0])[1]["data"] == orjson.loads(live.jobs[1].data)


def test_constant_columns_stay_small() -> None:
    core = CoreState()
    for i in range(1, 1001):
        rec = JobRecord(
            id=i, name="j", queue="q", data=b"null", state=JobState.WAITING, priority=0,
            tags=(), run_at=None, attempts=1, created_at=1.5, order=i,
        )  # fmt: skip
        core.apply_change(("add", rec.fields()))
    payload = encode_snapshot(core.as_changes())
    assert len(payload) < 20 * 1000  # two varying columns (id, order) and constants
    assert _replayed(decode_snapshot(payload)).snapshot() == core.snapshot()


def _v1_snapshot(changes: list[Change], chunk: int = 7) -> bytes:
    """A snapshot as actorq wrote it before schema version 2: ``AQS1`` + version-1 batches."""
    parts = [b"AQS1"]
    for start in range(0, len(changes), chunk):
        body = encode_batch(changes[start : start + chunk])
        parts += [len(body).to_bytes(4, "little"), body]
    return b"".join(parts)


def test_v1_snapshots_chunked_or_whole_still_read() -> None:
    live = _state(30)
    changes = live.as_changes()
    for payload in (_v1_snapshot(changes), encode_batch(changes)):
        loaded = _replayed(decode_snapshot(payload))
        assert _typed(loaded.snapshot()) == _typed(live.snapshot())


def _chunk(doc: Any) -> bytes:
    body = orjson.dumps(doc)
    return SNAPSHOT_MAGIC + len(body).to_bytes(4, "little") + body


def test_columns_added_or_removed_since_are_defaulted_or_dropped() -> None:
    columns: dict[str, Any] = {
        "id": [1, 2],
        "name": {"k": "n"},
        "queue": {"k": "q"},
        "data": ['{"x":1}', "null"],
        "state": {"k": "waiting"},
        "priority": {"k": 0},
        "tags": {"k": []},
        "run_at": {"k": None},
        "attempts": {"k": 1},
        "created_at": {"k": 0.5},
        "order": [1, 2],
        "retired_field": [1, 2],
    }
    doc = {"v": 2, "c": [["queue", "q", {"paused": False}], ["jobs", 2, columns]]}
    changes = list(decode_snapshot(_chunk(doc)))
    assert changes[0] == ("queue", "q", {"paused": False})
    rec = JobRecord.from_fields(changes[2][1])
    assert rec.data == b"null"
    assert rec.remove_on_complete is KEEP_ALL
    assert rec.tags == ()
    assert rec.max_stalled_count == 1
    del columns["name"]
    with pytest.raises(PayloadError, match="no column 'name'"):
        list(decode_snapshot(_chunk(doc)))


def test_malformed_or_newer_v2_chunks_are_refused() -> None:
    with pytest.raises(PayloadError, match="newer actorq"):
        list(decode_snapshot(_chunk({"v": 99, "c": []})))
    with pytest.raises(PayloadError, match="does not hold 2 values"):
        list(decode_snapshot(_chunk({"v": 2, "c": [["jobs", 2, {"id": [1]}]]})))
    with pytest.raises(PayloadError, match="runs past the end"):
        list(decode_snapshot(_chunk({"v": 2, "c": []})[:-1]))


def _snapshot_magic(folder: Path) -> bytes:
    """The payload magic of the folder's newest snapshot file (after its 32-byte header)."""
    return sorted(folder.glob("*.snap"))[-1].read_bytes()[32:36]


async def test_a_folder_with_a_v1_snapshot_opens_and_moves_to_v2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as m:  # the runtime writes its snapshots as before v2
        m.setattr(journal_module, "encode_snapshot", _v1_snapshot)
        async with Runtime(path=tmp_path) as rt:
            q = rt.queue("q")
            specs = [{"name": "x", "data": {"i": i}, "priority": i % 3} for i in range(25)]
            await q.add_bulk(specs)
            await rt.snapshot()
            await q.add("tail", [1, 2])
            expected = rt._core.snapshot()
    assert _snapshot_magic(tmp_path) == b"AQS1"
    async with Runtime(path=tmp_path) as rt:
        assert rt._core.snapshot() == expected
        await rt.snapshot()
    changelog = open_changelog(tmp_path)
    try:
        snap = changelog._recovery.snapshot  # type: ignore[union-attr]
        assert snap is not None and snap.startswith(SNAPSHOT_MAGIC)
        assert _replayed(changelog.replay()).snapshot() == expected
    finally:
        changelog.close()


def test_a_batch_with_a_run_of_adds_writes_them_as_columns() -> None:
    live = _state(20)
    adds = [("add", live.jobs[i].fields()) for i in range(1, 21)]
    sets = [("set", 1, {"priority": 3}), ("del", 2)]
    few = codec.JOBS_MIN_RUN - 1
    small = encode_batch([*adds[:few], *sets])
    assert orjson.loads(small)["v"] == 1  # as before: readable by an actorq without columns
    assert decode_batch(small)[few:] == sets
    assert [type(c[1]) for c in decode_batch(small)[:few]] == [dict] * few
    big = encode_batch([*sets, *adds, *sets, *adds[:few]])
    doc = orjson.loads(big)
    assert doc["v"] == 2
    assert [item[0] for item in doc["c"]] == ["set", "del", "jobs", "set", "del", *["add"] * few]
    decoded = decode_batch(big)
    assert len(decoded) == 2 + 20 + 2 + few
    rebuilt = [JobRecord.from_fields(c[1]).fields() for c in decoded if c[0] == "add"]
    assert rebuilt == [c[1] for c in [*adds, *adds[:few]]]
    assert decoded[22:24] == sets


def test_a_version_1_batch_cannot_hold_columns() -> None:
    payload = orjson.dumps({"v": 1, "c": [["jobs", 0, {}]]})
    with pytest.raises(PayloadError, match="unknown change record kind 'jobs'"):
        decode_batch(payload)


async def test_a_runtime_replays_bulk_adds_written_as_columns(tmp_path: Path) -> None:
    async with Runtime(path=tmp_path) as rt:
        q = rt.queue("q")
        jobs = await q.add_bulk(
            [{"name": "x", "data": {"i": i}, "priority": i % 2, "tags": ["t"]} for i in range(30)]
        )
        await q.add("one", None)
        expected = rt._core.snapshot()
    async with Runtime(path=tmp_path) as rt:
        assert rt._core.snapshot() == expected
        job = await rt.queue("q").get_job(jobs[7].id)
        assert job is not None and job.data == {"i": 7} and list(job.tags) == ["t"]


def test_decoded_rows_encode_again() -> None:
    """An ``add`` holding a row (as decoded from columns) can be written again, in a run or
    alone."""
    live = _state(12)
    rows = [c for c in decode_snapshot(encode_snapshot(live.as_changes())) if c[0] == "add"]
    for batch in (rows, rows[:1]):
        again = decode_batch(encode_batch(batch))
        assert [JobRecord.from_fields(c[1]).fields() for c in again] == [
            add_fields(c) for c in batch
        ]


def test_adds_holding_rows_journal_like_dicts() -> None:
    """`JobRecord.row()` is `fields()` as a tuple; a batch of adds holding rows encodes to the
    same bytes as one holding dicts, and a row does not share the record's children."""
    live = _state(20)
    recs = list(live.jobs.values())
    assert [dict(zip(FIELD_NAMES, r.row(), strict=True)) for r in recs] == [
        r.fields() for r in recs
    ]
    assert recs[12].children is not None and recs[12].row()[-1] is not recs[12].children
    by_name = [("add", r.fields()) for r in recs]
    by_row = [("add", r.row()) for r in recs]
    assert encode_batch(by_row) == encode_batch(by_name)
    assert encode_batch(by_row[:2]) == encode_batch(by_name[:2])
    assert encode_snapshot(by_row) == encode_snapshot(by_name)
