"""Beaver misuse and edges: what must be refused, consumed once, or hold at an exact edge.

Privacy of the Beaver protocols rests on rules the code enforces rather than on arithmetic:
a triple or a set of truncation pairs is used once (reuse opens ``x - x'`` or ``z - z'``), a
share is a ring element, only the listed parties open, and a refused call consumes nothing
and sends nothing.  These tests check each rule where it is enforced, plus the edges of the
dealer truncation (the acceptance threshold, the last spare pair) and of local truncation
(a split that does not wrap is within one ulp), on hand-made shares where an edge needs
exact values: a dealt pair is an input of the online protocol, so writing one down is a test
vector, not a replacement of the CSPRNG.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from smpc import beaver, sharing, simulator
from smpc.encoding import EncodingRangeError, FixedPoint
from smpc.errors import InputError
from smpc.transport import Transport

FP = FixedPoint(16)
P2 = ["p0", "p1"]
M64 = 2**64


def both(body: Callable[[Transport, int], Any], parties: list[str] = P2,
         timeout: float = 10.0) -> simulator.SimulationResult:
    """Run ``body(t, index)`` at every party."""
    def role(i: int) -> Callable[[Transport], Any]:
        return lambda t: body(t, i)

    return simulator.run({p: role(i) for i, p in enumerate(parties)}, timeout=timeout)


# --------------------------------------------------------------------------- dealing


def test_dealing_refuses_foreign_requests_and_fewer_than_two_parties() -> None:
    with pytest.raises(InputError, match="not a dealer request"):
        beaver.deal_local(["triple please"], 2)  # type: ignore[list-item]
    for n in (1, 0):
        with pytest.raises(InputError, match="at least two parties"):
            beaver.deal_local([beaver.TripleRequest.mul(2)], n)


def test_every_request_is_unpacked_at_its_own_offset() -> None:
    """Pairs dealt *before* triples (and two sets of pairs) reconstruct correctly.

    The last party's message is ``seed | correction_0 | correction_1 | ...``: a wrong offset
    after a truncation request hands the next request someone else's correction.
    """
    requests: list[beaver.Request] = [
        beaver.TruncRequest(5), beaver.TripleRequest.mul(4),
        beaver.TruncRequest(3, frac_bits=8, bound_bits=40), beaver.TripleRequest.dot((2, 3)),
    ]
    shares = beaver.deal_local(requests, 3)
    for j, req in enumerate(requests):
        mine = [s[j] for s in shares]
        if isinstance(req, beaver.TripleRequest):
            a = sharing.reconstruct([s.a for s in mine])  # type: ignore[union-attr]
            b = sharing.reconstruct([s.b for s in mine])  # type: ignore[union-attr]
            c = sharing.reconstruct([s.c for s in mine])  # type: ignore[union-attr]
            np.testing.assert_array_equal(c, req.combine(a, b))
        else:
            r = sharing.reconstruct([s.r for s in mine])  # type: ignore[union-attr]
            rt = sharing.reconstruct([s.r_trunc for s in mine])  # type: ignore[union-attr]
            np.testing.assert_array_equal(rt, r >> np.uint64(req.frac_bits))


def test_deal_and_receive_refuse_repeated_party_names_and_foreign_requests() -> None:
    """A party list with a name twice is refused by the dealer and by a party, before any
    message; a party given something that is not a request refuses it before unpacking."""
    req = [beaver.TripleRequest.mul(2)]
    with pytest.raises(InputError, match="distinct"):
        simulator.run({"dealer": lambda t: beaver.deal(t, ["p0", "p0"], req, "d")}, timeout=5)
    with pytest.raises(InputError, match="distinct"):
        simulator.run({"p0": lambda t: beaver.receive(t, "dealer", ["p0", "p0"], req, "d")},
                      timeout=5)
    roles = {
        "dealer": lambda t: beaver.deal(t, P2, req, "d"),
        "p0": lambda t: beaver.receive(t, "dealer", P2, ["junk"], "d"),  # type: ignore[list-item]
        "p1": lambda t: beaver.receive(t, "dealer", P2, req, "d"),
    }
    with pytest.raises(InputError, match="not a dealer request"):
        simulator.run(roles, timeout=5)


# --------------------------------------------------------------------------- openings


def test_open_shares_refuses_non_ring_shares_outsiders_and_a_lone_party() -> None:
    """Only ``uint64`` shares are opened, only by a listed party, among at least two."""
    def body(t: Transport, i: int) -> None:
        share = np.array([1.5, 2.0]) if i == 0 else np.zeros(2, dtype=np.uint64)
        beaver.open_shares(t, P2, share, "o")

    with pytest.raises(InputError, match=r"must be a share in the ring \(uint64\)"):
        both(body)

    outsider = simulator.run(
        {"x": lambda t: _refused_outsider(t, lambda: beaver.open_shares(
            t, P2, np.zeros(2, dtype=np.uint64), "o"))}, timeout=5)
    assert outsider.results["x"] == 0  # refused before sending its share to anyone
    with pytest.raises(InputError, match="at least two parties"):
        simulator.run({"p0": lambda t: beaver.open_shares(
            t, ["p0"], np.zeros(2, dtype=np.uint64), "o")}, timeout=5)


def _refused_outsider(t: Transport, call: Callable[[], Any]) -> int:
    """Assert ``call`` refuses a caller outside the parties; return the messages it sent."""
    with pytest.raises(InputError, match="not one of the parties"):
        call()
    return t.traffic.messages_sent


# --------------------------------------------------------------------------- products

X = FP.encode(np.array([1.5, -2.0, 3.25]))
Y = FP.encode(np.array([-0.5, 4.0, 2.0]))
XS, YS = sharing.share(X, 2), sharing.share(Y, 2)


def _refused(call: Callable[[Transport, int, beaver.TripleShare, beaver.TruncPairShare], Any],
             match: str, requests: list[beaver.Request] | None = None,
             parties: list[str] = P2) -> None:
    """``call`` raises ``InputError(match)`` at every party, with the triple and the pair
    still unused and no message sent."""
    requests = requests or [beaver.TripleRequest.mul(3), beaver.TruncRequest(3)]
    dealt = beaver.deal_local(requests, len(parties))

    def body(t: Transport, i: int) -> int:
        triple, pair = dealt[i][0], dealt[i][1]
        assert isinstance(triple, beaver.TripleShare)
        assert isinstance(pair, beaver.TruncPairShare)
        with pytest.raises(InputError, match=match):
            call(t, i, triple, pair)
        assert not triple.used and not pair.used
        return t.traffic.messages_sent

    result = both(body, parties)
    assert set(result.results.values()) == {0}


def test_a_refused_product_consumes_nothing_and_sends_nothing() -> None:
    """Every argument check of ``mul`` runs before the triple is consumed or ``d, e`` open.

    A consumed triple cannot be used again (the computation must be redealt), and an
    opening made before a refusal would reveal masked operands for nothing.
    """
    _refused(lambda t, i, tr, pr: beaver.mul(t, ["p0"], tr, XS[i], YS[i], "m", method="none"),
             "at least two parties")
    _refused(lambda t, i, tr, pr: beaver.mul(t, P2, tr, XS[i], YS[i][:1], "m", method="none"),
             "do not match the triple")
    _refused(lambda t, i, tr, pr: beaver.mul(t, P2, tr, XS[i], YS[i], "m"),
             "dealer truncation needs truncation pairs")
    _refused(lambda t, i, tr, pr: beaver.mul(t, P2, tr, XS[i], YS[i], "m",
                                             method="bogus"),  # type: ignore[arg-type]
             "unknown truncation method")
    _refused(lambda t, i, tr, pr: beaver.mul(t, P2, tr, XS[i], YS[i], "m", pair=pr,
                                             frac_bits=8),
             "dealt for f=16")
    xs3, ys3 = sharing.share(X, 3), sharing.share(Y, 3)
    _refused(lambda t, i, tr, pr: beaver.mul(t, ["p0", "p1", "p2"], tr, xs3[i], ys3[i], "m",
                                             method="local"),
             "two parties only", parties=["p0", "p1", "p2"])


def test_triples_and_pairs_are_consumed_by_their_first_use() -> None:
    """After a product, its triple and its pairs are spent: a second use is refused.

    Reusing a triple opens ``x - a`` and ``x' - a``, whose difference is ``x - x'``; reusing
    truncation masks opens ``z + r`` and ``z' + r``.  Matching ``frac_bits`` are accepted.
    """
    dealt = beaver.deal_local([beaver.TripleRequest.mul(3), beaver.TruncRequest(3),
                               beaver.TruncRequest(3)], 2)

    def body(t: Transport, i: int) -> np.ndarray:
        triple, pair, pair2 = dealt[i]
        assert isinstance(triple, beaver.TripleShare)
        assert isinstance(pair, beaver.TruncPairShare)
        assert isinstance(pair2, beaver.TruncPairShare)
        z = beaver.mul(t, P2, triple, XS[i], YS[i], "m", pair=pair, frac_bits=16)
        assert triple.used and pair.used
        with pytest.raises(InputError, match="already used"):
            beaver.mul(t, P2, triple, XS[i], YS[i], "m2", pair=pair2)
        with pytest.raises(InputError, match="already used"):
            beaver.truncate(t, P2, z, "t2", pair=pair)
        with pytest.raises(InputError, match="already used"):
            pair._consume(3)
        return beaver.open_shares(t, P2, z, "open")

    opened = both(body).results["p0"]
    want = (X.view(np.int64).astype(object) * Y.view(np.int64).astype(object)) >> 16
    diff = np.asarray(opened.view(np.int64).astype(object) - want)
    assert set(diff.tolist()) <= {0, 1}


def test_truncate_checks_its_own_arguments() -> None:
    """``truncate`` is public: it refuses a lone party, local truncation among three, an
    unknown method, a missing pair and pairs for another ``f`` -- consuming nothing."""
    z = np.zeros(3, dtype=np.uint64)
    with pytest.raises(InputError, match="at least two parties"):
        simulator.run({"p0": lambda t: beaver.truncate(t, ["p0"], z, "t", method="none")},
                      timeout=5)
    with pytest.raises(InputError, match="two parties only"):
        simulator.run({"p0": lambda t: beaver.truncate(t, ["p0", "p1", "p2"], z, "t",
                                                       method="local")}, timeout=5)
    with pytest.raises(InputError, match="needs truncation pairs"):
        simulator.run({"p0": lambda t: beaver.truncate(t, P2, z, "t")}, timeout=5)
    dealt = beaver.deal_local([beaver.TruncRequest(3)], 2)

    def body(t: Transport, i: int) -> np.ndarray:
        pair = dealt[i][0]
        assert isinstance(pair, beaver.TruncPairShare)
        with pytest.raises(InputError, match="unknown truncation method"):
            beaver.truncate(t, P2, z, "t", method="bogus", pair=pair)  # type: ignore[arg-type]
        with pytest.raises(InputError, match="dealt for f=16, asked to truncate 8"):
            beaver.truncate(t, P2, z, "t", pair=pair, frac_bits=8)
        assert not pair.used
        return beaver.truncate(t, P2, z + np.uint64(i << 20), "t", pair=pair, frac_bits=16)

    out = both(body).results
    total = int(sharing.reconstruct([out["p0"], out["p1"]])[0])
    assert total in (2**4, 2**4 + 1)  # (0 + 2^20) >> 16, within one ulp


def test_local_truncation_honours_frac_bits() -> None:
    """``mul(..., method="local", frac_bits=8)`` truncates 8 bits, not the default 16."""
    fp8 = FixedPoint(8)
    x, y = fp8.encode(np.array([1.5, -2.0, 3.25])), fp8.encode(np.array([-0.5, 4.0, 2.0]))
    xs, ys = sharing.share(x, 2), sharing.share(y, 2)
    dealt = beaver.deal_local([beaver.TripleRequest.mul(3)], 2)

    def body(t: Transport, i: int) -> np.ndarray:
        triple = dealt[i][0]
        assert isinstance(triple, beaver.TripleShare)
        z = beaver.mul(t, P2, triple, xs[i], ys[i], "m", method="local", frac_bits=8)
        return beaver.open_shares(t, P2, z, "open")

    # |z| < 2^12 here, so the documented failure probability is below 2^-52 per element
    got = fp8.decode(both(body).results["p0"])
    assert np.all(np.abs(got - np.array([-0.75, -8.0, 6.5])) <= 2.0**-8)


# Secrets with low bits zero and not, positive and negative; masks whose low 16 bits are all
# ones or all zeros (the carry edges), and r = 0 (party 1's share is 0: the lemma holds, but
# the parties' roles swapped -- party 0 negating, party 1 shifting -- would fail here).
# Splits where z + r wraps -- the documented failure case, probability |z| / 2^64 for a
# uniform r -- are left out.
SPLITS = [(z, r)
          for z in (3 * 2**16, 3 * 2**16 + 5, -(7 * 2**16), -(7 * 2**16) + 3, 0)
          for r in (2**40 - 1, 2**40, 2**63 + 12345, 2**16 - 1, 1, 0)
          if 0 <= z + r < M64]


@pytest.mark.parametrize(("z", "r"), SPLITS)
def test_local_truncation_of_a_split_that_does_not_wrap_is_within_one_ulp(z: int,
                                                                         r: int) -> None:
    """Party 0 holds ``z + r``, party 1 holds ``-r``: if ``z + r`` does not wrap the result is
    ``floor(z / 2^f)`` or one more (the module docstring's correctness lemma), whatever the
    low bits of ``r``."""
    shares = [np.array([(z + r) % M64], dtype=np.uint64), np.array([(-r) % M64], dtype=np.uint64)]

    def body(t: Transport, i: int) -> np.ndarray:
        return beaver.truncate(t, P2, shares[i], "t", method="local", frac_bits=16)

    out = both(body).results
    got = int(sharing.reconstruct([out["p0"], out["p1"]])[0])
    got = got - M64 if got >= 2**63 else got
    assert got - (z >> 16) in (0, 1)


# --------------------------------------------------------------------------- dealer truncation


def _hand_pair(i: int, req: beaver.TruncRequest, r: list[int]) -> beaver.TruncPairShare:
    """Party ``i``'s share of pairs with mask values ``r`` (party 1 holds a fixed offset)."""
    offset = np.array([0x9E3779B97F4A7C15 + k for k in range(len(r))], dtype=np.uint64)
    full = np.array(r, dtype=np.uint64)
    trunc = full >> np.uint64(req.frac_bits)
    if i == 1:
        return beaver.TruncPairShare(req, offset.copy(), offset.copy())
    return beaver.TruncPairShare(req, full - offset, trunc - offset)


def _dealer_truncate(z: int, req: beaver.TruncRequest, r: list[int]) -> tuple[int, int, int]:
    """(result, rounds, rejected) of dealer truncation of ``z`` with the given masks."""
    zs = [np.array([(z - 77) % M64], dtype=np.uint64), np.array([77], dtype=np.uint64)]

    def body(t: Transport, i: int) -> tuple[np.ndarray, int, int]:
        pair = _hand_pair(i, req, r)
        out = beaver.truncate(t, P2, zs[i], "t", pair=pair)
        return out, pair.rounds, pair.rejected

    res = both(body).results
    total = int(sharing.reconstruct([res["p0"][0], res["p1"][0]])[0])
    return (total - M64 if total >= 2**63 else total), res["p0"][1], res["p0"][2]


def test_dealer_truncation_accepts_an_opening_of_exactly_2_to_the_l_plus_1() -> None:
    """``c = 2^(l+1)`` did not wrap (a wrap leaves ``c < u < 2^(l+1)``): accepted at once."""
    z = 5 * 2**16 + 3
    req = beaver.TruncRequest(1, bound_bits=52, spares=0)
    u = z + 2**52
    result, rounds, rejected = _dealer_truncate(z, req, [2**53 - u])
    assert (rounds, rejected) == (1, 0)
    assert result - (z >> 16) in (0, 1)


def test_dealer_truncation_may_use_its_last_spare_pair() -> None:
    """One rejection and one spare: the spare is used and the result is right; with no
    spare the same rejection is a clear :class:`SparePairsExhausted`."""
    z = -(9 * 2**16) + 11
    wraps, fits = 2**64 - 1, 2**62  # u + wraps wraps around; u + fits does not
    req = beaver.TruncRequest(1, bound_bits=52, spares=1)
    result, rounds, rejected = _dealer_truncate(z, req, [wraps, fits])
    assert (rounds, rejected) == (2, 1)
    assert result - (z >> 16) in (0, 1)
    with pytest.raises(beaver.SparePairsExhausted, match="spare pairs"):
        _dealer_truncate(z, beaver.TruncRequest(1, bound_bits=52, spares=0), [wraps])


# --------------------------------------------------------------------------- range helpers


def test_bound_bits_ranges_are_inclusive_at_both_ends() -> None:
    """``0 <= f <= 30`` and ``f <= l <= 62``: each end is valid, one step beyond is refused
    with the message that names the broken rule."""
    for f, l_bits in ((0, 0), (0, 62), (30, 30), (30, 62), (16, 16), (16, 62)):
        beaver.check_bound_bits(f, l_bits)
    for f in (-1, 31):
        with pytest.raises(InputError, match="frac_bits must be between 0 and 30"):
            beaver.check_bound_bits(f, 40)
    for f, l_bits in ((16, 15), (16, 63), (0, -1)):
        with pytest.raises(InputError, match=rf"bound bits l={l_bits} must satisfy"):
            beaver.check_bound_bits(f, l_bits)


ULP = 2.0**-16


def test_product_range_is_exact_at_its_edge() -> None:
    """``(|v| + ulp)(|other| + ulp) < 2^(l-2f)`` (``2^20`` for f=16, l=52), strict.

    With ``|v| + ulp = |other| + ulp = 2^10`` the worst product is exactly ``2^20``: refused;
    one ulp less of ``v`` gives ``2^20 - 2^-6``: accepted.  All terms are dyadic with few
    significant bits, so float64 computes them exactly; dropping either rounding margin or
    accepting the bound itself changes the verdict.
    """
    edge = 2.0**10 - ULP
    with pytest.raises(EncodingRangeError, match="truncation bound"):
        beaver.check_product_range(FP, np.array([edge, -edge]), edge)
    beaver.check_product_range(FP, np.array([edge - ULP, -(edge - ULP)]), edge)
    beaver.check_product_range(FP, np.array([edge]), edge - ULP)


def test_product_range_refuses_non_finite_values_and_bounds() -> None:
    """A NaN factor would compare as "in range" (``NaN >= limit`` is false): refused first."""
    for values, other in (([1.0, np.nan], 1.0), ([1.0, np.inf], 1.0), ([1.0], np.inf),
                          ([1.0], np.nan)):
        with pytest.raises(EncodingRangeError, match="must be finite numbers"):
            beaver.check_product_range(FP, np.array(values), other)


def test_product_range_of_the_most_negative_int64() -> None:
    """An integer factor of ``-2^63`` is far outside the bound: refused.  (Its absolute value
    in int64 arithmetic wraps back to ``-2^63``, which would look tiny.)"""
    with pytest.raises(EncodingRangeError, match="truncation bound"):
        beaver.check_product_range(FP, np.array([-(2**63)], dtype=np.int64), 1.0)
