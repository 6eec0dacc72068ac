"""Party node servers on 127.0.0.1 over real mutual TLS, for transport tests.

:func:`party_nodes` makes a throw-away CA, one certificate per node, a federation of the
given names on free ports and one ``NodeService`` server each, and yields, per name, its
session registry, its server and its :class:`PeerChannels` to the others; everything is
stopped and closed afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from parties._pb import smpc_pb2_grpc as pb_grpc
from parties.config import FederationConfig, NodeEntry, TLSFiles
from parties.federation.local import free_ports
from parties.pki.certs import create_ca, issue_node_certificate, save_ca, save_node_credentials
from parties.transport.channels import PeerChannels
from parties.transport.server import NODE_ACCESS, NodeService, start_server
from parties.transport.sessions import SessionRegistry


def party_nodes(d: Path, federation: str, names: Sequence[str]
                ) -> Iterator[tuple[FederationConfig, dict[str, dict[str, Any]]]]:
    """Yield ``(federation config, {name: {"reg", "server", "peers"}})``; PKI files in ``d``."""
    ca = create_ca(federation)
    save_ca(ca, d / "ca.pem", d / "ca.key")
    ports = free_ports(len(names))
    tls = {}
    for n in names:
        cert, key = issue_node_certificate(ca, n, "party")
        save_node_credentials(cert, key, d / f"{n}.pem", d / f"{n}.key")
        tls[n] = TLSFiles(d / f"{n}.pem", d / f"{n}.key", d / "ca.pem")
    entries = [NodeEntry(n, "party", "127.0.0.1", p) for n, p in zip(names, ports, strict=True)]
    fed = FederationConfig(federation, d / "ca.pem", entries)
    nodes: dict[str, dict[str, Any]] = {}
    try:
        for n, p in zip(names, ports, strict=True):
            reg = SessionRegistry(n)
            svc = NodeService(n, "party", fed, reg)
            server, _ = start_server(
                name=n, federation=fed, tls=tls[n], host="127.0.0.1", port=p,
                access=NODE_ACCESS,
                register=[lambda s, svc=svc: pb_grpc.add_NodeServicer_to_server(svc, s)])
            nodes[n] = dict(reg=reg, server=server, peers=PeerChannels(fed, tls[n]))
        yield fed, nodes
    finally:
        for v in nodes.values():
            v["server"].stop(0)
            v["peers"].close()
