"""Signed fixed-point numbers over the ring Z_2^64.

A real number ``x`` is represented by the ring element ``round(x * 2**f) mod 2**64``
stored in a numpy ``uint64`` (numpy's wrap-around *is* the reduction mod 2^64).
Decoding reads the element as a two's-complement ``int64`` and divides by ``2**f``.

Range and precision, with ``f`` fractional bits (16 by default):

* resolution (one unit in the last place): ``2**-f`` (1.5e-5 for f=16); encoding
  rounds to nearest, so the encoding error is at most ``2**-(f+1)``;
* representable magnitude: ``|x| < 2**(63 - f)`` (1.4e14 for f=16).

A product of two encoded values carries ``2f`` fractional bits until it is
truncated, so it needs ``|x * y| < 2**(63 - 2f)`` (2.1e9 for f=16).
:meth:`FixedPoint.encode` accepts a ``headroom`` argument so that a caller who
will add up ``k`` encoded vectors can insist on ``|x| < 2**(63 - f) / k`` and
the later sum can never wrap: every plaintext is range-checked *before* it is
encoded, and an out-of-range value is an :class:`EncodingRangeError` naming the
value and the bound -- never a silent wrap-around.

Nothing here is secret-dependent control flow beyond the range check, which by
design reveals to the *local* caller whether its own input is in range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from smpc.errors import InputError

RING_BITS = 64
DEFAULT_FRAC_BITS = 16


class EncodingRangeError(InputError):
    """A plaintext cannot be represented in the fixed-point ring without wrapping.

    The message names the offending value, so that a person can fix their own input; it never
    leaves a party as it is (``parties.node.redact``).  ``public``, when given, is the same
    problem without the value: a fixed sentence with at most public parameters (a declared
    bound, the fractional bits), which a party may send.
    """

    def __init__(self, message: str, public: str | None = None) -> None:
        super().__init__(message)
        self.public = public


@dataclass(frozen=True)
class FixedPoint:
    """Fixed-point codec with ``frac_bits`` fractional bits over Z_2^64.

    Guarantees: ``decode(encode(x)) == x`` up to ``2**-(frac_bits+1)`` for every
    accepted ``x``; ``encode`` raises rather than wraps.
    """

    frac_bits: int = DEFAULT_FRAC_BITS

    def __post_init__(self) -> None:
        if isinstance(self.frac_bits, bool) or not isinstance(self.frac_bits, int | np.integer):
            raise InputError(f"frac_bits must be a whole number, got {self.frac_bits!r}")
        if not 0 <= self.frac_bits <= 30:
            raise InputError(
                f"frac_bits must be between 0 and 30 (got {self.frac_bits}); "
                "products need 2*frac_bits < 63"
            )

    @property
    def scale(self) -> int:
        """The integer ``2**frac_bits`` that a real number is multiplied by."""
        return 1 << self.frac_bits

    @property
    def resolution(self) -> float:
        """The smallest positive representable step, ``2**-frac_bits``."""
        return 2.0**-self.frac_bits

    def max_abs(self, headroom: float = 1.0, frac_bits: int | None = None) -> float:
        """Largest magnitude accepted by :meth:`encode` with this ``headroom``.

        ``frac_bits`` overrides the codec's own (used for values that carry
        ``2f`` fractional bits, such as untruncated products).
        """
        bits = self.frac_bits if frac_bits is None else frac_bits
        return 2.0 ** (RING_BITS - 1 - bits) / headroom

    def check_range(
        self, values: np.ndarray, headroom: float = 1.0, what: str = "value",
        frac_bits: int | None = None,
    ) -> None:
        """Raise :class:`EncodingRangeError` unless every value is finite and in range.

        The message names the first offending value and the bound, so that a
        person can tell which input to fix.
        """
        arr = np.asarray(values, dtype=np.float64)
        if arr.size == 0:
            return
        finite = np.isfinite(arr)
        if not finite.all():
            bad = arr[~finite].flat[0]
            raise EncodingRangeError(f"{what} {bad!r} is not a finite number")
        bound = self.max_abs(headroom, frac_bits)
        magnitude = np.abs(arr)
        worst = int(np.argmax(magnitude))
        if magnitude.flat[worst] >= bound:
            raise EncodingRangeError(
                f"{what} {arr.flat[worst]:.6g} is outside the fixed-point range: "
                f"|{what}| must be below {bound:.6g} "
                f"({self.frac_bits} fractional bits over Z_2^64"
                + (f", headroom for {headroom:g} terms" if headroom != 1.0 else "")
                + ")"
            )

    def encode(
        self, values: np.ndarray | float, headroom: float = 1.0, what: str = "value",
        frac_bits: int | None = None,
    ) -> np.ndarray:
        """Encode real numbers as ring elements (``uint64``), after a range check.

        ``frac_bits`` overrides the codec's own (e.g. ``2f`` for a constant that
        will be added to an untruncated product).
        """
        arr = np.asarray(values, dtype=np.float64)
        self.check_range(arr, headroom, what, frac_bits)
        bits = self.frac_bits if frac_bits is None else frac_bits
        scaled = np.asarray(np.rint(arr * float(1 << bits)), dtype=np.int64)
        return scaled.view(np.uint64)

    def decode(self, ring: np.ndarray, frac_bits: int | None = None) -> np.ndarray:
        """Decode ring elements to float64, reading them as signed two's complement.

        ``frac_bits`` overrides the codec's own, for values that carry ``2f``
        fractional bits (untruncated products).
        """
        bits = self.frac_bits if frac_bits is None else frac_bits
        arr = np.asarray(ring, dtype=np.uint64)
        return arr.view(np.int64).astype(np.float64) / float(1 << bits)

    def encode_int(self, values: np.ndarray, what: str = "value") -> np.ndarray:
        """Encode integers exactly with zero fractional bits (counts, histogram bins)."""
        arr = np.asarray(values)
        if arr.dtype.kind == "f":
            if not np.isfinite(arr).all() or not np.all(arr == np.rint(arr)):
                raise EncodingRangeError(f"{what} must be whole numbers")
            arr = arr.astype(np.int64)
        return arr.astype(np.int64).view(np.uint64)

    @staticmethod
    def decode_int(ring: np.ndarray) -> np.ndarray:
        """Decode ring elements as signed 64-bit integers."""
        return np.asarray(ring, dtype=np.uint64).view(np.int64).copy()
