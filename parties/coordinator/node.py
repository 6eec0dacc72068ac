"""The coordinator: one explicit stage machine per protocol, over the parties' control RPCs.

``python -m parties.coordinator --config coordinator.json`` runs it in the
foreground; start-up problems print one line to stderr and exit with status 2.

Protocols and their stages (:class:`Stage`; the state of a run is one
:class:`SessionState` dataclass)::

    stat-ss       PREPARE(all parties) -> RUN -> AWAIT(parties + recipient role) -> DONE
    stat-ckks     PREPARE(all parties) -> RUN -> AWAIT(parties + aggregator role) -> DONE
    predict-ss    PREPARE(data owner) -> PREPARE(model owner) -> RUN
                  -> AWAIT(owners + dealer role) -> RELEASE(data owner) -> DONE
    predict-ckks  PREPARE(data owner) -> PREPARE(model owner) -> RUN -> AWAIT(owners)
                  -> RELEASE(data owner) -> DONE
    any stage     -> FAILED: Abort on every node that prepared, error naming the failed node

RELEASE: the data owner answers the first ``Await`` with ``ready`` and keeps its predictions in
memory; only once every other participant finished does the coordinator ``Await`` it again, and
only then does it write them (:mod:`parties.node`).  A failure anywhere before that -- or a
coordinator that dies -- leaves nothing written.

Roles of the coordinator itself (run in its own session, with a
:class:`~parties.grpc_transport.GrpcTransport`):

* ``ss`` statistics: it is the **recipient** (:func:`smpc.stats.run_recipient_ss`)
  and sends the result to the analyst;
* ``ckks`` statistics: it is the **aggregator** (:func:`smpc.stats.run_aggregator_ckks`);
  the analyst is the **key holder** and its messages travel on the ``Compute``
  stream, which the coordinator relays to and from its session; the
  coordinator distributes the analyst's public context (validated to carry no
  secret key) to the parties, and never holds a secret key;
* ``ss`` inference: it is the **dealer** (:func:`smpc.linear.run_dealer`)
  unless its config names a separate dealer node (:mod:`parties.dealer`).

Failures.  Any failure -- a party refusing at PREPARE, a node unreachable,
a role raising, the deadline passing -- moves the session to FAILED: the
coordinator aborts the session on every node that prepared it (they free it)
and reports one error that names the failed node (trailing metadata
``smpc-failed-node``).  When a node only reports that *another* node failed
(e.g. "B did not send ..."), that other node is blamed.  No partial result is
ever sent: the result goes to the analyst only after every participant
finished successfully.

Privacy is the parties' business (:mod:`parties.privacy`): each party checks
its own policy, charges its own ledger and audits every request; the
coordinator checks nothing on their behalf.  It only carries their answers:
each party returns the spec it prepared (its policy may fill in DP clipping
bounds the request left open); the coordinator proceeds only if all agree,
finishes an ``ss`` statistic with that spec, and for ``ckks`` under DP sends
it to the key holder (tag ``stat/spec``), which checks that it differs from
its request only by the added bounds.

What the coordinator learns: an ``ss`` statistic's summed aggregates and
result (it is the recipient), the public sizes of an inference, and which
node failed.  It never sees an opened Beaver value (openings go party to
party), a ``ckks`` plaintext, or a prediction.
"""

from __future__ import annotations

import enum
import json
import logging
import queue
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc

from parties._pb import smpc_pb2 as pb
from parties._pb import smpc_pb2_grpc as pb_grpc
from parties.config import CoordinatorConfig, load_coordinator_config
from parties.data import filters
from parties.errors import (
    NodeFailed,
    SessionError,
    abort,
    failed_node_of,
    from_rpc_error,
    transport_detail,
)
from parties.privacy.policy import agreed_spec, check_effective_spec
from parties.transport import wire
from parties.transport.channels import GrpcTransport, PeerChannels
from parties.transport.faults import fault_point, install_fault
from parties.transport.lifecycle import run_in_foreground
from parties.transport.server import NODE_ACCESS, NodeService, caller, start_server
from parties.transport.sessions import Session, SessionRegistry
from smpc import linear, stats
from smpc.errors import InputError, PeerFailure, ProtocolError, SmpcError
from smpc.transport import Payload, pack_json

__all__ = ["COORDINATOR_ACCESS", "CoordinatorNode", "SessionState", "Stage", "main"]

log = logging.getLogger("smpc.coordinator")

ANALYSTS = ("analyst",)
COORDINATOR_ACCESS: dict[str, tuple[str, ...]] = {
    **NODE_ACCESS,
    "/smpc.v1.Coordinator/Compute": ANALYSTS,
    "/smpc.v1.Coordinator/Predict": ANALYSTS,
    "/smpc.v1.Coordinator/Status": ANALYSTS,
    "/smpc.v1.Coordinator/Describe": ANALYSTS,
}

CONTROL_TIMEOUT = 30.0       # Prepare / Run / Describe / Abort calls
AWAIT_GRACE = 5.0            # Await calls may outlive the session deadline by this much
SECONDARY_GRACE = 1.0        # after a "peer X failed" report, wait this long for X's own error
STAT_TAG = "stat"
PREDICT_TAG = "inf"
CONTEXT_TAG = "context"
SPEC_TAG = "spec"             # ckks + DP: the parties' effective spec, to the key holder


class Stage(enum.Enum):
    PREPARE = "prepare"
    RUN = "run"
    AWAIT = "await"
    RELEASE = "release"
    DONE = "done"
    FAILED = "failed"


@dataclass
class SessionState:
    """Everything the coordinator knows about one run of a protocol."""

    id: str
    protocol: str                      # stat-ss | stat-ckks | predict-ss | predict-ckks
    analyst: str
    deadline: float                    # time.monotonic()
    members: dict[str, str]            # node -> role, for the parties' sessions
    controlled: list[str]              # party nodes driven with Prepare/Run/Await
    stage: Stage = Stage.PREPARE
    prepared: list[str] = field(default_factory=list)
    dealer_node: str | None = None     # a separate dealer node, if any
    local: Session | None = None       # the coordinator's own session
    failure: NodeFailed | None = None
    result: Any = None
    history: list[tuple[str, float]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def remaining(self) -> float:
        return max(self.deadline - time.monotonic(), 0.0)

    def enter(self, stage: Stage) -> None:
        self.stage = stage
        self.history.append((stage.value, time.monotonic() - self.started))
        log.info("session %s (%s): %s", self.id, self.protocol, stage.value)


def _prefixed(node: str, message: str) -> str:
    return message if message.startswith(node) else f"{node}: {message}"


def classify_rpc_failure(node: str, err: grpc.RpcError) -> NodeFailed:
    """The failure to report when a control call to ``node`` failed."""
    code = err.code()  # type: ignore[attr-defined]
    remote = from_rpc_error(err, node)
    blamed = failed_node_of(err)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED) and blamed is None:
        return NodeFailed(node, f"{node} is unreachable or stopped "
                                f"({transport_detail(err.details())})",  # type: ignore[attr-defined]
                          grpc.StatusCode.UNAVAILABLE)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and blamed and blamed != node:
        return NodeFailed(blamed, _prefixed(node, remote.message), code, primary=False)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return NodeFailed(node, f"{node} did not finish before the session deadline",
                          grpc.StatusCode.DEADLINE_EXCEEDED)
    if code == grpc.StatusCode.ABORTED and blamed and blamed != node:
        return NodeFailed(blamed, _prefixed(node, remote.message), code, primary=False)
    return NodeFailed(node, _prefixed(node, remote.message), code)


class CoordinatorNode:
    """The coordinator: config, session registry, channels, server, protocols."""

    def __init__(self, cfg: CoordinatorConfig) -> None:
        self.cfg = cfg
        self.me = cfg.name
        self.registry = SessionRegistry(cfg.name)
        self.peers = PeerChannels(cfg.federation, cfg.tls)
        self.pool = futures.ThreadPoolExecutor(max_workers=SERVER_WORKERS,
                                               thread_name_prefix="fanout")
        self.server: grpc.Server | None = None
        self.port: int | None = None
        self.states: dict[str, SessionState] = {}
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> int:
        install_fault("coordinator")  # SMPC_FAULT: test-only, a no-op when unset
        node_service = NodeService(self.me, "coordinator", self.cfg.federation, self.registry)
        service = CoordinatorService(self)
        self.server, self.port = start_server(
            name=self.me, federation=self.cfg.federation, tls=self.cfg.tls,
            host=self.cfg.host, port=self.cfg.port, access=COORDINATOR_ACCESS,
            register=[lambda s: pb_grpc.add_NodeServicer_to_server(node_service, s),
                      lambda s: pb_grpc.add_CoordinatorServicer_to_server(service, s)],
        )
        self.registry.start_reaper()
        return self.port

    def stop(self, grace: float = 2.0) -> None:
        self.registry.close()
        if self.server is not None:
            self.server.stop(grace).wait()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.peers.close()

    # ------------------------------------------------------------------ helpers

    def _timeout(self, requested: float) -> float:
        limit = float(self.cfg.session_timeout)
        if requested and requested > 0:
            return min(float(requested), limit)
        return limit

    def _new_state(self, protocol: str, analyst: str, timeout: float, members: dict[str, str],
                   controlled: list[str], session_id: str | None = None) -> SessionState:
        sid = session_id or secrets.token_hex(16)
        st = SessionState(sid, protocol, analyst, time.monotonic() + timeout, members,
                          controlled)
        with self._lock:
            self.states[sid] = st
        return st

    def _fan_out(self, st: SessionState, calls: dict[str, Callable[[], Any]]) -> dict[str, Any]:
        """Run the calls in parallel; NodeFailed for the first failing node (config order)."""
        futs = {node: self.pool.submit(fn) for node, fn in calls.items()}
        results: dict[str, Any] = {}
        failures: list[NodeFailed] = []
        for node, fut in futs.items():
            try:
                results[node] = fut.result()
            except grpc.RpcError as err:
                failures.append(classify_rpc_failure(node, err))
            except NodeFailed as exc:
                failures.append(exc)
        if failures:
            primary = [f for f in failures if f.primary] or failures
            raise primary[0]
        return results

    def _prepare(self, st: SessionState, requests: dict[str, pb.PrepareRequest]
                 ) -> dict[str, pb.PrepareResponse]:
        timeout = min(st.remaining(), CONTROL_TIMEOUT)

        def call(node: str, req: pb.PrepareRequest) -> pb.PrepareResponse:
            try:
                resp = self.peers.party(node).Prepare(req, timeout=timeout)
            except grpc.RpcError as err:
                # A node that just restarted may still sit behind its channel's
                # reconnect backoff.  Nothing has been registered or sent at this
                # stage, so one retry after the backoff ceiling is safe.
                if err.code() != grpc.StatusCode.UNAVAILABLE or st.remaining() < 2.0:
                    raise
                time.sleep(wire.RECONNECT_BACKOFF_MS[1] / 1000 + 0.1)
                resp = self.peers.party(node).Prepare(req, timeout=min(st.remaining(),
                                                                       CONTROL_TIMEOUT))
            st.prepared.append(node)
            return resp

        return self._fan_out(st, {n: (lambda n=n, r=r: call(n, r)) for n, r in requests.items()})

    def _describe(self, st: SessionState, node: str, req: pb.DescribeRequest
                  ) -> pb.DescribeResponse:
        """``Describe`` (no side effects), retried once like ``Prepare`` after a restart."""
        try:
            return self.peers.party(node).Describe(req, timeout=min(st.remaining(),
                                                                    CONTROL_TIMEOUT))
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.UNAVAILABLE or st.remaining() < 2.0:
                raise
        time.sleep(wire.RECONNECT_BACKOFF_MS[1] / 1000 + 0.1)
        return self.peers.party(node).Describe(req, timeout=min(st.remaining(), CONTROL_TIMEOUT))

    def _deal(self, st: SessionState, dealer: str, req: pb.DealRequest) -> pb.DealResponse:
        """``Deal`` on a separate dealer, retried once like ``Prepare`` when the dealer just
        restarted and its channel still sits behind the reconnect backoff (UNAVAILABLE before
        the call reached it: the dealer registered nothing, so a retry is safe)."""
        try:
            return self.peers.dealer(dealer).Deal(req, timeout=st.remaining() + AWAIT_GRACE)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.UNAVAILABLE or st.remaining() < 2.0:
                raise
        time.sleep(wire.RECONNECT_BACKOFF_MS[1] / 1000 + 0.1)
        return self.peers.dealer(dealer).Deal(req, timeout=st.remaining() + AWAIT_GRACE)

    def _run(self, st: SessionState) -> None:
        timeout = min(st.remaining(), CONTROL_TIMEOUT)
        ref = pb.SessionRef(session_id=st.id)
        self._fan_out(st, {n: (lambda n=n: self.peers.party(n).Run(ref, timeout=timeout))
                           for n in st.controlled})

    def _await(self, st: SessionState, local: dict[str, Callable[[], Any]]) -> dict[str, Any]:
        """Wait for every party's Await and every local waiter; first failure wins.

        A failure reported *about* another node (secondary) waits up to
        SECONDARY_GRACE seconds for a primary one.  Nodes still pending at the
        deadline (plus grace) are reported as not having finished.
        """
        ref = pb.SessionRef(session_id=st.id)
        events: queue.Queue[tuple[str, Any, NodeFailed | None]] = queue.Queue()

        def watch(name: str, fn: Callable[[], Any]) -> None:
            try:
                events.put((name, fn(), None))
            except grpc.RpcError as err:
                events.put((name, None, classify_rpc_failure(name, err)))
            except NodeFailed as exc:
                events.put((name, None, exc))
            except PeerFailure as exc:
                code = (grpc.StatusCode.DEADLINE_EXCEEDED if exc.deadline
                        else grpc.StatusCode.ABORTED)
                events.put((name, None, NodeFailed(exc.peer, _prefixed(name, str(exc)), code,
                                                   primary=False)))
            except ProtocolError as exc:  # a malformed message: its sender is to blame
                events.put((name, None, NodeFailed(exc.peer or name, _prefixed(name, str(exc)),
                                                   grpc.StatusCode.ABORTED,
                                                   primary=exc.peer is None)))
            except InputError as exc:
                events.put((name, None, NodeFailed(name, _prefixed(name, str(exc)),
                                                   grpc.StatusCode.INVALID_ARGUMENT)))
            except BaseException as exc:
                log.exception("session %s: %s failed", st.id, name)
                events.put((name, None, NodeFailed(name, f"{name} failed: {exc}",
                                                   grpc.StatusCode.INTERNAL)))

        waiters: dict[str, Callable[[], Any]] = {
            n: (lambda n=n: self.peers.party(n).Await(ref, timeout=st.remaining() + AWAIT_GRACE))
            for n in st.controlled
        }
        waiters.update(local)
        for name, fn in waiters.items():
            threading.Thread(target=watch, args=(name, fn), daemon=True,
                             name=f"await-{name}").start()
        pending = set(waiters)
        results: dict[str, Any] = {}
        secondary: NodeFailed | None = None
        hard_end = st.deadline + AWAIT_GRACE + 1.0
        secondary_end = hard_end
        while pending:
            end = hard_end if secondary is None else min(hard_end, secondary_end)
            try:
                name, value, failure = events.get(timeout=max(end - time.monotonic(), 0.0))
            except queue.Empty:
                if secondary is not None:
                    raise secondary from None
                late = sorted(pending)[0]
                raise NodeFailed(late, f"{late} did not finish before the session deadline",
                                 grpc.StatusCode.DEADLINE_EXCEEDED) from None
            pending.discard(name)
            if failure is None:
                results[name] = value
                continue
            if failure.primary:
                raise failure
            if secondary is None:
                secondary = failure
                secondary_end = time.monotonic() + SECONDARY_GRACE
        if secondary is not None:
            raise secondary
        return results

    def _abort_all(self, st: SessionState, failure: NodeFailed) -> None:
        """Abort the session on every node it involves, and locally (best effort).

        Every controlled node is told, not only those whose Prepare answered:
        a Prepare that timed out may still have registered the session.
        Abort is idempotent on the parties.
        """
        req = pb.AbortRequest(session_id=st.id, reason=str(failure)[:500],
                              failed_node=failure.node)
        calls: list[futures.Future[Any]] = []
        for node in st.controlled:
            if node == failure.node and failure.code == grpc.StatusCode.UNAVAILABLE:
                continue  # it is gone; its sessions died with it
            calls.append(self.pool.submit(self.peers.party(node).Abort, req, timeout=5.0))
        if st.dealer_node:
            calls.append(self.pool.submit(self.peers.dealer(st.dealer_node).Abort, req,
                                          timeout=5.0))
        self.registry.abort(st.id, str(failure)[:500], failure.node)
        for c in calls:
            try:
                c.result()
            except grpc.RpcError as err:
                log.info("session %s: abort not delivered: %s", st.id,
                         from_rpc_error(err).message)

    def _execute(self, st: SessionState, body: Callable[[SessionState], Any]) -> Any:
        """Run ``body`` (the protocol's stages); on failure abort everywhere and re-raise."""
        try:
            result = body(st)
            st.enter(Stage.DONE)
            st.result = result
            return result
        except BaseException as exc:
            failure = exc if isinstance(exc, NodeFailed) else NodeFailed(
                self.me, f"{self.me} failed: {exc}",
                grpc.StatusCode.INVALID_ARGUMENT if isinstance(exc, InputError)
                else grpc.StatusCode.INTERNAL)
            if not isinstance(exc, (NodeFailed, SmpcError)):
                log.exception("session %s: unexpected error", st.id)
            st.failure = failure
            st.enter(Stage.FAILED)
            log.info("session %s failed at %s: blamed %s: %s", st.id,
                     st.history[-2][0] if len(st.history) > 1 else "start", failure.node,
                     failure)
            self._abort_all(st, failure)
            raise failure from None
        finally:
            self.registry.free(st.id, st.stage.value)
            with self._lock:
                self.states.pop(st.id, None)
            log.info("session %s: %s in %.2f s", st.id, st.stage.value,
                     time.monotonic() - st.started)

    # ---------------------------------------------------------------- statistics

    def run_statistic(
        self, analyst: str, request: pb.StatRequest, *,
        to_analyst: Callable[[str, Payload], None] | None = None,
        context_bytes: bytes | None = None,
        on_state: Callable[[SessionState], None] | None = None,
        session_id: str | None = None,
    ) -> stats.StatResult | None:
        """Run a joint statistic; returns the result (ss) or None (ckks: the analyst has it).

        For ckks, ``to_analyst`` forwards the aggregator's messages to the key
        holder and ``context_bytes`` is its public context; the key holder's
        messages must be delivered into ``state.local`` (see ``on_state``).
        """
        spec, parties, where = self._check_stat_request(request)
        ckks_ = spec.backend == "ckks"
        hub_role = "aggregator" if ckks_ else "recipient"
        members = {p: "party" for p in parties}
        members[self.me] = hub_role
        local_members = dict(members)
        public_ctx = None
        if ckks_:
            from smpc import ckks

            if to_analyst is None or context_bytes is None:
                raise InputError("a ckks statistic needs the analyst's public context")
            public_ctx = ckks.load_context(context_bytes)  # refuses a secret key
            local_members[analyst] = "keyholder"
        st = self._new_state("stat-ckks" if ckks_ else "stat-ss", analyst,
                             self._timeout(request.timeout_seconds), members, parties,
                             session_id)
        st.local = self.registry.create(st.id, local_members, st.remaining() + AWAIT_GRACE,
                                        st.protocol)
        if on_state is not None:
            on_state(st)

        def body(st: SessionState) -> Any:
            st.enter(Stage.PREPARE)
            base = dict(session_id=st.id, kind=pb.SESSION_KIND_STAT,
                        spec_json=json.dumps(spec.to_json()), where=where,
                        members=[pb.Member(name=n, role=r) for n, r in members.items()],
                        analyst=analyst, tag=STAT_TAG)
            answers = self._prepare(st, {p: pb.PrepareRequest(timeout_seconds=st.remaining(),
                                                              **base) for p in parties})
            eff = self._effective_spec(spec, answers)
            fault_point("after-prepare")
            st.enter(Stage.RUN)
            assert st.local is not None
            routes = {analyst: to_analyst} if ckks_ and to_analyst else None
            t = GrpcTransport(st.local, self.peers, routes)
            self._run(st)
            fault_point("mid-run")

            def local_role() -> Any:
                if not ckks_:
                    return stats.run_recipient_ss(t, eff, parties=parties, tag=STAT_TAG)
                assert context_bytes is not None
                if eff.dp is not None:  # the key holder plans the release with the parties' spec
                    t.send(analyst, f"{STAT_TAG}/{SPEC_TAG}", pack_json(eff.to_json()))
                for p in parties:
                    t.send(p, f"{STAT_TAG}/{CONTEXT_TAG}", context_bytes)
                stats.run_aggregator_ckks(t, eff, parties=parties, keyholder=analyst,
                                          tag=STAT_TAG, public_context=public_ctx)
                return None

            st.enter(Stage.AWAIT)
            results = self._await(st, {self.me: local_role})
            return results[self.me]

        return self._execute(st, body)

    def _effective_spec(self, spec: stats.StatSpec, answers: dict[str, pb.PrepareResponse]
                        ) -> stats.StatSpec:
        """The spec every party prepared: the request, with the clipping bounds their policies
        filled in for columns the request gave none for; they must all agree."""
        parsed: dict[str, stats.StatSpec | None] = {}
        for node, resp in answers.items():
            try:
                parsed[node] = (stats.StatSpec.from_json(wire.parse_spec_json(resp.spec_json))
                                if resp.spec_json else None)
                check_effective_spec(spec, parsed[node] or spec, node)
            except (InputError, ValueError) as exc:
                raise NodeFailed(node, f"{node}: {exc}", grpc.StatusCode.ABORTED) from None
        try:
            return agreed_spec(spec, parsed)
        except InputError as exc:
            raise NodeFailed(self.me, str(exc), grpc.StatusCode.INVALID_ARGUMENT) from None

    def _check_stat_request(self, request: pb.StatRequest
                            ) -> tuple[stats.StatSpec, list[str], str]:
        doc = wire.parse_spec_json(request.spec_json, "statistic spec")
        spec = stats.StatSpec.from_json(doc)
        where = request.where.strip()
        if where:
            filters.parse(where)  # fail early; every party parses it again itself
        known = [n.name for n in self.cfg.federation.parties]
        parties = list(request.parties) or known
        unknown = [p for p in parties if p not in known]
        if unknown:
            raise InputError(f"unknown part{'ies' if len(unknown) > 1 else 'y'} "
                             f"{', '.join(unknown)} (parties: {', '.join(known) or 'none'})")
        if len(set(parties)) != len(parties):
            raise InputError("a party is named twice")
        if len(parties) < 2:
            raise InputError("a joint statistic needs at least two parties")
        return spec, parties, where

    # ----------------------------------------------------------------- inference

    def run_prediction(self, analyst: str, r: pb.PredictRequest) -> pb.PredictResponse:
        """Run an inference; the predictions stay with the data owner."""
        known = {n.name for n in self.cfg.federation.parties}
        for who, name in (("data owner", r.data_owner), ("model owner", r.model_owner)):
            if name not in known:
                raise InputError(f"the {who} {name!r} is not a party of the federation "
                                 f"(parties: {', '.join(sorted(known))})")
        if r.data_owner == r.model_owner:
            raise InputError("the data owner and the model owner must be different parties")
        backend = r.backend or "ss"
        if backend not in ("ss", "ckks"):
            raise InputError(f"unknown backend {backend!r}; choose 'ss' or 'ckks'")
        where = r.where.strip()
        if where:
            filters.parse(where)
        members = {r.data_owner: "data-owner", r.model_owner: "model-owner"}
        dealer = None
        if backend == "ss":
            dealer = self.cfg.dealer or self.me
            members[dealer] = "dealer"
        st = self._new_state(f"predict-{backend}", analyst,
                             self._timeout(r.timeout_seconds), members,
                             [r.data_owner, r.model_owner])
        if dealer == self.me:
            st.local = self.registry.create(st.id, members, st.remaining() + AWAIT_GRACE,
                                            st.protocol)
        elif dealer is not None:
            st.dealer_node = dealer

        def body(st: SessionState) -> pb.PredictResponse:
            st.enter(Stage.PREPARE)
            info = self._fan_out(st, {r.model_owner: lambda: self._describe(
                st, r.model_owner, pb.DescribeRequest(analyst=analyst))})
            models = {m.name: m for m in info[r.model_owner].models}
            if r.model:
                if r.model not in models:
                    raise NodeFailed(r.model_owner, f"{r.model_owner} has no model {r.model!r} "
                                     f"(models: {', '.join(models) or 'none'})",
                                     grpc.StatusCode.INVALID_ARGUMENT)
                model = models[r.model]
            elif len(models) == 1:
                model = next(iter(models.values()))
            else:
                raise NodeFailed(r.model_owner, f"{r.model_owner} owns "
                                 f"{'no model' if not models else 'several models; name one'}",
                                 grpc.StatusCode.INVALID_ARGUMENT)
            try:
                draft = linear.InferenceSpec(
                    kind=model.kind, n_samples=1, n_features=len(model.features),
                    backend=backend, output=r.output or "prediction",
                    **({"feature_bound": r.feature_bound} if r.feature_bound else {}),
                    **({"frac_bits": int(r.frac_bits)} if r.frac_bits else {}),
                    **({"ckks_preset": r.ckks_preset} if r.ckks_preset else {}),
                )
            except InputError as exc:
                raise NodeFailed(self.me, str(exc), grpc.StatusCode.INVALID_ARGUMENT) from None
            common = dict(session_id=st.id, where="", analyst=analyst, tag=PREDICT_TAG,
                          members=[pb.Member(name=n, role=x) for n, x in members.items()])
            data_req = pb.PrepareRequest(
                timeout_seconds=st.remaining(), kind=pb.SESSION_KIND_PREDICT_DATA,
                spec_json=json.dumps(draft.to_json()), columns=list(model.features),
                **{**common, "where": where})
            resp = self._prepare(st, {r.data_owner: data_req})[r.data_owner]
            spec = linear.InferenceSpec.from_json(wire.parse_spec_json(resp.spec_json))
            expected = {**draft.to_json(), "n_samples": spec.n_samples}
            if spec.to_json() != expected:
                raise NodeFailed(r.data_owner, f"{r.data_owner} returned an inconsistent spec",
                                 grpc.StatusCode.ABORTED)
            spec_json = json.dumps(spec.to_json())
            model_req = pb.PrepareRequest(
                timeout_seconds=st.remaining(), kind=pb.SESSION_KIND_PREDICT_MODEL,
                spec_json=spec_json, model=model.name, **common)
            self._prepare(st, {r.model_owner: model_req})
            fault_point("after-prepare")
            st.enter(Stage.RUN)
            self._run(st)
            fault_point("mid-run")
            local: dict[str, Callable[[], Any]] = {}
            if dealer == self.me:
                assert st.local is not None
                t = GrpcTransport(st.local, self.peers)
                local[self.me] = lambda: linear.run_dealer(
                    t, spec, data_owner=r.data_owner, model_owner=r.model_owner,
                    tag=PREDICT_TAG)
            elif dealer is not None:
                deal = pb.DealRequest(session_id=st.id, timeout_seconds=st.remaining(),
                                      spec_json=spec_json, tag=PREDICT_TAG,
                                      members=common["members"])
                local[dealer] = lambda: self._deal(st, dealer, deal)
            st.enter(Stage.AWAIT)
            results = self._await(st, local)
            out = results[r.data_owner]
            if out.status == "ready":  # everyone finished: the data owner may write them now
                st.enter(Stage.RELEASE)
                try:
                    out = self.peers.party(r.data_owner).Await(
                        pb.SessionRef(session_id=st.id), timeout=st.remaining() + AWAIT_GRACE)
                except grpc.RpcError as err:
                    raise classify_rpc_failure(r.data_owner, err) from None
            return pb.PredictResponse(session_id=st.id, data_owner=r.data_owner,
                                      n_predictions=out.n_predictions,
                                      output_path=out.output_path, kind=spec.kind,
                                      backend=backend)

        return self._execute(st, body)

    # -------------------------------------------------------------------- status

    def status(self) -> pb.StatusResponse:
        """Health of every node of the federation (parallel, 3 s each)."""
        nodes = [n for n in self.cfg.federation.nodes if n.name != self.me]

        def health(name: str) -> pb.HealthResponse:
            return self.peers.node(name).Health(pb.HealthRequest(), timeout=3.0)

        futs = {n.name: self.pool.submit(health, n.name) for n in nodes}
        out = [pb.NodeStatus(name=self.me, role="coordinator", ok=True,
                             active_sessions=self.registry.count())]
        for n in nodes:
            try:
                h = futs[n.name].result()
                out.append(pb.NodeStatus(name=n.name, role=n.role, ok=True,
                                         active_sessions=h.active_sessions))
            except grpc.RpcError as err:
                out.append(pb.NodeStatus(name=n.name, role=n.role, ok=False,
                                         detail=from_rpc_error(err, n.name).message))
        return pb.StatusResponse(nodes=out)

    def describe(self, analyst: str) -> pb.FederationResponse:
        """Every party's public metadata, asked on ``analyst``'s behalf."""
        parties = [n.name for n in self.cfg.federation.parties]
        req = pb.DescribeRequest(analyst=analyst)
        futs = {p: self.pool.submit(self.peers.party(p).Describe, req, timeout=CONTROL_TIMEOUT)
                for p in parties}
        out = []
        for p in parties:
            try:
                out.append(futs[p].result())
            except grpc.RpcError as err:
                raise classify_rpc_failure(p, err) from None
        return pb.FederationResponse(federation=self.cfg.federation.name, coordinator=self.me,
                                     parties=out)


# ----------------------------------------------------------------------------- service


#: Analyst calls (Compute streams, Predict) served at once.  Each holds a
#: server worker for its whole session, so the cap stays well below the
#: server's pool (:data:`SERVER_WORKERS`): parties' Deliver calls and Health
#: always find a worker.  Calls beyond it get RESOURCE_EXHAUSTED at once.
MAX_ANALYST_CALLS = 64
SERVER_WORKERS = 256
#: How long the coordinator waits for each message an analyst owes it before
#: a session exists (the request, the public CKKS context).
ANALYST_MESSAGE_TIMEOUT = 30.0


def next_within(iterator: Iterator[Any], seconds: float, what: str) -> Any:
    """The next item of a request stream, or TimeoutError after ``seconds``.

    gRPC request iterators block without a deadline of their own; a reader
    thread keeps a silent client from holding a server worker forever.
    """
    box: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)

    def read() -> None:
        try:
            box.put((True, next(iterator, None)))
        except Exception as exc:  # the stream broke: report it to the waiter
            box.put((False, exc))

    threading.Thread(target=read, daemon=True, name="stream-read").start()
    try:
        ok, item = box.get(timeout=seconds)
    except queue.Empty:
        raise TimeoutError(f"the analyst did not send {what} within {seconds:g} s") from None
    if not ok:
        raise InputError(f"the analyst's stream broke before {what}")
    return item


class CoordinatorService(pb_grpc.CoordinatorServicer):
    """``Coordinator`` RPCs: analysts only (enforced by the access guard)."""

    def __init__(self, node: CoordinatorNode) -> None:
        self.node = node
        self._slots = threading.BoundedSemaphore(MAX_ANALYST_CALLS)

    def _admit(self, context: grpc.ServicerContext) -> None:
        if not self._slots.acquire(blocking=False):
            abort(context, SessionError(
                f"the coordinator is busy ({MAX_ANALYST_CALLS} computations running); "
                "retry shortly", grpc.StatusCode.RESOURCE_EXHAUSTED), self.node.me)

    def Compute(self, request_iterator: Iterator[pb.ComputeUp], context: grpc.ServicerContext
                ) -> Iterator[pb.ComputeDown]:
        self._admit(context)
        try:
            yield from self._compute(request_iterator, context)
        finally:
            self._slots.release()

    def _compute(self, request_iterator: Iterator[pb.ComputeUp], context: grpc.ServicerContext
                 ) -> Iterator[pb.ComputeDown]:
        analyst = caller(context).name
        node = self.node
        failure: BaseException | None = None
        try:
            first = next_within(request_iterator, ANALYST_MESSAGE_TIMEOUT, "its request")
            if first is None or first.WhichOneof("body") != "request":
                raise InputError("a Compute stream must start with the statistic request")
            request = first.request
            spec, _parties, _where = node._check_stat_request(request)
        except Exception as exc:
            failure = exc
        if failure is not None:
            abort(context, failure, node.me)
        if spec.backend == "ss":
            yield from self._compute_ss(analyst, request, context)
        else:
            yield from self._compute_ckks(analyst, request, request_iterator, context)

    def _compute_ss(self, analyst: str, request: pb.StatRequest,
                    context: grpc.ServicerContext) -> Iterator[pb.ComputeDown]:
        sid = secrets.token_hex(16)
        yield pb.ComputeDown(started=pb.ComputeStarted(session_id=sid,
                                                       coordinator=self.node.me, tag=STAT_TAG))

        def on_rpc_done() -> None:  # the analyst went away: stop the session everywhere
            if self.node.registry.find(sid) is not None:
                self.node.registry.abort(sid, "the analyst disconnected", analyst)

        context.add_callback(on_rpc_done)
        failure: BaseException | None = None
        try:
            result = self.node.run_statistic(analyst, request, session_id=sid)
        except Exception as exc:
            failure = exc
        if failure is not None:
            abort(context, failure, self.node.me)
        assert result is not None
        yield pb.ComputeDown(result=pb.ComputeResult(result_json=json.dumps(result.to_json())))

    def _compute_ckks(self, analyst: str, request: pb.StatRequest,
                      request_iterator: Iterator[pb.ComputeUp], context: grpc.ServicerContext
                      ) -> Iterator[pb.ComputeDown]:
        """Relay between the analyst's stream and the coordinator's aggregator session."""
        from smpc import ckks

        node = self.node
        out: queue.Queue[pb.ComputeDown | BaseException | None] = queue.Queue()
        sid = secrets.token_hex(16)
        yield pb.ComputeDown(started=pb.ComputeStarted(
            session_id=sid, coordinator=node.me, keyholder=analyst, tag=STAT_TAG))
        failure: BaseException | None = None
        try:
            asm = wire.Assembler(max_bytes=ckks.MAX_CONTEXT_BYTES)
            while not asm.complete:
                msg = next_within(request_iterator, ANALYST_MESSAGE_TIMEOUT,
                                  "its public CKKS context")
                if msg is None or msg.WhichOneof("body") != "chunk":
                    raise InputError("expected the analyst's public CKKS context")
                asm.add(msg.chunk)
            header, ctx_payload = asm.finish()
            if header.tag != CONTEXT_TAG or header.session_id != sid \
                    or not isinstance(ctx_payload, bytes):
                raise InputError("expected the analyst's public CKKS context")
        except Exception as exc:
            failure = exc
        if failure is not None:
            abort(context, failure, node.me)

        ready = threading.Event()
        holder: dict[str, SessionState] = {}

        def on_state(st: SessionState) -> None:
            holder["st"] = st
            ready.set()

        def to_analyst(tag: str, payload: Payload) -> None:
            if not context.is_active():
                raise PeerFailure(analyst, f"the analyst {analyst} disconnected")
            st = holder["st"]
            for chunk in wire.chunks(st.id, tag, payload):
                out.put(pb.ComputeDown(chunk=chunk))

        def upstream() -> None:
            """Analyst -> coordinator session: the key holder's messages."""
            ready.wait()
            st = holder.get("st")
            if st is None:
                return
            asm: wire.Assembler | None = None
            try:
                for msg in request_iterator:
                    if msg.WhichOneof("body") != "chunk":
                        raise InputError("unexpected message on the Compute stream")
                    if asm is None:
                        asm = wire.Assembler()
                    asm.add(msg.chunk)
                    if asm.complete:
                        header, payload = asm.finish()
                        asm = None
                        if header.session_id != st.id:
                            raise InputError("a payload names another session")
                        assert st.local is not None
                        st.local.deliver(analyst, header.tag, payload)
            except Exception as exc:
                if st.stage not in (Stage.DONE, Stage.FAILED):
                    log.info("session %s: analyst stream failed: %s", st.id, exc)
                    node.registry.abort(st.id, f"the analyst's stream failed: {exc}", analyst)

        def machine() -> None:
            try:
                node.run_statistic(analyst, request, to_analyst=to_analyst,
                                   context_bytes=ctx_payload, on_state=on_state, session_id=sid)
                out.put(pb.ComputeDown(result=pb.ComputeResult(result_json="")))
                out.put(None)
            except BaseException as exc:
                ready.set()
                out.put(exc)

        def on_rpc_done() -> None:
            st = holder.get("st")
            if st is not None and st.stage not in (Stage.DONE, Stage.FAILED):
                node.registry.abort(st.id, "the analyst disconnected", analyst)

        context.add_callback(on_rpc_done)
        threading.Thread(target=upstream, daemon=True, name="compute-up").start()
        threading.Thread(target=machine, daemon=True, name="compute-machine").start()
        while True:
            item = out.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                abort(context, item, node.me)
            yield item

    def Predict(self, request: pb.PredictRequest, context: grpc.ServicerContext
                ) -> pb.PredictResponse:
        self._admit(context)
        analyst = caller(context).name
        failure: BaseException | None = None
        try:
            resp = self.node.run_prediction(analyst, request)
        except Exception as exc:
            failure = exc
        finally:
            self._slots.release()
        if failure is not None:
            abort(context, failure, self.node.me)
        return resp

    def Status(self, request: pb.StatusRequest, context: grpc.ServicerContext
               ) -> pb.StatusResponse:
        return self.node.status()

    def Describe(self, request: pb.FederationRequest, context: grpc.ServicerContext
                 ) -> pb.FederationResponse:
        analyst = caller(context).name
        failure: BaseException | None = None
        try:
            resp = self.node.describe(analyst)
        except Exception as exc:
            failure = exc
        if failure is not None:
            abort(context, failure, self.node.me)
        return resp


def main(argv: list[str] | None = None) -> int:
    """``python -m parties.coordinator --config FILE``: run the coordinator in the foreground."""
    return run_in_foreground(
        "coordinator", argv, load_coordinator_config, CoordinatorNode,
        lambda cfg, _node, port: (
            f"coordinator {cfg.name} of federation {cfg.federation.name} listening on "
            f"{cfg.host}:{port} ({len(cfg.federation.parties)} parties, "
            f"dealer: {cfg.dealer or 'itself'})"))


if __name__ == "__main__":
    sys.exit(main())
