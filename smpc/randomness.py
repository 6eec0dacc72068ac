"""The one source of secret randomness in smpc.

Everything secret -- shares, masks, Beaver triples, seeds, noise -- comes from
here, and here only from:

* the operating system's CSPRNG (:func:`os.urandom` / :mod:`secrets`), for
  seeds and small values; or
* an AES-128 keystream in counter mode (``cryptography``) keyed by such a seed,
  for long vectors.  AES-CTR with a uniformly random 128-bit key is a
  pseudo-random generator under the standard assumption that AES is a
  pseudo-random permutation; its output is indistinguishable from uniform for
  far more than the 2^64 blocks any computation here draws.

``numpy.random`` and :mod:`random` are never used for anything secret (a test
scans the source tree to keep it that way).

Security assumption stated where it is relied on: a seed is used with one
``stream`` label for one purpose.  :func:`expand` derives the AES counter block
from the label, so distinct labels under the same seed give independent
streams, and the same (seed, label) always gives the same stream -- which is
exactly what seed-compressed shares rely on.
"""

from __future__ import annotations

import hashlib
import os
import sys

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

SEED_BYTES = 16


def fresh_seed() -> bytes:
    """A new 128-bit seed from the OS CSPRNG."""
    return os.urandom(SEED_BYTES)


def _counter_block(stream: str) -> bytes:
    # The first 8 bytes name the stream; the last 8 are the block counter,
    # starting at zero, so a stream has 2^64 blocks before it could repeat.
    return hashlib.sha256(b"smpc/v1/stream/" + stream.encode()).digest()[:8] + bytes(8)


#: Bytes of the all-zero plaintext the keystream is produced from, one slice at a time: an
#: AES-CTR keystream is the encryption of zeros, and a 256 KiB source stays in cache while
#: any length of output is written straight into its destination.
_ZERO_BLOCK = memoryview(bytes(256 * 1024))


def keystream_into(seed: bytes, out: bytearray | memoryview, stream: str = "") -> None:
    """Fill ``out`` (a writable C-contiguous buffer; an array's ``.data``) with AES-128-CTR
    keystream under ``seed`` for the named ``stream``, in place: no intermediate copy of the
    output.

    The bytes are exactly :func:`keystream` ``(seed, len(out), stream)``: the stream is
    encrypted in slices of :data:`_ZERO_BLOCK`, and CTR mode continues its counter across
    ``update`` calls, so the slicing does not change the output.
    """
    if len(seed) != SEED_BYTES:
        raise ValueError(f"a seed is {SEED_BYTES} bytes, got {len(seed)}")
    view = memoryview(out).cast("B")
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(_counter_block(stream))).encryptor()
    total = len(view)
    step = len(_ZERO_BLOCK)
    for start in range(0, total, step):
        stop = min(start + step, total)
        encryptor.update_into(_ZERO_BLOCK[: stop - start], view[start:stop])
    encryptor.finalize()


def keystream(seed: bytes, n_bytes: int, stream: str = "") -> bytes:
    """``n_bytes`` of AES-128-CTR keystream under ``seed`` for the named ``stream``."""
    out = bytearray(n_bytes)
    keystream_into(seed, out, stream)
    return bytes(out)


def expand(seed: bytes, count: int, stream: str = "") -> np.ndarray:
    """``count`` uniform elements of Z_2^64 (``uint64``) from ``seed`` and ``stream``.

    Deterministic in (seed, stream, count); a longer expansion starts with the
    shorter one.  Element ``i`` is bytes ``8i .. 8i+7`` of :func:`keystream` read as a
    little-endian integer; the keystream is written straight into the returned array.
    """
    if count < 0:
        raise ValueError("count must be non-negative")
    out = np.empty(count, dtype=np.uint64)
    keystream_into(seed, out.data, stream)
    if sys.byteorder != "little":  # pragma: no cover - every supported platform is little endian
        out.byteswap(inplace=True)
    return out


def random_ring(count: int) -> np.ndarray:
    """``count`` uniform elements of Z_2^64 from a fresh CSPRNG-seeded keystream."""
    return expand(fresh_seed(), count, "random_ring")


def random_below(bound: int, count: int) -> np.ndarray:
    """``count`` uniform integers in ``[0, bound)`` (``uint64``), ``1 <= bound <= 2**64``.

    Exact rejection sampling on keystream output, so there is no modulo bias.
    """
    if not 1 <= bound <= 2**64:
        raise ValueError("bound must be in [1, 2**64]")
    if bound == 2**64:
        return random_ring(count)
    bits = (bound - 1).bit_length()
    mask = np.uint64((1 << bits) - 1) if bits < 64 else np.uint64(2**64 - 1)
    out = np.empty(count, dtype=np.uint64)
    filled = 0
    while filled < count:
        # Acceptance probability is at least 1/2, so twice the need suffices
        # on average; loop for the rare shortfall.
        want = max(2 * (count - filled), 16)
        draw = random_ring(want) & mask
        ok = draw[draw < np.uint64(bound)][: count - filled]
        out[filled : filled + ok.size] = ok
        filled += ok.size
    return out
