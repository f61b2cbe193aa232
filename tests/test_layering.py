"""The house rules, read from the source: layers that point one way, one definition of a
change record, one public surface, small modules."""

from __future__ import annotations

import ast
import pathlib

import pytest

import actorq

ROOT = pathlib.Path(actorq.__file__).parent
REPO = ROOT.parent
#: The handles users hold: they talk to the Runtime, never to the engine's internals.
HANDLES = ("_queue.py", "_job.py", "_worker.py", "_flow.py", "_display.py")


def _imports(path: pathlib.Path) -> set[str]:
    """Every module a file imports, relative imports resolved against the actorq package."""
    tree = ast.parse(path.read_text())
    package = path.relative_to(REPO).with_suffix("").parts[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                out.add(".".join((*base, node.module or "")).rstrip("."))
            elif node.module:
                out.add(node.module)
    return out


@pytest.mark.parametrize("name", HANDLES)
def test_handles_import_nothing_from_the_actors(name: str) -> None:
    bad = {m for m in _imports(ROOT / name) if m.startswith("actorq._actors")}
    assert not bad, f"{name} imports engine internals: {sorted(bad)}"


@pytest.mark.parametrize("name", HANDLES)
def test_handles_never_touch_the_core_state(name: str) -> None:
    text = (ROOT / name).read_text()
    for reach in ("._core.", "._sched", "._engine"):
        assert f"rt{reach}" not in text and f"_rt{reach}" not in text, (name, reach)


def test_persistence_imports_nothing_from_actorq() -> None:
    for path in (REPO / "persistence").glob("*.py"):
        bad = {m for m in _imports(path) if m == "actorq" or m.startswith("actorq.")}
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_change_is_defined_once() -> None:
    defined = [
        path.relative_to(REPO).as_posix()
        for path in ROOT.rglob("*.py")
        if any(
            isinstance(node, ast.Assign | ast.AnnAssign)
            and any(
                isinstance(t, ast.Name) and t.id == "Change"
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            )
            for node in ast.parse(path.read_text()).body
        )
    ]
    assert defined == ["actorq/_core/commands.py"]


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in vars(actorq) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(actorq, name)).__name__ == "module"}
    assert set(actorq.__all__) == public - modules
    assert list(actorq.__all__) == sorted(actorq.__all__)


@pytest.mark.parametrize(
    "path", sorted(ROOT.rglob("*.py")), ids=lambda p: p.relative_to(ROOT).as_posix()
)
def test_modules_stay_small(path: pathlib.Path) -> None:
    assert len(path.read_text().splitlines()) <= 720, f"{path.name}: split it"
