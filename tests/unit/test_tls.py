"""Federation PKI and mutual TLS over a real gRPC server on loopback."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import stat
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from parties.pki.certs import (
    CertificateAuthority,
    create_ca,
    issue_node_certificate,
    load_ca,
    load_private_key,
    save_ca,
    save_node_credentials,
)
from parties.pki.files import write_private_key
from parties.pki.identity import (
    ROLES,
    Identity,
    PKIError,
    fingerprint,
    identity_from_certificate,
    normalize_fingerprint,
    verify_node_certificate,
)
from parties.transport.tls import (
    channel_credentials,
    channel_options,
    peer_identity,
    server_credentials,
)

METHOD = "/smpc.test.Echo/Echo"


@dataclass
class Node:
    cert: Path
    key: Path
    ca: Path
    x509: x509.Certificate


@dataclass
class PKI:
    dir: Path
    ca: CertificateAuthority
    ca_path: Path
    other_ca_path: Path
    nodes: dict[str, Node]


def _issue(ca: CertificateAuthority, ca_path: Path, d: Path, name: str, role: str) -> Node:
    cert, key = issue_node_certificate(ca, name, role, addresses=["10.0.0.7"])
    cp, kp = d / f"{name}.pem", d / f"{name}.key"
    save_node_credentials(cert, key, cp, kp)
    return Node(cp, kp, ca_path, cert)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    d = tmp_path_factory.mktemp("pki")
    ca = create_ca("demo")
    save_ca(ca, d / "ca.pem", d / "ca.key")
    other = create_ca("demo")  # same federation name, different key: must not be trusted
    (d / "other").mkdir()
    save_ca(other, d / "other" / "ca.pem", d / "other" / "ca.key")
    nodes = {
        "party-a": _issue(ca, d / "ca.pem", d, "party-a", "party"),
        "coord": _issue(ca, d / "ca.pem", d, "coord", "coordinator"),
        "alice": _issue(ca, d / "ca.pem", d, "alice", "analyst"),
        "rogue": _issue(other, d / "other" / "ca.pem", d / "other", "coord", "coordinator"),
    }
    return PKI(d, ca, d / "ca.pem", d / "other" / "ca.pem", nodes)


# ------------------------------------------------------------------------------------ files


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_key_files_are_0600_and_certs_0644(pki: PKI) -> None:
    assert _mode(pki.dir / "ca.key") == 0o600
    assert _mode(pki.dir / "ca.pem") == 0o644
    for node in pki.nodes.values():
        assert _mode(node.key) == 0o600
        assert _mode(node.cert) == 0o644
    # no temporary files left behind
    assert not [p for p in pki.dir.iterdir() if p.name.endswith(".tmp")]


def test_key_is_0600_even_with_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private_key(tmp_path / "k.key", ec.generate_private_key(ec.SECP256R1()))
    finally:
        os.umask(old)
    assert _mode(tmp_path / "k.key") == 0o600


def test_refuses_to_overwrite_key_unless_asked(pki: PKI, tmp_path: Path) -> None:
    cert, key = issue_node_certificate(pki.ca, "party-b", "party")
    save_node_credentials(cert, key, tmp_path / "b.pem", tmp_path / "b.key")
    before = (tmp_path / "b.key").read_bytes()
    cert2, key2 = issue_node_certificate(pki.ca, "party-b", "party")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        save_node_credentials(cert2, key2, tmp_path / "b.pem", tmp_path / "b.key")
    assert (tmp_path / "b.key").read_bytes() == before
    with pytest.raises(FileExistsError):
        save_ca(pki.ca, tmp_path / "ca.pem", tmp_path / "b.key")
    save_node_credentials(cert2, key2, tmp_path / "b.pem", tmp_path / "b.key", overwrite=True)
    assert (tmp_path / "b.key").read_bytes() != before
    assert _mode(tmp_path / "b.key") == 0o600
    assert load_private_key(tmp_path / "b.key").public_key() == key2.public_key()


def test_encrypted_ca_key_round_trip(tmp_path: Path) -> None:
    ca = create_ca("fed-x")
    save_ca(ca, tmp_path / "ca.pem", tmp_path / "ca.key", passphrase=b"s3cret")
    assert b"ENCRYPTED" in (tmp_path / "ca.key").read_bytes()
    loaded = load_ca(tmp_path / "ca.pem", tmp_path / "ca.key", passphrase=b"s3cret")
    assert loaded.federation == "fed-x"
    with pytest.raises(PKIError):
        load_ca(tmp_path / "ca.pem", tmp_path / "ca.key", passphrase=b"wrong")


# ------------------------------------------------------------------------- certificates


def test_ca_certificate_profile(pki: PKI) -> None:
    cert = pki.ca.cert
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and not ku.digital_signature
    cert.verify_directly_issued_by(cert)  # self-signed


def test_node_certificate_chain_and_profile(pki: PKI) -> None:
    node = pki.nodes["party-a"]
    node.x509.verify_directly_issued_by(pki.ca.cert)
    ident = verify_node_certificate(node.x509, pki.ca.cert)
    assert ident == Identity("party-a", "party", "demo", fingerprint(node.x509))
    eku = node.x509.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    san = node.x509.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["party-a", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("10.0.0.7"),
    ]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["smpc://demo/party/party-a"]
    assert node.x509.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "party-a"
    assert node.x509.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == (
        "party"
    )


@pytest.mark.parametrize("role", ROLES)
def test_role_and_name_round_trip(pki: PKI, role: str) -> None:
    cert, _ = issue_node_certificate(pki.ca, f"n-{role}", role, valid_days=2)
    ident = identity_from_certificate(cert)
    assert (ident.name, ident.role, ident.federation) == (f"n-{role}", role, "demo")
    assert ident.fingerprint == fingerprint(cert)


def test_certificate_from_another_ca_does_not_verify(pki: PKI) -> None:
    with pytest.raises(PKIError, match="does not verify"):
        verify_node_certificate(pki.nodes["rogue"].x509, pki.ca.cert)


def test_expired_certificate_does_not_verify(pki: PKI) -> None:
    cert, _ = issue_node_certificate(pki.ca, "short", "party", valid_days=1)
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3)
    with pytest.raises(PKIError, match="does not verify"):
        verify_node_certificate(cert, pki.ca.cert, now=later)


def test_certificate_may_not_outlive_ca(pki: PKI) -> None:
    with pytest.raises(PKIError, match="outlive the CA"):
        issue_node_certificate(pki.ca, "x", "party", valid_days=100 * 365)


@pytest.mark.parametrize("name", ["", "-a", "a-", "a b", "a/b", "x" * 64, "é"])
def test_invalid_names_refused(pki: PKI, name: str) -> None:
    with pytest.raises(PKIError, match="invalid node name"):
        issue_node_certificate(pki.ca, name, "party")


def test_invalid_role_and_address_refused(pki: PKI) -> None:
    with pytest.raises(PKIError, match="unknown role 'boss'"):
        issue_node_certificate(pki.ca, "a", "boss")
    with pytest.raises(PKIError, match="invalid IP address"):
        issue_node_certificate(pki.ca, "a", "party", addresses=["not-an-ip"])


def test_certificate_without_identity_uri_is_refused(pki: PKI) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sneaky")]))
        .issuer_name(pki.ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("sneaky")]), False)
        .sign(pki.ca.key, hashes.SHA256())
    )
    with pytest.raises(PKIError, match="exactly one smpc:// URI"):
        identity_from_certificate(cert)


def test_fingerprint_normalisation(pki: PKI) -> None:
    fp = fingerprint(pki.nodes["coord"].x509)
    assert len(fp) == 64
    colons = ":".join(fp[i : i + 2] for i in range(0, 64, 2)).upper()
    assert normalize_fingerprint("sha256:" + colons) == fp
    with pytest.raises(PKIError):
        normalize_fingerprint("abc")


# ----------------------------------------------------------------------------- real gRPC


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    ident = peer_identity(context)
    if ident is None:
        return b"none"
    return f"{ident.name}|{ident.role}|{ident.federation}|{ident.fingerprint}".encode()


def _start(creds: grpc.ServerCredentials | None) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "smpc.test.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    if creds is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", creds)
    assert port > 0
    server.start()
    return server, port


@pytest.fixture(scope="module")
def party_server(pki: PKI) -> Iterator[int]:
    node = pki.nodes["party-a"]
    server, port = _start(server_credentials(node.cert, node.key, node.ca))
    yield port
    server.stop(None)


def _call(port: int, creds: grpc.ChannelCredentials, server_name: str = "party-a") -> bytes:
    with grpc.secure_channel(
        f"127.0.0.1:{port}", creds, options=channel_options(server_name)
    ) as channel:
        return channel.unary_unary(METHOD)(b"ping", timeout=5)  # type: ignore[no-any-return]


def test_mtls_client_from_same_ca_is_identified(pki: PKI, party_server: int) -> None:
    for name, role in [("coord", "coordinator"), ("alice", "analyst")]:
        node = pki.nodes[name]
        reply = _call(party_server, channel_credentials(node.cert, node.key, node.ca))
        fp = fingerprint(node.x509)
        assert reply == f"{name}|{role}|demo|{fp}".encode()


def test_client_without_certificate_is_rejected(pki: PKI, party_server: int) -> None:
    creds = grpc.ssl_channel_credentials(root_certificates=pki.ca_path.read_bytes())
    with pytest.raises(grpc.RpcError) as err:
        _call(party_server, creds)
    assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)


def test_client_with_certificate_from_another_ca_is_rejected(pki: PKI, party_server: int) -> None:
    rogue = pki.nodes["rogue"]
    # the rogue trusts the real CA (so the server's certificate is fine) but presents its own
    creds = channel_credentials(rogue.cert, rogue.key, pki.ca_path)
    with pytest.raises(grpc.RpcError) as err:
        _call(party_server, creds)
    assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)


def test_client_refuses_server_with_wrong_name_or_ca(pki: PKI, party_server: int) -> None:
    coord = pki.nodes["coord"]
    creds = channel_credentials(coord.cert, coord.key, coord.ca)
    with pytest.raises(grpc.RpcError) as err:
        _call(party_server, creds, server_name="party-b")  # server is party-a
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    rogue_trust = channel_credentials(coord.cert, coord.key, pki.other_ca_path)
    with pytest.raises(grpc.RpcError) as err:
        _call(party_server, rogue_trust)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_peer_identity_is_none_without_tls() -> None:
    server, port = _start(None)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert channel.unary_unary(METHOD)(b"ping", timeout=5) == b"none"
    finally:
        server.stop(None)


def test_peer_identity_is_none_for_a_tls_client_without_certificate(pki: PKI) -> None:
    """A TLS server that does not require client certificates (server credentials without
    client auth): the caller is encrypted but unidentified, and ``peer_identity`` says so
    (``None``) instead of failing. Catches a ``peer_identity`` that assumes a certificate
    whenever the transport is TLS."""
    node = pki.nodes["party-a"]
    creds = grpc.ssl_server_credentials([(node.key.read_bytes(), node.cert.read_bytes())],
                                        root_certificates=None, require_client_auth=False)
    server, port = _start(creds)
    try:
        anonymous = grpc.ssl_channel_credentials(root_certificates=pki.ca_path.read_bytes())
        assert _call(port, anonymous) == b"none"
    finally:
        server.stop(None)


def test_missing_credential_file_is_a_clear_error(tmp_path: Path, pki: PKI) -> None:
    node = pki.nodes["party-a"]
    with pytest.raises(PKIError, match="not found"):
        server_credentials(tmp_path / "nope.pem", node.key, node.ca)


def test_a_remembered_verification_still_ends_with_either_validity_window(pki: PKI) -> None:
    """verify_node_certificate remembers a verified (certificate, CA) pair, but only inside
    both validity windows: the same certificate, verified now, is refused at a time after it
    expires and before it starts, and against another CA; an identity comes back only while
    the full check would give it."""
    cert, _ = issue_node_certificate(pki.ca, "remembered", "party", valid_days=1)
    now = dt.datetime.now(dt.timezone.utc)
    first = verify_node_certificate(cert, pki.ca.cert)
    assert verify_node_certificate(cert, pki.ca.cert, now=now) == first  # remembered
    for when in (now + dt.timedelta(days=3), cert.not_valid_before_utc - dt.timedelta(days=1)):
        with pytest.raises(PKIError, match="does not verify"):
            verify_node_certificate(cert, pki.ca.cert, now=when)
    with pytest.raises(PKIError, match="does not verify"):
        verify_node_certificate(cert, pki.nodes["rogue"].x509)  # not a CA of this cert
    assert verify_node_certificate(cert, pki.ca.cert) == first
