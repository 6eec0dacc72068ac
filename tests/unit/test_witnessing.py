"""Audit heads owed to peers are coalesced, never lost while the node runs.

:class:`parties.node.witnessing.HeadWitnesses` sends a peer the party's *current* head at most
once per interval; a head owed inside the interval goes out at its end, without another
session to trigger it.  The end-to-end exchange (real nodes, real signatures, a rewritten chain
contradicted) is ``test_audit_witness.py``; here the schedule, with the head and the sending
passed in, so that timing is observable.
"""

from __future__ import annotations

import threading
import time

import pytest

from parties.node.witnessing import HeadWitnesses

INTERVAL = 0.4


class Recorder:
    """Heads numbered in signing order; every send recorded with its time."""

    def __init__(self, fail_for: set[str] | None = None) -> None:
        self.signed = 0
        self.sent: list[tuple[str, bytes, float]] = []
        self.fail_for = fail_for or set()
        self.lock = threading.Lock()

    def sign(self) -> bytes:
        with self.lock:
            self.signed += 1
            return f"head-{self.signed}".encode()

    def send(self, peer: str, envelope: bytes) -> None:
        with self.lock:
            self.sent.append((peer, envelope, time.monotonic()))
        if peer in self.fail_for:
            raise ConnectionError("peer down")

    def to(self, peer: str) -> list[tuple[bytes, float]]:
        with self.lock:
            return [(e, t) for p, e, t in self.sent if p == peer]


def wait_for(cond, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


@pytest.fixture
def rec():
    return Recorder()


def test_a_first_head_goes_out_at_once_to_every_peer(rec):
    w = HeadWitnesses(rec.sign, rec.send, interval=INTERVAL)
    start = time.monotonic()
    w.owe(["lab-b", "lab-c"])
    wait_for(lambda: len(rec.sent) == 2)
    assert {p for p, _, _ in rec.sent} == {"lab-b", "lab-c"}
    assert all(t - start < INTERVAL for _, _, t in rec.sent)
    assert rec.signed == 1  # one signature for the round, not one per peer
    w.stop()


def test_heads_owed_within_the_interval_become_one_send_of_the_latest_head(rec):
    w = HeadWitnesses(rec.sign, rec.send, interval=INTERVAL)
    w.owe(["lab-b"])
    wait_for(lambda: len(rec.to("lab-b")) == 1)
    for _ in range(20):  # twenty sessions in quick succession
        w.owe(["lab-b"])
    # the owed head goes out at the interval's end with no further session to trigger it
    wait_for(lambda: len(rec.to("lab-b")) == 2, timeout=INTERVAL * 5)
    (first, t1), (second, t2) = rec.to("lab-b")
    assert t2 - t1 >= INTERVAL * 0.95
    assert second == f"head-{rec.signed}".encode() and second != first  # signed when sent
    time.sleep(INTERVAL * 1.5)
    assert len(rec.to("lab-b")) == 2  # nothing more was owed: nothing more sent
    w.stop()


def test_a_peer_that_cannot_be_reached_does_not_hold_back_the_others():
    rec = Recorder(fail_for={"lab-b"})
    w = HeadWitnesses(rec.sign, rec.send, interval=INTERVAL)
    w.owe(["lab-b", "lab-c"])
    wait_for(lambda: len(rec.to("lab-c")) == 1)
    time.sleep(INTERVAL * 1.2)
    w.owe(["lab-b", "lab-c"])  # the failed send is not retried; the next head is owed again
    wait_for(lambda: len(rec.to("lab-b")) == 2 and len(rec.to("lab-c")) == 2)
    w.stop()


def test_after_stop_nothing_is_sent(rec):
    w = HeadWitnesses(rec.sign, rec.send, interval=INTERVAL)
    w.owe(["lab-b"])
    wait_for(lambda: len(rec.sent) == 1)
    w.owe(["lab-b"])  # owed, waiting for the interval
    w.stop()
    time.sleep(INTERVAL * 1.5)
    w.owe(["lab-b"])
    time.sleep(0.1)
    assert len(rec.sent) == 1
