"""Open a party's table with the engine its config names (``data.engine``).

``memory``: :func:`parties.data.sources.load_table` reads the file into numpy arrays.
``duckdb``: :func:`parties.data.sql.duck.open_duckdb` scans it in DuckDB; a statistic's local
aggregates then run as SQL there (:class:`parties.data.sql.table.SqlTable`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from parties.data.sources import Table, load_table

if TYPE_CHECKING:
    from parties.config import DataSourceConfig
    from parties.data.sql.table import SqlTable

__all__ = ["open_table"]


def open_table(data: DataSourceConfig) -> Table | SqlTable:
    """The party's table, opened as ``data`` says (raises
    :class:`~parties.data.sources.DataSourceError` naming the file when it cannot be read)."""
    if data.engine == "duckdb":
        from parties.data.sql.duck import open_duckdb

        return open_duckdb(data.path, data.format, delimiter=data.delimiter,
                           encoding=data.encoding, decimal=data.decimal, table=data.table,
                           memory_limit=data.memory_limit, threads=data.threads)
    return load_table(data.path, data.format, delimiter=data.delimiter, encoding=data.encoding,
                      decimal=data.decimal)
