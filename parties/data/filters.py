"""The row filter language of ``--where``: a small, safe boolean expression language.

Grammar (keywords are case-insensitive; precedence, loosest first: ``or``, ``and``, ``not``,
comparison)::

    expr       := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" expr ")" | nulltest | comparison
    nulltest   := ("isnull" | "notnull") "(" column ")"
    comparison := operand ("<" | "<=" | ">" | ">=" | "==" | "!=") operand
    operand    := column | ["+" | "-"] number | string
    column     := identifier | '"' characters '"'        e.g.  age   "blood pressure"
    number     := 12 | 1.5 | .5 | 2e-3                    (finite)
    string     := "'" characters "'"                      e.g.  'F'

Inside quotes ``\\"``, ``\\'`` and ``\\\\`` escape the quote and the backslash. Identifiers
are ASCII ``[A-Za-z_][A-Za-z0-9_]*``; any other column name must be double-quoted.

Rules and guarantees:

* The text is tokenised and parsed by hand into an immutable AST (:class:`Compare`, :class:`And`,
  :class:`Or`, :class:`Not`, :class:`IsNull`); nothing is ever passed to ``eval``, ``exec``,
  ``compile``, SQL or a shell. Every malformed input raises :class:`FilterError` (a
  ``ValueError``) with one sentence and the 1-based character position; input longer than
  ``max_len`` characters or nested deeper than ``max_depth`` (parentheses and ``not``) is
  refused before it can exhaust anything.
* Each comparison involves at least one column. Strings compare only with ``==`` / ``!=``, and
  only with text columns; numbers only with numeric columns.
* **Dates.** A date column (:meth:`parties.data.sources.Table.is_date`: ISO 8601 dates in CSV,
  date or timestamp in Parquet) compares with a date literal written as a string,
  ``'YYYY-MM-DD'`` or ``'YYYY-MM-DDThh:mm[:ss]'`` (with ``Z`` or an offset; without one, UTC):
  all six operators, e.g. ``visit >= '2024-01-01' and visit < '2025-01-01'``. Both sides are
  compared as days since 1970-01-01 00:00 UTC (:mod:`parties.data.dates`), so a date literal is
  its midnight: a timestamp ``2024-01-01T10:00`` is ``> '2024-01-01'`` and not ``==`` it. A date
  column compares with another date column, never with a number; a string that is not a valid
  date is refused with a date column, and only a date literal may use ``<`` ``<=`` ``>`` ``>=``.
* Errors carry no data: a filter that cannot be evaluated over a table (a number compared with
  a text column, a string with a numeric one) is refused with the column, its position in the
  expression and at most a row number -- never a cell's text or value, never the file's path
  (:class:`parties.data.sources.DataSourceError`). Parse errors quote only the expression.
* ``isnull(col)`` is true where ``col``'s value is missing (an empty cell, a missing marker such
  as ``NA``, a Parquet null or NaN) and false elsewhere, ``notnull(col)`` the opposite: never
  unknown (SQL's ``IS NULL``; pandas ``isnull``).  ``isnull`` / ``notnull`` are functions only
  when followed by ``(``: a column of that name still compares (``isnull > 3``).
* Missing values (NaN, empty cells) follow SQL's three-valued logic: a comparison with a missing
  value is *unknown*, ``not unknown`` is unknown, ``false and unknown`` is false,
  ``true or unknown`` is true, and a row is selected only when the whole expression is *true*. So
  a missing value never satisfies ``x > 3``, ``x != 3``, nor ``not (x > 3)``.
* ``str(expr)`` is a canonical form for audit logs: keywords lower-case, single spaces, minimal
  parentheses, ``and``/``or`` chains flattened, numbers in shortest form; and
  ``parse(str(e)) == e`` for every parsed ``e``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from parties.data.dates import looks_like_date
from parties.data.sources import Table
from smpc.errors import InputError

__all__ = [
    "COMPARISONS",
    "And",
    "Column",
    "Compare",
    "Expr",
    "FilterError",
    "IsNull",
    "Not",
    "Number",
    "Or",
    "String",
    "check_columns",
    "evaluate",
    "parse",
]

COMPARISONS: tuple[str, ...] = ("<", "<=", ">", ">=", "==", "!=")
#: Hard cap on ``max_depth``: keeps the recursive parser far from Python's recursion limit.
_MAX_DEPTH_LIMIT = 100
_KEYWORDS = frozenset({"and", "or", "not"})
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER_RE = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


class FilterError(InputError):
    """A filter expression is malformed, too large, or does not fit the table.

    ``position`` is the 1-based character position of the problem, when there is one.
    """

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position


# ------------------------------------------------------------------------------------ AST


def _quote(text: str, q: str) -> str:
    return q + text.replace("\\", "\\\\").replace(q, "\\" + q) + q


def _format_number(v: float) -> str:
    if v.is_integer() and abs(v) < 2**53:
        return str(int(v))
    return repr(v)


@dataclass(frozen=True)
class Column:
    """A reference to a column. ``pos`` (1-based) is not part of equality."""

    name: str
    pos: int = field(default=0, compare=False, repr=False)

    def __str__(self) -> str:
        if _IDENT_RE.fullmatch(self.name) and self.name.lower() not in _KEYWORDS:
            return self.name
        return _quote(self.name, '"')


@dataclass(frozen=True)
class Number:
    """A finite numeric literal."""

    value: float

    def __str__(self) -> str:
        return _format_number(self.value)


@dataclass(frozen=True)
class String:
    """A string literal (compared with text columns by ``==`` / ``!=`` only)."""

    value: str

    def __str__(self) -> str:
        return _quote(self.value, "'")


Operand = Column | Number | String


class Expr:
    """Base class of boolean filter expressions."""

    def columns(self) -> set[str]:
        """The names of every column the expression reads."""
        raise NotImplementedError

    def _column_refs(self) -> list[Column]:
        raise NotImplementedError


@dataclass(frozen=True)
class Compare(Expr):
    """``left op right``, with at least one side a :class:`Column`."""

    left: Operand
    op: str
    right: Operand
    pos: int = field(default=0, compare=False, repr=False)

    def _column_refs(self) -> list[Column]:
        return [x for x in (self.left, self.right) if isinstance(x, Column)]

    def columns(self) -> set[str]:
        return {c.name for c in self._column_refs()}

    def __str__(self) -> str:
        return f"{self.left} {self.op} {self.right}"


@dataclass(frozen=True)
class IsNull(Expr):
    """``isnull(column)`` (``negated``: ``notnull(column)``): whether the value is missing."""

    column: Column
    negated: bool = False

    def _column_refs(self) -> list[Column]:
        return [self.column]

    def columns(self) -> set[str]:
        return {self.column.name}

    def __str__(self) -> str:
        return f"{'notnull' if self.negated else 'isnull'}({self.column})"


_NULL_TESTS = {"isnull": False, "notnull": True}


@dataclass(frozen=True)
class Not(Expr):
    """Logical negation (three-valued: not unknown = unknown)."""

    operand: Expr

    def _column_refs(self) -> list[Column]:
        return self.operand._column_refs()

    def columns(self) -> set[str]:
        return self.operand.columns()

    def __str__(self) -> str:
        inner = str(self.operand)
        if isinstance(self.operand, And | Or):
            inner = f"({inner})"
        return f"not {inner}"


@dataclass(frozen=True)
class _Connective(Expr):
    """Two or more operands joined by one boolean connective (And / Or)."""

    operands: tuple[Expr, ...]

    def _column_refs(self) -> list[Column]:
        return [c for e in self.operands for c in e._column_refs()]

    def columns(self) -> set[str]:
        return {c for e in self.operands for c in e.columns()}


@dataclass(frozen=True)
class And(_Connective):
    """Conjunction of two or more expressions (never directly containing another And)."""

    def __str__(self) -> str:
        return " and ".join(f"({e})" if isinstance(e, Or) else str(e) for e in self.operands)


@dataclass(frozen=True)
class Or(_Connective):
    """Disjunction of two or more expressions (never directly containing another Or)."""

    def __str__(self) -> str:
        return " or ".join(str(e) for e in self.operands)


# ------------------------------------------------------------------------------ tokenizer


@dataclass(frozen=True)
class _Tok:
    kind: str  # ident, qident, string, number, op, lparen, rparen, and, or, not, sign, eof
    text: str  # source text (or the decoded value for qident/string)
    pos: int  # 1-based

    def describe(self) -> str:
        if self.kind == "eof":
            return "end of expression"
        if self.kind in ("ident", "qident"):
            return f"column name {self.text!r}"
        if self.kind == "number":
            return f"number {self.text}"
        if self.kind == "string":
            return f"string {_quote(self.text, chr(39))}"
        return repr(self.text)


_HINTS = {
    "=": "use '==' to compare for equality",
    "!": "use 'not' for negation or '!=' for inequality",
    "&": "use 'and'",
    "|": "use 'or'",
}


def _read_quoted(s: str, i: int, q: str, what: str) -> tuple[str, int]:
    """Decode a quoted token starting at ``s[i] == q``; return (value, index after)."""
    start = i
    out: list[str] = []
    i += 1
    while i < len(s):
        ch = s[i]
        if ch == "\\":
            if i + 1 < len(s) and s[i + 1] in (q, "\\"):
                out.append(s[i + 1])
                i += 2
                continue
            raise FilterError(
                f"invalid escape in {what} at position {i + 1}; only \\{q} and \\\\ are allowed",
                i + 1,
            )
        if ch == q:
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise FilterError(f"unterminated {what} starting at position {start + 1}", start + 1)


def _tokenize(s: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(s)
    while i < n:
        ch = s[i]
        pos = i + 1
        if ch.isspace():
            i += 1
        elif ch == "(":
            toks.append(_Tok("lparen", ch, pos))
            i += 1
        elif ch == ")":
            toks.append(_Tok("rparen", ch, pos))
            i += 1
        elif ch in "<>=!":
            two = s[i : i + 2]
            if two in ("<=", ">=", "==", "!="):
                toks.append(_Tok("op", two, pos))
                i += 2
            elif ch in "<>":
                toks.append(_Tok("op", ch, pos))
                i += 1
            else:
                raise FilterError(f"unexpected {ch!r} at position {pos}; {_HINTS[ch]}", pos)
        elif ch in "+-":
            toks.append(_Tok("sign", ch, pos))
            i += 1
        elif ch == '"':
            value, i = _read_quoted(s, i, '"', "quoted column name")
            if not value:
                raise FilterError(f"empty quoted column name at position {pos}", pos)
            toks.append(_Tok("qident", value, pos))
        elif ch == "'":
            value, i = _read_quoted(s, i, "'", "string")
            toks.append(_Tok("string", value, pos))
        elif ch.isascii() and (ch.isdigit() or ch == "."):
            m = _NUMBER_RE.match(s, i)
            end = m.end() if m else i
            if m is None or (end < n and (s[end].isalnum() or s[end] in "._")):
                j = end
                while j < n and (s[j].isalnum() or s[j] in "._"):
                    j += 1
                raise FilterError(f"invalid number {s[i : max(j, i + 1)]!r} at position {pos}", pos)
            text = m.group()
            if not math.isfinite(float(text)):
                raise FilterError(f"number {text!r} at position {pos} is out of range", pos)
            toks.append(_Tok("number", text, pos))
            i = end
        elif ch.isascii() and (ch.isalpha() or ch == "_"):
            m = _IDENT_RE.match(s, i)
            assert m is not None
            word = m.group()
            low = word.lower()
            toks.append(_Tok(low if low in _KEYWORDS else "ident", word, pos))
            i = m.end()
        else:
            hint = _HINTS.get(ch)
            if hint is None:
                hint = (
                    "quote unusual column names with double quotes"
                    if ch.isalpha()
                    else "the filter language has only columns, numbers, 'strings', "
                    "comparisons, and, or, not and parentheses"
                )
            raise FilterError(f"unexpected character {ch!r} at position {pos}; {hint}", pos)
    toks.append(_Tok("eof", "", n + 1))
    return toks


# --------------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, toks: list[_Tok], max_depth: int) -> None:
        self.toks = toks
        self.i = 0
        self.max_depth = max_depth
        self.depth = 0

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def advance(self) -> _Tok:
        t = self.toks[self.i]
        if t.kind != "eof":
            self.i += 1
        return t

    def fail(self, expected: str) -> FilterError:
        t = self.tok
        extra = ""
        if t.kind == "op" and "comparison operator" not in expected:
            extra = "; chained comparisons are not supported, combine them with 'and'"
        return FilterError(
            f"unexpected {t.describe()} at position {t.pos}; expected {expected}{extra}", t.pos
        )

    def enter(self, pos: int) -> None:
        self.depth += 1
        if self.depth > self.max_depth:
            raise FilterError(
                f"expression nests deeper than {self.max_depth} levels at position {pos}", pos
            )

    def parse(self) -> Expr:
        if self.tok.kind == "eof":
            raise FilterError("empty filter expression", 1)
        e = self.or_expr()
        if self.tok.kind != "eof":
            raise self.fail("'and', 'or' or end of expression")
        return e

    def or_expr(self) -> Expr:
        parts = [self.and_expr()]
        while self.tok.kind == "or":
            self.advance()
            parts.append(self.and_expr())
        if len(parts) == 1:
            return parts[0]
        flat: list[Expr] = []
        for p in parts:
            flat.extend(p.operands if isinstance(p, Or) else (p,))
        return Or(tuple(flat))

    def and_expr(self) -> Expr:
        parts = [self.not_expr()]
        while self.tok.kind == "and":
            self.advance()
            parts.append(self.not_expr())
        if len(parts) == 1:
            return parts[0]
        flat: list[Expr] = []
        for p in parts:
            flat.extend(p.operands if isinstance(p, And) else (p,))
        return And(tuple(flat))

    def not_expr(self) -> Expr:
        t = self.tok
        if t.kind == "not":
            self.advance()
            self.enter(t.pos)
            negated: Expr = Not(self.not_expr())
            self.depth -= 1
            return negated
        if t.kind == "lparen":
            self.advance()
            self.enter(t.pos)
            e = self.or_expr()
            if self.tok.kind != "rparen":
                raise self.fail(f"')' to close the '(' at position {t.pos}")
            self.advance()
            self.depth -= 1
            return e
        if (t.kind == "ident" and t.text.lower() in _NULL_TESTS
                and self.toks[self.i + 1].kind == "lparen"):
            return self.null_test()
        return self.comparison()

    def null_test(self) -> IsNull:
        name = self.advance()
        self.advance()  # "("
        col = self.tok
        if col.kind not in ("ident", "qident"):
            raise self.fail(f"a column name inside {name.text.lower()}(...)")
        self.advance()
        if self.tok.kind != "rparen":
            raise self.fail(f"')' to close the '(' of {name.text.lower()}")
        self.advance()
        return IsNull(Column(col.text, col.pos), _NULL_TESTS[name.text.lower()])

    def operand(self, first: bool) -> Operand:
        t = self.tok
        if t.kind in ("ident", "qident"):
            self.advance()
            return Column(t.text, t.pos)
        if t.kind == "string":
            self.advance()
            return String(t.text)
        sign = 1.0
        if t.kind == "sign":
            self.advance()
            sign = -1.0 if t.text == "-" else 1.0
            if self.tok.kind != "number":
                raise self.fail(f"a number after {t.text!r}")
        if self.tok.kind == "number":
            v = sign * float(self.advance().text)
            return Number(v + 0.0)  # normalise -0.0
        if first:
            raise self.fail("a column name, a number, a 'string', 'not' or '('")
        raise self.fail("a column name, a number or a 'string'")

    def comparison(self) -> Compare:
        start = self.tok.pos
        left = self.operand(first=True)
        if self.tok.kind != "op":
            raise self.fail(f"a comparison operator ({', '.join(COMPARISONS)})")
        op = self.advance().text
        right = self.operand(first=False)
        if not isinstance(left, Column) and not isinstance(right, Column):
            raise FilterError(
                f"the comparison at position {start} has no column; one side must name a column",
                start,
            )
        if op not in ("==", "!=") and any(
                isinstance(x, String) and not looks_like_date(x.value) for x in (left, right)):
            raise FilterError(
                f"the comparison at position {start} uses {op!r} with a string; strings can only "
                "be compared with '==' or '!=' (dates, written 'YYYY-MM-DD', with any operator)",
                start,
            )
        return Compare(left, op, right, start)


def parse(expr: str, max_len: int = 1000, max_depth: int = 50) -> Expr:
    """Parse a filter expression into an AST; raises :class:`FilterError` on any problem.

    ``max_len`` bounds the number of characters and ``max_depth`` (at most 100) the nesting of
    parentheses and ``not``.
    """
    if not isinstance(expr, str):
        raise FilterError(f"a filter expression must be text, got {type(expr).__name__}")
    if not 1 <= max_depth <= _MAX_DEPTH_LIMIT:
        raise ValueError(f"max_depth must be between 1 and {_MAX_DEPTH_LIMIT}, got {max_depth}")
    if len(expr) > max_len:
        raise FilterError(
            f"filter expression is {len(expr)} characters long; the limit is {max_len}"
        )
    return _Parser(_tokenize(expr), max_depth).parse()


# ----------------------------------------------------------------------------- evaluation


def check_columns(expr: Expr, known: Iterable[str]) -> None:
    """Raise :class:`FilterError` if ``expr`` names a column not in ``known``."""
    known_list = list(known)
    known_set = set(known_list)
    for c in expr._column_refs():
        if c.name not in known_set:
            listing = ", ".join(repr(k) for k in known_list) or "none"
            where = f" at position {c.pos}" if c.pos else ""
            raise FilterError(
                f"unknown column {c.name!r}{where} (known columns: {listing})", c.pos or None
            )


_NUMPY_OPS = {
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
    "==": np.equal,
    "!=": np.not_equal,
}


def evaluate(expr: Expr | str, table: Table | Mapping[str, Any] | Any) -> np.ndarray:
    """The boolean row mask (length ``table.n_rows``) of rows for which ``expr`` is true.

    ``table`` is a :class:`parties.data.sources.Table`, a mapping of column names to arrays, or
    a SQL engine's table (:class:`parties.data.sql.table.SqlTable`: the filter is compiled to
    SQL with bound parameters and runs in the engine); ``expr`` may be given as text (parsed
    with the default limits). Unknown columns, and columns that cannot be compared as asked,
    raise :class:`FilterError`.
    """
    if isinstance(expr, str):
        expr = parse(expr)
    if hasattr(table, "row_mask"):  # a SQL engine's table: the filter runs there, bound
        return np.asarray(table.row_mask(expr), dtype=bool)
    tbl = table if isinstance(table, Table) else Table.from_arrays(table)
    check_columns(expr, tbl.columns)
    from parties.data.filter_eval import _eval  # it imports this module's syntax tree

    true, _false = _eval(expr, tbl)
    return np.array(true, dtype=bool)
