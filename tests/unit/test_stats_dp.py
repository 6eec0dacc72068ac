"""Differential privacy inside the statistics protocols (distributed noise, end to end).

Variance test: over R runs the released values minus the exact answer are R
draws of the total noise; (R-1) s^2 / sigma^2 is chi-square(R-1), so s^2/sigma^2
lies within 1 +- 5 sqrt(2/(R-1)) except with probability ~1e-6.  The same
check rejects noise generated at a wrong scale (each party adding the full
sigma instead of sigma/sqrt(P) triples the variance).
"""

import math

import numpy as np
import pytest

from smpc import dp, stats
from smpc.errors import InputError

RUNS = 300
BAND = 5 * math.sqrt(2 / (RUNS - 1))


def tables(rng, parties=3, n=400):
    data = np.clip(rng.normal(50, 15, (n, 2)), 0, 120)
    cuts = np.sort(rng.choice(np.arange(1, n), parties - 1, replace=False))
    return data, np.split(data, cuts)


def released_sums(backend, runs):
    rng = np.random.default_rng(0)
    data, parts = tables(rng)
    request = dp.DPRequest(rho=0.5, bounds={"a": (0.0, 120.0), "b": (0.0, 120.0)})
    spec = stats.StatSpec("sum", ("a", "b"), backend=backend, dp=request)
    out = np.array([stats.simulate(spec, parts)[0].value for _ in range(runs)])
    sigma = spec.noise_plan(3).sigmas(1)[1]  # block 1: the column sums
    return out - data.sum(axis=0), sigma


@pytest.mark.parametrize("backend", ["ss", "ckks"])
def test_released_noise_has_the_planned_variance(backend):
    runs = RUNS if backend == "ss" else 120
    band = 5 * math.sqrt(2 / (runs - 1))
    errors, sigma = released_sums(backend, runs)
    ratio = errors.var(axis=0, ddof=1) / sigma**2
    assert np.all(np.abs(ratio - 1) <= band), ratio
    assert np.all(np.abs(errors.mean(axis=0)) <= 5 * sigma / math.sqrt(runs))
    # the same check would reject a party adding the full sigma (3x the variance)
    assert np.all(np.abs(3 * ratio - 1) > band)


def test_noise_is_fresh_each_run_and_not_zero():
    errors, _ = released_sums("ss", 5)
    assert len({tuple(e) for e in errors.round(6)}) == 5
    assert np.all(np.abs(errors).max(axis=0) > 0)


@pytest.mark.parametrize("backend", ["ss", "ckks"])
@pytest.mark.parametrize("stat", ["count", "mean", "var", "corr", "linreg", "histogram",
                                  "quantiles"])
def test_private_statistics_are_close_to_the_truth(backend, stat):
    rng = np.random.default_rng(1)
    data, parts = tables(rng, n=3000)
    bounds = {"a": (0.0, 120.0), "b": (0.0, 120.0)}
    request = dp.DPRequest(epsilon=2.0, delta=1e-6, bounds=bounds)
    kwargs = {"statistic": stat, "columns": ("a", "b"), "backend": backend, "dp": request}
    if stat == "linreg":
        kwargs.update(columns=("a",), target="b")
    if stat == "histogram":
        kwargs.update(columns=("a",), edges=(0, 30, 60, 90, 120))
    if stat == "quantiles":
        kwargs.update(columns=("a",), probabilities=(0.5,), bounds=(0, 120), resolution=240)
    spec = stats.StatSpec(**kwargs)
    parts = [p[:, : len(spec.value_columns)] for p in parts]
    result, _ = stats.simulate(spec, parts)
    assert result.details["privacy"]["cost"]["rho"] == pytest.approx(request.cost.rho)
    if stat == "count":
        assert abs(result.value - len(data)) <= 6 * spec.noise_plan(3).sigmas(1)[0] + 1
    elif stat == "mean":
        assert np.allclose(result.value, data.mean(axis=0), atol=1.0)
    elif stat == "var":
        assert np.allclose(result.value, data.var(axis=0, ddof=1), rtol=0.1)
    elif stat == "corr":
        corr = np.asarray(result.value)
        assert np.all(np.abs(corr) <= 1 + 1e-9) and abs(corr[0, 1]) < 0.15
    elif stat == "linreg":
        # the slope errs by about (covariance noise) / var(a); the fitted line still
        # passes near the (noisy) means, which carry far less noise
        n = len(data)
        divisor = stats.moment_divisor(spec, n)
        cov_sigma = spec.noise_plan(3).sigmas(2, divisor=divisor)[1] * divisor / n
        x, y = data[:, 0], data[:, 1]
        slope = np.polyfit(x, y, 1)[0]
        assert abs(result.value["coefficients"][0] - slope) <= 6 * cov_sigma / x.var()
        at_mean = result.value["intercept"] + result.value["coefficients"][0] * x.mean()
        assert abs(at_mean - y.mean()) < 1.0
    elif stat == "histogram":
        expected, _ = np.histogram(data[:, 0], bins=(0, 30, 60, 90, 120))
        assert np.all(np.asarray(result.value[0]) >= 0)
        assert np.allclose(result.value[0], expected, atol=60)
    else:
        assert abs(result.value[0][0] - np.median(data[:, 0])) < 2.0


def test_dp_needs_bounds_for_every_value_column():
    with pytest.raises(InputError, match="clipping bounds for column"):
        stats.simulate(stats.StatSpec("mean", ("a", "b"),
                                      dp=dp.DPRequest(rho=1.0, bounds={"a": (0, 1)})),
                       [np.ones((3, 2)), np.ones((3, 2))])


def test_rows_are_clipped_to_the_public_bounds():
    parts = [np.array([[1000.0]]), np.array([[-1000.0]]), np.array([[5.0]])]
    spec = stats.StatSpec("sum", ("a",), dp=dp.DPRequest(rho=100.0, bounds={"a": (0, 10)}))
    result, _ = stats.simulate(spec, parts)
    sigma = spec.noise_plan(3).sigmas(1)[1]
    assert abs(result.value[0] - 15.0) <= 6 * sigma


def test_spec_with_dp_round_trips_through_json():
    spec = stats.StatSpec("var", ("a",), dp=dp.DPRequest(epsilon=1.0, delta=1e-6,
                                                        bounds={"a": (0, 1)}, min_honest=2))
    again = stats.StatSpec.from_json(spec.to_json())
    assert again.dp == spec.dp and again.to_json() == spec.to_json()
