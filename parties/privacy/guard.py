"""A party's own privacy enforcement: policy, privacy-budget ledger, audit log, data at rest.

Zero trust.  Everything here runs **inside the party node** and decides on the party's own
configuration; the coordinator's opinion is never consulted.  :class:`parties.node.PartyNode`
calls it at every request:

``Describe``            :meth:`PrivacyGuard.describe_allowed` -- analyst allowed? -- audited.
``Prepare`` (statistic, inference)
    1. :meth:`PolicyGate.check_access`: the analyst is in ``allowed_analysts``; every column the
       request reads, *including its filter's*, is allowed for that computation
       (``allowed_columns`` + ``columns_by_computation``);
    2. :meth:`PolicyGate.check_dp` (statistics): an exact request is refused when the policy says
       ``require_dp``; a DP request's clipping bounds must lie within the policy's ``bounds``, and
       a column the request gives no bounds for gets the policy's (the *effective* spec, returned
       to the coordinator in ``PrepareResponse.spec_json``);
    3. budget pre-check: a DP request that no longer fits the analyst's remaining budget is
       refused *before* any row is read, so an analyst without budget learns nothing more;
    4. the rows are selected; :meth:`PolicyGate.check_cohort`: fewer than ``min_cohort_size``
       selected rows (a statistic's contribution, or an inference's data owner) is refused --
       in exact mode only: under DP no decision rests on the exact rows
       (:mod:`parties.privacy.dp_outputs`: no cohort refusal, missing values dropped, the range
       decided on public quantities, inferences padded to a public size);
    5. :meth:`PrivacyGuard.reserve`: the DP cost is reserved in the ledger (PENDING, durable,
       atomic against concurrent requests: see :mod:`parties.privacy.ledger`).  Over budget is
       refused
       (PERMISSION_DENIED) with the remaining budget, in rho and in (epsilon, delta), in the
       message.
    Every outcome -- accepted or refused at any step -- is one audit record; a refused statistic
    is also a ``refused`` event of the ledger.
``Run``                 :meth:`PrivacyGuard.commit`: the charge becomes SPENT **before** the role
                        starts, i.e. before the party's first noisy message can leave.  The role
                        never starts unless the commit succeeded.
``Abort`` / expiry / shutdown before ``Run``
                        :meth:`PrivacyGuard.refund`: the PENDING charge is refunded -- only
                        possible while it is PENDING, i.e. while nothing has left.
role finished / failed  one audit record (``released`` / ``failed``); a failure after the commit
                        keeps the charge (the contribution may have left).

Why refund and commit cannot both win: both are ``BEGIN IMMEDIATE`` transactions on the same
SQLite row; :meth:`parties.privacy.ledger.Ledger.commit` refuses a refunded charge and
:meth:`~parties.privacy.ledger.Ledger.abort` refuses a spent one.  So whatever the interleaving of
``Run``, ``Abort``, the session reaper and a shutdown, either the role runs and the charge is
spent, or the charge is refunded and the role never runs.

Crashes. A node killed after reserving and before committing leaves a PENDING charge; at the next
start :meth:`PrivacyGuard.start` calls :meth:`~parties.privacy.ledger.Ledger.recover`, which keeps
it as SPENT (the conservative choice), and writes one audit record per recovered charge. A node
killed after the commit leaves a SPENT charge. Either way the budget is never spent twice (a
session id is charged at most once) nor refunded silently.

Audit records and refusal events are written behind (:meth:`PrivacyGuard.record` queues them on
the kept-open :class:`~parties.privacy.store.Database`); the node waits for them before a
refusal is answered, at ``Run`` before anything of the session leaves (the ``accepted``
record) and before ``Await`` is answered (``released`` / ``failed``).  A crash loses at most
the records not yet waited for -- a suffix of the queue, so the hash chain stays valid --
never a reservation or a commit (synchronous).  The full table is in SECURITY.md, "Audit and
ledger writes". """

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from parties.config import PartyConfig
from parties.errors import PolicyError, StorageError
from parties.privacy.audit import AuditError, AuditEvent, AuditLog
from parties.privacy.ledger import BudgetExceeded, Ledger, LedgerError, Reservation
from parties.privacy.policy import PolicyGate, PolicyRequest, _fmt
from parties.privacy.store import Database
from smpc import dp
from smpc.errors import InputError

log = logging.getLogger("smpc.privacy")


@dataclass
class _Open:
    """A session of this process whose charge is still PENDING."""

    request: PolicyRequest
    rho: float


class PrivacyGuard:
    """Policy + ledger + audit log of one party (see the module docstring).

    Opens the ledger and the audit log in ``cfg.database`` (created 0600 if needed) on one
    kept-open connection (:attr:`db`, closed by :meth:`close`).  Call :meth:`start` once before
    serving: it sets each allowed analyst's budget from the policy and settles the charges a
    crash left pending.

    Written behind (queued on :attr:`db`, see :mod:`parties.privacy.store`): audit records
    (:meth:`record` returns the ticket) and a refusal's ledger event.  Written synchronously
    (durable when they return, after every write queued before them): :meth:`reserve` (so
    before anything of the session can leave), :meth:`commit` (SPENT before ``Run`` answers)
    and :meth:`refund`.  The node settles
    (:meth:`settle`) the records of a session before the answer that ends it there -- see
    :mod:`parties.node.party` for the points and SECURITY.md for what a crash leaves.
    """

    def __init__(self, cfg: PartyConfig) -> None:
        self.cfg = cfg
        self.party = cfg.name
        self.policy = cfg.policy
        self.gate = PolicyGate(cfg.name, cfg.policy)
        self.dataset = cfg.policy.dataset or cfg.name
        self.total_rho = dp.rho_from_epsilon(cfg.policy.epsilon, cfg.policy.delta)
        self.db = Database(cfg.database, "party database", StorageError)
        self.ledger = Ledger(cfg.database, db=self.db)
        self.audit = AuditLog(cfg.database, db=self.db)
        self._open: dict[str, _Open] = {}
        self._lock = threading.Lock()
        self._me = f"{cfg.name} (this node)"

    # ------------------------------------------------------------------- start-up

    def start(self) -> list[Reservation]:
        """Set the budgets from the policy, recover pending charges; audit both (durable when
        it returns)."""
        for analyst in self.policy.allowed_analysts:
            before = self.ledger.status(analyst, self.dataset)
            st = self.ledger.set_budget(analyst, self.dataset, self.total_rho)
            if before is None or before.total != st.total:
                self._append(AuditEvent(
                    caller=self._me, analyst=analyst, session_id="", computation="budget",
                    outcome="accepted", rho=self.total_rho, epsilon=self.policy.epsilon,
                    delta=self.policy.delta,
                    reason=f"privacy budget on dataset {self.dataset!r} set from the policy: "
                           f"epsilon {_fmt(self.policy.epsilon)} at delta "
                           f"{self.policy.delta:g} = rho {_fmt(self.total_rho)} "
                           f"(remaining rho {_fmt(st.remaining)})"))
        recovered = self.ledger.recover()
        for r in recovered:
            self._append(AuditEvent(
                caller=self._me, analyst=r.analyst, session_id=r.session_id,
                computation="recovery", outcome="failed", rho=r.rho,
                epsilon=self._epsilon(r.rho), delta=self.policy.delta,
                reason=f"node restarted with this charge pending: {r.reason}"))
            log.warning("%s: pending charge of session %s (rho %s) kept as spent at recovery",
                        self.party, r.session_id, _fmt(r.rho))
        self.db.flush()
        return recovered

    def close(self) -> None:
        """Commit every queued write, stop the writer and close the connection (shutdown)."""
        self.db.close()

    def settle(self, tickets: Collection[int]) -> None:
        """Block until the queued writes ``tickets`` (and all queued before them) are durable;
        :class:`~parties.errors.StorageError` if one of them failed."""
        self.db.settle([t for t in tickets if t])

    # ------------------------------------------------------------------- auditing

    def _append(self, event: AuditEvent) -> int:
        """Queue ``event`` for the audit log; its ticket for :meth:`settle`."""
        return self.db.later(lambda: self.audit.append(event))

    def _ledger_refusal(self, session_id: str, analyst: str, rho: float | None,
                        reason: str) -> int:
        """Queue a ledger ``refused`` event (a malformed analyst name: only the log line)."""
        def write() -> None:
            try:
                self.ledger.record_refusal(session_id, analyst, self.dataset, rho, reason)
            except LedgerError as exc:  # a malformed analyst name: the audit record stands
                log.info("ledger refusal not recorded: %s", exc)
        return self.db.later(write)

    def _epsilon(self, rho: float) -> float | None:
        if rho <= 0:
            return 0.0
        try:
            return dp.epsilon_from_rho(rho, self.policy.delta)
        except InputError:
            return None

    def _cost_fields(self, cost: dp.PrivacyCost | None) -> dict[str, float | None]:
        if cost is None:
            return {"rho": None, "epsilon": None, "delta": None}
        delta = cost.delta if cost.delta is not None else self.policy.delta
        try:
            eps = dp.epsilon_from_rho(cost.rho, delta)
        except InputError:
            eps = None
        return {"rho": cost.rho, "epsilon": eps, "delta": delta}

    def record(self, req: PolicyRequest, outcome: str, reason: str = "", *,
               ledger_logged: bool = False) -> int:
        """One audit record for ``req``; a refused statistic is also a ledger ``refused`` event
        (unless the ledger already logged it, as :meth:`Ledger.reserve` does).  Both are
        queued; returns the last ticket (for :meth:`settle`)."""
        reason = (reason or "").replace("\n", " ")[:1000]
        fields: dict[str, Any] = dict(
            caller=req.caller[:512] or "unknown", caller_fingerprint=req.caller_fingerprint,
            analyst=req.analyst[:256], session_id=req.session_id[:128],
            computation=(req.computation or req.kind)[:128], backend=req.backend,
            columns=tuple(dict.fromkeys((*req.columns, *req.filter_columns))),
            filter=req.filter, recipient=req.recipient, outcome=outcome, reason=reason,
            request_hash=req.request_hash, members=req.members,
            **self._cost_fields(req.cost))
        try:
            event = AuditEvent(**fields)
        except AuditError:  # malformed request metadata: record what can be recorded
            fields.update(columns=(), filter=None, backend=None, recipient=None, members=(),
                          reason=("(malformed request metadata) " + reason)[:1000])
            event = AuditEvent(**fields)
        ticket = self._append(event)
        log.info("policy %s: session=%s kind=%s analyst=%s columns=%s filter_columns=%s%s",
                 outcome, req.session_id or "-", req.kind, req.analyst,
                 ",".join(req.columns) or "-", ",".join(req.filter_columns) or "-",
                 f" reason={reason}" if reason else "")
        if outcome == "refused" and req.kind == "stat" and not ledger_logged \
                and req.session_id and req.analyst:
            ticket = self._ledger_refusal(req.session_id, req.analyst,
                                          req.cost.rho if req.cost else None, reason)
        return ticket

    def describe_allowed(self, req: PolicyRequest) -> None:
        """Audit a Describe; refuse an analyst the policy does not serve."""
        try:
            self.gate.check_access(req)
        except PolicyError as exc:
            self.settle([self.record(req, "refused", str(exc))])
            raise
        self.settle([self.record(req, "accepted",
                                 "public metadata (allowed column names, model features)")])

    # -------------------------------------------------------------------- budget

    def budget_message(self, analyst: str) -> str:
        st = self.ledger.status(analyst, self.dataset)
        remaining = st.remaining if st else 0.0
        total = st.total if st else 0.0
        eps = self._epsilon(remaining)
        eps_text = f", epsilon {eps:.4g} at delta {self.policy.delta:g}" if eps is not None else ""
        return (f"remaining rho {_fmt(remaining)}{eps_text}, of a total rho {_fmt(total)} "
                f"(epsilon {_fmt(self.policy.epsilon)} at delta {self.policy.delta:g})")

    def _over_budget(self, req: PolicyRequest) -> BudgetExceeded:
        assert req.cost is not None
        cost = req.cost
        asked = f"rho {_fmt(cost.rho)}"
        if cost.delta is not None and cost.epsilon is not None:
            asked += f" (epsilon {cost.epsilon:.4g} at delta {cost.delta:g})"
        st = self.ledger.status(req.analyst, self.dataset)
        return BudgetExceeded(
            f"{self.party} refuses: the privacy budget of analyst {req.analyst!r} on dataset "
            f"{self.dataset!r} is exhausted: {self.budget_message(req.analyst)}; this request "
            f"costs {asked}",
            analyst=req.analyst, dataset=self.dataset,
            remaining=st.remaining if st else 0.0, requested=cost.rho,
            total=st.total if st else 0.0)

    def precheck_budget(self, req: PolicyRequest) -> None:
        """Refuse, before any row is read, a DP request that cannot fit any more (not atomic:
        :meth:`reserve` decides)."""
        if req.cost is None:
            return
        if req.cost.rho > self.ledger.remaining(req.analyst, self.dataset) * (1 + 1e-12):
            exc = self._over_budget(req)
            self._ledger_refusal(req.session_id, req.analyst, req.cost.rho,
                                 f"over budget (pre-check): {exc}")
            raise exc

    def reserve(self, req: PolicyRequest) -> Reservation | None:
        """Reserve ``req.cost`` (PENDING) for the session; None for an exact request."""
        if req.cost is None:
            return None
        try:
            res = self.ledger.reserve(req.session_id, req.analyst, self.dataset, req.cost.rho)
        except BudgetExceeded:
            raise self._over_budget(req) from None
        with self._lock:
            self._open[req.session_id] = _Open(req, req.cost.rho)
        return res

    def commit(self, session_id: str) -> Reservation:
        """PENDING -> SPENT, before anything leaves; raises LedgerError if it was refunded.

        Synchronous (not written behind): the charge is SPENT on disk before ``Run`` answers,
        as the node's ``after-commit`` crash point promises."""
        try:
            return self.ledger.commit(session_id)
        finally:
            with self._lock:
                self._open.pop(session_id, None)

    def refund(self, session_id: str, reason: str) -> bool:
        """Refund a PENDING charge (nothing left). False if there was none, or it is spent."""
        with self._lock:
            opened = self._open.pop(session_id, None)
        try:
            res = self.ledger.abort(session_id, reason)
        except LedgerError:
            return False
        if opened is not None and res.state == "refunded":
            self.record(opened.request, "failed",
                        f"{reason}: nothing was sent, the charge of rho {_fmt(res.rho)} was "
                        "refunded")
        return res.state == "refunded"

    def sweep(self, active: Callable[[str], bool]) -> list[str]:
        """Refund the PENDING charges of this process whose session is no longer active (it
        expired or was aborted before ``Run``); returns their session ids."""
        with self._lock:
            ended = [sid for sid in self._open if not active(sid)]
        return [sid for sid in ended if self.refund(
            sid, "the session ended (aborted or expired) before this party ran it")]

    def pending_sessions(self) -> list[str]:
        with self._lock:
            return list(self._open)
