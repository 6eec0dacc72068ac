"""Post-processing of released noisy values (free: it only reads released values).

Guarantees: every function here reads only values that were already released with their noise
(and public plan data), so by the post-processing property of DP it costs no privacy budget.
Reveals nothing beyond its input.
"""

from __future__ import annotations

import numpy as np

from smpc.dp.planning import NoisePlan
from smpc.errors import InputError
from smpc.names import Statistic

__all__ = ["postprocess_covariance", "postprocess_pass1", "postprocess_shift"]


def postprocess_pass1(plan: NoisePlan, summed: np.ndarray, ddof: int = 1) -> np.ndarray:
    """Make a noisy pass-1 sum usable; costs no privacy.

    * ``count``: rounded, at least 0;
    * sum / mean / two-pass statistics: the count (a divisor) at least 1
      (at least ``ddof + 1`` for the two-pass ones);
    * histogram / quantiles: every count rounded and at least 0.
    """
    out = np.array(summed, dtype=np.float64, copy=True)
    if plan.statistic == Statistic.COUNT:
        out[0] = max(round(out[0]), 0)
    elif plan.statistic.bin_counts:
        out = np.clip(np.rint(out), 0, None)
    else:
        floor = ddof + 1 if plan.statistic.two_pass else 1
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
