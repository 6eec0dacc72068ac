"""The differential-privacy noise each pass *releases*, measured for every statistic and backend.

What is observed.  The real protocol roles (``smpc.stats.run_party`` with
``run_recipient_ss``, or ``run_aggregator_ckks`` + ``run_keyholder_ckks``) run
among simulated nodes; the test wraps ``smpc.aggregate.ss_collect`` /
``ckks_collect`` and records what the recipient gets from each pass's secure
sum, before any post-processing.  It computes the exact aggregate itself with
numpy from the clipped rows (count, column sums; the centred moments from the
raw moments ``sum x``, ``sum x x^T`` and the public shift ``s`` and divisor
``D``; bin counts), so ``released - exact`` is one draw of the *total* noise
per coordinate.  Each draw is divided by the sigma the harness
(``released_noise.py``) derives from the mechanism as documented in
``smpc/dp/`` (not by asking the plan):

    sigma_b = (Delta_b 2^bits + [block not integral] sqrt(len_b)) / sqrt(2 rho_b)

lattice units, with the documented split ``rho_b`` and sensitivities
``Delta_b`` (pass 2: ``W_j = max(hi_j - s_j, s_j - lo_j)``, divided by ``D``).
KLS's tau correction underflows (every share is >= 6 lattice units: asserted),
so the plan must equal this formula; that is also checked, exactly.

The normalised draws ``z`` are N(0, 1) under a correct implementation (a sum
of discrete Gaussians of scale >= 6 lattice units: treated as normal).  They
are off by the lattice rounding of each party's aggregate, at most ``P/2``
lattice units per coordinate (plus float error far below 0.01 unit), i.e.
``|delta| <= e = (P/2 + 0.01) / sigma_units``; every band below is widened by
that bound, so it cannot cause a false alarm.

Exact checks, every run: the plan's sigmas equal that formula (rel. 1e-9);
the shift and count the parties used in pass 2 are exactly the documented
post-processing of the *noisy* pass 1 (the test recomputes them and compares
with what ``local_pass2`` was called with); on ckks the key holder is told
exactly the noise unknown to it (the smallest block sigma: it is not a party),
which is at least its flood, so skipping the flood is legitimate.

Statistical checks, pooled over the runs of one statistic, per pass:

* variance: ``T = sum z^2 ~ chi^2_n``, two-sided; per pass and per block;
* spread within blocks: ``sum (z - block mean)^2`` per run, pooled,
  ``~ chi^2`` with ``sum (len - 1)`` degrees of freedom: it is the rounding
  alone (rejected surely) if one draw is reused for every coordinate;
* spread across runs (same data every run): ``sum (z - mean over runs)^2``,
  ``~ chi^2`` with ``(runs - 1) len`` degrees of freedom: rejected surely if
  the noise is the same in every run (not fresh);
* mean: ``sum z / sqrt(n) ~ N(0, 1)`` (biased noise);
* runs pairwise independent: ``C = sum z_a z_b / |z_b| ~ N(0, 1)`` exactly
  when run a's noise is independent of run b's, about ``sqrt(n) / P`` if one
  party's share is repeated and ``sqrt(n)`` if all are;
* passes independent: the same statistic between pass 1 and the first
  coordinates of pass 2 (a sampler that reuses its standard draws).

Error rates.  Each test runs m checks at level ``ALPHA / m`` (Bonferroni), so
it fails by chance with probability at most ``ALPHA = 1e-6``.  Each check
*asserts its own power* (exactly, from its n and its band, with scipy's
chi-square law; the test fails if the design is too weak) against the bugs it
targets, as factors c on the released noise variance: c = 0 (no noise), 1/289
(sigma 17x too small), (P-1)/P (a party omits its share), (2P-1)/P (a party
adds the full sigma), P (every party adds the full sigma), the ratio of two
blocks' variances (a block noised at another's scale), and for the spread and
pairing checks the repeated-noise alternatives above: power > ``POWER = 1 -
1e-6`` each.  Where a check has too few draws for the near alternatives (one
count per run) it asserts only the far ones; the tests' docstrings give the
power they then have.  Seeded data (numpy), CSPRNG noise (cannot be seeded).
"""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from smpc import ckks, dp, stats
from tests.unit.released_noise import (
    ALPHA,
    FAR,
    NEAR,
    TWO_PASS,
    Verdicts,
    check_statistic,
    measure,
    recorded,
    run_instances,
)


def tables(seed: int, rows: int, k: int, mean: float, sd: float, corr: float) -> list[np.ndarray]:
    """Rows with pairwise correlation ``corr`` (one common factor), split 20/30/50% over P."""
    rng = np.random.default_rng(seed)
    common = rng.standard_normal((rows, 1))
    data = mean + sd * (math.sqrt(corr) * common + math.sqrt(1 - corr) * rng.standard_normal(
        (rows, k)))
    return np.split(data, [rows // 5, rows // 2])


def columns(k: int) -> tuple[str, ...]:
    return tuple(f"c{j}" for j in range(k))


# (columns, rows, runs on ss, runs on ckks, rho, extra spec fields); see the test's docstring
ONE_PASS = {
    "count": (1, 300, 1400, 180, 1.0, {}),
    "sum": (128, 600, 12, 12, 4.0, {}),
    "mean": (128, 600, 12, 12, 4.0, {}),
    "histogram": (2, 3000, 2, 2, 1.0, {"edges": tuple(np.linspace(0.0, 100.0, 701))}),
    "quantiles": (2, 3000, 2, 2, 1.0, {"bounds": (0.0, 100.0), "resolution": 700,
                                       "probabilities": (0.5,)}),
}


@pytest.mark.parametrize("backend", ["ss", "ckks"])
@pytest.mark.parametrize("stat", list(ONE_PASS))
def test_one_pass_statistics_release_the_planned_noise(stat, backend, monkeypatch):
    """count, sum, mean, histogram, quantiles: the released noise has the planned size.

    Wide vectors give many draws per run: 129 per run for sum and mean (128
    columns, 12 runs: 1548 draws), 1405 for histogram and quantiles (2
    columns x 700 bins, 2 runs).  Each test's pooled variance check has power
    > 1 - 1e-6 against every NEAR alternative (no noise, 17x too small, a
    missing share, one or every party at full sigma).  The count statistic
    releases one value per run: 1400 runs on ss reach the same power; on ckks
    (35-70 ms a run) 180 runs assert it against FAR only (no noise, 17x too
    small, every party at full sigma), with power 0.04 against a missing
    share and 0.56 against one full-sigma share -- its noise path differs
    from the other ckks statistics' only by its plan, checked exactly.  Blocks: sums
    against FAR, the count (one per run) against no noise, each against
    being noised at the other block's scale.
    """
    k, rows, runs_ss, runs_ckks, rho, extra = ONE_PASS[stat]
    cols = columns(k)
    request = dp.DPRequest(rho=rho, bounds=dict.fromkeys(cols, (0.0, 100.0)))
    spec = stats.StatSpec(stat, cols, backend=backend, dp=request, **extra)
    parts = tables(11, rows, k, 50.0, 20.0 if stat != "histogram" else 30.0, 0.5)
    specs = [spec] * (runs_ss if backend == "ss" else runs_ckks)
    rec = recorded(monkeypatch)
    results = run_instances(specs, parts)
    runs = measure(specs, parts, rec, rho)
    v = Verdicts()
    if stat == "count":
        check_statistic(v, stat, runs, 1, NEAR if backend == "ss" else FAR, pairs=False)
    else:
        check_statistic(v, stat, runs, 1, NEAR)
    v.assert_all()
    assert not [r for r in results if isinstance(r, Exception)]


@pytest.mark.parametrize("backend", ["ss", "ckks"])
def test_min_honest_shares_release_p_over_m_times_the_variance(backend, monkeypatch):
    """Conservative mode, min_honest = 2 of 3: shares of sigma^2 / 2, released 3/2 sigma^2.

    sum over 128 columns, 12 runs (1548 draws): the NEAR powers of the one-pass
    test, now around the inflated variance -- shares sized for P (variance
    2/3 of it) or a plan that ignores min_honest are rejected.
    """
    k, rows, runs, _, rho, _ = ONE_PASS["sum"]
    cols = columns(k)
    request = dp.DPRequest(rho=rho, bounds=dict.fromkeys(cols, (0.0, 100.0)), min_honest=2)
    spec = stats.StatSpec("sum", cols, backend=backend, dp=request)
    parts = tables(13, rows, k, 50.0, 20.0, 0.5)
    rec = recorded(monkeypatch)
    results = run_instances([spec] * runs, parts)
    v = Verdicts()
    check_statistic(v, "sum, min_honest 2", measure([spec] * runs, parts, rec, rho), 1, NEAR)
    v.assert_all()
    assert not [r for r in results if isinstance(r, Exception)]


TWO_PASS_COLUMNS = 48
TWO_PASS_RUNS = 7  # per statistic


@pytest.mark.parametrize("backend", ["ss", "ckks"])
def test_two_pass_statistics_release_the_planned_noise_on_both_passes(backend, monkeypatch):
    """var, std, cov, corr, linreg (48 columns, correlation 0.8), 7 runs of each, interleaved.

    Pass 2 releases 48 + 1176 values per run (8568 draws per statistic): each
    statistic's pass-2 variance check has power > 1 - 1e-6 against every NEAR
    alternative (no noise; sigma 17x too small -- the ckks bug; a missing
    share; one or every party at full sigma); the divisor ``D`` and the shift
    are the post-processed noisy pass 1 (on ss a wrong divisor scales the
    variance by its square).  Pass 1 releases 49 values per run: per
    statistic (343 draws) the check asserts that power against FAR (its
    power is 0.22 against a missing share, 0.92 against one full-sigma
    share); pooled over the five statistics (1715 draws, one code path)
    against NEAR.  Pass-2 noise must be independent of pass-1 noise.  The
    correlated columns make the off-diagonal second moments large, so
    dropping them from the released aggregate is far outside every band.
    """
    k = TWO_PASS_COLUMNS
    cols = columns(k)
    request = dp.DPRequest(rho=8.0, bounds=dict.fromkeys(cols, (20.0, 80.0)))
    specs = []
    for stat in TWO_PASS * TWO_PASS_RUNS:
        if stat == "linreg":
            specs.append(stats.StatSpec(stat, cols[:-1], target=cols[-1], backend=backend,
                                        dp=request))
        else:
            specs.append(stats.StatSpec(stat, cols, backend=backend, dp=request))
    parts = tables(12, 30000, k, 50.0, 10.0, 0.8)
    rec = recorded(monkeypatch)
    results = run_instances(specs, parts)
    runs = measure(specs, parts, rec, 8.0)
    v = Verdicts()
    for stat in TWO_PASS:
        mine = [r for r, s in zip(runs, specs, strict=True) if s.statistic == stat]
        check_statistic(v, stat, mine, 1, FAR)
        check_statistic(v, stat, mine, 2, NEAR)
        m = mine[0][0].z.size
        v.independent(f"{stat} pass 2 independent of pass 1",
                      np.concatenate([r[1].z[:m] for r in mine]),
                      np.concatenate([r[0].z for r in mine]),
                      np.concatenate([r[1].slack[:m] for r in mine]),
                      np.concatenate([r[0].slack for r in mine]))
    z1 = np.concatenate([r[0].z for r in runs])
    v.variance("all two-pass statistics pass 1", z1,
               np.concatenate([r[0].slack for r in runs]), NEAR)
    v.assert_all()
    assert not [r for r in results if isinstance(r, Exception)]


def test_ckks_release_floods_whenever_the_dp_noise_is_below_the_flood():
    """The DP noise replaces the key holder's flood only when it is at least the flood.

    Inputs on the release grid, so rounding alone returns them exactly.  With
    ``dp_noise_std`` = the flood std the release must be exact (flood
    skipped); just below it the flood must be there: ``released - x`` has
    variance ``flood^2 + grid^2 / 12`` (Sheppard's correction for the
    rounding, exact to ~1e-8 here), checked with a two-sided chi-square band
    at 1e-6 over 20000 values; a skipped flood leaves 0, rejected surely.
    A key holder that is the only party knows all the DP noise: it must flood.
    """
    holder = ckks.KeyHolder("aggregate")
    params = holder.release_parameters()
    rng = np.random.default_rng(21)
    x = rng.integers(-10**6, 10**6, 20000) * params.grid
    assert np.array_equal(holder.release(x, dp_noise_std=params.flood_std), x)
    flooded = holder.release(x, dp_noise_std=params.flood_std * (1 - 2.0**-20))
    t = float(np.sum((flooded - x) ** 2)) / params.output_std**2
    lo, hi = scipy_stats.chi2.ppf(ALPHA / 2, x.size), scipy_stats.chi2.isf(ALPHA / 2, x.size)
    assert lo <= t <= hi, t / x.size
    spec = stats.StatSpec("sum", ("a",), backend="ckks",
                          dp=dp.DPRequest(rho=1.0, bounds={"a": (0.0, 1.0)}))
    alone = spec.noise_plan(1).release_noise_std(1, keyholder_is_party=True)
    assert alone == 0.0 and holder.release_parameters(dp_noise_std=alone).flooded
