"""Local aggregates: what each party computes on its own rows (pure numpy).

Guarantees: the aggregates of all parties add up to the pooled aggregates (counts, column sums,
bin counts, missing counts; pass 2: centred moments divided by :func:`moment_divisor`), and a
table of the wrong shape or with infinity is refused, as is NaN (a missing value) with
``missing="error"``; with ``missing="skip"`` NaN is left out and counted (:func:`local_pass1`).
Reveals nothing by itself: a local aggregate is only ever sent inside the secure sum
(:mod:`smpc.aggregate`).
"""

from __future__ import annotations

import numpy as np

from smpc.errors import InputError
from smpc.names import Backend, Statistic
from smpc.stats.spec import StatSpec

__all__ = ["cells_per_column", "local_pass1", "local_pass2", "local_spread", "moment_divisor",
           "pass1_length",
           "pass2_length", "suppress_small_cells"]


def _check_rows(spec: StatSpec, rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim == 1:
        rows = rows[:, None]
    if rows.ndim != 2 or rows.shape[1] != len(spec.value_columns):
        raise InputError(
            f"expected a table with {len(spec.value_columns)} column(s) "
            f"({', '.join(spec.value_columns)}), got shape {rows.shape}"
        )
    if np.isinf(rows).any():
        raise InputError("the data contain infinite values in the requested columns")
    if not spec.skips_missing:
        gaps = np.isnan(rows).any(axis=0)
        if gaps.any():
            name = spec.value_columns[int(np.flatnonzero(gaps)[0])]
            raise InputError(f"column {name!r} has missing values (NaN) in the selected rows "
                             "(missing='error'); leave them out with missing='skip'")
    return rows


def _fine_edges(spec: StatSpec) -> np.ndarray:
    assert spec.bounds is not None
    return np.linspace(spec.bounds[0], spec.bounds[1], spec.resolution + 1)


def cells_per_column(spec: StatSpec) -> int:
    """Pass-1 cells per column of ``histogram`` / ``quantiles``: the bins, then the counts below
    and above the bins (the first / last edge, or ``bounds``), then (``missing="skip"``) the
    count of missing values."""
    if spec.statistic == Statistic.HISTOGRAM:
        assert spec.edges is not None
        bins = len(spec.edges) - 1
    else:
        bins = spec.resolution
    return bins + 2 + (1 if spec.skips_missing else 0)


def _bin_cells(spec: StatSpec, col: np.ndarray) -> np.ndarray:
    """One column's cells (:func:`cells_per_column`); a missing value (NaN) lands in the
    missing cell only, a value outside the edges in ``below`` / ``above`` only."""
    edges = np.asarray(spec.edges) if spec.statistic == Statistic.HISTOGRAM else _fine_edges(spec)
    gap = np.isnan(col)
    present = col[~gap]
    below, above = present < edges[0], present > edges[-1]
    counts, _ = np.histogram(present[~below & ~above], bins=edges)
    tail = [np.sum(below), np.sum(above)] + ([np.sum(gap)] if spec.skips_missing else [])
    return np.concatenate([counts, tail])


def local_pass1(spec: StatSpec, rows: np.ndarray) -> np.ndarray:
    """Pass-1 aggregate of one party's rows (what it contributes to the secure sum).

    Layout (``k`` value columns; ``m_j`` the number of missing values of column ``j`` among the
    party's rows, present only with ``missing="skip"``):

    * ``count``: ``[n, m_1 .. m_k]``;
    * ``sum``, ``mean``, ``var``, ``std``: ``[n, sum_1 .. sum_k, m_1 .. m_k]``, each column's
      sum over its present values (pandas ``skipna``), ``n`` the party's rows;
    * ``cov``, ``corr``, ``linreg``: ``[n_c, sum_1 .. sum_k, m_1 .. m_k]`` over the ``n_c`` rows
      complete in every column (pandas ``dropna``); ``m_j`` over all the party's rows;
    * ``histogram``, ``quantiles``: ``[n, per column: cells]`` (:func:`cells_per_column`).
    """
    rows = _check_rows(spec, rows)
    gap = np.isnan(rows)
    missing = gap.sum(axis=0).astype(np.float64) if spec.skips_missing else np.empty(0)
    if spec.statistic.bin_counts:
        out = [_bin_cells(spec, rows[:, j]) for j in range(rows.shape[1])]
        return np.concatenate([[rows.shape[0]], *out]).astype(np.float64)
    if spec.statistic == Statistic.COUNT:
        return np.concatenate([[float(rows.shape[0])], missing])
    # each column summed contiguously: numpy's pairwise summation, float error within
    # gamma(log2(n) + 24) sum |x| (smpc.stats.bounds), not gamma(n) as row by row
    if spec.complete_rows:
        used = rows[~gap.any(axis=1)]
        return np.concatenate([[used.shape[0]], np.ascontiguousarray(used.T).sum(axis=1),
                               missing])
    return np.concatenate([[rows.shape[0]],
                           np.ascontiguousarray(np.where(gap, 0.0, rows).T).sum(axis=1), missing])


def suppress_small_cells(spec: StatSpec, values: np.ndarray, min_cell_size: int) -> np.ndarray:
    """A party's pass-1 aggregate with every cell holding fewer than ``min_cell_size`` of its
    rows sent as 0 (exact mode: :mod:`parties.privacy.exact`).

    Cells are the bin counts of a ``histogram`` (with its ``below`` / ``above`` counts) or of the
    fine histogram behind ``quantiles``; the row count ``n`` (index 0) and every other
    statistic's aggregate are unchanged.  Since each party suppresses its own cells before they
    are shared, every cell of the joint sum is 0 or at least ``min_cell_size``.  Bias: a released
    cell is short of its true count by the rows of every party that had fewer than
    ``min_cell_size`` there (at most ``P (min_cell_size - 1)`` for ``P`` parties), and the
    released cells of a column add up to ``n`` minus the suppressed rows.
    """
    if min_cell_size <= 1 or spec.statistic not in (Statistic.HISTOGRAM, Statistic.QUANTILES):
        return values
    out = np.array(values, dtype=np.float64, copy=True)
    cells = out[1:]
    cells[cells < min_cell_size] = 0.0
    return out


def pass1_length(spec: StatSpec) -> int:
    """Length of the pass-1 vector (:func:`local_pass1`'s layout)."""
    k = len(spec.value_columns)
    missing = k if spec.skips_missing else 0
    if spec.statistic == Statistic.COUNT:
        return 1 + missing
    if spec.statistic.bin_counts:
        return 1 + k * cells_per_column(spec)
    return 1 + k + missing


def moment_divisor(spec: StatSpec, total: float) -> float:
    """What pass-2 sums are divided by before they are shared.

    ``ss`` divides by the pooled count ``N`` so that the moments stay within
    the ring's range; ``ckks`` has range to spare but adds absolute release
    noise, so it sends the plain centred sums (the noise is then relative to
    ``N * var``, not to ``var``).
    """
    return total if spec.backend == Backend.SS else 1.0


def local_spread(spec: StatSpec, rows: np.ndarray, shift: np.ndarray, total: float
                 ) -> np.ndarray:
    """Spread-pass aggregate (exact answers): ``sum (x_j - s_j)^2 / D`` per column.

    Its pooled sum picks the public scale of the moment pass
    (:func:`smpc.stats.bounds.choose_scale`).
    """
    rows = _check_rows(spec, rows)
    if spec.complete_rows:
        rows = rows[~np.isnan(rows).any(axis=1)]
    centred = np.nan_to_num(rows - shift[None, :], nan=0.0)
    return np.einsum("ij,ij->j", centred, centred) / moment_divisor(spec, total)


def local_pass2(spec: StatSpec, rows: np.ndarray, shift: np.ndarray, total: float,
                scale: np.ndarray | None = None) -> np.ndarray:
    """Moment-pass aggregate: centred first and second moments, divided by :func:`moment_divisor`.

    Returns ``[sum(u) / D  (k values), upper triangle of sum u u^T / D]`` with
    ``u = (x - s) / scale`` (``scale``: public powers of two, None: 1).
    Missing values (``missing="skip"``): ``cov`` / ``corr`` / ``linreg`` use the rows complete in
    every column; the other statistics count a missing value's centred value as 0, so each
    column's moments are over its present values (the cross moments of two columns, unused by
    ``var`` / ``std``, then mix row sets).
    """
    rows = _check_rows(spec, rows)
    if spec.complete_rows:
        rows = rows[~np.isnan(rows).any(axis=1)]
    divisor = moment_divisor(spec, total)
    centred = np.nan_to_num(rows - shift[None, :], nan=0.0)
    if scale is not None:
        centred = centred / np.asarray(scale, dtype=np.float64)[None, :]
    first = centred.sum(axis=0) / divisor
    second = (centred.T @ centred) / divisor
    iu = np.triu_indices(rows.shape[1])
    return np.concatenate([first, second[iu]])


def pass2_length(spec: StatSpec) -> int:
    k = len(spec.value_columns)
    return k + k * (k + 1) // 2
