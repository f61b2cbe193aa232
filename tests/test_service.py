"""The FastAPI lifespan recipe (examples/fastapi_service.py): jobs added over HTTP complete,
shutdown drains and leaves nothing running, and a runtime crash is reported, not hidden."""

from __future__ import annotations

import importlib.util
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from actorq import MemoryChangeLog

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

with warnings.catch_warnings():
    # Starlette >= 1 prefers httpx2 for its TestClient and warns when it falls back to httpx.
    warnings.filterwarnings("ignore", message=".*install `httpx2`")
    from fastapi.testclient import TestClient

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fastapi_service.py"


@pytest.fixture(scope="module")
def service() -> ModuleType:
    spec = importlib.util.spec_from_file_location("actorq_example_fastapi_service", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the request models through it
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def threads_before() -> Iterator[set[threading.Thread]]:
    before = set(threading.enumerate())
    yield before
    for thread in set(threading.enumerate()) - before:
        thread.join(timeout=5)  # an idle anyio worker thread exits when its loop has closed
    assert set(threading.enumerate()) <= before, "a thread outlived the app"


def test_jobs_over_http_complete_and_survive_a_restart(
    service: ModuleType, tmp_path: Path, threads_before: set[threading.Thread]
) -> None:
    app = service.create_app(tmp_path / "journal")
    with TestClient(app) as client:
        assert client.get("/health").json()["status"] == "ok"
        ids = []
        for i in range(5):
            r = client.post("/jobs", json={"name": "resize", "data": {"image": f"{i}.png"}})
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
        for i, job_id in enumerate(ids):
            body = client.get(f"/jobs/{job_id}", params={"wait": 5}).json()
            assert body["state"] == "completed", body
            assert body["return_value"] == {"image": f"{i}.png", "width": 320}
        dup = {"name": "resize", "data": {"image": "x.png"}, "idempotency_key": "k"}
        first = client.post("/jobs", json=dup).json()["id"]
        assert client.post("/jobs", json=dup).json()["id"] == first
        # Added but not yet due at shutdown: it stays in the journal.
        later = client.post(
            "/jobs", json={"name": "resize", "data": {"image": "l.png"}, "delay": 3600}
        ).json()["id"]
        assert client.get("/jobs/999").status_code == 404
        rt = app.state.runtime
    assert rt._state == "closed"

    app = service.create_app(tmp_path / "journal")
    with TestClient(app) as client:
        body = client.get(f"/jobs/{later}").json()
        assert body["state"] == "delayed"
        counts: dict[str, Any] = client.get("/health").json()["queues"]["images"]
        assert counts["completed"] == 6
        assert counts["delayed"] == 1


def test_shutdown_lets_running_jobs_finish(
    service: ModuleType, threads_before: set[threading.Thread]
) -> None:
    log = MemoryChangeLog()
    app = service.create_app(None, journal=log, concurrency=10)
    with TestClient(app) as client:
        ids = [
            client.post("/jobs", json={"name": "resize", "data": {"image": f"{i}"}}).json()["id"]
            for i in range(10)
        ]
    # Reopen the same change log: every job was allowed to finish during the drain, or is
    # still waiting (never started); none was cut off mid-run.
    app = service.create_app(None, journal=log)
    with TestClient(app) as client:
        states = {client.get(f"/jobs/{i}").json()["state"] for i in ids}
        assert states <= {"completed", "waiting", "active"}
        for job_id in ids:
            assert client.get(f"/jobs/{job_id}", params={"wait": 5}).json()["state"] == "completed"


class FailingDisk(MemoryChangeLog):
    """A change log whose commit starts failing on demand, like a disk that died (its
    commit waits, as a journal's fsync does)."""

    waits = True

    def __init__(self) -> None:
        super().__init__()
        self.broken = False

    async def _commit(self, changes: list[Any]) -> None:
        if self.broken:
            raise OSError(5, "Input/output error")
        super().commit(changes)

    def commit(self, changes: list[Any]) -> Any:  # type: ignore[override]
        return self._commit(changes)


def test_a_runtime_crash_is_loud(
    service: ModuleType, threads_before: set[threading.Thread], caplog: pytest.LogCaptureFixture
) -> None:
    disk = FailingDisk()
    app = service.create_app(None, journal=disk)
    client = TestClient(app, raise_server_exceptions=False)
    seen: dict[str, Any] = {}
    # Leaving the app raises the crash: the lifespan re-raises it after logging it.
    with pytest.raises(BaseException) as raised, client:
        # delayed: no worker commits for it once the disk is broken, so the add below is
        # what meets the failure (a loaded machine otherwise let the worker crash it first,
        # and the add then found the runtime closed rather than crashed)
        before = {"name": "resize", "data": {"image": "a"}, "delay": 3600}
        seen["before"] = client.post("/jobs", json=before)
        disk.broken = True
        seen["add"] = client.post("/jobs", json={"name": "resize", "data": {"image": "b"}})
        seen["health"] = client.get("/health")
    assert not isinstance(raised.value, AssertionError)
    assert "Input/output error" in repr(raised.value) or raised.group_contains(OSError)
    assert seen["before"].status_code == 202
    assert seen["add"].status_code == 503, seen["add"].text
    assert "crashed" in seen["add"].json()["detail"]
    assert seen["health"].status_code == 503
    assert seen["health"].json()["status"] == "down"
    assert "the actorq runtime crashed" in caplog.text


async def _asgi_client(app: Any, state: Any) -> httpx.AsyncClient:
    """A client over httpx's ASGI transport, with the lifespan's state in every request's
    scope as a server gives it (the transport runs no lifespan)."""

    async def with_state(scope: Any, receive: Any, send: Any) -> None:
        await app({**scope, "state": dict(state)}, receive, send)

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=with_state), base_url="http://t")


async def test_bad_input_is_422_naming_the_field(service: ModuleType) -> None:
    app = service.create_app(None, journal=MemoryChangeLog())
    async with app.router.lifespan_context(app) as state, await _asgi_client(app, state) as client:
        cases = [
            ({"name": "resize", "delay": -1}, "delay", -1.0),
            ({"name": ""}, "name", ""),
            ({"name": "resize", "idempotency_key": ""}, "idempotency_key", ""),
        ]
        for body, field, value in cases:
            r = await client.post("/jobs", json=body)
            assert r.status_code == 422, (body, r.text)
            (error,) = r.json()["detail"]
            assert error["loc"] == ["body", field] and error["input"] == value
            assert error["type"] == "invalid_option" and error["msg"]
        # A NaN in the data (Python's JSON parser takes it): named, sent back as text.
        r = await client.post(
            "/jobs",
            content=b'{"name": "resize", "data": {"x": NaN}}',
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == ["body", "data"]
        assert r.json()["detail"][0]["input"] == "{'x': nan}"
        for wait in ("-1", "nan", "inf", "3600"):
            r = await client.get("/jobs/1", params={"wait": wait})
            assert r.status_code == 422, (wait, r.text)
            assert r.json()["detail"][0]["loc"] == ["query", "wait"]
        # Nothing was added by any of them.
        counts = (await client.get("/health")).json()["queues"]["images"]
        assert sum(counts.values()) == 0
        ok = await client.post("/jobs", json={"name": "resize", "data": {"image": "a.png"}})
        assert ok.status_code == 202 and ok.json()["id"] == 1
