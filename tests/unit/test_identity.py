"""Which certificates carry a federation identity, and which node certificates verify.

The guard authorises callers by the identity :func:`identity_from_certificate` reads, so every
way a certificate can misstate its identity must be refused: no subjectAltName, a malformed
``smpc://`` URI, an invalid federation or node name, an unknown role, a subject whose CN or OU
disagrees with the URI.  :func:`verify_node_certificate` also requires both TLS usages.  The
certificates are real, built here with ``cryptography`` and signed by a real federation CA.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from parties.pki.certs import CertificateAuthority, create_ca
from parties.pki.identity import (
    Identity,
    PKIError,
    fingerprint,
    identity_from_certificate,
    verify_node_certificate,
)

BOTH = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return create_ca("demo")


def certificate(ca: CertificateAuthority, *, uris: Sequence[str] | None = ("smpc://demo/party/a",),
                cn: Sequence[str] = ("a",), ou: Sequence[str] = ("party",),
                eku: Sequence[x509.ObjectIdentifier] | None = BOTH) -> x509.Certificate:
    """A certificate signed by ``ca`` with these identity URIs (None: no subjectAltName at
    all), subject CN / OU values and extended key usages (None: no such extension)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, v) for v in cn]
    subject += [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, v) for v in ou]
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name(subject))
         .issuer_name(ca.cert.subject)
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now)
         .not_valid_after(now + dt.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
             ca.cert.public_key()), False))
    if uris is not None:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("a"), *(x509.UniformResourceIdentifier(u) for u in uris)]), False)
    if eku is not None:
        b = b.add_extension(x509.ExtendedKeyUsage(list(eku)), False)
    return b.sign(ca.key, hashes.SHA256())


def test_a_well_formed_certificate_carries_its_identity(ca: CertificateAuthority) -> None:
    """The control case for every refusal below: the same builder with nothing wrong."""
    cert = certificate(ca)
    want = Identity("a", "party", "demo", fingerprint(cert))
    assert identity_from_certificate(cert) == want
    assert verify_node_certificate(cert, ca.cert) == want


BAD_IDENTITIES = {
    "no-subject-alt-name": (dict(uris=None),
                            "certificate has no subjectAltName, so no federation identity"),
    "uri-without-name": (dict(uris=["smpc://demo/party"]),
                         "malformed identity URI 'smpc://demo/party': expected "
                         "smpc://<fed>/<role>/<name>"),
    "uri-with-extra-part": (dict(uris=["smpc://demo/party/a/b"]),
                            "malformed identity URI 'smpc://demo/party/a/b': expected "
                            "smpc://<fed>/<role>/<name>"),
    "empty-federation": (dict(uris=["smpc:///party/a"]), "invalid federation name ''"),
    "invalid-federation": (dict(uris=["smpc://de_mo/party/a"]), "invalid federation name 'de_mo'"),
    "invalid-name": (dict(uris=["smpc://demo/party/a_b"], cn=["a_b"]), "invalid node name 'a_b'"),
    "name-with-a-newline": (dict(uris=["smpc://demo/party/a\n"], cn=["a\n"]),
                            "invalid node name 'a\\n'"),
    "federation-with-a-newline": (dict(uris=["smpc://demo\n/party/a"]),
                                  "invalid federation name 'demo\\n'"),
    "unknown-role": (dict(uris=["smpc://demo/boss/a"], ou=["boss"]), "unknown role 'boss'"),
    "cn-disagrees": (dict(cn=["b"]), "certificate subject (CN='b', OU='party') disagrees with "
                                     "identity URI 'smpc://demo/party/a'"),
    "ou-disagrees": (dict(ou=["coordinator"]), "certificate subject (CN='a', OU='coordinator') "
                                               "disagrees with identity URI "
                                               "'smpc://demo/party/a'"),
    "two-cns": (dict(cn=["a", "b"]), "certificate subject (CN=None, OU='party') disagrees"),
    "no-ou": (dict(ou=[]), "certificate subject (CN='a', OU=None) disagrees"),
}


@pytest.mark.parametrize(("kw", "message"), BAD_IDENTITIES.values(), ids=BAD_IDENTITIES.keys())
def test_a_certificate_that_misstates_its_identity_is_refused(
    ca: CertificateAuthority, kw: dict[str, object], message: str,
) -> None:
    """Signed by the federation CA, but its identity is missing, malformed or inconsistent:
    refused with a PKIError saying which when read, and refused when verified. Catches each check
    of the identity encoding being skipped (a role taken from the URI alone would let a party
    certificate with OU=coordinator act as whichever the reader trusts)."""
    cert = certificate(ca, **kw)  # type: ignore[arg-type]
    with pytest.raises(PKIError) as ei:
        identity_from_certificate(cert)
    assert str(ei.value).startswith(message)
    with pytest.raises(PKIError):  # the verifier may refuse it earlier, for its own reason
        verify_node_certificate(cert, ca.cert)


@pytest.mark.parametrize(("eku", "message"), [
    (None, "certificate has no extendedKeyUsage"),
    ((ExtendedKeyUsageOID.CLIENT_AUTH,), "certificate must allow both serverAuth and clientAuth"),
], ids=["no-eku", "client-auth-only"])
def test_a_node_certificate_must_allow_both_tls_usages(
    ca: CertificateAuthority, eku: Sequence[x509.ObjectIdentifier] | None, message: str,
) -> None:
    """A node is both a TLS server and a TLS client: a certificate without the extended key
    usage extension, or with clientAuth alone (which the client verifier accepts), is refused.
    Catches a check that needs both usages missing to refuse."""
    with pytest.raises(PKIError) as ei:
        verify_node_certificate(certificate(ca, eku=eku), ca.cert)
    assert str(ei.value) == message
