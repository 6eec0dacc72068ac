"""The party's SQLite file (ledger and audit log): private creation, durable transactions.

One file, mode 0600, WAL journal, ``synchronous=FULL``; every write is a ``BEGIN IMMEDIATE``
transaction (:func:`write_transaction`) so that concurrent writers -- threads of the node,
or an operator's command -- serialise, and a reader sees a consistent snapshot
(:func:`read_transaction`).

:class:`Database` keeps **one connection open** per store (opening a connection, checking the
journal mode and the first write cost 2-54 ms under load against ~0.5 ms for a transaction on
a kept-open connection); it is shared by the node's threads under a lock, and closed by
:meth:`Database.close` at shutdown.  Its :meth:`Database.later` queues a write for a background
writer thread that applies the queued writes **in submission order, batched in one
transaction** (each write in its own savepoint, so one failing write rolls back alone), and
:meth:`Database.settle` blocks until given writes are durable.

Ordering (what makes the queue safe): every synchronous :meth:`Database.write` or
:meth:`Database.read` made from outside the writer first waits until every write queued before
it is committed.  So within one process the database sees the writes in program order, and a
read always sees the caller's own queued writes.

Crash semantics of a queued write: it is durable (WAL, ``synchronous=FULL``) once
:meth:`Database.settle` returned for it, or once any later synchronous read or write through the
same :class:`Database` returned.  A process killed before that loses a *suffix* of the queue --
never one write out of the middle (the writer commits batches in submission order), and never a
synchronous write (those are durable when they return).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

log = logging.getLogger("smpc.store")

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


def open_database(path: Path, what: str, error: type[Exception], *,
                  shared: bool = False) -> sqlite3.Connection:
    """A connection to the SQLite file ``path`` in autocommit mode (transactions are explicit),
    WAL journal, ``synchronous=FULL``, a 30 s busy timeout. Creates the file 0600 if needed.
    ``shared``: usable from any thread (the caller serialises its use: :class:`Database`)."""
    if not path.parent.is_dir():
        raise error(
            f"cannot open {what} {str(path)!r}: directory {str(path.parent)!r} does not exist."
        )
    _create_private_file(path)
    try:
        con = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None,
                              check_same_thread=not shared)
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


def _undo(con: sqlite3.Connection, nested: bool) -> None:
    """Roll back the innermost transaction or savepoint (quietly if SQLite already did)."""
    with contextlib.suppress(sqlite3.Error):
        if nested:
            con.execute("ROLLBACK TO nested")
            con.execute("RELEASE nested")
        else:
            con.execute("ROLLBACK")


class Database:
    """One kept-open connection to the SQLite file ``path``, shared by threads under a lock,
    with a write-behind queue (see the module docstring for the ordering and crash semantics).

    :meth:`write` / :meth:`read` are transactions like :func:`write_transaction` /
    :func:`read_transaction`, but on the kept-open connection; nested in a transaction of the
    same thread they run inside it (a write as a savepoint).  ``what`` and ``error`` name the
    store in error messages.  Safe from many threads; other processes may use the same file
    (SQLite's locks serialise them, as before).
    """

    def __init__(self, path: Path, what: str, error: type[Exception]) -> None:
        self.path = path
        self.what = what
        self.error = error
        self._con: sqlite3.Connection | None = open_database(path, what, error, shared=True)
        self._lock = threading.RLock()
        self._depth = 0                     # transactions of the lock's holder (nesting)
        self._writer: threading.Thread | None = None
        self._cond = threading.Condition()
        self._queue: list[tuple[int, Callable[[], object]]] = []
        self._issued = 0                    # last ticket handed out
        self._done = 0                      # every ticket <= _done is processed
        self._failed: dict[int, BaseException] = {}
        self._closing = False

    # --------------------------------------------------------------- transactions

    def _connection(self) -> sqlite3.Connection:
        if self._con is None:
            raise self.error(f"the {self.what} is closed.")  # no host path: it may leave the node
        return self._con

    def _in_writer(self) -> bool:
        return threading.current_thread() is self._writer

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``), committed on success, rolled back on any
        error; after every write queued before it.  Nested: a savepoint of the outer one."""
        if not self._in_writer() and not self._holding():
            self.flush()
        with self._lock:
            con = self._connection()
            nested = self._depth > 0
            con.execute("SAVEPOINT nested" if nested else "BEGIN IMMEDIATE")
            self._depth += 1
            done = False
            try:
                yield con
                done = True
            finally:
                self._depth -= 1
                if done:
                    try:
                        con.execute("RELEASE nested" if nested else "COMMIT")
                    except BaseException:
                        _undo(con, nested)
                        raise
                else:
                    _undo(con, nested)

    @contextlib.contextmanager
    def read(self, *, after_queue: bool = True) -> Iterator[sqlite3.Connection]:
        """One read transaction (a consistent snapshot), after every write queued before it
        (``after_queue=False``: of what is committed now, without waiting for the queue --
        for a caller that tracks its own queued writes); nested in a transaction: inside
        it."""
        if after_queue and not self._in_writer() and not self._holding():
            self.flush()
        with self._lock:
            con = self._connection()
            if self._depth > 0:
                yield con
                return
            con.execute("BEGIN")
            self._depth += 1
            try:
                yield con
            finally:
                self._depth -= 1
                con.execute("ROLLBACK")

    def _holding(self) -> bool:
        """Whether this thread is inside one of this database's transactions."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            return self._depth > 0
        finally:
            self._lock.release()

    # --------------------------------------------------------------- write-behind

    def later(self, write: Callable[[], object]) -> int:
        """Queue ``write`` (a call that writes through this database, e.g. ``lambda:
        ledger.commit(sid)``) for the writer thread; returns its ticket for :meth:`settle`.
        Not durable until settled (module docstring)."""
        with self._cond:
            closing = self._closing
            if not closing and self._writer is None:
                self._writer = threading.Thread(target=self._drain, daemon=True,
                                                name=f"writer-{self.path.name}")
                self._writer.start()
            if not closing:
                self._issued += 1
                self._queue.append((self._issued, write))
                self._cond.notify_all()
                return self._issued
        self._write_after_close(write)
        return 0  # already durable: settle() has nothing to wait for

    def _write_after_close(self, write: Callable[[], object]) -> None:
        """A write that arrives once :meth:`close` began (a role that ends after its node
        stopped records how it ended): run now, synchronously, after the queue -- on the
        kept-open connection if it is still open, else on a connection of its own, closed
        at once (how every write was made before the queue).  Durable when this returns."""
        self.flush()  # outside the lock: the writer may still need it to drain the queue
        with self._lock:
            if self._con is not None:
                write()
                return
            self._con = open_database(self.path, self.what, self.error, shared=True)
            try:
                write()
            finally:
                self._con.close()
                self._con = None

    def settle(self, tickets: Collection[int], timeout: float | None = None) -> None:
        """Block until the writes ``tickets`` (and every write queued before them) are
        committed; raise ``error`` naming the first of them that failed (its change was rolled
        back; the others stand)."""
        last = max(tickets, default=0)
        with self._cond:
            if not self._cond.wait_for(lambda: self._done >= last, timeout):
                raise self.error(f"the {self.what}: queued writes not committed "
                                 f"within {timeout} s.")
            failed = [self._failed[t] for t in sorted(tickets) if t in self._failed]
        if failed:
            raise self.error(f"a queued write to the {self.what} failed: "
                             f"{failed[0]}")

    def flush(self) -> None:
        """Block until every write queued so far is processed (committed, or failed and
        recorded for :meth:`settle`)."""
        with self._cond:
            last = self._issued
            self._cond.wait_for(lambda: self._done >= last)

    def _drain(self) -> None:
        """The writer thread: applies the queue in order, as many writes per transaction as
        are waiting (each in its own savepoint)."""
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue) or self._closing)
                if not self._queue:
                    return
                batch, self._queue = self._queue, []
            failed: dict[int, BaseException] = {}
            try:
                with self.write():
                    for ticket, write in batch:
                        try:
                            with self.write():  # a savepoint: a failure rolls back alone
                                write()
                        except Exception as one:
                            failed[ticket] = one
            except Exception as whole:  # the batch itself could not commit: none of it stands
                failed = {t: whole for t, _ in batch}
            for ticket, why in failed.items():
                log.error("queued write %d to %s failed: %s", ticket, self.what, why)
            with self._cond:
                self._failed.update(failed)
                self._done = batch[-1][0]
                self._cond.notify_all()

    # --------------------------------------------------------------- closing

    def close(self, *, flush: bool = True) -> None:
        """Stop the writer -- after committing the queue (``flush``), or dropping it (a crash,
        for tests) -- and close the connection.  Idempotent."""
        with self._cond:
            if not flush:
                self._queue.clear()
            self._closing = True
            self._cond.notify_all()
        if self._writer is not None and not self._in_writer():
            self._writer.join()
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None
