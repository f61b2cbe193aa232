"""The dashboard in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright, against the app served by uvicorn on 127.0.0.1. One server and one browser for
the module; the tests run in file order (the retry test, last, changes the world).

With ``ACTORQ_SCREENSHOTS=docs/img`` the tests also save the screenshots docs/dashboard.md
shows."""

# Stays on Runtime: one server for a real browser; the dashboard through a client is in test_web.

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actorq import Runtime

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")

from dashboard_world import EXPECTED, REASON, XSS, populate  # noqa: E402

from actorq.web import dashboard  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)"
)
SHOTS = os.environ.get("ACTORQ_SCREENSHOTS")


class Served:
    """The runtime and its dashboards on a uvicorn server, in a thread with its own loop."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.ids: dict[str, int] = {}
        self.rt: Any = None
        self.loop: Any = None
        self.server: Any = None
        self.error: BaseException | None = None
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self.sock = sock
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._run, daemon=True)

    def call(self, make: Any) -> Any:
        """Run ``make(rt)`` (a coroutine) on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(make(self.rt), self.loop).result(60)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by the fixture
            self.error = exc
            self.ready.set()

    async def _serve(self) -> None:
        from starlette.applications import Starlette  # noqa: PLC0415

        async with Runtime() as rt:
            self.rt = rt
            self.loop = asyncio.get_running_loop()
            self.ids = await populate(rt)
            app = Starlette()
            app.mount("/rw", dashboard(rt, read_only=False))
            app.mount("/ro", dashboard(rt))
            config = uvicorn.Config(
                app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1
            )
            self.server = uvicorn.Server(config)
            # The socket already listens: a browser connecting now waits in its backlog.
            self.ready.set()
            await self.server.serve(sockets=[self.sock])


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    s = Served()
    s.thread.start()
    assert s.ready.wait(60), "the server did not start"
    if s.error is not None:
        raise s.error
    yield s
    s.server.should_exit = True
    s.thread.join(30)
    s.sock.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    tab = context.new_page()
    tab.dialogs = []  # every dialog the page opened (a confirm is accepted, as a user would)
    tab.on("dialog", lambda d: (tab.dialogs.append(d.message), d.accept()))
    yield tab
    context.close()


def _shot(tab: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(Path(SHOTS) / name), full_page=True)


def _cell(tab: Any, queue: str, state: str) -> Any:
    return tab.locator(f'tr[data-queue="{queue}"] td[data-state="{state}"] a')


def test_the_overview_shows_each_queue_with_its_counts(served: Served, page: Any) -> None:
    page.goto(f"{served.url}/rw/")
    for queue, counts in EXPECTED.items():
        for state in ("waiting", "delayed", "blocked", "waiting-children", "completed", "failed"):
            assert _cell(page, queue, state).inner_text() == str(counts.get(state, 0)), (
                queue,
                state,
            )
    assert page.locator('tr[data-queue="db"] td.paused').inner_text() == "paused"
    sync_api.expect(page.locator("#live")).to_have_text("live")
    _shot(page, "overview.png")


def test_a_failed_jobs_page_shows_its_reason(served: Served, page: Any) -> None:
    page.goto(f"{served.url}/rw/jobs/{served.ids['failed']}")
    assert REASON in page.locator("#reason").inner_text()
    assert "ValueError" in page.locator("#stacktrace").inner_text()
    _shot(page, "job.png")


def test_a_flows_tree_and_a_dependency_graph_render(served: Served, page: Any) -> None:
    page.goto(f"{served.url}/rw/jobs/{served.ids['flow_child']}")
    tree = page.locator("#flow")
    assert tree.locator("li").count() == 3
    assert tree.locator("li.here").first.get_attribute("data-job") == str(served.ids["flow_child"])
    assert "report" in tree.inner_text() and "waiting-children" in tree.inner_text()
    page.goto(f"{served.url}/rw/jobs/{served.ids['flow_root']}")
    _shot(page, "flow.png")
    page.goto(f"{served.url}/rw/jobs/{served.ids['load']}")
    graph = page.locator("#graph")
    chain = [str(served.ids[k]) for k in ("extract", "transform", "load")]
    nodes = graph.locator("g.node")
    assert sorted(nodes.nth(i).get_attribute("data-job") for i in range(nodes.count())) == sorted(
        chain
    )
    # laid out left to right in the order they run: each box right of the one before
    xs = [graph.locator(f'g.node[data-job="{i}"] rect').bounding_box()["x"] for i in chain]
    assert xs == sorted(xs) and len(set(xs)) == 3
    assert graph.locator("path.edge").count() == 2
    assert graph.locator("g.node.here").get_attribute("data-job") == chain[-1]
    _shot(page, "graph.png")
    graph.locator(f'g.node[data-job="{chain[0]}"]').click()  # a node links to its job
    page.wait_for_url(f"**/rw/jobs/{chain[0]}")
    assert (
        "transform" in page.locator("#dependents").inner_text()
        or page.locator("#dependents a").inner_text() == f"#{chain[1]}"
    )


def test_a_failed_jobs_timeline_tells_its_attempt(served: Served, page: Any) -> None:
    page.goto(f"{served.url}/rw/jobs/{served.ids['failed']}")
    items = page.locator("#timeline li")
    kinds = [items.nth(i).get_attribute("data-kind") for i in range(items.count())]
    assert kinds == ["added", "started", "failed"]
    assert REASON in items.nth(2).inner_text() and "UTC" in items.nth(2).inner_text()


def test_a_tag_barrier_links_its_holder_and_its_waiter(served: Served, page: Any) -> None:
    holder, summary = served.ids["holder"], served.ids["summary"]
    page.goto(f"{served.url}/rw/jobs/{summary}")
    graph = page.locator("#graph")
    assert graph.locator("g.barrier").get_attribute("data-tags") == "import"
    boxes = [
        graph.locator(sel).bounding_box()["x"]
        for sel in (f'g.node[data-job="{holder}"] rect', "g.barrier rect", "g.node.here rect")
    ]
    assert boxes == sorted(boxes) and len(set(boxes)) == 3  # holder, barrier, waiter
    assert graph.locator("path.edge").count() == 2
    _shot(page, "barrier.png")
    page.goto(f"{served.url}/rw/jobs/{holder}")
    assert page.locator("#holds").inner_text() == f"[import] holds back #{summary}"


def test_a_queue_page_sorts_and_shows_its_limits_and_schedulers(served: Served, page: Any) -> None:
    page.goto(f"{served.url}/rw/queues/mail?state=waiting")
    rows = page.locator("#jobs tr[data-job]")

    def ids() -> list[int]:
        return [int(rows.nth(i).get_attribute("data-job")) for i in range(rows.count())]

    page.locator('#sort a[data-sort="-id"]').click()
    page.wait_for_url("**sort=-id**")
    newest = ids()
    assert len(newest) == 2 and newest == sorted(newest, reverse=True)
    page.locator('#sort a[data-sort="id"]').click()
    page.wait_for_url("**sort=id**")
    assert ids() == sorted(newest)
    assert page.locator("#sort a.on").get_attribute("data-sort") == "id"
    page.goto(f"{served.url}/rw/queues/nightly?state=delayed")
    assert page.locator("#concurrency").inner_text() == "2 active at most"
    assert page.locator("#limiter").inner_text() == "none"  # the limiter's settings
    row = page.locator('#schedulers tr[data-scheduler="nightly-report"] td')
    assert row.nth(1).inner_text() == "every 86400.0 s" and row.nth(2).inner_text() == "report"
    pending = page.locator("#jobs tr[data-job]").first.get_attribute("data-job")
    assert row.nth(5).inner_text() == f"#{pending}"
    _shot(page, "queue.png")


def test_a_hostile_name_renders_as_text(served: Served, page: Any) -> None:
    page.goto(f"{served.url}/rw/jobs/{served.ids['xss']}")
    assert page.locator("#job-name").inner_text() == XSS
    assert "<img src=x onerror=alert(2)>" in page.locator("#data").inner_text()
    page.goto(f"{served.url}/rw/queues/web")
    assert page.locator("#jobs td", has_text=XSS).count() == 1
    assert page.dialogs == []  # no alert ran
    assert page.locator("script").count() == 1  # ours, and only ours


def test_an_action_in_read_only_mode_is_refused(served: Served, page: Any) -> None:
    page.goto(f"{served.url}/ro/jobs/{served.ids['failed']}")
    button = page.locator('button[data-action="retry"]')
    assert button.is_disabled()
    with page.expect_navigation():
        page.evaluate("document.querySelector('form[action$=\"/retry\"]').submit()")
    assert "read-only" in page.locator("#message").inner_text()
    page.goto(f"{served.url}/ro/jobs/{served.ids['failed']}")
    assert page.locator("#state").inner_text() == "failed"


def test_retry_from_the_page_updates_the_open_overview_live(served: Served, browser: Any) -> None:
    context = browser.new_context()
    overview, job = context.new_page(), context.new_page()
    job.on("dialog", lambda d: d.accept())
    overview.goto(f"{served.url}/rw/")
    sync_api.expect(overview.locator("#live")).to_have_text("live")
    overview.evaluate("window.notReloaded = true")
    assert _cell(overview, "images", "failed").inner_text() == "1"
    job.goto(f"{served.url}/rw/jobs/{served.ids['failed']}")
    with job.expect_navigation():
        job.locator('button[data-action="retry"]').click()
    assert job.locator("#state").inner_text() == "waiting"
    sync_api.expect(_cell(overview, "images", "waiting")).to_have_text("1")
    sync_api.expect(_cell(overview, "images", "failed")).to_have_text("0")
    assert overview.evaluate("window.notReloaded") is True
    assert "JobWaiting" in overview.locator("#feed").inner_text()
    context.close()


def test_jobs_finishing_redraw_the_open_overviews_chart(served: Served, page: Any) -> None:
    page.goto(f"{served.url}/rw/")
    sync_api.expect(page.locator("#live")).to_have_text("live")
    page.evaluate("window.notReloaded = true")
    chart = page.locator('tr[data-queue="mail"] svg.chart')
    assert chart.get_attribute("data-completed") == "3"

    async def finish_the_waiting_mail(rt: Runtime) -> None:
        mail = rt.queue("mail")
        jobs, _ = await mail.get_jobs_page("waiting")

        async def send(job: Any) -> str:
            return "sent"

        worker = rt.worker(mail, send)
        for job in jobs:
            await job.wait_until_finished()
        await worker.close()

    served.call(finish_the_waiting_mail)  # the two digests
    sync_api.expect(chart).to_have_attribute("data-completed", "5")
    assert page.evaluate("window.notReloaded") is True  # redrawn by the stream, not reloaded
