"""A party's table inside a SQL engine, seen through a canonical view.

:class:`SqlTable` is what every SQL engine (DuckDB files, a PostgreSQL table, a Spark table)
offers the node.  The engine builds a *canonical view* -- one row per table row, a row number
``smpc_row`` (1-based, stable) and each column as the filter language sees it: numbers as
float64 with NaN as NULL, dates as days since 1970-01-01 UTC, text with missing cells as NULL
-- and :class:`SqlTable` does the rest in SQL:

* a statistic's local aggregates (:meth:`local_rows`: :class:`~parties.data.sql.rows.SqlRows`),
  so the rows never leave the engine and memory does not grow with the table;
* the checks the exact mode makes on the selected rows (:meth:`count`, :meth:`row_mask`,
  :meth:`check_values`): counts and row numbers only;
* and, for what needs the values themselves (an inference's feature matrix, a key column), the
  interface of :class:`parties.data.sources.Table` (:meth:`column`, :meth:`select`, ...), which
  fetches the requested columns -- never the whole table -- into memory.

Errors are :class:`~parties.data.sources.DataSourceError` with the memory engine's sentences
(kinds ``unknown-column``, ``unsupported-column``, ``not-a-number``, ``infinite``, ``missing``):
a column, a row number and the kind of problem, never a value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from parties.data import filters
from parties.data.sources import DataSourceError, MissingPolicy, Selection, Table
from parties.data.sql.dialect import Dialect
from parties.data.sql.rows import Mode, SqlRows, Statement
from parties.data.sql.where import compile_where

__all__ = ["FETCH_CHUNK", "ROW", "WHOLE_COLUMN_CELLS", "SqlTable"]

#: The canonical view's row-number column (1-based, in the source's order).
ROW = "smpc_row"
#: Row numbers bound per statement when selected rows are fetched (:meth:`SqlTable.select`).
FETCH_CHUNK = 5000
#: A selection from a table of at most this many cells (rows x requested columns: 32 MB of
#: float64) reads the whole columns once and keeps them, as the memory engine does, instead of
#: fetching the selected rows by bound row numbers on every request (measured on an inference
#: of 4096 of 65536 rows x 30 features: 11 ms a query of 4096 bound numbers, the data owner's
#: samples/s halved against the memory engine).
WHOLE_COLUMN_CELLS = 1 << 22


class SqlTable:
    """A table in a SQL engine (module docstring).  Subclasses set :attr:`sql_dialect`,
    :attr:`relation` (the canonical view), :attr:`kinds` (column -> numeric / date / text /
    unsupported), :attr:`reasons` (why a column is unsupported), :attr:`order`,
    :attr:`n_rows`, :attr:`source`, :attr:`format` and implement :meth:`run`."""

    sql_dialect: Dialect
    relation: str
    kinds: dict[str, str]
    reasons: dict[str, str]
    order: list[str]
    source: str
    format: str
    engine: str = "sql"
    #: Whether a selection from a small table may read whole columns (:meth:`select`): an
    #: embedded engine's file is the node's own; a database or a cluster is asked only for
    #: the rows selected, whatever the table's size (its statement log shows no more).
    keeps_small_columns: bool = False
    #: How the file was read (CSV options), for the operator's log; as the memory table's.
    dialect: dict[str, str]
    #: The canonical view with its row number ``smpc_row`` (default: :attr:`relation`); an
    #: engine whose row numbers cost a sort (a database table's window) keeps them out of
    #: :attr:`relation`, which the aggregates scan.
    numbered: str
    _n_rows: int

    def __init__(self) -> None:
        self._fetched: dict[str, Any] = {}
        self.dialect = {}
        self._checked: dict[str, DataSourceError | None] = {}

    # --------------------------------------------------------------------------- engine

    def run(self, sql: str, params: list[object]) -> list[tuple[object, ...]]:
        """Execute one statement with bound parameters; every result row."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the engine's resources (idempotent)."""

    def _fetch(self, names: Sequence[str]) -> dict[str, Any]:
        """Columns ``names`` of every row in row order: float64 arrays (NaN = missing) for
        numbers and dates, lists of ``str | None`` for text.  Engines override it with a
        columnar fetch."""
        d = self.sql_dialect
        cols = ", ".join(d.ident(n) for n in names)
        rows = self.run(f"SELECT {cols} FROM {self._numbered()} ORDER BY {ROW}", [])
        return self._columns(names, rows)

    def _columns(self, names: Sequence[str], rows: list[tuple[object, ...]]) -> dict[str, Any]:
        """Result rows as columns: float64 (NaN = missing) or ``str | None`` per column."""
        out: dict[str, Any] = {}
        for j, name in enumerate(names):
            values = [r[j] for r in rows]
            if self.kinds[name] == "text":
                out[name] = [None if v is None else str(v) for v in values]
            else:
                out[name] = np.array([np.nan if v is None else float(v)  # type: ignore[arg-type]
                                      for v in values], dtype=np.float64)
        return out

    def _set_schema(self, fields: Sequence[tuple[str, str]], kind: Callable[[str], str],
                    key: str | None = None) -> None:
        """Record the source's columns, ``(name, engine type)`` in the source's order:
        :attr:`order`, :attr:`kinds` (``kind`` of each type) and :attr:`reasons` (why a
        column is unsupported: its type).  Refuses a column named twice or ``smpc_row`` (the
        canonical view's row number) and a ``key`` that is not a column."""
        names = [n for n, _ in fields]
        if len(set(names)) != len(names):
            raise DataSourceError(f"{self.source}: a column is named twice")
        if ROW in names:
            raise DataSourceError(f"{self.source}: a column is named {ROW!r}")
        if key is not None and key not in names:
            raise DataSourceError(f"{self.source}: has no key column {key!r} (data.key)")
        types = dict(fields)
        self.order = names
        self.kinds = {n: kind(types[n]) for n in names}
        self.reasons = {n: f"has type {types[n]}, which is neither numeric, text nor a date"
                        for n in names if self.kinds[n] == "unsupported"}

    def _supported(self, canonical: Callable[[str], str]) -> list[str]:
        """``canonical(name) AS name`` for every supported column, in the source's order:
        the select list of the canonical view."""
        ident = self.sql_dialect.ident
        return [f"{canonical(n)} AS {ident(n)}" for n in self.order
                if self.kinds[n] != "unsupported"]

    # ------------------------------------------------------------------------- metadata

    @property
    def columns(self) -> list[str]:
        """Column names in the source's order."""
        return list(self.order)

    @property
    def n_rows(self) -> int:
        return self._n_rows

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.source!r}, {self._n_rows} rows, "
                f"columns={self.order!r})")

    def _require(self, name: str) -> None:
        if name not in self.kinds:
            raise DataSourceError(
                f"unknown column {name!r} (available: "
                f"{', '.join(repr(c) for c in self.order) or 'none'})",
                kind="unknown-column", column=name,
                public=f"column {name!r} is not in its data")
        if self.kinds[name] == "unsupported":
            raise DataSourceError(f"column {name!r} {self.reasons[name]}",
                                  kind="unsupported-column", column=name)

    def is_numeric(self, name: str) -> bool:
        """True for a numeric column whose values are all finite (as the memory engine)."""
        self._require_known(name)
        return self.kinds[name] == "numeric" and self._problem(name) is None

    def is_date(self, name: str) -> bool:
        self._require_known(name)
        return self.kinds[name] == "date"

    def _require_known(self, name: str) -> None:
        if name not in self.kinds:
            self._require(name)

    # --------------------------------------------------------------------------- checks

    def _first_row(self, condition: str) -> int | None:
        got = self.run(f"SELECT MIN({ROW}) FROM {self._numbered()} WHERE {condition}",
                       [])[0][0]
        return None if got is None else int(got)  # type: ignore[call-overload]

    def _problem(self, name: str) -> DataSourceError | None:
        """Why column ``name`` cannot be used as numbers (text, infinity), found in SQL and
        remembered; None when it can.  The error names the first row, never its cell."""
        if name in self._checked:
            return self._checked[name]
        self._require(name)
        err: DataSourceError | None = None
        x = self.sql_dialect.ident(name)
        if self.kinds[name] == "text":
            try:
                row = self._first_row(
                    f"{x} IS NOT NULL AND {self._not_a_number(x)}")
            except DataSourceError:  # an engine without the test: no row in the sentence
                row = None
            err = DataSourceError(
                f"row {row} of column {name!r} is not a number" if row is not None else
                f"column {name!r} holds text, not numbers", kind="not-a-number", column=name,
                row=row)
        else:
            err = self._infinite_error(name, self._first_row(self.infinite(x)))
        self._checked[name] = err
        return err

    def _not_a_number(self, x: str) -> str:
        """A condition true where text ``x`` is not a number (the engine's parse)."""
        return self.sql_dialect.not_a_number.format(x=x)

    def _text_detail(self, name: str) -> str:
        """What a filter's error adds about a text column compared with a number: its first
        row that is not a number, as the memory engine says it."""
        err = self._problem(name)
        row = err.row if err is not None else None
        return "" if row is None else f" (row {row} is not a number)"

    @staticmethod
    def _infinite_error(name: str, row: int | None) -> DataSourceError | None:
        if row is None:
            return None
        return DataSourceError(f"row {row} of column {name!r} is infinite; infinite values "
                               "cannot be encoded", kind="infinite", column=name, row=row)

    def _scan_infinite(self, names: Sequence[str]) -> None:
        """The first infinite row of several numeric (or date) columns not yet checked, found
        in one scan instead of one per column, and remembered as :meth:`_problem` does."""
        todo = [n for n in dict.fromkeys(names) if n not in self._checked
                and self.kinds.get(n) in ("numeric", "date")]
        if len(todo) < 2:
            return
        d = self.sql_dialect
        cols = [f"MIN(CASE WHEN {self.infinite(d.ident(n))} THEN {ROW} END)" for n in todo]
        got = self.run(f"SELECT {', '.join(cols)} FROM {self._numbered()}", [])[0]
        for name, row in zip(todo, got, strict=True):
            self._checked[name] = self._infinite_error(
                name, None if row is None else int(row))  # type: ignore[call-overload]

    def infinite(self, x: str) -> str:
        """A condition true where float64 ``x`` is +-infinity."""
        d = self.sql_dialect
        return (f"({x} = CAST('Infinity' AS {d.double}) OR "
                f"{x} = CAST('-Infinity' AS {d.double}))")

    def check_values(self, names: Iterable[str]) -> None:
        """Raise the memory engine's error if a column is unknown, unsupported, text or holds
        an infinite value (a date column is fine: its values are days)."""
        names = list(names)
        self._scan_infinite(names)
        for name in names:
            err = self._problem(name)
            if err is not None:
                raise err

    def _where(self, st: Statement, where: filters.Expr | None,
               not_null: Sequence[str] = ()) -> str:
        conds = [] if where is None else [compile_where(where, self.kinds, self.sql_dialect,
                                                        bind=st.bind,
                                                        text_detail=self._text_detail).sql]
        conds += [f"{self.sql_dialect.ident(c)} IS NOT NULL" for c in not_null]
        return " WHERE " + " AND ".join(conds) if conds else ""

    def count(self, where: filters.Expr | None, not_null: Sequence[str] = ()) -> int:
        """Rows the filter keeps (and complete in ``not_null``)."""
        st = Statement(self.sql_dialect)
        sql, params = st.finish(f"SELECT COUNT(*) FROM {self.relation}"
                                f"{self._where(st, where, not_null)}")
        return int(self.run(sql, params)[0][0])  # type: ignore[call-overload]

    def missing_error(self, where: filters.Expr | None, names: Sequence[str]
                      ) -> DataSourceError:
        """``missing="error"`` found an incomplete row among the selected ones
        (:meth:`SqlRows.counts`): the error naming the first column of ``names`` with a missing
        value (the party's log also its first such row, looked up now; the public sentence
        never names a row)."""
        d, st = self.sql_dialect, Statement(self.sql_dialect)
        cols = ["COUNT(*)", *(f"COUNT({d.ident(c)})" for c in names)]
        sql, params = st.finish(f"SELECT {', '.join(cols)} FROM {self.relation}"
                                f"{self._where(st, where)}")
        selected, *present = [int(v) for v in self.run(sql, params)[0]]  # type: ignore[call-overload]
        name = next((c for c, have in zip(names, present, strict=True) if have < selected),
                    names[0])
        st = Statement(d)
        cond = self._where(st, where)
        cond = (cond + " AND " if cond else " WHERE ") + f"{d.ident(name)} IS NULL"
        sql, params = st.finish(f"SELECT MIN({ROW}) FROM {self._numbered()}{cond}")
        first = self.run(sql, params)[0][0]
        return DataSourceError(
            f"column {name!r} has missing values in the selected rows, the first at "
            f"row {first}; clean the data or drop incomplete rows (missing='drop')",
            kind="missing", column=name, row=None if first is None else int(first),  # type: ignore[call-overload]
            public=f"column {name!r} has missing values in the selected rows")

    def _numbered(self) -> str:
        return getattr(self, "numbered", None) or self.relation

    def row_mask(self, where: filters.Expr | None, not_null: Sequence[str] = ()
                 ) -> np.ndarray:
        """The boolean mask over the table's rows the filter keeps (and complete in
        ``not_null``), for the exact mode's differencing check.  Computed as an aggregate:
        32-row words OR-ed together in the engine (:meth:`_words`), so what leaves it is one
        bit per row (12.5 MB for 10^8 rows) -- no value, no list of row numbers."""
        if where is None and not not_null:  # every row: no query
            return np.ones(self._n_rows, dtype=bool)
        d, st = self.sql_dialect, Statement(self.sql_dialect)
        word = f"CAST(FLOOR(CAST({ROW} - 1 AS {d.double}) / 32) AS BIGINT)"
        inner = (f"SELECT {word} AS w, {ROW} - 1 AS r FROM {self._numbered()}"
                 f"{self._where(st, where, not_null)}")
        bit = d.shift_left("CAST(1 AS BIGINT)", "CAST(r - 32 * w AS INTEGER)")
        sql, params = st.finish(f"SELECT w, bit_or({bit}) FROM ({inner}) AS smpc_w GROUP BY w")
        w, b = self._words(sql, params)
        words = np.zeros((self._n_rows + 31) // 32, dtype="<u4")
        words[w] = b.astype("<u4")
        bits = np.unpackbits(words.view(np.uint8), bitorder="little")
        return bits[: self._n_rows].astype(bool)

    def _words(self, sql: str, params: list[object]) -> tuple[np.ndarray, np.ndarray]:
        """The (word index, bits) columns of :meth:`row_mask`'s query, as int64 arrays."""
        rows = self.run(sql, params)
        w = np.fromiter((int(r[0]) for r in rows), dtype=np.int64,  # type: ignore[call-overload]
                        count=len(rows))
        b = np.fromiter((int(r[1]) for r in rows), dtype=np.int64,  # type: ignore[call-overload]
                        count=len(rows))
        return w, b

    def local_rows(self, names: Sequence[str], where: filters.Expr | None,
                   mode: Mode) -> SqlRows:
        """The selected rows of ``names`` as a statistic's local aggregates, computed in SQL
        (after :meth:`check_values`)."""
        self.check_values(names)
        if where is not None:  # a filter that cannot run is refused now, as in memory
            compile_where(where, self.kinds, self.sql_dialect, text_detail=self._text_detail)
        return SqlRows(self.run, self.sql_dialect, self.relation, self.kinds, names, where, mode)

    # ------------------------------------------------- the memory table's interface (values)

    def _table(self, names: Sequence[str]) -> Table:
        """A memory :class:`Table` of the columns ``names`` (fetched once, kept)."""
        wanted = [n for n in dict.fromkeys(names) if n not in self._fetched]
        for n in wanted:
            self._require(n)
        if wanted:
            self._fetched.update(self._fetch(wanted))
        cols = {n: self._fetched[n] for n in dict.fromkeys(names)}
        dates = [n for n in cols if self.kinds[n] == "date"]
        return Table(cols, source=self.source, dates=dates, n_rows=self._n_rows)

    def column(self, name: str) -> np.ndarray:
        """Column ``name`` as float64 (NaN = missing), fetched into memory."""
        self._require(name)
        if self.kinds[name] != "date":
            self.check_values([name])
        return self._table([name]).column(name)

    def text(self, name: str) -> np.ndarray:
        self._require(name)
        if self.kinds[name] != "text":
            raise DataSourceError(f"column {name!r} is numeric, not text", kind="not-text",
                                  column=name)
        return self._table([name]).text(name)

    def select(self, names: Iterable[str], *, rows: np.ndarray | None = None,
               missing: MissingPolicy = "error") -> Selection:
        """As :meth:`Table.select`.  With a row mask only the selected rows are fetched (in
        chunks of :data:`FETCH_CHUNK` row numbers), so memory follows the selection -- an
        inference's rows -- not the table; an embedded engine's small table
        (:attr:`keeps_small_columns`, at most :data:`WHOLE_COLUMN_CELLS` cells) is read as
        whole columns once and kept."""
        names = list(names)
        for n in names:
            if self.kinds.get(n) != "date":
                self.check_values([n])
        if (rows is None
                or (self.keeps_small_columns and self._n_rows * len(names) <= WHOLE_COLUMN_CELLS)
                or (isinstance(rows, np.ndarray) and rows.dtype == np.bool_
                    and rows.shape == (self._n_rows,) and bool(rows.all()))):
            # every row, or a small table: whole columns, fetched once and kept
            return self._table(names).select(names, rows=rows, missing=missing)
        mask = np.asarray(rows)
        if mask.dtype != np.bool_ or mask.shape != (self._n_rows,):
            raise DataSourceError(f"the row mask must be a boolean array of shape "
                                  f"({self._n_rows},), got {mask.dtype} {mask.shape}",
                                  kind="request")
        numbers = np.flatnonzero(mask) + 1
        cols = self._fetch_rows(names, numbers)
        dates = [n for n in names if self.kinds[n] == "date"]
        part = Table(cols, source=self.source, dates=dates, n_rows=int(numbers.size))
        try:
            sel = part.select(names, missing=missing)
        except DataSourceError as exc:  # the row of the selection -> the row of the table
            if exc.kind != "missing" or exc.row is None:
                raise
            row = int(numbers[exc.row - 1])
            raise DataSourceError(
                f"column {exc.column!r} has missing values in the selected rows, the first at "
                f"row {row}; clean the data or drop incomplete rows (missing='drop')",
                kind="missing", column=exc.column, row=row, public=exc.public) from None
        kept = np.zeros(self._n_rows, dtype=bool)
        kept[numbers[np.asarray(sel.rows)] - 1] = True
        kept.setflags(write=False)
        return Selection(values=sel.values, rows=kept, n_dropped=sel.n_dropped)

    def _fetch_rows(self, names: Sequence[str], numbers: np.ndarray) -> dict[str, Any]:
        """Columns ``names`` of the rows ``numbers`` (1-based, ascending), fetched in chunks
        of bound row numbers: float64 (NaN = missing) or ``str | None`` per column."""
        d = self.sql_dialect
        cols = ", ".join(d.ident(n) for n in names)
        got: list[tuple[object, ...]] = []
        for start in range(0, numbers.size, FETCH_CHUNK):
            chunk = [int(v) for v in numbers[start:start + FETCH_CHUNK]]
            st = Statement(d)
            marks = ", ".join(st.bind(v) for v in chunk)
            sql, params = st.finish(f"SELECT {cols} FROM {self._numbered()} WHERE {ROW} IN "
                                    f"({marks}) ORDER BY {ROW}")
            got += self.run(sql, params)
        return self._columns(names, got)

    def matrix(self, names: Iterable[str], *, rows: np.ndarray | None = None,
               missing: MissingPolicy = "error") -> np.ndarray:
        return self.select(names, rows=rows, missing=missing).values
