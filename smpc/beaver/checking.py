"""Checking a dealt matmul triple before it is used: a random linear check with a sacrifice.

Why
===

The dealer sends the last party a *correction*, its share of ``c`` (:mod:`smpc.beaver.dealing`).
A deviating dealer can put anything there: a wrong product -- or another party's seed, which
it knows, hidden in the words, so that the last party could unmask that party's openings.
Checking the triple *before anything that depends on an input is opened* turns both into a
loud failure that names the dealer, and leaves the dealer no freedom in what it sends.

The check
=========

A triple ``a`` (``m x k``), ``b`` (``k x p``), ``c = a b`` (``m x p``) -- any matmul triple,
1-D operands read as one row or one column -- is dealt with a sacrificed companion ``a''``
(``kappa x k``) and ``c'' = a'' b`` (``kappa x p``) for the *same* ``b``
(``kappa = request.checks``).  The parties then draw ``R`` (``kappa x m``, uniform over
Z_2^64) that the dealer never sees and no party chooses alone: each party sends every other
party a fresh 16-byte challenge seed from the OS CSPRNG, and ``R`` is the AES-CTR expansion of
SHA-256 of all of them in party order.  Then:

1. open ``rho = R a - a''`` (``kappa k`` words per party);
2. open ``sigma = R c - c'' - rho b`` (``kappa p`` words), computed locally on shares;
3. require ``sigma = 0``, else raise :class:`~smpc.errors.ProtocolError` naming the dealer --
   inside :func:`smpc.beaver.receive`, before the triple is handed to any product.

*Correctness.*  Honest dealer: ``sigma = R a b - a'' b - (R a - a'') b = 0``.

*Soundness.*  Write ``c = a b + E`` and ``c'' = a'' b + E''``: the dealer fixes ``E`` and
``E''`` (as any function of what it knows, every party's seed included) when it sends the
correction, before ``R`` exists, and never learns ``R``.  Then ``sigma = R E - E''``.  If
``E = 0`` and ``E'' != 0``, ``sigma != 0``.  If ``E != 0``, take a column ``j`` of ``E`` with
a nonzero entry and in it an entry ``E_ij`` of lowest 2-adic valuation ``v <= 63``.  In one
row ``r`` of ``R``, with its other entries fixed, ``R_ri E_ij`` is uniform on the multiples of
``2^v`` (``2^(64 - v) >= 2`` values), so ``(R E)_rj`` equals ``E''_rj`` with probability at
most ``2^(v - 64) <= 1/2``.  The rows are independent: **a wrong triple passes with
probability at most 2^-kappa** (``2^-40`` with :data:`~smpc.beaver.DEFAULT_CHECKS`).  The
bound is reached by an error in the top bit only (``E`` a multiple of ``2^63``): that is why
the ring Z_2^64 needs ``kappa`` rows where a prime field would need one.

*Privacy.*  Each party's share of ``a''`` comes from its own seed, so ``a''`` is uniform to
any ``n - 1`` parties and ``rho`` is uniform: it reveals nothing about ``a``.  ``b`` enters the
check only inside shares (``rho b``) and is never opened.  ``sigma`` is zero for an honest
dealer; for a deviating one it is ``R E - E''`` -- a function of the triple, never of an
input -- and the triple is then thrown away.  The dealer receives nothing here.

*Cost.*  ``kappa (k + p)`` words opened per party, ``kappa p`` more words in the dealer's
correction, one 16-byte challenge per ordered pair of parties, two rounds; locally
``kappa m (k + p)`` multiply-adds and ``kappa m`` words of keystream (``R`` is made block by
block, so memory stays bounded).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from smpc import randomness
from smpc.beaver.online import open_shares
from smpc.beaver.requests import TripleRequest
from smpc.errors import ProtocolError
from smpc.transport import Transport

__all__ = ["CheckedTriple", "challenge_seed", "check_shapes", "fold", "verify"]

_BLOCK_ROWS = 1 << 14
_DOMAIN = b"smpc/v1/beaver/check"


@dataclass
class CheckedTriple:
    """One party's shares of a matmul triple and of its sacrificed companion ``(a'', c'')``."""

    index: int                       # the request's position (names R's stream)
    request: TripleRequest
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    check_a: np.ndarray              # kappa x k
    check_c: np.ndarray              # kappa x p


def check_shapes(req: TripleRequest) -> tuple[tuple[int, int], tuple[int, int]]:
    """Shapes of the sacrificed ``a''`` (``kappa x k``) and ``c''`` (``kappa x p``)."""
    _m, k, p = req.check_dims
    return (req.checks, k), (req.checks, p)


def challenge_seed(challenges: Sequence[bytes]) -> bytes:
    """The seed of ``R``: SHA-256 of every party's challenge, in party order."""
    h = hashlib.sha256(_DOMAIN)
    for c in challenges:
        h.update(c)
    return h.digest()[: randomness.SEED_BYTES]


def fold(seed: bytes, stream: str, rows: int, matrix: np.ndarray) -> np.ndarray:
    """``R @ matrix`` for ``R`` (``rows x m``) uniform, expanded from ``seed`` block by block."""
    m, q = matrix.shape
    out = np.zeros((rows, q), dtype=np.uint64)
    for block, start in enumerate(range(0, m, _BLOCK_ROWS)):
        stop = min(start + _BLOCK_ROWS, m)
        r = randomness.expand(seed, rows * (stop - start), f"{stream}/{block}")
        out += np.einsum("rm,mq->rq", r.reshape(rows, stop - start), matrix[start:stop])
    return out


def _recv_challenge(t: Transport, sender: str, tag: str) -> bytes:
    got = t.recv_bytes(sender, tag, max_len=randomness.SEED_BYTES)
    if len(got) != randomness.SEED_BYTES:
        raise ProtocolError(f"{sender} sent a {len(got)}-byte challenge for {tag!r}", peer=sender)
    return got


def verify(t: Transport, parties: Sequence[str], dealer: str, challenge: bytes,
           triples: Sequence[CheckedTriple], tag: str) -> None:
    """Every party: check ``triples`` together (module docstring); this party's own
    ``challenge`` was already sent to the others under ``f"{tag}/challenge"``.

    Raises :class:`~smpc.errors.ProtocolError` blamed on ``dealer`` if any triple is wrong.
    Reveals the uniform ``rho`` (tag ``f"{tag}/rho"``) and ``sigma`` (``f"{tag}/sigma"``),
    zero for an honest dealer.
    """
    theirs = {p: _recv_challenge(t, p, f"{tag}/challenge") for p in parties if p != t.me}
    seed = challenge_seed([challenge if p == t.me else theirs[p] for p in parties])
    rho_parts: list[np.ndarray] = []
    folded: list[tuple[CheckedTriple, np.ndarray]] = []  # each triple with its R c
    for ct in triples:
        m, k, p = ct.request.check_dims
        both = fold(seed, f"beaver/check/{ct.index}", ct.request.checks,
                    np.hstack([ct.a.reshape(m, k), ct.c.reshape(m, p)]))
        rho_parts.append((both[:, :k] - ct.check_a).ravel())
        folded.append((ct, both[:, k:]))
    rho = open_shares(t, parties, np.concatenate(rho_parts), f"{tag}/rho")
    sigma_parts: list[np.ndarray] = []
    offset = 0
    for ct, rc in folded:
        _m, k, p = ct.request.check_dims
        kappa = ct.request.checks
        rho_j = rho[offset: offset + kappa * k].reshape(kappa, k)
        offset += kappa * k
        rho_b = np.matmul(rho_j, ct.b.reshape(k, p))
        sigma_parts.append((rc - ct.check_c - rho_b).ravel())
    sigma = open_shares(t, parties, np.concatenate(sigma_parts), f"{tag}/sigma")
    wrong = int(np.count_nonzero(sigma))
    if wrong:
        raise ProtocolError(
            f"the triples {dealer} dealt failed their check ({wrong} of {sigma.size} check "
            f"values are not zero): {dealer} sent a wrong correction; the triples were "
            "discarded before anything that depends on an input was opened", peer=dealer)
