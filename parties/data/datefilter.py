"""Comparisons of date columns in filters (the rules: :mod:`parties.data.filters`, "Dates").

Kept apart from the filter language's parser and evaluator so that each file has one job;
:func:`parties.data.filter_eval._compare` calls :func:`date_operands` for every comparison.
"""

from __future__ import annotations

from parties.data.dates import days_since_epoch
from parties.data.filter_eval import _numeric
from parties.data.filters import Column, Compare, FilterError, String
from parties.data.sources import DataSourceError, Table

__all__ = ["date_operands"]


def date_operands(c: Compare, table: Table) -> dict[int, float] | None:
    """For a comparison involving a date column or a date literal: the days of each literal
    (by operand index), after checking the rule of the module docstring; ``None`` otherwise."""
    ops = (c.left, c.right)
    cols = [x for x in ops if isinstance(x, Column)]
    if c.op not in ("==", "!=") and any(isinstance(x, String) for x in ops):
        for column in cols:  # a date column with a bad cell: the table's error, by row
            try:
                table.column(column.name)
            except DataSourceError as exc:
                if exc.kind == "not-a-date":
                    _numeric(table, column)
    dated = [x for x in cols if table.is_date(x.name)]
    if not dated:
        if c.op in ("==", "!=") or not any(isinstance(x, String) for x in ops):
            return None
        col = cols[0]
        raise FilterError(
            f"column {col.name!r} at position {col.pos} is not a date column; only a date "
            f"column compares with a date using {c.op!r}", col.pos)
    days: dict[int, float] = {}
    for i, x in enumerate(ops):
        if isinstance(x, String):
            d = days_since_epoch(x.value)
            if d is None:
                raise FilterError(
                    f"column {dated[0].name!r} at position {dated[0].pos} holds dates; compare "
                    f"it with a date such as '2024-01-01' (ISO 8601), not {x}", dated[0].pos)
            days[i] = d
        elif not (isinstance(x, Column) and table.is_date(x.name)):
            raise FilterError(
                f"column {dated[0].name!r} at position {dated[0].pos} holds dates; compare it "
                "with a date such as '2024-01-01' or another date column, not a number",
                dated[0].pos)
    return days
