"""The notebooks run top to bottom (nbclient, a real kernel); the benchmark one plots."""

# Stays on Runtime: the notebooks' own code, run in a kernel.

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


def run_cells(*cells: str, path: Path) -> Any:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(path)}}
    )
    client.execute()
    return nb


def test_a_plain_runtime_entered_in_one_cell_is_closed_in_another(tmp_path: Path) -> None:
    nb = run_cells(
        "from actorq import Runtime\n"
        "rt = Runtime('journal')\n"
        "await rt.__aenter__()\n"
        "async def double(job):\n"
        "    return job.data * 2\n"
        "rt.worker('q', double)\n"
        "print('first', await (await rt.queue('q').add('x', 1)).wait_until_finished())",
        "print('second', await (await rt.queue('q').add('x', 2)).wait_until_finished())",
        "await rt.close()\nprint(rt)",
        # closed for real: the journal's lock is free, and it holds both jobs
        "async with Runtime('journal') as again:\n"
        "    print('reopened', (await again.queue('q').counts())['completed'])",
        path=tmp_path,
    )
    assert not [o for o in outputs(nb) if o["output_type"] == "error"]
    out = text(nb)
    assert "first 2" in out and "second 4" in out
    assert "<Runtime closed" in out
    assert "reopened 2" in out


def test_progress_is_a_widget_in_a_notebook(tmp_path: Path) -> None:
    nb = run_cells(
        "from actorq import Runtime\n"
        "async with Runtime() as rt:\n"
        "    async def ok(job):\n"
        "        return 1\n"
        "    rt.worker('q', ok)\n"
        "    jobs = [await rt.queue('q').add('x') for _ in range(3)]\n"
        "    print(await rt.wait(jobs, progress=True))",
        path=tmp_path,
    )
    assert not [o for o in outputs(nb) if o["output_type"] == "error"]
    assert "IProgress not found" not in text(nb)  # tqdm's warning without ipywidgets
    widgets = [
        o for o in outputs(nb) if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert widgets, outputs(nb)
    assert "[1, 1, 1]" in text(nb)
