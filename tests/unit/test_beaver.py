"""Beaver products, dealer truncation and seed-compressed dealing (smpc.beaver).

Every protocol test runs real roles ("dealer", "p0", "p1", ...) in the
simulator and compares with exact Python-int arithmetic on the encoded inputs
and with float64 arithmetic on the reals.

Tolerances (f fractional bits; each encoding error is at most e = 2^-(f+1)):

* exact integer check: the untruncated share opens to ``x_int (*) y_int``
  exactly; a truncated one opens to ``floor(z / 2^f)`` or ``floor(z / 2^f) + 1``
  (at most one ulp);
* against the reals, per product term ``x y - X Y = X dy + Y dx + dx dy``, so
  ``|err| <= sum over terms of ((|X| + |Y|) e + e^2)`` untruncated, plus one
  ulp ``2^-f`` per output element after truncation; plus float64 rounding
  (:func:`float_slack`): the reference's k-term sum of products is within
  ``gamma(k) sum |x y|`` (Higham eq. 3.5), decoding rounds once (relative 2^-53) and the bound
  itself is computed in float64: ``gamma(k + 3) (sum |x y| + bound)`` in all.

Test data come from a fixed-seed AES keystream (public, reproducible), not from
``numpy.random``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from smpc import beaver, randomness, sharing, simulator
from smpc.encoding import EncodingRangeError, FixedPoint
from smpc.errors import InputError, PeerFailure, ProtocolError
from smpc.transport import Transport
from tests.tolerances import gamma

FP = FixedPoint(16)
F = FP.frac_bits
E = 2.0 ** -(F + 1)  # encoding error bound
ULP = 2.0**-F
TEST_SEED = bytes(16)


def uniform(lo: float, hi: float, shape: tuple[int, ...] | int, label: str) -> np.ndarray:
    """Deterministic public test data, uniform in [lo, hi)."""
    shape = (shape,) if isinstance(shape, int) else shape
    count = math.prod(shape)
    raw = randomness.expand(TEST_SEED, count, "test/" + label)
    unit = (raw >> np.uint64(11)).astype(np.float64) / 2.0**53
    return (lo + (hi - lo) * unit).reshape(shape)


def as_int(ring: np.ndarray) -> np.ndarray:
    """Ring elements as signed Python ints (object array), for exact references."""
    return np.asarray(ring, dtype=np.uint64).view(np.int64).astype(object)


def exact(kind: str, xe: np.ndarray, ye: np.ndarray) -> np.ndarray:
    """The exact integer product of encoded operands (no wrap-around)."""
    xi, yi = as_int(xe), as_int(ye)
    if kind == "mul":
        return xi * yi
    if kind == "dot":
        return np.asarray((xi * yi).sum(axis=-1), dtype=object)
    return np.asarray(np.matmul(xi, yi), dtype=object)


def real_error_bound(kind: str, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum over the product terms of (|X| + |Y|) e + e^2, and the |X||Y| scale."""
    ax, ay = np.abs(x), np.abs(y)
    if kind == "mul":
        return (ax + ay) * E + E * E, ax * ay
    if kind == "dot":
        return ((ax + ay) * E + E * E).sum(axis=-1), (ax * ay).sum(axis=-1)
    k = x.shape[-1]
    ones_x, ones_y = np.ones_like(x), np.ones_like(y)
    return (ax @ ones_y + ones_x @ ay) * E + k * E * E, ax @ ay


def float_slack(kind: str, x: np.ndarray, scale: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """float64 rounding in the reference, in decoding and in the bound (module docstring)."""
    k = 1 if kind == "mul" else x.shape[-1]
    return gamma(k + 3) * (scale + bound)


def reference(kind: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if kind == "mul":
        return x * y
    if kind == "dot":
        return (x * y).sum(axis=-1)
    return x @ y


def parties_of(n: int) -> list[str]:
    return [f"p{i}" for i in range(n)]


Body = Callable[[Transport, list[str], int, list[beaver.Share]], Any]


def run_with_dealer(
    n: int, requests: Sequence[beaver.Request], body: Body, timeout: float = 30.0
) -> simulator.SimulationResult:
    """Dealer deals ``requests``; each party receives its shares and runs ``body``."""
    parties = parties_of(n)

    def dealer(t: Transport) -> None:
        beaver.deal(t, parties, requests, "deal")

    def make(i: int) -> Callable[[Transport], Any]:
        def role(t: Transport) -> Any:
            shares = beaver.receive(t, "dealer", parties, requests, "deal")
            return body(t, parties, i, shares)

        return role

    roles = {"dealer": dealer, **{p: make(i) for i, p in enumerate(parties)}}
    return simulator.run(roles, timeout=timeout)


def same_everywhere(result: simulator.SimulationResult, n: int) -> Any:
    """Every party returned the same opened arrays; return p0's."""
    first = result.results["p0"]
    for p in parties_of(n)[1:]:
        other = result.results[p]
        for a, b in zip(first, other, strict=True):
            np.testing.assert_array_equal(a, b)
    return first


# --------------------------------------------------------------------------- ring arithmetic


def test_uint64_matmul_and_dot_wrap_like_python_ints_mod_2_64() -> None:
    a = randomness.random_ring(5 * 7).reshape(5, 7)
    b = randomness.random_ring(7 * 3).reshape(7, 3)
    v = randomness.random_ring(7)
    ai, bi, vi = (np.asarray(m).astype(object) for m in (a, b, v))
    # Python ints, explicit reduction mod 2^64.
    ref = np.array(
        [
            [sum(int(ai[i, k]) * int(bi[k, j]) for k in range(7)) % 2**64 for j in range(3)]
            for i in range(5)
        ],
        dtype=np.uint64,
    )
    np.testing.assert_array_equal(a @ b, ref)
    np.testing.assert_array_equal(
        a @ v,
        np.array(
            [sum(int(ai[i, k]) * int(vi[k]) for k in range(7)) % 2**64 for i in range(5)],
            dtype=np.uint64,
        ),
    )
    req = beaver.TripleRequest.dot((5, 7))
    np.testing.assert_array_equal(
        req.combine(a, a),
        np.array([sum(int(x) ** 2 for x in ai[i]) % 2**64 for i in range(5)], dtype=np.uint64),
    )


# --------------------------------------------------------------------------- dealing


TRIPLE_CASES = {
    "mul": beaver.TripleRequest.mul((4, 6)),
    "dot": beaver.TripleRequest.dot((5, 8)),
    "matmul": beaver.TripleRequest.matmul((4, 3), (3, 5)),
    "matvec": beaver.TripleRequest.matmul((4, 3), (3,)),
}


@pytest.mark.parametrize("n", [2, 3, 5])
def test_dealt_triples_and_pairs_reconstruct_correctly(n: int) -> None:
    requests: list[beaver.Request] = [*TRIPLE_CASES.values(), beaver.TruncRequest(50)]

    def body(t: Transport, parties: list[str], i: int, shares: list[beaver.Share]) -> Any:
        return shares

    result = run_with_dealer(n, requests, body)
    per_party = [result.results[p] for p in parties_of(n)]
    for j, req in enumerate(requests):
        mine = [shares[j] for shares in per_party]
        if isinstance(req, beaver.TripleRequest):
            a = sharing.reconstruct([s.a for s in mine])
            b = sharing.reconstruct([s.b for s in mine])
            c = sharing.reconstruct([s.c for s in mine])
            assert c.shape == req.z_shape
            # Exact, with Python ints mod 2^64.
            ai, bi = a.astype(object), b.astype(object)
            if req.kind == "mul":
                want = ai * bi
            elif req.kind == "dot":
                want = (ai * bi).sum(axis=-1)
            else:
                want = np.matmul(ai, bi)
            want = np.asarray(np.vectorize(lambda v: v % 2**64, otypes=[object])(want))
            np.testing.assert_array_equal(c, want.astype(np.uint64))
            assert len(set(a.ravel().tolist())) > a.size // 2  # a is not degenerate
        else:
            r = sharing.reconstruct([s.r for s in mine])
            rt = sharing.reconstruct([s.r_trunc for s in mine])
            assert r.shape == (req.total,)
            np.testing.assert_array_equal(rt, r >> np.uint64(req.frac_bits))


def test_deal_local_matches_protocol_semantics() -> None:
    req = beaver.TripleRequest.matmul((3, 2), (2, 2))
    shares = beaver.deal_local([req, beaver.TruncRequest(4, bound_bits=40)], 3)
    a = sharing.reconstruct([s[0].a for s in shares])
    b = sharing.reconstruct([s[0].b for s in shares])
    c = sharing.reconstruct([s[0].c for s in shares])
    np.testing.assert_array_equal(c, a @ b)
    r = sharing.reconstruct([s[1].r for s in shares])
    np.testing.assert_array_equal(sharing.reconstruct([s[1].r_trunc for s in shares]), r >> 16)


@pytest.mark.parametrize("n", [2, 4])
def test_seed_compression_traffic(n: int) -> None:
    """Dealing costs about one ``c`` on the wire, and the dealer receives only seeds.

    Each party draws its own seed and sends it to the dealer (16 bytes, the dealer's only
    input); the dealer sends each party a 32-byte hello and the last party alone one
    correction array.  Catches a dealer sending full triples, and anything but a seed
    reaching the dealer.
    """
    mul_req = beaver.TripleRequest.mul(1000)
    mm_req = beaver.TripleRequest.matmul((20, 30), (30, 10))
    trunc_mul = beaver.TruncRequest(1000)
    trunc_mm = beaver.TruncRequest(200)
    requests = [mul_req, mm_req, trunc_mul, trunc_mm]

    result = run_with_dealer(n, requests, lambda t, parties, i, shares: None)
    sent = result.traffic["dealer"].bytes_sent_to
    parties = parties_of(n)
    # Parties 0..n-2: only the 32-byte hello, for all four requests.
    for p in parties[:-1]:
        assert sent[p] == 32
    # The last party: the hello plus one c-sized correction per triple and one
    # (count + spares)-word correction per truncation request.
    corrections = 1000 + 20 * 10 + trunc_mul.total + trunc_mm.total
    assert sent[parties[-1]] == 32 + 8 * corrections
    assert trunc_mul.spares is not None and trunc_mul.spares <= 16 + 4  # few spares at l=52
    # Versus sending every party full explicit triples (a, b, c) and pairs.
    full = 8 * (1000 * 3 + (600 + 300 + 200) + 2 * trunc_mul.total + 2 * trunc_mm.total)
    assert sum(sent.values()) < full * n / 2.5
    assert result.traffic["dealer"].messages_sent == n + 1  # a hello each, one correction
    # The dealer receives each party's 16-byte seed and nothing else.
    assert result.traffic["dealer"].messages_received == n
    assert result.traffic["dealer"].bytes_received == 16 * n
    for p in parties:
        assert result.traffic[p].bytes_sent_to == {"dealer": 16}


def test_receive_rejects_a_message_that_does_not_fit_the_requests() -> None:
    parties = parties_of(2)
    dealt = [beaver.TripleRequest.mul(10)]
    expected = [beaver.TripleRequest.mul(11)]

    def dealer(t: Transport) -> None:
        beaver.deal(t, parties, dealt, "deal")

    def party(t: Transport) -> Any:
        return beaver.receive(t, "dealer", parties, expected, "deal")

    with pytest.raises(ProtocolError, match="dealer message") as e:
        simulator.run({"dealer": dealer, "p0": party, "p1": party}, timeout=10)
    assert e.value.peer == "dealer"  # blamed on the sender, not on the party that noticed


def test_dealer_must_not_be_a_party() -> None:
    def dealer(t: Transport) -> None:
        beaver.deal(t, ["p0", "dealer"], [beaver.TripleRequest.mul(2)], "deal")

    with pytest.raises(InputError, match="must not be one of the parties"):
        simulator.run({"dealer": dealer, "p0": lambda t: None}, timeout=5)


# --------------------------------------------------------------------------- products


def operands(case: str) -> tuple[str, np.ndarray, np.ndarray]:
    """Inputs with negatives, zeros, tiny values and products near the default bound.

    Default bound for f=16: l = 52, i.e. |product| < 2^20 = 1048576 (reals).
    """
    if case == "mul":
        x = np.concatenate(
            [
                uniform(-1000, 1000, 150, "mx"),
                [1024.0, -1024.0, 1024.0, -1024.0, 0.0, 1e-5, -3.3, 2.0**-16],
            ]
        )
        y = np.concatenate(
            [
                uniform(-1000, 1000, 150, "my"),
                [1023.9, 1023.9, -1023.9, -1023.9, 5.0, 7.0, 1e-5, -(2.0**-16)],
            ]
        )
        return "mul", x, y
    if case == "dot":
        x = uniform(-300, 300, (40, 8), "dx")
        y = uniform(-300, 300, (40, 8), "dy")
        x[0], y[0] = 362.0, 362.0  # 8 * 362^2 = 1048352, just below 2^20
        x[1], y[1] = 362.0, -362.0
        x[2], y[2] = -1e-3, 0.5
        return "dot", x, y
    if case == "matmul":
        x = uniform(-400, 400, (6, 5), "Mx")
        y = uniform(-400, 400, (5, 4), "My")
        x[0, :] = 457.0
        y[:, 0], y[:, 1] = 458.0, -458.0  # 5 * 457 * 458 = 1046530
        return "matmul", x, y
    x = uniform(-400, 400, (6, 5), "vx")
    y = uniform(-400, 400, 5, "vy")
    x[0, :], y[:] = -457.0, 458.0
    return "matmul", x, y


@pytest.mark.parametrize("n", [2, 3, 5])
@pytest.mark.parametrize("case", ["mul", "dot", "matmul", "matvec"])
def test_products_untruncated_and_dealer_truncated(n: int, case: str) -> None:
    kind, x, y = operands(case)
    # The declared bound holds for these plaintexts (checked before encoding).
    axis = None if kind == "mul" else -1
    if kind != "matmul":
        beaver.check_product_range(FP, x, float(np.abs(y).max()), axis=axis)
    xe, ye = FP.encode(x), FP.encode(y)
    xs, ys = sharing.share(xe, n), sharing.share(ye, n)
    op = {"mul": beaver.mul, "dot": beaver.dot, "matmul": beaver.matmul}[kind]
    make = {"mul": beaver.TripleRequest.mul, "dot": beaver.TripleRequest.dot}
    req = beaver.TripleRequest.matmul(x.shape, y.shape) if kind == "matmul" else make[kind](x.shape)
    requests: list[beaver.Request] = [req, req, beaver.TruncRequest(req.z_shape)]

    def body(t: Transport, parties: list[str], i: int, shares: list[beaver.Share]) -> Any:
        t_plain, t_dealer, pair = shares
        z2 = op(t, parties, t_plain, xs[i], ys[i], "plain", method="none")
        z1 = op(t, parties, t_dealer, xs[i], ys[i], "dealer", pair=pair)
        return [
            beaver.open_shares(t, parties, z2, "open/plain"),
            beaver.open_shares(t, parties, z1, "open/dealer"),
        ]

    opened = same_everywhere(run_with_dealer(n, requests, body), n)
    z = exact(kind, xe, ye)
    assert opened[0].shape == z.shape == reference(kind, x, y).shape
    enc_bound, scale = real_error_bound(kind, x, y)
    slack = float_slack(kind, x, scale, enc_bound + ULP)
    want = reference(kind, x, y)

    # Untruncated: exactly the integer product, decoded with 2f bits.
    np.testing.assert_array_equal(as_int(opened[0]), z)
    plain = FP.decode(opened[0], frac_bits=2 * F)
    assert np.all(np.abs(plain - want) <= enc_bound + slack)

    # Dealer truncation: floor(z / 2^f) or one more, i.e. within one ulp.
    diff = as_int(opened[1]) - (z >> F)
    assert set(np.asarray(diff).ravel().tolist()) <= {0, 1}
    assert np.all(np.abs(FP.decode(opened[1]) - want) <= enc_bound + ULP + slack)


def test_untruncated_product_near_the_ring_limit() -> None:
    # |x y| just below 2^(63 - 2f) = 2^31: only the untruncated path can hold it.
    x = np.array([46000.0, -46000.0, 46340.0, -0.5])
    y = np.array([46000.0, 46000.0, -46340.0, 3.0])
    n = 3
    xe, ye = FP.encode(x), FP.encode(y)
    xs, ys = sharing.share(xe, n), sharing.share(ye, n)

    def body(t: Transport, parties: list[str], i: int, shares: list[beaver.Share]) -> Any:
        z = beaver.mul(t, parties, shares[0], xs[i], ys[i], "m", method="none")
        return [beaver.open_shares(t, parties, z, "open")]

    (opened,) = same_everywhere(run_with_dealer(n, [beaver.TripleRequest.mul(4)], body), n)
    np.testing.assert_array_equal(as_int(opened), exact("mul", xe, ye))
    # the inputs are multiples of 2^-16 (encoded exactly), so only float64 rounding is left:
    # decoding |z| > 2^53 rounds once, and so does the reference x * y
    assert np.array_equal(FP.decode(xe), x) and np.array_equal(FP.decode(ye), y)
    err = np.abs(FP.decode(opened, frac_bits=2 * F) - x * y)
    assert np.all(err <= 2 * 2.0**-53 * np.abs(x * y))


def test_scalar_dot_product() -> None:
    x, y = uniform(-5, 5, 16, "sx"), uniform(-5, 5, 16, "sy")
    n = 2
    xs, ys = sharing.share(FP.encode(x), n), sharing.share(FP.encode(y), n)
    requests = [beaver.TripleRequest.dot(16), beaver.TruncRequest(1)]

    def body(t: Transport, parties: list[str], i: int, shares: list[beaver.Share]) -> Any:
        z = beaver.dot(t, parties, shares[0], xs[i], ys[i], "d", pair=shares[1])
        return [beaver.open_shares(t, parties, z, "open")]

    (opened,) = same_everywhere(run_with_dealer(n, requests, body), n)
    assert opened.shape == ()
    enc_bound, scale = real_error_bound("dot", x, y)
    slack = float_slack("dot", x, scale, enc_bound + ULP)
    assert abs(float(FP.decode(opened)) - float(x @ y)) <= enc_bound + ULP + slack


# --------------------------------------------------------------------------- local truncation


@pytest.mark.parametrize("case", ["mul", "matmul"])
def test_local_truncation_within_one_ulp_on_realistic_magnitudes(case: str) -> None:
    # Products (and inner products) below 16, |z| < 2^36: the documented
    # failure probability |z| / 2^64 is below 2^-28 per element.
    if case == "mul":
        x, y = uniform(-4, 4, 2000, "lx"), uniform(-4, 4, 2000, "ly")
        req = beaver.TripleRequest.mul(2000)
    else:
        x, y = uniform(-1, 1, (40, 16), "lX"), uniform(-1, 1, (16, 30), "lY")
        req = beaver.TripleRequest.matmul(x.shape, y.shape)
    n = 2
    xe, ye = FP.encode(x), FP.encode(y)
    xs, ys = sharing.share(xe, n), sharing.share(ye, n)
    op = beaver.mul if case == "mul" else beaver.matmul

    def body(t: Transport, parties: list[str], i: int, shares: list[beaver.Share]) -> Any:
        z = op(t, parties, shares[0], xs[i], ys[i], "m", method="local")
        return [beaver.open_shares(t, parties, z, "open")]

    (opened,) = same_everywhere(run_with_dealer(n, [req], body), n)
    diff = np.asarray(as_int(opened) - (exact(req.kind, xe, ye) >> F))
    assert set(diff.ravel().tolist()) <= {0, 1}
    enc_bound, scale = real_error_bound(req.kind, x, y)
    slack = float_slack(req.kind, x, scale, enc_bound + ULP)
    assert np.all(np.abs(FP.decode(opened) - reference(req.kind, x, y)) <= enc_bound + ULP + slack)


def test_local_truncation_failure_rate_is_abs_z_over_2_64() -> None:
    # Huge products, |z| ~ 2^61: the documented failure rate |z| / 2^64 ~ 1/8.
    count = 4000
    x = np.full(count, 23170.0)
    y = np.where(np.arange(count) % 2 == 0, 23170.0, -23170.0)
    xe, ye = FP.encode(x), FP.encode(y)
    z = exact("mul", xe, ye)
    p = float(abs(z[0])) / 2.0**64
    xs, ys = sharing.share(xe, 2), sharing.share(ye, 2)

    def body(t: Transport, parties: list[str], i: int, shares: list[beaver.Share]) -> Any:
        zt = beaver.mul(t, parties, shares[0], xs[i], ys[i], "m", method="local")
        return [beaver.open_shares(t, parties, zt, "open")]

    (opened,) = same_everywhere(run_with_dealer(2, [beaver.TripleRequest.mul(count)], body), 2)
    diff = np.asarray(as_int(opened) - (z >> F))
    ok = np.isin(diff, [0, 1])
    failures = int((~ok).sum())
    sd = math.sqrt(count * p * (1 - p))
    assert abs(failures - count * p) < 6 * sd
    # A failure is wildly wrong, not a little off.
    assert all(abs(int(d)) > 2**40 for d in diff[~ok])


def test_local_truncation_refuses_more_than_two_parties() -> None:
    x = FP.encode(np.ones(3))
    xs = sharing.share(x, 3)

    def body(t: Transport, parties: list[str], i: int, shares: list[beaver.Share]) -> Any:
        return beaver.mul(t, parties, shares[0], xs[i], xs[i], "m", method="local")

    with pytest.raises(InputError, match="two parties only"):
        run_with_dealer(3, [beaver.TripleRequest.mul(3)], body, timeout=10)


# --------------------------------------------------------------------------- rejection


@pytest.mark.parametrize(("n", "bound_bits"), [(2, 62), (3, 60)])
def test_dealer_truncation_rejects_and_redoes_wrapped_elements(n: int, bound_bits: int) -> None:
    # l = 62: rejection rate 1/2; l = 60: 1/8.  Products near the bound 2^(l-2f).
    count = 600
    limit = 2.0 ** (bound_bits - 2 * F)
    side = math.sqrt(limit) * 0.999
    x = uniform(-side, side, count, f"rx{n}")
    y = uniform(-side, side, count, f"ry{n}")
    x[:4] = [side, -side, side, -side]
    y[:4] = [side, side, -side, -side]
    beaver.check_product_range(FP, x, side, bound_bits=bound_bits)
    xe, ye = FP.encode(x), FP.encode(y)
    xs, ys = sharing.share(xe, n), sharing.share(ye, n)
    trunc = beaver.TruncRequest(count, bound_bits=bound_bits)
    assert trunc.rejection_probability == 2.0 ** (bound_bits + 1 - 64)

    def body(t: Transport, parties: list[str], i: int, shares: list[beaver.Share]) -> Any:
        triple, pair = shares
        assert isinstance(pair, beaver.TruncPairShare)
        z = beaver.mul(t, parties, triple, xs[i], ys[i], "m", pair=pair)
        stats = np.array([pair.rounds, pair.rejected, *pair.rejected_per_round])
        return [beaver.open_shares(t, parties, z, "open"), stats]

    result = run_with_dealer(n, [beaver.TripleRequest.mul(count), trunc], body)
    opened, stats = same_everywhere(result, n)  # all parties saw the same rejections
    rounds, rejected, per_round = int(stats[0]), int(stats[1]), stats[2:].tolist()
    # Rejections happened and were redone in further rounds, on spare pairs.
    assert rejected > 0 and rounds >= 2
    assert rounds == len(per_round) + 1
    assert rejected == sum(per_round)
    assert per_round == sorted(per_round, reverse=True)
    assert trunc.spares is not None and rejected <= trunc.spares
    expected = count * trunc.rejection_probability
    assert per_round[0] < expected + 8 * math.sqrt(expected) + 8
    # Every element, redone or not, is within one ulp.
    diff = as_int(opened) - (exact("mul", xe, ye) >> F)
    assert set(diff.tolist()) <= {0, 1}


def test_spare_pairs_exhausted_is_a_clear_error() -> None:
    n, count = 2, 64
    xs = sharing.share(FP.encode(np.full(count, 1000.0)), n)
    # l = 62 rejects half the openings; with no spares the chance of no
    # rejection at all is 2^-64.
    requests = [
        beaver.TripleRequest.mul(count),
        beaver.TruncRequest(count, bound_bits=62, spares=0),
    ]

    def body(t: Transport, parties: list[str], i: int, shares: list[beaver.Share]) -> Any:
        return beaver.mul(t, parties, shares[0], xs[i], xs[i], "m", pair=shares[1])

    with pytest.raises(beaver.SparePairsExhausted, match="spare pairs"):
        run_with_dealer(n, requests, body, timeout=10)


# --------------------------------------------------------------------------- misuse, failure


def test_triples_and_pairs_are_single_use_and_typed() -> None:
    shares = beaver.deal_local([beaver.TripleRequest.mul(3), beaver.TruncRequest(3)], 2)[0]
    triple = shares[0]
    assert isinstance(triple, beaver.TripleShare)
    triple._consume("mul")
    with pytest.raises(InputError, match="already used"):
        triple._consume("mul")
    fresh = beaver.deal_local([beaver.TripleRequest.dot((3, 2))], 2)[0][0]
    assert isinstance(fresh, beaver.TripleShare)
    with pytest.raises(InputError, match="cannot be used"):
        fresh._consume("mul")
    pair = shares[1]
    assert isinstance(pair, beaver.TruncPairShare)
    with pytest.raises(InputError, match="dealt for 3 elements"):
        pair._consume(4)


def test_bound_and_range_helpers() -> None:
    assert beaver.default_bound_bits(FP) == 52
    assert beaver.product_limit(FP) == 2.0**20
    assert beaver.default_bound_bits(FixedPoint(8)) == 36
    assert beaver.default_bound_bits(FixedPoint(24)) == 56
    with pytest.raises(InputError):
        beaver.check_bound_bits(16, 63)
    with pytest.raises(InputError):
        beaver.check_bound_bits(16, 15)
    with pytest.raises(InputError):
        beaver.TruncRequest(10, bound_bits=63)
    beaver.check_product_range(FP, np.array([1000.0, -1000.0]), 1000.0)
    with pytest.raises(EncodingRangeError, match="truncation bound"):
        beaver.check_product_range(FP, np.array([1000.0, -1100.0]), 1000.0)
    with pytest.raises(EncodingRangeError):
        beaver.check_product_range(FP, np.full((2, 8), 400.0), 400.0, axis=-1)
    with pytest.raises(InputError):
        beaver.TripleRequest.matmul((2, 3), (4, 2))
    with pytest.raises(InputError):
        beaver.TripleRequest("mul", (2,), (3,))


def test_a_party_failing_mid_protocol_names_it_to_the_others() -> None:
    """p1 crashes after its dealing; p0 and p2 fail naming p1, wherever they are.

    p2, the last party, may still be in its dealing (waiting for its
    correction) when p1 crashes, so both the dealing and the product are
    watched.
    """
    n = 3
    parties = parties_of(n)
    requests = [beaver.TripleRequest.mul(5)]
    xs = sharing.share(FP.encode(np.arange(5.0)), n)
    seen: dict[str, PeerFailure] = {}

    def dealer(t: Transport) -> None:
        beaver.deal(t, parties, requests, "deal")

    def make(i: int) -> Callable[[Transport], Any]:
        def role(t: Transport) -> Any:
            try:
                shares = beaver.receive(t, "dealer", parties, requests, "deal")
                if t.me == "p1":
                    raise RuntimeError("p1 crashed")
                return beaver.mul(t, parties, shares[0], xs[i], xs[i], "m", method="none")
            except PeerFailure as exc:
                seen[t.me] = exc
                raise

        return role

    roles = {"dealer": dealer, **{p: make(i) for i, p in enumerate(parties)}}
    with pytest.raises(RuntimeError, match="p1 crashed"):
        simulator.run(roles, timeout=10)
    assert set(seen) == {"p0", "p2"}
    assert all(exc.peer == "p1" and "p1" in str(exc) for exc in seen.values())


# --------------------------------------------------------------------------- speed


def test_a_million_element_product_is_right_in_a_constant_number_of_messages() -> None:
    """10^6 products in one call: within the derived error, in O(1) messages.

    No wall-clock assertion (speed lives in ``smpc bench``); the message count
    shows the product is one vectorised exchange, not one per element.
    """
    count, n = 10**6, 3
    x = uniform(-30, 30, count, "bx")
    y = uniform(-30, 30, count, "by")
    xs, ys = sharing.share(FP.encode(x), n), sharing.share(FP.encode(y), n)
    requests = [beaver.TripleRequest.mul(count), beaver.TruncRequest(count)]

    def body(t: Transport, parties: list[str], i: int, shares: list[beaver.Share]) -> Any:
        z = beaver.mul(t, parties, shares[0], xs[i], ys[i], "m", pair=shares[1])
        return beaver.open_shares(t, parties, z, "open")

    result = run_with_dealer(n, requests, body)
    opened = result.results["p0"]
    for p in parties_of(n):
        assert result.traffic[p].messages_sent <= 16, result.traffic[p]
    enc_bound, scale = real_error_bound("mul", x, y)
    slack = float_slack("mul", x, scale, enc_bound + ULP)
    assert np.all(np.abs(FP.decode(opened) - x * y) <= enc_bound + ULP + slack)


def test_mismatched_pairs_are_refused_before_anything_is_opened() -> None:
    n = 2
    xs = sharing.share(FP.encode(np.ones(3)), n)
    requests = [beaver.TripleRequest.mul(3), beaver.TruncRequest(4)]

    def body(t: Transport, parties: list[str], i: int, shares: list[beaver.Share]) -> Any:
        triple, pair = shares
        dealt = t.traffic.messages_sent  # the seed this party sent the dealer
        with pytest.raises(InputError, match="cannot truncate"):
            beaver.mul(t, parties, triple, xs[i], xs[i], "m", pair=pair)
        assert isinstance(triple, beaver.TripleShare) and not triple.used
        return t.traffic.messages_sent - dealt, dealt

    result = run_with_dealer(n, requests, body, timeout=10)
    assert result.results["p0"] == result.results["p1"] == (0, 1)
