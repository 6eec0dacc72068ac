"""A party that rewrites its own audit chain is contradicted by the heads its peers witnessed.

The operator of a party holds its audit log's MAC key, so it can rebuild the whole chain --
edit a record, recompute every hash and MAC, move the stored head -- and the rebuilt log
verifies on its own.  After every session the parties exchange signed heads
(:mod:`parties.privacy.witness`); a peer's head then disagrees with the rewritten chain.
Real party nodes in one process (:class:`~parties.federation.inprocess.InProcessFederation`),
real SQLite logs, real ECDSA signatures by the nodes' own keys.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from parties.federation.inprocess import InProcessFederation
from parties.federation.local import init_federation
from parties.pki.certs import load_certificate, load_private_key
from parties.pki.identity import Identity
from parties.privacy.audit import AuditLog, _chain_hash, canonical_json
from parties.privacy.witness import (
    WitnessError,
    WitnessStore,
    check,
    sign_head,
    verify_head,
)
from smpc.stats import StatSpec

PARTIES = ("lab-a", "lab-b", "lab-c")


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    d = tmp_path_factory.mktemp("witness")
    rng = np.random.default_rng(3)
    files = []
    for name in PARTIES:
        files.append(d / f"{name}.csv")
        with files[-1].open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["x"])
            w.writerows([[repr(float(v))] for v in rng.normal(5, 1, 20)])
    init_federation(d / "fed", files, min_cohort_size=5)
    with InProcessFederation.open(d / "fed") as f:
        f.compute(StatSpec("mean", ("x",)))
        f.compute(StatSpec("count", ("x",)))
        yield f


def heads_about(fed, holder: str, party: str, at_least: int = 2, wait: float = 10.0):
    """The verified heads ``holder`` keeps about ``party`` (they arrive in the background)."""
    store = WitnessStore(fed.parties[holder].cfg.database)
    ca = load_certificate(fed.layout.ca_cert)
    name = fed.coordinator.federation.name
    end = time.monotonic() + wait
    while True:
        envelopes = store.envelopes(party)
        if len(envelopes) >= at_least or time.monotonic() > end:
            return [verify_head(e, ca_cert=ca, federation=name, party=party) for e in envelopes]
        time.sleep(0.05)


def rewrite_with_the_key(log: AuditLog, seq: int) -> None:
    """What the party's own operator can do: edit record ``seq`` and rebuild the chain with
    recomputed hashes and MACs, and move the stored head -- the log then verifies."""
    con = sqlite3.connect(log.path)
    try:
        rows = con.execute("SELECT seq, body, prev_hash FROM audit_records ORDER BY seq"
                           ).fetchall()
        prev = rows[0][2]
        for s, body, _ in rows:
            obj = json.loads(body)
            if s == seq:
                obj["analyst"] = "nobody"  # e.g. hide who asked
            body = canonical_json(obj)
            h = _chain_hash(prev, body)
            con.execute("UPDATE audit_records SET body = ?, prev_hash = ?, hash = ?, mac = ? "
                        "WHERE seq = ?", (body, prev, h, log._mac(h), s))
            prev = h
        con.execute("UPDATE audit_meta SET value = ? WHERE key = 'head_hash'", (prev,))
        con.commit()
    finally:
        con.close()


def test_every_party_holds_its_peers_signed_heads(fed):
    for holder in PARTIES:
        for party in PARTIES:
            if party != holder:
                heads = heads_about(fed, holder, party)
                assert len(heads) >= 2 and all(h.party == party for h in heads)
                log = AuditLog(fed.parties[party].cfg.database)
                assert check(log, heads) == []  # an honest log agrees with every witness


def test_a_rewritten_audit_chain_is_contradicted_by_its_peers(fed):
    victim = "lab-a"
    heads = heads_about(fed, "lab-b", victim) + heads_about(fed, "lab-c", victim)
    log = AuditLog(fed.parties[victim].cfg.database)
    first = min(h.head.seq for h in heads)
    rewrite_with_the_key(log, seq=1)
    assert log.verify().ok  # alone, the rewritten log verifies: the attack works
    problems = check(log, heads)
    assert problems and all("differs from the head a peer witnessed" in p for p in problems)
    assert str(first) in problems[0]
    # the operator's command line says the same, from heads exported by the peers
    export = Path(fed.layout.directory) / "witnessed-lab-a.jsonl"
    export.write_text("".join(e.envelope.decode() + "\n" for e in heads))
    config = fed.layout.config(victim)
    out = subprocess.run([sys.executable, "-m", "parties.cli", "audit", "verify", "--config",
                          str(config), "--witness", str(export)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "contradicted" in out.stdout and "differs from the head a peer witnessed" in out.stdout


def test_a_head_not_signed_by_the_party_it_names_is_refused(fed):
    """lab-b cannot plant a fake head of lab-a's log in lab-c's store, nor sign as lab-a."""
    ca = load_certificate(fed.layout.ca_cert)
    name = fed.coordinator.federation.name
    node_b = fed.layout.node_dir("lab-b")
    real = AuditLog(fed.parties["lab-a"].cfg.database).head()
    as_b = sign_head(real, party="lab-b", federation=name,
                     key=load_private_key(node_b / "key.pem"),
                     cert=load_certificate(node_b / "cert.pem"))
    with pytest.raises(WitnessError, match="lab-a sent an audit head signed by lab-b"):
        verify_head(as_b, ca_cert=ca, federation=name, party="lab-a")
    outer = json.loads(as_b)
    claims_a = json.dumps({**outer, "head": outer["head"].replace('"party":"lab-b"',
                                                                   '"party":"lab-a"')}).encode()
    with pytest.raises(WitnessError):
        verify_head(claims_a, ca_cert=ca, federation=name, party="lab-a")
    with pytest.raises(Exception, match="refuses the audit head"):
        fed.parties["lab-c"].receive_witness(as_b, Identity("lab-a", "party", name, ""))
