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


The parts
=========

=====================  ==================================================================
:mod:`.presets`        :class:`Preset` parameters, their measured precision, error bounds
:mod:`.context`        building and loading TenSEAL contexts (:func:`load_context`)
:mod:`.envelope`       how a ciphertext is tagged with its preset and key, and checked
:mod:`.values`         validating and chunking plaintext vectors before encryption
:mod:`.ops`            encrypt, add, flood, :func:`linear_combination`, :func:`sum_slots`;
                       TenSEAL's rescaling and the q_l / Delta correction
:mod:`.sigmoid`        the encrypted degree-3 sigmoid
:mod:`.release`        flooding and rounding parameters, the CSPRNG Gaussian
:mod:`.keyholder`      :class:`KeyHolder`: the secret key, decryption, :meth:`KeyHolder.release`
:mod:`.keycache`       :class:`KeyCache`: key holders reused per scope, bounded uses and age
=====================  ==================================================================

Everything public is importable from :mod:`smpc.ckks` itself.

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

"""

from __future__ import annotations

from smpc.ckks.context import MAX_CONTEXT_BYTES, context_preset, load_context
from smpc.ckks.envelope import MAX_CIPHERTEXT_BYTES, ciphertext_length, levels_left
from smpc.ckks.keycache import DEFAULT_KEY_MAX_AGE, DEFAULT_KEY_MAX_USES, KeyCache
from smpc.ckks.keyholder import KeyHolder
from smpc.ckks.ops import (
    LinearAccumulator,
    add_ciphertexts,
    encrypt_public,
    encrypt_public_stream,
    flood_ciphertexts,
    linear_combination,
    pack_columns,
    sum_slots,
)
from smpc.ckks.presets import PRESETS, SEAL_MAX_COEFF_BITS_128, Preset, get_preset
from smpc.ckks.release import (
    DEFAULT_FLOOD_BITS,
    ReleaseParameters,
    csprng_gaussian,
    release_parameters,
)
from smpc.ckks.sigmoid import SIGMOID_BOUND, sigmoid_coefficients, sigmoid_poly3

__all__ = [
    "DEFAULT_FLOOD_BITS",
    "DEFAULT_KEY_MAX_AGE",
    "DEFAULT_KEY_MAX_USES",
    "MAX_CIPHERTEXT_BYTES",
    "MAX_CONTEXT_BYTES",
    "PRESETS",
    "SEAL_MAX_COEFF_BITS_128",
    "SIGMOID_BOUND",
    "KeyCache",
    "KeyHolder",
    "LinearAccumulator",
    "Preset",
    "ReleaseParameters",
    "add_ciphertexts",
    "ciphertext_length",
    "context_preset",
    "csprng_gaussian",
    "encrypt_public",
    "encrypt_public_stream",
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
