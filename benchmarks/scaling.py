"""Scaling: end-to-end time against rows and against parties, with fitted costs.

Not part of ``--quick``; ``smpc bench --only scaling`` runs it (``--scaling-max-rows`` caps
the row sweep).  Two cases, each one sweep whose points are fitted together:

* ``scaling/rows``: secure ``mean`` (``ss``) over 4 columns, 3 parties, 10^3 .. 10^7 rows per
  party (one federation per size, each started, warmed up with one call, timed, stopped);
  fit ``t = fixed + per_row * rows``.
* ``scaling/parties``: the same mean on 10^4 rows per party with 2 .. 8 parties; fit
  ``t = fixed + per_party * parties``.

The fit is least squares on *relative* residuals (each point weighted by 1 / its time), so
the 10^3-row points that carry the fixed cost count as much as the 10^7-row ones that carry
the per-row cost; the fit's RMS and worst relative residual are reported with it.  A
residual far above the timing noise says the model (a straight line) does not fit.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

import numpy as np

from smpc_bench.common import Case, Config, Resources, Row, measure, row, size_label

SUITE = "scaling"
COLUMNS = 4
FIXED_ROWS = 10**4


def fit_line(x: list[float], y: list[float]) -> dict[str, float]:
    """``y ~ a + b x`` minimising the relative residuals ``(y_i - a - b x_i) / y_i``.

    Returns ``fixed`` (a), ``slope`` (b), ``rms_rel_residual`` and ``max_rel_residual``.
    Needs two distinct x and positive y.
    """
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(set(xs.tolist())) < 2 or np.any(ys <= 0):
        raise ValueError("fit_line needs two distinct x and positive y")
    w = 1.0 / ys
    design = np.column_stack([np.ones_like(xs), xs]) * w[:, None]
    (a, b), *_ = np.linalg.lstsq(design, ys * w, rcond=None)
    rel = (ys - (a + b * xs)) / ys
    return {"fixed": float(a), "slope": float(b),
            "rms_rel_residual": float(math.sqrt(float(np.mean(rel**2)))),
            "max_rel_residual": float(np.max(np.abs(rel)))}


def _federation(cfg: Config, parties: int, rows: int, key: str) -> tuple[Any, Any, list[str]]:
    from parties.analyst.client import Client
    from parties.federation import local as federation
    from parties.privacy.exact import SAFEGUARDS_OFF
    from smpc_bench.protocols import BENCH_LIMITS, _write_table

    root = Path(cfg.workdir) / key
    root.mkdir(parents=True, exist_ok=True)
    gen = np.random.default_rng(20240602)  # benchmark data, public by construction
    names = [f"p{i}" for i in range(parties)]
    files = [_write_table(root / n, {f"c{j}": gen.normal(50.0, 10.0, rows)
                                     for j in range(COLUMNS)}) for n in names]
    directory = root / "federation"
    federation.init_federation(directory, files, names=names, min_cohort_size=1,
                               session_timeout=900.0, overwrite=True, limits=BENCH_LIMITS,
                               allow_exact=True, exact_safeguards=SAFEGUARDS_OFF)
    federation.up(directory, timeout=300.0)
    return directory, Client(directory, timeout=900.0), names


def _point(cfg: Config, parties: int, rows: int, case: str, sweep: str) -> Row:
    from parties.federation import local as federation
    from smpc.stats import StatSpec

    key = f"scaling_P{parties}_R{rows}"
    directory, client, names = _federation(cfg, parties, rows, key)
    try:
        spec = StatSpec("mean", tuple(f"c{j}" for j in range(COLUMNS)), backend="ss")
        client.compute(spec, parties=names)  # warm-up: opens channels, caches the selection
        reps = cfg.pick(1, 3, 3)
        t = measure(lambda: client.compute(spec, parties=names), min_repeats=reps,
                    min_time=0.0, max_repeats=reps)
    finally:
        with contextlib.suppress(Exception):
            client.close()
        federation.down(directory)
    return row(SUITE, f"{case}/P={parties}/rows={size_label(rows)}", "mean",
               {"backend": "ss", "parties": parties, "rows": rows, "columns": COLUMNS,
                "sweep": sweep, "size": rows},
               {"seconds": t.median, "best_s": t.best, "repeats": t.repeats,
                "rows_per_s": rows * parties / t.median}, "")


def _sweep(cfg: Config, case: str, points: list[tuple[int, int]], x_key: str) -> list[Row]:
    rows = [_point(cfg, p, r, case, x_key) for p, r in points]
    fit = fit_line([float(r["params"][x_key]) for r in rows],
                   [r["metrics"]["seconds"] for r in rows])
    for r in rows:
        x = r["params"][x_key]
        r["metrics"]["fitted_s"] = fit["fixed"] + fit["slope"] * x
    unit = "per_row_s" if x_key == "rows" else "per_party_s"
    rows.append(row(SUITE, f"{case}/fit", f"fit-{x_key}",
                    {"sweep": x_key, "points": len(points),
                     "range": [points[0], points[-1]]},
                    {"fixed_s": fit["fixed"], unit: fit["slope"],
                     "rms_rel_residual": fit["rms_rel_residual"],
                     "max_rel_residual": fit["max_rel_residual"]},
                    f"least squares on relative residuals: t = fixed + {unit[:-2]} * {x_key}"))
    return rows


def row_sizes(cfg: Config) -> list[int]:
    top = cfg.scaling_max_rows
    sizes = cfg.pick([10**3, 10**4], [10**3, 10**4, 10**5], [10**k for k in range(3, 8)])
    return [n for n in sizes if n <= top]


def party_counts(cfg: Config) -> list[int]:
    return cfg.pick([2, 3], [2, 3, 4], list(range(2, 9)))


def cases(cfg: Config, res: Resources) -> list[Case]:
    if cfg.quick and not cfg.tiny:
        return []  # never part of --quick (CI); the full suite and --only scaling run it
    sizes, counts = row_sizes(cfg), party_counts(cfg)
    return [
        Case("scaling/rows", lambda: _sweep(cfg, "scaling/rows",
                                            [(3, n) for n in sizes], "rows"),
             sum(2.0 + n / 5e5 for n in sizes)),
        Case("scaling/parties", lambda: _sweep(cfg, "scaling/parties",
                                               [(p, FIXED_ROWS) for p in counts], "parties"),
             sum(2.0 + p for p in counts)),
    ]


# ------------------------------------------------------------------------------ output


def _fmt_cost(x: float) -> str:
    from smpc_bench.common import human_seconds

    return ("-" + human_seconds(-x)) if x < 0 else human_seconds(x)


def markdown(rows: list[Row]) -> list[str]:
    """The scaling section of results.md: points with the fitted time, and each fit."""
    from smpc_bench.common import human_seconds

    pts = [r for r in rows if r["suite"] == SUITE and "fitted_s" in r["metrics"]]
    fits = [r for r in rows if r["suite"] == SUITE and r["op"].startswith("fit-")]
    if not pts:
        return []
    body = [[r["params"]["sweep"], r["params"]["parties"], size_label(r["params"]["rows"]),
             human_seconds(r["metrics"]["seconds"]), human_seconds(r["metrics"]["fitted_s"]),
             f"{100 * (r['metrics']['seconds'] / r['metrics']['fitted_s'] - 1):+.0f} %"]
            for r in pts]
    out = ["## Scaling (ss mean over 4 columns, end to end)", "",
           "| sweep | parties | rows per party | e2e | fit | residual |",
           "|---|---|---|---|---|---|"]
    out += ["| " + " | ".join(str(c) for c in b) + " |" for b in body]
    out.append("")
    for f in fits:
        m = f["metrics"]
        if "per_row_s" in m:
            slope = f"per row {m['per_row_s'] * 1e9:.1f} ns (per 10^6 rows " \
                    f"{_fmt_cost(m['per_row_s'] * 1e6)})"
        else:
            slope = f"per party {_fmt_cost(m['per_party_s'])}"
        out.append(f"- fit against {f['params']['sweep']}: fixed {_fmt_cost(m['fixed_s'])}, "
                   f"{slope}; RMS relative residual {100 * m['rms_rel_residual']:.0f} %, worst "
                   f"{100 * m['max_rel_residual']:.0f} % ({f['note']})")
    return [*out, ""]


def plot(rows: list[Row], save: Any, plt: Any) -> None:
    """scaling.png: time against rows and against parties, points and the fitted line."""
    pts = [r for r in rows if r["suite"] == SUITE and "fitted_s" in r["metrics"]]
    sweeps = [s for s in ("rows", "parties") if any(r["params"]["sweep"] == s for r in pts)]
    if not sweeps:
        return
    fig, axes = plt.subplots(1, len(sweeps), figsize=(5 * len(sweeps), 3.6), squeeze=False)
    for ax, sweep in zip(axes[0], sweeps, strict=True):
        rs = sorted((r for r in pts if r["params"]["sweep"] == sweep),
                    key=lambda r: r["params"][sweep])
        xs = [r["params"][sweep] for r in rs]
        ax.plot(xs, [r["metrics"]["seconds"] for r in rs], "o", label="measured")
        ax.plot(xs, [r["metrics"]["fitted_s"] for r in rs], "-", label="fixed + per-"
                + ("row" if sweep == "rows" else "party") + " fit")
        if sweep == "rows":
            ax.set(xscale="log", yscale="log", xlabel="rows per party (3 parties)")
        else:
            ax.set(xlabel=f"parties ({size_label(FIXED_ROWS)} rows each)")
        ax.set(ylabel="seconds", title=f"ss mean, {COLUMNS} columns: time vs {sweep}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    save(fig, "scaling")
