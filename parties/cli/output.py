"""What every ``smpc`` command prints: text for people, one JSON document with ``--json``.

With ``--json`` a command prints on stdout exactly one JSON document: its result (the schema
of each command is in README, "JSON output") or, on an error, the error document of
:func:`parties.errors.error_document` -- ``{"error": <one line>, "code": <gRPC status name or
null>, "node": <node blamed or null>, "declined": {<party>: <reason>}}`` -- and exits with a
non-zero status.  Documents are strict JSON: a non-finite number is ``null``.  The error's
line is also written on stderr, as without ``--json``.  Argument errors (argparse's usage
errors) are errors like any other: :class:`JsonParser`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, NoReturn

from parties.errors import error_document, one_line
from smpc.errors import SmpcError

__all__ = ["EXIT_ERROR", "JsonParser", "UsageError", "emit", "fail", "format_result",
           "json_safe", "one_line", "print_json", "wants_json"]

EXIT_ERROR = 2


class UsageError(SmpcError):
    """Bad command-line arguments (argparse's message, one line; exit status 2); ``parser``:
    the (sub)parser that refused them, for its usage line."""

    def __init__(self, message: str, parser: argparse.ArgumentParser | None = None,
                 detail: str = "") -> None:
        super().__init__(message)
        self.parser = parser
        self.detail = detail or message


class JsonParser(argparse.ArgumentParser):
    """An argument parser whose usage errors raise :class:`UsageError` instead of printing
    and exiting, so that ``--json`` can report them as an error document (subparsers inherit
    the class)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}", self, message)


def wants_json(args: argparse.Namespace | None, argv: list[str] | None = None) -> bool:
    """Whether the command asked for ``--json`` (from parsed ``args``, else from ``argv``
    when parsing itself failed)."""
    if args is not None:
        return bool(getattr(args, "json", False))
    return "--json" in (argv or ())


def json_safe(doc: Any) -> Any:
    """``doc`` with every non-finite float (NaN, +-inf: not JSON) as None and tuples as
    lists, so that the printed document is strict JSON."""
    if isinstance(doc, float):
        return doc if math.isfinite(doc) else None
    if isinstance(doc, dict):
        return {str(k): json_safe(v) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [json_safe(v) for v in doc]
    return doc


def print_json(doc: Any, indent: int | None = 2) -> None:
    """Print ``doc`` as one strict JSON document (:func:`json_safe`) on stdout."""
    print(json.dumps(json_safe(doc), indent=indent, allow_nan=False))


def emit(args: argparse.Namespace, doc: Any, text: str) -> None:
    """Print ``doc`` as JSON with ``--json``, else ``text``."""
    if getattr(args, "json", False):
        print_json(doc)
    else:
        print(text)


def fail(exc: BaseException, json_out: bool) -> int:
    """Report ``exc``: one line on stderr, and its error document on stdout with ``--json``;
    returns the exit status (2)."""
    print(f"smpc: error: {one_line(exc)}", file=sys.stderr)
    if json_out:
        print_json(error_document(exc), indent=None)
    return EXIT_ERROR


def _num(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def format_result(result: Any) -> str:
    """A statistic's result as a few readable lines."""
    lines = [f"{result.statistic} over {_num(result.n)} rows ({result.backend})"]
    cols = result.columns
    value = result.value
    if result.statistic == "count":
        lines.append(f"  count = {value}")
    elif result.statistic in ("sum", "mean", "var", "std"):
        lines += [f"  {c} = {_num(v)}" for c, v in zip(cols, value, strict=True)]
    elif result.statistic in ("cov", "corr"):
        width = max(len(c) for c in cols)
        lines.append(" " * (width + 2) + "  ".join(f"{c:>12}" for c in cols))
        lines += [f"  {c:>{width}}" + "".join(f"  {_num(v):>12}" for v in row)
                  for c, row in zip(cols, value, strict=True)]
    elif result.statistic == "histogram":
        edges = result.details["edges"]
        for c, counts, below, above in zip(cols, value, result.details["below"],
                                           result.details["above"], strict=True):
            lines.append(f"  {c}: below {edges[0]:g}: {below}, above {edges[-1]:g}: {above}")
            lines += [f"    [{lo:g}, {hi:g}): {n}"
                      for lo, hi, n in zip(edges, edges[1:], counts, strict=False)]
    elif result.statistic == "quantiles":
        probs = result.details["probabilities"]
        for c, qs in zip(cols, value, strict=True):
            lines.append(f"  {c}: " + ", ".join(f"q{p:g}={_num(q)}"
                                                for p, q in zip(probs, qs, strict=True)))
        lines.append(f"  (resolution {result.details['resolution']:.4g})")
        lo, hi = result.details["bounds"]
        lines += [f"  {c}: below {lo:g}: {b}, above {hi:g}: {a}" for c, b, a in zip(
            cols, result.details["below"], result.details["above"], strict=True)]
    elif result.statistic == "linreg":
        lines.append(f"  {result.details.get('target')} = {_num(value['intercept'])}" + "".join(
            f" {'+' if b >= 0 else '-'} {abs(b):.6g}*{c}"
            for c, b in zip(cols, value["coefficients"], strict=True)))
        lines.append(f"  R^2 = {_num(result.details.get('r2'))}")
    from smpc.stats.bounds import summary_lines

    lines += summary_lines(result.details)
    if "missing" in result.details:
        per_column = result.details.get("n", {})
        lines.append("  missing values left out: " + ", ".join(
            f"{c} {m}" + (f" (used {per_column[c]})" if c in per_column else "")
            for c, m in result.details["missing"].items()))
    privacy = result.details.get("privacy")
    if privacy:
        cost = privacy.get("cost", {})
        lines.append(f"  differential privacy: rho={_num(cost.get('rho'))}"
                     + (f", epsilon={_num(cost.get('epsilon'))} at delta={_num(cost['delta'])}"
                        if cost.get("delta") else ""))
    declined = result.details.get("declined") or {}
    if declined:
        lines.append(f"  parties: {', '.join(result.details.get('parties') or [])}; "
                     f"declined: {', '.join(declined)}")
        lines += [f"    {reason}" for reason in declined.values()]
    return "\n".join(lines)
