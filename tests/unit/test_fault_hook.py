"""The test-only fault hook ``SMPC_FAULT`` (parties.privacy): its forms, that it is a no-op when
unset, and what ``corrupt`` / ``duplicate`` / ``stall`` do to a role's messages.  (``kill`` is
exercised on real processes by tests/integration/test_faults.py.)"""

from __future__ import annotations

import time

import numpy as np
import pytest

from parties.transport import faults
from parties.transport.faults import (
    FAULT_ENV,
    Fault,
    fault_point,
    fault_transport,
    install_fault,
)
from smpc.errors import InputError
from smpc.transport import Transport


class Recorder(Transport):
    def __init__(self) -> None:
        super().__init__("me")
        self.sent: list[tuple[str, str, object, float]] = []

    def _send(self, to, tag, payload):
        self.sent.append((to, tag, payload, time.monotonic()))

    def _recv(self, sender, tag):
        raise AssertionError("not used")


@pytest.fixture
def armed(monkeypatch):
    """Install ``SMPC_FAULT=value`` for a node kind; restored (unset) afterwards."""
    def arm(value: str, kind: str = "party"):
        monkeypatch.setenv(FAULT_ENV, value)
        return install_fault(kind)

    yield arm
    monkeypatch.delenv(FAULT_ENV, raising=False)
    install_fault("party")
    assert faults._FAULT is None


@pytest.mark.parametrize(("text", "kind", "want"), [
    ("after-charge", "party", Fault("kill", "after-charge")),
    ("kill:on-run", "party", Fault("kill", "on-run")),
    ("stall:on-await:2.5", "party", Fault("stall", "on-await", 2.5)),
    ("corrupt:mid-protocol", "party", Fault("corrupt", "mid-protocol")),
    ("duplicate:mid-deal", "dealer", Fault("duplicate", "mid-deal")),
    ("kill:on-deal", "dealer", Fault("kill", "on-deal")),
    ("mid-run", "coordinator", Fault("kill", "mid-run")),
    ("stall:after-prepare:1", "coordinator", Fault("stall", "after-prepare", 1.0)),
])
def test_forms(text, kind, want):
    assert Fault.parse(text, kind) == want


@pytest.mark.parametrize(("text", "kind"), [
    ("on-run", "dealer"),                # a stage of another kind of node
    ("mid-run", "party"),
    ("corrupt:on-run", "party"),         # corrupt / duplicate only where a message is sent
    ("duplicate:after-prepare", "coordinator"),
    ("stall:on-run", "party"),           # a stall needs its seconds
    ("stall:on-run:soon", "party"),
    ("stall:on-run:-1", "party"),
    ("stall:on-run:nan", "party"),
    ("stall:on-run:1e9", "party"),
    ("explode:on-run", "party"),
    ("kill:on-run:3", "party"),
    ("", "party"),
])
def test_malformed_values_are_refused_with_one_sentence(text, kind):
    with pytest.raises(InputError) as e:
        Fault.parse(text, kind)
    assert FAULT_ENV in str(e.value) and "\n" not in str(e.value)


def test_unset_is_a_no_op(monkeypatch):
    monkeypatch.delenv(FAULT_ENV, raising=False)
    assert install_fault("party") is None
    t = Recorder()
    assert fault_transport(t, "mid-protocol") is t
    t0 = time.monotonic()
    for stage in faults.FAULT_POINTS:
        fault_point(stage)  # would kill this process if it were armed
    assert time.monotonic() - t0 < 0.5


def test_a_malformed_env_value_stops_the_node_at_start(armed):
    with pytest.raises(InputError, match="is not a fault a party node can inject"):
        armed("kill:mid-deal")


def test_another_stage_is_untouched(armed):
    armed("corrupt:mid-deal", "dealer")
    t = Recorder()
    assert fault_transport(t, "mid-protocol") is t
    fault_point("mid-deal")  # corrupt is not a kill: nothing happens at the point itself


def test_corrupt_truncates_the_first_message_only(armed):
    armed("corrupt:mid-protocol")
    inner = Recorder()
    t = fault_transport(inner, "mid-protocol")
    assert t is not inner
    t.send("peer", "a", np.arange(4, dtype=np.uint64).reshape(2, 2))
    t.send("peer", "b", np.arange(4, dtype=np.uint64))
    assert inner.sent[0][2].tolist() == [0, 1, 2]          # one element short
    assert inner.sent[1][2].tolist() == [0, 1, 2, 3]       # later messages intact
    inner2 = Recorder()
    t2 = fault_transport(inner2, "mid-protocol")
    t2.send("peer", "s", b"0123456789abcdef")
    assert inner2.sent[0][2] == b"0123456789abcde"


def test_duplicate_sends_the_first_message_twice(armed):
    armed("duplicate:mid-deal", "dealer")
    inner = Recorder()
    t = fault_transport(inner, "mid-deal")
    t.send("p0", "deal/hello", b"x")
    t.send("p1", "deal/hello", b"y")
    assert [(to, tag, p) for to, tag, p, _ in inner.sent] == [
        ("p0", "deal/hello", b"x"), ("p0", "deal/hello", b"x"), ("p1", "deal/hello", b"y")]


def test_stall_sleeps_after_the_first_send(armed):
    armed("stall:mid-protocol:0.3")
    inner = Recorder()
    t = fault_transport(inner, "mid-protocol")
    t.send("peer", "a", b"1")
    t.send("peer", "b", b"2")
    assert inner.sent[1][3] - inner.sent[0][3] >= 0.3
    t0 = time.monotonic()
    fault_point("on-run")  # another stage: no sleep
    assert time.monotonic() - t0 < 0.1
