"""The wire format of protocol payloads: limits, chunking and reassembly.

A protocol payload (:data:`smpc.transport.Payload`: a numpy array or bytes)
travels as a stream of :class:`Chunk` messages: one header
(:class:`PayloadHeader`: session id, tag, kind, dtype, shape, total size)
followed by data chunks of at most :data:`CHUNK_BYTES`.  The receiver
(:class:`Assembler`) checks the header *before* buffering anything:

* the session id and the tag are well formed (:func:`check_session_id`,
  :func:`check_tag`);
* arrays have a dtype from :data:`ARRAY_DTYPES` (plain little-endian numbers:
  never ``object``, which could not be decoded safely anyway), at most
  :data:`MAX_DIMS` dimensions, and ``prod(shape) * itemsize == total_bytes``;
* ``total_bytes <= max_bytes`` (:data:`MAX_PAYLOAD_BYTES` = 1 GiB by default);

then refuses a stream that delivers more or fewer bytes than announced, a
second header, or data before the header.  Every refusal is a
:class:`WireError` (an :class:`~smpc.errors.InputError`) with one sentence.

The sender is *not* part of the format: the runtime takes it from the caller's
verified TLS certificate.

gRPC limits: every server and channel of the runtime is created with
:func:`grpc_options`, which sets the maximum send and receive message size to
:data:`MAX_MESSAGE_BYTES` (4 MiB) explicitly; control messages are small and
payloads are chunked, so no message comes near it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from parties._pb import smpc_pb2 as pb
from smpc.errors import InputError
from smpc.transport import Payload

__all__ = [
    "ARRAY_DTYPES",
    "CHUNK_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_PAYLOAD_BYTES",
    "Assembler",
    "WireError",
    "check_session_id",
    "check_tag",
    "chunks",
    "grpc_options",
    "header_of",
]

CHUNK_BYTES = 1 << 20
"""Data bytes per chunk (1 MiB)."""

MAX_MESSAGE_BYTES = 4 << 20
"""gRPC max send / receive message size on every server and channel (4 MiB)."""

MAX_PAYLOAD_BYTES = 1 << 30
"""Largest payload a node accepts (1 GiB), checked against the header before buffering."""

MAX_DIMS = 8
MAX_TAG_CHARS = 256

ARRAY_DTYPES: frozenset[str] = frozenset(
    {"<u8", "<i8", "<f8", "<u4", "<i4", "<f4", "<u2", "<i2", "|u1", "|i1", "|b1"}
)
"""Array dtypes allowed on the wire (numpy ``dtype.str``, little endian)."""

_SESSION_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}\Z")
_TAG_RE = re.compile(r"^[A-Za-z0-9_./:+-]{1,256}\Z")  # MAX_TAG_CHARS


class WireError(InputError):
    """A payload stream or a wire field is malformed or exceeds a limit."""


#: Reconnect backoff of every channel: a restarted node is reachable again
#: within about a second (gRPC's default backoff grows to two minutes).
RECONNECT_BACKOFF_MS = (100, 1000)

#: The least time a connection attempt (TCP and TLS handshake) is given.  gRPC reads it from
#: ``grpc.min_reconnect_backoff_ms`` -- despite the name, its minimum *connect timeout* -- so
#: it must not be the backoff's 100 ms: a link with a 100 ms round trip, or a loaded host,
#: would then never connect.
CONNECT_TIMEOUT_MS = 5000


def grpc_options(extra: list[tuple[str, Any]] | None = None) -> list[tuple[str, Any]]:
    """Channel / server options of the runtime: explicit message-size limits (4 MiB),
    a short reconnect backoff (:data:`RECONNECT_BACKOFF_MS`) and a connect timeout that slow
    links and busy hosts can meet (:data:`CONNECT_TIMEOUT_MS`)."""
    low, high = RECONNECT_BACKOFF_MS
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.initial_reconnect_backoff_ms", low),
        ("grpc.min_reconnect_backoff_ms", CONNECT_TIMEOUT_MS),  # the connect timeout
        ("grpc.max_reconnect_backoff_ms", high),
        *(extra or []),
    ]


def check_session_id(session_id: str) -> str:
    """Return ``session_id`` if it is 8-64 characters of ``[A-Za-z0-9_-]``, else raise."""
    if not isinstance(session_id, str) or not _SESSION_RE.match(session_id):
        raise WireError(f"malformed session id {str(session_id)[:80]!r}")
    return session_id


def check_tag(tag: str) -> str:
    """Return ``tag`` if it is 1-256 characters of ``[A-Za-z0-9_./:+-]``, else raise."""
    if not isinstance(tag, str) or not _TAG_RE.match(tag):
        raise WireError(f"malformed protocol tag {str(tag)[:80]!r}")
    return tag


def header_of(session_id: str, tag: str, payload: Payload) -> pb.PayloadHeader:
    """The header describing ``payload`` (validates the ids and, for arrays, the dtype)."""
    check_session_id(session_id)
    check_tag(tag)
    if isinstance(payload, np.ndarray):
        dtype = payload.dtype.newbyteorder("<") if payload.dtype.byteorder == ">" else payload.dtype
        if dtype.str not in ARRAY_DTYPES:
            raise WireError(f"arrays of dtype {payload.dtype} cannot be sent (tag {tag!r})")
        if payload.ndim > MAX_DIMS:
            raise WireError(f"arrays of more than {MAX_DIMS} dimensions cannot be sent")
        return pb.PayloadHeader(
            session_id=session_id, tag=tag, kind=pb.PAYLOAD_KIND_ARRAY, dtype=dtype.str,
            shape=list(payload.shape), total_bytes=int(payload.nbytes),
        )
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return pb.PayloadHeader(
            session_id=session_id, tag=tag, kind=pb.PAYLOAD_KIND_BYTES,
            total_bytes=len(payload),
        )
    raise WireError(f"payloads are numpy arrays or bytes, not {type(payload).__name__}")


def _payload_bytes(payload: Payload) -> memoryview:
    if isinstance(payload, np.ndarray):
        arr = payload
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        return np.ascontiguousarray(arr).data.cast("B")
    return memoryview(bytes(payload))


def chunks(
    session_id: str, tag: str, payload: Payload, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[pb.Chunk]:
    """The chunk stream of one payload: a header, then data chunks of <= ``chunk_bytes``.

    The data is the raw little-endian bytes of the array (C order) or the bytes
    themselves; an empty payload is a header alone.
    """
    header = header_of(session_id, tag, payload)
    yield pb.Chunk(header=header)
    data = _payload_bytes(payload)
    for start in range(0, len(data), chunk_bytes):
        yield pb.Chunk(data=bytes(data[start:start + chunk_bytes]))


class Assembler:
    """Rebuilds one payload from its chunks, enforcing the header's promises.

    Feed chunks with :meth:`add`; :meth:`finish` returns ``(header, payload)``.
    ``session_check`` (optional) is called with the header as soon as it
    arrives, before any data is buffered, so a stream for an unknown session
    or from a non-member is refused early.
    """

    def __init__(self, max_bytes: int = MAX_PAYLOAD_BYTES, session_check: Any = None) -> None:
        self.max_bytes = max_bytes
        self.header: pb.PayloadHeader | None = None
        self._buf = bytearray()
        self._session_check = session_check

    def add(self, chunk: pb.Chunk) -> None:
        """Consume one chunk; raises :class:`WireError` on any violation."""
        which = chunk.WhichOneof("body")
        if which == "header":
            if self.header is not None:
                raise WireError("a payload stream carries a second header")
            self._check_header(chunk.header)
            self.header = chunk.header
            if self._session_check is not None:
                self._session_check(chunk.header)
        elif which == "data":
            if self.header is None:
                raise WireError("a payload stream starts with data instead of a header")
            if len(self._buf) + len(chunk.data) > self.header.total_bytes:
                raise WireError(
                    f"payload {self.header.tag!r} carries more than the "
                    f"{self.header.total_bytes} bytes its header announced"
                )
            self._buf += chunk.data
        else:
            raise WireError("an empty chunk (neither header nor data)")

    def _check_header(self, h: pb.PayloadHeader) -> None:
        check_session_id(h.session_id)
        check_tag(h.tag)
        if h.total_bytes > self.max_bytes:
            raise WireError(
                f"payload {h.tag!r} announces {h.total_bytes} bytes, over the "
                f"{self.max_bytes}-byte limit"
            )
        if h.kind == pb.PAYLOAD_KIND_ARRAY:
            if h.dtype not in ARRAY_DTYPES:
                raise WireError(f"payload {h.tag!r} has disallowed dtype {h.dtype[:16]!r}")
            if len(h.shape) > MAX_DIMS:
                raise WireError(f"payload {h.tag!r} has more than {MAX_DIMS} dimensions")
            count = 1
            for s in h.shape:
                count *= int(s)
                if count * np.dtype(h.dtype).itemsize > self.max_bytes:
                    raise WireError(f"payload {h.tag!r} has a shape over the size limit")
            if count * np.dtype(h.dtype).itemsize != h.total_bytes:
                raise WireError(
                    f"payload {h.tag!r}: shape {tuple(h.shape)} of {h.dtype} does not "
                    f"make {h.total_bytes} bytes"
                )
        elif h.kind == pb.PAYLOAD_KIND_BYTES:
            if h.dtype or len(h.shape):
                raise WireError(f"bytes payload {h.tag!r} must not carry a dtype or shape")
        else:
            raise WireError(f"payload {h.tag!r} has an unknown kind {h.kind}")

    @property
    def complete(self) -> bool:
        """True once the header and exactly the announced number of bytes arrived."""
        return self.header is not None and len(self._buf) == self.header.total_bytes

    def finish(self) -> tuple[pb.PayloadHeader, Payload]:
        """The header and the payload (a fresh writable array, or bytes)."""
        if self.header is None:
            raise WireError("a payload stream ended before its header")
        h = self.header
        if len(self._buf) != h.total_bytes:
            raise WireError(
                f"payload {h.tag!r} ended after {len(self._buf)} of {h.total_bytes} bytes"
            )
        if h.kind == pb.PAYLOAD_KIND_BYTES:
            return h, bytes(self._buf)
        arr = np.frombuffer(self._buf, dtype=np.dtype(h.dtype)).reshape(tuple(h.shape))
        return h, arr.astype(arr.dtype.newbyteorder("="), copy=True)


#: Largest JSON spec accepted in a request (a statistic spec is a few hundred bytes).
MAX_SPEC_BYTES = 256 * 1024


def parse_spec_json(text: str, what: str = "spec") -> Any:
    """Parse an untrusted JSON spec: size-bounded, and a malformed or absurdly nested
    document is an :class:`~smpc.errors.InputError`, never an internal error."""
    if len(text) > MAX_SPEC_BYTES:
        raise InputError(f"the {what} is {len(text)} bytes; at most {MAX_SPEC_BYTES}")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise InputError(f"the {what} is not valid JSON") from None
    except RecursionError:
        raise InputError(f"the {what} is nested too deeply") from None

