"""The key holder: the CKKS secret key and everything that needs it.

Guarantees: the secret key never leaves a :class:`KeyHolder` --
:meth:`KeyHolder.public_context` serializes without it, and decrypted values leave only
through :meth:`KeyHolder.release`, which floods the CKKS error with CSPRNG noise and rounds
(raw CKKS decryptions leak the error and with it the key: Li & Micciancio, EUROCRYPT 2021).
Reveals: the public context (public key, relinearisation keys if the preset multiplies,
Galois keys if it rotates), and the released values to within the flood's noise.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import tenseal as ts

from smpc.ckks.context import _new_context
from smpc.ckks.envelope import _Ident, _ident, _unwrap_list, _wrap
from smpc.ckks.presets import Preset, get_preset
from smpc.ckks.release import (
    DEFAULT_FLOOD_BITS,
    ReleaseParameters,
    csprng_gaussian,
    release_parameters,
)
from smpc.ckks.values import _as_vector, _check_magnitude, _chunks
from smpc.errors import InputError

__all__ = ["KeyHolder"]

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
        # the key id is hashed from the first public_context() (made for every key sent) or,
        # before one, from a serialization of the public key alone: one serialization, not two
        # the symmetric twin is built at the first encrypt: a key holder that only decrypts
        # (an analyst's key for a ckks statistic) never pays for it (about half of keygen)
        self._sym: ts.Context | None = None
        self._sym_built = False
        self._sym_lock = threading.Lock()

    @property
    def encryption_mode(self) -> str:
        """``"symmetric"`` if :meth:`encrypt` uses the secret key (the twin context could be
        built), else ``"asymmetric"`` (the public key)."""
        return "symmetric" if self._symmetric() is not None else "asymmetric"

    def _symmetric(self) -> ts.Context | None:
        """The symmetric twin context, built once, on first use (thread-safe)."""
        with self._sym_lock:
            if not self._sym_built:
                self._sym = self._symmetric_twin()
                self._sym_built = True
            return self._sym

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
    def _ident(self) -> _Ident:
        return _ident(self.context)

    @property
    def key_id(self) -> str:
        """Hex id of the public key (what the ciphertext envelopes carry)."""
        return self._ident.key_id.hex()

    def public_context(self) -> bytes:
        """The context others need, serialized: never the secret key.

        Public key always; relinearisation keys only if the preset multiplies
        ciphertexts (``preset.relin``); Galois keys only if this key holder has
        them (``galois=True`` or a rotating preset).  Sizes: see :mod:`smpc.ckks`.
        """
        raw: bytes = self.context.serialize(
            save_public_key=True,
            save_secret_key=False,
            save_galois_keys=self.galois,
            save_relin_keys=self.preset.relin,
        )
        _ident(self.context, serialized=raw)  # the key id from these bytes, if not yet known
        return raw

    def encrypt(self, values: np.ndarray) -> list[bytes]:
        """Encrypt ``values`` (1-D) with the key holder's own (symmetric) key.

        ceil(len / slots) ciphertexts, indistinguishable from public-key ones
        to everyone else and usable with the public context.
        """
        arr = _as_vector(values)
        _check_magnitude(self.context, arr, "values")
        sym = self._symmetric()
        ctx = sym if sym is not None else self.context
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
