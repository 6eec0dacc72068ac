"""CKKS parameter presets, with the precision measured for each.

Guarantees: every :class:`Preset` stays within SEAL's 128-bit classical security limit on the
total coefficient modulus for its ring degree (checked when a preset is built and again at
import); :meth:`Preset.error_bound` and :meth:`Preset.max_abs_value` are conservative bounds
derived from the measurements below.  Reveals: nothing -- presets are public parameters.

Measured precision (max abs error vs numpy)
===========================================

Measured with :mod:`smpc.ckks` (x86-64, 2 cores, TenSEAL 0.3.18, numpy 2.4), full
slot vectors, max over all slots and 30 repetitions (25 for "long").  fresh: values
uniform in [-10, 10], "sym" = :meth:`KeyHolder.encrypt`, "pub" =
:func:`encrypt_public`; sum5: :func:`add_ciphertexts` of 5 public-key
encryptions of [-10, 10] values; linear30: :func:`linear_combination` of 30
public-key-encrypted columns in [-10, 10] with weights uniform in [-1, 1] and
bias 0.5 (|X w + b| up to ~60); poly3: logits X w' in [-5, 5] from a linear
combination, then :func:`sigmoid_poly3` (bound 5), against the exact cubic
(CKKS error) and against the exact sigmoid (CKKS + approximation error).

=========  =======  =======  =======  ========  ==========  ==========  ========
preset     sym      pub      sum5     linear30  poly3 CKKS  vs sigmoid  E
=========  =======  =======  =======  ========  ==========  ==========  ========
aggregate  1.0e-09  9.7e-09  2.2e-08  3.7e-08   --          --          2^-23
sigmoid    8.1e-10  1.2e-08  2.4e-08  4.0e-08   1.8e-07     0.0608      2^-21
long       1.2e-09  2.2e-08  5.2e-08  8.4e-08   2.1e-07     0.0608      2^-21
rotate     as aggregate (same parameters)                                2^-23
=========  =======  =======  =======  ========  ==========  ==========  ========

E is ``release_error_bound``, the error bound :meth:`KeyHolder.release` floods
by default (the largest measured error rounded up to a power of two, doubled).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from smpc.errors import InputError

__all__ = ["PRESETS", "SEAL_MAX_COEFF_BITS_128", "Preset", "get_preset"]

# SEAL's 128-bit classical security limits on the total coefficient modulus
# (HomomorphicEncryption.org standard, ternary secret), by ring degree N.
SEAL_MAX_COEFF_BITS_128: dict[int, int] = {
    1024: 27,
    2048: 54,
    4096: 109,
    8192: 218,
    16384: 438,
    32768: 881,
}


@dataclass(frozen=True)
class Preset:
    """CKKS parameters for one kind of protocol, with their measured precision.

    ``coeff_mod_bit_sizes`` is ``[first, data..., special]``: ``first`` holds
    the integer part at the last level, each data prime (``scale_bits`` wide)
    is consumed by one rescale, ``special`` is the key-switching prime.  The
    ``err_*`` fields are max absolute errors measured as described in the
    module docstring (None: not applicable to the preset).
    ``release_error_bound`` is the error bound E that :meth:`KeyHolder.release`
    floods by default: the largest measured error of the preset's operations
    rounded up to a power of two, then doubled.
    """

    name: str
    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    scale_bits: int
    mult_depth: int
    rotates: bool
    relin: bool
    description: str
    err_fresh_sym: float
    err_fresh_pub: float
    err_sum5: float
    err_linear30: float
    err_sigmoid_ckks: float | None
    release_error_bound: float

    def __post_init__(self) -> None:
        n = self.poly_modulus_degree
        if n not in SEAL_MAX_COEFF_BITS_128:
            raise ValueError(f"poly_modulus_degree {n} is not a supported power of two")
        total = sum(self.coeff_mod_bit_sizes)
        if total > SEAL_MAX_COEFF_BITS_128[n]:
            raise ValueError(
                f"preset {self.name!r}: {total} coefficient-modulus bits exceed SEAL's "
                f"128-bit limit of {SEAL_MAX_COEFF_BITS_128[n]} for N={n}"
            )
        if any(not 20 <= b <= 60 for b in self.coeff_mod_bit_sizes):
            raise ValueError(f"preset {self.name!r}: primes must be 20..60 bits")
        if len(self.coeff_mod_bit_sizes) != self.mult_depth + 2:
            raise ValueError(f"preset {self.name!r}: need mult_depth + 2 primes")
        if any(b != self.scale_bits for b in self.coeff_mod_bit_sizes[1:-1]):
            raise ValueError(f"preset {self.name!r}: data primes must equal scale_bits")

    @property
    def slots(self) -> int:
        """Values per ciphertext (N/2)."""
        return self.poly_modulus_degree // 2

    @property
    def scale(self) -> float:
        """The encoding scale Delta = 2^scale_bits."""
        return float(2**self.scale_bits)

    @property
    def total_coeff_bits(self) -> int:
        return sum(self.coeff_mod_bit_sizes)

    def error_bound(
        self, *, summands: int = 1, weight_l1: float = 1.0, weight_l2: float | None = None,
        sigmoid: bool = False, independent: bool = False,
    ) -> float:
        """A conservative CKKS error bound E, e.g. for :meth:`KeyHolder.release`'s flood.

        For a sum of ``summands`` ciphertexts, optionally through a linear combination with
        plaintext weights ``w`` (L1 norm ``weight_l1``) and the encrypted sigmoid.  Rounded up
        to a power of two and never below ``release_error_bound``.

        Worst case (any ciphertexts, e.g. sums of rotations)::

            E = 4 err_fresh_pub summands max(1, ||w||_1)  (+ 4 err_sigmoid_ckks summands
                                                            max(1, ||w||_1))

        ``independent=True`` -- the summands are fresh encryptions, each with its own
        randomness (a secure sum of the parties' contributions; a model applied to the
        columns a data owner encrypted): their errors are independent and zero-mean, so a
        weighted sum's error has ``||w||_2`` (``weight_l2``; by default ``weight_l1``, an
        upper bound) times one fresh error's standard deviation::

            E = 3 err_fresh_pub sqrt(summands) max(1, ||w||_2)  (+ 2 err_sigmoid_ckks summands)

        ``err_fresh_pub`` is the maximum over 30 full-slot vectors, about 4.4 standard
        deviations of the per-slot error, so 3 of it is about 13 standard deviations:
        exceeded with probability below 1e-38 per value.  The encrypted sigmoid's error was
        measured on the output of a 30-feature linear combination (which it includes); it
        is not Gaussian, so it gets the preset's own margin (the measured maximum, doubled).
        Neither form covers the weights' plaintext encoding error
        ``2^-(scale_bits+1) ||x||_1``, which depends on the data's size
        (:func:`smpc.linear.model_flood_std` adds it).
        """
        if isinstance(summands, bool) or not isinstance(summands, int) or summands < 1:
            raise InputError("summands must be a positive integer")
        if not (math.isfinite(weight_l1) and weight_l1 >= 0):
            raise InputError("weight_l1 must be a non-negative finite number")
        l2 = float(weight_l1) if weight_l2 is None else float(weight_l2)
        if not (math.isfinite(l2) and 0 <= l2 <= float(weight_l1) * (1 + 1e-12)):
            raise InputError("weight_l2 must be a finite number between 0 and weight_l1")
        if sigmoid and self.err_sigmoid_ckks is None:
            raise InputError(f"preset {self.name!r} has no depth for the encrypted sigmoid")
        if independent:
            e = 3.0 * self.err_fresh_pub * math.sqrt(summands) * max(1.0, l2)
            if sigmoid:
                e += 2.0 * float(self.err_sigmoid_ckks or 0.0) * summands
        else:
            scale = summands * max(1.0, float(weight_l1))
            e = 4.0 * self.err_fresh_pub * scale
            if sigmoid:
                e += 4.0 * float(self.err_sigmoid_ckks or 0.0) * scale
        return max(self.release_error_bound, 2.0 ** math.ceil(math.log2(e)))

    def max_abs_value(self, rescales: int = 0) -> float:
        """Largest |value| a ciphertext can carry after ``rescales`` rescalings.

        The plaintext times Delta must stay below half the remaining modulus:
        |x| < 2^(sum of remaining data-level prime bits - scale_bits - 1).
        Fresh ciphertexts and sums (no rescale) have a lot of room; after
        :func:`linear_combination` one level is gone, after
        :func:`sigmoid_poly3` two more.  Beyond ~2^53 * (absolute error) the
        float64 encoder, not CKKS, limits the precision (relative ~1e-15).
        """
        if not 0 <= rescales <= self.mult_depth:
            raise InputError(f"rescales must be 0..{self.mult_depth} for preset {self.name!r}")
        remaining = self.coeff_mod_bit_sizes[: len(self.coeff_mod_bit_sizes) - 1 - rescales]
        return float(2 ** (sum(remaining) - self.scale_bits - 1))


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="aggregate",
            poly_modulus_degree=8192,
            coeff_mod_bit_sizes=(60, 40, 40, 60),
            scale_bits=40,
            mult_depth=2,
            rotates=False,
            relin=False,
            description=(
                "Sums of encrypted aggregates and linear inference (one plaintext-scalar "
                "level used, one spare). 4096 slots, 200 of 218 bits."
            ),
            err_fresh_sym=1.0e-9,
            err_fresh_pub=9.7e-9,
            err_sum5=2.2e-8,
            err_linear30=3.7e-8,
            err_sigmoid_ckks=None,
            release_error_bound=2.0**-23,
        ),
        Preset(
            name="sigmoid",
            poly_modulus_degree=8192,
            coeff_mod_bit_sizes=(60, 40, 40, 40, 38),
            scale_bits=40,
            mult_depth=3,
            rotates=False,
            relin=True,
            description=(
                "Linear inference followed by the encrypted degree-3 sigmoid (1 + 2 levels). "
                "4096 slots, 218 of 218 bits (hence a 38-bit special prime, measured "
                "harmless); relinearisation keys in the public context."
            ),
            err_fresh_sym=8.1e-10,
            err_fresh_pub=1.2e-8,
            err_sum5=2.4e-8,
            err_linear30=4.0e-8,
            err_sigmoid_ckks=1.8e-7,
            release_error_bound=2.0**-21,
        ),
        Preset(
            name="long",
            poly_modulus_degree=16384,
            coeff_mod_bit_sizes=(60, 40, 40, 40, 60),
            scale_bits=40,
            mult_depth=3,
            rotates=False,
            relin=True,
            description=(
                "Long vectors: 8192 slots per ciphertext, depth 3 (linear + sigmoid). "
                "240 of 438 bits. Ops ~2.5-4x slower per ciphertext than N=8192, "
                "ciphertexts 2x larger per slot-count; Galois keys would be 122 MB."
            ),
            err_fresh_sym=1.2e-9,
            err_fresh_pub=2.2e-8,
            err_sum5=5.2e-8,
            err_linear30=8.4e-8,
            err_sigmoid_ckks=2.1e-7,
            release_error_bound=2.0**-21,
        ),
        Preset(
            name="rotate",
            poly_modulus_degree=8192,
            coeff_mod_bit_sizes=(60, 40, 40, 60),
            scale_bits=40,
            mult_depth=2,
            rotates=True,
            relin=False,
            description=(
                "As 'aggregate', plus Galois keys for protocols that rotate slots, e.g. "
                "sum_slots (the public context grows from 0.46 MB to 35 MB)."
            ),
            err_fresh_sym=1.0e-9,
            err_fresh_pub=9.7e-9,
            err_sum5=2.2e-8,
            err_linear30=3.7e-8,
            err_sigmoid_ckks=None,
            release_error_bound=2.0**-23,
        ),
    )
}

for _p in PRESETS.values():  # the 128-bit limits, checked at import as well
    assert _p.total_coeff_bits <= SEAL_MAX_COEFF_BITS_128[_p.poly_modulus_degree], _p.name


def get_preset(name: str | Preset) -> Preset:
    """The preset called ``name`` (a :class:`Preset` passes through)."""
    if isinstance(name, Preset):
        return name
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        valid = ", ".join(sorted(PRESETS))
        raise InputError(f"unknown CKKS preset {name!r}; valid presets: {valid}") from None
