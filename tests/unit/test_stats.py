"""Joint statistics among simulated parties, against numpy / statistics on pooled data.

Tolerances: :mod:`tests.tolerances` (one derivation for the whole suite).  ss (f=16, P
parties): every summed pass-1 aggregate is within P * 2^-17 (encoding), every pass-2 moment
within P * 2^-25 (f + 8 bits), plus float64 summation terms.  ckks: every summed aggregate
carries the release (CKKS error <= E = 2^-23, Gaussian flood of std 2^-7, rounding to 2^-7):
within E + 6 sigma + 2^-8 except with probability 2e-9 per value; a mean within that / N,
a (co)variance within about that / (N - 1); std, corr and regression coefficients by the
worst-case propagation in :class:`tests.tolerances.Moments`.  False-failure rate of a ckks
test here: at most (number of released values) * 2e-9 < 1e-6.
"""

import statistics

import numpy as np
import pytest

from smpc import stats
from smpc.encoding import EncodingRangeError
from smpc.errors import InputError
from tests.tolerances import Backend, Moments, Release, U, assert_within, quantile_tol


def split(data: np.ndarray, parties: int, rng) -> list[np.ndarray]:
    cuts = np.sort(rng.choice(np.arange(1, len(data)), parties - 1, replace=False))
    return np.split(data, cuts)


def clinical(rng, n):
    age = rng.normal(55, 15, n)
    bmi = 18 + 0.12 * age + rng.normal(0, 3, n)
    chol = 150 + 0.8 * age + 2 * bmi + rng.normal(0, 20, n)
    return np.column_stack([age, bmi, chol])


BACKENDS = ["ss", "ckks"]


def signed(rng, n):
    """Negative, mixed-sign and heavy-tailed columns."""
    return np.column_stack([rng.normal(-250, 40, n), rng.standard_t(3, n) * 5,
                            rng.uniform(-1e4, 1e4, n)])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("parties", [2, 3, 5])
@pytest.mark.parametrize("dataset", ["clinical", "signed"])
def test_moments_match_numpy(backend, parties, dataset):
    rng = np.random.default_rng(parties)
    data = clinical(rng, 600) if dataset == "clinical" else signed(rng, 600)
    tables = split(data, parties, rng)
    cols = ("age", "bmi", "chol")
    m = Moments(data, Backend(backend, parties))
    assert Backend(backend, parties).count_exact()
    for stat, expected, tol in [
        ("count", len(data), 0.0),
        ("sum", data.sum(axis=0), m.sum_tol),
        ("mean", data.mean(axis=0), m.mean_tol),
        ("var", data.var(axis=0, ddof=1), m.var_tol),
        ("std", data.std(axis=0, ddof=1), m.std_tol),
        ("cov", np.cov(data, rowvar=False), m.cov_tol),
        ("corr", np.corrcoef(data, rowvar=False), m.corr_tol),
    ]:
        result, _ = stats.simulate(stats.StatSpec(stat, cols, backend=backend), tables)
        assert_within(result.value, expected, tol, stat)
        assert result.n == len(data)


@pytest.mark.parametrize("backend", BACKENDS)
def test_agrees_with_python_statistics(backend):
    rng = np.random.default_rng(7)
    data = rng.normal(100, 10, (90, 1))
    tables = split(data, 3, rng)
    col = [float(v) for v in data[:, 0]]
    m = Moments(data, Backend(backend, 3))
    for stat, ref, tol in [
        ("mean", statistics.fmean(col), m.mean_tol),
        ("var", statistics.variance(col), m.var_tol),
        ("std", statistics.stdev(col), m.std_tol),
    ]:
        result, _ = stats.simulate(stats.StatSpec(stat, ("x",), backend=backend), tables)
        assert_within(result.value, [ref], tol, stat)


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_mean_small_spread_is_numerically_stable(backend):
    """Raw sum-of-squares would lose everything here; two-pass centring does not.

    The bound is the moment bound of :class:`tests.tolerances.Moments` (about 2e-7 on ss,
    1.7e-5 on ckks for a variance of 0.25); raw ``sum x^2 / N - mean^2`` in float64 would
    be off by about 1e14 * 2^-53 * 2 = 0.02.
    """
    rng = np.random.default_rng(3)
    data = 1e7 + rng.normal(0, 0.5, (3000, 1))
    tables = split(data, 3, rng)
    result, _ = stats.simulate(stats.StatSpec("var", ("x",), backend=backend), tables)
    assert_within(result.value, [data.var(ddof=1)], Moments(data, Backend(backend, 3)).var_tol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_constant_column_and_one_row_per_party(backend):
    tables = [np.array([[5.0, 1.0]]), np.array([[5.0, 2.0]]), np.array([[5.0, 4.0]])]
    data = np.vstack(tables)
    result, _ = stats.simulate(stats.StatSpec("var", ("c", "x"), backend=backend), tables)
    tol = Moments(data, Backend(backend, 3)).var_tol
    assert_within(result.value, [0.0, statistics.variance([1.0, 2.0, 4.0])], tol)
    corr, _ = stats.simulate(stats.StatSpec("corr", ("c", "x"), backend="ss"), tables)
    assert np.isnan(corr.value[0][1]) and corr.value[1][1] == 1.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_values_near_the_range_bound(backend):
    """Values near the encodable bound (2^47 / 8 ~ 1.8e13) still sum and average right.

    ss: every value is a multiple of 2^-16 and every sum exact in float64, so the result is
    exact.  ckks: beyond 2^53 times the CKKS error the float64 encoder limits the precision,
    relative 2^-52 per value per encode/decode (:meth:`smpc.ckks.Preset.max_abs_value`): a
    bound of 8 ulps of each party's aggregate (encode, FFT, decode, add: measured 0.6 of it)
    plus the release bound.
    """
    big = stats.StatSpec("sum", ("x",)).codec.max_abs() / 8
    tables = [np.array([[big], [-big / 2]]), np.array([[-big]]), np.array([[big / 4]])]
    result, _ = stats.simulate(stats.StatSpec("sum", ("x",), backend=backend), tables)
    parts = sum(abs(float(t.sum())) for t in tables)
    tol = 0.0 if backend == "ss" else 8 * 2 * U * parts + Release.of().bound
    assert abs(result.value[0] - (-big / 4)) <= tol
    mean, _ = stats.simulate(stats.StatSpec("mean", ("x",), backend=backend), tables)
    assert abs(mean.value[0] - (-big / 16)) <= tol / 4 + 2 * U * big / 16


def test_overflow_is_a_clear_error_not_a_wrong_answer():
    big = stats.StatSpec("sum", ("x",)).codec.max_abs() / 2
    tables = [np.array([[big], [big]]), np.array([[1.0]])]
    with pytest.raises(EncodingRangeError, match="outside the fixed-point range"):
        stats.simulate(stats.StatSpec("sum", ("x",)), tables)


@pytest.mark.parametrize("backend", BACKENDS)
def test_histogram_counts_are_exact(backend):
    rng = np.random.default_rng(11)
    data = rng.normal(0, 2, (1000, 1))
    edges = (-4.0, -2.0, -1.0, 0.0, 1.0, 2.0, 4.0)
    result, _ = stats.simulate(
        stats.StatSpec("histogram", ("x",), backend=backend, edges=edges), split(data, 3, rng)
    )
    expected, _ = np.histogram(data[:, 0], bins=edges)
    assert result.value[0] == expected.tolist()
    assert result.details["below"][0] == int((data < -4).sum())
    assert result.details["above"][0] == int((data > 4).sum())


@pytest.mark.parametrize("backend", BACKENDS)
def test_quantiles_within_one_bin_of_inverted_cdf(backend):
    rng = np.random.default_rng(5)
    data = rng.gamma(2.0, 10.0, (2000, 2))
    probs = (0.0, 0.1, 0.25, 0.5, 0.9, 0.99, 1.0)
    spec = stats.StatSpec(
        "quantiles",
        ("a", "b"),
        backend=backend,
        probabilities=probs,
        bounds=(0.0, 200.0),
        resolution=2000,
    )
    result, _ = stats.simulate(spec, split(data, 3, rng))
    assert result.details["resolution"] == pytest.approx(0.1)
    # one bin on both backends: a ckks bin count is released within 0.05 < 1/2 of the
    # exact count and rounded, so it is exact (false-failure rate 4000 * 2e-9)
    assert Backend(backend, 3).count_exact()
    for j in range(2):
        expected = np.quantile(data[:, j], probs, method="inverted_cdf")
        assert_within(result.value[j], expected, quantile_tol((0.0, 200.0), 2000))


@pytest.mark.parametrize("backend", BACKENDS)
def test_linear_regression_matches_lstsq(backend):
    rng = np.random.default_rng(9)
    x = rng.normal(0, 1, (800, 3)) * [1, 10, 0.1] + [0, 50, 5]
    y = 2.0 + x @ np.array([1.5, -0.25, 8.0]) + rng.normal(0, 0.3, 800)
    data = np.column_stack([x, y])
    spec = stats.StatSpec("linreg", ("a", "b", "c"), target="y", backend=backend)
    result, _ = stats.simulate(spec, split(data, 3, rng))
    design = np.column_stack([np.ones(len(x)), x])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    coef_tol, intercept_tol, r2_tol = Moments(data, Backend(backend, 3)).linreg_tol()
    assert_within(result.value["coefficients"], coef[1:], coef_tol, "coefficients")
    assert_within(result.value["intercept"], coef[0], intercept_tol, "intercept")
    resid = y - design @ coef
    assert_within(result.details["r2"], 1 - resid.var() / y.var(), r2_tol, "R^2")


def test_wire_cost_of_ss_aggregation_is_about_one_vector_per_party():
    rng = np.random.default_rng(0)
    data = rng.normal(0, 1, (300, 50))
    spec = stats.StatSpec("mean", tuple(f"c{i}" for i in range(50)))
    _, sim = stats.simulate(spec, split(data, 5, rng))
    vector_bytes = 8 * stats.pass1_length(spec)
    for i in range(5):
        sent = sim.traffic[f"p{i}"].bytes_sent
        assert vector_bytes <= sent <= vector_bytes + 16 * 4, sent


@pytest.mark.parametrize(
    "spec_kwargs, message",
    [
        ({"statistic": "median", "columns": ("x",)}, "unknown statistic"),
        ({"statistic": "mean", "columns": ()}, "at least one column"),
        ({"statistic": "mean", "columns": ("x",), "backend": "he"}, "unknown backend"),
        ({"statistic": "linreg", "columns": ("x",)}, "target"),
        ({"statistic": "cov", "columns": ("x",)}, "at least two columns"),
        ({"statistic": "histogram", "columns": ("x",), "edges": (1.0, 1.0)}, "strictly increasing"),
        ({"statistic": "histogram", "columns": ("x",), "edges": tuple(range(70000))}, "at most"),
        ({"statistic": "quantiles", "columns": ("x",), "probabilities": (0.5,)}, "public bounds"),
        (
            {
                "statistic": "quantiles",
                "columns": ("x",),
                "probabilities": (1.5,),
                "bounds": (0, 1),
            },
            "between 0 and 1",
        ),
    ],
)
def test_bad_specs_are_refused_with_a_sentence(spec_kwargs, message):
    with pytest.raises(InputError, match=message):
        stats.StatSpec(**spec_kwargs)


def test_spec_json_round_trip_and_unknown_fields():
    spec = stats.StatSpec("quantiles", ("x",), probabilities=(0.5,), bounds=(0, 1))
    assert stats.StatSpec.from_json(spec.to_json()) == spec
    with pytest.raises(InputError, match="unknown spec field"):
        stats.StatSpec.from_json({**spec.to_json(), "evil": 1})


def test_nan_in_data_is_refused():
    with pytest.raises(InputError, match="NaN"):
        stats.simulate(stats.StatSpec("mean", ("x",)), [np.array([[1.0]]), np.array([[np.nan]])])


def test_collinear_features_are_a_clear_error():
    x = np.arange(20.0)
    data = np.column_stack([x, 2 * x, x + 1])
    with pytest.raises(InputError, match="collinear"):
        stats.simulate(stats.StatSpec("linreg", ("a", "b"), target="y"), [data[:10], data[10:]])
