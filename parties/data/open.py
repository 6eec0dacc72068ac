"""Open a party's table with the engine its config names (``data.engine``).

``memory``: :func:`parties.data.sources.load_table` reads the file into numpy arrays.
``duckdb``: :func:`parties.data.sql.duck.open_duckdb` scans it in DuckDB; ``postgresql``:
:func:`parties.data.sql.postgres.open_postgres` reads a table or view of the party's database;
``spark``: :func:`parties.data.sql.spark.open_spark` reads a Spark catalog table or Parquet files
through Spark SQL (pyspark is imported only then: ``smpc[spark]``).  With any of these, a
statistic's local aggregates run as SQL in the engine (:class:`parties.data.sql.table.SqlTable`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from parties.data.sources import Table, load_table

if TYPE_CHECKING:
    from parties.data.sql.table import SqlTable


class DataSource(Protocol):
    """The fields of a party's ``data`` config (:class:`parties.config.DataSourceConfig`)."""

    path: Path | None
    format: str
    delimiter: str | None
    encoding: str | None
    decimal: str
    engine: str
    table: str | None
    memory_limit: str
    threads: int | None
    dsn: str | None
    password_file: Path | None
    key: str | None
    statement_timeout_ms: int
    paths: tuple[str, ...]
    master: str
    spark_conf: dict[str, str]

__all__ = ["DataSource", "open_table"]


def open_table(data: DataSource) -> Table | SqlTable:
    """The party's table, opened as ``data`` says (raises
    :class:`~parties.data.sources.DataSourceError` naming the file when it cannot be read)."""
    if data.engine == "postgresql":
        from parties.data.sql.postgres import open_postgres

        assert data.dsn is not None and data.table is not None  # the config requires them
        password = None
        if data.password_file is not None:
            password = data.password_file.read_text(encoding="utf-8").strip()
        return open_postgres(data.dsn, data.table, key=data.key, password=password,
                             statement_timeout_ms=data.statement_timeout_ms)
    if data.engine == "spark":
        from parties.data.sql.spark import open_spark

        return open_spark(table=data.table, paths=data.paths, key=data.key,
                          master=data.master, spark_conf=data.spark_conf)
    assert data.path is not None  # a file engine: the config requires it
    if data.engine == "duckdb":
        from parties.data.sql.duck import open_duckdb

        return open_duckdb(data.path, data.format, delimiter=data.delimiter,
                           encoding=data.encoding, decimal=data.decimal, table=data.table,
                           memory_limit=data.memory_limit, threads=data.threads)
    return load_table(data.path, data.format, delimiter=data.delimiter, encoding=data.encoding,
                      decimal=data.decimal)
