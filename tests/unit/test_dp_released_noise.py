"""The differential-privacy noise each pass *releases*, measured for every statistic and backend.

What is observed.  The real protocol roles (``smpc.stats.run_party`` with
``run_recipient_ss``, or ``run_aggregator_ckks`` + ``run_keyholder_ckks``) run
among simulated nodes; the test wraps ``smpc.aggregate.ss_collect`` /
``ckks_collect`` and records what the recipient gets from each pass's secure
sum, before any post-processing.  It computes the exact aggregate itself with
numpy from the clipped rows (count, column sums; the centred moments from the
raw moments ``sum x``, ``sum x x^T`` and the public shift ``s`` and divisor
``D``; bin counts), so ``released - exact`` is one draw of the *total* noise
per coordinate.  Each draw is divided by the sigma this file derives from the
mechanism as documented in ``smpc/dp.py`` (not by asking the plan):

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

Checks (pooled over the runs of one statistic, per pass):

* variance: ``T = sum z^2 ~ chi^2_n``, two-sided; per pass and per block;
* spread: within each block of each run, ``sum (z - mean_block)^2`` pooled,
  ``~ chi^2`` with ``sum (len - 1)`` degrees of freedom: exactly 0 (rejected)
  if one draw is reused for every coordinate of a block;
* mean: ``sum z / sqrt(n) ~ N(0, 1)``;
* freshness: runs paired (same data), ``C = sum z_a z_b / |z_b| ~ N(0, 1)``
  exactly when the two runs' noise is independent, ``~ sqrt(n)`` when a run
  repeats another's noise;
* passes independent: the same statistic between pass 1 and the first
  coordinates of pass 2.

Error rates.  Each test runs m checks at level ``ALPHA / m`` (Bonferroni), so
it fails by chance with probability at most ``ALPHA = 1e-6``.  Each check
*asserts its own power* (from its n and its band, exactly, with scipy's
chi-square law) against the bugs it targets -- the released noise variance
times c: c = 0 (no noise), 1/289 (sigma 17x too small), (P-1)/P (a party omits
its share), (2P-1)/P (a party adds the full sigma), P (every party adds the
full sigma) -- to be above ``POWER = 1 - 1e-6``.  Where a check has too few
draws for the near alternatives (the count statistic: one value per run; the
count block; pass 1 of the two-pass statistics, which is pooled over the five
of them for that), it asserts power only against the far ones, and its
docstring says so.
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
    "count": (1, 300, 400, 60, 1.0, {}),
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
    columns), 1405 for histogram and quantiles (2 columns x 700 bins).  The
    pooled variance check has power > 1 - 1e-6 against every alternative in
    NEAR (a missing share, a full-sigma share, 17x too small, no noise).  The
    count statistic releases one value per run: its variance check has that
    power only against FAR (no noise, 17x too small, every party at full
    sigma); its power against a missing share is about 0.04 at 120 runs (ckks)
    and 0.5 at 400 (ss) -- the shared noise path is held to the NEAR bar by
    the other statistics.  Blocks: each against FAR and against being noised
    at another block's scale (count at the sums' scale and back).
    """
    k, rows, runs_ss, runs_ckks, rho, extra = ONE_PASS[stat]
    cols = columns(k)
    request = dp.DPRequest(rho=rho, bounds=dict.fromkeys(cols, (0.0, 100.0)))
    spec = stats.StatSpec(stat, cols, backend=backend, dp=request, **extra)
    parts = tables(11, rows, k, 50.0, 20.0 if stat != "histogram" else 30.0, 0.5)
    specs = [spec] * (runs_ss if backend == "ss" else runs_ckks)
    rec = recorded(monkeypatch)
    run_instances(specs, parts)
    runs = measure(specs, parts, rec, rho)
    v = Verdicts()
    if stat == "count":
        against = FAR if backend == "ss" else {k: FAR[k] for k in ("no noise", "17x too small")}
        check_statistic(v, stat, runs, 1, against, pairs=False)
    else:
        check_statistic(v, stat, runs, 1, NEAR)
    v.assert_all()


TWO_PASS_COLUMNS = 48
TWO_PASS_RUNS = 7  # per statistic


@pytest.mark.parametrize("backend", ["ss", "ckks"])
def test_two_pass_statistics_release_the_planned_noise_on_both_passes(backend, monkeypatch):
    """var, std, cov, corr, linreg (48 columns, correlation 0.8), 7 runs of each, interleaved.

    Pass 2 releases 48 + 1176 values per run: each statistic's pass-2
    variance check has power > 1 - 1e-6 against every NEAR alternative (a
    missing share; sigma 17x too small, the ckks bug; a full-sigma share; no
    noise), and the divisor ``D`` and shift come from the noisy pass 1 (on
    ss a wrong divisor scales the variance by its square).  Pass 1 releases
    49 values per run: per statistic (343 draws) the check has that power
    against FAR; pooled over the five statistics (1715 draws, one code path)
    against NEAR.  Pass-2 noise must be independent of pass-1 noise.
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
    run_instances(specs, parts)
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
