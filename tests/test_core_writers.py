"""`field_writer`: the stores a transition with a fixed field set makes (pure core)."""

from __future__ import annotations

import pytest

from actorq._core import CoreState
from actorq._core.records import JobSpec, field_writer
from actorq._core.states import JobState


def test_a_writer_stores_exactly_its_fields() -> None:
    core = CoreState()
    core.add([JobSpec(name="n", queue="q", data=b"null")], 0.0)
    rec = core.jobs[1]
    before = rec.fields()
    field_writer("progress", "logs")(rec, {"progress": b"50", "logs": ("a",)})
    after = rec.fields()
    assert (after["progress"], after["logs"]) == (b"50", ("a",))
    assert {k: v for k, v in after.items() if k not in ("progress", "logs")} == {
        k: v for k, v in before.items() if k not in ("progress", "logs")
    }


@pytest.mark.parametrize("names", [("progres",), ("state", "state")])
def test_a_writer_of_unknown_or_repeated_fields_is_refused(names: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="unknown or repeated fields"):
        field_writer(*names)


def test_take_and_complete_record_the_same_delta_as_their_fields() -> None:
    core = CoreState()
    core.record_changes(True)
    core.add([JobSpec(name="n", queue="q", data=b"null")], 0.0)
    core.take_effects()
    (rec,) = core.take("q", 1, 1.0, "tok", 31.0, 2)
    core.complete(rec.id, "tok", b"7", 2.0)
    changes, _events, _finished = core.take_effects()
    sets = [change[2] for change in changes if change[0] == "set"]
    assert sets[0] == {
        "state": JobState.ACTIVE,
        "attempts_started": 1,
        "processed_at": 1.0,
        "lock_token": "tok",
        "lock_expires_at": 31.0,
        "max_stalled_count": 2,
    }
    assert sets[1]["state"] is JobState.COMPLETED
    assert sets[1]["return_value"] == b"7"
    assert "order" in sets[1]
    for name, value in sets[1].items():
        assert getattr(rec, name) == value
