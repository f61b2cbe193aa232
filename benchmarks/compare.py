"""Compare actorq with peer job queues on the same workloads: ``python -m benchmarks.compare``.

Run ``bash benchmarks/setup_peers.sh`` first (the ``bench`` extra, redis-server, postgresql).
Each (peer, workload) runs in its own process (``benchmarks.peers.runner``), each repetition
in a fresh event loop and fresh peer state. Servers (Redis, PostgreSQL) are started here on
127.0.0.1 with a temporary data dir and a free port, and stopped at the end. A peer whose
package or server is unavailable is skipped and the report says why.

Options: ``--reps N`` (default 3), ``--peers SUBSTR,...`` (labels containing any of them;
actorq always runs), ``--only W1,W2,W3,W4``, ``--quick`` (smaller job counts), ``--output``,
``--no-readme``. Writes ``compare.md``, ``results.json`` and PNG plots to
``benchmarks/results/compare/``, and refreshes the summary table of the top-level README.md
(between ``<!-- bench-table:start -->`` and ``<!-- bench-table:end -->``) unless
``--no-readme`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import anyio

from . import workloads as wl
from .peers import PEERS, Peer
from .peers.common import Params
from .peers.servers import Unavailable, postgres_server, redis_server
from .run import fmt, machine_line

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "compare"
README = HERE.parent / "README.md"
README_START = "<!-- bench-table:start -->"
README_END = "<!-- bench-table:end -->"
WORKLOADS = ("W1", "W2", "W3", "W4")
SUBPROCESS_TIMEOUT = 600
MEM, DUR = "actorq (memory)", "actorq (fsync=always)"
DISTS = {"taskiq": "taskiq", "huey": "huey", "arq": "arq", "saq": "saq", "bullmq": "bullmq",
         "procrastinate": "procrastinate", "psycopg": "psycopg", "actorq": "actorq"}  # fmt: skip

Samples = list[dict[str, Any]]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pkg_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


# ---------------------------------------------------------------------- running


@contextlib.contextmanager
def server(kind: str) -> Iterator[dict[str, str]]:
    if kind == "":
        yield {}
    elif kind == "postgres":
        with postgres_server() as dsn:
            yield {"pg_dsn": dsn}
    else:
        with redis_server(fsync_always=kind == "redis-always") as url:
            yield {"redis_url": url}


def run_one(peer: Peer, workload: str, reps: int, params: Params, urls: dict[str, str],
            logfile: Any) -> Samples | str:  # fmt: skip
    """Samples of every repetition, or why there are none."""
    args = [sys.executable, "-m", "benchmarks.peers.runner", "--peer", peer.label,
            "--workload", workload, "--reps", str(reps),
            "--params", json.dumps(params.to_dict())]  # fmt: skip
    if "redis_url" in urls:
        args += ["--redis-url", urls["redis_url"]]
    if "pg_dsn" in urls:
        args += ["--pg-dsn", urls["pg_dsn"]]
    logfile.write(f"\n===== {peer.label} {workload}\n")
    logfile.flush()
    try:
        out = subprocess.run(args, cwd=HERE.parent, stdout=subprocess.PIPE, stderr=logfile,
                             text=True, timeout=SUBPROCESS_TIMEOUT, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        return f"not measured: no result within {SUBPROCESS_TIMEOUT} s"
    samples: Samples = []
    for line in out.stdout.splitlines():
        msg = json.loads(line)
        if "sample" in msg:
            samples.append(msg["sample"])
        elif "skip" in msg:
            return str(msg["skip"])
        elif "error" in msg:
            done = f" after {len(samples)} good rep(s)" if samples else ""
            return f"failed{done}: {msg['error']} (traceback in logs.txt)"
    if out.returncode != 0 or len(samples) != reps:
        return f"failed: runner exited {out.returncode} with {len(samples)} rep(s) (see logs.txt)"
    return samples


def missing_packages(peer: Peer) -> list[str]:
    return [p for p in peer.packages if find_spec(p) is None]


def run_all(peers: Sequence[Peer], workloads: Sequence[str], reps: int, params: Params,
            logfile: Any) -> dict[str, dict[str, Samples | str]]:  # fmt: skip
    results: dict[str, dict[str, Samples | str]] = {p.label: {} for p in peers}
    kinds: list[str] = []
    for p in peers:
        if p.server not in kinds:
            kinds.append(p.server)
    for kind in kinds:
        group = [p for p in peers if p.server == kind]
        ready = []
        for p in group:
            missing = missing_packages(p)
            if missing:
                why = f"skipped: package(s) {', '.join(missing)} not installed"
                log(f"  {p.label}: {why}")
                results[p.label] = dict.fromkeys(workloads, why)
            else:
                ready.append(p)
        if not ready:
            continue
        try:
            with server(kind) as urls:
                if kind:
                    log(f"  started {kind} server: {next(iter(urls.values()))}")
                for p in ready:
                    for w in workloads:
                        t0 = time.perf_counter()
                        res = run_one(p, w, reps, params, urls, logfile)
                        results[p.label][w] = res
                        what = f"{len(res)} reps" if isinstance(res, list) else res
                        log(f"  {p.label} {w}: {what} ({time.perf_counter() - t0:.1f} s)")
        except Unavailable as exc:
            why = f"skipped: {kind} server unavailable: {exc}"
            log(f"  {why}")
            for p in ready:
                for w in workloads:
                    results[p.label].setdefault(w, why)
    return results


def floor(reps: int) -> dict[str, float]:
    out: dict[str, list[float]] = {}
    for _ in range(reps):
        gc.collect()
        s = anyio.run(wl.floor)
        for k, v in s.items():
            out.setdefault(k, []).append(v)
    return {k: statistics.median(v) for k, v in out.items()}


# ---------------------------------------------------------------------- report


def values(res: Samples | str, key: str) -> list[float]:
    if isinstance(res, str):
        return []
    return [float(s[key]) for s in res if key in s]


def median(res: Samples | str, key: str) -> float | None:
    v = values(res, key)
    return statistics.median(v) if v else None


def cell(res: Samples | str, key: str, unit: str = "") -> str:
    v = values(res, key)
    if not v:
        return "—"
    spread = f" ({fmt(min(v))}–{fmt(max(v))})" if len(v) > 1 else ""
    return f"{fmt(statistics.median(v))}{unit}{spread}"


def baseline(peer: Peer) -> str:
    return DUR if peer.durable else MEM


def ratio(results: dict[str, dict[str, Samples | str]], peer: Peer, w: str, key: str) -> str:
    base = results.get(baseline(peer), {}).get(w, "")
    a, b = median(base, key), median(results[peer.label].get(w, ""), key)
    if a is None or b is None or b == 0 or peer.label in (MEM, DUR):
        return "—"
    return f"{a / b:.3g}×"


TABLES: dict[str, tuple[str, list[tuple[str, str, str]], list[tuple[str, str]]]] = {
    # workload: (title, [(column, key, unit)], [(ratio column, key)])
    "W1": ("W1 throughput: {w1_jobs:,} no-op jobs enqueued, then processed at concurrency "
           "{concurrency}; end to end is one clock from before the first enqueue to the last "
           "job's run (jobs/s; higher is better)",
           [("end-to-end jobs/s", "e2e_jobs_s", ""), ("enqueue jobs/s", "enqueue_jobs_s", ""),
            ("process jobs/s", "process_jobs_s", ""),
            ("process µs/job", "process_us_per_job", "")],
           [("actorq/peer, end to end", "e2e_jobs_s"),
            ("actorq/peer, process", "process_jobs_s"),
            ("actorq/peer, enqueue", "enqueue_jobs_s")]),
    "W2": ("W2 latency: one job at a time, {w2_samples} samples after {w2_warmup} warm-up, "
           "concurrency 1 (µs; lower is better)",
           [("enqueue→start p50", "start_p50_us", ""), ("enqueue→start p99", "start_p99_us", ""),
            ("enqueue→complete p50", "done_p50_us", ""),
            ("enqueue→complete p99", "done_p99_us", "")],
           [("actorq/peer, start p50", "start_p50_us"),
            ("actorq/peer, complete p50", "done_p50_us")]),
    "W3": ("W3 delayed: {w3_jobs:,} jobs due in 0–{w3_ms:.0f} ms (seeded), one enqueue each, "
           "concurrency {concurrency}; lateness = start − due (ms; lower is better)",
           [("lateness p50", "late_p50_ms", ""), ("lateness p99", "late_p99_ms", ""),
            ("lateness max", "late_max_ms", ""), ("early starts", "early", ""),
            ("time to enqueue all", "enqueue_ms", " ms")],
           [("actorq/peer, p99", "late_p99_ms")]),
    "W4": ("W4 flows: {w4_parents} parents × {w4_children} children added with a "
           "FlowProducer, then processed at concurrency {concurrency} on both queues",
           [("workers start → all parents done", "wall_ms", " ms"),
            ("child jobs/s", "child_jobs_s", ""), ("add flows/s", "add_flows_s", "")],
           [("actorq/peer, child jobs/s", "child_jobs_s")]),
}  # fmt: skip


def render(peers: Sequence[Peer], workloads: Sequence[str], results: dict[str, Any],
           params: Params, header: list[str], floor_med: dict[str, float] | None,
           ) -> str:  # fmt: skip
    fields = {**params.to_dict(), "w3_ms": params.w3_max_delay * 1000}
    lines = [*header, ""]
    skipped: list[str] = []
    for w in workloads:
        title, cols, ratios = TABLES[w]
        lines += [f"### {title.format(**fields)}", ""]
        head = ["Peer", *(c for c, _, _ in cols), *(r for r, _ in ratios)]
        lines += ["| " + " | ".join(head) + " |", "|---" + "|--:" * (len(head) - 1) + "|"]
        for p in peers:
            res = results[p.label].get(w)
            if res is None:
                continue
            if isinstance(res, str):
                skipped.append(f"{p.label}, {w}: {res}")
                continue
            row = [p.label, *(cell(res, k, u) for _, k, u in cols)]
            row += [ratio(results, p, w, k) for _, k in ratios]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    lines += [
        "Cells: median (min–max) over the repetitions. Ratios: actorq's median ÷ the peer's "
        f"median from this same run, against `{MEM}` for non-durable peers and `{DUR}` for "
        "durable ones (rows marked durable below). For jobs/s a ratio above 1 means actorq is "
        "faster; for latencies and lateness a ratio below 1 means actorq is faster.",
        "",
    ]
    if floor_med:
        lines += ["### Floor (this machine, asyncio)", ""]
        lines.append(
            f"nowait hop {floor_med['nowait_us']:.3f} µs · awaited hop "
            f"{floor_med['awaited_us']:.3f} µs · no-op coroutine call {floor_med['noop_us']:.3f} µs"
        )
        for label in (MEM, DUR):
            per = median(results.get(label, {}).get("W1", ""), "process_us_per_job")
            if per is not None:
                lines.append(
                    f"- {label}, W1 process per job {per:.2f} µs = "
                    f"{per / floor_med['nowait_us']:.0f}× nowait hop, "
                    f"{per / floor_med['awaited_us']:.1f}× awaited hop, "
                    f"{per / floor_med['noop_us']:.0f}× no-op call"
                )
        lines.append("")
    lines += ["### Fairness, per peer", ""]
    lines += [f"- **{p.label}**{' (durable)' if p.durable else ''}: {p.fairness}" for p in peers]
    lines += [
        "",
        "Common to all: no-op job bodies; the peer's worker runs in the harness's own process "
        "(one Python process, 2 shared cores; Redis/PostgreSQL servers are separate processes "
        "on the same machine). W1 processing is timed from starting the worker until the "
        "job body has run for the last job (a counter in the body, no polling), as in "
        "`benchmarks.run`; W1 end to end is the enqueue and the processing back to back on "
        "one clock (a peer that runs jobs while they are enqueued, as taskiq does, counts "
        "them in its enqueue phase). W2 enqueue→start is taken in the job body; "
        "enqueue→complete is when the peer signals completion (per peer above). W3 due time "
        "is the absolute time handed to the peer (actorq: `created_at + delay`; BullMQ: "
        "`timestamp + delay`, ms). "
        f"Job counts are scaled down from `benchmarks.run` (W1 20,000 → {params.w1_jobs:,}, "
        f"W2 2,000 → {params.w2_samples}, W3 5,000 → {params.w3_jobs:,}, W4 200 parents → "
        f"{params.w4_parents}) so the slowest peers fit the time budget; the same for every "
        "peer within a workload.",
        "",
    ]
    if skipped:
        lines += ["### Not measured", ""]
        lines += [f"- {s}" for s in skipped]
        lines.append("")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- plots


def plot(peers: Sequence[Peer], results: dict[str, Any], out: Path) -> list[Path]:
    try:
        import matplotlib  # noqa: PLC0415 (optional: only the plots need it)

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        log("  matplotlib not installed: no plots")
        return []
    written: list[Path] = []
    palette = plt.get_cmap("tab20").colors
    color = {p.label: palette[i % len(palette)] for i, p in enumerate(PEERS)}

    def good(w: str) -> list[Peer]:
        return [p for p in peers if isinstance(results[p.label].get(w), list)]

    w1 = good("W1")
    if w1:
        fig, axes = plt.subplots(1, 3, figsize=(18, 0.45 * len(w1) + 1.8), sharey=True)
        for ax, key, title in ((axes[0], "e2e_jobs_s", "W1 end to end"),
                               (axes[1], "enqueue_jobs_s", "W1 enqueue"),
                               (axes[2], "process_jobs_s", "W1 process")):  # fmt: skip
            meds = [median(results[p.label]["W1"], key) or 0 for p in w1]
            lo = [
                m - min(values(results[p.label]["W1"], key)) for p, m in zip(w1, meds, strict=True)
            ]
            hi = [
                max(values(results[p.label]["W1"], key)) - m for p, m in zip(w1, meds, strict=True)
            ]
            colors = ["tab:blue" if p.label.startswith("actorq") else "tab:gray" for p in w1]
            ax.barh([p.label for p in w1], meds, xerr=[lo, hi], color=colors)
            ax.set_xscale("log")
            ax.set_xlabel("jobs/s (log scale; bar = median, whisker = min–max)")
            ax.set_title(title)
        axes[0].invert_yaxis()  # shared y axis: invert once, actorq on top
        fig.tight_layout()
        path = out / "w1_throughput.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    panels = [("W2", "start_raw_us", "W2 enqueue→start (µs)"),
              ("W2", "done_raw_us", "W2 enqueue→complete (µs)"),
              ("W3", "late_raw_ms", "W3 lateness (ms)")]  # fmt: skip
    if any(good(w) for w, _, _ in panels):
        fig, axes = plt.subplots(1, 3, figsize=(17, 5.5))
        for ax, (w, key, title) in zip(axes, panels, strict=True):
            for p in good(w):
                raw = sorted(x for s in results[p.label][w] for x in s.get(key, []))
                if not raw:
                    continue
                ys = [(i + 1) / len(raw) for i in range(len(raw))]
                style = "-" if p.label.startswith("actorq") else "--"
                ax.plot(raw, ys, style, label=p.label, linewidth=1.4, color=color[p.label])
            if key == "late_raw_ms":
                ax.set_xscale("symlog", linthresh=1.0)
            else:
                ax.set_xscale("log")
            ax.set_title(f"{title}, all reps pooled")
            ax.set_ylabel("fraction of jobs ≤ x")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        path = out / "latency_ecdf.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


# ---------------------------------------------------------------------- README summary

SUMMARY = (("W1 end-to-end jobs/s", "W1", "e2e_jobs_s"),
           ("W1 enqueue jobs/s", "W1", "enqueue_jobs_s"),
           ("W1 process jobs/s", "W1", "process_jobs_s"),
           ("W2 add→start p50 µs", "W2", "start_p50_us"),
           ("W3 lateness p99 ms", "W3", "late_p99_ms"))  # fmt: skip


def readme_section(results: dict[str, Any], params: Params, machine: str, command: str,
                   wall: float, peers: Sequence[Peer] = PEERS,
                   report_dir: str = "benchmarks/results/compare/") -> str:  # fmt: skip
    """The README's summary of a compare run: machine line, command, one row per peer with
    medians of W1 end to end, enqueue and processing, W2 add→start p50 and W3 lateness p99,
    and a W4 line."""
    shown = [
        p for p in peers if any(isinstance(r, list) for r in results.get(p.label, {}).values())
    ]
    ran = {w for p in shown for w in results[p.label]}
    measured = {
        (w, key)
        for p in shown
        for w, res in results[p.label].items()
        if isinstance(res, list)
        for sample in res
        for key in sample
    }
    columns = [c for c in SUMMARY if c[1] in ran and (c[1], c[2]) in measured]
    sizes = {"W1": f"W1 at {params.w1_jobs:,} jobs", "W2": f"W2 {params.w2_samples:,} samples",
             "W3": f"W3 {params.w3_jobs:,} jobs",
             "W4": f"W4 {params.w4_parents} parents × {params.w4_children} children"}  # fmt: skip
    lines = [
        "<!-- Written by `python -m benchmarks.compare` (function `readme_section`); "
        "rerun it rather than editing by hand. -->",
        machine,
        "",
        f"**Command:** `{command}` · {wall:.0f} s · "
        + ", ".join(text for w, text in sizes.items() if w in ran)
        + " for every peer"
        + ("; Redis and PostgreSQL on 127.0.0.1" if any(p.server for p in shown) else "")
        + ". Medians; the full table with spreads, fairness notes and plots is written to "
        f"`{report_dir}`.",
    ]
    if columns:
        lines += [
            "",
            "| Peer | " + " | ".join(title for title, _, _ in columns) + " |",
            "|---" + "|--:" * len(columns) + "|",
        ]
    missing = False
    for p in shown if columns else ():
        row = [p.label]
        for _, w, key in columns:
            m = median(results[p.label].get(w, ""), key)
            missing |= m is None
            row.append("—" if m is None else fmt(m))
        lines.append("| " + " | ".join(row) + " |")
    if missing:
        lines += ["", "— : not measured for that peer (the reason is in `compare.md`)."]
    w4_all = [(p.label, median(results[p.label].get("W4", ""), "child_jobs_s")) for p in shown]
    w4 = [(label, m) for label, m in w4_all if m is not None]
    if w4:
        lines += [
            "",
            f"W4 flows ({params.w4_parents} parents × {params.w4_children} children), child "
            "jobs/s: " + " · ".join(f"{label} {fmt(m)}" for label, m in w4) + ".",
        ]
    return "\n".join(lines) + "\n"


def replace_section(text: str, section: str) -> str:
    """`text` with everything between the README markers replaced by `section`."""
    if text.count(README_START) != 1 or text.count(README_END) != 1:
        raise ValueError(f"expected one {README_START} and one {README_END} marker")
    start = text.index(README_START) + len(README_START)
    end = text.index(README_END)
    if end < start:
        raise ValueError(f"{README_END} comes before {README_START}")
    return text[:start] + "\n" + section.strip("\n") + "\n" + text[end:]


def refresh_readme(path: Path, section: str) -> bool:
    """Write `section` between the markers of the README at `path`; False (logged) if it
    cannot: a missing file or markers must not throw away a finished run."""
    try:
        text = path.read_text(encoding="utf-8")
        path.write_text(replace_section(text, section), encoding="utf-8")
    except (OSError, ValueError) as exc:
        log(f"  README not refreshed: {exc}")
        return False
    log(f"  README table refreshed: {path}")
    return True


# ---------------------------------------------------------------------- main


def strip_raw(results: dict[str, Any]) -> dict[str, Any]:
    def clean(res: Samples | str) -> Samples | str:
        if isinstance(res, str):
            return res
        return [{k: v for k, v in s.items() if "_raw_" not in k} for s in res]

    return {label: {w: clean(r) for w, r in by_w.items()} for label, by_w in results.items()}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    ap.add_argument("--peers", help="comma-separated substrings of peer labels to run")
    ap.add_argument("--only", help="comma-separated workloads: W1,W2,W3,W4")
    ap.add_argument("--quick", action="store_true", help="smaller job counts (a smoke test)")
    ap.add_argument("--output", type=Path, default=OUT, help="report directory")
    ap.add_argument("--no-readme", action="store_true",
                    help="do not refresh the summary table in README.md")  # fmt: skip
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    reps = max(1, args.reps)
    workloads = [w.strip().upper() for w in args.only.split(",")] if args.only else WORKLOADS
    bad = [w for w in workloads if w not in WORKLOADS]
    if bad:
        ap.error(f"unknown workload(s) {bad}; choose from {', '.join(WORKLOADS)}")
    peers = list(PEERS)
    if args.peers:
        wanted = [s.strip().lower() for s in args.peers.split(",")]
        peers = [p for p in peers if p.label.startswith("actorq")
                 or any(s in p.label.lower() for s in wanted)]  # fmt: skip
    params = Params()
    if args.quick:
        params = replace(params, w1_jobs=1_000, w2_samples=100, w2_warmup=20, w3_jobs=200,
                         w4_parents=20)  # fmt: skip
    exe = sys.executable
    with contextlib.suppress(ValueError):
        exe = os.path.relpath(exe) if not os.path.relpath(exe).startswith("..") else exe
    rest = list(argv) if argv is not None else sys.argv[1:]
    command = shlex.join([exe, "-m", "benchmarks.compare", *rest])
    machine = machine_line("asyncio", reps, args.quick)
    versions = " · ".join(f"{d} {pkg_version(d)}" for d in DISTS.values())
    log(machine)
    log(f"Command: {command}")
    args.output.mkdir(parents=True, exist_ok=True)

    floor_med = None
    if "W1" in workloads:
        log("  floor (benchmarks.workloads.floor) ...")
        floor_med = floor(reps)
    with (args.output / "logs.txt").open("w", encoding="utf-8") as logfile:
        results = run_all(peers, workloads, reps, params, logfile)

    wall = time.perf_counter() - t_start
    header = [
        "## actorq vs peer job queues",
        "",
        machine,
        "",
        f"**Packages:** {versions} · redis-server and PostgreSQL as installed by "
        "`benchmarks/setup_peers.sh`",
        "",
        f"**Command:** `{command}` · wall time {wall:.0f} s (this run, after setup)",
    ]
    text = render(peers, workloads, results, params, header, floor_med)
    (args.output / "compare.md").write_text(text, encoding="utf-8")
    (args.output / "results.json").write_text(
        json.dumps({"params": params.to_dict(), "results": strip_raw(results)}, indent=1),
        encoding="utf-8",
    )
    pngs = plot(peers, results, args.output)
    if not args.no_readme:
        out_dir = args.output.resolve()
        report_dir = (
            f"{out_dir.relative_to(HERE.parent)}/"
            if out_dir.is_relative_to(HERE.parent)
            else f"{out_dir}/"
        )
        section = readme_section(results, params, machine, command, wall, peers, report_dir)
        refresh_readme(README, section)
    print(text, end="")
    print(f"Floor and machine line above. Wall time: {wall:.0f} s.")
    log(f"(written to {args.output}: compare.md, results.json, logs.txt"
        + "".join(f", {p.name}" for p in pngs) + ")")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
