"""The journal's records of job schedulers (schema version 3 of `actorq._journal_codec`).

``["scheduler", queue, id, {fields}]`` holds the whole state of one scheduler (its next run
time and pending job included, so replay never recomputes a schedule); its ``template`` is
a job spec with the fields at their default left out, ``data`` embedded as JSON, and a
`Backoff` / `Retention` as the small objects the codec writes for jobs.
``["scheduler-del", queue, id]`` removes one. A batch or snapshot chunk holding either is
written as version 3, so an actorq from before schedulers refuses it by name (a newer
version) instead of misreading it; one holding neither is written exactly as before.
"""

from __future__ import annotations

from typing import Any, Final

import attrs
import orjson

from ._core.records import JobSpec
from ._journal_values import _backoff, _retention

_SPEC_DEFAULTS: Final[dict[str, Any]] = {
    f.name: f.default for f in attrs.fields(JobSpec) if f.default is not attrs.NOTHING
}


def scheduler_out(fields: dict[str, Any]) -> dict[str, Any]:
    spec = fields["template"]
    template = {
        name: value
        for name, value in attrs.asdict(spec, recurse=False).items()
        if name not in _SPEC_DEFAULTS or value != _SPEC_DEFAULTS[name]
    }
    return {**fields, "template": template}


def scheduler_in(fields: dict[str, Any]) -> dict[str, Any]:
    raw = dict(fields["template"])
    known = {f.name for f in attrs.fields(JobSpec)}
    template: dict[str, Any] = {k: v for k, v in raw.items() if k in known}
    template["data"] = orjson.dumps(template["data"])
    if "backoff" in template:
        template["backoff"] = _backoff(template["backoff"])
    for name in ("remove_on_complete", "remove_on_fail"):
        if name in template:
            template[name] = _retention(template[name])
    for name in ("tags", "depends_on_job_ids", "depends_on_batch_refs", "depends_on_tags"):
        if name in template:
            template[name] = tuple(template[name])
    return {**fields, "template": JobSpec(**template)}


__all__ = ["scheduler_in", "scheduler_out"]
