"""Finishing a statistic from the summed aggregates (the recipient, in the clear).

Guarantees: :func:`finish` computes the statistic exactly from exact sums (up to float64), with
the numerically stable shifted two-pass form; under DP it only post-processes released values
(free).  Reveals: the statistic, computed from the released sums and nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from smpc import dp
from smpc.errors import InputError
from smpc.names import Statistic
from smpc.stats.local import _fine_edges, moment_divisor
from smpc.stats.spec import StatResult, StatSpec

__all__ = ["correlation_from_cov", "finish", "quantiles_from_histogram", "shift_from_pass1"]


def shift_from_pass1(spec: StatSpec, summed: np.ndarray) -> tuple[np.ndarray, float]:
    """The public shift (rounded mean) and total count for pass 2."""
    n = float(summed[0])
    if n < 1:
        raise InputError("no rows matched: the cohort is empty")
    if n - spec.ddof <= 0 and spec.statistic.two_pass:
        raise InputError(f"{spec.statistic} needs more than {spec.ddof} row(s) in total")
    mean = summed[1:] / n
    grid = spec.codec.resolution
    return np.round(mean / grid) * grid, n


def _moments(spec: StatSpec, summed2: np.ndarray, n: float, scale: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Mean offset d and covariance matrix from the moment-pass sums (shift already applied).

    ``scale``: the public per-column powers of two the centred values were divided by
    (:func:`smpc.stats.bounds.choose_scale`; None: 1).
    """
    k = len(spec.value_columns)
    c = np.ones(k) if scale is None else np.asarray(scale, dtype=np.float64)
    per_row = moment_divisor(spec, n) / n
    d = summed2[:k] * per_row * c
    second = np.zeros((k, k))
    iu = np.triu_indices(k)
    second[iu] = summed2[k:] * per_row
    second = (second + np.triu(second, 1).T) * np.outer(c, c)
    population = second - np.outer(d, d)
    cov = population * (n / (n - spec.ddof))
    return d, cov


def finish(
    spec: StatSpec, summed1: np.ndarray, summed2: np.ndarray | None, shift: np.ndarray | None,
    *, dp_applied: bool = False, scale: np.ndarray | None = None,
) -> StatResult:
    """Compute the statistic from the summed aggregates.

    ``summed2``: the moment pass's sums, of ``(x - shift) / scale`` (``scale`` None: 1).
    """
    cols = list(spec.columns)
    n = float(summed1[0])
    if spec.statistic == Statistic.COUNT:
        return StatResult(Statistic.COUNT, cols, round(n), round(n), spec.backend)
    if n < 1:
        raise InputError("no rows matched: the cohort is empty")
    k = len(spec.value_columns)
    if spec.statistic == Statistic.SUM:
        return StatResult(Statistic.SUM, cols, summed1[1:].tolist(), n, spec.backend)
    if spec.statistic == Statistic.MEAN:
        return StatResult(Statistic.MEAN, cols, (summed1[1:] / n).tolist(), n, spec.backend)
    if spec.statistic == Statistic.HISTOGRAM:
        assert spec.edges is not None
        width = len(spec.edges) + 1
        blocks = np.rint(summed1[1:]).reshape(k, width).astype(np.int64)
        value = [b[:-2].tolist() for b in blocks]
        details = {
            "edges": list(spec.edges),
            "below": [int(b[-2]) for b in blocks],
            "above": [int(b[-1]) for b in blocks],
        }
        return StatResult(Statistic.HISTOGRAM, cols, value, n, spec.backend, details)
    if spec.statistic == Statistic.QUANTILES:
        counts = np.clip(np.rint(summed1[1:]).reshape(k, spec.resolution), 0, None)
        edges = _fine_edges(spec)
        for c, col in zip(counts, cols, strict=True):
            if spec.dp is None and n >= 1 and c.sum() <= 0:
                raise InputError(
                    f"every bin of the fine histogram of {col!r} was released as 0 (exact "
                    "answers send bins of few rows as 0): ask with a lower resolution")
        value = [quantiles_from_histogram(c, edges, spec.probabilities).tolist() for c in counts]
        details = {
            "probabilities": list(spec.probabilities),
            "bounds": list(spec.bounds or ()),
            "resolution": (edges[-1] - edges[0]) / spec.resolution,
        }
        return StatResult(Statistic.QUANTILES, cols, value, n, spec.backend, details)
    assert summed2 is not None and shift is not None
    d, cov = _moments(spec, summed2, n, scale)
    if dp_applied:
        cov = dp.postprocess_covariance(cov)  # post-processing: costs no privacy
    mean = shift + d
    if spec.statistic == Statistic.VAR:
        return StatResult(Statistic.VAR, cols, np.diag(cov).tolist(), n, spec.backend,
                          {"mean": mean.tolist()})
    if spec.statistic == Statistic.STD:
        return StatResult(Statistic.STD, cols, np.sqrt(np.clip(np.diag(cov), 0, None)).tolist(), n,
                          spec.backend, {"mean": mean.tolist()})
    if spec.statistic == Statistic.COV:
        return StatResult(Statistic.COV, cols, cov.tolist(), n, spec.backend,
                          {"mean": mean.tolist()})
    if spec.statistic == Statistic.CORR:
        return StatResult(Statistic.CORR, cols, correlation_from_cov(cov).tolist(), n, spec.backend,
                          {"mean": mean.tolist()})
    return _linreg(spec, cov, mean, n)


def correlation_from_cov(cov: np.ndarray) -> np.ndarray:
    """Pearson correlation matrix; a constant column gives NaN in its row and column."""
    sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = cov / np.outer(sd, sd)
    corr = np.where(np.outer(sd, sd) > 0, np.clip(corr, -1.0, 1.0), np.nan)
    np.fill_diagonal(corr, np.where(sd > 0, 1.0, np.nan))
    return corr


def _linreg(spec: StatSpec, cov: np.ndarray, mean: np.ndarray, n: float) -> StatResult:
    kx = len(spec.columns)
    sxx, sxy, syy = cov[:kx, :kx], cov[:kx, kx], cov[kx, kx]
    # on the features' correlation matrix: the rank test and the solve do not depend on the
    # features' units (a feature of std 1e-4 next to one of 1e6 is not "collinear")
    sd = np.sqrt(np.clip(np.diag(sxx), 0.0, None))
    if not np.all(sd > 0) or np.linalg.matrix_rank(sxx / np.outer(sd, sd)) < kx:
        raise InputError(
            "the features are collinear or constant in the pooled data: "
            "the least-squares fit is not unique"
        )
    beta = np.linalg.solve(sxx / np.outer(sd, sd), sxy / sd) / sd
    intercept = float(mean[kx] - mean[:kx] @ beta)
    residual = float(syy - sxy @ beta)
    r2 = float(1.0 - residual / syy) if syy > 0 else float("nan")
    return StatResult(
        Statistic.LINREG, list(spec.columns),
        {"coefficients": beta.tolist(), "intercept": intercept},
        n, spec.backend, {"target": spec.target, "r2": r2},
    )


def quantiles_from_histogram(
    counts: np.ndarray, edges: np.ndarray, probabilities: Sequence[float]
) -> np.ndarray:
    """Quantiles read off a histogram, interpolating linearly inside the bin.

    For each ``p`` the result lies in the first bin whose cumulative count
    reaches ``p * N`` -- the bin that contains the inverted-CDF quantile -- so
    it is within one bin width of that quantile.
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        raise InputError("no rows matched: the cohort is empty")
    cum = np.cumsum(counts)
    out = np.empty(len(probabilities))
    for i, p in enumerate(probabilities):
        # inverted CDF: the k-th smallest value with k = ceil(p N), at least 1
        target = max(math.ceil(p * total - 1e-9), 1)
        b = int(np.searchsorted(cum, target, side="left"))
        b = min(b, len(counts) - 1)
        before = cum[b - 1] if b > 0 else 0.0
        inside = counts[b]
        frac = 0.0 if inside <= 0 else min(max((target - before) / inside, 0.0), 1.0)
        out[i] = edges[b] + frac * (edges[b + 1] - edges[b])
    return out
