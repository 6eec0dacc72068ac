"""The party node: a gRPC server beside one organisation's data.

``python -m parties.node --config party.json`` runs it in the foreground
(SIGTERM / Ctrl-C stop it).  A start-up problem (bad config, unreadable data,
port in use) prints one line to stderr and exits with status 2.

What it serves (all over mutual TLS, see :mod:`parties.grpc_transport`):

* ``Node.Health`` (any federation member) and ``Node.Deliver`` (only nodes that
  are members of the session the payload names);
* ``Party.*`` -- callable **only by the coordinator**: ``Describe`` (the
  column names its policy allows, and the public metadata of its models:
  name, kind, feature names -- never the coefficients), ``Prepare``, ``Run``,
  ``Await``, ``Abort``.

Zero trust.  At ``Prepare`` the party validates everything itself -- the spec,
the members of the session, the filter (parsed by :mod:`parties.data.filters`, never
evaluated as code), that every column exists -- and applies its own policy
(:mod:`parties.privacy`: allowed analysts, allowed columns per computation
including the filter's, differential privacy required or not, clipping bounds,
remaining privacy budget, minimum cohort size after filtering), then reserves
the request's privacy cost in its own ledger.  ``Run`` commits the charge
*before* the role starts (so before any noisy contribution can leave);
``Abort`` before ``Run`` refunds it.  Every request, accepted or refused, and
every outcome is a record of the party's hash-chained audit log, with the
caller's certificate identity.  Roles of :mod:`smpc.stats` and
:mod:`smpc.linear` run in worker threads, so ``Health`` always answers.

What a party reveals.  To the coordinator: that it accepted or refused a
request (and the refusal's reason), for an inference as data owner the number
of selected rows (a public size the model owner needs).  A statistic's row
count is never sent.  Everything else leaves only as the protocol's messages
(seeds, shares, masked openings, ciphertexts).

Files next to the party's database path (``database`` in its config):

* ``<database>`` -- the SQLite file of its privacy-budget ledger and audit log
  (metadata only); ``<database>.audit-key`` -- the audit log's MAC key;
* ``<database>.atrest-key`` (or ``at_rest_key``) -- its AES-256-GCM key for
  the files below;
* ``models/<name>.json.enc`` (or a plaintext ``<name>.json``) -- models it
  owns (``{"kind", "features", "coefficients", "intercept"}``, see
  :class:`smpc.linear.LinearModel`);
* ``outputs/<session id>.csv.enc`` -- predictions, when it is the data owner
  of an inference, encrypted: columns ``row`` (1-based row number in its
  table, header excluded) and ``prediction``; mode 0600.  The values never
  leave the host: the coordinator and the analyst learn only the count and
  this path.  ``smpc outputs read`` decrypts them for the operator.
  Written only once the inference succeeded everywhere: the data owner's role
  keeps its predictions in memory and answers the coordinator's ``Await``
  with ``status="ready"``; the coordinator awaits every other participant and
  then calls ``Await`` a second time, which writes the file (``status="done"``).
  An abort, or a session that expires before that second call (the coordinator
  died), drops the predictions unwritten.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import grpc
import numpy as np

from parties._pb import smpc_pb2 as pb
from parties._pb import smpc_pb2_grpc as pb_grpc
from parties.config import PartyConfig, load_party_config
from parties.data import filters
from parties.data.sources import DataSourceError, Table, load_table
from parties.errors import ColumnRefused, SessionError, abort
from parties.pki.identity import Identity
from parties.privacy.guard import PrivacyGuard
from parties.privacy.ledger import BudgetExceeded, LedgerError
from parties.privacy.outputs import load_at_rest_key, load_models, models_dir, write_predictions
from parties.privacy.policy import PolicyGate, PolicyRequest, caller_uri
from parties.transport import wire
from parties.transport.channels import GrpcTransport, PeerChannels
from parties.transport.faults import fault_point, fault_transport, install_fault
from parties.transport.lifecycle import run_in_foreground
from parties.transport.server import NODE_ACCESS, NodeService, caller, start_server
from parties.transport.sessions import Session, SessionRegistry, Status
from smpc import linear, stats
from smpc.encoding import EncodingRangeError
from smpc.errors import InputError, SmpcError

log = logging.getLogger("smpc.party")


COORDINATOR_ONLY = ("coordinator",)


PARTY_ACCESS: dict[str, tuple[str, ...]] = {
    **NODE_ACCESS,
    "/smpc.v1.Party/Describe": COORDINATOR_ONLY,
    "/smpc.v1.Party/Prepare": COORDINATOR_ONLY,
    "/smpc.v1.Party/Run": COORDINATOR_ONLY,
    "/smpc.v1.Party/Await": COORDINATOR_ONLY,
    "/smpc.v1.Party/Abort": COORDINATOR_ONLY,
}


MAX_SESSION_SECONDS = 24 * 3600.0


AWAIT_GRACE_SECONDS = 2.0


#: Sessions a party holds at once.  Each Await holds a server worker (the
#: pool has 256), so the cap keeps workers free for Deliver and Health.
MAX_ACTIVE_SESSIONS = 64


KIND_NAMES = {
    pb.SESSION_KIND_STAT: "stat",
    pb.SESSION_KIND_PREDICT_DATA: "predict-data",
    pb.SESSION_KIND_PREDICT_MODEL: "predict-model",
}


def _pick_model(models: dict[str, linear.LinearModel], name: str, me: str
                ) -> tuple[str, linear.LinearModel]:
    if name:
        if name not in models:
            raise InputError(f"{me} has no model {name!r} (models: {', '.join(models) or 'none'})")
        return name, models[name]
    if len(models) == 1:
        return next(iter(models.items()))
    if not models:
        raise InputError(f"{me} owns no model")
    raise InputError(f"{me} owns several models ({', '.join(models)}); name one")


@dataclass
class _Job:
    kind: str
    tag: str
    spec: Any
    rows: np.ndarray | None = None
    row_numbers: np.ndarray | None = None
    model: linear.LinearModel | None = None
    parties: list[str] = field(default_factory=list)
    hub: str = ""             # stat: recipient / aggregator
    peer: str = ""            # predict: the other owner
    dealer: str | None = None
    request: PolicyRequest | None = None   # what the audit log records about it
    charged: bool = False                  # a privacy charge is reserved for it


@dataclass(frozen=True)
class _Outcome:
    n_predictions: int = 0
    output_path: str = ""
    status: str = "done"      # "ready": a data owner's predictions, computed, not yet written


@dataclass(frozen=True)
class _Ready:
    """A data owner's predictions, held until the coordinator's second ``Await``."""

    predictions: np.ndarray
    row_numbers: np.ndarray


def _members(req_members: Any, me: str, federation: Any) -> dict[str, str]:
    members: dict[str, str] = {}
    for m in req_members:
        if not m.name or m.name in members:
            raise InputError("the session's member list is malformed")
        members[m.name] = m.role
    if me not in members:
        raise InputError(f"{me} is not a member of the session it was asked to prepare")
    for name in members:
        if name != me:
            try:
                federation.node(name)
            except KeyError:
                raise InputError(f"session member {name!r} is not a node of the federation"
                                 ) from None
    return members


def _one(members: dict[str, str], roles: tuple[str, ...], what: str) -> str:
    found = [n for n, r in members.items() if r in roles]
    if len(found) != 1:
        raise InputError(f"the session must have exactly one {what}")
    return found[0]


def _check_node_role(federation: Any, name: str | None, allowed: tuple[str, ...], what: str
                     ) -> None:
    """The node given a session role must have a fitting role in the federation config (a
    statistic's sum goes to a coordinator, never to another party)."""
    if name is not None and federation.node(name).role not in allowed:
        raise InputError(f"the {what} of a session must be a {' or '.join(allowed)} node, "
                         f"not {name!r}")


def redact(exc: BaseException, me: str) -> BaseException:
    """The error a party may send out: range and data errors lose the values they carry.

    Range errors name the offending value or aggregate (a party's own sum, its
    largest feature, its model's weight norm) and data errors quote cells and
    file paths: the analyst gets the kind of problem and the remedy.  The
    party's log records only that it happened: raw values are never logged.
    """
    if isinstance(exc, EncodingRangeError):
        log.info("%s: refused a value outside the encodable range (value not logged)", me)
        return InputError(
            f"{me} refuses: one of its values or aggregates is outside the range this "
            "computation can encode (raise the declared feature bound, scale the column or "
            "lower the fractional bits); the value is not disclosed")
    if isinstance(exc, DataSourceError):
        log.info("%s: refused on a data problem (%s; cells not logged)", me,
                 type(exc).__name__)
        text = str(exc)
        what = ("some selected rows have missing values" if "missing" in text
                else "a value is not a number" if "non-numeric" in text
                else "a value is infinite" if "infinite" in text
                else "its data file cannot be read")
        return InputError(f"{me} cannot use the requested columns: {what} "
                          "(details in its log)")
    return exc


def _identity(context: grpc.ServicerContext) -> Identity:
    return caller(context)


class PartyService(pb_grpc.PartyServicer):
    """The ``Party`` service of one node (see the module docstring)."""

    def __init__(self, node: PartyNode) -> None:
        self.node = node

    @property
    def me(self) -> str:
        return self.node.cfg.name

    def Describe(self, request: pb.DescribeRequest, context: grpc.ServicerContext
                 ) -> pb.DescribeResponse:
        try:
            resp = self.node.describe(request.analyst, _identity(context))
        except Exception as exc:  # mapped to a status
            abort(context, exc, self.me)
        return resp

    def Prepare(self, request: pb.PrepareRequest, context: grpc.ServicerContext
                ) -> pb.PrepareResponse:
        failure: BaseException | None = None
        try:
            resp = self.node.prepare(request, _identity(context))
        except Exception as exc:
            failure = exc
        if failure is not None:
            log.info("prepare %s refused: %s", request.session_id[:64], failure)
            abort(context, redact(failure, self.me), self.me)
        return resp

    def Run(self, request: pb.SessionRef, context: grpc.ServicerContext) -> pb.RunResponse:
        failure: BaseException | None = None
        try:
            self.node.run(request.session_id)
        except Exception as exc:
            failure = exc
        if failure is not None:
            abort(context, failure, self.me)
        return pb.RunResponse()

    def Await(self, request: pb.SessionRef, context: grpc.ServicerContext
              ) -> pb.AwaitResponse:
        failure: BaseException | None = None
        try:
            outcome = self.node.wait(request.session_id)
        except Exception as exc:
            failure = exc
        if failure is not None:
            abort(context, redact(failure, self.me), self.me)
        return pb.AwaitResponse(status=outcome.status, n_predictions=outcome.n_predictions,
                                output_path=outcome.output_path)

    def Abort(self, request: pb.AbortRequest, context: grpc.ServicerContext
              ) -> pb.AbortResponse:
        was = self.node.abort_session(request.session_id, request.reason[:500] or "aborted",
                                      request.failed_node[:64] or None)
        if was:
            log.info("session %s aborted by the coordinator: %s", request.session_id,
                     request.reason[:200])
        return pb.AbortResponse(was_active=was)


SWEEP_SECONDS = 1.0


def _printable(text: str, limit: int) -> str:
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


class PartyNode:
    """A party: its config, table, policy, ledger, audit log, sessions and gRPC server."""

    def __init__(self, cfg: PartyConfig, table: Table | None = None) -> None:
        self.cfg = cfg
        self.table = table if table is not None else load_table(cfg.data.path, cfg.data.format)
        self.guard = PrivacyGuard(cfg)
        self.policy: PolicyGate = self.guard.gate
        self.key = load_at_rest_key(cfg, create=True)
        self.registry = SessionRegistry(cfg.name)
        self.peers = PeerChannels(cfg.federation, cfg.tls)
        self.server: grpc.Server | None = None
        self.port: int | None = None
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> int:
        """Settle the ledger (budgets from the policy, crash recovery), then serve; returns
        the bound port."""
        install_fault("party")  # SMPC_FAULT: test-only, a no-op when unset
        self.guard.start()
        node_service = NodeService(self.cfg.name, "party", self.cfg.federation, self.registry)
        party_service = PartyService(self)
        self.server, self.port = start_server(
            name=self.cfg.name, federation=self.cfg.federation, tls=self.cfg.tls,
            host=self.cfg.host, port=self.cfg.port, access=PARTY_ACCESS,
            register=[lambda s: pb_grpc.add_NodeServicer_to_server(node_service, s),
                      lambda s: pb_grpc.add_PartyServicer_to_server(party_service, s)],
        )
        self.registry.start_reaper()
        self._sweeper = threading.Thread(target=self._sweep_loop, daemon=True,
                                         name=f"charges-{self.cfg.name}")
        self._sweeper.start()
        return self.port

    def stop(self, grace: float = 2.0) -> None:
        self._stop.set()
        for sid in self.registry.ids():  # refunds what was prepared but never ran
            self.abort_session(sid, "node shutting down")
        self.registry.close()
        if self.server is not None:
            self.server.stop(grace).wait()
        self.peers.close()

    def _may_still_run(self, session_id: str) -> bool:
        s = self.registry.find(session_id)
        return s is not None and not (s.status == Status.PREPARED and s.expired)

    def _sweep_loop(self) -> None:
        """Refund the charges of sessions that ended (expired, aborted) before ``Run``.

        Safe against a late ``Run``: once refunded, its commit fails and the role never starts.
        """
        while not self._stop.wait(SWEEP_SECONDS):
            try:
                for sid in self.guard.sweep(self._may_still_run):
                    self.registry.abort(sid, "expired before it ran")
            except Exception:  # keep sweeping whatever happens
                log.exception("charge sweeper failed")

    # ----------------------------------------------------------------- requests

    def _base(self, analyst: str, kind: str, session_id: str, ident: Identity | None
              ) -> PolicyRequest:
        return PolicyRequest(
            analyst=_printable(analyst, 256), kind=kind, computation=kind,
            session_id=_printable(session_id, 128), caller=caller_uri(ident),
            caller_fingerprint=(ident.fingerprint or None) if ident is not None else None)

    def describe(self, analyst: str, ident: Identity | None = None) -> pb.DescribeResponse:
        """Public metadata for ``analyst``: allowed columns present, model metadata."""
        self.guard.describe_allowed(self._base(analyst, "describe", "", ident))
        allowed = set(self.cfg.policy.all_columns())
        models = load_models(models_dir(self.cfg), self.key, self.cfg.name)
        return pb.DescribeResponse(
            name=self.cfg.name,
            columns=[c for c in self.table.columns if c in allowed],
            models=[pb.ModelInfo(name=n, kind=m.kind, features=list(m.features))
                    for n, m in models.items()],
        )

    def _with_filter(self, where: str, req: PolicyRequest
                     ) -> tuple[filters.Expr | None, PolicyRequest]:
        expr = filters.parse(where) if where.strip() else None
        if expr is None:
            return None, req
        return expr, replace(req, filter=str(expr)[:4096],
                             filter_columns=tuple(sorted(expr.columns())))

    def _read(self, expr: filters.Expr | None, columns: list[str], req: PolicyRequest
              ) -> tuple[np.ndarray, np.ndarray, PolicyRequest]:
        """Read the filtered rows of ``columns`` (the policy was applied before)."""
        missing = [c for c in (*columns, *req.filter_columns) if c not in self.table.columns]
        if missing:  # allowed by the policy but absent from the table
            raise ColumnRefused(f"{self.cfg.name} has no column "
                                f"{', '.join(repr(c) for c in missing)} in its data")
        mask = filters.evaluate(expr, self.table) if expr is not None else None
        sel = self.table.select(columns, rows=mask)
        row_numbers = np.flatnonzero(sel.rows) + 1
        return sel.values, row_numbers, replace(req, n_rows=sel.n_rows)

    def prepare(self, r: pb.PrepareRequest, ident: Identity | None = None
                ) -> pb.PrepareResponse:
        """Validate a request against the policy, select the rows, reserve its privacy cost,
        register the session; every outcome is audited."""
        me = self.cfg.name
        kind = KIND_NAMES.get(r.kind, "unknown")
        trail = [self._base(r.analyst, kind, r.session_id, ident)]
        registered = False
        try:
            sid = wire.check_session_id(r.session_id)
            tag = wire.check_tag(r.tag or "s")
            if kind == "unknown":
                raise InputError(f"{me} cannot prepare a session of kind {r.kind}")
            if not 0 < r.timeout_seconds <= MAX_SESSION_SECONDS:
                raise InputError("the session timeout must be between 0 and 24 hours")
            if self.registry.count() >= MAX_ACTIVE_SESSIONS:
                raise SessionError(f"{me} is busy ({MAX_ACTIVE_SESSIONS} active sessions)",
                                   grpc.StatusCode.RESOURCE_EXHAUSTED)
            members = _members(r.members, me, self.cfg.federation)
            doc = wire.parse_spec_json(r.spec_json)
            if kind == "stat":
                job, resp = self._prepare_stat(doc, r, members, tag, trail)
            elif kind == "predict-data":
                job, resp = self._prepare_data_owner(doc, r, members, tag, trail)
            else:
                job, resp = self._prepare_model_owner(doc, r, members, tag, trail)
            # charged is set before the session exists, so that a Run racing this Prepare
            # finds no charge to commit and refuses, rather than running uncharged
            job.request = trail[-1]
            job.charged = trail[-1].cost is not None
            self.registry.create(sid, members, r.timeout_seconds, kind, job)
            registered = True
            self.guard.reserve(trail[-1])
        except Exception as exc:  # every refusal is recorded
            if registered:
                self.registry.free(trail[-1].session_id, "refused")
            self.guard.record(trail[-1], "refused", str(redact(exc, me)),
                              ledger_logged=isinstance(exc, BudgetExceeded))
            raise
        req = trail[-1]
        cost = (f"rho {req.cost.rho:.6g} reserved (pending until it runs)" if job.charged
                else "exact result, no privacy cost")
        self.guard.record(req, "accepted", f"prepared: {cost}")
        log.info("session %s prepared: %s for %s, %d members", sid, kind, r.analyst,
                 len(members))
        fault_point("on-prepare")
        return resp

    def _prepare_stat(self, doc: Any, r: pb.PrepareRequest, members: dict[str, str],
                      tag: str, trail: list[PolicyRequest]) -> tuple[_Job, pb.PrepareResponse]:
        spec = stats.StatSpec.from_json(doc)
        if members[self.cfg.name] != "party":
            raise InputError(f"{self.cfg.name} is not a party of this statistic")
        hub = _one(members, ("recipient", "aggregator"), "recipient or aggregator")
        _check_node_role(self.cfg.federation, hub, ("coordinator",), "recipient or aggregator")
        parties = [n for n, role in members.items() if role == "party"]
        for name in parties:
            _check_node_role(self.cfg.federation, name, ("party",), "parties")
        recipient = hub if spec.backend == "ss" else f"{r.analyst} (key holder, via {hub})"
        req = replace(trail[-1], computation=spec.statistic, backend=spec.backend,
                      columns=tuple(spec.value_columns), recipient=_printable(recipient, 256),
                      cost=spec.dp.cost if spec.dp is not None else None)
        trail.append(req)
        expr, req = self._with_filter(r.where, req)
        trail.append(req)
        self.policy.check_access(req)               # analyst, columns: nothing read yet
        spec = self.policy.check_dp(req, spec)      # exact allowed? bounds within the policy
        if spec.dp is not None:
            spec.noise_plan(len(parties))           # bounds complete, budget usable
        self.guard.precheck_budget(req)             # no budget: refuse before reading rows
        rows, _numbers, req = self._read(expr, list(spec.value_columns), req)
        trail.append(req)
        self.policy.check_cohort(req)
        job = _Job("stat", tag, spec, rows=rows, parties=parties, hub=hub)
        return job, pb.PrepareResponse(spec_json=json.dumps(spec.to_json()))

    def _prepare_data_owner(self, doc: Any, r: pb.PrepareRequest, members: dict[str, str],
                            tag: str, trail: list[PolicyRequest]
                            ) -> tuple[_Job, pb.PrepareResponse]:
        if members[self.cfg.name] != "data-owner":
            raise InputError(f"{self.cfg.name} is not the data owner of this inference")
        if not isinstance(doc, dict):
            raise InputError("malformed inference spec")
        columns = list(r.columns)
        if not columns or len(set(columns)) != len(columns):
            raise InputError("an inference needs the model's distinct feature names")
        draft = linear.InferenceSpec.from_json({**doc, "n_samples": 1})
        req = replace(trail[-1], computation=f"predict-{draft.kind}", backend=draft.backend,
                      columns=tuple(columns), recipient=f"{self.cfg.name} (data owner)")
        trail.append(req)
        expr, req = self._with_filter(r.where, req)
        trail.append(req)
        self.policy.check_access(req)
        X, numbers, req = self._read(expr, columns, req)
        trail.append(req)
        self.policy.check_cohort(req)
        if X.shape[0] == 0:
            raise InputError(f"no rows of {self.cfg.name} match the filter")
        spec = linear.InferenceSpec.from_json({**doc, "n_samples": int(X.shape[0])})
        if spec.n_features != len(columns):
            raise InputError("the inference spec and the feature list disagree")
        linear.check_features(spec, X)
        model_owner = _one(members, ("model-owner",), "model owner")
        dealer = next((n for n, role in members.items() if role == "dealer"), None)
        _check_node_role(self.cfg.federation, model_owner, ("party",), "model owner")
        _check_node_role(self.cfg.federation, dealer, ("dealer", "coordinator"), "dealer")
        job = _Job("predict-data", tag, spec, rows=X, row_numbers=numbers, peer=model_owner,
                   dealer=dealer)
        resp = pb.PrepareResponse(n_samples=int(X.shape[0]), spec_json=json.dumps(spec.to_json()))
        return job, resp

    def _prepare_model_owner(self, doc: Any, r: pb.PrepareRequest, members: dict[str, str],
                             tag: str, trail: list[PolicyRequest]
                             ) -> tuple[_Job, pb.PrepareResponse]:
        if members[self.cfg.name] != "model-owner":
            raise InputError(f"{self.cfg.name} is not the model owner of this inference")
        self.policy.check_access(trail[-1])
        data_owner = _one(members, ("data-owner",), "data owner")
        name, model = _pick_model(load_models(models_dir(self.cfg), self.key, self.cfg.name),
                                  r.model, self.cfg.name)
        spec = linear.InferenceSpec.from_json(doc)
        trail.append(replace(trail[-1], computation=f"predict-{spec.kind}", backend=spec.backend,
                             columns=tuple(model.features),
                             recipient=f"{data_owner} (data owner), model {name}"))
        linear.check_model(spec, model)
        dealer = next((n for n, role in members.items() if role == "dealer"), None)
        _check_node_role(self.cfg.federation, data_owner, ("party",), "data owner")
        _check_node_role(self.cfg.federation, dealer, ("dealer", "coordinator"), "dealer")
        job = _Job("predict-model", tag, spec, model=model, peer=data_owner, dealer=dealer)
        return job, pb.PrepareResponse()

    def run(self, session_id: str) -> None:
        """Commit the session's privacy charge, then start its role in a worker thread.

        The commit happens before the role can send anything; if the charge was refunded
        meanwhile (an abort won the race) the role never starts.
        """
        s = self.registry.get(session_id)
        job: _Job | None = s.job
        if job is None:
            raise SessionError(f"session {session_id} is closed on {self.cfg.name}",
                               grpc.StatusCode.FAILED_PRECONDITION)
        s.set_running()
        if job.charged:
            fault_point("after-charge")
            try:
                self.guard.commit(session_id)
            except LedgerError as exc:
                self.registry.abort(session_id, "its privacy charge was refunded", None)
                raise SessionError(f"{self.cfg.name} will not run session {session_id}: {exc}",
                                   grpc.StatusCode.FAILED_PRECONDITION) from None
            fault_point("after-commit")
        s.thread = threading.Thread(target=self._role, args=(s, job), daemon=True,
                                    name=f"role-{session_id[:8]}")
        s.thread.start()

    def abort_session(self, session_id: str, reason: str, failed_node: str | None = None
                      ) -> bool:
        """Abort a session; refund its charge if it never ran (audited either way)."""
        s = self.registry.find(session_id)
        job: _Job | None = s.job if s is not None else None
        if s is not None and isinstance(s.outcome, _Ready):  # a data owner's, not yet written
            if self.registry.free(session_id, f"aborted: {reason[:200]}") is not None \
                    and job is not None:
                self._audit_outcome(job, "failed", f"the inference failed elsewhere "
                                    f"({reason[:300]}): its predictions were dropped unwritten")
            return False
        never_ran = s is not None and s.status == Status.PREPARED
        was = self.registry.abort(session_id, reason, failed_node)
        if job is not None and job.charged:
            self.guard.refund(session_id, f"aborted before it ran ({reason[:300]})")
        elif job is not None and job.request is not None and never_ran and was:
            self.guard.record(job.request, "failed", f"aborted before it ran ({reason[:300]})")
        return was

    def wait(self, session_id: str) -> _Outcome:
        """Block until the role ends or the deadline passes; frees the session.

        A data owner's finished role answers ``ready`` and keeps the session (and its
        predictions, in memory); the next ``Await`` writes them and frees it.
        """
        s = self.registry.get(session_id)
        if s.status == Status.DONE and isinstance(s.outcome, _Ready):
            return self._release(s)
        done = s.wait_done(s.remaining() + AWAIT_GRACE_SECONDS)
        if not done:
            self.registry.abort(session_id, "deadline passed")
            raise TimeoutError(f"{self.cfg.name} did not finish before the session deadline")
        fault_point("on-await")
        if s.status == Status.DONE and isinstance(s.outcome, _Ready):
            return _Outcome(n_predictions=len(s.outcome.predictions), status="ready")
        self.registry.free(session_id, s.status.value)
        if s.status == Status.DONE:
            return s.outcome or _Outcome()
        if s.status == Status.FAILED and s.error is not None:
            raise s.error
        raise SessionError(f"session {session_id} was aborted on {self.cfg.name}: "
                           f"{s.abort_reason}", grpc.StatusCode.ABORTED)

    def _release(self, s: Session) -> _Outcome:
        """The coordinator confirmed that every participant finished: write the predictions."""
        ready: _Ready = s.outcome
        job: _Job | None = s.job
        if self.registry.free(s.id, "done") is None:  # an Abort won the race: nothing written
            raise SessionError(f"session {s.id} was aborted on {self.cfg.name}",
                               grpc.StatusCode.ABORTED)
        path = write_predictions(self.cfg, self.key, s.id, ready.row_numbers, ready.predictions)
        if job is not None:
            self._audit_outcome(job, "released", f"{len(ready.predictions)} predictions "
                                f"written encrypted to outputs/{path.name}")
        return _Outcome(n_predictions=len(ready.predictions), output_path=str(path))

    # -------------------------------------------------------------------- roles

    def _role(self, s: Session, job: _Job) -> None:
        t = fault_transport(GrpcTransport(s, self.peers), "mid-protocol")
        started = time.perf_counter()
        try:
            fault_point("on-run")
            if job.kind == "stat":
                ctx = None
                if job.spec.backend == "ckks":
                    from smpc import ckks

                    data = t.recv_bytes(job.hub, f"{job.tag}/context",
                                        max_len=ckks.MAX_CONTEXT_BYTES)
                    ctx = ckks.load_context(data)
                stats.run_party(t, job.spec, job.rows, parties=job.parties, recipient=job.hub,
                                tag=job.tag, public_context=ctx)
                outcome = _Outcome()
                done = ("noisy contribution sent (charge spent)" if job.charged
                        else "exact contribution sent")
            elif job.kind == "predict-data":
                preds = linear.run_data_owner(t, job.spec, job.rows, model_owner=job.peer,
                                              dealer=job.dealer, tag=job.tag)
                numbers = (job.row_numbers if job.row_numbers is not None
                           else np.arange(1, len(preds) + 1))
                outcome = _Ready(np.asarray(preds), np.asarray(numbers))
                done = ""  # audited when written (_release) or dropped (abort_session)
            else:
                linear.run_model_owner(t, job.spec, job.model, data_owner=job.peer,
                                       dealer=job.dealer, tag=job.tag)
                outcome = _Outcome()
                done = "model applied; only the data owner learns the predictions"
        except BaseException as exc:  # reported through Await
            level = logging.INFO if isinstance(exc, SmpcError) else logging.ERROR
            log.log(level, "session %s failed on %s: %s: %s", s.id, self.cfg.name,
                    type(exc).__name__, exc, exc_info=not isinstance(exc, SmpcError))
            self._audit_outcome(job, "failed", f"{redact(exc, self.cfg.name)}" + (
                " (the charge stands: its contribution may have left)" if job.charged else ""))
            s.fail(exc)
            return
        log.info("session %s done on %s in %.2f s (sent %d msgs / %d B, received %d / %d B)",
                 s.id, self.cfg.name, time.perf_counter() - started, t.traffic.messages_sent,
                 t.traffic.bytes_sent, t.traffic.messages_received, t.traffic.bytes_received)
        if done:
            self._audit_outcome(job, "released", done)  # audited before Await can answer
        s.finish(outcome)

    def _audit_outcome(self, job: _Job, outcome: str, reason: str) -> None:
        if job.request is None:
            return
        try:
            self.guard.record(job.request, outcome, reason)
        except Exception:  # the outcome stands; the log line says why it was not audited
            log.exception("could not audit the outcome of session %s", job.request.session_id)


def main(argv: list[str] | None = None) -> int:
    """``python -m parties.node --config FILE``: run one party in the foreground."""
    return run_in_foreground(
        "party", argv, load_party_config, PartyNode,
        lambda cfg, node, port: (
            f"party {cfg.name} of federation {cfg.federation.name} listening on "
            f"{cfg.host}:{port} ({node.table.n_rows} rows, {len(node.table.columns)} columns)"))


if __name__ == "__main__":
    sys.exit(main())
