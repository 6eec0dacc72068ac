"""Zero trust for the PKI, against real federations (node processes, mutual TLS, real gRPC).

Each test is named after the attack it stops:

* a server holding a certificate the CA signed for the right name, but not the one the
  federation pins (an old key after re-pinning), takes a party's -- or the coordinator's --
  port: the client refuses it before sending anything, and the error names the node;
* a revoked certificate is refused by servers (a revoked caller) and by clients (a revoked
  server) -- even where no pin would have stopped it;
* rotating one node's certificate (a new key made on its host, signed from a request, pinned
  with the old one revoked) is picked up by the running coordinator and parties without a
  restart: they accept the new certificate and refuse the old one;
* ``smpc certs request`` / ``smpc certs sign`` give working credentials while the CA never
  holds a node's key, and the CA refuses a forged request or one for the wrong role or
  federation.

The impostors are real gRPC servers with the federation's ``Node``, ``Party`` and
``Coordinator`` services and an interceptor that records every call that reaches them; "saw
nothing" means not even a call's headers arrived, let alone a Prepare's spec, filter and
analyst.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from parties._pb import smpc_pb2 as pb
from parties._pb import smpc_pb2_grpc as pb_grpc
from parties.analyst.client import Client, PermissionDenied, Unavailable
from parties.cli.main import main as smpc
from parties.config import (
    AnalystEntry,
    FederationConfig,
    NodeEntry,
    TLSFiles,
    load_federation,
    load_party_config,
    save_config,
)
from parties.config.pins import revoke_certificate
from parties.federation import local as federation
from parties.pki.certs import issue_node_certificate, load_ca, load_certificate
from parties.pki.identity import fingerprint
from parties.transport import wire
from parties.transport.pinning import PinnedChannels
from parties.transport.server import NODE_ACCESS, NodeService, start_server
from parties.transport.sessions import SessionRegistry
from parties.transport.tls import channel_credentials, channel_options, server_credentials
from smpc.stats import StatSpec

pytestmark = pytest.mark.slow

ORGS = ("org-a", "org-b", "org-c")
N_ROWS = 20
COUNT = StatSpec("count", ("x",))
_T = TypeVar("_T")
_E = TypeVar("_E", bound=Exception)


def start(make_federation, name: str):
    """A running federation of three parties (20 rows each) and a coordinator."""
    rng = np.random.default_rng(1111)
    parties = {o: {"x": rng.normal(10, 2, N_ROWS)} for o in ORGS}
    return make_federation(name, parties, min_cohort_size=5, stat_parties=ORGS)


class Impostor:
    """A gRPC server at ``address`` presenting ``cert``/``key``, serving the federation's
    services; ``calls`` records the method of every call that reaches it (see the module
    docstring)."""

    def __init__(self, address: str, cert: Path, key: Path, ca: Path) -> None:
        self.calls: list[str] = []
        calls = self.calls

        class Recorder(grpc.ServerInterceptor):
            def intercept_service(self, continuation: Any, details: Any) -> Any:
                calls.append(details.method)
                return continuation(details)

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                                  interceptors=[Recorder()])
        pb_grpc.add_NodeServicer_to_server(pb_grpc.NodeServicer(), self.server)
        pb_grpc.add_PartyServicer_to_server(pb_grpc.PartyServicer(), self.server)
        pb_grpc.add_CoordinatorServicer_to_server(pb_grpc.CoordinatorServicer(), self.server)
        bound = self.server.add_secure_port(address, server_credentials(cert, key, ca))
        assert bound, f"the impostor cannot listen on {address}"
        self.server.start()

    def __enter__(self) -> Impostor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(None).wait()


def retry(fn: Callable[[], _T], timeout: float = 20.0) -> _T:
    """``fn()`` once it stops raising (bounded): running nodes reload a changed federation
    config at their next call at least a second after their last look."""
    end = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except Exception:
            if time.monotonic() >= end:
                raise
            time.sleep(0.3)


def refusal(fn: Callable[[], object], kind: type[_E], timeout: float = 20.0) -> _E:
    """The ``kind`` error ``fn()`` raises once the running nodes reloaded (bounded, see
    :func:`retry`); fails if it still succeeds, or fails otherwise, at the end."""
    end = time.monotonic() + timeout
    while True:
        try:
            fn()
            outcome = "it still succeeds"
        except kind as exc:
            return exc
        except Exception as exc:
            outcome = f"it fails otherwise: {exc!r}"
        if time.monotonic() >= end:
            raise AssertionError(f"no {kind.__name__} within {timeout:g} s: {outcome}")
        time.sleep(0.3)


def issue_to(directory: Path, lay: federation.Layout, name: str, role: str
             ) -> tuple[Path, Path, x509.Certificate]:
    """A fresh certificate and key for ``name`` from the federation's CA, in ``directory``."""
    ca = load_ca(lay.ca_cert, lay.ca_key)
    cert, key = issue_node_certificate(ca, name, role)
    directory.mkdir(parents=True, exist_ok=True)
    cp, kp = directory / f"{name}.pem", directory / f"{name}.key"
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    kp.chmod(0o600)
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cp, kp, cert


def call_health_as(lay: federation.Layout, target: str, cert: Path, key: Path) -> Any:
    """``Node.Health`` of ``target`` called with ``cert``/``key`` (trusting the CA: the test
    plays the caller, the server under test is the one deciding)."""
    entry = lay.federation().node(target)
    with grpc.secure_channel(entry.address, channel_credentials(cert, key, lay.ca_cert),
                             options=channel_options(target, wire.grpc_options())) as ch:
        return pb_grpc.NodeStub(ch).Health(pb.HealthRequest(), timeout=10)


def pid_of(lay: federation.Layout, name: str) -> int:
    return int(lay.pid_file(name).read_text())


def test_an_unpinned_server_certificate_is_refused_by_the_client(make_federation, tmp_path):
    """The federation pins org-b's certificate; org-b's port is taken by a server with another
    certificate the same CA signed for org-b (an old key after re-pinning).  The running
    coordinator, asked for a statistic, must not send it the Prepare (spec, filter, analyst):
    the impostor sees no call at all, and the analyst's error names org-b and says why.  The
    same for the analyst's client (which sends the spec in ``Compute``) and for the operator's
    health check, facing an impostor coordinator.

    A client that trusted the CA (and the name) alone would hand both impostors the request.
    """
    f = start(make_federation, "pin-server")
    lay = federation.Layout(f.directory)
    assert f.client.compute(COUNT).value == 3 * N_ROWS  # the federation works
    old_cert, old_key, old = issue_to(tmp_path / "old", lay, "org-b", "party")
    assert fingerprint(old) != lay.federation().node("org-b").fingerprint

    federation.stop_node(f.directory, "org-b")
    with Impostor(lay.federation().node("org-b").address, old_cert, old_key,
                  lay.ca_cert) as imp:
        with pytest.raises(Unavailable) as err:
            f.client.compute(COUNT)
        assert err.value.node == "org-b"
        assert "org-b presented a certificate that is not the one pinned for org-b" \
            in str(err.value)
        assert imp.calls == []

    c_cert, c_key, _c = issue_to(tmp_path / "old-coordinator", lay, "coordinator",
                                 "coordinator")
    federation.stop_node(f.directory, "coordinator")
    with Impostor(lay.federation().node("coordinator").address, c_cert, c_key,
                  lay.ca_cert) as imp:
        with Client(f.directory) as analyst, pytest.raises(Unavailable) as err:
            analyst.compute(COUNT, where="x > 10")
        assert err.value.node == "coordinator"
        assert "coordinator presented a certificate that is not the one pinned for " \
               "coordinator" in str(err.value)
        with pytest.raises(federation.FederationError, match="not the one pinned"):
            federation.node_health(f.directory, "coordinator")
        assert imp.calls == []


def test_a_revoked_certificate_is_refused_both_ways(make_federation, tmp_path):
    """Revocation stops what no pin stops: entries left unpinned.

    * As server: analyst ``eve`` is added to the running federation *without* a pin and is
      served; once her certificate is revoked in the federation file, the running coordinator
      refuses her (PERMISSION_DENIED naming her, "revoked"), without a restart.
    * As client: org-b's entry is unpinned and its certificate revoked -- a compromised key.
      Whoever holds it and takes org-b's port gets nothing from the running coordinator (the
      analyst's error names org-b, "revoked"), and calling org-a with it is refused.
    """
    f = start(make_federation, "revoked")
    lay = federation.Layout(f.directory)
    eve_cert, eve_key, eve = issue_to(tmp_path / "eve", lay, "eve", "analyst")
    fed = load_federation(lay.federation_file)
    fed.analysts.append(AnalystEntry("eve"))  # unpinned: only a revocation can stop her
    save_config(fed, lay.federation_file)
    with Client(lay.federation_file, cert=eve_cert, key=eve_key, ca=lay.ca_cert) as as_eve:
        assert retry(as_eve.ping).name == "coordinator"  # the coordinator reloaded: served
        assert revoke_certificate(lay.federation_file, fingerprint(eve))
        refused = refusal(as_eve.ping, PermissionDenied)
    assert "eve presented a revoked certificate" in str(refused)

    org_b = TLSFiles(lay.node_dir("org-b") / "cert.pem", lay.node_dir("org-b") / "key.pem",
                     lay.ca_cert)
    b_fp = fingerprint(load_certificate(org_b.cert))
    fed = load_federation(lay.federation_file)
    fed.nodes = [dataclasses.replace(n, fingerprint=None) if n.name == "org-b" else n
                 for n in fed.nodes]
    fed.revoked.append(b_fp)
    save_config(fed, lay.federation_file)
    # the real org-b still runs with that certificate: the coordinator stops calling it
    err = refusal(lambda: f.client.compute(COUNT), Unavailable)
    assert err.node == "org-b" and "org-b presented a revoked certificate" in str(err)
    denied = refusal(lambda: call_health_as(lay, "org-a", org_b.cert, org_b.key),
                     grpc.RpcError)
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "org-b presented a revoked certificate" in (denied.details() or "")

    federation.stop_node(f.directory, "org-b")  # whoever holds the key takes org-b's port
    with Impostor(lay.federation().node("org-b").address, org_b.cert, org_b.key,
                  lay.ca_cert) as imp:
        with pytest.raises(Unavailable) as refused_b:
            f.client.compute(COUNT)
        assert refused_b.value.node == "org-b" and "revoked" in str(refused_b.value)
        assert imp.calls == []


def test_rotating_one_node_needs_no_restart_of_the_others(make_federation, tmp_path, capsys):
    """org-b gets a new key and certificate the way the README says: ``certs request`` on its
    host, ``certs sign`` at the CA (which sees only the request), ``federation pin
    --revoke-previous``.  Only org-b restarts.  The running coordinator and parties (same pids)
    then compute with the new org-b -- as their server (Prepare, Run) and as their caller
    (its shares) -- and refuse the old certificate both ways: calling them with it is denied,
    and a server presenting it on org-b's port receives nothing.
    """
    f = start(make_federation, "rotation")
    lay = federation.Layout(f.directory)
    others = ("coordinator", "org-a", "org-c")
    pids = {n: pid_of(lay, n) for n in others}
    assert f.client.compute(COUNT).value == 3 * N_ROWS
    old = TLSFiles(lay.node_dir("org-b") / "cert.pem", lay.node_dir("org-b") / "key.pem",
                   lay.ca_cert)
    old_fp = fingerprint(load_certificate(old.cert))

    host = lay.node_dir("org-b") / "next"          # org-b's host
    inbox = tmp_path / "ca-inbox"                  # what reaches the CA operator
    inbox.mkdir()
    assert smpc(["certs", "request", "--name", "org-b", "--role", "party", "--federation",
                 lay.federation().name, "--out", str(host)]) == 0
    shutil.copy(host / "org-b.csr", inbox / "org-b.csr")
    assert smpc(["certs", "sign", "--ca-dir", str(lay.ca_cert.parent), "--csr",
                 str(inbox / "org-b.csr"), "--role", "party"]) == 0
    assert smpc(["federation", "pin", str(lay.federation_file), "--cert",
                 str(inbox / "org-b.pem"), "--revoke-previous"]) == 0
    capsys.readouterr()
    shutil.copy(inbox / "org-b.pem", host / "cert.pem")
    new_fp = fingerprint(load_certificate(host / "cert.pem"))
    fed = load_federation(lay.federation_file)
    assert fed.node("org-b").fingerprint == new_fp and fed.revoked == [old_fp]

    federation.stop_node(f.directory, "org-b")
    cfg = load_party_config(lay.config("org-b"))
    save_config(dataclasses.replace(cfg, tls=TLSFiles(host / "cert.pem", host / "key.pem",
                                                      lay.ca_cert)), lay.config("org-b"))
    federation.start_node(f.directory, "org-b")
    assert retry(lambda: f.client.compute(COUNT)).value == 3 * N_ROWS
    r = f.client.compute(StatSpec("mean", ("x",), backend="ckks"))
    assert r.n == 3 * N_ROWS
    assert {n: pid_of(lay, n) for n in others} == pids  # nobody else restarted

    for server in ("org-a", "org-c", "coordinator"):
        denied = refusal(lambda server=server: call_health_as(lay, server, old.cert, old.key),
                         grpc.RpcError)
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED, server
        assert "org-b presented a revoked certificate" in (denied.details() or "")
    federation.stop_node(f.directory, "org-b")
    with Impostor(lay.federation().node("org-b").address, old.cert, old.key,
                  lay.ca_cert) as imp:
        with pytest.raises(Unavailable) as err:
            f.client.compute(COUNT)
        assert err.value.node == "org-b" and "revoked" in str(err.value)
        assert imp.calls == []
    assert {n: pid_of(lay, n) for n in others} == pids


def _private_keys(root: Path) -> dict[Path, bytes]:
    """Every file under ``root`` holding a PEM private key -> its public key (DER)."""
    found = {}
    for p in root.rglob("*"):
        if p.is_file() and b"PRIVATE KEY" in p.read_bytes():
            key = serialization.load_pem_private_key(p.read_bytes(), password=None)
            found[p] = key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return found


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


def test_certificate_requests_keep_keys_on_their_hosts(tmp_path, capsys):
    """``certs request`` on each host, only the requests copied to the CA, ``certs sign``
    there, only the certificates copied back: the two nodes then talk over mutual TLS (the
    server's access guard and the client's pin both accept), the CA's directory holds no key
    but its own, and each host holds only its own.  The CA refuses a request altered after it
    was signed (a name swapped in transit), one for another federation, one for another role
    than the operator expects, and one for a role that does not exist -- writing nothing.
    """
    ca_dir, inbox = tmp_path / "ca", tmp_path / "ca" / "inbox"
    hosts = {"org-a": tmp_path / "host-a", "coord": tmp_path / "host-c"}
    assert smpc(["certs", "ca", str(ca_dir), "--federation", "fed"]) == 0
    inbox.mkdir()
    for name, role in (("org-a", "party"), ("coord", "coordinator")):
        assert smpc(["certs", "request", "--name", name, "--role", role, "--federation", "fed",
                     "--out", str(hosts[name])]) == 0
        assert (hosts[name] / "key.pem").stat().st_mode & 0o777 == 0o600
        shutil.copy(hosts[name] / f"{name}.csr", inbox / f"{name}.csr")
        assert smpc(["certs", "sign", "--ca-dir", str(ca_dir), "--csr",
                     str(inbox / f"{name}.csr"), "--role", role]) == 0
        shutil.copy(inbox / f"{name}.pem", hosts[name] / "cert.pem")
        shutil.copy(ca_dir / "ca.pem", hosts[name] / "ca.pem")
    capsys.readouterr()

    ca_pub = _spki(load_certificate(ca_dir / "ca.pem"))
    assert set(_private_keys(ca_dir).values()) == {ca_pub}  # the CA's own key, nothing else
    for host in hosts.values():
        keys = _private_keys(host)
        assert list(keys) == [host / "key.pem"]
        assert keys[host / "key.pem"] == _spki(load_certificate(host / "cert.pem"))

    # working credentials: org-a serves, coord calls it through a pinned channel
    a, c = (load_certificate(hosts[n] / "cert.pem") for n in ("org-a", "coord"))
    fed = FederationConfig("fed", hosts["org-a"] / "ca.pem", [
        NodeEntry("org-a", "party", "127.0.0.1", federation.free_ports(1)[0], fingerprint(a)),
        NodeEntry("coord", "coordinator", "127.0.0.1", 1, fingerprint(c))])
    tls_a = TLSFiles(hosts["org-a"] / "cert.pem", hosts["org-a"] / "key.pem",
                     hosts["org-a"] / "ca.pem")
    service = NodeService("org-a", "party", fed, SessionRegistry("org-a"))
    server, _port = start_server(
        name="org-a", federation=fed, tls=tls_a, host="127.0.0.1", port=fed.node("org-a").port,
        access=NODE_ACCESS, register=[lambda s: pb_grpc.add_NodeServicer_to_server(service, s)])
    channels = PinnedChannels(fed, TLSFiles(hosts["coord"] / "cert.pem",
                                            hosts["coord"] / "key.pem",
                                            hosts["coord"] / "ca.pem"))
    try:
        h = pb_grpc.NodeStub(channels.channel("org-a")).Health(pb.HealthRequest(), timeout=10)
        assert (h.name, h.role, h.federation) == ("org-a", "party", "fed")
    finally:
        channels.close()
        server.stop(None)

    # refusals at the CA
    from parties.pki.requests import create_request

    def refused(csr_path: Path, *extra: str) -> str:
        out = tmp_path / "refused.pem"
        assert smpc(["certs", "sign", "--ca-dir", str(ca_dir), "--csr", str(csr_path),
                     "--out", str(out), *extra]) == 2
        assert not out.exists()
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        return err

    forged = inbox / "forged.csr"  # org-a's request with the name swapped after signing
    der = x509.load_pem_x509_csr((inbox / "org-a.csr").read_bytes()).public_bytes(
        serialization.Encoding.DER)
    assert der.count(b"org-a") >= 2
    forged.write_bytes(_pem_csr(der.replace(b"org-a", b"org-x")))
    assert "signature does not verify" in refused(forged)
    for name, role, fed_name, expect, why in (
            ("org-b", "party", "other-fed", (), "this CA signs for 'fed'"),
            ("org-b", "coordinator", "fed", ("--role", "party"), "not 'party'")):
        csr, _key = create_request(name, role, fed_name)
        p = inbox / f"{name}-{role}-{fed_name}.csr"
        p.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
        assert why in refused(p, *expect)
    p = inbox / "superuser.csr"
    p.write_bytes(_csr_with_role("superuser").public_bytes(serialization.Encoding.PEM))
    assert "unknown role 'superuser'" in refused(p)
    assert set(_private_keys(ca_dir).values()) == {ca_pub}


def _pem_csr(der: bytes) -> bytes:
    import base64

    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return ("-----BEGIN CERTIFICATE REQUEST-----\n" + "\n".join(lines)
            + "\n-----END CERTIFICATE REQUEST-----\n").encode()


def _csr_with_role(role: str) -> x509.CertificateSigningRequest:
    """A well-signed request whose subject and identity URI claim ``role``."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mallory"),
                                     x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                                     x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fed")]))
            .add_extension(x509.SubjectAlternativeName([
                x509.UniformResourceIdentifier(f"smpc://fed/{role}/mallory"),
                x509.DNSName("mallory")]), critical=False)
            .sign(key, hashes.SHA256()))



def test_the_pki_commands_fail_in_one_line(tmp_path, capsys):
    """Every mistake with ``certs request``/``sign`` and ``federation pin``/``revoke`` ends
    with one line naming it and exit status 2, never a traceback, and writes nothing it should
    not (a second request does not replace the key a node runs with)."""
    ca_dir, host = tmp_path / "ca", tmp_path / "host"
    assert smpc(["certs", "ca", str(ca_dir), "--federation", "fed"]) == 0
    assert smpc(["certs", "request", "--name", "org-a", "--role", "party", "--federation", "fed",
                 "--out", str(host)]) == 0
    key_before = (host / "key.pem").read_bytes()
    (tmp_path / "junk.csr").write_text("not a request")
    capsys.readouterr()
    request = ["certs", "request", "--role", "party", "--federation", "fed"]
    sign = ["certs", "sign", "--ca-dir", str(ca_dir), "--csr"]
    fed_file = str(tmp_path / "federation.json")
    cases = [
        ([*request, "--name", "bad name", "--out", str(tmp_path / "x1")], "bad name"),
        ([*request, "--name", "n", "--address", "999.1.1.1", "--out", str(tmp_path / "x2")],
         "999.1.1.1"),
        ([*request, "--name", "n", "--dns", "bad dns", "--out", str(tmp_path / "x3")],
         "bad dns"),
        ([*request, "--name", "org-a", "--out", str(host)], "refusing to overwrite"),
        ([*sign, str(tmp_path / "none.csr")], "not found"),
        ([*sign, str(tmp_path / "junk.csr")], "not a PEM certificate request"),
        ([*sign, str(host / "key.pem")], "holds a private key"),
        (["certs", "sign", "--ca-dir", str(tmp_path / "noca"), "--csr",
          str(host / "org-a.csr")], "noca"),
        ([*sign, str(host / "org-a.csr"), "--name", "org-b"], "not 'org-b'"),
        (["federation", "pin", fed_file, "--cert", str(ca_dir / "ca.pem")], "not found"),
        (["federation", "pin", fed_file, "--cert", str(tmp_path / "junk.csr"), "--ca-cert",
          str(ca_dir / "ca.pem")], "not a PEM certificate"),
        (["federation", "revoke", fed_file, "--fingerprint", "abc"], "64 hex digits"),
    ]
    for argv, needle in cases:
        assert smpc(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, (argv, err)
        assert needle in err, (argv, err)
    assert (host / "key.pem").read_bytes() == key_before
    assert not any((tmp_path / x).exists() for x in ("x1", "x2", "x3"))
