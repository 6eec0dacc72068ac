"""Differential privacy inside the statistics protocols: the private answers, end to end.

The size of the released noise itself (every pass, every statistic, both
backends, with stated error rates and power) is measured in
``test_dp_released_noise.py``; here the finished statistics are compared with
numpy on the pooled data.  The two columns are correlated (0.8), so a
covariance, correlation or slope that lost its off-diagonal term (0 instead of
0.8) is far outside the tolerance: every test below asserts that too.
"""

import math

import numpy as np
import pytest

from smpc import dp, stats
from smpc.errors import InputError

CORRELATION = 0.8


def tables(rng, parties=3, n=400, corr=CORRELATION):
    """Two columns ~ N(50, 15) with correlation ``corr`` (clipped to [0, 120], ~8 sd away)."""
    common = rng.standard_normal((n, 1))
    z = math.sqrt(corr) * common + math.sqrt(1 - corr) * rng.standard_normal((n, 2))
    data = np.clip(50 + 15 * z, 0, 120)
    cuts = np.sort(rng.choice(np.arange(1, n), parties - 1, replace=False))
    return data, np.split(data, cuts)


# Tolerances of the end-to-end check below: first-order error propagation of
# the planned noise, at Z standard deviations per released coordinate (Gaussian
# tail ~2e-9 each), plus CKKS's release flooding (<< the DP noise).  The
# sensitivities are the worst case over the public shift, so these are upper
# bounds.  N = 30000 rows keeps them tight enough that a wrong answer fails.
Z = 6.0
ROWS = 30000


def planned_noise(spec, n):
    """Absolute noise std of each released block, keyed by block name."""
    plan = spec.noise_plan(3)
    out = dict(zip([b.name for b in plan.pass_plan(1).blocks], plan.sigmas(1), strict=True))
    if len(plan.passes) > 1:
        divisor = stats.moment_divisor(spec, n)
        names = [b.name for b in plan.pass_plan(2).blocks]
        out.update({k: s * divisor for k, s in
                    zip(names, plan.sigmas(2, divisor=divisor), strict=True)})
    return out


def mean_tolerance(noise, mean, n):
    """|released mean - mean|: pass-1 sums and count, and the pass-2 first moments."""
    return Z * (noise["sums"] + abs(mean) * noise["count"] + noise.get("first", 0.0)) / n


@pytest.mark.parametrize("backend", ["ss", "ckks"])
@pytest.mark.parametrize("stat", stats.STATISTICS)
def test_private_statistics_are_close_to_the_truth(backend, stat):
    rng = np.random.default_rng(1)
    data, parts = tables(rng, n=ROWS)
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
    n = len(data)
    noise = planned_noise(spec, n)
    mean, var = data.mean(axis=0), data.var(axis=0, ddof=1)
    if stat == "count":
        assert abs(result.value - n) <= Z * noise["count"] + 1
    elif stat == "sum":
        tol = Z * noise["sums"]
        assert np.all(np.abs(np.asarray(result.value) - data.sum(axis=0)) <= tol)
    elif stat == "mean":
        tol = [mean_tolerance(noise, m, n) for m in mean]
        assert np.all(np.abs(np.asarray(result.value) - mean) <= tol), (result.value, mean, tol)
    elif stat in ("var", "std", "cov"):
        # C_ij = M2_ij / (N - 1) - centring: noise on M2 (the second moments), on
        # N (times C_ij), and through the centring term (mean - shift)_i first_j +
        # (mean - shift)_j first_i, with |mean - shift| <= the mean tolerance
        cov = np.cov(data.T)
        mt = np.array([mean_tolerance(noise, m, n) for m in mean])
        tol = (Z * (noise["second"] + np.abs(cov) * noise["count"])
               + np.add.outer(mt, mt) * Z * noise["first"]) / (n - 1)
        got = np.asarray(result.value)
        if stat == "var":
            assert np.all(np.abs(got - var) <= np.diag(tol)), (got, var, tol)
        elif stat == "std":
            # |sqrt(a) - sqrt(b)| = |a - b| / (sqrt(a) + sqrt(b)) <= |a - b| / sqrt(b)
            sd_tol = np.diag(tol) / np.sqrt(var)
            assert np.all(np.abs(got - np.sqrt(var)) <= sd_tol), (got, np.sqrt(var), sd_tol)
        else:
            assert np.all(np.abs(got - cov) <= tol), (got, cov, tol)
            assert tol[0, 1] < cov[0, 1] / 2  # a zeroed off-diagonal would fail
    elif stat == "corr":
        # d rho = dC_ab / (N sa sb) - rho / 2 (dC_aa / (N sa^2) + dC_bb / (N sb^2))
        rho = np.corrcoef(data.T)[0, 1]
        sa, sb = np.sqrt(var)
        tol = Z * noise["second"] / n * (1 / (sa * sb) + abs(rho) / 2 * (1 / sa**2 + 1 / sb**2))
        corr = np.asarray(result.value)
        assert np.all(np.abs(corr) <= 1 + 1e-9)
        assert abs(corr[0, 1] - rho) <= tol + 1e-3, (corr[0, 1], rho, tol)
        assert tol + 1e-3 < rho / 2  # a correlation of 0 would fail
    elif stat == "linreg":
        # the slope errs by about (covariance noise) / var(a); the fitted line
        # passes through the (noisy) means, so at the true mean of a it errs by
        # the noise of mean(b) plus slope times the noise of mean(a)
        x, y = data[:, 0], data[:, 1]
        slope = np.polyfit(x, y, 1)[0]
        slope_tol = Z * noise["second"] / n * (1 + abs(slope)) / x.var()
        assert abs(result.value["coefficients"][0] - slope) <= slope_tol
        assert slope_tol < abs(slope) / 2  # a slope of 0 would fail
        at_mean = result.value["intercept"] + result.value["coefficients"][0] * x.mean()
        fitted = result.value["coefficients"][0]
        tol = mean_tolerance(noise, y.mean(), n) + abs(fitted) * mean_tolerance(noise, x.mean(), n)
        assert abs(at_mean - y.mean()) <= tol, (at_mean, y.mean(), tol)
    elif stat == "histogram":
        expected, _ = np.histogram(data[:, 0], bins=(0, 30, 60, 90, 120))
        assert np.all(np.asarray(result.value[0]) >= 0)
        assert np.all(np.abs(np.asarray(result.value[0]) - expected) <= Z * noise["counts"] + 1)
    else:
        # the median bin is found from noisy cumulative counts: noise sqrt(k) sigma
        # over the k bins below it and sqrt(B) sigma / 2 in the target p N; the
        # clipping of negative noisy counts at 0 biases each of the B bins up by at
        # most 0.4 sigma.  Rows translate into values through the data's density
        # near the median; the answer is then within one bin width of that.
        sigma, bins, width = noise["counts"], spec.resolution, 120 / spec.resolution
        median = np.median(data[:, 0])
        below = int(np.searchsorted(np.linspace(0, 120, bins + 1), median))
        rows_tol = Z * sigma * (math.sqrt(below) + 0.5 * math.sqrt(bins)) + 0.4 * sigma * bins
        density = np.mean(np.abs(data[:, 0] - median) <= 2.0) / 4.0 * n  # rows per unit
        tol = width + rows_tol / density
        assert abs(result.value[0][0] - median) <= tol, (result.value[0][0], median, tol)


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


@pytest.mark.parametrize("backend", ["ss", "ckks"])
def test_a_party_checks_for_cancellation_while_it_draws_noise_in_both_passes(backend):
    """A party's noise sampling, the costliest step of a private statistic, calls its
    transport's cancellation check between chunks in both passes of a two-pass statistic (so
    that an aborted session stops it there): a stop check installed on each party's transport
    sees calls made from inside :func:`smpc.dp.party_noise` for pass 1 and for pass 2."""
    import inspect

    from smpc import ckks, simulator

    rng = np.random.default_rng(5)
    _, parts = tables(rng, parties=2, n=60)
    spec = stats.StatSpec("var", ("a", "b"), backend=backend,
                          dp=dp.DPRequest(epsilon=1.0, delta=1e-6,
                                          bounds={"a": (0, 120), "b": (0, 120)}))
    parties = ["p0", "p1"]
    seen: dict[str, set[int]] = {p: set() for p in parties}

    def hook(name):
        def check():
            for frame in inspect.stack(context=0):
                if frame.function == "party_noise":
                    seen[name].add(frame.frame.f_locals["pass_index"])
        return check

    def party(name, rows, public=None):
        def role(t):
            t.add_stop_check(hook(name))
            stats.run_party(t, spec, rows, parties=parties, recipient="coordinator", tag="s",
                            public_context=public)
        return role

    roles = {}
    if backend == "ss":
        roles["coordinator"] = lambda t: stats.run_recipient_ss(t, spec, parties=parties,
                                                                tag="s")
        public = None
    else:
        holder = ckks.KeyHolder(spec.ckks_preset)
        public = ckks.load_context(holder.public_context())
        roles["coordinator"] = lambda t: stats.run_aggregator_ckks(
            t, spec, parties=parties, keyholder="analyst", tag="s", public_context=public)
        roles["analyst"] = lambda t: stats.run_keyholder_ckks(
            t, spec, aggregator="coordinator", keyholder=holder, tag="s")
    for name, rows in zip(parties, parts, strict=True):
        roles[name] = party(name, rows, public)
    simulator.run(roles)
    assert seen == {"p0": {1, 2}, "p1": {1, 2}}
