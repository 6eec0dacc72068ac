"""The privacy-budget ledger of one party: zCDP budgets per (analyst, dataset), in SQLite.

A party charges every differentially private request against its own ledger, whatever the
coordinator says. Budgets and charges are zero-concentrated DP ``rho`` values (zCDP composes by
addition, so the spent budget is the sum of the counted charges). Converting an (epsilon, delta)
policy into a ``rho`` is the caller's job (``smpc.dp``); this module only stores and adds numbers.

Life of a charge (**charge before release, never after**)::

    reserve(session, analyst, dataset, rho)   PENDING   counts against the budget at once
      |-- commit(session)                     SPENT     the result was (or is about to be) released
      |-- abort(session, reason)              REFUNDED  only when nothing was released
      `-- crash, then recover()               SPENT     conservative: release cannot be ruled out

Guarantees:

* **No overspending.** :meth:`Ledger.reserve` checks the remaining budget and records the PENDING
  charge in one ``BEGIN IMMEDIATE`` transaction (SQLite's single writer lock), so two concurrent
  requests -- threads of one process or separate processes on the same file -- cannot both spend
  the last of a budget: one of them sees the other's charge and is refused with
  :class:`BudgetExceeded`, whose message states the remaining budget and the requested cost.
* **No double charging, no replay.** The session id is the primary key of a charge: a session id
  that was ever reserved (pending, spent or refunded) cannot be reserved again
  (:class:`ChargeReplay`).
* **Nothing lost on a crash.** A reservation is durable when :meth:`reserve` returns (WAL journal,
  ``synchronous=FULL``). A PENDING charge left by a crash keeps counting against the budget after
  the restart -- it is never silently refunded and never spendable a second time. At start-up,
  :meth:`Ledger.recover` turns every PENDING charge into SPENT (the party cannot know whether its
  contribution left before the crash) and records that decision, with its reason, in the charge and
  in ``ledger_events``. Only an operator who *knows* nothing was released may refund a pending
  charge, by naming it (``recover(refund=[...])``).
* **Refunds are only for unreleased results.** :meth:`abort` refunds only a PENDING charge; a SPENT
  charge is never refunded, and :meth:`commit` refuses a REFUNDED charge (so a node that gets an
  error from ``commit`` must not release).
* **Arithmetic.** A charge is accepted when the correctly rounded sum (``math.fsum``) of all counted
  charges of that (analyst, dataset) *including the new one* is at most
  ``total_rho * (1 + RHO_REL_TOLERANCE)``; the 1e-12 relative slack absorbs decimal-to-binary
  rounding (ten charges of 0.1 fit a budget of 1.0) and is far below any meaningful privacy
  difference. :meth:`remaining` is ``max(0, total - counted)``.

Assumptions: one node process owns a ledger file at a time for :meth:`recover` (call it once at
start-up, before serving requests: it settles *every* pending charge, including one another live
process might still hold); the file lives on a local file system with working POSIX locks (SQLite's
WAL mode does not work over network file systems); the clock is only used for timestamps, never for
decisions.

What is stored (all timestamps UTC ISO 8601, e.g. ``2025-01-31T12:00:00.123456+00:00``), schema
version 1, in the file ``path`` (created 0600; may be the same file as the audit log, the tables
are prefixed)::

    ledger_meta(key TEXT PRIMARY KEY, value TEXT)              schema_version, created_at
    ledger_budgets(analyst, dataset, total_rho REAL, updated_at,  PRIMARY KEY (analyst, dataset))
    ledger_charges(session_id TEXT PRIMARY KEY, analyst, dataset, rho REAL,
                   state 'pending'|'spent'|'refunded', reserved_at, settled_at, reason)
    ledger_events(id INTEGER PRIMARY KEY, time, event, session_id, analyst, dataset, rho, detail)
        event: budget_set | reserved | committed | aborted | recovered | refused

Only names, numbers and reasons are stored: no data values, shares or keys.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import grpc

from parties.errors import PolicyError, SessionError, StorageError
from parties.privacy.store import Database, utc_now
from smpc.errors import InputError

SCHEMA_VERSION = 1


RHO_REL_TOLERANCE = 1e-12


_MAX_NAME = 256


PENDING, SPENT, REFUNDED = "pending", "spent", "refunded"


STATES = (PENDING, SPENT, REFUNDED)


class LedgerError(StorageError):
    """The ledger cannot do what was asked (unknown session, wrong state, unusable file)."""


class LedgerValueError(LedgerError, InputError):
    """A name or a rho given to the ledger is malformed (an input problem: INVALID_ARGUMENT)."""


class BudgetExceeded(PolicyError):
    """A charge would exceed the privacy budget of an (analyst, dataset); nothing was charged.

    A :class:`parties.errors.PolicyError`, so a party node answers PERMISSION_DENIED.
    ``remaining``, ``requested`` and ``total`` are rho values.
    """

    def __init__(
        self, message: str, *, analyst: str, dataset: str, remaining: float, requested: float,
        total: float,
    ) -> None:
        super().__init__(message)
        self.analyst = analyst
        self.dataset = dataset
        self.remaining = remaining
        self.requested = requested
        self.total = total


class ChargeReplay(SessionError, LedgerError):
    """A session id that was already charged once (whatever its state) was presented again."""

    def __init__(self, message: str) -> None:
        super().__init__(message, grpc.StatusCode.ALREADY_EXISTS)


@dataclass(frozen=True)
class Reservation:
    """One charge: ``state`` is ``pending``, ``spent`` or ``refunded``; ``remaining`` is the
    budget left for its (analyst, dataset) when the object was read (rho)."""

    session_id: str
    analyst: str
    dataset: str
    rho: float
    state: str
    reserved_at: str
    settled_at: str | None
    reason: str | None
    remaining: float

    @property
    def counted(self) -> bool:
        """Whether the charge counts against the budget (pending or spent)."""
        return self.state != REFUNDED


@dataclass(frozen=True)
class BudgetStatus:
    """The budget of one (analyst, dataset) in rho: ``total``, ``spent`` (settled),
    ``pending`` (reserved, not settled) and ``remaining`` = max(0, total - spent - pending)."""

    analyst: str
    dataset: str
    total: float
    spent: float
    pending: float
    remaining: float


def _fmt(x: float) -> str:
    return f"{x:.12g}"


def _name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_NAME:
        raise LedgerValueError(
            f"{what} must be a non-empty string of at most {_MAX_NAME} characters, "
            f"got {value!r:.80}."
        )
    return value


def _rho(value: object, what: str, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LedgerValueError(f"{what} must be a number, got {type(value).__name__}.")
    x = float(value)
    if not math.isfinite(x) or x < 0 or (x == 0 and not allow_zero):
        bound = "non-negative" if allow_zero else "positive"
        raise LedgerValueError(f"{what} must be a finite {bound} rho, got {value!r}.")
    return x


_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_budgets (
    analyst    TEXT NOT NULL,
    dataset    TEXT NOT NULL,
    total_rho  REAL NOT NULL CHECK (total_rho >= 0),
    updated_at TEXT NOT NULL,
    PRIMARY KEY (analyst, dataset)
);
CREATE TABLE IF NOT EXISTS ledger_charges (
    session_id  TEXT PRIMARY KEY,
    analyst     TEXT NOT NULL,
    dataset     TEXT NOT NULL,
    rho         REAL NOT NULL CHECK (rho > 0),
    state       TEXT NOT NULL CHECK (state IN ('pending', 'spent', 'refunded')),
    reserved_at TEXT NOT NULL,
    settled_at  TEXT,
    reason      TEXT
);
CREATE INDEX IF NOT EXISTS ledger_charges_by_budget ON ledger_charges (analyst, dataset, state);
CREATE TABLE IF NOT EXISTS ledger_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    time       TEXT NOT NULL,
    event      TEXT NOT NULL CHECK (event IN
               ('budget_set', 'reserved', 'committed', 'aborted', 'recovered', 'refused')),
    session_id TEXT,
    analyst    TEXT,
    dataset    TEXT,
    rho        REAL,
    detail     TEXT NOT NULL
);
"""


class Ledger:
    """The privacy-budget ledger stored in the SQLite file ``path`` (see the module docstring).

    Safe to share between threads and to open from several processes: every call is one
    ``BEGIN IMMEDIATE`` transaction on a kept-open connection (``db``, a
    :class:`~parties.privacy.store.Database` shared with the audit log by
    :class:`parties.privacy.guard.PrivacyGuard`; by default one of its own, closed by
    :meth:`close`). Opening creates the file (0600) and the schema if needed and refuses a file
    of another schema version.
    """

    def __init__(self, path: str | os.PathLike[str], *, db: Database | None = None) -> None:
        self.path = Path(path).expanduser().absolute()
        self._owns_db = db is None
        self._db = db if db is not None else Database(self.path, "ledger", LedgerError)
        with self._write() as con:
            con.execute(
                "CREATE TABLE IF NOT EXISTS ledger_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            row = con.execute(
                "SELECT value FROM ledger_meta WHERE key = 'schema_version'"
            ).fetchone()
            if row is None:
                # one statement at a time: executescript() would COMMIT our transaction
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        con.execute(stmt)
                con.execute(
                    "INSERT INTO ledger_meta (key, value) VALUES ('schema_version', ?), "
                    "('created_at', ?)",
                    (str(SCHEMA_VERSION), utc_now()),
                )
            elif row[0] != str(SCHEMA_VERSION):
                raise LedgerError(
                    f"ledger {str(self.path)!r} has schema version {row[0]}; this version of "
                    f"smpc reads version {SCHEMA_VERSION}."
                )

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
    def _event(
        con: sqlite3.Connection, event: str, detail: str, *, session_id: str | None = None,
        analyst: str | None = None, dataset: str | None = None, rho: float | None = None,
    ) -> None:
        con.execute(
            "INSERT INTO ledger_events (time, event, session_id, analyst, dataset, rho, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (utc_now(), event, session_id, analyst, dataset, rho, detail),
        )

    @staticmethod
    def _status(con: sqlite3.Connection, analyst: str, dataset: str) -> BudgetStatus | None:
        row = con.execute(
            "SELECT total_rho FROM ledger_budgets WHERE analyst = ? AND dataset = ?",
            (analyst, dataset),
        ).fetchone()
        if row is None:
            return None
        spent: list[float] = []
        pending: list[float] = []
        for rho, state in con.execute(
            "SELECT rho, state FROM ledger_charges WHERE analyst = ? AND dataset = ? "
            "AND state IN ('pending', 'spent')",
            (analyst, dataset),
        ):
            (pending if state == PENDING else spent).append(rho)
        total = float(row[0])
        used = math.fsum(spent + pending)
        return BudgetStatus(
            analyst, dataset, total, math.fsum(spent), math.fsum(pending), max(0.0, total - used)
        )

    def _reservation(self, con: sqlite3.Connection, session_id: str) -> Reservation | None:
        row = con.execute(
            "SELECT session_id, analyst, dataset, rho, state, reserved_at, settled_at, reason "
            "FROM ledger_charges WHERE session_id = ?",
            (session_id,),
        ).fetchone()
        if row is None:
            return None
        st = self._status(con, row[1], row[2])
        sid, analyst, dataset, rho, state, reserved_at, settled_at, reason = row
        return Reservation(sid, analyst, dataset, float(rho), state, reserved_at, settled_at,
                           reason, remaining=st.remaining if st else 0.0)

    # ------------------------------------------------------------------------ budgets

    def set_budget(self, analyst: str, dataset: str, total_rho: float) -> BudgetStatus:
        """Set the total zCDP budget of (``analyst``, ``dataset``) to ``total_rho``.

        Existing charges keep counting: lowering the total below what is already charged leaves
        nothing remaining (never a negative or refunded budget). A change is recorded as a
        ``budget_set`` event; setting the same value again records nothing (so a node may call this
        at every start-up from its policy).
        """
        _name(analyst, "analyst")
        _name(dataset, "dataset")
        total = _rho(total_rho, "total_rho", allow_zero=True)
        with self._write() as con:
            old = con.execute(
                "SELECT total_rho FROM ledger_budgets WHERE analyst = ? AND dataset = ?",
                (analyst, dataset),
            ).fetchone()
            if old is None or float(old[0]) != total:
                con.execute(
                    "INSERT INTO ledger_budgets (analyst, dataset, total_rho, updated_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (analyst, dataset) DO UPDATE SET "
                    "total_rho = excluded.total_rho, updated_at = excluded.updated_at",
                    (analyst, dataset, total, utc_now()),
                )
                was = "unset" if old is None else _fmt(float(old[0]))
                self._event(
                    con, "budget_set", f"total rho set to {_fmt(total)} (was {was})",
                    analyst=analyst, dataset=dataset, rho=total,
                )
            st = self._status(con, analyst, dataset)
        assert st is not None
        return st

    def status(self, analyst: str, dataset: str) -> BudgetStatus | None:
        """The budget of (``analyst``, ``dataset``), or ``None`` if none was set."""
        with self._read() as con:
            return self._status(con, analyst, dataset)

    def remaining(self, analyst: str, dataset: str) -> float:
        """The rho still available to (``analyst``, ``dataset``): 0.0 when no budget is set."""
        st = self.status(analyst, dataset)
        return st.remaining if st else 0.0

    def budgets(self) -> list[BudgetStatus]:
        """Every budget, ordered by analyst then dataset."""
        with self._read() as con:
            keys = con.execute(
                "SELECT analyst, dataset FROM ledger_budgets ORDER BY analyst, dataset"
            ).fetchall()
            return [st for a, d in keys if (st := self._status(con, a, d)) is not None]

    # ------------------------------------------------------------------------ charges

    def reserve(self, session_id: str, analyst: str, dataset: str, rho: float) -> Reservation:
        """Charge ``rho`` to (``analyst``, ``dataset``) for ``session_id`` as PENDING, atomically.

        Call it *before* computing anything that will be released. On success the charge already
        counts against the budget and is durable. Raises :class:`BudgetExceeded` (nothing charged;
        a ``refused`` event is recorded) when no budget is set or the charge does not fit, and
        :class:`ChargeReplay` when ``session_id`` was ever charged before.
        """
        _name(session_id, "session_id")
        _name(analyst, "analyst")
        _name(dataset, "dataset")
        cost = _rho(rho, "rho", allow_zero=False)
        refusal: Exception | None = None
        with self._write() as con:
            prior = con.execute(
                "SELECT state, analyst, dataset FROM ledger_charges WHERE session_id = ?",
                (session_id,),
            ).fetchone()
            st = self._status(con, analyst, dataset)
            if prior is not None:
                refusal = ChargeReplay(
                    f"session {session_id!r} was already charged to the privacy budget "
                    f"(state {prior[0]}); a session id can be charged only once."
                )
                self._event(
                    con, "refused", "replayed session id", session_id=session_id,
                    analyst=analyst, dataset=dataset, rho=cost,
                )
            elif st is None:
                refusal = BudgetExceeded(
                    f"no privacy budget is set for analyst {analyst!r} on dataset {dataset!r}: "
                    f"remaining rho 0, requested rho {_fmt(cost)}.",
                    analyst=analyst, dataset=dataset, remaining=0.0, requested=cost, total=0.0,
                )
                self._event(
                    con, "refused", "no budget set", session_id=session_id, analyst=analyst,
                    dataset=dataset, rho=cost,
                )
            else:
                counted = [
                    r for (r,) in con.execute(
                        "SELECT rho FROM ledger_charges WHERE analyst = ? AND dataset = ? "
                        "AND state IN ('pending', 'spent')",
                        (analyst, dataset),
                    )
                ]
                if math.fsum([*counted, cost]) > st.total * (1 + RHO_REL_TOLERANCE):
                    refusal = BudgetExceeded(
                        f"privacy budget exceeded for analyst {analyst!r} on dataset "
                        f"{dataset!r}: remaining rho {_fmt(st.remaining)} of {_fmt(st.total)}, "
                        f"requested rho {_fmt(cost)}.",
                        analyst=analyst, dataset=dataset, remaining=st.remaining,
                        requested=cost, total=st.total,
                    )
                    self._event(
                        con, "refused",
                        f"over budget: remaining {_fmt(st.remaining)}, requested {_fmt(cost)}",
                        session_id=session_id, analyst=analyst, dataset=dataset, rho=cost,
                    )
                else:
                    con.execute(
                        "INSERT INTO ledger_charges (session_id, analyst, dataset, rho, state, "
                        "reserved_at) VALUES (?, ?, ?, ?, 'pending', ?)",
                        (session_id, analyst, dataset, cost, utc_now()),
                    )
                    self._event(
                        con, "reserved", "pending charge recorded", session_id=session_id,
                        analyst=analyst, dataset=dataset, rho=cost,
                    )
            res = None if refusal else self._reservation(con, session_id)
        if refusal is not None:
            raise refusal
        assert res is not None
        return res

    def record_refusal(
        self, session_id: str, analyst: str, dataset: str, rho: float | None, reason: str
    ) -> None:
        """Record a ``refused`` event for a request the party refused *before* charging it (its
        policy said no: analyst, column, cohort, exact results not allowed...). Nothing is
        charged; ``rho`` is the cost the request asked for (None for an exact request)."""
        _name(session_id, "session_id")
        _name(analyst, "analyst")
        _name(dataset, "dataset")
        cost = None if rho is None else _rho(rho, "rho", allow_zero=True)
        detail = reason.strip()[:1000] if isinstance(reason, str) and reason.strip() else "refused"
        with self._write() as con:
            self._event(con, "refused", detail, session_id=session_id, analyst=analyst,
                        dataset=dataset, rho=cost)

    def commit(self, session_id: str) -> Reservation:
        """Mark the charge of ``session_id`` SPENT: its result is released.

        Idempotent on a SPENT charge. Raises :class:`LedgerError` for an unknown session or a
        REFUNDED charge -- in that case the result must **not** be released.
        """
        _name(session_id, "session_id")
        with self._write() as con:
            res = self._reservation(con, session_id)
            if res is None:
                raise LedgerError(f"no privacy-budget charge exists for session {session_id!r}.")
            if res.state == REFUNDED:
                raise LedgerError(
                    f"the charge of session {session_id!r} was refunded ({res.reason}); its "
                    "result must not be released."
                )
            if res.state == PENDING:
                con.execute(
                    "UPDATE ledger_charges SET state = 'spent', settled_at = ?, reason = ? "
                    "WHERE session_id = ?",
                    (utc_now(), "released", session_id),
                )
                self._event(
                    con, "committed", "result released", session_id=session_id,
                    analyst=res.analyst, dataset=res.dataset, rho=res.rho,
                )
                res = self._reservation(con, session_id)
        assert res is not None
        return res

    def abort(self, session_id: str, reason: str) -> Reservation:
        """Refund the PENDING charge of ``session_id``: **only** when it is certain that nothing
        depending on this party's data was released (e.g. the protocol failed before this party
        sent its noisy contribution).

        Idempotent on a REFUNDED charge. Raises :class:`LedgerError` for an unknown session or a
        SPENT charge (spent budget is never given back).
        """
        _name(session_id, "session_id")
        if not isinstance(reason, str) or not reason.strip():
            raise LedgerError("abort needs a reason sentence saying why nothing was released.")
        with self._write() as con:
            res = self._reservation(con, session_id)
            if res is None:
                raise LedgerError(f"no privacy-budget charge exists for session {session_id!r}.")
            if res.state == SPENT:
                raise LedgerError(
                    f"the charge of session {session_id!r} is already spent ({res.reason}) and "
                    "cannot be refunded."
                )
            if res.state == PENDING:
                con.execute(
                    "UPDATE ledger_charges SET state = 'refunded', settled_at = ?, reason = ? "
                    "WHERE session_id = ?",
                    (utc_now(), reason, session_id),
                )
                self._event(
                    con, "aborted", reason, session_id=session_id, analyst=res.analyst,
                    dataset=res.dataset, rho=res.rho,
                )
                res = self._reservation(con, session_id)
        assert res is not None
        return res

    def charge(self, session_id: str) -> Reservation | None:
        """The charge of ``session_id``, or ``None``."""
        with self._read() as con:
            return self._reservation(con, session_id)

    def charges(self, analyst: str | None = None, dataset: str | None = None) -> list[Reservation]:
        """Every charge (optionally of one analyst and/or dataset), oldest first."""
        sql = "SELECT session_id FROM ledger_charges WHERE 1 = 1"
        args: list[str] = []
        if analyst is not None:
            sql += " AND analyst = ?"
            args.append(analyst)
        if dataset is not None:
            sql += " AND dataset = ?"
            args.append(dataset)
        with self._read() as con:
            ids = [s for (s,) in con.execute(sql + " ORDER BY reserved_at, rowid", args)]
            return [r for s in ids if (r := self._reservation(con, s)) is not None]

    def pending(self) -> list[Reservation]:
        """Every PENDING charge, oldest first (read only)."""
        return [r for r in self.charges() if r.state == PENDING]

    def recover(self, refund: Collection[str] = (), reason: str = "") -> list[Reservation]:
        """Settle the PENDING charges a crash left behind; call once at start-up, before serving.

        By default every pending charge becomes SPENT with the recorded reason "kept as spent at
        recovery: ..." (the party cannot know whether its contribution left before the crash, so
        it assumes it did). Session ids listed in ``refund`` -- for an operator who *knows* nothing
        was released -- are REFUNDED instead, with ``reason`` (required then). Each decision is
        also a ``recovered`` event. Returns the settled charges (empty when there were none).
        """
        refund = set(refund)
        if refund and (not isinstance(reason, str) or not reason.strip()):
            raise LedgerError(
                "refunding at recovery needs a reason saying why nothing was released."
            )
        out: list[Reservation] = []
        with self._write() as con:
            ids = [
                s for (s,) in con.execute(
                    "SELECT session_id FROM ledger_charges WHERE state = 'pending' "
                    "ORDER BY reserved_at, rowid"
                )
            ]
            unknown = refund - set(ids)
            if unknown:
                raise LedgerError(
                    f"cannot refund at recovery: no pending charge for session(s) "
                    f"{', '.join(sorted(unknown))}."
                )
            now = utc_now()
            for sid in ids:
                if sid in refund:
                    state, why = REFUNDED, f"refunded at recovery by the operator: {reason}"
                else:
                    state = SPENT
                    why = (
                        "kept as spent at recovery: the charge was pending when the node stopped "
                        "and the party cannot tell whether its result was released"
                    )
                con.execute(
                    "UPDATE ledger_charges SET state = ?, settled_at = ?, reason = ? "
                    "WHERE session_id = ?",
                    (state, now, why, sid),
                )
                res = self._reservation(con, sid)
                assert res is not None
                self._event(
                    con, "recovered", why, session_id=sid, analyst=res.analyst,
                    dataset=res.dataset, rho=res.rho,
                )
                out.append(res)
        return out

    def events(self, limit: int | None = None) -> list[dict[str, object]]:
        """The ledger's event history (latest ``limit`` if given), oldest first."""
        sql = (
            "SELECT id, time, event, session_id, analyst, dataset, rho, detail FROM ledger_events "
            "ORDER BY id DESC"
        )
        args: tuple[int, ...] = ()
        if limit is not None:
            sql += " LIMIT ?"
            args = (int(limit),)
        cols = ("id", "time", "event", "session_id", "analyst", "dataset", "rho", "detail")
        with self._read() as con:
            rows = con.execute(sql, args).fetchall()
        return [dict(zip(cols, r, strict=True)) for r in reversed(rows)]
