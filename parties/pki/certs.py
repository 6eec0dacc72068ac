"""The federation CA and node certificates: create, issue, save and load (ECDSA P-256)."""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from parties.pki.files import write_certificate, write_private_key
from parties.pki.identity import (
    _CLOCK_SKEW,
    URI_SCHEME,
    PKIError,
    _now,
    _single_attr,
    _validate_role,
    validate_name,
)


@dataclass(frozen=True)
class CertificateAuthority:
    """A federation CA: its self-signed certificate and its private key (the root of trust)."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def federation(self) -> str:
        """The federation name (the CA's common name)."""
        return _single_attr(self.cert.subject, NameOID.COMMON_NAME) or ""

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate, PEM encoded (the only CA file nodes need)."""
        return self.cert.public_bytes(serialization.Encoding.PEM)


#: Longest validity accepted (100 years): beyond it dates overflow and such
#: certificates would never be renewed.
MAX_VALID_DAYS = 36_500


_DNS_NAME = re.compile(
    r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


def _check_days(valid_days: int, what: str) -> None:
    if isinstance(valid_days, bool) or not isinstance(valid_days, int) \
            or not 1 <= valid_days <= MAX_VALID_DAYS:
        raise PKIError(f"{what} must be at least 1 day and at most {MAX_VALID_DAYS} days, "
                       f"got {valid_days!r}")


def create_ca(
    federation: str, *, valid_days: int = 3650, now: _dt.datetime | None = None
) -> CertificateAuthority:
    """Create a new self-signed federation CA with a fresh ECDSA P-256 key.

    The certificate has ``basicConstraints CA:TRUE, pathlen:0`` and
    ``keyUsage keyCertSign, cRLSign`` (both critical); its CN and O are the federation name.
    """
    validate_name(federation, "federation name")
    _check_days(valid_days, "CA validity")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, federation),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, federation),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "smpc federation CA"),
        ]
    )
    start = (now or _now()) - _CLOCK_SKEW
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + _dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(cert=cert, key=key)


def issue_node_certificate(
    ca: CertificateAuthority,
    name: str,
    role: str,
    *,
    addresses: Iterable[str] = (),
    dns_names: Iterable[str] = (),
    valid_days: int = 365,
    now: _dt.datetime | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Issue a certificate and a fresh ECDSA P-256 key for node ``name`` with ``role``.

    ``addresses`` are extra IP addresses (``127.0.0.1`` is always included); ``dns_names`` extra
    DNS names (``name`` and ``localhost`` are always included). The validity may not extend beyond
    the CA's. Returns ``(certificate, private_key)``; write them with
    :func:`save_node_credentials`.
    """
    validate_name(name)
    _validate_role(role)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build_node_certificate(ca, key.public_key(), name, role, addresses=addresses,
                                  dns_names=dns_names, valid_days=valid_days, now=now)
    return cert, key


def build_node_certificate(
    ca: CertificateAuthority,
    public_key: ec.EllipticCurvePublicKey,
    name: str,
    role: str,
    *,
    addresses: Iterable[str] = (),
    dns_names: Iterable[str] = (),
    valid_days: int = 365,
    now: _dt.datetime | None = None,
) -> x509.Certificate:
    """The certificate the CA signs for ``public_key`` as node ``name`` with ``role``.

    The one encoding of a federation identity, shared by :func:`issue_node_certificate` (a key
    made here) and :func:`parties.pki.requests.sign_request` (a key that never leaves its node):
    subject ``CN=name, OU=role, O=federation``, SAN URI ``smpc://federation/role/name``, DNS
    ``name``, ``localhost`` and ``dns_names``, IP ``127.0.0.1`` and ``addresses``; not a CA;
    digitalSignature; serverAuth and clientAuth.  The validity may not extend beyond the CA's.
    """
    validate_name(name)
    _validate_role(role)
    if not isinstance(public_key, ec.EllipticCurvePublicKey) \
            or not isinstance(public_key.curve, ec.SECP256R1):
        raise PKIError("node keys must be ECDSA P-256 keys")
    federation = ca.federation
    _check_days(valid_days, "certificate validity")
    dns_names = list(dns_names)
    for dns in dns_names:
        if not _DNS_NAME.fullmatch(dns):
            raise PKIError(f"{dns!r} is not a valid DNS name")
    start = (now or _now()) - _CLOCK_SKEW
    end = start + _dt.timedelta(days=valid_days)
    if end > ca.cert.not_valid_after_utc:
        raise PKIError(
            f"a {valid_days}-day certificate would outlive the CA certificate "
            f"(valid until {ca.cert.not_valid_after_utc:%Y-%m-%d}); issue a shorter one"
        )
    sans: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(f"{URI_SCHEME}://{federation}/{role}/{name}")
    ]
    seen_dns: list[str] = []
    for dns in (name, "localhost", *dns_names):
        if dns not in seen_dns:
            seen_dns.append(dns)
    sans += [x509.DNSName(d) for d in seen_dns]
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for addr in ("127.0.0.1", *addresses):
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            raise PKIError(f"invalid IP address {addr!r} for node {name!r}") from None
        if ip not in ips:
            ips.append(ip)
    sans += [x509.IPAddress(ip) for ip in ips]

    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, federation),
        ]
    )
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), False
        )
        .sign(ca.key, hashes.SHA256())
    )


def save_ca(
    ca: CertificateAuthority,
    cert_path: str | os.PathLike[str],
    key_path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    passphrase: bytes | None = None,
) -> None:
    """Write the CA certificate (0644) and private key (0600, optionally encrypted).

    Refuses to overwrite an existing key file unless ``overwrite``. The key is written first, so a
    refusal leaves no new certificate behind.
    """
    write_private_key(key_path, ca.key, overwrite=overwrite, passphrase=passphrase)
    write_certificate(cert_path, ca.cert, overwrite=True)


def save_node_credentials(
    cert: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    cert_path: str | os.PathLike[str],
    key_path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
) -> None:
    """Write a node's private key (0600, unencrypted for gRPC) and certificate (0644).

    Refuses to overwrite an existing key file unless ``overwrite``.
    """
    write_private_key(key_path, key, overwrite=overwrite)
    write_certificate(cert_path, cert, overwrite=True)


def load_certificate(path: str | os.PathLike[str]) -> x509.Certificate:
    """Load one PEM certificate from ``path``."""
    try:
        return x509.load_pem_x509_certificate(Path(path).read_bytes())
    except ValueError as exc:
        raise PKIError(f"{str(path)!r} is not a PEM certificate: {exc}") from None


def load_private_key(
    path: str | os.PathLike[str], passphrase: bytes | None = None
) -> ec.EllipticCurvePrivateKey:
    """Load an ECDSA private key from a PEM file (encrypted if ``passphrase`` is given)."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=passphrase)
    except (ValueError, TypeError) as exc:
        raise PKIError(f"cannot load private key {str(path)!r}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PKIError(f"{str(path)!r} is not an EC private key")
    return key


def load_ca(
    cert_path: str | os.PathLike[str],
    key_path: str | os.PathLike[str],
    passphrase: bytes | None = None,
) -> CertificateAuthority:
    """Load a CA written by :func:`save_ca`; checks that the key matches the certificate."""
    cert = load_certificate(cert_path)
    key = load_private_key(key_path, passphrase)
    if cert.public_key() != key.public_key():
        raise PKIError(f"CA key {str(key_path)!r} does not match certificate {str(cert_path)!r}")
    return CertificateAuthority(cert=cert, key=key)
