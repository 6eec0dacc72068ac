"""CKKS on TenSEAL: parameter presets, keys, packing, ciphertext math, release.

Who holds what
==============

* The **key holder** (the recipient of a result) owns a :class:`KeyHolder`: the
  TenSEAL context with the secret key.  It hands everyone else
  :meth:`KeyHolder.public_context` -- public key, relinearisation keys only if
  the preset multiplies ciphertexts, Galois keys only if the protocol rotates --
  and never the secret key.
* **Everyone else** loads that with :func:`load_context` and can encrypt
  (:func:`encrypt_public`), add (:func:`add_ciphertexts`), compute plaintext
  linear combinations (:func:`linear_combination`) and the encrypted sigmoid
  (:func:`sigmoid_poly3`).  None of these reveals anything about the encrypted
  values to whoever runs them (IND-CPA of CKKS under RLWE, 128-bit parameters).
* Decrypted values leave the key holder only through :meth:`KeyHolder.release`,
  which floods the CKKS error with CSPRNG noise and rounds: raw CKKS decryptions
  leak the encryption error and with it the secret key (Li & Micciancio,
  "On the security of homomorphic encryption on approximate numbers",
  EUROCRYPT 2021, eprint 2020/1533).

What crosses the API
====================

Ciphertexts cross the API as ``bytes`` (the runtime ships them between nodes),
one ``bytes`` per ciphertext; a vector longer than the preset's slot count is
a ``list`` of several, in order.  Each is an *envelope*::

    b"SMCK\\x01" | params id (8 bytes) | key id (16 bytes) | TenSEAL CKKSVector proto

The params id names the encryption parameters (the preset) and the key id the
public key, both hashes of public data, so a ciphertext from another preset or
another key holder is refused with an :class:`~smpc.errors.InputError` instead
of decrypting to garbage (a bare TenSEAL ciphertext of the same parameters but
another key *loads* without complaint and decrypts to ~1e31).  The envelope
reveals which public key a ciphertext is under -- public metadata anyway.

Measured precision (max abs error vs numpy)
===========================================

Measured with this module (x86-64, 2 cores, TenSEAL 0.3.18, numpy 2.4), full
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

Sizes and timings (same machine, default threads)
=================================================

=================================  ==========  ==========  ===========
..                                 aggregate   sigmoid     long
=================================  ==========  ==========  ===========
public context (public key only)   0.46 MB     0.53 MB     1.12 MB
as sent (relin iff preset.relin)   0.46 MB     2.64 MB     5.59 MB
+ Galois keys                      35.3 MB     53.4 MB     122.3 MB
Galois key generation              0.2 s       0.4 s       1.3 s
fresh ciphertext (envelope)        332 kB      433 kB      856 kB
after linear_combination           235 kB      331 kB      658 kB
encrypt 1 ct, symmetric (sym)      4.3 ms      5.2 ms      15.6 ms
encrypt 1 ct, public key (pub)     6.4 ms      7.7 ms      20.1 ms
decrypt 1 ct                       1.9 ms      2.5 ms      5.4 ms
linear_combination, 30 columns     30.7 ms     36.4 ms     80.2 ms
same, rescale after each product   45.8 ms     56.6 ms     135.1 ms
sigmoid_poly3, 1 ct                --          12.7 ms     29.5 ms
=================================  ==========  ==========  ===========

Encryption times include serialisation; without it the symmetric / public-key
encryption of one N=8192 ciphertext takes 2.9 / 5.6 ms.  TenSEAL serialises
symmetric ciphertexts in full (not SEAL's seeded half-size form), so the
symmetric ones are not smaller -- just ~1.5-2x faster and with ~10x less fresh
noise.  linear_combination times include deserialising the 30 column
ciphertexts (~25 ms at N=8192, ~90 ms at N=16384, single thread); the
arithmetic alone, single thread: 11.1 ms rescaling once vs 33.6 ms with
TenSEAL's per-product rescale at N=8192, 30.4 vs 97.2 ms at N=16384.

Rescaling in TenSEAL (what was found)
=====================================

TenSEAL 0.3.18 has no Python-level ``rescale``: with ``context.auto_rescale``
on (the default) every ``mul``/``mul_plain`` is followed by
``rescale_to_next`` and the ciphertext's scale is then *overwritten* with the
nominal scale Delta, although the true scale is Delta^2 / q_l (q_l the prime
dropped).  Because SEAL's primes are only close to 2^40 (Delta / q_l - 1 is
1e-7 .. 4e-6 for these presets), every TenSEAL multiplication carries a
*relative* bias of that size: a 30-feature linear combination done the
plain TenSEAL way (``ct.mul(w)`` per feature, then summed) is off by 8.4e-6
at N=8192 and 8.8e-5 at N=16384 for outputs of magnitude ~60.

:func:`linear_combination` therefore (1) switches ``auto_rescale`` off, forms
the products w_j * ct_j at scale Delta^2 and adds them, (2) switches it back
on and multiplies the sum by the plaintext constant ``1/Delta`` -- which the
encoder turns into the constant polynomial 1, so the data is unchanged and the
only effect is the one rescale the flag triggers (SEAL must hold the Delta^3
label: 121 bits, below the 140+ bits of a fresh ciphertext of every preset) --
and (3) pre-multiplies the weights by q_l / Delta so that the rescale is exact
rather than biased.  Measured (30 features, one ciphertext of 4096 / 8192
slots, arithmetic only, single thread):

==========================================  =================  =================
method                                      N=8192 time / err  N=16384 time / err
==========================================  =================  =================
plain TenSEAL (rescale per product)         33.6 ms / 8.4e-6   97.2 ms / 8.8e-5
per-product rescale + q_l/Delta correction  34.6 ms / 4.1e-8   102 ms / 8.1e-8
one rescale + correction (used)             11.1 ms / 2.6e-8   30.4 ms / 5.4e-8
==========================================  =================  =================

The per-product path stays as the fallback (``rescale_once=False``, or when
the columns are too deep or at mixed levels).  Other routes looked at: the
``tenseal.sealapi`` Evaluator *can* rescale a ``CKKSVector.ciphertext()`` copy,
but TenSEAL has no way to put a ciphertext back into a vector short of
hand-writing its protobuf; ``CKKSVector.data`` exposes no rescale.
:func:`sigmoid_poly3` applies the same q_l / Delta correction to its
plaintext coefficients.

Thread safety: ``auto_rescale`` is a flag of the shared context object, so the
functions here that touch it hold a module lock; do not run other TenSEAL
arithmetic on the *same* context object concurrently from other code.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tenseal as ts
import tenseal.sealapi  # registers seal::Modulus & co. with pybind (used via contexts)

from smpc import randomness
from smpc.errors import InputError

__all__ = [
    "DEFAULT_FLOOD_BITS",
    "MAX_CIPHERTEXT_BYTES",
    "MAX_CONTEXT_BYTES",
    "PRESETS",
    "SEAL_MAX_COEFF_BITS_128",
    "SIGMOID_BOUND",
    "KeyHolder",
    "Preset",
    "ReleaseParameters",
    "add_ciphertexts",
    "ciphertext_length",
    "context_preset",
    "csprng_gaussian",
    "encrypt_public",
    "flood_ciphertexts",
    "get_preset",
    "levels_left",
    "linear_combination",
    "load_context",
    "pack_columns",
    "release_parameters",
    "sigmoid_coefficients",
    "sigmoid_poly3",
    "sum_slots",
]

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

MAX_CONTEXT_BYTES = 64 * 2**20
"""Default bound for :func:`load_context`: public contexts measure 0.46-5.6 MB;
with Galois keys 35 MB ("rotate") and 53 MB (N=8192, 5 primes); Galois keys at
N=16384 (122 MB for "long") need ``max_bytes`` raised explicitly."""

MAX_CIPHERTEXT_BYTES = 8 * 2**20
"""Per ciphertext; fresh ones measure 0.33-0.43 MB (N=8192) and 0.86 MB (N=16384)."""

DEFAULT_FLOOD_BITS = 16
"""Default flooding factor: sigma_flood = 2^16 x the error bound.

The flooding literature needs a flood about s/2 + O(1) bits above the error
bound for s bits of statistical security against key recovery from one
decryption (plus 1/2 log2 of the number of decryptions); 16 bits give
s ~ 30 at the precision cost listed in :meth:`KeyHolder.release`.
Differential-privacy noise larger than the flood replaces it (see
``dp_noise_std``)."""

SIGMOID_BOUND = 5.0
"""Default input range [-5, 5] of :func:`sigmoid_poly3`."""

_MAGIC = b"SMCK\x01"
_PARAMS_ID_BYTES = 8
_KEY_ID_BYTES = 16
_HEADER_BYTES = len(_MAGIC) + _PARAMS_ID_BYTES + _KEY_ID_BYTES

# Serialises every use of the context-wide auto_rescale flag.
_EVAL_LOCK = threading.RLock()


# ---------------------------------------------------------------------------
# presets
# ---------------------------------------------------------------------------


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


def _new_context(preset: Preset, n_threads: int | None, encryption_type: Any = None) -> ts.Context:
    kwargs: dict[str, Any] = {"coeff_mod_bit_sizes": list(preset.coeff_mod_bit_sizes)}
    if n_threads is not None:
        kwargs["n_threads"] = _check_threads(n_threads)
    if encryption_type is not None:
        kwargs["encryption_type"] = encryption_type
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, preset.poly_modulus_degree, **kwargs)
    ctx.global_scale = preset.scale
    return ctx


def _check_threads(n_threads: int) -> int:
    if isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1:
        raise InputError(f"n_threads must be a positive integer, got {n_threads!r}")
    return n_threads


# ---------------------------------------------------------------------------
# context identity
# ---------------------------------------------------------------------------


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _proto_bytes_fields(buf: bytes) -> dict[int, bytes]:
    """The length-delimited fields of one protobuf message (last one wins)."""
    out: dict[int, bytes] = {}
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _read_varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _read_varint(buf, pos)
            out[field] = buf[pos : pos + length]
            pos += length
        else:
            raise ValueError(f"unexpected wire type {wire}")
    if pos != len(buf):
        raise ValueError("truncated message")
    return out


@dataclass(frozen=True)
class _Ident:
    params_id: bytes
    key_id: bytes


_IDENT_ATTR = "_smpc_ckks_ident"


def _ident(ctx: ts.Context) -> _Ident:
    """Hashes of the encryption parameters and of the public key (cached on ctx)."""
    cached = getattr(ctx, _IDENT_ATTR, None)
    if cached is not None:
        return cached
    if not isinstance(ctx, ts.Context):
        raise InputError(f"expected a TenSEAL context, got {type(ctx).__name__}")
    try:
        raw = ctx.serialize(
            save_public_key=True,
            save_secret_key=False,
            save_galois_keys=False,
            save_relin_keys=False,
        )
        top = _proto_bytes_fields(raw)
        params = top[1]
        public_key = _proto_bytes_fields(top[2])[1]
    except (KeyError, ValueError, RuntimeError) as exc:
        raise InputError(
            "this TenSEAL context has no public key (symmetric-only contexts cannot be used "
            "here); use KeyHolder.context or a context from load_context"
        ) from exc
    ident = _Ident(
        params_id=hashlib.sha256(b"smpc/ckks/params/v1" + params).digest()[:_PARAMS_ID_BYTES],
        key_id=hashlib.sha256(b"smpc/ckks/key/v1" + params + public_key).digest()[:_KEY_ID_BYTES],
    )
    setattr(ctx, _IDENT_ATTR, ident)
    return ident


def _context_shape(ctx: ts.Context) -> tuple[int, tuple[int, ...]]:
    parms = ctx.seal_context().data.key_context_data().parms()
    return parms.poly_modulus_degree(), tuple(m.bit_count() for m in parms.coeff_modulus())


def context_preset(ctx: ts.Context) -> Preset:
    """The preset whose parameters ``ctx`` uses (rotation aside).

    Raises :class:`InputError` for a context that matches no preset.
    """
    n, bits = _context_shape(ctx)
    for p in PRESETS.values():
        if (
            p.poly_modulus_degree == n
            and p.coeff_mod_bit_sizes == bits
            and ctx.global_scale == p.scale
        ):
            return p
    raise InputError(
        f"this CKKS context (N={n}, coefficient moduli {list(bits)} bits, scale "
        f"{ctx.global_scale}) matches none of the presets {sorted(PRESETS)}"
    )


# ---------------------------------------------------------------------------
# ciphertext envelopes
# ---------------------------------------------------------------------------


def _wrap(ident: _Ident, vec: ts.CKKSVector) -> bytes:
    return _MAGIC + ident.params_id + ident.key_id + vec.serialize()


def _unwrap(ctx: ts.Context, data: bytes, what: str = "ciphertext") -> ts.CKKSVector:
    """Deserialize one envelope under ``ctx``; every malformation -> InputError."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InputError(f"{what} must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_CIPHERTEXT_BYTES:
        raise InputError(f"{what} is {len(data)} bytes, over the {MAX_CIPHERTEXT_BYTES}-byte limit")
    if len(data) <= _HEADER_BYTES or not data.startswith(_MAGIC):
        raise InputError(f"{what} is not an smpc CKKS ciphertext (bad header)")
    ident = _ident(ctx)
    params_id = data[len(_MAGIC) : len(_MAGIC) + _PARAMS_ID_BYTES]
    key_id = data[len(_MAGIC) + _PARAMS_ID_BYTES : _HEADER_BYTES]
    if params_id != ident.params_id:
        raise InputError(
            f"{what} was made under other CKKS parameters (another preset) than this context"
        )
    if key_id != ident.key_id:
        raise InputError(
            f"{what} is encrypted under another public key than this context's "
            f"(key id {key_id.hex()} != {ident.key_id.hex()}): another key holder's ciphertext"
        )
    try:
        vec = ts.ckks_vector_from(ctx, data[_HEADER_BYTES:])
        n_ct = len(vec.ciphertext())
        size = vec.size()
    except (ValueError, RuntimeError, TypeError) as exc:
        raise InputError(f"{what} is malformed: TenSEAL could not load it ({exc})") from None
    slots = ctx.seal_context().data.key_context_data().parms().poly_modulus_degree() // 2
    if n_ct != 1 or not 1 <= size <= slots:
        raise InputError(f"{what} is malformed: {n_ct} ciphertexts, {size} values")
    return vec


def _unwrap_list(ctx: ts.Context, cts: Sequence[bytes], what: str) -> list[ts.CKKSVector]:
    if isinstance(cts, bytes | bytearray | memoryview) or not isinstance(cts, Sequence):
        raise InputError(f"{what} must be a list of ciphertexts (bytes)")
    if len(cts) == 0:
        raise InputError(f"{what} is empty")
    return [_unwrap(ctx, c, f"{what}[{i}]") for i, c in enumerate(cts)]


def ciphertext_length(ctx: ts.Context, cts: Sequence[bytes]) -> int:
    """Number of values carried by the chunked ciphertext list ``cts``."""
    return sum(v.size() for v in _unwrap_list(ctx, cts, "ciphertexts"))


def levels_left(ctx: ts.Context, ct: bytes) -> int:
    """How many more rescales the ciphertext ``ct`` can take."""
    return _level(ctx, _unwrap(ctx, ct))


def _level(ctx: ts.Context, vec: ts.CKKSVector) -> int:
    sc = ctx.seal_context().data
    return int(sc.get_context_data(vec.ciphertext()[0].parms_id()).chain_index())


def _last_prime_ratio(ctx: ts.Context, vec: ts.CKKSVector) -> float:
    """q_l / Delta for the prime the next rescale of ``vec`` drops."""
    sc = ctx.seal_context().data
    cd = sc.get_context_data(vec.ciphertext()[0].parms_id())
    return cd.parms().coeff_modulus()[-1].value() / ctx.global_scale


# ---------------------------------------------------------------------------
# values
# ---------------------------------------------------------------------------


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


def encrypt_public(ctx: ts.Context, values: np.ndarray) -> list[bytes]:
    """Encrypt ``values`` under the public key of ``ctx`` (any party can).

    Returns ceil(len / slots) ciphertexts, slot-packed in order.  Reveals
    nothing about ``values`` except their length to anyone without the secret
    key.  ``ctx`` may be public (from :func:`load_context`) or private.
    """
    arr = _as_vector(values)
    _check_magnitude(ctx, arr, "values")
    ident = _ident(ctx)
    return [
        _wrap(ident, ts.ckks_vector(ctx, chunk.tolist())) for chunk in _chunks(arr, _slots(ctx))
    ]


def add_ciphertexts(ctx: ts.Context, batches: Sequence[Sequence[bytes]]) -> list[bytes]:
    """Elementwise sum of several parties' encrypted vectors (the aggregator's job).

    ``batches[i]`` is party i's chunked ciphertext list; all must have the same
    chunk count and sizes.  The aggregator learns nothing but the lengths.  The
    CKKS error of the sum is the sum of the errors (see ``err_sum5``).
    """
    if not isinstance(batches, Sequence) or len(batches) == 0:
        raise InputError("add_ciphertexts needs at least one batch of ciphertexts")
    vecs = [_unwrap_list(ctx, b, f"batch[{i}]") for i, b in enumerate(batches)]
    shape = [v.size() for v in vecs[0]]
    for i, vs in enumerate(vecs[1:], start=1):
        if [v.size() for v in vs] != shape:
            raise InputError(
                f"batch[{i}] has chunk sizes {[v.size() for v in vs]}, batch[0] has {shape}"
            )
    ident = _ident(ctx)
    out = []
    for k in range(len(shape)):
        acc = vecs[0][k]
        for vs in vecs[1:]:
            acc.add_(vs[k])
        out.append(_wrap(ident, acc))
    return out


def flood_ciphertexts(ctx: ts.Context, cts: Sequence[bytes], std: float) -> list[bytes]:
    """Add a fresh public-key encryption of CSPRNG Gaussian noise of ``std``.

    For an evaluator that returns a result to the key holder and wants the
    CKKS error of its computation (which depends on its private inputs, e.g.
    a model's weights) hidden: the decryption becomes value + e + eta with
    eta ~ N(0, std^2) drawn here (:func:`csprng_gaussian`) and the ciphertext
    is re-randomised by the fresh encryption.  Size ``std`` like the release
    flood, e.g. 2^DEFAULT_FLOOD_BITS x ``preset.release_error_bound``.  The
    key holder's :meth:`KeyHolder.release` may then pass ``dp_noise_std=std``
    only if it trusts that the evaluator really added it.
    """
    try:
        sd = float(std)
    except (TypeError, ValueError):
        raise InputError(f"std must be a number, got {std!r}") from None
    if not (math.isfinite(sd) and sd > 0):
        raise InputError("std must be a positive finite number")
    vecs = _unwrap_list(ctx, cts, "ciphertexts")
    ident = _ident(ctx)
    out = []
    for v in vecs:
        noise = ts.ckks_vector(ctx, (sd * csprng_gaussian(v.size())).tolist())
        v.add_(noise)
        out.append(_wrap(ident, v))
    return out


def pack_columns(key_holder_or_ctx: KeyHolder | ts.Context, X: np.ndarray) -> list[list[bytes]]:
    """Column packing: one chunked ciphertext list per feature (column of ``X``).

    ``X`` is (samples, features); column j becomes ceil(samples / slots)
    ciphertexts with the samples across the slots.  With a :class:`KeyHolder`
    the key holder's symmetric encryption is used, with a context the public
    key.  This is the layout :func:`linear_combination` consumes: no rotations.
    """
    try:
        mat = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"X must be numeric: {exc}") from None
    if mat.ndim != 2 or mat.shape[0] == 0 or mat.shape[1] == 0:
        raise InputError(f"X must be a non-empty 2-D array (samples, features), got {mat.shape}")
    if isinstance(key_holder_or_ctx, KeyHolder):
        return [key_holder_or_ctx.encrypt(mat[:, j]) for j in range(mat.shape[1])]
    return [encrypt_public(key_holder_or_ctx, mat[:, j]) for j in range(mat.shape[1])]


def _encodes_to_zero(x: float, scale: float) -> bool:
    return abs(x) * scale < 0.5


def linear_combination(
    ctx: ts.Context,
    columns: Sequence[Sequence[bytes]],
    weights: np.ndarray,
    bias: float,
    *,
    rescale_once: bool = True,
) -> list[bytes]:
    """Encrypted ``sum_j weights[j] * columns[j] + bias`` with plaintext weights.

    ``columns`` is the output of :func:`pack_columns` (one chunked list per
    feature); the result is chunked the same way.  No rotations, no Galois
    keys, one multiplicative level used.  Whoever runs it (the model owner)
    learns nothing about the features; the key holder later learns only the
    outputs (the weights stay hidden up to what the outputs reveal).

    Error: about sum_j |w_j| times the column errors plus one rescale rounding
    (see ``err_linear30``).  |result| must stay below
    ``preset.max_abs_value(1)`` (2^59 for the 8192 presets).  Weights with
    |w| * Delta < 0.5 (|w| < 4.5e-13) encode to zero and are skipped.

    ``rescale_once`` (default): products at scale Delta^2, summed, one exact
    rescale (module docstring: 3x faster arithmetic than TenSEAL's rescale per
    product, and 300x-1600x smaller error thanks to the q_l / Delta
    correction); it falls back to one corrected rescale per product when the
    columns are too deep for the Delta^3 intermediate or at mixed levels.
    """
    if not isinstance(columns, Sequence) or len(columns) == 0:
        raise InputError("linear_combination needs at least one feature column")
    w = _as_vector(weights, "weights")
    if w.size != len(columns):
        raise InputError(f"{w.size} weights for {len(columns)} feature columns")
    try:
        b = float(bias)
    except (TypeError, ValueError):
        raise InputError(f"bias must be a number, got {bias!r}") from None
    if not math.isfinite(b):
        raise InputError("bias must be finite")
    cols = [_unwrap_list(ctx, c, f"columns[{j}]") for j, c in enumerate(columns)]
    shape = [v.size() for v in cols[0]]
    for j, c in enumerate(cols[1:], start=1):
        if [v.size() for v in c] != shape:
            raise InputError(f"columns[{j}] has chunk sizes {[v.size() for v in c]}, not {shape}")
    for j, c in enumerate(cols):
        if any(_level(ctx, v) < 1 for v in c):
            raise InputError(f"columns[{j}] has no multiplicative level left")
    scale = ctx.global_scale
    active = [j for j in range(w.size) if not _encodes_to_zero(float(w[j]), scale)]
    ident = _ident(ctx)
    if not active:  # every weight is (numerically) zero: the result is the bias
        return encrypt_public(ctx, np.full(sum(shape), b))

    out: list[bytes] = []
    with _EVAL_LOCK:
        flags = (ctx.auto_rescale, ctx.auto_mod_switch, ctx.auto_relin)
        try:
            ctx.auto_mod_switch = True
            for k in range(len(shape)):
                chunk = [cols[j][k] for j in active]
                if rescale_once and _fits_delta_cubed(ctx, chunk):
                    acc = _lincomb_once(ctx, chunk, w[active])
                else:
                    acc = _lincomb_each(ctx, chunk, w[active])
                if b != 0.0:
                    acc.add_(b)
                out.append(_wrap(ident, acc))
        finally:
            ctx.auto_rescale, ctx.auto_mod_switch, ctx.auto_relin = flags
    return out


def _fits_delta_cubed(ctx: ts.Context, chunk: list[ts.CKKSVector]) -> bool:
    """Can SEAL hold the Delta^3 label of the rescale trick at this level?

    Needs every ciphertext at the same level (one q_l for the correction)
    and 3 * scale_bits + 1 below the modulus bits left at that level.
    """
    level = _level(ctx, chunk[0])
    if any(_level(ctx, v) != level for v in chunk):
        return False
    bits = _context_shape(ctx)[1]
    return 3 * math.log2(ctx.global_scale) + 1 < sum(bits[: level + 1])


def _lincomb_once(ctx: ts.Context, chunk: list[ts.CKKSVector], w: np.ndarray) -> ts.CKKSVector:
    # Products at scale Delta^2 (no rescale), summed, then one rescale.  The
    # weights are pre-multiplied by q_l / Delta so the rescale is exact.
    ratio = _last_prime_ratio(ctx, chunk[0])
    ctx.auto_rescale = False
    acc = chunk[0].mul(float(w[0]) * ratio)
    for v, wj in zip(chunk[1:], w[1:], strict=True):
        acc.add_(v.mul(float(wj) * ratio))
    ctx.auto_rescale = True
    # 1/Delta at scale Delta encodes to the constant polynomial 1: the data is
    # unchanged, the label becomes Delta^3 and the flag rescales once; TenSEAL
    # then relabels the result Delta, which the ratio above makes true.
    acc.mul_(1.0 / ctx.global_scale)
    return acc


def _lincomb_each(ctx: ts.Context, chunk: list[ts.CKKSVector], w: np.ndarray) -> ts.CKKSVector:
    # Reference path: one rescale per product (TenSEAL's default behaviour),
    # with the same q_l / Delta correction per product.
    ctx.auto_rescale = True
    ratio = _last_prime_ratio(ctx, chunk[0])
    acc = chunk[0].mul(float(w[0]) * ratio)
    for v, wj in zip(chunk[1:], w[1:], strict=True):
        acc.add_(v.mul(float(wj) * _last_prime_ratio(ctx, v)))
    return acc


def sum_slots(ctx: ts.Context, cts: Sequence[bytes]) -> list[bytes]:
    """Encrypted total of all values of a chunked vector: one ciphertext, one value.

    Needs Galois keys (the "rotate" preset, or ``KeyHolder(galois=True)``) and
    one multiplicative level: after the rotate-and-add the sum sits in slot 0
    and partial sums in the other slots, so the result is multiplied by the
    one-hot plaintext (1, 0, ..., 0) -- the key holder then learns the total
    and nothing else (the other slots decrypt to noise).  Error: the summed
    CKKS errors plus one rescale rounding.
    """
    vecs = _unwrap_list(ctx, cts, "ciphertexts")
    if not ctx.has_galois_keys():
        raise InputError(
            "sum_slots rotates and needs Galois keys; this context has none "
            "(use the 'rotate' preset or KeyHolder(..., galois=True))"
        )
    for i, v in enumerate(vecs):
        if _level(ctx, v) < 1:
            raise InputError(f"ciphertexts[{i}] has no multiplicative level left for the mask")
    with _EVAL_LOCK:
        flags = (ctx.auto_rescale, ctx.auto_mod_switch, ctx.auto_relin)
        try:
            ctx.auto_rescale = ctx.auto_mod_switch = True
            total = vecs[0].sum()
            for v in vecs[1:]:
                total.add_(v.sum())
            # The vector form of mul_plain encodes [ratio] in slot 0 and zeros
            # elsewhere: the mask, with the q_l / Delta rescale correction.
            total.mul_([_last_prime_ratio(ctx, total)])
        finally:
            ctx.auto_rescale, ctx.auto_mod_switch, ctx.auto_relin = flags
    return [_wrap(_ident(ctx), total)]


# ---------------------------------------------------------------------------
# sigmoid
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# contexts
# ---------------------------------------------------------------------------


def load_context(
    data: bytes,
    *,
    n_threads: int | None = None,
    max_bytes: int = MAX_CONTEXT_BYTES,
    allow_secret_key: bool = False,
) -> ts.Context:
    """Load a serialized (public) context sent by a key holder.

    Refuses, with an :class:`InputError`: more than ``max_bytes`` bytes,
    bytes TenSEAL cannot parse, a non-CKKS context, parameters outside SEAL's
    128-bit limits or matching no preset, and -- unless ``allow_secret_key`` --
    a context that carries a secret key (a public context must not).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InputError(f"a CKKS context must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_bytes:
        raise InputError(
            f"CKKS context is {len(data)} bytes, over the {max_bytes}-byte limit "
            "(Galois keys at N=16384 need max_bytes raised explicitly)"
        )
    if not data:
        raise InputError("CKKS context is empty")
    try:
        if n_threads is None:
            ctx = ts.context_from(data)
        else:
            ctx = ts.context_from(data, n_threads=_check_threads(n_threads))
        n, bits = _context_shape(ctx)
        scheme = ctx.seal_context().data.key_context_data().parms().scheme()
        secret = ctx.has_secret_key()
    except (ValueError, RuntimeError, TypeError) as exc:
        raise InputError(f"not a valid TenSEAL context: {exc}") from None
    if "CKKS" not in str(scheme):
        raise InputError(f"context uses scheme {scheme}, not CKKS")
    if n not in SEAL_MAX_COEFF_BITS_128 or sum(bits) > SEAL_MAX_COEFF_BITS_128[n]:
        raise InputError(f"context parameters N={n}, {sum(bits)} bits exceed 128-bit security")
    if secret and not allow_secret_key:
        raise InputError(
            "this CKKS context carries a secret key; a public context must not "
            "(the key holder should send KeyHolder.public_context())"
        )
    context_preset(ctx)
    return ctx


# ---------------------------------------------------------------------------
# release: noise flooding
# ---------------------------------------------------------------------------


def csprng_gaussian(count: int) -> np.ndarray:
    """``count`` standard normal samples from the CSPRNG (Box-Muller).

    Uniforms: 53-bit floats in (0, 1] from :func:`smpc.randomness.random_ring`
    (AES-CTR keystream keyed from ``os.urandom``).  Tails are cut at
    sqrt(2 ln 2^53) ~ 8.6 standard deviations.  Float artefacts of the sampler
    (Mironov 2012) are removed by the rounding in :meth:`KeyHolder.release`.
    """
    if count < 0:
        raise InputError("count must be non-negative")
    pairs = (count + 1) // 2
    raw = randomness.random_ring(2 * pairs) >> np.uint64(11)
    u = (raw.astype(np.float64) + 1.0) * 2.0**-53  # (0, 1]
    u1, u2 = u[:pairs], u[pairs:]
    r = np.sqrt(-2.0 * np.log(u1))
    theta = 2.0 * np.pi * u2
    return np.concatenate([r * np.cos(theta), r * np.sin(theta)])[:count]


@dataclass(frozen=True)
class ReleaseParameters:
    """What :meth:`KeyHolder.release` does: flood std, grid, and whether it floods."""

    error_bound: float
    flood_std: float
    grid: float
    flooded: bool

    @property
    def output_std(self) -> float:
        """Std of released - decrypted: flood plus uniform rounding on the grid.

        (When DP noise replaces the flood, the DP noise is not counted here.)
        """
        return math.sqrt((self.flood_std if self.flooded else 0.0) ** 2 + self.grid**2 / 12)


def release_parameters(
    preset: Preset,
    *,
    error_bound: float | None = None,
    flood_bits: int = DEFAULT_FLOOD_BITS,
    dp_noise_std: float | None = None,
) -> ReleaseParameters:
    """The flood std and rounding grid :meth:`KeyHolder.release` uses.

    sigma_flood = 2^flood_bits * E, E = ``error_bound`` or the preset's
    ``release_error_bound``; grid = the power of two at or above sigma_flood
    (so the grid is coarser than the noise and the output is a multiple of a
    power of two).  If ``dp_noise_std`` >= sigma_flood the flood is skipped.
    """
    e = preset.release_error_bound if error_bound is None else float(error_bound)
    if not (math.isfinite(e) and e > 0):
        raise InputError("error_bound must be a positive finite number")
    if isinstance(flood_bits, bool) or not isinstance(flood_bits, int) or not 0 <= flood_bits <= 40:
        raise InputError("flood_bits must be an integer in [0, 40]")
    sigma = e * 2.0**flood_bits
    grid = 2.0 ** math.ceil(math.log2(sigma))
    flooded = True
    if dp_noise_std is not None:
        dp = float(dp_noise_std)
        if not (math.isfinite(dp) and dp >= 0):
            raise InputError("dp_noise_std must be a non-negative finite number")
        flooded = dp < sigma
    return ReleaseParameters(error_bound=e, flood_std=sigma, grid=grid, flooded=flooded)


# ---------------------------------------------------------------------------
# key holder
# ---------------------------------------------------------------------------


class KeyHolder:
    """The CKKS secret key and everything that needs it.

    ``preset``: a :class:`Preset` or its name.  ``galois``: also generate
    Galois keys (forced on for rotating presets; measured 0.2-0.4 s and
    35-53 MB at N=8192, 1.3 s and 122 MB for "long" at N=16384 -- the size,
    not the time, is the cost).  ``n_threads``: TenSEAL's thread count
    for this context (None: TenSEAL's default, all cores).

    The key holder's own encryption (:meth:`encrypt`) is *symmetric* (secret
    key): measured 2x faster than public-key encryption and with ~10x less
    fresh noise, same ciphertext size (TenSEAL serialises the full ciphertext,
    not SEAL's seeded half-size form).  A second TenSEAL context with the same
    secret key in symmetric mode does that; if it cannot be built the public
    key is used instead (``encryption_mode`` says which).
    """

    def __init__(
        self,
        preset: Preset | str,
        *,
        galois: bool = False,
        n_threads: int | None = None,
    ) -> None:
        self.preset: Preset = get_preset(preset)
        self.galois: bool = bool(galois or self.preset.rotates)
        self._n_threads = n_threads
        self.context: ts.Context = _new_context(self.preset, n_threads)
        if self.galois:
            self.context.generate_galois_keys()
        self._ident = _ident(self.context)
        self._sym: ts.Context | None = self._symmetric_twin()
        self.encryption_mode: str = "symmetric" if self._sym is not None else "asymmetric"

    def _symmetric_twin(self) -> ts.Context | None:
        # A context proto with encryption_type = SYMMETRIC (field 4 = 1,
        # appended: protobuf keeps the last value) and only the secret key.
        secret = self.context.serialize(
            save_public_key=False,
            save_secret_key=True,
            save_galois_keys=False,
            save_relin_keys=False,
        )
        try:
            if self._n_threads is None:
                sym = ts.context_from(secret + b"\x20\x01")
            else:
                sym = ts.context_from(secret + b"\x20\x01", n_threads=self._n_threads)
            probe = np.array([1.5, -2.25])
            vec = ts.ckks_vector_from(self.context, ts.ckks_vector(sym, probe.tolist()).serialize())
            ok = np.allclose(vec.decrypt(), probe, atol=1e-6)
        except (ValueError, RuntimeError, TypeError):
            return None
        finally:
            del secret
        return sym if ok else None

    @property
    def key_id(self) -> str:
        """Hex id of the public key (what the ciphertext envelopes carry)."""
        return self._ident.key_id.hex()

    def public_context(self) -> bytes:
        """The context others need, serialized: never the secret key.

        Public key always; relinearisation keys only if the preset multiplies
        ciphertexts (``preset.relin``); Galois keys only if this key holder has
        them (``galois=True`` or a rotating preset).  Sizes: see module notes.
        """
        return self.context.serialize(
            save_public_key=True,
            save_secret_key=False,
            save_galois_keys=self.galois,
            save_relin_keys=self.preset.relin,
        )

    def encrypt(self, values: np.ndarray) -> list[bytes]:
        """Encrypt ``values`` (1-D) with the key holder's own (symmetric) key.

        ceil(len / slots) ciphertexts, indistinguishable from public-key ones
        to everyone else and usable with the public context.
        """
        arr = _as_vector(values)
        _check_magnitude(self.context, arr, "values")
        ctx = self._sym if self._sym is not None else self.context
        return [
            _wrap(self._ident, ts.ckks_vector(ctx, chunk.tolist()))
            for chunk in _chunks(arr, self.preset.slots)
        ]

    def decrypt(self, ciphertexts: Sequence[bytes], length: int) -> np.ndarray:
        """Raw decryption of a chunked ciphertext list of ``length`` values.

        The output carries the CKKS error, which is a function of the secret
        key: it must stay inside the key holder.  Only :meth:`release` output
        may leave.  A length that does not match the ciphertexts is an
        :class:`InputError`.
        """
        if isinstance(length, bool) or not isinstance(length, int | np.integer) or length < 1:
            raise InputError(f"length must be a positive integer, got {length!r}")
        vecs = _unwrap_list(self.context, ciphertexts, "ciphertexts")
        total = sum(v.size() for v in vecs)
        if total != int(length):
            raise InputError(f"the ciphertexts carry {total} values, not the {length} expected")
        return np.concatenate([np.asarray(v.decrypt(), dtype=np.float64) for v in vecs])

    def release_parameters(
        self,
        *,
        error_bound: float | None = None,
        flood_bits: int = DEFAULT_FLOOD_BITS,
        dp_noise_std: float | None = None,
    ) -> ReleaseParameters:
        """See :func:`release_parameters` (with this key holder's preset)."""
        return release_parameters(
            self.preset, error_bound=error_bound, flood_bits=flood_bits, dp_noise_std=dp_noise_std
        )

    def release(
        self,
        values: np.ndarray,
        *,
        error_bound: float | None = None,
        flood_bits: int = DEFAULT_FLOOD_BITS,
        dp_noise_std: float | None = None,
    ) -> np.ndarray:
        """Make decrypted values safe to leave the key holder: flood, then round.

        1. Flood: add Gaussian noise of std sigma = 2^flood_bits * E from the
           CSPRNG (:func:`csprng_gaussian`), E = ``error_bound`` or the
           preset's ``release_error_bound`` (a bound on the CKKS error of the
           computation that produced ``values``; pass a larger E for longer
           computations, e.g. sums of many ciphertexts or large weights).
        2. Round to the grid g = 2^ceil(log2 sigma) (sigma <= g < 2 sigma):
           the output carries no bit finer than the noise, which also erases
           the float artefacts of the sampler.

        DP rule: ``dp_noise_std`` is the std of differential-privacy noise
        added to the values *before encryption by parties other than the key
        holder* (so unknown to it).  If it is >= sigma it already floods the
        CKKS error and step 1 is skipped; step 2 always runs.

        Precision cost (defaults: flood_bits = 16, E = ``release_error_bound``;
        E and sigma are powers of two, so g = sigma and the released value
        minus the decrypted one has std sqrt(sigma^2 + g^2/12) = 1.04 sigma):

        ===============  =======  ===============  ==========  ================
        preset           E        sigma = g        output std  99.9% within +-
        ===============  =======  ===============  ==========  ================
        aggregate/rotate 2^-23    2^-7 = 0.0078    0.0081      0.030
        sigmoid, long    2^-21    2^-5 = 0.0313    0.0325      0.118
        ===============  =======  ===============  ==========  ================

        i.e. about 6-7 orders of magnitude above the raw CKKS error (1e-8),
        fine for aggregates and logits, visible for small means.  Lower
        ``flood_bits`` trades key privacy for precision, 2 fewer bits = 4x
        less noise.

        What is revealed: the values to within that noise.  About the secret
        key: two CKKS error vectors e, e' (each |.| <= E) give released
        distributions within total variation sqrt(n) * 2^-flood_bits for n
        values (Gaussian with std sigma shifted by <= 2E sqrt(n) in L2) --
        2^-10 for 4096 values; against key *recovery* (the Li-Micciancio
        attack solves for the key from the exact error) flooding analyses need
        about s/2 + 1 bits of flood for s bits of security per decryption, so
        16 bits give ~30.  Rounding is post-processing and loses nothing of
        this.  If the true error exceeds E (a computation bigger than the
        preset's measured ones), pass ``error_bound`` (see
        :meth:`Preset.error_bound`), or the guarantee shrinks accordingly.
        """
        arr = _as_vector(values)
        params = self.release_parameters(
            error_bound=error_bound, flood_bits=flood_bits, dp_noise_std=dp_noise_std
        )
        out = arr.copy()
        if params.flooded:
            out += params.flood_std * csprng_gaussian(arr.size)
        return np.round(out / params.grid) * params.grid

    def decrypt_and_release(
        self, ciphertexts: Sequence[bytes], length: int, **release_kwargs: Any
    ) -> np.ndarray:
        """:meth:`decrypt` then :meth:`release` (the usual way out)."""
        return self.release(self.decrypt(ciphertexts, length), **release_kwargs)
