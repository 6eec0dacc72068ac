"""Clients pin servers (:mod:`parties.transport.pinning`), over real gRPC and mutual TLS on
loopback, with certificates of a real federation CA.

The servers here record every call that reaches them (an interceptor sees a call as soon as its
headers arrive), so "got nothing" means no request, not even its method name.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509

from parties import config as C
from parties._pb import smpc_pb2 as pb
from parties._pb import smpc_pb2_grpc as pb_grpc
from parties.errors import Unavailable, from_rpc_error
from parties.federation.local import free_ports
from parties.pki.certs import (
    CertificateAuthority,
    create_ca,
    issue_node_certificate,
    save_ca,
    save_node_credentials,
)
from parties.pki.identity import PKIError, fingerprint
from parties.transport import wire
from parties.transport.pinning import ChannelRefused, PinnedChannels, check_server_certificate
from parties.transport.tls import server_credentials


class Health(pb_grpc.NodeServicer):
    def __init__(self, name: str) -> None:
        self.name = name

    def Health(self, request: pb.HealthRequest, context: Any) -> pb.HealthResponse:
        return pb.HealthResponse(name=self.name)


class Server:
    """A ``Node`` server presenting ``cert``; ``calls`` records every call that reaches it."""

    def __init__(self, port: int, cert: Path, key: Path, ca: Path, label: str) -> None:
        self.calls: list[str] = []
        calls = self.calls

        class Recorder(grpc.ServerInterceptor):
            def intercept_service(self, continuation: Any, details: Any) -> Any:
                calls.append(details.method)
                return continuation(details)

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2),
                                  interceptors=[Recorder()])
        pb_grpc.add_NodeServicer_to_server(Health(label), self.server)
        assert self.server.add_secure_port(f"127.0.0.1:{port}",
                                           server_credentials(cert, key, ca))
        self.server.start()

    def stop(self) -> None:
        self.server.stop(None).wait()


class Fed:
    """A CA, credentials for org-b (pinned), org-b-old (same name, not pinned), org-c and the
    coordinator (the client), and a federation file listing org-b at a free port."""

    def __init__(self, d: Path) -> None:
        self.d = d
        self.ca: CertificateAuthority = create_ca("fed")
        save_ca(self.ca, d / "ca.pem", d / "ca.key")
        self.certs: dict[str, x509.Certificate] = {}
        for label, name, role in (("org-b", "org-b", "party"), ("org-b-old", "org-b", "party"),
                                  ("org-c", "org-c", "party"),
                                  ("coord", "coord", "coordinator")):
            cert, key = issue_node_certificate(self.ca, name, role)
            save_node_credentials(cert, key, d / f"{label}.pem", d / f"{label}.key")
            self.certs[label] = cert
        self.port = free_ports(1)[0]
        self.write()

    def write(self, *, pin: str | None = "org-b", revoked: tuple[str, ...] = ()) -> None:
        node = {"name": "org-b", "role": "party", "host": "127.0.0.1", "port": self.port}
        if pin:
            node["fingerprint"] = fingerprint(self.certs[pin])
        doc = {"kind": "federation", "name": "fed", "ca_cert": "ca.pem", "nodes": [
            node, {"name": "coord", "role": "coordinator", "host": "127.0.0.1", "port": 1}],
            "revoked": [fingerprint(self.certs[r]) for r in revoked]}
        (self.d / "federation.json").write_text(json.dumps(doc))

    def serve(self, label: str) -> Server:
        return Server(self.port, self.d / f"{label}.pem", self.d / f"{label}.key",
                      self.d / "ca.pem", label)

    def channels(self) -> PinnedChannels:
        fed = C.load_federation(self.d / "federation.json")
        return PinnedChannels(fed, C.TLSFiles(self.d / "coord.pem", self.d / "coord.key",
                                              self.d / "ca.pem"), wire.grpc_options())


@pytest.fixture
def fed(tmp_path: Path) -> Iterator[Fed]:
    yield Fed(tmp_path)


def health(ch: grpc.Channel) -> str:
    return pb_grpc.NodeStub(ch).Health(pb.HealthRequest(), timeout=5).name  # type: ignore[no-any-return]


def test_a_server_swapped_after_the_check_gets_nothing(fed: Fed) -> None:
    """The pre-flight saw the pinned org-b; then another server with a CA-signed org-b
    certificate takes the port.  The channel already built trusts only the pinned certificate,
    so gRPC's own handshake refuses the newcomer on reconnection: it receives no call (catches
    a channel that trusts the CA once the check passed -- the time-of-check/time-of-use gap)."""
    channels = fed.channels()
    real = fed.serve("org-b")
    try:
        ch = channels.channel("org-b")
        assert health(ch) == "org-b"
    finally:
        real.stop()
    impostor = fed.serve("org-b-old")
    try:
        with pytest.raises(grpc.RpcError) as err:  # waits for a connection: gRPC keeps trying
            pb_grpc.NodeStub(ch).Health(pb.HealthRequest(), timeout=3, wait_for_ready=True)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert impostor.calls == []
        channels.forget("org-b")  # what callers do after a transport failure: check again
        with pytest.raises(ChannelRefused) as refused:
            channels.channel("org-b")
        assert "org-b presented a certificate that is not the one pinned for org-b" \
            in str(refused.value)
        assert impostor.calls == []
    finally:
        impostor.stop()
        channels.close()


def test_a_reload_closes_the_channel_to_a_server_no_longer_trusted(fed: Fed) -> None:
    """org-b is served with its pinned certificate; the federation file then revokes it.
    After the reload the open channel is closed and no new one is built (catches channels
    that keep trusting what the config no longer does, until a restart)."""
    channels = fed.channels()
    real = fed.serve("org-b")
    try:
        ch = channels.channel("org-b")
        assert health(ch) == "org-b"
        fed.write(pin=None, revoked=("org-b",))
        assert channels.federation.refresh(force=True)
        with pytest.raises(ChannelRefused) as refused:
            channels.channel("org-b")
        assert refused.value.certificate_refused
        assert "org-b presented a revoked certificate" in str(refused.value)
        with pytest.raises(ValueError, match="closed channel"):
            health(ch)
        assert real.calls == ["/smpc.v1.Node/Health"]  # the one call made before
        fed.write(pin="org-b")  # pinned again, nothing revoked: served again
        assert channels.federation.refresh(force=True)
        assert health(channels.channel("org-b")) == "org-b"
    finally:
        real.stop()
        channels.close()


def test_an_unpinned_entry_still_needs_the_right_identity_and_no_revocation(fed: Fed) -> None:
    """Without a pin the certificate must still chain to the CA, be valid now, carry the
    listed node's identity, and not be revoked; each refusal names the node."""
    f = C.load_federation(fed.d / "federation.json")
    ca = fed.ca.cert
    unpinned = C.NodeEntry("org-b", "party", "127.0.0.1", fed.port)
    check_server_certificate(f, unpinned, fed.certs["org-b-old"], ca)  # no pin: accepted
    with pytest.raises(PKIError, match="not the one pinned for org-b"):
        check_server_certificate(f, f.node("org-b"), fed.certs["org-b-old"], ca)
    with pytest.raises(PKIError, match="org-b presented the certificate of party 'org-c'"):
        check_server_certificate(f, unpinned, fed.certs["org-c"], ca)
    other, _k = issue_node_certificate(create_ca("fed"), "org-b", "party")
    with pytest.raises(PKIError, match="org-b presented a certificate that does not verify"):
        check_server_certificate(f, unpinned, other, ca)
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)
    expired, _k = issue_node_certificate(fed.ca, "org-b", "party", valid_days=2, now=past)
    with pytest.raises(PKIError, match="does not verify"):
        check_server_certificate(f, unpinned, expired, ca)
    f.revoked.append(fingerprint(fed.certs["org-b-old"]))
    with pytest.raises(PKIError, match="org-b presented a revoked certificate"):
        check_server_certificate(f, unpinned, fed.certs["org-b-old"], ca)


def test_an_unreachable_node_is_unavailable_and_retried_not_blamed(fed: Fed) -> None:
    """Nothing listens on org-b's port: the refusal is a transport failure (UNAVAILABLE, no
    blame trailer -- callers retry it as they would a lost connection), unlike a refused
    certificate, which blames the node."""
    channels = fed.channels()
    try:
        with pytest.raises(ChannelRefused) as err:
            channels.channel("org-b")
        assert not err.value.certificate_refused
        remote = from_rpc_error(err.value, "org-b")
        assert isinstance(remote, Unavailable) and remote.node == "org-b"
        assert "Connection refused" in remote.message
        fed.write(pin="org-b", revoked=("org-b",))  # the pinned certificate itself revoked
        assert channels.federation.refresh(force=True)
        with pytest.raises(ChannelRefused) as err:
            channels.channel("org-b")  # refused before dialling
        assert err.value.certificate_refused and "pinned for org-b is revoked" in str(err.value)
        assert from_rpc_error(err.value, "org-b").node == "org-b"
    finally:
        channels.close()
