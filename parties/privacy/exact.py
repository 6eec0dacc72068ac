"""Exact mode: what a party does before it lets an exact (non-DP) answer leave.

A party answers a statistic without differential privacy only if its policy says
``"require_dp": false`` -- an explicit opt-in (``smpc federation init --allow-exact``); the
default policy refuses.  An exact answer is not private: it can always be combined with others.
What the safeguards below ensure is narrower: **one query does not return one person's value**,
and the simplest pair of queries that would (two answers whose rows differ by one person) is
refused.  Each is enforced by the party itself, on its own rows, before anything leaves -- the
coordinator is not trusted to do it.

* **Small cells suppressed** (``policy.min_cell_size``, default 10): the party sends every cell
  of its own histogram (bins, ``below``, ``above``) and of the fine histogram behind quantiles
  that holds fewer than ``min_cell_size`` of its rows as 0
  (:func:`smpc.stats.suppress_small_cells`).  The joint cell is a sum of the parties' cells, so
  every released cell is 0 or at least ``min_cell_size``: nobody is alone in a released bin.
  *Bias*: a released cell is short of its true count by the rows of each party that had fewer
  than ``min_cell_size`` there (at most ``P (min_cell_size - 1)`` over ``P`` parties); a
  column's released cells add up to ``n`` minus the suppressed rows, and quantiles are read off
  the rows that remain (sparse tails are dropped, so tail quantiles move inward).
  *What remains*: ``n`` is exact, so ``n`` minus the released total is the number of suppressed
  rows -- not their cells; a two-bin histogram whose one bin is suppressed thus says that bin
  holds 1 to ``min_cell_size - 1`` rows, the same bit a refused minimum cohort gives.
* **Quantile extremes refused** (``policy.exact_quantile_margin`` ``m``, default 0.05): exact
  quantile probabilities must lie in ``[m, 1 - m]``; ``0`` (the minimum) and ``1`` (the maximum)
  are refused before any row is read.  The refusal depends only on the public request.  With
  suppression, every quantile the recipient reads -- whatever probability it finishes with,
  since it receives the whole fine histogram -- lies in a bin holding at least
  ``min_cell_size`` rows of one party: it is never a lone person's value.
* **Differencing pairs refused** (``policy.exact_history``, default 1000 row sets): the party
  keeps, per analyst and dataset, the set of its rows each exact answer covered (a packed
  bitmap of row indices in its SQLite file, the newest ``exact_history``), and refuses an exact
  statistic whose selected rows differ from one of them -- symmetric difference -- by fewer
  than ``min_cohort_size`` rows, unless it is the very same filter over the very same rows.
  This stops "two sums differing by one person's quasi-identifiers".  *What the refusal
  reveals*: that fewer than ``min_cohort_size`` of the party's rows lie in ``S xor T`` for some
  earlier exact answer ``T`` -- exactly the bit a minimum-cohort refusal of the filter
  ``(S and not T) or (T and not S)`` already gives, for free, in exact mode.  A different filter
  over the same rows is refused too, so the refusal does not tell "no difference" from "one
  person"; it names no earlier request and no count.  A row set is recorded when the party
  accepts the request at ``Prepare`` -- a session that then fails elsewhere still counts (the
  conservative choice).  Cost: each exact request reads and compares up to ``exact_history``
  bitmaps of ``rows / 8`` bytes (125 MB for a million-row table at the default).
  *What remains*: three or more answers combine (``sum(A) - sum(B) - sum(C)`` with
  ``|A xor B| >= min_cohort_size``, the classic tracker); analysts who collude pool their
  histories; an analyst who asks ``exact_history`` other exact questions in between is no
  longer compared with the old one; exact counts, sums and means over cohorts of at least
  ``min_cohort_size`` rows are released as they are -- a sum in which one person's value
  dominates (one income of 10^7 among incomes of 10^4) is mostly that person's value, and no
  dominance rule is applied.  Only differential privacy (whose clipping caps any one person's
  influence and whose budget prices every answer) addresses these: keep ``require_dp``.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import threading
from pathlib import Path

import numpy as np

from parties.config import PolicyConfig
from parties.errors import PolicyError, StorageError
from parties.privacy.store import Database, open_database, utc_now, write_transaction
from smpc.names import Statistic
from smpc.stats import StatSpec

__all__ = ["SAFEGUARDS_OFF", "DifferencingRefused", "ExactHistory", "cell_floor",
           "check_exact_spec"]

#: The exact-mode policy fields with every safeguard off: the behaviour before issue 12, for
#: tests and benchmarks that compare exact answers on small cohorts and fine histograms with
#: plaintext (``init_federation(allow_exact=True, exact_safeguards=SAFEGUARDS_OFF)``).  Never
#: for a deployment.
SAFEGUARDS_OFF: dict[str, int | float] = {"min_cell_size": 1, "exact_quantile_margin": 0.0,
                                          "exact_history": 0}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS exact_row_sets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    analyst TEXT NOT NULL,
    dataset TEXT NOT NULL,
    filter_sha256 TEXT NOT NULL,
    n_table INTEGER NOT NULL,
    bitmap BLOB NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS exact_row_sets_who ON exact_row_sets (analyst, dataset, id);
"""


class DifferencingRefused(PolicyError):
    """An exact request whose rows differ from an earlier exact answer's by too few rows."""


def check_exact_spec(party: str, policy: PolicyConfig, spec: StatSpec) -> None:
    """Refuse an exact ``quantiles`` request with a probability outside ``[m, 1 - m]``
    (``m = policy.exact_quantile_margin``): it would return the minimum or maximum person.

    Depends only on the public request, so the refusal reveals nothing about the data.
    """
    m = policy.exact_quantile_margin
    if spec.dp is not None or spec.statistic != Statistic.QUANTILES or m <= 0:
        return
    outside = [p for p in spec.probabilities if not m <= p <= 1.0 - m]
    if outside:
        shown = ", ".join(f"{p:g}" for p in outside)
        raise PolicyError(
            f"{party} refuses exact quantiles at probability {shown}: its policy answers exact "
            f"quantiles between {m:g} and {1.0 - m:g} only (policy.exact_quantile_margin), so "
            "that the smallest and largest values are not returned; ask with differential "
            "privacy for the extremes")


def cell_floor(policy: PolicyConfig, spec: StatSpec) -> int:
    """The ``min_cell_size`` a party applies to its cells for ``spec``: the policy's for an
    exact histogram or quantiles, 0 (nothing suppressed) otherwise."""
    if spec.dp is not None or spec.statistic not in (Statistic.HISTOGRAM, Statistic.QUANTILES):
        return 0
    return int(policy.min_cell_size)


def _difference(a: bytes, b: bytes) -> int:
    """Rows in one packed bitmap and not the other (the shorter one padded with zeros)."""
    x = np.frombuffer(a, dtype=np.uint8)
    y = np.frombuffer(b, dtype=np.uint8)
    if x.size < y.size:
        x, y = y, x
    diff = x.copy()
    diff[: y.size] ^= y
    return int(np.unpackbits(diff).sum())


class ExactHistory:
    """The row sets of the exact answers one party gave, per analyst and dataset, in its SQLite
    file beside its ledger (see the module docstring).

    :meth:`admit` checks a new exact request against the history and records it in one
    ``BEGIN IMMEDIATE`` transaction (and under a lock), so two concurrent Prepares cannot both
    pass unseen by each other.
    """

    def __init__(self, path: str | Path, *, db: Database | None = None) -> None:
        """``db``: the node's kept-open connection to ``path`` (default: a connection per
        call)."""
        self.path = Path(path)
        self._db = db
        self._lock = threading.Lock()
        con = open_database(self.path, "exact-answer history", StorageError)
        try:
            con.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot open the exact-answer history {str(self.path)!r}: "
                               f"{exc}.") from None
        finally:
            con.close()

    def admit(self, *, me: str, analyst: str, dataset: str, filter_text: str,
              selected: np.ndarray, n_table: int, min_difference: int, keep: int) -> None:
        """Record the rows ``selected`` (1-based row numbers, or a boolean mask of the table)
        of an exact answer to ``analyst``, or raise :class:`DifferencingRefused` if they differ
        from an earlier answer's by 1 to ``min_difference - 1`` rows, or by none under another
        filter.  ``keep`` (the policy's ``exact_history``) bounds the rows kept; 0: no check."""
        if keep <= 0 or min_difference <= 1:
            return
        mask = np.zeros(n_table, dtype=bool)
        sel = np.asarray(selected)
        if sel.dtype == np.bool_:
            mask[: sel.size] = sel[:n_table]
        else:
            mask[sel.astype(np.int64) - 1] = True
        bitmap = np.packbits(mask).tobytes()
        digest = hashlib.sha256(filter_text.encode()).hexdigest()
        with self._lock, self._write() as con:
            rows = con.execute(
                "SELECT id, filter_sha256, bitmap FROM exact_row_sets "
                "WHERE analyst = ? AND dataset = ? ORDER BY id DESC LIMIT ?",
                (analyst, dataset, int(keep))).fetchall()
            same = False
            for _id, other_digest, other in rows:
                d = _difference(bitmap, other)
                if d == 0 and other_digest == digest:
                    same = True
                elif d < min_difference:
                    raise DifferencingRefused(
                        f"{me} refuses: the rows of this exact request differ from those of "
                        f"an earlier exact answer to {analyst!r} by fewer than "
                        f"{min_difference} of its rows (policy.min_cohort_size); the two "
                        "answers together would tell those rows' values. Ask with "
                        "differential privacy, or with the earlier request's filter")
            if same:
                return
            con.execute(
                "INSERT INTO exact_row_sets (analyst, dataset, filter_sha256, n_table, "
                "bitmap, created) VALUES (?, ?, ?, ?, ?, ?)",
                (analyst, dataset, digest, int(n_table), bitmap, utc_now()))
            con.execute(
                "DELETE FROM exact_row_sets WHERE analyst = ? AND dataset = ? AND id NOT IN "
                "(SELECT id FROM exact_row_sets WHERE analyst = ? AND dataset = ? "
                "ORDER BY id DESC LIMIT ?)", (analyst, dataset, analyst, dataset, int(keep)))

    def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        if self._db is not None:
            return self._db.write()
        return write_transaction(open_database(self.path, "exact-answer history",
                                               StorageError))

    def count(self, analyst: str, dataset: str) -> int:
        """How many row sets are kept for ``analyst`` on ``dataset``."""
        con = open_database(self.path, "exact-answer history", StorageError)
        try:
            return int(con.execute("SELECT COUNT(*) FROM exact_row_sets WHERE analyst = ? AND "
                                   "dataset = ?", (analyst, dataset)).fetchone()[0])
        finally:
            con.close()
