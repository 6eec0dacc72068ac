"""Additive n-out-of-n secret sharing over Z_2^64, with seed-compressed shares.

A secret vector ``x`` (``uint64``) is split into ``n`` shares ``x_0 .. x_{n-1}``
with ``sum(x_i) = x mod 2**64``.  Any ``n-1`` shares are jointly uniform and so
reveal nothing about ``x`` (perfect secrecy, given uniform randomness); all
``n`` together reconstruct it.

**Seed compression.**  A share need not travel as a vector: ``n-1`` of the
shares can be pseudo-random expansions of 16-byte seeds
(:func:`smpc.randomness.expand`), and only the last share, ``x - sum of the
expansions``, is a real vector.  When a party shares its own input it keeps
that explicit share and sends each peer only a seed, so sharing costs
``16 * (n-1)`` bytes on the wire instead of ``8 * len(x) * (n-1)``.
Security then rests on AES-CTR being a PRG (see :mod:`smpc.randomness`):
the expanded shares are computationally, not perfectly, uniform.

Linear operations on shares are local: adding shares of ``x`` and ``y`` gives
shares of ``x + y``; multiplying by a public integer multiplies the secret; a
public constant is added by exactly one party (index 0 by convention).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from smpc import randomness


def share(secret: np.ndarray, n: int) -> list[np.ndarray]:
    """Split ``secret`` into ``n`` explicit additive shares.

    Reveals nothing by itself: each proper subset of the shares is uniform.
    """
    secret = np.asarray(secret, dtype=np.uint64)
    if n < 1:
        raise ValueError("need at least one share")
    shares = [randomness.random_ring(secret.size).reshape(secret.shape) for _ in range(n - 1)]
    last = secret.copy()
    for s in shares:
        last -= s
    return [*shares, last]


def reconstruct(shares: Sequence[np.ndarray]) -> np.ndarray:
    """Add all shares mod 2**64; the result is the secret."""
    if not shares:
        raise ValueError("no shares to reconstruct")
    total = np.array(shares[0], dtype=np.uint64, copy=True)
    for s in shares[1:]:
        total += np.asarray(s, dtype=np.uint64)
    return total


def expand_share(seed: bytes, shape: tuple[int, ...] | int, stream: str) -> np.ndarray:
    """The share that ``seed`` stands for, for a vector of ``shape``, in ``stream``."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    count = int(np.prod(shape)) if shape else 1
    return randomness.expand(seed, count, stream).reshape(shape)


@dataclass(frozen=True)
class SeededSharing:
    """A sharing where every share but one is a seed.

    ``seeds[k]`` is the share of the k-th other holder (expanded with
    :func:`expand_share` under ``stream``); ``explicit`` is the one real
    vector, normally kept by the party that made the sharing.
    """

    explicit: np.ndarray
    seeds: tuple[bytes, ...]
    stream: str

    def expanded(self) -> list[np.ndarray]:
        """All shares as vectors: the explicit one first, then each seed's."""
        shape = self.explicit.shape
        return [self.explicit] + [expand_share(s, shape, self.stream) for s in self.seeds]


def share_with_seeds(secret: np.ndarray, n_others: int, stream: str) -> SeededSharing:
    """Share ``secret`` among its holder and ``n_others`` peers who each get a seed.

    The holder keeps ``explicit``; peer k receives ``seeds[k]`` (16 bytes).
    ``stream`` must be unique to this sharing within the session (for example
    ``"<session>/input/<owner>"``), and is public.
    """
    secret = np.asarray(secret, dtype=np.uint64)
    seeds = tuple(randomness.fresh_seed() for _ in range(n_others))
    explicit = secret.copy()
    for seed in seeds:
        explicit -= expand_share(seed, secret.shape, stream)
    return SeededSharing(explicit=explicit, seeds=seeds, stream=stream)


def as_ring(value: np.ndarray | int) -> np.ndarray:
    """A signed or unsigned integer (array) as ring elements (``uint64``), mod 2**64."""
    arr = np.asarray(value)
    if arr.dtype.kind == "u":
        return arr.astype(np.uint64)
    if arr.dtype.kind == "i":
        return arr.astype(np.int64).view(np.uint64)
    if arr.dtype == object or isinstance(value, int):
        return np.asarray(np.vectorize(lambda v: int(v) % 2**64, otypes=[object])(arr),
                          dtype=np.uint64)
    raise TypeError("ring values must be integers; encode real numbers with FixedPoint first")


def add_public(share_: np.ndarray, public: np.ndarray | int, party_index: int) -> np.ndarray:
    """Share of ``x + public`` (``public`` already in the ring): only party 0 adds it."""
    share_ = np.asarray(share_, dtype=np.uint64)
    if party_index != 0:
        return share_.copy()
    return share_ + as_ring(public)


def mul_public_int(share_: np.ndarray, factor: np.ndarray | int) -> np.ndarray:
    """Share of ``x * factor`` for a public integer ``factor`` (no truncation needed).

    Multiplying a fixed-point share by a public *fixed-point* constant instead
    leaves ``2f`` fractional bits; see :mod:`smpc.beaver` for truncation.
    """
    return np.asarray(share_, dtype=np.uint64) * as_ring(factor)
