"""actorq's web dashboard: ``app.mount("/actorq", dashboard(rt))`` (needs ``actorq[web]``).

Server-rendered pages over the runtime's public API only (queues, `Queue.get_jobs_page`,
`Job`, `FlowProducer.get_flow`, `Runtime.events`); a little JavaScript of our own confirms
actions and keeps the overview's counts live from a server-sent event stream fed by one
bounded event subscription per open page. Read-only unless ``read_only=False``; every action
is a POST carrying the app's CSRF token; ``auth(request) -> bool`` guards every request.
"""

from __future__ import annotations

import inspect
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import (
    ActorqError,
    FlowProducer,
    IllegalTransitionError,
    InvalidOptionError,
    Job,
    JobEvent,
    JobNotFoundError,
    JobState,
    Lagged,
    QueueEvent,
    RuntimeAPI,
)
from . import _graph, _html, _rates, _timeline
from ._html import STATES, Page

Auth = Callable[[Request], bool | Awaitable[bool]]

#: Events one open page's subscription holds before it drops the oldest (and says so).
EVENT_BUFFER = 1_000
PAGE_SIZE = 50
#: Reads of the runtime a queue page makes at most to fill itself (each a bounded budget of
#: an index or of ids): a filtered page, or one among many jobs of other queues, reads on.
PAGE_READS = 10
#: The overview's charts: how many minutes; the events their subscription holds unread;
#: how many finished jobs of each kind a queue's chart starts from.
RATE_MINUTES = 15
RATE_BUFFER = 10_000
RATE_SAMPLE = 1_000
_MAX_FORM = 4096
#: A job page's dependency graph: jobs at most, and steps each way from the job.
#: A queue page lists at most this many groups (the first by name), and counts the rest.
GROUPS_SHOWN = 50
GRAPH_LIMIT = 50
GRAPH_DEPTH = 3
_SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; style-src 'self' 'unsafe-inline'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}

__all__ = ["dashboard"]


def dashboard(rt: RuntimeAPI, *, read_only: bool = True, auth: Auth | None = None) -> Starlette:
    """An ASGI app showing `rt`'s queues and jobs; mount it anywhere.

    ``read_only`` (the default) shows every page and refuses every action with 403; pass
    False to allow retry, cancel, promote and remove of a job, pause and resume of a queue
    and retry of every failed job. ``auth`` is called with each request (it may be async);
    False answers 403.
    """
    if not isinstance(read_only, bool):
        raise InvalidOptionError("read_only", read_only, "must be True or False")
    if auth is not None and not callable(auth):
        raise InvalidOptionError("auth", auth, "must be a callable given the request")
    return _Dashboard(rt, read_only, auth).app()


class _Refused(Exception):
    def __init__(self, status: int, title: str, text: str) -> None:
        super().__init__(text)
        self.status, self.title, self.text = status, title, text


class _Dashboard:
    def __init__(self, rt: RuntimeAPI, read_only: bool, auth: Auth | None) -> None:
        self.rt = rt
        self.read_only = read_only
        self.auth = auth
        self.token = secrets.token_urlsafe(32)
        self.rates = _rates.Rates(rt, minutes=RATE_MINUTES, sample=RATE_SAMPLE, buffer=RATE_BUFFER)

    def app(self) -> Starlette:
        get, post = ["GET"], ["POST"]
        routes = [
            Route("/", self.overview, methods=get),
            Route("/app.js", self.script, methods=get),
            Route("/events", self.events, methods=get),
            Route("/queues/{queue}", self.queue, methods=get),
            Route("/queues/{queue}/{action}", self.queue_action, methods=post),
            Route("/jobs/{job_id:int}", self.job, methods=get),
            Route("/jobs/{job_id:int}/{action}", self.job_action, methods=post),
        ]
        return Starlette(
            routes=routes,
            middleware=[Middleware(_Guard, owner=self)],
            exception_handlers={_Refused: self.refused},
        )

    async def refused(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _Refused)
        text = _html.message(self.page(request), exc.status, exc.title, exc.text)
        return _page(text, exc.status)

    def page(self, request: Request) -> Page:
        return Page(request.scope.get("root_path", "").rstrip("/"), self.token, self.read_only)

    # ------------------------------------------------------------------ pages

    async def overview(self, request: Request) -> Response:
        counts = await self.rt.counts()
        rows = [
            (name, c, await self.rt.queue(name).is_paused(), self.rates.of(name))
            for name, c in counts.items()
        ]
        return _page(_html.overview(self.page(request), rows, self.rates.uncounted))

    async def queue(self, request: Request) -> Response:
        name = request.path_params["queue"]
        q = self.rt.queue(name)
        params = request.query_params
        state = params.get("state", "waiting")
        if state not in STATES:
            raise _Refused(400, "Bad request", f"no state {state!r}: one of {', '.join(STATES)}")
        raw_id = params.get("id", "").strip()
        if raw_id:
            if not raw_id.isdigit():
                raise _Refused(400, "Bad request", f"a job id is a number, not {raw_id!r}")
            job = await q.get_job(int(raw_id))
            if job is None:
                raise _Refused(404, "Not found", f"no job {raw_id} in queue {name!r}")
            return RedirectResponse(f"{self.page(request).base}/jobs/{job.id}", 303)
        cursor = _int_param(params.get("cursor"))
        sort = params.get("sort") or None
        if sort not in (None, "id", "-id"):
            raise _Refused(400, "Bad request", f"no sort {sort!r}: 'id' or '-id'")
        search = {k: params[k] for k in ("name", "tag", "sort") if params.get(k)}
        before = _int_param(params.get("before"))
        if before is not None and sort is None:
            raise _Refused(400, "Bad request", "a previous page (before=) needs sort=id or -id")
        jobs, after, previous = await self.jobs_page(
            q, JobState(state), sort, cursor, before, search
        )
        counts = await q.counts()
        limits = _html.Limits(
            concurrency=await q.get_global_concurrency(),
            rate_limit_ttl=await q.get_rate_limit_ttl(),
            workers=[(w.concurrency, w.manual, w.paused) for w in q.get_workers()],
            schedulers=await q.get_job_schedulers(),
            rate_limit=await q.get_rate_limit(),
            groups=await q.get_groups(limit=GROUPS_SHOWN),
        )
        html = _html.queue_page(
            self.page(request),
            name,
            state,
            counts,
            await q.is_paused(),
            jobs,
            cursor if before is None else before,
            after,
            previous,
            search,
            limits,
        )
        return _page(html)

    async def jobs_page(
        self,
        q: Any,
        state: JobState,
        sort: str | None,
        cursor: int | None,
        before: int | None,
        search: dict[str, str],
    ) -> tuple[list[Job], int | None, int | None]:
        """A page of `q`'s jobs: (jobs, next page's cursor, previous page's `before`).

        Sorted by id, a page can be read backwards: ``before=B`` shows the page that ends
        just before id B (read the other way from B, then turned round), so previous and
        next pages meet exactly, each job on one page. In a state's own order there is no
        previous page, only the first."""
        up = sort == "id"
        name, tag = search.get("name"), search.get("tag")

        async def read(start: int | None, order: Any) -> tuple[list[Job], int | None]:
            """Up to `PAGE_SIZE` jobs from `start`: a page that came back short (a filter,
            jobs of other queues or states among the ids) reads on from its cursor, at most
            `PAGE_READS` reads in all."""
            jobs: list[Job] = []
            at = start
            for _ in range(PAGE_READS):
                got, at = await q.get_jobs_page(
                    state, cursor=at, limit=PAGE_SIZE - len(jobs), name=name, tag=tag, sort=order
                )
                jobs += got
                if at is None or len(jobs) >= PAGE_SIZE:
                    break
            return jobs, at

        if before is None:
            jobs, after = await read(cursor, sort)
            if sort is None or cursor is None:
                return jobs, after, None
            return jobs, after, cursor + 1 if up else max(0, cursor - 1)
        jobs, further = await read(before, "-id" if up else "id")
        jobs.reverse()
        # Next: from the last one shown, or (none shown) from just past `before`.
        after = jobs[-1].id if jobs else max(0, before - 1) if up else before + 1
        return jobs, after, further

    async def job(self, request: Request) -> Response:
        job = await self.find(request.path_params["job_id"])
        deps = await job.get_dependencies()
        dependents = await job.get_dependents()
        flows = FlowProducer(self.rt)
        root = job
        seen = {job.id}
        while root.parent_id is not None and root.parent_id not in seen:
            seen.add(root.parent_id)
            parent = await self.lookup(root.parent_id)
            if parent is None:
                break
            root = parent
        tree = await flows.get_flow(root.id)
        graph = await self.graph(job, deps, dependents)
        page = self.page(request)
        drawn = _graph.section(page, graph)
        events = _timeline.timeline(job)
        return _page(_html.job_page(page, job, deps, dependents, tree, drawn, events))

    async def graph(
        self, job: Job, deps: dict[str, Any], dependents: dict[str, Any]
    ) -> _graph.Graph:
        """The jobs around `job` through `depends_on` and tag barriers: a bounded walk,
        `GRAPH_DEPTH` steps each way and `GRAPH_LIMIT` nodes at most, each read once."""
        g = _graph.Graph(job)

        async def add(job_id: int, column: int) -> Job | None:
            """Place the job in `column` (unless placed); the job if it is newly placed."""
            if job_id in g.column:
                return None
            if len(g) >= GRAPH_LIMIT:
                g.more += 1
                return None
            found = await self.lookup(job_id)
            if found is None:
                return None
            g.place(job_id, column, found)
            return found

        frontier = [job]
        for depth in range(1, GRAPH_DEPTH + 1):  # what it waits on, and what that waits on
            later: list[Job] = []
            for after in frontier:
                for dep_id in after.depends_on_job_ids:
                    placed = await add(dep_id, -depth)
                    if placed is not None:
                        later.append(placed)
                    if dep_id in g.column:
                        g.edge(dep_id, after.id)
            frontier = later
        if job.depends_on_tags and deps["blocking_job_ids"]:
            barrier = tuple(sorted(job.depends_on_tags))
            g.place(barrier, -1)
            g.edge(barrier, job.id)
            for holder in deps["blocking_job_ids"]:
                await add(holder, -2)
                if holder in g.column:
                    g.edge(holder, barrier)
        around = [(job, dependents)]
        for depth in range(1, GRAPH_DEPTH + 1):  # what waits on it, and on those
            nxt: list[tuple[Job, dict[str, Any]]] = []
            for before, theirs in around:
                for dep_id in theirs["job_ids"]:
                    placed = await add(dep_id, depth)
                    if placed is not None and depth < GRAPH_DEPTH:
                        nxt.append((placed, await placed.get_dependents()))
                    if dep_id in g.column:
                        g.edge(before.id, dep_id)
                for held in theirs["barriers"]:
                    barrier = tuple(held["tags"])
                    g.place(barrier, depth)
                    g.edge(before.id, barrier)
                    for waiter in held["waiting_job_ids"]:
                        await add(waiter, depth + 1)
                        if waiter in g.column:
                            g.edge(barrier, waiter)
            around = nxt
        return g

    async def script(self, request: Request) -> Response:
        return Response(_html.APP_JS, media_type="text/javascript")

    async def lookup(self, job_id: int) -> Job | None:
        for name in await self.rt.counts():
            job = await self.rt.queue(name).get_job(job_id)
            if job is not None:
                return job
        return None

    async def find(self, job_id: int) -> Job:
        job = await self.lookup(job_id)
        if job is None:
            raise _Refused(404, "Not found", f"no job {job_id}: it never existed or was removed")
        return job

    # ------------------------------------------------------------------ live

    async def events(self, request: Request) -> Response:
        stream = self.rt.events(buffer=EVENT_BUFFER)

        async def body() -> AsyncIterator[bytes]:
            async with stream:
                yield b"retry: 2000\n\n"
                async for first in stream:
                    batch = [first, *stream.drain_nowait()]
                    dirty: dict[str, None] = {}
                    for event in batch:
                        if isinstance(event, Lagged):
                            yield _sse("lagged", {"dropped": event.dropped})
                        elif isinstance(event, JobEvent | QueueEvent):
                            dirty[event.queue] = None
                    for event in batch[-20:]:
                        if isinstance(event, JobEvent):
                            yield _sse("job", _describe(event))
                    self.rates.drain()
                    for name in dirty:
                        q = self.rt.queue(name)
                        counts = await q.counts()
                        chart = _html.chart(*self.rates.of(name))
                        paused = await q.is_paused()
                        yield _sse(
                            "counts",
                            {"queue": name, "counts": counts, "paused": paused, "chart": chart},
                        )

        return StreamingResponse(
            body(),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    # ------------------------------------------------------------------ actions

    async def check_post(self, request: Request) -> dict[str, str]:
        if self.read_only:
            raise _Refused(403, "Read-only", "this dashboard is read-only: actions are off")
        # A form's urlencoded body, read here: no multipart parser needed for one field.
        body = (await request.body())[:_MAX_FORM]
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        given = request.headers.get("x-csrf-token") or form.get("csrf") or ""
        if not secrets.compare_digest(given.encode(), self.token.encode()):
            raise _Refused(403, "Forbidden", "missing or wrong CSRF token: reload the page")
        return form

    async def job_action(self, request: Request) -> Response:
        await self.check_post(request)
        action = request.path_params["action"]
        job = await self.find(request.path_params["job_id"])
        q = self.rt.queue(job.queue)
        run: dict[str, Callable[[], Awaitable[Any]]] = {
            "retry": lambda: q.retry(job.id),
            "cancel": lambda: q.cancel(job.id, reason="cancelled from the dashboard"),
            "promote": lambda: q.promote(job.id),
            "remove": lambda: q.remove(job.id),
        }
        if action not in run:
            raise _Refused(404, "Not found", f"no job action {action!r}")
        await _refusing(run[action])
        base = self.page(request).base
        to = f"{base}/queues/{_html.url_part(job.queue)}" if action == "remove" else None
        return _done(request, to or f"{base}/jobs/{job.id}")

    async def queue_action(self, request: Request) -> Response:
        await self.check_post(request)
        action = request.path_params["action"]
        q = self.rt.queue(request.path_params["queue"])
        if action == "pause":
            await _refusing(q.pause)
        elif action == "resume":
            await _refusing(q.resume)
        elif action == "retry-failed":
            await _refusing(lambda: _retry_failed(q))
        else:
            raise _Refused(404, "Not found", f"no queue action {action!r}")
        base = self.page(request).base
        return _done(request, f"{base}/queues/{_html.url_part(q.name)}")


async def _retry_failed(q: Any) -> int:
    """Retry every failed job of the queue, a page at a time; how many."""
    retried = 0
    while True:
        jobs, _after = await q.get_jobs_page("failed", limit=500)
        if not jobs:
            return retried
        for job in jobs:
            await q.retry(job.id)
            retried += 1


async def _refusing(call: Callable[[], Awaitable[Any]]) -> None:
    try:
        await call()
    except JobNotFoundError as exc:
        raise _Refused(404, "Not found", str(exc)) from None
    except (IllegalTransitionError, InvalidOptionError) as exc:
        raise _Refused(409, "Refused", str(exc)) from None
    except ActorqError as exc:
        raise _Refused(409, "Refused", str(exc)) from None


def _done(request: Request, to: str) -> Response:
    if request.headers.get("x-csrf-token"):
        return Response(orjson.dumps({"ok": True}), media_type="application/json")
    return RedirectResponse(to, 303)


def _describe(event: JobEvent) -> dict[str, Any]:
    kind = type(event).__name__
    return {"type": kind, "job_id": event.job_id, "queue": event.queue, "name": event.name}


def _sse(kind: str, data: Any) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _int_param(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit():
        raise _Refused(400, "Bad request", f"a cursor is a number, not {value!r}")
    return int(value)


def _page(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status, headers=_SECURITY_HEADERS)


class _Guard:
    """The auth hook, on every request before any route: False answers 403."""

    def __init__(self, app: ASGIApp, owner: _Dashboard) -> None:
        self.inner = app
        self.owner = owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        auth = self.owner.auth
        if scope["type"] == "http" and auth is not None:
            request = Request(scope, receive)
            allowed = auth(request)
            if inspect.isawaitable(allowed):
                allowed = await allowed
            if allowed is not True:
                refused = _Refused(403, "Forbidden", "the dashboard's auth hook refused this")
                await (await self.owner.refused(request, refused))(scope, receive, send)
                return
        if scope["type"] == "http":
            rates = self.owner.rates
            await rates.seed()  # the first request: what the finished lines hold from before
            rates.drain()  # every request counts what finished since the last
        await self.inner(scope, receive, send)
