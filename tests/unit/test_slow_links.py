"""Channels over a slow link: a relay that holds every chunk 150 ms each way (a 300 ms round
trip, as between continents), in front of a real mutual-TLS gRPC server.

Catches connect timeouts shorter than a handshake over such a link: gRPC takes its minimum
connect timeout from ``grpc.min_reconnect_backoff_ms``, which the runtime had set to its
100 ms backoff, so no channel could ever connect across it (UNAVAILABLE after ~0.1 s).  The
TLS 1.3 handshake alone needs two crossings of the relay (>= 300 ms), whatever the machine.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from parties import config as C
from parties._pb import smpc_pb2 as pb
from parties._pb import smpc_pb2_grpc as pb_grpc
from parties.pki.certs import (
    create_ca,
    issue_node_certificate,
    load_certificate,
    save_ca,
    save_node_credentials,
)
from parties.pki.identity import fingerprint
from parties.transport import wire
from parties.transport.pinning import PinnedChannels
from parties.transport.tls import server_credentials

DELAY = 0.15  # seconds each chunk waits in the relay, each way


class Health(pb_grpc.NodeServicer):
    def Health(self, request: pb.HealthRequest, context: Any) -> pb.HealthResponse:
        return pb.HealthResponse(name="org-b")


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            time.sleep(DELAY)
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def slow_relay(target_port: int) -> Iterator[int]:
    """A TCP relay to ``127.0.0.1:target_port`` that delays every chunk; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", target_port))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    ca = create_ca("fed")
    save_ca(ca, tmp_path / "ca.pem", tmp_path / "ca.key")
    for name, role in (("org-b", "party"), ("coord", "coordinator")):
        cert, key = issue_node_certificate(ca, name, role)
        save_node_credentials(cert, key, tmp_path / f"{name}.pem", tmp_path / f"{name}.key")
    return tmp_path


def test_a_link_with_a_300_ms_round_trip_still_connects(pki: Path) -> None:
    """A pinned channel of the runtime (its options, its pre-flight) reaches a server behind
    the slow relay and gets an answer."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_NodeServicer_to_server(Health(), server)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(
        pki / "org-b.pem", pki / "org-b.key", pki / "ca.pem"))
    server.start()
    try:
        with slow_relay(port) as relay_port:
            fed = C.FederationConfig("fed", pki / "ca.pem", [C.NodeEntry(
                "org-b", "party", "127.0.0.1", relay_port,
                fingerprint(load_certificate(pki / "org-b.pem")))])
            channels = PinnedChannels(fed, C.TLSFiles(pki / "coord.pem", pki / "coord.key",
                                                      pki / "ca.pem"), wire.grpc_options())
            try:
                h = pb_grpc.NodeStub(channels.channel("org-b")).Health(pb.HealthRequest(),
                                                                       timeout=20)
                assert h.name == "org-b"
            finally:
                channels.close()
    finally:
        server.stop(None)
