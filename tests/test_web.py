"""The dashboard over HTTP (httpx's ASGI transport, on asyncio and trio): pages show the
runtime's queues and jobs, untrusted strings come out escaped, actions need the CSRF token
and are refused in read-only mode or when illegal, the auth hook guards every request, and
the event stream pushes fresh counts (and a Lagged notice) as the runtime changes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from runtimes import MakeRuntime

import actorq
from actorq import DependsOn, Runtime

pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")

from dashboard_world import EXPECTED, REASON, XSS, populate  # noqa: E402

from actorq import web  # noqa: E402
from actorq.web import _html, dashboard  # noqa: E402

BASE = "http://dash"


def _client(app: Any) -> Any:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


def _token(text: str) -> str:
    found = re.search(r'name="actorq-csrf" content="([^"]+)"', text)
    assert found is not None
    return found.group(1)


def _row_counts(text: str, queue: str) -> dict[str, int]:
    row = re.search(rf'<tr data-queue="{re.escape(queue)}">(.*?)</tr>', text, re.S)
    assert row is not None, queue
    cells = re.findall(r'data-state="([a-z-]+)"><a [^>]*>(\d+)</a>', row.group(1))
    return {state: int(n) for state, n in cells if int(n)}


TOKEN = "dashboard-test-token-16+"


@pytest.fixture(params=["local", "remote"])
async def world(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Any, dict[str, int]]]:
    """The world on a runtime, or on a client of a runtime host in another "process" (the
    dashboard then reads and acts through the connection)."""
    async with Runtime(listen="127.0.0.1:0", token=TOKEN) as host:
        if request.param == "local":
            yield host, await populate(host)
            return
        assert host.address is not None
        async with actorq.connect(f"actorq://{host.address}", token=TOKEN) as client:
            yield client, await populate(client)


async def test_overview_shows_every_queue_with_its_counts_and_pause(world: Any) -> None:
    rt, _ids = world
    async with _client(dashboard(rt)) as client:
        res = await client.get("/")
    assert res.status_code == 200
    for queue, counts in EXPECTED.items():
        assert _row_counts(res.text, queue) == counts
    db = re.search(r'<tr data-queue="db">.*?</tr>', res.text, re.S)
    assert db is not None and "<td class=paused>paused</td>" in db.group(0)
    assert "content-security-policy" in res.headers


async def test_the_overview_charts_the_last_minutes(world: Any) -> None:
    rt, _ids = world
    async with _client(dashboard(rt)) as client:
        text = (await client.get("/")).text

    def chart(queue: str) -> tuple[int, int]:
        row = re.search(rf'<tr data-queue="{queue}">.*?</tr>', text, re.S)
        assert row is not None
        found = re.search(r'data-completed="(\d+)" data-failed="(\d+)"', row.group(0))
        assert found is not None
        return int(found.group(1)), int(found.group(2))

    assert chart("mail") == (3, 0)
    assert chart("images") == (0, 1)
    assert chart("etl") == (0, 0)
    mail = re.search(r'<tr data-queue="mail">.*?</tr>', text, re.S)
    assert mail is not None and mail.group(0).count('fill="#3a9d5d"') == 1  # one minute's bar


async def test_a_failed_jobs_page_shows_its_reason_and_trace(world: Any) -> None:
    rt, ids = world
    async with _client(dashboard(rt)) as client:
        listing = await client.get("/queues/images", params={"state": "failed"})
        page = await client.get(f"/jobs/{ids['failed']}")
    assert f'data-job="{ids["failed"]}"' in listing.text and REASON in listing.text
    assert REASON in page.text.split("<pre id=reason>")[1].split("</pre>")[0]
    assert "ValueError" in page.text.split("id=stacktrace>")[1]


def _graph(text: str) -> tuple[set[str], set[tuple[str, str]]]:
    """The nodes (job ids, ``barrier:tags``) and edges of a job page's dependency graph."""
    found = re.search(r"<svg id=graph.*?</svg>", text, re.S)
    assert found is not None, "no dependency graph on the page"
    svg = found.group(0)
    nodes = set(re.findall(r'<g class="node[^"]*" data-job="(\d+)"', svg))
    nodes |= {f"barrier:{t}" for t in re.findall(r'<g class=barrier data-tags="([^"]+)"', svg)}
    edges = set(re.findall(r'class=edge data-from="([^"]+)" data-to="([^"]+)"', svg))
    return nodes, edges


async def test_flow_tree_and_dependency_graph_render(world: Any) -> None:
    rt, ids = world
    async with _client(dashboard(rt)) as client:
        child = await client.get(f"/jobs/{ids['flow_child']}")
        load = await client.get(f"/jobs/{ids['load']}")
        extract = await client.get(f"/jobs/{ids['extract']}")
    flow = child.text.split("id=flow>")[1].split("<h2>")[0]
    assert flow.index(f'data-job="{ids["flow_root"]}"') < flow.index("class=here")
    assert flow.count("<li") == 3
    e, t, lo = (str(ids[k]) for k in ("extract", "transform", "load"))
    assert _graph(load.text) == ({e, t, lo}, {(e, t), (t, lo)})
    assert 'class="node here" data-job="' + lo + '"' in load.text
    # from the other end: its dependents, and theirs
    assert _graph(extract.text) == ({e, t, lo}, {(e, t), (t, lo)})
    assert f'<dd id=dependents><a href="/jobs/{t}">#{t}</a></dd>' in extract.text
    assert f'<dd id=blocked-on-it><a href="/jobs/{t}">#{t}</a></dd>' in extract.text


async def test_a_tag_barrier_shows_on_both_sides(world: Any) -> None:
    rt, ids = world
    holder, summary = str(ids["holder"]), str(ids["summary"])
    async with _client(dashboard(rt)) as client:
        held = await client.get(f"/jobs/{holder}")
        waiting = await client.get(f"/jobs/{summary}")
    both = (
        {holder, summary, "barrier:import"},
        {(holder, "barrier:import"), ("barrier:import", summary)},
    )
    assert _graph(held.text) == both
    assert _graph(waiting.text) == both
    assert "[import] holds back" in held.text.split("id=holds>")[1].split("</dd>")[0]
    timeline = waiting.text.split("<ol id=timeline")[1].split("</ol>")[0]
    assert "blocked on its tag barrier [import]</li>" in timeline
    assert f'<a href="/jobs/{summary}">#{summary}</a>' in held.text.split("id=holds>")[1]
    alone = await rt.queue("web").add("alone")
    async with _client(dashboard(rt)) as client:
        page = await client.get(f"/jobs/{alone.id}")
    assert "<svg id=graph" not in page.text  # no relation, no graph


async def test_a_wide_graph_is_bounded_and_says_how_many_it_left_out(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime() as rt:
        q = rt.queue("fan")
        root = await q.add("root")
        await q.add_bulk(
            [{"name": "leaf", "depends_on": DependsOn(job_ids=[root.id])} for _ in range(130)]
        )
        async with _client(dashboard(rt)) as client:
            text = (await client.get(f"/jobs/{root.id}")).text
    nodes, edges = _graph(text)
    assert len(nodes) == web.GRAPH_LIMIT and len(edges) == web.GRAPH_LIMIT - 1
    assert f"({131 - web.GRAPH_LIMIT} more not shown)" in text
    listed = text.split("id=dependents>")[1].split("</dd>")[0]
    assert len(re.findall(r'<a href="/jobs/\d+">#\d+</a>', listed)) == _html.LINKS_LIMIT
    assert listed.endswith(f"and {130 - _html.LINKS_LIMIT} more</span>")


async def test_untrusted_strings_are_escaped_everywhere(world: Any) -> None:
    rt, ids = world
    web_queue = rt.queue("web")
    # hostile names and tags in a graph and a timeline too: a dependent, a barrier, a log
    await web_queue.add(XSS, depends_on=DependsOn(job_ids=[ids["xss"]], tags=[XSS]))
    await web_queue.add("holder", tags=[XSS])
    xss = await web_queue.get_job(ids["xss"])
    assert xss is not None
    await xss.log(XSS)
    async with _client(dashboard(rt)) as client:
        pages = [
            await client.get("/queues/web"),
            await client.get(f"/jobs/{ids['xss']}"),
            await client.get("/queues/web", params={"name": XSS}),
            await client.get(f"/queues/{XSS}"),
        ]
        pages += [await client.get(f"/jobs/{j.id}") for j in await web_queue.get_jobs()]
    for res in pages:
        assert XSS not in res.text and "<img src=x" not in res.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[1].text
    assert "<svg id=graph" in pages[1].text
    assert any('class=barrier data-tags="&lt;script&gt;' in res.text for res in pages)


async def test_read_only_refuses_every_action(world: Any) -> None:
    rt, ids = world
    app = dashboard(rt)
    async with _client(app) as client:
        token = _token((await client.get("/")).text)
        for path in (f"/jobs/{ids['failed']}/retry", "/queues/db/resume"):
            res = await client.post(path, data={"csrf": token})
            assert res.status_code == 403
            assert "read-only" in res.text
    assert (await rt.queue("images").get_job(ids["failed"])).state.value == "failed"  # type: ignore[union-attr]
    assert await rt.queue("db").is_paused()


async def test_actions_need_the_token_and_illegal_ones_say_why(world: Any) -> None:
    rt, ids = world
    images = rt.queue("images")
    async with _client(dashboard(rt, read_only=False)) as client:
        token = _token((await client.get("/")).text)
        retry = f"/jobs/{ids['failed']}/retry"
        assert (await client.post(retry)).status_code == 403
        assert (await client.post(retry, data={"csrf": "x" * len(token)})).status_code == 403
        assert (await images.get_job(ids["failed"])).state.value == "failed"  # type: ignore[union-attr]
        res = await client.post(retry, data={"csrf": token})
        assert res.status_code == 303 and res.headers["location"] == f"/jobs/{ids['failed']}"
        assert (await images.get_job(ids["failed"])).state.value == "waiting"  # type: ignore[union-attr]
        again = await client.post(retry, data={"csrf": token})
        assert again.status_code == 409 and "waiting" in again.text
        res = await client.post(f"/jobs/{ids['delayed']}/promote", headers={"x-csrf-token": token})
        assert res.status_code == 200 and res.json() == {"ok": True}
        assert (await rt.queue("mail").get_job(ids["delayed"])).state.value == "waiting"  # type: ignore[union-attr]
        assert (await client.post("/queues/db/resume", data={"csrf": token})).status_code == 303
        assert not await rt.queue("db").is_paused()
        assert (await client.post(f"/jobs/{ids['xss']}/cancel", data={"csrf": token})).is_redirect
        assert (await client.post(f"/jobs/{ids['xss']}/remove", data={"csrf": token})).is_redirect
        gone = await client.get(f"/jobs/{ids['xss']}")
        assert gone.status_code == 404
        assert (await client.post("/queues/db/explode", data={"csrf": token})).status_code == 404


async def test_retry_all_failed(world: Any) -> None:
    rt, _ids = world
    images = rt.queue("images")
    for _ in range(3):
        job = await images.add("resize", attempts=1)
        await job.cancel()
    async with _client(dashboard(rt, read_only=False)) as client:
        token = _token((await client.get("/")).text)
        res = await client.post("/queues/images/retry-failed", data={"csrf": token})
    assert res.status_code == 303
    counts = await images.counts()
    assert counts["failed"] == 0 and counts["waiting"] == 1 and counts["cancelled"] == 3


async def test_the_auth_hook_guards_every_request(world: Any) -> None:
    rt, ids = world
    seen: list[str] = []

    async def only_admin(request: Any) -> bool:
        seen.append(request.url.path)
        return bool(request.headers.get("x-user") == "admin")

    async with _client(dashboard(rt, read_only=False, auth=only_admin)) as client:
        assert (await client.get("/")).status_code == 403
        assert (await client.get(f"/jobs/{ids['failed']}")).status_code == 403
        assert (await client.post(f"/jobs/{ids['failed']}/retry")).status_code == 403
        assert (await client.get("/", headers={"x-user": "admin"})).status_code == 200
    assert len(seen) == 4
    with pytest.raises(Exception, match="auth"):
        dashboard(rt, auth="yes")  # type: ignore[arg-type]


async def test_queue_pages_page_with_a_cursor_and_search_by_id(world: Any) -> None:
    rt, _ids = world
    q = rt.queue("bulk")
    added = await q.add_bulk([{"name": f"n{i % 2}"} for i in range(120)])
    seen: list[int] = []
    async with _client(dashboard(rt)) as client:
        url: str | None = "/queues/bulk?state=waiting"
        while url is not None:
            text = (await client.get(url)).text
            rows = [int(i) for i in re.findall(r'<tr data-job="(\d+)">', text)]
            assert len(rows) <= web.PAGE_SIZE
            seen += rows
            found = re.search(r'<a id=next href="([^"]+)"', text)
            url = None if found is None else found.group(1).replace("&amp;", "&")
        assert seen == [j.id for j in added]
        named = (await client.get("/queues/bulk", params={"name": "n1"})).text
        assert len(re.findall(r"<tr data-job=", named)) == web.PAGE_SIZE
        res = await client.get("/queues/bulk", params={"id": str(added[7].id)})
        assert res.status_code == 303 and res.headers["location"] == f"/jobs/{added[7].id}"
        assert (await client.get("/queues/bulk", params={"id": "999999"})).status_code == 404
        assert (await client.get("/queues/bulk", params={"state": "nope"})).status_code == 400


async def _follow(client: Any, url: str | None) -> list[int]:
    """Every job row of a queue's pages, following `next page` links from `url`."""
    seen: list[int] = []
    while url is not None:
        text = (await client.get(url)).text
        seen += [int(i) for i in re.findall(r'<tr data-job="(\d+)">', text)]
        found = re.search(r'<a id=next href="([^"]+)"', text)
        url = None if found is None else found.group(1).replace("&amp;", "&")
    return seen


async def test_a_queue_page_sorts_by_id_both_ways_across_pages(world: Any) -> None:
    rt, _ids = world
    q = rt.queue("bulk")
    added = await q.add_bulk([{"name": "n", "priority": i % 3} for i in range(120)])
    ids = [j.id for j in added]
    async with _client(dashboard(rt)) as client:
        run_order = await _follow(client, "/queues/bulk?state=waiting")
        oldest = await _follow(client, "/queues/bulk?state=waiting&sort=id")
        newest = await _follow(client, "/queues/bulk?state=waiting&sort=-id")
        page = (await client.get("/queues/bulk?state=waiting&sort=id")).text
        bad = await client.get("/queues/bulk?sort=name")
    assert sorted(run_order) == ids and run_order != ids  # priorities first
    assert oldest == ids
    assert newest == ids[::-1]
    assert re.search(r'<a class="on" data-sort="id"', page)
    assert "sort=id" in page.split("<a id=next")[1].split(">")[0]
    assert bad.status_code == 400 and "sort" in bad.text


async def _pages(client: Any, url: str | None, link: str) -> list[tuple[str, list[int]]]:
    """(url, job rows) of each page, following the `link` (next or previous) links."""
    pages: list[tuple[str, list[int]]] = []
    while url is not None:
        text = (await client.get(url)).text
        pages.append((url, [int(i) for i in re.findall(r'<tr data-job="(\d+)">', text)]))
        found = re.search(rf'<a id={link} href="([^"]+)"', text)
        url = None if found is None else found.group(1).replace("&amp;", "&")
    return pages


@pytest.mark.parametrize("sort", ["id", "-id"])
async def test_a_sorted_queue_page_reads_back_page_by_page(world: Any, sort: str) -> None:
    rt, _ids = world
    q = rt.queue("bulk")
    added = [j.id for j in await q.add_bulk([{"name": "n"} for _ in range(120)])]
    async with _client(dashboard(rt)) as client:
        forward = await _pages(client, f"/queues/bulk?state=waiting&sort={sort}", "next")
        backward = await _pages(client, forward[-1][0], "previous")
        no_sort = await client.get("/queues/bulk?state=waiting&before=5")
    ahead = [rows for _url, rows in forward]
    assert [i for rows in ahead for i in rows] == (added if sort == "id" else added[::-1])
    assert len(ahead) == 3
    # From the last page back to the first: the same pages, each job on one. (Reading
    # newest-first ids down, a page ending on the lowest id cannot know it was the last,
    # so an empty page may close the walk, as for any page that reads ids.)
    back = [rows for _url, rows in backward]
    assert [rows for rows in back if rows] == ahead[::-1]
    assert no_sort.status_code == 400 and "sort" in no_sort.text


@pytest.mark.runtimes(
    "local",
    why="fifty thousand jobs: seconds to carry through a client, to the same engine's paging",
)
async def test_a_page_reads_on_past_a_budget_of_other_jobs(make_runtime: MakeRuntime) -> None:
    async with make_runtime() as rt:
        mine = [j.id for j in await rt.queue("mine").add_bulk([{"name": "a"}] * 3)]
        await rt.queue("other").add_bulk([{"name": "x"}] * 25_000)  # more than a budget
        await rt.queue("mine").add_bulk([{"name": "common"}] * 25_000)
        rare = [j.id for j in await rt.queue("mine").add_bulk([{"name": "rare"}] * 2)]
        async with _client(dashboard(rt)) as client:
            found = await client.get("/queues/mine", params={"state": "waiting", "name": "rare"})
            oldest = await client.get("/queues/mine?state=waiting&sort=-id&cursor=25004")
    rows = [int(i) for i in re.findall(r'<tr data-job="(\d+)">', found.text)]
    assert rows == rare  # past 25,000 waiting jobs of another name: the second read
    # below id 25,004: 25,000 of another queue's, then its own three (a second read)
    assert [int(i) for i in re.findall(r'<tr data-job="(\d+)">', oldest.text)] == mine[::-1]


async def test_a_queue_page_shows_its_limits_workers_and_schedulers(
    make_runtime: MakeRuntime,
) -> None:
    from actorq import VirtualClock  # noqa: PLC0415

    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("reports")
        bare = await _queue_text(rt, "reports")
        await q.set_global_concurrency(3)

        async def run(job: Any) -> None:
            return None

        worker = rt.worker(q, run, concurrency=4)
        rt.worker(q)  # a manual one
        await worker.rate_limit(90)
        pending = await q.upsert_job_scheduler("hourly", every=3600, template={"name": "tick"})
        assert pending is not None
        text = await _queue_text(rt, "reports")
    assert "<dd id=concurrency>none</dd>" in bare and "not limited now" in bare
    assert "0 processor workers" in bare and "<table id=schedulers>" not in bare
    assert "<dd id=concurrency>3 active at most</dd>" in text
    assert "<dd id=rate-limit>limited: starts again in 90.0 s</dd>" in text
    assert "<dd id=workers>1 processor worker (concurrency 4), 1 manual</dd>" in text
    row = re.search(r'<tr data-scheduler="hourly">(.*?)</tr>', text, re.S)
    assert row is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
    assert cells[:3] == ["hourly", "every 3600.0 s", "tick"]
    assert cells[3] == "3600.000 s" and cells[4] == "1"  # its pending job is its first
    assert f'href="/jobs/{pending.id}"' in cells[5]


@pytest.mark.parametrize("via", ["local", "remote"])
async def test_a_queue_page_shows_its_groups_and_its_limiters_settings(via: str) -> None:
    from remote_fixture import remote_runtime  # noqa: PLC0415

    from actorq import VirtualClock  # noqa: PLC0415

    clock = VirtualClock(autojump=False)
    opener: Any = Runtime if via == "local" else remote_runtime
    async with opener(clock=clock) as rt:
        q = rt.queue("tenants")
        bare = await _queue_text(rt, "tenants")

        async def run(job: Any) -> None:
            await clock.sleep(1)

        rt.worker(
            q,
            run,
            concurrency=2,
            group_concurrency=1,
            group_limiter={"max": 3, "duration": 60},
            limiter={"max": 20, "duration": 2},
        )
        names = ["<i>x</i>", *(f"t{i:02}" for i in range(web.GROUPS_SHOWN + 1))]
        await q.add_bulk([{"name": "j", "group": g} for g in names for _ in range(2)])
        await clock.advance(0.5)  # two jobs start: one each of the first two groups in turn
        text = await _queue_text(rt, "tenants")
        await clock.advance(200)
    assert "<dd id=limiter>none</dd>" in bare and "<h2>Groups</h2>" not in bare
    assert "<dd id=limiter>at most 20 starts per 2 s</dd>" in text
    assert "<dd id=group-concurrency>1 active at most</dd>" in text
    assert "<dd id=group-limiter>at most 3 starts per 60 s</dd>" in text
    shown = re.findall(r'<tr data-group="([^"]*)">', text)
    assert len(shown) == web.GROUPS_SHOWN
    assert shown[0] == "&lt;i&gt;x&lt;/i&gt;" and "<i>x</i>" not in text  # escaped
    assert shown[1:] == [f"t{i:02}" for i in range(web.GROUPS_SHOWN - 1)]
    assert "<p id=groups-more>and 2 more groups</p>" in text
    first = re.search(r'<tr data-group="&lt;i&gt;x&lt;/i&gt;">(.*?)</tr>', text, re.S)
    assert first is not None
    assert re.findall(r"<td class=n>(\d+)</td>", first.group(1)) == ["1", "1"]


async def _queue_text(rt: Runtime, name: str) -> str:
    async with _client(dashboard(rt)) as client:
        res = await client.get(f"/queues/{name}")
    assert res.status_code == 200
    return str(res.text)


async def test_mounted_under_a_prefix_links_stay_inside_it(world: Any) -> None:
    from starlette.applications import Starlette  # noqa: PLC0415

    rt, ids = world
    parent = Starlette()
    parent.mount("/actorq", dashboard(rt))
    async with _client(parent) as client:
        res = await client.get("/actorq/")
        job = await client.get(f"/actorq/jobs/{ids['failed']}")
    assert res.status_code == 200 and 'href="/actorq/queues/mail' in res.text
    assert 'src="/actorq/app.js"' in res.text
    assert job.status_code == 200 and 'href="/actorq/queues/images"' in job.text


async def _stream(app: Any, until: Any, started: anyio.Event) -> list[tuple[str, Any]]:
    """GET /events straight through ASGI, reading server-sent events until `until(events)`."""
    import orjson  # noqa: PLC0415

    events: list[tuple[str, Any]] = []
    done = anyio.Event()
    buffer = b""

    async def receive() -> dict[str, Any]:
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal buffer
        if message["type"] != "http.response.body":
            return
        buffer += message.get("body", b"")
        started.set()  # the first body: the handler has subscribed
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            lines = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line)
            if b"event" in lines:
                events.append((lines[b"event"].decode(), orjson.loads(lines[b"data"])))
        if until(events):
            done.set()

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/events", "raw_path": b"/events", "root_path": "",
        "query_string": b"", "headers": [], "server": ("dash", 80), "client": ("t", 1),
    }  # fmt: skip
    with anyio.fail_after(30):  # a hang guard, not a timing assertion
        await app(scope, receive, send)
    return events


async def test_the_event_stream_pushes_fresh_counts(world: Any) -> None:
    rt, _ids = world
    app = dashboard(rt)

    def until(events: list[tuple[str, Any]]) -> bool:
        return any(kind == "counts" and d["counts"]["waiting"] == 2 for kind, d in events)

    out: list[Any] = []
    started = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: _collect(app, until, out, started))
        await started.wait()
        await rt.queue("web").add("second")
    counts = [d for kind, d in out if kind == "counts" and d["queue"] == "web"]
    assert counts[-1]["counts"]["waiting"] == 2 and counts[-1]["paused"] is False
    assert counts[-1]["chart"].startswith("<svg class=chart")  # the page redraws its chart
    assert any(kind == "job" and d["type"] == "JobAdded" for kind, d in out)


async def _collect(app: Any, until: Any, out: list[Any], started: anyio.Event) -> None:
    out.extend(await _stream(app, until, started))


async def test_a_slow_stream_shows_lagged(world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    rt, _ids = world
    monkeypatch.setattr(web, "EVENT_BUFFER", 2)
    app = dashboard(rt)
    out: list[Any] = []
    started = anyio.Event()

    def until(events: list[tuple[str, Any]]) -> bool:
        return any(kind == "lagged" for kind, _ in events)

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: _collect(app, until, out, started))
        await started.wait()
        await rt.queue("web").add_bulk([{"name": "x"} for _ in range(10)])
    lagged = [d for kind, d in out if kind == "lagged"]
    if isinstance(rt, Runtime):
        assert lagged == [{"dropped": 8}]  # one batch of ten into a buffer of two
    else:  # through a connection the events come in smaller batches: fewer are dropped
        assert lagged and all(d["dropped"] > 0 for d in lagged)


def test_the_dashboard_uses_only_the_public_api_and_stays_optional() -> None:
    import ast  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    for path in Path(web.__file__).parent.glob("*.py"):
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.level >= 2:
                assert node.module is None, f"{path.name} imports actorq.{node.module}"
        assert "._core" not in text and "rt._" not in text, path.name
    out = subprocess.run(
        [sys.executable, "-c", "import sys, actorq; print('starlette' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"
