"""The same federation's answers with every party on DuckDB as with every party in memory.

Two real federations (node processes, mutual TLS) over the same three files -- one Parquet, two
CSV, with gaps, text, dates, a column far from zero with a spread of 1e-4 and integers on the
quantile edges -- one with ``engine = "memory"`` (numpy), one with ``engine = "duckdb"`` (the
filter and the local aggregates in SQL).  Every statistic, with filters on numbers, text and
dates, must give the same row counts and missing counts exactly, and values within the sum of
the two results' own error bounds (each is within its bound of the pooled truth, checked against
numpy too).  Also checked: the refusals a party makes on its rows (missing values with
``missing="error"``, a text column asked as numbers) are the same sentences on both engines.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parties.analyst.client import Client, InvalidRequest, PermissionDenied
from parties.federation import local as federation
from parties.privacy.exact import SAFEGUARDS_OFF
from smpc.stats import StatSpec
from tests.tolerances import assert_within

PARTIES = ("north", "south", "east")


def _party(rng: np.random.Generator, n: int, shift: float) -> dict[str, object]:
    age = rng.integers(18, 91, n).astype(float)
    age[rng.random(n) < 0.05] = np.nan
    income = 52_000.0 + shift + rng.normal(0, 1e-4, n)
    sbp = 95 + 0.45 * np.nan_to_num(age, nan=50) + rng.normal(0, 9, n)
    sbp[rng.random(n) < 0.08] = np.nan
    sex = [None if rng.random() < 0.03 else ("F" if rng.random() < 0.5 else "M")
           for _ in range(n)]
    days = rng.integers(0, 730, n)
    visit = [str(np.datetime64("2023-01-01") + int(d)) for d in days]
    return {"age": age, "income": income, "sbp": sbp, "sex": sex, "visit": visit}


def _write(path, cols) -> None:
    if path.suffix == ".parquet":
        arrays = {}
        for k, v in cols.items():
            if k == "visit":
                arrays[k] = pa.array(np.array(v, dtype="datetime64[D]"))
            elif isinstance(v, list):
                arrays[k] = pa.array(v, type=pa.string())
            else:
                arrays[k] = pa.array(v, from_pandas=True)  # NaN -> null
        pq.write_table(pa.table(arrays), path)
        return
    names = list(cols)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(names)
        for i in range(len(cols["age"])):
            row = []
            for k in names:
                v = cols[k][i]
                if v is None or (isinstance(v, float) and np.isnan(v)):
                    row.append("")
                else:
                    row.append(v if isinstance(v, str) else repr(float(v)))
            w.writerow(row)


@pytest.fixture(scope="module")
def feds(tmp_path_factory):
    root = tmp_path_factory.mktemp("engines")
    rng = np.random.default_rng(15)
    data = {p: _party(rng, n, s) for p, n, s in zip(PARTIES, (400, 350, 300), (0.0, 3.0, -2.0),
                                                     strict=True)}
    files = []
    for p, suffix in zip(PARTIES, (".parquet", ".csv", ".csv"), strict=True):
        path = root / f"{p}{suffix}"
        _write(path, data[p])
        files.append(path)
    out = {}
    private = root / "tmp"  # the nodes' TMPDIR: DuckDB's private directories go there
    private.mkdir()
    for engine in ("memory", "duckdb"):
        d = root / engine
        federation.init_federation(d, files, allow_exact=True, exact_safeguards=SAFEGUARDS_OFF,
                                   min_cohort_size=5, engine=engine)
        federation.up(d, timeout=90, env={"TMPDIR": str(private)})
        for p in PARTIES:  # each node says which engine holds its rows
            assert f"engine {engine})" in (d / "logs" / f"{p}.log").read_text()
        out[engine] = Client(d, timeout=90)
    made = sorted(p.name for p in private.iterdir())
    assert len([m for m in made if m.startswith("smpc-duckdb-")]) == len(PARTIES), made
    yield out, data
    for engine, client in out.items():
        client.close()
        federation.down(root / engine)
    # a node that stops removes its DuckDB directory (imported CSV cells, spill files)
    assert not [p for p in private.iterdir() if p.name.startswith("smpc-duckdb-")]


def _pooled(data, cols, mask=None):
    blocks = []
    for p in PARTIES:
        X = np.column_stack([np.asarray(data[p][c], dtype=float) for c in cols])
        blocks.append(X if mask is None else X[mask(data[p])])
    return np.vstack(blocks)


SPECS = [
    StatSpec("count", ("age",), missing="skip"),
    StatSpec("sum", ("age", "income"), missing="skip"),
    StatSpec("mean", ("age", "income", "sbp"), missing="skip"),
    StatSpec("var", ("income", "sbp"), missing="skip"),
    StatSpec("std", ("age",), missing="skip"),
    StatSpec("cov", ("age", "sbp"), missing="skip"),
    StatSpec("corr", ("age", "sbp"), missing="skip"),
    StatSpec("linreg", ("age",), target="sbp", missing="skip"),
    StatSpec("histogram", ("age",), edges=(18, 30, 45, 60, 75, 91), missing="skip"),
    StatSpec("quantiles", ("age",), bounds=(18, 91), resolution=73,
             probabilities=(0.25, 0.5, 0.9), missing="skip"),
    StatSpec("mean", ("income",), backend="ckks", missing="skip"),
    StatSpec("var", ("sbp",), backend="ckks", missing="skip"),
]
WHERES = [None, "sex == 'F' and visit >= '2024-01-01'", "not (age < 40) or isnull(sbp)"]


@pytest.mark.parametrize("where", WHERES)
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.statistic}-{s.backend}")
def test_duckdb_parties_answer_as_memory_parties(feds, spec, where):
    clients, _ = feds
    mem = clients["memory"].compute(spec, where)
    duck = clients["duckdb"].compute(spec, where)
    assert duck.n == mem.n
    assert duck.details.get("missing") == mem.details.get("missing")
    if spec.statistic in ("count", "histogram"):
        assert json.dumps(duck.value) == json.dumps(mem.value)
        return
    b_mem, b_duck = mem.details["error_bound"], duck.details["error_bound"]
    if isinstance(mem.value, dict):  # linreg: coefficients, intercept, r2 ... each bounded
        assert set(duck.value) == set(mem.value)
        for key in b_mem:
            tol = np.asarray(b_mem[key]) + np.asarray(b_duck[key])
            assert_within(duck.value[key], mem.value[key], tol, f"linreg {key}")
        return
    tol = np.asarray(b_mem) + np.asarray(b_duck)
    assert_within(duck.value, mem.value, tol, f"{spec.statistic} duckdb vs memory")


def test_pooled_mean_matches_numpy(feds):
    clients, data = feds
    r = clients["duckdb"].compute(StatSpec("mean", ("income", "sbp"), missing="skip"),
                                  "visit < '2024-06-01'")
    X = _pooled(data, ("income", "sbp"),
                mask=lambda d: np.array(d["visit"], dtype="datetime64[D]")
                < np.datetime64("2024-06-01"))
    assert_within(r.value, np.nanmean(X, axis=0), r.details["error_bound"], "mean vs numpy")


def test_refusals_say_the_same_on_both_engines(feds):
    clients, _ = feds
    said = {}
    for engine, client in clients.items():
        with pytest.raises((PermissionDenied, InvalidRequest)) as err:
            client.compute(StatSpec("mean", ("sbp",), missing="error"))
        said[engine] = str(err.value)
    assert "column 'sbp' has missing values in the selected rows" in said["duckdb"]
    assert said["duckdb"] == said["memory"]
    said = {}
    for engine, client in clients.items():
        with pytest.raises((PermissionDenied, InvalidRequest)) as err:
            client.compute(StatSpec("mean", ("sex",), missing="skip"))
        said[engine] = str(err.value)
    assert said["duckdb"] == said["memory"], said


def test_dp_statistic_on_duckdb_is_near_the_truth(feds):
    clients, data = feds
    spec = StatSpec("mean", ("sbp",), missing="skip",
                    dp={"epsilon": 0.5, "delta": 1e-6, "bounds": {"sbp": [60, 200]}})
    r = clients["duckdb"].compute(spec)
    truth = np.nanmean(_pooled(data, ("sbp",)))
    assert abs(r.value[0] - truth) < 6 * r.details["dp_noise_std"][0] + 1e-6
