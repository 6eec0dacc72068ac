"""Privacy accounting in zero-concentrated DP, with an (epsilon, delta) view.

Guarantees: costs are kept as ``rho`` and compose by addition (:class:`PrivacyCost`,
:func:`compose`); a request in (epsilon, delta) is charged the largest ``rho`` whose
(epsilon, delta) view does not exceed it (:func:`rho_from_epsilon`), so the conversion never
under-charges.  :func:`effective_rho` says what the guarantee degrades to when fewer noise
shares than planned are unknown to an observer.  Reveals nothing: pure arithmetic on public
budgets.

Accounting (zCDP -> (epsilon, delta))
=====================================

Costs are kept as ``rho``.  The (epsilon, delta) view uses OpenDP's
``make_zCDP_to_approxDP`` (the Canonne-Kamath-Steinke 2020 conversion,
"The Discrete Gaussian for Differential Privacy", Prop. 12 / Cor. 13, with
OpenDP's conservative rounding): tighter than Bun-Steinke's
``epsilon = rho + 2 sqrt(rho ln(1/delta))``.  A request in (epsilon, delta)
is charged the largest ``rho`` whose epsilon at that delta is at most the
requested epsilon (:func:`rho_from_epsilon`, bisection on OpenDP's map).
Examples: epsilon=1, delta=1e-6 -> rho = 0.02436 (inverting Bun-Steinke
would give 0.01747, i.e. 39% more noise variance); rho = 0.5 -> epsilon =
5.22 at delta = 1e-6.  OpenDP's numbers equal CKS Prop. 12 minimised over the
Renyi order to 1e-9, and dp-accounting's ``RdpAccountant`` with a
``ZCDpEvent`` (the same bound on a grid of orders) to 1e-4 (tests).

What one request may ask
========================

A request's budget must lie in :data:`EPSILON_RANGE`, :data:`DELTA_RANGE` and
:data:`RHO_RANGE` (:func:`cost_from_request`); anything else -- 0, a negative number, NaN,
infinity, 1e308, a subnormal -- is an :class:`~smpc.errors.InputError` of one sentence naming
the parameter and its range, never an OpenDP overflow or a traceback.  The ranges leave every
meaningful budget in (epsilon 1e-4 is noise 10^4 times the sensitivity; epsilon 1000 is no
privacy at all) and keep OpenDP's conversion finite (it overflows near epsilon or rho 1e5).
Views of costs that are not requests (a ledger's total) never raise on size: an epsilon
beyond what OpenDP can compute is reported as ``inf`` (an upper bound), a delta as 1.
"""

from __future__ import annotations

import functools
import math
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from smpc.errors import InputError

__all__ = [
    "DELTA_RANGE",
    "EPSILON_RANGE",
    "RHO_RANGE",
    "PrivacyCost",
    "compose",
    "cost_from_request",
    "delta_from_rho",
    "effective_rho",
    "epsilon_from_rho",
    "rho_from_epsilon",
]


#: The epsilon a request may ask (inclusive).
EPSILON_RANGE: tuple[float, float] = (1e-4, 1e3)
#: The delta a request may ask (inclusive): below 1e-100 the conversion gains nothing real.
DELTA_RANGE: tuple[float, float] = (1e-100, 0.5)
#: The rho a request may ask (inclusive); epsilon 1e-4 at delta 1e-100 costs 1.1e-11.
RHO_RANGE: tuple[float, float] = (1e-12, 1e3)


@functools.lru_cache(maxsize=1)
def _opendp() -> Any:
    """The parts of OpenDP this package uses, as ``odp.m``, ``odp.c``, ``odp.atom_domain``...
    (the names of ``opendp.prelude``).  Imported module by module: ``opendp.prelude`` also
    imports ``opendp.extras.sklearn``, which imports scikit-learn and SciPy when they are
    installed -- measured 3.6 s of every node's and command's start-up here, for nothing."""
    import opendp.combinators as c
    import opendp.domains as domains
    import opendp.measurements as m
    import opendp.metrics as metrics
    import opendp.mod as mod

    mod.enable_features("contrib")
    return types.SimpleNamespace(
        m=m, c=c, atom_domain=domains.atom_domain, vector_domain=domains.vector_domain,
        absolute_distance=metrics.absolute_distance, l2_distance=metrics.l2_distance)


@functools.lru_cache(maxsize=1024)
def _profile(rho: float) -> Any:
    """OpenDP's privacy profile (epsilon <-> delta curve) of a rho-zCDP mechanism.

    A Gaussian mechanism with scale 1 and input distance sqrt(2 rho) is
    exactly rho-zCDP (OpenDP rounds its map up, so never below rho).
    """
    odp = _opendp()
    meas = odp.m.make_gaussian(
        odp.atom_domain(T=float, nan=False), odp.absolute_distance(T=float), scale=1.0
    )
    return odp.c.make_zCDP_to_approxDP(meas).map(math.sqrt(2.0 * rho))


def _check_rho(rho: float, what: str = "rho", allow_zero: bool = False) -> float:
    if isinstance(rho, bool) or not isinstance(rho, int | float | np.floating | np.integer):
        raise InputError(f"{what} must be a number, got {rho!r}")
    rho = float(rho)
    if not math.isfinite(rho) or rho < 0 or (rho == 0 and not allow_zero):
        raise InputError(f"{what} must be a positive finite number, got {rho!r}")
    return rho


def _check_delta(delta: float) -> float:
    if isinstance(delta, bool) or not isinstance(delta, int | float | np.floating):
        raise InputError(f"delta must be a number in (0, 1), got {delta!r}")
    delta = float(delta)
    if not (math.isfinite(delta) and 0.0 < delta < 1.0):
        raise InputError(f"delta must lie strictly between 0 and 1, got {delta!r}")
    return delta


def _check_epsilon(epsilon: float) -> float:
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float | np.floating):
        raise InputError(f"epsilon must be a positive number, got {epsilon!r}")
    epsilon = float(epsilon)
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise InputError(f"epsilon must be a positive finite number, got {epsilon!r}")
    return epsilon


def _overflow(exc: Exception) -> bool:
    """True for OpenDP's refusal of a map it cannot compute in floating point."""
    return type(exc).__name__ == "OpenDPException" and (
        "Overflow" in str(exc) or "finite" in str(exc))


def epsilon_from_rho(rho: float, delta: float) -> float:
    """Smallest epsilon such that rho-zCDP implies (epsilon, delta)-DP (CKS20, via OpenDP)."""
    rho = _check_rho(rho, allow_zero=True)
    delta = _check_delta(delta)
    if rho == 0:
        return 0.0
    try:
        return float(_profile(rho).epsilon(delta))
    except Exception as exc:  # OpenDP overflows for rho near 1e5: no finite epsilon
        if not _overflow(exc):
            raise
        return math.inf


def delta_from_rho(rho: float, epsilon: float) -> float:
    """Smallest delta such that rho-zCDP implies (epsilon, delta)-DP (CKS20, via OpenDP)."""
    rho = _check_rho(rho, allow_zero=True)
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float | np.floating):
        raise InputError(f"epsilon must be a number, got {epsilon!r}")
    if not (math.isfinite(float(epsilon)) and float(epsilon) >= 0):
        raise InputError(f"epsilon must be a non-negative finite number, got {epsilon!r}")
    if rho == 0:
        return 0.0
    try:
        return float(_profile(rho).delta(float(epsilon)))
    except Exception as exc:  # OpenDP overflows for rho near 1e5: no delta below 1
        if not _overflow(exc):
            raise
        return 1.0


@functools.lru_cache(maxsize=256)
def _rho_from_epsilon(epsilon: float, delta: float) -> float:
    # Bun-Steinke's epsilon = rho + 2 sqrt(rho L) upper-bounds the CKS
    # conversion, so its inverse is a feasible lower end; rho = epsilon is
    # infeasible (the conversion exceeds rho).
    log_term = -math.log(delta)  # not log(1 / delta): 1 / 1e-320 overflows
    lo = (math.sqrt(log_term + epsilon) - math.sqrt(log_term)) ** 2
    hi = epsilon
    if epsilon_from_rho(lo, delta) > epsilon:  # pragma: no cover - defensive
        raise InputError("could not convert (epsilon, delta) to rho")
    for _ in range(200):
        if hi - lo <= 1e-12 * lo:
            break
        mid = 0.5 * (lo + hi)
        if epsilon_from_rho(mid, delta) <= epsilon:
            lo = mid
        else:
            hi = mid
    return lo


def rho_from_epsilon(epsilon: float, delta: float) -> float:
    """Largest rho whose (epsilon, delta) view is within the given epsilon (relative 1e-12)."""
    return _rho_from_epsilon(_check_epsilon(epsilon), _check_delta(delta))


@dataclass(frozen=True)
class PrivacyCost:
    """A privacy cost in zCDP, with an (epsilon, delta) view.

    ``rho`` is what composes: costs add (``a + b``, :func:`compose`).
    ``delta`` only says at which delta :attr:`epsilon` is shown (the request's
    delta, when it came as (epsilon, delta)); it is not itself spent.
    """

    rho: float
    delta: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "rho", _check_rho(self.rho, allow_zero=True))
        if self.delta is not None:
            object.__setattr__(self, "delta", _check_delta(self.delta))

    @property
    def epsilon(self) -> float | None:
        """epsilon at :attr:`delta` (None if no delta is attached)."""
        return None if self.delta is None else epsilon_from_rho(self.rho, self.delta)

    def epsilon_at(self, delta: float) -> float:
        return epsilon_from_rho(self.rho, delta)

    def delta_at(self, epsilon: float) -> float:
        return delta_from_rho(self.rho, epsilon)

    def __add__(self, other: PrivacyCost) -> PrivacyCost:
        if not isinstance(other, PrivacyCost):
            return NotImplemented
        return PrivacyCost(self.rho + other.rho, self.delta if self.delta is not None
                           else other.delta)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"rho": self.rho, "delta": self.delta}
        if self.delta is not None:
            doc["epsilon"] = self.epsilon
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> PrivacyCost:
        if not isinstance(doc, Mapping) or "rho" not in doc:
            raise InputError("a privacy cost is a JSON object with a 'rho' field")
        return cls(doc["rho"], doc.get("delta"))

    def __str__(self) -> str:
        if self.delta is None:
            return f"rho={self.rho:.6g}"
        return f"rho={self.rho:.6g} (epsilon={self.epsilon:.4g} at delta={self.delta:.3g})"


def compose(costs: Sequence[PrivacyCost]) -> PrivacyCost:
    """Sequential (adaptive) composition: the rhos add up."""
    total = PrivacyCost(0.0)
    for c in costs:
        total = total + c
    return total


def cost_from_request(
    epsilon: float | None = None, delta: float | None = None, rho: float | None = None
) -> PrivacyCost:
    """The zCDP cost of a request given as ``rho`` or as ``(epsilon, delta)``.

    ``rho`` alone (optionally with ``delta`` to show an epsilon); or
    ``epsilon`` with ``delta``: the largest rho whose epsilon at that delta is
    at most ``epsilon`` (:func:`rho_from_epsilon`).
    """
    if rho is not None and epsilon is not None:
        raise InputError("give either rho or (epsilon, delta), not both")
    if delta is not None:
        _in_range(_check_delta(delta), DELTA_RANGE, "delta")
    if rho is not None:
        return PrivacyCost(_in_range(_check_rho(rho), RHO_RANGE, "rho"), delta)
    if epsilon is None:
        if delta is not None:
            raise InputError("delta needs an epsilon (or give rho)")
        raise InputError("a differentially private request needs epsilon with delta, or rho")
    if delta is None:
        raise InputError(
            "epsilon needs a delta (e.g. 1e-6): the Gaussian mechanism gives (epsilon, delta)-DP"
        )
    epsilon = _in_range(_check_epsilon(epsilon), EPSILON_RANGE, "epsilon")
    return PrivacyCost(rho_from_epsilon(epsilon, delta), delta)


def _in_range(value: float, bounds: tuple[float, float], what: str) -> float:
    lo, hi = bounds
    if not lo <= value <= hi:
        raise InputError(f"{what} must lie between {lo:g} and {hi:g} for one request, "
                         f"got {value!r}")
    return value


def effective_rho(rho: float, parties: int, honest: int, *, min_honest: int | None = None) -> float:
    """The zCDP guarantee when only ``honest`` noise shares are unknown to the observer.

    Shares were sized for ``min_honest`` parties (default ``parties``: each
    drew ``sigma^2 / min_honest``), so ``honest`` unknown shares leave
    variance ``honest / min_honest * sigma^2`` and the guarantee is
    ``rho * min_honest / honest`` (below ``rho`` when more than
    ``min_honest`` are honest; ``inf`` when none is).
    """
    rho = _check_rho(rho, allow_zero=True)
    parties = _check_count(parties, "parties")
    m = parties if min_honest is None else _check_count(min_honest, "min_honest")
    if m > parties:
        raise InputError(f"min_honest ({m}) cannot exceed the number of parties ({parties})")
    if isinstance(honest, bool) or not isinstance(honest, int | np.integer) or honest < 0:
        raise InputError(f"honest must be a non-negative integer, got {honest!r}")
    if honest > parties:
        raise InputError(f"honest ({honest}) cannot exceed the number of parties ({parties})")
    if honest == 0:
        return math.inf
    return rho * m / int(honest)


def _check_count(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InputError(f"{what} must be a positive integer, got {value!r}")
    return int(value)
