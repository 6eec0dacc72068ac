"""Authentication, authorisation and failure handling against a real federation.

* a certificate from another CA and a client without a certificate are refused
  in the TLS handshake (the client sees UNAVAILABLE, the server never runs a
  handler);
* a listed party calling coordinator-only methods, an analyst calling party
  methods, an unlisted analyst, and a second certificate for a pinned name are
  refused with PERMISSION_DENIED;
* afterwards the federation serves the next request correctly;
* a party killed mid-protocol gives the analyst an error naming it well within
  the deadline, and the remaining nodes free their sessions.
"""

from __future__ import annotations

import json
import queue
import threading
import time

import grpc
import numpy as np
import pytest

from parties._pb import smpc_pb2 as pb
from parties._pb import smpc_pb2_grpc as pb_grpc
from parties.analyst.client import ComputationFailed, PermissionDenied, Unavailable
from parties.federation import local as federation
from parties.pki.certs import create_ca, issue_node_certificate, load_ca, save_node_credentials
from parties.transport import wire
from parties.transport.tls import channel_credentials, channel_options
from smpc import ckks
from smpc.stats import StatSpec
from tests.integration.signing import signed_statistic
from tests.tolerances import Backend, Moments, assert_within

ORGS = ("org-a", "org-b", "org-c")


@pytest.fixture(scope="module")
def afed(make_federation):
    rng = np.random.default_rng(5)
    parties = {o: {"x": rng.normal(10, 2, 20), "y": rng.normal(-3, 1, 20)} for o in ORGS}
    return make_federation("auth", parties, min_cohort_size=5, stat_parties=ORGS)


def stub_for(afed, node, creds, kind="Node"):
    entry = federation.Layout(afed.directory).federation().node(node)
    ch = grpc.secure_channel(entry.address, creds,
                             options=channel_options(node, wire.grpc_options()))
    return ch, getattr(pb_grpc, f"{kind}Stub")(ch)


def files_creds(cert, key, ca):
    return channel_credentials(cert, key, ca)


def issue(tmp_path, ca, name, role):
    cert, key = issue_node_certificate(ca, name, role)
    save_node_credentials(cert, key, tmp_path / f"{name}.pem", tmp_path / f"{name}.key",
                          overwrite=True)
    return tmp_path / f"{name}.pem", tmp_path / f"{name}.key"


def code_of(call):
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code(), e.value.details() or ""


def assert_serves(afed):
    r = afed.client.compute(StatSpec("count", ("x",)))
    assert r.value == 60
    r = afed.client.compute(StatSpec("mean", ("x",), backend="ckks"))
    pooled = np.concatenate([afed.data[o]["x"] for o in ORGS])
    # the release bound over N (tests.tolerances; false failure 2e-9)
    assert_within(r.value, [pooled.mean()], Moments(pooled, Backend("ckks", len(ORGS))).mean_tol)


def test_certificate_from_another_ca_is_refused_in_the_handshake(afed, tmp_path):
    lay = federation.Layout(afed.directory)
    rogue = create_ca(lay.federation().name)  # same federation name, different key
    for name, role, target, kind, call in (
        ("org-a", "party", "org-b", "Party", lambda s: s.Describe(pb.DescribeRequest(), timeout=5)),
        ("analyst", "analyst", "coordinator", "Node",
         lambda s: s.Health(pb.HealthRequest(), timeout=5)),
        ("coordinator", "coordinator", "org-a", "Party",
         lambda s: s.Prepare(pb.PrepareRequest(), timeout=5)),
    ):
        cert, key = issue(tmp_path, rogue, name, role)
        ch, stub = stub_for(afed, target, files_creds(cert, key, lay.ca_cert), kind)
        code, details = code_of(lambda stub=stub, call=call: call(stub))
        ch.close()
        assert code == grpc.StatusCode.UNAVAILABLE, (name, code, details)
    assert_serves(afed)


def test_client_without_certificate_is_refused_in_the_handshake(afed):
    lay = federation.Layout(afed.directory)
    creds = grpc.ssl_channel_credentials(root_certificates=lay.ca_cert.read_bytes())
    for target, kind, call in (
        ("coordinator", "Coordinator", lambda s: s.Status(pb.StatusRequest(), timeout=5)),
        ("org-a", "Node", lambda s: s.Health(pb.HealthRequest(), timeout=5)),
    ):
        ch, stub = stub_for(afed, target, creds, kind)
        code, details = code_of(lambda stub=stub, call=call: call(stub))
        ch.close()
        assert code == grpc.StatusCode.UNAVAILABLE, (target, code, details)
    assert_serves(afed)


def test_listed_nodes_calling_methods_of_another_role_are_denied(afed, tmp_path):
    lay = federation.Layout(afed.directory)
    party = files_creds(lay.node_dir("org-a") / "cert.pem", lay.node_dir("org-a") / "key.pem",
                        lay.ca_cert)
    analyst = files_creds(lay.analyst_cert, lay.analyst_key, lay.ca_cert)
    cases = [
        (party, "coordinator", "Coordinator", lambda s: s.Status(pb.StatusRequest(), timeout=5)),
        (party, "coordinator", "Coordinator", lambda s: list(s.Compute(
            iter([pb.ComputeUp(request=pb.StatRequest(spec_json="{}"))]), timeout=5))),
        (party, "coordinator", "Coordinator", lambda s: s.Predict(pb.PredictRequest(),
                                                                  timeout=5)),
        (party, "org-b", "Party", lambda s: s.Prepare(pb.PrepareRequest(), timeout=5)),
        (party, "org-b", "Party", lambda s: s.Describe(pb.DescribeRequest(), timeout=5)),
        (analyst, "org-b", "Party", lambda s: s.Describe(pb.DescribeRequest(analyst="analyst"),
                                                         timeout=5)),
        (analyst, "org-b", "Node", lambda s: s.Deliver(
            wire.chunks("0123456789abcdef", "t", b"x"), timeout=5)),
    ]
    for creds, target, kind, call in cases:
        ch, stub = stub_for(afed, target, creds, kind)
        code, details = code_of(lambda stub=stub, call=call: call(stub))
        ch.close()
        assert code == grpc.StatusCode.PERMISSION_DENIED, (target, kind, code, details)
        assert "not allowed" in details
    # a certificate of the right CA for an analyst the federation does not list
    ca = load_ca(lay.ca_cert, lay.ca_key)
    for name in ("mallory", "analyst"):  # 'analyst' again: a new key, not the pinned one
        cert, key = issue(tmp_path, ca, name, "analyst")
        ch, stub = stub_for(afed, "coordinator", files_creds(cert, key, lay.ca_cert),
                            "Coordinator")
        code, details = code_of(lambda stub=stub: stub.Status(pb.StatusRequest(), timeout=5))
        ch.close()
        assert code == grpc.StatusCode.PERMISSION_DENIED, (name, code, details)
    # through the client API the same refusal is a PermissionDenied exception
    from parties.analyst.client import Client

    with Client(lay.federation_file, cert=tmp_path / "mallory.pem", key=tmp_path / "mallory.key",
                ca=lay.ca_cert) as c, pytest.raises(PermissionDenied) as e:
        c.compute(StatSpec("count", ("x",)), parties=ORGS)
    assert e.value.code == "PERMISSION_DENIED"
    assert_serves(afed)


SLOW_PARTY = """
import sys, time
from smpc import stats
_orig = stats.run_party
def _slow(*args, **kwargs):
    time.sleep(60)
    return _orig(*args, **kwargs)
stats.run_party = _slow
from parties.node.party import main
sys.exit(main(sys.argv[1:]))
"""


def wait_for(predicate, timeout=10.0, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return False


@pytest.mark.parametrize("backend", ["ss", "ckks"])
def test_party_killed_mid_protocol(afed, backend):
    d = afed.directory
    federation.stop_node(d, "org-b")
    federation.start_node(d, "org-b", python_args=["-c", SLOW_PARTY])
    outcome = {}

    def run():
        t0 = time.monotonic()
        try:
            afed.client.compute(StatSpec("var", ("x", "y"), backend=backend), timeout=30)
        except Exception as exc:
            outcome["error"] = exc
        outcome["seconds"] = time.monotonic() - t0

    th = threading.Thread(target=run)
    th.start()
    try:
        assert wait_for(lambda: federation.node_health(d, "org-b")["running_sessions"] == 1)
        assert federation.node_health(d, "org-a")["active_sessions"] == 1
        killed = time.monotonic()
        federation.stop_node(d, "org-b", kill=True)
        th.join(30)
        assert not th.is_alive()
        err = outcome.get("error")
        assert isinstance(err, (ComputationFailed, Unavailable)), err
        assert err.node == "org-b" and "org-b" in str(err)
        assert time.monotonic() - killed < 10  # far within the 30 s deadline
        for node in ("coordinator", "org-a", "org-c"):  # every session was freed
            assert wait_for(lambda node=node:
                            federation.node_health(d, node)["active_sessions"] == 0, 5), node
    finally:
        federation.stop_node(d, "org-b", kill=True)
        federation.start_node(d, "org-b")
    assert_serves(afed)


def test_unreachable_party_is_named(afed):
    d = afed.directory
    federation.stop_node(d, "org-c")
    try:
        t0 = time.monotonic()
        with pytest.raises(Unavailable) as e:
            afed.client.compute(StatSpec("mean", ("x",)))
        assert e.value.node == "org-c" and "org-c" in str(e.value)
        assert time.monotonic() - t0 < 5
        health = {n.name: n for n in afed.client.health()}
        assert not health["org-c"].ok and health["org-a"].ok
        assert federation.node_health(d, "org-a")["active_sessions"] == 0
    finally:
        federation.start_node(d, "org-c")
    assert_serves(afed)


def test_coordinator_refuses_a_context_carrying_a_secret_key(afed):

    lay = federation.Layout(afed.directory)
    creds = files_creds(lay.analyst_cert, lay.analyst_key, lay.ca_cert)
    ch, stub = stub_for(afed, "coordinator", creds, "Coordinator")
    holder = ckks.KeyHolder("aggregate")
    leaky = holder.context.serialize(save_secret_key=True)
    up: queue.Queue = queue.Queue()
    spec = StatSpec("mean", ("x",), backend="ckks")
    up.put(pb.ComputeUp(request=pb.StatRequest(
        spec_json=json.dumps(spec.to_json()), parties=list(ORGS), timeout_seconds=20,
        # the analyst signs the very context it sends: the coordinator still refuses it
        signed_request=signed_statistic(afed.directory, spec, parties=ORGS, context=leaky))))

    def requests():
        while (item := up.get()) is not None:
            yield item

    call = stub.Compute(requests(), timeout=30)
    with pytest.raises(grpc.RpcError) as e:
        for msg in call:
            if msg.WhichOneof("body") == "started":
                for c in wire.chunks(msg.started.session_id, "context", leaky):
                    up.put(pb.ComputeUp(chunk=c))
    up.put(None)
    ch.close()
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "secret key" in e.value.details()
    assert_serves(afed)
