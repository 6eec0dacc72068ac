"""A parsed ``--where`` filter as a SQL condition with bound parameters.

The filter language (:mod:`parties.data.filters`) is the only way a request selects rows; it is
parsed by hand into a syntax tree before anything here runs, and this module turns the tree --
never the request's text -- into SQL: every number, string and date of the filter becomes a
bound parameter, every column one of the table's own columns quoted by the dialect, every
operator one of six fixed spellings.  So a hostile filter (quotes, comments, semicolons, function
calls, column names that look like SQL) can at worst name a column the table has.

Semantics are the filter language's, on the engine's *canonical view* of the table (numbers as
float64 with NaN and missing markers as NULL, dates as days since 1970-01-01 UTC, text with
missing cells as NULL): SQL's three-valued logic is the language's, and ``WHERE`` keeps a row
only when the condition is true.  Type rules and their errors are those of
:mod:`parties.data.filter_eval` (strings only with text columns and ``==`` / ``!=``, date
literals only with date columns); an error names a column and its position, never a value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from parties.data.dates import days_since_epoch
from parties.data.filters import (
    And,
    Column,
    Compare,
    Expr,
    FilterError,
    IsNull,
    Not,
    Number,
    Operand,
    Or,
    String,
    check_columns,
)
from parties.data.sql.dialect import Dialect

__all__ = ["KINDS", "Condition", "compile_where"]

#: What a canonical column holds.
KINDS = ("numeric", "date", "text", "unsupported")
_OPS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "=", "!=": "<>"}


@dataclass
class Condition:
    """A SQL condition and its bound parameters, in placeholder order."""

    sql: str
    params: list[object] = field(default_factory=list)


class _Compiler:
    def __init__(self, kinds: Mapping[str, str], dialect: Dialect,
                 bind: Callable[[object], str] | None,
                 text_detail: Callable[[str], str] | None = None) -> None:
        self.kinds, self.d = kinds, dialect
        self.text_detail = text_detail
        self.params: list[object] = []
        self._bind = bind

    def bind(self, value: object) -> str:
        if self._bind is not None:
            return self._bind(value)
        self.params.append(value)
        return self.d.param(len(self.params) - 1)

    def column(self, col: Column, want: str) -> str:
        kind = self.kinds[col.name]
        if kind == "unsupported":
            raise FilterError(f"column {col.name!r} at position {col.pos} has a type a filter "
                              "cannot compare", col.pos)
        if want == "number" and kind == "text":
            raise FilterError(
                f"column {col.name!r} at position {col.pos} cannot be compared with numbers: it "
                f"holds text{self.text_detail(col.name) if self.text_detail else ''}; a filter "
                "compares a text column only with a 'string', using '==' or '!='", col.pos)
        if want == "number" and kind == "date":
            raise FilterError(
                f"column {col.name!r} at position {col.pos} holds dates; compare it with a date "
                "such as '2024-01-01' or another date column, not a number", col.pos)
        return self.d.ident(col.name)

    def compare(self, c: Compare) -> str:
        ops = (c.left, c.right)
        cols = [x for x in ops if isinstance(x, Column)]
        dated = [x for x in cols if self.kinds[x.name] == "date"]
        has_string = any(isinstance(x, String) for x in ops)
        op = _OPS[c.op]
        if dated or (has_string and c.op not in ("==", "!=")):
            return self._dates(c, cols, dated, op)
        if has_string:
            col, lit = (c.left, c.right) if isinstance(c.left, Column) else (c.right, c.left)
            assert isinstance(col, Column) and isinstance(lit, String)
            if self.kinds[col.name] != "text":
                raise FilterError(
                    f"column {col.name!r} at position {col.pos} is numeric; compare it with a "
                    "number, not a string", col.pos)
            return f"({self.d.ident(col.name)} {op} {self.bind(lit.value)})"
        return f"({self.operand(c.left)} {op} {self.operand(c.right)})"

    def operand(self, x: Operand) -> str:
        if isinstance(x, Column):
            return self.column(x, "number")
        assert isinstance(x, Number)
        return f"CAST({self.bind(float(x.value))} AS {self.d.double})"

    def _dates(self, c: Compare, cols: list[Column], dated: list[Column], op: str) -> str:
        if not dated:
            col = cols[0]
            raise FilterError(
                f"column {col.name!r} at position {col.pos} is not a date column; only a date "
                f"column compares with a date using {c.op!r}", col.pos)
        first = dated[0]
        sides = []
        for x in (c.left, c.right):
            if isinstance(x, String):
                days = days_since_epoch(x.value)
                if days is None:
                    raise FilterError(
                        f"column {first.name!r} at position {first.pos} holds dates; compare "
                        f"it with a date such as '2024-01-01' (ISO 8601), not {x}", first.pos)
                sides.append(f"CAST({self.bind(float(days))} AS {self.d.double})")
            elif isinstance(x, Column) and self.kinds[x.name] == "date":
                sides.append(self.d.ident(x.name))
            else:
                raise FilterError(
                    f"column {first.name!r} at position {first.pos} holds dates; compare it "
                    "with a date such as '2024-01-01' or another date column, not a number",
                    first.pos)
        return f"({sides[0]} {op} {sides[1]})"

    def expr(self, e: Expr) -> str:
        if isinstance(e, Compare):
            return self.compare(e)
        if isinstance(e, IsNull):
            kind = self.kinds[e.column.name]
            if kind == "unsupported":
                raise FilterError(f"column {e.column.name!r} at position {e.column.pos} cannot "
                                  "be tested for missing values: its type is not supported",
                                  e.column.pos)
            test = "IS NOT NULL" if e.negated else "IS NULL"
            return f"({self.d.ident(e.column.name)} {test})"
        if isinstance(e, Not):
            return f"(NOT {self.expr(e.operand)})"
        if isinstance(e, And | Or):
            word = " AND " if isinstance(e, And) else " OR "
            return "(" + word.join(self.expr(sub) for sub in e.operands) + ")"
        raise TypeError(f"not a filter expression: {type(e).__name__}")


def compile_where(expr: Expr, kinds: Mapping[str, str], dialect: Dialect,
                  bind: Callable[[object], str] | None = None,
                  text_detail: Callable[[str], str] | None = None) -> Condition:
    """``expr`` as a condition over the canonical view whose columns have ``kinds``
    (name -> one of :data:`KINDS`).  Each literal becomes a placeholder: the dialect's, numbered
    from 0 and listed in :attr:`Condition.params`, or what ``bind`` returns for it (a caller
    that assembles a larger statement; ``params`` is then empty).  Raises
    :class:`FilterError` for an unknown column or a comparison the language does not allow;
    ``text_detail(column)`` adds to the error about a text column compared with a number (its
    first row that is not a number).  The condition holds no literal from the filter."""
    check_columns(expr, list(kinds))
    c = _Compiler(kinds, dialect, bind, text_detail)
    return Condition(c.expr(expr), c.params)
