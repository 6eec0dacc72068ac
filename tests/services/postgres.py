"""A throw-away PostgreSQL 16 cluster for the tests, run from the ``pgserver`` wheel's binaries.

Only the binaries that the wheel bundles (``initdb``, ``postgres``) are used, by absolute path:
never a system PostgreSQL, never ``pgserver``'s own server manager (which listens on a Unix
socket only, trusts every local connection and keeps no statement log).

:func:`start` makes one cluster:

* ``initdb`` into a fresh temporary directory (``--no-sync``, locale C, UTF-8), with a
  superuser ``postgres`` whose random password is on :attr:`PostgresServer.password`;
  every connection authenticates with SCRAM-SHA-256 (``pg_hba.conf`` has nothing else),
  and PUBLIC's CONNECT on ``postgres``, ``template1`` and every database that
  :meth:`PostgresServer.create_database` makes is revoked: a role gets into the databases it
  is granted, no other;
* ``postgres`` listening on 127.0.0.1 at a free port *and* on a Unix socket in the
  temporary directory (nowhere else);
* every statement logged (``log_statement = 'all'``, and connections) to one plain-text file,
  :attr:`PostgresServer.log_path`, each line prefixed with the time, the backend's pid, and
  ``user@database``: :meth:`PostgresServer.statements` reads the SQL a given role issued;
* durability off (``fsync``, ``synchronous_commit``, ``full_page_writes``): a test cluster.

:meth:`PostgresServer.stop` stops the server (fast shutdown, then harder) and removes the
directory; it is also registered with :mod:`atexit`.

Running as root
---------------
``initdb`` and ``postgres`` refuse to run as root.  When the tests run as root (CI does),
the server runs as an unprivileged system account, ``smpc-pgtest`` (override with the
environment variable ``SMPC_TEST_PG_OS_USER``): created on first use with ``useradd --system``
(no home, no login shell, its own group; creation is serialized between pytest-xdist workers
by a lock file) and reused afterwards -- it stays on the machine, as a system account does.
Where ``useradd`` is missing or fails (a read-only ``/etc``), the fixture falls back to
``nobody``.  The binaries are run with ``subprocess``'s ``user=`` / ``group=`` /
``extra_groups=[]`` (setuid/setgid before exec): no ``su``/``runuser``/``setpriv`` needed.
Only the cluster's own directories are given to that account (``chown``); nothing else on
the machine changes mode.  If the account cannot reach the wheel's binaries where pip put
them (a virtual environment under a 0700 home directory), they are copied (hard-linked where
possible) into the cluster's temporary directory, keeping the layout that their relative
library paths need (``pgserver/pginstall`` beside ``pgserver.libs``).

Not as root, everything runs as the current user and nothing of the above happens.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib.util
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

SUPERUSER = "postgres"
"""The cluster's superuser (a database role, not an operating-system account)."""

DEFAULT_OS_USER = "smpc-pgtest"
"""The unprivileged system account the server runs as when the tests run as root."""

HOST = "127.0.0.1"

START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0

_LOG_LINE = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \S+) \[(?P<pid>\d+)\] "
    r"(?P<user>[^@\s]*)@(?P<database>\S*) (?P<level>[A-Z0-9]+):  (?P<message>.*)$")
_STATEMENT = re.compile(r"^(?:statement|execute [^:]*): (?P<sql>.*)$", re.S)


# ----------------------------------------------------------------------------- binaries


def install_dir() -> Path:
    """The wheel's ``pgserver/pginstall`` (``bin``, ``lib``, ``share``), found without importing
    ``pgserver`` (whose import sets up its own server manager)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the pgserver package is not installed (pip install -e '.[test]')")
    root = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
    if not (root / "bin" / "postgres").is_file():
        raise RuntimeError(f"pgserver has no bundled postgres binary under {root}")
    return root


@dataclass(frozen=True)
class _Account:
    """Whom the server runs as: ``None`` fields mean the current user (not root)."""

    name: str
    uid: int | None = None
    gid: int | None = None

    def popen_kwargs(self) -> dict[str, Any]:
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def _server_account() -> _Account:
    if os.geteuid() != 0:
        return _Account(pwd.getpwuid(os.geteuid()).pw_name)
    name = os.environ.get("SMPC_TEST_PG_OS_USER", DEFAULT_OS_USER)
    entry = _lookup(name) or _create_system_account(name) or _lookup("nobody")
    if entry is None:
        raise RuntimeError(f"running as root, and neither the account {name!r} could be "
                           "created nor 'nobody' found to run PostgreSQL as")
    return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _lookup(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _create_system_account(name: str) -> pwd.struct_passwd | None:
    """``useradd --system`` under a lock file (pytest-xdist workers start together); ``None``
    when that is impossible here."""
    useradd = shutil.which("useradd") or next(
        (p for p in ("/usr/sbin/useradd", "/sbin/useradd") if os.path.exists(p)), None)
    if useradd is None:
        return None
    shell = "/usr/sbin/nologin" if os.path.exists("/usr/sbin/nologin") else "/bin/false"
    lock = Path(tempfile.gettempdir()) / "smpc-pgtest-useradd.lock"
    with lock.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            entry = _lookup(name)
            if entry is not None:
                return entry
            subprocess.run([useradd, "--system", "--user-group", "--no-create-home",
                            "--home-dir", "/nonexistent", "--shell", shell,
                            "--comment", "smpc test PostgreSQL server", name],
                           capture_output=True, text=True, timeout=60, check=False)
            return _lookup(name)
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _runs_as(account: _Account, argv: Sequence[str | Path]) -> bool:
    try:
        done = subprocess.run([str(a) for a in argv], capture_output=True, timeout=30,
                              env=_server_env(), check=False, **account.popen_kwargs())
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _usable_binaries(account: _Account, base: Path, stage: bool | None) -> Path:
    """The ``pginstall`` directory the account can run: the wheel's own, or a copy in ``base``
    (``stage``: None = only if needed, True = always)."""
    pginstall = install_dir()
    probe = ("initdb", "postgres")  # initdb loads the wheel's libpq from ../../pgserver.libs
    if not stage and all(_runs_as(account, [pginstall / "bin" / exe, "--version"])
                         for exe in probe):
        return pginstall
    staged = base / "pg"
    libs = pginstall.parent.parent / "pgserver.libs"
    _copy_tree(pginstall, staged / "pgserver" / "pginstall")
    if libs.is_dir():
        _copy_tree(libs, staged / "pgserver.libs")
    staged_install = staged / "pgserver" / "pginstall"
    for exe in probe:
        if not _runs_as(account, [staged_install / "bin" / exe, "--version"]):
            raise RuntimeError(f"the account {account.name!r} cannot run {exe} even from a copy "
                               f"in {staged_install}")
    return staged_install


def _copy_tree(src: Path, dst: Path) -> None:
    def link_or_copy(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, symlinks=True, copy_function=link_or_copy)
    for path in (dst, *dst.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)


def _server_env() -> dict[str, str]:
    """A clean environment: no PG* variable of the caller's reaches initdb or postgres."""
    return {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "LANG": "C", "TZ": "UTC"}


def _world_traversable(path: Path) -> bool:
    return all(p.stat().st_mode & 0o001 for p in (path, *path.parents))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------------------- the log


@dataclass(frozen=True)
class LogEntry:
    """One entry of the server log (a first line with the prefix, and its continuation lines)."""

    time: str
    pid: int
    user: str
    database: str
    level: str  # LOG, ERROR, DETAIL, STATEMENT, FATAL, ...
    message: str

    @property
    def sql(self) -> str | None:
        """The SQL text if this entry logs a statement (simple or extended protocol)."""
        if self.level != "LOG":
            return None
        m = _STATEMENT.match(self.message)
        return m.group("sql") if m else None


def parse_log(text: str) -> list[LogEntry]:
    entries: list[LogEntry] = []
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        m = _LOG_LINE.match(line)
        if m:
            if current is not None:
                entries.append(LogEntry(**current))
            current = m.groupdict()
            current["pid"] = int(current["pid"])
        elif current is not None:  # a multi-line message goes on, each line after a tab
            current["message"] += "\n" + line.removeprefix("\t")
    if current is not None:
        entries.append(LogEntry(**current))
    return entries


# ----------------------------------------------------------------------------- the server


@dataclass(frozen=True)
class ReadOnlyRole:
    """A login role that may SELECT one view of one database and do nothing else."""

    server: PostgresServer = field(repr=False)
    name: str
    password: str = field(repr=False)
    dbname: str
    view: str

    def dsn(self, *, unix_socket: bool = False) -> str:
        return self.server.dsn(self.dbname, user=self.name, password=self.password,
                               unix_socket=unix_socket)

    def url(self) -> str:
        return self.server.url(self.dbname, user=self.name, password=self.password)

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        return self.server.connect(self.dbname, user=self.name, password=self.password,
                                   **kwargs)


@dataclass
class PostgresServer:
    """A running throw-away cluster; see the module docstring.  Make one with :func:`start`."""

    base: Path
    bin_dir: Path
    data_dir: Path
    socket_dir: Path
    log_path: Path
    port: int
    password: str = field(repr=False)
    os_user: str
    process: subprocess.Popen[bytes] = field(repr=False)
    startup_seconds: float
    host: str = HOST
    superuser: str = SUPERUSER
    _log_file: Any = field(default=None, repr=False)

    # ------------------------------------------------------------------ connections

    def dsn(self, dbname: str = "postgres", *, user: str | None = None,
            password: str | None = None, unix_socket: bool = False) -> str:
        """A libpq connection string (``host=... port=... dbname=... user=... password=...``),
        over TCP to 127.0.0.1 or, with ``unix_socket=True``, over the socket directory.
        Defaults to the superuser."""
        if user is None:
            user, password = self.superuser, self.password
        host = str(self.socket_dir) if unix_socket else self.host
        return make_conninfo(host=host, port=self.port, dbname=dbname, user=user,
                             password=password or "", connect_timeout=10)

    def url(self, dbname: str = "postgres", *, user: str | None = None,
            password: str | None = None) -> str:
        """The same as a ``postgresql://`` URL (TCP only)."""
        from urllib.parse import quote

        if user is None:
            user, password = self.superuser, self.password
        return (f"postgresql://{quote(user, safe='')}:{quote(password or '', safe='')}"
                f"@{self.host}:{self.port}/{quote(dbname, safe='')}")

    def connect(self, dbname: str = "postgres", *, user: str | None = None,
                password: str | None = None, autocommit: bool = True,
                unix_socket: bool = False, **kwargs: Any) -> psycopg.Connection[Any]:
        """A psycopg connection (autocommit by default); the superuser unless ``user``."""
        return psycopg.connect(self.dsn(dbname, user=user, password=password,
                                        unix_socket=unix_socket),
                               autocommit=autocommit, **kwargs)

    def execute(self, query: str | sql.Composable, params: Sequence[Any] | None = None, *,
                dbname: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement as the superuser; its rows (``[]`` when it returns none)."""
        with self.connect(dbname) as conn, conn.cursor() as cur:
            cur.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description is not None else []

    # ------------------------------------------------------------------ setup helpers

    def create_database(self, name: str | None = None) -> str:
        """A new empty database (owned by the superuser); its name.  PUBLIC's default CONNECT
        and TEMPORARY on it are revoked: only roles granted CONNECT (and the superuser) get in.
        """
        name = name or f"db_{secrets.token_hex(4)}"
        self.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC")
                     .format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        self.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                     .format(sql.Identifier(name)))

    def load_rows(self, dbname: str, table: str, columns: Sequence[str],
                  rows: Iterator[Sequence[Any]] | Sequence[Sequence[Any]]) -> int:
        """COPY rows into an existing table as the superuser; the number of rows."""
        n = 0
        stmt = sql.SQL("COPY {} ({}) FROM STDIN").format(
            _qualified(table), sql.SQL(", ").join(sql.Identifier(c) for c in columns))
        with self.connect(dbname) as conn, conn.cursor() as cur, cur.copy(stmt) as copy:
            for row in rows:
                copy.write_row(row)
                n += 1
        return n

    def create_readonly_role(self, view: str, *, dbname: str, name: str | None = None,
                             password: str | None = None,
                             statement_timeout: str | None = None) -> ReadOnlyRole:
        """A login role that may read ``view`` (``"name"`` or ``"schema.name"``) of ``dbname``
        and nothing else.

        * ``LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT``;
        * CONNECT on ``dbname`` only: the database's default grants to PUBLIC (CONNECT,
          TEMPORARY) are revoked, so it can make no temporary table either;
        * CREATE on schema ``public`` revoked from PUBLIC (PostgreSQL 15's default, stated);
        * USAGE on the view's schema and SELECT on the view: a view runs with its owner's
          rights (not ``security_invoker``), so the base table stays unreadable to the role;
        * ``default_transaction_read_only = on`` for its sessions in ``dbname``;
        * ``statement_timeout`` (e.g. ``"500ms"``) set on the role when given.

        The statements that carry the password are not logged (``SET LOCAL log_statement``).
        """
        name = name or f"ro_{secrets.token_hex(4)}"
        password = password or secrets.token_urlsafe(18)
        role, db = sql.Identifier(name), sql.Identifier(dbname)
        schema = view.split(".", 1)[0] if "." in view else "public"
        with self.connect(dbname, autocommit=False) as conn:
            conn.execute("SET LOCAL log_statement = 'none'")
            conn.execute(sql.SQL(
                "CREATE ROLE {} LOGIN PASSWORD {} NOSUPERUSER NOCREATEDB NOCREATEROLE "
                "NOREPLICATION NOBYPASSRLS NOINHERIT").format(role, sql.Literal(password)))
            conn.commit()
            for stmt in (
                sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db),
                sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, role),
                sql.SQL("REVOKE CREATE ON SCHEMA public FROM PUBLIC"),
                sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), role),
                sql.SQL("GRANT SELECT ON {} TO {}").format(_qualified(view), role),
                sql.SQL("ALTER ROLE {} IN DATABASE {} SET default_transaction_read_only = on")
                .format(role, db),
            ):
                conn.execute(stmt)
            if statement_timeout is not None:
                conn.execute(sql.SQL("ALTER ROLE {} SET statement_timeout = {}")
                             .format(role, sql.Literal(statement_timeout)))
            conn.commit()
        return ReadOnlyRole(self, name, password, dbname, view)

    # ------------------------------------------------------------------ the statement log

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_mark(self) -> int:
        """The log's current size: pass it as ``since`` to read only what comes after."""
        return self.log_path.stat().st_size

    def log_entries(self, *, since: int = 0) -> list[LogEntry]:
        with self.log_path.open("rb") as fh:
            fh.seek(since)
            return parse_log(fh.read().decode("utf-8", errors="replace"))

    def statements(self, *, user: str | None = None, dbname: str | None = None,
                   since: int = 0) -> list[str]:
        """The SQL text of every statement logged (optionally of one role / database) since a
        :meth:`log_mark`.  Statements sent with bound parameters appear with ``$1``... (their
        values are in the following ``DETAIL`` entry)."""
        return [e.sql for e in self.log_entries(since=since)
                if e.sql is not None and (user is None or e.user == user)
                and (dbname is None or e.database == dbname)]

    # ------------------------------------------------------------------ lifetime

    def stop(self) -> None:
        """Stop the server (fast shutdown; then immediate; then kill) and remove its directory.
        Idempotent."""
        proc = self.process
        if proc.poll() is None:
            for sig, wait in ((signal.SIGINT, STOP_TIMEOUT), (signal.SIGQUIT, 5.0),
                              (signal.SIGKILL, 5.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, sig)
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        shutil.rmtree(self.base, ignore_errors=True)
        atexit.unregister(self.stop)


def _qualified(name: str) -> sql.Identifier:
    return sql.Identifier(*name.split(".", 1))


_CONF = """
# --- tests/services/postgres.py ---
listen_addresses = '{host}'
unix_socket_directories = '{socket_dir}'
unix_socket_permissions = 0777
max_connections = 50
shared_buffers = 32MB
dynamic_shared_memory_type = mmap
max_parallel_workers_per_gather = 0
fsync = off
synchronous_commit = off
full_page_writes = off
password_encryption = 'scram-sha-256'
timezone = 'UTC'
log_timezone = 'UTC'
logging_collector = off
log_destination = 'stderr'
log_line_prefix = '%m [%p] %u@%d '
log_statement = 'all'
log_connections = on
log_min_error_statement = error
"""

_HBA = """\
# tests/services/postgres.py: password (SCRAM) for everyone, on the socket and on 127.0.0.1 only
local  all  all                 scram-sha-256
host   all  all  127.0.0.1/32   scram-sha-256
"""


def start(*, base_parent: Path | None = None, name: str = "smpc-pg",
          stage_binaries: bool | None = None) -> PostgresServer:
    """initdb and start a cluster in a new temporary directory; see the module docstring.

    ``stage_binaries=True`` runs the server from a copy of the wheel's binaries in that
    directory even when the originals are reachable (tests the fallback)."""
    t0 = time.perf_counter()
    account = _server_account()
    parent = Path(base_parent or tempfile.gettempdir()).resolve()
    if account.uid is not None and not _world_traversable(parent):
        parent = Path("/tmp")  # the server account must reach its directory
    base = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=parent))
    try:
        return _start_in(base, account, t0, stage_binaries)
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise


def _start_in(base: Path, account: _Account, t0: float, stage: bool | None) -> PostgresServer:
    base.chmod(0o755)
    pginstall = _usable_binaries(account, base, stage)
    bin_dir = pginstall / "bin"
    data_dir, socket_dir = base / "data", base / "socket"
    socket_dir.mkdir(mode=0o755)
    data_dir.mkdir(mode=0o700)
    password = secrets.token_urlsafe(24)
    pwfile = base / "pwfile"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    if account.uid is not None:
        for path in (data_dir, socket_dir, pwfile):
            os.chown(path, account.uid, account.gid if account.gid is not None else -1)
    kw = account.popen_kwargs()
    done = subprocess.run(
        [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", SUPERUSER, f"--pwfile={pwfile}",
         "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync",
         "--no-instructions"],
        cwd=base, env=_server_env(), capture_output=True, text=True, timeout=120, check=False,
        **kw)
    pwfile.unlink()
    if done.returncode != 0:
        raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    with (data_dir / "postgresql.conf").open("a") as fh:
        fh.write(_CONF.format(host=HOST, socket_dir=socket_dir))
    (data_dir / "pg_hba.conf").write_text(_HBA)

    log_path = base / "postgresql.log"
    last_error = ""
    for _ in range(5):  # a free port can be taken between the probe and the bind: retry
        port = _free_port()
        log_file = log_path.open("ab", buffering=0)
        proc = subprocess.Popen(
            [str(bin_dir / "postgres"), "-D", str(data_dir), "-p", str(port)],
            cwd=base, env=_server_env(), stdin=subprocess.DEVNULL, stdout=log_file,
            stderr=subprocess.STDOUT, start_new_session=True, **kw)
        try:
            ready = _wait_ready(proc, data_dir, log_path)
        except BaseException:
            log_file.close()
            raise
        if ready:
            server = PostgresServer(
                base=base, bin_dir=bin_dir, data_dir=data_dir, socket_dir=socket_dir,
                log_path=log_path, port=port, password=password, os_user=account.name,
                process=proc, startup_seconds=0.0, _log_file=log_file)
            atexit.register(server.stop)
            try:
                # over TCP with the password, so really up; and no role but the superuser may
                # connect to the maintenance databases (a read-only role gets its own one)
                for db in ("postgres", "template1"):
                    server.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC")
                                   .format(sql.Identifier(db)))
            except BaseException:
                server.stop()
                raise
            server.startup_seconds = time.perf_counter() - t0
            return server
        log_file.close()
        last_error = log_path.read_text(errors="replace")[-4000:]
        if "could not bind" not in last_error and "already in use" not in last_error:
            break
    raise RuntimeError(f"postgres did not start; its log ends with:\n{last_error}")


def _wait_ready(proc: subprocess.Popen[bytes], data_dir: Path, log_path: Path) -> bool:
    """Until ``postmaster.pid`` says ``ready`` (True) or the process ends (False)."""
    deadline = time.monotonic() + START_TIMEOUT
    pidfile = data_dir / "postmaster.pid"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with contextlib.suppress(OSError):
            lines = pidfile.read_text().splitlines()
            if len(lines) >= 8 and lines[7].strip() == "ready":
                return True
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"postgres not ready after {START_TIMEOUT} s; log:\n"
                       f"{log_path.read_text(errors='replace')[-4000:]}")
