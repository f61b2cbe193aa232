"""A FastAPI service with an embedded actorq runtime (the lifespan recipe).

The runtime opens with the app and closes with it: ``async with Runtime(path=...)`` inside
the lifespan, so its task group lives exactly as long as the app. Request handlers only add
and read jobs; the workers run on the runtime's own tasks. On shutdown, leaving the block
stops dispatching and lets running jobs finish (``shutdown_timeout``); jobs still waiting stay
in the journal and run after the next start.

A crash inside the runtime (the journal's disk failing, say) is loud: the lifespan logs it
at ERROR, every later call raises `RuntimeClosedError` (answered here with 503), and
``GET /health`` reports 503 so a load balancer or orchestrator takes the instance out.
Note that uvicorn keeps serving after a lifespan's background work dies
(Kludex/uvicorn#2308): wire ``/health`` to your liveness probe.

Bad input is the client's error, never a 500: actorq refuses it with `InvalidOptionError`
(a negative delay, an empty name, a NaN in the data...) before changing anything, and the
handler below answers 422 in FastAPI's own error shape, naming the field. ``?wait=`` is
bounded (0 to 60 seconds) by the query's validation.

One process only: a journal folder is locked by the runtime that opened it, so this app
cannot run under several uvicorn or gunicorn workers on one folder (the second worker's
start fails with `JournalLockedError`). See docs/quickstart.md, "In a web service".

Run it (needs the ``service`` extra: fastapi, uvicorn)::

    uvicorn examples.fastapi_service:app --timeout-graceful-shutdown 10
    curl -X POST localhost:8000/jobs -H 'content-type: application/json' \\
         -d '{"name": "resize", "data": {"image": "cat.png", "width": 640}}'
    curl 'localhost:8000/jobs/1?wait=5'
"""

import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from actorq import ChangeLog, InvalidOptionError, Job, JobState, Runtime, RuntimeClosedError

log = logging.getLogger("actorq.service")
QUEUE = "images"
JOURNAL = os.environ.get("ACTORQ_JOURNAL", "actorq-service-data")


class NewJob(BaseModel):
    name: str
    data: Any = None
    delay: float | None = None
    idempotency_key: str | None = None


async def resize(job: Job) -> dict[str, Any]:
    """The processor: stands in for real work on an image."""
    await anyio.sleep(0.01)
    await job.update_progress(100)
    return {"image": job.data["image"], "width": job.data.get("width", 320)}


def describe(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "name": job.name,
        "state": job.state.value,
        "attempts_made": job.attempts_made,
        "progress": job.progress,
        "return_value": job.return_value if job.state is JobState.COMPLETED else None,
        "failed_reason": job.failed_reason,
    }


def _json_safe(value: Any) -> Any:
    """`value` if it can be sent back as JSON, else its repr (a NaN, an object)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)
    return value


def create_app(
    path: str | os.PathLike[str] | None = JOURNAL,
    *,
    journal: ChangeLog | None = None,
    concurrency: int = 4,
) -> FastAPI:
    """The app; `path` is the journal folder (None with `journal`: a change log, for tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        options: dict[str, Any] = {"journal": journal} if journal is not None else {"path": path}
        try:
            async with Runtime(**options, shutdown_timeout=10.0) as rt:
                rt.worker(QUEUE, resize, concurrency=concurrency)
                app.state.runtime = rt  # for tests and introspection
                log.info("actorq runtime started")
                yield {"runtime": rt}  # handlers read it as request.state.runtime
                log.info("draining the actorq runtime")
        except BaseException:
            log.exception("the actorq runtime crashed")
            raise

    app = FastAPI(title="actorq service", lifespan=lifespan)

    @app.exception_handler(RuntimeClosedError)
    async def runtime_down(request: Request, exc: RuntimeClosedError) -> JSONResponse:
        return JSONResponse({"detail": f"job runtime unavailable: {exc}"}, status_code=503)

    @app.exception_handler(InvalidOptionError)
    async def invalid_option(request: Request, exc: InvalidOptionError) -> JSONResponse:
        # FastAPI's validation error shape: the field actorq named, its reason, the input.
        error = {
            "type": "invalid_option",
            "loc": ["body", *exc.field.split(".")],
            "msg": exc.reason,
            "input": _json_safe(exc.value),
        }
        return JSONResponse({"detail": [error]}, status_code=422)

    @app.post("/jobs", status_code=202)
    async def add_job(new: NewJob, request: Request) -> dict[str, Any]:
        rt: Runtime = request.state.runtime
        options: dict[str, Any] = {}
        if new.delay is not None:
            options["delay"] = new.delay
        if new.idempotency_key is not None:
            options["idempotency_key"] = new.idempotency_key
        job = await rt.queue(QUEUE).add(new.name, new.data, attempts=3, backoff=1.0, **options)
        return describe(job)

    @app.get("/jobs/{job_id}")
    async def get_job(
        job_id: int,
        request: Request,
        wait: float = Query(0.0, ge=0.0, le=60.0, allow_inf_nan=False),
    ) -> dict[str, Any]:
        """A job; with ``?wait=S`` the call waits up to S seconds for it to finish."""
        rt: Runtime = request.state.runtime
        job = await rt.queue(QUEUE).get_job(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id}")
        if wait > 0:
            with anyio.move_on_after(wait):
                try:
                    await job.wait_until_finished()
                except Exception:  # failed or cancelled: the description says so
                    log.debug("job %d ended unsuccessfully", job_id)
        return describe(job)

    @app.get("/health")
    async def health(request: Request) -> JSONResponse:
        rt: Runtime = request.state.runtime
        try:
            with anyio.fail_after(2):
                counts = await rt.counts()
        except (RuntimeClosedError, TimeoutError) as exc:
            return JSONResponse({"status": "down", "error": str(exc)}, status_code=503)
        return JSONResponse({"status": "ok", "queues": counts})

    return app


app = create_app()
