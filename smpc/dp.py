"""Distributed differential privacy for the joint statistics: accounting, sensitivity, noise.

Pure functions, no I/O.  The runtime (``parties/``) keeps the budget ledger;
:mod:`smpc.stats` calls :func:`plan`, :func:`clip_rows`, :func:`party_noise`
and the post-processing helpers.

What is protected, and against whom
===================================

Neighbouring datasets: **add/remove one row** (unbounded DP) of one party's
table, after the request's public filters.  A row is one individual; if a
person can own ``r`` rows, the guarantee for that person is ``r^2 rho``
(zCDP group privacy).

**Guarantee.**  Let ``m = min_honest`` (default: all ``P`` parties).  If at
least ``m`` parties clip their rows to the public bounds, add the noise share
:func:`party_noise` draws for them and keep it secret, then *everything
released* by one statistic -- the noisy summed aggregates of every pass, and
what anyone derives from them (the pass-2 shift and count, the finished
statistic) -- satisfies ``rho``-zero-concentrated DP (Bun & Steinke 2016),
hence ``(epsilon(rho, delta), delta)``-DP for every ``delta``
(:func:`epsilon_from_rho`), against any observer: the recipient, the
coordinator, the CKKS key holder, or a coalition of parties, as long as the
coalition does not know the honest parties' noise.  The guarantee is
computational only in that it rests on the secure aggregation
(:mod:`smpc.aggregate`: the observer sees the *sum*, never one party's
vector) and on the CSPRNG that draws the noise.

**When fewer parties add their share.**  Each party draws variance
``sigma^2 / m``.  If only ``h`` parties' shares are unknown to the observer
(the others omitted theirs, or are curious and reveal them), the noise the
observer cannot remove has variance ``h / m * sigma^2`` and the guarantee
against that observer degrades to ``rho * m / h`` (:func:`effective_rho`; no
guarantee at ``h = 0``).  Two modes:

* default ``min_honest = P``: shares of ``sigma^2 / P``, the least noise; one
  missing share already costs ``rho * P / (P - 1)``;
* conservative ``min_honest = m < P``: shares of ``sigma^2 / m``; the full
  ``rho`` holds as long as any ``m`` parties are honest (when all ``P`` are,
  the released noise has variance ``P / m * sigma^2``: that is the price).

A party that is also the recipient / key holder knows its own share: count it
out of ``h``.

**Composition.**  zCDP composes by adding ``rho`` (adaptively: pass 2 is
chosen after pass 1's output).  :func:`plan` splits the request's ``rho``
over the released blocks of every pass so that the blocks add up to exactly
the requested ``rho``; a ledger charges that one number per request and
adds the charges (:class:`PrivacyCost`).

**What each node learns** (one statistic under DP):

* a data party: its own rows and its own noise share (to be discarded, never
  sent), the public plan (bounds, sigmas), and for the two-pass statistics
  the pass-2 shift and count -- post-processed pass-1 *noisy* output;
* the ``ss`` recipient (coordinator): each pass's noisy sum, nothing else
  (the shares it adds are uniform);
* the ``ckks`` aggregator: ciphertexts only; the key holder: each pass's
  noisy sum, rounded to the release grid -- the same values as on ``ss``
  up to the lattice, and nothing of the CKKS error.

**Post-processing is free**: anything computed from the released noisy
vectors alone (clamping a count at >= 1, negative bins at 0, variances at
>= 0, rounding, the shift, the finished statistic) costs no budget
(:func:`postprocess_pass1`, :func:`postprocess_shift`,
:func:`postprocess_covariance`).

**Not covered** (the caller must handle or document them): anything a party
reveals outside the noisy sums -- a refusal because its *exact* cohort is
below the policy minimum reveals that fact without noise; an error message
naming a local value; timing.

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

Sensitivity (L2, add/remove one row, rows clipped to ``[lo_j, hi_j]``)
=====================================================================

``M_j = max(|lo_j|, |hi_j|)``; ``W_j = max(|hi_j - s_j|, |s_j - lo_j|)`` for
the public pass-2 shift ``s`` (``<= hi_j - lo_j`` when ``s`` lies within the
bounds); ``k`` value columns; ``D`` the public pass-2 divisor
(:func:`smpc.stats.moment_divisor`: the noisy count on ``ss``, 1 on ``ckks``).

==================  ============================  =================================
statistic           released blocks               L2 sensitivity of the block
==================  ============================  =================================
count               ``[n]``                       1
sum, mean           ``[n]``, ``[sum x_j]``        1, ``sqrt(sum_j M_j^2)``
var std cov corr    pass 1 as mean; pass 2:       pass 2: ``sqrt(sum_j W_j^2) / D``,
linreg              ``[sum (x-s)_j] / D``,        ``sqrt(sum_{i<=j} W_i^2 W_j^2) / D``
                    ``[sum (x-s)_i (x-s)_j] / D``
histogram           ``[n, per column: bins,       ``sqrt(1 + k)`` (one row moves
                    below, above]``               n and one bin per column by 1)
quantiles           ``[n, per column: bins]``     ``sqrt(1 + k)``
==================  ============================  =================================

The blocks of one pass are maximised by the same row (a corner of the
clipping box), so the per-block costs ``Delta_b^2 / (2 sigma_b^2)`` add up
exactly (no slack).  Under DP, ``count`` releases ``[n]`` only (the column
sums are not needed and would cost budget): contribute
``local_pass1(...)[:1]``.

Split of ``rho`` (fractions of the request, per block; they add up to 1):

=======================  =============================================
count                    n 1.0
sum                      n 0.1, sums 0.9 (n is only reported)
mean                     n 0.25, sums 0.75
var std cov corr linreg  n 0.10, sums 0.05 (they only place the shift);
                         first moments 0.10, second moments 0.75
histogram, quantiles     all counts 1.0 (one block, equal sensitivities)
=======================  =============================================

For the two-pass statistics the second moments dominate the error, the
pass-1 sums only choose the shift (any shift gives the exact result; a
noisy one costs a little precision through the first-moment block).

Mechanism and its noise
=======================

Both backends add noise on an integer lattice ``2^-b Z`` (``b`` lattice bits):

* ``ss``: the fixed-point ulps, ``b = spec.frac_bits`` (pass 1) or
  ``spec.moment_codec.frac_bits`` (pass 2);
* ``ckks``: the key holder's release grid ``g = 2^-b`` of the preset
  (``b = 7`` for "aggregate"): each party rounds its aggregate to the grid
  before adding noise (:func:`noisy_ckks_values`); the sum is then on the
  grid exactly, and the release's final rounding to ``g`` removes the CKKS
  error exactly (``|e| <= E = 2^-23 << g/2``), so the released value is
  exactly ``sum_i round_g(a_i) + Z``: the same mechanism as on ``ss``, and it
  carries nothing of the CKKS error (no key leakage) -- the DP noise *is* the
  flood.  The key holder passes ``dp_noise_std`` =
  :meth:`NoisePlan.release_noise_std` to :meth:`smpc.ckks.KeyHolder.release`,
  which then skips its flood (the noise unknown to it is at least the
  flood's std for every realistic budget; if not, it floods as well, which
  only adds noise, but the exactness argument above then no longer applies).

Rounding the local aggregate to the lattice moves a non-integer block by at
most ``sqrt(len)`` lattice units, so the block's sensitivity in lattice units
is ``Delta_b 2^b / D + sqrt(len)`` (0 extra for integer blocks: counts, bins).

**Noise: distributed discrete Gaussian** (Kairouz, Liu & Steinke, "The
Distributed Discrete Gaussian Mechanism for Federated Learning with Secure
Aggregation", ICML 2021).  Each party adds ``N_Z(0, sigma_b^2 / m)`` to every
coordinate of block ``b``.  A sum of discrete Gaussians is not exactly a
discrete Gaussian; KLS21 Prop. 14 bounds the mechanism with ``n`` honest
shares of scale ``sigma_i`` by ``(Delta/sigma + sqrt(d) tau)^2 / 2``-zCDP,
``tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 sigma_i^2 k/(k+1))``; we calibrate
``sigma_b = Delta_b / (sqrt(2 rho_b) - sqrt(d) tau)`` so that bound is met
exactly (``tau`` underflows to 0 for shares above ~6 lattice units; ours are
thousands of ulps, so the correction is there for rigour, not for size).

Why not Skellam (Agarwal, Kairouz & Liu 2021; exactly closed under sums):
it needs an exact Poisson sampler with means around ``sigma^2 ~ 1e10-1e20``
ulps^2 driven by a CSPRNG, which no maintained library offers, while
OpenDP ships an exact discrete Gaussian sampler (Canonne-Kamath-Steinke
2020, exact rational arithmetic) and the sum-closure gap of the discrete
Gaussian is provably negligible here (above).

**Randomness.**  The shares are drawn by OpenDP 0.16's
``make_gaussian`` on ``vector_domain(atom_domain(T="i64"))``, whose samplers
take every random bit from ``fill_bytes``, which the PyPI wheels build with
the ``use-openssl`` feature: OpenSSL's ``RAND_bytes`` (a NIST SP 800-90A
DRBG seeded by the OS), i.e. a CSPRNG (``rust/src/traits/samplers/mod.rs``
in the OpenDP sources; the wheel's library carries the "OpenSSL error"
branch of that function).  ``numpy.random`` and :mod:`random` are never used.
:func:`sample_discrete_gaussian` calls ``opendp.prelude.enable_features
("contrib")``, a process-wide OpenDP setting.

Precision cost (``sigma`` of the released noise, in the statistic's units)
==========================================================================

epsilon = 1, delta = 1e-6 (rho = 0.02436); the total noise does not depend on
``P``; ``N`` rows; "measured" = RMS error over 300 simulated runs with
P = 3, N = 1000 ages ~ N(40, 20) clipped to [0, 120], both backends:

* count: ``sigma = 4.5`` rows (measured 4.4);
* mean of one column in ``[0, 120]``: sums ``sigma = 628``, n
  ``sigma = 9.1``, so the mean's error has std
  ``sqrt(628^2 + 40^2 * 9.1^2) / N = 0.73`` years at N = 1000 (measured
  0.67 ss, 0.79 ckks), 0.07 at N = 10000;
* variance of that column (shift clamped near the mean, ``W = 80``): second
  moment ``sigma = 33500`` (divided by ``D`` on ``ss``, then multiplied
  back), so the variance's error has std about ``33500 / N``: 34 years^2 at
  N = 1000 (measured 38, i.e. 10% of a variance of 390), 1% at N = 10000;
* histogram / quantiles over one column: every bin ``sigma = 6.4`` counts.

Lattice rounding adds at most ``P * 2^-(b+1)`` per value (negligible).
Sampling costs about 12 microseconds per coordinate per party.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from smpc.encoding import EncodingRangeError, FixedPoint
from smpc.errors import InputError

NEIGHBOURING = "add/remove one row"

BACKENDS = ("ss", "ckks")
TWO_PASS = frozenset({"var", "std", "cov", "corr", "linreg"})
COUNT_STATS = frozenset({"histogram", "quantiles"})

SPLITS: dict[str, dict[int, tuple[tuple[str, float], ...]]] = {
    "count": {1: (("count", 1.0),)},
    "sum": {1: (("count", 0.1), ("sums", 0.9))},
    "mean": {1: (("count", 0.25), ("sums", 0.75))},
    "two_pass": {1: (("count", 0.10), ("sums", 0.05)), 2: (("first", 0.10), ("second", 0.75))},
    "counts": {1: (("counts", 1.0),)},
}
"""Fraction of the request's rho spent on each released block (see module notes)."""

MAX_SHARE_UNITS = 2.0**55
"""Largest noise-share scale, in lattice units, that stays far from int64 overflow."""

_RELEASED = {
    "count": "number of rows",
    "sums": "column sums of the clipped rows",
    "first": "centred first moments sum(x - s) / D",
    "second": "centred second moments sum((x - s)_i (x - s)_j), i <= j, / D",
    "counts": "row count and bin counts",
}


# ---------------------------------------------------------------------------
# Accounting
# ---------------------------------------------------------------------------

def _opendp() -> Any:
    import opendp.prelude as odp

    odp.enable_features("contrib")
    return odp


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


def epsilon_from_rho(rho: float, delta: float) -> float:
    """Smallest epsilon such that rho-zCDP implies (epsilon, delta)-DP (CKS20, via OpenDP)."""
    rho = _check_rho(rho, allow_zero=True)
    delta = _check_delta(delta)
    if rho == 0:
        return 0.0
    return float(_profile(rho).epsilon(delta))


def delta_from_rho(rho: float, epsilon: float) -> float:
    """Smallest delta such that rho-zCDP implies (epsilon, delta)-DP (CKS20, via OpenDP)."""
    rho = _check_rho(rho, allow_zero=True)
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float | np.floating):
        raise InputError(f"epsilon must be a number, got {epsilon!r}")
    if not (math.isfinite(float(epsilon)) and float(epsilon) >= 0):
        raise InputError(f"epsilon must be a non-negative finite number, got {epsilon!r}")
    if rho == 0:
        return 0.0
    return float(_profile(rho).delta(float(epsilon)))


@functools.lru_cache(maxsize=256)
def _rho_from_epsilon(epsilon: float, delta: float) -> float:
    # Bun-Steinke's epsilon = rho + 2 sqrt(rho L) upper-bounds the CKS
    # conversion, so its inverse is a feasible lower end; rho = epsilon is
    # infeasible (the conversion exceeds rho).
    log_term = math.log(1.0 / delta)
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
    if rho is not None:
        return PrivacyCost(_check_rho(rho), delta)
    if epsilon is None:
        if delta is not None:
            raise InputError("delta needs an epsilon (or give rho)")
        raise InputError("a differentially private request needs epsilon with delta, or rho")
    if delta is None:
        raise InputError(
            "epsilon needs a delta (e.g. 1e-6): the Gaussian mechanism gives (epsilon, delta)-DP"
        )
    return PrivacyCost(rho_from_epsilon(epsilon, delta), delta)


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


# ---------------------------------------------------------------------------
# Request
# ---------------------------------------------------------------------------

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
    noise shares must be honest for the full guarantee (module notes).
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


# ---------------------------------------------------------------------------
# Clipping and sensitivity
# ---------------------------------------------------------------------------

def clip_rows(rows: np.ndarray, bounds: Sequence[tuple[float, float]]) -> np.ndarray:
    """Clip each column of ``rows`` (n x k, or a 1-D column) into its ``(lo, hi)``."""
    arr = np.asarray(rows, dtype=np.float64)
    flat = arr.ndim == 1
    if flat:
        arr = arr[:, None]
    b = np.asarray(bounds, dtype=np.float64).reshape(-1, 2)
    if arr.ndim != 2 or arr.shape[1] != b.shape[0]:
        raise InputError(f"{b.shape[0]} pair(s) of bounds for a table of shape {arr.shape}")
    out = np.clip(arr, b[:, 0], b[:, 1])
    return out[:, 0] if flat else out


def pass2_widths(
    bounds: Sequence[tuple[float, float]], shift: np.ndarray | None = None
) -> np.ndarray:
    """``W_j``: the largest ``|x_j - s_j|`` over the clipping box.

    Without a shift: ``hi_j - lo_j``, valid for every shift inside the bounds.
    """
    b = np.asarray(bounds, dtype=np.float64).reshape(-1, 2)
    if shift is None:
        return b[:, 1] - b[:, 0]
    s = np.asarray(shift, dtype=np.float64).reshape(-1)
    if s.shape != (b.shape[0],) or not np.isfinite(s).all():
        raise InputError(f"the shift must be {b.shape[0]} finite number(s)")
    return np.maximum(np.abs(b[:, 1] - s), np.abs(s - b[:, 0]))


def pass2_sensitivities(
    bounds: Sequence[tuple[float, float]], shift: np.ndarray | None = None
) -> tuple[float, float]:
    """L2 sensitivities of the pass-2 blocks before division by ``D``: (first, second)."""
    w = pass2_widths(bounds, shift)
    iu = np.triu_indices(w.size)
    second = np.outer(w, w)[iu]
    return float(np.sqrt(np.sum(w**2))), float(np.sqrt(np.sum(second**2)))


@dataclass(frozen=True)
class Block:
    """One released block: coordinates ``[start, start + length)`` of a pass's vector.

    ``sensitivity``: L2 sensitivity in real units (pass 2: before division by
    the divisor ``D``, for the worst shift inside the bounds; see
    :meth:`NoisePlan.sensitivities`).  ``integral``: whole numbers, so
    rounding to the lattice is exact.
    """

    name: str
    start: int
    length: int
    sensitivity: float
    rho: float
    integral: bool

    @property
    def released(self) -> str:
        return _RELEASED[self.name]


@dataclass(frozen=True)
class PassPlan:
    index: int
    length: int
    blocks: tuple[Block, ...]
    lattice_bits: int

    @property
    def rho(self) -> float:
        return sum(b.rho for b in self.blocks)


@dataclass(frozen=True)
class NoisePlan:
    """Everything a party needs to noise its contributions, and what it costs.

    Built by :func:`plan`; identical at every party (a deterministic function
    of the public spec, request and party count).
    """

    statistic: str
    backend: str
    parties: int
    min_honest: int
    cost: PrivacyCost
    passes: tuple[PassPlan, ...]
    bounds: tuple[tuple[float, float], ...] | None
    flood_std: float | None = None

    @property
    def rho(self) -> float:
        return self.cost.rho

    def pass_plan(self, pass_index: int) -> PassPlan:
        if isinstance(pass_index, bool) or pass_index not in range(1, len(self.passes) + 1):
            raise InputError(f"{self.statistic} has pass(es) 1..{len(self.passes)}, "
                             f"not {pass_index!r}")
        return self.passes[pass_index - 1]

    def sensitivities(
        self, pass_index: int, *, divisor: float = 1.0, shift: np.ndarray | None = None
    ) -> tuple[float, ...]:
        """L2 sensitivity of each block of the pass, in real units, as released.

        Pass 2: for the given public ``shift`` (else the worst shift inside the
        bounds) and divided by the public ``divisor``.
        """
        pp = self.pass_plan(pass_index)
        divisor = _check_divisor(divisor, pass_index)
        if pass_index == 2 and shift is not None:
            assert self.bounds is not None
            first, second = pass2_sensitivities(self.bounds, shift)
            by_name = {"first": first, "second": second}
            return tuple(by_name[b.name] / divisor for b in pp.blocks)
        return tuple(b.sensitivity / divisor for b in pp.blocks)

    def lattice_sigmas(
        self, pass_index: int, *, frac_bits: int | None = None, divisor: float = 1.0,
        shift: np.ndarray | None = None,
    ) -> tuple[float, ...]:
        """Total noise scale of each block in lattice units ``2^-frac_bits`` (KLS-calibrated)."""
        pp = self.pass_plan(pass_index)
        bits = self._bits(pp, frac_bits)
        out = []
        for block, sens in zip(pp.blocks, self.sensitivities(
                pass_index, divisor=divisor, shift=shift), strict=True):
            units = sens * 2.0**bits + (0.0 if block.integral else math.sqrt(block.length))
            out.append(_calibrate(units, block.rho, block.length, self.min_honest))
        return tuple(out)

    def sigmas(
        self, pass_index: int, *, frac_bits: int | None = None, divisor: float = 1.0,
        shift: np.ndarray | None = None,
    ) -> tuple[float, ...]:
        """Total noise std of each block in real units (what the recipient's values carry)."""
        bits = self._bits(self.pass_plan(pass_index), frac_bits)
        return tuple(s * 2.0**-bits for s in self.lattice_sigmas(
            pass_index, frac_bits=frac_bits, divisor=divisor, shift=shift))

    def release_noise_std(
        self, pass_index: int, *, keyholder_is_party: bool = False, divisor: float = 1.0,
        shift: np.ndarray | None = None,
    ) -> float:
        """``dp_noise_std`` for :meth:`smpc.ckks.KeyHolder.release`: noise unknown to it.

        The smallest block's noise from the ``min_honest`` guaranteed shares,
        less the key holder's own share if it is also a data party.
        """
        unknown = self.min_honest - (1 if keyholder_is_party else 0)
        sig = min(self.sigmas(pass_index, divisor=divisor, shift=shift))
        return sig * math.sqrt(max(unknown, 0) / self.min_honest)

    def _bits(self, pp: PassPlan, frac_bits: int | None) -> int:
        if frac_bits is None:
            return pp.lattice_bits
        if isinstance(frac_bits, bool) or not isinstance(frac_bits, int | np.integer):
            raise InputError(f"frac_bits must be an integer, got {frac_bits!r}")
        if self.backend == "ckks" and int(frac_bits) != pp.lattice_bits:
            raise InputError(
                f"ckks noise lives on the release grid 2^-{pp.lattice_bits}; "
                f"frac_bits={frac_bits} does not match it"
            )
        FixedPoint(int(frac_bits))
        return int(frac_bits)

    def to_json(self) -> dict[str, Any]:
        """A summary for audit logs: cost, mechanism, per-block sensitivity and sigma."""
        passes = []
        for pp in self.passes:
            sig = self.sigmas(pp.index)
            passes.append({
                "pass": pp.index, "length": pp.length, "lattice_bits": pp.lattice_bits,
                "blocks": [
                    {"name": b.name, "released": b.released, "length": b.length,
                     "l2_sensitivity": b.sensitivity, "rho": b.rho, "sigma": s,
                     **({"divided_by": "D"} if pp.index == 2 else {})}
                    for b, s in zip(pp.blocks, sig, strict=True)
                ],
            })
        return {
            "mechanism": "distributed discrete Gaussian (KLS21), zCDP",
            "neighbouring": NEIGHBOURING, "statistic": self.statistic, "backend": self.backend,
            "parties": self.parties, "min_honest": self.min_honest,
            "cost": self.cost.to_json(),
            "bounds": None if self.bounds is None else [list(b) for b in self.bounds],
            "passes": passes,
        }


def _check_divisor(divisor: float, pass_index: int) -> float:
    try:
        d = float(divisor)
    except (TypeError, ValueError):
        raise InputError(f"divisor must be a number, got {divisor!r}") from None
    if not (math.isfinite(d) and d > 0):
        raise InputError(f"divisor must be a positive finite number, got {divisor!r}")
    if pass_index == 1 and d != 1.0:
        raise InputError("only pass 2 is divided by the public count")
    return d


def kls_tau(share_sigma: float, honest: int) -> float:
    """KLS21's ``tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 sigma_i^2 k / (k+1))`` (lattice units)."""
    return 10.0 * sum(
        math.exp(-2.0 * math.pi**2 * share_sigma**2 * k / (k + 1)) for k in range(1, honest)
    )


def _calibrate(sens_units: float, rho: float, dim: int, honest: int) -> float:
    """Total sigma (lattice units) with ``(Delta/sigma + sqrt(d) tau)^2 / 2 <= rho``."""
    target = math.sqrt(2.0 * rho)
    sigma0 = sens_units / target
    tau = kls_tau(sigma0 / math.sqrt(honest), honest)
    room = target - math.sqrt(dim) * tau
    share = sigma0 / math.sqrt(honest)
    if room <= 0.5 * target or share < 1.0:
        raise InputError(
            "the noise share would be below one lattice step: this budget is too large for the "
            "fixed-point resolution; raise frac_bits or lower the budget"
        )
    # tau is decreasing in sigma, so tau(sigma0) bounds tau(sigma) for sigma >= sigma0.
    return sens_units / room


def plan(spec: Any, request: DPRequest, parties: int) -> NoisePlan:
    """The noise plan of one statistic (a :class:`smpc.stats.StatSpec`) under ``request``.

    Splits ``request.cost.rho`` over the released blocks (:data:`SPLITS`),
    derives each block's L2 sensitivity from the bounds, and fixes the lattice
    of each pass (ulps on ``ss``, the release grid on ``ckks``).
    """
    if not isinstance(request, DPRequest):
        raise InputError("plan needs a DPRequest")
    parties = _check_count(parties, "parties")
    m = parties if request.min_honest is None else request.min_honest
    if m > parties:
        raise InputError(f"min_honest ({m}) cannot exceed the number of parties ({parties})")
    if spec.backend not in BACKENDS:
        raise InputError(f"unknown backend {spec.backend!r}")
    cost = request.cost
    rho = cost.rho
    stat = spec.statistic
    k = len(spec.value_columns)

    if spec.backend == "ss":
        bits1, bits2 = spec.codec.frac_bits, spec.moment_codec.frac_bits
        flood = None
    else:
        from smpc import ckks

        params = ckks.release_parameters(ckks.get_preset(spec.ckks_preset))
        bits1 = bits2 = -round(math.log2(params.grid))
        flood = params.flood_std

    bounds: tuple[tuple[float, float], ...] | None = None
    if stat in COUNT_STATS:
        per_column = len(spec.edges) + 1 if stat == "histogram" else spec.resolution
        length = 1 + k * per_column
        sens = {"counts": math.sqrt(1 + k)}
        layout: dict[int, list[tuple[str, int]]] = {1: [("counts", length)]}
        split = SPLITS["counts"]
    else:
        bounds = request.bounds_for(spec.value_columns)
        mags = np.max(np.abs(np.asarray(bounds)), axis=1)
        first, second = pass2_sensitivities(bounds)
        sens = {"count": 1.0, "sums": float(np.sqrt(np.sum(mags**2))),
                "first": first, "second": second}
        if stat == "count":
            layout, split = {1: [("count", 1)]}, SPLITS["count"]
        elif stat in ("sum", "mean"):
            layout, split = {1: [("count", 1), ("sums", k)]}, SPLITS[stat]
        elif stat in TWO_PASS:
            layout = {1: [("count", 1), ("sums", k)],
                      2: [("first", k), ("second", k * (k + 1) // 2)]}
            split = SPLITS["two_pass"]
        else:
            raise InputError(f"no differential-privacy plan for statistic {stat!r}")

    passes = []
    for index in sorted(layout):
        fractions = dict(split[index])
        blocks, start = [], 0
        for name, size in layout[index]:
            blocks.append(Block(name, start, size, sens[name], rho * fractions[name],
                                integral=name in ("count", "counts")))
            start += size
        passes.append(PassPlan(index, start, tuple(blocks), bits1 if index == 1 else bits2))
    result = NoisePlan(stat, spec.backend, parties, m, cost, tuple(passes), bounds, flood)
    for pp in result.passes:  # fail early on an unusable budget / lattice
        result.lattice_sigmas(pp.index)
    return result


# ---------------------------------------------------------------------------
# Noise
# ---------------------------------------------------------------------------

def sample_discrete_gaussian(scale: float, count: int) -> np.ndarray:
    """``count`` iid draws of the discrete Gaussian ``N_Z(0, scale^2)`` as int64.

    OpenDP's exact sampler (Canonne-Kamath-Steinke 2020) on OpenSSL's CSPRNG
    (module notes).  ``P(x) ~ exp(-x^2 / (2 scale^2))``; its variance is
    ``scale^2`` to within ``1e-7`` relative for ``scale >= 1``.
    """
    if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 0:
        raise InputError(f"count must be a non-negative integer, got {count!r}")
    scale = float(scale)
    if not (math.isfinite(scale) and 0 < scale <= MAX_SHARE_UNITS):
        raise InputError(f"the noise scale must lie in (0, 2^55] lattice units, got {scale!r}")
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    odp = _opendp()
    meas = odp.m.make_gaussian(
        odp.vector_domain(odp.atom_domain(T="i64")), odp.l2_distance(T="i64"), scale=scale
    )
    return np.asarray(meas([0] * int(count)), dtype=np.int64)


def party_noise(
    plan: NoisePlan, pass_index: int, length: int, backend: str, frac_bits: int | None = None,
    *, divisor: float = 1.0, shift: np.ndarray | None = None,
) -> np.ndarray:
    """This party's noise share for one pass: int64 ulps on ``ss``, float64 on ``ckks``.

    Each coordinate of block ``b`` gets ``N_Z(0, sigma_b^2 / min_honest)`` in
    lattice units ``2^-frac_bits`` (``frac_bits`` defaults to the plan's: the
    pass's codec on ``ss``, the release grid on ``ckks``).  Pass 2 needs the
    public ``divisor`` the moments were divided by and, for the tightest
    noise, the public ``shift`` (else the worst shift inside the bounds is
    assumed: clamp the shift with :func:`postprocess_shift`).  Add it with
    :func:`add_ring_noise` (``ss``, after encoding) or :func:`noisy_ckks_values`.
    Draw it once per pass and never reveal it.
    """
    if backend != plan.backend:
        raise InputError(f"the plan is for backend {plan.backend!r}, not {backend!r}")
    pp = plan.pass_plan(pass_index)
    if isinstance(length, bool) or not isinstance(length, int | np.integer) or length != pp.length:
        raise InputError(
            f"pass {pass_index} of {plan.statistic} releases {pp.length} value(s) under "
            f"differential privacy, not {length!r}"
        )
    bits = plan._bits(pp, frac_bits)
    sigmas = plan.lattice_sigmas(pass_index, frac_bits=bits, divisor=divisor, shift=shift)
    out = np.empty(pp.length, dtype=np.int64)
    for block, sigma in zip(pp.blocks, sigmas, strict=True):
        share = sigma / math.sqrt(plan.min_honest)
        out[block.start:block.start + block.length] = sample_discrete_gaussian(share, block.length)
    if backend == "ss":
        return out
    return out.astype(np.float64) * 2.0**-bits


def add_ring_noise(
    encoded: np.ndarray, noise: np.ndarray, *, headroom: float, what: str = "noisy aggregate",
    codec: FixedPoint | None = None,
) -> np.ndarray:
    """Add int64 noise ulps to an encoded ring vector (uint64), with the range check.

    The noisy value must stay below ``2^63 / headroom`` ulps (``headroom`` =
    number of parties, as :meth:`FixedPoint.encode` uses) so that the secure
    sum cannot wrap; otherwise :class:`EncodingRangeError`, whose message does
    not contain the noisy value.
    """
    enc = np.asarray(encoded, dtype=np.uint64).view(np.int64)
    z = np.asarray(noise, dtype=np.int64)
    if enc.shape != z.shape:
        raise InputError(f"noise of shape {z.shape} for a vector of shape {enc.shape}")
    if not (math.isfinite(float(headroom)) and float(headroom) >= 1):
        raise InputError("headroom must be a finite number >= 1")
    with np.errstate(over="ignore"):
        total = enc + z
    overflow = ((enc >= 0) == (z >= 0)) & ((total >= 0) != (enc >= 0))
    bound = 2.0**63 / float(headroom)
    if overflow.any() or (np.abs(total.astype(np.float64)) >= bound).any():
        bits = "" if codec is None else f" with {codec.frac_bits} fractional bits"
        raise EncodingRangeError(
            f"the {what} plus its privacy noise is outside the fixed-point range{bits} "
            f"(headroom for {float(headroom):g} parties): lower frac_bits or tighten the bounds"
        )
    return total.view(np.uint64)


def noisy_ckks_values(plan: NoisePlan, values: np.ndarray, noise: np.ndarray,
                      pass_index: int = 1) -> np.ndarray:
    """Round ``values`` to the release grid and add the ``ckks`` noise share (float64).

    Rounding first puts the sum of all parties' contributions exactly on the
    grid, so the key holder's release rounding removes the CKKS error exactly
    (module notes).
    """
    if plan.backend != "ckks":
        raise InputError("noisy_ckks_values is for the ckks backend")
    grid = 2.0**-plan.pass_plan(pass_index).lattice_bits
    v = np.asarray(values, dtype=np.float64)
    z = np.asarray(noise, dtype=np.float64)
    if v.shape != z.shape:
        raise InputError(f"noise of shape {z.shape} for values of shape {v.shape}")
    return np.round(v / grid) * grid + z


# ---------------------------------------------------------------------------
# Post-processing (free: it only reads released values)
# ---------------------------------------------------------------------------

def postprocess_pass1(plan: NoisePlan, summed: np.ndarray, ddof: int = 1) -> np.ndarray:
    """Make a noisy pass-1 sum usable; costs no privacy.

    * ``count``: rounded, at least 0;
    * sum / mean / two-pass statistics: the count (a divisor) at least 1
      (at least ``ddof + 1`` for the two-pass ones);
    * histogram / quantiles: every count rounded and at least 0.
    """
    out = np.array(summed, dtype=np.float64, copy=True)
    if plan.statistic == "count":
        out[0] = max(round(out[0]), 0)
    elif plan.statistic in COUNT_STATS:
        out = np.clip(np.rint(out), 0, None)
    else:
        floor = ddof + 1 if plan.statistic in TWO_PASS else 1
        out[0] = max(out[0], floor)
    return out


def postprocess_shift(plan: NoisePlan, shift: np.ndarray) -> np.ndarray:
    """Clamp the pass-2 shift (a noisy mean) into the clipping bounds; costs no privacy.

    Keeps the centred values within ``hi - lo`` and so the pass-2 noise small.
    """
    if plan.bounds is None:
        raise InputError(f"{plan.statistic} has no clipping bounds")
    b = np.asarray(plan.bounds, dtype=np.float64)
    return np.clip(np.asarray(shift, dtype=np.float64), b[:, 0], b[:, 1])


def postprocess_covariance(cov: np.ndarray) -> np.ndarray:
    """Nearest positive semi-definite matrix (eigenvalues clamped at 0); costs no privacy.

    Variances come out >= 0, correlations within [-1, 1].
    """
    c = np.asarray(cov, dtype=np.float64)
    sym = (c + c.T) / 2.0
    vals, vecs = np.linalg.eigh(sym)
    return (vecs * np.clip(vals, 0.0, None)) @ vecs.T
