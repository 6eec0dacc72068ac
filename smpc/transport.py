"""The message interface every protocol is written against.

A protocol role is an ordinary function ``role(transport, ...)`` that sends and
receives *tagged* payloads to and from named nodes.  The in-process simulator
(:mod:`smpc.simulator`) and the gRPC runtime (``parties/``) both implement
:class:`Transport`, so the same protocol code runs in one process in a test and
across hosts in production.

Guarantees a transport must give (the protocols rely on them):

* **authenticated, private, point-to-point channels**: ``recv(sender, tag)``
  returns only what ``sender`` sent with ``tag`` (in the runtime: mutual TLS
  with the sender's certificate identity checked);
* **exactly once per (sender, recipient, tag)** within a session: a second
  message with the same triple is a :class:`~smpc.errors.ProtocolError`
  (replay protection), and tags are chosen by the protocols to be unique;
* **bounded waiting**: ``recv`` raises :class:`~smpc.errors.PeerFailure`
  naming the sender when it does not arrive before the deadline or the sender
  has failed;
* **cooperative cancellation**: :meth:`Transport.check_cancelled` raises (a
  :class:`~smpc.errors.PeerFailure`, or the runtime's own limit error) as soon
  as the role must stop -- its session was aborted or expired, its node is
  shutting down, or it used up what its node allows one session.  Protocols
  call it before and after every step that costs time or memory (local
  aggregation, noise sampling, each ciphertext chunk); :meth:`Transport.send`
  calls it before every message.  A role that is told to stop therefore stops
  within one such step, and the memory its steps held is released with it.

Payloads are numpy arrays (any numeric dtype and shape) or raw bytes
(seeds, ciphertexts, serialized contexts, small JSON documents).
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from smpc.errors import ProtocolError

Payload = np.ndarray | bytes


def payload_nbytes(payload: Payload) -> int:
    """Bytes the payload occupies on the wire, excluding framing."""
    if isinstance(payload, np.ndarray):
        return int(payload.nbytes)
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return len(payload)
    raise TypeError(f"payloads are numpy arrays or bytes, not {type(payload).__name__}")


def pack_json(obj: Any) -> bytes:
    """Small public metadata as a payload (canonical JSON, UTF-8)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def unpack_json(payload: Payload) -> Any:
    """Inverse of :func:`pack_json`; a non-JSON payload is a ProtocolError."""
    if not isinstance(payload, (bytes, bytearray)):
        raise ProtocolError("expected a JSON document, got an array")
    try:
        return json.loads(bytes(payload).decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"malformed JSON message: {exc}") from None


@dataclass
class Traffic:
    """What one node sent and received in a session (counted under a lock: a role may send
    from several threads, e.g. :func:`smpc.linear.run_data_owner_ckks`)."""

    messages_sent: int = 0
    bytes_sent: int = 0
    messages_received: int = 0
    bytes_received: int = 0
    bytes_sent_to: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record_send(self, to: str, nbytes: int) -> None:
        with self._lock:
            self.messages_sent += 1
            self.bytes_sent += nbytes
            self.bytes_sent_to[to] = self.bytes_sent_to.get(to, 0) + nbytes

    def record_recv(self, nbytes: int) -> None:
        with self._lock:
            self.messages_received += 1
            self.bytes_received += nbytes


class Transport(ABC):
    """One node's view of a session's channels.  See the module docstring."""

    def __init__(self, me: str) -> None:
        self.me = me
        self.traffic = Traffic()
        self._stop_checks: list[Callable[[], None]] = []

    @abstractmethod
    def _send(self, to: str, tag: str, payload: Payload) -> None: ...

    @abstractmethod
    def _recv(self, sender: str, tag: str) -> Payload: ...

    def _check_cancelled(self) -> None:  # noqa: B027 - optional hook: never cancelled by default
        """What the transport itself knows about cancellation (the simulator: a node failed);
        raise :class:`~smpc.errors.PeerFailure` to stop the role.  A no-op by default."""

    def add_stop_check(self, check: Callable[[], None]) -> None:
        """Have :meth:`check_cancelled` also call ``check``, which raises to stop the role
        (the runtime installs its session's state and its node's per-session limits)."""
        self._stop_checks.append(check)

    def check_cancelled(self) -> None:
        """Raise if this node's role must stop now (module docstring); otherwise return.

        Cheap: protocols call it before and after each expensive step.
        """
        self._check_cancelled()
        for check in self._stop_checks:
            check()

    def send(self, to: str, tag: str, payload: Payload) -> None:
        """Deliver ``payload`` to node ``to`` under ``tag`` (unique per session).

        Calls :meth:`check_cancelled` first: a role told to stop sends nothing more.
        """
        if to == self.me:
            raise ProtocolError(f"{self.me} tried to send {tag!r} to itself")
        self.check_cancelled()
        self.traffic.record_send(to, payload_nbytes(payload))
        self._send(to, tag, payload)

    def recv(self, sender: str, tag: str) -> Payload:
        """Wait for the payload ``sender`` sent under ``tag``."""
        payload = self._recv(sender, tag)
        self.traffic.record_recv(payload_nbytes(payload))
        return payload

    def recv_array(
        self, sender: str, tag: str, dtype: np.dtype | type, shape: tuple[int, ...] | None = None
    ) -> np.ndarray:
        """Receive an array and check its dtype (and shape, if given)."""
        payload = self.recv(sender, tag)
        if not isinstance(payload, np.ndarray) or payload.dtype != np.dtype(dtype):
            got = payload.dtype if isinstance(payload, np.ndarray) else "bytes"
            raise ProtocolError(
                f"{sender} sent {tag!r} as {got}, expected an array of {np.dtype(dtype)}",
                peer=sender,
            )
        if shape is not None and payload.shape != tuple(shape):
            raise ProtocolError(
                f"{sender} sent {tag!r} with shape {payload.shape}, expected {tuple(shape)}",
                peer=sender,
            )
        return payload

    def recv_bytes(self, sender: str, tag: str, max_len: int | None = None) -> bytes:
        """Receive a bytes payload (optionally bounded in length)."""
        payload = self.recv(sender, tag)
        if not isinstance(payload, (bytes, bytearray)):
            raise ProtocolError(f"{sender} sent {tag!r} as an array, expected bytes",
                                peer=sender)
        if max_len is not None and len(payload) > max_len:
            raise ProtocolError(f"{sender} sent {len(payload)} bytes for {tag!r}, max {max_len}",
                                peer=sender)
        return bytes(payload)

    def send_each(self, messages: Sequence[tuple[str, str, Payload]]) -> None:
        """Send every ``(to, tag, payload)`` of ``messages``, with :meth:`send`'s checks.

        Here one after another, in order; a transport may deliver them concurrently (the
        runtime's gRPC transport sends to different peers at the same time).  Either way
        every message is checked and sent as by :meth:`send`, and a failure is raised.
        """
        for to, tag, payload in messages:
            self.send(to, tag, payload)

    def broadcast(self, recipients: Iterable[str], tag: str, payload: Payload) -> None:
        """Send the same payload to every recipient except oneself (see :meth:`send_each`)."""
        self.send_each([(r, tag, payload) for r in recipients if r != self.me])

    def recv_from_each(self, senders: Iterable[str], tag: str) -> dict[str, Payload]:
        """Receive ``tag`` from every sender except oneself."""
        return {s: self.recv(s, tag) for s in senders if s != self.me}
