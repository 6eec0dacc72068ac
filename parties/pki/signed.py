"""Analyst-signed requests: what the analyst asked, exactly, provable to every party.

The coordinator carries an analyst's request to the parties, but it is not trusted with their
data: it must not be able to change what is computed, over whom, for whom, with which key, or
in whose name.  So the analyst signs each request with its certificate's key, and every party
verifies the signature -- and compares what it is asked to prepare with what was signed --
before it reads a row.

An envelope is UTF-8 JSON ``{"v": 1, "payload": <text>, "sig": <base64>, "cert": <PEM>}``:

* ``payload`` -- the canonical JSON text (sorted keys, no spaces) of::

      {"federation", "analyst", "kind": "statistic" | "prediction", "request": {...},
       "keyholder_context_sha256": <hex or null>, "nonce": <32 hex>, "issued": <epoch s>,
       "expires": <epoch s>}

  ``request`` holds everything that defines the computation (a statistic: its spec, filter and
  the explicit list of parties; a prediction: the owners, model, filter, backend, output and
  the parameters that bound it); ``keyholder_context_sha256`` binds a ``ckks`` statistic to the
  analyst's own public key; ``nonce`` and the validity window stop replays;
* ``sig`` -- ECDSA P-256 / SHA-256 over the payload's bytes, by the analyst's private key;
* ``cert`` -- the analyst's certificate, which must chain to the federation CA, name an analyst
  of this federation, and match the fingerprint the federation config pins for it.

:func:`verify` checks all of that and returns the payload, the signer's identity and the
request's hash (SHA-256 of the payload), which parties record in their audit logs.  Replays
within the validity window are stopped by each party's record of the nonces it has seen
(:mod:`parties.privacy.replay`).

Security assumptions: the analyst's private key stays with the analyst (whoever holds it can
ask in its name); the CA does not issue a second certificate for an analyst name whose
fingerprint the federation does not pin (pin analysts' fingerprints to close that).
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import math
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from parties.pki.identity import Identity, PKIError, fingerprint, verify_node_certificate

__all__ = [
    "MAX_ENVELOPE_BYTES",
    "MAX_VALIDITY_SECONDS",
    "Signed",
    "SignedRequestError",
    "context_hash",
    "sign",
    "verify",
]

#: Room for one request: a spec of up to 256 KiB (a histogram's edges, the wire's spec limit),
#: its filter, the signer's names and the signature, with room to spare.
MAX_ENVELOPE_BYTES = 512 * 1024
MAX_VALIDITY_SECONDS = 24 * 3600.0
DEFAULT_VALIDITY_SECONDS = 3600.0
CLOCK_SKEW_SECONDS = 300.0
KINDS = ("statistic", "prediction")
_NONCE = re.compile(r"^[0-9a-f]{32}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class SignedRequestError(PKIError):
    """A signed request is missing, malformed, not signed by a listed analyst, or expired."""


@dataclass(frozen=True)
class Signed:
    """A verified request: its payload, who signed it, and the hash of what was signed."""

    payload: Mapping[str, Any]
    signer: Identity
    request_hash: str
    envelope: bytes

    @property
    def kind(self) -> str:
        return str(self.payload["kind"])

    @property
    def request(self) -> Mapping[str, Any]:
        request: Mapping[str, Any] = self.payload["request"]
        return request

    @property
    def nonce(self) -> str:
        return str(self.payload["nonce"])

    @property
    def expires(self) -> float:
        return float(self.payload["expires"])

    @property
    def context_sha256(self) -> str | None:
        value = self.payload.get("keyholder_context_sha256")
        return None if value is None else str(value)


def canonical(obj: Any) -> str:
    """Canonical JSON text: sorted keys, no spaces, no NaN."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def context_hash(context: bytes) -> str:
    """The SHA-256 (hex) of a serialized public CKKS context, as the analyst signs it."""
    return hashlib.sha256(context).hexdigest()


def sign(request: Mapping[str, Any], *, kind: str, federation: str, analyst: str,
         key: ec.EllipticCurvePrivateKey, cert: x509.Certificate,
         context_sha256: str | None = None, validity: float = DEFAULT_VALIDITY_SECONDS,
         now: float | None = None) -> bytes:
    """The envelope of ``request`` signed by ``key`` (whose certificate is ``cert``)."""
    if kind not in KINDS:
        raise SignedRequestError(f"unknown request kind {kind!r}")
    if not 0 < validity <= MAX_VALIDITY_SECONDS:
        raise SignedRequestError("a signed request is valid for at most one day")
    issued = time.time() if now is None else float(now)
    payload = canonical({
        "federation": federation, "analyst": analyst, "kind": kind, "request": dict(request),
        "keyholder_context_sha256": context_sha256, "nonce": secrets.token_hex(16),
        "issued": issued, "expires": issued + validity})
    sig = key.sign(payload.encode(), ec.ECDSA(hashes.SHA256()))
    return canonical({
        "v": 1, "payload": payload, "sig": base64.b64encode(sig).decode(),
        "cert": cert.public_bytes(serialization.Encoding.PEM).decode()}).encode()


def _field(doc: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = doc.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise SignedRequestError(f"the signed request's {name!r} is missing or malformed")
    return value


def verify(envelope: bytes, *, ca_cert: x509.Certificate, federation: str,
           allowed: Any = None, now: float | None = None) -> Signed:
    """Verify a signed request (see the module docstring); :class:`SignedRequestError` if not.

    ``allowed`` is the federation config's allow-list (anything with
    ``authorize(identity, roles)``): the signer must be a listed analyst, with the pinned
    fingerprint when one is set.  ``now`` (epoch seconds) defaults to the clock.
    """
    if not isinstance(envelope, bytes | bytearray) or not envelope:
        raise SignedRequestError("the request is not signed by an analyst")
    if len(envelope) > MAX_ENVELOPE_BYTES:
        raise SignedRequestError(f"the signed request is larger than {MAX_ENVELOPE_BYTES} bytes")
    try:
        outer = json.loads(bytes(envelope).decode())
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise SignedRequestError("the signed request is not valid JSON") from None
    if not isinstance(outer, dict) or outer.get("v") != 1:
        raise SignedRequestError("the signed request has an unknown format")
    text = _field(outer, "payload", str)
    try:
        sig = base64.b64decode(_field(outer, "sig", str), validate=True)
        cert = x509.load_pem_x509_certificate(_field(outer, "cert", str).encode())
    except ValueError:
        raise SignedRequestError("the signed request's signature or certificate is malformed"
                                 ) from None
    try:
        signer = verify_node_certificate(cert, ca_cert)
    except PKIError as exc:
        raise SignedRequestError(f"the signer's certificate is not valid here: {exc}") from None
    signer = Identity(signer.name, signer.role, signer.federation, fingerprint(cert))
    if signer.role != "analyst" or signer.federation != federation:
        raise SignedRequestError(f"{signer.role} {signer.name!r} is not an analyst of "
                                 f"federation {federation!r}")
    if allowed is not None and allowed.authorize(signer, ("analyst",)) is None:
        raise SignedRequestError(f"analyst {signer.name!r} is not listed in federation "
                                 f"{federation!r} with this certificate")
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise SignedRequestError("the signer's certificate does not hold an EC key")
    try:
        public.verify(sig, text.encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignedRequestError(f"the request's signature does not verify with analyst "
                                 f"{signer.name!r}'s certificate") from None
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):
        raise SignedRequestError("the signed payload is not valid JSON") from None
    if not isinstance(payload, dict):
        raise SignedRequestError("the signed payload is not a JSON object")
    if _field(payload, "analyst", str) != signer.name:
        raise SignedRequestError("the signed payload names another analyst than its signer")
    if _field(payload, "federation", str) != federation:
        raise SignedRequestError("the signed request is for another federation")
    if _field(payload, "kind", str) not in KINDS:
        raise SignedRequestError("the signed request has an unknown kind")
    _field(payload, "request", dict)
    if not _NONCE.fullmatch(_field(payload, "nonce", str)):
        raise SignedRequestError("the signed request's nonce is malformed")
    ctx = payload.get("keyholder_context_sha256")
    if ctx is not None and not (isinstance(ctx, str) and _HEX64.fullmatch(ctx)):
        raise SignedRequestError("the signed request's key hash is malformed")
    issued, expires = (float(_field(payload, k, (int, float))) for k in ("issued", "expires"))
    clock = time.time() if now is None else float(now)
    if not (math.isfinite(issued) and math.isfinite(expires)) \
            or expires - issued > MAX_VALIDITY_SECONDS + 1 or expires <= issued:
        raise SignedRequestError("the signed request's validity window is malformed")
    if issued > clock + CLOCK_SKEW_SECONDS:
        raise SignedRequestError("the signed request is dated in the future")
    if expires < clock - CLOCK_SKEW_SECONDS:
        when = _dt.datetime.fromtimestamp(expires, _dt.timezone.utc).isoformat(timespec="seconds")
        raise SignedRequestError(f"the signed request expired at {when}")
    return Signed(payload, signer, hashlib.sha256(text.encode()).hexdigest(), bytes(envelope))
