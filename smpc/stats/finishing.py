"""Finishing a statistic from the summed aggregates (the recipient, in the clear).

Guarantees: :func:`finish` computes the statistic exactly from exact sums (up to float64), with
the numerically stable shifted two-pass form; under DP it only post-processes released values
(free).  Reveals: the statistic, computed from the released sums and nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from smpc import dp
from smpc.errors import InputError
from smpc.names import Statistic
from smpc.stats.local import _fine_edges, cells_per_column, moment_divisor
from smpc.stats.spec import StatResult, StatSpec

__all__ = ["column_counts", "correlation_from_cov", "finish", "missing_counts",
           "quantiles_from_histogram", "quantiles_with_tails", "shift_from_pass1"]


def _floor(spec: StatSpec) -> int:
    """Fewest values a column needs: ``ddof + 1`` for the two-pass statistics, else 1."""
    return spec.ddof + 1 if spec.statistic.two_pass else 1


def missing_counts(spec: StatSpec, summed: np.ndarray) -> np.ndarray:
    """The pass-1 missing-value count of each column (zeros with ``missing="error"``), rounded
    and at least 0 (under DP a noisy count: post-processing, free)."""
    k = len(spec.value_columns)
    if not spec.skips_missing:
        return np.zeros(k)
    if spec.statistic.bin_counts:
        cells = np.asarray(summed[1:]).reshape(k, -1)
        raw = cells[:, -1]
    elif spec.statistic == Statistic.COUNT:
        raw = np.asarray(summed[1:1 + k])
    else:
        raw = np.asarray(summed[1 + k:1 + 2 * k])
    return np.clip(np.rint(raw), 0, None)


def column_counts(spec: StatSpec, summed: np.ndarray, *, dp_applied: bool = False
                  ) -> np.ndarray:
    """How many values each column's statistic uses: the rows complete in every column for
    ``cov`` / ``corr`` / ``linreg``, else the rows less the column's missing values.

    Exact: a column with too few values is an :class:`InputError` naming it.  Under DP the
    noisy counts are raised to the floor instead (post-processing, free; no decision rests on
    the exact rows).
    """
    n = float(summed[0])
    k = len(spec.value_columns)
    counts = np.full(k, n) if spec.complete_rows else n - missing_counts(spec, summed)
    floor = _floor(spec)
    if dp_applied:
        return np.maximum(counts, floor)
    for c, col in zip(counts, spec.value_columns, strict=True):
        if c < 1:
            if spec.complete_rows or not spec.skips_missing:
                raise InputError("no rows matched: the cohort is empty" if n < 1 else
                                 "no row is complete in every requested column")
            raise InputError(f"column {col!r} has no present value in the selected rows")
        if c < floor:
            raise InputError(f"{spec.statistic} needs more than {spec.ddof} value(s) of "
                             f"column {col!r}")
    return counts


def shift_from_pass1(spec: StatSpec, summed: np.ndarray, *, dp_applied: bool = False
                     ) -> tuple[np.ndarray, float]:
    """The public shift (rounded mean) and total count for pass 2."""
    n = float(summed[0])
    if n < 1:
        raise InputError("no rows matched: the cohort is empty")
    if n - spec.ddof <= 0 and spec.statistic.two_pass:
        raise InputError(f"{spec.statistic} needs more than {spec.ddof} row(s) in total")
    k = len(spec.value_columns)
    mean = summed[1:1 + k] / column_counts(spec, summed, dp_applied=dp_applied)
    grid = spec.codec.resolution
    return np.round(mean / grid) * grid, n


def _moments(spec: StatSpec, summed2: np.ndarray, n: float, counts: np.ndarray,
             scale: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean offset d and covariance matrix from the moment-pass sums (shift already applied).

    ``counts``: each column's number of values (all ``n`` for complete rows); ``scale``: the
    public per-column powers of two the centred values were divided by
    (:func:`smpc.stats.bounds.choose_scale`; None: 1).
    """
    k = len(spec.value_columns)
    c = np.ones(k) if scale is None else np.asarray(scale, dtype=np.float64)
    divisor = moment_divisor(spec, n)
    d = summed2[:k] * divisor / counts * c
    second = np.zeros((k, k))
    iu = np.triu_indices(k)
    second[iu] = summed2[k:] * divisor
    second = (second + np.triu(second, 1).T) * np.outer(c, c)
    pair = np.sqrt(np.outer(counts, counts))  # n_j on the diagonal; unused off it unless equal
    population = second / pair - np.outer(d, d)
    cov = population * (pair / (pair - spec.ddof))
    return d, cov


def _int(x: float) -> int:
    return round(float(x))


def _missing_details(spec: StatSpec, summed1: np.ndarray, counts: np.ndarray,
                     details: dict[str, Any]) -> int:
    """Add the missing-value counts (``missing="skip"``) to ``details``; return the result's
    ``n``: the values used when every column used as many, else the rows selected (with each
    column's own count in ``details["n"]``)."""
    used = [_int(c) for c in counts]
    if not spec.skips_missing:
        return used[0] if used else _int(summed1[0])
    cols = spec.value_columns
    details["missing"] = {c: _int(m) for c, m in
                          zip(cols, missing_counts(spec, summed1), strict=True)}
    if spec.complete_rows:
        details["rows_used"] = "complete in every requested column"
    if len(set(used)) == 1:
        return used[0]
    details["n"] = dict(zip(cols, used, strict=True))
    return max(_int(summed1[0]), 0)


def finish(
    spec: StatSpec, summed1: np.ndarray, summed2: np.ndarray | None, shift: np.ndarray | None,
    *, dp_applied: bool = False, scale: np.ndarray | None = None,
) -> StatResult:
    """Compute the statistic from the summed aggregates.

    ``n`` is an ``int`` for every statistic (under DP the rounded noisy count: rounding is
    free post-processing).  ``summed2``: the moment pass's sums, of ``(x - shift) / scale``
    (``scale`` None: 1).
    """
    cols = list(spec.columns)
    n = float(summed1[0])
    details: dict[str, Any] = {}
    k = len(spec.value_columns)
    if spec.statistic == Statistic.COUNT:
        present = np.clip(np.rint(n - missing_counts(spec, summed1)), 0, None)
        n_out = _missing_details(spec, summed1, present, details)
        # one number per column with missing="skip" (pandas count()); otherwise every column
        # has all n rows and the count is the one number n
        value: Any = ([_int(c) for c in present] if spec.skips_missing and k > 1
                      else _int(present[0]))
        return StatResult(Statistic.COUNT, cols, value, n_out, spec.backend, details)
    if n < 1:
        raise InputError("no rows matched: the cohort is empty")
    if spec.statistic.bin_counts:
        return _finish_bins(spec, summed1, details, dp_applied)
    counts = column_counts(spec, summed1, dp_applied=dp_applied)
    n_out = _missing_details(spec, summed1, counts, details)
    if spec.statistic == Statistic.SUM:
        return StatResult(Statistic.SUM, cols, summed1[1:1 + k].tolist(), n_out, spec.backend,
                          details)
    if spec.statistic == Statistic.MEAN:
        return StatResult(Statistic.MEAN, cols, (summed1[1:1 + k] / counts).tolist(), n_out,
                          spec.backend, details)
    assert summed2 is not None and shift is not None
    d, cov = _moments(spec, summed2, n, counts, scale)
    if spec.skips_missing and not spec.complete_rows:
        # var / std: each column over its own rows; the cross moments mix row sets and must
        # not move the variances in the projection below
        cov = np.diag(np.diag(cov))
    if dp_applied:
        cov = dp.postprocess_covariance(cov)  # post-processing: costs no privacy
    mean = shift + d
    details["mean"] = mean.tolist()
    if spec.statistic == Statistic.VAR:
        return StatResult(Statistic.VAR, cols, np.diag(cov).tolist(), n_out, spec.backend,
                          details)
    if spec.statistic == Statistic.STD:
        return StatResult(Statistic.STD, cols, np.sqrt(np.clip(np.diag(cov), 0, None)).tolist(),
                          n_out, spec.backend, details)
    if spec.statistic == Statistic.COV:
        return StatResult(Statistic.COV, cols, cov.tolist(), n_out, spec.backend, details)
    if spec.statistic == Statistic.CORR:
        return StatResult(Statistic.CORR, cols, correlation_from_cov(cov).tolist(), n_out,
                          spec.backend, details)
    del details["mean"]
    return _linreg(spec, cov, mean, n_out, details)


def _finish_bins(spec: StatSpec, summed1: np.ndarray, details: dict[str, Any],
                 dp_applied: bool) -> StatResult:
    """``histogram`` / ``quantiles`` from the summed cells (:func:`~.local.cells_per_column`)."""
    cols = list(spec.columns)
    k = len(cols)
    width = cells_per_column(spec)
    blocks = np.clip(np.rint(summed1[1:]).reshape(k, width), 0, None).astype(np.int64)
    bins = width - (3 if spec.skips_missing else 2)
    below, above = blocks[:, bins], blocks[:, bins + 1]
    present = blocks[:, :bins + 2].sum(axis=1)
    counts = present if spec.skips_missing else np.full(k, float(summed1[0]))
    n_out = _missing_details(spec, summed1, counts, details)
    details["below"] = [int(b) for b in below]
    details["above"] = [int(a) for a in above]
    if spec.statistic == Statistic.HISTOGRAM:
        assert spec.edges is not None
        details["edges"] = list(spec.edges)
        value = [b[:bins].tolist() for b in blocks]
        return StatResult(Statistic.HISTOGRAM, cols, value, n_out, spec.backend, details)
    edges = _fine_edges(spec)
    for block, col in zip(blocks, cols, strict=True):
        if not dp_applied and block[:bins + 2].sum() <= 0:
            raise InputError(
                f"every bin of the fine histogram of {col!r} was released as 0 (exact "
                "answers send bins of few rows as 0): ask with a lower resolution")
    values, clamped, warnings = [], [], []
    for block, col in zip(blocks, cols, strict=True):
        v, c = quantiles_with_tails(block[:bins], int(block[bins]), int(block[bins + 1]), edges,
                                    spec.probabilities)
        values.append(v.tolist())
        clamped.append(c)
        for p, out in zip(spec.probabilities, c, strict=True):
            if out:
                side, bound = (("below the lower", edges[0]) if out < 0
                               else ("above the upper", edges[-1]))
                warnings.append(
                    f"the {p:g} quantile of {col!r} lies {side} bound {bound:g} "
                    f"({int(block[bins] if out < 0 else block[bins + 1])} of "
                    f"{int(block[:bins + 2].sum())} values are {side.split()[0]} it): "
                    f"reported as {bound:g}, clamped; widen the bounds")
    details.update({
        "probabilities": list(spec.probabilities),
        "bounds": list(spec.bounds or ()),
        "resolution": (edges[-1] - edges[0]) / spec.resolution,
        "clamped": [[int(x) for x in c] for c in clamped],  # -1 below, +1 above, 0 in
    })
    if warnings:
        details["warnings"] = warnings
    return StatResult(Statistic.QUANTILES, cols, values, n_out, spec.backend, details)


def correlation_from_cov(cov: np.ndarray) -> np.ndarray:
    """Pearson correlation matrix; a constant column gives NaN in its row and column."""
    sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = cov / np.outer(sd, sd)
    corr = np.where(np.outer(sd, sd) > 0, np.clip(corr, -1.0, 1.0), np.nan)
    np.fill_diagonal(corr, np.where(sd > 0, 1.0, np.nan))
    return corr


def _linreg(spec: StatSpec, cov: np.ndarray, mean: np.ndarray, n: int,
            details: dict[str, Any]) -> StatResult:
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
        n, spec.backend, {"target": spec.target, "r2": r2, **details},
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
    out = np.empty(len(probabilities))
    for i, p in enumerate(probabilities):
        # inverted CDF: the k-th smallest value with k = ceil(p N), at least 1
        out[i] = _at_rank(counts, edges, max(math.ceil(p * total - 1e-9), 1))
    return out


def _at_rank(counts: np.ndarray, edges: np.ndarray, target: int) -> float:
    """The ``target``-th smallest value (1-based) of a histogram, interpolated in its bin."""
    cum = np.cumsum(counts)
    b = int(np.searchsorted(cum, target, side="left"))
    b = min(b, len(counts) - 1)
    before = cum[b - 1] if b > 0 else 0.0
    inside = counts[b]
    frac = 0.0 if inside <= 0 else min(max((target - before) / inside, 0.0), 1.0)
    return float(edges[b] + frac * (edges[b + 1] - edges[b]))


def quantiles_with_tails(
    bins: np.ndarray, below: int, above: int, edges: np.ndarray, probabilities: Sequence[float]
) -> tuple[np.ndarray, list[int]]:
    """Quantiles of the values counted by ``[below, bins..., above]`` (``below`` / ``above``:
    values under the first edge / over the last), and for each whether it was clamped.

    With ``N`` the total and ``t = max(ceil(p N), 1)`` the inverted-CDF rank: ``t <= below``
    means the quantile lies below the bounds (reported as the first edge, flag ``-1``);
    ``t > N - above`` above them (the last edge, flag ``+1``); otherwise it is read off the
    bins as :func:`quantiles_from_histogram` does (flag ``0``).
    """
    bins = np.asarray(bins, dtype=np.float64)
    total = float(below) + float(bins.sum()) + float(above)
    if total <= 0:
        raise InputError("no rows matched: the cohort is empty")
    out = np.empty(len(probabilities))
    flags: list[int] = []
    for i, p in enumerate(probabilities):
        target = max(math.ceil(p * total - 1e-9), 1)
        if target <= below:
            out[i], flag = edges[0], -1
        elif target > total - above:
            out[i], flag = edges[-1], 1
        else:
            out[i], flag = _at_rank(bins, edges, target - below), 0
        flags.append(flag)
    return out, flags
