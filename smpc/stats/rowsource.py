"""Where a party's local aggregates come from: an array in memory, or an engine that computes them.

A data party contributes three local aggregates to a joint statistic (:mod:`smpc.stats.local`):
pass 1 (counts, sums or bin counts), for exact two-pass statistics the spread, and pass 2 (the
centred moments).  Each is a *sum over the party's rows*, so it need not be computed from one
matrix in memory: a runtime may hand :func:`smpc.stats.roles.run_party` any object with the
methods of :class:`LocalRows` -- e.g. a database that computes the sums in SQL
(:mod:`parties.data.sql`) -- and the protocol is unchanged.

Guarantees every implementation must keep (a test runs each engine against :class:`ArrayRows`
on the same rows): the same layouts and the same missing-value rules as
:func:`~smpc.stats.local.local_pass1`, :func:`~smpc.stats.local.local_spread` and
:func:`~smpc.stats.local.local_pass2`; with ``clip`` (under DP, the public bounds) every present
value clipped into its bounds before it is aggregated, a missing value left missing; infinity
refused.  Reveals nothing by itself: like the arrays they stand for, the aggregates are only ever
sent inside the secure sum.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from smpc import dp
from smpc.stats.local import _check_rows, local_pass1, local_pass2, local_spread
from smpc.stats.spec import StatSpec

__all__ = ["ArrayRows", "LocalRows", "local_rows"]

Bounds = Sequence[tuple[float, float]]


@runtime_checkable
class LocalRows(Protocol):
    """A party's selected rows of a statistic's value columns, seen only through their sums."""

    def pass1(self, spec: StatSpec, clip: Bounds | None = None) -> np.ndarray:
        """:func:`~smpc.stats.local.local_pass1` of the rows (clipped into ``clip``)."""
        ...

    def spread(self, spec: StatSpec, shift: np.ndarray, total: float) -> np.ndarray:
        """:func:`~smpc.stats.local.local_spread` of the rows (exact answers: never clipped)."""
        ...

    def pass2(self, spec: StatSpec, shift: np.ndarray, total: float,
              scale: np.ndarray | None = None, clip: Bounds | None = None) -> np.ndarray:
        """:func:`~smpc.stats.local.local_pass2` of the rows (clipped into ``clip``)."""
        ...


class ArrayRows:
    """Rows held as one float64 matrix (``n x k``, NaN = missing): the reference implementation."""

    def __init__(self, spec: StatSpec, rows: np.ndarray) -> None:
        self.rows = _check_rows(spec, rows)

    def _clipped(self, clip: Bounds | None) -> np.ndarray:
        return self.rows if clip is None else dp.clip_rows(self.rows, clip)

    def pass1(self, spec: StatSpec, clip: Bounds | None = None) -> np.ndarray:
        return local_pass1(spec, self._clipped(clip))

    def spread(self, spec: StatSpec, shift: np.ndarray, total: float) -> np.ndarray:
        return local_spread(spec, self.rows, shift, total)

    def pass2(self, spec: StatSpec, shift: np.ndarray, total: float,
              scale: np.ndarray | None = None, clip: Bounds | None = None) -> np.ndarray:
        return local_pass2(spec, self._clipped(clip), shift, total, scale)


def local_rows(spec: StatSpec, rows: np.ndarray | LocalRows) -> LocalRows:
    """``rows`` as :class:`LocalRows`: a matrix is checked and wrapped in :class:`ArrayRows`."""
    if isinstance(rows, np.ndarray) or not isinstance(rows, LocalRows):
        return ArrayRows(spec, np.asarray(rows))
    return rows
