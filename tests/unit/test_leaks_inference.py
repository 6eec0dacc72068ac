"""Privacy tests on the simulator for inference: what the data owner, model owner and dealer send.

The model owner holds ``w`` and ``b``, the data owner ``X``; only the data
owner may learn ``X w + b``.  Every payload every node sends is recorded
(:mod:`tests.unit.leakscan`) and checked:

* no message carries a feature, a coefficient, the intercept, a logit or a
  prediction, in float64, fixed point at 16, 24 or 32 fractional bits (the
  Beaver product carries ``2f = 32``) or text;
* ``ss``: the dealer receives only the owners' 16-byte mask seeds, the Beaver
  opening and the triple's check go only between the two owners and reveal
  neither operand, and every seed (input seeds, mask seeds and check
  challenges of both owners) is fresh per owner and per session;
* ``ckks``: two equal feature columns under the same key encrypt to
  different ciphertexts (fresh encryption randomness).

Features have ``300 <= |x| <= 1000`` and coefficients ``0.1 <= |w| <= 0.9`` so
that every searched value has at least four significant bytes in fixed point
(asserted), and a chance match is impossible (2^-64 per word and offset).
"""

from __future__ import annotations

import numpy as np
import pytest

from smpc import linear
from smpc.encoding import FixedPoint
from smpc.linear import InferenceSpec, LinearModel

from . import leakscan
from .leakscan import Message

M, D = 256, 8
FRAC_BITS = (16, 24, 32)


def _inputs() -> tuple[np.ndarray, LinearModel]:
    rng = np.random.default_rng(4242)
    X = rng.uniform(300, 1000, (M, D)) * rng.choice([-1.0, 1.0], (M, D))
    w = rng.uniform(0.1, 0.9, D) * rng.choice([-1.0, 1.0], D)
    model = LinearModel("linear", tuple(f"x{j}" for j in range(D)), tuple(w), -123.456789)
    return X, model


X, MODEL = _inputs()


def spec(backend: str) -> InferenceSpec:
    return InferenceSpec("linear", M, D, backend=backend, feature_bound=1000.0)


def run(backend: str, features: np.ndarray = X) -> tuple[np.ndarray, list[Message]]:
    sim, messages = leakscan.record(leakscan.inference_roles(spec(backend), features, MODEL))
    return sim.results["data"], messages


@pytest.mark.parametrize("backend", ["ss", "ckks"])
def test_inference_sends_no_features_weights_or_predictions(backend: str) -> None:
    """No message carries ``X``, ``w``, ``b``, the logits or the predictions.

    Catches an owner that sends its input unshared (e.g. the data owner's
    explicit share equal to ``X``, the model owner's ``w`` in the clear, an
    unencrypted column) and the model owner returning plaintext logits.
    The predictions are checked against numpy first, so that the references
    are the run's.  ``ss`` is exact up to the encoding (``smpc.beaver``): each
    product ``x_j w_j`` is off by at most ``(|x_j| + |w_j|) 2^-17 + 2^-34`` and
    the intercept (at 32 bits) by ``2^-33``; ``ckks`` carries the model owner's
    flood (Gaussian, std ``linear.model_flood_std`` = 2^-7): 8 sd.
    """
    preds, messages = run(backend)
    logits = X @ MODEL.weights + MODEL.intercept
    if backend == "ss":
        atol = (np.abs(X) + np.abs(MODEL.weights)).sum(axis=1) * 2.0**-17 + D * 2.0**-34 + 2.0**-33
    else:
        atol = np.full(M, 8 * linear.model_flood_std(spec(backend), MODEL.weights))
    assert np.all(np.abs(preds - logits) <= atol)
    refs = {"X": X, "w": MODEL.weights, "b": np.array([MODEL.intercept]), "logits": logits,
            "predictions": preds}
    wanted: dict[bytes, str] = {}
    for label, values in refs.items():
        assert leakscan.searched_elements(values, FRAC_BITS) == np.size(values), label
        wanted.update(leakscan.patterns(values, label, FRAC_BITS))
    leaks = leakscan.scan(messages, wanted)
    assert not leaks, f"inference inputs or outputs on the wire: {leaks[:8]}"
    # positive control: a column of X in the clear inside a real payload is found
    carrier = messages[-1].raw
    planted = Message("data", "model", "planted", carrier[:5] + X[:, 3].tobytes() + carrier[5:])
    assert any("float64-le X" in f for f in leakscan.scan([planted], wanted))


def test_ss_inference_routes_and_the_dealer_learns_nothing() -> None:
    """The dealer receives one 16-byte mask seed per owner and nothing else; every opening
    goes owner to owner only.

    Catches an opening, a share or an input seed routed to the dealer (the dealer knows
    every triple, so it could unmask ``x - a``), a dealer sending anything but its hello to
    each owner and one correction to the model owner, and a dealer that is sent the mask of
    one owner under the other's name (the two seeds it receives must differ from each other
    and from every seed the owners exchange).
    """
    _preds, messages = run("ss")
    to_dealer = leakscan.select(messages, to="dealer")
    assert sorted((m.sender, m.tag) for m in to_dealer) == [
        ("data", "inf/deal/seed"), ("model", "inf/deal/seed")]
    assert all(isinstance(m.payload, bytes) and len(m.payload) == 16 for m in to_dealer)
    between_owners = [m.raw for m in messages if "dealer" not in (m.sender, m.to)]
    assert to_dealer[0].raw != to_dealer[1].raw
    assert not any(m.raw in between_owners for m in to_dealer)
    assert {(m.sender, m.to, m.tag) for m in leakscan.select(messages, sender="dealer")} == {
        ("dealer", "data", "inf/deal/hello"), ("dealer", "model", "inf/deal/hello"),
        ("dealer", "model", "inf/deal/correction")}
    for suffix in ("/de", "/check/rho", "/check/sigma", "/check/challenge"):
        sent = leakscan.select(messages, suffix=suffix)
        assert {(m.sender, m.to) for m in sent} == {("data", "model"), ("model", "data")}, suffix


def test_beaver_opening_reveals_neither_operand() -> None:
    """The opened ``d = X - a`` and ``e = w - b`` share no element with ``X`` or ``w``.

    Catches a Beaver opening sent without its mask (``_beaver`` sending ``x``
    for ``x - a``): the two owners' openings then add up to ``X`` and ``w``
    themselves, and the model owner reads the features.  With a uniform
    ``a`` each element matches with probability 2^-64.
    """
    _preds, messages = run("ss")
    opened = sum(m.payload for m in leakscan.select(messages, suffix="/de"))
    codec = FixedPoint(16)
    x_enc, w_enc = codec.encode(X).ravel(), codec.encode(MODEL.weights)
    assert opened.shape == (x_enc.size + w_enc.size,)
    assert not np.any(opened[: x_enc.size] == x_enc)
    assert not np.any(opened[x_enc.size:] == w_enc)


def test_inference_seeds_are_fresh_per_owner_and_session() -> None:
    """Every seed of both owners is different, over 4 sessions.

    Catches the owners reusing one seed between them or a deterministic seed
    (same inputs and tag in every session), and an owner deriving its mask seed
    from something shared (if both owners' mask seeds were equal, each would know
    the other's triple shares, so ``a`` and ``b`` in full, and could unmask every
    opening -- what a dealer choosing the seeds could force before issue 11).  Per
    session: the x-seed, the w-seed, each owner's mask seed (to the dealer) and
    each owner's check challenge: 4 * 6 = 24 distinct 16-byte strings.
    """
    seeds = []
    for _ in range(4):
        _preds, messages = run("ss")
        for suffix in ("-seed", "/deal/seed", "/check/challenge"):
            for m in leakscan.select(messages, suffix=suffix):
                assert len(m.raw) == 16
                seeds.append(m.raw)
    assert len(seeds) == 24
    assert len(set(seeds)) == 24, "a seed was reused"


def _equal_byte_fraction(a: bytes, b: bytes) -> float:
    n = min(len(a), len(b))
    return float(np.mean(np.frombuffer(a[:n], np.uint8) == np.frombuffer(b[:n], np.uint8)))


def test_ckks_equal_columns_encrypt_differently() -> None:
    """Two identical feature columns under one key give unrelated ciphertexts.

    Catches encryption without fresh randomness (deterministic or cached
    ciphertexts would show the model owner which columns, or which sessions,
    carry equal data).  Fresh ciphertexts agree on ~1/256 of aligned bytes
    (compressed uniform data; equal-byte count binomial with sd ~36 around
    ~1300 for ~3e5 bytes); we require < 1/64, 100 sd away.
    """
    features = X.copy()
    features[:, 5] = features[:, 2]
    _preds, messages = run("ckks", features)
    col2 = leakscan.select(messages, suffix="/x/2/0")[0].raw
    col5 = leakscan.select(messages, suffix="/x/5/0")[0].raw
    assert col2 != col5
    assert _equal_byte_fraction(col2[64:], col5[64:]) < 1 / 64
