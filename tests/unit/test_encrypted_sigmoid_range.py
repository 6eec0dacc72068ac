"""The encrypted sigmoid is correct over its stated range, and refused outside it.

The model owner evaluates the least-squares cubic of the sigmoid on [-5, 5] (max error 0.0608
there, :func:`smpc.ckks.sigmoid_coefficients`, asserted in ``test_linear.py``); outside that
range the cubic is no sigmoid (about -114 at a logit of 30, +115 at -30: the issue's
"probabilities from -8 to 621").  Its input range is guaranteed by the model owner's check
``||w||_1 feature_bound + |b| <= 5`` (:func:`smpc.linear.check_model`), made before anything is
sent, with a public message naming no weight.  From the CLI, the request had no way to pick the
preset with the cubic's depth: an encrypted-sigmoid spec now defaults to it.
"""

from __future__ import annotations

import numpy as np
import pytest

from smpc import ckks, linear, simulator
from smpc.encoding import EncodingRangeError


def run(spec: linear.InferenceSpec, X: np.ndarray, model: linear.LinearModel) -> np.ndarray:
    return simulator.run({
        "data": lambda t: linear.run_data_owner(t, spec, X, model_owner="model", dealer=None,
                                                tag="inf"),
        "model": lambda t: linear.run_model_owner(t, spec, model, data_owner="data",
                                                  dealer=None, tag="inf"),
    }).results["data"]


def test_the_encrypted_sigmoid_gets_the_preset_with_its_depth_by_default() -> None:
    """What the CLI sends (no preset): "sigmoid" for the encrypted sigmoid, "aggregate" for the
    rest; an explicit preset is kept."""
    enc = linear.InferenceSpec("logistic", 4, 2, backend="ckks", output="encrypted-sigmoid")
    assert enc.ckks_preset == "sigmoid"
    assert linear.InferenceSpec("logistic", 4, 2, backend="ckks").ckks_preset == "aggregate"
    kept = linear.InferenceSpec("logistic", 4, 2, backend="ckks", output="encrypted-sigmoid",
                                ckks_preset="long")
    assert kept.ckks_preset == "long"
    assert linear.InferenceSpec.from_json(enc.to_json()) == enc


def test_the_range_check_is_at_the_cubic_range_edge() -> None:
    """``||w||_1 bound + |b|`` = 5 is accepted, a hair above is refused; the public sentence
    carries no weight-derived number (the private one does, for the owner's log)."""
    spec = linear.InferenceSpec("logistic", 4, 2, backend="ckks", output="encrypted-sigmoid",
                                feature_bound=2.0)
    edge = linear.LinearModel("logistic", ("a", "b"), (1.0, -1.0), 1.0)   # 2 * 2 + 1 = 5
    linear.check_model(spec, edge)
    over = linear.LinearModel("logistic", ("a", "b"), (1.0, -1.0), 1.0 + 2**-40)
    with pytest.raises(EncodingRangeError) as ei:
        linear.check_model(spec, over)
    assert "could reach 5" in str(ei.value)
    assert ei.value.public is not None and "5.0000" not in ei.value.public
    assert ei.value.public.startswith("a logit could leave that range: the encrypted sigmoid "
                                      "is accurate only for logits in [-5, 5]")
    # the same model with the exact sigmoid at the data owner is fine
    linear.check_model(linear.InferenceSpec("logistic", 4, 2, backend="ckks",
                                            feature_bound=2.0), over)


def test_logits_beyond_the_range_are_refused_before_anything_is_sent() -> None:
    """The issue's case: logits of +-30.  Before the check the data owner received the cubic's
    values there (far outside [0, 1]); now the model owner refuses and the run fails."""
    X = np.array([[1.0, 1.0], [-1.0, -1.0], [0.5, 0.0]])
    model = linear.LinearModel("logistic", ("a", "b"), (15.0, 15.0), 0.0)
    c0, c1, _, c3 = ckks.sigmoid_coefficients()
    z = X @ model.weights
    assert (c0 + c1 * z + c3 * z**3).min() < -8 and (c0 + c1 * z + c3 * z**3).max() > 8
    spec = linear.InferenceSpec("logistic", *X.shape, backend="ckks",
                                output="encrypted-sigmoid", feature_bound=1.0)
    with pytest.raises(EncodingRangeError, match="could reach 30"):
        run(spec, X, model)


def test_within_the_range_the_output_is_a_probability_within_the_stated_error() -> None:
    """A model inside the range (``||w||_1 + |b| = 4.5`` at bound 1), no flood: every output
    within 0.0608 + the preset's CKKS bound of the exact sigmoid (the error stated in the
    README), so within [-0.061, 1.061]."""
    rng = np.random.default_rng(1313)
    X = rng.uniform(-1, 1, (64, 3))
    model = linear.LinearModel("logistic", ("a", "b", "c"), (2.0, -1.5, 0.5), 0.5)
    spec = linear.InferenceSpec("logistic", *X.shape, backend="ckks",
                                output="encrypted-sigmoid", feature_bound=1.0, flood_bits=0)
    got = run(spec, X, model)
    exact = 1 / (1 + np.exp(-(X @ model.weights + model.intercept)))
    tol = 0.0608 + ckks.get_preset("sigmoid").error_bound(weight_l1=4.0, sigmoid=True)
    assert np.abs(got - exact).max() <= tol
