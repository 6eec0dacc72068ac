"""TenSEAL contexts: building a key holder's, loading a public one, naming its preset.

Guarantees: :func:`load_context` accepts only a CKKS context within SEAL's 128-bit limits
whose parameters match a preset, below a size bound, and -- unless asked otherwise -- without
a secret key; every other input is an :class:`~smpc.errors.InputError`, never a TenSEAL
crash.  Reveals: nothing; a public context carries public keys only.
"""

from __future__ import annotations

from typing import Any

import tenseal as ts
import tenseal.sealapi  # registers seal::Modulus & co. with pybind (used via contexts)

from smpc.ckks.presets import PRESETS, SEAL_MAX_COEFF_BITS_128, Preset
from smpc.errors import InputError

__all__ = ["MAX_CONTEXT_BYTES", "context_preset", "load_context"]

MAX_CONTEXT_BYTES = 64 * 2**20
"""Default bound for :func:`load_context`: public contexts measure 0.46-5.6 MB;
with Galois keys 35 MB ("rotate") and 53 MB (N=8192, 5 primes); Galois keys at
N=16384 (122 MB for "long") need ``max_bytes`` raised explicitly."""


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
    128-bit limits or matching no preset, without a public key, and -- unless
    ``allow_secret_key`` -- a context that carries a secret key (a public context must not).
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
        public = ctx.has_public_key()
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
    if not public:  # TenSEAL crashes the process on first use of such a context
        raise InputError("this CKKS context has no public key; nothing can be encrypted under it")
    context_preset(ctx)
    return ctx
