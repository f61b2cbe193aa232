"""Every ```python block of README.md and docs/*.md runs, as written, and does what it says.

* A block runs on its own, in a fresh namespace and an empty working folder. Top-level
  ``await`` is allowed (a notebook cell): the block then runs on an asyncio loop.
* ``print(x)  # text``: when every ``print`` line of a block carries such a comment, the
  printed lines must be those texts, in order.
* No job may fail for good while a block runs (an ERROR on the ``actorq`` logger): a
  processor failing silently on its own example is drift.
* A block that defines ``test_`` functions is a test module: it runs under plain pytest (no
  configuration, actorq's plugin from its entry point) and every test in it must pass.
* A block that deliberately cannot run is preceded by ``<!-- not-run: reason -->`` (the
  reason is required). Use it sparingly.

The docs' links to other files, the event classes they name and their imports are checked
too: each must exist, and no example imports a private module.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import io
import logging
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import actorq

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
NOT_RUN = re.compile(r"<!--\s*not-run:\s*(?P<reason>.*?)\s*-->")
_FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the first line of code
    code: str
    not_run: str | None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The ```python blocks of one markdown file."""
    lines = path.read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        if fence.group(1) == "python":
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            marker = NOT_RUN.fullmatch(before.strip())
            found.append(
                Block(
                    path,
                    i + 2,
                    "\n".join(lines[i + 1 : end]) + "\n",
                    None if marker is None else marker.group("reason"),
                )
            )
        i = end + 1
    return found


def _where(block: Block) -> str:
    return block.where


ALL = [block for path in DOCS for block in blocks(path)]
RUN = [block for block in ALL if block.not_run is None]


def test_the_runner_finds_the_blocks_and_every_skip_says_why() -> None:
    where = {block.where.split(":")[0] for block in RUN}
    assert {"README.md", "docs/quickstart.md", "docs/testing.md"} <= where
    for block in ALL:
        if block.not_run is not None:
            assert len(block.not_run) >= 10, f"{block.where}: say why it is not run"


def test_blocks_honours_the_not_run_marker(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# t\n\n```python\nx = 1\n```\n\n<!-- not-run: needs a GPU we do not have -->\n\n"
        "```python\nimport cuda\n```\n\n```sh\nls\n```\n\n```python\nprint(2)  # 2\n```\n"
    )
    found = blocks(doc)
    assert [(b.line, b.code, b.not_run) for b in found] == [
        (4, "x = 1\n", None),
        (10, "import cuda\n", "needs a GPU we do not have"),
        (18, "print(2)  # 2\n", None),
    ]
    assert _expected_prints(found[2].code) == ["2"]
    assert _expected_prints("print(1)\nprint(2)  # 2\n") is None  # not every print says


def _expected_prints(code: str) -> list[str] | None:
    """The ``# text`` of every ``print(...)`` line, if every one has it."""
    lines = code.splitlines()
    expected: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id != "print":
                continue
            comment = lines[(node.end_lineno or node.lineno) - 1].partition("  # ")[2]
            if not comment:
                return None
            expected.append((node.lineno, comment))
    return [text for _, text in sorted(expected)]


def _run_block(block: Block) -> str:
    """Run `block`'s code; what it printed."""
    filename = f"<{block.where}>"
    namespace: dict[str, object] = {"__name__": "__doc_snippet__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            code = compile(block.code, filename, "exec")
        except SyntaxError:  # top-level await: a notebook cell
            code = compile(block.code, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            asyncio.run(eval(code, namespace))
        else:
            exec(code, namespace)
    return out.getvalue()


@pytest.mark.parametrize("block", [b for b in RUN if "def test_" not in b.code], ids=_where)
def test_block_runs(
    block: Block,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.ERROR, logger="actorq")
    printed = _run_block(block)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, f"{block.where}: a job failed for good while it ran: {errors}"
    expected = _expected_prints(block.code)
    if expected is not None:
        assert printed.splitlines() == expected, block.where


@pytest.mark.parametrize("block", [b for b in RUN if "def test_" in b.code], ids=_where)
def test_test_block_passes_under_plain_pytest(block: Block, tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # no configuration of ours
    (tmp_path / "test_snippet.py").write_text(block.code)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_PLUGINS", None)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_snippet.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, f"{block.where}:\n{run.stdout}\n{run.stderr}"
    passed = re.search(r"(\d+) passed", run.stdout)
    assert passed is not None and int(passed.group(1)) >= 1, run.stdout
    assert "skipped" not in run.stdout and "warning" not in run.stdout.lower(), run.stdout


# ---------------------------------------------------------------------- names and links


#: BullMQ's names, which the comparisons name on purpose.
FOREIGN_NAMES = frozenset({"QueueEvents"})
#: README's benchmark table is written by `benchmarks.compare`, naming files that a run writes.
_GENERATED = re.compile(r"<!-- bench-table:start -->.*?<!-- bench-table:end -->", re.S)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_links_and_named_files_exist(path: Path) -> None:
    text = _GENERATED.sub("", path.read_text())
    targets = re.findall(r"\]\(([^)#\s]+)[^)]*\)", text)
    targets += re.findall(r"(?<![\w/.-])([A-Za-z_][\w-]*\.md)\b", text)
    for target in targets:
        if "://" in target:
            continue
        found = (path.parent / target).exists() or (REPO / target).exists()
        assert found, f"{path.relative_to(REPO)} names {target}, which is not in the repository"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_event_classes_named_exist(path: Path) -> None:
    for name in set(re.findall(r"`((?:Job|Queue)[A-Z]\w*)`", path.read_text())) - FOREIGN_NAMES:
        assert hasattr(actorq, name), f"{path.relative_to(REPO)} names {name}: no such event"


def test_no_example_imports_a_private_module() -> None:
    for block in ALL:
        for node in ast.walk(ast.parse(block.code)):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not re.search(r"(^|\.)_", node.module), f"{block.where}: {node.module}"
