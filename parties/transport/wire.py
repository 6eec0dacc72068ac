"""The wire format of protocol payloads: limits, chunking and reassembly.

A protocol payload (:data:`smpc.transport.Payload`: a numpy array or bytes)
travels as a stream of :class:`Chunk` messages: one header
(:class:`PayloadHeader`: session id, tag, kind, dtype, shape, total size)
followed by data chunks of at most :data:`CHUNK_BYTES`.  The sender encodes each data chunk
itself (:func:`encoded_chunks`: the protobuf bytes of ``Chunk(data=...)``, one copy of the
payload slice, no message object).  The receiver (:class:`Assembler`) checks the header
*before* buffering anything:

* the session id and the tag are well formed (:func:`check_session_id`,
  :func:`check_tag`);
* arrays have a dtype from :data:`ARRAY_DTYPES` (plain little-endian numbers:
  never ``object``, which could not be decoded safely anyway), at most
  :data:`MAX_DIMS` dimensions, and ``prod(shape) * itemsize == total_bytes``;
* ``total_bytes <= max_bytes`` (:data:`MAX_PAYLOAD_BYTES` = 1 GiB by default);

then reserves one buffer of exactly ``total_bytes`` (the payload array itself, of the
header's dtype and shape: numpy reserves it as virtual memory, pages are committed as data
arrives, so an announced size costs no more than the data that came), copies each data chunk
into it at its offset, and refuses a stream that delivers more or fewer bytes than announced,
a second header, or data before the header.  The finished array *is* that buffer: no join and
no copy on the way out.  Every refusal is a
:class:`WireError` (an :class:`~smpc.errors.InputError`) with one sentence.

The sender is *not* part of the format: the runtime takes it from the caller's
verified TLS certificate.

gRPC limits: every server and channel of the runtime is created with
:func:`grpc_options`, which sets the maximum send and receive message size to
:data:`MAX_MESSAGE_BYTES` (4 MiB) explicitly; control messages are small and
payloads are chunked into :data:`CHUNK_BYTES`, so no message comes near it.
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
    "encoded_chunks",
    "grpc_options",
    "header_of",
]

MAX_MESSAGE_BYTES = 4 << 20
"""gRPC max send / receive message size on every server and channel (4 MiB)."""

CHUNK_BYTES = 1 << 20
"""Data bytes per chunk (1 MiB; a multiple of 16, so chunks of an array never split an
element).  Measured on the 2-core machine (one 8 MB array over real mutual-TLS gRPC,
chunk sizes interleaved in one process): 256 KiB to 1 MiB take the same time, 2 MiB
more, and chunks of 4 MiB less 64 KiB (the largest under :data:`MAX_MESSAGE_BYTES`)
about twice as long in the median; smaller chunks let sending, receiving and copying
overlap."""

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


_DATA_KEY = bytes([(2 << 3) | 2])  # Chunk.data: field 2, wire type 2 (length-delimited)
_CHUNKS_KEY = bytes([(1 << 3) | 2])  # Chunks.chunks: field 1, wire type 2 (length-delimited)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encoded_chunks(
    session_id: str, tag: str, payload: Payload, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[bytes]:
    """The serialized messages of :func:`chunks` (byte for byte what ``SerializeToString``
    gives), for a call whose request serializer is the identity.

    A data chunk is its field key, its length and the payload slice, joined in one copy; the
    protobuf message object (and its own copies) is skipped.  The header is validated and
    serialized by protobuf as in :func:`chunks`.
    """
    header = header_of(session_id, tag, payload)
    if chunk_bytes < 1:
        raise ValueError("chunk_bytes must be positive")
    yield pb.Chunk(header=header).SerializeToString()
    data = _payload_bytes(payload)
    for start in range(0, len(data), chunk_bytes):
        piece = data[start:start + chunk_bytes]
        yield b"".join((_DATA_KEY, _varint(len(piece)), piece))


def encoded_whole(session_id: str, tag: str, payload: Payload,
                  chunk_bytes: int = CHUNK_BYTES) -> bytes:
    """The serialized ``Chunks`` message holding every chunk of :func:`encoded_chunks` (byte
    for byte what protobuf gives for ``Chunks(chunks=[...])``): one ``Node.DeliverWhole``
    request.  Meant for a payload of at most one chunk (it is copied once more here)."""
    return b"".join(part for chunk in encoded_chunks(session_id, tag, payload, chunk_bytes)
                    for part in (_CHUNKS_KEY, _varint(len(chunk)), chunk))


class Assembler:
    """Rebuilds one payload from its chunks, enforcing the header's promises.

    Feed chunks with :meth:`add`; :meth:`finish` returns ``(header, payload)``.
    ``session_check`` (optional) is called with the header as soon as it
    arrives, before any data is buffered, so a stream for an unknown session
    or from a non-member is refused early.  Only then is the payload's buffer
    reserved (module docstring); each data chunk is copied into it at its offset.
    """

    def __init__(self, max_bytes: int = MAX_PAYLOAD_BYTES, session_check: Any = None) -> None:
        self.max_bytes = max_bytes
        self.header: pb.PayloadHeader | None = None
        self._out: np.ndarray | None = None
        self._view: memoryview | None = None
        self._filled = 0
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
            self._reserve(chunk.header)
        elif which == "data":
            if self.header is None or self._view is None:
                raise WireError("a payload stream starts with data instead of a header")
            data = chunk.data
            end = self._filled + len(data)
            if end > self.header.total_bytes:
                raise WireError(
                    f"payload {self.header.tag!r} carries more than the "
                    f"{self.header.total_bytes} bytes its header announced"
                )
            self._view[self._filled:end] = data
            self._filled = end
        else:
            raise WireError("an empty chunk (neither header nor data)")

    def _reserve(self, h: pb.PayloadHeader) -> None:
        """The payload's one buffer: the array itself (header dtype and shape), or bytes."""
        try:
            if h.kind == pb.PAYLOAD_KIND_ARRAY:
                self._out = np.empty(tuple(int(s) for s in h.shape), dtype=np.dtype(h.dtype))
            else:
                self._out = np.empty(h.total_bytes, dtype=np.uint8)
        except MemoryError:
            raise WireError(
                f"payload {h.tag!r} of {h.total_bytes} bytes cannot be buffered now") from None
        self._view = self._out.data.cast("B")

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
        return self.header is not None and self._filled == self.header.total_bytes

    def finish(self) -> tuple[pb.PayloadHeader, Payload]:
        """The header and the payload: the filled buffer itself as a writable array in native
        byte order (no copy on a little-endian host), or bytes."""
        if self.header is None:
            raise WireError("a payload stream ended before its header")
        h = self.header
        if self._out is None:
            raise WireError(f"payload {h.tag!r} was already handed out")
        if self._filled != h.total_bytes:
            raise WireError(
                f"payload {h.tag!r} ended after {self._filled} of {h.total_bytes} bytes"
            )
        out, self._out, self._view = self._out, None, None
        if h.kind == pb.PAYLOAD_KIND_BYTES:
            return h, out.tobytes()
        if not out.dtype.isnative:  # pragma: no cover - a big-endian host
            out = out.astype(out.dtype.newbyteorder("="))
        return h, out


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

