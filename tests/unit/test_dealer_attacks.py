"""A deviating dealer against ``ss`` inference: it must learn nothing and leak nothing.

Threat (issue 11): the dealer -- the coordinator by default, or a separate node -- may deviate
from the protocol; it must still not make one owner's data readable by the other.  Each test
runs the real owners' roles (:mod:`smpc.linear`) in the simulator against a dealer role written
here that tries its best, and then *performs* the attack from the owners' views.

What each owner's view holds is observed by wrapping :func:`smpc.beaver.matmul` (the function
the owners call with their dealt triple): the wrapper records the triple share the owner uses
and then calls the real function, so nothing of the protocol is replaced.

Sizes: ``M x D = 1024 x 4`` features per session, so that one session gives 4096 mask words,
the chi-square helpers' minimum (:mod:`tests.unit.uniformity`).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

from smpc import beaver, linear, randomness, sharing, simulator
from smpc.beaver import dealing
from smpc.encoding import FixedPoint
from smpc.errors import ProtocolError, SmpcError
from smpc.linear import InferenceSpec, LinearModel
from smpc.transport import Transport

from . import leakscan
from .leakscan import INF_TAG, Message
from .uniformity import assert_jointly_uniform, assert_uniform

M, D = 1024, 4
CODEC = FixedPoint(16)
SPEC = InferenceSpec("linear", M, D, feature_bound=1000.0)
MODEL = LinearModel("linear", tuple(f"x{j}" for j in range(D)), (0.75, -0.5, 0.25, 1.5), 3.0)
CONSTANT_SEED = bytes(range(16))  # the deviating dealer's "randomness": public and fixed


def _features(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(300, 1000, (M, D)) * rng.choice([-1.0, 1.0], (M, D))


def _ss_bound(X: np.ndarray) -> np.ndarray:
    """Error of ``ss`` inference: per product ``(|x| + |w|) 2^-17 + 2^-34`` (encoding of both
    factors, :mod:`smpc.beaver`), plus ``2^-33`` for the intercept encoded at 32 bits."""
    return (np.abs(X) + np.abs(MODEL.weights)).sum(axis=1) * 2.0**-17 + D * 2.0**-34 + 2.0**-33


_deviating = threading.local()


@contextmanager
def dealer_randomness_fixed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Within roles that set ``_deviating.on``, every fresh seed is :data:`CONSTANT_SEED`.

    The other roles (the owners) keep the OS CSPRNG: only the dealer deviates.
    """
    real = randomness.fresh_seed

    def fresh_seed() -> bytes:
        return CONSTANT_SEED if getattr(_deviating, "on", False) else real()

    monkeypatch.setattr(randomness, "fresh_seed", fresh_seed)
    yield


@contextmanager
def observed_triples(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[Any]]]:
    """Record, per owner, the triple share (a, b, c) it multiplies with (then run the real
    :func:`smpc.beaver.matmul`)."""
    seen: dict[str, list[Any]] = {"data": [], "model": []}
    real = beaver.matmul

    def matmul(t: Transport, parties: Any, triple: beaver.TripleShare, x: np.ndarray,
               y: np.ndarray, tag: str, **kw: Any) -> np.ndarray:
        seen[t.me].append((triple.a.copy(), triple.b.copy(), triple.c.copy()))
        return real(t, parties, triple, x, y, tag, **kw)

    monkeypatch.setattr(beaver, "matmul", matmul)
    yield seen


def _run(X: np.ndarray, dealer: Callable[[Transport], Any] | None = None
         ) -> tuple[np.ndarray, list[Message]]:
    roles = leakscan.inference_roles(SPEC, X, MODEL)
    if dealer is not None:
        roles["dealer"] = dealer
    sim, messages = leakscan.record(roles)
    return sim.results["data"], messages


def constant_seed_dealer(t: Transport) -> None:
    """The real dealing code, its every seed the same public constant: the same seed for both
    owners, a chosen seed, and the same seed again in every session."""
    _deviating.on = True
    linear.run_dealer(t, SPEC, data_owner="data", model_owner="model", tag=INF_TAG)


def _opening(messages: list[Message], sender: str) -> np.ndarray:
    (m,) = leakscan.select(messages, sender=sender, suffix="/mm/de")
    return m.payload


def test_a_dealer_that_reuses_a_seed_across_owners_learns_nothing_and_leaks_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A dealer that gives both owners the same (constant, reused) seed cannot unmask anyone.

    Before issue 11 the dealer chose both owners' triple seeds: with the same seed for both,
    ``a_data == a_model`` and ``b_data == b_model``, the predictions stayed correct, and from
    its own view the model owner read the features exactly (``X = d + 2 a_model``, ``d`` the
    opened ``X - a``) and the data owner the weights (``w = e + 2 b_data``); with the seed
    reused across sessions, the difference of two sessions' openings was ``X1 - X2``.

    Now each owner draws its own masks.  Asserted over two sessions with different features:

    * the predictions are right (the dealer's deviation is not a failure here);
    * (a) each recovery attempt, performed from the owner's own view, fails: ``d + 2 a_model``
      equals no encoded feature, ``e + 2 b_data`` no encoded weight, and the change of the
      opening between sessions is not the change of the features (a chance match has
      probability 2^-64 per element);
    * (b) each owner's masks ``a`` are uniform, the two owners' masks are jointly uniform
      (independent), their difference is uniform, and no mask word repeats between sessions
      (chi-square at false-positive rate 1e-9 each, :mod:`tests.unit.uniformity`; equal masks
      put every difference on one cell -- rejection certain);
    * the dealer never receives an opening.
    """
    xs = [_features(101), _features(202)]
    views: list[dict[str, Any]] = []
    with dealer_randomness_fixed(monkeypatch), observed_triples(monkeypatch) as seen:
        for X in xs:
            preds, messages = _run(X, constant_seed_dealer)
            logits = X @ MODEL.weights + MODEL.intercept
            assert np.all(np.abs(preds - logits) <= _ss_bound(X))
            assert not [m for m in messages if m.to == "dealer" and m.tag.endswith("/de")]
            views.append({"d": _opening(messages, "data") + _opening(messages, "model"),
                          "data": seen["data"][-1], "model": seen["model"][-1]})
    w_enc = CODEC.encode(MODEL.weights)
    for X, v in zip(xs, views, strict=True):
        n_x = X.size
        d, e = v["d"][:n_x].reshape(M, D), v["d"][n_x:]
        a_model, b_data = v["model"][0], v["data"][1]
        # (a) the attack that worked before: the other owner's mask is assumed equal to mine
        x_guess = d + a_model + a_model
        assert not np.any(x_guess == CODEC.encode(X)), "the model owner recovered features"
        w_guess = e + b_data + b_data
        assert not np.any(w_guess == w_enc), "the data owner recovered the weights"
    change = views[0]["d"][: xs[0].size] - views[1]["d"][: xs[1].size]
    assert not np.any(change == (CODEC.encode(xs[0]) - CODEC.encode(xs[1])).ravel()), \
        "the change of the features between sessions was opened"
    # (b) masks: uniform, independent between owners, fresh between sessions
    a_data = np.stack([v["data"][0] for v in views])
    a_model = np.stack([v["model"][0] for v in views])
    for s in range(len(views)):
        assert_uniform(a_data[s], f"data owner's mask a, session {s}")
        assert_uniform(a_model[s], f"model owner's mask a, session {s}")
        assert_jointly_uniform(a_data[s], a_model[s], f"both owners' masks a, session {s}")
        assert_uniform(a_data[s] - a_model[s], f"difference of the owners' masks, session {s}")
    for who in (a_data, a_model):
        for r, s in itertools.combinations(range(len(views)), 2):
            assert not np.any(who[r] == who[s]), "a mask word repeats between sessions"


# ------------------------------------------------------------------ what the dealer still sends

DEAL_TAG = f"{INF_TAG}/deal"
OWNERS = ["data", "model"]
REQUESTS = [linear._triple_request(SPEC)]
Tamper = Callable[[np.ndarray, list[bytes]], np.ndarray]


def tampering_dealer(tamper: Tamper, parties: list[str] = OWNERS,
                     requests: list[beaver.Request] = REQUESTS, tag: str = DEAL_TAG
                     ) -> Callable[[Transport], None]:
    """A dealer that follows the protocol up to its correction, then sends
    ``tamper(honest correction, every party's seed)`` instead."""
    def role(t: Transport) -> None:
        hello = dealing._hello(parties, requests)
        for p in parties:
            t.send(p, f"{tag}/hello", hello)
        seeds = [dealing._recv_seed(t, p, f"{tag}/seed") for p in parties]
        honest = dealing._corrections(seeds, requests)
        t.send(parties[-1], f"{tag}/correction", tamper(honest.copy(), seeds))
    return role


def _record_failure(roles: dict[str, Callable[[Transport], Any]]
                    ) -> tuple[BaseException, dict[str, BaseException], list[Message]]:
    """Run roles that must fail; the first error, each role's own error, every message."""
    log: list[Message] = []
    lock = threading.Lock()
    errors: dict[str, BaseException] = {}

    def wrap(name: str, fn: Callable[[Transport], Any]) -> Callable[[Transport], Any]:
        def role(t: Transport) -> Any:
            try:
                return fn(leakscan.RecordingTransport(t, log, lock))
            except BaseException as exc:
                errors[name] = exc
                raise
        return role

    with pytest.raises(SmpcError) as info:
        simulator.run({n: wrap(n, fn) for n, fn in roles.items()}, timeout=60.0)
    return info.value, errors, log


def _seed_words(seed: bytes) -> np.ndarray:
    return np.frombuffer(seed, dtype="<u8").astype(np.uint64)


def test_a_dealer_that_hides_an_owners_seed_in_its_correction_is_caught_before_any_opening(
        ) -> None:
    """The dealer knows the data owner's mask seed (it must, to compute ``c``) and hides it in
    the model owner's correction: the model owner can read it -- and it is worth nothing.

    The owners check the triple before they open anything (:mod:`smpc.beaver.checking`): the
    forged correction fails the check (except with probability 2^-40), both owners raise a
    :class:`~smpc.errors.ProtocolError` naming the dealer, and neither ever sends its Beaver
    opening ``X - a`` / ``w - b`` or an output share -- so the model owner's recovery attempt
    (``X = d + a_data + a_model``) has no ``d`` to work on.  Catches the check missing,
    skipped, or run after the opening.
    """
    def hide(correction: np.ndarray, seeds: list[bytes]) -> np.ndarray:
        correction[:2] = _seed_words(seeds[0])
        return correction

    X = _features(303)
    roles = leakscan.inference_roles(SPEC, X, MODEL)
    roles["dealer"] = tampering_dealer(hide)
    first, errors, messages = _record_failure(roles)
    assert isinstance(first, ProtocolError) and first.peer == "dealer"
    for owner in OWNERS:
        err = errors[owner]
        assert isinstance(err, ProtocolError) and err.peer == "dealer", repr(err)
        assert "failed their check" in str(err)
    # the model owner did receive the data owner's seed ...
    (sent,) = leakscan.select(messages, sender="data", to="dealer", suffix="/deal/seed")
    (forged,) = leakscan.select(messages, sender="dealer", to="model", suffix="/correction")
    assert forged.payload[:2].astype("<u8").tobytes() == sent.raw
    # ... but no opening and no output share was ever sent: nothing to unmask
    assert not leakscan.select(messages, suffix="/mm/de")
    assert not leakscan.select(messages, suffix="/z")


def _replayed() -> Tamper:
    """The honest correction of an earlier session (the dealer reusing its randomness)."""
    old: list[np.ndarray] = []

    def catch(correction: np.ndarray, seeds: list[bytes]) -> np.ndarray:
        old.append(correction.copy())
        return correction

    roles = leakscan.inference_roles(SPEC, _features(404), MODEL)
    roles["dealer"] = tampering_dealer(catch)
    simulator.run(roles)
    return lambda correction, seeds: old[0]


def _add(position: int, delta: int) -> Tamper:
    def tamper(correction: np.ndarray, seeds: list[bytes]) -> np.ndarray:
        correction[position: position + 1] += np.uint64(delta)
        return correction
    return tamper


TAMPERINGS: dict[str, Callable[[], Tamper]] = {
    # one element of c off by one ulp of the 2f-bit product
    "c-plus-one": lambda: _add(7, 1),
    # one element off in the top bit only: the error the ring check finds least often (1/2
    # per row); a deviating dealer's best chance to slip through (2^-40)
    "c-top-bit": lambda: _add(M - 1, 1 << 63),
    # the sacrificed c'' wrong, c right
    "check-part": lambda: _add(M + 3, 1),
    "replayed-from-another-session": _replayed,
    "constant": lambda: (lambda correction, seeds: np.zeros_like(correction)),
}


@pytest.mark.parametrize("how", list(TAMPERINGS))
def test_an_inconsistent_correction_fails_loudly_naming_the_dealer(how: str) -> None:
    """A wrong correction would make the predictions wrong; the check turns it into an error.

    Each tampering below, with the hello and the owners' own seeds honest, makes both owners
    raise a :class:`~smpc.errors.ProtocolError` naming the dealer before either sends its
    opening (so nothing is opened) and before the data owner has any prediction.  False
    negative rate: at most 2^-40 per case (the check's soundness bound; the top-bit case
    reaches it).  Catches a missing or weakened check (fewer rows, ``R`` without randomness,
    ``c''`` not checked, the check reading the wrong part of the correction).
    """
    roles = leakscan.inference_roles(SPEC, _features(505), MODEL)
    roles["dealer"] = tampering_dealer(TAMPERINGS[how]())
    first, errors, messages = _record_failure(roles)
    assert isinstance(first, ProtocolError) and first.peer == "dealer", repr(first)
    assert set(errors) == set(OWNERS)
    for err in errors.values():
        assert isinstance(err, ProtocolError) and err.peer == "dealer"
        assert "dealer" in str(err) and "failed their check" in str(err)
    assert not leakscan.select(messages, suffix="/mm/de")
    assert not leakscan.select(messages, suffix="/z")


# -------------------------------------------------------------------- the check's randomness

SMALL = beaver.TripleRequest.matmul((6, 3), (3,), checks=1)


def test_one_check_row_catches_a_top_bit_error_about_half_the_time() -> None:
    """With one row (``checks=1``), an error of ``2^63`` in one element of ``c`` is caught in
    about half of the sessions, as the soundness argument says (``R_ri`` odd with
    probability 1/2) -- so ``R`` is fresh and unpredictable, and 40 rows leave 2^-40.

    64 sessions: caught ~ Binomial(64, 1/2); we require 10 <= caught <= 54, which fails a
    correct implementation with probability 3.5e-9.  Power: a fixed ``R`` (odd entry: caught
    64 times of 64; even entry: 0 times), an ``R`` with even entries, or no check (0 times)
    are rejected with certainty.  Every caught error is blamed on the dealer; every missed
    one makes the opened product wrong by exactly ``2^63``.
    """
    parties = ["p0", "p1"]
    x = CODEC.encode(np.arange(18.0).reshape(6, 3))
    y = CODEC.encode(np.array([0.5, -1.0, 2.0]))
    xs, ys = sharing.share(x, 2), sharing.share(y, 2)

    def owner(i: int) -> Callable[[Transport], Any]:
        def role(t: Transport) -> Any:
            (triple,) = beaver.receive(t, "dealer", parties, [SMALL], "deal")
            assert isinstance(triple, beaver.TripleShare)
            z = beaver.matmul(t, parties, triple, xs[i], ys[i], "mm", method="none")
            return beaver.open_shares(t, parties, z, "open")
        return role

    caught = 0
    for _ in range(64):
        roles = {"p0": owner(0), "p1": owner(1),
                 "dealer": tampering_dealer(_add(2, 1 << 63), parties, [SMALL], "deal")}
        try:
            opened = simulator.run(roles, timeout=30.0).results["p0"]
        except ProtocolError as exc:
            assert exc.peer == "dealer"
            caught += 1
            continue
        want = np.matmul(x, y, dtype=np.uint64)
        want[2] += np.uint64(1 << 63)
        np.testing.assert_array_equal(opened, want)
    assert 10 <= caught <= 54, caught


def test_without_a_check_a_wrong_correction_makes_the_product_wrong() -> None:
    """What a deviating dealer can still do to an *unchecked* triple or truncation pair (the
    generic n-party API; :mod:`smpc.linear` checks its triple): make the result wrong,
    silently -- exactly by the error it put in the correction.

    Three parties, ``beaver.mul`` with dealer truncation; the dealer adds 5 to the last
    party's share of ``c`` at element 1 and 7 to its share of ``r >> f`` at pair 4.  Every
    other element is within one ulp of ``floor(x y / 2^f)``; element 1 is off by
    ``floor(5 / 2^f)`` or one more, i.e. 0 or 1 -- so the ``c`` error, at ``2f`` bits, is
    lost in truncation -- and element 4 by exactly ``-7`` ulps plus the truncation's 0 or 1.
    (The masks stay the parties' own: no opening reveals anything, see the first test.)
    """
    parties = ["p0", "p1", "p2"]
    n = 8
    requests: list[beaver.Request] = [beaver.TripleRequest.mul(n), beaver.TruncRequest(n)]
    x = CODEC.encode(np.linspace(-3.0, 3.0, n))
    y = CODEC.encode(np.linspace(2.0, -1.0, n))
    xs, ys = sharing.share(x, 3), sharing.share(y, 3)

    def tamper(correction: np.ndarray, seeds: list[bytes]) -> np.ndarray:
        correction[1] += np.uint64(5)
        correction[n + 4] += np.uint64(7)
        return correction

    def party(i: int) -> Callable[[Transport], Any]:
        def role(t: Transport) -> Any:
            triple, pair = beaver.receive(t, "dealer", parties, requests, "deal")
            assert isinstance(triple, beaver.TripleShare)
            assert isinstance(pair, beaver.TruncPairShare)
            z = beaver.mul(t, parties, triple, xs[i], ys[i], "m", pair=pair)
            return beaver.open_shares(t, parties, z, "open")
        return role

    roles: dict[str, Callable[[Transport], Any]] = {p: party(i) for i, p in enumerate(parties)}
    roles["dealer"] = tampering_dealer(tamper, parties, requests, "deal")
    opened = simulator.run(roles).results["p0"].view(np.int64).astype(object)
    exact = (x.view(np.int64).astype(object) * y.view(np.int64).astype(object)) >> 16
    diff = [int(v) for v in opened - exact]
    assert diff[4] in (-7, -6)
    assert all(d in (0, 1) for k, d in enumerate(diff) if k != 4)
