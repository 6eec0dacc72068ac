"""Beaver-triple products of additively shared fixed-point values over Z_2^64.

Products of two *private* values -- elementwise (``x * y``), inner products
(``x . y``, batched over leading axes) and matrix products (``X @ Y``) -- for
any number ``n >= 2`` of parties holding n-out-of-n additive shares
(:mod:`smpc.sharing`), with truncation back to ``f`` fractional bits.

Roles and trust assumption
==========================

* **parties** ``parties[0] .. parties[n-1]`` (ordered; index 0 adds public
  constants, as in :func:`smpc.sharing.add_public`);
* a **dealer** (a separate node, by default the coordinator) that produces the
  correlated randomness -- Beaver triples and truncation pairs -- before the
  inputs are known.

The model is semi-honest.  The dealer sees no input, no share of an input and
no opened value: every opening below goes party to party (:func:`open_shares`),
never through the dealer or the coordinator.  **The dealer is trusted not to
collude with any party**: the dealer knows every triple ``(a, b, c)`` and every
mask ``r``, so together with one party's view of ``d = x - a`` it would learn
``x``.  This is the trusted-third-party (TTP) provider of CrypTen; nothing here
protects against a malicious dealer or party (no MACs, no triple checks).

Offline phase: dealing with seed compression
============================================

:func:`deal` sends each party **one message** per tag.  Party ``i < n-1`` gets
only a 16-byte seed, from which it expands its shares of ``a``, ``b`` **and**
``c`` (and of ``r`` and ``r >> f``) under distinct stream labels
(:func:`smpc.randomness.expand`).  The last party gets a seed for ``a``, ``b``
(and ``r``) plus one explicit correction array per request:
``c - sum of the other parties' c shares`` (``(r >> f) - sum of the others'``).
Dealing therefore costs about one ``c``-sized array on the wire, not ``n``
full triples.  Secret randomness comes only from :mod:`smpc.randomness`
(OS CSPRNG seeds, AES-128-CTR expansion), so the shares are computationally
uniform under the PRG assumption stated there.

Online phase: products
======================

With a triple ``(a, b, c = a (*) b)`` where ``(*)`` is ``*``, ``.`` or ``@``,
each party opens ``d_i = x_i - a_i`` and ``e_i = y_i - b_i`` (one message to
each peer, one round) and computes locally::

    z_i = c_i + d (*) b_i + a_i (*) e  [+ d (*) e  for party 0]

so that ``sum z_i = x (*) y`` in the ring.  *What is revealed:* ``d`` and
``e``, which are uniform (``a`` and ``b`` are uniform and unknown to every
coalition of at most ``n-1`` parties) and so reveal nothing about ``x`` or
``y``.  **A triple must be used once**: two openings with the same ``a``
reveal ``x - x'``; :class:`TripleShare` enforces single use.

Truncation
==========

A product of two values with ``f`` fractional bits carries ``2f``; it is
brought back to ``f`` by one of:

``method="none"``
    No truncation: the share of the ``2f``-bit product is returned.  For a final
    layer that is revealed at once, decode with ``frac_bits=2f``; this saves the
    truncation round and is exact up to the encoding error.

``method="local"`` (two parties only; SecureML, Mohassel-Zhang 2017)
    Party 0 keeps ``z_0 >> f``, party 1 keeps ``-((-z_1) >> f)`` (logical
    shifts), with no communication.  If ``z_0`` is uniform (it is, here) the
    result is ``floor(z / 2^f)`` or that ``+ 1`` -- **error at most one ulp
    (2^-f)** -- **except with probability exactly |z| / 2^64 per element**
    (``z`` read as the signed ``2f``-bit integer, so at most ``2^(l-64)``
    when ``|z| < 2^l``), in which case the element is wildly wrong (off by
    about ``2^(64-f)`` ulps).  With ``f = 16`` and a product of magnitude
    ``2^10`` the failure rate is ``2^-22`` per element: acceptable for
    inference on moderate sizes, not for long pipelines.

``method="dealer"`` (default, any ``n``): masked opening with rejection
    The dealer supplies pairs ``([r], [r >> f])`` with ``r`` uniform on
    Z_2^64 (see :class:`TruncRequest`).  The caller declares a public bound
    ``l`` (``bound_bits``) with ``|z| < 2^l`` for the *integer* product
    ``z`` (real magnitude ``< 2^(l-2f)``; :func:`check_product_range` checks
    a plaintext against it before encoding).  Let ``u = z + 2^l``, so
    ``0 < u < 2^(l+1)``.  The parties open ``c = u + r mod 2^64`` and::

        share of result = (c >> f) - [r >> f] - 2^(l-f)

    (public terms added by party 0).

    *Correctness.*  If ``u + r`` does not wrap mod ``2^64`` then ``c = u + r``
    over the integers, and ``floor((u + r) / 2^f) - floor(r / 2^f)`` is
    ``floor(u / 2^f)`` or that ``+ 1``; since ``l >= f``,
    ``floor(u / 2^f) = floor(z / 2^f) + 2^(l-f)``, so the result is
    ``floor(z / 2^f)`` or ``floor(z / 2^f) + 1``: **error at most one ulp
    (2^-f), always** (not merely with high probability).

    *Rejection.*  A wrap makes ``c = u + r - 2^64 < u < 2^(l+1)``.  So every
    element whose opened ``c`` is below ``2^(l+1)`` is **rejected** -- a
    decision taken from public ``c`` only -- and redone, in a further round,
    with a fresh spare pair.  Accepted elements never wrapped.

    *Privacy.*  Since ``r`` is uniform, ``c`` is uniform on Z_2^64 whatever
    ``z`` is.  Hence the rejection event ``c < 2^(l+1)`` has probability
    exactly ``2^(l+1-64)``, independent of ``z``; conditioned on acceptance
    ``c`` is uniform on ``[2^(l+1), 2^64)`` and conditioned on rejection it is
    uniform on ``[0, 2^(l+1))`` -- again whatever ``z`` is -- and every retry
    uses an independent ``r``.  The transcript (all ``c``, which elements were
    rejected, how many rounds) is therefore independent of ``z``: perfectly
    hiding for uniform ``r``, computationally hiding with ``r`` expanded from
    seeds.  This holds only if ``|z| < 2^l`` really holds: a product outside
    the declared bound gives a wrong result *and* may leak, so the bound must
    be checked on plaintexts (:func:`check_product_range`).

    *Cost.*  One round, plus a redo round whenever some element is rejected
    (expected ``N * 2^(l+1-64)`` rejections for ``N`` elements).  The dealer
    deals ``4 * expected + 16`` spare pairs per request; running out raises
    :class:`SparePairsExhausted` (probability negligible in practice; it
    reveals nothing, since the rejection count is independent of the data).
    The default ``l`` is :func:`default_bound_bits`: ``min(2f + 20, 56)``,
    i.e. real products below ``2^20 ~ 1.05e6`` and a rejection rate of
    ``2^-11`` for the default ``f = 16``; ``l`` may go up to 62 (rejection
    rate 1/2, many rounds).

Error bounds after decoding (reals ``X, Y`` encoded with ``f`` bits, so each
encoding error is at most ``2^-(f+1)``): the untruncated product decodes to
``x_int * y_int / 2^(2f)`` exactly, which differs from ``X * Y`` by at most
``(|X| + |Y|) 2^-(f+1) + 2^-(2f+2)``; truncation adds at most ``2^-f``.  For a
length-``d`` dot product sum the encoding terms over the ``d`` products and add
``2^-f`` once.

Everything is vectorised numpy on ``uint64`` (wrap-around is the modulus;
``numpy.matmul`` on ``uint64`` also wraps mod 2^64).  The only loop on the hot
path is the rejection loop, over rounds, not elements.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from smpc import randomness
from smpc.encoding import DEFAULT_FRAC_BITS, RING_BITS, EncodingRangeError, FixedPoint
from smpc.errors import InputError, ProtocolError, SmpcError
from smpc.transport import Transport

__all__ = [
    "MAX_BOUND_BITS",
    "SparePairsExhausted",
    "TripleRequest",
    "TripleShare",
    "TruncPairShare",
    "TruncRequest",
    "check_bound_bits",
    "check_product_range",
    "deal",
    "deal_local",
    "default_bound_bits",
    "dot",
    "matmul",
    "mul",
    "open_shares",
    "product_limit",
    "receive",
    "truncate",
]

TripleKind = Literal["mul", "dot", "matmul"]
TruncMethod = Literal["dealer", "local", "none"]

#: Largest product bound ``l``: the rejection rate ``2^(l+1-64)`` is then 1/2.
MAX_BOUND_BITS = RING_BITS - 2
#: Default bound: real products below ``2^20`` (but ``l`` at most 56).
DEFAULT_PRODUCT_INT_BITS = 20
_DEFAULT_BOUND_CAP = 56

_SEED_WORDS = randomness.SEED_BYTES // 8
_STREAM = "beaver"


class SparePairsExhausted(SmpcError):
    """Dealer truncation rejected more elements than there were spare pairs.

    Reveals nothing about the data (rejections are independent of it); retry
    with a fresh deal, or deal more spares (:class:`TruncRequest` ``spares``).
    """


# --------------------------------------------------------------------------- requests


def _shape(value: Sequence[int] | int) -> tuple[int, ...]:
    shape = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    out = tuple(int(s) for s in shape)
    if any(s < 0 for s in out):
        raise InputError(f"negative dimension in shape {out}")
    return out


def _matmul_shape(x_shape: tuple[int, ...], y_shape: tuple[int, ...]) -> tuple[int, ...]:
    if not (1 <= len(x_shape) <= 2 and 1 <= len(y_shape) <= 2):
        raise InputError(f"matmul needs 1-D or 2-D operands, got shapes {x_shape} and {y_shape}")
    if x_shape[-1] != y_shape[0]:
        raise InputError(f"matmul inner dimensions differ: {x_shape} @ {y_shape}")
    return x_shape[:-1] + y_shape[1:]


@dataclass(frozen=True)
class TripleRequest:
    """Public description of one Beaver triple ``(a, b, c = a (*) b)``.

    ``kind`` is ``"mul"`` (elementwise, ``x_shape == y_shape``), ``"dot"``
    (``x_shape == y_shape == (..., d)``, ``c`` of shape ``(...)``: batched inner
    products over the last axis) or ``"matmul"`` (``x`` of shape ``(m, k)`` or
    ``(k,)``, ``y`` of shape ``(k, p)`` or ``(k,)``; numpy matmul shapes).
    Build with :meth:`mul`, :meth:`dot` or :meth:`matmul`.
    """

    kind: TripleKind
    x_shape: tuple[int, ...]
    y_shape: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "x_shape", _shape(self.x_shape))
        object.__setattr__(self, "y_shape", _shape(self.y_shape))
        if self.kind in ("mul", "dot"):
            if self.x_shape != self.y_shape:
                raise InputError(
                    f"{self.kind} operands must have equal shapes, got "
                    f"{self.x_shape} and {self.y_shape}"
                )
            if self.kind == "dot" and not self.x_shape:
                raise InputError("dot operands need at least one axis")
        elif self.kind == "matmul":
            _matmul_shape(self.x_shape, self.y_shape)
        else:
            raise InputError(f"unknown triple kind {self.kind!r}")

    @classmethod
    def mul(cls, shape: Sequence[int] | int) -> TripleRequest:
        """Triple for an elementwise product of two arrays of ``shape``."""
        return cls("mul", _shape(shape), _shape(shape))

    @classmethod
    def dot(cls, shape: Sequence[int] | int) -> TripleRequest:
        """Triple for inner products over the last axis of two arrays of ``shape``."""
        return cls("dot", _shape(shape), _shape(shape))

    @classmethod
    def matmul(cls, x_shape: Sequence[int] | int, y_shape: Sequence[int] | int) -> TripleRequest:
        """Triple for ``X @ Y`` with ``X`` of ``x_shape`` and ``Y`` of ``y_shape``."""
        return cls("matmul", _shape(x_shape), _shape(y_shape))

    @property
    def z_shape(self) -> tuple[int, ...]:
        """Shape of the product ``c`` (and of the product of the inputs)."""
        if self.kind == "mul":
            return self.x_shape
        if self.kind == "dot":
            return self.x_shape[:-1]
        return _matmul_shape(self.x_shape, self.y_shape)

    def combine(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """The bilinear map of this triple on ring arrays (wraps mod 2^64)."""
        return _OPS[self.kind](u, v)


def _op_mul(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.multiply(u, v, dtype=np.uint64)


def _op_dot(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.asarray(np.multiply(u, v, dtype=np.uint64).sum(axis=-1, dtype=np.uint64))


def _op_matmul(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.asarray(np.matmul(u, v, dtype=np.uint64))


_OPS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "mul": _op_mul,
    "dot": _op_dot,
    "matmul": _op_matmul,
}


def check_bound_bits(frac_bits: int, bound_bits: int) -> None:
    """Raise :class:`InputError` unless ``frac_bits <= bound_bits <= 62``.

    ``l >= f`` makes ``2^(l-f)`` an integer; ``l <= 62`` keeps the rejection
    rate ``2^(l+1-64)`` at most 1/2.
    """
    if not 0 <= frac_bits <= 30:
        raise InputError(f"frac_bits must be between 0 and 30, got {frac_bits}")
    if not frac_bits <= bound_bits <= MAX_BOUND_BITS:
        raise InputError(
            f"product bound bits l={bound_bits} must satisfy f={frac_bits} <= l <= "
            f"{MAX_BOUND_BITS} (|product| < 2^l as a {2 * frac_bits}-fractional-bit integer)"
        )


def default_bound_bits(fp: FixedPoint | int = DEFAULT_FRAC_BITS) -> int:
    """Default product bound ``l = min(2f + 20, 56)`` (at least ``f``).

    For ``f = 16``: ``l = 52``, real products (and dot products) below
    ``2^20 ~ 1.05e6``, rejection rate ``2^-11`` per element.
    """
    f = fp.frac_bits if isinstance(fp, FixedPoint) else int(fp)
    return max(f, min(2 * f + DEFAULT_PRODUCT_INT_BITS, _DEFAULT_BOUND_CAP))


def product_limit(fp: FixedPoint, bound_bits: int | None = None) -> float:
    """Largest real ``|x * y|`` (or ``|x . y|``) the dealer truncation accepts: ``2^(l-2f)``."""
    l_bits = default_bound_bits(fp) if bound_bits is None else bound_bits
    check_bound_bits(fp.frac_bits, l_bits)
    return 2.0 ** (l_bits - 2 * fp.frac_bits)


def check_product_range(
    fp: FixedPoint,
    values: np.ndarray | float,
    other_max_abs: float,
    *,
    axis: int | None = None,
    bound_bits: int | None = None,
    what: str = "value",
) -> None:
    """Check a plaintext factor against the declared product bound, before encoding.

    A party that holds plaintext ``values`` (for instance model weights) and
    knows a public bound ``other_max_abs`` on the magnitude of the other
    factor (for instance the feature range in the policy) checks that every
    product -- or, with ``axis``, every inner product along that axis --
    satisfies ``|z| < 2^l`` once encoded, encoding rounding included.  Raises
    :class:`~smpc.encoding.EncodingRangeError` naming the worst value and the
    limit.  Reveals nothing beyond the local caller's own data.
    """
    arr = np.abs(np.asarray(values, dtype=np.float64))
    if not np.isfinite(arr).all() or not math.isfinite(other_max_abs):
        raise EncodingRangeError(f"{what} and its bound must be finite numbers")
    limit = product_limit(fp, bound_bits)
    ulp = fp.resolution
    worst = (arr + ulp) * (abs(other_max_abs) + ulp)
    if axis is not None:
        worst = worst.sum(axis=axis)
    if worst.size and float(np.max(worst)) >= limit:
        raise EncodingRangeError(
            f"{what}: a product may reach {float(np.max(worst)):.6g} (other factor up to "
            f"{other_max_abs:.6g}), outside the truncation bound {limit:.6g} "
            f"(2^(l-2f) with l={default_bound_bits(fp) if bound_bits is None else bound_bits}, "
            f"f={fp.frac_bits})"
        )


@dataclass(frozen=True)
class TruncRequest:
    """Public description of ``count`` dealer truncation pairs ``([r], [r >> f])``.

    ``bound_bits`` (``l``) is the declared bound ``|z| < 2^l`` on the integer
    products to truncate (default :func:`default_bound_bits`); ``spares`` is
    the number of extra pairs for rejected elements (default
    ``ceil(4 * expected) + 16`` with ``expected = count * p / (1 - p)`` and
    ``p = 2^(l+1-64)`` the rejection rate).  ``count`` (an int, or a shape
    whose size is taken) must equal the number of elements truncated.
    """

    count: int
    frac_bits: int = DEFAULT_FRAC_BITS
    bound_bits: int | None = None
    spares: int | None = None

    def __post_init__(self) -> None:
        count = int(np.prod(self.count)) if isinstance(self.count, tuple) else int(self.count)
        if count < 0:
            raise InputError("count must be non-negative")
        object.__setattr__(self, "count", count)
        l_bits = default_bound_bits(self.frac_bits) if self.bound_bits is None else self.bound_bits
        check_bound_bits(self.frac_bits, int(l_bits))
        object.__setattr__(self, "bound_bits", int(l_bits))
        if self.spares is None:
            p = self.rejection_probability
            spares = math.ceil(4 * count * p / (1 - p)) + 16
        else:
            spares = int(self.spares)
            if spares < 0:
                raise InputError("spares must be non-negative")
        object.__setattr__(self, "spares", spares)

    @property
    def l_bits(self) -> int:
        """The product bound ``l`` (``|z| < 2^l``)."""
        assert self.bound_bits is not None
        return self.bound_bits

    @property
    def total(self) -> int:
        """Pairs dealt: ``count + spares``."""
        assert self.spares is not None
        return self.count + self.spares

    @property
    def rejection_probability(self) -> float:
        """Probability ``2^(l+1-64)`` that one opening is rejected (independent of data)."""
        return 2.0 ** (self.l_bits + 1 - RING_BITS)


Request = TripleRequest | TruncRequest


# --------------------------------------------------------------------------- party shares


@dataclass
class TripleShare:
    """One party's share of a triple.  Single use: see :func:`mul`."""

    request: TripleRequest
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    used: bool = False

    def _consume(self, kind: TripleKind) -> None:
        if self.request.kind != kind:
            raise InputError(f"a {self.request.kind!r} triple cannot be used for {kind!r}")
        if self.used:
            raise InputError("this triple was already used; reusing one reveals x - x'")
        self.used = True


@dataclass
class TruncPairShare:
    """One party's shares of ``count + spares`` truncation pairs ``(r, r >> f)``.

    Single use.  After use, ``rounds`` is the number of openings made and
    ``rejected`` the number of rejected openings redone with spares (both
    public: they are the same at every party and independent of the data).
    """

    request: TruncRequest
    r: np.ndarray
    r_trunc: np.ndarray
    used: bool = False
    rounds: int = 0
    rejected: int = 0
    rejected_per_round: list[int] = field(default_factory=list)

    def _consume(self, count: int) -> None:
        if count != self.request.count:
            raise InputError(
                f"truncation pairs were dealt for {self.request.count} elements, "
                f"the product has {count}"
            )
        if self.used:
            raise InputError("these truncation pairs were already used; reusing r leaks z - z'")
        self.used = True


Share = TripleShare | TruncPairShare


# --------------------------------------------------------------------------- dealing


def _labels(j: int) -> tuple[str, str, str]:
    return f"{_STREAM}/{j}/a", f"{_STREAM}/{j}/b", f"{_STREAM}/{j}/c"


def _trunc_labels(j: int) -> tuple[str, str]:
    return f"{_STREAM}/{j}/r", f"{_STREAM}/{j}/rt"


def _size(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape)) if shape else 1


def _correction_size(req: Request) -> int:
    if isinstance(req, TripleRequest):
        return _size(req.z_shape)
    return req.total


def _message_words(requests: Sequence[Request], index: int, n: int) -> int:
    if index < n - 1:
        return _SEED_WORDS
    return _SEED_WORDS + sum(_correction_size(r) for r in requests)


def _check_requests(requests: Sequence[Request]) -> None:
    for req in requests:
        if not isinstance(req, (TripleRequest, TruncRequest)):
            raise InputError(f"not a dealer request: {req!r}")


def _seed_words(seed: bytes) -> np.ndarray:
    return np.frombuffer(seed, dtype="<u8").astype(np.uint64)


def _dealer_messages(requests: Sequence[Request], n: int) -> list[np.ndarray]:
    """The message for each party: ``[seed words | corrections (last party only)]``."""
    _check_requests(requests)
    if n < 2:
        raise InputError("Beaver products need at least two parties")
    seeds = [randomness.fresh_seed() for _ in range(n)]
    corrections: list[np.ndarray] = []
    for j, req in enumerate(requests):
        if isinstance(req, TripleRequest):
            la, lb, lc = _labels(j)
            a = _sum_expansions(seeds, req.x_shape, la)
            b = _sum_expansions(seeds, req.y_shape, lb)
            c = req.combine(a, b).reshape(req.z_shape)
            for seed in seeds[:-1]:
                c -= _expand(seed, req.z_shape, lc)
            corrections.append(c.ravel())
        else:
            lr, lrt = _trunc_labels(j)
            r = _sum_expansions(seeds, (req.total,), lr)
            rt = r >> np.uint64(req.frac_bits)
            for seed in seeds[:-1]:
                rt -= _expand(seed, (req.total,), lrt)
            corrections.append(rt)
    messages = [_seed_words(s) for s in seeds[:-1]]
    messages.append(np.concatenate([_seed_words(seeds[-1]), *corrections]))
    return messages


def _expand(seed: bytes, shape: tuple[int, ...], label: str) -> np.ndarray:
    return randomness.expand(seed, _size(shape), label).reshape(shape)


def _sum_expansions(seeds: Sequence[bytes], shape: tuple[int, ...], label: str) -> np.ndarray:
    total = _expand(seeds[0], shape, label)
    for seed in seeds[1:]:
        total += _expand(seed, shape, label)
    return total


def _unpack(message: np.ndarray, requests: Sequence[Request], index: int, n: int,
            dealer: str | None = None) -> list[Share]:
    """Expand one party's dealer message into its shares, in request order."""
    expected = _message_words(requests, index, n)
    if message.shape != (expected,):
        raise ProtocolError(
            f"dealer message has shape {message.shape}, expected ({expected},) for these requests",
            peer=dealer,
        )
    seed = message[:_SEED_WORDS].astype("<u8").tobytes()
    last = index == n - 1
    offset = _SEED_WORDS
    out: list[Share] = []
    for j, req in enumerate(requests):
        if isinstance(req, TripleRequest):
            la, lb, lc = _labels(j)
            a = _expand(seed, req.x_shape, la)
            b = _expand(seed, req.y_shape, lb)
            if last:
                size = _size(req.z_shape)
                c = message[offset : offset + size].reshape(req.z_shape).copy()
                offset += size
            else:
                c = _expand(seed, req.z_shape, lc)
            out.append(TripleShare(req, a, b, c))
        else:
            lr, lrt = _trunc_labels(j)
            r = _expand(seed, (req.total,), lr)
            if last:
                rt = message[offset : offset + req.total].copy()
                offset += req.total
            else:
                rt = _expand(seed, (req.total,), lrt)
            out.append(TruncPairShare(req, r, rt))
    return out


def _check_parties(parties: Sequence[str]) -> None:
    if len(parties) < 2:
        raise InputError("Beaver products need at least two parties")
    if len(set(parties)) != len(parties):
        raise InputError(f"party names must be distinct: {list(parties)}")


def deal(t: Transport, parties: Sequence[str], requests: Sequence[Request], tag: str) -> None:
    """Dealer role: send every party its shares of ``requests`` (one message each).

    Party ``i < n-1`` receives 16 bytes (a seed); the last party receives a
    seed plus one correction array per request (``c``-sized for a triple,
    ``count + spares`` words for truncation pairs).  Tag ``f"{tag}/triples"``.
    The dealer learns nothing about inputs: it runs before them and receives
    nothing.  ``requests`` is public and must be the same list at every party.
    """
    _check_parties(parties)
    if t.me in parties:
        raise InputError(f"the dealer {t.me!r} must not be one of the parties")
    for name, message in zip(parties, _dealer_messages(requests, len(parties)), strict=True):
        t.send(name, f"{tag}/triples", message)


def receive(
    t: Transport, dealer: str, parties: Sequence[str], requests: Sequence[Request], tag: str
) -> list[Share]:
    """Party role: receive and expand this party's shares of ``requests``.

    Returns one :class:`TripleShare` or :class:`TruncPairShare` per request,
    in order.  Raises :class:`~smpc.errors.ProtocolError` if the dealer's
    message does not fit the requests.
    """
    _check_parties(parties)
    _check_requests(requests)
    index = _index(t, parties)
    n = len(parties)
    message = t.recv_array(dealer, f"{tag}/triples", np.uint64)
    return _unpack(message, requests, index, n, dealer)


def deal_local(requests: Sequence[Request], n: int) -> list[list[Share]]:
    """All ``n`` parties' shares in one process (tests and benchmarks only).

    Whoever calls this holds every share, so it is no protocol: it gives the
    same shares :func:`deal` and :func:`receive` would.
    """
    messages = _dealer_messages(requests, n)
    return [_unpack(m, requests, i, n) for i, m in enumerate(messages)]


# --------------------------------------------------------------------------- online phase


def _index(t: Transport, parties: Sequence[str]) -> int:
    if t.me not in parties:
        raise InputError(f"{t.me!r} is not one of the parties {list(parties)}")
    return list(parties).index(t.me)


def _ring(value: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype != np.uint64:
        raise InputError(f"{what} must be a share in the ring (uint64), got {arr.dtype}")
    return arr


def open_shares(t: Transport, parties: Sequence[str], share: np.ndarray, tag: str) -> np.ndarray:
    """Open a shared value: send this share to every other party, add all shares.

    Every party calls it with its share; each gets the opened value.  Messages
    go party to party (tag ``tag``), never through the dealer or coordinator.
    *Reveals the opened value to every party* -- call it only on values that
    are meant to be public (masked values, or a result for all parties).
    """
    _check_parties(parties)
    _index(t, parties)
    share = _ring(share, "share")
    t.broadcast(parties, tag, share)
    total = share.copy()
    for name in parties:
        if name != t.me:
            total += t.recv_array(name, tag, np.uint64, share.shape)
    return total


def _beaver(
    t: Transport,
    parties: Sequence[str],
    triple: TripleShare,
    x: np.ndarray,
    y: np.ndarray,
    tag: str,
    kind: TripleKind,
) -> np.ndarray:
    """Share of ``x (*) y`` with ``2f`` fractional bits (one opening round)."""
    _check_parties(parties)
    index = _index(t, parties)
    x = _ring(x, "x")
    y = _ring(y, "y")
    req = triple.request
    if req.kind != kind:
        raise InputError(f"a {req.kind!r} triple cannot be used for {kind!r}")
    if x.shape != req.x_shape or y.shape != req.y_shape:
        raise InputError(
            f"operand shapes {x.shape}, {y.shape} do not match the triple's "
            f"{req.x_shape}, {req.y_shape}"
        )
    triple._consume(kind)
    # One message per peer carries both masked operands.
    masked = np.concatenate([(x - triple.a).ravel(), (y - triple.b).ravel()])
    opened = open_shares(t, parties, masked, f"{tag}/de")
    d = opened[: x.size].reshape(x.shape)
    e = opened[x.size :].reshape(y.shape)
    z = triple.c + req.combine(d, triple.b)
    z += req.combine(triple.a, e)
    if index == 0:
        z += req.combine(d, e)
    return np.asarray(z, dtype=np.uint64).reshape(req.z_shape)


def truncate(
    t: Transport,
    parties: Sequence[str],
    share: np.ndarray,
    tag: str,
    *,
    method: TruncMethod = "dealer",
    pair: TruncPairShare | None = None,
    frac_bits: int | None = None,
) -> np.ndarray:
    """Share of ``z >> f`` (arithmetic) from a share of ``z``; see the module docstring.

    ``method="dealer"`` needs ``pair`` (dealt for ``share.size`` elements; its
    request fixes ``f`` and ``l``); result ``floor(z / 2^f)`` or ``+ 1`` for
    every element with ``|z| < 2^l``; reveals only masked values ``c``,
    uniform and independent of ``z`` (tags ``f"{tag}/trunc/{round}"``).
    ``method="local"`` (two parties, no communication): same result except
    with probability ``|z| / 2^64`` per element, when it is wildly wrong.
    ``method="none"`` returns a copy of ``share``.
    """
    _check_parties(parties)
    index = _index(t, parties)
    share = _ring(share, "share")
    if method == "none":
        return share.copy()
    if method == "local":
        if len(parties) != 2:
            raise InputError(
                f"local truncation works for two parties only ({len(parties)} here); "
                "use method='dealer'"
            )
        f = np.uint64(DEFAULT_FRAC_BITS if frac_bits is None else frac_bits)
        if index == 0:
            return share >> f
        return np.subtract(np.uint64(0), np.subtract(np.uint64(0), share) >> f)
    if method != "dealer":
        raise InputError(f"unknown truncation method {method!r}")
    if pair is None:
        raise InputError(
            "dealer truncation needs truncation pairs (a TruncRequest from the dealer)"
        )
    req = pair.request
    if frac_bits is not None and frac_bits != req.frac_bits:
        raise InputError(
            f"truncation pairs were dealt for f={req.frac_bits}, asked to truncate {frac_bits} bits"
        )
    pair._consume(share.size)
    return _dealer_truncate(t, parties, index, share, tag, pair)


def _dealer_truncate(
    t: Transport,
    parties: Sequence[str],
    index: int,
    share: np.ndarray,
    tag: str,
    pair: TruncPairShare,
) -> np.ndarray:
    req = pair.request
    f = np.uint64(req.frac_bits)
    offset = np.uint64(1 << req.l_bits)  # 2^l, makes u = z + 2^l non-negative
    accept_from = np.uint64(1 << (req.l_bits + 1))  # c >= 2^(l+1): no wrap-around
    correction = np.uint64(1 << (req.l_bits - req.frac_bits))  # 2^(l-f)
    z = share.ravel()
    # Round 0 masks element k with pair k (contiguous slices, no gathers); each
    # later round redoes the elements still pending with the next unused spares.
    masked = z + pair.r[: z.size]
    r_trunc = pair.r_trunc[: z.size]
    out = np.empty_like(z)
    pending = np.empty(0, dtype=np.intp)  # elements without a result (set by round 0)
    next_spare = req.count
    while True:
        if index == 0:
            masked += offset
        c = open_shares(t, parties, masked, f"{tag}/trunc/{pair.rounds}")
        pair.rounds += 1
        ok = c >= accept_from  # decided from the public c only
        result = np.subtract(np.uint64(0), r_trunc)
        if index == 0:
            result += (c >> f) - correction  # wrong for rejected entries; discarded
        if pair.rounds == 1:
            out[:] = result
            pending = np.flatnonzero(~ok)
        else:
            out[pending[ok]] = result[ok]
            pending = pending[~ok]
        if pending.size == 0:
            return out.reshape(share.shape)
        pair.rejected += int(pending.size)
        pair.rejected_per_round.append(int(pending.size))
        if next_spare + pending.size > req.total:
            raise SparePairsExhausted(
                f"dealer truncation {tag!r}: {pair.rejected} rejected openings but only "
                f"{req.spares} spare pairs (rejection rate {req.rejection_probability:.3g}); "
                "deal again or request more spares"
            )
        use = slice(next_spare, next_spare + pending.size)
        next_spare += pending.size
        masked = z[pending] + pair.r[use]
        r_trunc = pair.r_trunc[use]


def _product(
    kind: TripleKind,
    t: Transport,
    parties: Sequence[str],
    triple: TripleShare,
    x: np.ndarray,
    y: np.ndarray,
    tag: str,
    method: TruncMethod,
    pair: TruncPairShare | None,
    frac_bits: int | None,
) -> np.ndarray:
    if method == "dealer" and pair is None:
        raise InputError(
            "dealer truncation needs truncation pairs: pass pair=..., or method='none' "
            "for an untruncated (2f-bit) product"
        )
    if method not in ("dealer", "local", "none"):
        raise InputError(f"unknown truncation method {method!r}")
    # Refuse a misfit before the triple is consumed and anything is sent.
    if method == "local" and len(parties) != 2:
        raise InputError(
            f"local truncation works for two parties only ({len(parties)} here); "
            "use method='dealer'"
        )
    if pair is not None and method == "dealer":
        count = _size(triple.request.z_shape)
        if pair.used or pair.request.count != count:
            raise InputError(
                f"truncation pairs for {pair.request.count} elements"
                f"{' (already used)' if pair.used else ''} cannot truncate a product of "
                f"{count} elements"
            )
        if frac_bits is not None and frac_bits != pair.request.frac_bits:
            raise InputError(
                f"truncation pairs were dealt for f={pair.request.frac_bits}, "
                f"asked to truncate {frac_bits} bits"
            )
    z = _beaver(t, parties, triple, x, y, tag, kind)
    return truncate(t, parties, z, tag, method=method, pair=pair, frac_bits=frac_bits)


def mul(
    t: Transport,
    parties: Sequence[str],
    triple: TripleShare,
    x: np.ndarray,
    y: np.ndarray,
    tag: str,
    *,
    method: TruncMethod = "dealer",
    pair: TruncPairShare | None = None,
    frac_bits: int | None = None,
) -> np.ndarray:
    """This party's share of the elementwise product ``x * y``.

    ``x``, ``y``: this party's ``uint64`` shares (same shape as the triple's);
    ``triple``: a ``"mul"`` triple (consumed).  With ``method="dealer"``
    (default) pass the :class:`TruncPairShare` dealt for ``x.size`` elements:
    the result has ``f`` fractional bits and error at most one ulp, provided
    ``|x * y| < 2^l`` as integers.  ``method="local"`` (two parties) needs no
    pairs and fails with probability ``|x*y| / 2^64`` per element;
    ``method="none"`` returns the ``2f``-bit product (decode with
    ``frac_bits=2f``).  Reveals only the uniform ``d = x - a``,
    ``e = y - b`` (tag ``f"{tag}/de"``) and, when truncating with the dealer,
    masked values independent of the product.  Two rounds (one with
    ``method="none"`` or ``"local"``), plus rare redo rounds.
    """
    return _product("mul", t, parties, triple, x, y, tag, method, pair, frac_bits)


def dot(
    t: Transport,
    parties: Sequence[str],
    triple: TripleShare,
    x: np.ndarray,
    y: np.ndarray,
    tag: str,
    *,
    method: TruncMethod = "dealer",
    pair: TruncPairShare | None = None,
    frac_bits: int | None = None,
) -> np.ndarray:
    """This party's share of ``sum(x * y, axis=-1)`` (inner products, batched).

    Same guarantees, revelations and options as :func:`mul`, with a ``"dot"``
    triple; the bound ``|z| < 2^l`` applies to each inner product (the sum),
    and truncation happens once per inner product, so the truncation error is
    one ulp per output element, not per term.
    """
    return _product("dot", t, parties, triple, x, y, tag, method, pair, frac_bits)


def matmul(
    t: Transport,
    parties: Sequence[str],
    triple: TripleShare,
    x: np.ndarray,
    y: np.ndarray,
    tag: str,
    *,
    method: TruncMethod = "dealer",
    pair: TruncPairShare | None = None,
    frac_bits: int | None = None,
) -> np.ndarray:
    """This party's share of the matrix product ``x @ y``.

    ``x`` is ``(m, k)`` or ``(k,)``; ``y`` is ``(k, p)`` or ``(k,)``.

    Same guarantees, revelations and options as :func:`mul`, with a
    ``"matmul"`` triple; the bound applies to each output element.  The
    opening costs ``x.size + y.size`` words per peer, the dealer's correction
    ``m * p`` words.
    """
    return _product("matmul", t, parties, triple, x, y, tag, method, pair, frac_bits)
