"""Dealing with the parties' own masks, and the check of a dealt matmul triple (smpc.beaver).

Every protocol test runs real roles in the simulator.  Attacks on the dealing by a deviating
dealer, and the check's behaviour against them, are in ``test_dealer_attacks.py``; here: the
honest path is exact, the masks are the parties' own, the check opens nothing, and every
malformed message is refused and blamed on its sender.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from smpc import beaver, randomness, sharing, simulator
from smpc.beaver import checking, dealing
from smpc.errors import InputError, ProtocolError
from smpc.transport import Transport

from . import leakscan
from .uniformity import assert_jointly_uniform, assert_uniform


def parties_of(n: int) -> list[str]:
    return [f"p{i}" for i in range(n)]


def deal_and_receive(n: int, requests: list[beaver.Request],
                     dealer: Callable[[Transport], None] | None = None
                     ) -> tuple[dict[str, list[beaver.Share]], list[leakscan.Message]]:
    """Each party's shares (and every message) after dealing ``requests``."""
    parties = parties_of(n)
    roles: dict[str, Callable[[Transport], Any]] = {
        p: (lambda t: beaver.receive(t, "dealer", parties, requests, "deal")) for p in parties}
    roles["dealer"] = dealer or (lambda t: beaver.deal(t, parties, requests, "deal"))
    sim, messages = leakscan.record(roles)
    return {p: sim.results[p] for p in parties}, messages


CHECKED = {
    "matrix-matrix": beaver.TripleRequest.matmul((9, 4), (4, 3), checks=5),
    "matrix-vector": beaver.TripleRequest.matmul((9, 4), (4,), checks=5),
    "vector-matrix": beaver.TripleRequest.matmul((4,), (4, 3), checks=5),
    "vector-vector": beaver.TripleRequest.matmul((4,), (4,), checks=5),
}


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("case", list(CHECKED))
def test_checked_triples_reconstruct_exactly_and_pass(n: int, case: str) -> None:
    """An honest dealer's checked triple passes its check (no error) and is exact:
    ``sum c_i = (sum a_i) @ (sum b_i)`` mod 2^64, for every operand shape, beside an
    unchecked triple and truncation pairs in the same deal.  Catches a check that rejects
    honest triples (a wrong ``sigma`` formula, party 0 adding a public term twice) and a
    correction laid out differently from how the last party reads it."""
    req = CHECKED[case]
    requests: list[beaver.Request] = [beaver.TripleRequest.mul(7), req, beaver.TruncRequest(5)]
    shares, _messages = deal_and_receive(n, requests)
    mine = [shares[p][1] for p in parties_of(n)]
    assert all(isinstance(s, beaver.TripleShare) for s in mine)
    a = sharing.reconstruct([s.a for s in mine])
    b = sharing.reconstruct([s.b for s in mine])
    c = sharing.reconstruct([s.c for s in mine])
    np.testing.assert_array_equal(c, np.asarray(np.matmul(a, b, dtype=np.uint64)))
    assert c.shape == req.z_shape
    mul = [shares[p][0] for p in parties_of(n)]
    np.testing.assert_array_equal(sharing.reconstruct([s.c for s in mul]),
                                  sharing.reconstruct([s.a for s in mul])
                                  * sharing.reconstruct([s.b for s in mul]))
    pairs = [shares[p][2] for p in parties_of(n)]
    r = sharing.reconstruct([s.r for s in pairs])
    np.testing.assert_array_equal(sharing.reconstruct([s.r_trunc for s in pairs]),
                                  r >> np.uint64(16))


def test_the_check_opens_nothing_about_the_triple() -> None:
    """The check opens ``rho = R a - a''`` and ``sigma = 0``: ``rho`` shares no element with
    ``R a`` (which, with the later opening ``x - a``, would reveal ``R x``), and is uniform.

    ``R`` is recomputed here from the challenges the parties exchanged.  Catches the
    sacrificed mask ``a''`` dropped from ``rho`` (every element would match) and ``R`` not
    derived from every party's challenge.  A chance match has probability 2^-64 per element;
    uniformity at false-positive rate 1e-9 (:mod:`tests.unit.uniformity`).
    """
    n = 3
    req = beaver.TripleRequest.matmul((300, 128), (128,), checks=40)
    shares, messages = deal_and_receive(n, [req])
    parties = parties_of(n)
    challenges = []
    for p in parties:
        sent = leakscan.select(messages, sender=p, suffix="/check/challenge")
        assert {m.to for m in sent} == set(parties) - {p}
        assert len({m.raw for m in sent}) == 1  # the same challenge to every peer
        challenges.append(sent[0].raw)
    seed = checking.challenge_seed(challenges)
    a = sharing.reconstruct([shares[p][0].a for p in parties])
    r_a = checking.fold(seed, "beaver/check/0", 40, a)
    rho = sum(m.payload for m in leakscan.select(messages, to="p0", suffix="/check/rho")) \
        + leakscan.select(messages, sender="p0", to="p1", suffix="/check/rho")[0].payload
    assert rho.shape == (40 * 128,)
    assert not np.any(rho == r_a.ravel()), "the check opened R a"
    assert_uniform(rho, "opened rho")
    sigma = sum(m.payload for m in leakscan.select(messages, to="p0", suffix="/check/sigma")) \
        + leakscan.select(messages, sender="p0", to="p1", suffix="/check/sigma")[0].payload
    assert sigma.shape == (40,) and not np.any(sigma)


_dealer_thread = threading.local()


def test_each_party_draws_its_own_masks_whatever_the_dealer_does(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Three parties, a product triple and truncation pairs: the dealer draws no randomness at
    all (any attempt raises here), each party's shares of ``a``, ``b`` and ``r`` are the
    expansion of the seed *it* sent the dealer, and any two parties' masks are jointly
    uniform (independent).

    Catches a dealer that chooses (or could choose) a party's masks -- the flaw of the
    dealing before issue 11, where the dealer's seeds made every share -- and two parties
    whose masks are equal or related.  Chi-square at false-positive rate 1e-9 per statistic.
    """
    real = randomness.fresh_seed

    def fresh_seed() -> bytes:
        if getattr(_dealer_thread, "on", False):
            raise AssertionError("the dealer drew randomness")
        return real()

    monkeypatch.setattr(randomness, "fresh_seed", fresh_seed)
    n, count = 3, 4096
    parties = parties_of(n)
    requests: list[beaver.Request] = [beaver.TripleRequest.mul(count), beaver.TruncRequest(count)]

    def dealer(t: Transport) -> None:
        _dealer_thread.on = True
        beaver.deal(t, parties, requests, "deal")

    shares, messages = deal_and_receive(n, requests, dealer)
    for p in parties:
        (seed,) = leakscan.select(messages, sender=p, to="dealer", suffix="/seed")
        triple, pair = shares[p]
        assert isinstance(triple, beaver.TripleShare) and isinstance(pair, beaver.TruncPairShare)
        np.testing.assert_array_equal(triple.a, randomness.expand(seed.raw, count, "beaver/0/a"))
        np.testing.assert_array_equal(triple.b, randomness.expand(seed.raw, count, "beaver/0/b"))
        np.testing.assert_array_equal(pair.r, randomness.expand(seed.raw, pair.request.total,
                                                                "beaver/1/r"))
    for i, j in ((0, 1), (1, 2), (0, 2)):
        si, sj = shares[parties[i]], shares[parties[j]]
        for what, u, v in (("a", si[0].a, sj[0].a), ("r", si[1].r, sj[1].r)):
            assert_jointly_uniform(u, v, f"{what} of p{i} and p{j}")
            assert_uniform(u - v, f"{what} of p{i} minus p{j}")


# ------------------------------------------------------------------------ malformed messages


def test_a_correction_of_the_wrong_length_is_blamed_on_the_dealer() -> None:
    """The hello fits, the correction is one word short: the last party refuses it, naming
    the dealer (as the runtime's ``corrupt:mid-deal`` fault expects)."""
    parties = parties_of(2)
    requests = [beaver.TripleRequest.mul(10)]

    def dealer(t: Transport) -> None:
        for p in parties:
            t.send(p, "deal/hello", dealing._hello(parties, requests))
        seeds = [t.recv_bytes(p, "deal/seed") for p in parties]
        t.send(parties[-1], "deal/correction", dealing._corrections(seeds, requests)[:-1])

    with pytest.raises(ProtocolError, match="dealer message deal/correction has shape") as e:
        deal_and_receive(2, requests, dealer)
    assert e.value.peer == "dealer"


def test_a_hello_for_other_parties_is_refused() -> None:
    """A dealer describing the same requests for the parties in another order (so that it
    would send the correction to someone else) is refused before any seed leaves a party."""
    parties = parties_of(2)
    requests = [beaver.TripleRequest.mul(3)]
    seen: dict[str, int] = {}

    def party(t: Transport) -> Any:
        try:
            return beaver.receive(t, "dealer", parties, requests, "deal")
        finally:
            seen[t.me] = t.traffic.messages_sent

    def dealer(t: Transport) -> None:
        beaver.deal(t, list(reversed(parties)), requests, "deal")

    with pytest.raises(ProtocolError, match="describes other parties or requests") as e:
        simulator.run({"p0": party, "p1": party, "dealer": dealer}, timeout=10)
    assert e.value.peer == "dealer"
    assert seen == {"p0": 0, "p1": 0}  # no seed was sent


def test_a_short_seed_is_blamed_on_the_party_that_sent_it() -> None:
    parties = parties_of(2)
    requests = [beaver.TripleRequest.mul(3)]

    def liar(t: Transport) -> None:
        t.recv_array("dealer", "deal/hello", np.uint64)
        t.send("dealer", "deal/seed", bytes(15))

    roles: dict[str, Callable[[Transport], Any]] = {
        "p0": liar, "p1": lambda t: beaver.receive(t, "dealer", parties, requests, "deal"),
        "dealer": lambda t: beaver.deal(t, parties, requests, "deal")}
    with pytest.raises(ProtocolError, match="15-byte seed") as e:
        simulator.run(roles, timeout=10)
    assert e.value.peer == "p0"


def test_checks_are_validated() -> None:
    assert beaver.TripleRequest.matmul((3, 2), (2,), checks=beaver.DEFAULT_CHECKS).checks == 40
    assert beaver.TripleRequest.matmul((3, 2), (2,)).checks == 0
    for bad in (-1, 129, True, 2.0):
        with pytest.raises(InputError, match="checks must be"):
            beaver.TripleRequest("matmul", (3, 2), (2,), bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="only matmul triples"):
        beaver.TripleRequest("mul", (3,), (3,), 4)
    with pytest.raises(InputError, match="must not be one of the parties"):
        simulator.run({"p0": lambda t: beaver.receive(t, "p1", ["p0", "p1"],
                                                      [beaver.TripleRequest.mul(1)], "d"),
                       "p1": lambda t: None}, timeout=5)
