"""Who a certificate names: node and analyst identities, fingerprints, name rules.

An identity is (federation, role, name) as the federation CA wrote it into a certificate
(subject ``CN=<name>, OU=<role>, O=<federation>`` and the authoritative SAN URI
``smpc://<federation>/<role>/<name>``), plus the certificate's SHA-256 fingerprint, which
the federation config may pin.  See :mod:`parties.pki` for the security assumptions.
"""

from __future__ import annotations

import datetime as _dt
import re
import threading
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from smpc.errors import InputError

#: Every role a certificate can carry.
ROLES: tuple[str, ...] = ("party", "coordinator", "dealer", "analyst")


#: Roles of server nodes (those listed with host/port in a federation config).
NODE_ROLES: tuple[str, ...] = ("party", "coordinator", "dealer")


#: Scheme of the identity URI SAN: ``smpc://<federation>/<role>/<name>``.
URI_SCHEME = "smpc"


_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,61}[A-Za-z0-9])?\Z")


_CLOCK_SKEW = _dt.timedelta(minutes=5)


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


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


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


#: Certificates verified against a CA: (cert SHA-256, CA SHA-256) -> (identity, the window in
#: which both are valid).  Verification is a function of the two certificates and the time,
#: and the time enters only through the two validity windows, so a verified pair is verified
#: again by checking the window alone (0.8 ms of chain verification less per signed request
#: and audit head; revocation is the callers' check, on every call, as before).
_VERIFIED: dict[tuple[bytes, bytes], tuple[Identity, _dt.datetime, _dt.datetime]] = {}
_VERIFIED_MAX = 1024
_VERIFIED_LOCK = threading.Lock()


def verify_node_certificate(
    cert: x509.Certificate,
    ca_cert: x509.Certificate,
    *,
    now: _dt.datetime | None = None,
) -> Identity:
    """Verify ``cert`` against ``ca_cert`` and return the identity it carries.

    Checks: the CA is a CA (basicConstraints, keyCertSign), the signature, both validity windows at
    ``now``, the clientAuth and serverAuth extended key usages, and the identity encoding.
    Raises :class:`PKIError` on any failure.  A pair verified before is not verified again
    while ``now`` is inside both validity windows (:data:`_VERIFIED`); a failure is never
    remembered.
    """
    when = now or _now()
    key = (cert.fingerprint(hashes.SHA256()), ca_cert.fingerprint(hashes.SHA256()))
    known = _VERIFIED.get(key)
    if known is not None and known[1] <= when <= known[2]:
        return known[0]
    ident = _verify_node_certificate(cert, ca_cert, when)
    window = (max(cert.not_valid_before_utc, ca_cert.not_valid_before_utc),
              min(cert.not_valid_after_utc, ca_cert.not_valid_after_utc))
    with _VERIFIED_LOCK:
        if len(_VERIFIED) >= _VERIFIED_MAX:
            _VERIFIED.clear()
        _VERIFIED[key] = (ident, *window)
    return ident


def _verify_node_certificate(cert: x509.Certificate, ca_cert: x509.Certificate,
                             when: _dt.datetime) -> Identity:
    from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

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
