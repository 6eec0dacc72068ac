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

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from parties.data import filters
from parties.data.sources import DataSourceError, MissingPolicy, Selection, Table
from parties.data.sql.dialect import Dialect
from parties.data.sql.rows import Mode, SqlRows, Statement
from parties.data.sql.where import compile_where

__all__ = ["ROW", "SqlTable"]

#: The canonical view's row-number column (1-based, in the source's order).
ROW = "smpc_row"


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
    #: How the file was read (CSV options), for the operator's log; as the memory table's.
    dialect: dict[str, str]
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
        rows = self.run(f"SELECT {cols} FROM {self.relation} ORDER BY {ROW}", [])
        out: dict[str, Any] = {}
        for j, name in enumerate(names):
            values = [r[j] for r in rows]
            if self.kinds[name] == "text":
                out[name] = [None if v is None else str(v) for v in values]
            else:
                out[name] = np.array([np.nan if v is None else float(v)  # type: ignore[arg-type]
                                      for v in values], dtype=np.float64)
        return out

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
        got = self.run(f"SELECT MIN({ROW}) FROM {self.relation} WHERE {condition}", [])[0][0]
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
            row = self._first_row(f"{x} IS NOT NULL")
            err = DataSourceError(
                f"row {row} of column {name!r} is not a number" if row is not None else
                f"column {name!r} holds text, not numbers", kind="not-a-number", column=name,
                row=row)
        else:
            err = self._infinite_error(name, self._first_row(self.infinite(x)))
        self._checked[name] = err
        return err

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
        got = self.run(f"SELECT {', '.join(cols)} FROM {self.relation}", [])[0]
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
                                                        bind=st.bind).sql]
        conds += [f"{self.sql_dialect.ident(c)} IS NOT NULL" for c in not_null]
        return " WHERE " + " AND ".join(conds) if conds else ""

    def count(self, where: filters.Expr | None, not_null: Sequence[str] = ()) -> int:
        """Rows the filter keeps (and complete in ``not_null``)."""
        st = Statement(self.sql_dialect)
        sql, params = st.finish(f"SELECT COUNT(*) FROM {self.relation}"
                                f"{self._where(st, where, not_null)}")
        return int(self.run(sql, params)[0][0])  # type: ignore[call-overload]

    def present_counts(self, where: filters.Expr | None, names: Sequence[str]
                       ) -> tuple[int, list[int]]:
        """Among the rows the filter keeps: how many are complete in every column of ``names``
        and how many values each column has."""
        d = self.sql_dialect
        ok = " AND ".join(f"{d.ident(c)} IS NOT NULL" for c in names)
        st = Statement(d)
        cols = [f"COALESCE(SUM(CASE WHEN {ok} THEN 1 ELSE 0 END), 0)"]
        cols += [f"COUNT({d.ident(c)})" for c in names]
        sql, params = st.finish(f"SELECT {', '.join(cols)} FROM {self.relation}"
                                f"{self._where(st, where)}")
        row = [int(v) for v in self.run(sql, params)[0]]  # type: ignore[call-overload]
        return row[0], row[1:]

    def check_missing(self, where: filters.Expr | None, names: Sequence[str]) -> None:
        """``missing="error"``: refuse a missing value among the selected rows, naming the
        column (the party's log also the first row; the public sentence never does).  One
        query counts the selected rows and each column's values."""
        d = self.sql_dialect
        st = Statement(d)
        cols = ["COUNT(*)", *(f"COUNT({d.ident(c)})" for c in names)]
        sql, params = st.finish(f"SELECT {', '.join(cols)} FROM {self.relation}"
                                f"{self._where(st, where)}")
        selected, *present = [int(v) for v in self.run(sql, params)[0]]  # type: ignore[call-overload]
        for name, have in zip(names, present, strict=True):
            if have < selected:
                st = Statement(d)
                cond = self._where(st, where)
                cond = (cond + " AND " if cond else " WHERE ") + f"{d.ident(name)} IS NULL"
                sql, params = st.finish(f"SELECT MIN({ROW}) FROM {self.relation}{cond}")
                first = self.run(sql, params)[0][0]
                raise DataSourceError(
                    f"column {name!r} has missing values in the selected rows, the first at "
                    f"row {first}; clean the data or drop incomplete rows (missing='drop')",
                    kind="missing", column=name, row=None if first is None else int(first),  # type: ignore[call-overload]
                    public=f"column {name!r} has missing values in the selected rows")

    def row_mask(self, where: filters.Expr | None, not_null: Sequence[str] = ()
                 ) -> np.ndarray:
        """The boolean mask over the table's rows the filter keeps (and complete in
        ``not_null``): one bit of information per row, for the exact mode's differencing
        check.  Fetched as row numbers in batches (:meth:`_row_numbers`)."""
        mask = np.zeros(self._n_rows, dtype=bool)
        for numbers in self._row_numbers(where, not_null):
            mask[np.asarray(numbers, dtype=np.int64) - 1] = True
        return mask

    def _row_numbers(self, where: filters.Expr | None, not_null: Sequence[str]
                     ) -> Iterable[np.ndarray]:
        st = Statement(self.sql_dialect)
        sql, params = st.finish(f"SELECT {ROW} FROM {self.relation}"
                                f"{self._where(st, where, not_null)}")
        rows = self.run(sql, params)
        yield np.fromiter((int(r[0]) for r in rows), dtype=np.int64,  # type: ignore[call-overload]
                          count=len(rows))

    def local_rows(self, names: Sequence[str], where: filters.Expr | None,
                   mode: Mode) -> SqlRows:
        """The selected rows of ``names`` as a statistic's local aggregates, computed in SQL
        (after :meth:`check_values`)."""
        self.check_values(names)
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
        names = list(names)
        for n in names:
            if self.kinds.get(n) != "date":
                self.check_values([n])
        return self._table(names).select(names, rows=rows, missing=missing)

    def matrix(self, names: Iterable[str], *, rows: np.ndarray | None = None,
               missing: MissingPolicy = "error") -> np.ndarray:
        return self.select(names, rows=rows, missing=missing).values
