"""Reading a party's Parquet export: each column on its own, so one odd column breaks nothing.

Column types (after decoding a dictionary-encoded column to its value type):

* integer (up to 2^53 in magnitude: float64 holds it exactly), floating, boolean (1/0) and
  decimal columns are numeric;
* string columns (``string``, ``large_string``, ``string_view``) are text;
* ``date32``, ``date64`` and ``timestamp`` (any unit, with or without a time zone) are date
  columns: days since 1970-01-01 00:00 UTC (:mod:`parties.data.dates`; a timestamp with a time
  zone is stored in UTC, one without is read as UTC);
* anything else -- list, struct, map, binary, time of day, duration, an integer beyond 2^53, a
  column pyarrow cannot read -- is *unsupported*: the table lists it and a request for it is
  refused with its name and type (``column 'tags' has Parquet type list<item: string>, which is
  neither numeric, text nor a date``); the other columns read normally.

The file itself (not Parquet, truncated, unreadable schema) is a file error, as in CSV.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from parties.data.sources import PARQUET_HINT, DataSourceError, Table

__all__ = ["load_parquet"]

_EXACT_INT = 2**53
_PER_DAY = {"s": 86400, "ms": 86400 * 10**3, "us": 86400 * 10**6, "ns": 86400 * 10**9}


def _unsupported(t: Any) -> str:
    return f"has Parquet type {t}, which is neither numeric, text nor a date"


def _convert(col: Any, pa: Any, pc: Any, pat: Any) -> tuple[str, Any]:
    """("number" | "date" | "text", values) or ("unsupported", reason) for one column."""
    t = col.type
    if pat.is_dictionary(t):
        col = col.cast(t.value_type)
        t = col.type
    if pat.is_integer(t):
        lo, hi = pc.min_max(col).values()
        if max(abs(lo.as_py() or 0), abs(hi.as_py() or 0)) > _EXACT_INT:
            return "unsupported", (f"has Parquet type {t} with integers beyond 2^53, which "
                                   "float64 cannot hold exactly")
    if pat.is_integer(t) or pat.is_floating(t) or pat.is_boolean(t) or pat.is_decimal(t):
        return "number", np.asarray(col.cast(pa.float64()).to_numpy(zero_copy_only=False),
                                    dtype=np.float64)
    if pat.is_string(t) or pat.is_large_string(t) or getattr(pat, "is_string_view",
                                                              lambda _t: False)(t):
        return "text", [None if v is None else str(v) for v in col.to_pylist()]
    if pat.is_date32(t):
        ticks, per_day = col.cast(pa.int32()), 1
    elif pat.is_date64(t):
        ticks, per_day = col.cast(pa.int64()), _PER_DAY["ms"]
    elif pat.is_timestamp(t):
        # the stored integer is UTC (with a zone) or wall-clock time read as UTC (without)
        ticks, per_day = col.cast(pa.int64()), _PER_DAY[t.unit]
    else:
        return "unsupported", _unsupported(t)
    # nanosecond ticks exceed 2^53: rounded to float64 (below a microsecond) before dividing
    raw = ticks.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    return "date", np.asarray(raw, dtype=np.float64) / per_day


def load_parquet(path: Path) -> Table:
    """Read Parquet ``path`` into a :class:`Table`, column by column (module docstring)."""
    src = str(path)
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
        import pyarrow.types as pat
    except ImportError:
        raise DataSourceError(
            f"{src}: reading Parquet needs the optional dependency pyarrow: {PARQUET_HINT}"
        ) from None
    try:
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
        n_rows = pf.metadata.num_rows
    except (OSError, pa.ArrowException) as exc:
        raise DataSourceError(f"{src}: cannot read Parquet file: {exc}") from None
    names = list(schema.names)
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DataSourceError(f"{src}: Parquet file has column {dup!r} more than once")
    try:
        whole = pf.read()
    except (OSError, pa.ArrowException, ValueError, TypeError):
        whole = None  # some column cannot be read: read them one by one
    cols: dict[str, Any] = {}
    dates: list[str] = []
    unsupported: dict[str, str] = {}
    for i, name in enumerate(names):
        try:
            col = whole.column(i) if whole is not None else pf.read(columns=[name]).column(0)
            kind, values = _convert(col, pa, pc, pat)
        except (OSError, pa.ArrowException, ValueError, TypeError, KeyError, IndexError):
            # a type pyarrow cannot read or convert: the column, not the file, is unusable
            kind, values = "unsupported", _unsupported(schema.field(i).type)
        if kind == "unsupported":
            unsupported[name] = values
            continue
        cols[name] = values
        if kind == "date":
            dates.append(name)
    return Table(cols, source=src, unsupported=unsupported, fmt="parquet", n_rows=n_rows,
                 dates=dates, order=names)
