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
remaining privacy budget, minimum cohort size after filtering, in exact mode the
safeguards of :mod:`parties.privacy.exact` (no quantile extremes, no pair of exact
answers whose rows differ by a few people, small cells sent as 0), and what the
request would cost it: values released, inference rows, estimated CPU seconds
and memory, each against the policy's limit -- before any row is selected; as a
model owner, its model's own policy: who, rows per request, requests per day and the
analyst's row budget, before the model is loaded, :mod:`parties.privacy.models`),
then reserves the request's privacy cost (and a model's rows) in its own ledger.  A data
owner checks its selected rows against the model owner's requirements (sent by the model
owner itself) before it sends anything.  ``Run`` commits the charge
*before* the role starts (so before any noisy contribution can leave);
``Abort`` before ``Run`` refunds it.  Every request, accepted or refused, and
every outcome is a record of the party's hash-chained audit log, with the
caller's certificate identity; records are written behind and waited for
before a refusal is answered, before ``Run`` goes on (``accepted``) and
before ``Await`` is answered (``released`` / ``failed``): what a crash at
each point leaves is in SECURITY.md, "Audit and ledger writes".  Roles of :mod:`smpc.stats` and
:mod:`smpc.linear` run in worker threads, so ``Health`` always answers; a role
stops at its next cancellation check (between its expensive steps) once its
session is aborted or expired, the node stops, or it used more CPU time than
``policy.max_session_cpu_seconds``.

What a party reveals.  To the coordinator: that it accepted or refused a
request (and the refusal's reason), for an inference as data owner the number
of rows it computes on (a size the model owner needs: the selected rows in
exact mode; under a DP policy a public padded size, :mod:`parties.privacy.dp_outputs`).
A statistic's row count is never sent.  Everything else leaves only as the protocol's messages
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
  leave the host: the coordinator and the analyst learn only the count (under
  a DP policy the padded size) and this path.  ``smpc outputs read`` decrypts them for the operator.
  Written only once the inference succeeded everywhere: the data owner's role
  keeps its predictions in memory and answers the coordinator's ``Await``
  with ``status="ready"``; the coordinator awaits every other participant and
  then calls ``Await`` a second time, which writes the file (``status="done"``); only an
  ``Await`` after the ``ready`` answer writes (a first one that finds the role finished
  answers ``ready`` too).
  An abort, or a session that expires before that second call (the coordinator
  died), drops the predictions unwritten.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import grpc
import numpy as np

from parties.config import PartyConfig, load_party_config
from parties.data import filters
from parties.data.csvfile import describe_dialect
from parties.data.open import open_table
from parties.data.sources import Table
from parties.data.sql.table import SqlTable
from parties.errors import ColumnRefused, LimitExceeded, PolicyError, SessionError, StorageError
from parties.node import inference, prediction_prepare, statistic_prepare
from parties.node.checks import printable
from parties.node.jobs import DataOwnerJob, Job, ModelOwnerJob, Outcome, Ready
from parties.node.redact import redact
from parties.node.witnessing import HeadWitnesses
from parties.pki.certs import load_certificate, load_private_key
from parties.pki.identity import Identity
from parties.pki.signed import Signed, SignedRequestError, verify
from parties.privacy import exact
from parties.privacy.guard import PrivacyGuard
from parties.privacy.ledger import BudgetExceeded, LedgerError
from parties.privacy.models import ModelGate, ModelUsage, ModelUsageError
from parties.privacy.outputs import load_at_rest_key, load_models, models_dir, write_predictions
from parties.privacy.policy import PolicyGate, PolicyRequest, caller_uri
from parties.privacy.replay import SeenRequests
from parties.privacy.witness import WitnessError, WitnessStore, sign_head, verify_head
from parties.transport.channels import GrpcNetwork, Network, PeerChannels
from parties.transport.control import (
    Described,
    ModelInfo,
    Prepare,
    Prepared,
    PrepareDataOwner,
    PrepareModelOwner,
    PrepareStatistic,
)
from parties.transport.faults import fault_point, fault_transport, install_fault
from parties.transport.lifecycle import run_in_foreground
from parties.transport.sessions import Session, SessionRegistry, Status
from smpc import ckks
from smpc.errors import InputError, PeerFailure, SmpcError
from smpc.stats import StatSpec

__all__ = ["PartyNode", "main"]

log = logging.getLogger("smpc.party")

AWAIT_GRACE_SECONDS = 2.0
#: Sessions a party holds at once.  Each Await holds a server worker (the
#: pool has 256), so the cap keeps workers free for Deliver and Health.
MAX_ACTIVE_SESSIONS = 64
SWEEP_SECONDS = 1.0


def _without_frames(exc: BaseException) -> BaseException:
    """``exc`` with the tracebacks of its chain dropped: they would keep the role's frames --
    its rows, noise and shares -- alive for as long as the session holds the error."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        e.__traceback__ = None
        e = e.__cause__ or e.__context__
    return exc


class PartyNode:
    """A party: its config, table, policy, ledger, audit log and sessions.

    The node is transport-agnostic: ``network`` carries its protocol messages (gRPC by
    default) and its control calls arrive either through its gRPC service
    (:mod:`parties.node.service`) or, in unit tests, directly from an in-process control
    plane.
    """

    def __init__(self, cfg: PartyConfig, table: Table | SqlTable | None = None,
                 network: Network | None = None) -> None:
        self.cfg = cfg
        self.table: Table | SqlTable = table if table is not None else open_table(cfg.data)
        self.guard = PrivacyGuard(cfg)
        self.policy: PolicyGate = self.guard.gate
        self.key = load_at_rest_key(cfg, create=True)
        self.registry = SessionRegistry(cfg.name)
        self.ca_cert = load_certificate(cfg.tls.ca)
        self.seen = SeenRequests(cfg.database, db=self.guard.db)
        # the data owner's CKKS key pairs, one per (analyst, model owner, preset), kept in this
        # process's memory for bounded uses and age (smpc.ckks.keycache: the security argument)
        self.ckks_keys = ckks.KeyCache()
        self.exact_history = exact.ExactHistory(cfg.database, db=self.guard.db)
        self.witnesses = WitnessStore(cfg.database, db=self.guard.db)
        self.models = ModelGate(cfg.name, cfg.policy, ModelUsage(cfg.database))
        self._node_cert = load_certificate(cfg.tls.cert)
        self._node_key = load_private_key(cfg.tls.key)
        self.network = network or GrpcNetwork(PeerChannels(cfg.federation, cfg.tls))
        self.server: object | None = None
        self.port: int | None = None
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        self.head_witnesses = HeadWitnesses(self._signed_head, self._send_head)

    # ---------------------------------------------------------------- lifecycle

    def start(self, *, serve: bool = True) -> int:
        """Settle the ledger (budgets from the policy, crash recovery), start the session
        reaper and charge sweeper, then (``serve``) the gRPC server; returns the bound port
        (0 without a server)."""
        install_fault("party")  # SMPC_FAULT: test-only, a no-op when unset
        self.guard.start()
        for sid in self.models.usage.recover():
            log.warning("%s: pending model use of session %s kept as spent at recovery",
                        self.cfg.name, sid)
        if serve:
            from parties.node.service import serve as serve_grpc

            self.server, self.port = serve_grpc(self)
        note = describe_dialect(self.table.dialect)
        if note:  # how the data file was read, once the node is up (the operator's log)
            logging.getLogger("smpc.data").info("%s", note)
        self.registry.start_reaper()
        self._sweeper = threading.Thread(target=self._sweep_loop, daemon=True,
                                         name=f"charges-{self.cfg.name}")
        self._sweeper.start()
        return self.port or 0

    def stop(self, grace: float = 2.0) -> None:
        self._stop.set()
        self.head_witnesses.stop()
        for sid in self.registry.ids():  # refunds what was prepared but never ran
            self.abort_session(sid, "node shutting down")
        self.registry.close()
        if self.server is not None:
            self.server.stop(grace).wait()  # type: ignore[attr-defined]
        self.network.close()
        self.guard.close()  # commits every queued audit and ledger write, closes the file
        if isinstance(self.table, SqlTable):
            self.table.close()  # DuckDB's private directory (imported cells, spills) removed

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
                for sid in self.models.usage.pending():
                    if not self._may_still_run(sid):
                        self.models.usage.refund(sid, "the session ended before it ran")
            except Exception:  # keep sweeping whatever happens
                log.exception("charge sweeper failed")

    # ----------------------------------------------------------------- requests

    def _base(self, analyst: str, kind: str, session_id: str, ident: Identity | None
              ) -> PolicyRequest:
        return PolicyRequest(
            analyst=printable(analyst, 256), kind=kind, computation=kind,
            session_id=printable(session_id, 128), caller=caller_uri(ident),
            caller_fingerprint=(ident.fingerprint or None) if ident is not None else None)

    def describe(self, analyst: str, ident: Identity | None = None) -> Described:
        """Public metadata for ``analyst``: allowed columns present, model metadata."""
        self.guard.describe_allowed(self._base(analyst, "describe", "", ident))
        allowed = set(self.cfg.policy.all_columns())
        models = load_models(models_dir(self.cfg), self.key, self.cfg.name)
        return Described(
            name=self.cfg.name,
            columns=tuple(c for c in self.table.columns if c in allowed),
            models=tuple(ModelInfo(n, m.kind, tuple(m.features)) for n, m in models.items()))

    def refuse_malformed(self, analyst: str, session_id: str, kind: str,
                         ident: Identity | None, exc: BaseException) -> None:
        """Audit a Prepare refused at the service edge (it could not even be parsed)."""
        self._settled(self.guard.record(self._base(analyst, kind, session_id, ident), "refused",
                                        str(redact(exc, self.cfg.name))))

    def with_filter(self, r: Prepare, req: PolicyRequest) -> PolicyRequest:
        if r.filter is None:
            return req
        return replace(req, filter=str(r.filter)[:4096],
                       filter_columns=tuple(sorted(r.filter.columns())))

    def rows_check(self, columns: list[str], req: PolicyRequest) -> None:
        """Refuse a column the policy allowed but the table does not have."""
        missing = [c for c in (*columns, *req.filter_columns) if c not in self.table.columns]
        if missing:  # allowed by the policy but absent from the table
            raise ColumnRefused(f"{self.cfg.name} has no column "
                                f"{', '.join(repr(c) for c in missing)} in its data")

    def rows(self, r: Prepare, columns: list[str], req: PolicyRequest
              ) -> tuple[np.ndarray | None, int]:
        """The filter's row mask (None: every row) and how many rows it keeps; nothing of
        ``columns`` is selected yet (the policy was applied before)."""
        self.rows_check(columns, req)
        if r.filter is None:
            return None, self.table.n_rows
        mask = filters.evaluate(r.filter, self.table)
        return mask, int(np.count_nonzero(mask))

    def read(self, r: Prepare, columns: list[str], req: PolicyRequest
              ) -> tuple[np.ndarray, np.ndarray, PolicyRequest]:
        """Read the filtered rows of ``columns`` (the policy was applied before)."""
        return self._select(columns, req, self.rows(r, columns, req)[0])

    def _select(self, columns: list[str], req: PolicyRequest, mask: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray, PolicyRequest]:
        """Copy ``columns`` of the rows ``mask`` keeps (None: every row)."""
        sel = self.table.select(columns, rows=mask)
        row_numbers = np.flatnonzero(sel.rows) + 1
        return sel.values, row_numbers, replace(req, n_rows=sel.n_rows)

    def read_with_gaps(self, r: Prepare, spec: StatSpec, req: PolicyRequest
                        ) -> tuple[np.ndarray, np.ndarray, PolicyRequest]:
        """``missing="skip"``, exact mode: the filtered rows of the spec's columns with NaN
        where a value is missing; the row numbers complete in every column (for the
        differencing history: two answers whose column-``j`` rows differ by ``d`` rows have
        complete rows differing by at most ``d``, so a pair the history admits differs by at
        least its threshold in every column); and the request with ``n_rows`` the fewest
        values any column's statistic uses (the cohort checked: the complete rows for
        ``cov`` / ``corr`` / ``linreg``)."""
        columns = list(spec.value_columns)
        mask, _ = self.rows(r, columns, req)
        index = np.arange(self.table.n_rows) if mask is None else np.flatnonzero(mask)
        values = np.empty((index.size, len(columns)), dtype=np.float64)
        for j, name in enumerate(columns):
            values[:, j] = self.table.column(name)[index]
        present = ~np.isnan(values)
        complete = present.all(axis=1)
        fewest = int(complete.sum()) if spec.complete_rows else int(present.sum(axis=0).min())
        return values, index[complete] + 1, replace(req, n_rows=fewest)

    def prepare(self, r: Prepare, ident: Identity | None = None) -> Prepared:
        """Apply the policy to a (parsed, validated) request, select the rows, reserve its
        privacy cost, register the session; every outcome is audited."""
        me = self.cfg.name
        trail = [self._base(r.analyst, str(r.kind), r.session_id, ident)]
        registered = False
        try:
            if self.registry.count() >= MAX_ACTIVE_SESSIONS:
                raise SessionError(f"{me} is busy ({MAX_ACTIVE_SESSIONS} active sessions)",
                                   grpc.StatusCode.RESOURCE_EXHAUSTED)
            signed = self._signed(r, trail)
            if isinstance(r, PrepareStatistic):
                job, answer = statistic_prepare.prepare_statistic(self, r, signed, trail)
            elif isinstance(r, PrepareDataOwner):
                job, answer = prediction_prepare.prepare_data_owner(self, r, signed, trail)
            elif isinstance(r, PrepareModelOwner):
                job, answer = prediction_prepare.prepare_model_owner(self, r, signed, trail)
            else:
                raise InputError(f"{me} cannot prepare a session of kind {r.kind}")
            # a signed request is good for one session: a replay is refused here
            claimed = self.seen.claim(nonce=signed.nonce, analyst=signed.signer.name,
                                      request_hash=signed.request_hash,
                                      session_id=r.session_id, expires=signed.expires, me=me)
            # charged is set before the session exists, so that a Run racing this Prepare
            # finds no charge to commit and refuses, rather than running uncharged
            job.request = trail[-1]
            job.claimed = claimed  # written behind; on disk before the role starts (run)
            job.charged = trail[-1].cost is not None
            self.registry.create(r.session_id, {n: str(x) for n, x in r.members.items()},
                                 r.timeout, str(r.kind), job)
            registered = True
            self.guard.reserve(trail[-1])
            if isinstance(job, ModelOwnerJob):  # the model's rows and request, atomically
                self.models.reserve(r.session_id, trail[-1].analyst, job.model_name,
                                    job.spec.n_samples)
        except Exception as exc:  # every refusal is recorded
            if registered:
                self.registry.free(trail[-1].session_id, "refused")
            self._settled(self.guard.record(trail[-1], "refused", str(redact(exc, me)),
                                            ledger_logged=isinstance(exc, BudgetExceeded)))
            raise
        req = trail[-1]
        charge = (f"rho {req.cost.rho:.6g} reserved (pending until it runs)" if job.charged
                  and req.cost is not None else "exact result, no privacy cost")
        if isinstance(job, ModelOwnerJob):
            charge = (f"{job.spec.n_samples} rows of model {job.model_name!r} reserved for "
                      f"{req.analyst} (pending until it runs), prediction noise std "
                      f"{job.noise_std:g}")
        # written behind: waited for at Run, before anything of the session leaves
        job.audited = self.guard.record(req, "accepted", f"prepared: {charge}")
        log.info("session %s prepared: %s for %s, %d members", r.session_id, r.kind,
                 r.analyst, len(r.members))
        fault_point("on-prepare")
        return answer

    def _signed(self, r: Prepare, trail: list[PolicyRequest]) -> Signed:
        """The analyst's signed request behind ``r``, verified here, whatever the coordinator
        says: the signer is an analyst listed in the federation (with its pinned certificate),
        the request is unexpired, and ``r`` is asked in the signer's name.  The audit trail
        records the signer, the request's hash and the session's members from now on."""
        me = self.cfg.name
        fed = self.cfg.federation
        try:
            signed = verify(r.signed_request, ca_cert=self.ca_cert, federation=fed.name,
                            allowed=fed)
        except SignedRequestError as exc:
            raise PolicyError(f"{me} refuses: {exc}") from None
        trail.append(replace(trail[-1], analyst=printable(signed.signer.name, 256),
                             request_hash=signed.request_hash,
                             members=tuple(sorted(r.members))))
        if r.analyst != signed.signer.name:
            raise PolicyError(f"{me} refuses: the request is asked in the name of "
                              f"{printable(r.analyst, 64)!r} but signed by "
                              f"{signed.signer.name!r}")
        return signed

    def run(self, session_id: str) -> None:
        """Wait for the session's ``accepted`` audit record and its request's replay record
        (both queued at Prepare), commit its privacy charge, then start its role in a worker
        thread.

        Both happen before the role can send anything; if the record cannot be written the
        session stays prepared (the coordinator's abort refunds it); if the charge was refunded
        meanwhile (an abort won the race) the role never starts.
        """
        s = self.registry.get(session_id)
        job: Job | None = s.job
        if job is None:
            raise SessionError(f"session {session_id} is closed on {self.cfg.name}",
                               grpc.StatusCode.FAILED_PRECONDITION)
        try:  # the request's nonce and the accepted record are on disk before anything of
            # the session leaves (a claim lost in a crash is one whose session never ran)
            self.guard.settle([job.claimed, job.audited])
        except StorageError as exc:
            raise SessionError(f"{self.cfg.name} will not run session {session_id}: {exc}",
                               grpc.StatusCode.INTERNAL) from None
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
        if isinstance(job, ModelOwnerJob):  # the model's rows count before it runs
            try:
                self.models.usage.commit(session_id)
            except ModelUsageError as exc:
                self.registry.abort(session_id, "its model use was given back", None)
                raise SessionError(f"{self.cfg.name} will not run session {session_id}: {exc}",
                                   grpc.StatusCode.FAILED_PRECONDITION) from None
        s.thread = threading.Thread(target=self._role, args=(s, job), daemon=True,
                                    name=f"role-{session_id[:8]}")
        s.thread.start()

    def abort_session(self, session_id: str, reason: str, failed_node: str | None = None
                      ) -> bool:
        """Abort a session; refund its charge if it never ran (audited either way)."""
        s = self.registry.find(session_id)
        job: Job | None = s.job if s is not None else None
        if s is not None and isinstance(s.outcome, Ready):  # a data owner's, not yet written
            if self.registry.free(session_id, f"aborted: {reason[:200]}") is not None \
                    and job is not None:
                self._audit_outcome(job, "failed", f"the inference failed elsewhere "
                                    f"({reason[:300]}): its predictions were dropped unwritten")
            return False
        never_ran = s is not None and s.status == Status.PREPARED
        was = self.registry.abort(session_id, reason, failed_node)
        if never_ran and isinstance(job, ModelOwnerJob):
            self.models.usage.refund(session_id, f"aborted before it ran ({reason[:300]})")
        if job is not None and job.charged:
            self.guard.refund(session_id, f"aborted before it ran ({reason[:300]})")
        elif job is not None and job.request is not None and never_ran and was:
            self.guard.record(job.request, "failed", f"aborted before it ran ({reason[:300]})")
        self.guard.db.flush()  # what the abort recorded is on disk before it is answered
        return was

    def wait(self, session_id: str) -> Outcome:
        """Block until the role ends or the deadline passes; frees the session.

        A data owner's finished role answers ``ready`` and keeps the session (and its
        predictions, in memory); only an ``Await`` that comes *after* that answer -- the
        coordinator's release, sent once every other participant finished -- writes them and
        frees it.  A first ``Await`` that finds the role already finished (the coordinator
        sends ``Await`` right behind ``Run``, and a role may be fast) answers ``ready`` too,
        never writes.
        """
        s = self.registry.get(session_id)
        if s.status == Status.DONE and isinstance(s.outcome, Ready) and s.ready_reported:
            return self._release(s)
        done = s.wait_done(s.remaining() + AWAIT_GRACE_SECONDS)
        if not done:
            self.registry.abort(session_id, "deadline passed")
            raise TimeoutError(f"{self.cfg.name} did not finish before the session deadline")
        fault_point("on-await")
        if s.status == Status.DONE and isinstance(s.outcome, Ready):
            s.ready_reported = True
            return Outcome(n_predictions=s.outcome.reported, status="ready")
        self.registry.free(session_id, s.status.value)
        if s.status == Status.DONE:
            return s.outcome or Outcome()
        if s.status == Status.FAILED and s.error is not None:
            raise s.error
        raise SessionError(f"session {session_id} was aborted on {self.cfg.name}: "
                           f"{s.abort_reason}", grpc.StatusCode.ABORTED)

    def _release(self, s: Session) -> Outcome:
        """The coordinator confirmed that every participant finished: write the predictions."""
        ready: Ready = s.outcome
        job: Job | None = s.job
        if self.registry.free(s.id, "done") is None:  # an Abort won the race: nothing written
            raise SessionError(f"session {s.id} was aborted on {self.cfg.name}",
                               grpc.StatusCode.ABORTED)
        left_out = job.left_out if isinstance(job, DataOwnerJob) else np.zeros(0, np.int64)
        key = job.key_column if isinstance(job, DataOwnerJob) else None
        keys = None if key is None else inference.key_values(
            self.table, key, np.concatenate([ready.row_numbers, left_out]))
        path = write_predictions(self.cfg, self.key, s.id, ready.row_numbers, ready.predictions,
                                 key_column=key, keys=keys, left_out=left_out)
        if job is not None:
            gaps = f", {left_out.size} selected rows left out for a missing feature" \
                if left_out.size else ""
            ticket = self._audit_outcome(job, "released", f"{len(ready.predictions)} "
                                         f"predictions written encrypted to outputs/{path.name}"
                                         f"{gaps}")
            self.guard.settle([ticket])  # the release is on disk before Await answers
            self._witness(s)
        return Outcome(n_predictions=ready.reported, output_path=str(path))

    # -------------------------------------------------------------------- roles

    def _stop_check(self, s: Session) -> Callable[[], None]:
        """The role's cancellation check (:meth:`smpc.transport.Transport.check_cancelled`),
        made in the role's thread: it raises once the node is stopping, the session was aborted
        or expired (:meth:`Session.check_active`), or the role's thread used more CPU time than
        the policy's ``max_session_cpu_seconds``."""
        me, limit = self.cfg.name, self.cfg.policy.max_session_cpu_seconds
        cpu_start = time.thread_time()

        def check() -> None:
            if self._stop.is_set():
                raise PeerFailure(me, f"{me} is shutting down: it stopped its role in session "
                                      f"{s.id}")
            s.check_active()
            used = time.thread_time() - cpu_start
            if used > limit:
                raise LimitExceeded(
                    f"{me} stopped its role in session {s.id} after {used:,.1f} CPU seconds: "
                    f"its policy allows at most {limit:,g} (policy.max_session_cpu_seconds)",
                    "max_session_cpu_seconds")

        return check

    def _role(self, s: Session, job: Job) -> None:
        t = fault_transport(self.network.transport(s), "mid-protocol")
        t.add_stop_check(self._stop_check(s))
        started = time.perf_counter()
        try:
            fault_point("on-run")
            outcome, done = job.run(t)
            if done:  # the released record, before Await can answer (and the result return)
                self.guard.settle([self._audit_outcome(job, "released", done)])
        except BaseException as exc:  # reported through Await
            level = logging.INFO if isinstance(exc, SmpcError) else logging.ERROR
            log.log(level, "session %s failed on %s: %s: %s", s.id, self.cfg.name,
                    type(exc).__name__, redact(exc, self.cfg.name),
                    exc_info=not isinstance(exc, SmpcError))
            self._audit_outcome(job, "failed", f"{redact(exc, self.cfg.name)}" + (
                " (the charge stands: its contribution may have left)" if job.charged else ""))
            self.guard.db.flush()
            s.fail(_without_frames(exc))
            return
        log.info("session %s done on %s in %.2f s (sent %d msgs / %d B, received %d / %d B)",
                 s.id, self.cfg.name, time.perf_counter() - started, t.traffic.messages_sent,
                 t.traffic.bytes_sent, t.traffic.messages_received, t.traffic.bytes_received)
        if done:
            self._witness(s)
        s.finish(outcome)

    # ------------------------------------------------------------------ witnesses

    def _witness(self, s: Session) -> None:
        """Owe this party's signed audit head to the session's other parties: sent in the
        background, coalesced per peer (:mod:`parties.node.witnessing`); the computation
        never waits for it."""
        fed = self.cfg.federation
        peers = []
        for name in s.members:
            if name == self.cfg.name:
                continue
            try:
                if fed.node(name).role == "party":
                    peers.append(name)
            except KeyError:
                continue
        if peers:
            self.head_witnesses.owe(peers)

    def _signed_head(self) -> bytes:
        """The audit log's current head, signed with this node's key."""
        return sign_head(self.guard.audit.head(), party=self.cfg.name,
                         federation=self.cfg.federation.name, key=self._node_key,
                         cert=self._node_cert)

    def _send_head(self, peer: str, envelope: bytes) -> None:
        self.network.witness(peer, envelope, self.cfg.name, timeout=5.0)

    def receive_witness(self, envelope: bytes, sender: Identity) -> None:
        """Keep a peer party's signed audit head (``Node.Witness``)."""
        fed = self.cfg.federation
        try:
            signed = verify_head(envelope, ca_cert=self.ca_cert, federation=fed.name,
                                 party=sender.name)
        except WitnessError as exc:
            raise PolicyError(f"{self.cfg.name} refuses the audit head: {exc}") from None
        self.witnesses.add(signed)

    def _audit_outcome(self, job: Job, outcome: str, reason: str) -> int:
        """Queue the outcome's audit record; its ticket (0: nothing queued)."""
        if job.request is None:
            return 0
        try:
            return self.guard.record(job.request, outcome, reason)
        except Exception:  # the outcome stands; the log line says why it was not audited
            log.exception("could not audit the outcome of session %s", job.request.session_id)
            return 0

    def _settled(self, ticket: int) -> None:
        """Wait for a refusal's record before the refusal is answered (the refusal stands even
        if the record could not be written: the log line says so)."""
        try:
            self.guard.settle([ticket])
        except Exception:
            log.exception("could not audit a refusal")


def main(argv: list[str] | None = None) -> int:
    """``python -m parties.node --config FILE``: run one party in the foreground."""
    return run_in_foreground(
        "party", argv, load_party_config, PartyNode,
        lambda cfg, node, port: (
            f"party {cfg.name} of federation {cfg.federation.name} listening on "
            f"{cfg.host}:{port} ({node.table.n_rows} rows, {len(node.table.columns)} columns, "
            f"engine {cfg.data.engine})"))
