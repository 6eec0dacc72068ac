"""Privacy tests on the simulator: no node's message carries a party's aggregate or input.

Correctness tests see only the result, and a protocol that sends every party's
aggregate in the clear still computes the right sum.  These tests record every
payload every node sends (:mod:`tests.unit.leakscan`) in every statistic, on
both backends, and in both inference protocols, and then check what a
curious node could read off the wire:

* no message contains any party's own pass-1 aggregate (``[n, sum x_j]``,
  histogram / quantile bin counts), spread-pass sums of squares or moment-pass centred
  (scaled) moments, in float64,
  fixed point at 16 or 24 fractional bits (the raw ring element) or text --
  the references are computed here with numpy from the party's rows and the
  public shift the run broadcast, never by calling ``smpc.stats``;
* every seed is fresh: different for each peer, each pass and each session;
* a coalition of the recipient and one party cannot unmask a third party;
* inference: no message carries the features, the weights, the logits or the
  predictions; the dealer receives only the owners' mask seeds; seeds are
  fresh; CKKS ciphertexts of equal plaintexts differ, and a party's ciphertext
  opens only under the analyst's key.

The data are chosen so that every aggregate is distinctive (counts above 256,
non-round sums and moments; each test asserts that every element is searched):
a chance occurrence of one of the searched 8-byte words in these messages has
probability below ``2^-64`` per word and offset, i.e. never.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np
import pytest
import tenseal as ts

from smpc import ckks, sharing
from smpc.ckks.envelope import HEADER_BYTES
from smpc.encoding import FixedPoint
from smpc.errors import InputError
from smpc.stats import StatSpec

from . import leakscan
from .leakscan import PARTIES, RECIPIENT, Message

COLS = ("a", "b")
SIZES = (2311, 2617, 2903)
GRID = 2.0**-16  # the shift is the pass-1 mean rounded to the pass-1 codec's grid
FRAC_BITS = (16, 24)  # pass-1 and pass-2 encodings (StatSpec.codec / moment_codec defaults)


def _tables() -> list[np.ndarray]:
    """Three parties' rows: column ``a`` for moments, ``b`` (wide, uniform) for bins."""
    rng = np.random.default_rng(9009)
    out = []
    for k, n in enumerate(SIZES):
        a = rng.normal(5000 + 700 * k, 900, n)
        b = rng.uniform(0, 10_000, n) + 500 * k
        out.append(np.column_stack([a, b]))
    return out


TABLES = _tables()

SPECS: dict[str, dict[str, Any]] = {
    "count": {"statistic": "count", "columns": ("a",)},
    "sum": {"statistic": "sum", "columns": COLS},
    "mean": {"statistic": "mean", "columns": COLS},
    "var": {"statistic": "var", "columns": COLS},
    "std": {"statistic": "std", "columns": COLS},
    "cov": {"statistic": "cov", "columns": COLS},
    "corr": {"statistic": "corr", "columns": COLS},
    "histogram": {"statistic": "histogram", "columns": ("b",),
                  "edges": (2000.0, 4000.0, 6000.0, 8000.0)},
    "quantiles": {"statistic": "quantiles", "columns": ("b",), "probabilities": (0.5,),
                  "bounds": (0.0, 10_000.0), "resolution": 4},
    "linreg": {"statistic": "linreg", "columns": ("a",), "target": "b"},
}
BACKENDS = ("ss", "ckks")


def spec_for(name: str, backend: str) -> StatSpec:
    return StatSpec(**SPECS[name], backend=backend)


def rows_for(spec: StatSpec, table: np.ndarray) -> np.ndarray:
    return table[:, [COLS.index(c) for c in spec.value_columns]]


@pytest.fixture(scope="module")
def keyholder() -> ckks.KeyHolder:
    """The analyst's CKKS key, the same in every session of this module."""
    return ckks.KeyHolder("aggregate")


def run_stat(spec: StatSpec, keyholder: ckks.KeyHolder | None = None,
             tables: list[np.ndarray] = TABLES) -> list[Message]:
    tabs = [rows_for(spec, t) for t in tables]
    _sim, messages = leakscan.record(leakscan.stat_roles(spec, tabs, keyholder))
    return messages


# ---------------------------------------------------------------------------- references


def reference_pass1(spec: StatSpec, rows: np.ndarray) -> np.ndarray:
    """A party's pass-1 aggregate, from its rows with plain numpy (not ``smpc.stats``)."""
    n = rows.shape[0]
    if spec.statistic == "count":
        return np.array([n], dtype=np.float64)
    x = rows[:, 0]
    if spec.statistic == "histogram":
        e = np.asarray(spec.edges)
        inner = [np.count_nonzero((x >= lo) & ((x < hi) if i < len(e) - 2 else (x <= hi)))
                 for i, (lo, hi) in enumerate(itertools.pairwise(e))]
        return np.array([n, *inner, np.count_nonzero(x < e[0]), np.count_nonzero(x > e[-1])],
                        dtype=np.float64)
    if spec.statistic == "quantiles":
        assert spec.bounds is not None
        lo, hi = spec.bounds
        width = (hi - lo) / spec.resolution
        cell = np.minimum(((np.clip(x, lo, hi) - lo) // width).astype(np.int64),
                          spec.resolution - 1)
        return np.concatenate([[n], np.bincount(cell, minlength=spec.resolution)]).astype(
            np.float64)
    # each column summed contiguously (pairwise), as a party does: bit-for-bit the same words
    return np.concatenate([[n], np.ascontiguousarray(rows.T).sum(axis=1)])


def reference_pass2(rows: np.ndarray, shift: np.ndarray, divisor: float) -> np.ndarray:
    """``[sum (x - s) / D, upper triangle of sum (x - s)(x - s)^T / D]`` with numpy."""
    c = rows - shift
    k = rows.shape[1]
    second = [float(np.dot(c[:, i], c[:, j])) for i in range(k) for j in range(i, k)]
    return np.concatenate([c.sum(axis=0), second]) / divisor


def broadcast_shift(messages: list[Message]) -> tuple[np.ndarray, float]:
    """The public shift and count the run sent to the parties (one JSON document)."""
    docs = {m.raw for m in leakscan.select(messages, suffix="/shift")
            if m.sender == RECIPIENT and m.to in PARTIES}
    assert len(docs) == 1, "every party gets the same shift"
    doc = json.loads(docs.pop())
    return np.asarray(doc["shift"], dtype=np.float64), float(doc["n"])


def broadcast_scale(messages: list[Message]) -> np.ndarray:
    """The public scale of the moment pass (exact two-pass statistics: one JSON document)."""
    docs = {m.raw for m in leakscan.select(messages, suffix="/scale")
            if m.sender == RECIPIENT and m.to in PARTIES}
    assert len(docs) == 1, "every party gets the same scale"
    return np.asarray(json.loads(docs.pop())["scale"], dtype=np.float64)


def references(spec: StatSpec, messages: list[Message], tables: list[np.ndarray] = TABLES
               ) -> dict[str, np.ndarray]:
    """Every party's pass-1, spread and moment-pass (pass-2) aggregate, labelled.

    The spread pass sends ``sum (x - s)^2 / D`` per column; the moment pass the centred
    moments of ``(x - s) / c`` with the public scale ``c`` (:mod:`smpc.stats.bounds`).
    """
    refs = {}
    rows = [rows_for(spec, t) for t in tables]
    for p, r in zip(PARTIES, rows, strict=True):
        refs[f"{p} pass-1"] = reference_pass1(spec, r)
    if spec.passes == 2:
        shift, n = broadcast_shift(messages)
        pooled = np.vstack(rows)
        assert n == pooled.shape[0]
        if spec.backend == "ss":  # exact there: check it against the independent mean
            assert np.array_equal(shift, np.round(pooled.mean(axis=0) / GRID) * GRID)
        divisor = n if spec.backend == "ss" else 1.0  # ss divides the moments by N
        scale = broadcast_scale(messages)
        for p, r in zip(PARTIES, rows, strict=True):
            refs[f"{p} pass-s"] = ((r - shift) ** 2).sum(axis=0) / divisor
            refs[f"{p} pass-2"] = reference_pass2((r - shift) / scale, np.zeros_like(shift),
                                                  divisor)
    return refs


def wanted(refs: dict[str, np.ndarray]) -> dict[bytes, str]:
    out: dict[bytes, str] = {}
    for label, values in refs.items():
        out.update(leakscan.patterns(values, label, FRAC_BITS))
    return out


# ---------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(SPECS))
def test_no_party_aggregate_crosses_the_wire(name: str, backend: str,
                                             keyholder: ckks.KeyHolder) -> None:
    """No message any node sends carries a party's own aggregate, in any encoding.

    Catches a party whose ss sum-share is its encoded aggregate (unmasked, e.g.
    ``ss_contribute`` sending ``encoded``), a shift or count message carrying
    per-party values, or a plaintext copy of a contribution beside its
    ciphertext -- bugs that leave every result correct.
    """
    spec = spec_for(name, backend)
    messages = run_stat(spec, keyholder)
    tags = {m.tag for m in messages}
    assert ("stat/p1/sum-share" if backend == "ss" else "stat/p1/ct/0") in tags
    refs = references(spec, messages)
    assert len(refs) == 3 * (1 if spec.passes == 1 else 3)  # pass 1, spread, moments
    for label, values in refs.items():  # no element is too short to search on its own
        assert leakscan.searched_elements(values, FRAC_BITS) == values.size, label
    leaks = leakscan.scan(messages, wanted(refs))
    assert not leaks, f"party aggregates on the wire: {leaks[:8]}"


def test_the_scanner_finds_a_planted_aggregate(keyholder: ckks.KeyHolder) -> None:
    """Positive control: each encoding of each reference is found when it is sent.

    End to end, a party that also sends its pass-1 aggregate as a float64
    array is caught through the recording transport; then every element-wise
    word (float64, fixed point at 16 and 24 bits, both byte orders), every
    whole vector and every text form is found when planted at an odd offset
    among the bytes of a real sum-share payload.
    """
    spec = spec_for("var", "ss")
    rows = [rows_for(spec, t) for t in TABLES]
    roles = leakscan.stat_roles(spec, rows)
    honest = roles["p1"]

    def leaky(t: Any) -> None:
        honest(t)
        t.send(RECIPIENT, "stat/debug", reference_pass1(spec, rows[1]))

    roles["p1"] = leaky
    _sim, messages = leakscan.record(roles)
    refs = references(spec, messages)
    patterns = wanted(refs)
    found = leakscan.scan(messages, patterns)
    assert found and all(f.startswith("p1->coordinator stat/debug") for f in found)
    assert any("float64-le vector p1 pass-1" in f for f in found)

    carrier = leakscan.select(messages, sender="p0", suffix="p2/sum-share")[0].raw
    unique = {p: f"{label} #{i}" for i, (p, label) in enumerate(patterns.items())}
    planted = carrier[:3] + b"".join(carrier[: 1 + 2 * (i % 4)] + p
                                     for i, p in enumerate(unique))
    assert set(leakscan.find(planted, unique)) >= set(unique.values())
    kinds = {label.split(" ")[0] for label in patterns.values()}
    assert kinds == {"float64-le", "float64-be", "fixed16-le", "fixed16-be", "fixed24-le",
                     "fixed24-be", "text"}


def test_aggregation_seeds_are_distinct_per_peer_pass_and_session() -> None:
    """Every seed of the ss secure sum is fresh: per peer, per pass and per session.

    Catches ``share_with_seeds`` giving every peer the same seed (then the
    recipient and one peer unmask a third party, see the next test) and seeds
    that repeat across sessions with the same inputs and tag (a deterministic,
    derived or cached seed).  Four sessions of a two-pass statistic (three secure sums:
    pass 1, the spread pass, the moment pass), three parties: 4 * 3 * 3 * 2 = 72 seeds of
    16 bytes, all different.
    """
    spec = spec_for("var", "ss")
    seeds = []
    for _ in range(4):
        for m in leakscan.select(run_stat(spec), suffix="/seed"):
            assert len(m.raw) == 16
            seeds.append(m.raw)
    assert len(seeds) == 72
    assert len(set(seeds)) == len(seeds), "a seed was reused"


def test_recipient_and_one_party_cannot_unmask_a_third() -> None:
    """The coalition {recipient, party j} fails to recover party k's aggregate.

    The attack: assume every party sends the same seed to all its peers; then
    party j knows every mask on party k's sum-share, and the recipient holds
    that sum-share::

        guess = S_k + (n-1) E(s_kj, k) - E(s_jk, j) - sum_{m != j,k} E(s_mj, m)

    which equals k's encoded aggregate exactly if the seeds are shared.  With
    fresh per-peer seeds ``guess`` is that aggregate plus a uniform mask, so
    no element matches (probability 2^-64 each).  Catches the same-seed bug in
    :func:`smpc.sharing.share_with_seeds` as a working attack, on both passes
    and for every (j, k).
    """
    spec = spec_for("var", "ss")
    messages = run_stat(spec)
    refs = references(spec, messages)
    n = len(PARTIES)
    for pass_tag, codec_bits in (("stat/p1", 16), ("stat/spread", 16), ("stat/p2", 24)):
        seed = {(m.sender, m.to): m.raw
                for m in leakscan.select(messages, suffix=f"{pass_tag}/seed")}
        shares = {m.sender: m.payload
                  for m in leakscan.select(messages, to=RECIPIENT, suffix=f"{pass_tag}/sum-share")}
        for j, k in itertools.permutations(PARTIES, 2):
            shape = shares[k].shape

            def e(s: bytes, owner: str, shape: tuple[int, ...] = shape,
                  tag: str = pass_tag) -> np.ndarray:
                return sharing.expand_share(s, shape, f"{tag}/{owner}")

            guess = shares[k] + e(seed[(k, j)], k) * np.uint64(n - 1) - e(seed[(j, k)], j)
            for m in PARTIES:
                if m not in (j, k):
                    guess = guess - e(seed[(m, j)], m)
            ref = refs[f"{k} pass-{'s' if pass_tag.endswith('spread') else pass_tag[-1]}"]
            secret = FixedPoint(codec_bits).encode(ref)
            assert not np.any(guess == secret), f"{j} and the recipient unmasked {k}"


# ---------------------------------------------------------------------------- CKKS freshness


def _equal_byte_fraction(a: bytes, b: bytes) -> float:
    n = min(len(a), len(b))
    return float(np.mean(np.frombuffer(a[:n], np.uint8) == np.frombuffer(b[:n], np.uint8)))


def test_ckks_contributions_are_fresh_and_under_the_analyst_key(
        keyholder: ckks.KeyHolder) -> None:
    """Equal inputs under the same key encrypt differently; only the analyst's key opens them.

    Catches encryption without fresh randomness (a cached or deterministic
    ciphertext: two sessions with the same inputs and key would send the same
    bytes, revealing that a party's aggregate did not change) and a party
    encrypting under any key but the analyst's.  Two ciphertexts of fresh
    randomness agree on a fraction ~1/256 of aligned bytes (compressed
    uniform data); we require < 1/64 (the count of equal bytes among ~3e5 is
    binomial with sd ~36 around 1300: 1/64 is 100 sd away).  Decryption
    tolerance: the preset's error bound for one fresh public-key ciphertext
    (``Preset.error_bound``) plus float64 rounding of values ~1e7 (2^-50 |v|).
    """
    spec = spec_for("mean", "ckks")
    runs = [run_stat(spec, keyholder) for _ in range(2)]
    other = ckks.KeyHolder("aggregate")
    bound = ckks.get_preset("aggregate").error_bound(summands=1)
    for p, table in zip(PARTIES, TABLES, strict=True):
        first, second = (leakscan.select(r, sender=p, suffix="p1/ct/0")[0].raw for r in runs)
        assert first != second
        assert _equal_byte_fraction(first[64:], second[64:]) < 1 / 64
        ref = reference_pass1(spec, rows_for(spec, table))
        got = keyholder.decrypt([first], ref.size)
        assert np.all(np.abs(got - ref) <= bound + 2.0**-50 * np.abs(ref))
        with pytest.raises(InputError, match="another public key"):
            other.decrypt([first], ref.size)
        # past the envelope check: the other key's raw decryption is garbage
        body = first[HEADER_BYTES:]
        garbage = np.asarray(ts.ckks_vector_from(other.context, body).decrypt())[: ref.size]
        assert not np.any(np.abs(garbage - ref) <= 1.0)
