"""The online phase: openings, Beaver products and truncation, party to party.

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

Guarantees and revelations: each function's docstring states its error bound and what it
opens; every opening goes party to party (:func:`open_shares`), never through the dealer or
the coordinator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from smpc.beaver.members import check_parties, index_of
from smpc.beaver.requests import TripleKind, _size
from smpc.beaver.shares import TripleShare, TruncPairShare
from smpc.encoding import DEFAULT_FRAC_BITS
from smpc.errors import InputError, SmpcError
from smpc.transport import Transport

__all__ = ["SparePairsExhausted", "dot", "matmul", "mul", "open_shares", "truncate"]

TruncMethod = Literal["dealer", "local", "none"]


class SparePairsExhausted(SmpcError):
    """Dealer truncation rejected more elements than there were spare pairs.

    Reveals nothing about the data (rejections are independent of it); retry
    with a fresh deal, or deal more spares (:class:`TruncRequest` ``spares``).
    """


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
    check_parties(parties)
    index_of(t, parties)
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
    check_parties(parties)
    index = index_of(t, parties)
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
    check_parties(parties)
    index = index_of(t, parties)
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
