"""Runs the example of docs/testing.md exactly as written there."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parent.parent / "docs" / "testing.md"


def _example() -> Any:
    text = DOC.read_text()
    [code] = re.findall(r"```python\n(.*?)```", text, re.S)
    namespace: dict[str, Any] = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    return namespace["test_drip_campaign_survives_a_crash"]


async def test_docs_example_runs() -> None:
    await _example()()
