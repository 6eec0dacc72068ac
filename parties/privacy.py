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
       selected rows (a statistic's contribution, or an inference's data owner) is refused;
    5. :meth:`PrivacyGuard.reserve`: the DP cost is reserved in the ledger (PENDING, durable,
       atomic against concurrent requests: see :mod:`parties.ledger`).  Over budget is refused
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
SQLite row; :meth:`parties.ledger.Ledger.commit` refuses a refunded charge and
:meth:`~parties.ledger.Ledger.abort` refuses a spent one.  So whatever the interleaving of
``Run``, ``Abort``, the session reaper and a shutdown, either the role runs and the charge is
spent, or the charge is refunded and the role never runs.

Crashes.  A node killed after reserving and before committing leaves a PENDING charge; at the next
start :meth:`PrivacyGuard.start` calls :meth:`~parties.ledger.Ledger.recover`, which keeps it as
SPENT (the conservative choice), and writes one audit record per recovered charge.  A node killed
after the commit leaves a SPENT charge.  Either way the budget is never spent twice (a session id
is charged at most once) nor refunded silently.

Fault injection (**tests only -- never set** ``SMPC_FAULT`` **in production**).  The environment
variable ``SMPC_FAULT`` is read once, when a node starts (:func:`install_fault`); unset, it is a
no-op.  It makes that one node misbehave at one named stage, so that crashes, slow peers and
malformed messages can be tested on real processes:

``<stage>`` or ``kill:<stage>``      the node SIGKILLs itself at that stage (no clean-up runs);
``stall:<stage>:<seconds>``         the thread reaching the stage sleeps that long, then goes on
                                    (a slow peer; ``Health`` still answers);
``corrupt:<stage>``                 (``mid-protocol``, ``mid-deal`` only) the node sends its first
                                    protocol message one element (array) or one byte (bytes)
                                    short -- a wrong-length share from a session member;
``duplicate:<stage>``               (same stages) the node sends its first protocol message
                                    twice -- a replayed message.

Stages, by the kind of node that reaches them (:data:`FAULT_STAGES`):

* party -- ``on-prepare`` (the request passed every check, its charge is reserved (PENDING) and
  the session registered; the answer is not sent yet); ``after-charge`` (``Run`` received, the
  charge still PENDING, nothing sent); ``after-commit`` (the charge SPENT, ``Run`` not answered);
  ``on-run`` (``Run`` answered, the role started, before it sends anything); ``mid-protocol``
  (right after its role's first protocol message left); ``on-await`` (its role finished, every
  message it owed was sent; the coordinator's ``Await`` is not answered yet);
* dealer -- ``on-deal`` (``Deal`` received, before anything is dealt); ``mid-deal`` (after the
  triples went to the first owner, before the second);
* coordinator -- ``after-prepare`` (every participant prepared, before ``Run``); ``mid-run``
  (``Run`` went to every participant, before any result is collected).

A stage of another kind of node, or a malformed value, stops the node at start-up with one line.

At rest.  What the party writes to disk beside its database is encrypted with AES-256-GCM
(:mod:`parties.atrest`) under its at-rest key file (``at_rest_key`` in its config, default
``<database>.atrest-key``, created 0600 at first start):

* ``outputs/<session>.csv.enc`` -- predictions it receives as a data owner (columns ``row`` and
  ``prediction``), bound to purpose ``predictions:<party>:<session>``; read them with
  :func:`read_output` or ``smpc outputs read --config PARTY.json SESSION``;
* ``models/<name>.json.enc`` -- models it owns, bound to ``model:<party>:<name>``
  (:func:`write_model`); a plaintext ``models/<name>.json`` an operator drops in is still read.

The audit log and the ledger hold metadata only (names, numbers, reasons; never values, shares,
keys or seeds) in the SQLite file ``database``; the audit log's MAC key is
``<database>.audit-key`` (:mod:`parties.audit`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from parties import atrest
from parties.audit import AuditError, AuditEvent, AuditLog
from parties.config import PartyConfig, PolicyConfig
from parties.errors import ColumnRefused, PolicyError
from parties.ledger import BudgetExceeded, Ledger, LedgerError, Reservation
from parties.tls import Identity
from smpc import dp, linear
from smpc.errors import InputError
from smpc.stats import StatSpec
from smpc.transport import Payload, Transport

__all__ = [
    "FAULT_ENV",
    "FAULT_POINTS",
    "FAULT_STAGES",
    "Fault",
    "PolicyGate",
    "PolicyRequest",
    "PrivacyGuard",
    "agreed_spec",
    "caller_uri",
    "check_effective_spec",
    "fault_point",
    "fault_transport",
    "install_fault",
    "load_at_rest_key",
    "load_models",
    "output_path",
    "read_output",
    "write_model",
    "write_predictions",
]

log = logging.getLogger("smpc.privacy")

FAULT_ENV = "SMPC_FAULT"
FAULT_STAGES: dict[str, tuple[str, ...]] = {
    "party": ("on-prepare", "after-charge", "after-commit", "on-run", "mid-protocol",
              "on-await"),
    "dealer": ("on-deal", "mid-deal"),
    "coordinator": ("after-prepare", "mid-run"),
}
FAULT_POINTS = tuple(s for stages in FAULT_STAGES.values() for s in stages)
_SEND_STAGES = ("mid-protocol", "mid-deal")   # stages reached by a send: may be corrupted
_NO_BOUNDS_STATS = frozenset({"histogram", "quantiles"})  # their bins are public
_SESSION_RE = re.compile(r"^[0-9a-f]{16,64}$")
_MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


# ------------------------------------------------------------------------------ requests


@dataclass(frozen=True)
class PolicyRequest:
    """What a request asks of a party, as its policy and audit log see it (metadata only).

    ``kind``: describe | stat | predict-data | predict-model; ``computation``: the statistic
    (``mean`` ...), ``predict-linear`` / ``predict-logistic`` or ``describe``; ``columns``: the
    value columns it reads; ``filter_columns`` / ``filter``: the columns its filter reads and the
    filter's canonical text; ``n_rows``: rows selected after the filter (None until known);
    ``recipient``: who learns the result; ``cost``: its DP cost (None = exact);
    ``caller`` / ``caller_fingerprint``: the RPC caller's certificate identity.
    """

    analyst: str
    kind: str
    columns: tuple[str, ...] = ()
    filter_columns: tuple[str, ...] = ()
    n_rows: int | None = None
    session_id: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    computation: str = ""
    backend: str | None = None
    filter: str | None = None
    recipient: str | None = None
    cost: dp.PrivacyCost | None = None
    caller: str = ""
    caller_fingerprint: str | None = None

    @property
    def policy_computation(self) -> str:
        """The computation name the policy's ``columns_by_computation`` uses."""
        if self.kind == "predict-data":
            return "predict"
        return self.computation or self.kind


def caller_uri(ident: Identity | None) -> str:
    """``smpc://<federation>/<role>/<name>`` for a verified caller ("unknown" without one)."""
    if ident is None:
        return "unknown"
    fed = ident.federation or "-"
    return f"smpc://{fed}/{ident.role}/{ident.name}"


def _fmt(x: float) -> str:
    return f"{x:.6g}"


# -------------------------------------------------------------------------------- policy


class PolicyGate:
    """A party's own rules, applied to every request before any data is used.

    Each ``check_*`` raises :class:`parties.errors.PolicyError` (PERMISSION_DENIED) or
    :class:`parties.errors.ColumnRefused` (INVALID_ARGUMENT: the same answer for a column that
    does not exist and one the policy hides) naming the rule that refused.
    """

    def __init__(self, party: str, policy: PolicyConfig) -> None:
        self.party = party
        self.policy = policy

    # -- analyst and columns (nothing read yet)

    def check_access(self, req: PolicyRequest) -> None:
        p = self.policy
        if req.analyst not in p.allowed_analysts:
            raise PolicyError(f"{self.party} does not serve analyst {req.analyst!r}")
        comp = req.policy_computation
        allowed = p.columns_for(comp)
        bad = [c for c in (*req.columns, *req.filter_columns) if c not in allowed]
        if bad:
            cols = ", ".join(repr(c) for c in dict.fromkeys(bad))
            where = f" for {comp}" if p.columns_by_computation else ""
            raise ColumnRefused(
                f"{self.party} has no column {cols} it may use{where} "
                f"(its columns{where}: {', '.join(allowed) or 'none'})"
            )

    # -- differential privacy (statistics)

    def check_dp(self, req: PolicyRequest, spec: StatSpec) -> StatSpec:
        """The effective spec: refuses an exact request under ``require_dp`` and DP bounds that
        exceed the policy's; fills in the policy's bounds for columns the request left open."""
        p = self.policy
        if spec.dp is None:
            if p.require_dp:
                raise PolicyError(
                    f"{self.party} refuses exact results: its policy requires differential "
                    "privacy (ask again with epsilon and delta, or rho)"
                )
            return spec
        if spec.statistic in _NO_BOUNDS_STATS:
            return spec
        bounds = dict(spec.dp.bounds)
        for col in spec.value_columns:
            mine = p.bounds.get(col)
            if mine is None:
                continue
            if col not in bounds:
                bounds[col] = mine
                continue
            lo, hi = bounds[col]
            if lo < mine[0] or hi > mine[1]:
                raise PolicyError(
                    f"{self.party} refuses clipping bounds [{lo:g}, {hi:g}] for column "
                    f"{col!r}: its policy allows bounds within [{mine[0]:g}, {mine[1]:g}]"
                )
        if bounds == dict(spec.dp.bounds):
            return spec
        return replace(spec, dp=replace(spec.dp, bounds=bounds))

    # -- cohort (after selection)

    def check_cohort(self, req: PolicyRequest) -> None:
        p = self.policy
        if req.kind in ("stat", "predict-data") and req.n_rows is not None \
                and req.n_rows < p.min_cohort_size:
            raise PolicyError(
                f"{self.party} refuses: fewer than {p.min_cohort_size} of its rows match "
                "(minimum cohort size)"
            )

    def check(self, req: PolicyRequest) -> None:
        """:meth:`check_access` then :meth:`check_cohort`."""
        self.check_access(req)
        self.check_cohort(req)


# ------------------------------------------------------------------------- the guard


@dataclass
class _Open:
    """A session of this process whose charge is still PENDING."""

    request: PolicyRequest
    rho: float


class PrivacyGuard:
    """Policy + ledger + audit log of one party (see the module docstring).

    Opens the ledger and the audit log in ``cfg.database`` (created 0600 if needed).  Call
    :meth:`start` once before serving: it sets each allowed analyst's budget from the policy and
    settles the charges a crash left pending.
    """

    def __init__(self, cfg: PartyConfig) -> None:
        self.cfg = cfg
        self.party = cfg.name
        self.policy = cfg.policy
        self.gate = PolicyGate(cfg.name, cfg.policy)
        self.dataset = cfg.policy.dataset or cfg.name
        self.total_rho = dp.rho_from_epsilon(cfg.policy.epsilon, cfg.policy.delta)
        self.ledger = Ledger(cfg.database)
        self.audit = AuditLog(cfg.database)
        self._open: dict[str, _Open] = {}
        self._lock = threading.Lock()
        self._me = f"{cfg.name} (this node)"

    # ------------------------------------------------------------------- start-up

    def start(self) -> list[Reservation]:
        """Set the budgets from the policy, recover pending charges; audit both."""
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
        return recovered

    # ------------------------------------------------------------------- auditing

    def _append(self, event: AuditEvent) -> None:
        self.audit.append(event)

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
               ledger_logged: bool = False) -> None:
        """One audit record for ``req``; a refused statistic is also a ledger ``refused`` event
        (unless the ledger already logged it, as :meth:`Ledger.reserve` does)."""
        reason = (reason or "").replace("\n", " ")[:1000]
        fields: dict[str, Any] = dict(
            caller=req.caller[:512] or "unknown", caller_fingerprint=req.caller_fingerprint,
            analyst=req.analyst[:256], session_id=req.session_id[:128],
            computation=(req.computation or req.kind)[:128], backend=req.backend,
            columns=tuple(dict.fromkeys((*req.columns, *req.filter_columns))),
            filter=req.filter, recipient=req.recipient, outcome=outcome, reason=reason,
            **self._cost_fields(req.cost))
        try:
            event = AuditEvent(**fields)
        except AuditError:  # malformed request metadata: record what can be recorded
            fields.update(columns=(), filter=None, backend=None, recipient=None,
                          reason=("(malformed request metadata) " + reason)[:1000])
            event = AuditEvent(**fields)
        self._append(event)
        log.info("policy %s: session=%s kind=%s analyst=%s columns=%s filter_columns=%s%s",
                 outcome, req.session_id or "-", req.kind, req.analyst,
                 ",".join(req.columns) or "-", ",".join(req.filter_columns) or "-",
                 f" reason={reason}" if reason else "")
        if outcome == "refused" and req.kind == "stat" and not ledger_logged \
                and req.session_id and req.analyst:
            try:
                self.ledger.record_refusal(req.session_id, req.analyst, self.dataset,
                                           req.cost.rho if req.cost else None, reason)
            except LedgerError as exc:  # a malformed analyst name: the audit record stands
                log.info("ledger refusal not recorded: %s", exc)

    def describe_allowed(self, req: PolicyRequest) -> None:
        """Audit a Describe; refuse an analyst the policy does not serve."""
        try:
            self.gate.check_access(req)
        except PolicyError as exc:
            self.record(req, "refused", str(exc))
            raise
        self.record(req, "accepted", "public metadata (allowed column names, model features)")

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
            self.ledger.record_refusal(req.session_id, req.analyst, self.dataset, req.cost.rho,
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
        """PENDING -> SPENT, before anything leaves; raises LedgerError if it was refunded."""
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


def check_effective_spec(requested: StatSpec, effective: StatSpec, who: str) -> StatSpec:
    """``effective`` if it is ``requested`` with, at most, clipping bounds added for value
    columns the request gave none for (what a party's policy fills in); else InputError."""
    ok = (effective.dp is None) == (requested.dp is None) \
        and replace(effective, dp=None) == replace(requested, dp=None)
    if ok and requested.dp is not None and effective.dp is not None:
        a, b = requested.dp, effective.dp
        added = set(b.bounds) - set(a.bounds)
        ok = replace(a, bounds={}) == replace(b, bounds={}) \
            and all(b.bounds.get(c) == v for c, v in a.bounds.items()) \
            and added <= set(requested.value_columns)
    if not ok:
        raise InputError(f"{who} answered with a computation other than the one requested")
    return effective


def agreed_spec(requested: StatSpec, answers: dict[str, StatSpec | None]) -> StatSpec:
    """The one effective spec every party answered (None: the party left it unchanged).

    Raises InputError naming the parties whose policies filled in different clipping bounds:
    the noise shares must all follow one plan for the stated guarantee to hold.
    """
    effective = {who: requested if e is None else check_effective_spec(requested, e, who)
                 for who, e in answers.items()}
    distinct = {json.dumps(e.to_json(), sort_keys=True) for e in effective.values()}
    if len(distinct) <= 1:
        return next(iter(effective.values()), requested)
    cols = sorted({c for e in effective.values() if e.dp is not None for c in e.dp.bounds
                   if requested.dp is None or c not in requested.dp.bounds})

    def shown(e: StatSpec, c: str) -> str:
        return str(list(e.dp.bounds[c])) if e.dp is not None and c in e.dp.bounds else "none"

    views = "; ".join(f"{who}: " + ", ".join(f"{c} {shown(e, c)}" for c in cols)
                      for who, e in effective.items())
    raise InputError(
        f"the parties' policies give different clipping bounds ({views}); give the bounds "
        "in the request (each within every party's policy)")


@dataclass(frozen=True)
class Fault:
    """A parsed ``SMPC_FAULT`` (module docstring): ``action`` kill | stall | corrupt |
    duplicate."""

    action: str
    stage: str
    seconds: float = 0.0

    @classmethod
    def parse(cls, text: str, kind: str) -> Fault:
        """``text`` for a node of ``kind`` (party | dealer | coordinator); InputError if it is
        malformed or names a stage this kind of node never reaches."""
        parts = text.strip().split(":")
        if len(parts) == 1:
            parts = ["kill", *parts]
        action, stage = parts[0], parts[1]
        stages = FAULT_STAGES.get(kind, ())
        ok = (action in ("kill", "corrupt", "duplicate") and len(parts) == 2) or \
            (action == "stall" and len(parts) == 3)
        sends = [s for s in stages if s in _SEND_STAGES]
        if not ok or stage not in stages or (action in ("corrupt", "duplicate")
                                             and stage not in sends):
            raise InputError(
                f"{FAULT_ENV}={text[:80]!r} is not a fault a {kind} node can inject (the forms: "
                "<stage>, kill:<stage>, stall:<stage>:<seconds>, corrupt:<stage>, "
                f"duplicate:<stage>; its stages: {', '.join(stages) or 'none'}; corrupt and "
                f"duplicate only at: {', '.join(sends) or 'none'})")
        seconds = 0.0
        if action == "stall":
            try:
                seconds = float(parts[2])
            except ValueError:
                seconds = -1.0
            if not 0 < seconds <= 3600:
                raise InputError(f"{FAULT_ENV}={text[:80]!r}: the stall must last between 0 and "
                                 "3600 seconds")
        return cls(action, stage, seconds)


_FAULT: Fault | None = None


def install_fault(kind: str) -> Fault | None:
    """Read ``SMPC_FAULT`` once, at node start (test-only; None and a no-op when unset)."""
    global _FAULT
    text = os.environ.get(FAULT_ENV, "")
    _FAULT = Fault.parse(text, kind) if text.strip() else None
    if _FAULT is not None:
        log.warning("%s=%s: test-only fault injection is armed in this %s node; never set it "
                    "in production", FAULT_ENV, text, kind)
    return _FAULT


def fault_point(name: str) -> None:
    """Test-only fault injection at stage ``name``: SIGKILL this process (``kill``) or sleep
    (``stall``) when the installed ``SMPC_FAULT`` names it; otherwise nothing."""
    f = _FAULT
    if f is None or f.stage != name or f.action not in ("kill", "stall"):
        return
    if f.action == "stall":
        log.warning("%s=stall:%s:%g: stalling here (test-only fault injection)", FAULT_ENV,
                    name, f.seconds)
        time.sleep(f.seconds)
        return
    log.warning("%s=%s: killing this process here (test-only fault injection)",
                FAULT_ENV, name)
    for h in logging.getLogger().handlers:
        h.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class _FaultTransport(Transport):
    """Wraps a role's transport: the stage is reached right after the first send."""

    def __init__(self, inner: Transport, fault: Fault) -> None:
        super().__init__(inner.me)
        self.inner = inner
        self.fault = fault
        self._sent = False

    def _send(self, to: str, tag: str, payload: Payload) -> None:
        first, self._sent = not self._sent, True
        if first and self.fault.action == "corrupt":
            log.warning("%s=corrupt:%s: sending %r to %s one element short (test-only fault "
                        "injection)", FAULT_ENV, self.fault.stage, tag, to)
            payload = (payload.reshape(-1)[:-1] if isinstance(payload, np.ndarray)
                       else bytes(payload)[:-1])
        self.inner._send(to, tag, payload)
        if first and self.fault.action == "duplicate":
            log.warning("%s=duplicate:%s: sending %r to %s a second time (test-only fault "
                        "injection)", FAULT_ENV, self.fault.stage, tag, to)
            self.inner._send(to, tag, payload)
        if first:
            fault_point(self.fault.stage)

    def _recv(self, sender: str, tag: str) -> Payload:
        return self.inner._recv(sender, tag)


def fault_transport(t: Transport, stage: str) -> Transport:
    """``t`` itself, unless the installed fault is at send stage ``stage`` (tests only)."""
    f = _FAULT
    if f is None or f.stage != stage:
        return t
    return _FaultTransport(t, f)


# -------------------------------------------------------------------------- at rest


def load_at_rest_key(cfg: PartyConfig, *, create: bool = False) -> atrest.KeyFileKey:
    """The party's at-rest key (:attr:`PartyConfig.at_rest_key_path`).

    With ``create`` a missing key at the *default* path is created (0600); a key named
    explicitly in the config is never created (a missing one is an error: creating a new key
    would silently orphan everything encrypted under the old one).
    """
    path = cfg.at_rest_key_path
    if create and cfg.at_rest_key is None and not path.exists():
        try:
            atrest.create_key_file(path)
        except atrest.AtRestError:
            if not path.exists():
                raise
    return atrest.load_key_file(path)


def outputs_dir(cfg: PartyConfig) -> Path:
    """Where a data owner's predictions are written: ``<database dir>/outputs``."""
    return cfg.database.parent / "outputs"


def models_dir(cfg: PartyConfig) -> Path:
    """Where a party's models live: ``<database dir>/models``."""
    return cfg.database.parent / "models"


def output_path(cfg: PartyConfig, session_id: str) -> Path:
    """``outputs/<session>.csv.enc`` of ``session_id`` (checked to be a session id)."""
    if not isinstance(session_id, str) or not _SESSION_RE.match(session_id):
        raise InputError(f"{session_id!r:.80} is not a session id (16-64 lowercase hex digits)")
    return outputs_dir(cfg) / f"{session_id}.csv.enc"


def _output_purpose(party: str, session_id: str) -> str:
    return f"predictions:{party}:{session_id}"


def write_predictions(cfg: PartyConfig, key: atrest.KeyFileKey, session_id: str,
                      row_numbers: Sequence[int], predictions: Sequence[float]) -> Path:
    """Encrypt a data owner's predictions to ``outputs/<session>.csv.enc`` (0600, atomic,
    never replacing a file): CSV with ``row`` (1-based row of its table) and ``prediction``."""
    path = output_path(cfg, session_id)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    lines = ["row,prediction"] + [f"{int(i)},{float(v)!r}" for i, v in
                                  zip(row_numbers, predictions, strict=True)]
    data = ("\n".join(lines) + "\n").encode()
    return atrest.encrypt_file(path, data, key, purpose=_output_purpose(cfg.name, session_id),
                               overwrite=False)


def read_output(cfg: PartyConfig | str | os.PathLike[str], session: str | os.PathLike[str]
                ) -> bytes:
    """Decrypt a predictions file of a data owner: ``cfg`` is its :class:`PartyConfig` or the
    path of its config file; ``session`` a session id or the path the analyst was given
    (``.../outputs/<session>.csv.enc``).  Returns the CSV bytes (``row,prediction``)."""
    if not isinstance(cfg, PartyConfig):
        from parties.config import load_party_config

        cfg = load_party_config(cfg, check_files=False)
    sid = Path(str(session)).name.removesuffix(".csv.enc")
    path = output_path(cfg, sid)
    if not path.is_file():
        raise InputError(f"{cfg.name} has no predictions for session {sid} ({path} not found)")
    key = load_at_rest_key(cfg)
    return atrest.decrypt_file(path, key, purpose=_output_purpose(cfg.name, sid))


def _model_purpose(party: str, name: str) -> str:
    return f"model:{party}:{name}"


def write_model(directory: Path, party: str, name: str, model: linear.LinearModel,
                key: atrest.KeyFileKey) -> Path:
    """Encrypt ``model`` to ``<directory>/<name>.json.enc`` (0600, atomic)."""
    if not _MODEL_NAME_RE.match(name):
        raise InputError(f"{name!r} is not a valid model name")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = (json.dumps(model.to_json(), indent=2) + "\n").encode()
    return atrest.encrypt_file(directory / f"{name}.json.enc", data, key,
                               purpose=_model_purpose(party, name), overwrite=True)


def load_models(directory: Path, key: atrest.KeyFileKey | None = None, party: str = ""
                ) -> dict[str, linear.LinearModel]:
    """Every valid model in ``directory``: ``<name>.json.enc`` (encrypted, needs ``key``) and
    plaintext ``<name>.json``; the encrypted one wins.  Invalid files are logged, skipped."""
    out: dict[str, linear.LinearModel] = {}
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob("*.json")):
        if not _MODEL_NAME_RE.match(path.stem):
            continue
        try:
            out[path.stem] = linear.LinearModel.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, InputError) as exc:
            log.warning("skipping model file %s: %s", path.name, exc)
    for path in sorted(directory.glob("*.json.enc")):
        name = path.name.removesuffix(".json.enc")
        if not _MODEL_NAME_RE.match(name):
            continue
        if key is None:
            log.warning("skipping encrypted model %s: no at-rest key", path.name)
            continue
        try:
            doc = json.loads(atrest.decrypt_file(path, key, purpose=_model_purpose(party, name)))
            out[name] = linear.LinearModel.from_json(doc)
        except (OSError, ValueError, InputError) as exc:
            log.warning("skipping model file %s: %s", path.name, exc)
    return out
