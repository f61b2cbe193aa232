"""A job's dependency graph as a server-rendered SVG: the jobs it waits on (its
prerequisites, theirs before them), the jobs that wait on it (its dependents, theirs after
them), and the tag-drain barriers between: the barrier it waits on, with the unfinished jobs
holding it, and the barriers it holds, with the jobs waiting for them to drain.

`Graph` is built by the dashboard from the public API (a bounded walk); `svg` lays it out in
columns, earliest on the left (an arrow reads "runs before"), and draws it. Every name that
reaches the picture goes through `esc`.
"""

from __future__ import annotations

from collections.abc import Mapping

from .. import Job
from ._html import Page, esc

#: A node: a job id, or a barrier (its sorted tags).
Node = int | tuple[str, ...]

_COL, _ROW, _W, _H, _PAD = 210, 46, 180, 34, 10
_FILL = {
    "failed": "#fbd5d5",
    "completed": "#d4f1dc",
    "active": "#d6e6ff",
    "waiting": "#fff1c2",
    "delayed": "#ece0ff",
    "blocked": "#ffe0c2",
    "waiting-children": "#d6f0f0",
    "cancelled": "#dddddd",
}


class Graph:
    """Nodes with a column each (0 for the job the page is about) and edges "before"."""

    def __init__(self, here: Job) -> None:
        self.here = here.id
        self.jobs: dict[int, Job] = {here.id: here}
        self.column: dict[Node, int] = {here.id: 0}
        self.edges: set[tuple[Node, Node]] = set()
        #: Jobs or waiters left out because the walk reached its bound.
        self.more = 0

    def place(self, node: Node, column: int, job: Job | None = None) -> bool:
        """Give `node` its column unless it has one; False when it was placed before."""
        if job is not None:
            self.jobs[job.id] = job
        if node in self.column:
            return False
        self.column[node] = column
        return True

    def edge(self, before: Node, after: Node) -> None:
        self.edges.add((before, after))

    def __len__(self) -> int:
        return len(self.column)


def _label(node: Node, jobs: Mapping[int, Job]) -> tuple[str, str, str]:
    """(title line, second line, fill) of a node."""
    if isinstance(node, tuple):
        return "tag barrier", "[" + ", ".join(node) + "]", "#ffffff"
    job = jobs[node]
    state = job.state.value
    return f"#{job.id} {job.name}", f"{state} · {job.queue}", _FILL.get(state, "#eeeeee")


def _clip(text: str, width: int = 24) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def section(page: Page, graph: Graph) -> str:
    """The graph with its legend, or "" when the job is alone in it."""
    if len(graph) <= 1:
        return ""
    more = f" ({graph.more} more not shown)" if graph.more else ""
    return (
        "<p class=muted>an arrow points from a job to one that waits for it (to complete, "
        f"or for its tag barrier to drain){more}</p>"
        f"<div class=graph-box>{svg(page, graph)}</div>"
    )


def svg(page: Page, graph: Graph) -> str:
    """The graph as an inline SVG (nodes link to their jobs' pages)."""
    low = min(graph.column.values())
    columns: dict[int, list[Node]] = {}
    for node, col in graph.column.items():
        columns.setdefault(col - low, []).append(node)
    pos: dict[Node, tuple[int, int]] = {}
    for col, nodes in columns.items():
        nodes.sort(key=lambda n: (isinstance(n, tuple), n if isinstance(n, int) else 0, str(n)))
        for row, node in enumerate(nodes):
            pos[node] = (_PAD + col * _COL, _PAD + row * _ROW)
    width = _PAD * 2 + (max(columns) * _COL) + _W
    height = _PAD * 2 + max(len(n) for n in columns.values()) * _ROW - (_ROW - _H)
    parts = [
        f'<svg id=graph class=graph width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role=img aria-label="dependency graph">'
        '<defs><marker id=arrow viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="#667"/></marker></defs>'
    ]
    for before, after in sorted(graph.edges, key=str):
        (x1, y1), (x2, y2) = pos[before], pos[after]
        sx, sy, ex, ey = float(x1 + _W), y1 + _H / 2, float(x2), y2 + _H / 2
        if ex <= sx:  # against the columns (a job placed earlier by another path)
            sx, ex = x1 + _W / 2.0, x2 + _W / 2.0
        mid = (sx + ex) / 2
        parts.append(
            f'<path class=edge data-from="{esc(_key(before))}" data-to="{esc(_key(after))}" '
            f'd="M {sx:.0f} {sy:.0f} C {mid:.0f} {sy:.0f}, {mid:.0f} {ey:.0f}, {ex:.0f} {ey:.0f}" '
            'fill="none" stroke="#667" stroke-width="1.3" marker-end="url(#arrow)"/>'
        )
    for node, (x, y) in pos.items():
        title, sub, fill = _label(node, graph.jobs)
        here = node == graph.here
        stroke = ' stroke="#1d2330" stroke-width="2.5"' if here else ' stroke="#99a"'
        round_ = 17 if isinstance(node, tuple) else 5
        shape = (
            f'<rect x="{x}" y="{y}" width="{_W}" height="{_H}" rx="{round_}" '
            f'fill="{fill}"{stroke}/>'
            f'<text x="{x + 8}" y="{y + 14}" font-size="12" font-weight="600">'
            f"{esc(_clip(title))}</text>"
            f'<text x="{x + 8}" y="{y + 28}" font-size="11" fill="#556">'
            f"{esc(_clip(sub, 28))}</text>"
        )
        if isinstance(node, tuple):
            parts.append(f'<g class=barrier data-tags="{esc(",".join(node))}">{shape}</g>')
        else:
            mark = " here" if here else ""
            parts.append(
                f'<a href="{page.job_href(node)}"><g class="node{mark}" data-job="{node}">'
                f"<title>{esc(title)}</title>{shape}</g></a>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _key(node: Node) -> str:
    return "barrier:" + ",".join(node) if isinstance(node, tuple) else str(node)
