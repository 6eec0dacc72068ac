"""The `smpc demo` command and one-line CLI errors (run as real subprocesses)."""

import io
import json
import subprocess
import sys

import numpy as np

from parties import demo, sampledata
from parties.datasource import load_table


def smpc(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "parties.cli", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def test_demo_prints_secure_next_to_plaintext_and_agrees():
    proc = smpc("demo")
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()]
    backends = [r for r in rows if " ss " in f" {' '.join(r)} " or "ckks" in r]
    assert len(backends) >= 14  # 7 computations x 2 backends
    assert "Traceback" not in proc.stderr


def test_demo_tour_is_within_stated_tolerances(tmp_path):
    files, model_path = sampledata.write_sample_federation_data(tmp_path)
    tables = [load_table(p) for p in files]
    model = demo.linear.LinearModel.from_json(json.loads(model_path.read_text()))
    rows = demo.run_tour(demo.SimulatedExecutor(tables, tables[0]), tables, model, tables[0],
                         out=io.StringIO())
    for row in rows:
        title, diff = row["computation"], row["max_abs_diff"]
        if title.startswith("quantiles"):
            # one bin of the fine histogram: (range + 2) / 1024
            assert diff <= 0.1, row
        elif title.startswith("predict") and row["backend"] == "ckks":
            assert diff <= 6 * demo.linear.model_flood_std(
                demo.linear.InferenceSpec("logistic", 1, 1, backend="ckks")), row
        else:
            assert diff <= 1e-3, row
        assert np.isfinite(diff)


def test_demo_on_user_files(tmp_path):
    files, _ = sampledata.write_sample_federation_data(tmp_path)
    proc = smpc("demo", "--data", *map(str, files))
    assert proc.returncode == 0, proc.stderr
    assert "3 parties" in proc.stdout


def test_cli_errors_are_one_line_without_traceback(tmp_path):
    proc = smpc("demo", "--data", str(tmp_path / "missing.csv"), str(tmp_path / "other.csv"))
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("smpc: error:")
    bad = tmp_path / "bad.csv"
    bad.write_text("age,bmi\n40,abc\n")
    proc = smpc("demo", "--data", str(bad), str(bad))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_unknown_command_is_a_usage_error():
    proc = smpc("frobnicate")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
