"""A party's rows in PostgreSQL: the local step pushed down, only aggregates leave the database.

A real PostgreSQL 16 server (``tests/services/postgres.py``: a throw-away cluster from PyPI's
``pgserver`` binaries, every statement logged).  The party's export -- gaps (NULL and NaN), text
with missing markers, dates and timestamps, booleans, a column far from zero with a spread of
1e-4, integers on bin edges -- is loaded into a table; the party reads it through a view, as a
read-only role that may SELECT that view and nothing else.  Checked:

* every statistic's local aggregates equal numpy's on the same rows (exact counts and bins;
  sums within 1e-12 relative) and the filter selects the same rows as the memory engine;
* hostile filters are data, never SQL (the table is intact afterwards);
* the database's own log shows only aggregate queries from the party's role: no statement
  returns a row of the table (every one aggregates: COUNT, SUM, MIN, bit_or, GROUP BY);
* a node whose config names the database answers a joint statistic exactly as the file-backed
  node with the same rows (a real federation over mutual TLS).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from parties.data import filters
from parties.data.sql.duck import open_duckdb
from parties.data.sql.postgres import open_postgres
from smpc.stats.rowsource import ArrayRows
from smpc.stats.spec import StatSpec

pytest.importorskip("psycopg")
N = 3000


def _columns(seed: int = 11):
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 91, N).astype(float)
    age[rng.random(N) < 0.04] = np.nan
    income = 52_000.0 + rng.normal(0, 1e-4, N)
    sbp = rng.normal(120, 15, N)
    gaps = rng.random(N)
    sex = [None if g < 0.02 else ("NA" if g < 0.03 else ("F" if g < 0.5 else "M"))
           for g in gaps]
    visit = [np.datetime64("2023-01-01") + int(d) for d in rng.integers(0, 700, N)]
    smoker = rng.random(N) < 0.3
    return {"visit_id": np.arange(1, N + 1), "age": age, "income": income, "sbp": sbp,
            "sex": sex, "visit": visit, "smoker": smoker}


@pytest.fixture(scope="module")
def pg_and_reference(postgres_server, tmp_path_factory):
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = _columns()
    db = postgres_server.create_database()
    postgres_server.execute(
        "CREATE TABLE visits (visit_id bigint PRIMARY KEY, age double precision, "
        "income double precision, sbp numeric, sex text, visit date, smoker boolean)",
        dbname=db)
    rows = []
    for i in range(N):
        age = cols["age"][i]
        sbp = cols["sbp"][i]
        rows.append((int(cols["visit_id"][i]),
                     None if i % 97 == 0 else (float("nan") if np.isnan(age) else float(age)),
                     float(cols["income"][i]),
                     "NaN" if i % 89 == 0 else repr(float(sbp)),
                     cols["sex"][i], str(cols["visit"][i]), bool(cols["smoker"][i])))
    postgres_server.load_rows(db, "visits", list(cols), rows)
    postgres_server.execute("CREATE SCHEMA research", dbname=db)
    postgres_server.execute("CREATE VIEW research.visits_v AS SELECT * FROM visits", dbname=db)
    role = postgres_server.create_readonly_role("research.visits_v", dbname=db)
    # the reference: the same rows in Parquet (NULL and NaN both missing), read by DuckDB,
    # whose aggregates tests/unit/test_sql_rows_duckdb.py checks against numpy
    ages = np.array([np.nan if r[1] is None else r[1] for r in rows])
    sbps = np.array([np.nan if r[3] == "NaN" else float(r[3]) for r in rows])
    path = tmp_path_factory.mktemp("pgref") / "visits.parquet"
    pq.write_table(pa.table({
        "visit_id": pa.array(cols["visit_id"]), "age": pa.array(ages),
        "income": pa.array(cols["income"]), "sbp": pa.array(sbps),
        "sex": pa.array(cols["sex"], type=pa.string()),
        "visit": pa.array(np.array(cols["visit"], dtype="datetime64[D]")),
        "smoker": pa.array(cols["smoker"])}), path)
    mark = postgres_server.log_mark()
    table = open_postgres(role.dsn(), "research.visits_v", key="visit_id")
    ref = open_duckdb(path)
    yield table, ref, role, mark, ages, sbps
    table.close()
    ref.close()


SPECS = [
    dict(statistic="count", columns=["age", "sbp"]),
    dict(statistic="sum", columns=["age", "income", "smoker"]),
    dict(statistic="mean", columns=["income", "sbp", "visit"]),
    dict(statistic="var", columns=["income", "sbp"]),
    dict(statistic="cov", columns=["age", "sbp", "income"]),
    dict(statistic="linreg", columns=["age"], target="sbp"),
    dict(statistic="histogram", columns=["age"], edges=[18, 30, 45, 60, 90]),
    dict(statistic="quantiles", columns=["age"], bounds=(18, 90), resolution=72,
         probabilities=[0.5]),
]
WHERES = [None, "sex == 'F' and visit >= '2024-01-01'", "not (age < 40) or isnull(sbp)",
          "smoker == 1 and notnull(sex)"]


def test_columns_and_kinds(pg_and_reference):
    table, ref, *_ = pg_and_reference
    assert table.columns == ref.columns
    assert table.kinds == ref.kinds
    assert table.n_rows == ref.n_rows == N


@pytest.mark.parametrize("where", WHERES)
@pytest.mark.parametrize("kw", SPECS, ids=lambda kw: kw["statistic"])
def test_aggregates_equal_the_file_engines(pg_and_reference, kw, where):
    table, ref, *_ = pg_and_reference
    spec = StatSpec(**kw, missing="skip")
    expr = None if where is None else filters.parse(where)
    np.testing.assert_array_equal(table.row_mask(expr), ref.row_mask(expr))
    cols = list(spec.value_columns)
    got, want = table.local_rows(cols, expr, "keep"), ref.local_rows(cols, expr, "keep")
    mask = ref.row_mask(expr)
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
        s = np.full(len(cols), 0.5)
        p2 = got.pass2(spec, shift, n, s)
        ref2 = arr.pass2(spec, shift, n, s)
        np.testing.assert_allclose(p2, ref2, rtol=1e-11, atol=1e-12 * np.abs(ref2).max())
        clip = [(10.0, 100.0)] * len(cols)
        np.testing.assert_allclose(got.pass1(spec, clip), arr.pass1(spec, clip), rtol=1e-12)


def test_hostile_filters_are_data(pg_and_reference):
    table, ref, *_ = pg_and_reference
    for text in ("sex == 'F\\'; DROP VIEW research.visits_v; --'",
                 "sex == 'x'' OR ''1''=''1'".replace("''", "\\'"),
                 "sex != 'M\\\\'"):
        expr = filters.parse(text)
        np.testing.assert_array_equal(table.row_mask(expr), ref.row_mask(expr))
    assert table.count(None) == N


def test_the_attack_list_is_data(postgres_server, tmp_path):
    """The attack list of test_sql_hostile_filters.py on PostgreSQL (its table's columns are
    the hostile names): each attack is refused by the parser or selects the memory engine's
    rows, and the table is intact after all of them."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from psycopg import sql

    from parties.data.sources import load_table

    from .test_sql_hostile_filters import ATTACKS, EVIL_COLUMNS

    db = postgres_server.create_database()
    names = list(EVIL_COLUMNS)
    postgres_server.execute(sql.SQL("CREATE TABLE evil ({})").format(sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(
            "text" if c == "name" else "double precision")) for c in names)), dbname=db)
    postgres_server.load_rows(db, "evil", names, list(zip(*EVIL_COLUMNS.values(),
                                                            strict=True)))
    postgres_server.execute("CREATE VIEW evil_v AS SELECT * FROM evil", dbname=db)
    role = postgres_server.create_readonly_role("evil_v", dbname=db)
    path = tmp_path / "evil.parquet"
    pq.write_table(pa.table({k: pa.array(v) for k, v in EVIL_COLUMNS.items()}), path)
    memory, table = load_table(path), open_postgres(role.dsn(), "evil_v")
    try:
        for text, expected in ATTACKS:
            if expected == "parse":
                with pytest.raises(filters.FilterError):
                    filters.parse(text)
                continue
            expr = filters.parse(text)
            if expected == "unknown":
                with pytest.raises(filters.FilterError, match="unknown column"):
                    table.row_mask(expr)
                continue
            got = np.flatnonzero(table.row_mask(expr)) + 1
            assert got.tolist() == expected, text
            assert got.tolist() == (np.flatnonzero(filters.evaluate(expr, memory)) + 1).tolist()
        assert table.count(None) == 4
        np.testing.assert_array_equal(table.column("select"), [10.0, 20.0, 30.0, 40.0])
        assert postgres_server.execute("SELECT COUNT(*) FROM evil", dbname=db) == [(4,)]
    finally:
        table.close()


def test_the_database_log_shows_only_aggregates(pg_and_reference, postgres_server):
    table, _, role, mark, *_ = pg_and_reference
    spec = StatSpec("cov", ("age", "sbp"), missing="skip")
    rows = table.local_rows(["age", "sbp"], filters.parse("sex == 'F'"), "keep")
    rows.pass1(spec)
    rows.pass2(spec, np.array([50.0, 120.0]), 100.0)
    said = postgres_server.statements(user=role.name, since=mark)
    assert len(said) >= 5, said
    aggregate = re.compile(r"\b(COUNT|SUM|MIN|bit_or)\s*\(", re.I)
    for statement in said:
        s = statement.strip()
        if s.upper() in ("BEGIN", "ROLLBACK", "COMMIT") or s.upper().startswith(
                ("SET ", "SELECT SET_CONFIG")):  # transaction control, session settings
            continue
        if "information_schema.columns" in s:
            continue
        assert aggregate.search(s), f"not an aggregate query: {s[:200]}"
        # a literal of the filter never appears in the SQL text: it is a bound parameter
        assert "'F'" not in s


def test_an_inference_reads_only_its_selected_rows_from_the_database(pg_and_reference,
                                                                      postgres_server):
    """A database is asked for an inference's selected rows only, however small the table
    (whole columns are read only from an embedded engine's own file): every value query the
    log shows names its rows by bound row numbers."""
    table, _, role, *_ = pg_and_reference
    assert not table.keeps_small_columns
    table._fetched.clear()
    mark = postgres_server.log_mark()
    mask = np.zeros(table.n_rows, dtype=bool)
    mask[[3, 17, 40]] = True
    got = table.select(["age", "sbp"], rows=mask, missing="drop")
    assert got.rows.sum() <= 3
    said = [s for s in postgres_server.statements(user=role.name, since=mark)
            if '"age"' in s]
    assert said and all("smpc_row IN (" in s for s in said), said


def test_read_only_session_cannot_write(pg_and_reference):
    table, *_ = pg_and_reference
    from parties.data.sources import DataSourceError

    with pytest.raises(DataSourceError, match="refused or failed a query"):
        table.run("CREATE TEMP TABLE x (a int)", [])
    assert table.count(None) == N  # the connection still answers


def test_a_database_backed_node_answers_like_the_files(postgres_server, tmp_path):
    """A real federation: ``north`` and ``south`` read Parquet (DuckDB), ``east`` reads the
    same kind of rows from its PostgreSQL view; the joint answers equal numpy's over the
    pooled rows (counts exactly, moments within their own error bounds)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from parties.analyst.client import Client
    from parties.config import DataSourceConfig, load_party_config, save_config
    from parties.config.layout import Layout
    from parties.federation import local as federation
    from parties.privacy.exact import SAFEGUARDS_OFF
    from tests.tolerances import assert_within

    rng = np.random.default_rng(3)
    data = {}
    files = []
    for name, n in (("north", 400), ("south", 300), ("east", 350)):
        d = {"age": rng.integers(18, 91, n).astype(float),
             "sbp": rng.normal(120, 15, n), "income": 52_000.0 + rng.normal(0, 1e-4, n)}
        d["sbp"][rng.random(n) < 0.05] = np.nan
        data[name] = d
        path = tmp_path / f"{name}.parquet"
        pq.write_table(pa.table({k: pa.array(v) for k, v in d.items()}), path)
        files.append(path)
    db = postgres_server.create_database()
    postgres_server.execute("CREATE TABLE east (id bigint PRIMARY KEY, age double precision, "
                            "sbp double precision, income double precision)", dbname=db)
    e = data["east"]
    postgres_server.load_rows(db, "east", ["id", "age", "sbp", "income"], [
        (i, float(e["age"][i]), None if np.isnan(e["sbp"][i]) else float(e["sbp"][i]),
         float(e["income"][i])) for i in range(len(e["age"]))])
    postgres_server.execute("CREATE VIEW east_v AS SELECT * FROM east", dbname=db)
    role = postgres_server.create_readonly_role("east_v", dbname=db)
    directory = tmp_path / "fed"
    federation.init_federation(directory, files, allow_exact=True, min_cohort_size=5,
                               exact_safeguards=SAFEGUARDS_OFF, engine="duckdb")
    secret = tmp_path / "east-db.pass"
    secret.write_text(role.password)
    secret.chmod(0o600)
    cfg_path = Layout(directory).config("east")
    cfg = load_party_config(cfg_path)
    dsn = (f"host={postgres_server.host} port={postgres_server.port} dbname={db} "
           f"user={role.name}")
    cfg.data = DataSourceConfig(path=None, format="postgresql", engine="postgresql", dsn=dsn,
                                password_file=secret, table="east_v", key="id")
    save_config(cfg, cfg_path)
    federation.up(directory, timeout=90)
    try:
        log = (directory / "logs" / "east.log").read_text()
        assert "engine postgresql" in log and role.password not in log
        client = Client(directory, timeout=90)
        pooled = {c: np.concatenate([data[p][c] for p in ("north", "south", "east")])
                  for c in ("age", "sbp", "income")}
        r = client.compute(StatSpec("mean", ("sbp", "income"), missing="skip"), "age >= 40")
        keep = pooled["age"] >= 40
        want = [np.nanmean(pooled["sbp"][keep]), pooled["income"][keep].mean()]
        assert_within(r.value, want, r.details["error_bound"], "mean with a database party")
        r = client.compute(StatSpec("histogram", ("age",), edges=(18, 40, 65, 91)))
        assert r.value == [np.histogram(pooled["age"], bins=[18, 40, 65, 91])[0].tolist()]
        r = client.compute(StatSpec("cov", ("age", "sbp"), missing="skip"))
        ok = ~np.isnan(pooled["sbp"])
        want_cov = np.cov(np.vstack([pooled["age"][ok], pooled["sbp"][ok]]))
        assert_within(r.value, want_cov, r.details["error_bound"], "cov with a database party")
        client.close()
    finally:
        federation.down(directory)
