"""The offline phase: the dealer's messages, and each party's expansion of them.

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

Guarantees: :func:`receive` returns shares whose sum over the parties is a correct triple
(``c = a (*) b``) or truncation pair (``[r], [r >> f]``) for every request, in order, and raises
:class:`~smpc.errors.ProtocolError` for a message that does not fit the requests.  Reveals: to
the dealer nothing (it runs before the inputs and receives nothing); to each party only its own
pseudorandom shares.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from smpc import randomness
from smpc.beaver.requests import Request, TripleRequest, TruncRequest, _size
from smpc.beaver.shares import Share, TripleShare, TruncPairShare
from smpc.errors import InputError, ProtocolError
from smpc.transport import Transport

__all__ = ["deal", "deal_local", "receive"]

_SEED_WORDS = randomness.SEED_BYTES // 8
_STREAM = "beaver"


def _labels(j: int) -> tuple[str, str, str]:
    return f"{_STREAM}/{j}/a", f"{_STREAM}/{j}/b", f"{_STREAM}/{j}/c"


def _trunc_labels(j: int) -> tuple[str, str]:
    return f"{_STREAM}/{j}/r", f"{_STREAM}/{j}/rt"


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


def _index(t: Transport, parties: Sequence[str]) -> int:
    if t.me not in parties:
        raise InputError(f"{t.me!r} is not one of the parties {list(parties)}")
    return list(parties).index(t.me)
