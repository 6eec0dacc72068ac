"""A whole federation in one process: real party nodes, no sockets -- for unit tests.

:class:`InProcessFederation` loads the configs of a federation directory (made by
:func:`parties.federation.local.init_federation`) and builds, in this process, every party
node (its policy, its ledger and hash-chained audit log in SQLite, its encrypted outputs), the
separate dealer if there is one, and the coordinator's engine.  What replaces the network is:

* :class:`InProcessControlPlane` -- the coordinator's control calls become method calls on the
  nodes, **through the same protobuf edge** the gRPC services use (a request is converted to
  its wire message and parsed by :func:`parties.transport.control.prepare_from_pb`), with the
  coordinator's identity as the caller, and failures classified exactly as the gRPC plane
  classifies a failed RPC;
* :class:`InProcessNetwork` -- protocol messages are handed to the receiving node's session
  (membership, replay and deadline checks are the sessions' own, as behind ``Deliver``).

So the coordinator's stage machine, the parties' policy checks, ledgers and audit logs are
exercised in one process; what it does not exercise -- TLS, the access guard, processes and
their failures -- the integration tests cover over real mutual-TLS connections.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np

from parties.analyst.keyholder import run_keyholder
from parties.analyst.partial import proceed_without_decliners
from parties.config import load_coordinator_config, load_dealer_config, load_party_config
from parties.config.layout import Layout
from parties.coordinator.core import Coordinator
from parties.coordinator.prediction import Predicted, PredictionProtocol
from parties.coordinator.requests import PredictionRequest, StatisticRequest
from parties.coordinator.statistic import STAT_TAG, StatisticProtocol
from parties.dealer.node import DealerNode
from parties.errors import NodeBlamed, SessionError, status_of
from parties.node.party import PartyNode
from parties.node.redact import redact
from parties.pki import signed as signed_mod
from parties.pki.certs import load_certificate, load_private_key
from parties.pki.identity import Identity
from parties.pki.signed import Signed
from parties.transport.channels import Network, Route
from parties.transport.control import (
    Awaited,
    ControlPlane,
    Deal,
    Described,
    Prepare,
    Prepared,
    classify,
    deal_from_pb,
    deal_to_pb,
    prepare_from_pb,
    prepare_to_pb,
)
from parties.transport.requests import prediction_request, statistic_request
from parties.transport.sessions import Session, SessionRegistry, Status
from smpc.errors import PeerFailure, ProtocolError
from smpc.names import Backend
from smpc.stats import StatResult, StatSpec
from smpc.transport import Payload, Transport

__all__ = ["InProcessControlPlane", "InProcessFederation", "InProcessNetwork"]

_T = TypeVar("_T")


class InProcessNetwork(Network):
    """Hands every protocol message to the receiving node's session registry."""

    def __init__(self) -> None:
        self.registries: dict[str, SessionRegistry] = {}
        self.witness_receivers: dict[str, Callable[[bytes, Identity], None]] = {}
        self.federation_name = ""

    def register(self, registry: SessionRegistry) -> None:
        self.registries[registry.me] = registry

    def transport(self, session: Session, routes: Mapping[str, Route] | None = None
                  ) -> Transport:
        return InProcessTransport(session, self, routes)

    def witness(self, peer: str, signed_head: bytes, sender: str, timeout: float) -> None:
        receive = self.witness_receivers.get(peer)
        if receive is None:
            raise PeerFailure(peer, f"{peer} keeps no audit witnesses in this process")
        receive(signed_head, Identity(sender, "party", self.federation_name, ""))


class InProcessTransport(Transport):
    """The :class:`~smpc.transport.Transport` of one session over an :class:`InProcessNetwork`.

    Failures map as over gRPC: a receiver that refuses the payload (a replay, not a member)
    -> :class:`~smpc.errors.ProtocolError` blamed on this sender; a receiver without the
    session (closed, unknown) -> :class:`~smpc.errors.PeerFailure` naming it.
    """

    def __init__(self, session: Session, network: InProcessNetwork,
                 routes: Mapping[str, Route] | None = None) -> None:
        super().__init__(session.me)
        self.session = session
        self.network = network
        self.routes = dict(routes or {})

    def _send(self, to: str, tag: str, payload: Payload) -> None:
        s = self.session
        if to not in s.members:
            raise ProtocolError(f"{self.me} tried to send {tag!r} to {to!r}, not a session member")
        if s.status == Status.ABORTED:
            raise PeerFailure(s.failed_node or to,
                              f"session aborted before {self.me} sent {tag!r}: {s.abort_reason}")
        copy = payload.copy() if isinstance(payload, np.ndarray) else bytes(payload)
        route = self.routes.get(to)
        if route is not None:
            route(tag, copy)
            return
        registry = self.network.registries.get(to)
        if registry is None:
            raise PeerFailure(to, f"{to} is not part of this in-process federation")
        try:
            registry.get(s.id).deliver(self.me, tag, copy)
        except SessionError as exc:
            if exc.code in (grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.PERMISSION_DENIED):
                raise ProtocolError(f"{to} refused {tag!r} from {self.me}: {exc}") from None
            raise PeerFailure(to, f"{self.me} could not deliver {tag!r} to {to}: {exc}"
                              ) from None

    def _recv(self, sender: str, tag: str) -> Payload:
        return self.session.wait_message(sender, tag)


class InProcessControlPlane(ControlPlane):
    """The control calls as direct calls on in-process nodes (see the module docstring)."""

    def __init__(self, parties: Mapping[str, PartyNode], dealers: Mapping[str, DealerNode],
                 caller: Identity) -> None:
        self.parties = dict(parties)
        self.dealers = dict(dealers)
        self.caller = caller

    def _party(self, node: str) -> PartyNode:
        if node not in self.parties:
            raise NodeBlamed(node, f"{node} is unreachable or stopped (not in this process)",
                             grpc.StatusCode.UNAVAILABLE)
        return self.parties[node]

    def _call(self, node: str, fn: Callable[[], _T], *, redacted: bool = False) -> _T:
        try:
            return fn()
        except NodeBlamed:
            raise
        except Exception as exc:  # what the gRPC edge would have turned into a status
            code, message, blamed = status_of(redact(exc, node) if redacted else exc, node)
            raise classify(node, code, message, blamed) from None

    def describe(self, node: str, analyst: str, timeout: float) -> Described:
        party = self._party(node)
        return self._call(node, lambda: party.describe(analyst, self.caller))

    def prepare(self, node: str, request: Prepare, timeout: float) -> Prepared:
        party = self._party(node)

        def call() -> Prepared:
            wire_msg = prepare_to_pb(request)
            typed = prepare_from_pb(wire_msg, node, party.cfg.federation)  # the edge's parse
            return party.prepare(typed, self.caller)

        return self._call(node, call, redacted=True)

    def run(self, node: str, session_id: str, timeout: float) -> None:
        party = self._party(node)
        self._call(node, lambda: party.run(session_id))

    def await_(self, node: str, session_id: str, timeout: float) -> Awaited:
        party = self._party(node)
        outcome = self._call(node, lambda: party.wait(session_id), redacted=True)
        return Awaited(outcome.status, outcome.n_predictions, outcome.output_path)

    def abort(self, node: str, session_id: str, reason: str, failed_node: str | None,
              timeout: float) -> bool:
        party = self._party(node)
        return self._call(node, lambda: party.abort_session(session_id, reason, failed_node))

    def deal(self, dealer: str, request: Deal, timeout: float) -> None:
        node = self.dealers[dealer]
        self._call(dealer, lambda: node.deal(deal_from_pb(deal_to_pb(request), dealer,
                                                          node.cfg.federation)))

    def abort_dealer(self, dealer: str, session_id: str, reason: str,
                     failed_node: str | None, timeout: float) -> bool:
        return self.dealers[dealer].registry.abort(session_id, reason, failed_node)


@dataclass
class InProcessFederation:
    """Every node of a federation directory, built in this process (see the module docstring).

    Use as a context manager; :meth:`compute` and :meth:`predict` run protocols as an analyst
    would (``analyst``: the name the parties' policies see), returning what the analyst gets.
    """

    layout: Layout
    parties: dict[str, PartyNode]
    dealers: dict[str, DealerNode]
    coordinator: Coordinator
    network: InProcessNetwork
    analyst: str

    def sign(self, body: Mapping[str, Any], kind: str, context_sha256: str | None = None
             ) -> Signed:
        """``body`` signed with the federation directory's analyst key, verified as the
        coordinator's edge verifies it."""
        lay, fed = self.layout, self.coordinator.federation
        cert = load_certificate(lay.analyst_cert)
        envelope = signed_mod.sign(body, kind=kind, federation=fed.name, analyst=self.analyst,
                                   key=load_private_key(lay.analyst_key), cert=cert,
                                   context_sha256=context_sha256)
        return signed_mod.verify(envelope, ca_cert=load_certificate(lay.ca_cert),
                                 federation=fed.name, allowed=fed)

    @classmethod
    def open(cls, directory: str | Path, *, analyst: str | None = None,
             tables: Mapping[str, Any] | None = None) -> InProcessFederation:
        """Build every node of the federation in ``directory`` (configs as on disk)."""
        lay = Layout(directory)
        fed = lay.federation()
        network = InProcessNetwork()
        network.federation_name = fed.name
        parties: dict[str, PartyNode] = {}
        dealers: dict[str, DealerNode] = {}
        coordinator_cfg = None
        for entry in fed.nodes:
            if entry.role == "party":
                cfg = load_party_config(lay.config(entry.name))
                node = PartyNode(cfg, (tables or {}).get(entry.name), network=network)
                node.start(serve=False)
                network.register(node.registry)
                network.witness_receivers[entry.name] = node.receive_witness
                parties[entry.name] = node
            elif entry.role == "dealer":
                dealer = DealerNode(load_dealer_config(lay.config(entry.name)), network=network)
                dealer.start(serve=False)
                network.register(dealer.registry)
                dealers[entry.name] = dealer
            elif entry.role == "coordinator":
                coordinator_cfg = load_coordinator_config(lay.config(entry.name))
        if coordinator_cfg is None:
            raise ValueError(f"{lay.directory} has no coordinator")
        me = coordinator_cfg.name
        caller = Identity(federation=fed.name, role="coordinator", name=me, fingerprint="")
        control = InProcessControlPlane(parties, dealers, caller)
        coord = Coordinator(me, fed, control=control, network=network,
                            dealer=coordinator_cfg.dealer,
                            session_timeout=float(coordinator_cfg.session_timeout))
        network.register(coord.registry)
        name = analyst or (fed.analysts[0].name if fed.analysts else "analyst")
        return cls(lay, parties, dealers, coord, network, name)

    def __enter__(self) -> InProcessFederation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for node in self.parties.values():
            node.stop()
        for dealer in self.dealers.values():
            dealer.stop()
        self.coordinator.close()

    def compute(self, spec: StatSpec, where: str = "", *, parties: Sequence[str] = (),
                timeout: float = 60.0, allow_partial: bool = False) -> StatResult:
        """One joint statistic, as the analyst's client would run it (ckks: with its key;
        ``allow_partial``: without the parties that decline, as
        :meth:`parties.analyst.client.Client.compute`)."""
        names = sorted(parties or self.parties)
        return proceed_without_decliners(
            lambda chosen: self._compute_once(spec, where, tuple(chosen), timeout), names,
            allow=allow_partial)

    def _compute_once(self, spec: StatSpec, where: str, names: tuple[str, ...],
                      timeout: float) -> StatResult:
        body = statistic_request(spec, where, names)
        coord = self.coordinator
        if spec.backend == Backend.SS:
            request = StatisticRequest(spec, names, where.strip(), timeout,
                                       self.sign(body, "statistic"))
            result = coord.execute(StatisticProtocol(coord, self.analyst, request))
            assert result is not None
            return result
        return self._compute_ckks(spec, names, where, timeout, body)

    def _compute_ckks(self, spec: StatSpec, names: tuple[str, ...], where: str, timeout: float,
                      body: Mapping[str, Any]) -> StatResult:
        from smpc import ckks

        coord = self.coordinator
        holder = ckks.KeyHolder(spec.ckks_preset)
        context = holder.public_context()
        request = StatisticRequest(spec, names, where.strip(), timeout,
                                   self.sign(body, "statistic", signed_mod.context_hash(context)))
        sid = secrets.token_hex(16)
        registry = self.network.registries.setdefault(self.analyst, SessionRegistry(self.analyst))
        session = registry.create(sid, {coord.me: "aggregator"}, request.timeout + 5.0)
        outcome: dict[str, Any] = {}

        def keyholder() -> None:
            try:
                outcome["result"] = run_keyholder(
                    self.network.transport(session), request.spec, aggregator=coord.me,
                    keyholder=holder, tag=STAT_TAG)
            except BaseException as exc:
                outcome["error"] = exc

        def to_analyst(tag: str, payload: Payload) -> None:
            session.deliver(coord.me, tag, payload)

        thread = threading.Thread(target=keyholder, daemon=True, name="keyholder")
        thread.start()
        try:
            coord.execute(StatisticProtocol(coord, self.analyst, request, to_analyst=to_analyst,
                                            context_bytes=context, session_id=sid))
        except BaseException:
            session.abort("the computation failed")
            raise
        finally:
            thread.join(request.timeout + 10.0)
            registry.free(sid)
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]

    def predict(self, data_owner: str, model_owner: str, **options: Any) -> Predicted:
        """One inference (``options``: the fields of :class:`PredictionRequest`, and ``missing``
        and ``key``, which only the signed request carries)."""
        fields = {"timeout": 60.0, **options}
        signed_only = {k: fields.pop(k) for k in ("missing", "key", "rows") if k in fields}
        body = prediction_request(data_owner=data_owner, model_owner=model_owner, **{
            k: v for k, v in fields.items() if k != "timeout"}, **signed_only)
        request = PredictionRequest(data_owner=data_owner, model_owner=model_owner,
                                    signed=self.sign(body, "prediction"), **fields)
        coord = self.coordinator
        return coord.execute(PredictionProtocol(coord, self.analyst, request))
