"""Ciphertext arithmetic any party can run: encrypt, add, flood, linear combinations, slot sums.

Guarantees: every function takes and returns envelopes (:mod:`smpc.ckks.envelope`) and refuses
malformed or foreign ciphertexts with an :class:`~smpc.errors.InputError`.  Reveals nothing
about the encrypted values to whoever runs them (IND-CPA of CKKS under RLWE, 128-bit
parameters) beyond their lengths; the key holder later learns only the outputs.

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
functions that touch it (here and in :mod:`smpc.ckks.sigmoid`) hold one lock,
``_EVAL_LOCK``; do not run other TenSEAL arithmetic on the *same* context object
concurrently from other code.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence

import numpy as np
import tenseal as ts

from smpc.ckks.context import _context_shape
from smpc.ckks.envelope import (
    _ident,
    _last_prime_ratio,
    _level,
    _read_varint,
    _unwrap_list,
    _wrap,
)
from smpc.ckks.keyholder import KeyHolder
from smpc.ckks.release import csprng_gaussian
from smpc.ckks.values import _as_vector, _check_magnitude, _chunks, _slots
from smpc.errors import InputError

__all__ = [
    "LinearAccumulator",
    "add_ciphertexts",
    "encrypt_public",
    "encrypt_public_stream",
    "flood_ciphertexts",
    "linear_combination",
    "pack_columns",
    "sum_slots",
]

# Serialises every use of the context-wide auto_rescale flag.
_EVAL_LOCK = threading.RLock()


def encrypt_public(ctx: ts.Context, values: np.ndarray) -> list[bytes]:
    """Encrypt ``values`` under the public key of ``ctx`` (any party can).

    Returns ceil(len / slots) ciphertexts, slot-packed in order.  Reveals
    nothing about ``values`` except their length to anyone without the secret
    key.  ``ctx`` may be public (from :func:`load_context`) or private.
    """
    _count, cts = encrypt_public_stream(ctx, values)
    return list(cts)


def encrypt_public_stream(ctx: ts.Context, values: np.ndarray) -> tuple[int, Iterator[bytes]]:
    """:func:`encrypt_public`, one ciphertext at a time: ``(count, ciphertexts)``.

    The whole vector is validated (finite, within the context's range) before this returns;
    each ciphertext is made only when the iterator is advanced, so a sender holds one
    ciphertext at a time and can stop between two (a cancelled session).
    """
    arr = _as_vector(values)
    _check_magnitude(ctx, arr, "values")
    ident = _ident(ctx)
    chunks = _chunks(arr, _slots(ctx))
    return len(chunks), (_wrap(ident, ts.ckks_vector(ctx, chunk.tolist())) for chunk in chunks)


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
    """Add a fresh public-key encryption of CSPRNG Gaussian noise of ``std``, independent in
    every slot (:func:`_slot_noise`).

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
        v.add_(_slot_noise(ctx, v, sd))
        out.append(_wrap(ident, v))
    return out


def _slot_noise(ctx: ts.Context, v: ts.CKKSVector, sd: float) -> ts.CKKSVector:
    """A fresh encryption of independent noise in *every* slot, as a vector of ``v``'s size.

    TenSEAL encodes a vector of ``n`` values replicated across all slots (slot ``k`` holds
    value ``k mod n``), and a noise vector of size ``n`` with it: the key holder, who can
    decrypt every slot, would find each replica of a value with the *same* noise -- their
    differences carrying the evaluation's CKKS error unflooded, and ciphertexts crafted with
    other values in those slots yielding noise-free differences.  So the noise is encrypted
    as a full-slot vector and relabelled with ``v``'s size: the ``sizes`` field (1) of
    TenSEAL's ``CKKSVectorProto`` rewritten, the ciphertext untouched.
    """
    full = ts.ckks_vector(ctx, (sd * csprng_gaussian(_slots(ctx))).tolist())
    return ts.ckks_vector_from(ctx, _with_size(full.serialize(), v.size()))


def _varint(x: int) -> bytes:
    out = bytearray()
    while True:
        b, x = x & 0x7F, x >> 7
        out.append(b | (0x80 if x else 0))
        if not x:
            return bytes(out)


def _with_size(proto: bytes, size: int) -> bytes:
    """A serialized ``CKKSVectorProto`` with its ``sizes`` (field 1) replaced by ``[size]``
    and every other field kept byte for byte."""
    kept = bytearray()
    i = 0
    while i < len(proto):
        start = i
        key, i = _read_varint(proto, i)
        wire = key & 7
        if wire == 0:
            _, i = _read_varint(proto, i)
        elif wire == 1:
            i += 8
        elif wire == 2:
            length, i = _read_varint(proto, i)
            i += length
        else:  # the message has varint, double and bytes fields only
            raise InputError("unexpected field in a serialized CKKS vector")
        if key >> 3 != 1:
            kept += proto[start:i]
    packed = _varint(size)
    return b"\x0a" + _varint(len(packed)) + packed + bytes(kept)


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
    columns are too deep for the Delta^3 intermediate or at mixed levels, and
    uses that (as cheap as TenSEAL's own ``mul``) when one weight is active.
    The same as :class:`LinearAccumulator` fed every column.
    """
    if not isinstance(columns, Sequence) or len(columns) == 0:
        raise InputError("linear_combination needs at least one feature column")
    acc = LinearAccumulator(ctx, weights, bias, rescale_once=rescale_once)
    if acc.n_columns != len(columns):
        raise InputError(f"{acc.n_columns} weights for {len(columns)} feature columns")
    for column in columns:
        acc.add(column)
    return acc.finish()


class LinearAccumulator:
    """:func:`linear_combination` one column at a time, in order: ``add(column_j)`` for
    ``j = 0 .. len(weights) - 1`` as the columns arrive, then :meth:`finish`.

    Each column is checked when added (the checks of :func:`linear_combination`: envelopes
    under ``ctx``, the chunk sizes of column 0, a multiplicative level left) and its products
    ``w_j * ct_j`` (scale Delta^2, no rescale) are added to the running sums at once, so the
    evaluator's work overlaps the sender's encryption of the next columns.  The result is
    the same ciphertext arithmetic as :func:`linear_combination`, in the same order; it
    reveals nothing more to whoever runs it.
    """

    def __init__(self, ctx: ts.Context, weights: np.ndarray, bias: float, *,
                 rescale_once: bool = True) -> None:
        w = _as_vector(weights, "weights")
        try:
            b = float(bias)
        except (TypeError, ValueError):
            raise InputError(f"bias must be a number, got {bias!r}") from None
        if not math.isfinite(b):
            raise InputError("bias must be finite")
        self.ctx, self.weights, self.bias = ctx, w, b
        self.n_columns = int(w.size)
        self._active = [not _encodes_to_zero(float(wj), ctx.global_scale) for wj in w]
        self._ident = _ident(ctx)
        self._shape: list[int] = []
        self._chunks: list[list[ts.CKKSVector]] = []   # per chunk k: the active columns' k-th
        self._weights: list[float] = []               # the active columns' weights
        self._sums: list[ts.CKKSVector | None] = []   # per chunk: Delta^2 sum, None: fallback
        self._once = sum(self._active) > 1 and rescale_once
        self._count = 0

    def add(self, column: Sequence[bytes]) -> None:
        """Add the next column (the chunked ciphertext list of feature ``j``)."""
        j = self._count
        if j >= self.n_columns:
            raise InputError(f"{self.n_columns} weights for more feature columns")
        vecs = _unwrap_list(self.ctx, column, f"columns[{j}]")
        shape = [v.size() for v in vecs]
        if j == 0:
            self._shape = shape
            self._chunks = [[] for _ in shape]
            self._sums = [None] * len(shape)
        elif shape != self._shape:
            raise InputError(f"columns[{j}] has chunk sizes {shape}, not {self._shape}")
        if any(_level(self.ctx, v) < 1 for v in vecs):
            raise InputError(f"columns[{j}] has no multiplicative level left")
        self._count = j + 1
        if not self._active[j]:
            return
        wj = float(self.weights[j])
        self._weights.append(wj)
        for k, v in enumerate(vecs):
            first = len(self._chunks[k]) == 0
            self._chunks[k].append(v)
            if not self._once or (not first and self._sums[k] is None):
                continue
            if first and not _fits_delta_cubed(self.ctx, [v]):
                continue
            if not first and _level(self.ctx, v) != _level(self.ctx, self._chunks[k][0]):
                self._sums[k] = None  # mixed levels: the per-product path at finish
                continue
            with _EVAL_LOCK:
                flags = (self.ctx.auto_rescale, self.ctx.auto_mod_switch, self.ctx.auto_relin)
                try:
                    self.ctx.auto_mod_switch = True
                    self.ctx.auto_rescale = False
                    product = v.mul(wj * _last_prime_ratio(self.ctx, v))
                    total = self._sums[k]
                    if total is None:
                        self._sums[k] = product
                    else:
                        total.add_(product)
                finally:
                    self.ctx.auto_rescale, self.ctx.auto_mod_switch, self.ctx.auto_relin = flags

    def finish(self) -> list[bytes]:
        """The encrypted ``sum_j w_j column_j + bias``, chunked like the columns (every
        column must have been added)."""
        if self._count != self.n_columns:
            raise InputError(f"{self.n_columns} weights for {self._count} feature columns")
        ctx = self.ctx
        if not self._weights:  # every weight is (numerically) zero: the result is the bias
            return encrypt_public(ctx, np.full(sum(self._shape), self.bias))
        out: list[bytes] = []
        with _EVAL_LOCK:
            flags = (ctx.auto_rescale, ctx.auto_mod_switch, ctx.auto_relin)
            try:
                ctx.auto_mod_switch = True
                for k, chunk in enumerate(self._chunks):
                    total = self._sums[k]
                    if total is not None and len(chunk) == len(self._weights):
                        ctx.auto_rescale = True
                        # 1/Delta at scale Delta encodes to the constant polynomial 1: the data
                        # is unchanged, the label becomes Delta^3 and the flag rescales once;
                        # TenSEAL then relabels the result Delta, which the ratio makes true.
                        total.mul_(1.0 / ctx.global_scale)
                        acc = total
                    else:
                        acc = _lincomb_each(ctx, chunk, np.asarray(self._weights))
                    if self.bias != 0.0:
                        acc.add_(self.bias)
                    out.append(_wrap(self._ident, acc))
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
