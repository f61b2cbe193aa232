"""The notebooks run top to bottom (nbclient, a real kernel); the benchmark one plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def execute(name: str) -> Any:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()
    return nb


def outputs(nb: Any) -> list[dict[str, Any]]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


def text(nb: Any) -> str:
    parts = []
    for out in outputs(nb):
        if "text" in out:
            parts.append(out["text"])
        for key in ("text/plain", "text/html"):
            if key in out.get("data", {}):
                parts.append(out["data"][key])
    return "\n".join(parts)


def test_tutorial_runs() -> None:
    nb = execute("tutorial.ipynb")
    assert not [o for o in outputs(nb) if o["output_type"] == "error"]
    out = text(nb)
    assert "{'sent_to': 'bounce@example.com'}" in out
    assert "3 virtual days" in out
    assert "'images': 8" in out
    assert "vacuum is blocked" in out
    assert "the first process exited with 1" in out
    assert "stalled at restart: [(3, {'n': 2}, 'waiting')]" in out
    assert "results: [0, 10, 20, 30, 40]" in out
    assert "<table" in out  # jobs and the runtime render as HTML


def test_benchmarks_notebook_plots() -> None:
    nb = execute("benchmarks.ipynb")
    assert not [o for o in outputs(nb) if o["output_type"] == "error"]
    images = [o for o in outputs(nb) if "image/png" in o.get("data", {})]
    assert len(images) == 2  # throughput bars and the latency ECDF
    assert "jobs/s" in text(nb)
