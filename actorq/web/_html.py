"""The dashboard's pages, as strings: every value that comes from a user (job names, data,
tags, reasons, logs, queue names) goes through `esc` or `attr` before it reaches the page."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from .. import Job, JobNode, JobState

STATES: tuple[str, ...] = tuple(s.value for s in JobState)


def esc(value: object) -> str:
    """Text for an HTML body or a quoted attribute."""
    return html.escape(str(value), quote=True)


def url_part(value: object) -> str:
    return quote(str(value), safe="")


def pretty(value: Any) -> str:
    """A payload as indented JSON text (escaped by the caller)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return repr(value)


def when(value: float | None) -> str:
    """A time on the runtime's clock: a date for the system clock's, seconds otherwise."""
    if value is None:
        return "—"
    if value > 1e9:
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{value:.3f} s"


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:.6em 1.2em;display:flex;gap:1.5em;
align-items:center}
header a{color:#fff;text-decoration:none;font-weight:600}
main{padding:1em 1.2em;max-width:1200px}
table{border-collapse:collapse;background:#fff;width:100%;margin:.5em 0 1em}
th,td{border-bottom:1px solid #e3e6ea;padding:.35em .6em;text-align:left;vertical-align:top}
th{background:#eef0f3;font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums}
td.zero a{color:#b8bcc8}
.state{display:inline-block;padding:0 .45em;border-radius:.6em;font-size:12px;background:#e3e6ea}
.s-failed{background:#fbd5d5}.s-completed{background:#d4f1dc}.s-active{background:#d6e6ff}
.s-waiting{background:#fff1c2}.s-delayed{background:#ece0ff}.s-blocked{background:#ffe0c2}
.s-waiting-children{background:#d6f0f0}.s-cancelled{background:#ddd}
pre{background:#fff;border:1px solid #e3e6ea;padding:.6em;overflow:auto;max-height:24em}
.tabs a{margin-right:.6em}.tabs a.on{font-weight:700;text-decoration:none;color:#1d2330}
form.inline{display:inline}
button{cursor:pointer;border:1px solid #99a;background:#fff;border-radius:4px;padding:.2em .7em}
button:disabled{opacity:.5;cursor:default}
.notice{background:#fff1c2;border:1px solid #e6c860;padding:.4em .8em;margin:.5em 0}
.error{background:#fbd5d5;border:1px solid #d66;padding:.6em 1em}
.muted{color:#778}
ul.tree{list-style:none;padding-left:1.2em;border-left:1px dashed #bbc;margin:.2em 0}
ul.tree li{margin:.2em 0}li.here>a{font-weight:700;background:#fff1c2;padding:0 .2em}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em}dt{color:#556}dd{margin:0}
#live{font-size:12px}
ol.timeline{background:#fff;border:1px solid #e3e6ea;padding:.5em .5em .5em 2.5em;margin:.5em 0}
ol.timeline li{margin:.1em 0}ol.timeline .when{display:inline-block;min-width:13em;color:#556;
font-variant-numeric:tabular-nums}
li[data-kind=failed]{color:#a22}li[data-kind=completed]{color:#27693f}
.graph-box{overflow:auto;background:#fff;border:1px solid #e3e6ea;padding:.4em}
svg.graph text{font-family:system-ui,sans-serif}
"""


class Page:
    """What every page needs: the mount's prefix, the CSRF token, and whether actions are on."""

    def __init__(self, base: str, token: str, read_only: bool) -> None:
        self.base = base
        self.token = token
        self.read_only = read_only

    def href(self, path: str, **query: object) -> str:
        params = {k: v for k, v in query.items() if v is not None and v != ""}
        tail = f"?{urlencode(params)}" if params else ""
        return esc(f"{self.base}{path}{tail}")

    def queue_href(self, queue: str, **query: object) -> str:
        return self.href(f"/queues/{url_part(queue)}", **query)

    def job_href(self, job_id: int) -> str:
        return self.href(f"/jobs/{job_id}")

    def doc(self, title: str, body: str, *, live: bool = False) -> str:
        mode = "read-only" if self.read_only else "actions on"
        return (
            "<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<title>{esc(title)} · actorq</title>"
            '<meta name=viewport content="width=device-width,initial-scale=1">'
            f'<meta name="actorq-csrf" content="{esc(self.token)}">'
            f'<meta name="actorq-base" content="{esc(self.base)}">'
            f"<style>{CSS}</style>"
            f'<script src="{self.href("/app.js")}" defer></script></head>'
            f'<body data-live="{"1" if live else "0"}">'
            f'<header><a href="{self.href("/")}">actorq</a><span>{esc(title)}</span>'
            f"<span class=muted>{mode}</span><span id=live></span></header>"
            f"<div id=lagged class=notice hidden></div><main>{body}</main></body></html>"
        )

    def action(
        self, path: str, label: str, confirm: str, fields: Mapping[str, object] | None = None
    ) -> str:
        """A POST button: confirmed in the browser, carrying the CSRF token."""
        hidden = "".join(
            f'<input type=hidden name="{esc(k)}" value="{esc(v)}">'
            for k, v in (fields or {}).items()
        )
        off = " disabled title='read-only dashboard'" if self.read_only else ""
        return (
            f'<form class=inline method=post action="{self.href(path)}" '
            f'data-confirm="{esc(confirm)}">'
            f'<input type=hidden name=csrf value="{esc(self.token)}">{hidden}'
            f'<button type=submit data-action="{esc(label.lower())}"{off}>{esc(label)}</button>'
            "</form>"
        )


def state_badge(state: str) -> str:
    return f'<span class="state s-{esc(state)}">{esc(state)}</span>'


def chart(done: Sequence[int], failed: Sequence[int]) -> str:
    """Completed (green) and failed (red, on top) jobs per minute, as a small inline SVG."""
    top = max([a + b for a, b in zip(done, failed, strict=True)] + [1])
    width, height, bar = 6 * len(done), 24, 5
    bars = []
    for i, (a, b) in enumerate(zip(done, failed, strict=True)):
        ha, hb = height * a / top, height * b / top
        if a:
            bars.append(
                f'<rect x="{i * 6}" y="{height - ha:.1f}" width="{bar}" height="{ha:.1f}" '
                'fill="#3a9d5d"/>'
            )
        if b:
            bars.append(
                f'<rect x="{i * 6}" y="{height - ha - hb:.1f}" width="{bar}" '
                f'height="{hb:.1f}" fill="#d64545"/>'
            )
    total_done, total_failed = sum(done), sum(failed)
    label = f"{total_done} completed, {total_failed} failed in the last {len(done)} minutes"
    return (
        f'<svg class=chart width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role=img aria-label="{label}" data-completed="{total_done}" '
        f'data-failed="{total_failed}"><title>{label}</title>'
        f'<rect width="{width}" height="{height}" fill="#eef0f3"/>{"".join(bars)}</svg>'
    )


Rates = tuple[Sequence[int], Sequence[int]]


def overview(
    page: Page, queues: Sequence[tuple[str, Mapping[str, int], bool, Rates]], uncounted: int = 0
) -> str:
    head = "".join(f"<th>{esc(s)}</th>" for s in STATES)
    rows = []
    for name, counts, paused, (done, failed) in queues:
        cells = "".join(
            f'<td class="n{" zero" if not counts.get(s) else ""}" data-state="{esc(s)}">'
            f'<a href="{page.queue_href(name, state=s)}">{counts.get(s, 0)}</a></td>'
            for s in STATES
        )
        flag = "paused" if paused else "running"
        toggle = (
            page.action(f"/queues/{url_part(name)}/resume", "Resume", f"Resume queue {name}?")
            if paused
            else page.action(f"/queues/{url_part(name)}/pause", "Pause", f"Pause queue {name}?")
        )
        rows.append(
            f'<tr data-queue="{esc(name)}"><th><a href="{page.queue_href(name)}">{esc(name)}</a>'
            f"</th>{cells}<td class=rates>{chart(done, failed)}</td>"
            f"<td class=paused>{flag}</td><td>{toggle}</td></tr>"
        )
    if not rows:
        rows.append(f'<tr><td colspan="{len(STATES) + 4}" class=muted>no queues yet</td></tr>')
    note = (
        f"<p class=notice id=uncounted>{uncounted} events were dropped before the charts "
        "counted them (the dashboard was not read for a long while): the charts are short "
        "by that many.</p>"
        if uncounted
        else ""
    )
    body = (
        f"<h1>Queues</h1>{note}<table id=queues><thead><tr><th>queue</th>"
        f"{head}<th>per minute</th><th>status</th><th></th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        "<h2>Live</h2><ol id=feed class=muted reversed></ol>"
    )
    return page.doc("Overview", body, live=True)


def queue_page(
    page: Page,
    queue: str,
    state: str,
    counts: Mapping[str, int],
    paused: bool,
    jobs: Iterable[Job],
    cursor: int | None,
    next_cursor: int | None,
    previous: int | None,
    search: Mapping[str, str],
    limits: Limits,
) -> str:
    tabs = " ".join(
        f'<a class="{"on" if s == state else ""}" href="{page.queue_href(queue, state=s)}">'
        f"{esc(s)} ({counts.get(s, 0)})</a>"
        for s in STATES
    )
    rows = []
    for job in jobs:
        tags = ", ".join(esc(t) for t in job.tags)
        rows.append(
            f'<tr data-job="{job.id}"><td><a href="{page.job_href(job.id)}">{job.id}</a></td>'
            f"<td>{esc(job.name)}</td><td>{state_badge(job.state.value)}</td><td>{tags}</td>"
            f"<td class=n>{job.attempts_made}/{job.attempts}</td>"
            f"<td>{esc(job.failed_reason or '')}</td></tr>"
        )
    if not rows:
        rows.append("<tr><td colspan=6 class=muted>no job on this page</td></tr>")
    more = (
        f'<a id=next href="{page.queue_href(queue, state=state, cursor=next_cursor, **search)}">'
        "next page →</a>"
        if next_cursor is not None
        else "<span class=muted>end</span>"
    )
    first = (
        f'<a href="{page.queue_href(queue, state=state, **search)}">← first page</a> '
        if cursor is not None
        else ""
    )
    if previous is not None:
        href = page.queue_href(queue, state=state, before=previous, **search)
        first += f'<a id=previous href="{href}">← previous page</a> '

    q = url_part(queue)
    actions = [
        page.action(f"/queues/{q}/resume", "Resume", f"Resume queue {queue}?")
        if paused
        else page.action(f"/queues/{q}/pause", "Pause", f"Pause queue {queue}?")
    ]
    if state == "failed":
        actions.append(
            page.action(f"/queues/{q}/retry-failed", "Retry all failed", "Retry every failed job?")
        )
    sort = search.get("sort", "")
    own = _OWN_ORDER.get(state)
    choices = ([("", own)] if own else []) + [
        ("-id" if own else "", "newest added first"),
        ("id", "oldest added first"),
    ]
    filters = {k: v for k, v in search.items() if k != "sort"}
    order = " ".join(
        f'<a class="{"on" if key == sort else ""}" data-sort="{esc(key or "default")}" '
        f'href="{page.queue_href(queue, state=state, sort=key, **filters)}">{esc(label)}</a>'
        for key, label in choices
    )
    form = (
        f'<form method=get action="{page.queue_href(queue)}">'
        f'<input type=hidden name=state value="{esc(state)}">'
        f'<input type=hidden name=sort value="{esc(sort)}">'
        f'<input name=name placeholder="name" value="{esc(search.get("name", ""))}"> '
        f'<input name=tag placeholder="tag" value="{esc(search.get("tag", ""))}"> '
        f'<input name=id placeholder="job id" size=8> <button type=submit>Search</button></form>'
    )
    body = (
        f"<h1>Queue {esc(queue)} <small class=muted>{'paused' if paused else 'running'}</small>"
        f"</h1><p>{' '.join(actions)}</p><p class=tabs>{tabs}</p>{form}"
        f"{_limits(page, limits)}<p class=tabs id=sort>order: {order}</p>"
        "<table id=jobs><thead><tr><th>id</th><th>name</th><th>state</th><th>tags</th>"
        f"<th>attempts</th><th>reason</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f"<p>{first}{more}</p>"
    )
    return page.doc(f"Queue {queue}", body)


class Limits:
    """What bounds a queue's work: its global concurrency, its rate limit's time left,
    its workers in this runtime (concurrency, manual, paused), its job schedulers, its
    limiter's settings (`Queue.get_rate_limit`) and its groups (`Queue.get_groups`, bounded)."""

    def __init__(
        self,
        *,
        concurrency: int | None,
        rate_limit_ttl: float,
        workers: Sequence[tuple[int, bool, bool]],
        schedulers: Sequence[Mapping[str, Any]],
        rate_limit: Mapping[str, Any] | None = None,
        groups: Mapping[str, Any] | None = None,
    ) -> None:
        self.concurrency = concurrency
        self.rate_limit_ttl = rate_limit_ttl
        self.workers = workers
        self.schedulers = schedulers
        self.rate_limit = rate_limit
        self.groups = groups


def _per_window(limit: Mapping[str, Any] | None) -> str:
    if limit is None:
        return "none"
    return f"at most {limit['max']} starts per {limit['duration']:g} s"


def _groups(limits: Limits) -> str:
    view = limits.groups
    if not view or not (view["total"] or view["group_concurrency"] or view["group_limiter"]):
        return ""
    cap = view["group_concurrency"]
    facts = (
        f"<h2>Groups</h2><dl id=group-limits><dt>group concurrency</dt>"
        f"<dd id=group-concurrency>{esc('none' if cap is None else f'{cap} active at most')}</dd>"
        f"<dt>group limiter</dt><dd id=group-limiter>{esc(_per_window(view['group_limiter']))}"
        "</dd></dl>"
    )
    rows = "".join(
        f'<tr data-group="{esc(g["name"])}"><td>{esc(g["name"])}</td>'
        f"<td class=n>{g['waiting']}</td><td class=n>{g['active']}</td></tr>"
        for g in view["groups"]
    )
    rest = view["total"] - len(view["groups"])
    more = f"<p id=groups-more>and {rest} more group{'s' if rest != 1 else ''}</p>" if rest else ""
    if not rows:
        return f"{facts}<p id=groups-none>no group has a job waiting or active</p>"
    return (
        f"{facts}<table id=groups><thead><tr><th>group</th><th>waiting</th><th>active</th>"
        f"</tr></thead><tbody>{rows}</tbody></table>{more}"
    )


def _limits(page: Page, limits: Limits) -> str:
    cap = "none" if limits.concurrency is None else f"{limits.concurrency} active at most"
    ttl = limits.rate_limit_ttl
    rate = f"limited: starts again in {ttl:.1f} s" if ttl > 0 else "not limited now"
    running = [w for w in limits.workers if not w[1]]
    manual = len(limits.workers) - len(running)
    paused = sum(1 for w in running if w[2])
    workers = (
        f"{len(running)} processor worker{'s' if len(running) != 1 else ''} "
        f"(concurrency {sum(w[0] for w in running)}{f', {paused} paused' if paused else ''})"
        f", {manual} manual"
    )
    facts = (
        f"<dl id=limits><dt>global concurrency</dt><dd id=concurrency>{esc(cap)}</dd>"
        f"<dt>rate limit</dt><dd id=rate-limit>{esc(rate)}</dd>"
        f"<dt>limiter</dt><dd id=limiter>{esc(_per_window(limits.rate_limit))}</dd>"
        f"<dt>workers here</dt><dd id=workers>{esc(workers)}</dd></dl>"
    )
    facts += _groups(limits)
    if not limits.schedulers:
        return facts
    rows = []
    for sched in limits.schedulers:
        if sched.get("pattern"):
            every = f"cron {sched['pattern']}" + (f" ({sched['tz']})" if sched.get("tz") else "")
        else:
            every = f"every {sched.get('every')} s"
        runs = f"{sched.get('iterations', 0)}" + (
            f" of {sched['limit']}" if sched.get("limit") is not None else ""
        )
        job_id = sched.get("job_id")
        pending = f'<a href="{page.job_href(job_id)}">#{job_id}</a>' if job_id else "—"
        template = sched.get("template") or {}
        rows.append(
            f'<tr data-scheduler="{esc(sched["id"])}"><td>{esc(sched["id"])}</td>'
            f"<td>{esc(every)}</td><td>{esc(template.get('name', ''))}</td>"
            f"<td>{when(sched.get('next'))}</td><td class=n>{esc(runs)}</td>"
            f"<td>{pending}</td></tr>"
        )
    return (
        f"{facts}<h2>Job schedulers</h2><table id=schedulers><thead><tr><th>id</th>"
        "<th>schedule</th><th>job name</th><th>next run</th><th>runs</th>"
        f"<th>pending job</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


#: The order a state's page takes unsorted, where it is not newest added first.
_OWN_ORDER = {
    "waiting": "the order they will run",
    "completed": "newest finished first",
    "failed": "newest finished first",
}


def _tree(page: Page, node: JobNode, here: int) -> str:
    job = node.job
    mark = " class=here" if job.id == here else ""
    kids = "".join(_tree(page, kid, here) for kid in node.children)
    sub = f"<ul class=tree>{kids}</ul>" if kids else ""
    return (
        f'<li{mark} data-job="{job.id}"><a href="{page.job_href(job.id)}">#{job.id}</a> '
        f"{esc(job.name)} <span class=muted>on {esc(job.queue)}</span> "
        f"{state_badge(job.state.value)}{sub}</li>"
    )


#: Job links a list on a job's page shows at most (a prerequisite of a million jobs).
LINKS_LIMIT = 100


def _links(page: Page, ids: Iterable[int]) -> str:
    listed = list(ids)
    out = ", ".join(f'<a href="{page.job_href(i)}">#{i}</a>' for i in listed[:LINKS_LIMIT])
    if len(listed) > LINKS_LIMIT:
        out += f" <span class=muted>and {len(listed) - LINKS_LIMIT} more</span>"
    return out or "<span class=muted>none</span>"


def job_page(
    page: Page,
    job: Job,
    deps: Mapping[str, Any],
    dependents: Mapping[str, Any],
    tree: JobNode | None,
    graph: str,
    timeline: Sequence[tuple[float | None, str, str]],
) -> str:
    """`graph`: the dependency graph's markup, empty when the job has none."""
    q = url_part(job.queue)
    state = job.state.value
    acts = []
    if state in ("completed", "failed", "cancelled"):
        acts.append(page.action(f"/jobs/{job.id}/retry", "Retry", f"Retry job {job.id}?"))
    if state not in ("completed", "failed", "cancelled"):
        acts.append(page.action(f"/jobs/{job.id}/cancel", "Cancel", f"Cancel job {job.id}?"))
    if state == "delayed":
        acts.append(page.action(f"/jobs/{job.id}/promote", "Promote", f"Run job {job.id} now?"))
    if state != "active":
        acts.append(page.action(f"/jobs/{job.id}/remove", "Remove", f"Remove job {job.id}?"))
    options = {
        "priority": job.priority,
        "attempts": job.attempts,
        "tags": list(job.tags),
        "timeout": job.timeout,
        "run_at": job.run_at,
        "idempotency_key": job.idempotency_key,
        "depends_on_job_ids": list(job.depends_on_job_ids),
        "depends_on_tags": list(job.depends_on_tags),
    }
    facts = (
        f'<dt>queue</dt><dd><a href="{page.href(f"/queues/{q}")}">{esc(job.queue)}</a></dd>'
        f"<dt>state</dt><dd id=state>{state_badge(state)}</dd>"
        f"<dt>attempts</dt><dd>{job.attempts_made} made, {job.attempts_started} started, "
        f"of {job.attempts}</dd>"
        f"<dt>created</dt><dd>{when(job.created_at)}</dd>"
        f"<dt>processed</dt><dd>{when(job.processed_at)}</dd>"
        f"<dt>finished</dt><dd>{when(job.finished_at)}</dd>"
    )
    parts = [
        f"<h1>Job #{job.id} <span id=job-name>{esc(job.name)}</span></h1>",
        f"<p id=actions>{' '.join(acts)}</p><dl>{facts}</dl>",
    ]
    events = "".join(
        f'<li data-kind="{esc(kind)}"><span class=when>{when(at) if at is not None else ""}'
        f"</span> {esc(text)}</li>"
        for at, kind, text in timeline
    )
    parts.append(f"<h2>Timeline</h2><ol id=timeline class=timeline>{events}</ol>")
    if job.failed_reason is not None:
        parts.append(f"<h2>Failure</h2><pre id=reason>{esc(job.failed_reason)}</pre>")
    if job.stacktrace:
        traces = "\n\n".join(job.stacktrace)
        parts.append(f"<h2>Stack trace</h2><pre id=stacktrace>{esc(traces)}</pre>")
    if state == "completed":
        parts.append(
            f"<h2>Return value</h2><pre id=return-value>{esc(pretty(job.return_value))}</pre>"
        )
    parts.append(f"<h2>Data</h2><pre id=data>{esc(pretty(job.data))}</pre>")
    parts.append(f"<h2>Options</h2><pre id=options>{esc(pretty(options))}</pre>")
    if job.progress is not None:
        parts.append(f"<h2>Progress</h2><pre id=progress>{esc(pretty(job.progress))}</pre>")
    logs = "\n".join(job.logs)
    parts.append(f"<h2>Logs</h2><pre id=logs>{esc(logs) or '(none)'}</pre>")
    if tree is not None and (tree.children or tree.job.id != job.id):
        parts.append(f"<h2>Flow</h2><ul class=tree id=flow>{_tree(page, tree, job.id)}</ul>")
    if graph:
        parts.append(f"<h2>Dependency graph</h2>{graph}")
    failed = deps.get("failed", {})
    parts.append(
        "<h2>Dependencies</h2><dl id=deps>"
        f"<dt>parent</dt><dd>{_links(page, [job.parent_id] if job.parent_id else [])}</dd>"
        f"<dt>depends on</dt><dd id=depends-on>{_links(page, job.depends_on_job_ids)}</dd>"
        f"<dt>unmet</dt><dd id=unmet>{_links(page, deps.get('unmet_job_ids', []))}</dd>"
        f"<dt>tag barrier</dt><dd>{esc(', '.join(job.depends_on_tags)) or '—'}; held by "
        f"{_links(page, deps.get('blocking_job_ids', []))}</dd>"
        f"<dt>dependents</dt><dd id=dependents>{_links(page, dependents['job_ids'])}</dd>"
        f"<dt>still blocked on it</dt><dd id=blocked-on-it>"
        f"{_links(page, dependents['blocked_job_ids'])}</dd>"
        f"<dt>barriers it holds</dt><dd id=holds>{_held(page, dependents['barriers'])}</dd>"
        f"<dt>children pending</dt><dd>{_links(page, deps.get('pending', []))}</dd>"
        f"<dt>children done</dt><dd>{_links(page, deps.get('processed', {}))}</dd>"
        f"<dt>children failed</dt><dd>{_links(page, failed)}</dd></dl>"
    )
    return page.doc(f"Job {job.id}", "".join(parts))


def _held(page: Page, barriers: Sequence[Mapping[str, Any]]) -> str:
    out = "; ".join(
        f"[{esc(', '.join(b['tags']))}] holds back {_links(page, b['waiting_job_ids'])}"
        for b in barriers
    )
    return out or "<span class=muted>none</span>"


def message(page: Page, status: int, title: str, text: str) -> str:
    back = f'<p><a href="{page.href("/")}">back to the overview</a></p>'
    body = f"<h1>{esc(title)}</h1><div class=error id=message>{esc(text)}</div>{back}"
    return page.doc(f"{status} {title}", body)


APP_JS = r"""
"use strict";
document.addEventListener("submit", (ev) => {
  const form = ev.target;
  const text = form.getAttribute && form.getAttribute("data-confirm");
  if (text && !window.confirm(text)) ev.preventDefault();
});
function setCounts(queue, counts, paused) {
  const row = [...document.querySelectorAll("#queues tr[data-queue]")]
    .find((r) => r.dataset.queue === queue);
  if (!row) { location.reload(); return; }
  for (const cell of row.querySelectorAll("td[data-state]")) {
    const n = counts[cell.dataset.state] || 0;
    cell.querySelector("a").textContent = String(n);
    cell.classList.toggle("zero", n === 0);
  }
  row.querySelector("td.paused").textContent = paused ? "paused" : "running";
}
function setChart(queue, chart) {
  const row = [...document.querySelectorAll("#queues tr[data-queue]")]
    .find((r) => r.dataset.queue === queue);
  if (row && chart) row.querySelector("td.rates").innerHTML = chart;
}
function feed(line) {
  const list = document.getElementById("feed");
  if (!list) return;
  const item = document.createElement("li");
  item.textContent = line;
  list.prepend(item);
  while (list.children.length > 20) list.lastChild.remove();
}
window.addEventListener("DOMContentLoaded", () => {
  if (document.body.dataset.live !== "1" || !window.EventSource) return;
  const base = document.querySelector('meta[name="actorq-base"]').content;
  const live = document.getElementById("live");
  const source = new EventSource(base + "/events");
  source.addEventListener("open", () => { live.textContent = "live"; });
  source.addEventListener("error", () => { live.textContent = "reconnecting…"; });
  source.addEventListener("counts", (m) => {
    const d = JSON.parse(m.data);
    setCounts(d.queue, d.counts, d.paused);
    setChart(d.queue, d.chart);
  });
  source.addEventListener("job", (m) => {
    const d = JSON.parse(m.data);
    feed(d.type + " #" + d.job_id + " " + d.name + " on " + d.queue);
  });
  source.addEventListener("lagged", (m) => {
    const d = JSON.parse(m.data);
    const box = document.getElementById("lagged");
    box.hidden = false;
    box.textContent = "This page fell behind: " + d.dropped +
      " events were dropped; the counts shown are fresh, the live list is not complete.";
  });
});
"""
