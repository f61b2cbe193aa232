"""A queue's groups and rate limit as a reader sees them (`Queue.get_groups`,
`Queue.get_rate_limit`, the dashboard's queue page).

Reads only. The groups' view costs O(groups) and no job: the per-group counts are what
`Groups` keeps up to date, and a bounded view picks its first groups by name with a heap
(O(groups · log limit)) rather than sorting them all.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .state import QueueState


def groups_view(qs: QueueState | None, limit: int | None = None) -> dict[str, Any]:
    """The queue's groups with a job waiting or active, by name (the first `limit` of
    them; None: all), how many there are in all, and the queue's group settings::

        {"groups": [{"name": "acme", "waiting": 3, "active": 1}, ...],
         "total": 1,
         "group_concurrency": 2,                          # or None
         "group_limiter": {"max": 3, "duration": 60.0}}   # or None
    """
    groups = None if qs is None else qs.groups
    if groups is None:
        return {"groups": [], "total": 0, "group_concurrency": None, "group_limiter": None}
    waiting, active = groups.waiting, groups.active
    names = {g for g, n in waiting.items() if n} | {g for g, n in active.items() if n}
    chosen = sorted(names) if limit is None else heapq.nsmallest(limit, names)
    per_group = groups.limit
    return {
        "groups": [
            {"name": g, "waiting": waiting.get(g, 0), "active": active.get(g, 0)} for g in chosen
        ],
        "total": len(names),
        "group_concurrency": groups.concurrency,
        "group_limiter": (
            None if per_group is None else {"max": per_group[0], "duration": per_group[1]}
        ),
    }


def rate_limit_view(qs: QueueState | None) -> dict[str, Any] | None:
    """The queue's rate limit as a worker's ``limiter`` set it (``{"max", "duration"}``),
    or None: none set (a manual `rate_limit` alone sets no max)."""
    limiter = None if qs is None else qs.limiter
    if limiter is None or limiter.max_jobs is None:
        return None
    return {"max": limiter.max_jobs, "duration": limiter.duration}


__all__ = ["groups_view", "rate_limit_view"]
