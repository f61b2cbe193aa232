"""The public API's types catch mistakes: mypy --strict accepts every ``tests/typing/accept_*``
file and rejects exactly the lines of ``tests/typing/reject_*`` marked ``# E: code``.

One mypy run checks them all (a run costs seconds). Like trio's type tests: an annotation
loosened back to ``Any`` lets a marked line through, and this test names it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from actorq._core import JobState
from actorq._options import JOB_OPTIONS
from actorq._typing import BulkJob, JobOptions, StateName

REPO = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent / "typing"
_EXPECT = re.compile(r"#\s*E:\s*(?P<codes>[\w-]+(?:\s*,\s*[\w-]+)*)\s*$")
_ERROR = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[\w-]+)\]$")


def _expected() -> set[tuple[str, int, str]]:
    out = set()
    for path in sorted(HERE.glob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            found = _EXPECT.search(line)
            if found:
                assert path.name.startswith("reject_"), f"{path.name}:{number}: E in accept file"
                for code in found["codes"].split(","):
                    out.add((path.name, number, code.strip()))
    return out


def test_mypy_accepts_and_rejects_what_the_typing_files_say() -> None:
    files = sorted(HERE.glob("*.py"))
    assert {p.name.split("_")[0] for p in files} == {"accept", "reject"}
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", *map(str, files)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode in (0, 1), run.stderr or run.stdout  # 2: mypy itself failed
    got = set()
    for line in run.stdout.splitlines():
        found = _ERROR.match(line)
        if found:
            got.add((Path(found["path"]).name, int(found["line"]), found["code"]))
        else:
            assert ": note: " in line, line  # no other output (a crash, a config error)
    expected = _expected()
    assert len(expected) >= 15
    assert sorted(got - expected) == [], "mypy reported errors the files do not expect"
    assert sorted(expected - got) == [], "lines mypy should reject passed"


def test_typed_options_list_every_option_add_takes() -> None:
    assert set(JobOptions.__annotations__) == set(JOB_OPTIONS)
    assert set(BulkJob.__annotations__) == {*JOB_OPTIONS, "name", "data"}


@pytest.mark.parametrize("state", list(JobState))
def test_state_names_are_the_job_states(state: JobState) -> None:
    assert state.value in StateName.__args__
    assert len(StateName.__args__) == len(JobState)
