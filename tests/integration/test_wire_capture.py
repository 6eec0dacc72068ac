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
predictions (float64), which only the data owner may hold.  Positive controls
show that the scanner finds each encoding, and that the capture really holds
the protocol traffic (tags, CKKS ciphertexts, the revealed result).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from parties.grpc_transport import CAPTURE_ENV
from smpc.linear import LinearModel
from smpc.stats import StatSpec

from .test_runtime import read_predictions

ORGS = ("org-a", "org-b", "org-c")
MODEL = LinearModel("logistic", ("income", "spend"), (3.125e-5, -2.71828e-5), -0.4321)


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
    arr = np.frombuffer(blob, dtype=np.uint8)
    wanted = np.array(sorted(patterns), dtype=np.uint64)
    found = []
    for offset in range(8):
        n = (len(arr) - offset) // 8
        if n <= 0:
            continue
        words = arr[offset:offset + 8 * n].view("<u8")
        hits = np.unique(words[np.isin(words, wanted)])
        found += [patterns[int(h)] for h in hits]
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
        n = 24 + 3 * k
        parties[org] = {"income": rng.normal(52_000 + 4_000 * k, 9_000, n),
                        "spend": rng.normal(21_000 + 1_500 * k, 4_000, n),
                        "region": np.where(rng.random(n) < 0.5, "north", "south")}
    parties["bank"] = {"rate": rng.normal(3.5, 0.4, 20) + 1000.0}
    fed = make_federation("capture", parties, models={"bank": [MODEL]}, stat_parties=ORGS,
                          env={CAPTURE_ENV: str(capdir)}, separate_dealer=True,
                          min_cohort_size=5)
    c = fed.client
    results = {
        "mean-ss": c.compute(StatSpec("mean", ("income", "spend"))),
        "var-ss": c.compute(StatSpec("var", ("income", "spend")), where="region == 'north'"),
        "hist-ss": c.compute(StatSpec("histogram", ("income",), edges=(0, 40e3, 60e3, 1e6))),
        "mean-ckks": c.compute(StatSpec("mean", ("income", "spend"), backend="ckks")),
        "cov-ckks": c.compute(StatSpec("cov", ("income", "spend"), backend="ckks")),
    }
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
    assert b"inf/deal/triples" in blobs["org-b"]     # triples from the separate dealer
    assert everything.count(b"SMCK\x01") >= 10       # CKKS ciphertexts (envelope magic)
    assert b'"statistic": "var"' in blobs["coordinator"] or b'"statistic":"var"' in everything
    assert len(everything) > 1_000_000
    # the ss result reached the analyst through the coordinator (it is revealed, by design)
    assert b'"statistic": "mean"' in blobs["coordinator"]
    assert results["hist-ss"].value[0] == np.histogram(
        np.concatenate([fed.data[o]["income"] for o in ORGS]), bins=(0, 40e3, 60e3, 1e6)
    )[0].tolist()
    assert preds["ss"].n_predictions == len(fed.data["org-b"]["income"])


def test_results_are_right_and_the_dealer_freed_its_session(captured):
    fed, results, _preds, _blobs = captured
    X = np.column_stack([np.concatenate([fed.data[o][c] for o in ORGS])
                         for c in ("income", "spend")])
    assert np.allclose(results["mean-ss"].value, X.mean(axis=0), atol=1e-4)
    assert np.allclose(results["mean-ckks"].value, X.mean(axis=0), atol=1e-2)
    assert np.allclose(results["cov-ckks"].value, np.cov(X.T), rtol=1e-4, atol=1.0)
    from parties import federation

    assert federation.node_health(fed.directory, "dealer")["active_sessions"] == 0
