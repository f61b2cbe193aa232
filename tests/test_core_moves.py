"""`moves`: each row of the lifecycle table written out as code (pure core)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from actorq._core import CoreState
from actorq._core.moves import MOVES, move
from actorq._core.records import JobSpec
from actorq._core.states import MOVES as TABLE
from actorq._core.states import JobState

W, A, C = JobState.WAITING, JobState.ACTIVE, JobState.COMPLETED


def test_every_row_of_the_table_has_its_move_and_no_other_row_does() -> None:
    written = {(cmd, old, new) for cmd, olds in MOVES.items() for old, news in olds.items()
               for new in news}  # fmt: skip
    assert written == {(cmd, old, new) for cmd, old, new in TABLE if old is not None}


def test_a_move_outside_the_table_cannot_be_written() -> None:
    with pytest.raises(KeyError):
        move("take", C, A, ("state",))


@pytest.mark.parametrize("fields", [("progres", "state"), ("state", "state"), ("attempts_made",)])
def test_a_field_set_that_is_unknown_repeated_or_without_state_is_refused(
    fields: tuple[str, ...],
) -> None:
    with pytest.raises(ValueError, match="move"):
        move("complete", A, C, fields)


def _active_core() -> CoreState:
    core = CoreState()
    core.record_changes(True)
    core.add([JobSpec(name="n", queue="q", data=b"null", tags=("t",))], 0.0)
    core.take("q", 1, 1.0, "tok", 31.0, 1)
    core.take_effects()
    return core


def _state(core: CoreState) -> Any:
    rec = core.jobs[1]
    qs = core.queues["q"]
    return rec.fields(), dict(qs.counts), list(qs.completed), core._next_fifo


def test_a_move_for_a_field_set_does_what_the_rows_general_move_does() -> None:
    changes = {"state": C, "attempts_made": 1, "finished_at": 2.0, "return_value": b"7",
               "lock_token": None, "lock_expires_at": None}  # fmt: skip
    general, written = _active_core(), _active_core()
    MOVES["complete"][A][C](general, general.jobs[1], copy.copy(changes))
    rec = written.jobs[1]
    move("complete", A, C, tuple(changes))(written, written.queues["q"], rec, *changes.values())
    assert _state(general) == _state(written)
    assert general.take_effects()[0] == written.take_effects()[0]


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
