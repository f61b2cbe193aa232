"""The lifecycle table as data: every legal transition done once, every illegal one refused.

Each row of `CASES` is one (command, from-state, to-state) triple of `TRANSITIONS`, driven by
a direct call on a fresh `CoreState`; a test checks that the rows cover the table exactly, so
a transition added to the table without a test here fails the suite. Rows whose command or
source state the core cannot reach yet (flows, dependencies, stalls) skip with the reason.
"""

from __future__ import annotations

import ast
import pathlib
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from actorq._core import events as ev
from actorq._core import states
from actorq._core.records import Backoff, JobSpec
from actorq._core.state import CoreState
from actorq._core.states import LEGAL, TERMINAL, TRANSITIONS, JobState
from actorq._exceptions import (
    ActorqError,
    IllegalTransitionError,
    JobNotFoundError,
    LockError,
)

W, D, A = JobState.WAITING, JobState.DELAYED, JobState.ACTIVE
WC, B = JobState.WAITING_CHILDREN, JobState.BLOCKED
C, F, X = JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED

TOKEN = "tok"
NOW = 1.0


def spec(**kw: Any) -> JobSpec:
    base: dict[str, Any] = {"name": "j", "queue": "q", "data": b"{}"}
    base.update(kw)
    return JobSpec(**base)


def fresh() -> CoreState:
    core = CoreState(seed=3)
    core.record_changes(True)
    core.publish_events(True)
    return core


def make(state: JobState, core: CoreState | None = None, **kw: Any) -> tuple[CoreState, int]:
    """A core holding a job in `state` (an active one held by `TOKEN`), and the job's id."""
    core = core if core is not None else fresh()
    if state is D:
        kw.setdefault("delay", 5.0)
    if state is B:
        other = core.add([spec(queue="deps")], NOW)[0][0].id
        kw.setdefault("depends_on_job_ids", (other,))
    if state is WC:
        kw["wait_children"] = True
        rec = core.add([spec(**kw), spec(queue="kids", parent_ref=0)], NOW)[0][0]
    else:
        rec = core.add([spec(**kw)], NOW)[0][0]
    if state in (A, C, F):
        # Take only this job: earlier helpers may have put others in the line.
        taken = core.take(rec.queue, len(core.jobs), NOW, TOKEN)
        assert rec in taken
        for held in taken:
            if held is not rec:
                core.cancel(held.id, NOW)
    if state is C:
        core.complete(rec.id, TOKEN, b"1", NOW)
    elif state is F:
        core.fail(rec.id, TOKEN, "boom", None, NOW, unrecoverable=True)
    elif state is X:
        core.cancel(rec.id, NOW, "stop")
    assert core.get(rec.id).state is state
    core.take_effects()
    return core, rec.id


def frozen(core: CoreState) -> tuple[dict[str, Any], dict[str, Any]]:
    return core.snapshot(), core.index_view()


# ---------------------------------------------------------------------- legal transitions

Runner = Callable[[], JobState]


def add_plain() -> JobState:
    return fresh().add([spec()], NOW)[0][0].state


def add_delayed() -> JobState:
    return fresh().add([spec(delay=2.0)], NOW)[0][0].state


def add_blocked() -> JobState:
    core = fresh()
    dep = core.add([spec()], NOW)[0][0].id
    return core.add([spec(depends_on_job_ids=(dep,))], NOW)[0][0].state


def add_waiting_children() -> JobState:
    core = fresh()
    out = core.add([spec(wait_children=True), spec(queue="kids", parent_ref=0)], NOW)
    assert out[1][0].parent_id == out[0][0].id
    return out[0][0].state


def take() -> JobState:
    core, jid = make(W)
    assert [r.id for r in core.take("q", 1, NOW, TOKEN)] == [jid]
    rec = core.get(jid)
    assert rec.lock_token == TOKEN
    assert rec.attempts_started == 1
    return rec.state


def promote() -> JobState:
    core, jid = make(D)
    assert core.promote_due(NOW + 4.0) == 0
    assert core.promote_due(NOW + 5.0) == 1
    assert [r.id for r in core.select("q", [W])] == [jid]
    return core.get(jid).state


def complete() -> JobState:
    core, jid = make(A)
    rec = core.complete(jid, TOKEN, b'"ok"', NOW + 1)
    assert (rec.return_value, rec.finished_at, rec.attempts_made) == (b'"ok"', NOW + 1, 1)
    assert rec.lock_token is None
    return rec.state


def complete_with_open_children() -> JobState:
    core, jid = make(A)
    core.add([spec(queue="kids", parent_id=jid)], NOW)
    rec = core.complete(jid, TOKEN, None, NOW)
    assert rec.failed_reason is not None
    assert "children" in rec.failed_reason
    return rec.state


def fail_final() -> JobState:
    core, jid = make(A, attempts=1)
    rec = core.fail(jid, TOKEN, "boom", "trace", NOW + 1)
    assert (rec.failed_reason, rec.finished_at, rec.stacktrace) == ("boom", NOW + 1, ("trace",))
    return rec.state


def fail_retry_now() -> JobState:
    core, jid = make(A, attempts=2)
    rec = core.fail(jid, TOKEN, "boom", None, NOW + 1)
    assert rec.finished_at is None
    assert rec.attempts_made == 1
    return rec.state


def fail_retry_later() -> JobState:
    core, jid = make(A, attempts=2, backoff=Backoff.fixed(10.0))
    rec = core.fail(jid, TOKEN, "boom", None, NOW + 1)
    assert rec.run_at == NOW + 11
    return rec.state


def move_to_delayed_later() -> JobState:
    core, jid = make(A)
    rec = core.move_to_delayed(jid, TOKEN, NOW + 30, b"2", NOW)
    assert (rec.run_at, rec.data, rec.attempts_made) == (NOW + 30, b"2", 0)
    return rec.state


def move_to_delayed_back() -> JobState:
    core, jid = make(A)
    return core.move_to_delayed(jid, TOKEN, None, None, NOW).state


def move_to_waiting_children() -> JobState:
    core, jid = make(A)
    core.add([spec(queue="kids", parent_id=jid)], NOW)
    assert core.move_to_waiting_children(jid, TOKEN, NOW) == "waiting"
    return core.get(jid).state


def move_to_waiting_children_doomed() -> JobState:
    core, jid = make(A)
    kid = core.add([spec(queue="kids", parent_id=jid)], NOW)[0][0].id
    core.take("kids", 1, NOW, "kid-token")
    core.fail(kid, "kid-token", "boom", None, NOW)
    if core.get(jid).state is F:
        pytest.skip("the child's failure already failed the active parent")
    assert core.move_to_waiting_children(jid, TOKEN, NOW) == "failed"
    return core.get(jid).state


def child_ends(parent_state: JobState, outcome: str, policy: str = "fail", **kw: Any) -> Runner:
    """A parent in `parent_state` with one child in queue "kids"; the child ends."""

    def run() -> JobState:
        kid_spec = spec(queue="kids", on_child_failure=policy)
        if parent_state is WC:
            core = fresh()
            parent = spec(wait_children=True, **kw)
            jid = core.add([parent, attrs.evolve(kid_spec, parent_ref=0)], NOW)[0][0].id
            assert core.get(jid).state is WC
        else:
            core, jid = make(parent_state, **kw)
            core.add([attrs.evolve(kid_spec, parent_id=jid)], NOW)
        (kid,) = core.take("kids", 1, NOW, "kid-token")
        if outcome == "complete":
            core.complete(kid.id, "kid-token", None, NOW)
        else:
            core.fail(kid.id, "kid-token", "boom", None, NOW)
        return core.get(jid).state

    return run


def dependency_met(**kw: Any) -> Runner:
    def run() -> JobState:
        core, jid = make(B, **kw)
        (dep,) = core.take("deps", 1, NOW, "dep-token")
        core.complete(dep.id, "dep-token", None, NOW)
        return core.get(jid).state

    return run


def stall(times: int) -> Runner:
    def run() -> JobState:
        core = fresh()
        jid = core.add([spec()], NOW)[0][0].id
        for i in range(times):
            assert [r.id for r in core.take("q", 1, NOW + 10 * i, TOKEN, NOW + 10 * i + 1)] == [jid]
            assert core.expire_locks(NOW + 10 * i + 1) == 1
        return core.get(jid).state

    return run


def release() -> JobState:
    core, jid = make(A)
    rec = core.release(jid, TOKEN, NOW)
    assert (rec.lock_token, rec.stalled_counter) == (None, 0)
    return rec.state


def cancel_from(state: JobState) -> Runner:
    def run() -> JobState:
        core, jid = make(state)
        rec = core.cancel(jid, NOW + 2, "no")
        assert (rec.finished_at, rec.failed_reason, rec.lock_token) == (NOW + 2, "no", None)
        return rec.state

    return run


def retry_from(state: JobState) -> Runner:
    def run() -> JobState:
        core, jid = make(state)
        rec = core.retry(jid, NOW + 2)
        events = core.take_effects()[1]
        assert ev.JobWaiting(jid, "q", "j", state) in events  # `previous`: the state it left
        assert (rec.finished_at, rec.failed_reason, rec.return_value) == (None, None, None)
        assert [r.id for r in core.select("q", [W])] == [jid]
        return rec.state

    return run


def exceed_started_attempts() -> JobState:
    core, jid = make(A, max_started_attempts=1)
    core.move_to_delayed(jid, TOKEN, None, None, NOW)
    assert core.take("q", 1, NOW, TOKEN) == []
    rec = core.get(jid)
    assert rec.failed_reason is not None
    assert "max_started_attempts" in rec.failed_reason
    assert (rec.attempts_started, rec.attempts_made) == (2, 1)  # the start over counts
    return rec.state


CASES: list[tuple[str, JobState | None, JobState, Runner]] = [
    ("add", None, W, add_plain),
    ("add", None, D, add_delayed),
    ("add", None, B, add_blocked),
    ("add", None, WC, add_waiting_children),
    ("take", W, A, take),
    ("promote", D, W, promote),
    ("complete", A, C, complete),
    ("complete", A, F, complete_with_open_children),
    ("fail", A, F, fail_final),
    ("fail", A, W, fail_retry_now),
    ("fail", A, D, fail_retry_later),
    ("move_to_delayed", A, D, move_to_delayed_later),
    ("move_to_delayed", A, W, move_to_delayed_back),
    ("move_to_waiting_children", A, WC, move_to_waiting_children),
    ("move_to_waiting_children", A, F, move_to_waiting_children_doomed),
    ("children_done", WC, W, child_ends(WC, "complete")),
    ("children_done", WC, D, child_ends(WC, "complete", delay=50.0)),
    ("child_failed", WC, F, child_ends(WC, "fail")),
    ("child_failed", WC, W, child_ends(WC, "fail", "ignore")),
    ("child_failed", W, F, child_ends(W, "fail")),
    ("child_failed", D, F, child_ends(D, "fail")),
    ("child_failed", B, F, child_ends(B, "fail")),
    ("dependencies_met", B, W, dependency_met()),
    ("dependencies_met", B, D, dependency_met(delay=50.0)),
    ("stall", A, W, stall(1)),
    ("stall", A, F, stall(2)),
    ("release", A, W, release),
    *[("cancel", s, X, cancel_from(s)) for s in (W, D, WC, B, A)],
    *[("retry", s, W, retry_from(s)) for s in (C, F, X)],
    ("exceed_started_attempts", W, F, exceed_started_attempts),
]


def test_cases_cover_the_table_exactly() -> None:
    table = {
        (command, src, dst)
        for command, rows in TRANSITIONS.items()
        for src, dsts in rows.items()
        for dst in dsts
    }
    rows = [(command, src, dst) for command, src, dst, _ in CASES]
    assert len(rows) == len(set(rows))
    assert set(rows) == table


@pytest.mark.parametrize(
    ("command", "src", "dst", "run"),
    CASES,
    ids=[f"{c}:{s.value if s else 'new'}->{d.value}" for c, s, d, _ in CASES],
)
def test_legal_transition(command: str, src: JobState | None, dst: JobState, run: Runner) -> None:
    assert (src, dst) in LEGAL
    assert run() is dst


# ---------------------------------------------------------------------- illegal transitions

Attempt = Callable[[CoreState, int], object]

ATTEMPTS: dict[str, tuple[Attempt, frozenset[JobState]]] = {
    "complete": (lambda c, j: c.complete(j, None, None, NOW), frozenset({A})),
    "fail": (lambda c, j: c.fail(j, None, "r", None, NOW), frozenset({A})),
    "move_to_delayed": (
        lambda c, j: c.move_to_delayed(j, None, NOW + 1, None, NOW),
        frozenset({A}),
    ),
    "extend_lock": (lambda c, j: c.extend_lock(j, TOKEN, NOW + 9, NOW), frozenset({A})),
    "cancel": (lambda c, j: c.cancel(j, NOW), frozenset({W, D, WC, B, A})),
    "retry": (lambda c, j: c.retry(j, NOW), TERMINAL),
    "remove": (lambda c, j: c.remove(j, NOW), frozenset(JobState) - {A}),
}
REACHABLE = (W, D, A, C, F, X)
ILLEGAL = [
    (command, state)
    for command, (_, allowed) in ATTEMPTS.items()
    for state in REACHABLE
    if state not in allowed
]


def assert_refused(core: CoreState, attempt: Callable[[], object], kind: type[Exception]) -> str:
    before = frozen(core)
    with pytest.raises(kind) as info:
        attempt()
    assert frozen(core) == before
    assert core.take_effects() == ([], [], [])
    assert frozen(core) == before
    return str(info.value)


@pytest.mark.parametrize(("command", "state"), ILLEGAL, ids=[f"{c}:{s.value}" for c, s in ILLEGAL])
def test_illegal_transition_is_refused_and_changes_nothing(command: str, state: JobState) -> None:
    core, jid = make(state)
    make(W, core)  # a bystander, which must not move either
    attempt, _ = ATTEMPTS[command]
    kind = LockError if command == "extend_lock" else IllegalTransitionError
    message = assert_refused(core, lambda: attempt(core, jid), kind)
    assert f"job {jid}" in message
    assert state.value in message
    assert command in message


@pytest.mark.parametrize("command", ["complete", "fail", "move_to_delayed"])
@pytest.mark.parametrize("state", [W, D, C, F, X])
def test_outcome_with_a_token_on_a_job_not_active_is_a_lock_error(
    command: str, state: JobState
) -> None:
    core, jid = make(state)
    calls: dict[str, Callable[[], object]] = {
        "complete": lambda: core.complete(jid, TOKEN, None, NOW),
        "fail": lambda: core.fail(jid, TOKEN, "r", None, NOW),
        "move_to_delayed": lambda: core.move_to_delayed(jid, TOKEN, None, None, NOW),
    }
    message = assert_refused(core, calls[command], LockError)
    assert f"job {jid}" in message
    assert state.value in message
    assert command in message


@pytest.mark.parametrize("command", ["complete", "fail", "move_to_delayed", "extend_lock"])
def test_wrong_or_expired_token_is_a_lock_error(command: str) -> None:
    core = fresh()
    rec = core.add([spec()], NOW)[0][0]
    core.take("q", 1, NOW, TOKEN, lock_until=NOW + 5)
    core.take_effects()
    calls: dict[str, Callable[[str, float], object]] = {
        "complete": lambda tok, now: core.complete(rec.id, tok, None, now),
        "fail": lambda tok, now: core.fail(rec.id, tok, "r", None, now),
        "move_to_delayed": lambda tok, now: core.move_to_delayed(rec.id, tok, None, None, now),
        "extend_lock": lambda tok, now: core.extend_lock(rec.id, tok, now + 5, now),
    }
    call = calls[command]
    assert f"job {rec.id}" in assert_refused(core, lambda: call("other", NOW), LockError)
    assert "expired" in assert_refused(core, lambda: call(TOKEN, NOW + 5), LockError)
    call(TOKEN, NOW + 4)  # the right token, in time, works


@pytest.mark.parametrize(
    "command", ["complete", "fail", "move_to_delayed", "cancel", "retry", "remove"]
)
def test_unknown_job_is_not_found(command: str) -> None:
    core, _ = make(W)
    attempt, _ = ATTEMPTS[command]
    message = assert_refused(core, lambda: attempt(core, 99), JobNotFoundError)
    assert "99" in message


def test_errors_are_actorq_errors() -> None:
    for kind in (IllegalTransitionError, LockError, JobNotFoundError):
        assert issubclass(kind, ActorqError)


# ---------------------------------------------------------------------- the table as a picture


def test_mermaid_lists_every_transition() -> None:
    text = states.mermaid()
    lines = text.splitlines()
    assert lines[0] == "stateDiagram-v2"
    edges = set(lines[1:])
    expected = set()
    for command, rows in TRANSITIONS.items():
        for src, dsts in rows.items():
            left = "[*]" if src is None else src.value.replace("-", "_")
            for dst in dsts:
                expected.add(f"    {left} --> {dst.value.replace('-', '_')}: {command}")
    assert edges == expected
    assert len(lines) - 1 == sum(len(d) for rows in TRANSITIONS.values() for d in rows.values())


def test_legal_is_the_union_of_the_table() -> None:
    pairs = {(s, d) for rows in TRANSITIONS.values() for s, ds in rows.items() for d in ds}
    assert pairs == LEGAL
    assert all(dst is not None for _, dst in LEGAL)
    assert not any(src in TERMINAL for src, dst in LEGAL if dst is not W)


# ---------------------------------------------------------------------- purity

CORE_DIR = pathlib.Path(__file__).resolve().parent.parent / "actorq" / "_core"
FORBIDDEN = frozenset(
    {"anyio", "orjson", "time", "random", "asyncio", "trio", "os", "socket", "threading"}
    | {"datetime"}
)


def imported_modules(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "__import__"
        ):
            names.add("__import__")
    return names


@pytest.mark.parametrize("path", sorted(CORE_DIR.glob("*.py")), ids=lambda p: p.name)
def test_core_imports_no_io_or_clock(path: pathlib.Path) -> None:
    modules = imported_modules(path.read_text(encoding="utf-8"))
    roots = {name.split(".")[0] for name in modules}
    assert not roots & FORBIDDEN, f"{path.name} imports {sorted(roots & FORBIDDEN)}"
    assert "__import__" not in roots
    assert "importlib" not in roots


def test_core_dir_is_found() -> None:
    assert {p.name for p in CORE_DIR.glob("*.py")} >= {"state.py", "states.py", "records.py"}
