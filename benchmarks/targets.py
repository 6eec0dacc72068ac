"""The headline targets, each measured as a ratio in the same run.

Issue 14's targets (P1 .. P6 and party memory) come first, then the older issue-5 targets
that the suite still measures (MPyC speed-up, statistics against numpy).  Every entry is
``{id, target, goal, measured, value, met, setup}``; ``met`` is ``True`` / ``False``, or
``None`` when this run did not measure it (a case not selected, a peer not installed) -- the
table then says "not measured" rather than guessing.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from smpc_bench.common import Row, human_bytes, human_seconds, size_label


def find(rs: list[Row], suite: str, op: str | None = None, **params: Any) -> list[Row]:
    """Rows of a suite (and op) with these params that have a time (skipped rows left out)."""
    out = []
    for r in rs:
        if r["suite"] != suite or (op is not None and r["op"] != op) or "skipped" in r["note"]:
            continue
        if "seconds" not in r["metrics"]:
            continue
        if all(r["params"].get(k) == v for k, v in params.items()):
            out.append(r)
    return out


def _largest(rows: list[Row], key: str) -> Row | None:
    return max(rows, key=lambda r: r["params"].get(key, 0)) if rows else None


def _skipped_note(rows: list[Row], op: str) -> str:
    for r in rows:
        if r["op"] == op and "skipped" in r["note"]:
            return r["note"]
    return ""


def _entry(tid: str, target: str, goal: str, measured: str, value: float | None,
           met: bool | None, setup: str) -> dict[str, Any]:
    return {"id": tid, "target": target, "goal": goal, "measured": measured, "value": value,
            "met": met, "setup": setup}


def _p1(rows: list[Row]) -> list[dict[str, Any]]:
    ss = {r["params"]["length"]: r for r in find(rows, "protocols", "vector-sum",
                                                   backend="ss", parties=3)}
    if not ss:
        return [_entry("P1", "3-party secure sum of 10^6, ss, separate processes, mTLS",
                       "ours / floor <= 3", "not measured (proto/vector-sum/ss/P=3 not run)",
                       None, None, "")]
    top = ss.get(10**6) or ss[max(ss)]
    m = top["metrics"]
    out = [_entry("P1", "3-party secure sum, ss, separate processes, mTLS: vs the floor",
                  "ours / floor <= 3",
                  f"{human_seconds(m['seconds'])} vs floor {human_seconds(m['floor_s'])} = "
                  f"{m['vs_floor']:.1f}x", m["vs_floor"], m["vs_floor"] <= 3.0,
                  f"L={size_label(top['params']['length'])}; floor = numpy + the same bytes "
                  "over one TLS link")]
    cr = {r["params"]["length"]: r for r in find(rows, "peers", "crypten-vector-sum")}
    common = sorted(set(ss) & set(cr))
    if common:
        n = 10**6 if 10**6 in common else common[-1]
        ours, peer = ss[n]["metrics"]["seconds"], cr[n]["metrics"]["seconds"]
        out.append(_entry("P1", "3-party secure sum: faster than CrypTen", "ours / CrypTen < 1",
                          f"{human_seconds(ours)} vs CrypTen {human_seconds(peer)} = "
                          f"{ours / peer:.2f}x", ours / peer, ours < peer,
                          f"L={size_label(n)}; CrypTen 3 processes over plain TCP (no TLS), "
                          "ours over mutual TLS"))
    else:
        why = _skipped_note(rows, "crypten-vector-sum") or "CrypTen case not run at this size"
        out.append(_entry("P1", "3-party secure sum: faster than CrypTen", "ours / CrypTen < 1",
                          f"not measured ({why})", None, None, ""))
    return out


def _p3_p4(rows: list[Row]) -> list[dict[str, Any]]:
    out = []
    ck = find(rows, "protocols", "linear-inference", backend="ckks", samples=4096)
    if ck:
        m = ck[0]["metrics"]
        out.append(_entry("P3", "CKKS linear inference 4096 x 30, N=8192, end to end",
                          ">= 25,000 samples/s", f"{m['samples_per_s']:,.0f} samples/s "
                          f"({human_seconds(m['seconds'])})", m["samples_per_s"],
                          m["samples_per_s"] >= 25_000, "data owner and model owner as "
                          "separate nodes, preset 'aggregate'"))
    else:
        out.append(_entry("P3", "CKKS linear inference 4096 x 30, end to end",
                          ">= 25,000 samples/s", "not measured", None, None, ""))
    out.append(_entry("P3", "CKKS inference compute vs OpenFHE", "<= 1.5x OpenFHE",
                      "not measured (no OpenFHE peer in the suite)", None, None, ""))
    ss = find(rows, "protocols", "linear-inference", backend="ss", samples=4096)
    cr = find(rows, "peers", "crypten-linear-inference", samples=4096)
    if ss:
        ours = ss[0]["metrics"]["samples_per_s"]
        if cr:
            peer = cr[0]["metrics"]["samples_per_s"]
            out.append(_entry("P4", "SS linear inference 4096 x 30 (dealer): vs CrypTen",
                              ">= CrypTen's samples/s and >= 150,000",
                              f"{ours:,.0f} vs CrypTen {peer:,.0f} samples/s = "
                              f"{ours / peer:.2f}x", ours / peer,
                              ours >= peer and ours >= 150_000,
                              "CrypTen: 2 ranks + TTP dealer over plain TCP (no TLS); "
                              "ours: separate nodes over mutual TLS, coordinator as dealer"))
        else:
            why = _skipped_note(rows, "crypten-linear-inference") or "CrypTen case not run"
            out.append(_entry("P4", "SS linear inference 4096 x 30 (dealer)", ">= 150,000 "
                              "samples/s (CrypTen not measured)", f"{ours:,.0f} samples/s; "
                              f"CrypTen: {why}", ours, ours >= 150_000, ""))
    else:
        out.append(_entry("P4", "SS linear inference 4096 x 30 (dealer)",
                          ">= CrypTen's samples/s", "not measured", None, None, ""))
    return out


def _p5(rows: list[Row]) -> list[dict[str, Any]]:
    ratios: dict[str, list[float]] = {}
    for r in rows:
        if r["suite"] == "ciphertext" and "ratio" in r["metrics"] and "core_s" in r["metrics"]:
            ratios.setdefault(r["op"], []).append(r["metrics"]["ratio"])
    if not ratios:
        return [_entry("P5", "core CKKS ops vs raw TenSEAL", "every op <= 1.1x",
                       "not measured", None, None, "")]
    med = {op: statistics.median(v) for op, v in ratios.items()}
    worst = sorted(((x, op) for op, x in med.items()), reverse=True)
    over = [(x, op) for x, op in worst if x > 1.1]
    geo = math.exp(sum(math.log(x) for x in med.values()) / len(med))
    return [_entry("P5", "core CKKS ops vs raw TenSEAL", "every op <= 1.1x",
                   f"worst {worst[0][1]} {worst[0][0]:.2f}x; over 1.1: "
                   + (", ".join(f"{op} {x:.2f}" for x, op in over) or "none")
                   + f"; geomean {geo:.2f} over {len(med)} ops", worst[0][0], not over,
                   "per op: median of the paired (interleaved) ratios over presets and threads")]


def _p6_memory(rows: list[Row]) -> list[dict[str, Any]]:
    out = []
    p6 = find(rows, "protocols", "mean", backend="ss", parties=3, rows=10**4)
    if p6:
        s = p6[0]["metrics"]["seconds"]
        rt = find(rows, "protocols", "rpc-round-trip")
        ctx = f"; one mTLS round trip {human_seconds(rt[0]['metrics']['seconds'])}" if rt else ""
        cpu = p6[0]["metrics"].get("node_cpu_s_per_call")
        if cpu is not None:
            ctx += (f"; CPU {cpu * 1e3:.1f} ms per call over all nodes (+ client "
                    f"{p6[0]['metrics']['client_cpu_s_per_call'] * 1e3:.1f} ms)")
        out.append(_entry("P6", "small statistic: mean, 10^4 rows, 10 columns, 3 parties",
                          "<= 25 ms", f"{s * 1e3:.1f} ms{ctx}", s * 1e3, s <= 0.025,
                          "end to end, median client wall time"))
    else:
        out.append(_entry("P6", "small statistic: mean, 10^4 rows, 3 parties", "<= 25 ms",
                          "not measured (proto/mean/ss/P=3/rows=1e4 not run)", None, None, ""))
    mem = [r for r in find(rows, "protocols", backend="ss", parties=3)
           if "peak_rss_per_selected" in r["metrics"]]
    if mem:
        r = max(mem, key=lambda x: (x["params"]["rows"], x["op"] == "mean"))
        m = r["metrics"]
        grow = (m["party_peak_rss_bytes"] - m["party_rss_before_bytes"]) / m[
            "party_selected_bytes"]
        out.append(_entry("RSS", "party peak RSS / the data it selected", "<= 1.5x",
                          f"{human_bytes(m['party_peak_rss_bytes'])} / "
                          f"{human_bytes(m['party_selected_bytes'])} = "
                          f"{m['peak_rss_per_selected']:.1f}x (growth during the case "
                          f"{grow:.2f}x)", m["peak_rss_per_selected"],
                          m["peak_rss_per_selected"] <= 1.5,
                          f"{r['op']}, {size_label(r['params']['rows'])} rows x 10 columns; "
                          "VmHWM of the worst party node (whole process, table loaded)"))
    else:
        out.append(_entry("RSS", "party peak RSS / the data it selected", "<= 1.5x",
                          "not measured (no ss statistic case run)", None, None, ""))
    return out


def _issue5(rows: list[Row]) -> list[dict[str, Any]]:
    out = []
    ss = {r["params"]["length"]: r for r in find(rows, "protocols", "vector-sum",
                                                   backend="ss", parties=3)}
    mp = {r["params"]["length"]: r for r in find(rows, "peers", "mpyc-vector-sum")}
    common = sorted(set(ss) & set(mp))
    if common:
        n = 10**6 if 10**6 in common else common[-1]
        speed = mp[n]["metrics"]["seconds"] / ss[n]["metrics"]["seconds"]
        out.append(_entry("5.1", "3-party secure sum at least 50x faster than MPyC",
                          "MPyC / ours >= 50",
                          f"ours {human_seconds(ss[n]['metrics']['seconds'])} vs MPyC "
                          f"{human_seconds(mp[n]['metrics']['seconds'])} = {speed:.1f}x",
                          speed, speed >= 50.0, f"L={size_label(n)} (largest size both ran)"))
    for stat in ("mean", "var", "cov"):
        r = _largest(find(rows, "protocols", stat, backend="ss", parties=3), "rows")
        if r is None:
            continue
        m = r["metrics"]
        out.append(_entry("5.2", f"secure {stat}, ss, 10 columns x 3 parties, within 2x of "
                          "plaintext numpy", "ours / numpy(pooled) <= 2",
                          f"{human_seconds(m['seconds'])} vs numpy "
                          f"{human_seconds(m['numpy_s'])} = {m['vs_numpy']:.1f}x",
                          m["vs_numpy"], m["vs_numpy"] <= 2.0,
                          f"{size_label(r['params']['rows'])} rows per party"
                          + ("" if r["params"]["rows"] >= 10**6 else " (target is 1e6)")))
    return out


ONE_GB = 10**9


def _engine(rows: list[Row]) -> list[dict[str, Any]]:
    """The DuckDB engine's targets (``smpc_bench.engine``), judged at 10^8 rows per party;
    measured below it (a capped sweep) they are shown but not judged."""
    sec = [r for r in find(rows, "engine") if r["op"] in ("secure-mean", "secure-cov")]
    if not sec:
        return []
    top = max(r["params"]["rows"] for r in sec)
    at = {r["op"]: r["metrics"] for r in sec if r["params"]["rows"] == top}
    judged = top >= 10**8
    where = f"{size_label(top)} rows per party x 3 columns, 3 parties, Parquet" + (
        "" if judged else "; the target is at 1e8: not judged")
    peak = max(m["party_peak_rss_incl_warmup_bytes"] for m in at.values())
    out = [_entry("E1", "engine: 10^8 rows, peak RSS <= 1 GB per party", "<= 1 GB",
                  f"{human_bytes(peak)} = {peak / ONE_GB:.2f} GB (worst party, mean + cov)",
                  peak / ONE_GB, (peak <= ONE_GB) if judged else None,
                  where + "; VmHWM of every party over the warm-up and all calls")]
    if {"secure-mean", "secure-cov"} <= set(at):
        mm, cm = at["secure-mean"], at["secure-cov"]
        worst = max(mm["vs_duckdb"], cm["vs_duckdb"])
        out.append(_entry(
            "E2", "engine: secure mean/cov <= 2x DuckDB plaintext", "<= 2x",
            f"mean {human_seconds(mm['seconds'])} vs {human_seconds(mm['duckdb_plain_s'])} = "
            f"{mm['vs_duckdb']:.1f}x; cov {human_seconds(cm['seconds'])} vs "
            f"{human_seconds(cm['duckdb_plain_s'])} = {cm['vs_duckdb']:.1f}x", worst,
            (worst <= 2.0) if judged else None,
            where + "; DuckDB on the pooled files in the same run, same threads"))
    return out


def headline(rows: list[Row]) -> list[dict[str, Any]]:
    """Every target of issue 14 (measured or "not measured"), then issue 5's and the DuckDB
    engine's that ran."""
    return (_p1(rows) + _p3_p4(rows) + _p5(rows) + _p6_memory(rows) + _issue5(rows)
            + _engine(rows))


def met_label(met: bool | None) -> str:
    return "met" if met else ("not met" if met is not None else "not measured")
