"""The gRPC side of the runtime: mutual-TLS servers and channels, the access guard,
the ``Node`` service (Health, Deliver) and :class:`GrpcTransport`.

Guarantees:

* **Mutual TLS only.** Servers are created by :func:`start_server` with
  :func:`parties.tls.server_credentials` (a client without a certificate of
  the federation CA fails the handshake) and bind only the configured host.
  Channels (:class:`PeerChannels`) present the node's own certificate and
  trust only the peer's own certificate, checked against the federation CA,
  its identity, its pin and the revocations
  (:mod:`parties.transport.pinning`), with the peer's *node name* as server
  name, so neither a certificate of another node nor another certificate of
  the same node is accepted as the peer we meant to reach.  Both set the gRPC message-size
  limits explicitly (:func:`parties.transport.wire.grpc_options`).
* **Deny by default.** :class:`AccessGuard` wraps every method the server
  serves: the caller's identity comes from its verified certificate
  (:func:`parties.tls.peer_identity`) and must be allowed for that method by
  the access table and the federation allow-list
  (:meth:`parties.config.FederationConfig.check_caller`: listed, right role,
  the pinned certificate, not revoked).  A method missing from the table is
  refused.  No verified identity -> UNAUTHENTICATED; not allowed ->
  PERMISSION_DENIED, naming the caller and why (a revoked or unpinned
  certificate is said so).  The guard reloads the federation config when its
  file changed (at most once a second), so new pins and revocations apply to
  the next call without a restart.
* ``Deliver`` accepts a payload only for an active session in which the caller
  is a member, checks the header before buffering (:class:`parties.transport.wire.Assembler`),
  and refuses replays (:mod:`parties.transport.sessions`).  ``DeliverWhole`` is the same for
  a payload of at most one chunk, its chunks in one unary message (parsed, like every unary
  request, only once the caller passed the guard; then checked chunk by chunk the same way).
* :class:`GrpcTransport` gives the :class:`smpc.transport.Transport` semantics
  across hosts: ``send`` is one ``Deliver`` call (``DeliverWhole`` for a payload of at
  most one chunk: most protocol messages -- seeds, shares of a sum; failure -> PeerFailure naming
  the recipient; retried once, after the reconnect backoff, when the recipient
  was unreachable -- it may have just restarted; a payload the recipient
  refuses as a replay or as malformed -> ProtocolError, blamed on the sender),
  ``recv`` waits on the session inbox until the session deadline (-> PeerFailure
  naming the sender) or an abort.

Wire capture (for tests and audits): if the environment variable
``SMPC_WIRE_CAPTURE`` names a directory, every server appends the exact
serialized bytes of every request message it receives and every response
message it sends, on every method, and the status code and details of every
call it ends with an error, to ``<dir>/<node>.wire``.  Since every RPC
of a federation has one of its nodes as server, this records every
application byte that crosses the wire (inside TLS).  Never enable it in
production: it writes protocol messages (shares, ciphertexts) to disk.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from parties._pb import smpc_pb2 as pb
from parties._pb import smpc_pb2_grpc as pb_grpc
from parties.config import FederationConfig, TLSFiles
from parties.errors import AuthError, abort, status_of
from parties.pki.identity import Identity
from parties.transport import wire
from parties.transport.sessions import Session, SessionRegistry
from parties.transport.tls import peer_identity, server_credentials
from smpc import __version__
from smpc.errors import InputError

log = logging.getLogger("smpc.grpc")


CAPTURE_ENV = "SMPC_WIRE_CAPTURE"


ANY_MEMBER = ("party", "coordinator", "dealer", "analyst")


NODES = ("party", "coordinator", "dealer")


NODE_ACCESS: dict[str, tuple[str, ...]] = {
    "/smpc.v1.Node/Health": ANY_MEMBER,
    "/smpc.v1.Node/Deliver": NODES,
    "/smpc.v1.Node/DeliverWhole": NODES,
}


class WireCapture:
    """Appends framed raw message bytes to a file (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._fh = os.fdopen(fd, "ab", buffering=0)

    def record(self, direction: bytes, method: str, data: bytes) -> None:
        m = method.encode()
        frame = b"SMPCCAP" + direction + struct.pack("<HQ", len(m), len(data)) + m + data
        with self._lock:
            self._fh.write(frame)


def _capture_for(name: str) -> WireCapture | None:
    directory = os.environ.get(CAPTURE_ENV)
    if not directory:
        return None
    Path(directory).mkdir(parents=True, exist_ok=True)
    log.warning("wire capture enabled: writing every message to %s", directory)
    return WireCapture(Path(directory) / f"{name}.wire")


def caller(context: grpc.ServicerContext) -> Identity:
    """The verified identity of the caller (the guard has already authorised it)."""
    ident = peer_identity(context)
    if ident is None:  # not reachable behind AccessGuard
        abort(context, AuthError("no verified client certificate",
                                 grpc.StatusCode.UNAUTHENTICATED))
    return ident


class AccessGuard(grpc.ServerInterceptor):
    """Checks the caller of every method against ``access`` and the federation.

    ``access`` maps full method names (``/smpc.v1.Party/Prepare``) to the roles
    allowed to call them; the caller must also be listed in the federation
    config under its certificate name and role (and pinned fingerprint).
    """

    def __init__(
        self, federation: FederationConfig, access: Mapping[str, tuple[str, ...]],
        capture: WireCapture | None = None,
    ) -> None:
        self.federation = federation
        self.access = dict(access)
        self.capture = capture

    def _check(self, context: grpc.ServicerContext, method: str) -> None:
        self.federation.refresh()  # new pins and revocations, at most once a second
        roles = self.access.get(method)
        ident = peer_identity(context)
        if ident is None:
            exc = AuthError("no verified federation certificate", grpc.StatusCode.UNAUTHENTICATED)
        elif roles is None:
            exc = AuthError(f"method {method} is not served", grpc.StatusCode.PERMISSION_DENIED)
        else:
            entry, reason = self.federation.check_caller(ident, roles)
            if entry is not None:
                return
            short = method.rsplit("/", 2)
            what = f"{short[-2].split('.')[-1]}.{short[-1]}" if len(short) == 3 else method
            exc = AuthError(
                f"{ident.role} {ident.name!r} is not allowed to call {what}: {reason}",
                grpc.StatusCode.PERMISSION_DENIED,
            )
        log.warning("refused %s from %s: %s", method,
                    f"{ident.role}:{ident.name}" if ident else "unidentified caller", exc)
        abort(context, exc)

    def intercept_service(
        self, continuation: Callable[[Any], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        """Wrap every handler so that the caller is checked *before* its request is parsed.

        gRPC would otherwise decode the request first, so undecodable bytes
        -- even from a caller that is not allowed -- would end as INTERNAL.
        Here the handler receives raw bytes; the caller is checked
        (PERMISSION_DENIED / UNAUTHENTICATED), then the bytes are parsed
        (INVALID_ARGUMENT if they are not a valid message).
        """
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        guard = self
        deser, ser = handler.request_deserializer, handler.response_serializer
        if self.capture is not None:
            deser, ser = self._capturing(method, deser, ser)
        parse = _parser(method, deser)

        def unary_request(behavior: Callable[..., Any]) -> Callable[..., Any]:
            def checked(raw: bytes, context: grpc.ServicerContext) -> Any:
                with guard._capturing_status(method, context):
                    guard._check(context, method)
                    try:
                        request = parse(raw)
                    except MalformedRequest as exc:
                        abort(context, exc)
                    return behavior(request, context)
            return checked

        def stream_request(behavior: Callable[..., Any]) -> Callable[..., Any]:
            def checked(raws: Iterator[bytes], context: grpc.ServicerContext) -> Any:
                with guard._capturing_status(method, context):
                    guard._check(context, method)
                    try:
                        return behavior((parse(r) for r in raws), context)
                    except MalformedRequest as exc:
                        abort(context, exc)
            return checked

        def streaming_response(checked: Callable[..., Any]) -> Callable[..., Any]:
            def gen(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                with guard._capturing_status(method, context):
                    try:
                        yield from checked(request, context)
                    except MalformedRequest as exc:
                        abort(context, exc)
            return gen

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                unary_request(handler.unary_unary), None, ser)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                streaming_response(unary_request(handler.unary_stream)), None, ser)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                stream_request(handler.stream_unary), None, ser)
        return grpc.stream_stream_rpc_method_handler(
            streaming_response(stream_request(handler.stream_stream)), None, ser)

    @contextlib.contextmanager
    def _capturing_status(self, method: str, context: grpc.ServicerContext) -> Iterator[None]:
        """With a capture: record the status code and details of a call that ends in error
        (they cross the wire in the call's trailers)."""
        try:
            yield
        except BaseException as exc:
            cap = self.capture
            if cap is not None and not getattr(exc, "_smpc_captured", False):
                with contextlib.suppress(AttributeError, TypeError):
                    exc._smpc_captured = True  # type: ignore[attr-defined]  # nested wrappers
                code, details = context.code(), context.details()
                text = details.decode(errors="replace") if isinstance(details, bytes) \
                    else str(details or "")
                cap.record(b"!", method, f"{getattr(code, 'name', code)} {text}".encode())
            raise

    def _capturing(
        self, method: str, deser: Callable[[bytes], Any] | None,
        ser: Callable[[Any], bytes] | None,
    ) -> tuple[Callable[[bytes], Any], Callable[[Any], bytes]]:
        cap = self.capture
        assert cap is not None

        def d(data: bytes) -> Any:
            cap.record(b"<", method, data)
            return deser(data) if deser else data

        def s(msg: Any) -> bytes:
            data = ser(msg) if ser else msg
            cap.record(b">", method, data)
            return data

        return d, s


class MalformedRequest(InputError):
    """A request's bytes are not a valid message of the method's type."""


def _parser(method: str, deser: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    short = method.rsplit("/", 1)[-1]

    def parse(raw: bytes) -> Any:
        if deser is None:
            return raw
        try:
            return deser(raw)
        except Exception:  # any decode failure of untrusted bytes
            raise MalformedRequest(
                f"the request to {short} is not a valid smpc.v1 message ({len(raw)} bytes)"
            ) from None
    return parse


def start_server(
    *,
    name: str,
    federation: FederationConfig,
    tls: TLSFiles,
    host: str,
    port: int,
    access: Mapping[str, tuple[str, ...]],
    register: Iterable[Callable[[grpc.Server], None]],
    max_workers: int = 256,
) -> tuple[grpc.Server, int]:
    """Start a mutual-TLS gRPC server on ``host:port`` with the access guard.

    ``register`` adds the servicers.  Returns the server and the bound port.
    Raises OSError naming the address if it cannot listen.
    """
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    _check_bindable(name, host, port, address)
    guard = AccessGuard(federation, access, _capture_for(name))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=f"rpc-{name}"),
        interceptors=[guard],
        options=wire.grpc_options([("grpc.so_reuseport", 0)]),
    )
    for reg in register:
        reg(server)
    creds = server_credentials(tls.cert, tls.key, tls.ca)
    try:
        bound = server.add_secure_port(address, creds)
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise OSError(f"{name} cannot listen on {address} (address in use or not local)")
    server.start()
    return server, bound


def _check_bindable(name: str, host: str, port: int, address: str) -> None:
    """Fail with one clear sentence (before gRPC logs its own) if the port is taken."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise OSError(f"{name} cannot listen on {address}: {exc.strerror}") from None


class NodeService(pb_grpc.NodeServicer):
    """``Node.Health`` and ``Node.Deliver`` (and ``DeliverWhole``) over a node's session
    registry."""

    def __init__(self, name: str, role: str, federation: FederationConfig,
                 registry: SessionRegistry,
                 on_witness: Callable[[bytes, Identity], None] | None = None) -> None:
        self.name = name
        self.me = name
        self.role = role
        self.federation = federation
        self.registry = registry
        self.on_witness = on_witness

    def Witness(self, request: pb.WitnessRequest, context: grpc.ServicerContext
                ) -> pb.WitnessResponse:
        """Keep a peer party's signed audit head (parties only; see
        :mod:`parties.privacy.witness`)."""
        ident = caller(context)
        if self.on_witness is None:
            abort(context, AuthError(f"{self.name} keeps no audit witnesses",
                                     grpc.StatusCode.UNIMPLEMENTED), self.name)
        try:
            self.on_witness(request.signed_head, ident)
        except Exception as exc:
            abort(context, exc, self.name)
        return pb.WitnessResponse()

    def Health(self, request: pb.HealthRequest, context: grpc.ServicerContext
               ) -> pb.HealthResponse:
        """Always answers (no lock held by a computation): name, role, session counts."""
        return pb.HealthResponse(
            name=self.name, role=self.role, federation=self.federation.name,
            version=__version__, active_sessions=self.registry.count(),
            running_sessions=self.registry.running(),
        )

    def Deliver(self, request_iterator: Iterable[pb.Chunk], context: grpc.ServicerContext
                ) -> pb.DeliverAck:
        """Store one payload from the (certificate-identified) sender into its session."""
        return self._store(caller(context).name, request_iterator, context)

    def DeliverWhole(self, request: pb.Chunks, context: grpc.ServicerContext
                     ) -> pb.DeliverAck:
        """:meth:`Deliver` for a payload whose chunks came in one message: the same checks,
        chunk by chunk, in the same order."""
        return self._store(caller(context).name, request.chunks, context)

    def _store(self, sender: str, chunks: Iterable[pb.Chunk], context: grpc.ServicerContext
               ) -> pb.DeliverAck:
        state: dict[str, Session] = {}

        def check(header: pb.PayloadHeader) -> None:
            s = self.registry.get(header.session_id)
            s.check_sender(sender)
            state["s"] = s

        failure: BaseException | None = None
        try:
            asm = wire.Assembler(session_check=check)
            for chunk in chunks:
                asm.add(chunk)
            header, payload = asm.finish()
            state["s"].deliver(sender, header.tag, payload)
        except Exception as exc:  # mapped to a status below
            failure = exc
        if failure is not None:
            code, _msg, _node = status_of(failure, self.name)
            log.warning("refused a payload from %s: %s (%s)", sender, failure, code.name)
            abort(context, failure)
        return pb.DeliverAck(bytes_received=header.total_bytes)
