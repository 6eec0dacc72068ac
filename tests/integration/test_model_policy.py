"""A model owner's policy over real nodes (processes, mutual TLS, real TenSEAL): who may run
its model, on how many rows, how often, on which rows, with how much noise -- and model
extraction with crafted rows shown to need far more rows than the policy allows.

The federation: ``clinic`` (the data owner; its table holds crafted rows beside plausible
ones, selected by ``batch``) and ``lab``, which owns one linear model per policy under test --
the same weights ``W``, ``B`` -- each with its own ``policy.models`` entry, so no test depends on
another's usage.  Rows are counted per analyst and model in the lab's own SQLite file.

Statistics (each test states its rates):

* *Released noise.*  The ss model owner adds discrete Gaussian noise of std ``sigma`` (exact
  sampler, lattice ``2^-32``; its variance is ``sigma^2`` to within 1e-7 relative) to each
  logit; the ckks flood is Gaussian of std ``sigma`` plus a CKKS error ``|e| <= E``.  For ``n``
  rows, ``||residual||_2 / sigma`` lies within ``[sqrt(q_lo) - sqrt(n) E / sigma, sqrt(q_hi) +
  sqrt(n) (E + enc) / sigma]`` where ``q_lo, q_hi`` are the chi-square(n) quantiles at ``1e-6`` and
  ``1 - 1e-6`` (triangle inequality on the norm; ``enc`` the ss encoding error): false-positive
  rate 2e-6.  Power: with the noise missing the norm is below ``sqrt(n) (E + enc)``, about
  1e-4 sigma -- rejected always; with half the noise, ``n / 4`` lies below ``q_lo`` (n = 300:
  75 against 196) except with probability below 1e-30.
* *Per-row accuracy.*  ``|prediction - (x w + b)| <= bound + Z sigma`` (tests/tolerances.py:
  ``Z = 6``, ``P(|N(0,1)| > 6) = 2e-9`` per row; 200 rows: 4e-7).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from parties.analyst.client import Client
from parties.config import ModelPolicy, load_party_config, save_config
from parties.errors import PermissionDenied, RemoteError
from parties.federation import local as federation
from parties.privacy.audit import AuditLog
from parties.privacy.models import ModelUsage, least_squares_error_floor, rows_for_precision
from parties.privacy.outputs import read_output
from smpc import ckks, linear
from smpc.linear import LinearModel
from tests.tolerances import Z, assert_within, ckks_kept_key_bound, ss_logit_bound

from .conftest import write_csv

FEATURES = ("x1", "x2", "x3")
W = (0.8, -1.2, 0.5)
B = 2.0
BOUNDS = {"x1": (18.0, 95.0), "x2": (15.0, 55.0), "x3": (80.0, 220.0)}
RANGES = np.array([hi - lo for lo, hi in BOUNDS.values()])
EXTRACT_SIGMA = 0.5
ATTACK_BATCHES = (1, 2, 3)         # 100 plausible rows each: the whole budget of the attack
ATTACK_ROWS = 100
CRAFTED = 12                       # unit vectors e1, e2, e3 and 0, three times each
LEGIT_SIGMA = 0.05
ALPHA = 1e-6
#: The precision of the exact (noise-free) unit-vector attack on ss: each weight as encoded,
#: to 2^-(f+1) with f = 16 fractional bits.
EXACT_PRECISION = 2.0 ** -17

POLICIES = {
    # the attack: its budget is the 300 plausible rows plus the 12 its refused crafted
    # attempt spends (the owner ran before the data owner refused)
    "extract": ModelPolicy(max_rows_per_request=ATTACK_ROWS, max_requests_per_day=10,
                           prediction_budget_rows=len(ATTACK_BATCHES) * ATTACK_ROWS + CRAFTED,
                           min_distinct_rows=10, feature_bounds=dict(BOUNDS),
                           max_sparse_row_fraction=0.5, prediction_noise_std=EXTRACT_SIGMA),
    # no feature bounds: plausibility by distinct rows and sparsity alone
    "legit": ModelPolicy(max_rows_per_request=1000, max_requests_per_day=100,
                         prediction_budget_rows=100_000, min_distinct_rows=10,
                         max_sparse_row_fraction=0.5, prediction_noise_std=LEGIT_SIGMA),
    "rate": ModelPolicy(max_requests_per_day=2, prediction_noise_std=LEGIT_SIGMA),
    "rows": ModelPolicy(max_rows_per_request=20, prediction_noise_std=LEGIT_SIGMA),
    "budget": ModelPolicy(prediction_budget_rows=50, prediction_noise_std=LEGIT_SIGMA),
    "nobody": ModelPolicy(allowed_analysts=(), prediction_noise_std=LEGIT_SIGMA),
}


def clinic_table(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The data owner's table: crafted batches 0 and -1, plausible batches 1..6."""
    blocks: list[tuple[float, np.ndarray]] = []
    unit = np.vstack([np.eye(3), np.zeros((1, 3))])
    blocks.append((0, np.tile(unit, (3, 1))))                       # 12 rows, 4 distinct
    scaled = np.vstack([np.eye(3)[j] * (20.0 + k) for j in range(3) for k in range(4)])
    blocks.append((-1, scaled))                                     # 12 distinct, all sparse
    lo = np.array([b[0] for b in BOUNDS.values()])
    for batch in ATTACK_BATCHES:  # the strongest plausible design: jittered box corners
        corner = rng.integers(0, 2, (ATTACK_ROWS, 3))
        jitter = rng.uniform(0, 0.01, (ATTACK_ROWS, 3))
        blocks.append((batch, lo + RANGES * np.abs(corner - jitter)))
    blocks.append((5, lo + RANGES * rng.uniform(0, 1, (30, 3))))    # 30 ordinary rows
    blocks.append((6, lo + RANGES * rng.uniform(0, 1, (200, 3))))   # 200 ordinary rows
    X = np.vstack([b for _, b in blocks])
    batch = np.concatenate([np.full(len(b), k, dtype=float) for k, b in blocks])
    return {"x1": X[:, 0], "x2": X[:, 1], "x3": X[:, 2], "batch": batch}


class MFed:
    def __init__(self, directory: Path, table: dict[str, np.ndarray]) -> None:
        self.directory = directory
        self.lay = federation.Layout(directory)
        self.table = table
        self.client = Client(directory, timeout=60, parties=("clinic", "lab"))

    def rows(self, batch: int) -> np.ndarray:
        sel = self.table["batch"] == batch
        return np.column_stack([self.table[f][sel] for f in FEATURES])

    def predict(self, model: str, batch: int, backend: str = "ss") -> np.ndarray:
        """The predictions of ``model`` on ``batch``, as the data owner reads them."""
        p = self.client.predict("clinic", "lab", model=model, where=f"batch == {batch}",
                                backend=backend)
        out = read_output(self.lay.config("clinic"), p.output_path).decode().splitlines()
        return np.array([float(r["prediction"]) for r in csv.DictReader(out)])

    def usage(self, model: str) -> tuple[int, int]:
        st = ModelUsage(self.lay.node_dir("lab") / "party.db").status("analyst", model)
        return st.rows, st.requests_in_window

    def refusals(self, party: str, needle: str) -> list[dict]:
        log = AuditLog(self.lay.node_dir(party) / "party.db", chain_only=True)
        return [r.event for r in log.records(limit=None)
                if r.event.get("outcome") in ("refused", "failed")
                and needle in str(r.event.get("reason", ""))]


@pytest.fixture(scope="module")
def mfed(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    table = clinic_table(np.random.default_rng(20261201))
    write_csv(root / "clinic.csv", table)
    write_csv(root / "lab.csv", {"y": np.arange(12.0)})
    model_files = []
    for name in POLICIES:
        path = root / f"{name}.json"
        path.write_text(json.dumps(LinearModel("linear", FEATURES, W, B).to_json()))
        model_files.append(path)
    d = root / "federation"
    lay = federation.init_federation(d, [root / "clinic.csv", root / "lab.csv"],
                                     names=["clinic", "lab"], models={"lab": model_files},
                                     min_cohort_size=4, allow_exact=["clinic"])
    # the clinic (the data owner) allows exact answers so that an inference covers the rows
    # its filter selects: under a DP policy it would pad every inference to 1,024 rows
    # (tests/unit/test_dp_oracles.py), beyond these models' max_rows_per_request; the lab
    # (the model owner) keeps its models' policies, the subject of these tests
    cfg = load_party_config(lay.config("lab"))
    cfg.policy.models = dict(POLICIES)
    save_config(cfg, lay.config("lab"))
    federation.up(d, timeout=60)
    f = MFed(d, table)
    try:
        yield f
    finally:
        f.client.close()
        federation.down(d)


def refused(fn, *needles: str, kind: type[RemoteError] = PermissionDenied,
            node: str = "lab") -> str:
    """Run ``fn``; it must fail with ``kind`` (the gRPC status the analyst sees), blamed on
    ``node``, with every one of ``needles`` in its one-line error."""
    with pytest.raises(RemoteError) as info:
        fn()
    err = info.value
    assert isinstance(err, kind), repr(err)
    assert err.node == node, (err.node, str(err))
    text = str(err)
    assert "\n" not in text
    for n in needles:
        assert n in text, text
    return text


def data_owner_refused(fn, *needles: str) -> str:
    """A refusal by the data owner's plausibility check (at Run, before it sends anything):
    PERMISSION_DENIED, blamed on the data owner."""
    return refused(fn, *needles, node="clinic")


def residual_norm_bounds(n: int, sigma: float, slack: float) -> tuple[float, float]:
    """``||residual||_2`` within these except with probability 2e-6 (module docstring)."""
    q_lo = scipy_stats.chi2.ppf(ALPHA, n)
    q_hi = scipy_stats.chi2.isf(ALPHA, n)
    return (math.sqrt(q_lo) * sigma - math.sqrt(n) * slack,
            math.sqrt(q_hi) * sigma + math.sqrt(n) * slack)


# ------------------------------------------------------------------------------ the attack


def test_model_extraction_with_unit_vector_rows(mfed):
    """The issue's attack: a data owner crafts unit-vector rows to read the weights off one
    prediction.  Caught: rows outside the model owner's feature bounds are refused by the data
    owner before it sends anything (the refused attempt still spends its 12 rows: the owner
    ran); with plausible rows, the strongest design in the bounds (jittered corners) and every
    row the budget allows (300), least squares is left with an error the noise dictates --
    and the next request is refused by the budget.

    Derivation (SECURITY.md, "Model owners' policy"): the least-squares error of weight ``j``
    is Gaussian with std ``s_j = sigma sqrt([(X~^T X~)^-1]_jj)`` (``X~``: the rows and a ones
    column), and ``s_j >= 2 sigma / (sqrt(N) R_j)`` for any rows within ranges ``R_j``.  Exact
    extraction (each weight to ``2^-17``, what the noise-free attack gets) then needs
    ``4 sigma^2 / (2^-34 R_j^2)`` rows: over 2,800 times the budget here.
    Would fail: plausibility not checked (the crafted request succeeds), no noise or less
    than stated (the residual check; power ~1, false-positive rate 2e-6), no budget (the last
    request served), the floor derived wrong (``s_j`` below it on the real rows).
    """
    data_owner_refused(lambda: mfed.predict("extract", 0),
                       "clinic refuses to run model 'extract'", "feature_bounds")
    assert mfed.refusals("clinic", "feature_bounds"), "the data owner did not audit it"
    assert mfed.usage("extract") == (CRAFTED, 1)

    X = np.vstack([mfed.rows(b) for b in ATTACK_BATCHES])
    y = np.concatenate([mfed.predict("extract", b) for b in ATTACK_BATCHES])
    n = len(y)
    assert n == 300 and mfed.usage("extract") == (CRAFTED + n, 1 + len(ATTACK_BATCHES))
    exact = X @ np.array(W) + B
    # the released noise is there, with the stated std
    enc = float(ss_logit_bound(np.array(W), B, X).max())
    lo, hi = residual_norm_bounds(n, EXTRACT_SIGMA, enc)
    assert lo <= np.linalg.norm(y - exact) <= hi

    # the attacker's least squares, on everything the policy allowed
    Xt = np.column_stack([X, np.ones(n)])
    est = np.linalg.lstsq(Xt, y, rcond=None)[0]
    # positive control: the same estimator on exact predictions recovers the model
    noiseless = np.linalg.lstsq(Xt, exact, rcond=None)[0]
    assert np.allclose(noiseless, [*W, B], rtol=0, atol=1e-9)
    cov = EXTRACT_SIGMA**2 * np.linalg.inv(Xt.T @ Xt)
    s = np.sqrt(np.diag(cov))
    floor = least_squares_error_floor(EXTRACT_SIGMA, n, RANGES)
    assert np.all(s[:3] >= floor * (1 - 1e-9)), (s, floor)
    # the error is what that covariance says: Mahalanobis^2 ~ chi2(4), two-sided at 1e-6
    err = est - np.array([*W, B])
    m2 = float(err @ np.linalg.solve(cov, err))
    assert scipy_stats.chi2.ppf(ALPHA, 4) <= m2 <= scipy_stats.chi2.isf(ALPHA, 4), m2
    # exact extraction needs far more rows than the budget
    budget = POLICIES["extract"].prediction_budget_rows
    need = min(rows_for_precision(EXTRACT_SIGMA, EXACT_PRECISION, r) for r in RANGES)
    assert need > 1e3 * budget, need   # 876,000 rows: 2,800 times the budget

    # and the budget is spent: the next request is refused at Prepare, naming the limit
    text = refused(lambda: mfed.predict("extract", 5), "prediction_budget_rows",
                   "has 0 left of model 'extract'")
    assert "lab" in text
    assert mfed.usage("extract") == (CRAFTED + n, 1 + len(ATTACK_BATCHES))
    assert mfed.refusals("lab", "prediction_budget_rows")


def test_model_extraction_with_repeated_or_sparse_rows_is_refused(mfed):
    """Without feature bounds, the data owner still refuses rows repeated (4 distinct among
    12: ``min_distinct_rows``) or sparse (12 distinct scaled unit vectors:
    ``max_sparse_row_fraction``), naming the requirement and no value.  Would fail: either
    check missing, or a refusal that echoes the rows."""
    for batch, rule in ((0, "min_distinct_rows"), (-1, "max_sparse_row_fraction")):
        text = data_owner_refused(lambda b=batch: mfed.predict("legit", b),
                                  "clinic refuses to run model 'legit'", rule)
        assert not any(f"{v}.0" in text for v in (20, 21, 22, 23))  # no crafted value
        assert mfed.refusals("clinic", rule)


# ------------------------------------------------------------------------------ the limits


def test_a_model_nobody_may_run_is_refused_before_anything_is_reserved(mfed):
    """``allowed_analysts: []``: refused at the owner's Prepare, named, audited, nothing
    counted.  Would fail: the per-model analyst list ignored."""
    refused(lambda: mfed.predict("nobody", 5), "lab refuses", "may not run model 'nobody'",
            "policy.models.nobody.allowed_analysts")
    assert mfed.usage("nobody") == (0, 0)
    assert mfed.refusals("lab", "policy.models.nobody.allowed_analysts")


def test_rows_per_request_limit(mfed):
    """30 rows against ``max_rows_per_request: 20``: refused, named, nothing counted.  Would
    fail: the declared size not checked against the model's limit."""
    refused(lambda: mfed.predict("rows", 5), "covers 30 rows",
            "at most 20 per request (policy.models.rows.max_rows_per_request)")
    assert mfed.usage("rows") == (0, 0)
    assert mfed.refusals("lab", "policy.models.rows.max_rows_per_request")


def test_requests_per_day_limit(mfed):
    """``max_requests_per_day: 2``: two served, the third refused naming the limit.  Would
    fail: requests not counted, or counted outside the window."""
    for _ in range(2):
        assert len(mfed.predict("rate", 5)) == 30
    refused(lambda: mfed.predict("rate", 5), "ran model 'rate' 2 times in the last 24 hours",
            "policy.models.rate.max_requests_per_day")
    assert mfed.usage("rate") == (60, 2)
    assert mfed.refusals("lab", "policy.models.rate.max_requests_per_day")


def test_prediction_budget_limit(mfed):
    """``prediction_budget_rows: 50``: 30 rows served, the next 30 refused with 20 left.
    Would fail: rows not summed per analyst and model."""
    assert len(mfed.predict("budget", 5)) == 30
    refused(lambda: mfed.predict("budget", 5), "covers 30 rows",
            "has 20 left of model 'budget'", "policy.models.budget.prediction_budget_rows")
    assert mfed.usage("budget") == (30, 1)


# ------------------------------------------------------------------- a legitimate user


@pytest.mark.parametrize("backend", ["ss", "ckks"])
def test_predictions_stay_accurate_within_the_stated_noise(mfed, backend):
    """200 ordinary rows: every prediction within ``bound + Z sigma`` of numpy's (false-positive
    rate 4e-7), and the residuals carry noise of std sigma (2e-6; power ~1 against no noise
    or half of it).  ss: ``bound`` is the encoding bound; ckks: the flood is the policy's
    sigma (above the CKKS flood of 0.0078) and ``bound`` the CKKS error.  Would fail: noise
    larger than stated (accuracy), missing or smaller (residuals), the ckks flood not tied
    to the policy."""
    X = mfed.rows(6)
    got = mfed.predict("legit", 6, backend=backend)
    want = X @ np.array(W) + B
    w = np.array(W)
    if backend == "ss":
        bound = ss_logit_bound(w, B, X)
        slack = float(bound.max())
    else:
        spec = linear.InferenceSpec("linear", len(X), 3, backend="ckks")
        assert linear.model_flood_std(spec, w) < LEGIT_SIGMA
        # the evaluation's and the flood's CKKS errors (the flood's std is the policy's), and
        # the data owner's release under its kept key (tests.tolerances.ckks_kept_key_bound):
        # its flood adds in quadrature to the policy's noise, its rounding at most g / 2
        rel = ckks.release_parameters(ckks.get_preset(spec.ckks_preset))
        sigma = math.hypot(LEGIT_SIGMA, rel.flood_std)
        bound = ckks_kept_key_bound(w, spec.ckks_preset, LEGIT_SIGMA) - Z * sigma
        slack = float(bound)
        assert_within(got, want, bound + Z * sigma, "predictions")
        lo, hi = residual_norm_bounds(len(X), sigma, slack)
        assert lo <= np.linalg.norm(got - want) <= hi
        return
    assert_within(got, want, bound + Z * LEGIT_SIGMA, "predictions")
    lo, hi = residual_norm_bounds(len(X), LEGIT_SIGMA, slack)
    assert lo <= np.linalg.norm(got - want) <= hi
