"""Beaver-triple products of additively shared fixed-point values over Z_2^64.

Products of two *private* values -- elementwise (``x * y``), inner products
(``x . y``, batched over leading axes) and matrix products (``X @ Y``) -- for
any number ``n >= 2`` of parties holding n-out-of-n additive shares
(:mod:`smpc.sharing`), with truncation back to ``f`` fractional bits.

Roles and trust assumption
==========================

* **parties** ``parties[0] .. parties[n-1]`` (ordered; index 0 adds public
  constants, as in :func:`smpc.sharing.add_public`);
* a **dealer** (a separate node, by default the coordinator) that supplies the
  correlated randomness -- Beaver triples and truncation pairs -- before the
  inputs are used.

The model is semi-honest for the parties; the dealer **may deviate**.  Each party
draws its own masks (its shares of ``a``, ``b`` and ``r``) from its own OS CSPRNG
seed; the dealer receives those seeds and sends back only the last party's
*correction* (its share of ``c``, or of ``r >> f``), so **no dealer can make two
parties' masks equal or related, nor reuse them across sessions**.  A matmul
triple requested with ``checks`` is verified by the parties before use
(:mod:`.checking`): a wrong correction then fails loudly, naming the dealer,
before anything that depends on an input is opened.  The dealer sees no input,
no share of an input and no opened value: every opening below goes party to
party (:func:`open_shares`), never through the dealer or the coordinator.
**The dealer is trusted not to collude with any party**: it knows every triple
``(a, b, c)`` and every mask ``r``, so together with one party's view of
``d = x - a`` it would learn ``x`` (and through an unchecked correction it could
hand the last party what it knows).  Nothing here protects against a malicious
party (no MACs on shares).

The parts
=========

=====================  ==================================================================
:mod:`.requests`       :class:`TripleRequest`, :class:`TruncRequest`, the product bound
:mod:`.shares`         one party's single-use :class:`TripleShare` / :class:`TruncPairShare`
:mod:`.members`        the ordered parties and this node's index among them
:mod:`.dealing`        the offline phase: parties' own masks, the dealer's correction
                       (:func:`deal`, :func:`receive`)
:mod:`.checking`       the random linear check of a matmul triple before use
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
    DEFAULT_CHECKS,
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
    "DEFAULT_CHECKS",
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
