"""DuckDB as a party's local engine: its CSV, Parquet or DuckDB file, scanned where it lies.

:func:`open_duckdb` opens the party's file in an embedded DuckDB and builds the canonical view
(:mod:`parties.data.sql.table`):

* **Parquet**: a view over the file (``read_parquet``, the file's own row numbers): nothing is
  copied, each query scans the columns it needs.  A small file (at most
  :data:`MATERIALIZE_CELLS` cells) is instead read once at start into an in-memory table in
  canonical form, as the memory engine reads it: a fixed cost per query of a few milliseconds
  less.  Either way the node answers from the file it started with only if the file is not
  replaced while it runs (replace a party's data with the node stopped).
* **CSV**: imported once, in canonical form, into a DuckDB database in a private temporary
  directory (DuckDB's type and dialect detection over the whole file; the memory engine's
  missing markers are NULL; ``decimal`` and ``delimiter`` as configured), so that rows keep
  stable numbers.
* **DuckDB database file**: opened read-only; ``table`` names the table or view (a small one
  copied at start, as a small Parquet file).

Memory: DuckDB runs with ``memory_limit`` (default ``1GB``) and ``threads`` from the party's
config and spills to its private temporary directory beyond it; once the view is built the
configuration is locked.  Only the node's generated SQL ever runs (:mod:`parties.data.sql`).

Column kinds from DuckDB's types: integers, floats, decimals and booleans are numeric (NaN is
missing, as in the memory engine); ``DATE`` and every ``TIMESTAMP`` are dates (days since
1970-01-01 UTC; a timestamp without a zone read as UTC); ``VARCHAR`` is text (whitespace
stripped in CSV, the missing markers NULL); anything else is unsupported, named with its type.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from parties.data import filters
from parties.data.sources import FORMATS, MISSING_MARKERS, DataSourceError, infer_format
from parties.data.sql.dialect import DUCKDB
from parties.data.sql.duckcsv import prepare_csv
from parties.data.sql.rows import Statement
from parties.data.sql.table import ROW, SqlTable

__all__ = ["MATERIALIZE_CELLS", "DuckTable", "open_duckdb"]

#: A Parquet or DuckDB source of at most this many cells (rows x columns) is copied once, in
#: its canonical form, into DuckDB's memory at start (at most 32 MB of float64): each query
#: then reads plain columns instead of computing the canonical view (measured at 10^4 rows x
#: 10 columns: 2.5 ms a query instead of 6, most of it the view's per-query set-up).  Larger
#: sources are scanned in place.
MATERIALIZE_CELLS = 1 << 22

_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
            "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "BOOLEAN", "DECIMAL")


def _kind(sql_type: str) -> str:
    t = sql_type.upper()
    if t.split("(")[0] in _NUMERIC:
        return "numeric"
    if t == "DATE" or t.startswith("TIMESTAMP"):
        return "date"
    if t == "VARCHAR":
        return "text"
    return "unsupported"


class DuckTable(SqlTable):
    """A party's table in an embedded DuckDB (module docstring); use :func:`open_duckdb`."""

    sql_dialect = DUCKDB
    engine = "duckdb"
    keeps_small_columns = True  # the party's own file, embedded: as the memory engine

    def __init__(self, con: Any, workdir: Path, source: str, fmt: str,
                 materialize_cells: int = MATERIALIZE_CELLS) -> None:
        super().__init__()
        self._con, self._workdir = con, workdir
        # one DuckDB connection (its temporary views are its own): sessions' queries take
        # turns; DuckDB parallelises each query over its threads
        self._lock = threading.Lock()
        self._csv: tuple[Path, str] | None = None  # the UTF-8 file and its delimiter
        self.source, self.format = source, fmt
        self.relation = "smpc_rows"
        described = con.execute("DESCRIBE smpc_data").fetchall()
        if [str(r[0]) for r in described].count(ROW) != 1:  # the file's own column so named
            raise DataSourceError(f"{source}: a column is named {ROW!r}")
        self._set_schema([(str(r[0]), str(r[1])) for r in described if str(r[0]) != ROW],
                         _kind)
        canon = [ROW, *self._supported(lambda n: self._canonical(n, fmt))]
        select = f"SELECT {', '.join(canon)} FROM smpc_data"
        self._n_rows = int(con.execute("SELECT COUNT(*) FROM smpc_data").fetchone()[0])
        self.materialized = fmt == "csv" or self._n_rows * len(canon) <= materialize_cells
        if fmt == "csv":  # imported into the private database: kept there in canonical form
            con.execute(f"CREATE TABLE smpc_canon AS {select}")
            con.execute("DROP VIEW smpc_data")
            con.execute("DROP TABLE smpc_csv")
            con.execute("CREATE TEMP VIEW smpc_rows AS SELECT * FROM smpc_canon")
        elif self.materialized:  # small: a canonical copy in memory, the file read once
            con.execute(f"CREATE TEMP TABLE smpc_rows AS {select}")
        else:  # scanned in place, the canonical form computed by each query
            con.execute(f"CREATE TEMP VIEW smpc_rows AS {select}")
        con.execute("SET lock_configuration = true")

    def _canonical(self, name: str, fmt: str) -> str:
        x, d = DUCKDB.ident(name), DUCKDB
        kind = self.kinds[name]
        if kind == "numeric":
            return d.number_or_null(x)
        if kind == "date":
            return f"CAST(epoch_us({x}) AS DOUBLE) / 86400000000.0"
        markers = ", ".join("'" + m.replace("'", "''") + "'" for m in sorted(MISSING_MARKERS))
        value = f"trim({x})" if fmt == "csv" else x
        return f"CASE WHEN {value} IN ({markers}) THEN NULL ELSE {value} END"

    def _problem(self, name: str) -> DataSourceError | None:
        """As :meth:`SqlTable._problem`, with the CSV line of the row for the party's log
        (the memory engine's record: a quoted cell may span lines)."""
        err = super()._problem(name)
        if err is not None and err.row is not None and err.line is None and self._csv:
            err.line = self._line_of(err.row)
        return err

    def _line_of(self, row: int) -> int | None:
        """The physical line of data row ``row`` (1-based, header excluded), read again with
        the file's own dialect; only on an error's path."""
        if self._csv is None:
            return None
        path, delimiter = self._csv
        with path.open("r", encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh, delimiter=delimiter)
            seen = -1  # the header is row 0
            for record in reader:
                if record:
                    seen += 1
                    if seen == row:
                        return reader.line_num
        return None

    def _not_a_number(self, x: str) -> str:
        """With a decimal comma (CSV ``decimal = ","``) a number is written ``72,5`` and a cell
        holding a ``.`` is not one (the memory engine's rule)."""
        if self.dialect.get("decimal") == ",":
            return (f"(strpos({x}, '.') > 0 OR "
                    f"TRY_CAST(replace({x}, ',', '.') AS DOUBLE) IS NULL)")
        return super()._not_a_number(x)

    def run(self, sql: str, params: list[object]) -> list[tuple[object, ...]]:
        try:
            with self._lock:
                return [tuple(r) for r in self._con.execute(sql, params).fetchall()]
        except Exception as exc:  # duckdb.Error: the message may quote a cell
            raise DataSourceError(f"{self.source}: the local engine failed "
                                  f"({type(exc).__name__})", kind="file") from None

    def _fetch(self, names: Sequence[str]) -> dict[str, Any]:
        cols = ", ".join(DUCKDB.ident(n) for n in names)
        with self._lock:
            got = self._con.execute(f"SELECT {cols} FROM smpc_rows ORDER BY {ROW}").fetchnumpy()
        out: dict[str, Any] = {}
        for n in names:
            arr = got[n]
            if self.kinds[n] == "text":
                out[n] = [None if v is None or v is np.ma.masked else str(v)
                          for v in arr.tolist()]
            else:
                out[n] = np.asarray(np.ma.filled(np.ma.asarray(arr, dtype=np.float64), np.nan),
                                    dtype=np.float64)
        return out

    def row_mask(self, where: filters.Expr | None, not_null: Sequence[str] = ()
                 ) -> np.ndarray:
        """The selected rows as a mask, from one streaming aggregate: ``bitstring_agg`` sets bit
        ``smpc_row`` of an ``n_rows``-bit string (its state: n_rows / 8 bytes per thread), so
        what leaves the engine is one bit per row (12.5 MB for 10^8 rows), never a row number
        list.  (It replaced a ``GROUP BY`` over 32-row words: a hash table of n_rows / 32
        groups, 5x slower and about 300 MB more at 10^8 rows, benchmarks/engine.py.)  Without a
        filter or a column that must be present, every row: no query."""
        n = self._n_rows
        if where is None and not not_null:
            return np.ones(n, dtype=bool)
        st = Statement(self.sql_dialect)
        agg = (f"CAST(bitstring_agg({ROW}, 1, {self.sql_dialect.number(max(n, 1))}) "
               "AS BLOB)")
        sql, params = st.finish(f"SELECT {agg} FROM smpc_rows"
                                f"{self._where(st, where, not_null)}")
        with self._lock:
            got = self._con.execute(sql, params).fetchone()[0]
        if got is None:  # no row selected
            return np.zeros(n, dtype=bool)
        # the bits of rows 1 .. n in order, right-aligned in whole bytes (leading zero padding)
        pad = 8 * len(got) - max(n, 1)
        if not 0 <= pad < 8:
            raise DataSourceError(f"{self.source}: the local engine returned a row mask of "
                                  f"{len(got)} bytes for {n} rows", kind="file")
        bits = np.unpackbits(np.frombuffer(got, dtype=np.uint8), bitorder="big")
        return bits[pad:pad + n].view(bool)

    def close(self) -> None:
        try:
            self._con.close()
        finally:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def __del__(self) -> None:  # pragma: no cover - best effort
        shutil.rmtree(getattr(self, "_workdir", ""), ignore_errors=True)


def open_duckdb(path: str | os.PathLike[str], fmt: str | None = None, *,
                delimiter: str | None = None, encoding: str | None = None,
                decimal: str = ".", table: str | None = None, memory_limit: str = "1GB",
                threads: int | None = None,
                materialize_cells: int = MATERIALIZE_CELLS) -> DuckTable:
    """Open a party's ``csv``, ``parquet`` or ``duckdb`` file in DuckDB (module docstring).
    A Parquet or DuckDB source of at most ``materialize_cells`` cells is copied into memory
    in canonical form (0: always scanned in place).  Raises :class:`DataSourceError` naming
    the file when it cannot be read."""
    import duckdb

    p = Path(path)
    fmt = fmt or ("duckdb" if p.suffix.lower() in (".duckdb", ".db") else infer_format(p))
    if fmt not in (*FORMATS, "duckdb"):
        raise DataSourceError(f"{p}: unknown format {fmt!r} (expected csv, parquet or duckdb)")
    if not p.is_file():
        raise DataSourceError(f"{p}: data file not found")
    workdir = Path(tempfile.mkdtemp(prefix="smpc-duckdb-"))  # 0700: spills hold cells
    dialect: dict[str, str] = {}
    # statistics propagation folds NaN tests (isnan, x > 'inf') over Parquet columns to false
    # from min/max statistics that leave NaN out (DuckDB 2.0.1): a NaN would then compare
    # as a number instead of being missing, so it is off (tests/unit/test_sql_rows_duckdb.py)
    config: dict[str, Any] = {"memory_limit": memory_limit,
                              "temp_directory": str(workdir / "spill"),
                              "disabled_optimizers": "statistics_propagation"}
    if threads:
        config["threads"] = int(threads)
    try:
        if fmt == "duckdb":
            if not table:
                raise DataSourceError(f"{p}: name the table of the DuckDB file (data.table)")
            con = duckdb.connect(str(p), read_only=True, config=config)
            known = con.execute("SELECT table_type FROM information_schema.tables WHERE "
                                "table_name = ?", [table]).fetchall()
            if not known:
                raise DataSourceError(f"{p}: has no table or view {table!r}")
            _refuse_row_column(con, DUCKDB.ident(table), str(p))
            # a base table's rowid is its stable row order; a view's rows are numbered
            number = ("rowid + 1" if known[0][0] == "BASE TABLE" else "row_number() OVER ()")
            con.execute(f"CREATE TEMP VIEW smpc_data AS SELECT {number} AS {ROW}, "
                        f"* FROM {DUCKDB.ident(table)}")
        elif fmt == "parquet":
            con = duckdb.connect(":memory:", config=config)
            rel = con.read_parquet(str(p), file_row_number=True)
            rel.create_view("smpc_raw")
            _refuse_row_column(con, "smpc_raw", str(p))
            con.execute(f"CREATE TEMP VIEW smpc_data AS SELECT * EXCLUDE (file_row_number), "
                        f"file_row_number + 1 AS {ROW} FROM smpc_raw")
        else:
            con = duckdb.connect(str(workdir / "csv.duckdb"), config=config)
            dialect = _import_csv(con, p, workdir, delimiter, encoding, decimal)
        opened = DuckTable(con, workdir, str(p), fmt, materialize_cells)
        if dialect:
            opened._csv = (Path(dialect.pop("utf8_path")), dialect["delimiter"])
        opened.dialect = dialect
        return opened
    except DataSourceError:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    except Exception as exc:  # duckdb's message may quote a cell: the type only
        shutil.rmtree(workdir, ignore_errors=True)
        raise DataSourceError(f"{p}: DuckDB cannot read it as {fmt} "
                              f"({type(exc).__name__})") from None


def _refuse_row_column(con: Any, relation: str, source: str) -> None:
    """Refuse a source with its own column named ``smpc_row`` (the canonical view's row
    number), before the number is added: DuckDB would rename one of the two silently."""
    names = [str(r[0]) for r in con.execute(f"DESCRIBE {relation}").fetchall()]
    if ROW in names:
        raise DataSourceError(f"{source}: a column is named {ROW!r}")


def _import_csv(con: Any, p: Path, workdir: Path, delimiter: str | None,
                encoding: str | None, decimal: str) -> dict[str, str]:
    """Import CSV ``p`` into ``smpc_data`` (row numbers from the file's order), read by the
    memory engine's rules (:mod:`parties.data.sql.duckcsv`); returns the dialect record."""
    utf8, delim, dialect = prepare_csv(p, workdir, delimiter=delimiter, encoding=encoding,
                                       decimal=decimal)
    dialect["utf8_path"] = str(utf8)
    con.execute("CREATE TABLE smpc_csv AS SELECT * FROM read_csv(?, header = true, "
                "sample_size = -1, nullstr = ?, decimal_separator = ?, delim = ?, "
                "quote = '\"', escape = '\"', encoding = 'utf-8')",
                [str(utf8), sorted(MISSING_MARKERS), decimal, delim])
    _refuse_row_column(con, "smpc_csv", str(p))
    con.execute(f"CREATE TEMP VIEW smpc_data AS SELECT rowid + 1 AS {ROW}, * FROM smpc_csv")
    return dialect
