"""Analyst-signed requests for tests that talk to nodes directly (parties.pki.signed).

The coordinator and every party act only on a request the analyst signed; tests that call a
party's ``Prepare`` or the coordinator's ``Compute`` / ``Predict`` themselves sign what they
send with an analyst's key from the federation directory (``analyst/`` for the federation's
analyst, ``<name>/`` for others the test issued).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from parties.config.layout import Layout
from parties.pki import signed
from parties.pki.certs import load_certificate, load_private_key
from parties.transport.requests import prediction_request
from smpc.stats import StatSpec


def _credentials(directory: Path, analyst: str) -> tuple[Any, Any]:
    lay = Layout(directory)
    own = Path(directory) / analyst
    if (own / "key.pem").exists():
        return load_private_key(own / "key.pem"), load_certificate(own / "cert.pem")
    return load_private_key(lay.analyst_key), load_certificate(lay.analyst_cert)


def sign(directory: Path, body: Mapping[str, Any], kind: str, *, analyst: str = "analyst",
         context: bytes | None = None, validity: float = 3600.0) -> bytes:
    """``body`` signed by ``analyst`` (its key from the federation directory)."""
    key, cert = _credentials(Path(directory), analyst)
    return signed.sign(body, kind=kind, federation=Layout(directory).federation().name,
                       analyst=analyst, key=key, cert=cert, validity=validity,
                       context_sha256=None if context is None else signed.context_hash(context))


def signed_statistic(directory: Path, spec: StatSpec | Mapping[str, Any], *,
                     parties: Sequence[str], where: str = "", analyst: str = "analyst",
                     context: bytes | None = None) -> bytes:
    """A signed statistic request (``spec`` may be a raw, even malformed, JSON object)."""
    doc = spec.to_json() if isinstance(spec, StatSpec) else dict(spec)
    return sign(directory, {"spec": doc, "where": where.strip(), "parties": sorted(parties)},
                "statistic", analyst=analyst, context=context)


def signed_prediction(directory: Path, *, analyst: str = "analyst", **fields: Any) -> bytes:
    """A signed prediction request (fields as :func:`prediction_request` takes them)."""
    return sign(directory, prediction_request(**fields), "prediction", analyst=analyst)


def sign_raw_payload(directory: Path, payload: str, *, analyst: str = "analyst") -> bytes:
    """An envelope whose signature over ``payload`` verifies, whatever ``payload`` is -- for
    tests of what a verifier does with a correctly signed but unreadable request."""
    import base64
    import json

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key, cert = _credentials(Path(directory), analyst)
    sig = key.sign(payload.encode(), ec.ECDSA(hashes.SHA256()))
    return json.dumps({"v": 1, "payload": payload, "sig": base64.b64encode(sig).decode(),
                       "cert": cert.public_bytes(serialization.Encoding.PEM).decode()}).encode()
