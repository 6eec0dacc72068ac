"""The `smpc` CLI and the Python API against a real local federation (node processes, mTLS).

Reference answers come from numpy / `statistics` on the pooled CSV data.  Tolerances are
derived in :mod:`tests.tolerances`: ss the fixed-point encoding bounds, ckks the release
(6 sigma of the flood: false failure 2e-9 per value), quantiles one bin of the fine histogram,
predictions the logit bounds of smpc.linear (a quarter of them for probabilities).
"""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from parties.api import Federation
from parties.data.sources import load_table
from parties.federation import sampledata
from smpc.linear import InferenceSpec, LinearModel, model_flood_std
from tests.tolerances import (
    Backend,
    Moments,
    assert_within,
    ckks_kept_key_bound,
    logit_bound_to_probability,
    quantile_tol,
    ss_logit_bound,
)

HOSPITALS = ["hospital-a", "hospital-b", "hospital-c"]


def smpc(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "parties.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr


def add_column_with_gaps(path: Path, seed: int) -> None:
    """Append ``hba1c`` (about 15% blank cells, some ``NA``) to a hospital's CSV; the other
    columns are untouched (the other tests read only those)."""
    rng = np.random.default_rng(seed)
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    rows[0].append("hba1c")
    for row in rows[1:]:
        u = rng.random()
        row.append("" if u < 0.1 else "NA" if u < 0.15 else repr(round(rng.normal(6, 1), 2)))
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)


@pytest.fixture(scope="module")
def cli_fed(tmp_path_factory):
    root = tmp_path_factory.mktemp("clifed")
    files, model = sampledata.write_sample_federation_data(root / "data", with_model_owner=True)
    for i, f in enumerate(files[:3]):
        add_column_with_gaps(f, seed=70 + i)
    fed_dir = root / "fed"
    # exact answers (opted in) compared with numpy; a 3,000-bin quantile of a few hundred
    # rows needs its cells unsuppressed (cell suppression: tests/unit/test_exact_safeguards.py)
    proc = smpc("federation", "init", str(fed_dir), "--data", *map(str, files),
                "--model", f"cardio-lab={model}", "--min-cohort", "5", "--allow-exact",
                "--min-cell-size", "1")
    assert proc.returncode == 0, proc.stderr
    proc = smpc("federation", "up", str(fed_dir))
    assert proc.returncode == 0, proc.stderr
    pooled = np.vstack([load_table(f).matrix(list(sampledata.COLUMNS)) for f in files[:3]])
    try:
        yield fed_dir, pooled, files, LinearModel.from_json(json.loads(model.read_text()))
    finally:
        smpc("federation", "down", str(fed_dir))


def col(name: str) -> int:
    return sampledata.COLUMNS.index(name)


def run_json(fed_dir: Path, *args: str) -> dict:
    proc = smpc("run", *args, "--federation", str(fed_dir), "--parties", *HOSPITALS, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_status_lists_every_node_running(cli_fed):
    fed_dir, *_ = cli_fed
    proc = smpc("federation", "status", str(fed_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    nodes = json.loads(proc.stdout)
    assert {n["name"] for n in nodes} >= {*HOSPITALS, "cardio-lab", "coordinator"}
    assert all(n["running"] for n in nodes)


@pytest.mark.parametrize("backend", ["ss", "ckks"])
def test_run_mean_std_and_filter(cli_fed, backend):
    fed_dir, pooled, *_ = cli_fed
    doc = run_json(fed_dir, "mean", "age", "bmi", "--backend", backend)
    X = pooled[:, [col("age"), col("bmi")]]
    assert_within(doc["value"], X.mean(axis=0), Moments(X, Backend(backend, 3)).mean_tol, "mean")
    doc = run_json(fed_dir, "std", "glucose", "--backend", backend, "--where", "age >= 60")
    sel = pooled[pooled[:, col("age")] >= 60, col("glucose")]
    assert doc["n"] == len(sel)
    assert_within(doc["value"], [statistics.stdev(sel.tolist())],
                  Moments(sel, Backend(backend, 3)).std_tol, "std")


def test_run_quantiles_histogram_linreg_text_output(cli_fed):
    fed_dir, pooled, *_ = cli_fed
    doc = run_json(fed_dir, "quantiles", "cholesterol", "--probs", "0.5", "0.9",
                   "--bounds", "100", "400", "--resolution", "3000")
    expected = np.quantile(pooled[:, col("cholesterol")], [0.5, 0.9], method="inverted_cdf")
    assert_within(doc["value"][0], expected, quantile_tol((100, 400), 3000), "quantiles")
    doc = run_json(fed_dir, "histogram", "smoker", "--edges", "-0.5", "0.5", "1.5")
    assert doc["value"][0] == [int((pooled[:, col("smoker")] == 0).sum()),
                               int((pooled[:, col("smoker")] == 1).sum())]
    proc = smpc("run", "linreg", "age", "bmi", "--target", "systolic_bp", "--federation",
                str(fed_dir), "--parties", *HOSPITALS)
    assert proc.returncode == 0, proc.stderr
    assert "systolic_bp = " in proc.stdout and "R^2" in proc.stdout


@pytest.mark.parametrize("backend", ["ss", "ckks"])
def test_predict_reveals_only_to_the_data_owner(cli_fed, backend):
    fed_dir, _, files, model = cli_fed
    proc = smpc("predict", "--federation", str(fed_dir), "--data-owner", "hospital-a",
                "--model-owner", "cardio-lab", "--backend", backend, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    X = load_table(files[0]).matrix(list(model.features))
    assert doc["n_predictions"] == len(X) and doc["data_owner"] == "hospital-a"
    assert "prediction" not in proc.stdout.replace('"n_predictions"', "")
    from parties.federation.demo import read_predictions

    got = read_predictions(Path(doc["output_path"]))
    if backend == "ss":
        bound = ss_logit_bound(model.weights, model.intercept, X)
    else:
        spec = InferenceSpec(model.kind, *X.shape, backend="ckks")
        flood = model_flood_std(spec, model.weights)
        bound = ckks_kept_key_bound(model.weights, spec.ckks_preset, flood)  # node: kept key
    z = X @ model.weights + model.intercept
    assert model.kind == "logistic"
    assert_within(got, 1 / (1 + np.exp(-z)), logit_bound_to_probability(bound), "predictions")


@pytest.mark.parametrize("args, needle", [
    (("run", "mean", "no_such_column"), "no_such_column"),
    (("run", "histogram", "age"), "bin edges"),
    (("run", "quantiles", "age"), "public bounds"),
    (("run", "mean", "age", "--where", "age >>> 3"), "position"),
    (("run", "mean", "age", "--epsilon", "1"), ""),
    (("predict", "--data-owner", "hospital-a", "--model-owner", "nobody"), "nobody"),
])
def test_cli_refusals_are_one_line(cli_fed, args, needle):
    fed_dir, *_ = cli_fed
    proc = smpc(*args, "--federation", str(fed_dir))
    err = one_line_error(proc)
    assert needle in err


def test_out_of_range_values_are_one_line(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("x\n" + "\n".join(["1e14"] * 12) + "\n")
    b.write_text("x\n" + "\n".join(["1"] * 12) + "\n")
    fed_dir = tmp_path / "fed"
    assert smpc("federation", "init", str(fed_dir), "--data", str(a), str(b),
                "--allow-exact").returncode == 0
    assert smpc("federation", "up", str(fed_dir)).returncode == 0
    try:
        err = one_line_error(smpc("run", "sum", "x", "--federation", str(fed_dir)))
        assert "range" in err
    finally:
        smpc("federation", "down", str(fed_dir))
    err = one_line_error(smpc("run", "sum", "x", "--federation", str(fed_dir), "--timeout", "5"))
    assert "unreachable" in err or "not running" in err or "coordinator" in err


def test_bad_arguments_are_usage_errors(cli_fed):
    fed_dir, *_ = cli_fed
    proc = smpc("run", "median", "age", "--federation", str(fed_dir))
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
    err = one_line_error(smpc("run", "mean", "age", "--federation", str(fed_dir / "nope")))
    assert "nope" in err


def test_python_api_mirrors_statistics(cli_fed):
    fed_dir, pooled, *_ = cli_fed
    age = pooled[:, col("age")].tolist()
    age_bmi = pooled[:, [col("age"), col("bmi")]]
    ss, ckks = Moments(age_bmi, Backend("ss", 3)), Moments(age_bmi, Backend("ckks", 3))
    with Federation.open(fed_dir, parties=HOSPITALS) as fed:
        assert fed.count("age") == len(age)
        assert_within(fed.mean("age"), statistics.fmean(age), ss.mean_tol[0], "mean")
        assert_within(fed.variance("age"), statistics.variance(age), ss.var_tol[0], "var")
        assert_within(fed.stdev("age", backend="ckks"), statistics.stdev(age), ckks.std_tol[0],
                      "std")
        corr = np.array(fed.correlation(["age", "bmi"]))
        assert_within(corr[0, 1], statistics.correlation(age, pooled[:, col("bmi")].tolist()),
                      ss.corr_tol[0, 1], "corr")
        fit = fed.linear_regression("age", "bmi")
        ref = statistics.linear_regression(age, pooled[:, col("bmi")].tolist())
        slope_tol, intercept_tol, _ = ss.linreg_tol()
        assert_within(fit.slope[0], ref.slope, slope_tol[0], "slope")
        assert_within(fit.intercept, ref.intercept, intercept_tol, "intercept")
        assert fed.histogram("smoker", [-0.5, 0.5, 1.5]) == [
            int((pooled[:, col("smoker")] == 0).sum()), int((pooled[:, col("smoker")] == 1).sum())]
        qs = fed.quantiles("age", [0.5], bounds=(0, 120), resolution=1200)
        assert_within(qs[0], statistics.median_low(age), quantile_tol((0, 120), 1200), "median")
        assert fed.last_result is not None and fed.last_result.statistic == "quantiles"
        p = fed.predict("hospital-b", "cardio-lab", backend="ss")
        assert p.n_predictions == 310


def _main_json(*argv: str) -> tuple[int, dict, str]:
    """``smpc ... --json`` in this process (the analyst's client over real mTLS): exit status,
    the one JSON document on stdout, stderr."""
    import contextlib
    import io

    from parties.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([*argv, "--json"])
    return rc, json.loads(out.getvalue()), err.getvalue()


def test_json_documents_of_commands_needing_running_nodes(cli_fed):
    """``run``, ``predict``, ``federation status`` and ``up`` (already running) print one
    document of their README schema (:mod:`tests.cli_schemas`) over real nodes."""
    from tests.cli_schemas import SCHEMAS, check

    fed_dir, pooled, *_ = cli_fed
    rc, doc, _ = _main_json("run", "count", "age", "--federation", str(fed_dir), "--parties",
                            *HOSPITALS)
    assert rc == 0
    check(doc, SCHEMAS["run"])
    assert doc["value"] == len(pooled) and doc["details"]["parties"] == HOSPITALS
    rc, doc, _ = _main_json("predict", "--federation", str(fed_dir), "--data-owner",
                            "hospital-a", "--model-owner", "cardio-lab")
    assert rc == 0
    check(doc, SCHEMAS["predict"])
    rc, doc, _ = _main_json("federation", "status", str(fed_dir))
    assert rc == 0
    check(doc, SCHEMAS["federation status"])
    rc, doc, _ = _main_json("federation", "up", str(fed_dir))
    assert rc == 0 and doc == {"started": []}
    check(doc, SCHEMAS["federation up"])


def test_proceed_without_a_declining_small_clinic(cli_fed):
    """``cardio-lab`` (120 rows) has fewer than the minimum cohort (5) of rows with ``age >=
    t`` while every hospital has more: without ``--partial`` the query fails naming it
    (PERMISSION_DENIED; its reason crosses the coordinator's gRPC edge in the
    ``smpc-declined`` trailer); with it the mean comes from the three hospitals -- numpy on
    their pooled rows, within the ss mean bound of :mod:`tests.tolerances` -- and the answer
    names them and the decliner with its reason."""
    from tests.cli_schemas import ERROR, SCHEMAS, check

    fed_dir, pooled, files, _ = cli_fed
    ages = [load_table(f).matrix(["age"])[:, 0] for f in files]
    assert len(ages) == 4  # three hospitals, then cardio-lab
    t = next(t for t in range(60, 100)
             if (ages[3] >= t).sum() < 5 and all((a >= t).sum() >= 5 for a in ages[:3]))
    rc, doc, err = _main_json("run", "mean", "age", "--where", f"age >= {t}",
                              "--federation", str(fed_dir))
    assert rc == 2
    check(doc, ERROR)
    assert doc["code"] == "PERMISSION_DENIED" and doc["node"] == "cardio-lab"
    assert list(doc["declined"]) == ["cardio-lab"] and "cohort" in doc["declined"]["cardio-lab"]
    assert "cardio-lab" in err
    rc, doc, _ = _main_json("run", "mean", "age", "--where", f"age >= {t}", "--partial",
                            "--federation", str(fed_dir))
    assert rc == 0
    check(doc, SCHEMAS["run"])
    assert doc["details"]["parties"] == HOSPITALS
    assert list(doc["details"]["declined"]) == ["cardio-lab"]
    sel = pooled[pooled[:, col("age")] >= t, col("age")]
    assert doc["n"] == len(sel)
    assert_within(doc["value"], [sel.mean()], Moments(sel, Backend("ss", 3)).mean_tol, "mean")
    # the Python API, likewise
    with Federation.open(fed_dir, allow_partial=True) as api:
        assert_within(api.mean("age", where=f"age >= {t}"), sel.mean(),
                      Moments(sel, Backend("ss", 3)).mean_tol[0], "mean")
        assert api.last_result.details["parties"] == HOSPITALS
        assert list(api.last_result.details["declined"]) == ["cardio-lab"]


def test_missing_values_over_the_cli(cli_fed):
    """Blank cells through real nodes (mutual TLS) and the CLI: ``--missing skip`` (the
    default) gives pandas' ``skipna`` mean and the exact missing count; ``--missing error``
    is one line naming the column, no value; a median above ``--bounds`` is reported clamped
    with a warning on stderr, and the count above is exact.  Tolerance: the ss mean bound of
    :class:`tests.tolerances.Moments` on the present values."""
    fed_dir, _pooled, files, _ = cli_fed
    hba1c = np.concatenate([load_table(f).column("hba1c") for f in files[:3]])
    present = hba1c[~np.isnan(hba1c)]
    doc = run_json(fed_dir, "mean", "hba1c")
    assert doc["details"]["missing"] == {"hba1c": int(np.isnan(hba1c).sum())}
    assert doc["n"] == present.size and isinstance(doc["n"], int)
    assert_within(doc["value"], [present.mean()], Moments(present, Backend("ss", 3)).mean_tol,
                  "mean hba1c")
    proc = smpc("run", "mean", "hba1c", "--missing", "error", "--federation", str(fed_dir),
                "--parties", *HOSPITALS)
    err = one_line_error(proc)
    assert "'hba1c'" in err and "missing" in err
    assert not any(repr(float(v)) in err for v in present)
    proc = smpc("run", "quantiles", "hba1c", "--probs", "0.5", "--bounds", "0", "4",
                "--federation", str(fed_dir), "--parties", *HOSPITALS, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["details"]["above"] == [int(np.sum(present > 4))]
    assert doc["value"] == [[4.0]] and doc["details"]["clamped"] == [[1]]
    assert "smpc: warning: the 0.5 quantile of 'hba1c' lies above the upper bound 4" in \
        proc.stderr
