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


def _forging_dealer(parties: list[str], requests: list[beaver.Request], position: int,
                    delta: int = 1) -> Callable[[Transport], None]:
    def role(t: Transport) -> None:
        for p in parties:
            t.send(p, "deal/hello", dealing._hello(parties, requests))
        seeds = [dealing._recv_seed(t, p, "deal/seed") for p in parties]
        correction = dealing._corrections(seeds, requests)
        correction[position: position + 1] += np.uint64(delta)
        t.send(parties[-1], "deal/correction", correction)
    return role


def test_the_check_sees_every_row_and_column_across_blocks(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """``R`` is made block by block (:func:`smpc.beaver.checking.fold`); with blocks of 4 rows
    and a 10 x 2 product, an error of 1 in any single element of ``c`` -- first, last, at a
    block edge, in either column -- or of ``c''`` fails the check, and an honest triple over
    several blocks passes.  Catches a fold that skips a row or a block, or a column of the
    product.  False negatives: at most 2^-40 per case."""
    monkeypatch.setattr(checking, "_BLOCK_ROWS", 4)
    parties = parties_of(2)
    req = beaver.TripleRequest.matmul((10, 3), (3, 2), checks=40)
    requests: list[beaver.Request] = [req]
    shares, _messages = deal_and_receive(2, requests)
    c = sharing.reconstruct([shares[p][0].c for p in parties])
    a = sharing.reconstruct([shares[p][0].a for p in parties])
    b = sharing.reconstruct([shares[p][0].b for p in parties])
    np.testing.assert_array_equal(c, np.matmul(a, b, dtype=np.uint64))
    for position in (0, 1, 7, 8, 9, 19, 20, 20 + 79):
        with pytest.raises(ProtocolError, match="failed their check") as e:
            deal_and_receive(2, requests, _forging_dealer(parties, requests, position))
        assert e.value.peer == "dealer", position


SAME_SIZE = {  # (dealt, expected): corrections of equal length, different meaning
    "kind": (beaver.TripleRequest.mul(6), beaver.TripleRequest.dot((6, 1))),
    "shape": (beaver.TripleRequest.matmul((2, 3), (3,)), beaver.TripleRequest.matmul((2, 4), (4,))),
    "frac-bits": (beaver.TruncRequest(5, frac_bits=16, spares=3),
                  beaver.TruncRequest(5, frac_bits=20, spares=3)),
    "bound": (beaver.TruncRequest(5, bound_bits=40, spares=3),
              beaver.TruncRequest(5, bound_bits=41, spares=3)),
}


@pytest.mark.parametrize("case", list(SAME_SIZE))
def test_a_hello_for_other_requests_of_the_same_size_is_refused(case: str) -> None:
    """The dealer deals a request whose correction has the length the parties expect but
    another meaning (another kind, shape, ``f`` or ``l``): every party refuses the hello, naming
    the dealer, before its seed leaves -- the correction's length alone would not tell (the
    product would be wrong, silently).  Catches a hello that omits a field."""
    dealt, expected = SAME_SIZE[case]
    assert dealing._correction_size(dealt) == dealing._correction_size(expected)
    parties = parties_of(2)
    errors: dict[str, BaseException] = {}

    def party(t: Transport) -> Any:
        try:
            return beaver.receive(t, "dealer", parties, [expected], "deal")
        except ProtocolError as exc:
            errors[t.me] = exc
            assert t.traffic.messages_sent == 0
            raise

    with pytest.raises(ProtocolError, match="describes other parties or requests"):
        simulator.run({"p0": party, "p1": party,
                       "dealer": lambda t: beaver.deal(t, parties, [dealt], "deal")}, timeout=10)
    assert set(errors) == set(parties)
    assert all(getattr(e, "peer", None) == "dealer" for e in errors.values())


def test_only_dealer_requests_are_dealt() -> None:
    """``deal``, ``receive`` and ``deal_local`` refuse anything but a TripleRequest or a
    TruncRequest before any message or seed, and two parties are the minimum."""
    bad: list[Any] = [beaver.TripleRequest.mul(2), "mul(2)"]
    with pytest.raises(InputError, match="not a dealer request"):
        beaver.deal_local(bad, 2)
    with pytest.raises(InputError, match="at least two parties"):
        beaver.deal_local([beaver.TripleRequest.mul(2)], 1)
    for role in ("dealer", "p0"):
        sent: dict[str, int] = {}

        def run(t: Transport, role: str = role, sent: dict[str, int] = sent) -> None:
            try:
                if role == "dealer":
                    beaver.deal(t, ["p0", "p1"], bad, "deal")
                else:
                    beaver.receive(t, "dealer", ["p0", "p1"], bad, "deal")
            finally:
                sent[t.me] = t.traffic.messages_sent

        with pytest.raises(InputError, match="not a dealer request"):
            simulator.run({role: run, "p1": lambda t: None}, timeout=5)
        assert sent == {role: 0}


@pytest.mark.parametrize("role", ["dealer", "p0"])
def test_fewer_than_two_or_repeated_parties_are_refused(role: str) -> None:
    """A dealer asked to deal to one party (which would get the whole triple as its
    correction) or to a party named twice, and a party asked to receive so, refuse before
    they send anything."""
    for parties, why in ((["p0"], "at least two parties"), (["p0", "p0"], "distinct")):
        sent: dict[str, int] = {}

        def run(t: Transport, parties: list[str] = parties, sent: dict[str, int] = sent
                ) -> None:
            try:
                if t.me == "dealer":
                    beaver.deal(t, parties, [beaver.TripleRequest.mul(2)], "deal")
                else:
                    beaver.receive(t, "dealer", parties, [beaver.TripleRequest.mul(2)], "deal")
            finally:
                sent[t.me] = t.traffic.messages_sent

        other = "p0" if role == "dealer" else "dealer"
        with pytest.raises(InputError, match=why):
            simulator.run({role: run, other: lambda t: None}, timeout=5)
        assert sent == {role: 0}


def test_a_long_seed_is_refused_at_its_length_bound() -> None:
    """A 17-byte 'seed' is refused by the dealer on receipt (the bound of 16 bytes), blamed on
    the party that sent it."""
    parties = parties_of(2)
    requests = [beaver.TripleRequest.mul(3)]

    def liar(t: Transport) -> None:
        t.recv_array("dealer", "deal/hello", np.uint64)
        t.send("dealer", "deal/seed", bytes(17))

    roles: dict[str, Callable[[Transport], Any]] = {
        "p0": liar, "p1": lambda t: beaver.receive(t, "dealer", parties, requests, "deal"),
        "dealer": lambda t: beaver.deal(t, parties, requests, "deal")}
    with pytest.raises(ProtocolError, match="17 bytes for 'deal/seed', max 16") as e:
        simulator.run(roles, timeout=10)
    assert e.value.peer == "p0"


def test_deal_local_draws_a_fresh_seed_per_party_and_call() -> None:
    """``deal_local`` (tests and benchmarks) plays every party: each gets its own masks, and
    another call gets other masks.  Catches one seed for every party (equal shares) or a
    fixed seed (equal triples across calls).  A chance equality has probability 2^-64 per
    element."""
    req = beaver.TripleRequest.mul(64)
    first, second = beaver.deal_local([req], 3), beaver.deal_local([req], 3)
    masks = []
    for shares in (*first, *second):
        triple = shares[0]
        assert isinstance(triple, beaver.TripleShare)
        masks.append(triple.a)
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            assert not np.any(masks[i] == masks[j]), (i, j)


@pytest.mark.parametrize("length", [15, 17])
def test_a_challenge_of_the_wrong_length_is_refused(length: int) -> None:
    """A check challenge one byte short or long is refused on receipt (a long one at the
    16-byte bound), blamed on the party that sent it."""
    parties = parties_of(2)
    req = beaver.TripleRequest.matmul((2, 2), (2,), checks=2)

    def liar(t: Transport) -> None:
        t.send("p1", "deal/check/challenge", bytes(length))
        t.recv_array("dealer", "deal/hello", np.uint64)
        t.send("dealer", "deal/seed", bytes(16))

    roles: dict[str, Callable[[Transport], Any]] = {
        "p0": liar, "p1": lambda t: beaver.receive(t, "dealer", parties, [req], "deal"),
        "dealer": lambda t: beaver.deal(t, parties, [req], "deal")}
    why = "15-byte challenge" if length == 15 else "17 bytes for 'deal/check/challenge', max 16"
    with pytest.raises(ProtocolError, match=why) as e:
        simulator.run(roles, timeout=10)
    assert e.value.peer == "p0"


def test_several_checked_triples_in_one_deal_are_each_checked() -> None:
    """Two checked triples of different shapes (and an unchecked one between them) in one
    deal: honest, both pass and are exact; an error of 1 in the *second* one's ``c`` or
    ``c''`` fails the check.  Catches a check that reads the second triple's ``rho`` at the
    first one's place."""
    parties = parties_of(3)
    first = beaver.TripleRequest.matmul((5, 2), (2, 3), checks=6)
    second = beaver.TripleRequest.matmul((4, 3), (3,), checks=7)
    requests: list[beaver.Request] = [first, beaver.TripleRequest.mul(3), second]
    shares, _messages = deal_and_receive(3, requests)
    for j in (0, 2):
        got = [shares[p][j] for p in parties]
        a, b, c = (sharing.reconstruct([getattr(s, name) for s in got]) for name in "abc")
        np.testing.assert_array_equal(c, np.matmul(a, b))
    start = 15 + 6 * 3 + 3  # the second checked triple's c, then its c''
    for position in (start, start + 3, start + 4, start + 4 + 6):
        with pytest.raises(ProtocolError, match="failed their check"):
            deal_and_receive(3, requests, _forging_dealer(parties, requests, position))


def test_a_node_outside_the_parties_cannot_receive() -> None:
    with pytest.raises(InputError, match="is not one of the parties"):
        simulator.run({"p9": lambda t: beaver.receive(t, "dealer", ["p0", "p1"],
                                                      [beaver.TripleRequest.mul(1)], "d")},
                      timeout=5)


def test_triple_requests_are_normalised_and_validated() -> None:
    """Shapes become tuples, ``checks`` a Python int (the hello is JSON), the checks bound is
    inclusive, and malformed kinds and shapes are refused."""
    req = beaver.TripleRequest("matmul", [2, 3], [3], np.int64(128))  # type: ignore[arg-type]
    assert req.x_shape == (2, 3) and req.y_shape == (3,) and type(req.x_shape) is tuple
    assert type(req.y_shape) is tuple
    assert req.checks == 128 and type(req.checks) is int
    assert dealing._hello(["p0", "p1"], [req]).shape == (dealing.HELLO_WORDS,)
    assert beaver.TripleRequest.mul(()).z_shape == ()
    with pytest.raises(InputError, match="at least one axis"):
        beaver.TripleRequest.dot(())
    with pytest.raises(InputError, match="unknown triple kind"):
        beaver.TripleRequest("conv", (2,), (2,))  # type: ignore[arg-type]
