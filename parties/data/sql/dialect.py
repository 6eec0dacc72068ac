"""What differs between the SQL engines a party's data may live in (DuckDB, PostgreSQL, Spark).

Every value a request brings reaches SQL as a bound parameter (:meth:`Dialect.param`); the only
text spliced into a statement is an identifier of the party's own table, quoted by
:meth:`Dialect.ident` after it was found among the table's columns, and numbers the node itself
formats from validated floats and integers (:meth:`Dialect.number`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["DUCKDB", "POSTGRES", "SPARK", "Dialect"]


@dataclass(frozen=True)
class Dialect:
    """How one engine spells the few things the generated SQL needs.

    ``placeholder``: ``"?"`` (positional, DuckDB), ``"%s"`` (psycopg) or ``":p"`` (named
    ``:p0, :p1 ..``, Spark); ``quote``: the identifier quote character; ``double``: the
    float64 type; ``exact_sum``: a format with ``{x}`` for a float64 sum that is accurate to
    the last bits (DuckDB's Kahan-Babuska ``fsum``, PostgreSQL's ``numeric``, Spark's exact
    26-bit pieces summed as integers: :func:`_spark_sum`); ``is_nan``: a condition with
    ``{x}`` true where ``x`` is NaN; ``not_a_number``: a condition with ``{x}`` true where
    text ``x`` does not parse as a float64."""

    name: str
    placeholder: str
    quote: str
    double: str
    exact_sum: str
    is_nan: str
    not_a_number: str
    shift: str = "({a} << {b})"

    def param(self, index: int) -> str:
        """The placeholder of the ``index``-th bound parameter (0-based)."""
        if self.placeholder == ":p":
            return f":p{index}"
        return self.placeholder

    def ident(self, name: str) -> str:
        """``name`` quoted as an identifier (the quote character doubled inside).  Callers pass
        only names of the party's own columns, never a request's text unchecked."""
        if "\x00" in name:
            raise ValueError("an identifier cannot contain a NUL character")
        q = self.quote
        return q + name.replace(q, q + q) + q

    def number(self, value: float | int) -> str:
        """A finite number the node itself chose (a count, an index), as a SQL literal."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"not a number: {type(value).__name__}")
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError("only finite numbers are written into SQL")
            return f"CAST({value!r} AS {self.double})"
        return str(int(value))

    def sum(self, expr: str) -> str:
        """The accurate float64 sum of ``expr`` (NULLs skipped), 0 over no rows."""
        return f"COALESCE({self.exact_sum.format(x=expr)}, CAST(0 AS {self.double}))"

    def shift_left(self, a: str, b: str) -> str:
        """Integer ``a`` shifted left by ``b`` bits."""
        return self.shift.format(a=a, b=b)

    def number_or_null(self, expr: str) -> str:
        """Float64 ``expr`` with NaN as NULL (a missing value, as the memory engine's NaN)."""
        x = f"CAST({expr} AS {self.double})"
        return f"(CASE WHEN {self.is_nan.format(x=x)} THEN NULL ELSE {x} END)"


# DuckDB 2.0: "isnan" is folded to false from a Parquet column's min/max statistics, which
# leave NaN out (the engine also disables that optimiser: parties.data.sql.duck)
DUCKDB = Dialect("duckdb", "?", '"', "DOUBLE", "fsum({x})",
                 "(NOT isfinite({x}) AND NOT isinf({x}))", "TRY_CAST({x} AS DOUBLE) IS NULL")
# PostgreSQL orders NaN above every number and equal to itself
POSTGRES = Dialect("postgresql", "%s", '"', "DOUBLE PRECISION",
                   "CAST(SUM(CAST({x} AS NUMERIC)) AS DOUBLE PRECISION)",
                   "{x} = CAST('NaN' AS DOUBLE PRECISION)",
                   # PostgreSQL 16+; older servers fail the query (the error then has no row)
                   "NOT pg_input_is_valid({x}, 'double precision')")


def _spark_sum() -> str:
    """Spark's ``SUM`` of doubles adds in row order (an error up to ``n eps sum|x|``), so each
    value below 2^53 is cut exactly into 26-bit pieces (IEEE ``%``, scaling by powers of two,
    truncation; no rounding) summed as BIGINT, exact up to 2^36 rows: ``x = h 2^26 + i +
    a 2^-26 + b 2^-52 + c 2^-52`` with ``h, i, a, b`` integers and ``|c| < 1``; only the last
    piece (below 2^-52 each) and values of 2^53 or more are summed as doubles.  The pieces'
    sums are put together exactly as decimals, then rounded: a few ulps of ``sum|x|`` whatever
    the rows (parties.data.sql.spark says what was measured)."""
    x, two26, two52 = "({x})", "CAST(67108864 AS DOUBLE)", "CAST(4503599627370496 AS DOUBLE)"
    small = f"ABS({x}) < {two52} * CAST(2 AS DOUBLE)"

    def total(piece: str) -> str:
        return f"CAST(SUM(CAST({piece} AS BIGINT)) AS DECIMAL(38,0))"

    high = total(f"CASE WHEN {small} THEN CAST({x} / {two26} AS BIGINT) ELSE 0 END")
    low = total(f"{x} % {two26}")
    a = total(f"({x} % CAST(1 AS DOUBLE)) * {two26}")
    b = total(f"(({x} * {two26}) % CAST(1 AS DOUBLE)) * {two26}")
    rest = (f"SUM(CASE WHEN {small} THEN (({x} * {two52}) % CAST(1 AS DOUBLE)) / {two52} "
            f"WHEN ABS({x}) < CAST('Infinity' AS DOUBLE) THEN {x} - {x} % {two26} "
            f"ELSE {x} END)")
    whole = f"CAST({high} * CAST(67108864 AS DECIMAL(9,0)) + {low} AS DOUBLE)"
    part = f"CAST({a} * CAST(67108864 AS DECIMAL(9,0)) + {b} AS DOUBLE) / {two52}"
    return f"({whole} + ({part} + {rest}))"


# Spark 3.5 (parties.data.sql.spark says what was checked): named parameters, backticks
SPARK = Dialect("spark", ":p", "`", "DOUBLE", _spark_sum(), "isnan({x})",
                "try_cast({x} AS DOUBLE) IS NULL", "shiftleft({a}, {b})")
