"""Each row of the lifecycle table as a function written out from its `Plan`.

`CoreState._change` carries out a move of state by following the row's `Plan` (`upkeep`):
leave the old state, store the fields, take an order, enter the new state, tell whoever must
hear. Read at run time, a plan costs a lookup of its row and a test of each of its parts for
every move, though the parts of a row never change. So each row is also written out once, at
import, as code (as attrs writes `__init__`, and `field_writer` a change's stores): only the
parts its plan has, the states as constants, and, when the caller names the change's keys,
one attribute store per field. ``MOVES[command][old][new]`` is the row's function for any
change dict; `move(command, old, new, fields)` writes one for a change of exactly those
fields, given as arguments (the dict, which only the change record needs, is then built only
when the core records changes), which the hottest transitions (`take`, `complete`) fetch
once at import and call directly.
A function exists only for a row of the table: there is no way to write a move it lacks.

A row's function moves `rec` (whose state is `old`), keeps the queue's counts and indexes,
and records ``("set", id, changes)`` when the core records changes: the new state, every
field the move set, and the order it gave the job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from .records import FIELD_NAMES
from .states import JobState
from .upkeep import GUARDS, PLANS, Plan

if TYPE_CHECKING:
    from .records import JobRecord
    from .state import CoreState

Move = Callable[["CoreState", "JobRecord", dict[str, Any]], None]

A: Final = JobState.ACTIVE


def _source(old: JobState, new: JobState, plan: Plan, fields: tuple[str, ...] | None) -> str:
    """The row's function: ``move(core, rec, changes)`` for any change dict, or, for the
    field set `fields`, ``move(core, qs, rec, *values)`` with the values in that order (the
    dict is built only when the core records changes: nothing else reads it)."""
    if fields is None:
        lines = ["def move(core, rec, changes):", "    qs = core.queues[rec.queue]"]
    else:
        lines = [f"def move(core, qs, rec, {', '.join(fields)}):"]
    lines += ["    counts = qs.counts", "    counts[OLD] -= 1"]
    if plan.leave is not None:
        lines += _upkeep(plan.leave, "LEAVE(core, qs, rec)")
    if fields is None:
        lines += ["    for name, value in changes.items():", "        setattr(rec, name, value)"]
    else:
        lines += [f"    rec.{name} = {name}" for name in fields]
    ordered = plan.order is not None and (fields is None or "order" not in fields)
    if ordered:
        if plan.order == "line":
            take = ["order = core._next_order(rec.lifo)"]
        else:
            take = ["order = core._next_fifo", "core._next_fifo = order + 1"]
        if fields is None:  # a change may name the order itself (a replayed move, say)
            lines.append("    if 'order' not in changes:")
            take.append("rec.order = changes['order'] = order")
            lines += [f"        {line}" for line in take]
        else:
            take.append("rec.order = order")
            lines += [f"    {line}" for line in take]
    lines.append("    counts[NEW] += 1")
    if plan.enter is not None:
        lines += _upkeep(plan.enter, "ENTER(core, qs, rec)")
    if plan.moved is not None:
        lines += _upkeep(plan.moved, "MOVED(core, rec, OLD)")
    lines += [
        "    if (rec.parent_id is not None or rec.children) and core._live:",
        f"        core._moved_in_tree(rec, OLD, {plan.was_alive}, {plan.alive})",
    ]
    if plan.was_alive and not plan.alive:
        lines += [
            "    if rec.deduplication_id is not None:",
            "        core._dedup_released(rec)",
        ]
    if fields is None:
        record = "changes"
    else:
        named = [*fields, "order"] if ordered else list(fields)
        record = "{" + ", ".join(f"{name!r}: {name}" for name in named) + "}"
    lines += [
        "    if core.changes is not None:",
        f"        core.changes.append(('set', rec.id, {record}))",
    ]
    return "\n".join(lines)


def _upkeep(upkeep: Callable[..., None], call: str) -> list[str]:
    """The lines that call `upkeep`: behind its guard, when it has one (`GUARDS`)."""
    guard = GUARDS.get(upkeep)
    if guard is None:
        return [f"    {call}"]
    return [f"    if {guard}:", f"        {call}"]


def _write(
    command: str, old: JobState, new: JobState, fields: tuple[str, ...] | None
) -> Callable[..., None]:
    plan = PLANS[command][old][new]
    namespace: dict[str, Any] = {
        "OLD": old,
        "NEW": new,
        "LEAVE": plan.leave,
        "ENTER": plan.enter,
        "MOVED": plan.moved,
    }
    exec(_source(old, new, plan, fields), namespace)  # our own code, from the table
    written: Callable[..., None] = namespace["move"]
    written.__qualname__ = written.__name__ = f"move_{command}_{old}_{new}"
    return written


def _all() -> dict[str, dict[JobState, dict[JobState, Move]]]:
    return {
        command: {
            old: {new: _write(command, old, new, None) for new in news}
            for old, news in olds.items()
        }
        for command, olds in PLANS.items()
    }


#: ``MOVES[command][old][new]``: the row's function for any change dict.
MOVES: Final = _all()


def move(
    command: str, old: JobState, new: JobState, fields: tuple[str, ...]
) -> Callable[..., None]:
    """The function of row ``(command, old, new)`` for a change of exactly the fields
    `fields` (the new state among them), called ``move(core, qs, rec, *values)`` with the
    job's queue state and the values in `fields` order. A row the table lacks is a
    `KeyError`."""
    if "state" not in fields or len(set(fields)) != len(fields):
        raise ValueError(f"move: a change of state names 'state' once: {fields!r}")
    unknown = [name for name in fields if name not in FIELD_NAMES]
    if unknown:
        raise ValueError(f"move: unknown fields {unknown!r}")
    PLANS[command][old][new]
    return _write(command, old, new, fields)
