"""File names inside a journal folder.

Names carry sequence numbers zero-padded to 20 digits (enough for any u64), so a plain
lexical sort is seq order. The manifest (`persistence.manifest`) adds evidence no file name
can give: which segment was newest and which seq was durable.
"""

from __future__ import annotations

import re

__all__ = [
    "LOCK_NAME",
    "MANIFEST_NAME",
    "MANIFEST_TMP_NAME",
    "is_snapshot_tmp",
    "parse_segment_name",
    "parse_snapshot_name",
    "segment_name",
    "snapshot_name",
    "snapshot_tmp_name",
    "torn_name",
]

LOCK_NAME = "LOCK"
MANIFEST_NAME = "MANIFEST"
MANIFEST_TMP_NAME = "MANIFEST.tmp"
_SEGMENT = re.compile(r"journal-(\d{20})\.seg")
_SNAPSHOT = re.compile(r"snapshot-(\d{20})\.snap")
SNAPSHOT_TMP_SUFFIX = ".tmp"


def segment_name(first_seq: int) -> str:
    return f"journal-{first_seq:020d}.seg"


def snapshot_name(covers_seq: int) -> str:
    return f"snapshot-{covers_seq:020d}.snap"


def snapshot_tmp_name(covers_seq: int) -> str:
    return snapshot_name(covers_seq) + SNAPSHOT_TMP_SUFFIX


def torn_name(segment: str, offset: int) -> str:
    return f"{segment}.torn-{offset}"


def parse_segment_name(name: str) -> int | None:
    match = _SEGMENT.fullmatch(name)
    return None if match is None else int(match.group(1))


def parse_snapshot_name(name: str) -> int | None:
    match = _SNAPSHOT.fullmatch(name)
    return None if match is None else int(match.group(1))


def is_snapshot_tmp(name: str) -> bool:
    return name.endswith(SNAPSHOT_TMP_SUFFIX) and parse_snapshot_name(name[:-4]) is not None
