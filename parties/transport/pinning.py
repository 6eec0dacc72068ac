"""Clients pin servers: a channel trusts exactly one verified certificate of the node it dials.

gRPC Python has no client-side certificate callback, so the check is built from two parts:

1. **Learn the certificate.**  Before the first channel to a node (and again whenever its pin,
   its revocations or its address change, or the channel failed at the transport level), the
   client opens one TLS connection to the node's address with the :mod:`ssl` module, presents
   its own certificate, reads the server's certificate, and closes -- no application byte is
   sent.  It then checks that certificate completely: it chains to the federation CA and is
   valid now (:func:`parties.pki.identity.verify_node_certificate`), it carries the identity
   ``smpc://<federation>/<role>/<name>`` the federation config lists for that node, it is not
   revoked, and its SHA-256 fingerprint is the pinned one (when the entry pins one).  Anything
   else is refused here, naming the node ("org-b presented a certificate that is not the one
   pinned for org-b") -- before any request exists.
2. **Trust only it.**  The gRPC channel to that node is then built with that certificate as
   its **only trust anchor** (not the CA), and the node's name as the expected server name.
   gRPC's own handshake (BoringSSL) accepts a leaf certificate as trust anchor; it then
   accepts only a server that presents exactly this certificate, proves it holds its private
   key, names the node, and is still within the certificate's validity -- on every connection
   and reconnection of the channel.  A different certificate, even one the CA signed for the
   same name, fails the handshake: nothing is sent.

What the first step does *not* give is used for nothing: it may talk to an impostor (which
then learns this client's public certificate, as any TLS server would), but its answer only
chooses which certificate to trust after the checks above, so there is no time-of-check /
time-of-use gap -- an impostor that takes the port after the check still fails gRPC's
handshake.  The limits: a change of pins or revocations reaches a running client at its next
use of the channel after the config reload (:mod:`parties.config.watch`, at most about a
second), when the channel is closed (in-flight calls on it end) and rebuilt; the check is of
the certificate, not of the host or IP address dialled.

Failures before a channel exists are raised as :class:`ChannelRefused`, a
:class:`grpc.RpcError` with status UNAVAILABLE, so callers handle them where they handle failed
calls: the node could not be reached (as gRPC would say), or -- blaming the node in the
``smpc-failed-node`` trailer, so that nobody retries -- its certificate was refused.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from parties.config import FederationConfig, NodeEntry, TLSFiles
from parties.errors import FAILED_NODE_KEY
from parties.pki.certs import load_certificate
from parties.pki.identity import PKIError, fingerprint, verify_node_certificate
from parties.transport import wire
from parties.transport.tls import channel_options

__all__ = [
    "PREFLIGHT_TIMEOUT",
    "ChannelRefused",
    "PinnedChannels",
    "check_server_certificate",
    "fetch_server_certificate",
]

#: Seconds for the TCP connection and TLS handshake that learn a server's certificate (what
#: gRPC gives its own connection attempts: :data:`parties.transport.wire.CONNECT_TIMEOUT_MS`).
PREFLIGHT_TIMEOUT = wire.CONNECT_TIMEOUT_MS / 1000

#: Channels retired (not closed) per node after a transport failure, before the oldest is
#: closed: a flapping node cannot pile up channels.
_RETIRED_PER_NODE = 4


class ChannelRefused(grpc.RpcError):
    """No channel to ``node``; quacks like a failed call with status UNAVAILABLE.

    ``certificate_refused``: False when the node could not be reached (no trailer, as gRPC
    reports a connection failure, so callers retry as they would); True when it answered with a
    certificate this client refuses -- then the node is blamed in the ``smpc-failed-node``
    trailer, which callers do not retry.
    """

    def __init__(self, node: str, message: str, *, certificate_refused: bool) -> None:
        super().__init__(message)
        self.node = node
        self.certificate_refused = certificate_refused
        self._message = message

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return self._message

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((FAILED_NODE_KEY, self.node),) if self.certificate_refused else ()

    def initial_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def debug_error_string(self) -> str:
        return self._message

    def __str__(self) -> str:
        return self._message


def fetch_server_certificate(host: str, port: int, server_name: str, tls: TLSFiles,
                             timeout: float = PREFLIGHT_TIMEOUT) -> x509.Certificate:
    """The certificate the server at ``host:port`` presents (unverified: see
    :func:`check_server_certificate`).  One TLS handshake with this node's own certificate,
    then the connection is closed without sending anything.  OSError/ssl.SSLError on failure.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the bytes are checked below, and only trusted via gRPC
    ctx.load_cert_chain(str(tls.cert), str(tls.key))
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection((host, port), timeout=timeout) as raw, \
            ctx.wrap_socket(raw, server_hostname=server_name) as conn:
        der = conn.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError(f"{server_name} presented no certificate")
    return x509.load_der_x509_certificate(der)


def check_server_certificate(federation: FederationConfig, entry: NodeEntry,
                             cert: x509.Certificate, ca_cert: x509.Certificate) -> None:
    """Refuse (:class:`PKIError`, one sentence naming the node) a certificate presented as node
    ``entry``: not chained to the CA or not valid now, another identity than the one listed,
    revoked, or not the pinned one."""
    name = entry.name
    try:
        ident = verify_node_certificate(cert, ca_cert)
    except PKIError as exc:
        raise PKIError(f"{name} presented a certificate that does not verify: {exc}") from None
    expected = (federation.name, entry.role, name)
    if (ident.federation, ident.role, ident.name) != expected:
        raise PKIError(f"{name} presented the certificate of {ident.role} {ident.name!r} of "
                       f"federation {ident.federation!r}, not of {entry.role} {name!r}")
    problem = federation.certificate_problem(name, entry.fingerprint, ident.fingerprint)
    if problem is not None:
        raise PKIError(problem)


@dataclass
class _Anchor:
    """A channel and the one certificate it trusts."""

    entry: NodeEntry
    fingerprint: str
    not_after: dt.datetime
    channel: grpc.Channel


class PinnedChannels:
    """One channel per server node, each trusting exactly that node's verified certificate
    (see the module docstring).  ``tls`` is this side's own certificate, key and the CA.

    :meth:`channel` re-reads the federation config (:meth:`FederationConfig.refresh`) and
    rebuilds a channel whose certificate is no longer acceptable; :meth:`forget` drops a
    channel after a transport failure so that the next use checks the server again.
    """

    def __init__(self, federation: FederationConfig, tls: TLSFiles,
                 options: Sequence[tuple[str, Any]] = (),
                 preflight_timeout: float = PREFLIGHT_TIMEOUT) -> None:
        self.federation = federation
        self.tls = tls
        self.options = list(options)
        self.preflight_timeout = float(preflight_timeout)
        self._key = _read(tls.key)
        self._chain = _read(tls.cert)
        self._ca = load_certificate(tls.ca)
        self._lock = threading.Lock()
        self._anchors: dict[str, _Anchor] = {}
        self._building: dict[str, threading.Lock] = {}
        self._retired: dict[str, list[grpc.Channel]] = {}
        self._generation = federation.generation

    def channel(self, name: str) -> grpc.Channel:
        """The channel to node ``name`` (KeyError if it is not in the federation); raises
        :class:`ChannelRefused` when the node cannot be reached or its certificate is refused.
        """
        self.federation.refresh()
        if self.federation.generation != self._generation:
            self._sweep()
        entry = self.federation.node(name)
        with self._lock:
            anchor = self._anchors.get(name)
            building = self._building.setdefault(name, threading.Lock())
        if anchor is not None and self._trusted(anchor, entry):
            return anchor.channel
        with building:
            with self._lock:
                anchor = self._anchors.get(name)
            if anchor is not None:
                if self._trusted(anchor, entry):
                    return anchor.channel
                self._drop(name, close=True)
            return self._build(entry)

    def forget(self, name: str) -> None:
        """After a transport-level failure: the next :meth:`channel` checks the server's
        certificate again.  The old channel is not closed at once (other calls may still be
        using it); it is closed with :meth:`close` or when it is too old a retiree."""
        self._drop(name, close=False)

    def close(self) -> None:
        """Close every channel."""
        with self._lock:
            channels = [a.channel for a in self._anchors.values()]
            channels += [c for cs in self._retired.values() for c in cs]
            self._anchors.clear()
            self._retired.clear()
        for ch in channels:
            ch.close()

    # ------------------------------------------------------------------ internals

    def _trusted(self, anchor: _Anchor, entry: NodeEntry) -> bool:
        fed = self.federation
        return (anchor.entry == entry and not fed.is_revoked(anchor.fingerprint)
                and entry.fingerprint in (None, anchor.fingerprint)
                and dt.datetime.now(dt.timezone.utc) < anchor.not_after)

    def _sweep(self) -> None:
        """After a config reload: close the channels whose certificate is no longer trusted
        (revoked, re-pinned, node moved or removed)."""
        self._generation = self.federation.generation
        with self._lock:
            names = list(self._anchors)
        for name in names:
            try:
                entry = self.federation.node(name)
            except KeyError:
                self._drop(name, close=True)
                continue
            with self._lock:
                anchor = self._anchors.get(name)
            if anchor is not None and not self._trusted(anchor, entry):
                self._drop(name, close=True)

    def _drop(self, name: str, *, close: bool) -> None:
        with self._lock:
            anchor = self._anchors.pop(name, None)
            if anchor is None:
                return
            old: list[grpc.Channel] = []
            if close:
                old = [anchor.channel]
            else:
                retired = self._retired.setdefault(name, [])
                retired.append(anchor.channel)
                while len(retired) > _RETIRED_PER_NODE:
                    old.append(retired.pop(0))
        for ch in old:
            ch.close()

    def _build(self, entry: NodeEntry) -> grpc.Channel:
        name = entry.name
        if entry.fingerprint is not None and self.federation.is_revoked(entry.fingerprint):
            raise ChannelRefused(name, f"the certificate pinned for {name} is revoked in "
                                       f"federation {self.federation.name!r}: pin its new "
                                       "certificate", certificate_refused=True)
        try:
            cert = fetch_server_certificate(entry.host, entry.port, name, self.tls,
                                            self.preflight_timeout)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ChannelRefused(name, f"failed to connect to {name} at {entry.address}: "
                                       f"{_reason(exc, self.preflight_timeout)}",
                                 certificate_refused=False) from None
        try:
            check_server_certificate(self.federation, entry, cert, self._ca)
        except PKIError as exc:
            raise ChannelRefused(name, str(exc), certificate_refused=True) from None
        creds = grpc.ssl_channel_credentials(
            root_certificates=cert.public_bytes(serialization.Encoding.PEM),
            private_key=self._key, certificate_chain=self._chain)
        ch = grpc.secure_channel(entry.address, creds,
                                 options=channel_options(name, self.options))
        with self._lock:
            self._anchors[name] = _Anchor(entry, fingerprint(cert), cert.not_valid_after_utc, ch)
        return ch


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise PKIError(f"file {str(path)!r} not found") from None


def _reason(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "Connection refused"
    if isinstance(exc, TimeoutError):
        return f"no TLS handshake within {timeout:g} s"
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__
