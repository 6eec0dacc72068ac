"""Which signed requests a party has already accepted: a signed request is good for one session.

An analyst's signed request (:mod:`parties.pki.signed`) carries a random nonce and an expiry.
A party records the nonce of every signed request it prepares, in its own SQLite file beside
its ledger, and refuses a nonce it has seen -- so a coordinator that replays a signed request
(to run it again, or to spend the analyst's budget again) is refused by every party.  Records
are kept until their request has expired (plus the clock-skew allowance), then pruned: an
expired request is refused by its expiry anyway.

The claim is one ``BEGIN IMMEDIATE`` transaction, so two concurrent Prepares with the same
nonce cannot both succeed.
"""

from __future__ import annotations

import contextlib
import sqlite3
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
        con = open_database(self.path, "request log", StorageError)
        try:
            con.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot open request log {str(self.path)!r}: {exc}.") from None
        finally:
            con.close()

    def claim(self, *, nonce: str, analyst: str, request_hash: str, session_id: str,
              expires: float, me: str, now: float | None = None) -> None:
        """Record ``nonce``; :class:`ReplayError` if it was recorded before (nothing changes)."""
        clock = time.time() if now is None else now
        with self._write() as con:
            con.execute("DELETE FROM seen_requests WHERE expires < ?",
                        (clock - KEEP_AFTER_EXPIRY_SECONDS,))
            row = con.execute("SELECT session_id FROM seen_requests WHERE nonce = ?",
                              (nonce,)).fetchone()
            if row is not None:
                raise ReplayError(f"{me} refuses: this signed request was already used "
                                  f"(session {row[0]}); a request is good for one session")
            con.execute("INSERT INTO seen_requests VALUES (?, ?, ?, ?, ?)",
                        (nonce, analyst, request_hash, session_id, float(expires)))

    def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        if self._db is not None:
            return self._db.write()
        return write_transaction(open_database(self.path, "request log", StorageError))

    def seen(self, nonce: str) -> bool:
        con = open_database(self.path, "request log", StorageError)
        with read_transaction(con):
            return con.execute("SELECT 1 FROM seen_requests WHERE nonce = ?",
                               (nonce,)).fetchone() is not None
