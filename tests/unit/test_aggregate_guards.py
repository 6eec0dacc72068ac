"""What the secure-sum roles refuse, whom they blame, and what the key holder releases.

Real roles (``smpc.aggregate``, ``smpc.stats`` role functions) run among simulated nodes with
real TenSEAL CKKS; where a peer must misbehave, a small hand-written role plays it and sends
exactly the messages under test.  Found by mutation testing (``python -m tests.mutation run
--target aggregate stats-roles``): these decisions were not pinned by any test.

* the ckks aggregator refuses a party announcing no (or too many) ciphertexts and blames it
  (:class:`~smpc.errors.ProtocolError` with ``peer``), and refuses parties whose ciphertext
  counts differ as a protocol violation, before the ciphertexts are added;
* the key holder accepts only a party count in ``1..10000`` and a count of summed
  ciphertexts in ``1..4096`` from the aggregator;
* every party's aggregate is range-checked with headroom for all parties;
* a data party refuses a pass-2 shift of the wrong length or with a count below one, and
  accepts a count of exactly one;
* with differential-privacy noise that covers the flood, the key holder's release is *exactly*
  the grid-valued sum of the contributions (no CKKS error, no flood), and without it the
  release is flooded;
* a range error names the aggregate and the fixed-point resolution the operator can change.
"""

import math

import numpy as np
import pytest
from scipy.stats import norm

from smpc import aggregate, ckks, dp, simulator, stats
from smpc.ckks.values import _slots
from smpc.encoding import EncodingRangeError, FixedPoint
from smpc.errors import InputError, ProtocolError
from smpc.transport import Transport, pack_json


@pytest.fixture(scope="module")
def holder() -> ckks.KeyHolder:
    return ckks.KeyHolder("aggregate")


@pytest.fixture(scope="module")
def public(holder):
    return ckks.load_context(holder.public_context())


def _honest(public, values):
    return lambda t: aggregate.ckks_contribute(t, aggregator="coordinator",
                                               public_context=public, values=values, tag="s")


def _aggregator(public, parties):
    return lambda t: aggregate.ckks_aggregate(t, parties=parties, keyholder="analyst",
                                              public_context=public, tag="s")


@pytest.mark.parametrize("announced", [0, 4097])
def test_the_aggregator_blames_a_party_announcing_a_bad_ciphertext_count(public, announced):
    """Party p1 announces 0 (or more than the 4,096 allowed) ciphertexts: the aggregator stops
    with a ProtocolError naming p1 (the blame goes to the sender)."""
    def liar(t: Transport) -> None:
        t.send("coordinator", "s/n-ct", np.array([announced], dtype=np.int64))

    roles = {"p0": _honest(public, np.ones(3)), "p1": liar,
             "coordinator": _aggregator(public, ["p0", "p1"]),
             "analyst": lambda t: None}
    with pytest.raises(ProtocolError, match=f"p1 announced {announced} ciphertexts") as info:
        simulator.run(roles, timeout=30)
    assert info.value.peer == "p1"


def test_different_ciphertext_counts_are_a_protocol_violation(public):
    """p0 sends one ciphertext, p1 two (a vector one slot longer than a ciphertext holds): the
    aggregator refuses the mismatch itself as a ProtocolError (a peer broke the protocol), not
    as the caller's InputError of the ciphertext arithmetic."""
    slots = _slots(public)
    roles = {"p0": _honest(public, np.ones(3)), "p1": _honest(public, np.ones(slots + 1)),
             "coordinator": _aggregator(public, ["p0", "p1"]), "analyst": lambda t: None}
    with pytest.raises(ProtocolError, match="different numbers of ciphertexts"):
        simulator.run(roles, timeout=60)


@pytest.mark.parametrize(("announced", "accepted"), [
    (0, False), (1, True), (10_000, True), (10_001, False), (-3, False), ("3", False),
    (2.0, False), (None, False),
])
def test_the_key_holder_accepts_only_a_sane_party_count(holder, announced, accepted):
    """The key holder sizes its noise plan and flood by the party count the aggregator
    announces, so it takes only an integer in 1..10000.  An accepted count lets it go on to
    collect pass 1 (here the aggregator then announces no summed ciphertexts, which the
    collection refuses); a refused one stops it first, naming the aggregator."""
    spec = stats.StatSpec("sum", ("a",), backend="ckks")

    def aggregator(t: Transport) -> None:
        t.send("analyst", "s/parties", pack_json({"parties": announced}))
        t.send("analyst", "s/p1/n-sum", np.array([0], dtype=np.int64))

    roles = {"coordinator": aggregator,
             "analyst": lambda t: stats.run_keyholder_ckks(t, spec, aggregator="coordinator",
                                                           keyholder=holder, tag="s")}
    if accepted:
        with pytest.raises(ProtocolError, match="announced 0 summed ciphertexts"):
            simulator.run(roles, timeout=30)
    else:
        with pytest.raises(InputError, match="coordinator announced a malformed party count"):
            simulator.run(roles, timeout=30)


@pytest.mark.parametrize("doc", [
    {"shift": [50.0, 1.0], "n": 10.0},   # two shifts for one column
    {"shift": [], "n": 10.0},
    {"shift": [50.0], "n": 0.0},         # a count below one
    {"shift": [50.0], "n": 0.5},
    {"shift": [50.0], "n": float("nan")},
    {"shift": [float("nan")], "n": 10.0},  # a shift that is not a finite number
    {"shift": [float("inf")], "n": 10.0},
    {"shift": ["50"], "n": 10.0},          # text, booleans, nulls: not JSON numbers
    {"shift": [True], "n": 10.0},
    {"shift": [None], "n": 10.0},
    {"shift": [50.0], "n": "10"},
    {"shift": 50.0, "n": 10.0},            # not a list
    [50.0, 10.0],                          # not a document
])
def test_a_party_refuses_a_malformed_pass2_shift(doc):
    """Pass 2 centres each party's rows on the recipient's shift and divides by its count:
    a shift of the wrong length or not made of finite JSON numbers, or a count below one (or
    NaN, or not a number), is refused by name before the party computes or sends anything of
    pass 2 (a deviating recipient's text or NaN used to be read as a number, or to fail deep
    in the arithmetic)."""
    spec = stats.StatSpec("var", ("a",))
    parties = ["p0", "p1"]
    rng = np.random.default_rng(41)
    sent_p2: list[str] = []

    def recipient(t: Transport) -> None:
        for p in parties:
            t.recv(p, "s/p1/sum-share")
        t.broadcast(parties, "s/shift", pack_json(doc))

    def party(rows):
        def role(t: Transport) -> None:
            send = t.send

            def watched(to, tag, payload):
                if "/p2/" in tag:
                    sent_p2.append(tag)
                return send(to, tag, payload)

            t.send = watched  # type: ignore[method-assign]
            stats.run_party(t, spec, rows, parties=parties, recipient="coordinator", tag="s")
        return role

    roles = {"coordinator": recipient, "p0": party(rng.normal(50, 5, (20, 1))),
             "p1": party(rng.normal(50, 5, (30, 1)))}
    with pytest.raises(InputError, match="coordinator sent a malformed shift"):
        simulator.run(roles, timeout=30)
    assert sent_p2 == []


def test_a_party_accepts_a_count_of_exactly_one():
    """The boundary of the refusal above: a count of 1 (one row in all, ``ddof = 0``) is a
    valid pass-2 divisor, so both parties send their spread-pass and pass-2 shares and the
    recipient gets them (the variance of one row is 0)."""
    spec = stats.StatSpec("var", ("a",), ddof=0)
    parties = ["p0", "p1"]

    def recipient(t: Transport) -> int:
        for p in parties:
            t.recv(p, "s/p1/sum-share")
        t.broadcast(parties, "s/shift", pack_json({"shift": [7.0], "n": 1.0}))
        for p in parties:  # the spread pass, then the public scale (smpc.stats.bounds)
            t.recv(p, "s/spread/sum-share")
        t.broadcast(parties, "s/scale", pack_json({"scale": [1.0]}))
        return len([t.recv(p, "s/p2/sum-share") for p in parties])

    def party(rows):
        return lambda t: stats.run_party(t, spec, rows, parties=parties, recipient="coordinator",
                                         tag="s")

    roles = {"coordinator": recipient, "p0": party(np.array([[7.0]])),
             "p1": party(np.zeros((0, 1)))}
    assert simulator.run(roles, timeout=30).results["coordinator"] == 2


def test_dp_noise_replaces_the_flood_and_the_release_is_exactly_the_sum(holder, public):
    """``ckks_collect`` hands ``dp_noise_std`` to the release: when it covers the flood, the
    released vector is exactly the sum of the parties' grid-valued contributions (the final
    rounding removes the CKKS error, |e| <= 2^-23 << grid/2, and no flood is added: noise.py's
    exactness argument).  With ``dp_noise_std = 0`` the release is flooded: each of the 1,000
    values stays on its exact sum with probability P(|N(0, 1)| < 1/2) = 0.38 (flood std =
    grid), so an unflooded release passes that check with probability 0.38^1000 < 1e-400."""
    parties = ["p0", "p1", "p2"]
    bound = holder.preset.error_bound(summands=len(parties), independent=True)
    params = holder.release_parameters(error_bound=bound)
    rng = np.random.default_rng(42)
    values = [rng.integers(-1000, 1000, 1000) * params.grid for _ in parties]
    exact = np.sum(values, axis=0)

    def collect(dp_noise_std):
        def role(t: Transport) -> np.ndarray:
            return aggregate.ckks_collect(t, aggregator="coordinator", keyholder=holder,
                                          length=1000, tag="s", dp_noise_std=dp_noise_std,
                                          summands=len(parties))
        return role

    released = {}
    for std in (params.flood_std, 0.0):
        roles = {p: _honest(public, v) for p, v in zip(parties, values, strict=True)}
        roles["coordinator"] = _aggregator(public, parties)
        roles["analyst"] = collect(std)
        released[std] = simulator.run(roles, timeout=60).results["analyst"]
    assert np.array_equal(released[params.flood_std], exact)
    assert not np.array_equal(released[0.0], exact)


def test_range_errors_name_the_aggregate_and_the_resolution():
    """An ss contribution out of the fixed-point range is refused before anything is sent,
    and the message says what was out of range (the party's aggregate) and, for a noisy one,
    at which resolution -- what the operator can lower.  Neither message contains the noisy
    value (checked in test_dp.py)."""
    codec = FixedPoint(16)
    parties = ["p0", "p1"]

    def contribute(values, noise=None):
        def role(t: Transport) -> None:
            aggregate.ss_contribute(t, parties=parties, recipient="c", values=values,
                                    codec=codec, tag="s", noise_ulps=noise)
        return {"p0": role, "p1": lambda t: None, "c": lambda t: None}

    with pytest.raises(EncodingRangeError, match=r"^aggregate .* outside the fixed-point"):
        simulator.run(contribute(np.array([codec.max_abs(2) * 2])), timeout=30)
    near = np.array([codec.max_abs(2) * 0.999])
    with pytest.raises(EncodingRangeError, match="with 16 fractional bits"):
        simulator.run(contribute(near, np.array([2**60], dtype=np.int64)), timeout=30)


def test_each_party_is_range_checked_with_headroom_for_every_party():
    """Three parties each hold one value of 0.4 times the single-value range ``2^63 / 2^f``:
    each alone fits, but their sum (1.2 times it) would wrap the ring.  The range check
    leaves room for all three addends (each must be below a third of the range), so the
    statistic is refused before anything is shared instead of returning a wrapped sum."""
    spec = stats.StatSpec("sum", ("x",))
    big = spec.codec.max_abs() * 0.4
    tables = [np.array([[big]]) for _ in range(3)]
    with pytest.raises(EncodingRangeError, match="headroom for 3 terms"):
        stats.simulate(spec, tables, timeout=30)


@pytest.mark.parametrize(("announced", "accepted"), [(0, False), (1, True), (4096, True),
                                                     (4097, False)])
def test_the_key_holder_takes_1_to_4096_summed_ciphertexts(holder, announced, accepted):
    """The key holder accepts an announced count of summed ciphertexts in 1..4096 and then
    reads that many (here one-byte fakes, which decryption refuses as not being ciphertexts);
    0 or 4097 is refused at once as the aggregator's protocol violation, naming it."""
    def aggregator(t: Transport) -> None:
        t.send("analyst", "s/n-sum", np.array([announced], dtype=np.int64))
        for k in range(announced if accepted else 0):
            t.send("analyst", f"s/sum/{k}", b"x")

    roles = {"coordinator": aggregator,
             "analyst": lambda t: aggregate.ckks_collect(t, aggregator="coordinator",
                                                         keyholder=holder, length=3, tag="s")}
    if accepted:
        with pytest.raises(InputError, match="not an smpc CKKS ciphertext"):
            simulator.run(roles, timeout=30)
    else:
        with pytest.raises(ProtocolError, match=f"announced {announced} summed") as info:
            simulator.run(roles, timeout=30)
        assert info.value.peer == "coordinator"


@pytest.mark.parametrize("length", [0, 15, 17])
def test_a_party_blames_a_peer_whose_seed_is_not_16_bytes(length):
    """A seed stands for a whole share (AES-128-CTR under it): one of another length is the
    sender's protocol violation, refused by the receiving party as a ProtocolError naming the
    sender -- not an internal error of the key expansion -- before it sends any share of the
    sum."""
    codec = FixedPoint(16)
    sent: list[str] = []

    def honest(t: Transport) -> None:
        send = t.send

        def watched(to, tag, payload):
            sent.append(tag)
            return send(to, tag, payload)

        t.send = watched  # type: ignore[method-assign]
        aggregate.ss_contribute(t, parties=["p0", "p1"], recipient="c", values=np.ones(3),
                                codec=codec, tag="s")

    def liar(t: Transport) -> None:
        t.send("p0", "s/seed", bytes(length))

    roles = {"p0": honest, "p1": liar, "c": lambda t: None}
    with pytest.raises(ProtocolError, match="p1 sent") as info:
        simulator.run(roles, timeout=30)
    assert info.value.peer == "p1"
    assert "s/sum-share" not in sent


def _histogram(min_cell_size: int, dp_request=None, copies: int = 1):
    """p0 holds 3 rows in bin 0 and 1 in bin 1, p1 2 rows in bin 2 (edges 0, 10, 20, 30),
    each row ``copies`` times; each party runs ``run_party`` with ``min_cell_size``, the
    coordinator reconstructs."""
    spec = stats.StatSpec("histogram", ("x",), edges=(0.0, 10.0, 20.0, 30.0), dp=dp_request)
    parties = ["p0", "p1"]
    tables = {"p0": np.repeat([[1.0], [2.0], [3.0], [15.0]], copies, axis=0),
              "p1": np.repeat([[25.0], [26.0]], copies, axis=0)}
    roles = {p: (lambda t, rows=tables[p]: stats.run_party(
        t, spec, rows, parties=parties, recipient="coordinator", tag="s",
        min_cell_size=min_cell_size)) for p in parties}
    roles["coordinator"] = lambda t: stats.run_recipient_ss(t, spec, parties=parties, tag="s")
    return simulator.run(roles, timeout=60).results["coordinator"]


def test_exact_small_cells_are_suppressed_by_each_party_and_one_means_none():
    """Exact mode, ``min_cell_size = 2``: p0's single row in bin 1 is sent as 0, every cell of
    two or more rows is kept (the boundary), so the released counts are exactly [3, 0, 2];
    with 1 (or the default 0) nothing is suppressed: [3, 1, 2]."""
    assert _histogram(2).value == [[3, 0, 2]]
    assert _histogram(1).value == [[3, 1, 2]]
    assert _histogram(0).value == [[3, 1, 2]]


def test_under_dp_small_cells_are_refused_not_suppressed():
    """Suppression changes a cell by up to ``min_cell_size - 1`` rows depending on the data,
    which would void the noise plan's sensitivity: a DP histogram with ``min_cell_size >= 2``
    is refused (an InputError naming the rule); 1 (suppress nothing) is accepted and
    released with its privacy record.  (600 rows: the noisy count, std 6.4 for this plan,
    falls below 1 -- an empty cohort -- with probability Phi(-599 / 6.4) < 1e-1000.)"""
    request = dp.DPRequest(epsilon=1.0, delta=1e-6, bounds={"x": (0.0, 30.0)})
    with pytest.raises(InputError, match="suppressed in exact answers only, not under DP"):
        _histogram(2, request, copies=100)
    assert "privacy" in _histogram(1, request, copies=100).details
    assert "privacy" in _histogram(0, request, copies=100).details


def test_a_party_that_is_the_recipient_gets_the_sum_itself():
    """``ss_contribute`` with one of the parties as recipient: that party adds the others'
    shares of the sum to its own and returns the decoded sum; the others return None.  The
    values are integers (exact on the 2^-16 grid), so the sum is exactly numpy's."""
    codec = FixedPoint(16)
    parties = ["p0", "p1", "p2"]
    rng = np.random.default_rng(43)
    values = {p: rng.integers(-1000, 1000, 5).astype(np.float64) for p in parties}
    roles = {p: (lambda t, v=values[p]: aggregate.ss_contribute(
        t, parties=parties, recipient="p0", values=v, codec=codec, tag="s")) for p in parties}
    results = simulator.run(roles, timeout=30).results
    assert np.array_equal(results["p0"], np.sum(list(values.values()), axis=0))
    assert results["p1"] is None and results["p2"] is None


def test_the_noise_draws_of_both_passes_can_be_cancelled(monkeypatch):
    """A party's noise draws can take long (one exact sample per value): ``run_party`` hands
    its transport's ``check_cancelled`` to the sampler (which calls it between chunks,
    ``test_dp.py``) on both passes, so an aborted session stops its party mid-draw.  Recorded
    by wrapping ``smpc.dp.party_noise``: each of the two parties' checks is passed exactly
    twice (pass 1 and pass 2 of a variance).  (600 rows: the noisy count, std 14.3 for this
    plan, falls below 1 -- an empty cohort -- with probability Phi(-599 / 14.3) < 1e-300.)"""
    spec = stats.StatSpec("var", ("x",), dp=dp.DPRequest(epsilon=1.0, delta=1e-6,
                                                         bounds={"x": (0.0, 100.0)}))
    real = dp.party_noise
    seen: list[object] = []

    def recording(*args, **kwargs):
        seen.append(kwargs.get("check"))
        return real(*args, **kwargs)

    monkeypatch.setattr(dp, "party_noise", recording)
    parties = ["p0", "p1"]
    checks: dict[str, object] = {}
    rng = np.random.default_rng(45)
    tables = {p: rng.uniform(0, 100, (300, 1)) for p in parties}

    def party(name):
        def role(t: Transport) -> None:
            checks[name] = t.check_cancelled
            stats.run_party(t, spec, tables[name], parties=parties, recipient="coordinator",
                            tag="s")
        return role

    roles = {p: party(p) for p in parties}
    roles["coordinator"] = lambda t: stats.run_recipient_ss(t, spec, parties=parties, tag="s")
    simulator.run(roles, timeout=60)
    assert len(seen) == 4
    for p in parties:
        assert sum(1 for c in seen if c == checks[p]) == 2


def test_the_aggregator_takes_up_to_4096_ciphertexts_per_party(public):
    """The boundary of the refusal above: a party announcing exactly 4,096 ciphertexts is
    accepted and all of them are read (here one-byte fakes from both parties, which the
    ciphertext arithmetic then refuses as not being ciphertexts -- not the count)."""
    def fake(t: Transport) -> None:
        t.send("coordinator", "s/n-ct", np.array([4096], dtype=np.int64))
        for k in range(4096):
            t.send("coordinator", f"s/ct/{k}", b"x")

    roles = {"p0": fake, "p1": fake, "coordinator": _aggregator(public, ["p0", "p1"]),
             "analyst": lambda t: None}
    with pytest.raises(InputError, match="not an smpc CKKS ciphertext"):
        simulator.run(roles, timeout=60)


def test_by_default_the_key_holder_floods_a_sum_of_one(holder, public):
    """``ckks_collect``'s defaults -- no DP noise, one summand -- release one party's
    encrypted vector flooded for the error of one fresh encryption: of its 1,000 grid-valued
    values each stays on its exact value with probability P(|N(0, 1)| < 1/2) = 0.38 (flood
    std = grid), so an unflooded release (a default DP noise that would cover the flood)
    passes with probability 0.38^1000 < 1e-400; a default of no summands is refused.  Each
    value stays within 40 flood stds of its exact value (beyond: probability < 1e-340 each;
    the rounding adds at most half a grid step = half a flood std)."""
    params = holder.release_parameters(error_bound=holder.preset.error_bound(independent=True))
    values = np.random.default_rng(46).integers(-1000, 1000, 1000) * params.grid
    roles = {"p0": _honest(public, values), "coordinator": _aggregator(public, ["p0"]),
             "analyst": lambda t: aggregate.ckks_collect(t, aggregator="coordinator",
                                                         keyholder=holder, length=1000,
                                                         tag="s")}
    released = simulator.run(roles, timeout=60).results["analyst"]
    assert not np.array_equal(released, values)
    assert np.max(np.abs(released - values)) < 40 * params.flood_std


def test_the_flood_is_sized_for_the_number_of_independent_summands(holder, public):
    """17 parties: their independent fresh errors add up to ``3 err sqrt(17)``, which rounds
    up to twice the error bound of one (``Preset.error_bound``), so the flood std is 2^-6,
    not the 2^-7 of a single summand nor the 2^-4 of the worst case for 17 (errors that could
    all align).  The release minus the exact grid-valued sum is the flood rounded to its own
    grid g = sigma: ``round(Z) g`` with ``Z ~ N(0, 1)``, whose std ``tau`` is computed exactly
    below (about 1.04 g; the CKKS error, < 1e-6, is far below g / 2).  Over 1,000 values the
    sample std is within 15% of tau: its relative sd is about 1 / sqrt(2000) = 2.2%, so a
    false alarm needs a 6.7-sd deviation (probability < 1e-10); a flood sized for one summand
    (std / 2) or for the worst case (std x 4) falls outside with probability ~1."""
    parties = [f"p{i}" for i in range(17)]
    bound = holder.preset.error_bound(summands=len(parties), independent=True)
    assert bound == 2 * holder.preset.error_bound(summands=1, independent=True)
    params = holder.release_parameters(error_bound=bound)
    assert params.flood_std == params.grid == 2.0**-6
    rng = np.random.default_rng(47)
    values = [rng.integers(-50, 50, 1000) * params.grid for _ in parties]
    roles = {p: _honest(public, v) for p, v in zip(parties, values, strict=True)}
    roles["coordinator"] = _aggregator(public, parties)
    roles["analyst"] = lambda t: aggregate.ckks_collect(
        t, aggregator="coordinator", keyholder=holder, length=1000, tag="s",
        summands=len(parties))
    released = simulator.run(roles, timeout=120).results["analyst"]
    k = np.arange(-40, 41)
    p_k = norm.cdf(k + 0.5) - norm.cdf(k - 0.5)
    tau = params.grid * math.sqrt(float(np.sum(p_k * k**2)))
    s = float(np.std(released - np.sum(values, axis=0)))
    assert abs(s / tau - 1) < 0.15, (s, tau)
