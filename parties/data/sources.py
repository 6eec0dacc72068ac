"""A party's local table: CSV or Parquet, read into float64 columns on demand.

Guarantees:

* CSV files must start with a header row naming every column (non-empty, unique names; a first row
  made only of numbers is refused as "looks like data"); every row must have as many fields as
  the header (blank lines are skipped). Values are stripped of surrounding whitespace.
* A column is parsed as float64 only when it is requested, so text columns a computation does not
  use never cause errors. A value that is not a number in a requested column is an error naming
  the file, the row (1-based, header excluded; for CSV also the line) and the column. Infinite
  values are errors too: they have no fixed-point encoding.
* **Missing values.** In CSV the cells ``""``, ``NA``, ``N/A``, ``NaN``, ``nan``, ``NULL``,
  ``null`` (see :data:`MISSING_MARKERS`) are missing; in Parquet, nulls and NaNs are. They appear
  as NaN in :meth:`Table.column` (raw access, e.g. for filters, where NaN compares false).
  :meth:`Table.select` / :meth:`Table.matrix` refuse them by default (``missing="error"``, the
  error names the column, the count and the first row) or, with ``missing="drop"``, exclude every
  row with a missing value in any requested column and report how many were dropped.
* Parquet needs the optional dependency ``pyarrow`` (``pip install 'smpc[parquet]'``); integer,
  floating, boolean and decimal columns are numeric, string columns are text, other types are
  refused when requested.
* Arrays returned are read-only views of the cache (or fresh arrays): callers cannot corrupt the
  table.

Every problem raises :class:`DataSourceError` (a ``ValueError``) with one sentence.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from smpc.errors import InputError

__all__ = [
    "FORMATS",
    "MISSING_MARKERS",
    "DataSourceError",
    "Selection",
    "Table",
    "infer_format",
    "load_table",
]

FORMATS: tuple[str, ...] = ("csv", "parquet")
#: CSV cell values (after stripping whitespace) that mean "missing".
MISSING_MARKERS: frozenset[str] = frozenset({"", "NA", "N/A", "NaN", "nan", "NULL", "null"})
_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
PARQUET_HINT = "pip install 'smpc[parquet]'"

MissingPolicy = Literal["error", "drop"]


class DataSourceError(InputError):
    """The local table cannot be read, or a requested column cannot be used as asked."""


@dataclass(frozen=True)
class Selection:
    """Values of requested columns over the selected rows.

    ``values`` has shape ``(n_kept, k)``, float64, no NaN; ``rows`` is the boolean mask over the
    table's rows that were kept; ``n_dropped`` counts rows that were selected but dropped for a
    missing value (always 0 with ``missing="error"``).
    """

    values: np.ndarray
    rows: np.ndarray
    n_dropped: int

    @property
    def n_rows(self) -> int:
        """Number of rows kept."""
        return int(self.values.shape[0])


def _readonly(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.setflags(write=False)
    return v


class Table:
    """An immutable table of named columns, read from a file or built from arrays.

    Columns are stored as raw text (CSV, Parquet strings) or float64 (Parquet numbers); numeric
    views of text columns are parsed on first use and cached.
    """

    def __init__(
        self,
        columns: Mapping[str, Sequence[str | None] | np.ndarray],
        *,
        source: str = "<memory>",
        line_numbers: np.ndarray | None = None,
        unsupported: Mapping[str, str] | None = None,
        fmt: str = "memory",
        n_rows: int | None = None,
    ) -> None:
        """Build a table. Use :func:`load_table` for files or :meth:`from_arrays` in memory.

        ``columns`` maps names to float64 arrays (numeric, NaN = missing) or sequences of
        ``str | None`` (text; ``None`` or a :data:`MISSING_MARKERS` value = missing for numeric
        parsing). ``unsupported`` maps names of columns that exist but cannot be used to the
        reason. ``n_rows`` is only needed when no column is usable.
        """
        self.source = source
        self.format = fmt
        self._unsupported = dict(unsupported or {})
        self._columns: list[str] = list(columns) + [
            c for c in self._unsupported if c not in columns
        ]
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise DataSourceError(f"{source}: columns have different lengths {sorted(lengths)}")
        if n_rows is not None and lengths - {n_rows}:
            raise DataSourceError(f"{source}: columns do not have {n_rows} rows")
        self._n_rows = lengths.pop() if lengths else (n_rows or 0)
        self._numeric: dict[str, np.ndarray] = {}
        self._text: dict[str, np.ndarray] = {}
        self._bad: dict[str, DataSourceError] = {}
        self._checked: set[str] = set()
        self._complete: set[str] = set()  # checked columns without a missing value
        # the most recent all-rows selection, reused while the same columns are asked for
        # again (read-only, so sharing it is safe); bounded to one matrix
        self._last_full: tuple[tuple[str, ...], np.ndarray] | None = None
        for name, values in columns.items():
            if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
                arr = np.array(values, dtype=np.float64)
                self._numeric[name] = arr
            else:
                self._text[name] = np.array(list(values), dtype=object)
        self._lines = line_numbers

    # -------------------------------------------------------------------------- construction

    @classmethod
    def from_arrays(cls, columns: Mapping[str, Any], *, source: str = "<memory>") -> Table:
        """A table from in-memory columns: numeric array-likes become float64 (NaN = missing);
        anything else is text (``None`` = missing)."""
        cols: dict[str, Any] = {}
        for name, values in columns.items():
            arr = np.asarray(values)
            cols[name] = (
                arr if arr.dtype.kind in "fiub" else [None if v is None else str(v) for v in values]
            )
        return cls(cols, source=source)

    # ------------------------------------------------------------------------------ metadata

    @property
    def columns(self) -> list[str]:
        """Column names in file order."""
        return list(self._columns)

    @property
    def n_rows(self) -> int:
        """Number of data rows (header excluded)."""
        return self._n_rows

    def __repr__(self) -> str:
        return f"Table({self.source!r}, {self._n_rows} rows, columns={self._columns!r})"

    def _require(self, name: str) -> None:
        if name not in self._columns:
            raise DataSourceError(
                f"{self.source}: unknown column {name!r} (available: "
                f"{', '.join(repr(c) for c in self._columns) or 'none'})"
            )
        if name in self._unsupported:
            raise DataSourceError(f"{self.source}: column {name!r} {self._unsupported[name]}")

    def _where(self, i: int) -> str:
        if self._lines is not None:
            return f"row {i + 1} (line {int(self._lines[i])})"
        return f"row {i + 1}"

    # ------------------------------------------------------------------------------- columns

    def _parse(self, name: str) -> np.ndarray:
        text = self._text[name]
        missing = np.fromiter(
            (v is None or v in MISSING_MARKERS for v in text), dtype=bool, count=len(text)
        )
        out = np.full(len(text), np.nan, dtype=np.float64)
        present = text[~missing]
        try:
            out[~missing] = np.array(present, dtype=np.float64) if len(present) else []
        except (ValueError, TypeError):
            for i in np.flatnonzero(~missing):
                try:
                    np.float64(text[i])
                except (ValueError, TypeError):
                    raise DataSourceError(
                        f"{self.source}: non-numeric value {text[i]!r} in column {name!r} "
                        f"at {self._where(int(i))}"
                    ) from None
            raise DataSourceError(
                f"{self.source}: column {name!r} could not be parsed as numbers"
            ) from None
        return out

    def _check_finite(self, name: str, arr: np.ndarray) -> None:
        bad = np.flatnonzero(np.isinf(arr))
        if bad.size:
            i = int(bad[0])
            raise DataSourceError(
                f"{self.source}: infinite value in column {name!r} at {self._where(i)} "
                f"({bad.size} in total); infinite values cannot be encoded"
            )

    def column(self, name: str) -> np.ndarray:
        """Column ``name`` as a read-only float64 array of length :attr:`n_rows`, NaN = missing.

        Raises :class:`DataSourceError` for an unknown column (listing the available ones), a
        non-numeric value (naming row and column) or an infinite value.
        """
        self._require(name)
        if name in self._bad:
            raise self._bad[name]
        if name not in self._checked:
            try:
                arr = self._numeric[name] if name in self._numeric else self._parse(name)
                self._check_finite(name, arr)
            except DataSourceError as exc:
                self._bad[name] = exc
                raise
            self._numeric[name] = arr
            self._checked.add(name)
            if not np.isnan(arr).any():
                self._complete.add(name)
        return _readonly(self._numeric[name])

    def is_numeric(self, name: str) -> bool:
        """True when every present value of ``name`` is a finite number (unknown -> error)."""
        self._require(name)
        try:
            self.column(name)
        except DataSourceError:
            return False
        return True

    def text(self, name: str) -> np.ndarray:
        """Column ``name`` as a read-only object array of ``str``, ``None`` where missing.

        Only text columns have a text view (Parquet numbers do not): raises otherwise.
        """
        self._require(name)
        if name not in self._text:
            raise DataSourceError(f"{self.source}: column {name!r} is numeric, not text")
        t = self._text[name]
        return _readonly(
            np.array([None if v is None or v in MISSING_MARKERS else v for v in t], dtype=object)
        )

    # ----------------------------------------------------------------------------- selection

    def select(
        self,
        names: Iterable[str],
        *,
        rows: np.ndarray | None = None,
        missing: MissingPolicy = "error",
    ) -> Selection:
        """The requested numeric columns over the rows selected by the boolean mask ``rows``
        (all rows if ``None``), with the missing-value policy ``missing`` ("error" or "drop")."""
        names = list(names)
        if not names:
            raise DataSourceError(f"{self.source}: no columns requested")
        if len(set(names)) != len(names):
            raise DataSourceError(f"{self.source}: a column is requested twice in {names!r}")
        if missing not in ("error", "drop"):
            raise ValueError(f"missing must be 'error' or 'drop', got {missing!r}")
        if rows is None:
            mask = np.ones(self._n_rows, dtype=bool)
        else:
            mask = np.asarray(rows)
            if mask.dtype != np.bool_ or mask.shape != (self._n_rows,):
                raise DataSourceError(
                    f"{self.source}: row mask must be a boolean array of shape "
                    f"({self._n_rows},), got {mask.dtype} {mask.shape}"
                )
        cols = [self.column(n) for n in names]
        keep = mask.copy()
        for name, col in zip(names, cols, strict=True):
            if name in self._complete:
                continue  # no missing value anywhere in the column: nothing to drop
            gap = mask & np.isnan(col)
            if gap.any() and missing == "error":
                first = int(np.flatnonzero(gap)[0])
                raise DataSourceError(
                    f"{self.source}: column {name!r} has {int(gap.sum())} missing value(s) in "
                    f"the selected rows, the first at {self._where(first)}; clean the data or "
                    "drop incomplete rows (missing='drop')"
                )
            keep &= ~gap
        everything = bool(keep.all())
        last = self._last_full
        keep.setflags(write=False)
        if everything and last is not None and last[0] == tuple(names):
            return Selection(values=last[1], rows=keep, n_dropped=0)
        # column-major, so that each column is one contiguous copy (a row-major
        # transpose of 10^6 x 10 costs several times more)
        index = None if everything else np.flatnonzero(keep)
        n_rows = self._n_rows if index is None else int(index.size)
        values = np.empty((n_rows, len(names)), dtype=np.float64, order="F")
        for j, col in enumerate(cols):
            values[:, j] = col if index is None else col.take(index)
        values.setflags(write=False)
        if everything:
            self._last_full = (tuple(names), values)
        return Selection(values=values, rows=keep, n_dropped=int(mask.sum() - keep.sum()))

    def matrix(
        self,
        names: Iterable[str],
        *,
        rows: np.ndarray | None = None,
        missing: MissingPolicy = "error",
    ) -> np.ndarray:
        """``select(names, rows=rows, missing=missing).values``: shape ``(n, k)``, float64."""
        return self.select(names, rows=rows, missing=missing).values


# ----------------------------------------------------------------------------------- loading


def infer_format(path: str | os.PathLike[str]) -> str:
    """``csv`` or ``parquet`` from the file suffix (.csv, .parquet, .pq)."""
    fmt = _SUFFIXES.get(Path(path).suffix.lower())
    if fmt is None:
        raise DataSourceError(
            f"{path}: cannot tell the format from the suffix; name the format (csv or parquet)"
        )
    return fmt


def _looks_numeric(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _load_csv(path: Path, delimiter: str) -> Table:
    src = str(path)
    try:
        fh = path.open("r", encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise DataSourceError(f"{src}: cannot open file: {exc.strerror}") from None
    with fh:
        reader = csv.reader(fh, delimiter=delimiter, strict=True)
        try:
            header = next(reader, None)
            while header is not None and not header:
                header = next(reader, None)
            if header is None:
                raise DataSourceError(f"{src}: file is empty; a header row is required")
            names = [h.strip() for h in header]
            for i, n in enumerate(names):
                if not n:
                    raise DataSourceError(
                        f"{src}: header column {i + 1} has no name; a header row naming every "
                        "column is required"
                    )
            if len(set(names)) != len(names):
                dup = next(n for n in names if names.count(n) > 1)
                raise DataSourceError(f"{src}: header names column {dup!r} more than once")
            if all(_looks_numeric(n) for n in names):
                raise DataSourceError(
                    f"{src}: the first row {names!r} looks like data; a header row naming the "
                    "columns is required"
                )
            cols: list[list[str]] = [[] for _ in names]
            lines: list[int] = []
            k = len(names)
            for row in reader:
                if not row:
                    continue
                if len(row) != k:
                    raise DataSourceError(
                        f"{src}: row {len(lines) + 1} (line {reader.line_num}) has {len(row)} "
                        f"field(s), the header has {k}"
                    )
                lines.append(reader.line_num)
                for j, v in enumerate(row):
                    cols[j].append(v.strip())
        except csv.Error as exc:
            raise DataSourceError(
                f"{src}: malformed CSV at line {reader.line_num}: {exc}"
            ) from None
        except UnicodeDecodeError as exc:
            raise DataSourceError(f"{src}: not UTF-8 text ({exc.reason})") from None
    return Table(
        dict(zip(names, cols, strict=True)),
        source=src,
        line_numbers=np.asarray(lines, dtype=np.int64),
        fmt="csv",
    )


def _load_parquet(path: Path) -> Table:
    src = str(path)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
        import pyarrow.types as pat
    except ImportError:
        raise DataSourceError(
            f"{src}: reading Parquet needs the optional dependency pyarrow: {PARQUET_HINT}"
        ) from None
    try:
        tbl = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataSourceError(f"{src}: cannot read Parquet file: {exc}") from None
    names = list(tbl.column_names)
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DataSourceError(f"{src}: Parquet file has column {dup!r} more than once")
    cols: dict[str, Any] = {}
    unsupported: dict[str, str] = {}
    for name in names:
        col = tbl.column(name)
        t = col.type
        if pat.is_dictionary(t):
            col = col.cast(t.value_type)
            t = col.type
        if pat.is_integer(t) or pat.is_floating(t) or pat.is_boolean(t) or pat.is_decimal(t):
            cols[name] = np.asarray(
                col.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
            )
        elif pat.is_string(t) or pat.is_large_string(t):
            cols[name] = col.to_pylist()
        else:
            unsupported[name] = f"has Parquet type {t}, which is neither numeric nor text"
    return Table(cols, source=src, unsupported=unsupported, fmt="parquet", n_rows=tbl.num_rows)


def load_table(
    path: str | os.PathLike[str],
    fmt: str | None = None,
    *,
    delimiter: str = ",",
) -> Table:
    """Load a party's local table from ``path``.

    ``fmt`` is ``"csv"`` or ``"parquet"`` (default: from the suffix). ``delimiter`` applies to
    CSV. Raises :class:`DataSourceError` for a missing file, an unknown format, a malformed file
    or, for Parquet, a missing ``pyarrow``.
    """
    p = Path(path)
    fmt = infer_format(p) if fmt is None else fmt
    if fmt not in FORMATS:
        raise DataSourceError(f"{p}: unknown format {fmt!r} (expected csv or parquet)")
    if not p.is_file():
        raise DataSourceError(f"{p}: data file not found")
    return _load_csv(p, delimiter) if fmt == "csv" else _load_parquet(p)
