"""A party node answers health checks while it does heavy CKKS work.

A data owner with 32768 rows x 8 features runs a CKKS inference (64 ciphertexts to
encrypt, serialize and stream; the model owner combines them); meanwhile the test
polls the data owner's Health over mTLS.  The roles run in worker threads, and
TenSEAL's heavy calls release the GIL or are short, so every health check must
answer within 1 s (generous: idle answers take ~2 ms).
"""

from __future__ import annotations

import csv
import json
import threading
import time

import numpy as np

from parties.analyst.client import Client
from parties.federation import local as federation


def test_health_answers_during_ckks_inference(tmp_path):
    rng = np.random.default_rng(0)
    names = [f"f{i}" for i in range(8)]
    big, small = tmp_path / "big.csv", tmp_path / "lab.csv"
    for path, rows in ((big, 32768), (small, 50)):
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(names)
            w.writerows(np.round(rng.normal(0, 2, (rows, len(names))), 4).tolist())
    model = tmp_path / "m.json"
    model.write_text(json.dumps({"kind": "linear", "features": names,
                                 "coefficients": [0.5] * len(names), "intercept": 1.0}))
    # exact answers and predictions: this test is about the node's responsiveness during one
    # big inference, not the privacy controls (a DP data owner pads, a model owner's default
    # policy allows 1,000 rows per request)
    with federation.local_federation([big, small], models={"lab": model},
                                     directory=tmp_path / "fed", allow_exact=True) as lay, \
            Client(lay.directory) as client:
        done = threading.Event()
        outcome: dict = {}

        def predict() -> None:
            try:
                outcome["p"] = client.predict("big", "lab", backend="ckks")
            except Exception as exc:  # reported below
                outcome["error"] = exc
            finally:
                done.set()

        worker = threading.Thread(target=predict)
        worker.start()
        latencies, busy_seen = [], 0
        while not done.is_set():
            t0 = time.perf_counter()
            health = federation.node_health(lay.directory, "big", timeout=5.0)
            latencies.append(time.perf_counter() - t0)
            busy_seen += health.get("running_sessions", 0) > 0
            time.sleep(0.01)
        worker.join()
        assert "error" not in outcome, outcome.get("error")
        assert outcome["p"].n_predictions == 32768
        assert busy_seen >= 3, "the inference finished before the node was observed busy"
        assert max(latencies) < 1.0, f"health took {max(latencies):.3f} s while busy"
