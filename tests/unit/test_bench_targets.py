"""The bench's report logic on constructed rows (no timing, no processes).

The fit of the scaling section and the targets table are arithmetic on result rows: these
tests feed rows with known numbers and check what the report concludes from them.
"""

from __future__ import annotations

import numpy as np
import pytest

from smpc_bench import scaling, targets
from smpc_bench.common import row


def test_fit_line_recovers_fixed_and_per_row_cost():
    """Exact data t = 0.030 + 2e-8 * rows over 10^3..10^7 gives back both costs.

    Bound: the weighted least-squares solve on five exact points is accurate to a few ulps
    of the condition number (~1e7 for these scales), far inside 1e-6 relative.
    """
    x = [10.0**k for k in range(3, 8)]
    y = [0.030 + 2e-8 * v for v in x]
    fit = scaling.fit_line(x, y)
    assert fit["fixed"] == pytest.approx(0.030, rel=1e-6)
    assert fit["slope"] == pytest.approx(2e-8, rel=1e-6)
    assert fit["rms_rel_residual"] < 1e-9


def test_fit_line_reports_the_residual_of_a_curve():
    """A quadratic in parties is not a line: the relative residual says so (> 5 %)."""
    x = [2.0, 3, 4, 5, 6, 7, 8]
    y = [0.01 * p * p for p in x]
    fit = scaling.fit_line(x, y)
    rel = [(t - fit["fixed"] - fit["slope"] * p) / t for p, t in zip(x, y, strict=True)]
    assert fit["max_rel_residual"] == pytest.approx(max(abs(r) for r in rel))
    assert fit["rms_rel_residual"] == pytest.approx(float(np.sqrt(np.mean(np.square(rel)))))
    assert fit["max_rel_residual"] > 0.05
    with pytest.raises(ValueError):
        scaling.fit_line([1.0, 1.0], [0.1, 0.2])


def _proto(op: str, params: dict, metrics: dict) -> dict:
    return row("protocols", f"proto/{op}", op, params, metrics)


def _rows(ours_sum: float, crypten_sum: float, mean_s: float) -> list[dict]:
    return [
        _proto("vector-sum", {"backend": "ss", "parties": 3, "length": 10**6},
               {"seconds": ours_sum, "floor_s": 0.045, "vs_floor": ours_sum / 0.045}),
        row("peers", "peers/crypten/vector-sum", "crypten-vector-sum",
            {"length": 10**6, "parties": 3}, {"seconds": crypten_sum}),
        _proto("mean", {"backend": "ss", "parties": 3, "rows": 10**4},
               {"seconds": mean_s, "numpy_s": 0.001, "vs_numpy": mean_s / 0.001,
                "party_peak_rss_bytes": 3_000_000, "party_rss_before_bytes": 2_900_000,
                "party_selected_bytes": 800_000, "peak_rss_per_selected": 3.75,
                "node_cpu_s_per_call": 0.0655, "client_cpu_s_per_call": 0.0041}),
        _proto("linear-inference", {"backend": "ss", "samples": 4096},
               {"seconds": 0.1, "samples_per_s": 40960.0}),
        row("peers", "peers/crypten/linear-inference", "crypten-linear-inference",
            {"samples": 4096}, {"note": ""}, "skipped: crypten is not installed (x)"),
    ]


def test_targets_judge_each_ratio_from_the_same_run():
    """met / not met / not measured follow the numbers of the rows, target by target."""
    hl = targets.headline(_rows(ours_sum=0.243, crypten_sum=0.201, mean_s=0.020))
    by = {(h["id"], h["goal"]): h for h in hl}
    floor = by[("P1", "ours / floor <= 3")]
    assert floor["value"] == pytest.approx(0.243 / 0.045) and floor["met"] is False
    cr = by[("P1", "ours / CrypTen < 1")]
    assert cr["value"] == pytest.approx(0.243 / 0.201) and cr["met"] is False
    assert by[("P6", "<= 25 ms")]["met"] is True
    assert "CPU 65.5 ms per call over all nodes (+ client 4.1 ms)" in by[("P6", "<= 25 ms")][
        "measured"]
    rss = next(h for h in hl if h["id"] == "RSS")
    assert rss["met"] is False and "3.8x" in rss["measured"] and "0.12x" in rss["measured"]
    p4 = next(h for h in hl if h["id"] == "P4")
    assert p4["met"] is False and "skipped: crypten is not installed" in p4["measured"]
    p3 = [h for h in hl if h["id"] == "P3"]
    assert [h["met"] for h in p3] == [None, None]  # neither measured in these rows
    assert targets.met_label(None) == "not measured"

    hl2 = targets.headline(_rows(ours_sum=0.100, crypten_sum=0.201, mean_s=0.030))
    by2 = {(h["id"], h["goal"]): h for h in hl2}
    assert by2[("P1", "ours / CrypTen < 1")]["met"] is True
    assert by2[("P6", "<= 25 ms")]["met"] is False


def test_a_missing_or_broken_crypten_is_a_skipped_row_not_a_failure(tmp_path, monkeypatch):
    """No CrypTen, or a CrypTen whose ranks crash, gives one "skipped" row per case with the
    reason on one line; the targets that need it then say so instead of failing the bench."""
    from smpc_bench import crypten_peer
    from smpc_bench.common import Config

    cfg = Config(quick=True, workdir=str(tmp_path))
    monkeypatch.setattr(crypten_peer, "crypten_available", lambda: False)
    rows = [r for c in crypten_peer.cases(cfg, None) for r in c.run()]
    assert [r["op"] for r in rows] == ["crypten-vector-sum", "crypten-linear-inference"]
    assert all(r["note"].startswith("skipped: crypten is not installed") and not r["metrics"]
               for r in rows)

    broken = tmp_path / "broken.py"  # a real child interpreter that fails like a broken import
    broken.write_text("import sys\nsys.stderr.write('ModuleNotFoundError: no torch.onnx\\n')\n"
                      "sys.exit(1)\n")
    monkeypatch.setattr(crypten_peer, "crypten_available", lambda: True)
    monkeypatch.setattr(crypten_peer, "SCRIPT", broken)
    rows = [r for c in crypten_peer.cases(cfg, None) for r in c.run()]
    assert len(rows) == 2
    for r in rows:
        assert r["note"].startswith("skipped: CrypTen failed:") and "\n" not in r["note"]
        assert "ModuleNotFoundError: no torch.onnx" in r["note"]
    hl = targets.headline(rows + _rows(0.2, 1.0, 0.02)[:1])
    p1 = [h for h in hl if h["goal"] == "ours / CrypTen < 1"]
    assert p1[0]["met"] is None and "CrypTen failed" in p1[0]["measured"]


def test_node_cpu_is_read_from_the_kernel_per_call():
    """A child process that spins for about 0.3 s of CPU shows it, per call, within the
    kernel's tick; an idle one shows about none; the caller's own CPU is reported apart."""
    import subprocess
    import sys

    from smpc_bench import nodecpu

    busy = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                             "sys.stdin.readline()\n"
                             "t = time.process_time()\n"
                             "while time.process_time() - t < 0.3: pass\n"
                             "print('spun', flush=True)\n"
                             "sys.stdin.readline()"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    idle = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline(); "
                             "sys.stdin.readline()"], stdin=subprocess.PIPE, text=True)
    try:
        import time as _time

        _time.sleep(0.5)  # both started and waiting
        pids = {"busy": busy.pid, "idle": idle.pid}
        before = nodecpu.cpu_seconds(pids)
        assert busy.stdin and idle.stdin
        busy.stdin.write("go\n")
        busy.stdin.flush()
        assert busy.stdout and busy.stdout.readline().strip() == "spun"  # however loaded
        got = nodecpu.per_call(before, nodecpu.cpu_seconds(pids), calls=2)
    finally:
        for p in (busy, idle):
            assert p.stdin
            p.stdin.write("end\n")
            p.stdin.close()
            p.wait(10)
    assert got["node_cpu_by_node_s"]["busy"] == pytest.approx(0.15, abs=0.02)
    assert got["node_cpu_by_node_s"]["idle"] <= 0.01
    assert got["node_cpu_s_per_call"] == pytest.approx(
        sum(got["node_cpu_by_node_s"].values()))
    assert 0.0 <= got["client_cpu_s_per_call"] < 0.15
    assert nodecpu.per_call(before, {"": 0.0}, calls=2) == {}  # no /proc: no columns


def _engine_rows(rows: int, mean_s: float, cov_s: float, peak: int) -> list[dict]:
    out = []
    for op, s, plain in (("secure-mean", mean_s, 10.0), ("secure-cov", cov_s, 40.0)):
        out.append(row("engine", f"engine/duckdb/rows={rows}/{op[7:]}", op,
                       {"rows": rows, "parties": 3},
                       {"seconds": s, "duckdb_plain_s": plain, "vs_duckdb": s / plain,
                        "party_peak_rss_incl_warmup_bytes": peak}))
    return out


def test_engine_targets_are_judged_at_1e8_rows_only():
    """E1 (peak RSS <= 1 GB) and E2 (secure <= 2x DuckDB plaintext, mean and cov) come from
    the largest size of the sweep; below 10^8 rows they are shown, not judged."""
    assert not [h for h in targets.headline(_rows(0.2, 1.0, 0.02)) if h["id"].startswith("E")]
    hl = targets.headline(_engine_rows(10**6, 0.5, 1.0, 200_000_000)
                          + _engine_rows(10**8, 30.0, 60.0, 900_000_000))
    e1, e2 = (next(h for h in hl if h["id"] == i) for i in ("E1", "E2"))
    assert e1["met"] is True and e1["value"] == pytest.approx(0.9)
    assert e2["met"] is False and e2["value"] == pytest.approx(3.0)  # the mean: 30 s vs 10 s
    assert "= 3.0x" in e2["measured"] and "= 1.5x" in e2["measured"]
    hl = targets.headline(_engine_rows(10**8, 15.0, 60.0, 1_100_000_000))
    e1, e2 = (next(h for h in hl if h["id"] == i) for i in ("E1", "E2"))
    assert e1["met"] is False and e2["met"] is True
    hl = targets.headline(_engine_rows(10**7, 1.0, 1.0, 10**8))
    assert [h["met"] for h in hl if h["id"].startswith("E")] == [None, None]
    assert "not judged" in next(h for h in hl if h["id"] == "E1")["setup"]
