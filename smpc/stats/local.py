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

__all__ = ["local_pass1", "local_pass2", "moment_divisor", "pass1_length", "pass2_length"]


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
    return np.concatenate([[rows.shape[0]], rows.sum(axis=0)])


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


def local_pass2(spec: StatSpec, rows: np.ndarray, shift: np.ndarray, total: float) -> np.ndarray:
    """Pass-2 aggregate: centred first and second moments, divided by :func:`moment_divisor`.

    Returns ``[sum(x - s) / D  (k values), upper triangle of sum (x-s)(x-s)^T / D]``.
    """
    rows = _check_rows(spec, rows)
    divisor = moment_divisor(spec, total)
    centred = rows - shift[None, :]
    first = centred.sum(axis=0) / divisor
    second = (centred.T @ centred) / divisor
    iu = np.triu_indices(rows.shape[1])
    return np.concatenate([first, second[iu]])


def pass2_length(spec: StatSpec) -> int:
    k = len(spec.value_columns)
    return k + k * (k + 1) // 2
