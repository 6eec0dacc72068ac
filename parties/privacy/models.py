"""A model owner's policy for its models: who may run each, on how many rows, how often, on
which rows, and with how much noise (``policy.models`` of its config,
:class:`parties.config.ModelPolicy`).

Where each rule is enforced
===========================

* **At the model owner's Prepare, before the model is loaded** (:class:`ModelGate`): the
  analyst (``allowed_analysts``), the rows the request declares (``max_rows_per_request``),
  then, atomically in the owner's SQLite file (:class:`ModelUsage`), the analyst's inferences
  in the last 24 hours (``max_requests_per_day``) and its rows predicted so far
  (``prediction_budget_rows``).  A refusal is a :class:`parties.errors.LimitExceeded` or
  :class:`parties.errors.PolicyError` (PERMISSION_DENIED) naming the field, audited like every
  refusal.  The rows are reserved (PENDING) at Prepare, counted (SPENT) at Run -- before the
  role starts -- and given back only if the session ended before Run; a crash leaves them
  SPENT.
* **At the data owner, before it sends anything** (:func:`check_plausible`): the model owner
  cannot see the secret rows, so it sends its requirements (:class:`Requirements`: the model's
  features, ``feature_bounds``, ``min_distinct_rows``, ``max_sparse_row_fraction``) to the data
  owner as the first message of the session, over their mutual-TLS channel (no coordinator can
  alter it); the data owner's node checks its selected rows against them and refuses -- naming
  the requirement, never a value -- before its first protocol message.  This relies on the data
  owner running this code (semi-honest): one that modifies its node can send any rows.
* **In the protocol**: the owner adds Gaussian noise of ``prediction_noise_std`` to every logit
  it releases (:mod:`smpc.linear`: noise shares on ``ss``, the flood on ``ckks``).

Why (SECURITY.md, "Model owners' policy", has the derivation): with noise of std ``sigma`` on
every released logit and rows within the declared feature ranges ``R_j = hi_j - lo_j``, any
unbiased estimate of weight ``j`` from ``N`` rows has standard deviation at least
``2 sigma / (sqrt(N) R_j)`` (:func:`least_squares_error_floor`); the row budget caps ``N`` per
analyst.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from parties.config import ModelPolicy, PolicyConfig
from parties.errors import LimitExceeded, PolicyError, StorageError
from parties.privacy.store import open_database, read_transaction, utc_now, write_transaction

__all__ = [
    "DAY_SECONDS",
    "ModelGate",
    "ModelUsage",
    "Requirements",
    "UsageStatus",
    "check_plausible",
    "least_squares_error_floor",
    "model_names",
    "rows_for_precision",
]

DAY_SECONDS = 86_400.0
MAX_REQUIREMENTS_BYTES = 1 << 20
_MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PENDING, SPENT, REFUNDED = "pending", "spent", "refunded"


def model_names(directory: Path) -> list[str]:
    """The names of the models in ``directory`` (``<name>.json.enc`` / ``<name>.json``),
    without reading them."""
    if not directory.is_dir():
        return []
    names = {p.name.removesuffix(".json.enc") for p in directory.glob("*.json.enc")}
    names |= {p.stem for p in directory.glob("*.json")}
    return sorted(n for n in names if _MODEL_NAME_RE.match(n))


# ----------------------------------------------------------------------------- the bound


def least_squares_error_floor(sigma: float, rows: int, ranges: Sequence[float]) -> np.ndarray:
    """Per weight, the least standard deviation of an unbiased estimate (least squares
    included) of that weight from ``rows`` predictions with Gaussian noise of std ``sigma`` on
    rows whose feature ``j`` spans at most ``ranges[j]``: ``2 sigma / (sqrt(rows) R_j)``.

    Cramer-Rao: ``Var(w_j) >= sigma^2 [(X^T X)^-1]_jj`` (intercept column included), and
    ``1 / [(X^T X)^-1]_jj`` is the residual sum of squares of column ``j`` regressed on the
    others and the intercept, at most ``sum_i (x_ij - mean_j)^2 <= rows R_j^2 / 4``.
    """
    return 2.0 * sigma / (math.sqrt(rows) * np.asarray(ranges))


def rows_for_precision(sigma: float, precision: float, feature_range: float) -> float:
    """The fewest rows with which a weight's estimate can have std ``precision``:
    ``4 sigma^2 / (precision^2 R^2)`` (the inverse of :func:`least_squares_error_floor`)."""
    return 4.0 * sigma**2 / (precision**2 * feature_range**2)


# ---------------------------------------------------------------------- plausible rows


@dataclass(frozen=True)
class Requirements:
    """What the model owner requires of the rows its model runs on, sent to the data owner."""

    model: str
    features: tuple[str, ...]
    feature_bounds: tuple[tuple[float, float] | None, ...]
    min_distinct_rows: int
    max_sparse_row_fraction: float
    feature_bound: float = 0.0   # the public bound of the model owner's spec (0: not sent)

    @classmethod
    def of(cls, name: str, features: Sequence[str], mp: ModelPolicy,
           feature_bound: float = 0.0) -> Requirements:
        """``feature_bound``: the bound of the spec the model owner runs with; the data owner
        refuses to go on if it is not the one it checked its rows against (the coordinator
        carries the spec between them)."""
        return cls(name, tuple(features),
                   tuple(mp.feature_bounds.get(f) for f in features),
                   mp.min_distinct_rows, mp.max_sparse_row_fraction, float(feature_bound))

    def to_bytes(self) -> bytes:
        return json.dumps({
            "model": self.model, "features": list(self.features),
            "feature_bounds": [None if b is None else list(b) for b in self.feature_bounds],
            "min_distinct_rows": self.min_distinct_rows,
            "max_sparse_row_fraction": self.max_sparse_row_fraction,
            "feature_bound": self.feature_bound}).encode()

    @classmethod
    def from_bytes(cls, data: bytes, sender: str) -> Requirements:
        """Parse the model owner's message; a malformed one is a :class:`PolicyError`."""
        try:
            doc = json.loads(data)
            features = tuple(str(f) for f in doc["features"])
            bounds = tuple(None if b is None else (float(b[0]), float(b[1]))
                           for b in doc["feature_bounds"])
            req = cls(str(doc["model"]), features, bounds, int(doc["min_distinct_rows"]),
                      float(doc["max_sparse_row_fraction"]),
                      float(doc.get("feature_bound", 0.0)))
        except (ValueError, KeyError, TypeError, IndexError):
            raise PolicyError(f"{sender} sent malformed model requirements") from None
        if len(bounds) != len(features):
            raise PolicyError(f"{sender} sent malformed model requirements")
        return req


def check_plausible(req: Requirements, features: Sequence[str], X: np.ndarray, *, me: str,
                    owner: str) -> None:
    """The data owner's check of its selected rows ``X`` (columns ``features``) against the
    model owner's requirements, before it sends anything.  Raises :class:`PolicyError` naming
    the requirement -- never a value or a row."""
    head = f"{me} refuses to run model {req.model!r} of {owner} on its selected rows"
    if tuple(features) != req.features:
        raise PolicyError(f"{head}: the features it was asked for are not the model's "
                          "(in the model's order)")
    X = np.asarray(X)
    for j, name in enumerate(req.features):
        b = req.feature_bounds[j]
        if b is not None and ((X[:, j] < b[0]) | (X[:, j] > b[1])).any():
            raise PolicyError(f"{head}: a value of feature {name!r} lies outside the model "
                              f"owner's bounds [{b[0]:g}, {b[1]:g}] (feature_bounds)")
    distinct = len(np.unique(X, axis=0))
    if distinct < req.min_distinct_rows:
        raise PolicyError(f"{head}: they hold fewer than {req.min_distinct_rows} distinct rows "
                          "(min_distinct_rows)")
    if X.shape[1] >= 2:
        sparse = float(np.mean(np.count_nonzero(X, axis=1) <= 1))
        if sparse > req.max_sparse_row_fraction:
            raise PolicyError(f"{head}: more than {req.max_sparse_row_fraction:g} of them have "
                              "at most one nonzero feature (max_sparse_row_fraction)")


def rows_within_bounds(req: Requirements, features: Sequence[str], X: np.ndarray, *, me: str,
                       owner: str) -> np.ndarray:
    """The rows of ``X`` within the model owner's ``feature_bounds`` (a boolean mask), for a data
    owner under a DP policy.

    Under DP no refusal may depend on the filter's rows (``parties.privacy.dp_outputs``): a row
    outside the bounds becomes a dummy (no prediction), a rule applied row by row; and the
    distinct-rows and sparse-rows checks of :func:`check_plausible`, which look at the selection
    as a whole, are not applied -- each would be an exact, free bit about the rows the filter
    selects (the cohort oracle again).  Extraction from such a data owner is bounded by the
    prediction noise and the row budget (SECURITY.md, "Model owners' policy").  The features'
    order is still checked: it is public.
    """
    if tuple(features) != req.features:
        raise PolicyError(f"{me} refuses to run model {req.model!r} of {owner} on its selected "
                          "rows: the features it was asked for are not the model's (in the "
                          "model's order)")
    X = np.asarray(X)
    keep = np.ones(X.shape[0], dtype=bool)
    for j, b in enumerate(req.feature_bounds):
        if b is not None:
            keep &= (X[:, j] >= b[0]) & (X[:, j] <= b[1])
    return keep


# ----------------------------------------------------------------------- usage ledger


class ModelUsageError(StorageError):
    """The usage ledger cannot do what was asked (unknown session, wrong state)."""


@dataclass(frozen=True)
class UsageStatus:
    """One analyst's use of one model: rows counted (pending + spent) and requests counted in
    the window."""

    rows: int
    requests_in_window: int


_SCHEMA = """
CREATE TABLE IF NOT EXISTS model_usage (
    session_id  TEXT PRIMARY KEY,
    analyst     TEXT NOT NULL,
    model       TEXT NOT NULL,
    rows        INTEGER NOT NULL CHECK (rows > 0),
    state       TEXT NOT NULL CHECK (state IN ('pending', 'spent', 'refunded')),
    reserved_at TEXT NOT NULL,
    reserved_epoch REAL NOT NULL,
    settled_at  TEXT,
    reason      TEXT
);
CREATE INDEX IF NOT EXISTS model_usage_by_analyst ON model_usage (analyst, model, state)
"""


class ModelUsage:
    """Per-analyst, per-model rows predicted and requests made, in the party's SQLite file.

    Life of a use, like a privacy charge (:mod:`parties.privacy.ledger`): ``reserve`` at
    Prepare (PENDING: counts at once; the check and the insert are one ``BEGIN IMMEDIATE``
    transaction, so two concurrent requests cannot both take the last rows), ``commit`` at Run
    (SPENT), ``refund`` only while PENDING (the session ended before Run), ``recover`` at start
    (PENDING left by a crash becomes SPENT).  The request window uses the wall clock
    (``time.time()``; a clock set back lengthens it, forward shortens it).
    """

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        with self._write() as con:
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    con.execute(stmt)

    def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return write_transaction(open_database(self.path, "model usage", ModelUsageError))

    def _read(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return read_transaction(open_database(self.path, "model usage", ModelUsageError))

    def _status(self, con: sqlite3.Connection, analyst: str, model: str) -> UsageStatus:
        since = self.clock() - DAY_SECONDS
        rows, recent = con.execute(
            "SELECT COALESCE(SUM(rows), 0), COALESCE(SUM(reserved_epoch > ?), 0) FROM "
            "model_usage WHERE analyst = ? AND model = ? AND state IN ('pending', 'spent')",
            (since, analyst, model)).fetchone()
        return UsageStatus(int(rows), int(recent))

    def status(self, analyst: str, model: str) -> UsageStatus:
        with self._read() as con:
            return self._status(con, analyst, model)

    def reserve(self, session_id: str, analyst: str, model: str, rows: int,
                check: Callable[[UsageStatus], None]) -> None:
        """Record ``rows`` of ``model`` for ``analyst`` as PENDING, after ``check`` (which
        raises to refuse) passed on the usage read in the same transaction."""
        with self._write() as con:
            if con.execute("SELECT 1 FROM model_usage WHERE session_id = ?",
                           (session_id,)).fetchone() is not None:
                raise ModelUsageError(f"session {session_id!r} already used a model")
            check(self._status(con, analyst, model))
            con.execute(
                "INSERT INTO model_usage (session_id, analyst, model, rows, state, reserved_at, "
                "reserved_epoch) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                (session_id, analyst, model, int(rows), utc_now(), self.clock()))

    def _settle(self, session_id: str, frm: str, to: str, reason: str) -> bool:
        with self._write() as con:
            cur = con.execute(
                "UPDATE model_usage SET state = ?, settled_at = ?, reason = ? "
                "WHERE session_id = ? AND state = ?", (to, utc_now(), reason, session_id, frm))
            return cur.rowcount == 1

    def commit(self, session_id: str) -> None:
        """PENDING -> SPENT before the role starts; raises if the use was refunded."""
        if not self._settle(session_id, PENDING, SPENT, "run"):
            with self._read() as con:
                row = con.execute("SELECT state FROM model_usage WHERE session_id = ?",
                                  (session_id,)).fetchone()
            if row is None or row[0] != SPENT:
                raise ModelUsageError(f"the model use of session {session_id!r} was "
                                      "given back; it must not run")

    def refund(self, session_id: str, reason: str) -> bool:
        """PENDING -> REFUNDED (the session ended before Run); False if not pending."""
        return self._settle(session_id, PENDING, REFUNDED, reason)

    def pending(self) -> list[str]:
        with self._read() as con:
            return [s for (s,) in con.execute(
                "SELECT session_id FROM model_usage WHERE state = 'pending'")]

    def recover(self) -> list[str]:
        """At start: every PENDING use becomes SPENT (it may have run before a crash)."""
        ids = self.pending()
        for sid in ids:
            self._settle(sid, PENDING, SPENT, "kept as spent at recovery")
        return ids


# ------------------------------------------------------------------------------ the gate


class ModelGate:
    """The model owner's checks of one inference request against its model's policy."""

    def __init__(self, party: str, policy: PolicyConfig, usage: ModelUsage) -> None:
        self.party = party
        self.policy = policy
        self.usage = usage

    def _field(self, name: str, what: str) -> str:
        return f"policy.models.{name}.{what}"

    def precheck(self, analyst: str, name: str, rows: int) -> ModelPolicy:
        """Who and how many rows, then the usage so far (not atomic: :meth:`reserve` decides);
        before the model is loaded.  Returns the model's policy."""
        mp = self.policy.model(name)
        if mp.allowed_analysts is not None and analyst not in mp.allowed_analysts:
            raise PolicyError(f"{self.party} refuses: analyst {analyst!r} may not run model "
                              f"{name!r} ({self._field(name, 'allowed_analysts')})")
        if rows > mp.max_rows_per_request:
            raise LimitExceeded(
                f"{self.party} refuses: this inference covers {rows:,} rows; model {name!r} "
                f"may run on at most {mp.max_rows_per_request:,} per request "
                f"({self._field(name, 'max_rows_per_request')})", "max_rows_per_request")
        self._check_usage(analyst, name, rows, mp, self.usage.status(analyst, name))
        return mp

    def _check_usage(self, analyst: str, name: str, rows: int, mp: ModelPolicy,
                     st: UsageStatus) -> None:
        if st.requests_in_window >= mp.max_requests_per_day:
            raise LimitExceeded(
                f"{self.party} refuses: analyst {analyst!r} ran model {name!r} "
                f"{st.requests_in_window:,} times in the last 24 hours; its policy allows at "
                f"most {mp.max_requests_per_day:,} ({self._field(name, 'max_requests_per_day')})",
                "max_requests_per_day")
        left = max(0, mp.prediction_budget_rows - st.rows)
        if rows > left:
            raise LimitExceeded(
                f"{self.party} refuses: this inference covers {rows:,} rows; analyst "
                f"{analyst!r} has {left:,} left of model {name!r}'s prediction budget of "
                f"{mp.prediction_budget_rows:,} rows "
                f"({self._field(name, 'prediction_budget_rows')})", "prediction_budget_rows")

    def reserve(self, session_id: str, analyst: str, name: str, rows: int) -> None:
        """Reserve the rows and the request atomically (PENDING), or refuse naming the limit."""
        mp = self.policy.model(name)
        self.usage.reserve(session_id, analyst, name, rows,
                           lambda st: self._check_usage(analyst, name, rows, mp, st))
