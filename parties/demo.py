"""The guided tour behind ``smpc demo``: statistics and inference, secure next to plaintext.

The tour is a list of computations; an *executor* runs each one securely and
the tour prints the secure result next to the plaintext answer on the pooled
data and their largest difference.  :class:`SimulatedExecutor` runs the
protocols among simulated parties in this process (the core's simulator:
same protocol code, in-memory channels); the federation executor runs them
on real party nodes over mutual TLS.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

import numpy as np

from parties import sampledata
from parties.datasource import Table, load_table
from smpc import linear, simulator, stats


@dataclass(frozen=True)
class StatStep:
    title: str
    spec_kwargs: dict[str, Any]
    plaintext: Callable[[np.ndarray], Any]


class Executor(Protocol):
    def statistic(self, spec: stats.StatSpec) -> stats.StatResult: ...

    def predict(self, model: linear.LinearModel, backend: str) -> np.ndarray: ...


def _pooled(tables: Sequence[Table], columns: Sequence[str]) -> np.ndarray:
    return np.vstack([t.matrix(list(columns)) for t in tables])


def default_steps(columns: Sequence[str]) -> list[StatStep]:
    """The tour for tables that have the sample hospital columns (or any numeric ones)."""
    a, b, c = (list(columns) * 3)[:3]
    q_probs = (0.1, 0.5, 0.9)
    return [
        StatStep("count", {"statistic": "count", "columns": (a,)}, lambda x: len(x)),
        StatStep(f"mean {a}, {b}", {"statistic": "mean", "columns": (a, b)},
                 lambda x: x.mean(axis=0)),
        StatStep(f"std {a}, {b}", {"statistic": "std", "columns": (a, b)},
                 lambda x: x.std(axis=0, ddof=1)),
        StatStep(f"corr {a}, {b}, {c}", {"statistic": "corr", "columns": (a, b, c)},
                 lambda x: np.corrcoef(x, rowvar=False)),
        StatStep(f"linreg {c} ~ {a} + {b}",
                 {"statistic": "linreg", "columns": (a, b), "target": c},
                 lambda x: np.linalg.lstsq(np.column_stack([np.ones(len(x)), x[:, :2]]),
                                           x[:, 2], rcond=None)[0]),
        StatStep(f"quantiles {a} (10/50/90%)",
                 {"statistic": "quantiles", "columns": (a,), "probabilities": q_probs},
                 lambda x: np.quantile(x[:, 0], q_probs, method="inverted_cdf")),
    ]


def _flat(result: stats.StatResult) -> np.ndarray:
    if result.statistic == "linreg":
        return np.array([result.value["intercept"], *result.value["coefficients"]])
    return np.asarray(result.value, dtype=float).ravel()


class SimulatedExecutor:
    """Runs every computation among simulated parties in this process."""

    def __init__(self, tables: Sequence[Table], data_owner: Table) -> None:
        self.tables = list(tables)
        self.data_owner = data_owner

    def statistic(self, spec: stats.StatSpec) -> stats.StatResult:
        rows = [t.matrix(list(spec.value_columns)) for t in self.tables]
        result, _ = stats.simulate(spec, rows)
        return result

    def predict(self, model: linear.LinearModel, backend: str) -> np.ndarray:
        X = self.data_owner.matrix(list(model.features))
        spec = linear.InferenceSpec(model.kind, *X.shape, backend=backend)
        sim = simulator.run({
            "data": lambda t: linear.run_data_owner(t, spec, X, model_owner="model",
                                                    dealer="dealer", tag="demo"),
            "model": lambda t: linear.run_model_owner(t, spec, model, data_owner="data",
                                                      dealer="dealer", tag="demo"),
            "dealer": lambda t: linear.run_dealer(t, spec, data_owner="data",
                                                  model_owner="model", tag="demo"),
        })
        return sim.results["data"]


def run_tour(executor: Executor, tables: Sequence[Table], model: linear.LinearModel | None,
             data_owner: Table | None, out: TextIO = sys.stdout,
             backends: Sequence[str] = ("ss", "ckks")) -> list[dict[str, Any]]:
    """Run every step on every backend, print a comparison table, return the rows."""
    numeric = [c for c in tables[0].columns if all(t.is_numeric(c) for t in tables)]
    rows: list[dict[str, Any]] = []
    header = f"{'computation':34} {'backend':7} {'secure':>28} {'plaintext':>28} {'max |diff|':>10}"
    print(header, file=out)
    print("-" * len(header), file=out)
    for step in default_steps(numeric):
        for backend in backends:
            kwargs = dict(step.spec_kwargs, backend=backend)
            if kwargs["statistic"] == "quantiles":
                col = kwargs["columns"][0]
                pooled_col = _pooled(tables, [col])
                kwargs["bounds"] = (float(np.floor(pooled_col.min())) - 1.0,
                                    float(np.ceil(pooled_col.max())) + 1.0)
            spec = stats.StatSpec(**kwargs)
            secure = _flat(executor.statistic(spec))
            plain = np.atleast_1d(np.asarray(step.plaintext(_pooled(tables, spec.value_columns)),
                                             dtype=float)).ravel()
            rows.append(_print_row(out, step.title, backend, secure, plain))
    if model is not None and data_owner is not None:
        X = data_owner.matrix(list(model.features))
        for backend in backends:
            secure = executor.predict(model, backend)
            rows.append(_print_row(out, f"predict ({model.kind}, {len(X)} rows)", backend,
                                   secure, model.predict_plain(X)))
    return rows


def _fmt(v: np.ndarray) -> str:
    shown = ", ".join(f"{x:.4g}" for x in v[:3]) + (", ..." if v.size > 3 else "")
    return shown if len(shown) <= 28 else shown[:25] + "..."


def _print_row(out: TextIO, title: str, backend: str, secure: np.ndarray,
               plain: np.ndarray) -> dict[str, Any]:
    diff = float(np.nanmax(np.abs(secure - plain))) if secure.size == plain.size else float("nan")
    print(f"{title:34} {backend:7} {_fmt(secure):>28} {_fmt(plain):>28} {diff:10.2e}", file=out)
    return {"computation": title, "backend": backend, "max_abs_diff": diff}


def simulated_demo(data_files: Sequence[Path] | None = None, out: TextIO = sys.stdout
                   ) -> list[dict[str, Any]]:
    """Run the tour on the simulator: on sample hospitals by default, or on the given CSVs."""
    with tempfile.TemporaryDirectory(prefix="smpc-demo-") as tmp:
        model: linear.LinearModel | None = None
        if not data_files:
            data_files, model_path = sampledata.write_sample_federation_data(Path(tmp))
            model = linear.LinearModel.from_json(json.loads(model_path.read_text()))
        tables = [load_table(p) for p in data_files]
        if len(tables) < 2:
            raise ValueError("the demo needs at least two data files (one per party)")
        print(f"{len(tables)} parties, {sum(t.n_rows for t in tables)} rows in total "
              "(simulated in this process)\n", file=out)
        return run_tour(SimulatedExecutor(tables, tables[0]), tables, model, tables[0], out)
