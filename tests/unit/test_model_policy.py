"""The pieces of a model owner's policy (:mod:`parties.privacy.models`) on their own: the usage
ledger in a real SQLite file, the data owner's plausibility check, the extraction floor.
The whole path over real nodes is ``tests/integration/test_model_policy.py``."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from parties.config import ModelPolicy, PolicyConfig
from parties.errors import LimitExceeded, PolicyError
from parties.privacy.models import (
    DAY_SECONDS,
    ModelGate,
    ModelUsage,
    ModelUsageError,
    Requirements,
    check_plausible,
    least_squares_error_floor,
    rows_for_precision,
)

FEATURES = ("age", "bmi")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def gate(tmp_path: Path, clock: Clock | None = None, **fields) -> ModelGate:
    policy = PolicyConfig(["age", "bmi"], ["ann", "bob"], models={"m": ModelPolicy(**fields)})
    return ModelGate("lab", policy, ModelUsage(tmp_path / "party.db", clock or Clock()))


# ------------------------------------------------------------------------------ the ledger


def test_concurrent_requests_cannot_both_take_the_last_rows(tmp_path):
    """Eight threads each reserve 10 of the last 10 rows at once: exactly one succeeds, the
    others are refused naming the budget.  Catches a check and insert in two transactions."""
    g = gate(tmp_path, prediction_budget_rows=10)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def go(i: int) -> None:
        barrier.wait()
        try:
            g.reserve(f"s{i}", "ann", "m", 10)
            outcomes.append("ok")
        except LimitExceeded as exc:
            outcomes.append(exc.limit)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok"] + ["prediction_budget_rows"] * 7
    assert g.usage.status("ann", "m").rows == 10


def test_budget_and_window_are_per_analyst_and_model_and_the_window_rolls(tmp_path):
    """Two requests a day: the third is refused; another analyst is not; 24 hours after the
    first the window frees one request, but the row budget never rolls.  Catches a window
    that never expires, one shared by analysts, or a budget that resets."""
    clock = Clock()
    g = gate(tmp_path, clock, max_requests_per_day=2, prediction_budget_rows=25)
    g.reserve("a1", "ann", "m", 10)
    clock.now += 3600
    g.reserve("a2", "ann", "m", 10)
    with pytest.raises(LimitExceeded, match=r"2 times in the last 24 hours.*"
                       r"policy\.models\.m\.max_requests_per_day"):
        g.reserve("a3", "ann", "m", 1)
    g.reserve("b1", "bob", "m", 10)                      # bob has his own window and budget
    clock.now += DAY_SECONDS - 3600 + 1                  # a1 leaves the window, a2 stays
    assert g.usage.status("ann", "m").requests_in_window == 1
    with pytest.raises(LimitExceeded, match=r"has 5 left of model 'm'"):
        g.reserve("a4", "ann", "m", 10)
    g.reserve("a5", "ann", "m", 5)
    assert g.usage.status("ann", "m").rows == 25
    clock.now += DAY_SECONDS                             # a fresh window, an empty budget
    with pytest.raises(LimitExceeded, match=r"covers 1 rows; analyst 'ann' has 0 left"):
        g.precheck("ann", "m", 1)                        # refused before the model loads
    with pytest.raises(LimitExceeded, match="has 0 left"):
        g.reserve("a6", "ann", "m", 1)


def test_a_use_is_refunded_only_before_it_runs_and_a_crash_keeps_it(tmp_path):
    """PENDING -> SPENT at Run; a refund after that is refused (False) and the rows stay;
    a refunded use cannot run; a PENDING use found at start counts as spent.  Catches rows
    given back after the model ran, or a refunded session that still runs."""
    g = gate(tmp_path, prediction_budget_rows=100)
    g.reserve("s1", "ann", "m", 30)
    g.usage.commit("s1")
    g.usage.commit("s1")                                   # idempotent once spent
    assert g.usage.refund("s1", "too late") is False
    g.reserve("s2", "ann", "m", 30)
    assert g.usage.refund("s2", "aborted before Run") is True
    with pytest.raises(ModelUsageError, match="must not run"):
        g.usage.commit("s2")
    g.reserve("s3", "ann", "m", 30)
    assert ModelUsage(tmp_path / "party.db").recover() == ["s3"]   # a restart
    assert g.usage.refund("s3", "after the crash") is False
    assert g.usage.status("ann", "m").rows == 60
    with pytest.raises(ModelUsageError, match="already used"):
        g.reserve("s1", "ann", "m", 1)                             # a session id once


def test_who_and_rows_per_request_are_refused_before_any_usage_is_read(tmp_path):
    """``allowed_analysts`` narrows the party's analysts; rows beyond
    ``max_rows_per_request`` are refused; both name the field.  Catches either check
    skipped."""
    g = gate(tmp_path, allowed_analysts=("bob",), max_rows_per_request=50)
    with pytest.raises(PolicyError, match=r"analyst 'ann' may not run model 'm' "
                       r"\(policy\.models\.m\.allowed_analysts\)"):
        g.precheck("ann", "m", 10)
    with pytest.raises(LimitExceeded, match=r"covers 51 rows.*at most 50 per request"):
        g.precheck("bob", "m", 51)
    assert g.precheck("bob", "m", 50).max_rows_per_request == 50


# ------------------------------------------------------------------------ plausible rows


def requirements(**fields) -> Requirements:
    mp = ModelPolicy(feature_bounds={"age": (18.0, 95.0)}, min_distinct_rows=3, **fields)
    return Requirements.from_bytes(Requirements.of("m", FEATURES, mp).to_bytes(), "lab")


def test_plausibility_bounds_are_inclusive_and_refusals_carry_no_value():
    """A value exactly on a bound is served, one ulp outside is refused naming the feature
    and the bound but not the value.  Catches an exclusive bound or an echoed value."""
    rows = np.array([[18.0, 20.0], [95.0, 21.0], [50.0, 22.0]])
    check_plausible(requirements(), FEATURES, rows, me="clinic", owner="lab")
    bad = rows.copy()
    bad[0, 0] = np.nextafter(18.0, 0.0)
    with pytest.raises(PolicyError) as info:
        check_plausible(requirements(), FEATURES, bad, me="clinic", owner="lab")
    text = str(info.value)
    assert "feature 'age'" in text and "[18, 95] (feature_bounds)" in text
    assert "17.99" not in text and repr(bad[0, 0]) not in text


def test_plausibility_refuses_repeats_sparse_rows_and_reordered_features():
    """Fewer distinct rows than required; more sparse rows (at most one nonzero) than
    allowed; features not in the model's order (a coordinator that permutes columns).
    Catches each check missing."""
    req = requirements(max_sparse_row_fraction=0.5)
    repeated = np.array([[20.0, 20.0]] * 5 + [[21.0, 20.0]])
    with pytest.raises(PolicyError, match="fewer than 3 distinct rows"):
        check_plausible(req, FEATURES, repeated, me="clinic", owner="lab")
    sparse = np.array([[20.0, 0.0], [21.0, 0.0], [22.0, 5.0], [23.0, 0.0]])
    with pytest.raises(PolicyError, match="max_sparse_row_fraction"):
        check_plausible(req, FEATURES, sparse, me="clinic", owner="lab")
    fine = np.array([[20.0, 1.0], [21.0, 0.0], [22.0, 5.0], [23.0, 7.0]])
    check_plausible(req, FEATURES, fine, me="clinic", owner="lab")
    half = np.array([[20.0, 0.0], [21.0, 0.0], [22.0, 5.0], [23.0, 7.0]])   # exactly 0.5
    check_plausible(req, FEATURES, half, me="clinic", owner="lab")
    two_rows = np.array([[20.0, 21.0], [22.0, 23.0]] * 3)    # 4 distinct values, 2 rows
    with pytest.raises(PolicyError, match="fewer than 3 distinct rows"):
        check_plausible(req, FEATURES, two_rows, me="clinic", owner="lab")
    # a one-feature model: every row has at most one nonzero feature, and is no unit vector
    one = Requirements.of("m", ("age",), ModelPolicy(min_distinct_rows=3,
                                                      max_sparse_row_fraction=0.0))
    check_plausible(one, ("age",), np.array([[20.0], [21.0], [22.0]]), me="clinic",
                    owner="lab")
    with pytest.raises(PolicyError, match="not the model's"):
        check_plausible(req, FEATURES[::-1], fine, me="clinic", owner="lab")
    with pytest.raises(PolicyError, match="malformed model requirements"):
        Requirements.from_bytes(b'{"model": "m"}', "lab")


# ------------------------------------------------------------------------------ the floor


def test_the_least_squares_floor_holds_for_any_design_and_is_reached_at_the_corners():
    """For designs in a box, ``sigma sqrt([(X~^T X~)^-1]_jj) >= 2 sigma / (sqrt(N) R_j)``
    (the derivation in SECURITY.md); a balanced corner design reaches it exactly, so the
    floor is the attacker's best, not a loose bound.  Catches a floor derived too high (the
    corner design would beat it) or too low (not reached)."""
    rng = np.random.default_rng(12)
    lo, hi = np.array([18.0, 15.0, 80.0]), np.array([95.0, 55.0, 220.0])
    sigma, n = 0.5, 400
    floor = least_squares_error_floor(sigma, n, hi - lo)
    for _ in range(20):
        X = lo + (hi - lo) * rng.uniform(0, 1, (n, 3))
        Xt = np.column_stack([X, np.ones(n)])
        s = sigma * np.sqrt(np.diag(np.linalg.inv(Xt.T @ Xt)))[:3]
        assert np.all(s >= floor)
    corners = np.array([[(k >> b) & 1 for b in range(3)] for k in range(8)] * (n // 8))
    X = lo + (hi - lo) * corners
    Xt = np.column_stack([X, np.ones(n)])
    s = sigma * np.sqrt(np.diag(np.linalg.inv(Xt.T @ Xt)))[:3]
    assert np.allclose(s, floor, rtol=1e-9)
    assert rows_for_precision(sigma, float(floor[0]), float(hi[0] - lo[0])) == pytest.approx(n)


# ------------------------------------------------------------------ ckks: every slot flooded


def test_the_relabelled_vector_keeps_every_other_field_byte_for_byte():
    """``_with_size`` replaces only the ``sizes`` field of a ``CKKSVectorProto``: the
    ciphertexts (field 2) and the scale (field 3, a double whose bytes here read like field-1
    keys if misparsed) are kept as they are.  Catches a parser that skips a fixed-width field
    wrongly, and so drops or garbles the ciphertext or the scale."""
    import struct

    from smpc.ckks.ops import _with_size
    from smpc.errors import InputError

    scale = struct.unpack("<d", b"\x08\x01\x08\x01\x08\x01\x08\x41")[0]
    ct = b"\x0a\x01" * 3
    proto = (b"\x0a\x02\x80\x20"                       # sizes [4096], packed
             + b"\x12" + bytes([len(ct)]) + ct       # ciphertexts
             + b"\x19" + struct.pack("<d", scale))   # scale
    want = b"\x0a\x01\x03" + b"\x12" + bytes([len(ct)]) + ct + b"\x19" + struct.pack("<d", scale)
    assert _with_size(proto, 3) == want
    # sizes written unpacked (varints, wire type 0) are dropped the same way
    assert _with_size(b"\x08\x80\x20" + proto[4:], 3) == want
    with pytest.raises(InputError, match="unexpected field"):
        _with_size(proto + b"\x25\x00\x00\x00\x00", 3)   # a fixed32 field: not TenSEAL's


def raw_slots(holder, envelope: bytes) -> np.ndarray:
    """Every slot of a ciphertext, decrypted with the key holder's secret key: what a data
    owner (the key holder of an inference) can read beyond the ``n`` values it is sent."""
    import tenseal.sealapi as sealapi

    from smpc.ckks.envelope import _unwrap

    vec = _unwrap(holder.context, envelope)
    pt = sealapi.Plaintext()
    holder.context.decryptor().data.decrypt(vec.ciphertext()[0], pt)
    encoder = sealapi.CKKSEncoder(holder.context.seal_context().data)
    return np.array(encoder.decode_double(pt))


def test_model_extraction_from_replicated_ckks_slots():
    """TenSEAL replicates a vector of ``n`` values across all 4,096 slots.  A data owner who
    decrypts every slot of the flooded logits must find independent noise in each replica:
    with the flood replicated too (the bug), the replicas of a row differ only by CKKS error
    -- the evaluation's error, which depends on the weights, unflooded -- and rows crafted
    into the free slots would give noise-free differences.

    The statistic: residuals ``r_k = slot_k - (x_{k mod n} w + b)``; their sum of squares
    within the groups ``k mod n`` is ``sigma^2 chi2(4096 - n)`` under independent noise; the
    CKKS errors (each within ``E``: tests/tolerances.py) move its square root by at most
    ``2 sqrt(4096) E``.  Asserting it above ``(sqrt(q) sigma - 2 sqrt(4096) E)^2`` with
    ``q`` the chi-square quantile at 1e-6 (and below the one at ``1 - 1e-6``, so that the
    noise is not larger than stated either): false-positive rate 2e-6; with the flood
    replicated the within-group spread is at most ``2 sqrt(4096) E`` -- about 3e-4 sigma
    -- so the bug is caught always.
    """
    from scipy import stats as scipy_stats

    from smpc import ckks
    from tests.tolerances import Z, ckks_logit_bound

    rng = np.random.default_rng(7)
    n, sigma = 3, 0.1
    w, b = np.array([0.8, -1.2]), 2.0
    X = rng.uniform(10, 50, (n, 2))
    holder = ckks.KeyHolder("aggregate")
    pub = ckks.load_context(holder.public_context())
    logits = ckks.linear_combination(pub, ckks.pack_columns(holder, X), w, b)
    (flooded,) = ckks.flood_ciphertexts(pub, logits, sigma)
    slots = raw_slots(holder, flooded)
    assert len(slots) == 4096
    exact = X @ w + b
    r = slots - exact[np.arange(len(slots)) % n]
    within = sum(float(((g - g.mean()) ** 2).sum()) for g in (r[i::n] for i in range(n)))
    e = ckks_logit_bound(w, "aggregate", sigma) - Z * sigma
    lo, hi = (scipy_stats.chi2.ppf(1e-6, len(slots) - n),
              scipy_stats.chi2.isf(1e-6, len(slots) - n))
    slack = 2 * np.sqrt(len(slots)) * e
    # two-sided (false-positive rate 2e-6): independent noise, and of the stated std
    assert np.sqrt(lo) * sigma - slack <= np.sqrt(within) <= np.sqrt(hi) * sigma + slack, within
    # and the n values the data owner is sent are its predictions, within the flood
    assert np.all(np.abs(holder.decrypt([flooded], n) - exact) <= e + Z * sigma)

