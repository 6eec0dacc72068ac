"""Local aggregates: what each party computes on its own rows (pure numpy).

Guarantees: the aggregates of all parties add up to the pooled aggregates (counts, column sums,
bin counts; pass 2: centred moments divided by :func:`moment_divisor`), and a table of the wrong
shape or with NaN / infinity is refused.  Reveals nothing by itself: a local aggregate is only
ever sent inside the secure sum (:mod:`smpc.aggregate`).
"""

from __future__ import annotations

import numpy as np

from smpc.errors import InputError
from smpc.names import Backend, Statistic
from smpc.stats.spec import StatSpec

__all__ = ["local_pass1", "local_pass2", "local_spread", "moment_divisor", "pass1_length",
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
    if not np.isfinite(rows).all():
        raise InputError("the data contain NaN or infinite values in the requested columns")
    return rows


def _fine_edges(spec: StatSpec) -> np.ndarray:
    assert spec.bounds is not None
    return np.linspace(spec.bounds[0], spec.bounds[1], spec.resolution + 1)


def local_pass1(spec: StatSpec, rows: np.ndarray) -> np.ndarray:
    """Pass-1 aggregate of one party's rows (what it contributes to the secure sum)."""
    rows = _check_rows(spec, rows)
    if spec.statistic == Statistic.HISTOGRAM:
        edges = np.asarray(spec.edges)
        out = []
        for j in range(rows.shape[1]):
            col = rows[:, j]
            counts, _ = np.histogram(col, bins=edges)
            out.append(np.concatenate([counts, [np.sum(col < edges[0]), np.sum(col > edges[-1])]]))
        return np.concatenate([[rows.shape[0]], *out]).astype(np.float64)
    if spec.statistic == Statistic.QUANTILES:
        edges = _fine_edges(spec)
        clipped = np.clip(rows, edges[0], edges[-1])
        out = [np.histogram(clipped[:, j], bins=edges)[0] for j in range(rows.shape[1])]
        return np.concatenate([[rows.shape[0]], *out]).astype(np.float64)
    if spec.statistic == Statistic.COUNT:
        return np.array([float(rows.shape[0])])
    # each column summed contiguously: numpy's pairwise summation, float error within
    # gamma(log2(n) + 24) sum |x| (smpc.stats.bounds), not gamma(n) as row by row
    return np.concatenate([[rows.shape[0]], np.ascontiguousarray(rows.T).sum(axis=1)])


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
    k = len(spec.value_columns)
    if spec.statistic == Statistic.COUNT:
        return 1
    if spec.statistic == Statistic.HISTOGRAM:
        assert spec.edges is not None
        return 1 + k * (len(spec.edges) + 1)
    if spec.statistic == Statistic.QUANTILES:
        return 1 + k * spec.resolution
    return 1 + k


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
    centred = rows - shift[None, :]
    return np.einsum("ij,ij->j", centred, centred) / moment_divisor(spec, total)


def local_pass2(spec: StatSpec, rows: np.ndarray, shift: np.ndarray, total: float,
                scale: np.ndarray | None = None) -> np.ndarray:
    """Moment-pass aggregate: centred first and second moments, divided by :func:`moment_divisor`.

    Returns ``[sum(u) / D  (k values), upper triangle of sum u u^T / D]`` with
    ``u = (x - s) / scale`` (``scale``: public powers of two, None: 1).
    """
    rows = _check_rows(spec, rows)
    divisor = moment_divisor(spec, total)
    centred = rows - shift[None, :]
    if scale is not None:
        centred = centred / np.asarray(scale, dtype=np.float64)[None, :]
    first = centred.sum(axis=0) / divisor
    second = (centred.T @ centred) / divisor
    iu = np.triu_indices(rows.shape[1])
    return np.concatenate([first, second[iu]])


def pass2_length(spec: StatSpec) -> int:
    k = len(spec.value_columns)
    return k + k * (k + 1) // 2
