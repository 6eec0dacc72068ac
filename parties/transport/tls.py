"""Mutual TLS for gRPC: server and channel credentials, name pinning, the caller's identity.

Servers demand and verify a client certificate chained to the federation CA
(:func:`server_credentials`); clients expect the server's *node name* (:func:`channel_options`)
and -- in the runtime -- trust only that node's own verified certificate
(:mod:`parties.transport.pinning`); :func:`peer_identity` reads the verified caller's identity
off a gRPC context.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509

from parties.pki.identity import Identity, PKIError, identity_from_certificate, validate_name


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


@functools.lru_cache(maxsize=512)
def _identity_of_pem(pem: bytes) -> Identity | None:
    """The identity a PEM certificate carries (None if it carries none), remembered by the
    certificate's exact bytes: a pure function of them, so a cached answer is the answer.
    Parsing a certificate on every call cost about 0.3 ms of CPU per RPC on every node."""
    try:
        return identity_from_certificate(x509.load_pem_x509_certificate(pem))
    except (ValueError, PKIError):
        return None


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
    ident = _identity_of_pem(pems[0])
    if ident is None:
        return None
    cns = _auth_values(auth, "x509_common_name")
    if cns and cns != [ident.name.encode()]:
        return None
    return ident
