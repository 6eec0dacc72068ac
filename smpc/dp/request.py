"""The differential-privacy part of a request: budget, public clipping bounds, honesty margin.

Guarantees: a :class:`DPRequest` that exists is well formed -- a budget within the ranges one
request may ask (``rho``, or ``epsilon`` with ``delta``:
:data:`~smpc.dp.accounting.RHO_RANGE` ...), finite bounds with ``lo < hi`` and magnitudes at
most :data:`BOUND_LIMIT` per column, a positive ``min_honest`` -- anything else is an
:class:`~smpc.errors.InputError` of one sentence at construction (so at the analyst's client
and again at each party that parses the request), never a traceback.
Reveals nothing: the request is public.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from smpc.dp.accounting import PrivacyCost, _check_count, cost_from_request
from smpc.errors import InputError

__all__ = ["BOUND_LIMIT", "DPRequest"]

#: The largest magnitude of a clipping bound: beyond it ``hi - lo`` and the sensitivities
#: built from it overflow float64 (1e308) or no fixed-point encoding can hold a value.
BOUND_LIMIT = 1e15


def _check_bounds_map(bounds: Any) -> dict[str, tuple[float, float]]:
    if not isinstance(bounds, Mapping):
        raise InputError("bounds must map each column name to [lo, hi]")
    out: dict[str, tuple[float, float]] = {}
    for name, pair in bounds.items():
        if not isinstance(name, str) or not name:
            raise InputError(f"bounds are keyed by column name, got {name!r}")
        if isinstance(pair, str | bytes) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise InputError(f"the bounds of column {name!r} must be a pair [lo, hi]")
        try:
            lo, hi = float(pair[0]), float(pair[1])
        except (TypeError, ValueError):
            raise InputError(f"the bounds of column {name!r} must be numbers") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise InputError(f"the bounds of column {name!r} must be finite with lo < hi")
        if max(abs(lo), abs(hi)) > BOUND_LIMIT:
            raise InputError(f"the bounds of column {name!r} must lie within "
                             f"[-{BOUND_LIMIT:g}, {BOUND_LIMIT:g}]")
        out[name] = (lo, hi)
    return out


@dataclass(frozen=True)
class DPRequest:
    """The differential-privacy part of a request: budget, clipping bounds, honesty margin.

    Give ``rho`` (zCDP), or ``epsilon`` with ``delta``; ``delta`` may
    accompany ``rho`` to choose the delta of the (epsilon, delta) view.
    ``bounds`` maps each value column to its public clipping interval
    ``(lo, hi)`` (not needed for histogram and quantiles, whose bins are
    public).  ``min_honest`` (default: all parties) is how many parties'
    noise shares must be honest for the full guarantee (:mod:`smpc.dp`).
    """

    epsilon: float | None = None
    delta: float | None = None
    rho: float | None = None
    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    min_honest: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "bounds", _check_bounds_map(self.bounds or {}))
        if self.min_honest is not None:
            object.__setattr__(self, "min_honest", _check_count(self.min_honest, "min_honest"))
        self.cost  # noqa: B018 - validates the budget fields

    @property
    def cost(self) -> PrivacyCost:
        return cost_from_request(self.epsilon, self.delta, self.rho)

    def bounds_for(self, columns: Sequence[str]) -> tuple[tuple[float, float], ...]:
        """The clipping bounds of ``columns``, in order; a missing column is an InputError."""
        missing = [c for c in columns if c not in self.bounds]
        if missing:
            raise InputError(
                f"differential privacy needs clipping bounds for column(s) {', '.join(missing)}"
            )
        return tuple(self.bounds[c] for c in columns)

    def to_json(self) -> dict[str, Any]:
        return {
            "epsilon": self.epsilon, "delta": self.delta, "rho": self.rho,
            "bounds": {k: list(v) for k, v in self.bounds.items()},
            "min_honest": self.min_honest,
        }

    @classmethod
    def from_json(cls, doc: Any) -> DPRequest:
        if not isinstance(doc, Mapping):
            raise InputError("a differential-privacy request is a JSON object")
        unknown = set(doc) - {"epsilon", "delta", "rho", "bounds", "min_honest"}
        if unknown:
            raise InputError(f"unknown DP request field(s): {', '.join(sorted(unknown))}")
        return cls(
            epsilon=doc.get("epsilon"), delta=doc.get("delta"), rho=doc.get("rho"),
            bounds=doc.get("bounds") or {}, min_honest=doc.get("min_honest"),
        )
