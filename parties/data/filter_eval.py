"""Evaluation of a parsed filter (:mod:`parties.data.filters`) over a party's table.

Three-valued like SQL: each node yields the rows where it is true and the rows where it is
false (a comparison with a missing value is neither).  Only columns, numbers, strings and
dates are compared; nothing here calls eval, exec or compile (a test checks the module).
"""

from __future__ import annotations

import numpy as np

from parties.data.filters import (
    _NUMPY_OPS,
    And,
    Column,
    Compare,
    Expr,
    FilterError,
    IsNull,
    Not,
    Operand,
    Or,
    String,
)
from parties.data.sources import DataSourceError, Table


def _numeric(table: Table, col: Column) -> np.ndarray:
    """The column as numbers, or a :class:`FilterError` that quotes no cell: it names the
    column, the row and the kind of problem only (the table's own error, ``public``)."""
    try:
        return table.column(col.name)
    except DataSourceError as exc:
        what = exc.public
        if exc.kind == "not-a-date":
            raise FilterError(f"column {col.name!r} at position {col.pos} cannot be compared: "
                              f"{what}", col.pos) from None
        if exc.kind == "not-a-number" and exc.row is not None:
            what = (f"it holds text (row {exc.row} is not a number); a filter compares a text "
                    "column only with a 'string', using '==' or '!='")
        raise FilterError(
            f"column {col.name!r} at position {col.pos} cannot be compared with numbers: {what}",
            col.pos,
        ) from None


def _compare(c: Compare, table: Table) -> tuple[np.ndarray, np.ndarray]:
    n = table.n_rows
    from parties.data.datefilter import date_operands  # it imports this module

    dates = date_operands(c, table)
    if dates is None and (isinstance(c.left, String) or isinstance(c.right, String)):
        col, lit = (c.left, c.right) if isinstance(c.left, Column) else (c.right, c.left)
        assert isinstance(col, Column) and isinstance(lit, String)
        if table.is_numeric(col.name):
            raise FilterError(
                f"column {col.name!r} at position {col.pos} is numeric; compare it with a "
                "number, not a string",
                col.pos,
            )
        text = table.text(col.name)
        known = np.fromiter((v is not None for v in text), dtype=bool, count=n)
        eq = np.fromiter((v == lit.value for v in text), dtype=bool, count=n)
        res = eq if c.op == "==" else ~eq
        return res & known, ~res & known

    def values(i: int, x: Operand) -> np.ndarray | float:
        if isinstance(x, Column):
            return _numeric(table, x)
        if isinstance(x, String):
            assert dates is not None
            return dates[i]
        return x.value

    a, b = values(0, c.left), values(1, c.right)
    known = ~(np.isnan(a) | np.isnan(b))
    known = np.broadcast_to(known, (n,))
    with np.errstate(invalid="ignore"):
        res = np.broadcast_to(_NUMPY_OPS[c.op](a, b), (n,))
    return res & known, ~res & known


def _is_null(e: IsNull, table: Table) -> tuple[np.ndarray, np.ndarray]:
    """``isnull`` / ``notnull``: never unknown.  A numeric column's missing values are its NaN,
    a text column's its missing cells; the error of a column that is neither names only the
    column and its position."""
    name, pos = e.column.name, e.column.pos
    try:
        if table.is_numeric(name):
            null = np.isnan(table.column(name))
        else:
            null = np.fromiter((v is None for v in table.text(name)), dtype=bool,
                               count=table.n_rows)
    except DataSourceError as exc:
        raise FilterError(f"column {name!r} at position {pos} cannot be tested for missing "
                          f"values: {exc.public}", pos) from None
    res = ~null if e.negated else null
    return res, ~res


def _eval(e: Expr, table: Table) -> tuple[np.ndarray, np.ndarray]:
    """(definitely true, definitely false) masks; rows in neither are unknown."""
    if isinstance(e, Compare):
        return _compare(e, table)
    if isinstance(e, IsNull):
        return _is_null(e, table)
    if isinstance(e, Not):
        t, f = _eval(e.operand, table)
        return f, t
    if isinstance(e, And):
        t = np.ones(table.n_rows, dtype=bool)
        f = np.zeros(table.n_rows, dtype=bool)
        for sub in e.operands:
            st, sf = _eval(sub, table)
            t &= st
            f |= sf
        return t, f
    if isinstance(e, Or):
        t = np.zeros(table.n_rows, dtype=bool)
        f = np.ones(table.n_rows, dtype=bool)
        for sub in e.operands:
            st, sf = _eval(sub, table)
            t |= st
            f &= sf
        return t, f
    raise TypeError(f"not a filter expression: {e!r}")
