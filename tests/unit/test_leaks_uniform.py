"""Statistical privacy tests: what a recipient or a peer receives is uniform, independent, fresh.

With FIXED inputs, run a protocol several times in the simulator, record every
payload (:mod:`tests.unit.leakscan`) and test, with chi-square tests on bytes
(:mod:`tests.unit.uniformity`):

* the ``ss`` sum-shares the recipient receives from each party are uniform
  over Z_2^64, any two of them (= any n-1 of the n = 3) are jointly uniform,
  their difference and XOR are uniform, and they change from session to
  session (the difference between sessions is uniform, no element repeats);
* the Beaver openings ``x - a`` of ``ss`` inference and of a three-party
  product with dealer truncation are uniform and fresh for fixed ``x``, and
  the dealer's correction (the last party's share of ``c`` and of ``r >> f``)
  is uniform.

False positives: every chi-square statistic is compared with its exact
``1 - 1e-9`` quantile (``uniformity.ALPHA``); this module computes fewer than
100, so it fails on a correct implementation with probability below 1e-7.
Power: every targeted bug (an unmasked value, a mask reused across parties or
sessions) puts all samples of the tested byte on at most a few cells, where
the statistic exceeds 1e4 against a threshold of about 435 -- rejection is
certain (see :mod:`tests.unit.uniformity`).  An element repeating between two
sessions has probability 2^-64 per pair with fresh masks.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from smpc import beaver, sharing
from smpc.encoding import FixedPoint
from smpc.linear import InferenceSpec, LinearModel
from smpc.stats import StatSpec

from . import leakscan
from .leakscan import PARTIES, RECIPIENT
from .uniformity import assert_jointly_uniform, assert_uniform

K = 16  # covariance columns: pass 1 has 1 + K words, the spread pass K, pass 2 K + K(K+1)/2

SPECS = {
    # one pass, 2049 words per party and session
    "quantiles": (StatSpec("quantiles", ("v",), probabilities=(0.5,), bounds=(0.0, 1.0),
                           resolution=2048), 4),
    # two passes and the spread pass, 185 words per party and session
    "cov": (StatSpec("cov", tuple(f"c{j}" for j in range(K))), 32),
}


def _fixed_tables(columns: int) -> list[np.ndarray]:
    rng = np.random.default_rng(31337)
    return [rng.normal(100 * (k + 1), 30, (400 + 50 * k, columns)) for k in range(3)]


def _sum_shares(name: str) -> dict[str, np.ndarray]:
    """party -> (sessions, words) array of the sum-shares the recipient received."""
    spec, sessions = SPECS[name]
    tables = _fixed_tables(len(spec.value_columns))
    out: dict[str, list[np.ndarray]] = {p: [] for p in PARTIES}
    for _ in range(sessions):
        _sim, messages = leakscan.record(leakscan.stat_roles(spec, tables))
        for p in PARTIES:
            parts = [m.payload for m in leakscan.select(messages, sender=p, to=RECIPIENT,
                                                        suffix="/sum-share")]
            # exact two-pass statistics: pass 1, the spread pass, the moment pass
            assert len(parts) == (1 if spec.passes == 1 else 3)
            out[p].append(np.concatenate(parts))
    return {p: np.vstack(v) for p, v in out.items()}


@pytest.fixture(scope="module", params=list(SPECS))
def sum_shares(request: pytest.FixtureRequest) -> dict[str, np.ndarray]:
    return _sum_shares(request.param)


def test_sum_shares_are_uniform(sum_shares: dict[str, np.ndarray]) -> None:
    """Each party's sum-share, as the recipient receives it, is uniform over Z_2^64.

    Catches a party sending its encoded aggregate as its sum-share (or any
    share whose mask was dropped): fixed-point aggregates have a top byte of
    0x00 or 0xFF, never uniform.
    """
    for p, shares in sum_shares.items():
        assert_uniform(shares, f"sum-shares of {p}")


def test_any_two_sum_shares_are_independent(sum_shares: dict[str, np.ndarray]) -> None:
    """Any n-1 = 2 of the 3 sum-shares are jointly uniform; differences and XORs are uniform.

    Catches two parties' sum-shares masked by the same (or related) masks:
    the recipient would then read ``a_i - a_j`` from their difference.
    """
    for i, j in itertools.combinations(PARTIES, 2):
        u, v = sum_shares[i], sum_shares[j]
        assert_jointly_uniform(u, v, f"sum-shares of {i} and {j}")
        assert_uniform(u - v, f"sum-share of {i} minus that of {j}")
        assert_uniform(u ^ v, f"sum-share of {i} xor that of {j}")


def test_sum_shares_are_fresh_in_every_session(sum_shares: dict[str, np.ndarray]) -> None:
    """With the same inputs, a party's sum-shares of two sessions are unrelated.

    Catches masks reused across sessions (a deterministic or cached seed,
    sum-shares not re-randomised): the difference between sessions would be
    zero -- or reveal how the party's aggregate changed.
    """
    for p, shares in sum_shares.items():
        assert_uniform(shares[1:] - shares[:-1], f"session-to-session change of {p}'s share")
        for r, s in itertools.combinations(range(len(shares)), 2):
            assert not np.any(shares[r] == shares[s]), f"{p}: a word repeats between sessions"


# ---------------------------------------------------------------------------- Beaver openings

M, D = 1024, 4


def _inference_openings(sessions: int = 4) -> dict[str, np.ndarray]:
    """Per session, what each owner sends in the Beaver opening, their sum, and z."""
    rng = np.random.default_rng(2718)
    X = rng.uniform(-900, 900, (M, D))
    model = LinearModel("linear", ("f0", "f1", "f2", "f3"), (0.75, -0.5, 0.25, 1.5), 3.0)
    spec = InferenceSpec("linear", M, D, feature_bound=900.0)
    got: dict[str, list[np.ndarray]] = {"data": [], "model": [], "opened": [], "z": []}
    for _ in range(sessions):
        _sim, messages = leakscan.record(leakscan.inference_roles(spec, X, model))
        (mine,) = leakscan.select(messages, sender="data", suffix="/de")
        (theirs,) = leakscan.select(messages, sender="model", suffix="/de")
        (z,) = leakscan.select(messages, sender="model", suffix="/z")
        got["data"].append(mine.payload)
        got["model"].append(theirs.payload)
        got["opened"].append(mine.payload + theirs.payload)
        got["z"].append(z.payload)
    return {k: np.vstack(v) for k, v in got.items()}


def test_inference_openings_are_uniform_and_fresh() -> None:
    """``ss`` inference: each owner's opening, the opened ``(X - a, w - b)`` and the model
    owner's output share are uniform, and the opening changes every session.

    Fixed ``X`` and ``w`` over 4 sessions (4100 opened words and 1024 output
    words each).  Catches a Beaver opening sent without its mask (``x`` for
    ``x - a``: the opened value is then ``X`` itself, the same every
    session), a triple reused across sessions, and an output share that is
    not masked by the triple's ``c``.
    """
    got = _inference_openings()
    for key in ("data", "model", "opened", "z"):
        assert_uniform(got[key], f"inference {key}")
    opened = got["opened"]
    assert_uniform(opened[1:] - opened[:-1], "session-to-session change of the opening")
    for r, s in itertools.combinations(range(len(opened)), 2):
        assert not np.any(opened[r] == opened[s]), "an opened word repeats between sessions"


def test_three_party_product_openings_are_uniform_for_a_fixed_input() -> None:
    """``beaver.mul`` among 3 parties with dealer truncation, on constant ``x`` and ``y``:
    every opening a party sends, the opened ``x - a`` / ``y - b`` and the opened
    truncation value ``c = z + 2^l + r`` are uniform, and so are both parts of the
    correction the dealer sends the last party (its share of ``c`` and of ``r >> f``).

    Catches an opening without its mask (every opened word would equal the
    constant), a truncation opening without ``r``, and a dealer sending the last
    party the whole ``c = a * b`` (the low byte of a product of uniform words is far
    from uniform -- odd with probability 1/4 --: a statistic near 0.55 N = 4500 on
    byte 0, measured, against 415) or the whole ``r >> f`` (its
    top 16 bits are 0: byte 7 on one cell) instead of a share.  The product itself is
    checked too (within one ulp of truncation plus the encoding error of
    ``(|x| + |y|) 2^-17``), so the run is the real protocol.
    """
    n = 8192
    codec = FixedPoint(16)
    x, y = np.full(n, 123.456), np.full(n, -78.9012)
    parties = list(PARTIES)
    requests = [beaver.TripleRequest.mul(n), beaver.TruncRequest(n)]
    xs, ys = sharing.share(codec.encode(x), 3), sharing.share(codec.encode(y), 3)

    def party(i: int):
        def role(t):
            triple, pair = beaver.receive(t, "dealer", parties, requests, "mul/deal")
            return beaver.mul(t, parties, triple, xs[i], ys[i], "mul", pair=pair)
        return role

    roles = {p: party(i) for i, p in enumerate(parties)}
    roles["dealer"] = lambda t: beaver.deal(t, parties, requests, "mul/deal")
    sim, messages = leakscan.record(roles)
    product = codec.decode(sharing.reconstruct([sim.results[p] for p in parties]))
    assert np.all(np.abs(product - x * y) <= 2.0**-16 + (abs(x) + abs(y)) * 2.0**-17)
    for suffix in ("/de", "/trunc/0"):
        sent = {m.sender: m.payload for m in leakscan.select(messages, to="p1", suffix=suffix)}
        sent["p1"] = leakscan.select(messages, sender="p1", to="p0", suffix=suffix)[0].payload
        for p, payload in sent.items():
            assert_uniform(payload, f"{p}'s opening {suffix}")
        assert_uniform(sum(sent.values()), f"opened value {suffix}")
    (correction,) = leakscan.select(messages, sender="dealer", suffix="/correction")
    assert correction.to == parties[-1] and correction.payload.size == n + requests[1].total
    assert_uniform(correction.payload[:n], "the last party's share of c")
    assert_uniform(correction.payload[n:], "the last party's share of r >> f")
