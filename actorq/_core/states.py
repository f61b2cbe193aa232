"""Job states and the table of legal transitions: the lifecycle as data.

Every state change in the core goes through `check_transition`, so this table is the whole
truth about what can follow what; the docs draw their diagram from it and the tests check
that no transition outside it ever happens.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class JobState(enum.StrEnum):
    WAITING = "waiting"
    DELAYED = "delayed"
    ACTIVE = "active"
    WAITING_CHILDREN = "waiting-children"
    BLOCKED = "blocked"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


W, D, A, WC, B = (
    JobState.WAITING,
    JobState.DELAYED,
    JobState.ACTIVE,
    JobState.WAITING_CHILDREN,
    JobState.BLOCKED,
)
C, F, X = JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED

TERMINAL: frozenset[JobState] = frozenset({C, F, X})
NON_TERMINAL: frozenset[JobState] = frozenset(JobState) - TERMINAL
#: States a job can be cancelled or removed from without a worker's say.
IDLE: frozenset[JobState] = frozenset({W, D, WC, B})
ACTIVE_OR_IDLE: frozenset[JobState] = IDLE | {A}

#: command -> {from state -> states it may lead to}. ``None`` as a source means "no job yet".
TRANSITIONS: Mapping[str, Mapping[JobState | None, frozenset[JobState]]] = {
    "add": {None: frozenset({W, D, B, WC})},
    "take": {W: frozenset({A})},
    "promote": {D: frozenset({W})},
    "complete": {A: frozenset({C, F})},
    "fail": {A: frozenset({F, W, D})},
    "move_to_delayed": {A: frozenset({D, W})},
    "move_to_waiting_children": {A: frozenset({WC, F})},
    "children_done": {WC: frozenset({W, D})},
    "child_failed": {
        WC: frozenset({F, W}),
        W: frozenset({F}),
        D: frozenset({F}),
        B: frozenset({F}),
    },
    "dependencies_met": {B: frozenset({W, D})},
    "stall": {A: frozenset({W, F})},
    "release": {A: frozenset({W})},
    "cancel": {
        W: frozenset({X}),
        D: frozenset({X}),
        WC: frozenset({X}),
        B: frozenset({X}),
        A: frozenset({X}),
    },
    "retry": {C: frozenset({W}), F: frozenset({W}), X: frozenset({W})},
    "exceed_started_attempts": {W: frozenset({F})},
}

LEGAL: frozenset[tuple[JobState | None, JobState]] = frozenset(
    (src, dst) for table in TRANSITIONS.values() for src, dsts in table.items() for dst in dsts
)


#: Every legal (command, from, to) triple: what `CoreState._change` checks each move against.
MOVES: frozenset[tuple[str, JobState | None, JobState]] = frozenset(
    (command, src, dst)
    for command, table in TRANSITIONS.items()
    for src, dsts in table.items()
    for dst in dsts
)


def sources(command: str) -> frozenset[JobState | None]:
    """States from which `command` may start."""
    return frozenset(TRANSITIONS[command])


def mermaid() -> str:
    """The lifecycle as a Mermaid state diagram, generated from `TRANSITIONS`."""
    lines = ["stateDiagram-v2"]
    for command, table in TRANSITIONS.items():
        for src, dsts in table.items():
            for dst in sorted(dsts):
                left = "[*]" if src is None else src.value.replace("-", "_")
                lines.append(f"    {left} --> {dst.value.replace('-', '_')}: {command}")
    return "\n".join(lines)
