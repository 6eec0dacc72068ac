"""Channels to peers and :class:`GrpcTransport`: the core's Transport across hosts.

See :mod:`parties.transport.server` for the guarantees (mutual TLS, name pinning, message-size
limits, delivery semantics).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence

import grpc

from parties._pb import smpc_pb2 as pb
from parties._pb import smpc_pb2_grpc as pb_grpc
from parties.config import FederationConfig, TLSFiles
from parties.errors import failed_node_of, from_rpc_error
from parties.transport import wire
from parties.transport.pinning import PinnedChannels
from parties.transport.sessions import Session, Status
from smpc.errors import PeerFailure, ProtocolError
from smpc.transport import Payload, Transport, payload_nbytes


class PeerChannels(PinnedChannels):
    """One mutual-TLS channel per peer node, reused across sessions.

    The peer's address comes from the federation config; its channel trusts only the peer's
    own verified certificate -- the pinned one, never a revoked one -- and its node name
    (:class:`~parties.transport.pinning.PinnedChannels`).
    """

    def __init__(self, federation: FederationConfig, tls: TLSFiles) -> None:
        super().__init__(federation, tls, wire.grpc_options())

    def node(self, name: str) -> pb_grpc.NodeStub:
        return pb_grpc.NodeStub(self.channel(name))

    def party(self, name: str) -> pb_grpc.PartyStub:
        return pb_grpc.PartyStub(self.channel(name))

    def dealer(self, name: str) -> pb_grpc.DealerStub:
        return pb_grpc.DealerStub(self.channel(name))

    def deliver(self, name: str) -> grpc.StreamUnaryMultiCallable:
        """``Node.Deliver`` on ``name``'s channel, sending already serialized chunks
        (:func:`parties.transport.wire.encoded_chunks`) as they are; the server parses them
        as ``Chunk`` messages like any other."""
        return self.channel(name).stream_unary(
            DELIVER_METHOD, request_serializer=None,
            response_deserializer=pb.DeliverAck.FromString)


    def deliver_whole(self, name: str) -> grpc.UnaryUnaryMultiCallable:
        """``Node.DeliverWhole`` on ``name``'s channel, sending an already serialized
        ``Chunks`` message (:func:`parties.transport.wire.encoded_whole`)."""
        return self.channel(name).unary_unary(
            DELIVER_WHOLE_METHOD, request_serializer=None,
            response_deserializer=pb.DeliverAck.FromString)


Route = Callable[[str, Payload], None]

DELIVER_METHOD = "/smpc.v1.Node/Deliver"
DELIVER_WHOLE_METHOD = "/smpc.v1.Node/DeliverWhole"


class Network(ABC):
    """Where a node's protocol messages go: the data plane beside the control plane.

    :class:`GrpcNetwork` delivers them over mutual-TLS ``Deliver`` calls to the peers'
    servers; :class:`parties.federation.inprocess.InProcessNetwork` hands them to the other
    nodes' session registries in the same process (unit tests).  Either way the transport
    gives the :class:`smpc.transport.Transport` guarantees.
    """

    @abstractmethod
    def transport(self, session: Session, routes: Mapping[str, Route] | None = None
                  ) -> Transport:
        """The transport of ``session`` (``routes``: members reached by a callback)."""

    def witness(self, peer: str, signed_head: bytes, sender: str, timeout: float) -> None:
        """Hand ``peer`` this node's signed audit head (see :mod:`parties.privacy.witness`)."""
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027 - optional hook: nothing to release in process
        """Release channels (nothing to do in process)."""


class GrpcNetwork(Network):
    """The data plane over :class:`PeerChannels`."""

    def __init__(self, peers: PeerChannels) -> None:
        self.peers = peers

    def transport(self, session: Session, routes: Mapping[str, Route] | None = None
                  ) -> Transport:
        return GrpcTransport(session, self.peers, routes)

    def witness(self, peer: str, signed_head: bytes, sender: str, timeout: float) -> None:
        self.peers.node(peer).Witness(pb.WitnessRequest(signed_head=signed_head),
                                      timeout=timeout)

    def close(self) -> None:
        self.peers.close()


RETRY_MIN_SECONDS = 2.0      # a Deliver is retried (once) only with this much of the session left


_REFUSED_PAYLOAD = (grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.INVALID_ARGUMENT)


class GrpcTransport(Transport):
    """One node's channels in one session (see the module docstring).

    ``routes`` maps node names that are not gRPC servers (the analyst on the
    coordinator's Compute stream) to a function ``(tag, payload)`` that
    forwards the payload; what they send back is put in the session inbox by
    whoever reads their stream.
    """

    def __init__(self, session: Session, peers: PeerChannels,
                 routes: Mapping[str, Route] | None = None) -> None:
        super().__init__(session.me)
        self.session = session
        self.peers = peers
        self.routes = dict(routes or {})

    def _send(self, to: str, tag: str, payload: Payload) -> None:
        s = self.session
        if to not in s.members:
            raise ProtocolError(f"{self.me} tried to send {tag!r} to {to!r}, not a session member")
        if s.status == Status.ABORTED:
            raise PeerFailure(s.failed_node or to,
                              f"session aborted before {self.me} sent {tag!r}: {s.abort_reason}")
        route = self.routes.get(to)
        if route is not None:
            route(tag, payload)
            return
        timeout = s.remaining()
        if timeout <= 0:
            raise PeerFailure(to, f"the session deadline passed before {self.me} sent {tag!r}",
                              deadline=True)
        try:
            self._deliver(to, tag, payload)
        except grpc.RpcError as err:
            remote = from_rpc_error(err, to)
            if err.code() in _REFUSED_PAYLOAD:
                # the receiver refused *this* payload (a replay, a malformed message): the
                # fault is this node's, not the receiver's
                raise ProtocolError(
                    f"{to} refused {tag!r} from {self.me}: {remote.message}") from None
            raise PeerFailure(
                to, f"{self.me} could not deliver {tag!r} to {to}: {remote.message}"
            ) from None

    def _deliver(self, to: str, tag: str, payload: Payload) -> None:
        """One ``Deliver``; retried once when the peer was unreachable at the transport level.

        A peer that restarted a moment ago may still sit behind this channel's reconnect
        backoff (:data:`parties.transport.wire.RECONNECT_BACKOFF_MS`): wait out the ceiling,
        try again.
        If the first attempt did arrive after all, the receiver answers the retry with
        ALREADY_EXISTS (it holds this node's payload for the tag), which counts as delivered.
        """
        s = self.session
        try:
            self._call(to, tag, payload)
            return
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.UNAVAILABLE or failed_node_of(err) is not None:
                raise
            self.peers.forget(to)  # the retry checks the peer's certificate again
            if s.remaining() < RETRY_MIN_SECONDS:
                raise
        time.sleep(wire.RECONNECT_BACKOFF_MS[1] / 1000 + 0.1)
        if s.status == Status.ABORTED:
            raise PeerFailure(s.failed_node or to,
                              f"session aborted before {self.me} sent {tag!r}: {s.abort_reason}")
        try:
            self._call(to, tag, payload)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise

    def _call(self, to: str, tag: str, payload: Payload) -> None:
        """One delivery attempt: ``DeliverWhole`` for a payload of at most one chunk, else a
        ``Deliver`` stream."""
        s = self.session
        if payload_nbytes(payload) <= wire.CHUNK_BYTES:
            self.peers.deliver_whole(to)(wire.encoded_whole(s.id, tag, payload),
                                         timeout=s.remaining())
        else:
            self.peers.deliver(to)(wire.encoded_chunks(s.id, tag, payload),
                                   timeout=s.remaining())

    def send_each(self, messages: Sequence[tuple[str, str, Payload]]) -> None:
        """Send every ``(to, tag, payload)``, each in its own thread: a node's messages to its
        peers travel at the same time instead of one after another.

        The checks of :meth:`~smpc.transport.Transport.send` (no message to oneself, the role
        not told to stop) run for all of them before the first leaves; then every message is
        attempted, and the first failure in the order given is raised once all have ended
        (a message that failed is retried and blamed exactly as by :meth:`send`).
        """
        msgs = list(messages)
        if len(msgs) < 2:
            super().send_each(msgs)
            return
        for to, tag, _ in msgs:
            if to == self.me:
                raise ProtocolError(f"{self.me} tried to send {tag!r} to itself")
        self.check_cancelled()
        for to, _, payload in msgs:
            self.traffic.record_send(to, payload_nbytes(payload))
        errors: list[BaseException | None] = [None] * len(msgs)

        def one(i: int) -> None:
            to, tag, payload = msgs[i]
            try:
                self._send(to, tag, payload)
            except BaseException as exc:  # re-raised in the caller's thread below
                errors[i] = exc

        threads = [threading.Thread(target=one, args=(i,), name=f"send-{msgs[i][0]}",
                                    daemon=True) for i in range(1, len(msgs))]
        for th in threads:
            th.start()
        one(0)
        for th in threads:
            th.join()
        for err in errors:
            if err is not None:
                raise err

    def _recv(self, sender: str, tag: str) -> Payload:
        return self.session.wait_message(sender, tag)
