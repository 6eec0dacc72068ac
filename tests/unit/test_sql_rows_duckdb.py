"""The SQL engine's local aggregates equal the numpy reference on the same rows.

Every statistic, every missing-value mode, with and without a filter and DP clipping, over data
shaped like real exports (a mean far from zero with a spread of 1e-4, integers sitting exactly on
bin edges, gaps, text).  DuckDB computes the aggregates in SQL (:class:`SqlRows`); numpy computes
them from the matrix the memory engine selects (:class:`ArrayRows`).  Tolerances: counts and bin
counts exactly; sums and moments within 1e-12 relative to the sum of absolute values (both sums
are accurate to a few ulps: DuckDB's ``fsum`` is Kahan-Babuska, numpy's pairwise summation within
``gamma(log2 n + 24) sum |x|``, smpc.stats.bounds).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parties.data import filters
from parties.data.sources import DataSourceError, load_table
from parties.data.sql.duck import MATERIALIZE_CELLS, open_duckdb
from smpc.stats.rowsource import ArrayRows
from smpc.stats.spec import StatSpec

N = 5000
#: Both ways DuckDB holds a Parquet file: copied into memory in canonical form (a small file)
#: and scanned in place with the canonical view computed by each query (a large one).
WAYS = {"copied": MATERIALIZE_CELLS, "in-place": 0}


def _data(seed: int = 7) -> dict[str, np.ndarray | list[str | None]]:
    rng = np.random.default_rng(seed)
    income = 52_000.0 + rng.normal(0, 1e-4, N)          # far from zero, tiny spread
    age = rng.integers(18, 91, N).astype(np.float64)     # integers: on the quantile edges
    bp = rng.normal(120, 15, N)
    bp[rng.random(N) < 0.07] = np.nan                    # gaps
    age[rng.random(N) < 0.03] = np.nan
    sex = rng.choice(np.array(["F", "M", "X"], dtype=object), N).tolist()
    for i in rng.choice(N, 40, replace=False):
        sex[int(i)] = None
    return {"income": income, "age": age, "bp": bp, "sex": sex}


@pytest.fixture(scope="module", params=list(WAYS))
def tables(tmp_path_factory, request):
    d = tmp_path_factory.mktemp("sqlrows")
    cols = _data()
    path = d / "t.parquet"
    pq.write_table(pa.table({k: pa.array(v) for k, v in cols.items()}), path)
    duck = open_duckdb(path, materialize_cells=WAYS[request.param])
    assert duck.materialized == (request.param == "copied")
    yield load_table(path), duck
    duck.close()


@pytest.fixture(params=list(WAYS))
def way(request) -> int:
    """How a test's own small Parquet file is held (:data:`WAYS`)."""
    return WAYS[request.param]


SPECS = [
    dict(statistic="count", columns=["bp"]),
    dict(statistic="sum", columns=["income", "bp"]),
    dict(statistic="mean", columns=["income", "age", "bp"]),
    dict(statistic="var", columns=["income", "bp"]),
    dict(statistic="std", columns=["age"]),
    dict(statistic="cov", columns=["income", "age", "bp"]),
    dict(statistic="corr", columns=["age", "bp"]),
    dict(statistic="linreg", columns=["age"], target="bp"),
    dict(statistic="histogram", columns=["age", "bp"], edges=[18, 30, 30.5, 45, 60, 90]),
    dict(statistic="quantiles", columns=["age"], bounds=(18, 90), resolution=72,
         probabilities=[0.5]),
    dict(statistic="quantiles", columns=["bp"], bounds=(60, 180), resolution=1024,
         probabilities=[0.1, 0.9]),
]
WHERES = [None, "sex == 'F' and age >= 40", "not (bp > 130) or isnull(age)"]


def _close(got: np.ndarray, want: np.ndarray, scale: np.ndarray) -> None:
    assert got.shape == want.shape
    np.testing.assert_array_less(np.abs(got - want), 1e-12 * np.maximum(scale, 1.0) + 1e-300)


def _pair(tables, spec: StatSpec, where: str | None, mode: str):
    memory, duck = tables
    expr = None if where is None else filters.parse(where)
    mask = None if expr is None else filters.evaluate(expr, memory)
    cols = list(spec.value_columns)
    idx = np.arange(memory.n_rows) if mask is None else np.flatnonzero(mask)
    rows = np.column_stack([memory.column(c)[idx] for c in cols])
    if mode == "drop":
        rows = rows[~np.isnan(rows).any(axis=1)]
    return ArrayRows(spec, rows), duck.local_rows(cols, expr, mode), np.abs(np.nan_to_num(rows))


@pytest.mark.parametrize("where", WHERES)
@pytest.mark.parametrize("kw", SPECS, ids=lambda kw: f"{kw['statistic']}-{len(kw['columns'])}")
def test_every_pass_equals_numpy(tables, kw, where):
    spec = StatSpec(**kw, missing="skip")
    ref, sql, absx = _pair(tables, spec, where, "keep")
    p1 = sql.pass1(spec)
    want = ref.pass1(spec)
    if spec.statistic.bin_counts or spec.statistic.value == "count":
        np.testing.assert_array_equal(p1, want)
    else:
        scale = np.concatenate([[0], absx.sum(axis=0), np.zeros(len(spec.value_columns))])
        _close(p1, want, scale)
    if spec.passes == 2:
        n = float(want[0])
        shift = np.round(np.nanmean(np.where(absx == 0, np.nan, absx), axis=0), 3)
        spread_ref = ref.spread(spec, shift, n)
        _close(sql.spread(spec, shift, n), spread_ref, np.abs(spread_ref))
        scale = np.full(len(shift), 2.0 ** -12)
        p2_ref = ref.pass2(spec, shift, n, scale)
        k = len(shift)
        mag = (absx.sum(axis=0).max() + np.abs(shift).max() * absx.shape[0]) / 2.0 ** -12
        _close(sql.pass2(spec, shift, n, scale), p2_ref,
               np.full(p2_ref.shape, mag * (mag if k else 1) / max(n, 1)))


@pytest.mark.parametrize("where", WHERES)
@pytest.mark.parametrize("kw", SPECS, ids=lambda kw: f"{kw['statistic']}-{len(kw['columns'])}")
def test_counts_scan_equals_numpy_and_serves_pass1(tables, kw, where):
    """The exact mode's counts (selected rows, values per column, complete rows) equal numpy's;
    for a statistic of sums the same scan's pass 1 is what pass1() returns afterwards -- with
    no further query -- and equals numpy's; a clipped pass or another spec is computed anew."""
    memory, duck = tables
    spec = StatSpec(**kw, missing="skip")
    ref, sql, absx = _pair(tables, spec, where, "keep")
    cols = list(spec.value_columns)
    expr = None if where is None else filters.parse(where)
    mask = (np.ones(memory.n_rows, bool) if expr is None
            else np.asarray(filters.evaluate(expr, memory), bool))
    values = np.column_stack([memory.column(c)[mask] for c in cols])
    seen = sql.counts(spec)
    assert seen.selected == int(mask.sum())
    assert seen.complete == int((~np.isnan(values)).all(axis=1).sum())
    if spec.complete_rows:  # counted only where the check needs them
        assert seen.present is None
    else:
        assert seen.present == [int(v) for v in (~np.isnan(values)).sum(axis=0)]
    errors = duck.local_rows(cols, expr, "error").counts(StatSpec(**kw, missing="error"))
    assert errors.present is None and errors.complete == seen.complete
    queries: list[str] = []
    run = sql.run

    def counting(text: str, params: list[object]) -> list[tuple[object, ...]]:
        queries.append(text)
        return run(text, params)

    sql.run = counting
    p1 = sql.pass1(spec)
    want = ref.pass1(spec)
    if spec.statistic.bin_counts:
        assert queries  # bin counts: their own queries
        np.testing.assert_array_equal(p1, want)
        return
    assert queries == []  # served from the counts' scan
    if spec.statistic.value == "count":
        np.testing.assert_array_equal(p1, want)
    else:
        _close(p1, want, np.concatenate([[0], absx.sum(axis=0), np.zeros(len(cols))]))
    p1[:] = -1.0  # the kept result is not handed out by reference
    np.testing.assert_array_equal(sql.pass1(spec)[0], want[0])
    clip = [(0.0, 1e9)] * len(cols)
    sql.pass1(spec, clip)
    assert len(queries) == 1  # a clipped pass is a new scan
    sql.pass1(StatSpec(**kw, missing="error"))
    assert len(queries) == 2  # so is another spec


@pytest.mark.parametrize("kw", SPECS[1:], ids=lambda kw: kw["statistic"])
def test_dp_rows_dropped_and_clipped_as_numpy(tables, kw):
    """Under DP: incomplete rows dropped, present values clipped into the public bounds."""
    spec = StatSpec(**kw, missing="error")
    ref, sql, _ = _pair(tables, spec, "age > 25", "drop")
    clip = [(100.0, 140.0)] * len(spec.value_columns)
    want = ref.pass1(spec, clip)
    got = sql.pass1(spec, clip)
    if spec.statistic.bin_counts:
        np.testing.assert_array_equal(got, want)
    else:
        _close(got, want, np.full(want.shape, 140.0 * N))
        if spec.passes == 2:
            shift = np.full(len(clip), 120.0)
            p2 = ref.pass2(spec, shift, float(want[0]), None, clip)
            _close(sql.pass2(spec, shift, float(want[0]), None, clip), p2,
                   np.full(p2.shape, 40.0 ** 2 * N))


def test_values_on_every_fine_edge_land_in_numpys_bin(tmp_path, way):
    """Quantile grids: values exactly on each linspace edge and one ulp either side."""
    lo, hi, res = -3.7, 1e4 + 0.1, 999
    edges = np.linspace(lo, hi, res + 1)
    x = np.concatenate([edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf)])
    path = tmp_path / "e.parquet"
    pq.write_table(pa.table({"x": x}), path)
    duck = open_duckdb(path, materialize_cells=way)
    try:
        spec = StatSpec(statistic="quantiles", columns=["x"], bounds=(lo, hi), resolution=res,
                        probabilities=[0.5])
        np.testing.assert_array_equal(duck.local_rows(["x"], None, "error").pass1(spec),
                                      ArrayRows(spec, x[:, None]).pass1(spec))
        spec = StatSpec(statistic="histogram", columns=["x"], edges=tuple(edges[::7]))
        np.testing.assert_array_equal(duck.local_rows(["x"], None, "error").pass1(spec),
                                      ArrayRows(spec, x[:, None]).pass1(spec))
    finally:
        duck.close()


def test_filter_mask_and_counts_equal_the_memory_engine(tables):
    memory, duck = tables
    for where in [*WHERES[1:], "sex != 'M'", "income > 52000.00001 and notnull(bp)",
                  "age == 40 or age == 41", "not (sex == 'F')"]:
        expr = filters.parse(where)
        want = filters.evaluate(expr, memory)
        np.testing.assert_array_equal(duck.row_mask(expr), want)
        assert duck.count(expr) == int(want.sum())
    np.testing.assert_array_equal(duck.row_mask(None), np.ones(N, dtype=bool))
    np.testing.assert_array_equal(duck.row_mask(None, not_null=["bp", "age"]),
                                  ~np.isnan(memory.column("bp")) & ~np.isnan(memory.column("age")))


@pytest.mark.parametrize("n", [1, 7, 8, 9, 31, 32, 33, 64, 65, 1000])
def test_row_mask_bits_at_every_byte_boundary(tmp_path, way, n):
    """The mask comes out of DuckDB as a bitstring (right-aligned in whole bytes): the first
    row, the last row, every third row, none and all land on their own rows for table sizes
    on and around byte and word boundaries."""
    idx = np.arange(n, dtype=np.float64)
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"i": idx, "third": (idx % 3 == 1).astype(np.float64)}), path)
    duck = open_duckdb(path, materialize_cells=way)
    try:
        for where in ["i == 0", f"i == {n - 1}", f"i == 0 or i == {n - 1}", "third == 1",
                      "i < 0", "i >= 0"]:
            want = filters.evaluate(filters.parse(where), load_table(path))
            got = duck.row_mask(filters.parse(where))
            assert got.dtype == np.bool_ and got.shape == (n,)
            np.testing.assert_array_equal(got, want, err_msg=where)
    finally:
        duck.close()


def test_infinite_values_found_in_one_scan_name_the_memory_engines_row(tmp_path, way):
    """check_values looks for infinities in all the columns it is given in one query: the
    error is still the first column's in the order asked, with the memory engine's row and
    sentence, and every column's verdict is remembered."""
    x = np.arange(10, dtype=np.float64)
    y, z = x.copy(), x.copy()
    y[[4, 8]] = np.inf
    z[2] = -np.inf
    path = tmp_path / "inf.parquet"
    pq.write_table(pa.table({"x": x, "y": y, "z": z}), path)
    memory = load_table(path)
    for order in (["x", "y", "z"], ["z", "y"], ["x", "z"]):
        duck = open_duckdb(path, materialize_cells=way)
        try:
            with pytest.raises(Exception) as got:
                duck.check_values(order)
            with pytest.raises(Exception) as want:
                for name in order:
                    memory.column(name)
            assert str(got.value) == str(want.value)
            assert (got.value.kind, got.value.column, got.value.row) == (
                want.value.kind, want.value.column, want.value.row)
            assert duck.is_numeric("x") and not duck.is_numeric("y")
            assert not duck.is_numeric("z")
        finally:
            duck.close()


@pytest.mark.parametrize("whole", [0, 1 << 22], ids=["fetched-rows", "whole-columns"])
def test_select_with_a_mask_fetches_only_those_rows_and_equals_memory(tables, monkeypatch,
                                                                       whole):
    """An inference's rows: the selected rows only (chunked) from a large table, whole
    columns kept from a small one -- either way the memory engine's result."""
    import parties.data.sql.table as sql_table

    memory, duck = tables
    monkeypatch.setattr(sql_table, "FETCH_CHUNK", 97)  # several chunks
    monkeypatch.setattr(sql_table, "WHOLE_COLUMN_CELLS", whole)
    duck._fetched.clear()
    queries: list[str] = []
    run = duck.run

    def counting(text: str, params: list[object]) -> list[tuple[object, ...]]:
        queries.append(text)
        return run(text, params)

    monkeypatch.setattr(duck, "run", counting)
    mask = filters.evaluate(filters.parse("sex == 'F' and age > 60"), memory)
    for missing in ("drop", "error"):
        try:
            want = memory.select(["age", "income", "bp"], rows=mask, missing=missing)
        except Exception as exc:
            with pytest.raises(type(exc)) as err:
                duck.select(["age", "income", "bp"], rows=mask, missing=missing)
            assert err.value.public == exc.public and err.value.row == exc.row
            continue
        got = duck.select(["age", "income", "bp"], rows=mask, missing=missing)
        np.testing.assert_array_equal(got.values, want.values)
        np.testing.assert_array_equal(got.rows, want.rows)
        assert got.n_dropped == want.n_dropped
    fetched_by_number = [q for q in queries if " IN (" in q]
    if whole:
        assert not fetched_by_number  # the small table's columns, read whole, once
    else:
        assert len(fetched_by_number) >= 2 * int(mask.sum()) // 97  # chunks, both modes


def test_a_duckdb_database_files_table_and_view_answer_as_numpy(tmp_path, way):
    """A party's own DuckDB file: a base table (numbered by rowid) and a view (numbered in its
    order) answer counts, masks and sums as numpy on the same rows; the file is opened
    read-only (unchanged afterwards); an unknown table and a column named smpc_row are
    refused with a sentence."""
    import hashlib

    import duckdb

    cols = _data(seed=11)
    path = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    con.register("src", pa.table({k: pa.array(v) for k, v in cols.items()}))
    con.execute("CREATE TABLE visits AS SELECT * FROM src")
    con.execute("CREATE VIEW adults AS SELECT * FROM visits WHERE age >= 18")
    con.execute("CREATE TABLE bad AS SELECT 1 AS smpc_row, 2.0 AS x")
    con.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    bp, age = np.asarray(cols["bp"]), np.asarray(cols["age"])
    spec = StatSpec(statistic="mean", columns=["bp", "age"], missing="skip")
    for table in ("visits", "adults"):
        duck = open_duckdb(path, table=table, materialize_cells=way)
        try:
            assert duck.n_rows == N and duck.columns == ["income", "age", "bp", "sex"]
            expr = filters.parse("sex == 'F' and bp > 120")
            sex = np.array([s == "F" for s in cols["sex"]])
            want = sex & (np.nan_to_num(bp, nan=-1.0) > 120)
            np.testing.assert_array_equal(duck.row_mask(expr), want)
            got = duck.local_rows(["bp", "age"], expr, "keep").pass1(spec)
            sel = np.column_stack([bp[want], age[want]])
            np.testing.assert_array_equal(got[0], want.sum())
            np.testing.assert_allclose(got[1:3], np.nansum(sel, axis=0), rtol=1e-13)
            np.testing.assert_array_equal(got[3:], np.isnan(sel).sum(axis=0))
        finally:
            duck.close()
    with pytest.raises(DataSourceError, match="has no table or view 'nope'"):
        open_duckdb(path, table="nope", materialize_cells=way)
    with pytest.raises(DataSourceError, match="a column is named 'smpc_row'"):
        open_duckdb(path, table="bad", materialize_cells=way)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_file_with_its_own_smpc_row_column_is_refused(tmp_path, fmt):
    """``smpc_row`` is the canonical view's row number: a file's own column of that name is
    refused by name (DuckDB would otherwise rename one of the two without a word)."""
    path = tmp_path / f"r.{fmt}"
    if fmt == "parquet":
        pq.write_table(pa.table({"x": [1.0, 2.0], "smpc_row": [7.0, 8.0]}), path)
    else:
        path.write_text("x,smpc_row\n1,7\n2,8\n")
    with pytest.raises(DataSourceError, match="a column is named 'smpc_row'"):
        open_duckdb(path)
