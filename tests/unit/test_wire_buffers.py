"""The payload wire path's buffers: hand-encoded chunks, reassembly into one preallocated
buffer, and sends to several peers at once.

* :func:`parties.transport.wire.encoded_chunks` must be byte for byte what protobuf's own
  ``SerializeToString`` gives for :func:`~parties.transport.wire.chunks` (the receiver
  parses them as ``Chunk`` messages), at every size around the chunk boundaries;
* :class:`~parties.transport.wire.Assembler` writes each chunk at its offset into the
  payload's one buffer: the payload comes back exactly, whatever the chunking, and a stream
  that is truncated, overlong or malformed is refused with one clear sentence;
* over real mutual-TLS servers (a fresh CA, 127.0.0.1, no mocks), malformed streams sent
  through the identity-serializer path are refused with INVALID_ARGUMENT and leave the
  receiving node working, and ``GrpcTransport.send_each`` delivers to every peer, raising
  the failure of the one that could not be reached without losing the others' messages.
"""

from __future__ import annotations

import math

import grpc
import numpy as np
import pytest

from parties._pb import smpc_pb2 as pb
from parties.transport import wire
from parties.transport.channels import GrpcTransport
from smpc.errors import PeerFailure, ProtocolError
from tests.unit.mtls_nodes import party_nodes

SID = "buffers0123456789"
C = wire.CHUNK_BYTES
SMALL = 64  # a small chunk size: many chunks from a few hundred bytes


def _sizes(chunk: int) -> list[int]:
    """0, 1, chunk - 1, chunk, chunk + 1 and several chunks with a tail."""
    return [0, 1, chunk - 1, chunk, chunk + 1, 3 * chunk + 7]


def _payload(n: int) -> bytes:
    return np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()


def _assemble(messages: list[bytes]) -> tuple[pb.PayloadHeader, object]:
    asm = wire.Assembler()
    for m in messages:
        asm.add(pb.Chunk.FromString(m))
    assert asm.complete
    return asm.finish()


# ---------------------------------------------------------------- encoding at the boundaries


@pytest.mark.parametrize("chunk", [SMALL, C])
@pytest.mark.parametrize("which", range(6))
def test_encoded_chunks_are_protobufs_own_serialization_at_every_boundary(chunk, which):
    """For payload sizes 0, 1, chunk-1, chunk, chunk+1 and 3 chunks + 7 (with a 64-byte and
    the real chunk size): the hand-encoded messages equal ``SerializeToString`` of the
    message objects, there are ``1 + ceil(n / chunk)`` of them, none over the gRPC message
    limit, and they reassemble to the payload.

    A wrong field key, a wrong length prefix (a varint cut at 7 bits, a length off by one),
    a dropped or repeated tail, or an empty extra chunk fails the equality.
    """
    n = _sizes(chunk)[which]
    data = _payload(n)
    encoded = list(wire.encoded_chunks(SID, "t/x", data, chunk))
    reference = [c.SerializeToString() for c in wire.chunks(SID, "t/x", data, chunk)]
    assert encoded == reference
    assert len(encoded) == 1 + math.ceil(n / chunk)
    assert all(len(m) < wire.MAX_MESSAGE_BYTES for m in encoded)
    header, got = _assemble(encoded)
    assert got == data and header.total_bytes == n and header.kind == pb.PAYLOAD_KIND_BYTES


@pytest.mark.parametrize("count", [0, 1, C // 8 - 1, C // 8, C // 8 + 1, 2 * C // 8 + 3])
def test_arrays_reassemble_into_one_writable_native_array(count):
    """uint64 arrays on and around the real chunk boundary come back equal, of the sent
    dtype and shape, C-contiguous and writable; writing to the result does not touch the
    sender's array (the receiver owns its buffer)."""
    a = np.random.default_rng(count).integers(0, 2**64, count, dtype=np.uint64)
    sent = a.copy()
    header, got = _assemble(list(wire.encoded_chunks(SID, "t/a", a)))
    assert isinstance(got, np.ndarray) and got.dtype == np.uint64 and got.shape == (count,)
    assert got.flags.writeable and got.flags.c_contiguous and got.dtype.isnative
    np.testing.assert_array_equal(got, a)
    if count:
        got[0] ^= np.uint64(1)
        np.testing.assert_array_equal(a, sent)
    assert header.total_bytes == 8 * count


def test_multidimensional_and_big_endian_arrays_keep_their_shape_and_values():
    """A (3, 5, 7) float32 array split into 64-byte chunks (elements never straddle, 64 is a
    multiple of 4) and a big-endian array (sent little endian) come back equal."""
    a = np.random.default_rng(1).normal(size=(3, 5, 7)).astype(np.float32)
    _, got = _assemble(list(wire.encoded_chunks(SID, "t/m", a, SMALL)))
    assert got.shape == (3, 5, 7) and got.dtype == np.float32
    np.testing.assert_array_equal(got, a)
    b = np.arange(11, dtype=">i8")
    h, got = _assemble(list(wire.encoded_chunks(SID, "t/b", b, SMALL)))
    assert h.dtype == "<i8" and got.dtype == np.int64 and np.array_equal(got, b)


def test_a_chunk_size_below_one_is_refused():
    with pytest.raises(ValueError, match="positive"):
        list(wire.encoded_chunks(SID, "t", b"abc", 0))


# ---------------------------------------------------------------- refusals of the assembler


def _header(total: int, shape: list[int] | None = None) -> pb.Chunk:
    kind = pb.PAYLOAD_KIND_ARRAY if shape is not None else pb.PAYLOAD_KIND_BYTES
    return pb.Chunk(header=pb.PayloadHeader(
        session_id=SID, tag="t", kind=kind, dtype="<u8" if shape is not None else "",
        shape=shape or [], total_bytes=total))


def test_a_truncated_stream_is_refused_at_finish_with_the_byte_counts():
    """Two full 64-byte chunks of a 3-chunk array: finish names how far it got."""
    asm = wire.Assembler()
    asm.add(_header(24 * 8, [24]))
    asm.add(pb.Chunk(data=bytes(64)))
    asm.add(pb.Chunk(data=bytes(64)))
    assert not asm.complete
    with pytest.raises(wire.WireError, match="ended after 128 of 192 bytes"):
        asm.finish()


def test_an_overlong_stream_is_refused_at_the_chunk_that_overflows_and_keeps_nothing_extra():
    """A last chunk one byte too long is refused when it arrives (before it is copied): the
    buffer never holds more than announced, and the payload is never handed out."""
    asm = wire.Assembler()
    asm.add(_header(100))
    asm.add(pb.Chunk(data=b"a" * 64))
    with pytest.raises(wire.WireError, match="more than the 100 bytes"):
        asm.add(pb.Chunk(data=b"b" * 37))
    with pytest.raises(wire.WireError, match="ended after 64 of 100"):
        asm.finish()


def test_a_payload_is_handed_out_once():
    """A finished assembler gives its buffer away: a second finish is an error, not the same
    array twice (which two sessions could then share)."""
    asm = wire.Assembler()
    asm.add(_header(3))
    asm.add(pb.Chunk(data=b"xyz"))
    assert asm.finish()[1] == b"xyz"
    with pytest.raises(wire.WireError, match="already handed out"):
        asm.finish()


def test_nothing_is_reserved_for_a_stream_its_session_check_refuses():
    """The session check runs before the buffer is reserved: a stranger's 1 GiB header
    costs no allocation, and its data is refused as data without a header."""
    class Refused(Exception):
        pass

    def refuse(_h: pb.PayloadHeader) -> None:
        raise Refused

    asm = wire.Assembler(session_check=refuse)
    with pytest.raises(Refused):
        asm.add(_header(wire.MAX_PAYLOAD_BYTES))
    assert asm._out is None and asm._view is None
    with pytest.raises(wire.WireError, match="starts with data"):
        asm.add(pb.Chunk(data=b"x"))


def test_an_empty_data_chunk_is_accepted_and_adds_nothing():
    """``Chunk(data=b"")`` is a data chunk of length 0 (protobuf serializes a set oneof even
    when empty): harmless, the payload is still exactly the bytes that came."""
    asm = wire.Assembler()
    asm.add(_header(2))
    asm.add(pb.Chunk(data=b""))
    asm.add(pb.Chunk(data=b"ok"))
    assert asm.finish()[1] == b"ok"


# ----------------------------------------------------------- real servers, mutual TLS


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    for _, out in party_nodes(tmp_path_factory.mktemp("pki"), "buffers", ["b1", "b2", "b3"]):
        yield out


_DATA_KEY = b"\x12"


@pytest.mark.parametrize("case", ["truncated", "overlong", "bad-varint", "data-first"])
def test_malformed_raw_streams_are_invalid_argument_and_the_node_keeps_working(nodes, case):
    """Serialized streams through the raw Deliver path (identity serializer, as the runtime
    sends): a stream that ends early, one longer than its header, a data chunk whose length
    prefix overruns the message (undecodable), and data before the header are each refused
    with INVALID_ARGUMENT and a one-sentence detail; afterwards the same sender delivers the
    same tag in the same session and the receiver gets exactly that payload (no buffer or
    tag left held by the refused stream)."""
    sid = f"raw{case.replace('-', '')}0001"
    members = {"b1": "party", "b2": "party"}
    s1 = nodes["b1"]["reg"].create(sid, members, 20)
    s2 = nodes["b2"]["reg"].create(sid, members, 20)
    good = np.arange(SMALL + 3, dtype=np.uint64)
    msgs = list(wire.encoded_chunks(sid, "t/p", good, SMALL))
    bad = {
        "truncated": msgs[:-1],
        "overlong": [*msgs, _DATA_KEY + bytes([8]) + bytes(8)],
        "bad-varint": [msgs[0], _DATA_KEY + bytes([100]) + bytes(8)],
        "data-first": msgs[1:],
    }[case]
    deliver = nodes["b1"]["peers"].deliver("b2")
    with pytest.raises(grpc.RpcError) as e:
        deliver(iter(bad), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() and "\n" not in e.value.details()
    GrpcTransport(s1, nodes["b1"]["peers"]).send("b2", "t/p", good)
    np.testing.assert_array_equal(s2.wait_message("b1", "t/p"), good)
    nodes["b1"]["reg"].free(sid)
    nodes["b2"]["reg"].free(sid)


def test_send_each_delivers_to_every_peer(nodes):
    """One ``send_each`` to two peers: a multi-chunk array to one, bytes to the other; each
    receives exactly its own payload, and the sender's traffic counts both."""
    sid = "sendeach00001"
    members = {"b1": "party", "b2": "party", "b3": "party"}
    sess = {n: nodes[n]["reg"].create(sid, members, 20) for n in members}
    t = GrpcTransport(sess["b1"], nodes["b1"]["peers"])
    big = np.random.default_rng(7).integers(0, 2**64, C // 8 + 11, dtype=np.uint64)
    t.send_each([("b2", "s/big", big), ("b3", "s/seed", b"0123456789abcdef")])
    np.testing.assert_array_equal(sess["b2"].wait_message("b1", "s/big"), big)
    assert sess["b3"].wait_message("b1", "s/seed") == b"0123456789abcdef"
    assert t.traffic.messages_sent == 2
    assert t.traffic.bytes_sent_to == {"b2": big.nbytes, "b3": 16}
    for n in members:
        nodes[n]["reg"].free(sid)


def test_send_each_raises_the_failed_peer_and_still_delivers_to_the_others(nodes):
    """b3 holds no such session (NOT_FOUND: the message cannot be delivered): ``send_each``
    raises a PeerFailure naming b3 after the message to b2, listed after it, arrived.  A
    batch that names the sender itself is refused before anything leaves."""
    sid = "sendeach00002"
    members = {"b1": "party", "b2": "party", "b3": "party"}
    s1 = nodes["b1"]["reg"].create(sid, members, 20)
    s2 = nodes["b2"]["reg"].create(sid, members, 20)
    t = GrpcTransport(s1, nodes["b1"]["peers"])
    with pytest.raises(PeerFailure) as e:
        t.send_each([("b3", "f/x", b"lost"), ("b2", "f/x", b"kept")])
    assert e.value.peer == "b3"
    assert s2.wait_message("b1", "f/x") == b"kept"
    with pytest.raises(ProtocolError, match="to itself"):
        t.send_each([("b2", "f/y", b"never"), ("b1", "f/y", b"self")])
    assert s2.bytes_received == 4  # only "kept": nothing of the refused batch left
    nodes["b1"]["reg"].free(sid)
    nodes["b2"]["reg"].free(sid)
