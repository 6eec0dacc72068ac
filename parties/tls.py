"""Federation PKI: one certificate authority, one key and certificate per node, mutual TLS for gRPC.

Every node of a federation (party, coordinator, dealer) and every analyst holds an ECDSA P-256 key
and a certificate issued by the federation's CA. All gRPC connections are mutual TLS: the server
demands and verifies a client certificate chained to the CA (:func:`server_credentials`), the client
verifies the server's chain and, through :func:`channel_options`, the server's *node name*.

Identity encoding (what :func:`issue_node_certificate` writes and :func:`identity_from_certificate`
reads back):

* subject ``CN=<name>, OU=<role>, O=<federation>``;
* SAN ``URI:smpc://<federation>/<role>/<name>`` (authoritative; must agree with CN and OU),
  ``DNS:<name>``, ``DNS:localhost``, ``IP:127.0.0.1`` and any extra DNS names / addresses given;
* ``extendedKeyUsage = serverAuth, clientAuth``; ``keyUsage = digitalSignature`` (critical);
  ``basicConstraints CA:FALSE`` (critical).

Security assumptions — state them to operators exactly like this:

* **The CA private key is the root of trust.** Whoever holds it can mint a certificate for any
  name and role. It is needed only to issue certificates: the federation operator must keep it
  offline (or at least off every node host), optionally encrypted with a passphrase
  (:func:`save_ca`). Nodes only ever need the CA *certificate*.
* A node's own private key is written with mode 0600 and never leaves its host; whoever can read
  it can impersonate that node.
* **Authentication is not authorisation.** A valid certificate only proves "this is node X with
  role R of this CA". Every server must then check the caller against the federation config, which
  is the allow-list (``parties.config.FederationConfig.authorize``).
* **Rotation** = issue a new certificate (and key) for the same name and restart the node.
* **Revocation** = remove the node from the federation config (there is no CRL / OCSP). A leaked
  key of a node that stays in the federation is revoked by pinning the new certificate's
  fingerprint in the config entry (``fingerprint``), which makes every other certificate for that
  name useless. Otherwise an old certificate stays valid until it expires — keep validity short.
* Every node certificate also names ``localhost`` and ``127.0.0.1``; clients must therefore pin the
  expected node name with :func:`channel_options` (``grpc.ssl_target_name_override``) so that
  "any federation certificate" is not accepted as "the peer I meant to reach".
* TLS versions and cipher suites are gRPC core's defaults (TLS 1.2 and 1.3 with ECDHE and AEAD
  suites only); grpcio's Python API does not expose a minimum-version switch.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import ipaddress
import os
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from smpc.errors import InputError

__all__ = [
    "NODE_ROLES",
    "ROLES",
    "URI_SCHEME",
    "CertificateAuthority",
    "Identity",
    "PKIError",
    "atomic_write",
    "channel_credentials",
    "channel_options",
    "create_ca",
    "fingerprint",
    "identity_from_certificate",
    "issue_node_certificate",
    "load_ca",
    "load_certificate",
    "load_private_key",
    "normalize_fingerprint",
    "peer_identity",
    "save_ca",
    "save_node_credentials",
    "server_credentials",
    "validate_name",
    "verify_node_certificate",
    "write_certificate",
    "write_private_key",
]

#: Every role a certificate can carry.
ROLES: tuple[str, ...] = ("party", "coordinator", "dealer", "analyst")
#: Roles of server nodes (those listed with host/port in a federation config).
NODE_ROLES: tuple[str, ...] = ("party", "coordinator", "dealer")
#: Scheme of the identity URI SAN: ``smpc://<federation>/<role>/<name>``.
URI_SCHEME = "smpc"

_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,61}[A-Za-z0-9])?$")
_CLOCK_SKEW = _dt.timedelta(minutes=5)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class PKIError(InputError):
    """A certificate, key or name is invalid, or does not carry a federation identity."""


@dataclass(frozen=True)
class Identity:
    """A verified federation identity.

    ``name`` and ``role`` come from the certificate; ``federation`` is the federation name in the
    certificate (``None`` if absent); ``fingerprint`` is the SHA-256 of the DER certificate,
    lowercase hex (``""`` when unknown).
    """

    name: str
    role: str
    federation: str | None = None
    fingerprint: str = ""


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


# --------------------------------------------------------------------------------------- names


def validate_name(name: str, what: str = "node name") -> str:
    """Return ``name`` if it is a valid node / federation name, else raise :class:`PKIError`.

    Names are DNS-compatible: 1-63 characters of ``A-Z a-z 0-9 . -``, starting and ending with a
    letter or digit, so that they can appear as DNS SANs and in the identity URI.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise PKIError(
            f"invalid {what} {name!r}: use 1-63 letters, digits, '.' or '-', "
            "starting and ending with a letter or digit"
        )
    return name


def _validate_role(role: str) -> str:
    if role not in ROLES:
        raise PKIError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
    return role


# --------------------------------------------------------------------------------- issuing


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


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

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, federation),
        ]
    )
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), False
        )
        .sign(ca.key, hashes.SHA256())
    )
    return cert, key


# ------------------------------------------------------------------------------ file output


def atomic_write(path: str | os.PathLike[str], data: bytes, mode: int, *, overwrite: bool) -> None:
    """Write ``data`` to ``path`` atomically with permission bits exactly ``mode``.

    The bytes go to a temporary file in the same directory created with ``os.open(..., mode)``
    (so they are never readable by others, whatever the umask), are fsynced, then the file is
    linked into place (``overwrite=False``: fails with :class:`FileExistsError` if ``path``
    exists, without a race) or renamed over it (``overwrite=True``).
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"directory {str(directory)!r} does not exist")
    if not overwrite and path.exists():
        raise FileExistsError(f"refusing to overwrite existing file {str(path)!r}")
    tmp_name = str(directory / f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp_name, path)
        else:
            try:
                os.link(tmp_name, path)
            except FileExistsError:
                raise FileExistsError(
                    f"refusing to overwrite existing file {str(path)!r}"
                ) from None
            os.unlink(tmp_name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)


def write_private_key(
    path: str | os.PathLike[str],
    key: ec.EllipticCurvePrivateKey,
    *,
    overwrite: bool = False,
    passphrase: bytes | None = None,
) -> Path:
    """Write ``key`` as PKCS#8 PEM to ``path`` with mode 0600, atomically.

    Refuses (``FileExistsError``) to replace an existing file unless ``overwrite``. With
    ``passphrase`` the key is encrypted (use this for the CA key; gRPC needs node keys in clear).
    """
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    p = Path(path)
    atomic_write(p, pem, 0o600, overwrite=overwrite)
    return p


def write_certificate(
    path: str | os.PathLike[str], cert: x509.Certificate, *, overwrite: bool = True
) -> Path:
    """Write ``cert`` as PEM to ``path`` with mode 0644, atomically (certificates are public)."""
    p = Path(path)
    atomic_write(p, cert.public_bytes(serialization.Encoding.PEM), 0o644, overwrite=overwrite)
    return p


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


# ------------------------------------------------------------------------------- file input


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


# ------------------------------------------------------------------------------- identities


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint of the DER certificate, 64 lowercase hex digits."""
    return cert.fingerprint(hashes.SHA256()).hex()


def normalize_fingerprint(value: str) -> str:
    """Normalise a fingerprint as written by people: drop ``sha256:``, colons, case.

    Raises :class:`PKIError` unless the result is 64 hex digits.
    """
    v = value.strip().lower()
    v = v.removeprefix("sha256:").replace(":", "")
    if not re.fullmatch(r"[0-9a-f]{64}", v):
        raise PKIError(f"invalid SHA-256 fingerprint {value!r}: expected 64 hex digits")
    return v


def _single_attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    attrs = name.get_attributes_for_oid(oid)
    if len(attrs) != 1:
        return None
    value = attrs[0].value
    return value if isinstance(value, str) else None


def identity_from_certificate(cert: x509.Certificate) -> Identity:
    """Read the federation identity a certificate carries (see module docstring).

    Requires exactly one ``smpc://<federation>/<role>/<name>`` URI SAN with a known role and a
    valid name, and a subject whose CN and OU agree with it. Does **not** check the signature or
    validity: use it only on certificates already verified (by TLS or
    :func:`verify_node_certificate`). Raises :class:`PKIError` otherwise.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise PKIError("certificate has no subjectAltName, so no federation identity") from None
    prefix = f"{URI_SCHEME}://"
    uris = [
        u for u in san.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith(prefix)
    ]
    if len(uris) != 1:
        raise PKIError(f"certificate must carry exactly one {prefix} URI, found {len(uris)}")
    parts = uris[0][len(prefix) :].split("/")
    if len(parts) != 3:
        raise PKIError(f"malformed identity URI {uris[0]!r}: expected {prefix}<fed>/<role>/<name>")
    federation, role, name = parts
    validate_name(federation, "federation name")
    validate_name(name)
    _validate_role(role)
    cn = _single_attr(cert.subject, NameOID.COMMON_NAME)
    ou = _single_attr(cert.subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
    if cn != name or ou != role:
        raise PKIError(
            f"certificate subject (CN={cn!r}, OU={ou!r}) disagrees with identity URI {uris[0]!r}"
        )
    return Identity(name=name, role=role, federation=federation, fingerprint=fingerprint(cert))


def verify_node_certificate(
    cert: x509.Certificate,
    ca_cert: x509.Certificate,
    *,
    now: _dt.datetime | None = None,
) -> Identity:
    """Verify ``cert`` against ``ca_cert`` and return the identity it carries.

    Checks: the CA is a CA (basicConstraints, keyCertSign), the signature, both validity windows at
    ``now``, the clientAuth and serverAuth extended key usages, and the identity encoding.
    Raises :class:`PKIError` on any failure.
    """
    from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

    when = now or _now()
    try:
        verifier = PolicyBuilder().store(Store([ca_cert])).time(when).build_client_verifier()
        verifier.verify(cert, [])
    except VerificationError as exc:
        raise PKIError(f"certificate does not verify against the federation CA: {exc}") from None
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise PKIError("certificate has no extendedKeyUsage") from None
    if ExtendedKeyUsageOID.SERVER_AUTH not in eku or ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
        raise PKIError("certificate must allow both serverAuth and clientAuth")
    return identity_from_certificate(cert)


# -------------------------------------------------------------------------------------- gRPC


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise PKIError(f"{what} file {str(path)!r} not found") from None


def server_credentials(
    cert_path: str | os.PathLike[str],
    key_path: str | os.PathLike[str],
    ca_path: str | os.PathLike[str],
) -> grpc.ServerCredentials:
    """gRPC server credentials for mutual TLS.

    The server presents ``cert_path``/``key_path`` and *requires* every client to present a
    certificate that chains to ``ca_path`` (handshake fails otherwise). Callers are then
    identified with :func:`peer_identity` and must still be checked against the federation
    config.
    """
    return grpc.ssl_server_credentials(
        [(_read(key_path, "key"), _read(cert_path, "certificate"))],
        root_certificates=_read(ca_path, "CA certificate"),
        require_client_auth=True,
    )


def channel_credentials(
    cert_path: str | os.PathLike[str],
    key_path: str | os.PathLike[str],
    ca_path: str | os.PathLike[str],
) -> grpc.ChannelCredentials:
    """gRPC channel credentials for mutual TLS: trust only ``ca_path``, present our certificate.

    Use together with :func:`channel_options` (``server_name``) to pin the peer's node name.
    """
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca_path, "CA certificate"),
        private_key=_read(key_path, "key"),
        certificate_chain=_read(cert_path, "certificate"),
    )


def channel_options(
    server_name: str, extra: Sequence[tuple[str, Any]] = ()
) -> list[tuple[str, Any]]:
    """Channel options that make the client accept only a server whose certificate names
    ``server_name`` (the node's federation name), whatever host or IP it dials.
    """
    validate_name(server_name)
    return [("grpc.ssl_target_name_override", server_name), *extra]


def _auth_values(auth: Mapping[str, Iterable[bytes]], key: str) -> list[bytes]:
    return [v if isinstance(v, bytes) else str(v).encode() for v in auth.get(key, ())]


def peer_identity(context: grpc.ServicerContext) -> Identity | None:
    """The federation identity of the caller of an RPC, or ``None``.

    Reads the client certificate gRPC verified during the handshake (``x509_pem_cert`` in
    ``context.auth_context()``) and parses it with :func:`identity_from_certificate`; the
    ``x509_common_name`` gRPC reports must agree. Returns ``None`` when there is no verified
    client certificate (insecure port, or server credentials without client auth) or when the
    certificate carries no well-formed federation identity. Authorisation is the caller's job
    (``FederationConfig.authorize``).
    """
    auth = context.auth_context() or {}
    if b"ssl" not in b"".join(_auth_values(auth, "transport_security_type")):
        return None
    pems = _auth_values(auth, "x509_pem_cert")
    if len(pems) != 1:
        return None
    try:
        cert = x509.load_pem_x509_certificate(pems[0])
        ident = identity_from_certificate(cert)
    except (ValueError, PKIError):
        return None
    cns = _auth_values(auth, "x509_common_name")
    if cns and cns != [ident.name.encode()]:
        return None
    return ident
