"""`smpc demo` (simulated and on a real local federation) and one-line CLI errors."""

import io
import json
import subprocess
import sys

from parties import demo, sampledata
from parties.datasource import load_table


def smpc(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "parties.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)


def test_demo_on_a_real_federation_agrees_with_plaintext():
    proc = smpc("demo")
    assert proc.returncode == 0, proc.stderr
    assert "14 of 14 secure results agree" in proc.stdout
    assert "mutual TLS" in proc.stdout and "federation stopped." in proc.stdout
    assert "Traceback" not in proc.stderr


def test_simulated_tour_is_within_stated_tolerances(tmp_path):
    files, model_path = sampledata.write_sample_federation_data(tmp_path)
    tables = [load_table(p) for p in files]
    model = demo.linear.LinearModel.from_json(json.loads(model_path.read_text()))
    rows = demo.run_tour(demo.SimulatedExecutor(tables, tables[0]), tables, model, tables[0],
                         out=io.StringIO())
    assert len(rows) == 14
    for row in rows:
        assert row["within_tolerance"], row
        assert row["max_abs_diff"] <= row["tolerance"]


def test_demo_on_user_files_simulated(tmp_path):
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
