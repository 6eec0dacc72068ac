"""Under a DP policy, the exact oracles of issue 12 answer nothing: each test runs the attacker's
binary search over filters against real party nodes and shows it learns nothing beyond the noise.

Built with :class:`parties.federation.inprocess.InProcessFederation`: real party nodes (policy,
SQLite ledger and hash-chained audit log, encrypted outputs), the coordinator's stage machine,
every control call through the protobuf edge; only the network is in-process (the cheapest
fixture with real nodes; what it leaves out -- TLS, processes -- plays no part in what a party
decides to answer).  Two parties: ``hosp-a`` (the target patient's hospital, ids 1-40; the data
owner of inferences) and ``lab`` (the other statistic party, ids -10 to 29, so that its own
cohort is never the one below the minimum; it owns the model ``risk``).  Their policies
require DP (``require_dp``), with a minimum cohort of 5.

The target is the row ``id == 41`` of ``hosp-a``.  *Neighbouring datasets* are ``hosp-a``'s
table with and without that row (the node's table is swapped between runs).  For each attack:

* a **positive control** runs the same search with the party's policy switched to exact mode
  (what every federation did before issue 12): it recovers the target's value to 0.1 (or its
  age), so the oracle is real and the test would catch its return;
* under DP, the search's whole transcript -- every answer, refusal and reported count -- is
  recorded for both neighbours and must be **identical**; where an answer is noisy, what the
  party computes from the rows (its exact local aggregate, recorded by wrapping the core's
  ``local_pass1``, or the feature matrix the data owner feeds the inference) is either identical
  between neighbours (so the outputs are identically distributed) or differs by the one row the
  statistic's noise is calibrated for, charged exactly the request's rho (the cohort decision
  costs nothing extra: there is none).

No statistical test is needed: nothing new is noisy (no output depends on the rows but through
the statistics' own noise, whose release is checked by test_dp_released_noise.py).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from parties.config import ModelPolicy
from parties.data.sources import Table
from parties.errors import NodeBlamed
from parties.federation.inprocess import InProcessFederation
from parties.federation.local import init_federation
from parties.node import jobs as jobs_module
from parties.privacy import dp_outputs
from parties.privacy.exact import SAFEGUARDS_OFF
from parties.privacy.ledger import Ledger
from parties.privacy.outputs import read_output
from parties.transport.control import PrepareModelOwner
from smpc import dp, linear, stats
from smpc.encoding import EncodingRangeError
from smpc.linear import LinearModel
from smpc.stats import StatSpec
from smpc.stats import rowsource as stat_rowsource
from tests.tolerances import ckks_kept_key_bound, ss_logit_bound

OWNER, LAB = "hosp-a", "lab"
MODEL = LinearModel("linear", ("age", "chol"), (0.02, 0.01), -3.0)
TARGET_ID = 41
TARGET_CHOL = 237.4                  # what the attacker wants
TARGET_AGE = 61.3
N_OTHERS = 40
SEARCH = (100.0, 300.0)              # the attacker's prior range for a cholesterol value
STEPS = 11                           # 200 / 2^11 < 0.1
RHO = 0.01                           # each DP query of the searches


def _write_csv(path: Path, cols: dict[str, np.ndarray]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(list(cols))
        for row in zip(*cols.values(), strict=True):
            w.writerow([repr(float(v)) for v in row])


def _columns(seed: int, n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"id": np.arange(1.0, n + 1), "age": np.round(rng.normal(55, 8, n), 1),
            "chol": np.round(rng.normal(200, 20, n), 1)}


def hospital(with_target: bool, chol: float = TARGET_CHOL, age: float = TARGET_AGE) -> Table:
    """``hosp-a``'s table: 40 patients, plus (``with_target``) the target as row ``id 41``."""
    cols = _columns(7, N_OTHERS)
    if with_target:
        cols = {"id": np.append(cols["id"], TARGET_ID), "age": np.append(cols["age"], age),
                "chol": np.append(cols["chol"], chol)}
    return Table.from_arrays(cols, source="hosp-a")


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    d = tmp_path_factory.mktemp("oracles")
    files = []
    for seed, name, first_id in ((7, OWNER, 1), (8, LAB, -10)):
        files.append(d / f"{name}.csv")
        cols = _columns(seed, N_OTHERS)
        _write_csv(files[-1], {**cols, "id": cols["id"] - 1 + first_id})
    model_file = d / "risk.json"
    model_file.write_text(json.dumps(MODEL.to_json()))
    # a budget for every search below: epsilon 200 at delta 1e-6
    init_federation(d / "fed", files, models={LAB: model_file}, min_cohort_size=5,
                    require_dp=True, epsilon=200.0, delta=1e-6)
    with InProcessFederation.open(d / "fed") as f:
        # the model owner opts out of its model protections (noise, row budget, requests per
        # day): these tests attack the data owner's outputs, over many predictions
        lab = f.parties[LAB]
        lab.models.policy = replace(lab.models.policy, models={"risk": ModelPolicy.exact()})
        yield f


@pytest.fixture
def neighbours(fed, monkeypatch):
    """``use(True)`` / ``use(False)``: the target row in or out of ``hosp-a``'s table."""
    node = fed.parties[OWNER]

    def use(with_target: bool, **target) -> None:
        monkeypatch.setattr(node, "table", hospital(with_target, **target))

    return use


def exact_mode(fed, monkeypatch) -> None:
    """Switch both parties' policies to exact mode with every exact-mode safeguard off (the
    behaviour before issue 12; the differencing check would refuse most of the search's pairs,
    see ``test_exact_safeguards.py``), so each control shows the oracle itself."""
    for node in fed.parties.values():
        policy = replace(node.cfg.policy, require_dp=False, **SAFEGUARDS_OFF)
        monkeypatch.setattr(node, "cfg", replace(node.cfg, policy=policy))
        monkeypatch.setattr(node.policy, "policy", policy)


def binary_search(below: Callable[[float], bool], steps: int = STEPS) -> tuple[float, list]:
    """The attacker: ``below(t)`` is its guess of "the target's value < t" from one answer."""
    lo, hi = SEARCH
    for _ in range(steps):
        mid = (lo + hi) / 2
        if below(mid):
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2, []


def transcript(ask: Callable[[float], object], steps: int = STEPS) -> list:
    """Every answer of the search (the search follows the answers, so equal transcripts mean
    the attacker's view is the same)."""
    seen: list = []

    def below(t: float) -> bool:
        seen.append(ask(t))
        return bool(seen[-1] == seen[0])  # any deterministic rule of the attacker

    binary_search(below, steps)
    return seen


def _outcome(fn: Callable[[], object]) -> object:
    try:
        return ("answered", fn())
    except NodeBlamed as exc:
        return ("refused", exc.node, exc.code.name, str(exc))


def record_pass1(monkeypatch) -> list[np.ndarray]:
    """Record every party's exact local pass-1 aggregate (its input to the noisy sum), whether
    numpy computes it (a memory table) or the party's SQL engine does (DuckDB, the default)."""
    from parties.data.sql.rows import SqlRows

    seen: list[np.ndarray] = []
    original = stat_rowsource.local_pass1
    original_sql = SqlRows.pass1

    def spy(spec, rows):
        out = original(spec, rows)
        seen.append(np.array(out))
        return out

    def spy_sql(self, spec, clip=None):
        out = original_sql(self, spec, clip)
        seen.append(np.array(out))
        return out

    monkeypatch.setattr(stat_rowsource, "local_pass1", spy)
    monkeypatch.setattr(SqlRows, "pass1", spy_sql)
    return seen


# ------------------------------------------------------------------------ predict count


def _predict_view(fed, monkeypatch) -> Callable[[str], tuple[int, int]]:
    """What the analyst (the reported count) and the model owner (``n_samples``) see."""
    lab = fed.parties[LAB]
    sizes: list[int] = []
    original = lab.prepare

    def prepare(r, ident=None):
        if isinstance(r, PrepareModelOwner):
            sizes.append(r.inference.n_samples)
        return original(r, ident)

    monkeypatch.setattr(lab, "prepare", prepare)

    def view(where: str) -> tuple[int, int]:
        p = fed.predict(OWNER, LAB, model="risk", where=where)
        return p.n_predictions, sizes[-1]

    return view


def test_predict_count_oracle(fed, neighbours, monkeypatch):
    """The count of a prediction no longer reads a patient's cholesterol.

    Control (exact mode): ``id <= 10 or (id == 41 and chol < t)`` reports 11 or 10
    predictions; 11 calls read the target's 237.4 to within 0.1.  Under DP: every call of the
    search reports the public padded size (64 for a 40- or 41-row table) to the analyst and to
    the model owner, for both neighbours: identical transcripts.  The data owner still gets
    exactly the selected rows' predictions (the ss inference's bound, tests/tolerances.py)."""
    view = _predict_view(fed, monkeypatch)
    query = "id <= 10 or (id == 41 and chol < {t!r})"
    neighbours(True)
    with monkeypatch.context() as m:
        exact_mode(fed, m)
        found, _ = binary_search(lambda t: view(query.format(t=t))[0] == 11)
        assert abs(found - TARGET_CHOL) <= 0.1  # the oracle is real without DP
    views = {}
    for present in (True, False):
        neighbours(present)
        views[present] = transcript(lambda t: view(query.format(t=t)), steps=6)
    assert views[True] == views[False] == [(64, 64)] * 6
    assert dp_outputs.padded_rows(41, 10**6) == dp_outputs.padded_rows(40, 10**6) == 64
    # the data owner's own file: the 10 selected rows, nothing of the dummies
    neighbours(True)
    p = fed.predict(OWNER, LAB, model="risk", where="id <= 10")
    out = list(csv.DictReader(read_output(fed.parties[OWNER].cfg, p.session_id)
                              .decode().splitlines()))
    rows = np.array([int(r["row"]) for r in out])
    assert p.n_predictions == 64 and rows.tolist() == list(range(1, 11))
    table = hospital(True)
    X = np.column_stack([table.column(c) for c in MODEL.features])[rows - 1]
    preds = np.array([float(r["prediction"]) for r in out])
    tol = ss_logit_bound(MODEL.weights, MODEL.intercept, X)
    assert np.all(np.abs(preds - (X @ MODEL.weights + MODEL.intercept)) <= tol)


def test_padded_ckks_inference_writes_only_the_selected_rows(fed, neighbours):
    """On ``ckks`` too the analyst is told the padded size (64) and the data owner's file holds
    the 10 selected rows' predictions only, each within the ckks inference's stated bound
    (tests/tolerances.py: the preset's error plus the model owner's flooding)."""
    neighbours(True)
    p = fed.predict(OWNER, LAB, model="risk", where="id <= 10", backend="ckks")
    out = list(csv.DictReader(read_output(fed.parties[OWNER].cfg, p.session_id)
                              .decode().splitlines()))
    rows = np.array([int(r["row"]) for r in out])
    assert p.n_predictions == 64 and rows.tolist() == list(range(1, 11))
    table = hospital(True)
    X = np.column_stack([table.column(c) for c in MODEL.features])[rows - 1]
    preds = np.array([float(r["prediction"]) for r in out])
    spec = linear.InferenceSpec("linear", 64, 2, backend="ckks")
    tol = ckks_kept_key_bound(MODEL.weights, "aggregate",  # the node keeps its key
                              linear.model_flood_std(spec, MODEL.weights))
    assert np.all(np.abs(preds - (X @ MODEL.weights + MODEL.intercept)) <= tol)


def test_predict_missing_and_out_of_bound_features_are_dummies(fed, neighbours, monkeypatch):
    """A target whose feature is missing or beyond the public ``feature_bound`` is neither a
    refusal nor a prediction: the feature matrix the data owner computes on (recorded
    at the core's ``run_data_owner``) is the same array with the target row as without it, so
    every output of the inference is identically distributed.  Control: exact mode refuses
    (the free bit) -- for a missing feature with ``missing="error"``; by default (issue 13) exact
    mode leaves such a row out, and reports the count of a table without it.
    (An infinite cell is refused by the data layer for every request on its column, whatever
    the filter: a broken table, not a per-query answer; SECURITY.md.)"""
    seen: list[np.ndarray] = []
    original = jobs_module.linear.run_data_owner

    def spy(t, spec, X, **kw):
        seen.append(np.array(X))
        return original(t, spec, X, **kw)

    monkeypatch.setattr(jobs_module.linear, "run_data_owner", spy)
    where = "age > 58"
    for bad in ({"chol": float("nan")}, {"chol": 5000.0}):
        with monkeypatch.context() as m:
            exact_mode(fed, m)
            strict = {"missing": "error"} if np.isnan(bad["chol"]) else {}
            neighbours(True, **bad)
            refused = _outcome(lambda s=strict: fed.predict(
                OWNER, LAB, model="risk", where=where, feature_bound=1000.0, **s))
            assert refused[0] == "refused", bad
            if strict:  # left out by default: a row with a gap counts as no row at all
                counts = []
                for present in (True, False):
                    neighbours(present, **bad)
                    counts.append(fed.predict(OWNER, LAB, model="risk", where=where,
                                              feature_bound=1000.0).n_predictions)
                assert counts[0] == counts[1], counts
        outputs = {}
        for present in (True, False):
            neighbours(present, **bad)
            p = fed.predict(OWNER, LAB, model="risk", where=where, feature_bound=1000.0)
            outputs[present] = (p.n_predictions, seen[-1])
        assert outputs[True][0] == outputs[False][0] == 64
        np.testing.assert_array_equal(outputs[True][1], outputs[False][1])


# ----------------------------------------------------------------------- cohort refusal


def one_row_apart(with_t: list[np.ndarray], without: list[np.ndarray],
                  bounds: tuple[float, float]) -> bool:
    """Two parties' pass-1 contributions ``[n, sum]``: one pair equal, the other differing by
    nothing or by exactly one row clipped to ``bounds``."""
    for a, b, c, e in ((0, 1, 0, 1), (0, 1, 1, 0), (1, 0, 0, 1), (1, 0, 1, 0)):
        if np.array_equal(with_t[a], without[c]):
            d = np.subtract(with_t[b], without[e])
            if (d[0] == 0 and d[1] == 0) or (d[0] == 1 and bounds[0] <= d[1] <= bounds[1]):
                return True
    return False



def test_cohort_refusal_oracle(fed, neighbours, monkeypatch):
    """A minimum-cohort refusal no longer reads a patient's cholesterol.

    ``id <= 4 or (id == 41 and chol < t)`` keeps 4 or 5 of ``hosp-a``'s rows: exactly the
    minimum cohort or one fewer.  Control (exact mode): the refusals read 237.4 to within 0.1
    in 11 requests, costing nothing.  Under DP: every request of the search is answered for
    both neighbours (identical refusal pattern: none), each charged exactly its rho (the
    cohort costs no extra budget), and the party's exact contribution differs between the
    neighbours by at most the target's one row -- count 1, clipped chol at most 400 -- the
    change the statistic's noise is calibrated for."""
    query = "id <= 4 or (id == 41 and chol < {t!r})"
    neighbours(True)
    with monkeypatch.context() as m:
        exact_mode(fed, m)
        refusals = []

        def refused(t: float) -> bool:
            out = _outcome(lambda: fed.compute(StatSpec("mean", ("chol",)),
                                               where=query.format(t=t)))
            refusals.append(out)
            return out[0] == "refused"

        found, _ = binary_search(lambda t: not refused(t))
        assert abs(found - TARGET_CHOL) <= 0.1
        assert any(r[0] == "refused" and "minimum cohort" in r[3] for r in refusals)
    spec = StatSpec("mean", ("chol",), dp=dp.DPRequest(rho=RHO, bounds={"chol": (0, 400)}))
    ledger = Ledger(fed.parties[OWNER].cfg.database)
    aggregates = record_pass1(monkeypatch)
    pattern, local = {}, {}
    for present in (True, False):
        neighbours(present)
        before, start = ledger.remaining(fed.analyst, OWNER), len(aggregates)
        pattern[present] = transcript(lambda t: _outcome(
            lambda: fed.compute(spec, where=query.format(t=t)))[0], steps=6)
        spent = before - ledger.remaining(fed.analyst, OWNER)
        assert spent == pytest.approx(6 * spec.dp.cost.rho, rel=1e-9)
        local[present] = aggregates[start:]
    assert pattern[True] == pattern[False] == ["answered"] * 6
    # each query's two contributions (lab's, hosp-a's; in either order): lab's is the same
    # array for both neighbours, hosp-a's differs by at most the target's clipped row
    assert len(local[True]) == len(local[False]) == 12
    for i in range(0, 12, 2):
        assert one_row_apart(local[True][i:i + 2], local[False][i:i + 2], (0.0, 400.0))
    # an empty cohort is answered too (with noise), never refused
    assert _outcome(lambda: fed.compute(spec, where="id > 1000"))[0] == "answered"


# ----------------------------------------------------------------------- missing values


def test_missing_value_oracle(fed, neighbours, monkeypatch):
    """A missing-value refusal no longer reads a patient's age.

    The target's cholesterol is missing.  ``age < t`` selects it iff its age (61.3) is below
    ``t``.  Control (exact mode): the mean of chol is refused exactly then ("missing value"),
    so 11 requests read the age to within 0.1 (over the same 200-wide range).  Under DP the
    row is dropped by the public rule: every request is answered for both neighbours, and the
    party's exact contribution is the same array with or without the target -- the released
    values are identically distributed -- and no message counts the dropped row."""
    query = "age < {t!r}"
    shift = 61.3 - TARGET_CHOL              # search the age in the same 200-wide range
    neighbours(True, chol=float("nan"))
    with monkeypatch.context() as m:
        exact_mode(fed, m)
        outcomes = []

        def refused(t: float) -> bool:
            outcomes.append(_outcome(lambda: fed.compute(
                StatSpec("mean", ("chol",)), where=query.format(t=t + shift))))
            return outcomes[-1][0] == "refused" and "missing" in outcomes[-1][3]

        found, _ = binary_search(refused)
        assert abs(found + shift - TARGET_AGE) <= 0.1
        assert any(o[0] == "refused" and "missing" in o[3] for o in outcomes)
    spec = StatSpec("mean", ("chol",), dp=dp.DPRequest(rho=RHO, bounds={"chol": (0, 400)}))
    aggregates = record_pass1(monkeypatch)
    pattern, local = {}, {}
    for present in (True, False):
        neighbours(present, chol=float("nan"))
        start = len(aggregates)
        pattern[present] = transcript(lambda t: _outcome(
            lambda: fed.compute(spec, where=query.format(t=t + shift)))[0], steps=6)
        local[present] = sorted(tuple(a) for a in aggregates[start:])
    assert pattern[True] == pattern[False] == ["answered"] * 6
    assert local[True] == local[False]


# ------------------------------------------------------------------------------ range


def test_range_oracle(fed, neighbours, monkeypatch):
    """The fixed-point range check no longer reads how many rows a filter keeps.

    Without the up-front check (control: the core's roles in the simulator, as before issue
    12) a DP mean whose bounds are wide enough is refused or served depending on the exact
    aggregate -- 40 rows near the bound overflow the ring (40 * 2.5e12 * 2^16 > 2^63 / 2), 5
    do not -- which a search over ``id <= k`` (or ``chol < t`` around a target) turns into an
    exact oracle.  Under DP the parties decide on public quantities (bounds, bits, parties,
    noise scale, the table's size): for wide bounds every request of the search is refused at
    Prepare, before any budget is reserved, for both neighbours, with the same sentence and no
    count in it; for narrower bounds every request is answered, each charged its rho."""
    wide = StatSpec("mean", ("chol",), dp=dp.DPRequest(rho=8.0, bounds={"chol": (0, 2.5e12)}))
    rng = np.random.default_rng(3)
    small = [rng.uniform(2.4e12, 2.5e12, (5, 1)), rng.uniform(2.4e12, 2.5e12, (5, 1))]
    stats.simulate(wide, small)
    with pytest.raises(EncodingRangeError):
        stats.simulate(wide, [rng.uniform(2.4e12, 2.5e12, (40, 1)), small[1]])
    ledger = Ledger(fed.parties[OWNER].cfg.database)
    query = "id <= 4 or (id == 41 and chol < {t!r})"
    narrow = replace(wide, dp=replace(wide.dp, bounds={"chol": (0, 1e11)}))
    for spec, expected in ((wide, "refused"), (narrow, "answered")):
        pattern = {}
        for present in (True, False):
            neighbours(present)
            before = ledger.remaining(fed.analyst, OWNER)
            pattern[present] = transcript(lambda t, spec=spec: _outcome(
                lambda: fed.compute(spec, where=query.format(t=t))), steps=3)
            spent = before - ledger.remaining(fed.analyst, OWNER)
            assert spent == pytest.approx(0 if expected == "refused" else 3 * 8.0, rel=1e-9)
        kinds = {present: [o[0] for o in p] for present, p in pattern.items()}
        assert kinds[True] == kinds[False] == [expected] * 3
        if expected == "refused":  # the same sentence, naming no value or count
            texts = {o[3].replace(OWNER, LAB) for p in pattern.values() for o in p}
            assert len(texts) == 1, texts
            text = next(iter(texts))
            assert "outside the range" in text
            assert set(re.findall(r"\d+", text)) <= {"1", "16", "2", "64"}, text
