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

The parts
=========

=====================  ==================================================================
:mod:`.requests`       :class:`TripleRequest`, :class:`TruncRequest`, the product bound
:mod:`.shares`         one party's single-use :class:`TripleShare` / :class:`TruncPairShare`
:mod:`.dealing`        the offline phase: seed-compressed dealing (:func:`deal`, :func:`receive`)
:mod:`.online`         the online phase: :func:`open_shares`, :func:`mul`, :func:`dot`,
                       :func:`matmul`, :func:`truncate` (with the truncation analysis)
=====================  ==================================================================

Everything public is importable from :mod:`smpc.beaver` itself.
"""

from __future__ import annotations

from smpc.beaver.dealing import deal, deal_local, receive
from smpc.beaver.online import (
    SparePairsExhausted,
    TruncMethod,
    dot,
    matmul,
    mul,
    open_shares,
    truncate,
)
from smpc.beaver.requests import (
    DEFAULT_PRODUCT_INT_BITS,
    MAX_BOUND_BITS,
    Request,
    TripleKind,
    TripleRequest,
    TruncRequest,
    check_bound_bits,
    check_product_range,
    default_bound_bits,
    product_limit,
)
from smpc.beaver.shares import Share, TripleShare, TruncPairShare

__all__ = [
    "DEFAULT_PRODUCT_INT_BITS",
    "MAX_BOUND_BITS",
    "Request",
    "Share",
    "SparePairsExhausted",
    "TripleKind",
    "TripleRequest",
    "TripleShare",
    "TruncMethod",
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
