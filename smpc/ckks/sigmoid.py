"""The encrypted sigmoid: a degree-3 least-squares polynomial, evaluated on ciphertexts.

Guarantees: :func:`sigmoid_poly3` stays within the stated approximation error of the sigmoid on
``[-bound, bound]`` plus the preset's measured CKKS error (``err_sigmoid_ckks``); it refuses
contexts without relinearisation keys and ciphertexts without two levels left.  Inputs outside
the range give meaningless outputs (the caller must know its logit range).  Reveals nothing
about the logits to whoever runs it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import tenseal as ts

from smpc.ckks.envelope import _ident, _last_prime_ratio, _level, _unwrap_list, _wrap
from smpc.ckks.ops import _EVAL_LOCK
from smpc.errors import InputError

__all__ = ["SIGMOID_BOUND", "sigmoid_coefficients", "sigmoid_poly3"]

SIGMOID_BOUND = 5.0
"""Default input range [-5, 5] of :func:`sigmoid_poly3`."""


_SIGMOID_CACHE: dict[float, tuple[float, float, float, float]] = {}


def sigmoid_coefficients(bound: float = SIGMOID_BOUND) -> tuple[float, float, float, float]:
    """(c0, c1, c2, c3): the degree-3 least-squares fit of the sigmoid on [-bound, bound].

    Continuous L2 fit (Legendre projection on a 200001-point grid); c0 = 1/2
    and c2 = 0 exactly by the odd symmetry of sigmoid(x) - 1/2.  Max errors on
    the range: 0.0608 for bound 5 (c1 = 0.19833, c3 = -0.0044735), 0.1143 for
    bound 8 (c1 = 0.15012, c3 = -0.0015930), 0.0383 for bound 4.  Outside the
    range the cubic diverges (it is not a sigmoid any more).
    """
    try:
        key = float(bound)
    except (TypeError, ValueError):
        raise InputError(f"bound must be a number, got {bound!r}") from None
    if not (math.isfinite(key) and 0.5 <= key <= 64):
        raise InputError("sigmoid bound must be in [0.5, 64]")
    if key not in _SIGMOID_CACHE:
        from numpy.polynomial import legendre

        x = np.linspace(-key, key, 200001)
        y = 1.0 / (1.0 + np.exp(-x))
        poly = legendre.leg2poly(legendre.legfit(x / key, y, 3)) / key ** np.arange(4)
        _SIGMOID_CACHE[key] = (0.5, float(poly[1]), 0.0, float(poly[3]))
    return _SIGMOID_CACHE[key]


def sigmoid_poly3(
    ctx: ts.Context, logits_cts: Sequence[bytes], *, bound: float = SIGMOID_BOUND
) -> list[bytes]:
    """Encrypted c0 + c1 x + c3 x^3 ~ sigmoid(x) on [-bound, bound], elementwise.

    Depth 2 (x^2 and c3*x in parallel, then their product), so logits straight
    from :func:`linear_combination` need 3 levels in all: the "sigmoid" or
    "long" preset; the public context must carry relinearisation keys.
    Approximation error (max over the range): 0.0608 for bound 5, 0.1143 for
    bound 8 (:func:`sigmoid_coefficients`); the CKKS error on top is
    ``err_sigmoid_ckks`` of the preset (measured <= 2.1e-7).  Inputs outside the
    range give meaningless outputs (the caller must know its logit range).
    Whoever runs it learns nothing about the logits.
    """
    c0, c1, _, c3 = sigmoid_coefficients(bound)
    vecs = _unwrap_list(ctx, logits_cts, "logits")
    if not ctx.has_relin_keys():
        raise InputError(
            "sigmoid_poly3 multiplies ciphertexts and needs relinearisation keys; "
            "this context has none (use the 'sigmoid' preset's public context)"
        )
    for i, v in enumerate(vecs):
        if _level(ctx, v) < 2:
            raise InputError(
                f"logits[{i}] has {_level(ctx, v)} multiplicative levels left; the degree-3 "
                "sigmoid needs 2 (use the 'sigmoid' or 'long' preset)"
            )
    ident = _ident(ctx)
    out: list[bytes] = []
    with _EVAL_LOCK:
        flags = (ctx.auto_rescale, ctx.auto_mod_switch, ctx.auto_relin)
        try:
            ctx.auto_rescale = ctx.auto_mod_switch = ctx.auto_relin = True
            for x in vecs:
                # r_l = q_l / Delta of the prime each rescale drops; TenSEAL
                # relabels every rescaled result Delta, so x^2 comes out as
                # x^2 / r1 and a product at the next level picks up 1 / r2.
                r1 = _last_prime_ratio(ctx, x)
                x2 = x.square()  # x^2 / r1, level l-1
                r2 = _last_prime_ratio(ctx, x2)
                a = x.mul(c3 * r1 * r1 * r2)  # c3 x r1 r2, level l-1
                cube = a.mul(x2)  # c3 x^3 r1 r2 / (r1 r2) = c3 x^3, level l-2
                lin = x.mul(c1 * r1)  # c1 x, level l-1 (mod-switched on add)
                cube.add_(lin)
                cube.add_(c0)
                out.append(_wrap(ident, cube))
        finally:
            ctx.auto_rescale, ctx.auto_mod_switch, ctx.auto_relin = flags
    return out
