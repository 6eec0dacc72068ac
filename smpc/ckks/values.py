"""Plaintext vectors on their way into a ciphertext: validation, range check, chunking.

Guarantees: a vector that is not finite, not 1-D, or too large for the context's modulus is
an :class:`~smpc.errors.InputError` before it is encrypted (the error names the largest
magnitude and the limit: the caller's own data).  Reveals nothing to anyone else.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import tenseal as ts

from smpc.ckks.context import _context_shape
from smpc.errors import InputError


def _as_vector(values: Any, what: str = "values") -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} must be numeric: {exc}") from None
    if arr.ndim != 1 or arr.size == 0:
        raise InputError(f"{what} must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{what} contains NaN or infinity")
    return arr


def _check_magnitude(ctx: ts.Context, arr: np.ndarray, what: str) -> None:
    bits = _context_shape(ctx)[1]
    limit = 2.0 ** (sum(bits[:-1]) - math.log2(ctx.global_scale) - 2)
    peak = float(np.max(np.abs(arr)))
    if peak >= limit:
        raise InputError(
            f"{what} has |value| {peak:.3g}, too large for this CKKS context (limit {limit:.3g})"
        )


def _chunks(arr: np.ndarray, slots: int) -> list[np.ndarray]:
    return [arr[i : i + slots] for i in range(0, arr.size, slots)]


def _slots(ctx: ts.Context) -> int:
    return _context_shape(ctx)[0] // 2
