"""The hash-chained, keyed audit log on real SQLite files: verification of an intact log, and
detection (naming the seq numbers) of edited, deleted, reordered and truncated records."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from parties.privacy.audit import (
    AuditError,
    AuditEvent,
    AuditLog,
    Head,
    default_key_path,
)
from parties.privacy.audit_verify import VerifyReport

ROOT = Path(__file__).resolve().parents[2]


def event(i: int = 0, **kw: object) -> AuditEvent:
    base: dict[str, object] = dict(
        caller="smpc://fed/coordinator/coord",
        caller_fingerprint="ab" * 32,
        analyst="ann",
        session_id=f"s{i}",
        computation="mean",
        backend="ss",
        columns=("age", "bmi"),
        filter="age > 40 and sex == 'F'",
        recipient="ann",
        rho=0.125,
        epsilon=1.0,
        delta=1e-6,
        outcome="accepted",
        reason=f"request {i} accepted by policy",
    )
    base.update(kw)
    return AuditEvent(**base)  # type: ignore[arg-type]


def filled(tmp_path: Path, n: int = 6) -> AuditLog:
    log = AuditLog(tmp_path / "party.sqlite")
    for i in range(1, n + 1):
        log.append(event(i, outcome=("accepted", "refused", "failed", "released")[i % 4]))
    return log


def sql(log: AuditLog, *statements: str, args: tuple[object, ...] = ()) -> None:
    con = sqlite3.connect(log.path)
    try:
        for s in statements:
            con.execute(s, args if "?" in s else ())
        con.commit()
    finally:
        con.close()


def row(log: AuditLog, seq: int) -> tuple[str, str, str]:
    con = sqlite3.connect(log.path)
    try:
        return con.execute(
            "SELECT body, prev_hash, hash FROM audit_records WHERE seq = ?", (seq,)
        ).fetchone()
    finally:
        con.close()


FINDINGS = ("edited", "deleted", "reordered", "broken", "truncated", "duplicated")


def findings(rep: VerifyReport) -> dict[str, tuple[int, ...]]:
    """The non-empty seq lists of a report, by name (so a test states all of them at once)."""
    return {f: getattr(rep, f) for f in FINDINGS if getattr(rep, f)}


def chain_hash(prev: str, body: str) -> str:
    """SHA-256(bytes(prev) || body), computed here independently of parties.privacy.audit."""
    return hashlib.sha256(bytes.fromhex(prev) + body.encode("utf-8")).hexdigest()


def canonical(obj: object) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def rewrite_chain(log: AuditLog, *, genesis: str | None = None, edit_seq: int = 0) -> str:
    """What an attacker who can write the database but not read the key can do: change record
    ``edit_seq``'s analyst (0: none), recompute every hash from ``genesis`` (default: the stored
    record 1's prev_hash) and move the stored head to the new last hash. Returns that hash."""
    con = sqlite3.connect(log.path)
    try:
        rows = con.execute(
            "SELECT seq, body, prev_hash FROM audit_records ORDER BY seq"
        ).fetchall()
        prev = genesis or rows[0][2]
        for seq, body, _ in rows:
            obj = json.loads(body)
            if seq == edit_seq:
                obj["analyst"] = "eve"
            body = canonical(obj)
            h = chain_hash(prev, body)
            con.execute("UPDATE audit_records SET body = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                        (body, prev, h, seq))
            prev = h
        con.execute("UPDATE audit_meta SET value = ? WHERE key = 'head_hash'", (prev,))
        con.commit()
    finally:
        con.close()
    return prev


# ------------------------------------------------------------------------------ intact


def test_append_and_verify_an_intact_log(tmp_path: Path) -> None:
    log = filled(tmp_path, 5)
    rep = log.verify()
    assert rep.ok, rep.message
    assert (rep.records, rep.head_seq, rep.keyed) == (5, 5, True)
    assert "hash chain intact" in rep.message and "exported head" in rep.message

    recs = log.records(limit=None)
    assert [r.seq for r in recs] == [1, 2, 3, 4, 5]
    # the stored chain is exactly SHA-256(prev_hash || canonical body), linked record to record
    for a, b in itertools.pairwise(recs):
        assert b.prev_hash == a.hash
    for r in recs:
        assert hashlib.sha256(bytes.fromhex(r.prev_hash) + r.body.encode()).hexdigest() == r.hash
        assert r.body == json.dumps(r.event, sort_keys=True, separators=(",", ":"),
                                    ensure_ascii=False)
        assert r.event["seq"] == r.seq
        assert dt.datetime.fromisoformat(r.time).utcoffset() == dt.timedelta(0)
    e = recs[0].event
    assert e["caller"] == "smpc://fed/coordinator/coord" and e["columns"] == ["age", "bmi"]
    assert e["filter"] == "age > 40 and sex == 'F'" and e["recipient"] == "ann"
    assert e["privacy_cost"] == {"rho": 0.125, "epsilon": 1.0, "delta": 1e-6}
    assert e["outcome"] == "refused" and e["reason"] == "request 1 accepted by policy"
    assert log.head().seq == 5 and log.head().hash == recs[-1].hash
    assert "computation=mean/ss" in recs[0].line() and "rho=0.125" in recs[0].line()


def test_records_paging(tmp_path: Path) -> None:
    log = filled(tmp_path, 6)
    assert [r.seq for r in log.records(limit=2)] == [5, 6]  # tail
    assert [r.seq for r in log.records(limit=2, since=2)] == [3, 4]  # page forward
    t3 = log.records(limit=None)[2].time
    assert [r.seq for r in log.records(limit=None, since=t3)] == [3, 4, 5, 6]
    assert log.records(since=dt.datetime(2999, 1, 1, tzinfo=dt.timezone.utc)) == []
    with pytest.raises(AuditError):
        log.records(since="yesterday")
    assert len(log) == 6


# ------------------------------------------------------------------------------ tampering


def test_edited_record_is_named(tmp_path: Path) -> None:
    log = filled(tmp_path)
    sql(log, "UPDATE audit_records SET body = replace(body, '\"ann\"', '\"eve\"') WHERE seq = 3")
    rep = log.verify()
    assert not rep.ok
    assert rep.edited == (3,) and rep.deleted == () and rep.reordered == ()
    assert "Record 3 was edited" in rep.message
    assert findings(rep) == {"edited": (3,)}  # record 4 is not also reported unchained
    assert rep.problems == ("Record 3 was edited (its content no longer matches its hash).",)


def test_edit_with_recomputed_hash_is_caught_by_mac_and_by_chain(tmp_path: Path) -> None:
    log = filled(tmp_path)
    body, prev, _ = row(log, 3)
    body = body.replace('"analyst":"ann"', '"analyst":"eve"')
    new_hash = hashlib.sha256(bytes.fromhex(prev) + body.encode()).hexdigest()
    sql(log, "UPDATE audit_records SET body = ?, hash = ? WHERE seq = 3",
        args=(body, new_hash))
    keyed = log.verify()
    assert not keyed.ok and keyed.edited == (3,)
    assert findings(keyed) == {"edited": (3,)}
    assert "Record 3 was edited" in keyed.message and "MAC" in keyed.message
    # an auditor without the key still sees the chain break after record 3
    chain = AuditLog(log.path, chain_only=True).verify()
    assert not chain.ok and not chain.keyed
    assert chain.broken == (4,)
    assert findings(chain) == {"broken": (4,)}
    assert "Record 4 does not chain to record 3" in chain.message


def test_deleted_middle_record_is_named(tmp_path: Path) -> None:
    log = filled(tmp_path)
    sql(log, "DELETE FROM audit_records WHERE seq = 4")
    rep = log.verify()
    assert not rep.ok
    assert rep.deleted == (4,) and rep.edited == () and rep.truncated == ()
    assert "Record 4 is missing (deleted)" in rep.message
    assert findings(rep) == {"deleted": (4,)}  # record 5 is not also reported unchained


def test_deleted_and_renumbered_is_named(tmp_path: Path) -> None:
    log = filled(tmp_path)
    # renumber one row at a time, upwards: one UPDATE over all rows could visit them in any
    # order and collide with a seq still in use
    sql(log, "DELETE FROM audit_records WHERE seq = 2",
        *(f"UPDATE audit_records SET seq = {s - 1} WHERE seq = {s}" for s in range(3, 7)))
    rep = log.verify()
    assert findings(rep) == {"deleted": (2,), "reordered": (2, 3, 4, 5)}
    assert rep.deleted == (2,) and rep.reordered == (2, 3, 4, 5)
    assert "Record 2 is missing" in rep.message and "seq 2 holds the record written as 3" in (
        rep.message
    )


def test_reordered_records_are_named(tmp_path: Path) -> None:
    log = filled(tmp_path)
    sql(log,
        "UPDATE audit_records SET seq = -1 WHERE seq = 2",
        "UPDATE audit_records SET seq = 2 WHERE seq = 5",
        "UPDATE audit_records SET seq = 5 WHERE seq = -1")
    rep = log.verify()
    assert not rep.ok
    assert rep.reordered == (2, 5) and rep.edited == () and rep.deleted == ()
    assert findings(rep) == {"reordered": (2, 5)}
    assert "Records 2 and 5 are out of place" in rep.message
    assert "seq 2 holds the record written as 5" in rep.message
    assert "seq 5 holds the record written as 2" in rep.message


def test_swapping_contents_is_also_reordering(tmp_path: Path) -> None:
    log = filled(tmp_path)
    con = sqlite3.connect(log.path)
    get = "SELECT body, prev_hash, hash, mac FROM audit_records WHERE seq = ?"
    r3, r4 = con.execute(get, (3,)).fetchone(), con.execute(get, (4,)).fetchone()
    put = "UPDATE audit_records SET body = ?, prev_hash = ?, hash = ?, mac = ? WHERE seq = ?"
    con.execute(put, (*r4, 3))
    con.execute(put, (*r3, 4))
    con.commit()
    con.close()
    rep = log.verify()
    assert not rep.ok and rep.reordered == (3, 4) and rep.edited == ()
    assert findings(rep) == {"reordered": (3, 4)}
    assert "seq 3 holds the record written as 4" in rep.message


def test_tail_truncation_needs_an_exported_head(tmp_path: Path) -> None:
    log = filled(tmp_path, 6)
    exported = Head.from_json(log.head().to_json())  # e.g. shipped off the host
    assert exported.seq == 6

    # a plain DELETE of the tail is caught by the stored head
    sql(log, "DELETE FROM audit_records WHERE seq >= 5")
    naive = log.verify()
    assert naive.truncated == (5, 6) and "missing at the end" in naive.message
    assert findings(naive) == {"truncated": (5, 6)}

    # an attacker who also rewinds the stored head: undetectable without the exported head ...
    _, _, h4 = row(log, 4)
    sql(log, "UPDATE audit_meta SET value = '4' WHERE key = 'head_seq'")
    sql(log, "UPDATE audit_meta SET value = ? WHERE key = 'head_hash'", args=(h4,))
    assert log.verify().ok
    # ... and detected against it, naming the missing records
    rep = log.verify(anchor=exported)
    assert not rep.ok and rep.truncated == (5, 6)
    assert "Records 5 and 6 are missing at the end" in rep.message
    assert "exported head names seq 6" in rep.message


def test_anchor_detects_a_rewritten_chain_and_a_foreign_head(tmp_path: Path) -> None:
    log = filled(tmp_path, 3)
    exported = log.head()
    other = AuditLog(tmp_path / "other.sqlite")
    assert "belongs to audit log" in log.verify(anchor=other.head()).message
    # rewrite record 3 (recomputed hash, stored head updated): the exported head disagrees
    body, prev, _ = row(log, 3)
    body = body.replace("ann", "eve")
    h = hashlib.sha256(bytes.fromhex(prev) + body.encode()).hexdigest()
    sql(log, "UPDATE audit_records SET body = ?, hash = ? WHERE seq = 3", args=(body, h))
    sql(log, "UPDATE audit_meta SET value = ? WHERE key = 'head_hash'", args=(h,))
    chain = AuditLog(log.path, chain_only=True)
    assert chain.verify().ok  # without key or anchor, a rewritten last record is invisible
    rep = chain.verify(anchor=exported)
    assert not rep.ok and "Record 3 differs from the exported head" in rep.message


def test_appends_after_truncation_leave_a_visible_gap(tmp_path: Path) -> None:
    log = filled(tmp_path, 5)
    sql(log, "DELETE FROM audit_records WHERE seq >= 4")
    rec = log.append(event(9))
    assert rec.seq == 6  # chains to the stored head, not to the surviving last row
    assert log.verify().deleted == (4, 5)
    assert findings(log.verify()) == {"deleted": (4, 5)}


# ------------------------------------------------------------------------------ concurrency


def test_concurrent_appends_from_threads_keep_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "party.sqlite"
    AuditLog(path)
    shared = AuditLog(path)
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        log = shared if t % 2 else AuditLog(path)
        try:
            for i in range(15):
                log.append(event(100 * t + i))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rep = shared.verify()
    assert rep.ok, rep.message
    assert rep.records == 90 and rep.head_seq == 90
    assert sorted(r.event["session_id"] for r in shared.records(limit=None)) == sorted(
        f"s{100 * t + i}" for t in range(6) for i in range(15)
    )


APPENDER = textwrap.dedent(
    """
    import sys
    from parties.privacy.audit import AuditEvent, AuditLog
    log = AuditLog(sys.argv[1])
    for i in range(20):
        log.append(AuditEvent(caller="c", analyst="ann", session_id=f"{sys.argv[2]}-{i}",
                              computation="count", outcome="accepted"))
    """
)


def test_concurrent_appends_from_processes_keep_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "party.sqlite"
    AuditLog(path)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [
        subprocess.Popen([sys.executable, "-c", APPENDER, str(path), f"p{i}"], cwd=ROOT, env=env,
                         stderr=subprocess.PIPE, text=True)
        for i in range(3)
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    rep = AuditLog(path).verify()
    assert rep.ok, rep.message
    assert rep.records == 60


# ------------------------------------------------------------------------------ metadata only


@pytest.mark.parametrize(
    "bad",
    [
        {"columns": (b"age",)},
        {"columns": "age"},
        {"reason": b"raw bytes"},
        {"filter": np.arange(3)},
        {"rho": float("nan")},
        {"rho": -1.0},
        {"epsilon": True},
        {"delta": "1e-6"},
        {"outcome": "done"},
        {"session_id": 12345},
        {"caller_fingerprint": "not-hex"},
        {"reason": "x" * 5000},
        {"analyst": {"nested": "object"}},
    ],
)
def test_events_carry_only_metadata(tmp_path: Path, bad: dict[str, object]) -> None:
    with pytest.raises(AuditError):
        event(1, **bad)
    log = AuditLog(tmp_path / "a.sqlite")
    with pytest.raises(AuditError):
        log.append({"caller": "c"})  # type: ignore[arg-type]
    assert len(log) == 0


# ------------------------------------------------------------------------------ the key


def test_key_file_is_private_and_required(tmp_path: Path) -> None:
    log = filled(tmp_path, 2)
    key = default_key_path(log.path)
    assert key.is_file() and stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert len(key.read_bytes()) == 32
    assert stat.S_IMODE(os.stat(log.path).st_mode) == 0o600

    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(os.urandom(32))
    wrong.chmod(0o600)
    with pytest.raises(AuditError, match="is not the MAC key"):
        AuditLog(log.path, key_path=wrong)
    wrong.chmod(0o644)
    with pytest.raises(AuditError, match="chmod 600"):
        AuditLog(log.path, key_path=wrong)

    key.rename(tmp_path / "elsewhere.key")
    with pytest.raises(AuditError, match="missing"):
        AuditLog(log.path)
    ro = AuditLog(log.path, chain_only=True)
    rep = ro.verify()
    assert rep.ok and not rep.keyed and "MACs were not checked" in rep.message
    with pytest.raises(AuditError, match="chain-only"):
        ro.append(event(3))
    assert AuditLog(log.path, key_path=tmp_path / "elsewhere.key").verify().keyed


def test_schema_version_is_checked(tmp_path: Path) -> None:
    log = filled(tmp_path, 1)
    sql(log, "UPDATE audit_meta SET value = '7' WHERE key = 'schema_version'")
    with pytest.raises(AuditError, match="schema version 7"):
        AuditLog(log.path)


def test_shares_one_database_file_with_the_ledger(tmp_path: Path) -> None:
    from parties.privacy.ledger import Ledger

    path = tmp_path / "party.sqlite"
    ledger, log = Ledger(path), AuditLog(path)
    ledger.set_budget("ann", "clinic", 1.0)
    ledger.reserve("s1", "ann", "clinic", 0.25)
    log.append(event(1, rho=0.25))
    assert Ledger(path).remaining("ann", "clinic") == pytest.approx(0.75)
    assert AuditLog(path).verify().ok and len(log) == 1
