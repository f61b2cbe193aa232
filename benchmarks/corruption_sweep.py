"""Corruption sweep: ``python -m benchmarks.corruption_sweep [--jobs N] [--per-kind K]``.

Builds a journal through a real `Runtime` on a real folder (a few thousand jobs added,
processed, failed and cancelled; small segments and a small snapshot threshold, so there are
several snapshots and many segments), and keeps two images of it: *clean*, the folder after
the runtime closed, and *crash*, the folder copied while the runtime was still running (what
a killed process leaves: the manifest as the last rollover or snapshot wrote it). Then, for
each case, it copies an image, damages the copy, reopens it as a runtime would, replays it
and classifies the outcome:

* exact: it opened and every acknowledged job is there as it was acknowledged;
* refused: a JournalError naming the damaged file and a byte offset in it;
* logged: it opened with less than was acknowledged, and said so (a torn tail cut);
* silent: it opened with less or other than was acknowledged, and said nothing;
* other: anything else (an error naming no file, a crash of the reader): a bug.

Kinds marked detectable are those docs/guarantees.md says are detected: the sweep exits 1
if one of them is ever silent, or if any case is "other". The one kind that is not is a cut
of the last segment exactly at a frame boundary after the last point the manifest vouched
for (in the crash image): nothing on disk shows the records after it ever existed.

The figures in docs/guarantees.md come from a default run.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio

from actorq import Job, JournalError, VirtualClock
from actorq._core import CoreState
from actorq._journal import open_changelog
from actorq._runtime import Runtime
from persistence import SimFileSystem
from persistence.frames import FRAME_HEADER, SEGMENT_HEADER, scan_segment
from persistence.layout import MANIFEST_NAME, parse_segment_name, parse_snapshot_name
from persistence.manifest import decode_manifest

SEGMENT_BYTES = 16 * 1024
SNAPSHOT_BYTES = 32 * 1024
FOLDER = "/j"
OUTCOMES = ("exact", "refused", "logged", "silent", "other")

Files = dict[str, bytes]


@dataclass(frozen=True)
class Image:
    name: str
    files: Files
    expected: dict[str, Any]
    """The acknowledged state: jobs and queues as `CoreState.snapshot` gives them."""

    def segments(self) -> list[str]:
        return sorted(n for n in self.files if parse_segment_name(n) is not None)

    def snapshots(self) -> list[str]:
        return sorted(n for n in self.files if parse_snapshot_name(n) is not None)


@dataclass(frozen=True)
class Case:
    kind: str
    detectable: bool
    files: Files
    where: str


@dataclass
class Tally:
    detectable: bool
    counts: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------- building


def _acknowledged(core: CoreState) -> dict[str, Any]:
    state = core.snapshot()
    return {"jobs": state["jobs"], "queues": state["queues"]}


def _read_folder(folder: str) -> Files:
    files = {}
    for name in os.listdir(folder):
        if name.startswith(("journal-", "snapshot-", MANIFEST_NAME)):
            with open(os.path.join(folder, name), "rb") as f:
                files[name] = f.read()
    return files


async def build(folder: str, jobs: int, seed: int) -> tuple[Image, Image]:
    """Run the workload on `folder`; (crash image, clean image)."""
    rng = random.Random(seed)
    changelog = open_changelog(
        folder, fsync="interval", segment_bytes=SEGMENT_BYTES, snapshot_bytes=SNAPSHOT_BYTES
    )

    async def process(job: Job) -> Any:
        if job.data["n"] % 5 == 0:
            raise ValueError(f"job {job.data['n']} fails on purpose")
        return {"done": job.data["n"]}

    async with Runtime(journal=changelog, clock=VirtualClock()) as rt:
        q, parked = rt.queue("work"), rt.queue("parked")
        rt.worker(q, process, concurrency=8)
        n = 0
        while n < jobs:
            size = rng.choice([1, 1, 1, 25])
            specs = [{"name": "j", "data": {"n": n, "pad": "p" * rng.randrange(40)}}]
            specs += [{"name": "j", "data": {"n": n + i}} for i in range(1, size)]
            if size == 1:
                await q.add("j", specs[0]["data"])
            else:
                await q.add_bulk(specs)
            n += size
            if rng.random() < 0.1:
                held = await parked.add("later", {"n": n}, delay=1e6)
                if rng.random() < 0.5:
                    await parked.cancel(held.id, reason="not needed")
        # A count is answered after every report before it is committed: once it shows all
        # of them finished, the folder holds every acknowledged outcome.
        while (counts := await q.counts())["completed"] + counts["failed"] < n:  # noqa: ASYNC110
            await anyio.sleep(0.01)
        files = _read_folder(folder)
        while len(files[max(f for f in files if f.startswith("journal-"))]) == SEGMENT_HEADER:
            # A snapshot just rolled to an empty segment: give the tail something to damage.
            await parked.add("later", None, delay=1e6)
            files = _read_folder(folder)
        crash = Image("crash", files, _acknowledged(rt._core))
    clean = _read_folder(folder)
    snapshots = sum(1 for name in clean if parse_snapshot_name(name) is not None)
    if snapshots < 2:
        raise RuntimeError(f"the workload left {snapshots} snapshot(s); it needs two")
    return crash, Image("clean", clean, crash.expected)


# ---------------------------------------------------------------------- reopening


class _Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _sim(files: Files) -> SimFileSystem:
    sim = SimFileSystem()
    sim.makedirs(FOLDER)
    for name, data in files.items():
        handle = sim.create(f"{FOLDER}/{name}")
        handle.write(data)
        handle.fsync()
        handle.close()
    sim.fsync_dir(FOLDER)
    return sim


def _names_file_and_offset(exc: BaseException) -> bool:
    text = str(exc)
    file = getattr(exc, "file", "")
    return (
        isinstance(file, str)
        and file.startswith(FOLDER + "/")
        and file in text
        and ("offset" in text)
    )


def reopen(files: Files, expected: dict[str, Any]) -> tuple[str, str]:
    """Open a copy of `files` as a runtime would; (outcome, detail)."""
    sim = _sim(files)
    messages = _Messages()
    logger = logging.getLogger("actorq.journal")
    logger.addHandler(messages)
    try:
        try:
            changelog = open_changelog(FOLDER, fs=sim)
        except JournalError as exc:
            outcome = "refused" if _names_file_and_offset(exc) else "other"
            return outcome, str(exc)
        try:
            core = CoreState()
            core.apply_changes(changelog.replay())
        except JournalError as exc:
            return "other", str(exc)
        finally:
            changelog.close()
    except Exception as exc:
        return "other", f"{type(exc).__name__}: {exc}"
    finally:
        logger.removeHandler(messages)
    if _acknowledged(core) == expected:
        return "exact", ""
    said = [r.getMessage() for r in messages.records]
    return ("logged", said[0]) if said else ("silent", "")


# ---------------------------------------------------------------------- damage


def _frame_ends(files: Files, name: str) -> list[int]:
    """Offsets just past each intact frame of segment `name`."""
    first_seq = parse_segment_name(name)
    assert first_seq is not None
    ends, pos = [], SEGMENT_HEADER
    for _, payload in scan_segment(files[name], first_seq).frames:
        pos += FRAME_HEADER + len(payload)
        ends.append(pos)
    return ends


def _with(files: Files, name: str, data: bytes | None) -> Files:
    out = dict(files)
    if data is None:
        del out[name]
    else:
        out[name] = data
    return out


def _renamed(files: Files, name: str) -> Files:
    out = _with(files, name, None)
    out[name + ".bak"] = files[name]
    return out


def _deleting(files: Files, name: str) -> Callable[[], Files]:
    return lambda: _with(files, name, None)


def _renaming(files: Files, name: str) -> Callable[[], Files]:
    return lambda: _renamed(files, name)


def _sample(items: list[Any], k: int | None, rng: random.Random) -> list[Any]:
    return items if k is None or len(items) <= k else rng.sample(items, k)


def _durable_seq(image: Image) -> int:
    return decode_manifest(image.files[MANIFEST_NAME], MANIFEST_NAME).durable_seq


def cases(image: Image, per_kind: int | None, rng: random.Random) -> Iterator[Case]:
    """Every damage of the sweep on `image`; `per_kind` samples that many of each kind."""
    files, segments, snapshots = image.files, image.segments(), image.snapshots()
    last = segments[-1]
    tag = image.name

    def one(
        kind: str, detectable: bool, make: list[tuple[str, Callable[[], Files]]]
    ) -> Iterator[Case]:
        for where, build_files in _sample(make, per_kind, rng):
            yield Case(f"{tag}: {kind}", detectable, build_files(), where)

    def cut(name: str, at: int) -> tuple[str, Callable[[], Files]]:
        return f"{name}[:{at}]", lambda: _with(files, name, files[name][:at])

    if tag == "clean":
        boundaries = [
            cut(name, at)
            for name in segments
            for at in [0, SEGMENT_HEADER, *_frame_ends(files, name)]
            if at < len(files[name])
        ]
        yield from one("cut at a frame boundary, any segment", True, boundaries)
        offsets = [
            cut(name, rng.randrange(len(files[name]))) for name in segments for _ in range(8)
        ]
        yield from one("cut at a random offset, any segment", True, offsets)

        def flip(name: str, at: int) -> tuple[str, Callable[[], Files]]:
            def make() -> Files:
                data = bytearray(files[name])
                data[at] ^= 1 << rng.randrange(8)
                return _with(files, name, bytes(data))

            return f"{name}@{at}", make

        flips = [
            flip(name, rng.randrange(len(files[name])))
            for name in [*segments, *snapshots, MANIFEST_NAME]
            for _ in range(8)
        ]
        yield from one("byte flip, any file", True, flips)
        yield from one(
            "segment deleted",
            True,
            [(name, _deleting(files, name)) for name in segments],
        )
        yield from one(
            "segment renamed",
            True,
            [(name, _renaming(files, name)) for name in segments],
        )
        every_snapshot = ("all", lambda: {n: d for n, d in files.items() if n not in snapshots})
        yield from one(
            "snapshot deleted",
            True,
            [*[(name, _deleting(files, name)) for name in snapshots], every_snapshot],
        )
        yield from one(
            "snapshot renamed",
            True,
            [(name, _renaming(files, name)) for name in snapshots],
        )
        yield from one(
            "manifest deleted", True, [(MANIFEST_NAME, lambda: _with(files, MANIFEST_NAME, None))]
        )
    else:
        durable = _durable_seq(image)
        first_in_last = parse_segment_name(last) or 0
        ends = _frame_ends(files, last)
        beyond = [cut(last, at) for i, at in enumerate(ends[:-1]) if first_in_last + i > durable]
        within = [cut(last, at) for i, at in enumerate(ends[:-1]) if first_in_last + i <= durable]
        # Records after the last point the manifest vouched for, cut whole: undetectable.
        yield from one("cut at a frame boundary past the durable seq", False, beyond)
        yield from one("cut at a frame boundary up to the durable seq", True, within)
        inside = sorted(set(range(SEGMENT_HEADER, len(files[last]))) - set(ends))
        mid = [cut(last, at) for at in rng.sample(inside, min(40, len(inside)))]
        yield from one("cut at a random offset of the last segment", True, mid)

        def rot_last_frame() -> Files:
            data = bytearray(files[last])
            data[-1] ^= 0x40
            return _with(files, last, bytes(data))

        yield from one("byte flip in the last frame", True, [(f"{last}@-1", rot_last_frame)])

    def newest_deleted(k: int) -> tuple[str, Callable[[], Files]]:
        def make() -> Files:
            out = dict(files)
            for name in segments[-k:]:
                del out[name]
            return out

        return f"newest {k}", make

    yield from one(
        "newest segments deleted",
        True,
        [newest_deleted(k) for k in range(1, min(4, len(segments)))],
    )

    def zeros(appended: int, over: int) -> tuple[str, Callable[[], Files]]:
        data = files[last]
        return (
            f"{last} +{appended} zeros over the last {over}",
            lambda: _with(files, last, data[: len(data) - over] + bytes(over + appended)),
        )

    yield from one("zero-filled tail appended", True, [zeros(n, 0) for n in (1, 15, 16, 512, 4096)])
    yield from one(
        "end of the last segment zeroed", True, [zeros(n, k) for n in (0, 4096) for k in (1, 40)]
    )


# ---------------------------------------------------------------------- the sweep


def describe(image: Image) -> str:
    frames = sum(len(_frame_ends(image.files, name)) for name in image.segments())
    return (
        f"{image.name} image: {len(image.expected['jobs'])} jobs, "
        f"{len(image.snapshots())} snapshots, {len(image.segments())} segments, "
        f"{frames} frames"
    )


def sweep(
    jobs: int = 3000, per_kind: int | None = None, seed: int = 15
) -> tuple[dict[str, Tally], list[str]]:
    """Build, damage, reopen, classify; (tallies by kind, what the images held)."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as folder:
        crash, clean = anyio.run(build, folder, jobs, seed)
    tallies: dict[str, Tally] = {}
    for image in (clean, crash):
        outcome, detail = reopen(image.files, image.expected)
        if outcome != "exact":
            raise RuntimeError(f"the undamaged {image.name} image reopens {outcome}: {detail}")
        for case in cases(image, per_kind, rng):
            outcome, detail = reopen(case.files, image.expected)
            tally = tallies.setdefault(case.kind, Tally(case.detectable))
            tally.counts[outcome] += 1
            if outcome in ("silent", "other") and len(tally.examples) < 3:
                tally.examples.append(f"{case.where}: {outcome} {detail}")
    return tallies, [describe(clean), describe(crash)]


def failures(tallies: dict[str, Tally]) -> list[str]:
    """What the guarantees forbid: a detectable kind gone silent, or any "other"."""
    bad = []
    for kind, tally in tallies.items():
        if tally.counts["other"] or (tally.detectable and tally.counts["silent"]):
            bad.append(f"{kind}: {dict(tally.counts)} {tally.examples}")
    return bad


def table(tallies: dict[str, Tally]) -> str:
    head = "| damage | detectable | tried | " + " | ".join(OUTCOMES) + " |"
    lines = [head, "|---|---|" + "---:|" * (len(OUTCOMES) + 1)]
    for kind, tally in tallies.items():
        cells = [str(tally.counts[o]) for o in OUTCOMES]
        tried = sum(tally.counts.values())
        yes = "yes" if tally.detectable else "no"
        lines.append(f"| {kind} | {yes} | {tried} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000, help="jobs the workload adds")
    parser.add_argument(
        "--per-kind", type=int, default=None, help="sample this many cases of each kind"
    )
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args(argv)
    tallies, images = sweep(args.jobs, args.per_kind, args.seed)
    for line in images:
        print(line)
    print()
    print(table(tallies))
    total = Counter[str]()
    for tally in tallies.values():
        total.update(tally.counts)
    print(f"\n{sum(total.values())} cases: " + ", ".join(f"{total[o]} {o}" for o in OUTCOMES))
    bad = failures(tallies)
    for line in bad:
        print(f"FAIL {line}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
