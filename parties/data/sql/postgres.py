"""A party's rows in its own PostgreSQL database: the local step pushed down as SQL.

:func:`open_postgres` connects (``psycopg`` 3) with the party's connection string to a table or
view the party names, reads its columns' types from ``information_schema`` and builds the
canonical view as a derived table (:mod:`parties.data.sql.table`): nothing is created in the
database.  Every statistic's local aggregates then run there (:class:`SqlRows`), with the
filter's literals as bound parameters (server-side binding), so only aggregates leave the
database: counts, sums, centred moments, bin counts, and for the exact mode's differencing
check a bitmap of the selected rows (one bit per row, by ``bit_or`` over 32-row words).

What the database role needs (README): ``SELECT`` on the one view (or table), ``CONNECT`` on
the database, nothing else; the session also sets ``default_transaction_read_only`` and a
``statement_timeout`` (``data.statement_timeout_ms``, default 60 s), so even a role with more
rights cannot write through the node, and a query never holds the database forever.

Row numbers (the differencing bitmap, the first row of an error): the order of ``data.key`` (a
unique column, recommended), else the database's scan order, which PostgreSQL does not promise
to keep across updates or vacuums -- without a key the exact mode's differencing check compares
row sets by position and may miss a pair after the table changed.  Only :meth:`row_mask` and
error reports number rows; the aggregates never sort.

Column kinds from PostgreSQL's types: integers, ``numeric``, ``real``, ``double precision`` and
``boolean`` are numeric (``NaN`` missing); ``date`` and ``timestamp`` (with or without time zone,
the latter read as UTC) are dates; ``text``, ``varchar`` and ``char`` are text (the missing
markers NULL); anything else is unsupported, named with its type.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any

from parties.data.sources import MISSING_MARKERS, DataSourceError
from parties.data.sql.dialect import POSTGRES
from parties.data.sql.table import ROW, SqlTable

__all__ = ["PostgresTable", "open_postgres"]

_NUMERIC = ("smallint", "integer", "bigint", "numeric", "real", "double precision", "boolean")
_DATES = ("date", "timestamp without time zone", "timestamp with time zone")
_TEXT = ("text", "character varying", "character")


def _kind(data_type: str) -> str:
    if data_type in _NUMERIC:
        return "numeric"
    if data_type in _DATES:
        return "date"
    if data_type in _TEXT:
        return "text"
    return "unsupported"


def _split_name(table: str) -> tuple[str | None, str]:
    """``schema.table`` or ``table`` (no quoting: names are looked up as written)."""
    if table.count(".") == 1:
        schema, name = table.split(".")
        return schema, name
    return None, table


class PostgresTable(SqlTable):
    """A table or view in PostgreSQL (module docstring); use :func:`open_postgres`."""

    sql_dialect = POSTGRES
    engine = "postgresql"

    def __init__(self, conn: Any, table: str, key: str | None) -> None:
        super().__init__()
        self._conn = conn
        self._lock = threading.Lock()
        schema, name = _split_name(table)
        self.source, self.format = f"postgresql table {table}", "postgresql"
        got = self._query(
            "SELECT column_name, data_type, table_schema FROM information_schema.columns "
            "WHERE table_name = %s AND (%s::text IS NULL OR table_schema = %s) "
            "ORDER BY table_schema, ordinal_position", [name, schema, schema])
        if not got:
            raise DataSourceError(f"{self.source}: no such table or view, or no column the "
                                  "role may read")
        schemas = {str(r[2]) for r in got}
        if len(schemas) > 1:
            raise DataSourceError(f"{self.source}: found in several schemas "
                                  f"({', '.join(sorted(schemas))}); name it as schema.table")
        only = schemas.pop()
        types = {str(r[0]): str(r[1]) for r in got}
        self._set_schema([(str(r[0]), str(r[1])) for r in got], _kind, key)
        base = f"{POSTGRES.ident(only)}.{POSTGRES.ident(name)}"
        canon = self._supported(lambda n: self._canonical(n, types[n]))
        cols = ", ".join(canon) or "1 AS smpc_none"
        self.relation = f"(SELECT {cols} FROM {base}) AS smpc_rows"
        order = f"ORDER BY {POSTGRES.ident(key)}" if key else ""
        self.numbered = (f"(SELECT row_number() OVER ({order}) AS {ROW}, {cols} FROM {base}) "
                         "AS smpc_rows")
        self._n_rows = int(self._query(f"SELECT COUNT(*) FROM {base}", [])[0][0])  # type: ignore[call-overload]

    @staticmethod
    def _canonical(name: str, data_type: str) -> str:
        x, d = POSTGRES.ident(name), POSTGRES
        kind = _kind(data_type)
        if kind == "numeric":
            if data_type == "boolean":
                x = f"CAST({x} AS INTEGER)"
            return d.number_or_null(x)
        if kind == "date":
            if data_type == "date":
                return f"CAST({x} - DATE '1970-01-01' AS DOUBLE PRECISION)"
            return f"CAST(EXTRACT(EPOCH FROM {x}) AS DOUBLE PRECISION) / 86400.0"
        markers = ", ".join("'" + m.replace("'", "''") + "'" for m in sorted(MISSING_MARKERS))
        value = f"CAST({x} AS TEXT)"
        return f"CASE WHEN {value} IN ({markers}) THEN NULL ELSE {value} END"

    def _query(self, sql: str, params: Sequence[object]) -> list[tuple[object, ...]]:
        with self._lock:
            with self._conn.cursor() as cur:
                cur.execute(sql, list(params))
                rows = cur.fetchall()
            self._conn.rollback()  # read-only: end the transaction, hold no snapshot
        return [tuple(r) for r in rows]

    def run(self, sql: str, params: list[object]) -> list[tuple[object, ...]]:
        try:
            return self._query(sql, params)
        except Exception as exc:  # psycopg.Error: its message may quote a value
            # a connection that is gone fails again on the next call, which says so
            with self._lock, contextlib.suppress(Exception):
                self._conn.rollback()
            raise DataSourceError(f"{self.source}: the database refused or failed a query "
                                  f"({type(exc).__name__})", kind="file") from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def open_postgres(conninfo: str, table: str, *, key: str | None = None,
                  statement_timeout_ms: int = 60_000, password: str | None = None
                  ) -> PostgresTable:
    """Connect to PostgreSQL and open ``table`` (module docstring).  ``conninfo`` is a libpq
    connection string or URI; ``password`` (from the party's password file) is passed
    separately so that it is never part of a string the node logs."""
    import psycopg

    kwargs: dict[str, Any] = {"autocommit": False, "connect_timeout": 10,
                              "application_name": "smpc-party"}
    if password is not None:
        kwargs["password"] = password
    try:
        conn = psycopg.connect(conninfo, **kwargs)
    except Exception as exc:  # the message may hold the host and user: the type only
        raise DataSourceError(f"postgresql table {table}: cannot connect "
                              f"({type(exc).__name__})") from None
    try:
        with conn.cursor() as cur:
            cur.execute("SET default_transaction_read_only = on")
            cur.execute("SELECT set_config('statement_timeout', %s, false)",
                        [str(int(statement_timeout_ms))])
        conn.commit()
        return PostgresTable(conn, table, key)
    except DataSourceError:
        conn.close()
        raise
    except Exception as exc:
        conn.close()
        raise DataSourceError(f"postgresql table {table}: cannot be read "
                              f"({type(exc).__name__})") from None
