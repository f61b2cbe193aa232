"""`FlowProducer`: add a tree of jobs across queues atomically; read a tree back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from ._core import commands as c
from ._core.records import JobSpec
from ._exceptions import InvalidOptionError
from ._job import Job
from ._options import check_queue_name, job_spec
from ._relations import FlowJob

if TYPE_CHECKING:
    from ._api import RuntimeAPI

#: Options a flow's inner nodes cannot take: the tree itself says who is whose parent. The
#: root may name one (a job outside the flow, e.g. the running job that adds it: BullMQ's
#: "chaining flows").
_TREE_OWNED = frozenset({"parent"})


@attrs.frozen(slots=True)
class JobNode:
    """A job of a flow and its children, as `FlowProducer.add` and `get_flow` return them."""

    job: Job
    children: list[JobNode]


class FlowProducer:
    """Adds flows: ``await FlowProducer(rt).add(FlowJob(..., children=[...]))``.

    The whole tree is one batch: all of it is added, or (on any bad node) none of it. A
    parent starts in `waiting-children` and runs once its children have finished.
    """

    def __init__(self, rt: RuntimeAPI) -> None:
        self._rt = rt

    async def add(self, tree: FlowJob) -> JobNode:
        specs: list[JobSpec] = []
        shape: list[list[int]] = []  # child indexes per node
        seen: set[int] = set()

        def visit(node: object, path: str, parent_ref: int | None) -> int:
            if not isinstance(node, FlowJob):
                raise InvalidOptionError(path or "tree", node, "a flow node must be a FlowJob")
            if id(node) in seen:
                raise InvalidOptionError(
                    path or "tree", node.name, "the same FlowJob appears twice: a flow is a tree"
                )
            seen.add(id(node))
            where = f"{path}." if path else ""
            if not isinstance(node.opts, dict):
                raise InvalidOptionError(f"{where}opts", node.opts, "must be a dict of options")
            owned = _TREE_OWNED & node.opts.keys()
            if owned and parent_ref is not None:
                key = sorted(owned)[0]
                raise InvalidOptionError(
                    f"{where}opts.{key}", node.opts[key], "set by the tree's shape in a flow"
                )
            queue = check_queue_name(node.queue)
            spec = job_spec(queue, node.name, node.data, node.opts, f"{where}opts.")
            index = len(specs)
            specs.append(
                attrs.evolve(spec, parent_ref=parent_ref, wait_children=bool(node.children))
            )
            shape.append([])
            for i, child in enumerate(node.children):
                shape[index].append(visit(child, f"{where}children[{i}]", index))
            return index

        visit(tree, "", None)
        rt = self._rt
        cmd = c.Add(specs)
        if rt._telemetry is not None:
            jobs = [Job(rt, rec) for rec in await rt._telemetry.add(cmd)]
        else:
            jobs = [Job(rt, rec) for rec, _created in await rt._send(cmd)]

        def build(index: int) -> JobNode:
            return JobNode(jobs[index], [build(child) for child in shape[index]])

        return build(0)

    async def get_flow(self, job_id: int) -> JobNode | None:
        """The tree under `job_id` as it stands (removed children left out), or None."""
        rt = self._rt
        tree = await rt._send(c.GetFlow(job_id))

        def build(node: Any) -> JobNode:
            rec, kids = node
            return JobNode(Job(rt, rec), [build(kid) for kid in kids])

        return None if tree is None else build(tree)


__all__ = ["FlowProducer", "JobNode"]
