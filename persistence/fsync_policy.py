"""When `Journal.sync` really reaches the disk."""

from __future__ import annotations

import enum

__all__ = ["FsyncPolicy", "parse_policy"]


class FsyncPolicy(enum.StrEnum):
    """How durable a synced record is; the runtime decides *when* to call `sync`.

    ``ALWAYS`` and ``INTERVAL`` both fsync on `Journal.sync` (they differ only in how often the
    runtime calls it); ``NEVER`` leaves write-back to the OS, so `sync` only flushes.
    """

    ALWAYS = "always"
    INTERVAL = "interval"
    NEVER = "never"


def parse_policy(value: FsyncPolicy | str) -> FsyncPolicy:
    try:
        return FsyncPolicy(value)
    except ValueError:
        allowed = ", ".join(repr(p.value) for p in FsyncPolicy)
        raise ValueError(f"fsync={value!r} is not a valid policy; use one of {allowed}") from None
