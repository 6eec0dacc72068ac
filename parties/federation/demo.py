"""The guided tour behind ``smpc demo``: statistics and inference, secure next to plaintext.

The tour is a list of computations; an *executor* runs each one securely and
the tour prints the secure result next to the plaintext answer on the pooled
data and their largest difference.  :class:`SimulatedExecutor` runs the
protocols among simulated parties in this process (the core's simulator:
same protocol code, in-memory channels); the federation executor runs them
on real party nodes over mutual TLS.
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

import numpy as np

from parties.data.sources import Table, load_table
from parties.federation import sampledata
from smpc import linear, simulator, stats
from smpc.names import Backend, ModelKind

#: The demo's federation opts in to exact answers, visibly: the tour compares each secure result
#: with the plaintext answer, which only an exact answer can match.  A real federation keeps the
#: default (``smpc federation init`` without ``--allow-exact``): differential privacy only.
DEMO_POLICY: dict[str, Any] = {"allow_exact": True, "min_cohort_size": 1,
                               "exact_safeguards": {"min_cell_size": 1}}
EXACT_NOTICE = (
    "this demo's parties allow exact answers (init_federation(allow_exact=True), minimum "
    "cohort 1, no cell suppression) so that each secure result can be compared with the "
    "plaintext answer; a federation made by `smpc federation init` answers only with "
    "differential privacy unless given --allow-exact")


@dataclass(frozen=True)
class StatStep:
    title: str
    spec_kwargs: dict[str, Any]
    plaintext: Callable[[np.ndarray], Any]


class Executor(Protocol):
    def statistic(self, spec: stats.StatSpec) -> stats.StatResult: ...

    def predict(self, model: linear.LinearModel, backend: str) -> np.ndarray: ...


def _rows(table: Table, columns: Sequence[str]) -> np.ndarray:
    """The table's ``columns`` (n x k), NaN where a value is missing."""
    return np.column_stack([table.column(c) for c in columns]).reshape(table.n_rows,
                                                                        len(columns))


def _pooled(tables: Sequence[Table], columns: Sequence[str]) -> np.ndarray:
    return np.vstack([_rows(t, columns) for t in tables])


def _complete(x: np.ndarray) -> np.ndarray:
    """The rows of ``x`` without a missing value (pandas ``dropna``)."""
    return x[~np.isnan(x).any(axis=1)]


def _quantiles(col: np.ndarray, probs: Sequence[float]) -> np.ndarray:
    return np.quantile(col[~np.isnan(col)], probs, method="inverted_cdf")


def default_steps(columns: Sequence[str]) -> list[StatStep]:
    """The tour for tables that have the sample hospital columns (or any numeric ones).

    Missing values are left out like pandas does (``missing="skip"``): the plaintext side
    skips each column's missing values (``nanmean`` ...) for the per-column statistics and
    uses the complete rows for ``corr`` and ``linreg``."""
    a, b, c = (list(columns) * 3)[:3]
    q_probs = (0.1, 0.5, 0.9)
    skip = {"missing": "skip"}

    def linreg(x: np.ndarray) -> np.ndarray:
        x = _complete(x)
        return np.linalg.lstsq(np.column_stack([np.ones(len(x)), x[:, :2]]), x[:, 2],
                               rcond=None)[0]

    return [
        StatStep("count", {"statistic": "count", "columns": (a,), **skip},
                 lambda x: np.count_nonzero(~np.isnan(x[:, 0]))),
        StatStep(f"mean {a}, {b}", {"statistic": "mean", "columns": (a, b), **skip},
                 lambda x: np.nanmean(x, axis=0)),
        StatStep(f"std {a}, {b}", {"statistic": "std", "columns": (a, b), **skip},
                 lambda x: np.nanstd(x, axis=0, ddof=1)),
        StatStep(f"corr {a}, {b}, {c}", {"statistic": "corr", "columns": (a, b, c), **skip},
                 lambda x: np.corrcoef(_complete(x), rowvar=False)),
        StatStep(f"linreg {c} ~ {a} + {b}",
                 {"statistic": "linreg", "columns": (a, b), "target": c, **skip}, linreg),
        StatStep(f"quantiles {a} (10/50/90%)",
                 {"statistic": "quantiles", "columns": (a,), "probabilities": q_probs, **skip},
                 lambda x: _quantiles(x[:, 0], q_probs)),
    ]


def _flat(result: stats.StatResult) -> np.ndarray:
    if result.statistic == "linreg":
        return np.array([result.value["intercept"], *result.value["coefficients"]])
    return np.asarray(result.value, dtype=float).ravel()


class FederationExecutor:
    """Runs every computation on real party nodes, as the federation's analyst."""

    def __init__(self, client: Any, parties: Sequence[str], data_owner: str | None,
                 model_owner: str | None) -> None:
        self.client = client
        self.parties = list(parties)
        self.data_owner = data_owner
        self.model_owner = model_owner

    def statistic(self, spec: stats.StatSpec) -> stats.StatResult:
        return self.client.compute(spec, parties=self.parties)

    def predict(self, model: linear.LinearModel, backend: str) -> np.ndarray:
        assert self.data_owner is not None and self.model_owner is not None
        outcome = self.client.predict(self.data_owner, self.model_owner, backend=backend)
        # The demo runs every node on this machine, so it can read what only the
        # data owner learns; in a real federation only that party can.
        return read_predictions(Path(outcome.output_path))


def read_predictions(path: Path) -> np.ndarray:
    """The predictions a data owner's node stored for one session (in row order; NaN for a
    selected row left out for a missing feature).

    The file is encrypted at rest; it is decrypted with the data owner's
    at-rest key, found through its config next to the outputs directory of a
    local federation (``nodes/<party>/config.json``).
    """
    import csv

    from parties.privacy.outputs import read_output

    config = Path(path).parents[1] / "config.json"
    text = read_output(config, path).decode()
    rows = sorted(csv.DictReader(io.StringIO(text)), key=lambda r: int(r["row"]))
    # the file may carry the data owner's key column, and rows left out for a missing
    # feature (an empty prediction: NaN here)
    return np.array([float(r["prediction"]) if r["prediction"] else np.nan for r in rows])


class SimulatedExecutor:
    """Runs every computation among simulated parties in this process."""

    def __init__(self, tables: Sequence[Table], data_owner: Table) -> None:
        self.tables = list(tables)
        self.data_owner = data_owner

    def statistic(self, spec: stats.StatSpec) -> stats.StatResult:
        rows = [_rows(t, spec.value_columns) for t in self.tables]
        result, _ = stats.simulate(spec, rows)
        return result

    def predict(self, model: linear.LinearModel, backend: str) -> np.ndarray:
        X = self.data_owner.matrix(list(model.features))
        spec = linear.InferenceSpec(model.kind, X.shape[0], X.shape[1], backend=Backend(backend))
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
    header = (f"{'computation':34} {'backend':7} {'secure':>28} {'plaintext':>28} "
              f"{'max |diff|':>10} {'tolerance':>9} {'ok':>4}")
    print(header, file=out)
    print("-" * len(header), file=out)
    for step in default_steps(numeric):
        for backend in backends:
            kwargs = dict(step.spec_kwargs, backend=backend)
            if kwargs["statistic"] == "quantiles":
                col = kwargs["columns"][0]
                pooled_col = _pooled(tables, [col])
                kwargs["bounds"] = (float(np.floor(np.nanmin(pooled_col))) - 1.0,
                                    float(np.ceil(np.nanmax(pooled_col))) + 1.0)
            spec = stats.StatSpec(**kwargs)
            result = executor.statistic(spec)
            secure = _flat(result)
            plain = np.atleast_1d(np.asarray(step.plaintext(_pooled(tables, spec.value_columns)),
                                             dtype=float)).ravel()
            tol = tolerance(spec.statistic, backend, plain,
                            float(result.details.get("resolution", 0.0)))
            rows.append(_print_row(out, step.title, backend, secure, plain, tol))
    if model is not None and data_owner is not None:
        X = data_owner.matrix(list(model.features))
        for backend in backends:
            secure = executor.predict(model, backend)
            plain = model.predict_plain(X)
            rows.append(_print_row(out, f"predict ({model.kind}, {len(X)} rows)", backend,
                                   secure, plain, tolerance("predict", backend, plain)))
    agree = sum(r["within_tolerance"] for r in rows)
    print(f"\n{agree} of {len(rows)} secure results agree with plaintext within the stated "
          "tolerance (see parties/federation/demo.py: tolerance).", file=out)
    return rows


def _fmt(v: np.ndarray) -> str:
    shown = ", ".join(f"{x:.4g}" for x in v[:3]) + (", ..." if v.size > 3 else "")
    return shown if len(shown) <= 28 else shown[:25] + "..."


def tolerance(kind: str, backend: str, plain: np.ndarray, bin_width: float = 0.0) -> float:
    """The stated agreement between a secure result and the plaintext one.

    * quantiles: one bin of the fine histogram (both backends);
    * ckks prediction: 6 std of the model owner's flooding noise on the logit
      (probabilities move by at most a quarter of that);
    * ss prediction: 2e-3, the fixed-point bound (||w||_1 + ||x||_1) 2^-17 for
      features of a few hundred;
    * other ss results: 1e-4 relative (fixed-point encoding error is ~1e-8);
    * other ckks results: 1e-3 relative (release flooding, std 2^-7 on each
      summed aggregate, divided by the row count for means).
    """
    scale = max(1.0, float(np.nanmax(np.abs(plain)))) if plain.size else 1.0
    if kind == "quantiles":
        return bin_width + 1e-9
    if kind == "predict" and backend == "ckks":
        spec = linear.InferenceSpec(ModelKind.LOGISTIC, 1, 1, backend=Backend.CKKS)
        return 6 * linear.model_flood_std(spec, np.ones(1))
    if kind == "predict":
        return 2e-3
    return (1e-4 if backend == "ss" else 1e-3) * scale


def _print_row(out: TextIO, title: str, backend: str, secure: np.ndarray,
               plain: np.ndarray, tol: float) -> dict[str, Any]:
    diff = float(np.nanmax(np.abs(secure - plain))) if secure.size == plain.size else float("nan")
    ok = bool(diff <= tol)
    print(f"{title:34} {backend:7} {_fmt(secure):>28} {_fmt(plain):>28} {diff:10.2e} "
          f"{tol:9.1e} {'yes' if ok else 'NO':>4}", file=out)
    return {"computation": title, "backend": backend, "max_abs_diff": diff, "tolerance": tol,
            "within_tolerance": ok}


def federation_demo(data_files: Sequence[Path] | None = None, out: TextIO = sys.stdout
                    ) -> list[dict[str, Any]]:
    """Run the tour on a temporary local federation of real nodes (mTLS on 127.0.0.1).

    By default: three sample hospitals and a cardiology lab that owns a
    logistic risk model, applied to the first hospital's patients.  With
    ``data_files``: one party per file, statistics only.
    """
    from parties.analyst.client import Client
    from parties.federation.local import local_federation, party_name

    with tempfile.TemporaryDirectory(prefix="smpc-demo-") as tmp:
        models: dict[str, Path] = {}
        model: linear.LinearModel | None = None
        if not data_files:
            files, model_path = sampledata.write_sample_federation_data(
                Path(tmp) / "data", with_model_owner=True)
            owner = party_name(files[-1])
            models = {owner: model_path}
            model = linear.LinearModel.from_json(json.loads(model_path.read_text()))
            data_parties = files[:-1]
        else:
            files = list(data_files)
            data_parties = files
            owner = None
        if len(data_parties) < 2:
            raise ValueError("the demo needs at least two data files (one per party)")
        tables = [load_table(p) for p in data_parties]
        names = [party_name(p) for p in data_parties]
        print(f"starting a local federation: {len(files)} party nodes, a coordinator and "
              "an analyst, mutual TLS on 127.0.0.1 ...", file=out, flush=True)
        print(EXACT_NOTICE, file=out, flush=True)
        with local_federation(files, models=models or None, directory=Path(tmp) / "federation",
                              **DEMO_POLICY) as layout:
            print(f"{len(names)} data parties ({', '.join(names)}), "
                  f"{sum(t.n_rows for t in tables)} rows in total"
                  + (f"; model owner {owner}" if owner else "") + "\n", file=out, flush=True)
            with Client(layout.directory) as client:
                executor = FederationExecutor(client, names, names[0], owner)
                rows = run_tour(executor, tables, model, tables[0], out)
        print("federation stopped.", file=out)
        return rows


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
