"""Deterministic simulation for actorq workflows: virtual time, a simulated disk, injected
faults, crashes and restarts, and invariants checked after every step.

See docs/testing.md ("Testing your workflows"). The pytest plugin is `actorq.pytest_plugin`.
"""

from ._invariants import INVARIANTS, InvariantViolation, Observation, check_core, check_invariants
from ._simulation import Simulation
from ._simulation_history import Faults, HistoryEntry, InjectedFault
from .clock import VirtualClock

__all__ = [
    "INVARIANTS",
    "Faults",
    "HistoryEntry",
    "InjectedFault",
    "InvariantViolation",
    "Observation",
    "Simulation",
    "VirtualClock",
    "check_core",
    "check_invariants",
]
