"""Every RPC of every service, fuzzed over real mutual-TLS servers with a *valid* caller.

Each call presents the certificate of the role the method serves (the coordinator for
``Party.*`` and ``Dealer.*``, a session peer for ``Node.Deliver``, the analyst for
``Coordinator.*`` and ``Node.Health``), so the request passes the access guard and
reaches the handler.  Inputs (hypothesis, plus explicit edge cases):

* random bytes as the serialized request (generic calls with an identity serializer);
* valid protobufs with absurd fields: garbage and 1 MB strings, NaN / infinite / negative
  / huge numbers, unknown enum values, spec JSON with wrong types, unknown statistics,
  unknown columns, 10^9 bins, deeply nested filters and JSON, empty and duplicate member
  lists, unknown parties;
* payload streams that break the wire rules: no header, data before the header, two
  headers, a header whose ``total_bytes`` lies, dtypes that are not plain numbers,
  shapes whose size overflows, unknown kinds, garbage session ids and tags -- both for
  unknown sessions and for a session that is really open on the receiving party;
* messages over the 4 MiB gRPC limit.

The contract, asserted for every call: a specific status code (never UNKNOWN or
INTERNAL) with a non-empty one-sentence detail, an answer within the 10 s call deadline.
At the end of the module: every node process is alive and answers Health, holds no
session, grew its resident memory by less than 150 MB, and the federation computes a
mean and a histogram that match numpy.

The bugs these tests found (INTERNAL on undecodable bytes and malformed specs, session
ids echoed into oversized errors, worker starvation by idle streams) are fixed; the
tests at the bottom pin each fix.
"""

from __future__ import annotations

import contextlib
import json
import math
import secrets
from collections import Counter

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from parties._pb import smpc_pb2 as pb
from parties.analyst.client import Client
from parties.federation import local as federation
from smpc import ckks
from smpc.linear import LinearModel
from smpc.stats import STATISTICS, StatSpec
from tests.integration.signing import sign_raw_payload, signed_prediction, signed_statistic
from tests.tolerances import Backend, Moments, assert_within

from .conftest_hardening import (
    RawCaller,
    active_sessions,
    assert_specific,
    hardened_federation,  # noqa: F401  (fixture)
    node_pid,
    rss_kb,
    wait_for,
)

ORGS = ("org-a", "org-b")
LAB = "lab"
MODEL = LinearModel("linear", ("x", "y"), (0.5, -0.25), 1.0)
RSS_GROWTH_LIMIT_KB = 150 * 1024

COUNTS: Counter[str] = Counter()  # fuzz inputs sent, per method (for the report)
STATUSES: Counter[str] = Counter()  # status codes of the checked calls

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
FUZZ_SMALL = settings(FUZZ, max_examples=50)


# ------------------------------------------------------------------------------ fixtures


FFED_DIR: list = []  # the fuzzed federation's directory (its analyst signs requests)


@pytest.fixture(scope="module")
def ffed(hardened_federation):  # noqa: F811
    rng = np.random.default_rng(77)
    parties = {o: {"x": rng.normal(10, 3, 40), "y": rng.normal(-2, 1, 40),
                   "sex": np.where(rng.random(40) < 0.5, "F", "M")} for o in ORGS}
    parties[LAB] = {"member": np.arange(1.0, 21.0), "premium": rng.normal(900, 100, 20)}
    f = hardened_federation("fuzzrpc", parties, models={LAB: [MODEL]}, separate_dealer=True,
                            min_cohort_size=5)
    FFED_DIR[:] = [f.directory]  # for the module's request builders
    pids = {n: node_pid(f.directory, n) for n in f.nodes()}
    f.baseline_rss = {n: rss_kb(p) for n, p in pids.items()}  # type: ignore[attr-defined]
    f.pids = pids  # type: ignore[attr-defined]
    yield f
    federation.down(f.directory)  # free the machine for the next module
    print("\nfuzz inputs per method:", dict(sorted(COUNTS.items())),
          "total", sum(COUNTS.values()), "\nstatus codes:", dict(sorted(STATUSES.items())))


@pytest.fixture(scope="module")
def callers(ffed):
    d = ffed.directory
    cs = {
        "party": RawCaller.as_node(d, "org-a", "coordinator"),      # Party.* as the coordinator
        "peer": RawCaller.as_node(d, "org-a", "org-b"),              # Node.Deliver from a peer
        "dealer": RawCaller.as_node(d, "dealer", "coordinator"),     # Dealer.*
        "coord": RawCaller.as_analyst(d, "coordinator"),             # Coordinator.*
        "health": RawCaller.as_analyst(d, "org-a"),                  # Node.Health
    }
    yield cs
    for c in cs.values():
        c.close()


def call(caller: RawCaller, method: str, data, kind: str = "unary"):
    COUNTS[method.rsplit("/", 2)[-2].split(".")[-1] + "." + method.rsplit("/", 1)[-1]] += 1
    if kind == "unary":
        out = caller.unary(method, data)
    elif kind == "stream_unary":
        out = caller.stream_unary(method, data)
    else:
        out = caller.stream_stream(method, data)
    assert_specific(out, (method, data if len(repr(data)) < 400 else repr(data)[:400] + "..."))
    STATUSES[out.code.name] += 1
    return out


def new_sid() -> str:
    return secrets.token_hex(16)


# ------------------------------------------------------------------------------ strategies

COLUMN_CHOICES = ["x", "y", "sex", "member", "premium", "nope", "", "x" * 300]

name_st = st.one_of(
    st.sampled_from(["", "org-a", "org-b", "lab", "coordinator", "dealer", "analyst",
                     "nobody", "ORG-A", "org-a ", "../etc", "a" * 300]),
    st.text(max_size=20))
session_st = st.one_of(
    st.sampled_from(["", "x", "short", "a" * 65, "bad id!", "../../etc/passwd", "0" * 64,
                     "x" * 100_000]),
    st.text(max_size=70))
weird_float = st.one_of(
    st.sampled_from([0.0, -1.0, math.nan, math.inf, -math.inf, 1e308, -1e-300, 5e-324]),
    st.floats(allow_nan=True, allow_infinity=True))
weird_json = st.sampled_from([None, True, False, "", "x" * 1000, [], {}, [1, [2]], {"": None},
                              -1, 10**30, 1.5, math.nan, math.inf])
kind_st = st.one_of(st.sampled_from(list(pb.SessionKind.values())),
                    st.integers(0, 1000), st.just(2**31 - 1))
members_st = st.lists(st.builds(
    pb.Member, name=name_st,
    role=st.sampled_from(["party", "recipient", "aggregator", "keyholder", "data-owner",
                          "model-owner", "dealer", "", "king"])), max_size=6)
where_st = st.one_of(
    st.sampled_from(["", "x > 1", "x >", "(((((", "not " * 5000 + "x > 1",
                     "(" * 5000 + "x > 1" + ")" * 5000, "x > 1; DROP TABLE t",
                     "__import__('os')", "sex == 'F'", "nope > 3", "x > 1e999", "x" * 2000]),
    st.text(max_size=30))
_spec_docs = st.fixed_dictionaries(
    {"statistic": st.one_of(st.sampled_from([*STATISTICS, "median", ""]), weird_json),
     "columns": st.one_of(st.lists(st.sampled_from(COLUMN_CHOICES), max_size=4), weird_json)},
    optional={
        "backend": st.one_of(st.sampled_from(["ss", "ckks", "he", ""]), weird_json),
        "edges": st.one_of(st.lists(weird_float, max_size=5), weird_json,
                           st.just(list(range(70_000)))),
        "probabilities": st.one_of(st.lists(weird_float, max_size=4), weird_json),
        "bounds": st.one_of(st.lists(weird_float, max_size=3), weird_json),
        "resolution": st.one_of(st.integers(-5, 10**9), weird_json),
        "ddof": st.one_of(st.integers(-2, 3), weird_json),
        "frac_bits": st.one_of(st.integers(-5, 99), weird_json),
        "target": st.one_of(st.sampled_from(COLUMN_CHOICES), weird_json),
        "dp": st.one_of(weird_json, st.fixed_dictionaries(
            {}, optional={"epsilon": weird_float, "delta": weird_float, "rho": weird_float,
                          "bounds": st.one_of(weird_json, st.dictionaries(
                              st.sampled_from(COLUMN_CHOICES), st.lists(weird_float,
                                                                        max_size=3),
                              max_size=2)),
                          "min_honest": st.one_of(st.integers(-2, 10), weird_json)})),
        "evil": weird_json,
    })
spec_json_st = st.one_of(
    _spec_docs.map(json.dumps),
    st.sampled_from(["", "{", "null", "[]", "[" * 100_000, '{"a":' * 5000,
                     '"' + "a" * 1_000_000 + '"',
                     json.dumps(StatSpec("mean", ("x",)).to_json())]),
    st.text(max_size=50))

#: (full method, caller key in ``callers``, call kind, request message class)
METHODS = [
    ("/smpc.v1.Node/Health", "health", "unary", pb.HealthRequest),
    ("/smpc.v1.Node/Deliver", "peer", "stream_unary", pb.Chunk),
    ("/smpc.v1.Node/DeliverWhole", "peer", "unary", pb.Chunks),
    ("/smpc.v1.Party/Describe", "party", "unary", pb.DescribeRequest),
    ("/smpc.v1.Party/Prepare", "party", "unary", pb.PrepareRequest),
    ("/smpc.v1.Party/Run", "party", "unary", pb.SessionRef),
    ("/smpc.v1.Party/Await", "party", "unary", pb.SessionRef),
    ("/smpc.v1.Party/Abort", "party", "unary", pb.AbortRequest),
    ("/smpc.v1.Dealer/Deal", "dealer", "unary", pb.DealRequest),
    ("/smpc.v1.Dealer/Abort", "dealer", "unary", pb.AbortRequest),
    ("/smpc.v1.Coordinator/Compute", "coord", "stream_stream", pb.ComputeUp),
    ("/smpc.v1.Coordinator/Predict", "coord", "unary", pb.PredictRequest),
    ("/smpc.v1.Coordinator/Status", "coord", "unary", pb.StatusRequest),
    ("/smpc.v1.Coordinator/Describe", "coord", "unary", pb.FederationRequest),
]
METHOD_IDS = [m[0].split(".v1.")[1] for m in METHODS]


def decodes(cls, data: bytes) -> bool:
    try:
        cls.FromString(data)
    except Exception:
        return False
    return True


def raw_call(callers, method_row, data: bytes):
    method, who, kind, _cls = method_row
    payload = [data] if kind != "unary" else data
    return call(callers[who], method, payload, kind)


@pytest.mark.parametrize("method_row", METHODS, ids=METHOD_IDS)
def test_random_bytes_that_decode(ffed, callers, method_row):
    """Random bytes that happen to parse as the request message (unknown fields, garbage
    strings, any enum value) get a specific status."""
    cls = method_row[3]

    @FUZZ_SMALL
    @given(data=st.binary(max_size=512))
    @example(data=b"")
    @example(data=b"\x0a\x00")                       # field 1 empty
    @example(data=b"\xf8\xff\xff\xff\x0f\x01")       # a huge unknown field number
    @example(data=b"\x0a\x40" + b"\xff" * 64)        # field 1: 64 bytes of invalid UTF-8?
    def run(data):
        if not decodes(cls, data):
            return
        out = raw_call(callers, method_row, data)
        if method_row[0].endswith("/Prepare") and out.ok:  # never leave a session behind
            sid = cls.FromString(data).session_id
            callers["party"].unary("/smpc.v1.Party/Abort",
                                   pb.AbortRequest(session_id=sid).SerializeToString())

    run()


UNDECODABLE = [b"\xff", b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"\x0a\x05abc",
               b"\x08", b"\x07"]


@pytest.mark.parametrize("method_row", METHODS, ids=METHOD_IDS)
def test_undecodable_bytes_are_invalid_argument(ffed, callers, method_row):
    for data in UNDECODABLE:
        assert not decodes(method_row[3], data)
        out = raw_call_unchecked(callers, method_row, data)
        assert out.code == grpc.StatusCode.INVALID_ARGUMENT, (data, str(out))


def test_undecodable_bytes_from_a_caller_not_allowed_are_permission_denied(ffed):
    with RawCaller.as_analyst(ffed.directory, "org-a") as c:
        out = c.unary("/smpc.v1.Party/Prepare", b"\xff")
        COUNTS["undecodable"] += 1
        ok = c.unary("/smpc.v1.Party/Prepare", b"")   # decodable: refused by the guard
    assert ok.code == grpc.StatusCode.PERMISSION_DENIED, str(ok)
    assert out.code == grpc.StatusCode.PERMISSION_DENIED, str(out)


def raw_call_unchecked(callers, method_row, data: bytes):
    method, who, kind, _cls = method_row
    c = callers[who]
    COUNTS["undecodable"] += 1
    if kind == "unary":
        return c.unary(method, data)
    if kind == "stream_unary":
        return c.stream_unary(method, [data])
    return c.stream_stream(method, [data])


def test_undecodable_bytes_do_not_hurt(ffed, callers):
    """Whatever status undecodable bytes get today, they never hang a call or kill a node."""
    for row in METHODS:
        for data in UNDECODABLE:
            out = raw_call_unchecked(callers, row, data)
            assert out.code != grpc.StatusCode.OK and out.code != grpc.StatusCode.UNKNOWN
            assert out.seconds < 5, (row[0], str(out))
    for n in ffed.nodes():
        assert active_sessions(ffed.directory, [n])[n] == 0


@pytest.mark.parametrize("method_row", METHODS, ids=METHOD_IDS)
def test_oversized_messages_are_resource_exhausted(ffed, callers, method_row):
    """A message over the 4 MiB gRPC limit is refused before any handler sees it."""
    big = b"\x0a" + _varint(5 << 20) + b"a" * (5 << 20)  # field 1, 5 MiB
    out = raw_call(callers, method_row, big)
    assert out.code == grpc.StatusCode.RESOURCE_EXHAUSTED, str(out)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


# ---------------------------------------------------------------------------- Party.*


@FUZZ
@given(r=st.builds(
    pb.PrepareRequest, session_id=st.one_of(session_st, st.builds(new_sid)),
    timeout_seconds=weird_float, kind=kind_st, spec_json=spec_json_st, where=where_st,
    members=st.one_of(members_st, st.just([pb.Member(name="org-a", role="party"),
                                           pb.Member(name="org-b", role="party"),
                                           pb.Member(name="coordinator", role="recipient")])),
    analyst=name_st, columns=st.lists(st.sampled_from(COLUMN_CHOICES), max_size=3),
    model=st.sampled_from(["", "cost", "nope", "../cost"]),
    tag=st.one_of(st.sampled_from(["", "stat", "t" * 300, "a/b", "bad tag"]),
                  st.text(max_size=10))))
def test_party_prepare(ffed, callers, r):
    out = call(callers["party"], "/smpc.v1.Party/Prepare", r.SerializeToString())
    if out.ok:  # a request that happens to be valid: free its session again
        a = call(callers["party"], "/smpc.v1.Party/Abort",
                 pb.AbortRequest(session_id=r.session_id).SerializeToString())
        assert a.ok and pb.AbortResponse.FromString(a.responses[0]).was_active


def _valid_prepare(sid: str, **over) -> pb.PrepareRequest:
    """A Prepare the party accepts (signed afresh by the analyst), with ``over`` replaced."""
    spec = StatSpec("mean", ("x",))
    base = dict(session_id=sid, timeout_seconds=30.0, kind=pb.SESSION_KIND_STAT,
                spec_json=json.dumps(spec.to_json()), analyst="analyst",
                members=[pb.Member(name="org-a", role="party"),
                         pb.Member(name="org-b", role="party"),
                         pb.Member(name="coordinator", role="recipient")], tag="stat",
                signed_request=signed_statistic(FFED_DIR[0], spec, parties=("org-a", "org-b")))
    base.update(over)
    return pb.PrepareRequest(**base)


@pytest.mark.parametrize("over", [
    {"timeout_seconds": math.nan}, {"timeout_seconds": math.inf}, {"timeout_seconds": -1.0},
    {"timeout_seconds": 1e9}, {"kind": 99}, {"kind": pb.SESSION_KIND_DEAL},
    {"spec_json": json.dumps({"statistic": "mean", "columns": ["nope"]})},
    {"spec_json": json.dumps({"statistic": "mean", "columns": ["sex"]})},
    {"spec_json": json.dumps({"statistic": "histogram", "columns": ["x"], "edges": [1, 1]})},
    {"spec_json": json.dumps({"statistic": "histogram", "columns": ["x"],
                              "edges": [0.0, math.nan]})},
    {"spec_json": json.dumps({"statistic": "quantiles", "columns": ["x"], "bounds": [0, 1],
                              "probabilities": [math.inf]})},
    {"spec_json": json.dumps({"statistic": "mean", "columns": ["x"], "columns2": 1})},
    {"spec_json": json.dumps({"statistic": "mean", "columns": 5})},
    {"spec_json": json.dumps({"statistic": "mean", "columns": [["x"]]})},
    {"spec_json": json.dumps({"statistic": "mean", "columns": []})},
    {"spec_json": json.dumps({"statistic": "mean", "columns": ["x"] * 300})},
    {"where": "(" * 200 + "x > 1" + ")" * 200}, {"where": "x" * 1_000_000},
    {"where": "sex > 3"}, {"where": "x > 1e9"},      # cohort of 0 rows: policy refusal
    {"members": []}, {"members": [pb.Member(name="org-a", role="party")] * 2},
    {"members": [pb.Member(name="org-a", role="party"), pb.Member(name="eve", role="party")]},
    {"members": [pb.Member(name="org-a", role="party"), pb.Member(name="org-b", role="party")]},
    {"analyst": "mallory"}, {"analyst": "a" * 1_000_000},
    {"kind": pb.SESSION_KIND_PREDICT_DATA, "columns": []},
    {"kind": pb.SESSION_KIND_PREDICT_DATA, "columns": ["x", "x"]},
    {"kind": pb.SESSION_KIND_PREDICT_MODEL},
])
def test_party_prepare_edge_cases(ffed, callers, over):
    sid = new_sid()
    out = call(callers["party"], "/smpc.v1.Party/Prepare",
               _valid_prepare(sid, **over).SerializeToString())
    assert not out.ok, over
    assert out.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED), out


def test_party_session_lifecycle_refusals(ffed, callers):
    """Run / Await / Abort on garbage, unknown, reused and closed session ids."""
    c = callers["party"]
    for sid in ["", "x", "a" * 65, "bad id", "\u2603" * 20, "a" * 1000, new_sid()]:
        for m in ("Run", "Await"):
            out = call(c, f"/smpc.v1.Party/{m}", pb.SessionRef(session_id=sid)
                       .SerializeToString())
            assert out.code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT), out
        out = call(c, "/smpc.v1.Party/Abort", pb.AbortRequest(
            session_id=sid * 1000, reason="r" * 1_000_000, failed_node="n" * 1000,
        ).SerializeToString())
        assert out.ok and not pb.AbortResponse.FromString(out.responses[0]).was_active
    sid = new_sid()
    assert call(c, "/smpc.v1.Party/Prepare", _valid_prepare(sid).SerializeToString()).ok
    again = call(c, "/smpc.v1.Party/Prepare", _valid_prepare(sid).SerializeToString())
    assert again.code == grpc.StatusCode.ALREADY_EXISTS, again
    assert call(c, "/smpc.v1.Party/Abort", pb.AbortRequest(session_id=sid)
                .SerializeToString()).ok
    for m in ("Run", "Await"):
        out = call(c, f"/smpc.v1.Party/{m}", pb.SessionRef(session_id=sid).SerializeToString())
        assert out.code == grpc.StatusCode.FAILED_PRECONDITION, out
    out = call(c, "/smpc.v1.Party/Prepare", _valid_prepare(sid).SerializeToString())
    assert out.code == grpc.StatusCode.ALREADY_EXISTS, out


@FUZZ_SMALL
@given(analyst=st.one_of(name_st, st.just("a" * 1_000_000)))
def test_party_describe(ffed, callers, analyst):
    out = call(callers["party"], "/smpc.v1.Party/Describe",
               pb.DescribeRequest(analyst=analyst).SerializeToString())
    if analyst == "analyst":
        assert out.ok and set(pb.DescribeResponse.FromString(out.responses[0]).columns) == {
            "x", "y", "sex"}
    else:
        assert out.code == grpc.StatusCode.PERMISSION_DENIED, out


# ---------------------------------------------------------------------------- Dealer.*


@FUZZ
@given(r=st.builds(
    pb.DealRequest, session_id=st.one_of(session_st, st.builds(new_sid)),
    timeout_seconds=weird_float,
    spec_json=st.one_of(spec_json_st, st.builds(lambda d: json.dumps(d), st.fixed_dictionaries(
        {"kind": st.sampled_from(["linear", "logistic", "quadratic"]),
         "n_samples": st.one_of(st.integers(-5, 10**9), weird_json),
         "n_features": st.one_of(st.integers(-5, 10**6), weird_json)},
        optional={"backend": st.sampled_from(["ss", "ckks", "x"]),
                  "feature_bound": weird_float, "frac_bits": st.integers(0, 30),
                  "flood_bits": st.integers(-1, 40)}))),
    members=st.one_of(members_st, st.just([pb.Member(name="dealer", role="dealer"),
                                           pb.Member(name="org-a", role="data-owner"),
                                           pb.Member(name="lab", role="model-owner")])),
    tag=st.sampled_from(["", "inf", "bad tag", "t" * 300])))
def test_dealer_deal(ffed, callers, r):
    out = call(callers["dealer"], "/smpc.v1.Dealer/Deal", r.SerializeToString())
    assert not out.ok  # no owner holds such a session: dealing cannot complete


def test_dealer_abort(ffed, callers):
    for sid in ["", "garbage id", "a" * 1_000_000, new_sid()]:
        out = call(callers["dealer"], "/smpc.v1.Dealer/Abort",
                   pb.AbortRequest(session_id=sid, reason="\x00" * 1000).SerializeToString())
        assert out.ok and not pb.AbortResponse.FromString(out.responses[0]).was_active


# ------------------------------------------------------------------------- Node.Deliver


def _header(**kw) -> pb.Chunk:
    return pb.Chunk(header=pb.PayloadHeader(**kw))


def _data(b: bytes) -> pb.Chunk:
    return pb.Chunk(data=b)


header_st = st.builds(
    pb.PayloadHeader,
    session_id=st.one_of(session_st, st.just("OPEN")),   # OPEN: replaced by a live session id
    tag=st.one_of(st.sampled_from(["t", "stat/x", "bad tag", "t" * 300, ""]), st.text(max_size=8)),
    kind=st.one_of(st.integers(0, 3), st.just(2**31 - 1)),
    dtype=st.one_of(st.sampled_from(["<u8", "<f8", "|b1", "O", "<U8", ">f8", "V8", "", "<f16",
                                     "garbage" * 10]), st.text(max_size=4)),
    shape=st.lists(st.one_of(st.integers(0, 8), st.integers(0, 2**64 - 1)), max_size=10),
    total_bytes=st.one_of(st.integers(0, 64), st.integers(0, 2**64 - 1), st.just(1 << 30),
                          st.just((1 << 30) + 1)))
stream_st = st.lists(st.one_of(header_st.map(lambda h: pb.Chunk(header=h)),
                               st.binary(max_size=256).map(_data), st.just(pb.Chunk())),
                     max_size=5)


@pytest.fixture(scope="module")
def open_session(ffed, callers):
    """A stat session really prepared on org-a (members org-a, org-b, coordinator)."""
    sid = new_sid()
    out = call(callers["party"], "/smpc.v1.Party/Prepare",
               _valid_prepare(sid, timeout_seconds=600.0).SerializeToString())
    assert out.ok, out
    yield sid
    call(callers["party"], "/smpc.v1.Party/Abort",
         pb.AbortRequest(session_id=sid).SerializeToString())


def _deliver(caller, method: str, chunks: list[pb.Chunk]):
    """The chunks as a ``Deliver`` stream, or as one ``DeliverWhole`` message."""
    if method == "Deliver":
        return call(caller, "/smpc.v1.Node/Deliver", [c.SerializeToString() for c in chunks],
                    "stream_unary")
    return call(caller, "/smpc.v1.Node/DeliverWhole",
                pb.Chunks(chunks=chunks).SerializeToString())


@FUZZ
@given(chunks=stream_st, whole=st.booleans())
def test_node_deliver_streams(ffed, callers, open_session, chunks, whole):
    for c in chunks:
        if c.WhichOneof("body") == "header" and c.header.session_id == "OPEN":
            c.header.session_id = open_session
    _deliver(callers["peer"], "DeliverWhole" if whole else "Deliver", chunks)


@pytest.mark.parametrize("case", [
    "no-chunks", "data-only", "data-before-header", "two-headers", "more-than-announced",
    "less-than-announced", "shape-mismatch", "object-dtype", "overflowing-shape",
    "over-1GiB", "unknown-kind", "bytes-with-shape", "garbage-session", "unknown-session",
    "bad-tag", "empty-chunk", "announce-1GiB-send-little", "replay",
])
@pytest.mark.parametrize("method", ["Deliver", "DeliverWhole"])
def test_node_deliver_wire_rules(ffed, callers, open_session, case, method):
    sid = open_session
    tag = f"fz/{method}/{case}"
    arr = dict(session_id=sid, tag=tag, kind=pb.PAYLOAD_KIND_ARRAY, dtype="<u8", shape=[2],
               total_bytes=16)
    byt = dict(session_id=sid, tag=tag, kind=pb.PAYLOAD_KIND_BYTES)
    streams = {
        "no-chunks": [],
        "data-only": [_data(b"abc")],
        "data-before-header": [_data(b"a" * 16), _header(**arr)],
        "two-headers": [_header(**arr), _header(**arr), _data(b"a" * 16)],
        "more-than-announced": [_header(**arr), _data(b"a" * 17)],
        "less-than-announced": [_header(**arr), _data(b"a" * 15)],
        "shape-mismatch": [_header(**{**arr, "shape": [3]}), _data(b"a" * 16)],
        "object-dtype": [_header(**{**arr, "dtype": "|O"}), _data(b"a" * 16)],
        "overflowing-shape": [_header(**{**arr, "shape": [2**63, 2**63, 4], "total_bytes": 0})],
        "over-1GiB": [_header(**{**byt, "total_bytes": (1 << 30) + 1})],
        "unknown-kind": [_header(**{**arr, "kind": 7}), _data(b"a" * 16)],
        "bytes-with-shape": [_header(**{**byt, "shape": [1], "total_bytes": 1}), _data(b"a")],
        "garbage-session": [_header(**{**byt, "session_id": "../etc", "total_bytes": 1}),
                            _data(b"a")],
        "unknown-session": [_header(**{**byt, "session_id": new_sid(), "total_bytes": 1}),
                            _data(b"a")],
        "bad-tag": [_header(**{**byt, "tag": "bad tag\n", "total_bytes": 1}), _data(b"a")],
        "empty-chunk": [_header(**{**byt, "total_bytes": 1}), pb.Chunk()],
        "announce-1GiB-send-little": [_header(**{**byt, "total_bytes": 1 << 30}),
                                      *[_data(b"z" * (1 << 20))] * 3],
        "replay": [_header(**{**byt, "total_bytes": 1}), _data(b"a")],
    }
    out = _deliver(callers["peer"], method, streams[case])
    if case == "replay":
        assert out.ok, out
        out = _deliver(callers["peer"], method, streams[case])
        assert out.code == grpc.StatusCode.ALREADY_EXISTS, out
    elif case == "unknown-session":
        assert out.code == grpc.StatusCode.NOT_FOUND, out
    else:
        assert out.code == grpc.StatusCode.INVALID_ARGUMENT, out


@pytest.mark.parametrize("method", ["Deliver", "DeliverWhole"])
def test_node_deliver_from_a_non_member(ffed, callers, open_session, method):
    """The dealer is a federation node but not a member of the open session."""
    with RawCaller.as_node(ffed.directory, "org-a", "dealer") as c:
        out = _deliver(c, method, [
            _header(session_id=open_session, tag="x", kind=pb.PAYLOAD_KIND_BYTES, total_bytes=1),
            _data(b"a")])
    assert out.code == grpc.StatusCode.PERMISSION_DENIED, out


@FUZZ_SMALL
@given(data=st.binary(max_size=64))
def test_node_health(ffed, callers, data):
    if not decodes(pb.HealthRequest, data):
        return
    out = call(callers["health"], "/smpc.v1.Node/Health", data)
    assert out.ok and pb.HealthResponse.FromString(out.responses[0]).name == "org-a"


# ------------------------------------------------------------------------- Coordinator.*


@FUZZ
@given(req=st.builds(
    pb.StatRequest, spec_json=spec_json_st, where=where_st,
    parties=st.one_of(st.lists(name_st, max_size=4), st.just(list(ORGS)),
                      st.just(["org-a", "org-a"]), st.just(["org-a"])),
    timeout_seconds=weird_float),
    tail=st.lists(st.one_of(st.builds(lambda: pb.ComputeUp(request=pb.StatRequest())),
                            stream_st.map(lambda cs: [pb.ComputeUp(chunk=c) for c in cs])
                            .map(lambda ups: ups[0] if ups else pb.ComputeUp())),
                  max_size=3),
    first_chunk=st.booleans())
def test_coordinator_compute(ffed, callers, req, tail, first_chunk):
    ups = [pb.ComputeUp(request=req), *tail]
    if first_chunk:
        ups.insert(0, pb.ComputeUp(chunk=_header(session_id=new_sid(), tag="context")))
    for u in ups:  # timeouts small enough that a valid request ends within the call deadline
        if u.WhichOneof("body") == "request" and not 0 < u.request.timeout_seconds < 6:
            u.request.timeout_seconds = 6.0
    call(callers["coord"], "/smpc.v1.Coordinator/Compute",
         [u.SerializeToString() for u in ups], "stream_stream")


def test_coordinator_compute_ckks_with_garbage_contexts(ffed, callers):
    """The ckks stream with a context that is not a public CKKS context of a preset."""
    spec = StatSpec("mean", ("x",), backend="ckks")
    holder = ckks.KeyHolder("aggregate")
    contexts = [b"", b"\x00" * 100, secrets.token_bytes(4096),
                holder.context.serialize(save_secret_key=True)]
    for ctx in contexts:
        for signed_ctx in (ctx, holder.public_context()):  # signed, or another key signed
            out = _interactive_compute(ffed, spec, lambda sid, ctx=ctx: [
                pb.ComputeUp(chunk=c) for c in _chunks(sid, "context", ctx)], signed_ctx)
            assert out.code == grpc.StatusCode.INVALID_ARGUMENT, (len(ctx), str(out))
    # a context payload naming another session or tag
    out = _interactive_compute(ffed, spec, lambda sid: [
        pb.ComputeUp(chunk=c) for c in _chunks(new_sid(), "context", holder.public_context())],
        holder.public_context())
    assert out.code == grpc.StatusCode.INVALID_ARGUMENT, str(out)
    out = _interactive_compute(ffed, spec, lambda sid: [
        pb.ComputeUp(chunk=c) for c in _chunks(sid, "not-context", holder.public_context())],
        holder.public_context())
    assert out.code == grpc.StatusCode.INVALID_ARGUMENT, str(out)
    assert wait_for(lambda: all(v == 0 for v in active_sessions(
        ffed.directory, ["coordinator", "org-b"]).values()), 15)


def _chunks(sid: str, tag: str, payload: bytes):
    from parties.transport import wire

    return list(wire.chunks(sid, tag, payload)) if payload else [pb.Chunk(
        header=pb.PayloadHeader(session_id=sid, tag=tag, kind=pb.PAYLOAD_KIND_BYTES))]


def _interactive_compute(ffed, spec: StatSpec, after_started, signed_context: bytes = b""):
    """A Compute stream that sends ``after_started(session_id)`` once the session starts;
    the request is signed with the hash of ``signed_context``."""
    import queue
    import time

    COUNTS["Coordinator.Compute"] += 1
    lay = ffed.layout
    up: queue.Queue = queue.Queue()
    up.put(pb.ComputeUp(request=pb.StatRequest(
        spec_json=json.dumps(spec.to_json()), parties=list(ORGS), timeout_seconds=8,
        signed_request=signed_statistic(ffed.directory, spec, parties=ORGS,
                                        context=signed_context))))

    def gen():
        while (item := up.get(timeout=15)) is not None:
            yield item

    with RawCaller(ffed.directory, "coordinator", lay.analyst_cert, lay.analyst_key) as c:
        stub = c.channel.stream_stream("/smpc.v1.Coordinator/Compute",
                                       request_serializer=pb.ComputeUp.SerializeToString,
                                       response_deserializer=pb.ComputeDown.FromString)
        t0 = time.monotonic()
        try:
            for msg in stub(gen(), timeout=10):
                if msg.WhichOneof("body") == "started":
                    for u in after_started(msg.started.session_id):
                        up.put(u)
                    up.put(None)
        except grpc.RpcError as err:
            from .conftest_hardening import Outcome

            out = Outcome(err.code(), err.details() or "", time.monotonic() - t0)
            assert_specific(out, "interactive compute")
            return out
        finally:
            up.put(None)
    raise AssertionError("a ckks Compute with a bad context succeeded")


@FUZZ
@given(r=st.builds(
    pb.PredictRequest, data_owner=st.one_of(name_st, st.just("org-a")),
    model_owner=st.one_of(name_st, st.just("lab")),
    model=st.sampled_from(["", "cost", "risk", "../cost", "c" * 1000]), where=where_st,
    backend=st.one_of(st.sampled_from(["ss", "ckks", "", "plain"]), st.text(max_size=4)),
    output=st.sampled_from(["prediction", "logit", "encrypted-sigmoid", "", "probability"]),
    feature_bound=weird_float, frac_bits=st.integers(0, 30),
    ckks_preset=st.sampled_from(["", "aggregate", "long", "sigmoid", "nope"]),
    timeout_seconds=st.one_of(weird_float, st.just(6.0))))
def test_coordinator_predict(ffed, callers, r):
    # what the analyst can sign (a NaN cannot be): the coordinator's checks behind it
    with contextlib.suppress(ValueError):
        r.signed_request = signed_prediction(
            ffed.directory, data_owner=r.data_owner, model_owner=r.model_owner, model=r.model,
            where=r.where, backend=r.backend, output=r.output,
            feature_bound=r.feature_bound, frac_bits=r.frac_bits, ckks_preset=r.ckks_preset)
    call(callers["coord"], "/smpc.v1.Coordinator/Predict", r.SerializeToString())


def test_coordinator_status_and_describe(ffed, callers):
    for m, cls in (("Status", pb.StatusResponse), ("Describe", pb.FederationResponse)):
        out = call(callers["coord"], f"/smpc.v1.Coordinator/{m}", b"\x12\x03abc" * 10)
        assert out.ok
        cls.FromString(out.responses[0])


# ------------------------------------------------------------- regressions of fixed bugs

MALFORMED_SPECS = {
    "frac_bits-out-of-range": {"statistic": "mean", "columns": ["x"], "frac_bits": 99},
    "edges-not-numbers": {"statistic": "histogram", "columns": ["x"], "edges": ["a", "b"]},
    "bounds-three-values": {"statistic": "quantiles", "columns": ["x"], "bounds": [0, 1, 2],
                            "probabilities": [0.5]},
    "edges-empty-string-keys": {"statistic": "count", "columns": ["x"], "edges": {"": None}},
}


@pytest.mark.parametrize("case", sorted(MALFORMED_SPECS))
def test_compute_refuses_malformed_spec_values(ffed, callers, case):
    req = pb.ComputeUp(request=pb.StatRequest(
        spec_json=json.dumps(MALFORMED_SPECS[case]), parties=list(ORGS), timeout_seconds=5,
        signed_request=signed_statistic(ffed.directory, MALFORMED_SPECS[case], parties=ORGS)))
    out = callers["coord"].stream_stream("/smpc.v1.Coordinator/Compute",
                                         [req.SerializeToString()])
    COUNTS["Coordinator.Compute"] += 1
    assert_specific(out, case)
    assert out.code == grpc.StatusCode.INVALID_ARGUMENT, str(out)


@pytest.mark.parametrize("case", sorted(MALFORMED_SPECS))
def test_prepare_refuses_malformed_spec_values(ffed, callers, case):
    r = _valid_prepare(new_sid(), spec_json=json.dumps(MALFORMED_SPECS[case]))
    out = callers["party"].unary("/smpc.v1.Party/Prepare", r.SerializeToString())
    COUNTS["Party.Prepare"] += 1
    assert_specific(out, case)
    assert out.code == grpc.StatusCode.INVALID_ARGUMENT, str(out)


@pytest.mark.parametrize("method", ["Run", "Await"])
def test_huge_session_id_is_refused_without_echo(ffed, callers, method):
    out = callers["party"].unary(f"/smpc.v1.Party/{method}",
                                 pb.SessionRef(session_id="a" * 1_000_000).SerializeToString())
    COUNTS[f"Party.{method}"] += 1
    assert_specific(out, method)
    assert out.code == grpc.StatusCode.INVALID_ARGUMENT, str(out)


DEEP_JSON = "[" * 100_000 + "]" * 100_000
DEEP_PAYLOAD = "[" * 20_000 + "]" * 20_000  # fits a signed envelope; nested far too deep


@pytest.mark.parametrize("where", ["Compute", "Prepare", "Deal"])
def test_deeply_nested_spec_json_is_refused(ffed, callers, where):
    if where == "Compute":  # a correctly signed payload that is nested too deeply
        req = pb.ComputeUp(request=pb.StatRequest(
            spec_json=DEEP_JSON, parties=list(ORGS),
            signed_request=sign_raw_payload(ffed.directory, DEEP_PAYLOAD)))
        out = callers["coord"].stream_stream("/smpc.v1.Coordinator/Compute",
                                             [req.SerializeToString()])
    elif where == "Prepare":
        out = callers["party"].unary("/smpc.v1.Party/Prepare", _valid_prepare(
            new_sid(), spec_json=DEEP_JSON).SerializeToString())
    else:
        out = callers["dealer"].unary("/smpc.v1.Dealer/Deal", pb.DealRequest(
            session_id=new_sid(), timeout_seconds=5, spec_json=DEEP_JSON, tag="inf",
            members=[pb.Member(name="dealer", role="dealer"),
                     pb.Member(name="org-a", role="data-owner"),
                     pb.Member(name="lab", role="model-owner")]).SerializeToString())
    COUNTS[{"Compute": "Coordinator.Compute", "Prepare": "Party.Prepare",
            "Deal": "Dealer.Deal"}[where]] += 1
    assert_specific(out, where)
    expected = grpc.StatusCode.PERMISSION_DENIED if where == "Compute" \
        else grpc.StatusCode.INVALID_ARGUMENT  # an unreadable signed request is refused
    assert out.code == expected, str(out)
    if where == "Compute":
        assert "not valid JSON" in out.details, str(out)


def test_predict_frac_bits_out_of_range_is_refused(ffed, callers):
    r = pb.PredictRequest(data_owner="org-a", model_owner=LAB, backend="ss", frac_bits=31,
                          timeout_seconds=5, signed_request=signed_prediction(
                              ffed.directory, data_owner="org-a", model_owner=LAB,
                              backend="ss", frac_bits=31))
    out = callers["coord"].unary("/smpc.v1.Coordinator/Predict", r.SerializeToString())
    COUNTS["Coordinator.Predict"] += 1
    assert_specific(out, "frac_bits=31")


# ------------------------------------------------------------------------- afterwards


def test_zz_federation_survives_the_fuzzing(ffed, callers, open_session):
    """Every node alive and idle, memory bounded, and a correct answer afterwards."""
    d = ffed.directory
    out = callers["party"].unary("/smpc.v1.Party/Abort",
                                 pb.AbortRequest(session_id=open_session).SerializeToString())
    assert out.ok and pb.AbortResponse.FromString(out.responses[0]).was_active
    names = ffed.nodes()
    for n in names:  # the same processes as before the fuzzing, answering Health
        assert node_pid(d, n) == ffed.pids[n], f"{n} was restarted"
    assert wait_for(lambda: all(v == 0 for v in active_sessions(d, names).values()), 20), \
        active_sessions(d, names)
    growth = {n: rss_kb(ffed.pids[n]) - ffed.baseline_rss[n] for n in names}
    print("\nRSS growth during the fuzzing (KiB):", growth)
    assert all(g < RSS_GROWTH_LIMIT_KB for g in growth.values()), growth
    with Client(d, timeout=60, parties=ORGS) as client:
        X = ffed.pooled(("x", "y"), ORGS)
        r = client.compute(StatSpec("mean", ("x", "y")))
        # ss: the encoding bound over N (tests.tolerances)
        assert_within(r.value, X.mean(axis=0), Moments(X, Backend("ss", len(ORGS))).mean_tol)
        edges = (0.0, 5.0, 10.0, 15.0, 20.0)
        r = client.compute(StatSpec("histogram", ("x",), edges=edges, backend="ckks"))
        assert r.value[0] == np.histogram(X[:, 0], bins=edges)[0].tolist()
