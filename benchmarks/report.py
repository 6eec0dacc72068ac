"""Results out: the JSON document, the Markdown tables, the headline targets and the plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from smpc_bench import engine, scaling, targets
from smpc_bench.common import Row, human_bytes, human_rate, human_seconds, size_label

# ----------------------------------------------------------------------------- headline


def headline(rows: list[Row]) -> list[dict[str, Any]]:
    """The targets, measured in this run (:mod:`smpc_bench.targets`)."""
    return targets.headline(rows)


_find = targets.find


# ---------------------------------------------------------------------------- markdown


def _fmt_ratio(x: Any) -> str:
    return f"{x:.2f}" if isinstance(x, (int, float)) and math.isfinite(x) else "—"


def _table(headers: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in b) + " |" for b in body]
    return "\n".join(lines)


def _machine_line(machine: dict[str, Any]) -> str:
    v = machine.get("versions", {})
    ram = machine.get("ram_bytes")
    return (f"{machine.get('cpu')}, {machine.get('cores')} cores, "
            f"{(ram or 0) / 2**30:.0f} GiB RAM, Python {machine.get('python')}, numpy "
            f"{v.get('numpy')}, TenSEAL {v.get('tenseal')}, grpcio {v.get('grpcio')}, "
            f"MPyC {v.get('mpyc') or '—'}, CrypTen {v.get('crypten') or '—'}"
            f" (torch {v.get('torch') or '—'}); {machine.get('date')}")


def _load_line(doc: dict[str, Any]) -> str:
    m = doc["machine"]

    def fmt(x: Any) -> str:
        return " / ".join(f"{v:.2f}" for v in x) if x else "—"
    src = doc.get("source") or {}
    commit = (src.get("commit", "")[:10] + (" (with local changes)" if src.get("dirty") else "")
              if src else "unknown")
    return (f"Load average (1 / 5 / 15 min) before: {fmt(m.get('load_average_before'))}, "
            f"after: {fmt(m.get('load_average_after'))} on {m.get('cores')} cores.  "
            f"Commit: {commit}.")


def markdown(doc: dict[str, Any]) -> str:
    rows: list[Row] = doc["rows"]
    parts = [f"# smpc benchmark ({doc['mode']} mode)", "",
             f"Machine: {_machine_line(doc['machine'])}.  ",
             _load_line(doc) + "  ",
             f"Run time: {doc['duration_s']:.0f} s.  Command: `{doc['command']}`", ""]
    hl = doc.get("headline") or []
    if any(h["met"] is not None for h in hl):  # a run that measured no target has no table
        parts += ["## Targets", "", "Each a ratio (or rate) measured in this run; "
                  "\"not measured\": this run did not include the case or the peer.", "",
                  _table(["id", "target", "goal", "measured", "met", "setup"],
                         [[h.get("id", ""), h["target"], h["goal"], h["measured"],
                           targets.met_label(h["met"]), h["setup"]] for h in hl]), ""]

    proto = [r for r in rows if r["suite"] == "protocols" and "floor_s" in r["metrics"]]
    rpc = [r for r in rows if r["op"] == "rpc-round-trip" and "seconds" in r["metrics"]]
    if proto:
        body = []
        for r in proto:
            m, p = r["metrics"], r["params"]
            unit = next((k for k in ("elements_per_s", "rows_per_s", "samples_per_s")
                         if k in m), None)
            size = (f"L={size_label(p['length'])}" if "length" in p else
                    f"{size_label(p['rows'])} rows" if "rows" in p else
                    f"{p['samples']} samples")
            body.append([r["op"], p["backend"], p.get("parties", ""), size,
                         human_seconds(m["seconds"]),
                         human_rate(m[unit], "/s") if unit else "—",
                         human_seconds(m["local_s"]), human_seconds(m["crypto_s"]),
                         human_seconds(m["serialization_s"]),
                         human_seconds(m["network_s"]), human_bytes(m["bytes_per_party"]),
                         human_seconds(m["sim_s"]),
                         f"{human_seconds(m['floor_s'])} ({human_seconds(m['numpy_s'])} + "
                         f"{human_seconds(m['tls_stream_s'])})",
                         f"{m['vs_floor']:.1f}", f"{m['vs_numpy']:.0f}"])
        parts += ["## Protocols end to end (gRPC + mutual TLS, separate processes, loopback)",
                  "",
                  "e2e: median client wall time.  local / crypto / serial.: measured in-process "
                  "on the same data (critical path); network: e2e minus those (gRPC, TLS, "
                  "session control).  sim: the same protocol in one process.  floor: numpy on "
                  "the pooled data + streaming all the protocol's bytes over one TLS "
                  "connection.", "",
                  _table(["protocol", "backend", "parties", "size", "e2e", "throughput",
                          "local", "crypto", "serial.", "network", "bytes/party", "sim",
                          "floor (numpy + TLS)", "e2e/floor", "e2e/numpy"], body), ""]
        notes = sorted({r["note"] for r in proto if r["note"]})
        parts += [f"- {n}" for n in notes]
        for r in rpc:
            parts.append(f"- one gRPC round trip ({r['note']}): median "
                         f"{human_seconds(r['metrics']['seconds'])}, best "
                         f"{human_seconds(r['metrics']['best_s'])} over "
                         f"{r['metrics']['repeats']} calls")
        parts.append("")

    peers = [r for r in rows if r["suite"] == "peers"]
    if peers:
        body = []
        for r in peers:
            m, p = r["metrics"], r["params"]
            if "seconds" not in m:
                body.append([r["op"], "—", "—", "—", "—", "—", r["note"]])
                continue
            ours = _ours_for_peer(rows, r)
            unit = next((k for k in ("elements_per_s", "rows_per_s", "samples_per_s")
                         if k in m), None)
            body.append([r["op"], p.get("parties", "—"),
                         size_label(p["size"]) if "size" in p else "—",
                         human_seconds(m["seconds"]),
                         human_rate(m[unit], "/s") if unit else "—",
                         f"{human_seconds(ours[0])} ({ours[1]:.1f}x)" if ours else "—",
                         r["note"]])
        parts += ["## Peers", "", "ours: smpc's end-to-end time on the same size (ss backend), "
                  "and how many times faster than the peer.", "",
                  _table(["peer task", "parties", "size", "seconds", "throughput",
                          "smpc (speed-up)", "note"], body), ""]

    parts += scaling.markdown(rows)
    parts += engine.markdown(rows)
    share = [r for r in rows if r["suite"] == "sharing" and "seconds" in r["metrics"]]
    if share:
        body = [[r["op"], size_label(r["params"]["n"]), r["params"]["parties"],
                 human_seconds(r["metrics"]["seconds"]),
                 human_rate(r["metrics"]["elements_per_s"], "/s"),
                 human_seconds(r["metrics"]["numpy_s"]),
                 human_rate(r["metrics"]["numpy_elements_per_s"], "/s"),
                 f"{r['metrics']['slowdown']:.2f}", r["note"].replace("baseline: ", "")]
                for r in share]
        parts += ["## Secret-sharing math (Z_2^64, f = 16)", "",
                  _table(["op", "n", "parties", "core", "elements/s", "numpy", "numpy el/s",
                          "core/numpy", "numpy baseline"], body), ""]

    ct = [r for r in rows if r["suite"] == "ciphertext" and "raw_s" in r["metrics"]]
    if ct:
        body = [[r["params"]["preset"], r["params"]["N"], r["params"]["threads"], r["op"],
                 human_seconds(r["metrics"].get("core_s")), human_seconds(r["metrics"]["raw_s"]),
                 _fmt_ratio(r["metrics"].get("ratio")),
                 human_seconds(r["metrics"].get("raw_op_s")), r["note"]] for r in ct]
        parts += ["## CKKS operations: core vs raw TenSEAL (same run)", "",
                  "core and raw both take and return serialized ciphertexts (what the "
                  "protocols ship); raw op: the bare TenSEAL call on live objects.", "",
                  _table(["preset", "N", "threads", "op", "core", "raw TenSEAL", "core/raw",
                          "raw op", "note"], body), ""]
    sizes = [r for r in rows if r["suite"] == "ciphertext" and "core_bytes" in r["metrics"]]
    if sizes:
        seen = set()
        body = []
        for r in sizes:
            key = (r["params"]["preset"], r["op"])
            if key in seen:
                continue
            seen.add(key)
            body.append([r["params"]["preset"], r["params"]["N"], r["op"][6:],
                         human_bytes(r["metrics"]["core_bytes"]),
                         human_bytes(r["metrics"]["raw_bytes"]),
                         f"{r['metrics']['bytes_per_slot']:.0f} B"])
        parts += ["### Sizes", "", _table(["preset", "N", "object", "core (envelope)",
                                           "raw TenSEAL", "per slot"], body), ""]
    errors = doc.get("errors") or []
    if errors:
        parts += ["## Errors", ""] + [f"- `{e['case']}`: {e['error']}" for e in errors] + [""]
    return "\n".join(parts)


def _ours_for_peer(rows: list[Row], r: Row) -> tuple[float, float] | None:
    m, p = r["metrics"], r["params"]
    if r["op"] == "mpyc-vector-sum":
        mine = _find(rows, "protocols", "vector-sum", backend="ss", parties=3,
                     length=p["length"])
    elif r["op"] in ("mpyc-mean", "mpyc-var"):
        mine = _find(rows, "protocols", r["op"][5:], backend="ss", parties=3, rows=p["rows"])
    elif r["op"] == "crypten-vector-sum":
        mine = _find(rows, "protocols", "vector-sum", backend="ss", parties=3,
                     length=p["length"])
    elif r["op"] == "crypten-linear-inference":
        mine = _find(rows, "protocols", "linear-inference", backend="ss", samples=p["samples"])
    elif r["op"] == "tenseal-rowwise-inference":
        mine = _find(rows, "peers", "core-column-inference")
    else:
        return None
    if not mine:
        return None
    s = mine[0]["metrics"]["seconds"]
    return s, m["seconds"] / s


# ------------------------------------------------------------------------------- files


def write(doc: dict[str, Any], out: Path, plots: bool) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.json", out / "results.md"]
    paths[0].write_text(json.dumps(doc, indent=1, default=_json_default) + "\n")
    if plots:
        paths += make_plots(doc, out)
    paths[1].write_text(markdown(doc) + _plot_links(paths, out))
    return paths


def _plot_links(paths: list[Path], out: Path) -> str:
    pngs = [p for p in paths if p.suffix == ".png"]
    if not pngs:
        return ""
    return "\n## Plots\n\n" + "\n".join(f"![{p.stem}]({p.relative_to(out)})" for p in pngs) + "\n"


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:
        pass
    return str(obj)


def make_plots(doc: dict[str, Any], out: Path) -> list[Path]:
    """PNG plots (matplotlib, optional): time against size per backend and peer."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    rows: list[Row] = doc["rows"]
    made: list[Path] = []
    pdir = out / "plots"
    pdir.mkdir(exist_ok=True)

    def series(rs: list[Row], x: str, y: str = "seconds") -> tuple[list[float], list[float]]:
        pts = sorted((r["params"][x], r["metrics"][y]) for r in rs if y in r["metrics"])
        return [a for a, _ in pts], [b for _, b in pts]

    def save(fig: Any, name: str) -> None:
        path = pdir / f"{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)

    # vector sum
    vs = [r for r in rows if r["suite"] == "protocols" and r["op"] == "vector-sum"]
    if vs:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for be in ("ss", "ckks"):
            rs = [r for r in vs if r["params"]["backend"] == be and r["params"]["parties"] == 3]
            if rs:
                ax.plot(*series(rs, "length"), "o-", label=f"smpc {be} e2e (3 parties)")
                ax.plot(*series(rs, "length", "sim_s"), "x:", label=f"smpc {be} in-process")
        rs = [r for r in vs if r["params"]["backend"] == "ss" and r["params"]["parties"] == 3]
        if rs:
            ax.plot(*series(rs, "length", "floor_s"), "k--", label="floor (numpy + TLS stream)")
        mp = [r for r in rows if r["op"] == "mpyc-vector-sum" and "seconds" in r["metrics"]]
        if mp:
            ax.plot(*series(mp, "length"), "s-", label="MPyC (3 parties)")
        ax.set(xscale="log", yscale="log", xlabel="vector length", ylabel="seconds",
               title="Secure elementwise vector sum")
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        save(fig, "vector_sum")
        parties = sorted({r["params"]["parties"] for r in vs})
        if len(parties) > 1:
            fig, ax = plt.subplots(figsize=(7, 4.5))
            for be in ("ss", "ckks"):
                for n in sorted({r["params"]["length"] for r in vs}):
                    rs = [r for r in vs if r["params"]["backend"] == be
                          and r["params"]["length"] == n]
                    if len(rs) > 1:
                        ax.plot(*series(rs, "parties"), "o-", label=f"{be} L={size_label(n)}")
            ax.set(yscale="log", xlabel="parties", ylabel="seconds",
                   title="Vector sum end to end by number of parties")
            ax.legend(fontsize=7, ncol=2)
            ax.grid(True, which="both", alpha=0.3)
            save(fig, "vector_sum_parties")

    # statistics
    st = [r for r in rows if r["suite"] == "protocols" and r["op"] in ("mean", "var", "cov")]
    if st:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for stat in ("mean", "var", "cov"):
            for be in ("ss", "ckks"):
                rs = [r for r in st if r["op"] == stat and r["params"]["backend"] == be]
                if rs:
                    ax.plot(*series(rs, "rows"), "o-", label=f"{stat} {be}")
            rs = [r for r in st if r["op"] == stat and r["params"]["backend"] == "ss"]
            if rs:
                ax.plot(*series(rs, "rows", "numpy_s"), ":", label=f"{stat} numpy pooled")
        for r in rows:
            if r["op"] in ("mpyc-mean", "mpyc-var") and "seconds" in r["metrics"]:
                ax.plot([r["params"]["rows"]], [r["metrics"]["seconds"]], "s",
                        label=r["op"].replace("-", " "))
        ax.set(xscale="log", yscale="log", xlabel="rows per party (10 columns, 3 parties)",
               ylabel="seconds", title="Secure mean / variance / covariance")
        ax.legend(fontsize=7, ncol=2)
        ax.grid(True, which="both", alpha=0.3)
        save(fig, "statistics")

    # inference
    inf = [r for r in rows if r["suite"] == "protocols" and r["op"].endswith("-inference")]
    if inf:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for op in ("linear-inference", "logistic-inference"):
            for be in ("ss", "ckks"):
                rs = [r for r in inf if r["op"] == op and r["params"]["backend"] == be]
                if rs:
                    ax.plot(*series(rs, "samples"), "o-", label=f"{op.split('-')[0]} {be}")
        rs = [r for r in inf if r["op"] == "linear-inference"]
        if rs:
            ax.plot(*series(rs, "samples", "numpy_s"), "k:", label="numpy X @ w + b")
        rw = [r for r in rows if r["op"] == "tenseal-rowwise-inference" and "per_sample_s"
              in r["metrics"]]
        if rw:
            xs = sorted({r["params"]["samples"] for r in inf})
            ps = rw[0]["metrics"]["per_sample_s"]
            ax.plot(xs, [x * ps for x in xs], "s--", label="TenSEAL row-wise (extrapolated)")
        ax.set(xscale="log", yscale="log", xlabel="samples (30 features)", ylabel="seconds",
               title="Linear / logistic inference end to end")
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        save(fig, "inference")

    # sharing throughput
    sh = [r for r in rows if r["suite"] == "sharing" and "elements_per_s" in r["metrics"]]
    if sh:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for op in dict.fromkeys(r["op"] for r in sh):
            ax.plot(*series([r for r in sh if r["op"] == op], "n", "elements_per_s"), "o-",
                    label=op)
        ax.set(xscale="log", yscale="log", xlabel="elements", ylabel="elements / s",
               title="Secret-sharing math throughput")
        ax.legend(fontsize=7, ncol=2)
        ax.grid(True, which="both", alpha=0.3)
        save(fig, "sharing")

    scaling.plot(rows, save, plt)
    engine.plot(rows, save, plt)

    # ciphertext ops: core vs raw
    ct = [r for r in rows if r["suite"] == "ciphertext" and "raw_s" in r["metrics"]]
    if ct:
        presets = list(dict.fromkeys(r["params"]["preset"] for r in ct))
        fig, axes = plt.subplots(len(presets), 1, figsize=(9, 2.6 * len(presets)), squeeze=False)
        for ax, preset in zip(axes[:, 0], presets, strict=True):
            top = max(r["params"]["threads"] for r in ct if r["params"]["preset"] == preset)
            rs = [r for r in ct if r["params"]["preset"] == preset
                  and r["params"]["threads"] == top]
            xs = range(len(rs))
            ax.bar([x - 0.2 for x in xs], [r["metrics"].get("core_s", 0) * 1e3 for r in rs],
                   0.4, label="core")
            ax.bar([x + 0.2 for x in xs], [r["metrics"]["raw_s"] * 1e3 for r in rs], 0.4,
                   label="raw TenSEAL")
            ax.set_xticks(list(xs), [r["op"] for r in rs], rotation=30, ha="right", fontsize=7)
            ax.set(yscale="log", ylabel="ms", title=f"{preset} (threads={top})")
            ax.legend(fontsize=7)
        save(fig, "ciphertext")
    return made
