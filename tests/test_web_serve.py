"""``actorq serve PATH --dashboard HOST:PORT``: a runtime on the journal folder, its dashboard
served by uvicorn (read-only unless ``--actions``), on 127.0.0.1 by default."""

# Stays on Runtime: `actorq serve` on a journal folder (and one test serves a host's client).

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from actorq import Runtime
from actorq._cli import main

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from actorq.web._serve import DEFAULT_ADDRESS, parse_address  # noqa: E402


def test_addresses() -> None:
    assert DEFAULT_ADDRESS.startswith("127.0.0.1:")
    assert parse_address("127.0.0.1:8000") == ("127.0.0.1", 8000)
    assert parse_address(":9000") == ("127.0.0.1", 9000)
    assert parse_address("[::1]:9000") == ("::1", 9000)
    for bad in ("8000", "host:", "host:http", "h:70000"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_address(bad)


def test_a_bad_address_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", str(tmp_path), "--dashboard", "nowhere"]) == 2
    assert "HOST:PORT" in capsys.readouterr().err


def test_serve_shows_the_folders_queues_read_only(tmp_path: Path) -> None:
    folder = tmp_path / "journal"

    async def fill() -> None:
        async with Runtime(folder) as rt:
            await rt.queue("invoices").add("send", {"n": 1})

    anyio.run(fill)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "actorq", "serve", str(folder), "--dashboard", f":{port}"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # printed once the runtime has opened the folder
        assert f"http://127.0.0.1:{port}/" in line and "read-only" in line
        res = None
        for _ in range(200):  # the socket opens just after: retry connecting, bounded
            try:
                res = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except httpx.ConnectError:
                anyio.run(anyio.sleep, 0.05)
        assert res is not None and res.status_code == 200
        assert 'data-queue="invoices"' in res.text
        refused = httpx.post(f"http://127.0.0.1:{port}/queues/invoices/pause", timeout=5)
        assert refused.status_code == 403
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


async def test_serve_a_runtime_hosts_dashboard_as_its_client() -> None:
    token = "serve-test-token-of-16+"
    async with Runtime(listen="127.0.0.1:0", token=token) as host:
        await host.queue("remote-invoices").add("send", {"n": 1})
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        url = f"actorq://{host.address}"
        command = [sys.executable, "-m", "actorq", "serve", url, "--dashboard", f":{port}"]
        proc = await anyio.open_process(
            [*command, "--actions"],
            stderr=subprocess.PIPE,
            env={**os.environ, "ACTORQ_TOKEN": token},  # or --token-file FILE
        )
        try:
            assert proc.stderr is not None
            printed = b""
            with anyio.fail_after(60):  # a hang guard: printed once connected
                while b"\n" not in printed:
                    printed += await proc.stderr.receive()
            line = printed.decode()
            assert f"http://127.0.0.1:{port}/" in line and "actions on" in line
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                res = None
                for _ in range(200):  # the socket opens just after: retry, bounded
                    try:
                        res = await client.get("/", timeout=5)
                        break
                    except httpx.ConnectError:
                        await anyio.sleep(0.05)
                assert res is not None and res.status_code == 200
                assert 'data-queue="remote-invoices"' in res.text
                found = re.search(r'name="actorq-csrf" content="([^"]+)"', res.text)
                assert found is not None
                paused = await client.post(
                    "/queues/remote-invoices/pause", data={"csrf": found.group(1)}, timeout=5
                )
                assert paused.status_code == 303
            assert await host.queue("remote-invoices").is_paused()  # acted through the host
        finally:
            proc.send_signal(signal.SIGINT)
            with anyio.fail_after(30):
                await proc.wait()
        assert proc.returncode == 0
