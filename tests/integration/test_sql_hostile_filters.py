"""A hostile ``--where`` cannot run SQL on a party's engine.

The filter language is parsed by hand before anything reaches an engine; the compiler then
writes only quoted identifiers of the table's own columns, six operator spellings and
placeholders, and binds every literal (:mod:`parties.data.sql.where`).  The attacks: quotes that
try to close a string or an identifier, comments, semicolons and stacked statements, function
calls, a UNION, column names that are themselves SQL.  Each is either refused by the parser with
its own sentence, or selects exactly the rows the memory engine selects (the literal is data);
after every attempt the table is intact (same rows, same sums) and the engine still answers.
The generated SQL never contains a literal of the filter.  Here on DuckDB (Parquet and CSV); the
same list (:data:`ATTACKS` over :data:`EVIL_COLUMNS`) runs on PostgreSQL
(``test_engine_postgres.py``) and on Spark (``test_engine_spark.py``, with names and values
of its own: backticks, ``:p0`` markers, backslashes), so no engine runs a filter's text as SQL.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parties.data import filters
from parties.data.sources import load_table
from parties.data.sql.dialect import DUCKDB, POSTGRES, SPARK
from parties.data.sql.duck import open_duckdb
from parties.data.sql.where import compile_where

EVIL_COLUMNS = {
    'x"; DROP TABLE smpc_csv; --': [1.0, 2.0, 3.0, 4.0],
    "select": [10.0, 20.0, 30.0, 40.0],
    "a' OR '1'='1": [0.5, 1.5, 2.5, 3.5],
    "name": ["alice", "bob'; DELETE FROM smpc_csv; --", "carol", None],
    "`tick`": [1.0, 1.0, 2.0, 2.0],
}

# (filter, expected outcome): "parse" = refused by the language, else rows selected (1-based)
ATTACKS = [
    ("\"x\\\"; DROP TABLE smpc_csv; --\" > 2", [3, 4]),
    ('"select" >= 20 and "select" < 40', [2, 3]),
    ("\"a' OR '1'='1\" < 1", [1]),
    ("name == 'bob\\'; DELETE FROM smpc_csv; --'", [2]),
    ("name == '' OR 1=1 --'", "parse"),
    ("name == 'x' or '1' == '1'", "parse"),          # a comparison needs a column
    ("\"select\" > 1; DROP TABLE smpc_csv", "parse"),
    ("\"select\" > 1 -- comment", "parse"),
    ("\"select\" > 1 /* c */", "parse"),
    ("abs(\"select\") > 1", "parse"),
    ("\"select\" > (SELECT 1)", "parse"),
    ("\"select\" > 1 UNION SELECT 1", "parse"),
    ("name == 'carol' or name == 'x'' OR ''1''=''1'", "parse"),
    ("\"`tick`\" == 2", [3, 4]),
    ("name != 'alice' and notnull(name)", [2, 3]),
    ("nosuchcolumn > 1", "unknown"),
    ("\"smpc_row\" > 0", "unknown"),                 # the view's row number is not a column
]


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    table = pa.table({k: pa.array(v) for k, v in EVIL_COLUMNS.items()})
    path = d / "evil.parquet"
    pq.write_table(table, path)
    csv_path = d / "evil.csv"
    import csv

    with csv_path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(list(EVIL_COLUMNS))
        for i in range(4):
            w.writerow(["" if EVIL_COLUMNS[k][i] is None else EVIL_COLUMNS[k][i]
                        for k in EVIL_COLUMNS])
    duck_pq, duck_csv = open_duckdb(path), open_duckdb(csv_path)
    yield load_table(path), [duck_pq, duck_csv]
    duck_pq.close()
    duck_csv.close()


def _intact(t) -> None:
    assert t.n_rows == 4
    assert t.count(None) == 4
    np.testing.assert_array_equal(t.column("select"), [10.0, 20.0, 30.0, 40.0])


@pytest.mark.parametrize("text,expected", ATTACKS, ids=[a[0][:30] for a in ATTACKS])
def test_attack_is_refused_or_is_data(engines, text, expected):
    memory, sql_tables = engines
    if expected == "parse":
        with pytest.raises(filters.FilterError):
            filters.parse(text)
        return
    expr = filters.parse(text)
    for t in sql_tables:
        if expected == "unknown":
            with pytest.raises(filters.FilterError, match="unknown column"):
                t.row_mask(expr)
            with pytest.raises(filters.FilterError, match="unknown column"):
                filters.evaluate(expr, memory)
        else:
            got = np.flatnonzero(t.row_mask(expr)) + 1
            assert got.tolist() == expected
            assert got.tolist() == (np.flatnonzero(filters.evaluate(expr, memory)) + 1).tolist()
        _intact(t)


@pytest.mark.parametrize("dialect", [DUCKDB, POSTGRES, SPARK], ids=lambda d: d.name)
def test_generated_sql_holds_no_literal_and_quotes_every_name(dialect):
    kinds = {k: "text" if k == "name" else "numeric" for k in EVIL_COLUMNS}
    expr = filters.parse("name == 'bob\\'; DELETE FROM smpc_csv; --' or "
                         "\"x\\\"; DROP TABLE smpc_csv; --\" > 2.5 and \"select\" < 7")
    cond = compile_where(expr, kinds, dialect)
    assert "DELETE" not in cond.sql and "bob" not in cond.sql
    assert "2.5" not in cond.sql and "7" not in cond.sql
    assert cond.params == ["bob'; DELETE FROM smpc_csv; --", 2.5, 7.0]
    q = dialect.quote
    # the hostile name is one quoted identifier: its quote characters doubled inside
    evil = 'x"; DROP TABLE smpc_csv; --'
    assert q + evil.replace(q, q + q) + q in cond.sql


def test_identifier_with_nul_is_refused():
    with pytest.raises(ValueError):
        DUCKDB.ident("a\x00b")
