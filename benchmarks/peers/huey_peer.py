"""huey (MemoryHuey, SqliteHuey): a thread consumer started in-process (``consumer.start()``).

Synchronous: the runner calls these functions directly, not in an event loop. huey's workers
poll an empty queue with a sleep that backs off; the consumer is configured with
``initial_delay=1 ms, max_delay=10 ms`` (defaults 100 ms and 10 s). Delayed tasks go to the
schedule, which the scheduler thread reads every ``scheduler_interval`` s (1 s, huey's
minimum).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from huey import MemoryHuey, SqliteHuey, signals

from .common import Counter, Env, Params, Sample, delays, now, w1_sample, w2_sample, w3_sample

MISSING = {
    "W4": (
        "not supported: huey has pipelines (chains) and groups of results but "
        "no parent job that waits for children"
    ),
}

TIMEOUT = 120.0


def _huey(env: Env, kind: str) -> Any:
    if kind == "sqlite":
        folder = tempfile.mkdtemp(prefix="huey-", dir=env.tmpdir)
        return SqliteHuey("bench", filename=os.path.join(folder, "huey.db"))
    return MemoryHuey("bench")


def _consumer(huey: Any, workers: int) -> Any:
    return huey.create_consumer(
        workers=workers,
        worker_type="thread",
        periodic=False,
        initial_delay=0.001,
        backoff=1.15,
        max_delay=0.01,
        check_worker_health=False,
    )


def _wait(event: threading.Event, what: str) -> None:
    if not event.wait(TIMEOUT):
        raise RuntimeError(f"huey: {what} did not finish within {TIMEOUT:.0f} s")


def _run(huey: Any, workers: int, body: Callable[[Any], None]) -> None:
    consumer = _consumer(huey, workers)
    try:
        body(consumer)
    finally:
        consumer.stop(graceful=True)


def w1(p: Params, env: Env, kind: str) -> Sample:
    huey = _huey(env, kind)
    done = threading.Event()
    counter = Counter(p.w1_jobs, done)
    lock = threading.Lock()

    @huey.task()
    def noop() -> None:
        with lock:
            counter.hit()

    t0 = now()
    for _ in range(p.w1_jobs):
        noop()
    t1 = now()
    times: list[float] = []

    def body(consumer: Any) -> None:
        t = now()
        consumer.start()
        _wait(done, "W1")
        times.append(now() - t)

    _run(huey, p.concurrency, body)
    return w1_sample(p.w1_jobs, t1 - t0, times[0])


def w2(p: Params, env: Env, kind: str) -> Sample:
    huey = _huey(env, kind)
    started = [0.0]
    finished = threading.Event()

    @huey.task()
    def ping() -> None:
        started[0] = now()

    @huey.signal(signals.SIGNAL_COMPLETE)
    def complete(signal: str, task: Any) -> None:
        finished.set()

    to_start: list[float] = []
    to_done: list[float] = []

    def body(consumer: Any) -> None:
        consumer.start()
        for i in range(p.w2_warmup + p.w2_samples):
            finished.clear()
            t0 = now()
            ping()
            _wait(finished, "W2 sample")
            t1 = now()
            if i >= p.w2_warmup:
                to_start.append(started[0] - t0)
                to_done.append(t1 - t0)

    _run(huey, 1, body)
    return w2_sample(to_start, to_done)


def w3(p: Params, env: Env, kind: str) -> Sample:
    huey = _huey(env, kind)
    ds = delays(p)
    lateness: list[float] = []
    lock = threading.Lock()
    done = threading.Event()

    @huey.task()
    def later(due: float) -> None:
        late = time.time() - due
        with lock:
            lateness.append(late)
            if len(lateness) == len(ds):
                done.set()

    enqueue_s: list[float] = []

    def body(consumer: Any) -> None:
        consumer.start()
        t0 = now()
        for d in ds:
            eta = datetime.fromtimestamp(time.time() + d, UTC)  # huey stores it as naive UTC
            later.schedule(args=(eta.timestamp(),), eta=eta)
        enqueue_s.append(now() - t0)
        _wait(done, "W3")

    _run(huey, p.concurrency, body)
    return w3_sample(lateness, len(ds), enqueue_s[0])
