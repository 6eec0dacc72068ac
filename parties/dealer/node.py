"""The optional separate dealer node: correlated randomness for Beaver products.

By default the coordinator deals (:mod:`parties.coordinator`).  A federation
whose coordinator config names a ``dealer`` node uses this server instead:
``python -m parties.dealer --config dealer.json`` (start-up problems print one
line to stderr and exit with status 2).

It serves ``Node`` (Health, Deliver) and ``Dealer``, callable **only by the
coordinator**: ``Deal`` registers the session (members and deadline from the
request), runs :func:`smpc.linear.run_dealer` -- which sends each owner a hello
(only then can the owners' messages find the session here), receives each
owner's 16-byte mask seed through ``Deliver`` (members of the session only) and
sends the model owner its correction -- and returns when that is delivered;
``Abort`` stops and frees it.  The dealer chooses no mask (each owner draws its
own) and learns nothing about inputs: it receives the two seeds and never an
opening.  A wrong correction fails the owners' check and the computation, with
the dealer named.  Trust assumption: it does not collude with a party.
"""

from __future__ import annotations

import logging
import threading

import grpc

from parties._pb import smpc_pb2 as pb
from parties._pb import smpc_pb2_grpc as pb_grpc
from parties.config import DealerConfig, load_dealer_config
from parties.errors import rpc_errors
from parties.transport.channels import GrpcNetwork, Network, PeerChannels
from parties.transport.control import Deal, SessionRole, deal_from_pb
from parties.transport.faults import fault_point, fault_transport, install_fault
from parties.transport.lifecycle import run_in_foreground
from parties.transport.server import NODE_ACCESS, NodeService, start_server
from parties.transport.sessions import SessionRegistry
from smpc import linear
from smpc.errors import InputError

__all__ = ["DEALER_ACCESS", "DealerNode", "DealerService", "main"]

log = logging.getLogger("smpc.dealer")

DEALER_ACCESS: dict[str, tuple[str, ...]] = {
    **NODE_ACCESS,
    "/smpc.v1.Dealer/Deal": ("coordinator",),
    "/smpc.v1.Dealer/Abort": ("coordinator",),
}


class DealerNode:
    """A dealer: config, session registry, network and (optionally) its gRPC server."""

    def __init__(self, cfg: DealerConfig, network: Network | None = None) -> None:
        self.cfg = cfg
        self.registry = SessionRegistry(cfg.name)
        self.network = network or GrpcNetwork(PeerChannels(cfg.federation, cfg.tls))
        self.server: grpc.Server | None = None
        self.port: int | None = None

    def start(self, *, serve: bool = True) -> int:
        install_fault("dealer")  # SMPC_FAULT: test-only, a no-op when unset
        if serve:
            node_service = NodeService(self.cfg.name, "dealer", self.cfg.federation,
                                       self.registry)
            service = DealerService(self)
            self.server, self.port = start_server(
                name=self.cfg.name, federation=self.cfg.federation, tls=self.cfg.tls,
                host=self.cfg.host, port=self.cfg.port, access=DEALER_ACCESS,
                register=[lambda s: pb_grpc.add_NodeServicer_to_server(node_service, s),
                          lambda s: pb_grpc.add_DealerServicer_to_server(service, s)],
            )
        self.registry.start_reaper()
        return self.port or 0

    def stop(self, grace: float = 2.0) -> None:
        self.registry.close()
        if self.server is not None:
            self.server.stop(grace).wait()
        self.network.close()

    def deal(self, d: Deal) -> None:
        """Register, deal, return once the triples are delivered; frees the session whatever
        happens."""
        me = self.cfg.name
        if d.members.get(me) is not SessionRole.DEALER:
            raise InputError(f"{me} is not the dealer of this session")
        owners = {role: name for name, role in d.members.items()
                  if role is not SessionRole.DEALER}
        if set(owners) != {SessionRole.DATA_OWNER, SessionRole.MODEL_OWNER} \
                or len(d.members) != 3:
            raise InputError("a dealt session has exactly one data owner and one model owner")
        session = self.registry.create(d.session_id, {n: str(r) for n, r in d.members.items()},
                                       d.timeout, "deal")
        session.set_running()
        errors: list[BaseException] = []

        def role() -> None:
            try:
                t = fault_transport(self.network.transport(session), "mid-deal")
                linear.run_dealer(t, d.spec, data_owner=owners[SessionRole.DATA_OWNER],
                                  model_owner=owners[SessionRole.MODEL_OWNER], tag=d.tag)
                session.finish(None)
            except BaseException as exc:  # reported to the coordinator
                errors.append(exc)
                session.fail(exc)

        threading.Thread(target=role, daemon=True, name=f"deal-{d.session_id[:8]}").start()
        try:
            if not session.wait_done(session.remaining() + 1.0):
                self.registry.abort(d.session_id, "deadline passed")
                raise TimeoutError(f"{me} could not deal before the session deadline")
            if errors:
                raise errors[0]
            if session.error is None and session.abort_reason:
                raise InputError(f"session aborted: {session.abort_reason}")
        finally:
            self.registry.free(d.session_id, session.status.value)
        log.info("session %s: dealt", d.session_id)


class DealerService(pb_grpc.DealerServicer):
    """The ``Dealer`` service: callable only by the coordinator (:data:`DEALER_ACCESS`)."""

    def __init__(self, node: DealerNode) -> None:
        self.node = node
        self.me = node.cfg.name

    @rpc_errors()
    def Deal(self, request: pb.DealRequest, context: grpc.ServicerContext) -> pb.DealResponse:
        fault_point("on-deal")
        self.node.deal(deal_from_pb(request, self.me, self.node.cfg.federation))
        return pb.DealResponse()

    @rpc_errors()
    def Abort(self, request: pb.AbortRequest, context: grpc.ServicerContext
              ) -> pb.AbortResponse:
        was = self.node.registry.abort(request.session_id, request.reason[:500] or "aborted",
                                       request.failed_node[:64] or None)
        return pb.AbortResponse(was_active=was)


def main(argv: list[str] | None = None) -> int:
    """``python -m parties.dealer --config FILE``: run the dealer in the foreground."""
    return run_in_foreground(
        "dealer", argv, load_dealer_config, DealerNode,
        lambda cfg, _node, port: (
            f"dealer {cfg.name} of federation {cfg.federation.name} listening on "
            f"{cfg.host}:{port}"))
