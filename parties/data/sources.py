"""A party's local table: CSV or Parquet, read into float64 columns on demand.

Guarantees:

* CSV files must start with a header row naming every column (non-empty, unique names; a first row
  made only of numbers is refused as "looks like data"); every row must have as many fields as
  the header (blank lines are skipped). Values are stripped of surrounding whitespace.
* A column is parsed as float64 only when it is requested, so text columns a computation does not
  use never cause errors. A value that is not a number in a requested column is an error naming
  the row (1-based, header excluded) and the column. Infinite values are errors too: they have
  no fixed-point encoding.
* **Missing values.** In CSV the cells ``""``, ``NA``, ``N/A``, ``NaN``, ``nan``, ``NULL``,
  ``null`` (see :data:`MISSING_MARKERS`) are missing; in Parquet, nulls and NaNs are. They appear
  as NaN in :meth:`Table.column` (raw access, e.g. for filters, where NaN compares false).
  :meth:`Table.select` / :meth:`Table.matrix` refuse them by default (``missing="error"``, the
  error names the column and the first row) or, with ``missing="drop"``, exclude every
  row with a missing value in any requested column and report how many were dropped.
* **Dates.** A column whose present cells are all ISO 8601 dates or timestamps (CSV; see
  :mod:`parties.data.dates`) or of a Parquet date or timestamp type is a *date column*: as a
  value it is the number of days since 1970-01-01 00:00 UTC (float64), and filters compare it
  with a date literal (``visit >= '2024-01-01'``). :meth:`Table.is_numeric` is false for it;
  :meth:`Table.is_date` is true. A CSV cell of such a column that is not a date is an error
  naming its row and column.
* **Decimal commas.** With ``decimal=","`` a CSV number is written ``72,5``; a cell holding a
  ``.`` is then not a number (it could be a thousands separator: never guessed). Thousands
  separators are not supported.
* Reading files: :mod:`parties.data.csvfile` (delimiter, encoding: given or detected) and
  :mod:`parties.data.parquetfile` (a column of a type that is not numeric, text or a date does
  not break the file: it is refused only when requested, naming the column and its type).
  Parquet needs the optional dependency ``pyarrow`` (``pip install 'smpc[parquet]'``).
* Arrays returned are read-only views of the cache (or fresh arrays): callers cannot corrupt the
  table.

Every problem raises :class:`DataSourceError` (a ``ValueError``) with one sentence.

**Errors carry no data.** An error about a column (:attr:`DataSourceError.kind` other than
``"file"``) is built from a fixed template naming at most the column, a row number and the
kind of problem -- never a cell's text or value, never the file's path -- so that it may leave
the party (:func:`parties.node.redact.redact` sends :attr:`DataSourceError.public`: the same
sentence, except that a missing value's row is left out, since which selected row is the first
with a missing value depends on the filter, i.e. on other columns). Only an
error about the file itself (``"file"``: cannot be opened, malformed, no header) names its
path; it is raised when the table is loaded, on the party's own host, and leaves the party only
as "its data file cannot be read". :attr:`DataSourceError.log_text` is what the party's own log
records: the same, plus the CSV line number and, when the cell's shape suggests the wrong decimal
separator, a hint (:attr:`DataSourceError.hint`: it describes the cell, so it stays there).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from parties.data.dates import days_since_epoch, looks_like_date
from smpc.errors import InputError

__all__ = [
    "FORMATS",
    "KINDS",
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
_DECIMAL_COMMA = re.compile(r"[+-]?\d*,\d+(?:[eE][+-]?\d+)?")


#: The kinds of :class:`DataSourceError`, for the party's log and for callers.
KINDS: tuple[str, ...] = ("file", "unknown-column", "unsupported-column", "not-a-number",
                          "not-a-date", "infinite", "missing", "not-text", "request")


class DataSourceError(InputError):
    """The local table cannot be read, or a requested column cannot be used as asked.

    ``kind`` is one of :data:`KINDS`; ``column`` and ``row`` (1-based, header excluded) say
    where, when there is a where; ``line`` is the CSV line and ``hint`` a remedy that depends on
    the cell's shape (the party's log only).  ``str()``
    of any kind but ``"file"`` is a fixed template without cells or paths (module docstring);
    :attr:`public` is the sentence that may leave the party, for every kind.
    """

    def __init__(self, message: str, *, kind: str = "file", column: str | None = None,
                 row: int | None = None, line: int | None = None,
                 public: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint
        self.kind = kind
        self.column = column
        self.row = row
        self.line = line
        self._public = public

    @property
    def public(self) -> str:
        """What the party may say about this problem to a peer or an analyst."""
        if self._public is not None:
            return self._public
        return "its data file cannot be read" if self.kind == "file" else str(self)

    @property
    def log_text(self) -> str:
        """What the party's own log records: the kind, the sentence (with the row), the CSV
        line -- never a cell (nor, for a file error, the path: the node logged it at start)."""
        where = "" if self.line is None else f" (line {self.line} of the file)"
        hint = "" if self.hint is None else f"; {self.hint}"
        return f"{self.kind}: {self.public if self.kind == 'file' else self}{where}{hint}"


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
        dates: Iterable[str] = (),
        decimal: str = ".",
        dialect: Mapping[str, str] | None = None,
        order: Sequence[str] | None = None,
    ) -> None:
        """Build a table. Use :func:`load_table` for files or :meth:`from_arrays` in memory.

        ``columns`` maps names to float64 arrays (numeric, NaN = missing) or sequences of
        ``str | None`` (text; ``None`` or a :data:`MISSING_MARKERS` value = missing for numeric
        parsing). ``unsupported`` maps names of columns that exist but cannot be used to the
        reason. ``n_rows`` is only needed when no column is usable. ``dates`` names numeric
        columns that hold days since 1970-01-01 (Parquet dates); ``decimal`` is the decimal
        separator of text numbers ("." or ","); ``dialect`` records how a file was read
        (delimiter, encoding, decimal, and whether each was detected) for logs and tests;
        ``order`` lists every column (usable and unsupported) in file order.
        """
        if decimal not in (".", ","):
            raise ValueError(f"decimal must be '.' or ',', got {decimal!r}")
        self.source = source
        self.format = fmt
        self.dialect: dict[str, str] = dict(dialect or {})
        self._decimal = decimal
        self._dates: set[str] = set(dates)
        self._unsupported = dict(unsupported or {})
        self._columns: list[str] = list(columns) + [
            c for c in self._unsupported if c not in columns
        ]
        if order is not None:
            if sorted(order) != sorted(self._columns):
                raise ValueError("order must list every column once")
            self._columns = list(order)
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
                f"unknown column {name!r} (available: "
                f"{', '.join(repr(c) for c in self._columns) or 'none'})",
                kind="unknown-column", column=name,
                public=f"column {name!r} is not in its data",
            )
        if name in self._unsupported:
            raise DataSourceError(f"column {name!r} {self._unsupported[name]}",
                                  kind="unsupported-column", column=name)

    def _error(self, kind: str, name: str, i: int, template: str,
               public: str | None = None) -> DataSourceError:
        """A column error at row index ``i`` from ``template`` (``{row}``, ``{column}``);
        ``public`` (``{column}`` only), when the row may not leave the party."""
        line = int(self._lines[i]) if self._lines is not None else None
        return DataSourceError(
            template.format(row=i + 1, column=repr(name)), kind=kind, column=name, row=i + 1,
            line=line, public=None if public is None else public.format(column=repr(name)))

    # ------------------------------------------------------------------------------- columns

    def _parse(self, name: str) -> np.ndarray:
        text = self._text[name]
        missing = np.fromiter(
            (v is None or v in MISSING_MARKERS for v in text), dtype=bool, count=len(text)
        )
        out = np.full(len(text), np.nan, dtype=np.float64)
        present = text[~missing]
        if self._decimal == ",":  # '72,5' -> '72.5'; a '.' makes the cell not a number
            present = np.array([v.replace(",", ".") if "." not in v else "x" for v in present],
                               dtype=object)
        try:
            out[~missing] = np.array(present, dtype=np.float64) if len(present) else []
        except (ValueError, TypeError):
            first = str(text[~missing][0])  # the cell as written
            if looks_like_date(first) and days_since_epoch(first) is not None:
                return self._parse_dates(name, text, missing)
            for k, i in enumerate(np.flatnonzero(~missing)):
                try:
                    np.float64(present[k])
                except (ValueError, TypeError):  # the cell is never quoted (module docstring)
                    err = self._error("not-a-number", name, int(i),
                                      "row {row} of column {column} is not a number")
                    err.hint = self._decimal_hint(str(text[i]))
                    raise err from None
            raise DataSourceError(f"column {name!r} could not be parsed as numbers",
                                  kind="not-a-number", column=name) from None
        return out

    def _decimal_hint(self, cell: str) -> str | None:
        """A remedy for the party's log when ``cell``'s shape suggests the wrong decimal
        separator (its shape depends on the cell: never sent out)."""
        if self._decimal == "." and _DECIMAL_COMMA.fullmatch(cell):
            return "it is written with a decimal comma: set data.decimal to ',' in the config"
        if self._decimal == "," and "." in cell:
            return "with data.decimal ',' a number may not contain '.'"
        return None

    def _parse_dates(self, name: str, text: np.ndarray, missing: np.ndarray) -> np.ndarray:
        """A text column whose first present cell is a date: every present cell must be one."""
        out = np.full(len(text), np.nan, dtype=np.float64)
        for i in np.flatnonzero(~missing):
            days = days_since_epoch(text[i])
            if days is None:  # the cell is never quoted (module docstring)
                raise self._error("not-a-date", name, int(i),
                                  "row {row} of column {column} is not a date; the column holds "
                                  "ISO 8601 dates (YYYY-MM-DD, optionally with a time)")
            out[i] = days
        self._dates.add(name)
        return out

    def _check_finite(self, name: str, arr: np.ndarray) -> None:
        bad = np.flatnonzero(np.isinf(arr))
        if bad.size:
            raise self._error("infinite", name, int(bad[0]),
                              "row {row} of column {column} is infinite; infinite values "
                              "cannot be encoded")

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
        """True when every present value of ``name`` is a finite number (unknown -> error);
        false for a date column (whose :meth:`column` is nevertheless its days since 1970) and
        an unsupported one."""
        if name in self._unsupported:
            return False
        self._require(name)
        try:
            self.column(name)
        except DataSourceError:
            return False
        return name not in self._dates

    def is_date(self, name: str) -> bool:
        """True when ``name`` is a date column: every present value a date or a timestamp
        (:meth:`column` gives days since 1970-01-01 00:00 UTC); unknown -> error."""
        if name in self._unsupported:
            return False
        self._require(name)
        try:
            self.column(name)
        except DataSourceError:
            return False
        return name in self._dates

    def text(self, name: str) -> np.ndarray:
        """Column ``name`` as a read-only object array of ``str``, ``None`` where missing.

        Only text columns have a text view (Parquet numbers do not): raises otherwise.
        """
        self._require(name)
        if name not in self._text:
            raise DataSourceError(f"column {name!r} is numeric, not text", kind="not-text",
                                  column=name)
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
            raise DataSourceError("no columns requested", kind="request")
        if len(set(names)) != len(names):
            raise DataSourceError(f"a column is requested twice in {names!r}", kind="request")
        if missing not in ("error", "drop"):
            raise ValueError(f"missing must be 'error' or 'drop', got {missing!r}")
        if rows is None:
            mask = np.ones(self._n_rows, dtype=bool)
        else:
            mask = np.asarray(rows)
            if mask.dtype != np.bool_ or mask.shape != (self._n_rows,):
                raise DataSourceError(
                    f"the row mask must be a boolean array of shape ({self._n_rows},), got "
                    f"{mask.dtype} {mask.shape}", kind="request")
        cols = [self.column(n) for n in names]
        keep = mask.copy()
        for name, col in zip(names, cols, strict=True):
            if name in self._complete:
                continue  # no missing value anywhere in the column: nothing to drop
            gap = mask & np.isnan(col)
            if gap.any() and missing == "error":
                first = int(np.flatnonzero(gap)[0])
                # which row is the first missing one *among the selected* depends on the
                # filter, i.e. on other columns of other rows: it stays in the party's log
                raise self._error(
                    "missing", name, first,
                    "column {column} has missing values in the selected rows, the first at "
                    "row {row}; clean the data or drop incomplete rows (missing='drop')",
                    public="column {column} has missing values in the selected rows")
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


def load_table(
    path: str | os.PathLike[str],
    fmt: str | None = None,
    *,
    delimiter: str | None = None,
    encoding: str | None = None,
    decimal: str = ".",
) -> Table:
    """Load a party's local table from ``path``.

    ``fmt`` is ``"csv"`` or ``"parquet"`` (default: from the suffix). ``delimiter``,
    ``encoding`` and ``decimal`` apply to CSV (:func:`parties.data.csvfile.load_csv`: the
    delimiter and the encoding are detected when not given). Raises :class:`DataSourceError`
    for a missing file, an unknown format, a malformed file or, for Parquet, a missing
    ``pyarrow``.
    """
    p = Path(path)
    fmt = infer_format(p) if fmt is None else fmt
    if fmt not in FORMATS:
        raise DataSourceError(f"{p}: unknown format {fmt!r} (expected csv or parquet)")
    if not p.is_file():
        raise DataSourceError(f"{p}: data file not found")
    if fmt == "csv":
        from parties.data.csvfile import load_csv

        return load_csv(p, delimiter=delimiter, encoding=encoding, decimal=decimal)
    from parties.data.parquetfile import load_parquet

    return load_parquet(p)
