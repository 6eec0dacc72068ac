"""Which signed requests a party has already accepted: a signed request is good for one session.

An analyst's signed request (:mod:`parties.pki.signed`) carries a random nonce and an expiry.
A party records the nonce of every signed request it prepares, in its own SQLite file beside
its ledger, and refuses a nonce it has seen -- so a coordinator that replays a signed request
(to run it again, or to spend the analyst's budget again) is refused by every party.  Records
are kept until their request has expired (plus the clock-skew allowance), then pruned: an
expired request is refused by its expiry anyway.

On the node's kept-open database (``db``), a claim is checked against the nonces on disk and
those claimed in this process but still queued, under one lock, so two concurrent Prepares
with the same nonce cannot both succeed; its record is written behind (one fsync less on every
Prepare's critical path) and :meth:`SeenRequests.claim` returns the write's ticket.  The party
settles that ticket at ``Run``, before the session's role starts: a request whose claim is not
on disk never runs, so a crash that loses a queued claim loses it for a session that never ran
(a replay after the restart is then the request's first run).  Without ``db`` a claim is one
``BEGIN IMMEDIATE`` transaction, durable when it returns.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from parties.errors import PolicyError, StorageError
from parties.privacy.store import Database, open_database, read_transaction, write_transaction

__all__ = ["ReplayError", "SeenRequests"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen_requests (
    nonce TEXT PRIMARY KEY,
    analyst TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    session_id TEXT NOT NULL,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS seen_requests_expires ON seen_requests (expires);
"""
#: How long past its expiry a nonce is kept (covers the verifier's clock-skew allowance).
KEEP_AFTER_EXPIRY_SECONDS = 3600.0


class ReplayError(PolicyError):
    """A signed request this party has already accepted was presented again."""


class SeenRequests:
    """The nonces of the signed requests one party accepted (see the module docstring)."""

    def __init__(self, path: str | Path, *, db: Database | None = None) -> None:
        """``db``: the node's kept-open connection to ``path`` (default: a connection per
        call)."""
        self.path = Path(path)
        self._db = db
        self._lock = threading.Lock()
        self._queued: dict[str, tuple[str, float]] = {}  # nonce -> (session, expires)
        con = open_database(self.path, "request log", StorageError)
        try:
            con.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot open request log {str(self.path)!r}: {exc}.") from None
        finally:
            con.close()

    def claim(self, *, nonce: str, analyst: str, request_hash: str, session_id: str,
              expires: float, me: str, now: float | None = None) -> int:
        """Record ``nonce``; :class:`ReplayError` if it was recorded before (nothing changes).

        Returns the ticket of the queued record (settle it with the database's ``settle``
        before anything of the session runs), or 0 when it is already on disk (no ``db``)."""
        clock = time.time() if now is None else now
        oldest = clock - KEEP_AFTER_EXPIRY_SECONDS
        row = (nonce, analyst, request_hash, session_id, float(expires))
        if self._db is None:
            with write_transaction(open_database(self.path, "request log", StorageError)
                                   ) as con:
                con.execute("DELETE FROM seen_requests WHERE expires < ?", (oldest,))
                self._refuse_if_seen(con, nonce, me)
                con.execute("INSERT INTO seen_requests VALUES (?, ?, ?, ?, ?)", row)
            return 0
        db = self._db
        with self._lock:
            for old in [n for n, (_, exp) in self._queued.items() if exp < oldest]:
                del self._queued[old]
            if nonce in self._queued:
                raise self._replay(me, self._queued[nonce][0])
            with db.read(after_queue=False) as con:  # what is queued is in self._queued
                self._refuse_if_seen(con, nonce, me, oldest)
            self._queued[nonce] = (session_id, float(expires))

        def write() -> None:
            with db.write() as con:
                con.execute("DELETE FROM seen_requests WHERE expires < ?", (oldest,))
                con.execute("INSERT INTO seen_requests VALUES (?, ?, ?, ?, ?)", row)

        return db.later(write)

    @staticmethod
    def _replay(me: str, session_id: str) -> ReplayError:
        return ReplayError(f"{me} refuses: this signed request was already used "
                           f"(session {session_id}); a request is good for one session")

    def _refuse_if_seen(self, con: sqlite3.Connection, nonce: str, me: str,
                        oldest: float | None = None) -> None:
        """ReplayError if ``nonce`` is on disk (and, given ``oldest``, not yet prunable)."""
        if oldest is None:
            found = con.execute("SELECT session_id FROM seen_requests WHERE nonce = ?",
                                (nonce,)).fetchone()
        else:
            found = con.execute("SELECT session_id FROM seen_requests WHERE nonce = ? "
                                "AND expires >= ?", (nonce, oldest)).fetchone()
        if found is not None:
            raise self._replay(me, found[0])

    def seen(self, nonce: str) -> bool:
        con = open_database(self.path, "request log", StorageError)
        with read_transaction(con):
            return con.execute("SELECT 1 FROM seen_requests WHERE nonce = ?",
                               (nonce,)).fetchone() is not None
