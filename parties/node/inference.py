"""The data owner's choices for an inference, from its own policy: the feature bound it declares,
the key column written beside its predictions, and its rows with a missing feature.

What each reveals, and to whom:

* **Feature bound** (:func:`declared_feature_bound`): when the analyst gives none, the largest
  ``|lo|``, ``|hi|`` of the policy's declared ``bounds`` of the model's features (the bounds a DP
  request of the analyst gets for those columns anyway), else the public default 1024.  It becomes
  a public parameter of the inference (the model owner's range check and flood use it), and is
  never derived from the data: an observed maximum would leak.  The model owner receives it from
  the coordinator; the data owner checks, on the owners' direct channel, that the model owner's
  spec has the same bound (:class:`parties.privacy.models.Requirements`).
* **Key column** (:func:`prediction_key`): a column of the data owner's table written beside the
  predictions, in its own encrypted ``outputs/`` file -- only if its policy declares it under
  ``columns_by_computation["prediction-key"]`` (a request for another column is refused, naming
  the declared ones).  Its values never leave the data owner: the analyst and the coordinator
  get the number of predictions and the file's path, as before.
* **Missing features** (``missing``: ``drop``, the default, or ``error``): a selected row with a
  missing feature is not predicted; it is listed in the file with an empty prediction (so that a
  join back is complete), and the audit log records how many.  Nothing about those rows leaves
  the data owner: the model owner and the analyst see the number of rows predicted, as before
  (under an exact policy the cohort minimum applies to those).  ``error`` refuses the inference,
  naming the column.  Under a DP policy a row with a missing feature is a dummy of the public
  padded size, and ``error`` -- a refusal that would depend on the rows -- is refused up front.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from parties.config import PolicyConfig
from parties.data.sources import DataSourceError, Table
from parties.data.sql.table import SqlTable
from parties.errors import ColumnRefused, PolicyError

__all__ = ["DEFAULT_FEATURE_BOUND", "KEY_COMPUTATION", "declared_feature_bound", "key_values",
           "prediction_key"]

#: The policy entry (``columns_by_computation``) naming the columns a data owner writes beside
#: its predictions.
KEY_COMPUTATION = "prediction-key"

#: The public feature bound when neither the analyst nor the data owner's policy gives one.
DEFAULT_FEATURE_BOUND = 1024.0


def declared_feature_bound(policy: PolicyConfig, features: Sequence[str]) -> float | None:
    """``max_j max(|lo_j|, |hi_j|)`` over the policy's declared bounds of ``features``; None when
    a feature has none (or they are all 0)."""
    bounds = [policy.bounds.get(f) for f in features]
    if not features or any(b is None for b in bounds):
        return None
    bound = max(max(abs(float(lo)), abs(float(hi))) for lo, hi in bounds)  # type: ignore[misc]
    return bound if bound > 0 else None


def prediction_key(policy: PolicyConfig, table: Table | SqlTable, asked: str,
                   me: str) -> str | None:
    """The key column to write beside the predictions: ``asked`` if the policy declares it, else
    the policy's only declared one (None if it declares none or several and none was asked)."""
    declared = list(policy.columns_by_computation.get(KEY_COMPUTATION, []))
    if asked:
        if asked not in declared:
            raise ColumnRefused(
                f"{me} does not write column {asked!r} beside its predictions (its policy's "
                f"{KEY_COMPUTATION} columns: {', '.join(declared) or 'none'})")
        key = asked
    elif len(declared) == 1:
        key = declared[0]
    else:
        return None
    if key in ("row", "prediction"):
        raise PolicyError(f"{me}'s key column may not be called {key!r} (a column of the "
                          "predictions file)")
    if key not in table.columns:
        raise ColumnRefused(f"{me} has no column {key!r} in its data")
    return key


def key_values(table: Table | SqlTable, column: str, row_numbers: np.ndarray) -> list[str]:
    """The key column's cells of the 1-based ``row_numbers``, as text ("" where missing)."""
    idx = np.asarray(row_numbers, dtype=np.int64) - 1
    try:
        cells = table.text(column)
        return ["" if cells[i] is None else str(cells[i]) for i in idx]
    except DataSourceError:  # a numeric column (Parquet)
        values = table.column(column)
        return ["" if np.isnan(values[i]) else _number(float(values[i])) for i in idx]


def _number(v: float) -> str:
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)
