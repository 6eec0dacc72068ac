"""The noise plan of one statistic: clipping, sensitivities, the split of rho, calibration.

Guarantees: :func:`plan` is a deterministic function of the public spec, request and party
count (identical at every party); its blocks' costs add up to exactly the request's ``rho``,
and each block's noise is calibrated so that the KLS21 bound for the distributed discrete
Gaussian meets the block's share of ``rho`` (:func:`_calibrate`).  Reveals nothing: the plan
is public (its :meth:`NoisePlan.to_json` summary goes to audit logs).

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

With ``missing="skip"`` (the default) pass 1 of count ... linreg also releases
``[m_1 .. m_k]``, the number of missing values of each column (block ``missing``, L2
sensitivity ``sqrt(k)``: one row is missing in at most every column), and each column's sum is
over its present values (a missing value adds 0: the sums' sensitivity is unchanged); for
``cov``, ``corr``, ``linreg`` the count and sums are over the rows complete in every column.
Histogram / quantile cells gain a missing cell per column (one row still moves one cell per
column: the sensitivity stays ``sqrt(1 + k)``), and quantiles count the values below / above
``bounds`` in two cells per column instead of clipping them into the end bins.

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
count, missing="skip"    n 0.5, missing 0.5
sum, missing="skip"      n 0.1, sums 0.8, missing 0.1
mean, missing="skip"     n 0.2, sums 0.7, missing 0.1
var ... linreg, "skip"   n 0.05, sums 0.05, missing 0.05; pass 2 as above
=======================  =============================================

For the two-pass statistics the second moments dominate the error, the
pass-1 sums only choose the shift (any shift gives the exact result; a
noisy one costs a little precision through the first-moment block).

"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from smpc.dp.accounting import PrivacyCost, _check_count
from smpc.dp.request import DPRequest
from smpc.encoding import FixedPoint
from smpc.errors import InputError
from smpc.names import Backend, Statistic, parse

if TYPE_CHECKING:
    from smpc.stats import StatSpec

__all__ = [
    "NEIGHBOURING",
    "SPLITS",
    "Block",
    "NoisePlan",
    "PassPlan",
    "clip_rows",
    "kls_tau",
    "pass2_sensitivities",
    "pass2_widths",
    "plan",
]

NEIGHBOURING = "add/remove one row"


SPLITS: dict[str, dict[int, tuple[tuple[str, float], ...]]] = {
    "count": {1: (("count", 1.0),)},
    "sum": {1: (("count", 0.1), ("sums", 0.9))},
    "mean": {1: (("count", 0.25), ("sums", 0.75))},
    "two_pass": {1: (("count", 0.10), ("sums", 0.05)), 2: (("first", 0.10), ("second", 0.75))},
    "counts": {1: (("counts", 1.0),)},
    # missing="skip": the missing-value counts are one more block of pass 1
    "count+missing": {1: (("count", 0.5), ("missing", 0.5))},
    "sum+missing": {1: (("count", 0.1), ("sums", 0.8), ("missing", 0.1))},
    "mean+missing": {1: (("count", 0.2), ("sums", 0.7), ("missing", 0.1))},
    "two_pass+missing": {1: (("count", 0.05), ("sums", 0.05), ("missing", 0.05)),
                         2: (("first", 0.10), ("second", 0.75))},
}
"""Fraction of the request's rho spent on each released block (see module notes)."""


_RELEASED = {
    "count": "number of rows",
    "sums": "column sums of the clipped rows",
    "first": "centred first moments sum(x - s) / D",
    "second": "centred second moments sum((x - s)_i (x - s)_j), i <= j, / D",
    "counts": "row count and bin counts (with the counts below / above the bins and, with "
              "missing='skip', of missing values)",
    "missing": "number of missing values of each column",
}


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

    statistic: Statistic
    backend: Backend
    parties: int
    min_honest: int
    cost: PrivacyCost
    passes: tuple[PassPlan, ...]
    bounds: tuple[tuple[float, float], ...] | None
    flood_std: float | None = None

    def __post_init__(self) -> None:
        statistic, backend = parse(Statistic, self.statistic), parse(Backend, self.backend)
        if statistic is None:
            raise InputError(f"unknown statistic {self.statistic!r}")
        if backend is None:
            raise InputError(f"unknown backend {self.backend!r}")
        object.__setattr__(self, "statistic", statistic)
        object.__setattr__(self, "backend", backend)

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
        if self.backend == Backend.CKKS and int(frac_bits) != pp.lattice_bits:
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
            "neighbouring": NEIGHBOURING, "statistic": str(self.statistic),
            "backend": str(self.backend),
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


def plan(spec: StatSpec, request: DPRequest, parties: int) -> NoisePlan:
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
    backend = parse(Backend, spec.backend)
    if backend is None:
        raise InputError(f"unknown backend {spec.backend!r}")
    cost = request.cost
    rho = cost.rho
    stat = parse(Statistic, spec.statistic)
    k = len(spec.value_columns)
    skips = spec.missing == "skip"

    if backend == Backend.SS:
        bits1, bits2 = spec.codec.frac_bits, spec.moment_codec.frac_bits
        flood = None
    else:
        from smpc import ckks

        params = ckks.release_parameters(ckks.get_preset(spec.ckks_preset))
        bits1 = bits2 = -round(math.log2(params.grid))
        flood = params.flood_std

    bounds: tuple[tuple[float, float], ...] | None = None
    if stat is not None and stat.bin_counts:
        if stat == Statistic.HISTOGRAM:
            assert spec.edges is not None  # a validated StatSpec's histogram has its edges
            bins = len(spec.edges) - 1
        else:
            bins = spec.resolution
        # bins, below, above, and with missing="skip" the missing cell: one row moves n and
        # exactly one cell per column, so the sensitivity stays sqrt(1 + k)
        per_column = bins + 2 + (1 if skips else 0)
        length = 1 + k * per_column
        sens = {"counts": math.sqrt(1 + k)}
        layout: dict[int, list[tuple[str, int]]] = {1: [("counts", length)]}
        split = SPLITS["counts"]
    else:
        bounds = request.bounds_for(spec.value_columns)
        mags = np.max(np.abs(np.asarray(bounds)), axis=1)
        first, second = pass2_sensitivities(bounds)
        sens = {"count": 1.0, "sums": float(np.sqrt(np.sum(mags**2))),
                "first": first, "second": second, "missing": math.sqrt(k)}
        extra = [("missing", k)] if skips else []
        suffix = "+missing" if skips else ""
        if stat == Statistic.COUNT:
            layout, split = {1: [("count", 1), *extra]}, SPLITS["count" + suffix]
        elif stat in (Statistic.SUM, Statistic.MEAN):
            layout = {1: [("count", 1), ("sums", k), *extra]}
            split = SPLITS[f"{stat.value}{suffix}"]
        elif stat is not None and stat.two_pass:
            layout = {1: [("count", 1), ("sums", k), *extra],
                      2: [("first", k), ("second", k * (k + 1) // 2)]}
            split = SPLITS["two_pass" + suffix]
        else:
            raise InputError(f"no differential-privacy plan for statistic {spec.statistic!r}")

    passes = []
    for index in sorted(layout):
        fractions = dict(split[index])
        blocks, start = [], 0
        for name, size in layout[index]:
            blocks.append(Block(name, start, size, sens[name], rho * fractions[name],
                                integral=name in ("count", "counts", "missing")))
            start += size
        passes.append(PassPlan(index, start, tuple(blocks), bits1 if index == 1 else bits2))
    result = NoisePlan(stat, backend, parties, m, cost, tuple(passes), bounds, flood)
    for pp in result.passes:  # fail early on an unusable budget / lattice
        result.lattice_sigmas(pp.index)
    return result
