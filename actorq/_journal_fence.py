"""The rules of a journal kept in a database under a leader lease, as plain functions.

Both the journal in PostgreSQL (`actorq._journal_pg`) and the simulation's database
(`actorq._simulation_journals.SimDatabase`) follow them, so the swarm checks the rules the
real journal runs, not a copy of them:

* `accepts_write`, the fence: a leader's write (a batch, a snapshot, the id mark) is accepted
  only while the lease still holds the epoch it took, and a batch only at a ``seq`` no batch
  holds yet. PostgreSQL checks it inside the write's own statement (the ``WHERE epoch = %s``
  of `APPEND` under a row lock, and the log's primary key), the simulated database by
  calling it; a refused write is `FencedError`, and the runtime stops.
* `after_lost_commit`: a commit whose outcome was lost with its connection is looked up by
  its ``seq`` before it is retried: the same bytes there mean it landed (done, never written
  twice), other bytes mean another leader wrote that ``seq`` (fenced), none mean it never
  landed (write it again).
* `id_mark_to_raise`: a batch that hands out job ids at or past the lease row's high-water
  mark raises the mark a block ahead in the same transaction, so a new leader never hands
  out an id again.
"""

from __future__ import annotations

import enum

from ._journal import ID_BLOCK

__all__ = ["LostCommit", "accepts_write", "after_lost_commit", "id_mark_to_raise"]


def accepts_write(lease_epoch: int, epoch: int, *, seq_taken: bool = False) -> bool:
    """Whether a write by the leader of `epoch` is accepted while the lease row holds
    `lease_epoch` (and, for a batch, whether its ``seq`` is already taken)."""
    return lease_epoch == epoch and not seq_taken


class LostCommit(enum.Enum):
    """What the row at a lost commit's ``seq`` says about it (`after_lost_commit`)."""

    LANDED = "landed"
    FENCED = "fenced"
    ABSENT = "absent"


def after_lost_commit(stored: bytes | None, payload: bytes) -> LostCommit:
    """The outcome of a commit of `payload` whose connection was lost, from the bytes the
    log holds at its ``seq`` (None: no row)."""
    if stored is None:
        return LostCommit.ABSENT
    return LostCommit.LANDED if stored == payload else LostCommit.FENCED


def id_mark_to_raise(next_id: int | None, mark: int) -> int | None:
    """The new high-water mark a commit writes when the core's next id (None: not guarded
    yet) has reached `mark`, else None."""
    if next_id is None or next_id <= mark:
        return None
    return next_id + ID_BLOCK
