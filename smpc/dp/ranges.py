"""The fixed-point range under DP, decided on public quantities only.

Guarantees: :func:`check_pass_range` refuses (an :class:`~smpc.encoding.EncodingRangeError`
whose message names no value) exactly when some table of at most ``row_cap`` rows, clipped to
the public bounds, plus a noise share within :data:`TAIL_SIGMAS` of its scale, could fall
outside the ``ss`` ring's range for one pass, or its noise share exceed what the sampler draws
(:data:`~smpc.dp.noise.MAX_SHARE_UNITS`).  It reads only the public plan (bounds, the
pass's sensitivities and sigmas, the number of parties, the fixed-point bits), the public
pass-2 shift and divisor, and ``row_cap`` -- never the rows.  When it accepts, the encoding's
own range checks (:meth:`~smpc.encoding.FixedPoint.encode` and
:func:`~smpc.dp.noise.add_ring_noise`) cannot fire on the clipped data, and fire on the noise
only with probability below ``2 exp(-TAIL_SIGMAS^2 / 2) < 2^-1000`` per coordinate.

Why.  Without it, an ``ss`` party's range error under DP depends on its exact aggregate: a
request whose bounds are just wide enough is refused or served depending on the rows the filter
keeps -- an exact, free bit (issue 12).  ``row_cap`` must not depend on the filter: a party
passes its table's total row count (:mod:`parties.privacy.dp_outputs`).
"""

from __future__ import annotations

import math

import numpy as np

from smpc.dp.noise import MAX_SHARE_UNITS
from smpc.dp.planning import NoisePlan, pass2_widths
from smpc.encoding import RING_BITS, EncodingRangeError
from smpc.errors import InputError
from smpc.names import Backend

__all__ = ["TAIL_SIGMAS", "check_pass_range", "pass_bounds"]

TAIL_SIGMAS = 40.0
"""Noise-share tail assumed by the range check: ``P(|Z| > 40 sigma) < 2 exp(-800)``."""


def pass_bounds(plan: NoisePlan, pass_index: int, row_cap: int, *, divisor: float = 1.0,
                shift: np.ndarray | None = None) -> np.ndarray:
    """Largest magnitude of each coordinate of one party's local aggregate, in real units,
    over every table of at most ``row_cap`` rows clipped to the plan's bounds.

    Pass 1: counts (bin counts, missing counts) at most ``row_cap``; the sum of column ``j`` at most
    ``row_cap * max(|lo_j|, |hi_j|)``.  Pass 2 (divided by ``divisor``): centred first
    moments ``row_cap * W_j / D``, second moments ``row_cap * W_i W_j / D``.
    """
    if isinstance(row_cap, bool) or not isinstance(row_cap, int | np.integer) or row_cap < 0:
        raise InputError(f"row_cap must be a non-negative integer, got {row_cap!r}")
    pp = plan.pass_plan(pass_index)
    out = np.empty(pp.length, dtype=np.float64)
    cap = float(row_cap)
    for block in pp.blocks:
        part = out[block.start:block.start + block.length]
        if block.name in ("count", "counts", "missing"):
            part[:] = cap
        elif block.name == "sums":
            assert plan.bounds is not None
            part[:] = cap * np.max(np.abs(np.asarray(plan.bounds)), axis=1)
        else:
            assert plan.bounds is not None
            w = pass2_widths(plan.bounds, shift)
            if block.name == "first":
                part[:] = cap * w / divisor
            else:
                part[:] = cap * np.outer(w, w)[np.triu_indices(w.size)] / divisor
    return out


def check_pass_range(plan: NoisePlan, pass_index: int, row_cap: int, *, frac_bits: int,
                     divisor: float = 1.0, shift: np.ndarray | None = None) -> None:
    """Refuse, on public quantities only, a pass whose clipped aggregate plus noise share
    could leave the ``ss`` ring's range (module notes); a no-op on ``ckks``.

    ``frac_bits``: the pass's fixed-point bits (the codec of pass 1 or the moment codec).
    """
    if plan.backend != Backend.SS:
        return
    pp = plan.pass_plan(pass_index)
    values = pass_bounds(plan, pass_index, row_cap, divisor=divisor, shift=shift)
    sigmas = plan.lattice_sigmas(pass_index, frac_bits=frac_bits, divisor=divisor, shift=shift)
    share = np.empty(pp.length, dtype=np.float64)
    for block, sigma in zip(pp.blocks, sigmas, strict=True):
        share[block.start:block.start + block.length] = sigma / math.sqrt(plan.min_honest)
    # ulps: the value (rounded: +1) and the noise share's tail; the ring holds |x| < 2^63 / P;
    # the sampler draws shares up to MAX_SHARE_UNITS lattice units
    worst = float(np.max(values * 2.0**frac_bits + 1.0 + TAIL_SIGMAS * share))
    limit = 2.0 ** (RING_BITS - 1) / plan.parties
    if not (worst < limit and float(np.max(share)) <= MAX_SHARE_UNITS):
        raise EncodingRangeError(
            f"pass {pass_index} of this {plan.statistic} request could leave the fixed-point "
            f"range ({frac_bits} fractional bits over Z_2^64, {plan.parties} parties) for a "
            "table of this party's size within the clipping bounds: tighten the bounds or "
            "lower frac_bits")
