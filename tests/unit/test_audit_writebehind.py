"""Audit and ledger writes off the critical path (issue 14), on real SQLite files.

What is checked, each against the crash semantics stated in :mod:`parties.privacy.store`,
:class:`parties.privacy.guard.PrivacyGuard` and SECURITY.md ("Audit and ledger writes"):

* a write queued on the kept-open connection is ordered before every later synchronous read or
  write of the same process (a refund after a queued commit is refused);
* the hash chain verifies after many concurrent sessions (threads reserving, committing,
  recording, refusing at once), and nothing queued is lost by a clean close;
* a node process killed (SIGKILL, a real ``os.kill``) while its queued writes cannot reach the
  disk loses exactly those writes -- never the synchronous reservation, never a write out of the
  middle -- and the chain still verifies; restarted, it keeps the pending charge as spent;
* killed after the release was settled, the released record and the spent charge are on disk;
* over an in-process federation (real nodes, real files, only the network replaced), at every
  protocol message a party sends, its reservation and its "accepted" record are already on disk
  (read from another connection at that moment), and when the coordinator returns the result
  every party's "released" record is on disk.
"""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from parties.config import DataSourceConfig, FederationConfig, PartyConfig, TLSFiles
from parties.errors import StorageError
from parties.federation import inprocess
from parties.federation.inprocess import InProcessFederation
from parties.federation.local import init_federation
from parties.privacy.audit import AuditEvent, AuditLog
from parties.privacy.guard import PrivacyGuard
from parties.privacy.ledger import Ledger
from parties.privacy.policy import PolicyRequest
from parties.privacy.store import Database
from smpc import dp
from smpc.stats import StatSpec
from tests.unit.test_policy import policy

ROOT = Path(__file__).resolve().parents[2]


def guard_config(db: Path) -> PartyConfig:
    here = db.parent / "unused"
    return PartyConfig(
        name="org-a", host="127.0.0.1", port=0, tls=TLSFiles(here, here, here),
        data=DataSourceConfig(here, "csv"), policy=policy(), database=db,
        federation=FederationConfig("demo", here, []))


def dp_request(sid: str, rho: float) -> PolicyRequest:
    return PolicyRequest(analyst="ann", kind="stat", columns=("x",), session_id=sid,
                         computation="mean", cost=dp.PrivacyCost(rho, 1e-6))


def on_disk(db: Path, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Rows read through a fresh connection (what another process would see now)."""
    con = sqlite3.connect(db)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def outcomes_on_disk(db: Path, sid: str) -> list[str]:
    return [o for (o,) in on_disk(
        db, "SELECT json_extract(body, '$.outcome') FROM audit_records "
            "WHERE json_extract(body, '$.session_id') = ? ORDER BY seq", (sid,))]


# ------------------------------------------------------------------------------ ordering


def test_a_read_or_write_waits_for_the_writes_queued_before_it(tmp_path: Path) -> None:
    """A queued write held inside the writer: a later synchronous read does not return before
    it (it would otherwise miss the caller's own write), then sees it.  Catches a read that
    skips the queue.  (Only "not returned yet" is checked while the write is held, so a slow
    machine cannot fail the test; a read that skipped the queue returns at once and fails it.)
    """
    db = Database(tmp_path / "x.db", "test database", StorageError)
    with db.write() as con:
        con.execute("CREATE TABLE t (x INTEGER)")
    hold, entered = threading.Event(), threading.Event()

    def slow_write() -> None:
        entered.set()
        assert hold.wait(30)
        with db.write() as con:
            con.execute("INSERT INTO t VALUES (7)")

    ticket = db.later(slow_write)
    assert entered.wait(10)
    seen: list[list[tuple[int]]] = []

    def reader() -> None:
        with db.read() as con:
            seen.append(con.execute("SELECT x FROM t").fetchall())

    th = threading.Thread(target=reader)
    th.start()
    th.join(0.3)
    assert th.is_alive() and seen == []  # still waiting for the queued write
    hold.set()
    th.join(10)
    assert seen == [[(7,)]]
    db.settle([ticket])
    db.close()


def test_a_failing_queued_write_rolls_back_alone_and_is_reported(tmp_path: Path) -> None:
    """Writes batched in one transaction: one that fails is rolled back alone (its savepoint),
    the others stand, and :meth:`settle` names the failure for its own ticket only.  Catches a
    batch that drops its neighbours or a failure that passes silently."""
    db = Database(tmp_path / "x.db", "test database", StorageError)
    with db.write() as con:
        con.execute("CREATE TABLE t (x INTEGER PRIMARY KEY)")
    gate = threading.Event()

    def insert(x: int) -> None:
        gate.wait(10)
        with db.write() as con:
            con.execute("INSERT INTO t VALUES (?)", (x,))

    good1 = db.later(lambda: insert(1))
    bad = db.later(lambda: insert(1))   # the same key: fails
    good2 = db.later(lambda: insert(2))
    gate.set()
    db.settle([good1, good2])
    with pytest.raises(StorageError, match="UNIQUE constraint failed"):
        db.settle([bad])
    assert on_disk(db.path, "SELECT x FROM t ORDER BY x") == [(1,), (2,)]
    db.close()


# ------------------------------------------------------------------------------ concurrency


def test_the_chain_verifies_after_many_concurrent_sessions(tmp_path: Path) -> None:
    """8 threads x 25 sessions each run the node's sequence at once (reserve, accepted record,
    commit, released record settled), while every fifth session is refused instead.  After a
    clean close, a fresh reader finds a valid chain (keyed and keyless), every record once and
    in each session's order, and every charge spent with its 'committed' event.  Catches a
    queued append that chains to a stale head, a lost or duplicated queued write, and a commit
    that never reaches the ledger."""
    path = tmp_path / "party.db"
    g = PrivacyGuard(guard_config(path))
    g.start()
    n_threads, per = 8, 25
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(per):
                sid = f"{k:02d}{i:014d}"
                req = dp_request(sid, 1e-5)
                if i % 5 == 4:
                    g.settle([g.record(req, "refused", "refused by the test")])
                    continue
                g.reserve(req)
                accepted = g.record(req, "accepted", "prepared")
                g.settle([accepted])
                g.commit(sid)
                g.settle([g.record(req, "released", "done")])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    g.close()

    log = AuditLog(path)
    rep = log.verify()
    assert rep.ok, rep.message
    assert AuditLog(path, chain_only=True).verify().ok
    by_session: dict[str, list[str]] = {}
    for r in log.records(limit=None):
        by_session.setdefault(r.event["session_id"], []).append(r.event["outcome"])
    assert by_session.pop("") == ["accepted", "accepted"]  # the two budgets set at start
    assert len(by_session) == n_threads * per
    for sid, outs in by_session.items():
        assert outs == (["refused"] if int(sid[2:]) % 5 == 4 else ["accepted", "released"]), sid
    led = Ledger(path)
    charges = led.charges()
    assert len(charges) == n_threads * per * 4 // 5
    assert all(c.state == "spent" for c in charges)
    committed = {e["session_id"] for e in led.events() if e["event"] == "committed"}
    assert committed == {c.session_id for c in charges}
    refused = [e for e in led.events() if e["event"] == "refused"]
    assert len(refused) == n_threads * per // 5


# ------------------------------------------------------------------------------ crashes

NODE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from parties.errors import StorageError
    from parties.privacy.audit import AuditEvent, AuditLog
    from parties.privacy.ledger import Ledger
    from parties.privacy.store import Database

    # the calls PrivacyGuard and PartyNode make, in the node's order, on one kept-open database
    path, stage, sid = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    db = Database(path, "party database", StorageError)
    ledger, audit = Ledger(path, db=db), AuditLog(path, db=db)
    ledger.set_budget("ann", "org-a", 1.0)

    def record(outcome):
        event = AuditEvent(caller="coordinator", analyst="ann", session_id=sid,
                           computation="mean", outcome=outcome, rho=0.01)
        return db.later(lambda: audit.append(event))            # PrivacyGuard.record

    ledger.reserve(sid, "ann", "org-a", 0.01)    # synchronous: durable when it returns
    print("reserved", flush=True)
    sys.stdin.readline()                         # the test looks at the file now
    accepted = record("accepted")                # Prepare answers without waiting for it
    if stage == "queued":                        # the writer is held by the test's lock
        print("queued", flush=True)
    else:                                        # the node's flow up to Await
        db.settle([accepted])                    # Run: before anything leaves
        ledger.commit(sid)                       # Run: synchronous
        db.settle([record("released")])          # before Await answers
        print("settled", flush=True)
    sys.stdin.readline()                         # killed here
    """
)


def _start(path: Path, stage: str, sid: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", NODE, str(path), stage, sid],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)


def _kill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL


def test_killed_with_writes_queued_keeps_the_reservation_and_a_valid_chain(
        tmp_path: Path) -> None:
    """A node process reserves (the charge is on disk, seen from another connection at that
    moment), then queues its accepted record while the test holds SQLite's write lock (so the
    writer cannot commit it), and is SIGKILLed.  What the docstrings state: the queued record
    is lost, the reservation is not (PENDING, counted), the chain verifies; the restarted node
    keeps the charge as spent and audits that.  Catches a reservation written behind."""
    path, sid = tmp_path / "party.db", "c" * 16
    proc = _start(path, "queued", sid)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "reserved", proc.stderr.read()
        assert on_disk(path, "SELECT state FROM ledger_charges WHERE session_id = ?",
                       (sid,)) == [("pending",)]
        n_before = on_disk(path, "SELECT count(*) FROM audit_records")[0][0]
        lock = sqlite3.connect(path, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")              # the writer now waits on this lock
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "queued"
        _kill(proc)
        lock.execute("ROLLBACK")
        lock.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert on_disk(path, "SELECT count(*) FROM audit_records")[0][0] == n_before
    assert outcomes_on_disk(path, sid) == []
    assert on_disk(path, "SELECT state FROM ledger_charges WHERE session_id = ?",
                   (sid,)) == [("pending",)]
    assert AuditLog(path).verify().ok
    again = Ledger(path)                              # the restart: PrivacyGuard.start
    assert [(r.session_id, r.state) for r in again.recover()] == [(sid, "spent")]
    assert again.remaining("ann", "org-a") == pytest.approx(0.99)


def test_killed_after_the_release_was_settled_keeps_every_record(tmp_path: Path) -> None:
    """A node process that settled its released record (the point before Await answers) and
    is then SIGKILLed: the accepted and released records and the spent charge are on disk, and
    the chain verifies.  Catches a settle that returns before the record is durable."""
    path, sid = tmp_path / "party.db", "d" * 16
    proc = _start(path, "settled", sid)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "reserved", proc.stderr.read()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "settled"
        _kill(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert outcomes_on_disk(path, sid) == ["accepted", "released"]
    assert on_disk(path, "SELECT state FROM ledger_charges WHERE session_id = ?",
                   (sid,)) == [("spent",)]
    assert AuditLog(path).verify().ok


# ------------------------------------------------------------------------------ the node flow


def _write_csv(path: Path, values: np.ndarray) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["age"])
        w.writerows([[repr(float(v))] for v in values])


@pytest.mark.parametrize("mode", ["dp", "exact"])
def test_records_are_on_disk_before_a_message_leaves_and_before_the_result_returns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """Three parties in process (real configs, real SQLite files, only the network replaced)
    compute a mean, with DP and exact.  Each protocol message a party sends is observed at the
    moment it is sent: its "accepted" record is already on disk, and (DP) its charge for the
    session (pending or spent) -- read through another connection.  (Exact mode matters: no
    synchronous commit at Run orders the queue there, only the wait for the accepted record.)  When
    the coordinator returns the result, every party's "released" record is on disk.  Catches a
    reservation or an accepted record written behind past the first message, and a released
    record settled after Await answered (deterministically: every append is slowed by 0.2 s,
    so a record the node did not wait for is still missing when the message leaves or the
    result returns)."""
    rng = np.random.default_rng(14)
    files = []
    for k in range(3):
        files.append(tmp_path / f"p{k}.csv")
        _write_csv(files[-1], rng.normal(50, 10, 30))
    init_federation(tmp_path / "fed", files, min_cohort_size=5, allow_exact=mode == "exact")
    observed: list[tuple[str, list[tuple[object, ...]], list[str], str]] = []
    original = inprocess.InProcessTransport._send
    append = AuditLog.append

    def slow_append(self: AuditLog, event: AuditEvent) -> object:
        time.sleep(0.2)  # a slow disk: a record not waited for would still be missing below
        return append(self, event)

    monkeypatch.setattr(AuditLog, "append", slow_append)

    with InProcessFederation.open(tmp_path / "fed") as fed:
        dbs = {name: node.cfg.database for name, node in fed.parties.items()}

        def spy(self: inprocess.InProcessTransport, to: str, tag: str, payload: object) -> None:
            me, sid = self.me, self.session.id
            if me in dbs:
                observed.append((me, on_disk(
                    dbs[me], "SELECT state FROM ledger_charges WHERE session_id = ?", (sid,)),
                    outcomes_on_disk(dbs[me], sid), sid))
            original(self, to, tag, payload)  # type: ignore[arg-type]

        monkeypatch.setattr(inprocess.InProcessTransport, "_send", spy)
        request = dp.DPRequest(epsilon=0.5, delta=1e-6, bounds={"age": (0.0, 120.0)})
        fed.compute(StatSpec("mean", ("age",), dp=request if mode == "dp" else None))
        sid = observed[0][3]
        released = {name: outcomes_on_disk(db, sid) for name, db in dbs.items()}
    assert {me for me, _, _, _ in observed} == set(dbs)   # every party sent something
    assert {s for _, _, _, s in observed} == {sid}
    for me, charge, outs, _ in observed:
        expected = ([("pending",)], [("spent",)]) if mode == "dp" else ([],)
        assert charge in expected, (me, charge)
        assert outs[:1] == ["accepted"], (me, outs)
    assert all(outs == ["accepted", "released"] for outs in released.values()), released
