"""The wire format, session state, status mapping, and GrpcTransport over real mTLS servers.

The last group starts real gRPC servers on 127.0.0.1 (free ports) with
certificates from a fresh CA -- no mocks of the network or of TLS.
"""

import threading
import time

import grpc
import numpy as np
import pytest

from parties._pb import smpc_pb2 as pb
from parties._pb import smpc_pb2_grpc as pb_grpc
from parties.config import TLSFiles
from parties.errors import (
    ColumnRefused,
    NodeBlamed,
    PolicyError,
    SessionError,
    from_rpc_error,
    status_of,
)
from parties.transport import wire
from parties.transport.channels import GrpcTransport
from parties.transport.server import NODE_ACCESS, NodeService, start_server
from parties.transport.sessions import SessionRegistry, Status
from smpc import stats
from smpc.encoding import EncodingRangeError
from smpc.errors import InputError, PeerFailure, ProtocolError
from tests.tolerances import Backend, Moments, assert_within
from tests.unit.mtls_nodes import party_nodes

SID = "0123456789abcdef"


def roundtrip(payload, chunk_bytes=wire.CHUNK_BYTES):
    asm = wire.Assembler()
    for c in wire.chunks(SID, "t/x", payload, chunk_bytes):
        asm.add(c)
    assert asm.complete
    return asm.finish()


# ------------------------------------------------------------------------ chunking


@pytest.mark.parametrize("dtype", [np.uint64, np.int64, np.float64, np.float32, np.uint8, bool])
@pytest.mark.parametrize("shape", [(0,), (1,), (7, 3), (2, 3, 4)])
def test_arrays_roundtrip_exactly(dtype, shape):
    a = (np.arange(int(np.prod(shape))) * 7919 % 1000).astype(dtype).reshape(shape)
    header, got = roundtrip(a)
    assert got.dtype == a.dtype and got.shape == a.shape and np.array_equal(got, a)
    assert got.flags.writeable and header.total_bytes == a.nbytes


def test_big_endian_arrays_are_sent_little_endian():
    a = np.arange(5, dtype=">f8")
    header, got = roundtrip(a)
    assert header.dtype == "<f8" and np.array_equal(got, a)


def test_large_payload_is_chunked_below_the_message_limit():
    a = np.arange(700_000, dtype=np.uint64)  # 5.6 MB
    msgs = list(wire.chunks(SID, "big", a))
    assert len(msgs) == 1 + 6
    assert all(m.ByteSize() < wire.MAX_MESSAGE_BYTES for m in msgs)
    assert max(len(m.data) for m in msgs[1:]) == wire.CHUNK_BYTES
    assert np.array_equal(roundtrip(a)[1], a)


def test_bytes_roundtrip_including_empty():
    for data in (b"", b"\x00" * 3, bytes(range(256)) * 5000):
        header, got = roundtrip(data, chunk_bytes=1000)
        assert got == data and header.kind == pb.PAYLOAD_KIND_BYTES


def test_object_arrays_cannot_be_sent():
    with pytest.raises(wire.WireError, match="dtype"):
        list(wire.chunks(SID, "t", np.array([1, "x"], dtype=object)))


def header(**kw):
    base = dict(session_id=SID, tag="t", kind=pb.PAYLOAD_KIND_ARRAY, dtype="<u8", shape=[2],
                total_bytes=16)
    base.update(kw)
    return pb.Chunk(header=pb.PayloadHeader(**base))


@pytest.mark.parametrize("kw, message", [
    (dict(total_bytes=wire.MAX_PAYLOAD_BYTES + 8, shape=[(wire.MAX_PAYLOAD_BYTES + 8) // 8]),
     "limit"),
    (dict(shape=[3]), "does not make"),
    (dict(dtype="|O"), "disallowed dtype"),
    (dict(dtype=">f8"), "disallowed dtype"),
    (dict(kind=pb.PAYLOAD_KIND_UNSPECIFIED), "unknown kind"),
    (dict(session_id="x"), "session id"),
    (dict(tag="a b"), "tag"),
    (dict(tag="x" * 300), "tag"),
    (dict(shape=[1 << 40, 1 << 40], total_bytes=16), "size limit"),
])
def test_bad_headers_are_refused_before_any_data(kw, message):
    asm = wire.Assembler()
    with pytest.raises(wire.WireError, match=message):
        asm.add(header(**kw))


def test_stream_violations_are_refused():
    asm = wire.Assembler()
    with pytest.raises(wire.WireError, match="starts with data"):
        asm.add(pb.Chunk(data=b"x"))
    asm = wire.Assembler()
    asm.add(header())
    with pytest.raises(wire.WireError, match="second header"):
        asm.add(header())
    asm = wire.Assembler()
    asm.add(header())
    with pytest.raises(wire.WireError, match="more than"):
        asm.add(pb.Chunk(data=b"\x00" * 17))
    asm = wire.Assembler()
    asm.add(header())
    asm.add(pb.Chunk(data=b"\x00" * 8))
    with pytest.raises(wire.WireError, match="ended after 8 of 16"):
        asm.finish()
    with pytest.raises(wire.WireError, match="before its header"):
        wire.Assembler().finish()


def test_a_lower_limit_is_enforced():
    asm = wire.Assembler(max_bytes=10)
    with pytest.raises(wire.WireError, match="10-byte limit"):
        asm.add(header())


def test_grpc_options_set_both_message_limits():
    opts = dict(wire.grpc_options())
    assert opts["grpc.max_send_message_length"] == 4 << 20
    assert opts["grpc.max_receive_message_length"] == 4 << 20


# ------------------------------------------------------------------------ sessions


def test_session_delivers_exactly_once_and_refuses_replays_and_strangers():
    reg = SessionRegistry("me")
    s = reg.create(SID, {"me": "party", "a": "party"}, timeout=5)
    s.deliver("a", "t", b"1")
    with pytest.raises(SessionError) as e:
        s.deliver("a", "t", b"2")
    assert e.value.code == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(SessionError) as e:
        s.deliver("mallory", "t2", b"x")
    assert e.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert s.wait_message("a", "t") == b"1"


def test_wait_times_out_with_peer_failure_naming_the_sender():
    s = SessionRegistry("me").create(SID, {"me": "party", "slow": "party"}, timeout=0.2)
    t0 = time.monotonic()
    with pytest.raises(PeerFailure) as e:
        s.wait_message("slow", "t")
    assert e.value.peer == "slow" and "deadline" in str(e.value)
    assert 0.15 < time.monotonic() - t0 < 2


def test_abort_wakes_waiters_naming_the_failed_node():
    reg = SessionRegistry("me")
    s = reg.create(SID, {"me": "party", "a": "party", "b": "party"}, timeout=30)
    errors = []

    def wait():
        try:
            s.wait_message("a", "t")
        except PeerFailure as exc:
            errors.append(exc)

    th = threading.Thread(target=wait)
    th.start()
    time.sleep(0.05)
    assert reg.abort(SID, "b vanished", failed_node="b")
    th.join(2)
    assert errors and errors[0].peer == "b"
    assert reg.count() == 0
    with pytest.raises(SessionError) as e:
        reg.get(SID)
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION and "closed" in str(e.value)
    with pytest.raises(SessionError) as e:
        s.deliver("a", "t9", b"late")
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_registry_refuses_reused_ids_and_reports_unknown_ones():
    reg = SessionRegistry("me")
    reg.create(SID, {"me": "party"}, 5)
    with pytest.raises(SessionError) as e:
        reg.create(SID, {"me": "party"}, 5)
    assert e.value.code == grpc.StatusCode.ALREADY_EXISTS
    reg.free(SID)
    with pytest.raises(SessionError) as e:  # still refused after it was freed
        reg.create(SID, {"me": "party"}, 5)
    assert e.value.code == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(SessionError) as e:
        reg.get("fedcba9876543210")
    assert e.value.code == grpc.StatusCode.NOT_FOUND


def test_reaper_frees_expired_sessions():
    reg = SessionRegistry("me")
    s = reg.create(SID, {"me": "party", "a": "party"}, timeout=0.05, job=np.zeros(10))
    reg.create("keepkeepkeep", {"me": "party"}, timeout=60)
    time.sleep(0.1)
    assert reg.reap(grace=0.0) == [SID]
    assert reg.count() == 1 and s.status == Status.ABORTED and s.job is None
    reg.start_reaper(interval=0.05, grace=0.0)
    reg.create("shortshort", {"me": "party"}, timeout=0.05)
    deadline = time.monotonic() + 3
    while reg.count() > 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert reg.count() == 1
    reg.close()
    assert reg.count() == 0


# ------------------------------------------------------------------------ errors


@pytest.mark.parametrize("exc, code, node", [
    (PolicyError("refused"), grpc.StatusCode.PERMISSION_DENIED, "me"),
    (ColumnRefused("no column"), grpc.StatusCode.INVALID_ARGUMENT, "me"),
    (EncodingRangeError("too big"), grpc.StatusCode.INVALID_ARGUMENT, "me"),
    (InputError("bad"), grpc.StatusCode.INVALID_ARGUMENT, "me"),
    (PeerFailure("b", "b vanished"), grpc.StatusCode.ABORTED, "b"),
    (PeerFailure("b", "b was late", deadline=True), grpc.StatusCode.DEADLINE_EXCEEDED, "b"),
    (ProtocolError("odd"), grpc.StatusCode.ABORTED, "me"),
    (ProtocolError("b sent a short share", peer="b"), grpc.StatusCode.ABORTED, "b"),
    (SessionError("gone"), grpc.StatusCode.NOT_FOUND, None),
    (NodeBlamed("c", "c died", grpc.StatusCode.UNAVAILABLE), grpc.StatusCode.UNAVAILABLE, "c"),
    (TimeoutError("late"), grpc.StatusCode.DEADLINE_EXCEEDED, "me"),
    (KeyError("secret detail"), grpc.StatusCode.INTERNAL, "me"),
])
def test_status_mapping(exc, code, node):
    got_code, message, got_node = status_of(exc, "me")
    assert got_code == code and got_node == node
    if code == grpc.StatusCode.INTERNAL:
        assert "secret detail" not in message  # internals stay in the node's log


# ----------------------------------------------------------- real servers, mutual TLS


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    yield from party_nodes(tmp_path_factory.mktemp("pki"), "unit", ["n1", "n2", "n3"])


def test_transport_moves_a_multi_chunk_array_between_servers(pair):
    _fed, nodes = pair
    sid = "transport0001"
    members = {"n1": "party", "n2": "party"}
    s1 = nodes["n1"]["reg"].create(sid, members, 10)
    s2 = nodes["n2"]["reg"].create(sid, members, 10)
    t1 = GrpcTransport(s1, nodes["n1"]["peers"])
    t2 = GrpcTransport(s2, nodes["n2"]["peers"])
    big = np.arange(3 * 2**20 // 8 + 5, dtype=np.uint64)  # > 3 chunks
    t1.send("n2", "big", big)
    got = t2.recv_array("n1", "big", np.uint64, big.shape)
    assert np.array_equal(got, big)
    t2.send("n1", "back", b"seed-bytes")
    assert t1.recv_bytes("n2", "back") == b"seed-bytes"
    # a replay of the same (sender, tag) is refused by the receiver; the sender is at fault
    # (a ProtocolError of its own, blamed on itself), not the receiver (no PeerFailure)
    with pytest.raises(ProtocolError) as e:
        t1.send("n2", "big", big[:1])
    assert e.value.peer is None and "replay" in str(e.value)
    assert status_of(e.value, "n1")[2] == "n1"
    nodes["n1"]["reg"].free(sid)
    nodes["n2"]["reg"].free(sid)


def _call(stub, method: str, chunks):
    """``Deliver`` (a stream) or ``DeliverWhole`` (the same chunks in one message)."""
    if method == "Deliver":
        return stub.Deliver(iter(list(chunks)), timeout=5)
    return stub.DeliverWhole(pb.Chunks(chunks=list(chunks)), timeout=5)


@pytest.mark.parametrize("method", ["Deliver", "DeliverWhole"])
def test_deliver_refusals_carry_specific_status_codes(pair, method):
    _fed, nodes = pair
    stub = nodes["n1"]["peers"].node("n2")
    with pytest.raises(grpc.RpcError) as e:  # no such session
        _call(stub, method, wire.chunks("nosuchsession", "t", b"x"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    sid = "members00001" + method[-5:]
    nodes["n2"]["reg"].create(sid, {"n2": "party", "n3": "party"}, 10)
    with pytest.raises(grpc.RpcError) as e:  # n1 is not a member of that session
        _call(stub, method, wire.chunks(sid, "t", b"x"))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as e:  # malformed header
        _call(nodes["n3"]["peers"].node("n2"), method, [header(session_id=sid, shape=[3])])
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert from_rpc_error(e.value, "n2").code == "INVALID_ARGUMENT"
    with pytest.raises(grpc.RpcError) as e:  # data before the header
        _call(nodes["n3"]["peers"].node("n2"), method,
              [pb.Chunk(data=b"x"), *wire.chunks(sid, "t", b"x")])
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    ok = list(wire.chunks(sid, "t", b"seed-bytes-16..."))
    assert _call(nodes["n3"]["peers"].node("n2"), method, ok).bytes_received == 16
    with pytest.raises(grpc.RpcError) as e:  # the same (sender, tag) again: a replay
        _call(nodes["n3"]["peers"].node("n2"), method, ok)
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    got = nodes["n2"]["reg"].get(sid).wait_message("n3", "t")
    assert bytes(got) == b"seed-bytes-16..."
    nodes["n2"]["reg"].free(sid)


def test_a_small_payload_travels_as_one_deliver_whole_and_a_large_one_as_a_stream(pair):
    """Up to one chunk of payload: one ``DeliverWhole`` (protobuf's own encoding of the same
    chunks); beyond: a ``Deliver`` stream.  Both arrive intact."""
    small = np.arange(7, dtype=np.uint64)
    ref = pb.Chunks(chunks=list(wire.chunks("abcdefgh12", "t", small))).SerializeToString()
    assert wire.encoded_whole("abcdefgh12", "t", small) == ref
    _fed, nodes = pair
    sid = "pathchoice01"
    members = {"n1": "party", "n2": "party"}
    s1 = nodes["n1"]["reg"].create(sid, members, 10)
    s2 = nodes["n2"]["reg"].create(sid, members, 10)
    peers = nodes["n1"]["peers"]
    used: list[str] = []

    def recording(name, real):
        def method(to):
            used.append(name)
            return real(to)
        return method

    peers.deliver = recording("Deliver", peers.deliver)
    peers.deliver_whole = recording("DeliverWhole", peers.deliver_whole)
    try:
        t1 = GrpcTransport(s1, peers)
        at_limit = b"a" * wire.CHUNK_BYTES
        over = b"b" * (wire.CHUNK_BYTES + 1)
        for tag, payload in (("small", small), ("at-limit", at_limit), ("over", over)):
            t1.send("n2", tag, payload)
    finally:
        del peers.deliver, peers.deliver_whole
    assert used == ["DeliverWhole", "DeliverWhole", "Deliver"]
    assert np.array_equal(s2.wait_message("n1", "small"), small)
    assert bytes(s2.wait_message("n1", "at-limit")) == at_limit
    assert bytes(s2.wait_message("n1", "over")) == over
    nodes["n1"]["reg"].free(sid)
    nodes["n2"]["reg"].free(sid)


def test_a_protocol_runs_unchanged_over_grpc(pair):
    """smpc.stats roles (written against Transport) over real mTLS gRPC servers."""
    _fed, nodes = pair
    sid = "protocol0001"
    members = {"n1": "party", "n2": "party", "n3": "recipient"}
    sessions = {n: nodes[n]["reg"].create(sid, members, 20) for n in members}
    rng = np.random.default_rng(3)
    tables = {"n1": rng.normal(5, 2, (40, 2)), "n2": rng.normal(-1, 3, (25, 2))}
    spec = stats.StatSpec("cov", ("x", "y"))
    results = {}

    def party(n):
        stats.run_party(GrpcTransport(sessions[n], nodes[n]["peers"]), spec, tables[n],
                        parties=["n1", "n2"], recipient="n3", tag="s")

    threads = [threading.Thread(target=party, args=(n,)) for n in tables]
    for th in threads:
        th.start()
    results["r"] = stats.run_recipient_ss(GrpcTransport(sessions["n3"], nodes["n3"]["peers"]),
                                          spec, parties=["n1", "n2"], tag="s")
    for th in threads:
        th.join(10)
    pooled = np.vstack(list(tables.values()))
    # ss encoding bounds for 2 parties (tests.tolerances: 2 * 2^-25 per moment, propagated)
    assert_within(results["r"].value, np.cov(pooled.T, ddof=1),
                  Moments(pooled, Backend("ss", 2)).cov_tol)
    for n in members:
        nodes[n]["reg"].free(sid)


def test_a_send_to_a_peer_that_just_restarted_waits_out_the_reconnect_backoff(pair):
    """n1's channel to n3 failed while n3 was down; n3 restarts on its port; n1's next send
    does not fail on the channel's reconnect backoff (one retry after its ceiling)."""
    fed, nodes = pair
    entry = fed.node("n3")
    d = fed.ca_cert.parent
    sid = "restart00001"
    members = {"n1": "party", "n3": "party"}
    s1 = nodes["n1"]["reg"].create(sid, members, 30)
    s3 = nodes["n3"]["reg"].create(sid, members, 30)
    t1 = GrpcTransport(s1, nodes["n1"]["peers"])
    nodes["n3"]["server"].stop(0).wait()
    with pytest.raises(PeerFailure) as e:  # down: named, after its one retry
        t1.send("n3", "early", b"x")
    assert e.value.peer == "n3" and "unreachable" in str(e.value)
    svc = NodeService("n3", "party", fed, nodes["n3"]["reg"])
    nodes["n3"]["server"], _ = start_server(
        name="n3", federation=fed, tls=TLSFiles(d / "n3.pem", d / "n3.key", fed.ca_cert),
        host="127.0.0.1", port=entry.port, access=NODE_ACCESS,
        register=[lambda s: pb_grpc.add_NodeServicer_to_server(svc, s)])
    t0 = time.monotonic()
    t1.send("n3", "late", b"y")
    assert s3.wait_message("n1", "late") == b"y"
    assert time.monotonic() - t0 < wire.RECONNECT_BACKOFF_MS[1] / 1000 + 1.0
    nodes["n1"]["reg"].free(sid)
    nodes["n3"]["reg"].free(sid)
