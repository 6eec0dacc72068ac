"""Ciphertext envelopes: how a ciphertext is tagged with its parameters and key, and checked.

Guarantees: :func:`_unwrap` turns every malformed, oversized, foreign-preset or foreign-key
ciphertext into an :class:`~smpc.errors.InputError` before TenSEAL could load it and decrypt it
to garbage.  Reveals: which public key (and preset) a ciphertext is under, both public.

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
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import tenseal as ts

from smpc.errors import InputError

__all__ = ["HEADER_BYTES", "MAX_CIPHERTEXT_BYTES", "ciphertext_length", "levels_left"]

MAX_CIPHERTEXT_BYTES = 8 * 2**20
"""Per ciphertext; fresh ones measure 0.33-0.43 MB (N=8192) and 0.86 MB (N=16384)."""

_MAGIC = b"SMCK\x01"
_PARAMS_ID_BYTES = 8
_KEY_ID_BYTES = 16
_HEADER_BYTES = len(_MAGIC) + _PARAMS_ID_BYTES + _KEY_ID_BYTES
HEADER_BYTES = _HEADER_BYTES
"""Bytes of the envelope header before the TenSEAL ciphertext proto."""


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
    slots: int = 0  # N / 2 of the context (looked up once: each lookup crosses pybind 4 times)


_IDENT_ATTR = "_smpc_ckks_ident"


def _ident(ctx: ts.Context, serialized: bytes | None = None) -> _Ident:
    """Hashes of the encryption parameters and of the public key (cached on ctx).

    ``serialized``: the context's own serialization with its public key, just made by its
    owner (:meth:`KeyHolder.public_context`), read instead of serializing the public key once
    more (2 ms at N=8192).  Never bytes received from elsewhere: the hash must be of the key
    the context holds, which a crafted message could disguise."""
    cached = getattr(ctx, _IDENT_ATTR, None)
    if cached is not None:
        return cached
    if not isinstance(ctx, ts.Context):
        raise InputError(f"expected a TenSEAL context, got {type(ctx).__name__}")
    no_public_key = InputError(
        "this TenSEAL context has no public key (symmetric-only contexts cannot be used "
        "here); use KeyHolder.context or a context from load_context"
    )
    if not ctx.has_public_key():  # serialize() would crash the process (TenSEAL 0.3)
        raise no_public_key
    try:
        raw = serialized if serialized is not None else ctx.serialize(
            save_public_key=True,
            save_secret_key=False,
            save_galois_keys=False,
            save_relin_keys=False,
        )
        top = _proto_bytes_fields(raw)
        params = top[1]
        public_key = _proto_bytes_fields(top[2])[1]
    except (KeyError, ValueError, RuntimeError) as exc:
        raise no_public_key from exc
    ident = _Ident(
        params_id=hashlib.sha256(b"smpc/ckks/params/v1" + params).digest()[:_PARAMS_ID_BYTES],
        key_id=hashlib.sha256(b"smpc/ckks/key/v1" + params + public_key).digest()[:_KEY_ID_BYTES],
        slots=ctx.seal_context().data.key_context_data().parms().poly_modulus_degree() // 2,
    )
    setattr(ctx, _IDENT_ATTR, ident)
    return ident


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
    if n_ct != 1 or not 1 <= size <= ident.slots:
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
