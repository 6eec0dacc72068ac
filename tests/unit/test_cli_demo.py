"""`smpc demo` (simulated and on a real local federation) and one-line CLI errors.

The demo prints each secure result next to its own plaintext answer and its own verdict; these
tests do not trust either.  They record the secure results the demo's executor returns
(observation only: the executor is wrapped, nothing is replaced) and compare them with numpy /
``statistics`` on the sample CSVs read here with the ``csv`` module, within the tolerances
derived in :mod:`tests.tolerances` (ss: encoding bounds; ckks: the release at 6 sigma, false
failure below 1e-6 per run; quantiles: one fine-histogram bin; predictions: the logit bounds
of smpc.linear, a quarter of them for probabilities).
"""

import csv
import io
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

from parties.data.sources import load_table
from parties.federation import demo, sampledata
from smpc import linear
from tests.tolerances import (
    Backend,
    Moments,
    assert_within,
    ckks_kept_key_bound,
    ckks_logit_bound,
    logit_bound_to_probability,
    quantile_tol,
    ss_logit_bound,
)

REPO = Path(__file__).resolve().parents[2]


def smpc(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "parties.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)


class Recording:
    """Mixin for a demo executor: keeps every secure result it hands to the tour."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stats = []
        self.predictions = []

    def statistic(self, spec):
        result = super().statistic(spec)
        self.stats.append((spec, result))
        return result

    def predict(self, model, backend):
        got = super().predict(model, backend)
        self.predictions.append((backend, np.asarray(got, dtype=float)))
        return got


def read_columns(path: Path) -> dict[str, np.ndarray]:
    """A sample CSV, read independently of parties.data.sources."""
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {c: np.array([float(r[c]) for r in rows]) for c in rows[0]}


def check_tour(stats, predictions, hospitals: list[Path], *, nodes: bool = False) -> None:
    """Every recorded secure result against numpy / statistics on the CSVs (``nodes``: the
    predictions came from party nodes, whose data owner keeps its CKKS key and releases)."""
    data = [read_columns(p) for p in hospitals]
    parties = len(data)
    seen = set()
    for spec, r in stats:
        X = np.vstack([np.column_stack([d[c] for c in spec.value_columns]) for d in data])
        m = Moments(X, Backend(spec.backend, parties), ddof=spec.ddof)
        kind = spec.statistic
        seen.add((kind, spec.backend))
        if kind == "count":
            assert r.value == len(X)
        elif kind == "mean":
            want = [statistics.fmean(X[:, j].tolist()) for j in range(X.shape[1])]
            assert_within(r.value, want, m.mean_tol, "mean")
        elif kind == "std":
            want = [statistics.stdev(X[:, j].tolist()) for j in range(X.shape[1])]
            assert_within(r.value, want, m.std_tol, "std")
        elif kind == "corr":
            assert_within(r.value, np.corrcoef(X, rowvar=False), m.corr_tol, "corr")
        elif kind == "linreg":
            design = np.column_stack([np.ones(len(X)), X[:, :-1]])
            coef = np.linalg.lstsq(design, X[:, -1], rcond=None)[0]
            coef_tol, intercept_tol, _ = m.linreg_tol()
            assert_within(r.value["coefficients"], coef[1:], coef_tol, "coefficients")
            assert_within(r.value["intercept"], coef[0], intercept_tol, "intercept")
        else:
            assert kind == "quantiles", kind
            assert Backend(spec.backend, parties).count_exact()
            want = np.quantile(X[:, 0], spec.probabilities, method="inverted_cdf")
            assert_within(r.value[0], want, quantile_tol(spec.bounds, spec.resolution), kind)
    kinds = {"count", "mean", "std", "corr", "linreg", "quantiles"}
    assert seen == {(k, b) for k in kinds for b in ("ss", "ckks")}
    model = linear.LinearModel.from_json(sampledata.RISK_MODEL)
    X = np.column_stack([data[0][f] for f in model.features])  # the first hospital's rows
    z = X @ model.weights + model.intercept
    assert [b for b, _ in predictions] == (["ss", "ckks"] if predictions else [])
    for backend, got in predictions:
        if backend == "ss":
            bound = ss_logit_bound(model.weights, model.intercept, X)
        else:
            spec = linear.InferenceSpec(model.kind, *X.shape, backend="ckks")
            flood = linear.model_flood_std(spec, model.weights)
            bound = (ckks_kept_key_bound if nodes else ckks_logit_bound)(
                model.weights, "aggregate", flood)
        assert_within(got, 1 / (1 + np.exp(-z)), logit_bound_to_probability(bound), backend)


def test_demo_on_a_real_federation_agrees_with_numpy(tmp_path, monkeypatch):
    """The default `smpc demo` tour (federation_demo: real nodes, mutual TLS)."""
    executors = []

    class RecordingFederationExecutor(Recording, demo.FederationExecutor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            executors.append(self)

    monkeypatch.setattr(demo, "FederationExecutor", RecordingFederationExecutor)
    out = io.StringIO()
    rows = demo.federation_demo(out=out)
    text = out.getvalue()
    assert len(rows) == 14 and "mutual TLS" in text and "federation stopped." in text
    # the demo's exact answers are an opt-in it states (a default federation is DP-only)
    assert demo.EXACT_NOTICE in text and "allow exact answers" in text
    # the summary points the reader at the file that states the tolerances: it must exist
    cited = re.search(r"see (\S+\.py): tolerance", text)
    assert cited and (REPO / cited.group(1)).is_file()
    (ex,) = executors
    files, _ = sampledata.write_sample_federation_data(tmp_path, with_model_owner=True)
    check_tour(ex.stats, ex.predictions, files[:-1], nodes=True)  # lab: no stats
    assert len(ex.predictions) == 2


def test_simulated_tour_agrees_with_numpy(tmp_path):
    files, model_path = sampledata.write_sample_federation_data(tmp_path)
    tables = [load_table(p) for p in files]
    model = demo.linear.LinearModel.from_json(json.loads(model_path.read_text()))

    class RecordingSimulatedExecutor(Recording, demo.SimulatedExecutor):
        pass

    ex = RecordingSimulatedExecutor(tables, tables[0])
    rows = demo.run_tour(ex, tables, model, tables[0], out=io.StringIO())
    assert len(rows) == 14
    check_tour(ex.stats, ex.predictions, files)


def test_demo_on_user_files_simulated(tmp_path):
    """The CLI path for user files (a smoke test: the values are checked by the tests above)."""
    files, _ = sampledata.write_sample_federation_data(tmp_path)
    proc = smpc("demo", "--simulated", "--data", *map(str, files))
    assert proc.returncode == 0, proc.stderr
    assert "3 parties" in proc.stdout and "12 of 12" in proc.stdout


def test_cli_errors_are_one_line_without_traceback(tmp_path):
    proc = smpc("demo", "--simulated", "--data", str(tmp_path / "missing.csv"),
                str(tmp_path / "other.csv"))
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("smpc: error:")
    bad = tmp_path / "bad.csv"
    bad.write_text("age,bmi\n40,abc\n")
    proc = smpc("demo", "--simulated", "--data", str(bad), str(bad))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_unknown_command_is_a_usage_error():
    proc = smpc("frobnicate")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
