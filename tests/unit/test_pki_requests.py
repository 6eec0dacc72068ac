"""Certificate requests (:mod:`parties.pki.requests`): what the CA signs, and what it refuses.

Each refusal test builds a request that a careless CA would sign and names the bug it catches;
the certificates are real (``cryptography``), nothing is mocked.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from parties.pki.certs import CertificateAuthority, create_ca, issue_node_certificate
from parties.pki.identity import PKIError, verify_node_certificate
from parties.pki.requests import (
    create_request,
    key_id,
    load_request,
    read_request,
    save_request,
    sign_request,
)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return create_ca("fed")


def _csr(name: str = "org-a", role: str = "party", federation: str = "fed", *,
         key: ec.EllipticCurvePrivateKey | None = None,
         subject_extra: tuple[x509.NameAttribute, ...] = (),
         sans: list[x509.GeneralName] | None = None,
         extensions: tuple[x509.ExtensionType, ...] = ()) -> x509.CertificateSigningRequest:
    """A request built by hand (what a hostile or careless requester can send)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, federation),
                         *subject_extra])
    if sans is None:
        sans = [x509.UniformResourceIdentifier(f"smpc://{federation}/{role}/{name}"),
                x509.DNSName(name)]
    b = x509.CertificateSigningRequestBuilder().subject_name(subject).add_extension(
        x509.SubjectAlternativeName(sans), critical=False)
    for ext in extensions:
        b = b.add_extension(ext, critical=True)
    return b.sign(key, hashes.SHA256())


def _comparable(cert: x509.Certificate) -> dict[str, object]:
    """Everything of a certificate but its key, serial, validity and key identifiers."""
    skip = (x509.SubjectKeyIdentifier, x509.AuthorityKeyIdentifier)
    return {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
            "extensions": sorted((e.oid.dotted_string, e.critical, repr(e.value))
                                 for e in cert.extensions if not isinstance(e.value, skip))}


def test_a_signed_request_encodes_the_identity_exactly_as_issue_does(ca) -> None:
    """Catches a second, drifting encoding of identities: the certificate signed from a request
    has the subject, SANs, key usages and constraints of ``issue_node_certificate``'s, carries
    the request's public key, and verifies as the same identity."""
    csr, key = create_request("org-a", "party", "fed", addresses=["10.0.0.11"],
                              dns_names=["a.example.org"])
    signed = sign_request(ca, csr, role="party")
    issued, _k = issue_node_certificate(ca, "org-a", "party", addresses=["10.0.0.11"],
                                        dns_names=["a.example.org"])
    assert _comparable(signed) == _comparable(issued)
    assert signed.public_key() == key.public_key()
    ident = verify_node_certificate(signed, ca.cert)
    assert (ident.name, ident.role, ident.federation) == ("org-a", "party", "fed")
    info = read_request(csr)
    assert (info.dns_names, info.addresses) == (("a.example.org",), ("10.0.0.11",))
    assert info.key_id == key_id(key.public_key())


def test_the_key_is_written_0600_next_to_the_request_and_never_replaced(tmp_path: Path) -> None:
    """Catches a key readable by others, or a second ``certs request`` silently replacing the
    key a running node uses."""
    csr, key = create_request("org-a", "party", "fed")
    save_request(key, csr, tmp_path / "org-a.key", tmp_path / "org-a.csr")
    assert stat.S_IMODE((tmp_path / "org-a.key").stat().st_mode) == 0o600
    assert b"PRIVATE KEY" not in (tmp_path / "org-a.csr").read_bytes()
    assert load_request(tmp_path / "org-a.csr").public_key() == key.public_key()
    csr2, key2 = create_request("org-a", "party", "fed")
    with pytest.raises(FileExistsError):
        save_request(key2, csr2, tmp_path / "org-a.key", tmp_path / "org-a.csr")
    with pytest.raises(PKIError, match="holds a private key"):
        load_request(tmp_path / "org-a.key")  # the key sent instead of the request


@pytest.mark.parametrize(("bug", "build", "message"), [
    ("a CA bit asked for", lambda: _csr(extensions=(x509.BasicConstraints(True, None),)),
     "the CA sets every extension"),
    ("an extra subject attribute", lambda: _csr(subject_extra=(
        x509.NameAttribute(NameOID.EMAIL_ADDRESS, "a@example.org"),)), "subject must be exactly"),
    ("a second identity", lambda: _csr(sans=[
        x509.UniformResourceIdentifier("smpc://fed/party/org-a"),
        x509.UniformResourceIdentifier("smpc://fed/coordinator/org-a")]), "exactly the identity"),
    ("an identity URI that disagrees with the subject", lambda: _csr(sans=[
        x509.UniformResourceIdentifier("smpc://fed/coordinator/org-a")]), "exactly the identity"),
    ("another kind of name", lambda: _csr(sans=[
        x509.UniformResourceIdentifier("smpc://fed/party/org-a"),
        x509.RFC822Name("a@example.org")]), "may hold only"),
    ("a key of another curve", lambda: _csr(key=ec.generate_private_key(ec.SECP384R1())),
     "not an ECDSA P-256 key"),
    ("an unknown role", lambda: _csr(role="root"), "unknown role 'root'"),
    ("an invalid name", lambda: _csr(name="org_a"), "invalid node name"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_the_ca_refuses_a_request_asking_for_more_than_an_identity(ca, bug, build, message
                                                                    ) -> None:
    """Each request is well signed; signing any of them would mint a certificate that is more
    (or other) than one federation identity."""
    with pytest.raises(PKIError, match=message):
        sign_request(ca, build())


def test_the_ca_refuses_a_request_whose_signature_does_not_hold(ca) -> None:
    """A request whose public key was swapped for another (an attacker's key under the victim's
    signed identity): catches a CA that skips the proof of possession."""
    csr, _key = create_request("org-a", "party", "fed")
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = csr.public_bytes(serialization.Encoding.DER)
    ours = csr.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    theirs = other.public_bytes(serialization.Encoding.DER,
                                serialization.PublicFormat.SubjectPublicKeyInfo)
    assert der.count(ours) == 1 and len(ours) == len(theirs)
    swapped = x509.load_der_x509_csr(der.replace(ours, theirs))
    with pytest.raises(PKIError, match="signature does not verify"):
        sign_request(ca, swapped)


def test_the_ca_refuses_a_request_for_another_name_role_or_federation(ca) -> None:
    """The operator's expectations hold: a request for another federation is never signed, and
    ``name``/``role`` (``certs sign --name/--role``) refuse any other."""
    with pytest.raises(PKIError, match="this CA signs for 'fed'"):
        sign_request(ca, create_request("org-a", "party", "elsewhere")[0])
    csr = create_request("org-a", "coordinator", "fed")[0]
    with pytest.raises(PKIError, match="not 'party'"):
        sign_request(ca, csr, role="party")
    with pytest.raises(PKIError, match="not 'org-b'"):
        sign_request(ca, csr, name="org-b")
    assert verify_node_certificate(sign_request(ca, csr, name="org-a", role="coordinator"),
                                   ca.cert).role == "coordinator"
