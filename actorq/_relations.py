"""Options that relate jobs to each other: `DependsOn`, `batch_ref`, flows' `FlowJob`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs


@attrs.frozen(slots=True)
class BatchRef:
    """The `index`-th job of the same `add_bulk` batch (see `batch_ref`)."""

    index: int


def batch_ref(index: int) -> BatchRef:
    """Refer to the `index`-th job of the same `add_bulk` call, earlier or later in it."""
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        from ._exceptions import InvalidOptionError  # noqa: PLC0415 - keep this module light

        raise InvalidOptionError("batch_ref", index, "must be an integer >= 0")
    return BatchRef(index)


@attrs.frozen(slots=True)
class DependsOn:
    """Prerequisites of a job (dataqueue's ``dependsOn``); both conditions must hold.

    ``job_ids``: every listed job must be completed (ids, or `batch_ref` in `add_bulk`).
    ``tags``: a tag-drain barrier: the job stays blocked while any other unfinished job's
    tags are a superset of these.
    """

    job_ids: Sequence[int | BatchRef] = ()
    tags: Sequence[str] = ()


@attrs.frozen(slots=True)
class FlowJob:
    """One node of a flow: a job, its options, and the children that run before it."""

    name: str
    queue: str
    data: Any = None
    opts: dict[str, Any] = attrs.field(factory=dict)
    children: Sequence[FlowJob] = ()


__all__ = ["BatchRef", "DependsOn", "FlowJob", "batch_ref"]
