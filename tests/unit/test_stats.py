"""Joint statistics among simulated parties, against numpy / statistics on pooled data.

Tolerances.  ss (f=16, P parties): every summed aggregate carries at most
P * 2^-17 absolute encoding error (pass-2 moments: P * 2^-25); we assert 4 P ulps
plus a relative term for float rounding.  ckks: every summed aggregate carries the
release flood (Gaussian, std 2^-7 for the aggregate preset) plus grid rounding
(<= 2^-8); we allow A = 6 std + 2^-8 on each aggregate and propagate it: A on a
sum, A / N on a mean, 2 A / (N - 1) on a variance or covariance.
"""

import statistics

import numpy as np
import pytest

from smpc import ckks, stats
from smpc.encoding import EncodingRangeError
from smpc.errors import InputError

ULP = 2.0**-16
RELEASE_STD = 2.0**ckks.DEFAULT_FLOOD_BITS * ckks.get_preset("aggregate").release_error_bound
A = 6 * RELEASE_STD + 2.0**-8


def split(data: np.ndarray, parties: int, rng) -> list[np.ndarray]:
    cuts = np.sort(rng.choice(np.arange(1, len(data)), parties - 1, replace=False))
    return np.split(data, cuts)


def tol(parties: int, backend: str, scale: float = 1.0, n: int = 1, kind: str = "var") -> float:
    """Absolute tolerance on a statistic of magnitude ``scale`` over ``n`` pooled rows."""
    if backend == "ss":
        return 4 * parties * ULP + 1e-9 * scale
    per = {"sum": A, "mean": A / n, "var": 2 * A / max(n - 1, 1)}[kind]
    return per + 1e-9 * scale


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
    for stat, expected in [
        ("count", len(data)),
        ("sum", data.sum(axis=0)),
        ("mean", data.mean(axis=0)),
        ("var", data.var(axis=0, ddof=1)),
        ("std", data.std(axis=0, ddof=1)),
        ("cov", np.cov(data, rowvar=False)),
        ("corr", np.corrcoef(data, rowvar=False)),
    ]:
        result, _ = stats.simulate(stats.StatSpec(stat, cols, backend=backend), tables)
        got = np.asarray(result.value, dtype=float)
        scale = float(np.abs(expected).max())
        n = len(data)
        if stat == "count":
            atol = 0.0
        elif stat in ("sum", "mean"):
            atol = tol(parties, backend, scale, n, stat)
        elif stat == "std":
            atol = tol(parties, backend, scale, n) / (2 * data.std(axis=0, ddof=1).min())
        elif stat == "corr":
            atol = 1e-6 if backend == "ss" else 3 * tol(parties, backend, 1, n) / data.var(
                axis=0, ddof=1).min()
        else:
            atol = tol(parties, backend, scale, n)
        assert np.allclose(got, expected, rtol=1e-9, atol=atol), (stat, got, expected)
        assert result.n == len(data)


@pytest.mark.parametrize("backend", BACKENDS)
def test_agrees_with_python_statistics(backend):
    rng = np.random.default_rng(7)
    data = rng.normal(100, 10, (90, 1))
    tables = split(data, 3, rng)
    col = [float(v) for v in data[:, 0]]
    for stat, ref in [
        ("mean", statistics.fmean(col)),
        ("var", statistics.variance(col)),
        ("std", statistics.stdev(col)),
    ]:
        result, _ = stats.simulate(stats.StatSpec(stat, ("x",), backend=backend), tables)
        kind = "var" if stat != "mean" else "mean"
        bound = tol(3, backend, ref, len(col), kind) / (2 * statistics.stdev(col) if
                                                        stat == "std" else 1)
        assert abs(result.value[0] - ref) <= bound, stat


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_mean_small_spread_is_numerically_stable(backend):
    """Raw sum-of-squares would lose everything here; two-pass centring does not."""
    rng = np.random.default_rng(3)
    data = 1e7 + rng.normal(0, 0.5, (3000, 1))
    tables = split(data, 3, rng)
    result, _ = stats.simulate(stats.StatSpec("var", ("x",), backend=backend), tables)
    assert abs(result.value[0] - data.var(ddof=1)) <= tol(3, backend, 1.0, len(data))


@pytest.mark.parametrize("backend", BACKENDS)
def test_constant_column_and_one_row_per_party(backend):
    tables = [np.array([[5.0, 1.0]]), np.array([[5.0, 2.0]]), np.array([[5.0, 4.0]])]
    result, _ = stats.simulate(stats.StatSpec("var", ("c", "x"), backend=backend), tables)
    assert abs(result.value[0]) <= tol(3, backend, 0.0, 3)
    assert abs(result.value[1] - statistics.variance([1.0, 2.0, 4.0])) <= tol(3, backend, 3, 3)
    corr, _ = stats.simulate(stats.StatSpec("corr", ("c", "x"), backend="ss"), tables)
    assert np.isnan(corr.value[0][1]) and corr.value[1][1] == 1.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_values_near_the_range_bound(backend):
    """Values near the encodable bound (2^47 / 8 ~ 1.8e13) still sum and average right."""
    big = stats.StatSpec("sum", ("x",)).codec.max_abs() / 8
    tables = [np.array([[big], [-big / 2]]), np.array([[-big]]), np.array([[big / 4]])]
    result, _ = stats.simulate(stats.StatSpec("sum", ("x",), backend=backend), tables)
    # ss: exact to 3 ulps; ckks: float64 encoding of 2^40-scaled values, ~1e-16 relative
    atol = 1e-3 if backend == "ss" else 1e-15 * big * 8 + A
    assert result.value[0] == pytest.approx(-big / 4, abs=atol)
    mean, _ = stats.simulate(stats.StatSpec("mean", ("x",), backend=backend), tables)
    assert mean.value[0] == pytest.approx(-big / 16, abs=atol)


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
    width = result.details["resolution"]
    assert width == pytest.approx(0.1)
    for j in range(2):
        expected = np.quantile(data[:, j], probs, method="inverted_cdf")
        assert np.all(np.abs(np.asarray(result.value[j]) - expected) <= width + 1e-9)


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
    got = np.array([result.value["intercept"], *result.value["coefficients"]])
    # coefficient j errs by about (moment error) / var(x_j) -- the features here are
    # nearly uncorrelated -- and the intercept by sum_j |mean(x_j)| times that; 3x margin
    coef_tol = 3 * tol(3, backend, 1, len(x)) / x.var(axis=0, ddof=1)
    if backend == "ss":
        coef_tol = coef_tol + 1e-6
    atol = np.concatenate([[np.abs(x.mean(axis=0)) @ coef_tol + 1e-6], coef_tol])
    assert np.all(np.abs(got - coef) <= atol), (got - coef, atol)
    assert 0.9 < result.details["r2"] <= 1.0


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
