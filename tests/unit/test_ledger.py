"""The privacy-budget ledger on real SQLite files: arithmetic, refusals, races between threads and
between processes, restarts, and a node killed between charging and releasing."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from parties.errors import PolicyError, SessionError
from parties.privacy.ledger import BudgetExceeded, ChargeReplay, Ledger, LedgerError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    led = Ledger(tmp_path / "party.sqlite")
    led.set_budget("ann", "clinic", 1.0)
    return led


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# --------------------------------------------------------------------------- arithmetic


def test_reserve_commit_abort_arithmetic(ledger: Ledger) -> None:
    r = ledger.reserve("s1", "ann", "clinic", 0.3)
    assert r.state == "pending" and r.rho == 0.3
    assert r.remaining == pytest.approx(0.7)
    assert ledger.remaining("ann", "clinic") == pytest.approx(0.7)  # pending already counts

    c = ledger.commit("s1")
    assert c.state == "spent" and c.settled_at is not None
    assert ledger.remaining("ann", "clinic") == pytest.approx(0.7)

    ledger.reserve("s2", "ann", "clinic", 0.5)
    st = ledger.status("ann", "clinic")
    assert st is not None
    assert (st.total, st.spent, st.pending) == (1.0, pytest.approx(0.3), pytest.approx(0.5))
    assert st.remaining == pytest.approx(0.2)

    a = ledger.abort("s2", "protocol failed before this party sent its contribution")
    assert a.state == "refunded" and "before this party sent" in (a.reason or "")
    assert ledger.remaining("ann", "clinic") == pytest.approx(0.7)

    # other (analyst, dataset) pairs are separate budgets
    assert ledger.remaining("bob", "clinic") == 0.0
    assert ledger.remaining("ann", "other") == 0.0


def test_decimal_charges_fill_the_budget_exactly(ledger: Ledger) -> None:
    for i in range(10):  # 10 x 0.1 == 1.0 despite binary rounding
        ledger.reserve(f"s{i}", "ann", "clinic", 0.1)
    assert ledger.remaining("ann", "clinic") == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(BudgetExceeded):
        ledger.reserve("s10", "ann", "clinic", 1e-6)


def test_over_budget_is_refused_with_remaining_and_cost(ledger: Ledger) -> None:
    ledger.reserve("s1", "ann", "clinic", 0.75)
    with pytest.raises(BudgetExceeded) as ei:
        ledger.reserve("s2", "ann", "clinic", 0.5)
    e = ei.value
    msg = str(e)
    assert "remaining rho 0.25" in msg and "requested rho 0.5" in msg and "'ann'" in msg
    assert "\n" not in msg and msg.endswith(".")
    assert e.remaining == pytest.approx(0.25) and e.requested == 0.5 and e.total == 1.0
    assert isinstance(e, PolicyError)  # the node answers PERMISSION_DENIED
    # nothing was charged, the refusal is recorded
    assert ledger.charge("s2") is None
    assert ledger.remaining("ann", "clinic") == pytest.approx(0.25)
    refused = [ev for ev in ledger.events() if ev["event"] == "refused"]
    assert refused and refused[-1]["session_id"] == "s2" and "over budget" in refused[-1]["detail"]
    # the refused session id was never charged, so it may still be used within budget
    assert ledger.reserve("s2", "ann", "clinic", 0.25).state == "pending"


def test_no_budget_set_is_refused(ledger: Ledger) -> None:
    with pytest.raises(BudgetExceeded, match=r"no privacy budget is set.*remaining rho 0"):
        ledger.reserve("s1", "carol", "clinic", 0.1)


def test_state_transitions_that_must_fail(ledger: Ledger) -> None:
    ledger.reserve("spent", "ann", "clinic", 0.1)
    ledger.commit("spent")
    assert ledger.commit("spent").state == "spent"  # idempotent
    with pytest.raises(LedgerError, match="already spent"):
        ledger.abort("spent", "too late")

    ledger.reserve("gone", "ann", "clinic", 0.1)
    ledger.abort("gone", "failed before release")
    assert ledger.abort("gone", "again").state == "refunded"  # idempotent
    with pytest.raises(LedgerError, match="must not be released"):
        ledger.commit("gone")

    with pytest.raises(LedgerError, match="no privacy-budget charge"):
        ledger.commit("never")
    with pytest.raises(LedgerError, match="no privacy-budget charge"):
        ledger.abort("never", "x")
    ledger.reserve("p", "ann", "clinic", 0.1)
    with pytest.raises(LedgerError, match="reason"):
        ledger.abort("p", "  ")
    assert ledger.charge("p").state == "pending"  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", [0, -0.1, float("nan"), float("inf"), True, "0.1", None])
def test_invalid_rho_is_refused(ledger: Ledger, bad: object) -> None:
    with pytest.raises(LedgerError):
        ledger.reserve("s", "ann", "clinic", bad)  # type: ignore[arg-type]
    assert ledger.charge("s") is None


def test_lowering_the_budget_never_refunds(ledger: Ledger) -> None:
    ledger.reserve("s1", "ann", "clinic", 0.6)
    ledger.set_budget("ann", "clinic", 0.5)
    assert ledger.remaining("ann", "clinic") == 0.0
    with pytest.raises(BudgetExceeded):
        ledger.reserve("s2", "ann", "clinic", 0.01)
    n = len(ledger.events())
    ledger.set_budget("ann", "clinic", 0.5)  # unchanged: no new event
    assert len(ledger.events()) == n


def test_replayed_session_id_is_refused(ledger: Ledger) -> None:
    ledger.reserve("s1", "ann", "clinic", 0.2)
    with pytest.raises(ChargeReplay, match="only once") as ei:
        ledger.reserve("s1", "ann", "clinic", 0.2)
    assert isinstance(ei.value, SessionError)
    assert ledger.remaining("ann", "clinic") == pytest.approx(0.8)  # not charged twice
    ledger.abort("s1", "failed before release")
    with pytest.raises(ChargeReplay):  # a refunded session id is not reusable either
        ledger.reserve("s1", "ann", "clinic", 0.2)
    assert ledger.remaining("ann", "clinic") == pytest.approx(1.0)


# --------------------------------------------------------------------------- concurrency


def test_threads_racing_for_the_last_budget(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    Ledger(path).set_budget("ann", "clinic", 1.0)
    shared = Ledger(path)
    n = 8
    barrier = threading.Barrier(n)
    results: list[str] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        led = shared if i % 2 else Ledger(path)  # shared object and own objects
        barrier.wait()
        try:
            led.reserve(f"t{i}", "ann", "clinic", 0.6)
            out = "ok"
        except BudgetExceeded:
            out = "refused"
        with lock:
            results.append(out)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["ok"] + ["refused"] * (n - 1)
    assert shared.remaining("ann", "clinic") == pytest.approx(0.4)


def test_many_threads_never_overspend(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    led = Ledger(path)
    led.set_budget("ann", "clinic", 1.0)
    ok: list[int] = []

    def worker(i: int) -> None:
        try:
            led.reserve(f"t{i}", "ann", "clinic", 0.1)
            ok.append(i)
        except BudgetExceeded:
            pass

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ok) == 10
    assert len([c for c in led.charges() if c.counted]) == 10


RACER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from parties.privacy.ledger import BudgetExceeded, Ledger
    path, go, name = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    led = Ledger(path)
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.001)
    try:
        led.reserve(name, "ann", "clinic", 0.6)
        print(json.dumps({"ok": True}), flush=True)
    except BudgetExceeded as exc:
        print(json.dumps({"ok": False, "msg": str(exc)}), flush=True)
    """
)


def test_processes_racing_for_the_last_budget(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    Ledger(path).set_budget("ann", "clinic", 1.0)
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(path), str(go), f"p{i}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=child_env(),
        )
        for i in range(4)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
        go.touch()
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=30)
            assert p.returncode == 0, err
            outs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert sum(o["ok"] for o in outs) == 1
    assert all("remaining rho 0.4" in o["msg"] for o in outs if not o["ok"])
    assert Ledger(path).remaining("ann", "clinic") == pytest.approx(0.4)


# --------------------------------------------------------------------------- persistence


def test_survives_restart_and_stores_what_it_says(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    led = Ledger(path)
    led.set_budget("ann", "clinic", 2.0)
    led.reserve("s1", "ann", "clinic", 0.5)
    led.commit("s1")
    led.reserve("s2", "ann", "clinic", 0.25)
    del led

    again = Ledger(path)
    assert again.remaining("ann", "clinic") == pytest.approx(1.25)
    assert {c.session_id: c.state for c in again.charges()} == {"s1": "spent", "s2": "pending"}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute(
            "SELECT value FROM ledger_meta WHERE key = 'schema_version'"
        ).fetchone() == ("1",)
        stamps = [r[0] for r in con.execute("SELECT reserved_at FROM ledger_charges")]
        stamps += [r[0] for r in con.execute("SELECT time FROM ledger_events")]
        for s in stamps:
            assert dt.datetime.fromisoformat(s).utcoffset() == dt.timedelta(0)
        con.execute("UPDATE ledger_meta SET value = '99' WHERE key = 'schema_version'")
        con.commit()
    finally:
        con.close()
    with pytest.raises(LedgerError, match="schema version 99"):
        Ledger(path)


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="does not exist"):
        Ledger(tmp_path / "nope" / "l.sqlite")


CRASHER = textwrap.dedent(
    """
    import sys, time
    from parties.privacy.ledger import Ledger
    led = Ledger(sys.argv[1])
    led.reserve("crash-1", "ann", "clinic", 0.6)
    print("reserved", flush=True)
    time.sleep(60)   # the result would be released here; the node is killed first
    led.commit("crash-1")
    """
)


def test_node_killed_between_reserve_and_commit(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    Ledger(path).set_budget("ann", "clinic", 1.0)
    with subprocess.Popen(
        [sys.executable, "-c", CRASHER, str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT, env=child_env(),
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "reserved"
            os.kill(proc.pid, signal.SIGKILL)  # killed after charging, before releasing
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == -signal.SIGKILL

    led = Ledger(path)  # the restart
    # not lost: the charge still counts ...
    assert led.remaining("ann", "clinic") == pytest.approx(0.4)
    assert [c.session_id for c in led.pending()] == ["crash-1"]
    # ... and not spendable twice: neither by replaying the session nor by another request
    with pytest.raises(ChargeReplay):
        led.reserve("crash-1", "ann", "clinic", 0.6)
    with pytest.raises(BudgetExceeded, match=r"remaining rho 0\.4"):
        led.reserve("other", "ann", "clinic", 0.6)

    recovered = led.recover()
    assert [r.session_id for r in recovered] == ["crash-1"]
    assert recovered[0].state == "spent" and "kept as spent at recovery" in (
        recovered[0].reason or ""
    )
    assert led.pending() == []
    assert led.remaining("ann", "clinic") == pytest.approx(0.4)
    with pytest.raises(LedgerError, match="already spent"):
        led.abort("crash-1", "operator guess")
    ev = [e for e in led.events() if e["event"] == "recovered"]
    assert ev and ev[0]["session_id"] == "crash-1"
    assert led.recover() == []  # a second start-up has nothing to settle
    assert Ledger(path).charge("crash-1").state == "spent"  # type: ignore[union-attr]


def test_recover_refunds_only_what_the_operator_names(ledger: Ledger) -> None:
    ledger.reserve("a", "ann", "clinic", 0.2)
    ledger.reserve("b", "ann", "clinic", 0.3)
    with pytest.raises(LedgerError, match="reason"):
        ledger.recover(refund=["a"])
    with pytest.raises(LedgerError, match="no pending charge for session"):
        ledger.recover(refund=["zzz"], reason="x")
    assert len(ledger.pending()) == 2  # the failed calls changed nothing
    out = {r.session_id: r for r in ledger.recover(refund=["a"], reason="coordinator log shows "
                                                   "the session failed at prepare")}
    assert out["a"].state == "refunded" and "operator" in (out["a"].reason or "")
    assert out["b"].state == "spent"
    assert ledger.remaining("ann", "clinic") == pytest.approx(0.7)



# --------------------------------------------------------------------------- the boundary


def test_decimal_charges_that_overshoot_in_binary_still_fit(tmp_path: Path) -> None:
    """0.1 + 0.2 is 0.30000000000000004 in binary, above the double 0.3 by 5.6e-17 (1.9e-16
    relative), inside the documented 1e-12 relative slack: both charges fit a 0.3 budget and
    nothing remains. Catches a check without the slack (``sum > total``) or with ``>=``."""
    led = Ledger(tmp_path / "l.sqlite")
    led.set_budget("ann", "clinic", 0.3)
    led.reserve("s1", "ann", "clinic", 0.1)
    assert led.reserve("s2", "ann", "clinic", 0.2).state == "pending"
    assert led.remaining("ann", "clinic") == 0.0


def test_exactly_full_is_accepted_and_anything_beyond_the_slack_refused(ledger: Ledger) -> None:
    """0.25 spent + 0.75 pending fills the budget of 1.0 exactly (all three are exact binary
    fractions): accepted, nothing remains. Then the smallest meaningful charge is refused, and a
    single charge over the whole budget by 1e-9 relative (1000x the slack) is refused while one
    over by 5e-13 relative (half the slack) fits. Catches ``>=`` at the boundary, a slack wider
    than documented, and a check that leaves out the new charge or the pending ones."""
    ledger.reserve("s1", "ann", "clinic", 0.25)
    ledger.commit("s1")
    assert ledger.reserve("s2", "ann", "clinic", 0.75).remaining == 0.0
    with pytest.raises(BudgetExceeded) as ei:
        ledger.reserve("s3", "ann", "clinic", 1e-9)
    assert (ei.value.remaining, ei.value.requested, ei.value.total) == (0.0, 1e-9, 1.0)
    assert "remaining rho 0 of 1, requested rho 1e-09" in str(ei.value)

    ledger.set_budget("ann", "fresh", 1.0)
    with pytest.raises(BudgetExceeded):
        ledger.reserve("s4", "ann", "fresh", 1.0 + 1e-9)
    assert ledger.reserve("s5", "ann", "fresh", 1.0 + 5e-13).state == "pending"


def test_status_separates_spent_pending_and_refunded(ledger: Ledger) -> None:
    """spent 0.25, pending 0.5, refunded 0.125 on a budget of 1: remaining 0.25 = 1 - 0.25 - 0.5
    (all exact in binary, so compared exactly). Catches a remaining that ignores the pending
    charges, counts the refunded one, or counts a charge twice; ``budgets()`` agrees."""
    ledger.reserve("spent", "ann", "clinic", 0.25)
    ledger.commit("spent")
    ledger.reserve("pending", "ann", "clinic", 0.5)
    ledger.reserve("refunded", "ann", "clinic", 0.125)
    ledger.abort("refunded", "failed before this party sent anything")
    st = ledger.status("ann", "clinic")
    assert st is not None
    assert (st.total, st.spent, st.pending, st.remaining) == (1.0, 0.25, 0.5, 0.25)
    assert ledger.remaining("ann", "clinic") == 0.25
    assert ledger.budgets() == [st]
    assert [c.remaining for c in ledger.charges()] == [0.25, 0.25, 0.25]
    assert {c.session_id: c.counted for c in ledger.charges()} == {
        "spent": True, "pending": True, "refunded": False}


def test_budgets_of_other_analysts_and_datasets_are_separate(ledger: Ledger) -> None:
    """0.9 charged to (ann, clinic) leaves (ann, registry) and (bob, clinic) untouched: each can
    still take its whole budget. Catches a budget query that filters by analyst or by dataset
    only."""
    ledger.set_budget("ann", "registry", 1.0)
    ledger.set_budget("bob", "clinic", 1.0)
    ledger.reserve("a1", "ann", "clinic", 0.9)
    assert ledger.remaining("ann", "registry") == 1.0
    assert ledger.remaining("bob", "clinic") == 1.0
    assert ledger.reserve("a2", "ann", "registry", 1.0).remaining == 0.0
    assert ledger.reserve("b1", "bob", "clinic", 1.0).remaining == 0.0
    assert ledger.remaining("ann", "clinic") == pytest.approx(0.1)


def test_a_session_id_is_charged_once_across_analysts(ledger: Ledger) -> None:
    """A session id charged to one analyst cannot be charged to another: the replay is refused
    as such (not as a database error) and charges neither. Catches a replay check scoped to
    one (analyst, dataset)."""
    ledger.set_budget("bob", "clinic", 1.0)
    ledger.reserve("s1", "ann", "clinic", 0.5)
    with pytest.raises(ChargeReplay):
        ledger.reserve("s1", "bob", "clinic", 0.5)
    assert ledger.remaining("bob", "clinic") == 1.0
    assert ledger.charge("s1").analyst == "ann"  # type: ignore[union-attr]


def test_recovery_settles_only_pending_charges(ledger: Ledger) -> None:
    """A spent and a refunded charge keep their state and reason through a recovery; the
    pending one becomes spent, still counted. An operator cannot refund a spent charge by
    naming it at recovery. Catches a recovery that refunds instead of spending, that touches
    settled charges, or that accepts any charge in ``refund``."""
    ledger.reserve("spent", "ann", "clinic", 0.25)
    ledger.commit("spent")
    ledger.reserve("refunded", "ann", "clinic", 0.25)
    ledger.abort("refunded", "failed before this party sent anything")
    ledger.reserve("pending", "ann", "clinic", 0.5)
    before = {c.session_id: (c.state, c.settled_at, c.reason) for c in ledger.charges()}
    with pytest.raises(LedgerError, match="no pending charge for session"):
        ledger.recover(refund=["spent"], reason="the operator is sure")
    assert ledger.charge("spent").state == "spent"  # type: ignore[union-attr]

    out = ledger.recover()
    assert [(r.session_id, r.state) for r in out] == [("pending", "spent")]
    after = {c.session_id: (c.state, c.settled_at, c.reason) for c in ledger.charges()}
    assert after["spent"] == before["spent"] and after["refunded"] == before["refunded"]
    assert ledger.remaining("ann", "clinic") == 0.25  # 1 - 0.25 - 0.5: the pending one counts
