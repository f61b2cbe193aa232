"""`benchmarks.compare` rewrites the README's summary table between its markers, and only that."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.compare import (
    README,
    README_END,
    README_START,
    readme_section,
    refresh_readme,
    replace_section,
)
from benchmarks.peers.common import Params

MACHINE = "**Machine:** Test CPU · 2 cores · Python 3.11.7 (CPython) · 2026-01-02 03:04 UTC"
COMMAND = ".venv/bin/python -m benchmarks.compare --reps 3"

BEFORE = "# Project\n\nIntro text.\n\n## Peers\n\n"
AFTER = "\n\nText after the table, with `code` and a | pipe.\n"
OLD = "\n| Peer | old |\n|---|--:|\n| actorq | 1 |\n"


def fake_results() -> dict[str, object]:
    return {
        "actorq (memory)": {
            "W1": [{"e2e_jobs_s": 80_000.0, "enqueue_jobs_s": 200_000.0,
                    "process_jobs_s": 100_000.0},
                   {"e2e_jobs_s": 90_000.0, "enqueue_jobs_s": 210_000.0,
                    "process_jobs_s": 120_000.0},
                   {"e2e_jobs_s": 95_000.0, "enqueue_jobs_s": 220_000.0,
                    "process_jobs_s": 150_000.0}],
            "W2": [{"start_p50_us": 40.0}, {"start_p50_us": 42.0}, {"start_p50_us": 90.0}],
            "W3": [{"late_p99_ms": 1.25}],
            "W4": [{"child_jobs_s": 45_000.0}],
        },
        "taskiq InMemoryBroker": {
            "W1": [{"e2e_jobs_s": 20_000.0, "enqueue_jobs_s": 30_000.0,
                    "process_jobs_s": 60_000.0}],
            "W2": [{"start_p50_us": 30.0}],
            "W3": "skipped: taskiq's InMemoryBroker has no delays",
            "W4": "skipped: no flows",
        },
        "arq": dict.fromkeys(("W1", "W2"), "skipped: redis server unavailable"),
    }  # fmt: skip


def section() -> str:
    return readme_section(fake_results(), Params(), MACHINE, COMMAND, 123.4)


def test_section_has_machine_command_and_medians() -> None:
    text = section()
    assert MACHINE in text.splitlines()
    assert (
        f"**Command:** `{COMMAND}` · 123 s · W1 at 5,000 jobs, W2 500 samples, W3 1,000 jobs, "
        "W4 100 parents × 20 children for every peer. Medians;"  # no Redis: no server peer ran
    ) in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0] == (
        "| Peer | W1 end-to-end jobs/s | W1 enqueue jobs/s | W1 process jobs/s "
        "| W2 add→start p50 µs | W3 lateness p99 ms |"
    )  # end to end first: the figure a user meets first
    assert rows[1:] == [
        "| actorq (memory) | 90,000 | 210,000 | 120,000 | 42.0 | 1.25 |",
        "| taskiq InMemoryBroker | 20,000 | 30,000 | 60,000 | 30.0 | — |",
    ]  # medians; a peer with no samples at all (arq) has no row
    assert "W4 flows (100 parents × 20 children), child jobs/s: actorq (memory) 45,000." in text
    assert "Redis" not in text  # no server-backed peer was measured


def test_replace_rewrites_only_between_markers() -> None:
    readme = BEFORE + README_START + OLD + README_END + AFTER
    new = replace_section(readme, section())
    head, rest = new.split(README_START)
    middle, tail = rest.split(README_END)
    assert head == BEFORE
    assert tail == AFTER
    assert middle == "\n" + section()
    assert "| actorq | 1 |" not in new
    # Idempotent: refreshing with the same results changes nothing more.
    assert replace_section(new, section()) == new


@pytest.mark.parametrize(
    "readme",
    [
        BEFORE + OLD + AFTER,  # no markers
        BEFORE + README_START + OLD + AFTER,  # no end marker
        BEFORE + README_END + OLD + README_START + AFTER,  # in the wrong order
        (README_START + README_END) * 2,  # twice
    ],
)
def test_replace_refuses_bad_markers(readme: str) -> None:
    with pytest.raises(ValueError, match="bench-table"):
        replace_section(readme, section())


def test_refresh_writes_the_file_and_keeps_it_when_it_cannot(tmp_path: Path) -> None:
    path = tmp_path / "README.md"
    path.write_text(BEFORE + README_START + OLD + README_END + AFTER, encoding="utf-8")
    assert refresh_readme(path, section())
    assert path.read_text(encoding="utf-8") == BEFORE + README_START + "\n" + section() + (
        README_END + AFTER
    )
    unmarked = BEFORE + OLD + AFTER
    path.write_text(unmarked, encoding="utf-8")
    assert not refresh_readme(path, section())
    assert path.read_text(encoding="utf-8") == unmarked


def test_the_repository_readme_has_the_markers() -> None:
    text = README.read_text(encoding="utf-8")
    replaced = replace_section(text, section())
    start, end = text.index(README_START), text.index(README_END)
    assert replaced.startswith(text[:start])
    assert replaced.endswith(text[end:])


def test_a_subset_run_shows_only_its_workloads() -> None:
    only_w1 = {"actorq (memory)": {"W1": [{"process_jobs_s": 90_000.0}]}}
    text = readme_section(only_w1, Params(), MACHINE, COMMAND, 5.0)
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows == ["| Peer | W1 process jobs/s |", "| actorq (memory) | 90,000 |"]
    assert "W1 at 5,000 jobs for every peer." in text
    assert "not measured" not in text
    assert "W4" not in text
