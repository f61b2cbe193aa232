"""The pure core of actorq: records, states, indexes and transitions.

Nothing here performs I/O, reads a clock, draws from a global random source or awaits; the
scheduler actor passes `now` into every transition. A test checks these imports.
"""

from .events import Event
from .records import Backoff, JobRecord, JobSpec, Retention
from .state import CoreState
from .states import TERMINAL, TRANSITIONS, JobState

__all__ = [
    "TERMINAL",
    "TRANSITIONS",
    "Backoff",
    "CoreState",
    "Event",
    "JobRecord",
    "JobSpec",
    "JobState",
    "Retention",
]
