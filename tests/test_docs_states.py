"""docs/states.md draws the lifecycle from the transition table: it cannot go stale."""

from __future__ import annotations

import re
from pathlib import Path

from actorq import JobState
from actorq._core.states import mermaid

DOC = Path(__file__).resolve().parent.parent / "docs" / "states.md"


def test_the_diagram_is_the_transition_table() -> None:
    blocks = re.findall(r"```mermaid\n(.*?)\n```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert len(blocks) == 1, "docs/states.md must hold exactly one mermaid block"
    assert blocks[0] == mermaid(), (
        "docs/states.md is stale: regenerate its mermaid block from actorq._core.states.mermaid()"
    )


def test_every_state_is_described() -> None:
    text = DOC.read_text(encoding="utf-8")
    for state in JobState:
        assert f"| `{state.value}` |" in text
