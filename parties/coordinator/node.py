"""The coordinator node: the engine behind a mutual-TLS gRPC server.

``python -m parties.coordinator --config coordinator.json`` runs it in the foreground;
start-up problems print one line to stderr and exit with status 2.

:class:`CoordinatorNode` wires the engine (:class:`~.core.Coordinator`) to the network: a
:class:`~parties.transport.control.GrpcControlPlane` and a
:class:`~parties.transport.channels.GrpcNetwork` over one set of channels to the federation's
nodes, the ``Node`` service (Health, Deliver: the parties' and the dealer's messages to the
coordinator's own roles) and the analysts' ``Coordinator`` service (:mod:`.service`).

Privacy is the parties' business (:mod:`parties.privacy`): each party checks its own policy,
charges its own ledger and audits every request; the coordinator checks nothing on their
behalf.  What it learns: an ``ss`` statistic's summed aggregates and result (it is the
recipient), the public sizes of an inference, and which node failed.  It never sees an opened
Beaver value (openings go party to party), a ``ckks`` plaintext, or a prediction.
"""

from __future__ import annotations

import logging
from concurrent import futures

import grpc

from parties._pb import smpc_pb2 as pb
from parties._pb import smpc_pb2_grpc as pb_grpc
from parties.config import CoordinatorConfig, load_coordinator_config
from parties.coordinator.core import Coordinator
from parties.coordinator.service import SERVER_WORKERS, CoordinatorService
from parties.errors import from_rpc_error
from parties.pki.certs import load_certificate
from parties.transport.channels import GrpcNetwork, PeerChannels
from parties.transport.control import GrpcControlPlane
from parties.transport.faults import install_fault
from parties.transport.lifecycle import run_in_foreground
from parties.transport.server import NODE_ACCESS, NodeService, start_server
from parties.transport.sessions import SessionRegistry

__all__ = ["COORDINATOR_ACCESS", "CoordinatorNode", "main"]

log = logging.getLogger("smpc.coordinator")

ANALYSTS = ("analyst",)
COORDINATOR_ACCESS: dict[str, tuple[str, ...]] = {
    **NODE_ACCESS,
    "/smpc.v1.Coordinator/Compute": ANALYSTS,
    "/smpc.v1.Coordinator/Predict": ANALYSTS,
    "/smpc.v1.Coordinator/Status": ANALYSTS,
    "/smpc.v1.Coordinator/Describe": ANALYSTS,
}


class CoordinatorNode:
    """The coordinator: config, channels, engine and server."""

    def __init__(self, cfg: CoordinatorConfig) -> None:
        self.cfg = cfg
        self.me = cfg.name
        self.peers = PeerChannels(cfg.federation, cfg.tls)
        self.coordinator = Coordinator(
            cfg.name, cfg.federation, control=GrpcControlPlane(self.peers),
            network=GrpcNetwork(self.peers), dealer=cfg.dealer,
            session_timeout=float(cfg.session_timeout))
        self.ca_cert = load_certificate(cfg.tls.ca)
        self.server: grpc.Server | None = None
        self.port: int | None = None
        self._status_pool = futures.ThreadPoolExecutor(max_workers=16,
                                                       thread_name_prefix="status")

    @property
    def registry(self) -> SessionRegistry:
        """The engine's session registry."""
        return self.coordinator.registry

    def start(self) -> int:
        install_fault("coordinator")  # SMPC_FAULT: test-only, a no-op when unset
        node_service = NodeService(self.me, "coordinator", self.cfg.federation,
                                   self.coordinator.registry)
        service = CoordinatorService(self)
        self.server, self.port = start_server(
            name=self.me, federation=self.cfg.federation, tls=self.cfg.tls,
            host=self.cfg.host, port=self.cfg.port, access=COORDINATOR_ACCESS,
            register=[lambda s: pb_grpc.add_NodeServicer_to_server(node_service, s),
                      lambda s: pb_grpc.add_CoordinatorServicer_to_server(service, s)],
            max_workers=SERVER_WORKERS,
        )
        self.coordinator.registry.start_reaper()
        return self.port

    def stop(self, grace: float = 2.0) -> None:
        self.coordinator.registry.close()
        if self.server is not None:
            self.server.stop(grace).wait()
        self._status_pool.shutdown(wait=False, cancel_futures=True)
        self.coordinator.close()

    def status(self) -> pb.StatusResponse:
        """Health of every node of the federation (parallel, 3 s each)."""
        nodes = [n for n in self.cfg.federation.nodes if n.name != self.me]

        def health(name: str) -> pb.HealthResponse:
            return self.peers.node(name).Health(pb.HealthRequest(), timeout=3.0)

        futs = {n.name: self._status_pool.submit(health, n.name) for n in nodes}
        out = [pb.NodeStatus(name=self.me, role="coordinator", ok=True,
                             active_sessions=self.coordinator.registry.count())]
        for n in nodes:
            try:
                h = futs[n.name].result()
                out.append(pb.NodeStatus(name=n.name, role=n.role, ok=True,
                                         active_sessions=h.active_sessions))
            except grpc.RpcError as err:
                out.append(pb.NodeStatus(name=n.name, role=n.role, ok=False,
                                         detail=from_rpc_error(err, n.name).message))
        return pb.StatusResponse(nodes=out)


def main(argv: list[str] | None = None) -> int:
    """``python -m parties.coordinator --config FILE``: run the coordinator in the foreground."""
    return run_in_foreground(
        "coordinator", argv, load_coordinator_config, CoordinatorNode,
        lambda cfg, _node, port: (
            f"coordinator {cfg.name} of federation {cfg.federation.name} listening on "
            f"{cfg.host}:{port} ({len(cfg.federation.parties)} parties, "
            f"dealer: {cfg.dealer or 'itself'})"))
