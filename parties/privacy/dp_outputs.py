"""Under differential privacy, every decision a party makes that someone else observes is part of
the mechanism (issue 12): nothing the analyst or the coordinator sees depends on the exact rows
except through accounted noise.

:class:`parties.node.PartyNode` calls this module at ``Prepare`` instead of the exact-mode checks
when a statistic asks for DP, and for an inference when the data owner's policy requires DP
(``policy.require_dp``).  What it decides, and why each decision is a function of public
quantities only:

**Minimum cohort (statistics): no refusal.**  In exact mode a party refuses when fewer than
``min_cohort_size`` of its rows match the filter -- one exact bit per request, free of charge: an
analyst who binary-searches a threshold in the filter reads one patient's value in about 30
refused requests.  Under DP the party always contributes.  We chose this over a noisy threshold
(sparse-vector style: refuse when ``n + Z < min_cohort``) because

* the statistic's guarantee does not need a cohort: its noise is calibrated to the change of one
  row whatever the cohort's size (``smpc.dp``), so a small cohort gets a noisy answer, as every
  cohort does;
* a noisy refusal would spend budget (its ``rho`` would have to be charged even when the party
  refuses, i.e. without any result) and would still be a per-party bit the coordinator reads
  outside the secure sum; omitting it costs nothing: the extra ``rho`` is 0, in the same ledger
  reservation as the statistic.

An empty or tiny cohort is therefore answered with noise (a count near 0, a mean near the
clipping box's midpoint ...), never with a refusal.  In exact mode the cohort refusal stays.

**Missing values (statistics and inferences): a public rule, no exact disclosure.**  With the
spec's ``missing="skip"`` (the CLI's default) a statistic leaves each missing value out inside
the secure sum and releases each column's missing count with noise, charged to the budget
(:mod:`smpc.dp.planning`, block ``missing``).  Otherwise (``missing="error"``, and inferences) a
row with a missing value (an empty cell, ``NA``, NaN ...) or an infinite one in any requested
column is dropped before anything is computed; how many were dropped is not disclosed (not in
the answer, not in an error; the party's own log and audit log do not record it either).  In
exact mode the party refuses with the column (``missing="error"``) or leaves the missing values
out and releases their exact count (``"skip"``).  The rule is applied row by row
(a row is kept as it is or dropped), so two neighbouring tables stay neighbouring or become
equal: the statistic's guarantee carries over unchanged.

**Range (statistics, ``ss``): decided up front on public quantities.**  Rows are clipped to the
public bounds before anything is encoded (:func:`smpc.dp.clip_rows`, in
:func:`smpc.stats.run_party`); :func:`check_statistic_range` refuses at ``Prepare`` a request
whose clipped aggregate plus noise could leave the fixed-point range for **any** table of the
party's size (:func:`smpc.dp.check_pass_range`; pass 2 is checked the same way, with its public
shift and divisor, when it starts).  Once it accepts, the encoding's own range check cannot
fire on the data.  The bound uses the party's total row count, not the filter's (the same
quantity its cost limits use): a search over filters learns nothing from it.

**Inference size: padded to a public size.**  The data owner's filtered row count used to reach
the model owner (the inference's ``n_samples``), the coordinator and the analyst (the number of
predictions): a search over filters read a cholesterol value to 0.1 in 13 calls, budget or no
budget.  Under DP the data owner runs the inference on :func:`padded_rows` rows -- a function of
its table's total row count only (the next power of two, at most its
``policy.max_inference_rows`` unless the table itself is larger) -- the selected rows followed by
dummy rows of zeros, whose predictions it discards; everyone else sees only the padded size (the
spec's ``n_samples`` and the reported number of predictions).  Rows with a missing or
non-finite feature, or one beyond the request's public ``feature_bound``, get no prediction
(their slot is a dummy) instead of a refusal.  No cohort refusal either: the data owner learns
its own predictions, which is no disclosure to anyone else.  The data owner itself knows how
many predictions it wrote (its output file; the audit record of its release says so).

Not covered (documented in SECURITY.md): timing and message sizes, and the party's total row
count, which bounds the padded size and the range check (it does not depend on any filter).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from parties.config import PolicyConfig
from smpc import dp
from smpc.stats import StatSpec

__all__ = [
    "PaddedFeatures",
    "check_statistic_range",
    "hides_inference_size",
    "pad_features",
    "padded_rows",
    "statistic_rows",
]


class _Selection(Protocol):
    @property
    def values(self) -> np.ndarray: ...

    @property
    def rows(self) -> np.ndarray: ...


class Table(Protocol):
    """What is read of a party's table (:class:`parties.data.sources.Table`)."""

    def select(self, names: list[str], *, rows: np.ndarray | None = ...,
               missing: Literal["error", "drop"] = ...) -> _Selection: ...

    def column(self, name: str) -> np.ndarray: ...

    @property
    def n_rows(self) -> int: ...


def check_statistic_range(spec: StatSpec, parties: int, table_rows: int) -> None:
    """Refuse (EncodingRangeError, no value named) a DP statistic whose pass 1 could leave the
    ``ss`` range for a table of ``table_rows`` rows clipped to the bounds; a no-op otherwise."""
    plan = spec.noise_plan(parties)
    if plan is not None:
        dp.check_pass_range(plan, 1, int(table_rows), frac_bits=spec.codec.frac_bits)


def _complete(values: np.ndarray) -> np.ndarray:
    """The rows of ``values`` (n x k) whose entries are all finite."""
    return np.isfinite(values).all(axis=1) if values.size else np.ones(values.shape[0], bool)


def statistic_rows(table: Table, columns: Sequence[str], mask: np.ndarray | None, *,
                   keep_missing: bool = False) -> np.ndarray:
    """The rows of ``columns`` that ``mask`` keeps, minus every row with a missing or infinite
    value in them (dropped by the public rule; the count is returned to nobody).

    ``keep_missing`` (the spec's ``missing="skip"``): rows with a missing value are kept, with
    NaN there; the statistic leaves each NaN out and counts it inside the secure sum, with
    noise charged to the budget (:mod:`smpc.stats.local`), so the count is released only
    noisy.  The rule is still row by row (neighbouring tables stay neighbouring)."""
    if keep_missing:
        index = slice(None) if mask is None else np.flatnonzero(mask)
        out = np.empty((table.n_rows if mask is None else int(np.count_nonzero(mask)),
                        len(columns)), dtype=np.float64)
        for j, name in enumerate(columns):
            out[:, j] = table.column(name)[index]
        return out
    values = table.select(list(columns), rows=mask, missing="drop").values
    keep = _complete(values)
    return values if keep.all() else values[keep]


def hides_inference_size(policy: PolicyConfig) -> bool:
    """Whether this data owner pads its inferences to a public size (its policy requires DP)."""
    return bool(policy.require_dp)


def padded_rows(table_rows: int, max_inference_rows: int) -> int:
    """The public size of every inference of a data owner whose table has ``table_rows`` rows:
    the next power of two, capped at ``max_inference_rows`` unless the table is larger."""
    n = max(int(table_rows), 1)
    return min(1 << (n - 1).bit_length(), max(int(max_inference_rows), n))


@dataclass(frozen=True)
class PaddedFeatures:
    """What the data owner computes on: ``features`` (``size`` x k: the usable selected rows
    first, then zeros) and the table row numbers of the first ``len(row_numbers)`` slots."""

    features: np.ndarray
    row_numbers: np.ndarray

    @property
    def size(self) -> int:
        return int(self.features.shape[0])

    @property
    def real(self) -> int:
        """How many slots hold a real row (known to the data owner only)."""
        return int(self.row_numbers.size)


def pad_features(table: Table, columns: Sequence[str], mask: np.ndarray | None, size: int,
                 feature_bound: float) -> PaddedFeatures:
    """The selected rows of ``columns`` padded with zero rows to ``size`` (public): a row with
    a missing or non-finite value, or one above ``feature_bound`` in magnitude, becomes a
    dummy (no prediction) instead of a refusal.  With a size the analyst chose smaller than the
    usable rows, only the first ``size`` of them (table order) are predicted -- a rule applied
    row by row, whose outcome only the data owner sees."""
    sel = table.select(list(columns), rows=mask, missing="drop")
    values = sel.values
    numbers = np.flatnonzero(sel.rows) + 1
    keep = _complete(values)
    if values.size:
        with np.errstate(invalid="ignore"):
            keep &= (np.abs(np.where(np.isfinite(values), values, 0.0)) <= feature_bound
                     ).all(axis=1)
    usable, numbers = values[keep][:size], numbers[keep][:size]
    out = np.zeros((size, len(columns)), dtype=np.float64)
    out[:usable.shape[0]] = usable
    return PaddedFeatures(out, numbers)
