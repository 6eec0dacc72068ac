"""The offline phase: each party's own masks, the dealer's correction, the check.

Offline phase: masks chosen by the parties, a correction from the dealer
========================================================================

Every party draws **its own** 16-byte seed from the OS CSPRNG and expands from it, under
distinct stream labels (:func:`smpc.randomness.expand`), its shares of ``a`` and ``b`` (and of
``r`` for truncation pairs) -- and, except the last party, its shares of ``c`` (and of
``r >> f``).  The dealer never chooses a mask: it

1. sends every party a *hello* (``f"{tag}/hello"``, 4 words): a digest of the public parties
   and requests, which each party checks (and which tells it that the dealer has the session,
   so that its seed can be delivered);
2. receives every party's seed (``f"{tag}/seed"``, 16 bytes) -- the only thing the dealer ever
   receives: no input, no share of an input, no opening;
3. sends the **last party only** one correction array (``f"{tag}/correction"``): per triple
   ``c - sum of the other parties' c shares`` (plus, for a checked triple, the same for the
   sacrificed ``c''``), per truncation request ``(r >> f) - sum of the others' shares``.

So each party's shares of ``a``, ``b`` and ``r`` are uniform, and independent of every other
party's, **whatever the dealer does** -- it cannot make two parties' masks equal, related, or
the same as in another session.  What a deviating dealer still controls is the correction:

* for a matmul triple requested with ``checks`` (what :mod:`smpc.linear` uses), the parties
  check the triple before :func:`receive` returns (:mod:`smpc.beaver.checking`): a wrong
  correction -- including one that hides another party's seed -- raises
  :class:`~smpc.errors.ProtocolError` naming the dealer before any input-dependent value is
  opened, except with probability ``2^-checks``;
* an unchecked triple or truncation pair trusts the correction: a wrong one makes the product
  wrong (silently), and what the dealer hides in it reaches the last party.  That is the
  dealer colluding with the last party, which the trust model excludes (SECURITY.md).

Wire cost: the parties' seeds (16 bytes each, to the dealer), the hellos (32 bytes each), one
``c``-sized array (plus ``checks x p`` words per checked triple) to the last party: about one
``c`` on the wire, not ``n`` full triples.  The shares are computationally uniform under the
PRG assumption stated in :mod:`smpc.randomness`.

Guarantees: :func:`receive` returns shares whose sum over the parties is a correct triple
(``c = a (*) b``) or truncation pair (``[r], [r >> f]``) for every request, in order, when the
dealer is honest -- and for a checked triple *only* then (else ProtocolError); it raises
:class:`~smpc.errors.ProtocolError` blamed on the dealer for a message that does not fit the
requests.  Reveals: to the dealer, the parties' seeds (hence the triples, which it is trusted
with), nothing about inputs; to each party only its own pseudorandom shares and the uniform
check openings.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np

from smpc import randomness
from smpc.beaver import checking
from smpc.beaver.members import check_parties, index_of
from smpc.beaver.requests import Request, TripleRequest, TruncRequest, _size
from smpc.beaver.shares import Share, TripleShare, TruncPairShare
from smpc.errors import InputError, ProtocolError
from smpc.transport import Transport

__all__ = ["deal", "deal_local", "receive"]

_STREAM = "beaver"
HELLO_WORDS = 4


def _labels(j: int) -> tuple[str, str, str]:
    return f"{_STREAM}/{j}/a", f"{_STREAM}/{j}/b", f"{_STREAM}/{j}/c"


def _check_labels(j: int) -> tuple[str, str]:
    return f"{_STREAM}/{j}/check-a", f"{_STREAM}/{j}/check-c"


def _trunc_labels(j: int) -> tuple[str, str]:
    return f"{_STREAM}/{j}/r", f"{_STREAM}/{j}/rt"


def _correction_size(req: Request) -> int:
    if isinstance(req, TripleRequest):
        _check_a, check_c = checking.check_shapes(req)
        return _size(req.z_shape) + _size(check_c)
    return req.total


def _check_requests(requests: Sequence[Request]) -> None:
    for req in requests:
        if not isinstance(req, (TripleRequest, TruncRequest)):
            raise InputError(f"not a dealer request: {req!r}")


def _hello(parties: Sequence[str], requests: Sequence[Request]) -> np.ndarray:
    """The dealer's first message: a digest of the public parties and requests (4 words)."""
    described: list[object] = []
    for req in requests:
        if isinstance(req, TripleRequest):
            described.append(["triple", req.kind, req.x_shape, req.y_shape, req.checks])
        else:
            described.append(["trunc", req.count, req.frac_bits, req.l_bits, req.spares])
    text = json.dumps([list(parties), described]).encode()
    digest = hashlib.sha256(b"smpc/v1/beaver/hello\0" + text).digest()
    return np.frombuffer(digest, "<u8").astype(np.uint64)


def _expand(seed: bytes, shape: tuple[int, ...], label: str) -> np.ndarray:
    return randomness.expand(seed, _size(shape), label).reshape(shape)


def _sum_expansions(seeds: Sequence[bytes], shape: tuple[int, ...], label: str) -> np.ndarray:
    total = _expand(seeds[0], shape, label)
    for seed in seeds[1:]:
        total += _expand(seed, shape, label)
    return total


def _last_share(total: np.ndarray, seeds: Sequence[bytes], label: str) -> np.ndarray:
    """``total`` minus the shares the parties before the last expand under ``label``."""
    out = total.copy()
    for seed in seeds[:-1]:
        out -= _expand(seed, total.shape, label)
    return out.ravel()


def _corrections(seeds: Sequence[bytes], requests: Sequence[Request]) -> np.ndarray:
    """The dealer's one message to the last party, from every party's seed (in order)."""
    parts: list[np.ndarray] = [np.zeros(0, dtype=np.uint64)]
    for j, req in enumerate(requests):
        if isinstance(req, TripleRequest):
            la, lb, lc = _labels(j)
            a = _sum_expansions(seeds, req.x_shape, la)
            b = _sum_expansions(seeds, req.y_shape, lb)
            parts.append(_last_share(req.combine(a, b).reshape(req.z_shape), seeds, lc))
            if req.checks:
                check_a_shape, _check_c = checking.check_shapes(req)
                lca, lcc = _check_labels(j)
                _m, k, p = req.check_dims
                check_a = _sum_expansions(seeds, check_a_shape, lca)
                check_c = np.matmul(check_a, b.reshape(k, p))
                parts.append(_last_share(check_c, seeds, lcc))
        else:
            lr, lrt = _trunc_labels(j)
            r = _sum_expansions(seeds, (req.total,), lr)
            parts.append(_last_share(r >> np.uint64(req.frac_bits), seeds, lrt))
    return np.concatenate(parts)


def _unpack(seed: bytes, correction: np.ndarray | None, requests: Sequence[Request]
            ) -> tuple[list[Share], list[checking.CheckedTriple]]:
    """One party's shares from its own seed (and, for the last party, the correction).

    Returns the shares in request order and, for the checked triples, what the check needs.
    """
    offset = 0
    out: list[Share] = []
    checks: list[checking.CheckedTriple] = []

    def take(size: int) -> np.ndarray:
        nonlocal offset
        assert correction is not None
        part = correction[offset: offset + size].copy()
        offset += size
        return part

    for j, req in enumerate(requests):
        if isinstance(req, TripleRequest):
            la, lb, lc = _labels(j)
            a = _expand(seed, req.x_shape, la)
            b = _expand(seed, req.y_shape, lb)
            c = _expand(seed, req.z_shape, lc) if correction is None \
                else take(_size(req.z_shape)).reshape(req.z_shape)
            out.append(TripleShare(req, a, b, c))
            if req.checks:
                check_a_shape, check_c_shape = checking.check_shapes(req)
                lca, lcc = _check_labels(j)
                check_c = _expand(seed, check_c_shape, lcc) if correction is None \
                    else take(_size(check_c_shape)).reshape(check_c_shape)
                checks.append(checking.CheckedTriple(
                    j, req, a, b, c, _expand(seed, check_a_shape, lca), check_c))
        else:
            lr, lrt = _trunc_labels(j)
            r = _expand(seed, (req.total,), lr)
            rt = _expand(seed, (req.total,), lrt) if correction is None else take(req.total)
            out.append(TruncPairShare(req, r, rt))
    return out, checks


def _recv_seed(t: Transport, sender: str, tag: str) -> bytes:
    seed = t.recv_bytes(sender, tag, max_len=randomness.SEED_BYTES)
    if len(seed) != randomness.SEED_BYTES:
        raise ProtocolError(f"{sender} sent a {len(seed)}-byte seed for {tag!r}", peer=sender)
    return seed


def deal(t: Transport, parties: Sequence[str], requests: Sequence[Request], tag: str) -> None:
    """Dealer role: hello to every party, every party's seed back, the correction to the last.

    Sends each party 32 bytes (``f"{tag}/hello"``), receives 16 from each (``f"{tag}/seed"``),
    and sends the last party one array (``f"{tag}/correction"``): ``c``-sized per triple (plus
    ``checks x p`` words if checked), ``count + spares`` words per truncation request.  The
    dealer receives nothing but the seeds: no input and no opening.  ``requests`` is public
    and must be the same list at every party.
    """
    check_parties(parties)
    if t.me in parties:
        raise InputError(f"the dealer {t.me!r} must not be one of the parties")
    _check_requests(requests)
    hello = _hello(parties, requests)
    for name in parties:
        t.send(name, f"{tag}/hello", hello)
    seeds = [_recv_seed(t, name, f"{tag}/seed") for name in parties]
    t.send(parties[-1], f"{tag}/correction", _corrections(seeds, requests))


def receive(
    t: Transport, dealer: str, parties: Sequence[str], requests: Sequence[Request], tag: str
) -> list[Share]:
    """Party role: draw this party's own seed, get the dealer's correction (last party), check.

    Returns one :class:`TripleShare` or :class:`TruncPairShare` per request, in order; checked
    triples have passed their check (:mod:`smpc.beaver.checking`, tags ``f"{tag}/check/..."``).
    Raises :class:`~smpc.errors.ProtocolError` blamed on the dealer if its hello describes other
    parties or requests, if its correction does not fit the requests, or if a checked triple is
    wrong.
    """
    check_parties(parties)
    _check_requests(requests)
    if dealer in parties:
        raise InputError(f"the dealer {dealer!r} must not be one of the parties")
    last = index_of(t, parties) == len(parties) - 1
    seed = randomness.fresh_seed()
    checked = any(isinstance(r, TripleRequest) and r.checks for r in requests)
    challenge = randomness.fresh_seed() if checked else b""
    if checked:  # early: the challenge travels party to party while the dealer works
        t.broadcast(parties, f"{tag}/check/challenge", challenge)
    hello = t.recv_array(dealer, f"{tag}/hello", np.uint64, (HELLO_WORDS,))
    if not np.array_equal(hello, _hello(parties, requests)):
        raise ProtocolError(f"dealer message {tag}/hello describes other parties or requests "
                            "than these", peer=dealer)
    t.send(dealer, f"{tag}/seed", seed)
    correction = None
    if last:
        correction = t.recv_array(dealer, f"{tag}/correction", np.uint64)
        expected = sum(_correction_size(r) for r in requests)
        if correction.shape != (expected,):
            raise ProtocolError(f"dealer message {tag}/correction has shape {correction.shape}, "
                                f"expected ({expected},) for these requests", peer=dealer)
    shares, to_check = _unpack(seed, correction, requests)
    if to_check:
        checking.verify(t, parties, dealer, challenge, to_check, f"{tag}/check")
    return shares


def deal_local(requests: Sequence[Request], n: int) -> list[list[Share]]:
    """All ``n`` parties' shares in one process (tests and benchmarks only).

    Whoever calls this holds every share, so it is no protocol: it draws every party's seed,
    plays the dealer, and gives the shares :func:`deal` and :func:`receive` would (checked
    triples are not checked: the caller dealt them to itself).
    """
    if n < 2:
        raise InputError("Beaver products need at least two parties")
    _check_requests(requests)
    seeds = [randomness.fresh_seed() for _ in range(n)]
    correction = _corrections(seeds, requests)
    return [_unpack(seed, correction if i == n - 1 else None, requests)[0]
            for i, seed in enumerate(seeds)]
