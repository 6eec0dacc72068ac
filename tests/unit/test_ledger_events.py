"""What the privacy-budget ledger records and what it refuses to take, on a real SQLite file.

The ledger's ``ledger_events`` table is part of the party's accountability trail: every budget
change, reservation, commit, refund, recovery and refusal is one event naming the session, the
analyst, the dataset and the rho it concerns.  These tests state that history exactly, so a
decision that is not recorded, or recorded without its session, analyst, dataset or cost, fails.
They also pin the ledger's input checks (malformed names are INVALID_ARGUMENT, not a missing
charge) and the exact edges of its arithmetic (a zero budget, a charge exactly at the documented
slack).
"""

from __future__ import annotations

import math
from pathlib import Path

import grpc
import pytest

from parties.errors import status_of
from parties.privacy.ledger import (
    RHO_REL_TOLERANCE,
    BudgetExceeded,
    Ledger,
    LedgerError,
    LedgerValueError,
)

Event = tuple[str, str | None, str | None, str | None, float | None, str]


def history(led: Ledger) -> list[Event]:
    """Every event as (event, session_id, analyst, dataset, rho, detail), oldest first."""
    return [(str(e["event"]), e["session_id"], e["analyst"], e["dataset"], e["rho"],  # type: ignore[misc]
             str(e["detail"])) for e in led.events()]


RECOVERED = ("kept as spent at recovery: the charge was pending when the node stopped and the "
             "party cannot tell whether its result was released")


def test_every_decision_is_one_event_naming_session_analyst_dataset_and_rho(
    tmp_path: Path,
) -> None:
    """One life of a budget: set, changed, a reservation, a replay, a request without budget, an
    over-budget request, a commit, a refund, a crash recovery and a policy refusal. Each is
    exactly one event with its session, analyst, dataset and rho (all binary-exact values, so
    compared exactly); repeating an idempotent call (same budget, second commit, second abort)
    records nothing. Catches a decision that is not recorded, an event that loses any of its
    fields, and an idempotent call that records twice."""
    led = Ledger(tmp_path / "party.sqlite")
    led.set_budget("ann", "clinic", 1.0)
    led.set_budget("ann", "clinic", 1.0)              # unchanged: no event
    led.set_budget("ann", "clinic", 0.5)
    led.reserve("s1", "ann", "clinic", 0.25)
    with pytest.raises(LedgerError):
        led.reserve("s1", "ann", "clinic", 0.125)     # replay, asking a different cost
    with pytest.raises(BudgetExceeded):
        led.reserve("s2", "bob", "clinic", 0.125)     # no budget for bob
    with pytest.raises(BudgetExceeded):
        led.reserve("s3", "ann", "clinic", 0.5)       # 0.25 left
    led.commit("s1")
    led.commit("s1")                                  # idempotent: no event
    led.reserve("s4", "ann", "clinic", 0.125)
    led.abort("s4", "failed before this party sent anything")
    led.abort("s4", "again")                          # idempotent: no event
    led.reserve("s5", "ann", "clinic", 0.0625)        # left pending by a crash
    led.recover()
    led.record_refusal("s6", "ann", "clinic", None, "org-a has no column 'z' it may use")

    assert history(led) == [
        ("budget_set", None, "ann", "clinic", 1.0, "total rho set to 1 (was unset)"),
        ("budget_set", None, "ann", "clinic", 0.5, "total rho set to 0.5 (was 1)"),
        ("reserved", "s1", "ann", "clinic", 0.25, "pending charge recorded"),
        ("refused", "s1", "ann", "clinic", 0.125, "replayed session id"),
        ("refused", "s2", "bob", "clinic", 0.125, "no budget set"),
        ("refused", "s3", "ann", "clinic", 0.5, "over budget: remaining 0.25, requested 0.5"),
        ("committed", "s1", "ann", "clinic", 0.25, "result released"),
        ("reserved", "s4", "ann", "clinic", 0.125, "pending charge recorded"),
        ("aborted", "s4", "ann", "clinic", 0.125, "failed before this party sent anything"),
        ("reserved", "s5", "ann", "clinic", 0.0625, "pending charge recorded"),
        ("recovered", "s5", "ann", "clinic", 0.0625, RECOVERED),
        ("refused", "s6", "ann", "clinic", None, "org-a has no column 'z' it may use"),
    ]
    assert [e["id"] for e in led.events(limit=2)] == [11, 12]  # the latest two, oldest first


def test_the_history_names_the_charge_not_the_caller_of_commit_and_abort(tmp_path: Path) -> None:
    """``commit`` and ``abort`` take only a session id: their events carry the analyst, dataset
    and rho of the stored charge, for two analysts on two datasets. Catches a settle event
    that leaves them out (it would read as a charge of nobody)."""
    led = Ledger(tmp_path / "party.sqlite")
    led.set_budget("ann", "clinic", 1.0)
    led.set_budget("bob", "registry", 1.0)
    led.reserve("a", "ann", "clinic", 0.375)
    led.reserve("b", "bob", "registry", 0.75)
    led.commit("b")
    led.abort("a", "the coordinator aborted before Run")
    settled = [e for e in history(led) if e[0] in ("committed", "aborted")]
    assert settled == [
        ("committed", "b", "bob", "registry", 0.75, "result released"),
        ("aborted", "a", "ann", "clinic", 0.375, "the coordinator aborted before Run"),
    ]


# --------------------------------------------------------------------------- budgets


def test_set_budget_returns_the_budget_it_stored(tmp_path: Path) -> None:
    """``set_budget`` answers with the stored status (the node logs it at start-up), charges
    included. Catches a ``set_budget`` that returns nothing or a stale status."""
    led = Ledger(tmp_path / "party.sqlite")
    first = led.set_budget("ann", "clinic", 1.0)
    assert (first.analyst, first.dataset, first.total, first.spent, first.pending,
            first.remaining) == ("ann", "clinic", 1.0, 0.0, 0.0, 1.0)
    led.reserve("s1", "ann", "clinic", 0.25)
    again = led.set_budget("ann", "clinic", 0.5)
    assert again == led.status("ann", "clinic")
    assert (again.total, again.pending, again.remaining) == (0.5, 0.25, 0.25)


def test_a_zero_budget_is_a_budget_that_refuses_everything(tmp_path: Path) -> None:
    """A policy may give an analyst nothing: a total of exactly 0 is accepted and recorded (it
    is not the same as no budget: the refusal says what is left of what), and every positive
    charge is refused with remaining 0 of 0. Catches a budget check that refuses 0 as if it
    were negative."""
    led = Ledger(tmp_path / "party.sqlite")
    st = led.set_budget("ann", "clinic", 0.0)
    assert (st.total, st.remaining) == (0.0, 0.0)
    with pytest.raises(BudgetExceeded, match="privacy budget exceeded") as ei:
        led.reserve("s1", "ann", "clinic", 1e-9)
    assert (ei.value.remaining, ei.value.total, ei.value.requested) == (0.0, 0.0, 1e-9)
    assert [e[0] for e in history(led)] == ["budget_set", "refused"]
    led.record_refusal("s2", "ann", "clinic", 0.0, "a zero cost is still a request")
    assert history(led)[-1][4] == 0.0


def test_no_budget_is_refused_with_nothing_remaining_of_nothing(tmp_path: Path) -> None:
    """An (analyst, dataset) without a budget: refused, and the refusal's numbers (which the
    node turns into its answer) say 0 remaining of a total of 0. Catches a refusal that claims
    budget that does not exist."""
    led = Ledger(tmp_path / "party.sqlite")
    with pytest.raises(BudgetExceeded, match="no privacy budget is set") as ei:
        led.reserve("s1", "carol", "clinic", 0.5)
    e = ei.value
    assert (e.analyst, e.dataset, e.remaining, e.requested, e.total) == (
        "carol", "clinic", 0.0, 0.5, 0.0)


def test_a_charge_exactly_at_the_documented_slack_fits(tmp_path: Path) -> None:
    """The ledger accepts a charge when the counted sum is *at most* total x (1 + 1e-12): a
    single charge equal to that product (computed with the same double arithmetic) fits, the
    next representable double above it does not. Catches ``>=`` for ``>`` at the limit."""
    led = Ledger(tmp_path / "party.sqlite")
    led.set_budget("ann", "clinic", 1.0)
    led.set_budget("ann", "other", 1.0)
    limit = 1.0 * (1 + RHO_REL_TOLERANCE)
    assert led.reserve("s1", "ann", "clinic", limit).state == "pending"
    with pytest.raises(BudgetExceeded):
        led.reserve("s2", "ann", "other", math.nextafter(limit, 2.0))


# --------------------------------------------------------------------------- malformed input


BAD_NAMES = ["", "   ", "x" * 257, 7, None]


@pytest.mark.parametrize("bad", BAD_NAMES, ids=["empty", "blank", "too-long", "int", "none"])
@pytest.mark.parametrize("field", ["analyst", "dataset"])
def test_set_budget_refuses_malformed_names(tmp_path: Path, field: str, bad: object) -> None:
    """A budget is keyed by (analyst, dataset): malformed names are an input error
    (INVALID_ARGUMENT) and store nothing. Catches a ``set_budget`` that skips the name
    checks."""
    led = Ledger(tmp_path / "party.sqlite")
    args = {"analyst": "ann", "dataset": "clinic", field: bad}
    with pytest.raises(LedgerValueError, match=f"{field} must be a non-empty string"):
        led.set_budget(args["analyst"], args["dataset"], 1.0)  # type: ignore[arg-type]
    assert led.budgets() == [] and led.events() == []


@pytest.mark.parametrize("bad", BAD_NAMES, ids=["empty", "blank", "too-long", "int", "none"])
@pytest.mark.parametrize("field", ["session_id", "analyst", "dataset"])
def test_reserve_refuses_malformed_names(tmp_path: Path, field: str, bad: object) -> None:
    """A reservation with a malformed session id, analyst or dataset is an input error: not a
    charge, not a budget refusal, no event. Catches a ``reserve`` that skips a name check (the
    charge would be stored under a blank name, or refused as 'no budget')."""
    led = Ledger(tmp_path / "party.sqlite")
    led.set_budget("ann", "clinic", 1.0)
    args = {"session_id": "s1", "analyst": "ann", "dataset": "clinic", field: bad}
    with pytest.raises(LedgerValueError, match=f"{field} must be a non-empty string") as ei:
        led.reserve(args["session_id"], args["analyst"], args["dataset"], 0.5)  # type: ignore[arg-type]
    assert status_of(ei.value)[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert led.charges() == [] and len(led.events()) == 1
    assert led.remaining("ann", "clinic") == 1.0


@pytest.mark.parametrize("bad", ["", "x" * 257, 7], ids=["empty", "too-long", "int"])
def test_commit_and_abort_refuse_malformed_session_ids(tmp_path: Path, bad: object) -> None:
    """A malformed session id given to ``commit`` or ``abort`` is the caller's input error
    (INVALID_ARGUMENT), not the node's 'no such charge' (FAILED_PRECONDITION). Catches a
    settle call that skips the session id check."""
    led = Ledger(tmp_path / "party.sqlite")
    for call in (lambda: led.commit(bad), lambda: led.abort(bad, "reason")):  # type: ignore[arg-type]
        with pytest.raises(LedgerValueError, match="session_id must be a non-empty string") as ei:
            call()
        assert status_of(ei.value)[0] == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(LedgerError) as unknown:
        led.commit("never-charged")
    assert not isinstance(unknown.value, LedgerValueError)
    assert status_of(unknown.value)[0] == grpc.StatusCode.FAILED_PRECONDITION
