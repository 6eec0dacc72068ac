"""Record every byte that crosses the wire in a multi-party run and look for raw values.

The federation's nodes run with ``SMPC_WIRE_CAPTURE``: every server appends the
exact serialized bytes of every request it receives and every response it
sends -- on every method (Deliver, Prepare, Compute, Predict, ...) -- to a
capture file.  Every RPC of the federation has one of its nodes as server, so
the captures hold every application byte that crossed the network, as seen
inside TLS (a packet capture would only show ciphertext).

Then no party's raw values may appear in them, in any encoding:

* float64, little and big endian (the in-memory form of every value);
* fixed-point int64 at f=16 (the ss encoding) and f=24 (the moment encoding),
  little and big endian -- searched when the integer has at least 4
  significant bytes (|x| >= 256 at f=16; the data are chosen so that every
  value qualifies), because shorter integers occur by chance in any binary
  stream;
* CSV text, exactly as each cell is written in the party's file;

nor the model owner's coefficients and intercept (float64), nor the
predictions (float64), which only the data owner may hold.

Statistics never send rows, so the raw-value search alone would miss a party
that sends its *aggregate* unmasked.  Hence also: no party's own pass-1
aggregate (``[n, sum x_j]``, histogram counts) of any statistic the fixture
runs, nor its spread-pass sums of squares, nor its pass-2 centred moments of
``(x - s) / c`` (var on ss: divided by the pooled count ``N``; cov on ckks:
undivided), computed here with numpy from the party's rows and the shift and
scale the run broadcast (read from the capture), appears in float64,
fixed point at 16 or 24 bits (= the raw ring element) or text
(``tests/unit/leakscan.py``: element-wise where the word has at least four
significant bytes, and every vector as a whole).

Positive controls show that the scanner finds each encoding, and that the
capture really holds the protocol traffic (tags, CKKS ciphertexts, the
revealed result).
"""

from __future__ import annotations

import itertools
import json
import re

import numpy as np
import pytest

from parties.transport.server import CAPTURE_ENV
from smpc.linear import LinearModel
from smpc.stats import StatSpec

from ..unit import leakscan
from .test_runtime import read_predictions

ORGS = ("org-a", "org-b", "org-c")
MODEL = LinearModel("logistic", ("income", "spend"), (3.125e-5, -2.71828e-5), -0.4321)
COLS = ("income", "spend")
NORTH = "region == 'north'"
HIST_EDGES = (0, 40e3, 60e3, 1e6)
# the statistics the fixture runs: result key -> (spec, filter)
RUNS: dict[str, tuple[StatSpec, str | None]] = {
    "mean-ss": (StatSpec("mean", COLS), None),
    "var-ss": (StatSpec("var", COLS), NORTH),
    "hist-ss": (StatSpec("histogram", ("income",), edges=HIST_EDGES), None),
    "mean-ckks": (StatSpec("mean", COLS, backend="ckks"), None),
    "cov-ckks": (StatSpec("cov", COLS, backend="ckks"), None),
}
FRAC_BITS = (16, 24)  # pass-1 and pass-2 fixed point (StatSpec.codec / moment_codec)
GRID = 2.0**-16  # the shift is the pass-1 mean rounded to this grid


def eight_byte_patterns(values: np.ndarray) -> dict[int, str]:
    """Every searched 8-byte encoding of ``values``, as little-endian uint64 -> label."""
    out: dict[int, str] = {}
    for v in np.asarray(values, dtype=np.float64).ravel():
        f = np.float64(v)
        out[int.from_bytes(f.tobytes(), "little")] = f"float64-le {v!r}"
        out[int.from_bytes(f.byteswap().tobytes(), "little")] = f"float64-be {v!r}"
        for bits in (16, 24):
            i = round(float(v) * 2**bits)
            if abs(i) >= 2**24:
                le = np.int64(i).tobytes()
                out[int.from_bytes(le, "little")] = f"fixed{bits}-le {v!r}"
                out[int.from_bytes(le[::-1], "little")] = f"fixed{bits}-be {v!r}"
    return out


def scan(blob: bytes, patterns: dict[int, str], texts: list[str]) -> list[str]:
    """Labels of every pattern found at any byte offset, and every text found."""
    found = leakscan.find(blob, {k.to_bytes(8, "little"): v for k, v in patterns.items()})
    text_set = set(texts)
    for run in re.findall(rb"[0-9.eE+-]{6,}", blob):
        s = run.decode()
        for t in text_set:
            if t in s:
                found.append(f"csv-text {t}")
    return found


@pytest.fixture(scope="module")
def captured(make_federation, tmp_path_factory):
    capdir = tmp_path_factory.mktemp("capture")
    rng = np.random.default_rng(77)
    parties = {}
    for k, org in enumerate(ORGS):
        n = 600 + 40 * k  # >= 256 rows (also after the filter): every count is searchable
        parties[org] = {"income": rng.normal(52_000 + 4_000 * k, 9_000, n),
                        "spend": rng.normal(21_000 + 1_500 * k, 4_000, n),
                        "region": np.where(rng.random(n) < 0.5, "north", "south")}
    parties["bank"] = {"rate": rng.normal(3.5, 0.4, 20) + 1000.0}
    fed = make_federation("capture", parties, models={"bank": [MODEL]}, stat_parties=ORGS,
                          env={CAPTURE_ENV: str(capdir)}, separate_dealer=True,
                          min_cohort_size=5)
    c = fed.client
    results = {key: c.compute(spec, where=where) for key, (spec, where) in RUNS.items()}
    preds = {b: c.predict("org-b", "bank", backend=b, feature_bound=2e5) for b in ("ss", "ckks")}
    blobs = {p.stem: p.read_bytes() for p in sorted(capdir.glob("*.wire"))}
    return fed, results, preds, blobs


def test_no_raw_value_crosses_the_wire(captured):
    fed, _results, preds, blobs = captured
    raw = np.concatenate([np.concatenate([fed.data[o]["income"], fed.data[o]["spend"]])
                          for o in ORGS] + [fed.data["bank"]["rate"]])
    patterns = eight_byte_patterns(raw)
    secret_model = np.array([*MODEL.coefficients, MODEL.intercept])
    predictions = np.concatenate([read_predictions(p.output_path)[1] for p in preds.values()])
    for v in (*secret_model, *predictions):
        f = np.float64(v)
        patterns[int.from_bytes(f.tobytes(), "little")] = f"float64-le {v!r}"
        patterns[int.from_bytes(f.byteswap().tobytes(), "little")] = f"float64-be {v!r}"
    texts = [t for o in (*ORGS, "bank") for t in fed.csv_text[o]]
    assert len(texts) == len(raw)
    blob = b"".join(blobs.values())
    leaks = scan(blob, patterns, texts)
    assert not leaks, f"raw values on the wire: {leaks[:10]}"


def test_the_scanner_finds_every_encoding(captured):
    fed, _results, _preds, blobs = captured
    v = float(fed.data["org-a"]["income"][3])
    text = fed.csv_text["org-a"][6]  # income of row 4, as written (row-major: income, spend)
    assert float(text) == v
    patterns = eight_byte_patterns([v])
    assert len(patterns) == 6
    base = b"".join(blobs.values())[:200_000]
    for label_value, label in patterns.items():
        planted = base[:1001] + label_value.to_bytes(8, "little") + base[1001:]
        assert label in scan(planted, patterns, [])
    assert scan(base + b"xx" + text.encode() + b"yy", {}, [text]) == [f"csv-text {text}"]


def test_the_capture_holds_the_protocol_traffic(captured):
    fed, results, preds, blobs = captured
    assert set(blobs) == {"coordinator", "dealer", *ORGS, "bank"}
    assert all(len(b) > 0 for b in blobs.values())
    everything = b"".join(blobs.values())
    assert b"stat/p1/seed" in blobs["org-a"]        # seeds between parties
    assert b"stat/p1/sum-share" in blobs["coordinator"]  # shares of the sum to the recipient
    assert b"stat/shift" in everything              # the public pass-2 shift
    # the separate dealer: a hello to each owner, each owner's own mask seed back to it, the
    # model owner's (bank's) correction, and the owners' check of the triple between them
    assert b"inf/deal/hello" in blobs["org-b"] and b"inf/deal/hello" in blobs["bank"]
    assert blobs["dealer"].count(b"inf/deal/seed") >= 2
    assert b"inf/deal/correction" in blobs["bank"]
    assert b"inf/deal/correction" not in blobs["org-b"]
    assert b"inf/deal/check/rho" in blobs["org-b"] and b"inf/deal/check/sigma" in blobs["bank"]
    assert everything.count(b"SMCK\x01") >= 10       # CKKS ciphertexts (envelope magic)
    assert b'"statistic": "var"' in blobs["coordinator"] or b'"statistic":"var"' in everything
    assert len(everything) > 1_000_000
    # the ss result reached the analyst through the coordinator (it is revealed, by design)
    assert b'"statistic": "mean"' in blobs["coordinator"]
    assert results["hist-ss"].value[0] == np.histogram(
        np.concatenate([fed.data[o]["income"] for o in ORGS]), bins=HIST_EDGES
    )[0].tolist()
    assert preds["ss"].n_predictions == len(fed.data["org-b"]["income"])


def test_results_are_right_and_the_dealer_freed_its_session(captured):
    fed, results, _preds, _blobs = captured
    X = np.column_stack([np.concatenate([fed.data[o][c] for o in ORGS])
                         for c in ("income", "spend")])
    assert np.allclose(results["mean-ss"].value, X.mean(axis=0), atol=1e-4)
    assert np.allclose(results["mean-ckks"].value, X.mean(axis=0), atol=1e-2)
    assert np.allclose(results["cov-ckks"].value, np.cov(X.T), rtol=1e-4, atol=1.0)
    from parties.federation import local as federation

    assert federation.node_health(fed.directory, "dealer")["active_sessions"] == 0


# ---------------------------------------------------------------------------- aggregates


def party_rows(fed, org: str, spec: StatSpec, where: str | None) -> np.ndarray:
    """The rows ``org`` contributed to a run (value columns in order, filter applied)."""
    d = fed.data[org]
    X = np.column_stack([d[c] for c in spec.value_columns])
    if where is not None:
        assert where == NORTH
        X = X[d["region"] == "north"]
    return X


def pass1(spec: StatSpec, X: np.ndarray) -> np.ndarray:
    """A party's pass-1 aggregate with numpy: ``[n, sums]`` or ``[n, bins, below, above]``."""
    n = X.shape[0]
    if spec.statistic == "histogram":
        x, e = X[:, 0], np.asarray(spec.edges)
        inner = [np.count_nonzero((x >= lo) & ((x < hi) if i < len(e) - 2 else (x <= hi)))
                 for i, (lo, hi) in enumerate(itertools.pairwise(e))]
        return np.array([n, *inner, np.count_nonzero(x < e[0]), np.count_nonzero(x > e[-1])],
                        dtype=np.float64)
    # each column summed contiguously (pairwise), as a party does: bit-for-bit the same words
    return np.concatenate([[n], np.ascontiguousarray(X.T).sum(axis=1)])


def pass2(X: np.ndarray, shift: np.ndarray, divisor: float) -> np.ndarray:
    """``[sum (x - s) / D, upper triangle of sum (x - s)(x - s)^T / D]`` with numpy."""
    c = X - shift
    k = X.shape[1]
    second = [float(np.dot(c[:, i], c[:, j])) for i in range(k) for j in range(i, k)]
    return np.concatenate([c.sum(axis=0), second]) / divisor


def broadcast_shifts(blob: bytes) -> dict[float, np.ndarray]:
    """Every pass-2 shift document in the capture (canonical JSON), by its pooled count ``n``."""
    docs = set(re.findall(rb'\{"n":[-0-9.eE+]+,"shift":\[[^\]]*\]\}', blob))
    return {float(d["n"]): np.asarray(d["shift"], dtype=np.float64)
            for d in (json.loads(m) for m in docs)}


def broadcast_scales(blob: bytes) -> list[np.ndarray]:
    """Every public scale document of the moment pass in the capture (exact two-pass runs)."""
    docs = set(re.findall(rb'\{"scale":\[[^\]]*\]\}', blob))
    return [np.asarray(json.loads(d)["scale"], dtype=np.float64) for d in docs]


def aggregate_references(fed, blob: bytes) -> dict[str, np.ndarray]:
    """Each party's own aggregate for every pass of every statistic the fixture ran."""
    shifts = broadcast_shifts(blob)
    refs: dict[str, np.ndarray] = {}
    for key, (spec, where) in RUNS.items():
        rows = {o: party_rows(fed, o, spec, where) for o in ORGS}
        for o in ORGS:
            refs[f"{key} {o} pass-1"] = pass1(spec, rows[o])
        if spec.passes == 2:
            pooled = np.vstack(list(rows.values()))
            n = float(pooled.shape[0])
            shift = shifts[n]  # the run's shift, as broadcast (ss: exact; ckks: noisy mean)
            if spec.backend == "ss":  # rounding to the grid, plus 3 parties' encoding errors
                bound = GRID / 2 + 3 * 2.0**-17 / n
                assert np.all(np.abs(shift - pooled.mean(axis=0)) <= bound)
            divisor = n if spec.backend == "ss" else 1.0
            # exact answers: the spread pass, then the moments of (x - s) / c for the public
            # scale c (smpc.stats.bounds); every scale in the capture is tried for every run
            for o in ORGS:
                refs[f"{key} {o} spread"] = ((rows[o] - shift) ** 2).sum(axis=0) / divisor
                for i, c in enumerate(broadcast_scales(blob)):
                    refs[f"{key} {o} pass-2 scale-{i}"] = pass2((rows[o] - shift) / c,
                                                                np.zeros_like(shift), divisor)
    return refs


def test_no_party_aggregate_crosses_the_wire(captured):
    """No party's own aggregate of any statistic (either pass) is anywhere in the capture.

    Catches a party that sends its aggregate unmasked -- e.g. its encoded
    aggregate as its ss sum-share (``smpc.aggregate.ss_contribute``), or a
    plaintext copy beside its ciphertext -- which leaves every result right
    and sends no row, so the raw-value search cannot see it.  Every count,
    sum and moment is searched element-wise (asserted below) except histogram
    bins with fewer than 256 rows, which are covered by the whole-vector search.
    """
    fed, _results, _preds, blobs = captured
    blob = b"".join(blobs.values())
    refs = aggregate_references(fed, blob)
    assert len(broadcast_scales(blob)) == 2  # one per exact two-pass run (var-ss, cov-ckks)
    assert len(refs) == 3 * 5 + 2 * 3 * (1 + 2)  # pass 1; spread and pass 2 (x 2 scales)
    for label, values in refs.items():
        searchable = leakscan.searched_elements(values, FRAC_BITS)
        assert searchable == values.size or (label.startswith("hist") and searchable >= 2), label
    wanted: dict[bytes, str] = {}
    for label, values in refs.items():
        wanted.update(leakscan.patterns(values, label, FRAC_BITS))
    leaks = leakscan.find(blob, wanted)
    assert not leaks, f"party aggregates on the wire: {leaks[:10]}"


def test_the_aggregate_scanner_finds_every_encoding(captured):
    """Positive control: every searched encoding of every party aggregate is found when planted.

    Each pattern (float64 le/be, fixed point at 16 and 24 bits le/be, whole
    vectors, text) is planted at an odd offset into the real capture, which
    must then be reported -- so the search above would have seen a leak.
    """
    fed, _results, _preds, blobs = captured
    blob = b"".join(blobs.values())
    refs = aggregate_references(fed, blob)
    assert {float(n) for n in broadcast_shifts(blob)} == {
        float(sum(party_rows(fed, o, RUNS[k][0], RUNS[k][1]).shape[0] for o in ORGS))
        for k in ("var-ss", "cov-ckks")}
    wanted: dict[bytes, str] = {}
    for label, values in refs.items():
        wanted.update(leakscan.patterns(values, label, FRAC_BITS))
    # one unique label per pattern, every pattern planted at its own odd offset
    unique = {p: f"{label} #{i}" for i, (p, label) in enumerate(wanted.items())}
    planted = blob[:100_001] + b"".join(b"\x07" * (1 + 2 * (i % 4)) + p
                                        for i, p in enumerate(unique))
    assert set(leakscan.find(planted, unique)) >= set(unique.values())
    kinds = {label.split(" ")[0] for label in wanted.values()}
    assert kinds == {"float64-le", "float64-be", "fixed16-le", "fixed16-be", "fixed24-le",
                     "fixed24-be", "text"}
