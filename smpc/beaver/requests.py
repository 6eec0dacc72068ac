"""Public descriptions of the dealer's correlated randomness, and the product bound.

Guarantees: a :class:`TripleRequest` or :class:`TruncRequest` that exists is consistent (shapes
that multiply, ``f <= l <= 62``, enough spare pairs for the expected rejections);
:func:`check_product_range` refuses, before encoding, a plaintext whose products could exceed the
declared bound ``|z| < 2^l`` -- the bound the dealer truncation's correctness and privacy rest on
(:mod:`smpc.beaver.online`).  Reveals nothing: requests are public and the same at every party.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from smpc.encoding import DEFAULT_FRAC_BITS, RING_BITS, EncodingRangeError, FixedPoint
from smpc.errors import InputError

__all__ = [
    "DEFAULT_CHECKS",
    "DEFAULT_PRODUCT_INT_BITS",
    "MAX_BOUND_BITS",
    "Request",
    "TripleRequest",
    "TruncRequest",
    "check_bound_bits",
    "check_product_range",
    "default_bound_bits",
    "product_limit",
]

TripleKind = Literal["mul", "dot", "matmul"]

#: Rows of the random linear check of a dealt matmul triple (:mod:`smpc.beaver.checking`): a
#: wrong triple passes with probability at most ``2^-DEFAULT_CHECKS``.
DEFAULT_CHECKS = 40
_MAX_CHECKS = 128

#: Largest product bound ``l``: the rejection rate ``2^(l+1-64)`` is then 1/2.
MAX_BOUND_BITS = RING_BITS - 2
#: Default bound: real products below ``2^20`` (but ``l`` at most 56).
DEFAULT_PRODUCT_INT_BITS = 20
_DEFAULT_BOUND_CAP = 56


def _shape(value: Sequence[int] | int) -> tuple[int, ...]:
    shape = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    out = tuple(int(s) for s in shape)
    if any(s < 0 for s in out):
        raise InputError(f"negative dimension in shape {out}")
    return out


def _matmul_shape(x_shape: tuple[int, ...], y_shape: tuple[int, ...]) -> tuple[int, ...]:
    if not (1 <= len(x_shape) <= 2 and 1 <= len(y_shape) <= 2):
        raise InputError(f"matmul needs 1-D or 2-D operands, got shapes {x_shape} and {y_shape}")
    if x_shape[-1] != y_shape[0]:
        raise InputError(f"matmul inner dimensions differ: {x_shape} @ {y_shape}")
    return x_shape[:-1] + y_shape[1:]


@dataclass(frozen=True)
class TripleRequest:
    """Public description of one Beaver triple ``(a, b, c = a (*) b)``.

    ``kind`` is ``"mul"`` (elementwise, ``x_shape == y_shape``), ``"dot"``
    (``x_shape == y_shape == (..., d)``, ``c`` of shape ``(...)``: batched inner
    products over the last axis) or ``"matmul"`` (``x`` of shape ``(m, k)`` or
    ``(k,)``, ``y`` of shape ``(k, p)`` or ``(k,)``; numpy matmul shapes).
    Build with :meth:`mul`, :meth:`dot` or :meth:`matmul`.

    ``checks`` (matmul only; 0 = unchecked): the parties check the dealt triple with that many
    rows of a random linear check before :func:`~smpc.beaver.receive` returns it, so that a
    wrong correction from the dealer fails loudly (probability of passing at most
    ``2^-checks``) instead of making a wrong product -- see :mod:`smpc.beaver.checking`.  Use
    :data:`DEFAULT_CHECKS`.
    """

    kind: TripleKind
    x_shape: tuple[int, ...]
    y_shape: tuple[int, ...]
    checks: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "x_shape", _shape(self.x_shape))
        object.__setattr__(self, "y_shape", _shape(self.y_shape))
        if isinstance(self.checks, bool) or not isinstance(self.checks, (int, np.integer)) \
                or not 0 <= self.checks <= _MAX_CHECKS:
            raise InputError(f"checks must be a whole number from 0 to {_MAX_CHECKS}, "
                             f"got {self.checks!r}")
        object.__setattr__(self, "checks", int(self.checks))
        if self.checks and self.kind != "matmul":
            raise InputError(f"only matmul triples can be checked, not {self.kind!r} triples")
        if self.kind in ("mul", "dot"):
            if self.x_shape != self.y_shape:
                raise InputError(
                    f"{self.kind} operands must have equal shapes, got "
                    f"{self.x_shape} and {self.y_shape}"
                )
            if self.kind == "dot" and not self.x_shape:
                raise InputError("dot operands need at least one axis")
        elif self.kind == "matmul":
            _matmul_shape(self.x_shape, self.y_shape)
        else:
            raise InputError(f"unknown triple kind {self.kind!r}")

    @classmethod
    def mul(cls, shape: Sequence[int] | int) -> TripleRequest:
        """Triple for an elementwise product of two arrays of ``shape``."""
        return cls("mul", _shape(shape), _shape(shape))

    @classmethod
    def dot(cls, shape: Sequence[int] | int) -> TripleRequest:
        """Triple for inner products over the last axis of two arrays of ``shape``."""
        return cls("dot", _shape(shape), _shape(shape))

    @classmethod
    def matmul(cls, x_shape: Sequence[int] | int, y_shape: Sequence[int] | int, *,
               checks: int = 0) -> TripleRequest:
        """Triple for ``X @ Y`` with ``X`` of ``x_shape`` and ``Y`` of ``y_shape``
        (checked with ``checks`` rows, see the class docstring)."""
        return cls("matmul", _shape(x_shape), _shape(y_shape), checks)

    @property
    def z_shape(self) -> tuple[int, ...]:
        """Shape of the product ``c`` (and of the product of the inputs)."""
        if self.kind == "mul":
            return self.x_shape
        if self.kind == "dot":
            return self.x_shape[:-1]
        return _matmul_shape(self.x_shape, self.y_shape)

    @property
    def check_dims(self) -> tuple[int, int, int]:
        """``(m, k, p)``: a matmul's operands as an ``m x k`` and a ``k x p`` matrix."""
        return (_size(self.x_shape[:-1]), self.x_shape[-1], _size(self.y_shape[1:]))

    def combine(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """The bilinear map of this triple on ring arrays (wraps mod 2^64)."""
        return _OPS[self.kind](u, v)


def _op_mul(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.multiply(u, v, dtype=np.uint64)


def _op_dot(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.asarray(np.multiply(u, v, dtype=np.uint64).sum(axis=-1, dtype=np.uint64))


def _op_matmul(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.asarray(np.matmul(u, v, dtype=np.uint64))


_OPS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "mul": _op_mul,
    "dot": _op_dot,
    "matmul": _op_matmul,
}


def check_bound_bits(frac_bits: int, bound_bits: int) -> None:
    """Raise :class:`InputError` unless ``frac_bits <= bound_bits <= 62``.

    ``l >= f`` makes ``2^(l-f)`` an integer; ``l <= 62`` keeps the rejection
    rate ``2^(l+1-64)`` at most 1/2.
    """
    if not 0 <= frac_bits <= 30:
        raise InputError(f"frac_bits must be between 0 and 30, got {frac_bits}")
    if not frac_bits <= bound_bits <= MAX_BOUND_BITS:
        raise InputError(
            f"product bound bits l={bound_bits} must satisfy f={frac_bits} <= l <= "
            f"{MAX_BOUND_BITS} (|product| < 2^l as a {2 * frac_bits}-fractional-bit integer)"
        )


def default_bound_bits(fp: FixedPoint | int = DEFAULT_FRAC_BITS) -> int:
    """Default product bound ``l = min(2f + 20, 56)`` (at least ``f``).

    For ``f = 16``: ``l = 52``, real products (and dot products) below
    ``2^20 ~ 1.05e6``, rejection rate ``2^-11`` per element.
    """
    f = fp.frac_bits if isinstance(fp, FixedPoint) else int(fp)
    return max(f, min(2 * f + DEFAULT_PRODUCT_INT_BITS, _DEFAULT_BOUND_CAP))


def product_limit(fp: FixedPoint, bound_bits: int | None = None) -> float:
    """Largest real ``|x * y|`` (or ``|x . y|``) the dealer truncation accepts: ``2^(l-2f)``."""
    l_bits = default_bound_bits(fp) if bound_bits is None else bound_bits
    check_bound_bits(fp.frac_bits, l_bits)
    return 2.0 ** (l_bits - 2 * fp.frac_bits)


def check_product_range(
    fp: FixedPoint,
    values: np.ndarray | float,
    other_max_abs: float,
    *,
    axis: int | None = None,
    bound_bits: int | None = None,
    what: str = "value",
) -> None:
    """Check a plaintext factor against the declared product bound, before encoding.

    A party that holds plaintext ``values`` (for instance model weights) and
    knows a public bound ``other_max_abs`` on the magnitude of the other
    factor (for instance the feature range in the policy) checks that every
    product -- or, with ``axis``, every inner product along that axis --
    satisfies ``|z| < 2^l`` once encoded, encoding rounding included.  Raises
    :class:`~smpc.encoding.EncodingRangeError` naming the worst value and the
    limit.  Reveals nothing beyond the local caller's own data.
    """
    arr = np.abs(np.asarray(values, dtype=np.float64))
    if not np.isfinite(arr).all() or not math.isfinite(other_max_abs):
        raise EncodingRangeError(f"{what} and its bound must be finite numbers")
    limit = product_limit(fp, bound_bits)
    ulp = fp.resolution
    worst = (arr + ulp) * (abs(other_max_abs) + ulp)
    if axis is not None:
        worst = worst.sum(axis=axis)
    if worst.size and float(np.max(worst)) >= limit:
        raise EncodingRangeError(
            f"{what}: a product may reach {float(np.max(worst)):.6g} (other factor up to "
            f"{other_max_abs:.6g}), outside the truncation bound {limit:.6g} "
            f"(2^(l-2f) with l={default_bound_bits(fp) if bound_bits is None else bound_bits}, "
            f"f={fp.frac_bits})"
        )


@dataclass(frozen=True)
class TruncRequest:
    """Public description of ``count`` dealer truncation pairs ``([r], [r >> f])``.

    ``bound_bits`` (``l``) is the declared bound ``|z| < 2^l`` on the integer
    products to truncate (default :func:`default_bound_bits`); ``spares`` is
    the number of extra pairs for rejected elements (default
    ``ceil(4 * expected) + 16`` with ``expected = count * p / (1 - p)`` and
    ``p = 2^(l+1-64)`` the rejection rate).  ``count`` (an int, or a shape
    whose size is taken) must equal the number of elements truncated.
    """

    count: int
    frac_bits: int = DEFAULT_FRAC_BITS
    bound_bits: int | None = None
    spares: int | None = None

    def __post_init__(self) -> None:
        count = int(np.prod(self.count)) if isinstance(self.count, tuple) else int(self.count)
        if count < 0:
            raise InputError("count must be non-negative")
        object.__setattr__(self, "count", count)
        l_bits = default_bound_bits(self.frac_bits) if self.bound_bits is None else self.bound_bits
        check_bound_bits(self.frac_bits, int(l_bits))
        object.__setattr__(self, "bound_bits", int(l_bits))
        if self.spares is None:
            p = self.rejection_probability
            spares = math.ceil(4 * count * p / (1 - p)) + 16
        else:
            spares = int(self.spares)
            if spares < 0:
                raise InputError("spares must be non-negative")
        object.__setattr__(self, "spares", spares)

    @property
    def l_bits(self) -> int:
        """The product bound ``l`` (``|z| < 2^l``)."""
        assert self.bound_bits is not None
        return self.bound_bits

    @property
    def total(self) -> int:
        """Pairs dealt: ``count + spares``."""
        assert self.spares is not None
        return self.count + self.spares

    @property
    def rejection_probability(self) -> float:
        """Probability ``2^(l+1-64)`` that one opening is rejected (independent of data)."""
        return 2.0 ** (self.l_bits + 1 - RING_BITS)


Request = TripleRequest | TruncRequest


def _size(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape)) if shape else 1
