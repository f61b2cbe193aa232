"""OpenTelemetry traces and metrics for actorq (the ``actorq[otel]`` extra: opentelemetry-api).

A runtime instruments itself when it starts if opentelemetry-api is installed and an SDK has
set a global tracer or meter provider; ``Runtime(telemetry=False)`` turns that off, and
``Runtime(telemetry=Telemetry(tracer_provider=..., meter_provider=...))`` uses the providers
given instead of the global ones. Without the extra, or with it but no SDK, nothing here is
imported and jobs run exactly as they would without it.

What it records follows the OpenTelemetry messaging conventions (``messaging.system`` is
``"actorq"``, the destination a queue, the message a job):

* a PRODUCER span ``add <queue>`` around each `Queue.add` / `add_bulk` / `Task.add` /
  `FlowProducer.add`, a child of whatever span is current (a web request's, say). Its W3C
  ``traceparent`` is stored with each job it adds (journaled), so
* each attempt's CONSUMER span ``process <queue>`` is a child of it, across restarts too:
  a request's trace continues into its job's attempts. Attributes: job id
  (``messaging.message.id``), name, attempt number, and the outcome; a failed attempt records
  its exception and an ERROR status.
* metrics, per queue (``messaging.destination.name``): counters ``actorq.jobs.added``,
  ``actorq.jobs.completed`` and ``actorq.jobs.failed`` (jobs that failed for good), the
  histograms ``messaging.process.duration`` (an attempt, seconds) and ``actorq.job.wait_time``
  (from due to started, seconds), and the gauge ``actorq.queue.depth`` (jobs per state).

Durations are on the runtime's clock: under a `VirtualClock` they are virtual seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import attrs
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from . import __version__
from ._core import JobState
from ._core import commands as c
from ._core.events import Event, JobAdded, JobCompleted, JobFailed
from ._exceptions import DelayedError, WaitingChildrenError

if TYPE_CHECKING:
    from ._core.records import JobRecord
    from ._job import Job
    from ._runtime import Runtime

SYSTEM = "actorq"
_PROPAGATOR = TraceContextTextMapPropagator()


@attrs.frozen
class Telemetry:
    """Where a runtime's spans and metrics go: ``Runtime(telemetry=Telemetry(...))``.

    A provider left None is the global one (``opentelemetry.trace.get_tracer_provider()``,
    ``opentelemetry.metrics.get_meter_provider()``).
    """

    tracer_provider: trace.TracerProvider | None = None
    meter_provider: metrics.MeterProvider | None = None


def sdk_configured() -> bool:
    """Whether an SDK has set a global tracer or meter provider (the API's defaults are
    proxies that record nothing until one is set)."""
    proxies = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
    if not isinstance(trace.get_tracer_provider(), proxies):
        return True
    meter_provider = type(metrics.get_meter_provider())
    return meter_provider.__name__ not in ("_ProxyMeterProvider", "NoOpMeterProvider")


class Instruments:
    """A running runtime's tracer, meters and hooks (made when it starts; see `enable`)."""

    def __init__(self, rt: Runtime, config: Telemetry) -> None:
        self._rt = rt
        self._now = rt.clock.now
        tracer_provider = config.tracer_provider or trace.get_tracer_provider()
        meter_provider = config.meter_provider or metrics.get_meter_provider()
        self.tracer = tracer_provider.get_tracer("actorq", __version__)
        meter = meter_provider.get_meter("actorq", __version__)
        self.added = meter.create_counter(
            "actorq.jobs.added", unit="{job}", description="Jobs added"
        )
        self.completed = meter.create_counter(
            "actorq.jobs.completed", unit="{job}", description="Jobs that completed"
        )
        self.failed = meter.create_counter(
            "actorq.jobs.failed", unit="{job}", description="Jobs that failed for good"
        )
        self.duration = meter.create_histogram(
            "messaging.process.duration", unit="s", description="Duration of an attempt"
        )
        self.wait_time = meter.create_histogram(
            "actorq.job.wait_time",
            unit="s",
            description="Time from when a job was due to when an attempt started",
        )
        meter.create_observable_gauge(
            "actorq.queue.depth",
            callbacks=[self._depth],
            unit="{job}",
            description="Jobs in each state, per queue",
        )
        self._attrs: dict[str, dict[str, str]] = {}
        self._outcomes: dict[tuple[str, str], dict[str, str]] = {}

    def queue_attrs(self, queue: str) -> dict[str, str]:
        found = self._attrs.get(queue)
        if found is None:
            found = self._attrs[queue] = {
                "messaging.system": SYSTEM,
                "messaging.destination.name": queue,
            }
        return found

    def outcome_attrs(self, queue: str, outcome: str) -> dict[str, str]:
        key = (queue, outcome)
        found = self._outcomes.get(key)
        if found is None:
            found = self._outcomes[key] = {**self.queue_attrs(queue), "actorq.outcome": outcome}
        return found

    # ------------------------------------------------------------------ producer side

    async def add(self, cmd: c.Add) -> list[JobRecord]:
        """Run the `Add` in an ``add <queue>`` span whose context each job carries."""
        rt = self._rt
        specs = cmd.specs
        queue = specs[0].queue if specs else ""
        count = len(specs) if cmd.names is None else len(cmd.names)
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.destination.name": queue,
            "messaging.operation.type": "send",
            "messaging.operation.name": "add",
        }
        if count != 1:
            attributes["messaging.batch.message_count"] = count
        with self.tracer.start_as_current_span(
            f"add {queue}", kind=SpanKind.PRODUCER, attributes=attributes
        ) as span:
            carrier: dict[str, str] = {}
            _PROPAGATOR.inject(carrier)
            traceparent = carrier.get("traceparent")
            if traceparent is not None:
                specs = [attrs.evolve(spec, trace_context=traceparent) for spec in specs]
                cmd = c.Add(specs, cmd.names, cmd.datas)
            added = await rt._send(cmd)
            if len(added) == 1:
                span.set_attribute("messaging.message.id", str(added[0][0].id))
        return [rec for rec, _created in added]

    # ------------------------------------------------------------------ consumer side

    def wrap(
        self, processor: Callable[[Any], Any], queue: str, run_in_thread: bool
    ) -> Callable[[Any], Any]:
        """The processor, each call of it an attempt span (in the thread, for a sync one)."""
        if run_in_thread:

            def traced_sync(job: Job[Any, Any]) -> Any:
                with self._attempt(job, queue) as span:
                    result = processor(job)
                    span.set_attribute("actorq.outcome", "completed")
                    return result

            return traced_sync

        async def traced(job: Job[Any, Any]) -> Any:
            with self._attempt(job, queue) as span:
                result = await processor(job)
                span.set_attribute("actorq.outcome", "completed")
                return result

        return traced

    def _attempt(self, job: Job[Any, Any], queue: str) -> _Attempt:
        return _Attempt(self, job, queue)

    # ------------------------------------------------------------------ events and gauge

    def publish(self, events: list[Event]) -> None:
        """Count the batch's jobs added, completed and failed (the engine's call, as for an
        event subscriber: never blocks)."""
        for event in events:
            if isinstance(event, JobAdded):
                self.added.add(1, self.queue_attrs(event.queue))
            elif isinstance(event, JobCompleted):
                self.completed.add(1, self.queue_attrs(event.queue))
            elif isinstance(event, JobFailed):
                self.failed.add(1, self.queue_attrs(event.queue))

    def end(self) -> None:
        return None

    def _depth(self, options: CallbackOptions) -> Iterable[Observation]:
        try:
            counts: dict[str, dict[JobState, int]] = self._rt._peek(c.GetCounts())
        except Exception:  # the runtime is not running: nothing to report
            return []
        return [
            Observation(n, {**self.queue_attrs(queue), "actorq.job.state": state.value})
            for queue, by_state in counts.items()
            for state, n in by_state.items()
        ]


class _Attempt:
    """One attempt's CONSUMER span, current while the processor runs; its outcome set from
    how the processor ended (a step or a wait for children is no error)."""

    __slots__ = ("_cm", "_inst", "_job", "_queue", "_span", "_start")

    def __init__(self, inst: Instruments, job: Job[Any, Any], queue: str) -> None:
        self._inst = inst
        self._job = job
        self._queue = queue

    def __enter__(self) -> trace.Span:
        inst, job, rec = self._inst, self._job, self._job._rec
        now = inst._now()
        due = rec.run_at if rec.run_at is not None else rec.created_at
        started = rec.processed_at if rec.processed_at is not None else now
        inst.wait_time.record(max(0.0, started - due), inst.queue_attrs(self._queue))
        parent = None
        if rec.trace_context is not None:
            parent = _PROPAGATOR.extract({"traceparent": rec.trace_context})
        self._cm = inst.tracer.start_as_current_span(
            f"process {self._queue}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.destination.name": self._queue,
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.message.id": str(job.id),
                "actorq.job.name": job.name,
                "actorq.job.attempt": rec.attempts_started,
            },
            record_exception=False,
            set_status_on_exception=False,
        )
        self._start = now
        self._span: trace.Span = self._cm.__enter__()
        return self._span

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        span, inst = self._span, self._inst
        outcome = "completed"
        if exc is not None:
            if isinstance(exc, DelayedError):
                outcome = "delayed"
            elif isinstance(exc, WaitingChildrenError):
                outcome = "waiting-children"
            elif isinstance(exc, Exception):
                outcome = "failed"
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            else:  # cancelled: the job's timeout, a cancel, or shutdown
                outcome = "cancelled"
                span.set_status(Status(StatusCode.ERROR, "cancelled"))
            span.set_attribute("actorq.outcome", outcome)
        inst.duration.record(
            max(0.0, inst._now() - self._start), inst.outcome_attrs(self._queue, outcome)
        )
        self._cm.__exit__(kind, exc, tb)


def enable(rt: Runtime, option: object) -> Instruments | None:
    """The instruments of `rt` for its ``telemetry`` option (None: none)."""
    if option is None and not sdk_configured():
        return None
    config = option if isinstance(option, Telemetry) else Telemetry()
    return Instruments(rt, config)


__all__ = ["Telemetry", "sdk_configured"]
