"""Linear / logistic inference with the model and the features at different parties.

Tolerances: on ss features and weights are encoded with f=16 bits (error at
most 2^-17 each) and the product is revealed untruncated, so a logit is off by
at most (||w||_1 + ||x||_1) * 2^-17 + (d + 1) * 2^-34 -- asserted per row.  On
ckks the bound is the preset's measured linear-combination error (< 1e-7) plus the
model owner's Gaussian flooding noise (std 2^-7): asserted at 6 std.
"""

import numpy as np
import pytest

from smpc import linear, simulator
from smpc.encoding import EncodingRangeError
from smpc.errors import InputError


def make_case(rng, kind, m=257, d=7, scale=3.0):
    X = rng.normal(0, scale, (m, d))
    w = rng.normal(0, 0.5, d)
    model = linear.LinearModel(kind, tuple(f"f{i}" for i in range(d)), tuple(w), -0.75)
    return X, model


def run(spec, X, model):
    roles = {
        "data": lambda t: linear.run_data_owner(t, spec, X, model_owner="model",
                                                dealer="dealer", tag="inf"),
        "model": lambda t: linear.run_model_owner(t, spec, model, data_owner="data",
                                                  dealer="dealer", tag="inf"),
    }
    if spec.backend == "ss":
        roles["dealer"] = lambda t: linear.run_dealer(t, spec, data_owner="data",
                                                      model_owner="model", tag="inf")
    return simulator.run(roles)


def logit_tol(spec, model, X):
    if spec.backend == "ss":
        d = X.shape[1]
        l1 = np.abs(model.weights).sum() + np.abs(X).sum(axis=1)
        return l1 * 2.0**-17 + (d + 1) * 2.0**-34
    return 6 * linear.model_flood_std(spec) + 1e-6


@pytest.mark.parametrize("backend", ["ss", "ckks"])
@pytest.mark.parametrize("kind", ["linear", "logistic"])
def test_predictions_match_numpy(backend, kind):
    rng = np.random.default_rng(hash((backend, kind)) % 2**32)
    X, model = make_case(rng, kind)
    spec = linear.InferenceSpec(kind, *X.shape, backend=backend)
    sim = run(spec, X, model)
    got = sim.results["data"]
    expected = model.predict_plain(X)
    # sigmoid is 1/4-Lipschitz, so the logit bound carries over to probabilities
    assert np.all(np.abs(got - expected) <= logit_tol(spec, model, X))
    assert sim.results["model"] is None  # the model owner learns no output


@pytest.mark.parametrize("backend", ["ss", "ckks"])
def test_one_sample_and_adversarial_values(backend):
    """A single row, negative values, and features right at the declared bound."""
    X = np.array([[-1024.0, 1024.0, 0.0]])
    model = linear.LinearModel("linear", ("a", "b", "c"), (0.25, -0.5, 3.0), 10.0)
    spec = linear.InferenceSpec("linear", 1, 3, backend=backend, feature_bound=1024.0)
    got = run(spec, X, model).results["data"]
    assert np.all(np.abs(got - model.predict_plain(X)) <= logit_tol(spec, model, X))


def test_ckks_samples_beyond_one_ciphertext():
    rng = np.random.default_rng(4)
    X, model = make_case(rng, "linear", m=4096 + 9, d=3)
    spec = linear.InferenceSpec("linear", *X.shape, backend="ckks")
    got = run(spec, X, model).results["data"]
    assert np.abs(got - model.predict_plain(X)).max() <= logit_tol(spec, model, X)


def test_encrypted_sigmoid_within_documented_error():
    from smpc import ckks

    rng = np.random.default_rng(8)
    X, model = make_case(rng, "logistic", m=64, d=4, scale=1.0)
    spec = linear.InferenceSpec("logistic", *X.shape, backend="ckks", output="encrypted-sigmoid",
                                ckks_preset="sigmoid")
    got = run(spec, X, model).results["data"]
    logits = X @ model.weights + model.intercept
    inside = np.abs(logits) <= ckks.SIGMOID_BOUND
    assert inside.mean() > 0.9
    err = np.abs(got[inside] - linear.sigmoid(logits[inside])).max()
    # 0.0608: the cubic's own max error on [-5, 5] (smpc.ckks.sigmoid_coefficients)
    assert err <= 0.0608 + 6 * linear.model_flood_std(spec)


def test_ss_wire_cost_is_about_one_feature_matrix_each_way():
    rng = np.random.default_rng(1)
    X, model = make_case(rng, "linear", m=512, d=10)
    sim = run(linear.InferenceSpec("linear", 512, 10), X, model)
    matrix = 8 * 512 * 10
    assert matrix <= sim.traffic["data"].bytes_sent <= matrix * 1.1
    assert matrix <= sim.traffic["model"].bytes_sent <= matrix * 1.25
    assert sim.traffic["dealer"].bytes_sent <= 8 * 512 + 64


def test_feature_beyond_the_declared_bound_is_refused_by_the_data_owner():
    rng = np.random.default_rng(2)
    X, model = make_case(rng, "linear", m=10, d=2)
    X[3, 1] = 5000.0
    with pytest.raises(EncodingRangeError, match="exceeds the declared feature bound"):
        run(linear.InferenceSpec("linear", 10, 2), X, model)


def test_model_that_could_overflow_is_refused_by_the_model_owner():
    X = np.ones((4, 2))
    model = linear.LinearModel("linear", ("a", "b"), (3e6, 1.0), 0.0)
    with pytest.raises(EncodingRangeError, match="prediction could reach"):
        run(linear.InferenceSpec("linear", 4, 2, feature_bound=1024.0), X, model)


@pytest.mark.parametrize("doc, message", [
    ({"kind": "tree", "features": ["a"], "coefficients": [1]}, "linear' or 'logistic"),
    ({"kind": "linear", "features": ["a", "b"], "coefficients": [1]}, "2 features"),
    ({"kind": "linear", "features": ["a"], "coefficients": ["x"]}, "must be numbers"),
    ({"kind": "linear", "features": ["a"], "coefficients": [float("nan")]}, "finite"),
    ({"kind": "linear", "features": ["a"]}, "missing coefficients"),
    ({"kind": "linear", "features": ["a"], "coefficients": [1], "bias": 2}, "unknown model"),
    ([1, 2], "JSON object"),
])
def test_malformed_models_are_refused(doc, message):
    with pytest.raises(InputError, match=message):
        linear.LinearModel.from_json(doc)


def test_spec_mismatch_is_refused():
    X, model = make_case(np.random.default_rng(3), "linear", m=5, d=2)
    with pytest.raises(InputError, match="logistic model, the model is linear"):
        run(linear.InferenceSpec("logistic", 5, 2), X, model)
    with pytest.raises(InputError, match="encrypted sigmoid"):
        linear.InferenceSpec("linear", 5, 2, backend="ckks", output="encrypted-sigmoid")


def test_sigmoid_is_stable_at_extremes():
    z = np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0])
    s = linear.sigmoid(z)
    assert np.all(np.isfinite(s)) and s[2] == 0.5 and s[0] == 0.0 and s[-1] == 1.0
