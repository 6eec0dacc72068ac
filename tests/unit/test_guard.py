"""The certificate guard: :meth:`FederationConfig.authorize` (the allow-list check) on its own,
and :class:`parties.grpc_transport.AccessGuard` in a real gRPC server over mutual TLS with
certificates made by :mod:`parties.tls` in a temporary directory.

What these tests catch (each test's docstring names its bug): a guard that checks only the
certificate's role (not the allow-list, not the listed role, not the pinned fingerprint, not the
federation), that serves a method missing from the access table, or that lets a caller without a
federation identity through.  The server is the party's own access table (``PARTY_ACCESS``)
behind ``start_server``; only the handlers behind it are small test servicers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from parties._pb import smpc_pb2 as pb
from parties._pb import smpc_pb2_grpc as pb_grpc
from parties.config import (
    AnalystEntry,
    FederationConfig,
    NodeEntry,
    TLSFiles,
    load_federation,
    save_config,
)
from parties.config.pins import revoke_certificate
from parties.config.watch import FederationWatch
from parties.node.service import PARTY_ACCESS
from parties.pki.certs import (
    CertificateAuthority,
    create_ca,
    issue_node_certificate,
    save_ca,
    save_node_credentials,
)
from parties.pki.identity import Identity, fingerprint
from parties.transport import wire
from parties.transport.server import NodeService, caller, start_server
from parties.transport.sessions import SessionRegistry
from parties.transport.tls import channel_credentials, channel_options

FED = "demo"
FP_COORD = "c" * 64
FP_ANN = "a" * 64


# ------------------------------------------------------------------ authorize, on its own


def federation(ca_cert: Path = Path("/nonexistent/ca.pem"), *, coord_pin: str | None = FP_COORD,
               ann_pin: str | None = FP_ANN) -> FederationConfig:
    """coord (coordinator, pinned), org-a / org-b (parties), dealer1; analysts alice (not
    pinned) and ann (pinned)."""
    return FederationConfig(
        name=FED, ca_cert=ca_cert,
        nodes=[
            NodeEntry("coord", "coordinator", "127.0.0.1", 50050, coord_pin),
            NodeEntry("org-a", "party", "127.0.0.1", 50051),
            NodeEntry("org-b", "party", "127.0.0.1", 50052),
            NodeEntry("dealer1", "dealer", "127.0.0.1", 50059),
        ],
        analysts=[AnalystEntry("alice"), AnalystEntry("ann", ann_pin)],
    )


ALLOWED = [  # (identity, roles, name of the entry it must return)
    (Identity("coord", "coordinator", FED, FP_COORD), ("coordinator",), "coord"),
    (Identity("org-a", "party", FED, "1" * 64), ("party", "coordinator"), "org-a"),
    (Identity("org-a", "party", None, "1" * 64), ("party",), "org-a"),  # no federation named
    (Identity("dealer1", "dealer", FED), ("party", "coordinator", "dealer"), "dealer1"),
    (Identity("alice", "analyst", FED, "2" * 64), ("analyst",), "alice"),
    (Identity("ann", "analyst", FED, FP_ANN), ("coordinator", "analyst"), "ann"),
]

REFUSED = {  # bug it would catch: (identity, roles)
    "unlisted-node-name": (Identity("mallory", "party", FED), ("party",)),
    "listed-name-wrong-role": (Identity("org-a", "coordinator", FED), ("coordinator",)),
    "listed-node-role-not-allowed": (Identity("org-a", "party", FED), ("coordinator",)),
    "pinned-fingerprint-mismatch": (Identity("coord", "coordinator", FED, "e" * 64),
                                    ("coordinator",)),
    "pinned-fingerprint-unknown": (Identity("coord", "coordinator", FED, ""), ("coordinator",)),
    "other-federation": (Identity("org-a", "party", "other", "1" * 64), ("party",)),
    "analyst-not-listed": (Identity("carol", "analyst", FED), ("analyst",)),
    "analyst-wrong-fingerprint": (Identity("ann", "analyst", FED, "e" * 64), ("analyst",)),
    "analyst-role-not-allowed": (Identity("alice", "analyst", FED), ("party", "coordinator")),
    "node-name-as-analyst": (Identity("org-a", "analyst", FED), ("analyst",)),
    "analyst-name-as-node": (Identity("alice", "party", FED), ("party",)),
    "no-roles-allowed": (Identity("org-a", "party", FED), ()),
}


@pytest.mark.parametrize(("ident", "roles", "name"), ALLOWED,
                         ids=[f"{i.role}-{i.name}" for i, _, _ in ALLOWED])
def test_authorize_returns_the_entry_of_a_listed_caller(
    ident: Identity, roles: tuple[str, ...], name: str
) -> None:
    """A listed caller with an allowed role (and its pinned fingerprint) gets its own entry --
    not any entry, and not None (catches a guard that refuses everything, or that matches an
    entry by name alone and returns another role's entry)."""
    fed = federation()
    entry = fed.authorize(ident, iter(roles))  # any iterable of roles
    expected = (next(a for a in fed.analysts if a.name == name) if ident.role == "analyst"
                else fed.node(name))
    assert entry is expected


@pytest.mark.parametrize(("ident", "roles"), list(REFUSED.values()), ids=list(REFUSED))
def test_authorize_refuses(ident: Identity, roles: tuple[str, ...]) -> None:
    """Each id names the bug this row catches: a guard that checks the role only (unlisted
    name, listed name under another role, a node name claiming the analyst role or the
    reverse), ignores the pinned fingerprint (of a node or an analyst), ignores the federation
    in the certificate, or allows a role the method does not."""
    assert federation().authorize(ident, roles) is None


def test_authorize_refuses_no_identity() -> None:
    """A caller without a verified identity is never authorised, whatever the roles."""
    assert federation().authorize(None, ("party", "coordinator", "dealer", "analyst")) is None


FP_REVOKED = "d" * 32 + "0" * 32

WHY = {  # the one sentence check_caller gives for each refusal (the caller is told it)
    "no-identity": (None, ("party",), "no verified federation certificate"),
    "role-not-allowed": (Identity("org-a", "party", FED), ("coordinator", "dealer"),
                         "only coordinator, dealer listed in federation 'demo' may"),
    "other-federation": (Identity("org-a", "party", "other"), ("party",),
                         "its certificate is for federation 'other'"),
    "not-listed": (Identity("mallory", "party", FED), ("party",),
                   "it is not listed in federation 'demo' as party"),
    "revoked-unpinned-node": (Identity("org-b", "party", FED, FP_REVOKED), ("party",),
                              "org-b presented a revoked certificate (sha256 dddddddddddddddd...)"
                              " -- revoked in federation 'demo'"),
    "revoked-pinned-analyst": (Identity("ann", "analyst", FED, FP_REVOKED), ("analyst",),
                               "ann presented a revoked certificate (sha256 dddddddddddddddd...)"
                               " -- revoked in federation 'demo'"),
    "not-the-pinned-one": (Identity("coord", "coordinator", FED, "e" * 64), ("coordinator",),
                           "coord presented a certificate that is not the one pinned for coord "
                           "(sha256 eeeeeeeeeeeeeeee..., pinned cccccccccccccccc...)"),
}


@pytest.mark.parametrize(("ident", "roles", "reason"), list(WHY.values()), ids=list(WHY))
def test_check_caller_names_the_one_rule_that_refused(
    ident: Identity | None, roles: tuple[str, ...], reason: str,
) -> None:
    """The refusal states the rule, and a certificate by a 16-digit fingerprint prefix only
    (both ends of a connection log it).  A revoked certificate is refused whether or not its
    name is pinned, and revocation is checked before the pin (catches a revocation list
    consulted only for pinned names, or a reason that names the wrong rule)."""
    fed = federation()
    fed.revoked = [FP_REVOKED]
    assert fed.check_caller(ident, roles) == (None, reason)
    assert fed.is_revoked(FP_REVOKED) and not fed.is_revoked(FP_ANN)


def test_check_caller_returns_the_entry_and_no_reason() -> None:
    """A caller that passes gets its entry and an empty reason (the guard serves on the entry,
    logs the reason)."""
    fed = federation()
    fed.revoked = [FP_REVOKED]
    assert fed.check_caller(Identity("ann", "analyst", FED, FP_ANN), ("analyst",)) == (
        fed.analysts[1], "")


def test_unpinning_and_repinning() -> None:
    """The pin is what decides between two certificates of one name: unpinned, both pass;
    pinned to the new one, only the new one passes (rotation after a leaked key)."""
    old, new = Identity("coord", "coordinator", FED, "0" * 64), \
        Identity("coord", "coordinator", FED, "9" * 64)
    unpinned = federation(coord_pin=None)
    assert unpinned.authorize(old, ("coordinator",)) is unpinned.node("coord")
    assert unpinned.authorize(new, ("coordinator",)) is unpinned.node("coord")
    pinned = federation(coord_pin="9" * 64)
    assert pinned.authorize(old, ("coordinator",)) is None
    assert pinned.authorize(new, ("coordinator",)) is pinned.node("coord")


# ------------------------------------------------------------- a real server over mutual TLS


@dataclass(frozen=True)
class Creds:
    cert: Path
    key: Path
    fingerprint: str


@dataclass
class Server:
    port: int
    ca: Path
    creds: dict[str, Creds]


def _save(d: Path, label: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Creds:
    save_node_credentials(cert, key, d / f"{label}.pem", d / f"{label}.key")
    return Creds(d / f"{label}.pem", d / f"{label}.key", fingerprint(cert))


def _no_identity_certificate(ca: CertificateAuthority
                             ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Signed by the federation CA, valid for client auth, but without an smpc:// identity."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "anonymous")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("anonymous")]), False)
        .add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .sign(ca.key, hashes.SHA256())
    )
    return cert, key


class EchoParty(pb_grpc.PartyServicer):
    """Answers ``Describe`` with the name of the verified caller: an answer proves the guard
    let the caller through."""

    def Describe(self, request: pb.DescribeRequest, context: grpc.ServicerContext
                 ) -> pb.DescribeResponse:
        return pb.DescribeResponse(name=caller(context).name)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Party ``org-a`` with ``PARTY_ACCESS`` behind ``AccessGuard``, and every caller's
    certificate: coord pinned to its first certificate (``coord-reissued`` is a second
    certificate for the same name), ann pinned likewise, mallory and carol not listed,
    ``org-b-as-coordinator`` a listed party name with another role in its certificate."""
    d = tmp_path_factory.mktemp("guard")
    ca = create_ca(FED)
    save_ca(ca, d / "ca.pem", d / "ca.key")
    creds = {label: _save(d, label, *issue_node_certificate(ca, name, role))
             for label, name, role in [
                 ("org-a", "org-a", "party"), ("org-b", "org-b", "party"),
                 ("coord", "coord", "coordinator"), ("coord-reissued", "coord", "coordinator"),
                 ("alice", "alice", "analyst"), ("ann", "ann", "analyst"),
                 ("ann-reissued", "ann", "analyst"), ("mallory", "mallory", "party"),
                 ("carol", "carol", "analyst"),
                 ("org-b-as-coordinator", "org-b", "coordinator")]}
    creds["anonymous"] = _save(d, "anonymous", *_no_identity_certificate(ca))
    fed = federation(d / "ca.pem", coord_pin=creds["coord"].fingerprint,
                     ann_pin=creds["ann"].fingerprint)
    registry = SessionRegistry("org-a")

    def register(s: grpc.Server) -> None:
        pb_grpc.add_NodeServicer_to_server(NodeService("org-a", "party", fed, registry), s)
        pb_grpc.add_PartyServicer_to_server(EchoParty(), s)
        # a service the party's access table does not list at all
        pb_grpc.add_CoordinatorServicer_to_server(pb_grpc.CoordinatorServicer(), s)

    srv, port = start_server(
        name="org-a", federation=fed, access=PARTY_ACCESS, host="127.0.0.1", port=0,
        tls=TLSFiles(creds["org-a"].cert, creds["org-a"].key, d / "ca.pem"),
        register=[register], max_workers=4)
    try:
        yield Server(port, d / "ca.pem", creds)
    finally:
        srv.stop(None)


Call = Callable[[grpc.Channel], Any]
HEALTH: Call = lambda ch: pb_grpc.NodeStub(ch).Health(pb.HealthRequest(), timeout=10)  # noqa: E731
DESCRIBE: Call = lambda ch: pb_grpc.PartyStub(ch).Describe(  # noqa: E731
    pb.DescribeRequest(analyst="alice"), timeout=10)
DELIVER: Call = lambda ch: pb_grpc.NodeStub(ch).Deliver(iter(()), timeout=10)  # noqa: E731
DELIVER_WHOLE: Call = lambda ch: pb_grpc.NodeStub(ch).DeliverWhole(  # noqa: E731
    pb.Chunks(), timeout=10)
STATUS: Call = lambda ch: pb_grpc.CoordinatorStub(ch).Status(  # noqa: E731
    pb.StatusRequest(), timeout=10)


def call(server: Server, who: str | None, rpc: Call) -> Any:
    """``rpc`` on a fresh mutual-TLS channel to org-a, presenting ``who``'s certificate (None:
    no client certificate), pinning the server's name as every node does."""
    if who is None:
        creds = grpc.ssl_channel_credentials(root_certificates=server.ca.read_bytes())
    else:
        c = server.creds[who]
        creds = channel_credentials(c.cert, c.key, server.ca)
    with grpc.secure_channel(f"127.0.0.1:{server.port}", creds,
                             options=channel_options("org-a", wire.grpc_options())) as ch:
        return rpc(ch)


def refused(server: Server, who: str | None, rpc: Call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call(server, who, rpc)
    return err.value.code(), err.value.details() or ""


def test_listed_callers_are_served(server: Server) -> None:
    """Every listed caller in an allowed role gets a real answer (catches a guard that denies
    callers it should serve -- e.g. comparing the pin with the wrong fingerprint)."""
    for who in ("org-b", "coord", "alice", "ann"):
        h = call(server, who, HEALTH)
        assert (h.name, h.role, h.federation) == ("org-a", "party", FED), who
    assert call(server, "coord", DESCRIBE).name == "coord"  # the handler saw the caller


@pytest.mark.parametrize(("who", "rpc", "what"), [
    ("mallory", HEALTH, "party 'mallory' is not allowed to call Node.Health"),
    ("carol", HEALTH, "analyst 'carol' is not allowed to call Node.Health"),
    ("mallory", DELIVER, "party 'mallory' is not allowed to call Node.Deliver"),
    ("mallory", DELIVER_WHOLE, "party 'mallory' is not allowed to call Node.DeliverWhole"),
], ids=["unlisted-party", "unlisted-analyst", "unlisted-party-deliver",
        "unlisted-party-deliver-whole"])
def test_unlisted_callers_are_denied(server: Server, who: str, rpc: Call, what: str) -> None:
    """A valid certificate of the federation CA whose name is not in the allow-list: catches a
    guard that checks the certificate's role only."""
    code, details = refused(server, who, rpc)
    assert code == grpc.StatusCode.PERMISSION_DENIED and what in details


@pytest.mark.parametrize(("who", "rpc", "what"), [
    ("org-b-as-coordinator", DESCRIBE, "coordinator 'org-b' is not allowed to call "
                                       "Party.Describe"),
    ("org-b", DESCRIBE, "party 'org-b' is not allowed to call Party.Describe"),
    ("alice", DELIVER, "analyst 'alice' is not allowed to call Node.Deliver"),
    ("alice", DELIVER_WHOLE, "analyst 'alice' is not allowed to call Node.DeliverWhole"),
], ids=["listed-name-other-role-in-cert", "party-calls-coordinator-method",
        "analyst-calls-node-method", "analyst-calls-node-method-whole"])
def test_wrong_role_is_denied(server: Server, who: str, rpc: Call, what: str) -> None:
    """The certificate's role must be allowed for the method *and* be the role the name is
    listed with: ``org-b`` is a listed party, its second certificate says coordinator (catches
    a guard that looks the name up without its role, or checks the role without the list)."""
    code, details = refused(server, who, rpc)
    assert code == grpc.StatusCode.PERMISSION_DENIED and what in details


@pytest.mark.parametrize(("who", "rpc"), [("coord-reissued", DESCRIBE),
                                          ("coord-reissued", HEALTH),
                                          ("ann-reissued", HEALTH)],
                         ids=["coordinator-describe", "coordinator-health", "analyst-health"])
def test_certificate_other_than_the_pinned_one_is_denied(server: Server, who: str,
                                                         rpc: Call) -> None:
    """A second certificate for a pinned name, validly issued by the same CA (a leaked key's
    old certificate, or one minted by whoever holds the CA key): catches a guard that ignores
    the pinned fingerprint."""
    assert server.creds[who].fingerprint != server.creds[who.split("-")[0]].fingerprint
    code, details = refused(server, who, rpc)
    assert code == grpc.StatusCode.PERMISSION_DENIED and "is not allowed to call" in details


def test_method_missing_from_the_access_table_is_denied(server: Server) -> None:
    """Deny by default: a method the server has a handler for but the table does not list
    (here Coordinator.Status) is refused before its handler (which would answer UNIMPLEMENTED)
    -- even to the listed, pinned coordinator."""
    code, details = refused(server, "coord", STATUS)
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "method /smpc.v1.Coordinator/Status is not served" in details


def test_certificate_without_a_federation_identity_is_unauthenticated(server: Server) -> None:
    """Signed by the federation CA, so the handshake succeeds, but carrying no smpc:// identity:
    the guard has no identity to authorise (catches a guard that lets ``None`` through)."""
    code, details = refused(server, "anonymous", HEALTH)
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "no verified federation certificate" in details


def test_no_client_certificate_fails_the_handshake(server: Server) -> None:
    """Without a client certificate the TLS handshake fails: no handler, no guard message."""
    code, _ = refused(server, None, HEALTH)
    assert code == grpc.StatusCode.UNAVAILABLE


def test_a_handler_outside_the_guard_still_refuses_an_unidentified_caller() -> None:
    """Defence in depth: a handler registered on a server without ``AccessGuard`` (here a
    plaintext loopback port, so no certificate at all) asks ``caller`` who is calling and gets
    UNAUTHENTICATED, never an anonymous identity. Catches a ``caller`` that returns ``None``
    (the handler would go on and fail with an internal error, or worse, serve)."""
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    pb_grpc.add_PartyServicer_to_server(EchoParty(), srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch, \
                pytest.raises(grpc.RpcError) as err:
            DESCRIBE(ch)
    finally:
        srv.stop(None)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert err.value.details() == "no verified client certificate"


def test_a_running_guard_applies_a_revocation_written_to_the_federation_file(
    tmp_path: Path,
) -> None:
    """The guard rereads the federation file before it checks a caller: a certificate revoked
    in the file while the server runs is refused on the next call, with no restart (catches a
    guard that checks against the allow-list it started with, so a leaked key keeps working
    until every node restarts).  The file watch is built with interval 0 so that every call
    looks at the file -- the rate limit is the watch's own, tested in test_federation_reload."""
    ca = create_ca(FED)
    save_ca(ca, tmp_path / "ca.pem", tmp_path / "ca.key")
    creds = {name: _save(tmp_path, name, *issue_node_certificate(ca, name, "party"))
             for name in ("org-a", "org-b")}
    path = tmp_path / "federation.json"
    save_config(federation(tmp_path / "ca.pem", coord_pin=None, ann_pin=None), path)
    fed = load_federation(path)
    fed._watch = FederationWatch(path, lambda: load_federation(path), interval=0.0)
    srv, port = start_server(
        name="org-a", federation=fed, access=PARTY_ACCESS, host="127.0.0.1", port=0,
        tls=TLSFiles(creds["org-a"].cert, creds["org-a"].key, tmp_path / "ca.pem"),
        register=[lambda s: pb_grpc.add_NodeServicer_to_server(
            NodeService("org-a", "party", fed, SessionRegistry("org-a")), s)],
        max_workers=2)
    try:
        running = Server(port, tmp_path / "ca.pem", creds)
        assert call(running, "org-b", HEALTH).name == "org-a"      # listed, not revoked
        assert revoke_certificate(path, creds["org-b"].fingerprint)
        code, details = refused(running, "org-b", HEALTH)
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert "org-b presented a revoked certificate" in details
    finally:
        srv.stop(None)
