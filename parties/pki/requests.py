"""Certificate requests: a node's key is made on its own host, the CA signs without seeing it.

::

    node host:  key, csr = create_request("org-a", "party", "fed", addresses=["10.0.0.11"])
                save_request(key, csr, "org-a.key", "org-a.csr")      # key 0600, never copied
    CA host:    cert = sign_request(ca, load_request("org-a.csr"), role="party")
                write_certificate("org-a.pem", cert)                 # sent back with ca.pem

A request (PKCS#10, PEM) carries the node's public key, the identity it asks for -- subject
``CN=<name>, OU=<role>, O=<federation>`` and the SAN URI ``smpc://<federation>/<role>/<name>``
-- and the DNS names and IP addresses its certificate should name, signed with the node's own
key.  :func:`sign_request` checks that signature (proof that the requester holds the key),
that the identity is well formed, for this CA's federation and (when the operator says which)
the expected name and role, and that nothing else is asked for; then it signs exactly what
:func:`parties.pki.certs.issue_node_certificate` would have, with
:func:`~parties.pki.certs.build_node_certificate`.  Every refusal is a :class:`PKIError` of
one sentence.

:func:`key_id` (SHA-256 of the public key) is printed on both sides, so that the two operators
can compare it out of band before the certificate is pinned.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from parties.pki.certs import _DNS_NAME, CertificateAuthority, build_node_certificate
from parties.pki.files import atomic_write, write_private_key
from parties.pki.identity import (
    URI_SCHEME,
    PKIError,
    _single_attr,
    _validate_role,
    validate_name,
)

__all__ = [
    "RequestInfo",
    "create_request",
    "key_id",
    "load_request",
    "read_request",
    "save_request",
    "sign_request",
]

#: The names a request's subject may hold, each exactly once.
_SUBJECT_OIDS = (NameOID.COMMON_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME,
                 NameOID.ORGANIZATION_NAME)


@dataclass(frozen=True)
class RequestInfo:
    """What a certificate request asks for, read and checked by :func:`read_request`."""

    name: str
    role: str
    federation: str
    dns_names: tuple[str, ...]
    addresses: tuple[str, ...]
    key_id: str


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo, 64 hex digits: the key's name for people."""
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize().hex()


def _sans(name: str, dns_names: Iterable[str], addresses: Iterable[str]
          ) -> tuple[list[str], list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    dns: list[str] = []
    for d in (name, "localhost", *dns_names):
        if not _DNS_NAME.fullmatch(d):
            raise PKIError(f"{d!r} is not a valid DNS name")
        if d not in dns:
            dns.append(d)
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for a in ("127.0.0.1", *addresses):
        try:
            ip = ipaddress.ip_address(a)
        except ValueError:
            raise PKIError(f"invalid IP address {a!r} for node {name!r}") from None
        if ip not in ips:
            ips.append(ip)
    return dns, ips


def create_request(
    name: str, role: str, federation: str, *,
    addresses: Iterable[str] = (), dns_names: Iterable[str] = (),
) -> tuple[x509.CertificateSigningRequest, ec.EllipticCurvePrivateKey]:
    """A fresh ECDSA P-256 key and a request for node ``name`` with ``role`` in ``federation``.

    The request names the same DNS names and IP addresses the certificate will
    (``name``, ``localhost``, ``127.0.0.1`` and the extra ones). Returns ``(request, key)``;
    write them with :func:`save_request` and send only the request to the CA.
    """
    validate_name(name)
    _validate_role(role)
    validate_name(federation, "federation name")
    dns, ips = _sans(name, dns_names, addresses)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, name),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, federation),
    ])
    sans: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(f"{URI_SCHEME}://{federation}/{role}/{name}"),
        *(x509.DNSName(d) for d in dns), *(x509.IPAddress(ip) for ip in ips)]
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(subject)
           .add_extension(x509.SubjectAlternativeName(sans), critical=False)
           .sign(key, hashes.SHA256()))
    return csr, key


def save_request(
    key: ec.EllipticCurvePrivateKey, csr: x509.CertificateSigningRequest,
    key_path: str | os.PathLike[str], csr_path: str | os.PathLike[str], *,
    overwrite: bool = False,
) -> None:
    """Write the key (0600, refusing to replace one unless ``overwrite``) and the request."""
    write_private_key(key_path, key, overwrite=overwrite)
    atomic_write(csr_path, csr.public_bytes(serialization.Encoding.PEM), 0o644, overwrite=True)


def load_request(path: str | os.PathLike[str]) -> x509.CertificateSigningRequest:
    """Load a PEM certificate request."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise PKIError(f"certificate request {str(path)!r} not found") from None
    if b"PRIVATE KEY" in data:
        raise PKIError(f"{str(path)!r} holds a private key: send only the request to the CA, "
                       "and make a new key (this one has left its host)")
    try:
        return x509.load_pem_x509_csr(data)
    except ValueError as exc:
        raise PKIError(f"{str(path)!r} is not a PEM certificate request: {exc}") from None


def read_request(csr: x509.CertificateSigningRequest) -> RequestInfo:
    """Check a request and return what it asks for; :class:`PKIError` if anything is off.

    Checks: the signature verifies with the request's own public key (a request altered after
    it was signed, or signed by another key, is refused); the key is ECDSA P-256; the subject
    is exactly ``CN=<name>, OU=<role>, O=<federation>`` with a valid name, a known role and a
    valid federation name; the only extension is a subjectAltName with exactly one identity URI
    that agrees with the subject, DNS names and IP addresses -- nothing else.
    """
    try:
        signed = csr.is_signature_valid
    except Exception:  # an unsupported or mangled signature algorithm
        signed = False
    if not signed:
        raise PKIError("the request's signature does not verify: it was altered after it was "
                       "signed, or not signed by the key it carries")
    public_key = csr.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) \
            or not isinstance(public_key.curve, ec.SECP256R1):
        raise PKIError("the request's key is not an ECDSA P-256 key")
    attrs = list(csr.subject)
    oids = [a.oid for a in attrs]
    if sorted(o.dotted_string for o in oids) != sorted(o.dotted_string for o in _SUBJECT_OIDS):
        raise PKIError(f"the request's subject must be exactly CN=<name>, OU=<role>, "
                       f"O=<federation>, got {csr.subject.rfc4514_string()!r}")
    name = _single_attr(csr.subject, NameOID.COMMON_NAME) or ""
    role = _single_attr(csr.subject, NameOID.ORGANIZATIONAL_UNIT_NAME) or ""
    federation = _single_attr(csr.subject, NameOID.ORGANIZATION_NAME) or ""
    validate_name(name)
    _validate_role(role)
    validate_name(federation, "federation name")
    sans: x509.SubjectAlternativeName | None = None
    for ext in csr.extensions:
        if isinstance(ext.value, x509.SubjectAlternativeName):
            sans = ext.value
        else:
            raise PKIError(f"the request asks for the extension {ext.oid.dotted_string} "
                           f"({getattr(ext.oid, '_name', 'unknown')}); the CA sets every "
                           "extension but subjectAltName itself")
    if sans is None:
        raise PKIError("the request has no subjectAltName, so no federation identity")
    uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    want = f"{URI_SCHEME}://{federation}/{role}/{name}"
    if uris != [want]:
        raise PKIError(f"the request must name exactly the identity {want!r}, got {uris!r}")
    dns = sans.get_values_for_type(x509.DNSName)
    ips = sans.get_values_for_type(x509.IPAddress)
    if len(dns) + len(ips) + 1 != len(list(sans)):
        raise PKIError("the request's subjectAltName may hold only the identity URI, DNS names "
                       "and IP addresses")
    for d in dns:
        if not _DNS_NAME.fullmatch(d):
            raise PKIError(f"the request names {d!r}, which is not a valid DNS name")
    return RequestInfo(name, role, federation,
                       tuple(d for d in dns if d not in (name, "localhost")),
                       tuple(str(ip) for ip in ips if str(ip) != "127.0.0.1"),
                       key_id(public_key))


def sign_request(
    ca: CertificateAuthority, csr: x509.CertificateSigningRequest, *,
    name: str | None = None, role: str | None = None, valid_days: int = 365,
    now: _dt.datetime | None = None,
) -> x509.Certificate:
    """Sign a checked request (:func:`read_request`) with ``ca``; the key stays with its node.

    Refuses a request for another federation than the CA's, and -- when the operator gives
    them -- for another ``name`` or ``role``. The certificate encodes the identity exactly as
    :func:`parties.pki.certs.issue_node_certificate` does.
    """
    info = read_request(csr)
    if info.federation != ca.federation:
        raise PKIError(f"the request is for federation {info.federation!r}; this CA signs for "
                       f"{ca.federation!r}")
    if name is not None and info.name != name:
        raise PKIError(f"the request is for {info.name!r}, not {name!r}")
    if role is not None and info.role != role:
        raise PKIError(f"the request asks for role {info.role!r}, not {role!r}")
    public_key = csr.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)  # read_request checked it
    return build_node_certificate(ca, public_key, info.name, info.role,
                                  addresses=info.addresses, dns_names=info.dns_names,
                                  valid_days=valid_days, now=now)
