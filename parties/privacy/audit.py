"""The append-only, hash-chained and keyed audit log of one party, in SQLite.

Every request a party sees -- accepted, refused, failed or released -- becomes one record: who
called (certificate identity), for which analyst, which session, which computation and backend,
which columns, which filter (canonical text), for which recipient, at what privacy cost, with which
outcome, why, and when (UTC). Events carry **metadata only**: :class:`AuditEvent` accepts nothing
but bounded strings, tuples of strings and finite numbers in fixed fields, so raw values, shares,
keys or seeds (bytes, arrays, big integers, nested objects) cannot be logged by mistake.

Record ``seq`` (1, 2, 3, ...) stores

* ``body``: the canonical JSON (sorted keys, no spaces, UTF-8, no NaN) of the event **including its
  own ``seq``**, so a record knows its position;
* ``prev_hash``: the ``hash`` of record ``seq - 1`` (for record 1, the genesis value
  ``SHA-256("smpc.audit.v1" || 0x00 || log_id)``);
* ``hash = SHA-256(bytes(prev_hash) || body)`` -- the public hash chain;
* ``mac = HMAC-SHA256(key, "smpc.audit.v1.mac" || 0x00 || bytes(hash))`` -- the keyed tag.

Why both. A plain hash chain can be recomputed by anyone who can edit the database, so on its own
it only detects careless edits -- or any edit, when checked against a head exported earlier. The
HMAC key (32 random bytes in a separate file, ``<database>.audit-key``, mode 0600, created with the
log) stops someone who can write the database but cannot read the key file (a copied or restored
database, SQL access, a backup) from rewriting records undetected. The chain stays keyless so that
an auditor without the key can still check order and completeness and compare heads
(``AuditLog(path, chain_only=True)``). Someone who can read the key file (the party's OS user,
root) can rewrite anything that has not been exported: ship :meth:`AuditLog.head` off the host
regularly.

What :meth:`AuditLog.verify` detects, naming the seq numbers in its sentences:

* an **edited** record (its body, prev_hash or hash no longer match; or, with the key, its MAC);
* a **deleted** record (a gap in the written seq numbers; the chain does not link across it);
* **reordered** records (a record stored at one position was written at another);
* a record **rewritten with a recomputed hash** (keyless check: the next record no longer chains
  to it; keyed check: its MAC fails);
* **truncation of the tail**: the log also keeps its current head (seq and hash) in ``audit_meta``,
  which catches a plain ``DELETE`` of the last records; but whoever can edit the database can also
  rewind that stored head, so truncation of the last records is only *reliably* detectable against
  a head exported before it (``verify(anchor=...)``). Rolling the whole log back to an earlier
  state is, likewise, only detectable against an exported head.

Appends are atomic (one ``BEGIN IMMEDIATE`` transaction writes the record and the stored head) and
safe from many threads and processes; :meth:`AuditLog.append` never refuses to log because the log
was tampered with -- it chains to the stored head and lets :meth:`verify` report.

Tables (schema version 1; may share a file with the ledger)::

    audit_meta(key TEXT PRIMARY KEY, value TEXT)   schema_version, created_at, log_id, key_id,
                                                   head_seq, head_hash
    audit_records(seq INTEGER PRIMARY KEY, body TEXT, prev_hash TEXT, hash TEXT, mac TEXT)

``key_id`` (first 16 hex digits of ``SHA-256("smpc.audit.v1.keyid" || 0x00 || key)``) only makes a
wrong key file a clear error; it reveals nothing usable about the key.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import sqlite3
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parties.errors import StorageError
from parties.pki.files import atomic_write
from parties.privacy.store import Database, utc_now

if TYPE_CHECKING:
    from parties.privacy.audit_verify import VerifyReport

__all__ = [
    "OUTCOMES",
    "SCHEMA_VERSION",
    "AuditError",
    "AuditEvent",
    "AuditLog",
    "AuditRecord",
    "Head",
    "default_key_path",
]

SCHEMA_VERSION = 1
OUTCOMES = ("accepted", "refused", "failed", "released")
KEY_BYTES = 32
_DOMAIN = b"smpc.audit.v1"
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")  # used with match(): the whole string, no newline

# field -> max length of a text field
_TEXT_LIMITS = {
    "caller": 512,
    "caller_fingerprint": 64,
    "analyst": 256,
    "session_id": 128,
    "computation": 128,
    "backend": 32,
    "filter": 4096,
    "recipient": 256,
    "reason": 1000,
    "request_hash": 64,
}
_MAX_COLUMNS = 1000
_MAX_COLUMN_NAME = 256


class AuditError(StorageError):
    """The audit log cannot be opened or written, or an event is not pure metadata."""


def default_key_path(path: str | os.PathLike[str]) -> Path:
    """Where the MAC key of the audit log in ``path`` lives by default: ``<path>.audit-key``."""
    p = Path(path)
    return p.with_name(p.name + ".audit-key")


# ------------------------------------------------------------------------------- events


def _text(name: str, value: object, *, optional: bool) -> str | None:
    if value is None and optional:
        return None
    limit = _TEXT_LIMITS[name]
    if not isinstance(value, str) or len(value) > limit:
        got = f"a string of length {len(value)}" if isinstance(value, str) else type(value).__name__
        raise AuditError(
            f"audit field {name!r} must be a string of at most {limit} characters, got {got}."
        )
    return value


def _cost(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuditError(
            f"audit field {name!r} must be a number or null, got {type(value).__name__}."
        )
    x = float(value)
    if not math.isfinite(x) or x < 0:
        raise AuditError(f"audit field {name!r} must be finite and non-negative, got {value!r}.")
    return x


@dataclass(frozen=True)
class AuditEvent:
    """What happened to one request -- metadata only (checked on construction).

    ``caller``: the certificate identity of the RPC caller (e.g. ``smpc://fed/coordinator/coord``);
    ``caller_fingerprint``: its certificate's SHA-256 (64 hex digits) when known; ``analyst``: who
    the computation is for; ``computation``: the statistic or prediction (``mean``,
    ``predict-linear``, ``describe`` ...); ``backend``: ``ss`` / ``ckks`` / None; ``columns``: the
    columns it reads; ``filter``: the canonical filter text
    (``str(parties.data.filters.parse(...))``)
    or None; ``recipient``: who receives the result; ``rho`` (zCDP) and the ``epsilon`` / ``delta``
    view of the privacy cost, when DP applies; ``outcome``: accepted | refused | failed |
    released; ``reason``: one sentence. The time is stamped by :meth:`AuditLog.append` (UTC).
    """

    caller: str
    analyst: str
    session_id: str
    computation: str
    outcome: str
    reason: str = ""
    backend: str | None = None
    columns: tuple[str, ...] = ()
    filter: str | None = None
    recipient: str | None = None
    rho: float | None = None
    epsilon: float | None = None
    delta: float | None = None
    caller_fingerprint: str | None = None
    request_hash: str | None = None
    members: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("caller", "analyst", "session_id", "computation", "reason"):
            _text(name, getattr(self, name), optional=False)
        for name in ("backend", "filter", "recipient", "caller_fingerprint"):
            _text(name, getattr(self, name), optional=True)
        if self.outcome not in OUTCOMES:
            raise AuditError(
                f"audit field 'outcome' must be one of {', '.join(OUTCOMES)}, got {self.outcome!r}."
            )
        if self.caller_fingerprint is not None and not _HEX64.match(self.caller_fingerprint):
            raise AuditError("audit field 'caller_fingerprint' must be 64 lowercase hex digits.")
        if self.request_hash is not None and not _HEX64.match(self.request_hash):
            raise AuditError("audit field 'request_hash' must be 64 lowercase hex digits.")
        members = self.members
        if isinstance(members, str) or not isinstance(members, tuple | list) \
                or len(members) > _MAX_COLUMNS or not all(
                    isinstance(m, str) and 0 < len(m) <= 256 for m in members):
            raise AuditError("audit field 'members' must be a tuple of node names.")
        object.__setattr__(self, "members", tuple(members))
        cols = self.columns
        if isinstance(cols, str) or not isinstance(cols, tuple | list):
            raise AuditError(
                f"audit field 'columns' must be a tuple of column names, got {type(cols).__name__}."
            )
        if len(cols) > _MAX_COLUMNS or not all(
            isinstance(c, str) and 0 < len(c) <= _MAX_COLUMN_NAME for c in cols
        ):
            raise AuditError(
                f"audit field 'columns' must hold at most {_MAX_COLUMNS} non-empty names of at "
                f"most {_MAX_COLUMN_NAME} characters."
            )
        object.__setattr__(self, "columns", tuple(cols))
        for name in ("rho", "epsilon", "delta"):
            object.__setattr__(self, name, _cost(name, getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        """The event as a JSON-ready dict (columns as a list)."""
        return {
            "caller": self.caller,
            "caller_fingerprint": self.caller_fingerprint,
            "analyst": self.analyst,
            "session_id": self.session_id,
            "computation": self.computation,
            "backend": self.backend,
            "columns": list(self.columns),
            "filter": self.filter,
            "recipient": self.recipient,
            "privacy_cost": {"rho": self.rho, "epsilon": self.epsilon, "delta": self.delta},
            "outcome": self.outcome,
            "reason": self.reason,
            **({"request_hash": self.request_hash} if self.request_hash is not None else {}),
            **({"members": list(self.members)} if self.members else {}),
        }


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 text, NaN/Infinity refused."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def _chain_hash(prev_hash: str, body: str) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + body.encode("utf-8")).hexdigest()


def _genesis(log_id: str) -> str:
    return hashlib.sha256(_DOMAIN + b"\x00" + log_id.encode("ascii")).hexdigest()


def _key_id(key: bytes) -> str:
    return hashlib.sha256(_DOMAIN + b".keyid\x00" + key).hexdigest()[:16]


# ------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class AuditRecord:
    """One stored record. ``event`` is the parsed body (``{}`` if the body is not JSON);
    ``seq`` is the stored position."""

    seq: int
    body: str
    prev_hash: str
    hash: str
    mac: str | None
    event: dict[str, Any] = field(default_factory=dict)

    @property
    def time(self) -> str:
        """The UTC time stamped at append (empty if unreadable)."""
        return str(self.event.get("time", ""))

    def line(self) -> str:
        """One human-readable line (for ``smpc audit show``)."""
        e = self.event
        cost = e.get("privacy_cost") or {}
        parts = [
            f"#{self.seq}", self.time, str(e.get("outcome", "?")),
            f"session={e.get('session_id', '?')}", f"caller={e.get('caller', '?')}",
            f"analyst={e.get('analyst', '?')}",
            f"computation={e.get('computation', '?')}"
            + (f"/{e['backend']}" if e.get("backend") else ""),
        ]
        if e.get("columns"):
            parts.append("columns=" + ",".join(e["columns"]))
        if e.get("filter"):
            parts.append(f"filter={e['filter']!r}")
        if e.get("recipient"):
            parts.append(f"recipient={e['recipient']}")
        if cost.get("rho") is not None:
            parts.append(f"rho={cost['rho']:g}")
        if cost.get("epsilon") is not None:
            parts.append(f"epsilon={cost['epsilon']:g}")
        if cost.get("delta") is not None:
            parts.append(f"delta={cost['delta']:g}")
        if e.get("reason"):
            parts.append(f"reason={e['reason']!r}")
        return " ".join(parts)


@dataclass(frozen=True)
class Head:
    """The head of a log: its ``log_id``, the last ``seq`` and its ``hash`` (``seq`` 0 and the
    genesis hash for an empty log), and when it was exported. Keep a copy off the host: a later
    :meth:`AuditLog.verify` against it detects truncation and rewriting up to ``seq``."""

    log_id: str
    seq: int
    hash: str
    exported_at: str

    def to_json(self) -> str:
        """The head as one JSON line."""
        return canonical_json(
            {"log_id": self.log_id, "seq": self.seq, "hash": self.hash,
             "exported_at": self.exported_at}
        )

    @classmethod
    def from_json(cls, text: str) -> Head:
        """Parse :meth:`to_json` output; :class:`AuditError` if malformed."""
        try:
            d = json.loads(text)
            head = cls(str(d["log_id"]), int(d["seq"]), str(d["hash"]), str(d["exported_at"]))
        except (ValueError, KeyError, TypeError):
            raise AuditError("the exported audit head is not valid head JSON.") from None
        if head.seq < 0 or not _HEX64.match(head.hash):
            raise AuditError("the exported audit head has an invalid seq or hash.")
        return head


class AuditLog:
    """The audit log in the SQLite file ``path`` (see the module docstring for the guarantees).

    ``key_path`` (default :func:`default_key_path`) holds the 32-byte MAC key, created 0600 with a
    new log. Opening an existing log whose key file is missing, unreadable by mode (group/other
    access) or not its key raises :class:`AuditError`, unless ``chain_only=True``: then the log is
    read only (no appends) and :meth:`verify` checks the keyless hash chain only -- for an auditor
    holding a copy of the database without the key.

    Every call is one transaction on a kept-open connection: ``db`` (a
    :class:`~parties.privacy.store.Database`, shared with the ledger by
    :class:`parties.privacy.guard.PrivacyGuard`), by default one of its own, closed by
    :meth:`close`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        key_path: str | os.PathLike[str] | None = None,
        chain_only: bool = False,
        db: Database | None = None,
    ) -> None:
        self.path = Path(path).expanduser().absolute()
        if chain_only and not self.path.is_file():
            raise AuditError(f"there is no audit log at {str(self.path)!r}.")
        self._owns_db = db is None
        self._db = db if db is not None else Database(self.path, "audit log", AuditError)
        self.key_path = (
            Path(key_path).expanduser().absolute() if key_path is not None
            else default_key_path(self.path)
        )
        self.chain_only = chain_only
        self._key: bytes | None = None
        if chain_only:
            if not self.path.is_file():
                raise AuditError(f"there is no audit log at {str(self.path)!r}.")
            with self._read() as con:
                meta = self._meta(con)
            if meta.get("schema_version") is None:
                raise AuditError(f"{str(self.path)!r} holds no audit log.")
            self._check_version(meta)
            self.log_id = meta["log_id"]
            return
        with self._write() as con:
            con.execute(
                "CREATE TABLE IF NOT EXISTS audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            meta = self._meta(con)
            if not meta:
                con.execute(
                    "CREATE TABLE IF NOT EXISTS audit_records (seq INTEGER PRIMARY KEY, "
                    "body TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL, mac TEXT)"
                )
                log_id = secrets.token_hex(16)
                meta = {
                    "schema_version": str(SCHEMA_VERSION),
                    "created_at": utc_now(),
                    "log_id": log_id,
                    "head_seq": "0",
                    "head_hash": _genesis(log_id),
                }
                con.executemany("INSERT INTO audit_meta (key, value) VALUES (?, ?)", meta.items())
            self._check_version(meta)
            self.log_id = meta["log_id"]
            n = con.execute("SELECT count(*) FROM audit_records").fetchone()[0]
            key_id = meta.get("key_id")
            if key_id is None and n == 0:
                key = self._load_or_create_key()
                con.execute(
                    "INSERT OR REPLACE INTO audit_meta (key, value) VALUES ('key_id', ?)",
                    (_key_id(key),),
                )
            else:
                if not self.key_path.exists():
                    raise AuditError(
                        f"the MAC key of audit log {str(self.path)!r} is missing "
                        f"({str(self.key_path)!r}); open it with chain_only=True to verify the "
                        "hash chain alone."
                    )
                key = self._load_key()
                if key_id != _key_id(key):
                    raise AuditError(
                        f"{str(self.key_path)!r} is not the MAC key of audit log "
                        f"{str(self.path)!r}."
                    )
            self._key = key

    # ------------------------------------------------------------------------ plumbing

    def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return self._db.write()

    def _read(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return self._db.read()

    def close(self) -> None:
        """Close the kept-open connection if this object opened it (a shared
        :class:`~parties.privacy.store.Database` is closed by its owner)."""
        if self._owns_db:
            self._db.close()

    @staticmethod
    def _meta(con: sqlite3.Connection) -> dict[str, str]:
        try:
            return dict(con.execute("SELECT key, value FROM audit_meta").fetchall())
        except sqlite3.OperationalError:  # no such table
            return {}

    def _check_version(self, meta: dict[str, str]) -> None:
        if meta.get("schema_version") != str(SCHEMA_VERSION) or "log_id" not in meta:
            raise AuditError(
                f"audit log {str(self.path)!r} has schema version "
                f"{meta.get('schema_version')}; this version of smpc reads version "
                f"{SCHEMA_VERSION}."
            )

    def _load_key(self) -> bytes:
        try:
            st = os.stat(self.key_path)
            key = self.key_path.read_bytes()
        except OSError as exc:
            raise AuditError(
                f"cannot read the audit MAC key {str(self.key_path)!r}: {exc.strerror}."
            ) from None
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise AuditError(
                f"the audit MAC key {str(self.key_path)!r} is accessible by group or others "
                f"(mode {stat.S_IMODE(st.st_mode):04o}); run chmod 600 on it."
            )
        if len(key) != KEY_BYTES:
            raise AuditError(
                f"the audit MAC key {str(self.key_path)!r} must hold {KEY_BYTES} bytes, "
                f"it holds {len(key)}."
            )
        return key

    def _load_or_create_key(self) -> bytes:
        if not self.key_path.exists():
            with contextlib.suppress(FileExistsError):  # another process created it first
                atomic_write(self.key_path, os.urandom(KEY_BYTES), 0o600, overwrite=False)
        return self._load_key()

    def _mac(self, hash_hex: str) -> str:
        assert self._key is not None
        return hmac.new(
            self._key, _DOMAIN + b".mac\x00" + bytes.fromhex(hash_hex), hashlib.sha256
        ).hexdigest()

    @staticmethod
    def _record(row: tuple[Any, ...]) -> AuditRecord:
        seq, body, prev_hash, hash_, mac = row
        try:
            event = json.loads(body)
            if not isinstance(event, dict):
                event = {}
        except ValueError:
            event = {}
        return AuditRecord(seq, body, prev_hash, hash_, mac, event)

    # ------------------------------------------------------------------------ writing

    def append(self, event: AuditEvent) -> AuditRecord:
        """Append ``event`` stamped with the current UTC time; returns the stored record.

        Atomic and safe from concurrent threads and processes: the next seq, the chaining to the
        stored head and the head update happen in one ``BEGIN IMMEDIATE`` transaction.
        """
        if not isinstance(event, AuditEvent):
            raise AuditError(f"append takes an AuditEvent, got {type(event).__name__}.")
        if self._key is None:
            raise AuditError(
                f"audit log {str(self.path)!r} was opened chain-only (without its key): "
                "appending is not allowed."
            )
        with self._write() as con:
            meta = self._meta(con)
            last = con.execute("SELECT max(seq) FROM audit_records").fetchone()[0] or 0
            head_seq = int(meta.get("head_seq", "0"))
            prev = meta.get("head_hash") or _genesis(self.log_id)
            if not _HEX64.match(prev):  # tampered stored head: still log, verify will report
                prev = _genesis(self.log_id)
            seq = max(last, head_seq) + 1
            obj = {"v": SCHEMA_VERSION, "seq": seq, "time": utc_now(), **event.to_dict()}
            body = canonical_json(obj)
            h = _chain_hash(prev, body)
            mac = self._mac(h)
            con.execute(
                "INSERT INTO audit_records (seq, body, prev_hash, hash, mac) "
                "VALUES (?, ?, ?, ?, ?)",
                (seq, body, prev, h, mac),
            )
            con.executemany(
                "INSERT OR REPLACE INTO audit_meta (key, value) VALUES (?, ?)",
                (("head_seq", str(seq)), ("head_hash", h)),
            )
        return AuditRecord(seq, body, prev, h, mac, obj)

    # ------------------------------------------------------------------------ reading

    def head(self) -> Head:
        """The current head (last seq and hash, as stored in ``audit_meta``), to export."""
        with self._read() as con:
            meta = self._meta(con)
        return Head(
            self.log_id, int(meta.get("head_seq", "0")),
            meta.get("head_hash") or _genesis(self.log_id), utc_now(),
        )

    def records(
        self, limit: int | None = 100, since: int | str | _dt.datetime | None = None
    ) -> list[AuditRecord]:
        """Stored records in seq order.

        ``since`` an int: records with seq greater than it; a timezone-aware datetime or an ISO
        string: records stamped at or after it. With ``since`` the *first* ``limit`` matching
        records are returned (paging forward); without it the *last* ``limit`` records (a tail).
        ``limit=None``: all. Records are returned as stored, not verified: use :meth:`verify`.
        """
        where, args = "", list[object]()
        if isinstance(since, bool):
            raise AuditError("since must be a seq number, a datetime or an ISO time.")
        if isinstance(since, int):
            where, args = "WHERE seq > ?", [since]
        elif since is not None:
            if isinstance(since, str):
                try:
                    since = _dt.datetime.fromisoformat(since)
                except ValueError:
                    raise AuditError(f"since {since!r} is not an ISO 8601 time.") from None
            if not isinstance(since, _dt.datetime) or since.tzinfo is None:
                raise AuditError("since must be a seq number or a timezone-aware time.")
            stamp = since.astimezone(_dt.timezone.utc).isoformat(timespec="microseconds")
            where, args = "WHERE json_extract(body, '$.time') >= ?", [stamp]
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 0):
            raise AuditError(f"limit must be a non-negative integer or None, got {limit!r}.")
        order = "ASC" if since is not None or limit is None else "DESC"
        # only fixed fragments are formatted in; values are bound parameters
        sql = f"SELECT seq, body, prev_hash, hash, mac FROM audit_records {where} "  # noqa: S608
        sql += f"ORDER BY seq {order}"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._read() as con:
            rows = con.execute(sql, args).fetchall()
        out = [self._record(r) for r in rows]
        return out if order == "ASC" else out[::-1]

    def __len__(self) -> int:
        with self._read() as con:
            return int(con.execute("SELECT count(*) FROM audit_records").fetchone()[0])

    # ------------------------------------------------------------------------ verification

    def verify(self, anchor: Head | None = None) -> VerifyReport:
        """Check the whole log; with ``anchor`` (an exported :class:`Head`) also that the log still
        contains that head unchanged. Never raises on tampering: returns a :class:`VerifyReport`
        whose sentences name the seq numbers of edited, deleted, reordered, unchained, duplicated
        and truncated records (:func:`parties.privacy.audit_verify.verify_records`).
        """
        with self._read() as con:
            rows = con.execute(
                "SELECT seq, body, prev_hash, hash, mac FROM audit_records ORDER BY seq"
            ).fetchall()
            meta = self._meta(con)
        from parties.privacy.audit_verify import verify_records

        return verify_records(rows, meta, log_id=self.log_id, path=str(self.path),
                              mac=self._mac if self._key is not None else None, anchor=anchor)
