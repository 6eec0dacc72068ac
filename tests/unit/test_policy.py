"""A party's own policy gate, its privacy guard (policy + ledger + audit on a real SQLite file)
and what its errors may carry out (``redact``), in process.

Every test's docstring names the plausible bug it catches: an off-by-one at the minimum cohort,
bounds wider than the policy accepted at the edge, a filter column outside the policy accepted,
a budget pre-check that refuses an exact fit or lets an over-budget request through, a refund
after the commit, a recovery that refunds, a redacted error that still carries a value, a cell
or a path.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from parties.config import (
    DataSourceConfig,
    FederationConfig,
    PartyConfig,
    PolicyConfig,
    TLSFiles,
)
from parties.data.sources import DataSourceError, load_table
from parties.errors import ColumnRefused, PolicyError
from parties.node.redact import redact
from parties.privacy.guard import PrivacyGuard
from parties.privacy.ledger import BudgetExceeded, Ledger, LedgerError
from parties.privacy.policy import PolicyGate, PolicyRequest
from smpc import dp
from smpc.encoding import EncodingRangeError, FixedPoint
from smpc.errors import InputError
from smpc.stats import StatSpec

MIN_COHORT = 5


def policy(**kw: object) -> PolicyConfig:
    """x, y for every computation; ``secret`` for histograms only; ``age`` for predictions only;
    analysts ann and bob; x clipped within [0, 10]."""
    base: dict[str, object] = dict(
        allowed_columns=["x", "y"], allowed_analysts=["ann", "bob"],
        min_cohort_size=MIN_COHORT, epsilon=1.0, delta=1e-6,
        columns_by_computation={"histogram": ["secret"], "predict": ["age"]},
        require_dp=True, bounds={"x": (0.0, 10.0)},
    )
    base.update(kw)
    return PolicyConfig(**base)  # type: ignore[arg-type]


def gate(**kw: object) -> PolicyGate:
    return PolicyGate("org-a", policy(**kw))


def stat(columns: tuple[str, ...] = ("x",), filter_columns: tuple[str, ...] = (), *,
         analyst: str = "ann", computation: str = "mean", kind: str = "stat",
         n_rows: int | None = None) -> PolicyRequest:
    return PolicyRequest(analyst=analyst, kind=kind, columns=columns,
                         filter_columns=filter_columns, computation=computation, n_rows=n_rows)


def dp_mean(bounds: dict[str, tuple[float, float]], columns: tuple[str, ...] = ("x",)
            ) -> StatSpec:
    return StatSpec("mean", columns, dp=dp.DPRequest(rho=0.01, bounds=bounds))


# ------------------------------------------------------------------------------ access


def test_an_analyst_outside_the_policy_is_refused() -> None:
    """Catches an access check that skips ``allowed_analysts``: refused as a policy decision
    (PERMISSION_DENIED), not as an unknown column."""
    with pytest.raises(PolicyError, match="does not serve analyst 'carol'") as ei:
        gate().check_access(stat(analyst="carol"))
    assert not isinstance(ei.value, ColumnRefused)
    gate().check_access(stat(analyst="bob"))


@pytest.mark.parametrize(("req", "bad"), [
    (stat(("x",), ("secret",)), "'secret'"),
    (stat(("x",), ("age",)), "'age'"),
    (stat(("x",), ("y", "z")), "'z'"),
    (stat(("x",), ("secret",), computation="predict-linear", kind="predict-data"), "'secret'"),
], ids=["histogram-only-column-in-a-mean-filter", "predict-only-column-in-a-stat-filter",
        "unknown-column-in-filter", "histogram-only-column-in-a-prediction-filter"])
def test_a_filter_column_outside_the_policy_is_refused(req: PolicyRequest, bad: str) -> None:
    """The filter reads the rows too: a column the policy does not allow for this computation
    is refused in the filter exactly as in the values. Catches a check of ``columns`` only."""
    with pytest.raises(ColumnRefused) as ei:
        gate().check_access(req)
    msg = str(ei.value)
    assert f"has no column {bad} it may use" in msg
    assert [c for c in ("'x'", "'y'") if f"column {c}" in msg] == []  # only the refused ones


def test_computation_specific_columns_are_allowed_only_for_their_computation() -> None:
    """``secret`` is allowed in a histogram (values and filter) and ``age`` in a prediction on
    this party's rows, nowhere else. Catches a gate that merges every computation's extras, or
    maps a prediction to the wrong computation name."""
    g = gate()
    g.check_access(stat(("secret",), ("secret", "x"), computation="histogram"))
    g.check_access(stat(("age", "x"), ("age",), computation="predict-linear",
                        kind="predict-data"))
    with pytest.raises(ColumnRefused, match="'secret'"):
        g.check_access(stat(("secret",)))
    with pytest.raises(ColumnRefused, match="'age'"):
        g.check_access(stat(("age",), computation="histogram"))


# ------------------------------------------------------------------------------ cohort


@pytest.mark.parametrize("kind", ["stat", "predict-data"])
def test_the_minimum_cohort_is_inclusive(kind: str) -> None:
    """Exactly ``min_cohort_size`` rows are enough, one fewer is refused. Catches ``<=`` for
    ``<`` (an exact-size cohort refused) and a comparison one row too lenient."""
    g = gate()
    g.check_cohort(stat(kind=kind, n_rows=MIN_COHORT))
    g.check_cohort(stat(kind=kind, n_rows=MIN_COHORT + 1))
    for n in (MIN_COHORT - 1, 1, 0):
        with pytest.raises(PolicyError, match=f"fewer than {MIN_COHORT} of its rows match"):
            g.check_cohort(stat(kind=kind, n_rows=n))


def test_the_cohort_binds_only_requests_over_this_partys_rows() -> None:
    """A model owner's side of a prediction (its rows are not read) and a request whose rows are
    not yet selected are not refused by the cohort; ``check`` applies access then cohort."""
    g = gate()
    g.check_cohort(stat(kind="predict-model", n_rows=0))
    g.check_cohort(stat(n_rows=None))
    with pytest.raises(PolicyError, match="minimum cohort"):
        g.check(stat(n_rows=MIN_COHORT - 1))
    with pytest.raises(PolicyError, match="does not serve"):
        g.check(stat(analyst="carol", n_rows=MIN_COHORT))


# ------------------------------------------------------------------ differential privacy


def test_exact_results_are_refused_when_the_policy_requires_dp() -> None:
    """Catches a ``require_dp`` that is not enforced."""
    exact = StatSpec("mean", ("x",))
    with pytest.raises(PolicyError, match="refuses exact results"):
        gate().check_dp(stat(), exact)
    assert gate(require_dp=False).check_dp(stat(), exact) is exact


def test_exact_quantiles_at_the_margins_edges() -> None:
    """In exact mode, quantile probabilities at the margin (0.05, 0.95) are served; one ulp
    outside, and 0 or 1 (the minimum, the maximum), are refused naming the policy field; a DP
    request, or a margin of 0, is not checked (catches an off-by-one at the margin, or a
    margin applied to DP answers)."""
    g = gate(require_dp=False)

    def q(*probs: float, **kw: object) -> StatSpec:
        return StatSpec("quantiles", ("x",), probabilities=probs, bounds=(0.0, 10.0), **kw)

    edge = q(0.05, 0.5, 0.95)
    assert g.check_dp(stat(computation="quantiles"), edge) is edge
    for probs in ((0.0,), (1.0,), (np.nextafter(0.05, 0.0),), (np.nextafter(0.95, 1.0),)):
        with pytest.raises(PolicyError, match=r"policy.exact_quantile_margin"):
            g.check_dp(stat(computation="quantiles"), q(*probs))
    extremes = q(0.0, 1.0, dp=dp.DPRequest(rho=0.01))
    assert g.check_dp(stat(computation="quantiles"), extremes) is extremes
    assert gate(require_dp=False, exact_quantile_margin=0.0).check_dp(
        stat(computation="quantiles"), q(0.0, 1.0)) is not None


def test_bounds_at_the_policys_edges_are_accepted() -> None:
    """[0, 10] is the policy's own interval: accepted unchanged (the same spec object). Catches
    ``<=`` for ``<`` in either comparison."""
    for b in [(0.0, 10.0), (0.0, 5.0), (5.0, 10.0), (2.0, 3.0)]:
        spec = dp_mean({"x": b})
        assert gate().check_dp(stat(), spec) is spec


@pytest.mark.parametrize("b", [
    (float(np.nextafter(0.0, -1.0)), 10.0),
    (0.0, float(np.nextafter(10.0, 11.0))),
    (-1.0, 11.0),
    (-1e9, 1e9),
], ids=["lo-one-ulp-below", "hi-one-ulp-above", "both-wider", "far-wider"])
def test_bounds_wider_than_the_policy_are_refused(b: tuple[float, float]) -> None:
    """Even one ulp outside the policy's interval, on either side: wider clipping bounds raise
    the sensitivity above what the party accepted. Catches a check of one side only or with a
    tolerance."""
    with pytest.raises(PolicyError, match=r"allows bounds within \[0, 10\]"):
        gate().check_dp(stat(), dp_mean({"x": b}))


def test_bounds_are_filled_in_only_where_the_request_gives_none() -> None:
    """x (policy bounds, none requested) gets the policy's; y (no policy bounds) keeps the
    request's; histograms need no bounds. Catches a gate that overwrites the request's bounds
    or drops them."""
    spec = dp_mean({"y": (-1.0, 1.0)}, ("x", "y"))
    eff = gate().check_dp(stat(("x", "y")), spec)
    assert eff.dp is not None and eff.dp.bounds == {"x": (0.0, 10.0), "y": (-1.0, 1.0)}
    assert spec.dp is not None and spec.dp.bounds == {"y": (-1.0, 1.0)}  # the request unchanged
    hist = StatSpec("histogram", ("x",), edges=(0.0, 5.0, 10.0), dp=dp.DPRequest(rho=0.01))
    assert gate().check_dp(stat(computation="histogram"), hist) is hist


# ------------------------------------------------------------------ the guard: budget


@pytest.fixture
def guard(tmp_path: Path) -> PrivacyGuard:
    """org-a's guard over a real SQLite file (budgets set from the policy by ``start``)."""
    here = tmp_path / "unused"
    cfg = PartyConfig(
        name="org-a", host="127.0.0.1", port=0, tls=TLSFiles(here, here, here),
        data=DataSourceConfig(here, "csv"), policy=policy(), database=tmp_path / "party.db",
        federation=FederationConfig("demo", here, []))
    g = PrivacyGuard(cfg)
    g.start()
    return g


def dp_request(sid: str, rho: float, analyst: str = "ann") -> PolicyRequest:
    return PolicyRequest(analyst=analyst, kind="stat", columns=("x",), session_id=sid,
                         computation="mean", cost=dp.PrivacyCost(rho, 1e-6))


def outcomes(g: PrivacyGuard) -> list[tuple[str, str, str]]:
    return [(r.event["session_id"], r.event["computation"], r.event["outcome"])
            for r in g.audit.records(limit=None)]


def test_start_sets_each_analysts_budget_once(guard: PrivacyGuard) -> None:
    """Each allowed analyst gets rho(epsilon=1, delta=1e-6) on dataset org-a, audited once; a
    restart with the same policy changes and records nothing."""
    total = dp.rho_from_epsilon(1.0, 1e-6)
    for analyst in ("ann", "bob"):
        assert guard.ledger.remaining(analyst, "org-a") == total
    assert outcomes(guard) == [("", "budget", "accepted")] * 2
    guard.start()
    assert len(guard.audit) == 2


def test_precheck_accepts_an_exact_fit_and_refuses_more(guard: PrivacyGuard) -> None:
    """A request costing exactly the remaining budget passes the pre-check and is reserved; one
    more (1e-9 relative over) is refused before any row is read, with the remaining budget in
    the message, and nothing is charged. Catches a pre-check with ``>=`` or without the new
    cost, and one that lets an over-budget request through."""
    total = guard.total_rho
    guard.reserve(dp_request("a" * 16, total / 4))
    guard.commit("a" * 16)
    left = guard.ledger.remaining("ann", "org-a")
    guard.precheck_budget(dp_request("b" * 16, left))
    over = dp_request("c" * 16, left * (1 + 1e-9))
    with pytest.raises(BudgetExceeded, match=r"is exhausted: remaining rho") as ei:
        guard.precheck_budget(over)
    assert over.cost is not None
    assert ei.value.remaining == left and ei.value.requested == over.cost.rho
    assert guard.ledger.charge("c" * 16) is None
    guard.reserve(dp_request("b" * 16, left))
    assert guard.ledger.remaining("ann", "org-a") == 0.0
    with pytest.raises(BudgetExceeded, match="is exhausted"):
        guard.reserve(dp_request("d" * 16, 1e-9 * total))
    assert guard.ledger.charge("d" * 16) is None


def test_no_refund_after_the_commit(guard: PrivacyGuard) -> None:
    """Once committed (the contribution may have left), a refund does nothing: it answers
    False, the charge stays spent and counted, and no 'refunded' audit record is written.
    Catches a refund that ignores the charge's state."""
    sid = "e" * 16
    guard.reserve(dp_request(sid, 0.005))
    assert guard.commit(sid).state == "spent"
    left = guard.ledger.remaining("ann", "org-a")
    n = len(guard.audit)
    assert guard.refund(sid, "the coordinator aborted") is False
    assert guard.ledger.charge(sid).state == "spent"  # type: ignore[union-attr]
    assert guard.ledger.remaining("ann", "org-a") == left
    assert len(guard.audit) == n


def test_a_refund_before_the_commit_restores_the_budget_and_blocks_the_run(
    guard: PrivacyGuard,
) -> None:
    """Refunded while PENDING: the budget comes back, one 'failed' audit record says so, and the
    commit that ``Run`` needs now fails (so the role never starts). Catches a commit that
    accepts a refunded charge."""
    sid = "f" * 16
    full = guard.ledger.remaining("ann", "org-a")
    guard.reserve(dp_request(sid, 0.005))
    assert guard.ledger.remaining("ann", "org-a") == pytest.approx(full - 0.005, abs=1e-15)
    assert guard.refund(sid, "the session expired") is True
    assert guard.ledger.remaining("ann", "org-a") == full
    last = guard.audit.records(limit=1)[0].event
    assert (last["session_id"], last["outcome"]) == (sid, "failed")
    assert "refunded" in last["reason"] and "the session expired" in last["reason"]
    with pytest.raises(LedgerError, match="must not be released"):
        guard.commit(sid)
    assert guard.pending_sessions() == []


def test_sweep_refunds_only_ended_sessions(guard: PrivacyGuard) -> None:
    """Sessions that ended before ``Run`` are refunded, live ones keep their pending charge.
    Catches a sweep that refunds every open session."""
    live, ended = "1" * 16, "2" * 16
    guard.reserve(dp_request(live, 0.001))
    guard.reserve(dp_request(ended, 0.002))
    assert guard.sweep(lambda sid: sid == live) == [ended]
    assert guard.ledger.charge(live).state == "pending"  # type: ignore[union-attr]
    assert guard.ledger.charge(ended).state == "refunded"  # type: ignore[union-attr]
    assert guard.pending_sessions() == [live]


def test_restart_keeps_a_pending_charge_as_spent(guard: PrivacyGuard) -> None:
    """A node stopped between reserve and commit: the next start spends the charge (never
    refunds it), audits the decision and leaves the remaining budget where it was. Catches a
    recovery that refunds instead of spending."""
    sid = "3" * 16
    guard.reserve(dp_request(sid, 0.004))
    left = guard.ledger.remaining("ann", "org-a")
    again = PrivacyGuard(guard.cfg)  # the restarted node, same files
    recovered = again.start()
    assert [(r.session_id, r.state) for r in recovered] == [(sid, "spent")]
    assert Ledger(guard.cfg.database).remaining("ann", "org-a") == left
    last = again.audit.records(limit=1)[0].event
    assert (last["session_id"], last["computation"], last["outcome"]) == (
        sid, "recovery", "failed")
    assert last["privacy_cost"]["rho"] == 0.004


def test_a_refused_statistic_is_in_the_audit_log_and_the_ledger(guard: PrivacyGuard) -> None:
    """A refusal leaves a trace in both: one audit record and one ledger 'refused' event for
    the session, with the cost it asked for. Catches a refusal that is not recorded."""
    req = dp_request("4" * 16, 0.003)
    guard.record(req, "refused", "org-a has no column 'z' it may use")
    last = guard.audit.records(limit=1)[0].event
    assert (last["session_id"], last["outcome"]) == ("4" * 16, "refused")
    ev = [e for e in guard.ledger.events() if e["session_id"] == "4" * 16]
    assert [(e["event"], e["rho"]) for e in ev] == [("refused", 0.003)]


def test_exact_requests_are_neither_prechecked_nor_charged(guard: PrivacyGuard) -> None:
    """An exact request (no DP cost, allowed by a policy without ``require_dp``) passes the
    budget pre-check and reserves nothing: no charge, no ledger event, no open session. Catches
    a guard that treats a missing cost as a cost."""
    exact = PolicyRequest(analyst="ann", kind="stat", columns=("x",), session_id="5" * 16,
                          computation="mean")
    before = guard.ledger.events()
    assert guard.precheck_budget(exact) is None
    assert guard.reserve(exact) is None
    assert guard.ledger.charge("5" * 16) is None and guard.ledger.events() == before
    assert guard.pending_sessions() == []


def test_reserve_answers_with_the_pending_charge(guard: PrivacyGuard) -> None:
    """The node reports the reservation it made: pending, for this session, at this cost, with
    the budget left. Catches a ``reserve`` that answers nothing."""
    total = guard.total_rho
    res = guard.reserve(dp_request("6" * 16, 0.25 * total))
    assert res is not None
    assert (res.session_id, res.analyst, res.dataset, res.rho, res.state) == (
        "6" * 16, "ann", "org-a", 0.25 * total, "pending")
    assert res.remaining == guard.ledger.remaining("ann", "org-a")
    assert guard.pending_sessions() == ["6" * 16]


def test_the_over_budget_answer_states_the_cost_in_rho_and_in_epsilon(guard: PrivacyGuard) -> None:
    """The refusal the analyst receives gives the remaining budget and the request's cost in rho
    and in (epsilon, delta), as the module documents. Catches a message that drops the
    (epsilon, delta) view of the cost."""
    cost = dp.PrivacyCost(2 * guard.total_rho, 1e-6)
    req = PolicyRequest(analyst="ann", kind="stat", columns=("x",), session_id="7" * 16,
                        computation="mean", cost=cost)
    with pytest.raises(BudgetExceeded) as ei:
        guard.reserve(req)
    assert cost.epsilon is not None
    assert str(ei.value).endswith(
        f"; this request costs rho {cost.rho:.6g} (epsilon {cost.epsilon:.4g} at delta 1e-06)")
    assert guard.ledger.charge("7" * 16) is None


def test_an_analyst_without_a_budget_is_told_nothing_remains(guard: PrivacyGuard) -> None:
    """carol has no budget on this party's dataset: refused with remaining 0 of a total of 0,
    never with numbers from somewhere else. Catches a refusal that invents a budget."""
    with pytest.raises(BudgetExceeded) as ei:
        guard.reserve(dp_request("8" * 16, 1e-6, analyst="carol"))
    e = ei.value
    assert (e.analyst, e.remaining, e.total, e.requested) == ("carol", 0.0, 0.0, 1e-6)
    assert "remaining rho 0, epsilon 0 at delta 1e-06, of a total rho 0" in str(e)


def test_the_precheck_uses_the_ledgers_slack_and_records_its_refusal(
    guard: PrivacyGuard,
) -> None:
    """On bob's untouched budget T: a cost of exactly T x (1 + 1e-12) passes the pre-check (and
    the ledger takes it); T x (1 + 1.5e-12) is refused by the pre-check -- before any row is
    read -- as the ledger would refuse it, and the refusal is a ledger ``refused`` event with
    its cost. Catches a pre-check with ``>=``, with a wider slack than the ledger's, or that
    does not record."""
    total = guard.ledger.remaining("bob", "org-a")
    over = dp_request("9" * 16, total * (1 + 1.5e-12), analyst="bob")
    with pytest.raises(BudgetExceeded, match="is exhausted"):
        guard.precheck_budget(over)
    assert over.cost is not None
    refused = guard.ledger.events()[-1]
    assert (refused["event"], refused["session_id"], refused["analyst"], refused["rho"]) == (
        "refused", "9" * 16, "bob", over.cost.rho)
    assert str(refused["detail"]).startswith("over budget (pre-check): org-a refuses")
    with pytest.raises(BudgetExceeded):
        guard.ledger.reserve("9" * 16, "bob", "org-a", over.cost.rho)  # the ledger agrees
    fits = dp_request("a" * 15 + "0", total * (1 + 1e-12), analyst="bob")
    guard.precheck_budget(fits)
    assert guard.reserve(fits) is not None


def test_a_committed_session_is_no_longer_open(guard: PrivacyGuard) -> None:
    """After the commit the session is no longer pending in this process, so a later sweep (the
    session then ends) does not try to refund it. Catches a commit that leaves the session open
    for the reaper."""
    sid = "b" * 16
    guard.reserve(dp_request(sid, 0.001))
    guard.commit(sid)
    assert guard.pending_sessions() == []
    assert guard.sweep(lambda s: False) == []
    assert guard.ledger.charge(sid).state == "spent"  # type: ignore[union-attr]


def test_refund_of_a_charge_this_process_did_not_open(guard: PrivacyGuard) -> None:
    """A pending charge reserved by an earlier process (not open here) can still be refunded
    by session id: True, and the budget comes back. Catches a refund that assumes the session
    was opened by this process."""
    sid = "c" * 16
    full = guard.ledger.remaining("ann", "org-a")
    Ledger(guard.cfg.database).reserve(sid, "ann", "org-a", 0.002)
    assert guard.refund(sid, "the operator knows nothing was sent") is True
    assert guard.ledger.charge(sid).state == "refunded"  # type: ignore[union-attr]
    assert guard.ledger.remaining("ann", "org-a") == full


# ------------------------------------------------------------------ what errors carry out


def test_a_range_error_leaves_without_its_value(caplog: pytest.LogCaptureFixture) -> None:
    """The encoder's error names the offending aggregate (7.77777e+15); the error the party
    sends, and its log, do not. Catches a redaction that appends the original message."""
    with pytest.raises(EncodingRangeError) as ei:
        FixedPoint().encode(np.array([1.5, 7.77777e15]))
    assert "7.77777e+15" in str(ei.value)
    with caplog.at_level(logging.DEBUG):
        out = redact(ei.value, "org-a")
    assert type(out) is InputError
    assert str(out) == (
        "org-a refuses: one of its values or aggregates is outside the range this computation "
        "can encode (raise the declared feature bound, scale the column or lower the "
        "fractional bits); the value is not disclosed")
    assert "7.7" not in caplog.text and caplog.text


def test_a_range_error_with_a_public_sentence_leaves_it_without_the_value(
        caplog: pytest.LogCaptureFixture) -> None:
    """The data owner's feature check and the model owner's output check name the offending
    feature value and the weight-derived worst prediction; what leaves the party is the
    problem and the public parameters only. Catches a redaction that sends the full message."""
    from smpc.linear import InferenceSpec, LinearModel, check_features, check_model

    spec = InferenceSpec(kind="linear", n_samples=2, n_features=2, feature_bound=1000.0)
    with pytest.raises(EncodingRangeError) as ei:
        check_features(spec, np.array([[1.0, 2.0], [3.0, 987654.321]]))
    assert "987654" in str(ei.value)
    with caplog.at_level(logging.DEBUG):
        out = redact(ei.value, "org-a")
    assert str(out) == ("org-a refuses: a feature value exceeds the declared feature bound "
                        "1000 in feature #2; raise the bound (--feature-bound) or scale the "
                        "feature (the value is not disclosed)")
    spec = InferenceSpec(kind="linear", n_samples=2, n_features=2, feature_bound=1e9)
    with pytest.raises(EncodingRangeError) as ei:
        check_model(spec, LinearModel("linear", ("a", "b"), (31415.9265, 2.0), 0.0))
    with caplog.at_level(logging.DEBUG):
        out = redact(ei.value, "org-a")
    assert str(out).startswith("org-a refuses: a prediction could exceed the fixed-point "
                               "bound for untruncated products (f=")
    for text in (str(out), caplog.text):
        assert "987654" not in text and "e+13" not in text and "3.14" not in text


@pytest.mark.parametrize(("cells", "what"), [
    ("41,1\nSECRET-CELL-9931,2\n", "row 2 of column 'age' is not a number"),
    ("41,1\n,2\n", "column 'age' has missing values in the selected rows"),
    ("41,1\n-inf,2\n", "row 2 of column 'age' is infinite; infinite values cannot be encoded"),
    (None, "its data file cannot be read"),
], ids=["non-numeric-cell", "missing-cell", "infinite-cell", "missing-file"])
def test_a_data_error_leaves_without_cells_or_paths(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, cells: str | None, what: str,
) -> None:
    """A real table's error names the kind of problem, the column and the row; the redacted
    error says exactly that, and the party's log adds the kind and the CSV line -- neither
    holds the cell or the file's path. Catches a redaction (or a table error) that passes the
    cell or the path through, or that loses the column and row."""
    d = tmp_path / "ward-7731"
    d.mkdir()
    path = d / "patients.csv"
    if cells is not None:
        path.write_text("age,w\n" + cells)
    with pytest.raises(DataSourceError) as ei:
        load_table(path).select(["age"])
    with caplog.at_level(logging.DEBUG):
        out = redact(ei.value, "org-a")
    assert type(out) is InputError
    assert str(out) == f"org-a cannot use the requested columns: {what}"
    assert ei.value.kind in caplog.text and what in caplog.text
    if cells is not None:  # the party's own log has the row (for a missing value, only it)
        assert "row 2" in caplog.text
    for secret in ("ward-7731", "SECRET-CELL", "9931", "-inf", "patients.csv"):
        assert secret not in str(out) and secret not in caplog.text
    assert "line 3" not in str(out)  # the CSV line is for the party's own log only
    if cells is not None:
        assert "(line 3 of the file)" in caplog.text


def test_an_unexpected_error_leaves_as_its_type_only(caplog: pytest.LogCaptureFixture) -> None:
    """numpy's own messages quote the value ("could not convert string to float: '...'"): an
    exception the runtime did not write leaves as "internal error in node 'org-a'
    (ValueError)", and the INTERNAL status logs its frames, not its message."""
    from parties.errors import InternalFailure, status_of

    with pytest.raises(ValueError) as ei:
        np.float64("Zebulon-Quartz-7731")
    assert "Zebulon" in str(ei.value)
    out = redact(ei.value, "org-a")
    assert type(out) is InternalFailure
    assert str(out) == "internal error in node 'org-a' (ValueError)"
    with caplog.at_level(logging.DEBUG):
        code, message, node = status_of(out, "org-a")
    assert (code.name, message, node) == ("INTERNAL", str(out), "org-a")
    assert "test_policy.py" in caplog.text and "ValueError" in caplog.text
    assert "Zebulon" not in caplog.text


def test_other_errors_pass_unchanged() -> None:
    """Policy refusals and other errors are already written for the analyst: the same object."""
    exc = PolicyError("org-a does not serve analyst 'carol'")
    assert redact(exc, "org-a") is exc
