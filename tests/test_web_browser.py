"""The dashboard in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright, against the app served by uvicorn on 127.0.0.1. One server and one browser for
the module; the tests run in file order (the retry test, last, changes the world).

With ``ACTORQ_SCREENSHOTS=docs/img`` the tests also save the screenshots docs/dashboard.md
shows."""

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
        self.server: Any = None
        self.error: BaseException | None = None
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self.sock = sock
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by the fixture
            self.error = exc
            self.ready.set()

    async def _serve(self) -> None:
        from starlette.applications import Starlette  # noqa: PLC0415

        async with Runtime() as rt:
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
