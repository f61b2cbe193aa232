"""How an exception becomes a failed attempt's reason and stack trace: text that can always
be stored, whatever the exception does."""

from __future__ import annotations

import re
import traceback

_ADDRESS = re.compile(r"\b(?:0x)?[0-9a-f]{9,16}\b")


def storable(text: str) -> str:
    """`text` with lone surrogates escaped (``\\udce9``): an exception's message may hold
    them (`os.fsdecode` of undecodable bytes), and the journal stores only valid Unicode."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def reason(exc: BaseException) -> str:
    """``"TypeName: message"``, or the type's name alone; never raises (a `__str__` that
    does gives the type's name and says so)."""
    name = type(exc).__name__
    try:
        text = str(exc)
    except Exception as broken:
        return f"{name} (its message could not be read: {type(broken).__name__})"
    return storable(f"{name}: {text}" if text else name)


def trace(exc: BaseException) -> str:
    """The formatted traceback, or a note that formatting it failed."""
    try:
        text = "".join(traceback.format_exception(exc))
    except Exception as broken:
        return f"(the traceback could not be formatted: {type(broken).__name__})"
    # Memory addresses (a cancel scope's repr in a chained cancellation) would make the
    # journal differ between two runs of the same simulation seed.
    return storable(_ADDRESS.sub("0x…", text))
