"""OpenTelemetry (the ``otel`` extra): a span per attempt continuing the trace that added the
job, and per-queue metrics, read back through the SDK's in-memory exporter and reader."""

# Stays on Runtime: telemetry= is a Runtime option; a client takes none.

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import actorq
from actorq import (
    FlowJob,
    FlowProducer,
    InvalidOptionError,
    Job,
    JobFailedError,
    Runtime,
    VirtualClock,
)
from actorq.otel import Telemetry


class Sdk:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.telemetry = Telemetry(self.tracer_provider, self.meter_provider)

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        found = self.exporter.get_finished_spans()
        return [s for s in found if name is None or s.name == name]

    def metrics(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """{metric name: [(attributes, value or histogram (count, sum))]}."""
        out: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        data = self.reader.get_metrics_data()
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        if value is None:
                            value = (point.count, point.sum)  # type: ignore[attr-defined]
                        out.setdefault(metric.name, []).append((dict(point.attributes), value))
        return out


@pytest.fixture
def sdk() -> Sdk:
    return Sdk()


async def test_a_requests_trace_continues_into_its_jobs_attempts(sdk: Sdk) -> None:
    tracer = sdk.tracer_provider.get_tracer("app")
    async with Runtime(clock=VirtualClock(), telemetry=sdk.telemetry) as rt:
        q = rt.queue("emails")

        async def send(job: Job) -> str:
            return "ok"

        rt.worker(q, send)
        with tracer.start_as_current_span("POST /signup") as request:
            job = await q.add("welcome", {"to": "ada"})
        with anyio.fail_after(5):
            assert await job.wait_until_finished() == "ok"

    [add] = sdk.spans("add emails")
    [process] = sdk.spans("process emails")
    trace_id = request.get_span_context().trace_id
    assert add.context.trace_id == process.context.trace_id == trace_id
    assert add.parent is not None and add.parent.span_id == request.get_span_context().span_id
    assert process.parent is not None and process.parent.span_id == add.context.span_id
    assert add.kind is SpanKind.PRODUCER and process.kind is SpanKind.CONSUMER
    assert add.attributes is not None and process.attributes is not None
    assert add.attributes["messaging.system"] == "actorq"
    assert add.attributes["messaging.operation.type"] == "send"
    assert add.attributes["messaging.message.id"] == str(job.id)
    assert dict(process.attributes) == {
        "messaging.system": "actorq",
        "messaging.destination.name": "emails",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.message.id": str(job.id),
        "actorq.job.name": "welcome",
        "actorq.job.attempt": 1,
        "actorq.outcome": "completed",
    }
    assert process.status.status_code is StatusCode.UNSET


async def test_each_failed_attempt_is_an_error_span_of_the_same_trace(sdk: Sdk) -> None:
    async with Runtime(clock=VirtualClock(), telemetry=sdk.telemetry) as rt:
        q = rt.queue("q")

        async def flaky(job: Job) -> None:
            raise ValueError(f"attempt {job.attempts_started}")

        rt.worker(q, flaky)
        job = await q.add("f", attempts=2, backoff=1.0)
        with anyio.fail_after(5), pytest.raises(JobFailedError):
            await job.wait_until_finished()

    [add] = sdk.spans("add q")
    attempts = sdk.spans("process q")
    assert [s.attributes["actorq.job.attempt"] for s in attempts if s.attributes] == [1, 2]
    for span in attempts:
        assert span.parent is not None and span.parent.span_id == add.context.span_id
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes is not None and span.attributes["actorq.outcome"] == "failed"
        [event] = span.events
        assert event.name == "exception" and event.attributes is not None
        assert event.attributes["exception.type"] == "ValueError"


async def test_metrics_count_jobs_per_queue_and_time_attempts(sdk: Sdk) -> None:
    clock = VirtualClock()
    async with Runtime(clock=clock, telemetry=sdk.telemetry) as rt:
        a, b = rt.queue("a"), rt.queue("b")

        async def work(job: Job) -> None:
            await clock.sleep(2.0)
            if job.name == "bad":
                raise RuntimeError("no")

        await a.add_bulk([{"name": "ok"}, {"name": "ok"}, {"name": "bad"}])
        await b.add("ok", delay=5.0)
        await rt.queue("idle").add("later", delay=3600.0)
        rt.worker(a, work, concurrency=3)
        rt.worker(b, work)
        with anyio.fail_after(5):
            await rt.wait(await b.get_jobs())
            while (await a.counts())["active"] or (await a.counts())["waiting"]:
                await clock.sleep(1.0)
        metrics = sdk.metrics()

    def per_queue(name: str) -> dict[str, Any]:
        return {attrs["messaging.destination.name"]: v for attrs, v in metrics.get(name, [])}

    assert per_queue("actorq.jobs.added") == {"a": 3, "b": 1, "idle": 1}
    assert per_queue("actorq.jobs.completed") == {"a": 2, "b": 1}
    assert per_queue("actorq.jobs.failed") == {"a": 1}
    durations = {
        (attrs["messaging.destination.name"], attrs["actorq.outcome"]): v
        for attrs, v in metrics["messaging.process.duration"]
    }
    assert durations == {
        ("a", "completed"): (2, 4.0),
        ("a", "failed"): (1, 2.0),
        ("b", "completed"): (1, 2.0),
    }
    waits = per_queue("actorq.job.wait_time")
    assert waits["a"][0] == 3 and waits["b"] == (1, 0.0)  # b's delay is not waiting
    depth = {
        (attrs["messaging.destination.name"], attrs["actorq.job.state"]): v
        for attrs, v in metrics["actorq.queue.depth"]
    }
    assert depth[("idle", "delayed")] == 1 and depth[("a", "completed")] == 2
    assert depth[("a", "failed")] == 1 and depth[("a", "waiting")] == 0


async def test_a_flow_and_a_bulk_add_are_one_span_each(sdk: Sdk) -> None:
    async with Runtime(telemetry=sdk.telemetry) as rt:
        await FlowProducer(rt).add(FlowJob("parent", "f", children=[FlowJob("c", "f")] * 1))
        await rt.queue("f").add_bulk([{"name": "x"}, {"name": "y"}])
        jobs = await rt.queue("f").get_jobs()
    adds = sdk.spans("add f")
    assert len(adds) == 2
    assert [s.attributes["messaging.batch.message_count"] for s in adds if s.attributes] == [2, 2]
    contexts = {job._rec.trace_context for job in jobs}
    assert len(contexts) == 2 and None not in contexts  # each job carries its add's context


async def test_the_trace_context_is_journaled_and_survives_a_restart(
    sdk: Sdk, tmp_path: Path
) -> None:
    tracer = sdk.tracer_provider.get_tracer("app")
    async with Runtime(tmp_path, fsync="never", telemetry=sdk.telemetry) as rt:
        with tracer.start_as_current_span("request"):
            job = await rt.queue("q").add("later")
        await rt.queue("q").add("untraced")  # no span current: the add span is a root
    async with Runtime(tmp_path, fsync="never", telemetry=sdk.telemetry) as rt:
        q = rt.queue("q")

        async def run(job: Job) -> None:
            return None

        rt.worker(q, run)
        with anyio.fail_after(5):
            await rt.wait(await q.get_jobs())
    [traced_add, untraced_add] = sdk.spans("add q")
    processes = {
        s.attributes["messaging.message.id"]: s for s in sdk.spans("process q") if s.attributes
    }
    traced = processes[str(job.id)]
    assert traced.parent is not None and traced.parent.span_id == traced_add.context.span_id
    assert traced.context.trace_id == traced_add.context.trace_id
    assert untraced_add.parent is None


async def test_without_an_sdk_nothing_is_instrumented() -> None:
    # opentelemetry-api is installed here (the dev extra) but no SDK set a global provider
    async with Runtime() as rt:
        assert rt._telemetry is None
    async with Runtime(telemetry=False) as rt:
        assert rt._telemetry is None
    async with Runtime(telemetry=True) as rt:  # the global (proxy) providers: records nothing
        assert rt._telemetry is not None
        q = rt.queue("q")

        async def ok(job: Job) -> int:
            return 1

        rt.worker(q, ok)
        with anyio.fail_after(5):
            assert await (await q.add("x")).wait_until_finished() == 1


def test_bad_telemetry_options_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidOptionError, match="telemetry"):
        Runtime(telemetry="yes")  # type: ignore[arg-type]
    monkeypatch.setitem(sys.modules, "actorq.otel", None)  # as if the extra were absent
    monkeypatch.delattr(actorq, "otel", raising=False)

    async def start() -> None:
        async with Runtime(telemetry=True):
            pass

    with pytest.raises(InvalidOptionError, match=r"pip install 'actorq\[otel\]'"):
        anyio.run(start)


def test_a_program_that_never_imports_opentelemetry_does_not_load_it() -> None:
    code = """
import sys, anyio
from actorq import Runtime

async def main():
    async with Runtime() as rt:
        async def ok(job):
            return 1
        rt.worker("q", ok)
        assert await (await rt.queue("q").add("x")).wait_until_finished() == 1

anyio.run(main)
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
assert not loaded, loaded
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
