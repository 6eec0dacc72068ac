"""The party's gRPC edge: the ``Party`` service, where every request is parsed once.

Each handler turns the wire message into a typed request
(:func:`parties.transport.control.prepare_from_pb`), hands it to :class:`~.party.PartyNode`
with the caller's verified identity, and turns the answer back into protobuf.  Errors end the
call with the status of :mod:`parties.errors`' table; what a party refuses leaves through
:func:`~.redact.redact`, so no cell, value or path travels in an error.

Every method is callable only by the coordinator (:data:`PARTY_ACCESS`); ``Node.Health`` and
``Node.Deliver`` are served beside it by :class:`~parties.transport.server.NodeService`.
"""

from __future__ import annotations

import logging

import grpc

from parties._pb import smpc_pb2 as pb
from parties._pb import smpc_pb2_grpc as pb_grpc
from parties.errors import rpc_errors
from parties.node.party import PartyNode
from parties.node.redact import redact
from parties.transport import control
from parties.transport.server import NODE_ACCESS, NodeService, caller, start_server
from smpc.errors import InputError

__all__ = ["PARTY_ACCESS", "PartyService", "serve"]

log = logging.getLogger("smpc.party")

COORDINATOR_ONLY = ("coordinator",)
PARTY_ACCESS: dict[str, tuple[str, ...]] = {
    **NODE_ACCESS,
    "/smpc.v1.Party/Describe": COORDINATOR_ONLY,
    "/smpc.v1.Party/Prepare": COORDINATOR_ONLY,
    "/smpc.v1.Party/Run": COORDINATOR_ONLY,
    "/smpc.v1.Party/Await": COORDINATOR_ONLY,
    "/smpc.v1.Party/Abort": COORDINATOR_ONLY,
    "/smpc.v1.Node/Witness": ("party",),
}


class PartyService(pb_grpc.PartyServicer):
    """The ``Party`` service of one node (see the module docstring)."""

    def __init__(self, node: PartyNode) -> None:
        self.node = node

    @property
    def me(self) -> str:
        return self.node.cfg.name

    @rpc_errors()
    def Describe(self, request: pb.DescribeRequest, context: grpc.ServicerContext
                 ) -> pb.DescribeResponse:
        return control.described_to_pb(self.node.describe(request.analyst, caller(context)))

    @rpc_errors(redact)
    def Prepare(self, request: pb.PrepareRequest, context: grpc.ServicerContext
                ) -> pb.PrepareResponse:
        ident = caller(context)
        try:
            typed = control.prepare_from_pb(request, self.me, self.node.cfg.federation)
        except InputError as exc:  # a malformed request is refused -- and audited
            self.node.refuse_malformed(request.analyst, request.session_id,
                                       control.kind_name(request.kind), ident, exc)
            raise
        try:
            return control.prepared_to_pb(self.node.prepare(typed, ident))
        except Exception as exc:
            log.info("prepare %s refused: %s", typed.session_id, redact(exc, self.me))
            raise

    @rpc_errors()
    def Run(self, request: pb.SessionRef, context: grpc.ServicerContext) -> pb.RunResponse:
        self.node.run(request.session_id)
        return pb.RunResponse()

    @rpc_errors(redact)
    def Await(self, request: pb.SessionRef, context: grpc.ServicerContext
              ) -> pb.AwaitResponse:
        outcome = self.node.wait(request.session_id)
        return pb.AwaitResponse(status=outcome.status, n_predictions=outcome.n_predictions,
                                output_path=outcome.output_path)

    @rpc_errors()
    def Abort(self, request: pb.AbortRequest, context: grpc.ServicerContext
              ) -> pb.AbortResponse:
        was = self.node.abort_session(request.session_id, request.reason[:500] or "aborted",
                                      request.failed_node[:64] or None)
        if was:
            log.info("session %s aborted by the coordinator: %s", request.session_id,
                     request.reason[:200])
        return pb.AbortResponse(was_active=was)


def serve(node: PartyNode) -> tuple[grpc.Server, int]:
    """Start the node's mutual-TLS server (``Node`` and ``Party`` services); the bound port."""
    cfg = node.cfg
    node_service = NodeService(cfg.name, "party", cfg.federation, node.registry,
                               on_witness=node.receive_witness)
    party_service = PartyService(node)
    return start_server(
        name=cfg.name, federation=cfg.federation, tls=cfg.tls, host=cfg.host, port=cfg.port,
        access=PARTY_ACCESS,
        register=[lambda s: pb_grpc.add_NodeServicer_to_server(node_service, s),
                  lambda s: pb_grpc.add_PartyServicer_to_server(party_service, s)])
