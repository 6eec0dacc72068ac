"""The party's SQLite file (ledger and audit log): private creation, durable transactions.

One file, mode 0600, WAL journal, ``synchronous=FULL``; every write is a ``BEGIN IMMEDIATE``
transaction (:func:`write_transaction`) so that concurrent writers -- threads of the node,
or an operator's command -- serialise, and a reader sees a consistent snapshot
(:func:`read_transaction`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

BUSY_TIMEOUT_SECONDS = 30.0


def utc_now() -> str:
    """The current time in UTC, ISO 8601 with microseconds and ``+00:00``."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def _create_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist (SQLite then gives its -wal and
    -shm files the same mode)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def open_database(path: Path, what: str, error: type[Exception]) -> sqlite3.Connection:
    """A connection to the SQLite file ``path`` in autocommit mode (transactions are explicit),
    WAL journal, ``synchronous=FULL``, a 30 s busy timeout. Creates the file 0600 if needed."""
    if not path.parent.is_dir():
        raise error(
            f"cannot open {what} {str(path)!r}: directory {str(path.parent)!r} does not exist."
        )
    _create_private_file(path)
    try:
        con = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        con.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
        con.execute("PRAGMA synchronous = FULL")
        if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                con.close()
                raise error(f"cannot put {what} {str(path)!r} in WAL mode (got {mode!r}).")
    except sqlite3.DatabaseError as exc:
        raise error(f"cannot open {what} {str(path)!r}: {exc}.") from None
    return con


@contextlib.contextmanager
def write_transaction(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction holding SQLite's writer lock from its first statement
    (``BEGIN IMMEDIATE``): committed on success, rolled back on any error; closes ``con``."""
    try:
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
    finally:
        con.close()


@contextlib.contextmanager
def read_transaction(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One read transaction (a consistent snapshot); closes ``con``."""
    try:
        con.execute("BEGIN")
        try:
            yield con
        finally:
            con.execute("ROLLBACK")
    finally:
        con.close()
