"""Inference guards: the owners' local checks at their edges, the flood's exact size, and
what each owner refuses from its peer (and whom it blames).

The ``ss`` protocol reveals the untruncated product at once, which is correct -- and reveals
nothing beyond the prediction -- only if ``|X w + b| < 2^(63-2f)``; two local checks
guarantee it before anything is sent, so they are tested at the exact edge.  The ``ckks``
model owner floods the logits with ``2^flood_bits E``; ``E`` must cover the evaluation's
CKKS error (which depends on ``w``), so its documented values are checked exactly (powers
of two).  A peer's malformed message must be refused with a :class:`ProtocolError` that names
that peer, not mistaken for a local input error or used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from smpc import ckks, linear, simulator
from smpc.encoding import EncodingRangeError
from smpc.errors import InputError, ProtocolError
from smpc.linear import InferenceSpec, LinearModel
from smpc.transport import Transport

ULP = 2.0**-16


def model(*coefficients: float, intercept: float = 0.0, kind: str = "linear") -> LinearModel:
    return LinearModel(kind, tuple(f"f{j}" for j in range(len(coefficients))), coefficients,
                       intercept)


# --------------------------------------------------------------------------- local checks


def test_the_data_owner_refuses_wrong_shapes_and_missing_or_non_finite_values() -> None:
    """A missing value (``None``, as from a JSON null), NaN or infinity is refused with a
    clear :class:`InputError`, as is a matrix of the wrong shape; integers are accepted."""
    spec = InferenceSpec("linear", 2, 2)
    with pytest.raises(InputError, match=r"features have shape \(2, 3\)"):
        linear.check_features(spec, np.ones((2, 3)))
    for bad in ([[1.0, None], [0.0, 0.0]], [[1.0, np.nan], [0.0, 0.0]],
                [[1.0, np.inf], [0.0, 0.0]]):
        with pytest.raises(InputError, match="NaN or infinite"):
            linear.check_features(spec, bad)  # type: ignore[arg-type]
    ok = linear.check_features(spec, [[1, 2], [3, 4]])  # type: ignore[arg-type]
    assert ok.dtype == np.float64 and ok.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_the_model_owner_refuses_a_model_with_another_feature_count() -> None:
    with pytest.raises(InputError, match="the model has 2 features, the request 3"):
        linear.check_model(InferenceSpec("linear", 4, 3), model(1.0, 2.0))


def test_the_ss_range_check_is_exact_at_its_edge() -> None:
    """``(|w| + ulp)(bound + ulp) + |b| + ulp < 2^(63-2f)`` (``2^31`` for f=16): every
    factor gets one ulp of encoding rounding, and the bound is strict.

    With ``|w| + ulp = bound + ulp = 2^10`` and ``|b| + ulp = 2^31 - 2^20`` the left side is
    exactly ``2^31`` (refused); one ulp less of intercept is accepted.  All terms are
    dyadic with at most 47 significant bits, so float64 computes them exactly.  Dropping any
    rounding margin, the intercept, or counting 3f fractional bits changes the verdict.
    """
    spec = InferenceSpec("linear", 1, 1, feature_bound=2.0**10 - ULP)
    w = 2.0**10 - ULP
    b = 2.0**31 - 2.0**20 - ULP
    with pytest.raises(EncodingRangeError, match="prediction could reach"):
        linear.check_model(spec, model(w, intercept=b))
    with pytest.raises(EncodingRangeError, match="prediction could reach"):
        linear.check_model(spec, model(-w, intercept=-b))
    linear.check_model(spec, model(w, intercept=b - ULP))
    linear.check_model(spec, model(-w, intercept=-(b - ULP)))


def test_the_ss_range_check_counts_the_prediction_noise() -> None:
    """The model owner's noise (std ``s``) takes ``NOISE_TAIL_SIGMAS * s`` of the range.

    With the edge's weight and bound and an intercept 2 below the edge's, the worst case is
    ``2^31 - 2 + ulp``: accepted without noise (a margin of ``2 - ulp``); ``s = 4`` adds
    ``12 * 4 = 48``: refused.  Subtracting the noise term, or dropping it, would accept both.
    (All terms dyadic: float64 exact.)
    """
    spec = InferenceSpec("linear", 1, 1, feature_bound=2.0**10 - ULP)
    w, b = 2.0**10 - ULP, 2.0**31 - 2.0**20 - 2.0
    linear.check_model(spec, model(w, intercept=b))
    linear.check_model(spec, model(w, intercept=b), noise_std=0.0)
    with pytest.raises(EncodingRangeError, match="prediction could reach"):
        linear.check_model(spec, model(w, intercept=b), noise_std=2.0**-6 * 16 * 16)
    assert linear.NOISE_TAIL_SIGMAS * 2.0**-6 * 16 * 16 > 2.0 - ULP


# --------------------------------------------------------------------------- the model's flood


def ckks_spec(n_features: int = 3, **kw: Any) -> InferenceSpec:
    kind = kw.pop("kind", "linear")
    return InferenceSpec(kind, 10, n_features, backend="ckks", **kw)


def test_model_flood_std_values() -> None:
    """``2^flood_bits max(E_ckks, 2^ceil(log2(2^-(scale_bits+1) d bound)))`` ("aggregate").

    Small weights, ``d * bound = 3072``: E = the preset's 2^-23, flood 2^-7 (docstring).
    ``flood_bits = 0`` disables the flood (0.0); ``flood_bits = 1`` floods with 2 E.
    ``||w||_2 = 8``: E = 3 * 9.7e-9 * 8 = 2.3e-7 -> 2^-22, flood 2^-6 (doubles beyond ~4).
    """
    small = np.array([0.5, -0.25, 1.0])
    assert linear.model_flood_std(ckks_spec(), small) == 2.0**-7
    assert linear.model_flood_std(ckks_spec(flood_bits=0), small) == 0.0
    assert linear.model_flood_std(ckks_spec(flood_bits=1), small) == 2.0**-22
    assert linear.model_flood_std(ckks_spec(), np.array([8.0, 0.0, 0.0])) == 2.0**-6


@pytest.mark.parametrize(("n_features", "bound"), [(4, 2.0**18), (3, 2.0**18)])
def test_model_flood_covers_the_weights_encoding_error(n_features: int, bound: float) -> None:
    """Large features: the plaintext weights' encoding error ``2^-41 d bound`` dominates.

    ``4 * 2^18 * 2^-41 = 2^-21`` and ``3 * 2^18 * 2^-41 = 1.5 * 2^-22``, rounded up to
    ``2^-21``: above the preset's 2^-23, so the flood is ``2^16 * 2^-21 = 2^-5``.
    """
    spec = ckks_spec(n_features, feature_bound=bound)
    assert linear.model_flood_std(spec, np.full(n_features, 0.1)) == 2.0**-5


def test_model_flood_includes_the_encrypted_sigmoid_error() -> None:
    """"sigmoid" preset, ``||w||_2 = 4``: 3 * 1.2e-8 * 4 + 2 * 1.8e-7 = 5.0e-7 -> 2^-20, so
    the flood is 2^-4; without the sigmoid's own error it would be the floor 2^-21 (2^-5)."""
    spec = ckks_spec(kind="logistic", output="encrypted-sigmoid", ckks_preset="sigmoid")
    assert linear.model_flood_std(spec, np.array([4.0, 0.0, 0.0])) == 2.0**-4


def test_model_flood_of_integer_weights_is_that_of_the_same_float_weights() -> None:
    """``model_flood_std`` takes any numeric array: integer weights of size 2^40 give the flood
    of the same float weights, ``||w||_2 = 2^40``: 3 * 9.7e-9 * 2^40 = 3.2e4 -> E = 2^15, flood
    2^31.  Squared in int64, 2^40 wraps to 0 -- an L2 norm of 0 would shrink the flood 2^38
    times, leaving the weights' CKKS error readable."""
    spec = ckks_spec()
    as_int = np.array([2**40, 0, 0])
    assert linear.model_flood_std(spec, as_int) == 2.0**31
    assert linear.model_flood_std(spec, as_int.astype(np.float64)) == 2.0**31


def test_model_flood_with_a_feature_bound_too_small_to_encode() -> None:
    """The smallest positive feature bound (5e-324, valid in a request) makes the weights'
    encoding error underflow to 0.0: the flood is the preset's (2^16 * 2^-23 = 2^-7), not an
    error (log2 of 0) and not a flood of 2^16."""
    spec = ckks_spec(feature_bound=5e-324)
    assert linear.model_flood_std(spec, np.array([0.5, -0.25, 1.0])) == 2.0**-7


# --------------------------------------------------------------------------- peers' messages


def sim(roles: dict[str, Callable[[Transport], Any]]) -> simulator.SimulationResult:
    return simulator.run(roles, timeout=10)


def data_owner(spec: InferenceSpec, X: np.ndarray) -> Callable[[Transport], Any]:
    return lambda t: linear.run_data_owner(t, spec, X, model_owner="model", dealer="dealer",
                                           tag="inf")


def model_owner(spec: InferenceSpec, m: LinearModel) -> Callable[[Transport], Any]:
    return lambda t: linear.run_model_owner(t, spec, m, data_owner="data", dealer="dealer",
                                            tag="inf")


def test_the_ckks_model_owner_checks_its_model_against_the_request() -> None:
    """A linear model asked for as a logistic one is refused on ``ckks`` too (no logits)."""
    spec = InferenceSpec("logistic", 4, 2, backend="ckks")
    with pytest.raises(InputError, match="logistic model, the model is linear"):
        sim({"data": data_owner(spec, np.ones((4, 2))), "model": model_owner(spec, model(1, 2))})


def test_the_model_owner_blames_the_data_owner_for_its_context() -> None:
    """A context that does not load, or that is another preset's, is the data owner's fault."""
    spec = InferenceSpec("linear", 4, 2, backend="ckks")
    for context, why in ((b"not a context", "sent an invalid context"),
                         (ckks.KeyHolder("sigmoid").public_context(),
                          "not the 'aggregate' preset")):
        def fake(t: Transport, context: bytes = context) -> None:
            t.send("model", "inf/ctx", context)

        with pytest.raises(ProtocolError, match=why) as caught:
            sim({"data": fake, "model": model_owner(spec, model(1, 2))})
        assert caught.value.peer == "data"


def test_oversized_ciphertexts_are_refused_as_the_senders_fault() -> None:
    """A ciphertext over ``MAX_CIPHERTEXT_BYTES`` is a :class:`ProtocolError` naming its
    sender, at the model owner (a feature column) and at the data owner (a logit)."""
    spec = InferenceSpec("linear", 4, 2, backend="ckks")
    oversized = bytes(ckks.MAX_CIPHERTEXT_BYTES + 1)

    def fake_data(t: Transport) -> None:
        t.send("model", "inf/ctx", ckks.KeyHolder("aggregate").public_context())
        t.send("model", "inf/x/0/0", oversized)

    with pytest.raises(ProtocolError, match="max") as caught:
        sim({"data": fake_data, "model": model_owner(spec, model(1, 2))})
    assert caught.value.peer == "data"

    def fake_model(t: Transport) -> None:
        t.send("data", "inf/z/0", oversized)

    with pytest.raises(ProtocolError, match="max") as caught:
        sim({"data": data_owner(spec, np.ones((4, 2))), "model": fake_model})
    assert caught.value.peer == "model"


def test_a_short_seed_is_refused_as_the_model_owners_fault() -> None:
    """``ss``: the model owner's share of ``w`` is a 16-byte seed; 8 bytes are refused."""
    spec = InferenceSpec("linear", 4, 2)

    def fake_model(t: Transport) -> None:
        t.send("data", "inf/w-seed", b"8 bytes!")

    with pytest.raises(ProtocolError, match="8-byte seed") as caught:
        sim({"data": data_owner(spec, np.ones((4, 2))), "model": fake_model})
    assert caught.value.peer == "model"


def test_a_feature_outside_the_fixed_point_range_is_named() -> None:
    """A declared bound beyond what f=16 can encode (2^47) lets a feature pass the bound
    check; encoding then refuses it, naming it as a feature, before anything is sent."""
    spec = InferenceSpec("linear", 1, 2, feature_bound=2.0**50)

    def data(t: Transport) -> Any:
        try:
            return linear.run_data_owner(t, spec, np.array([[1.0, 2.0**48]]),
                                         model_owner="model", dealer="dealer", tag="inf")
        finally:
            assert t.traffic.messages_sent == 0

    with pytest.raises(EncodingRangeError, match=r"^feature .* outside the fixed-point range"):
        sim({"data": data})


def test_the_ss_model_owner_refuses_noise_that_could_leave_the_range() -> None:
    """The model owner's role checks its model with its prediction noise before anything is
    sent: at the edge model of ``test_the_ss_range_check_counts_the_prediction_noise`` a noise
    std of 4 (12 sigma = 48 > the margin of 2) is refused at the model owner, with no noise
    the same inference runs (the data owner's predictions within the encoding bound)."""
    spec = InferenceSpec("linear", 2, 1, feature_bound=2.0**10 - ULP)
    m = model(2.0**10 - ULP, intercept=2.0**31 - 2.0**20 - 2.0)
    X = np.zeros((2, 1))

    def owner(noise: float) -> Callable[[Transport], Any]:
        return lambda t: linear.run_model_owner(t, spec, m, data_owner="data", dealer="dealer",
                                                tag="inf", noise_std=noise)

    def dealer(t: Transport) -> None:
        linear.run_dealer(t, spec, data_owner="data", model_owner="model", tag="inf")

    with pytest.raises(EncodingRangeError, match="prediction could reach"):
        sim({"data": data_owner(spec, X), "model": owner(4.0), "dealer": dealer})
    out = sim({"data": data_owner(spec, X), "model": owner(0.0), "dealer": dealer})
    preds = np.asarray(out.results["data"])
    assert np.all(np.abs(preds - m.intercept) <= 2 * ULP)
