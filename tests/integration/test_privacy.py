"""Privacy controls every party enforces itself, over real node processes (mutual TLS), with the
parties' real SQLite ledgers and audit logs.

The federation (``pfed``): three parties ``org-a``, ``org-b``, ``org-c`` (30 rows each), every
one with the policy: columns ``x``, ``y``, ``group`` for any computation and ``secret`` for
histograms only; analysts ``analyst`` and ``bob`` (``carol`` is in the federation, not in the
policy); minimum cohort 5; clipping bounds x in [0, 20], y in [-10, 10]; differential privacy
required.  Budgets: org-a epsilon 1 at delta 1e-6 (rho 0.02436) per analyst, org-b and org-c
epsilon 10.  ``org-c`` owns a linear model on (x, y).

* each refusal (column, analyst, cohort, exact result, over budget) is made **by the party**:
  the test calls org-a's ``Prepare`` directly with the coordinator's own certificate, as a
  coordinator that asked it to proceed would, and then reads org-a's ledger and audit log;
* an accepted request aborted before ``Run`` is refunded;
* DP statistics through the whole federation (ss and ckks) charge every party exactly once,
  with the bounds the policy filled in, and the audit log shows the cost and who asked;
* two concurrent requests race for the last of org-a's budget: exactly one succeeds;
* a party killed (SIGKILL, ``SMPC_FAULT=after-charge``) between charging and releasing keeps
  the charge after restart, recorded by recovery, and the session can never be charged again;
* ``smpc audit verify`` (a subprocess) detects an edited, a deleted and a reordered record;
* predictions are encrypted at rest; ``smpc outputs read`` decrypts them; the minimum cohort
  applies to the data owner of an inference.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from parties._pb import smpc_pb2 as pb
from parties._pb import smpc_pb2_grpc as pb_grpc
from parties.analyst.client import Client, ComputationFailed, PermissionDenied, Unavailable
from parties.cli.audit import main as audit_main
from parties.config import (
    AnalystEntry,
    PolicyConfig,
    load_federation,
    load_party_config,
    save_config,
)
from parties.federation import local as federation
from parties.pki.certs import (
    issue_node_certificate,
    load_ca,
    load_certificate,
    save_node_credentials,
)
from parties.pki.identity import fingerprint
from parties.privacy.audit import AuditLog
from parties.privacy.ledger import Ledger
from parties.privacy.outputs import load_at_rest_key, output_path
from parties.privacy.policy import PolicyGate, PolicyRequest
from parties.transport import wire
from parties.transport.tls import channel_credentials, channel_options
from smpc import dp
from smpc.errors import InputError
from smpc.linear import LinearModel
from smpc.stats import StatSpec
from tests.integration.signing import signed_statistic
from tests.tolerances import assert_within, ss_logit_bound

from .conftest import write_csv

ORGS = ("org-a", "org-b", "org-c")
RHO_A = dp.rho_from_epsilon(1.0, 1e-6)
MODEL = LinearModel("linear", ("x", "y"), (1.5, -0.25), 2.0)
BOUNDS = {"x": [0.0, 20.0], "y": [-10.0, 10.0]}


# ------------------------------------------------------------------------------ fixture


class PFed:
    def __init__(self, directory: Path, data: dict) -> None:
        self.directory = directory
        self.lay = federation.Layout(directory)
        self.data = data
        self.fed_name = self.lay.federation().name
        self.analyst = Client(directory, timeout=60, parties=ORGS)
        self.bob = Client(self.lay.federation_file, cert=directory / "bob" / "cert.pem",
                          key=directory / "bob" / "key.pem", ca=self.lay.ca_cert, timeout=60,
                          parties=ORGS)
        coord = self.lay.node_dir("coordinator")
        self.coord_creds = channel_credentials(coord / "cert.pem", coord / "key.pem",
                                               self.lay.ca_cert)
        self.coord_fp = fingerprint(load_certificate(coord / "cert.pem"))

    def db(self, party: str) -> Path:
        return self.lay.node_dir(party) / "party.db"

    def ledger(self, party: str) -> Ledger:
        return Ledger(self.db(party))

    def audit(self, party: str) -> AuditLog:
        return AuditLog(self.db(party), chain_only=True)

    def records(self, party: str, session_id: str) -> list[dict]:
        return [r.event for r in self.audit(party).records(limit=None)
                if r.event.get("session_id") == session_id]

    def party_stub(self, party: str):
        entry = self.lay.federation().node(party)
        ch = grpc.secure_channel(entry.address, self.coord_creds,
                                 options=channel_options(party, wire.grpc_options()))
        return ch, pb_grpc.PartyStub(ch)

    def prepare(self, party: str, spec: StatSpec, *, analyst: str = "analyst", where: str = "",
                session_id: str | None = None, timeout: float = 30, hub: str = "coordinator"
                ) -> tuple[str, grpc.RpcError | None]:
        """Call ``party``'s Prepare directly with the coordinator's certificate."""
        sid = session_id or secrets.token_hex(16)
        members = [pb.Member(name=o, role="party") for o in ORGS if o != hub]
        role = "recipient" if spec.backend == "ss" else "aggregator"
        members.append(pb.Member(name=hub, role=role))
        req = pb.PrepareRequest(session_id=sid, kind=pb.SESSION_KIND_STAT,
                                spec_json=json.dumps(spec.to_json()), where=where,
                                members=members, analyst=analyst, tag="stat",
                                timeout_seconds=timeout,
                                signed_request=signed_statistic(
                                    self.directory, spec, where=where, analyst=analyst,
                                    parties=[m.name for m in members if m.role == "party"]))
        ch, stub = self.party_stub(party)
        try:
            stub.Prepare(req, timeout=15)
            return sid, None
        except grpc.RpcError as err:
            return sid, err
        finally:
            ch.close()

    def abort(self, party: str, sid: str) -> None:
        ch, stub = self.party_stub(party)
        try:
            stub.Abort(pb.AbortRequest(session_id=sid, reason="test abort"), timeout=10)
        finally:
            ch.close()


def _policy(epsilon: float) -> PolicyConfig:
    return PolicyConfig(
        allowed_columns=["x", "y", "group"], allowed_analysts=["analyst", "bob"],
        min_cohort_size=5, epsilon=epsilon, delta=1e-6,
        columns_by_computation={"histogram": ["secret"]}, require_dp=True,
        bounds={k: (v[0], v[1]) for k, v in BOUNDS.items()})


@pytest.fixture(scope="module")
def pfed(tmp_path_factory):
    root = tmp_path_factory.mktemp("privacy")
    rng = np.random.default_rng(44)
    data, files = {}, []
    for k, org in enumerate(ORGS):
        n = 30
        data[org] = {"x": np.clip(rng.normal(9 + k, 2.5, n), 0.5, 19.5),
                     "y": rng.normal(-3, 1, n), "secret": rng.normal(100, 10, n),
                     "group": np.where(rng.random(n) < 0.5, "g1", "g2")}
        path = root / f"{org}.csv"
        write_csv(path, data[org])
        files.append(path)
    model_file = root / "lin.json"
    model_file.write_text(json.dumps(MODEL.to_json()))
    d = root / "federation"
    lay = federation.init_federation(d, files, names=list(ORGS), models={"org-c": model_file},
                                     min_cohort_size=5)
    fed = load_federation(lay.federation_file)
    fed.analysts += [AnalystEntry("bob"), AnalystEntry("carol")]
    save_config(fed, lay.federation_file)
    for org in ORGS:
        cfg = load_party_config(lay.config(org))
        cfg.federation = fed
        cfg.policy = _policy(1.0 if org == "org-a" else 10.0)
        save_config(cfg, lay.config(org))
    ca = load_ca(lay.ca_cert, lay.ca_key)
    for who in ("bob", "carol"):  # carol: in the federation, outside the parties' policies
        cert, key = issue_node_certificate(ca, who, "analyst")
        (d / who).mkdir(mode=0o700)
        save_node_credentials(cert, key, d / who / "cert.pem", d / who / "key.pem")
    federation.up(d, timeout=60)
    f = PFed(d, data)
    try:
        yield f
    finally:
        f.analyst.close()
        f.bob.close()
        federation.down(d)


def wait_for(predicate, timeout=10.0, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return False


def dp_mean(rho: float, backend: str = "ss", **kw) -> StatSpec:
    return StatSpec("mean", ("x",), backend=backend, dp=dp.DPRequest(rho=rho, **kw))


# ------------------------------------------------------------------ refusals by the party

REFUSALS = {
    # name: (spec, analyst, where, status, words in the message and the audit reason)
    "column-outside-policy": (
        StatSpec("mean", ("secret",), dp=dp.DPRequest(rho=0.001, bounds={"secret": [0, 200]})),
        "analyst", "", grpc.StatusCode.INVALID_ARGUMENT, "no column 'secret' it may use for mean"),
    "filter-column-outside-policy": (
        dp_mean(0.001), "analyst", "secret > 100", grpc.StatusCode.INVALID_ARGUMENT,
        "no column 'secret'"),
    "analyst-outside-policy": (
        dp_mean(0.001), "carol", "", grpc.StatusCode.PERMISSION_DENIED,
        "does not serve analyst 'carol'"),
    "cohort-below-minimum": (
        dp_mean(0.001), "analyst", "x > 19.9", grpc.StatusCode.PERMISSION_DENIED,
        "minimum cohort size"),
    "exact-result-not-allowed": (
        StatSpec("mean", ("x",)), "analyst", "", grpc.StatusCode.PERMISSION_DENIED,
        "requires differential privacy"),
    "bounds-wider-than-policy": (
        dp_mean(0.001, bounds={"x": [0, 50]}), "analyst", "", grpc.StatusCode.PERMISSION_DENIED,
        "allows bounds within [0, 20]"),
    "over-budget": (
        dp_mean(2 * RHO_A), "analyst", "", grpc.StatusCode.PERMISSION_DENIED,
        "remaining rho"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_the_party_itself_refuses(pfed, case):
    spec, analyst, where, code, words = REFUSALS[case]
    ledger = pfed.ledger("org-a")
    remaining = ledger.remaining("analyst", "org-a")
    sid, err = pfed.prepare("org-a", spec, analyst=analyst, where=where)
    assert err is not None, f"org-a accepted {case}"
    assert err.code() == code, (err.code(), err.details())
    assert words in err.details(), err.details()
    if case == "over-budget":  # the remaining budget is in the message, in rho and epsilon
        assert f"remaining rho {remaining:.6g}" in err.details()
        assert "epsilon" in err.details()
    # the ledger: nothing charged, the refusal recorded with the cost asked
    assert ledger.charge(sid) is None
    assert ledger.remaining("analyst", "org-a") == remaining
    refused = [e for e in ledger.events() if e["session_id"] == sid]
    assert [e["event"] for e in refused] == ["refused"], refused
    assert refused[0]["analyst"] == analyst
    assert refused[0]["rho"] == (spec.dp.cost.rho if spec.dp else None)
    # the audit log: one record, refused, with the caller's certificate identity and the reason
    (rec,) = pfed.records("org-a", sid)
    assert rec["outcome"] == "refused" and words in rec["reason"]
    assert rec["caller"] == f"smpc://{pfed.fed_name}/coordinator/coordinator"
    assert rec["caller_fingerprint"] == pfed.coord_fp
    assert rec["analyst"] == analyst and rec["computation"] == spec.statistic
    if where:
        assert rec["filter"] and rec["filter"].replace(" ", "") == where.replace(" ", "")
    if spec.dp is not None:
        assert rec["privacy_cost"]["rho"] == pytest.approx(spec.dp.cost.rho)


def test_the_sum_never_goes_to_another_party(pfed):
    sid, err = pfed.prepare("org-a", dp_mean(0.001), hub="org-b")
    assert err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "must be a coordinator node" in err.details()
    assert pfed.records("org-a", sid)[0]["outcome"] == "refused"
    assert pfed.ledger("org-a").charge(sid) is None


def test_a_column_allowed_for_one_computation_only_and_a_refund_before_run(pfed):
    """``secret`` is allowed for histograms; the accepted request is aborted before Run:
    its charge is refunded and the audit log says so."""
    spec = StatSpec("histogram", ("secret",), edges=(0, 90, 100, 110, 1e3),
                    dp=dp.DPRequest(rho=0.001))
    ledger = pfed.ledger("org-a")
    before = ledger.remaining("analyst", "org-a")
    sid, err = pfed.prepare("org-a", spec)
    assert err is None, err.details()
    assert ledger.charge(sid).state == "pending"
    assert ledger.remaining("analyst", "org-a") == pytest.approx(before - 0.001)
    pfed.abort("org-a", sid)
    assert ledger.charge(sid).state == "refunded"
    assert ledger.remaining("analyst", "org-a") == pytest.approx(before)
    outcomes = [(r["outcome"], r["reason"]) for r in pfed.records("org-a", sid)]
    assert outcomes[0][0] == "accepted" and "reserved" in outcomes[0][1]
    assert outcomes[1][0] == "failed" and "refunded" in outcomes[1][1]


def test_a_session_that_expires_before_run_is_refunded(pfed):
    """Prepared (charge reserved), then the coordinator vanishes: no Run, no Abort.  When the
    session expires the party refunds the charge by itself -- it is never lost silently."""
    ledger = pfed.ledger("org-b")
    before = ledger.remaining("analyst", "org-b")
    sid, err = pfed.prepare("org-b", dp_mean(0.004), timeout=0.5)
    assert err is None, err.details()
    assert ledger.charge(sid).state == "pending"
    assert wait_for(lambda: ledger.charge(sid).state == "refunded", 15)
    assert ledger.remaining("analyst", "org-b") == pytest.approx(before)
    assert wait_for(lambda: len(pfed.records("org-b", sid)) == 2, 5)
    last = pfed.records("org-b", sid)[-1]
    assert last["outcome"] == "failed" and "expired" in last["reason"]
    assert "refunded" in last["reason"]


def test_describe_is_audited_and_lists_every_column_some_computation_may_use(pfed):
    info = pfed.analyst.describe()
    assert info.parties["org-a"].columns == ("x", "y", "secret", "group")
    rec = pfed.audit("org-a").records(limit=1)[0].event
    assert rec["computation"] == "describe" and rec["outcome"] == "accepted"
    assert rec["analyst"] == "analyst" and rec["caller"].endswith("/coordinator/coordinator")


# ----------------------------------------------------------------- DP through the federation


def _charges(pfed, party, analyst):
    return {c.session_id: c for c in pfed.ledger(party).charges(analyst=analyst)}


@pytest.mark.parametrize("backend", ["ss", "ckks"])
def test_dp_statistic_charges_every_party_exactly_once(pfed, backend):
    before = {o: _charges(pfed, o, "analyst") for o in ORGS}
    spec = StatSpec("var", ("x", "y"), backend=backend, dp=dp.DPRequest(epsilon=0.4, delta=1e-6))
    cost = spec.dp.cost
    r = pfed.analyst.compute(spec)
    # the request gave no bounds: every party filled in its policy's, and all agree
    assert r.details["privacy"]["bounds"] == [BOUNDS["x"], BOUNDS["y"]]
    assert r.details["privacy"]["cost"]["rho"] == pytest.approx(cost.rho)
    assert r.statistic == "var" and len(r.value) == 2 and all(v >= 0 for v in r.value)
    sids = set()
    for org in ORGS:
        new = {k: v for k, v in _charges(pfed, org, "analyst").items() if k not in before[org]}
        (charge,) = new.values()  # exactly one charge per party
        assert charge.state == "spent" and charge.rho == pytest.approx(cost.rho)
        sids.add(charge.session_id)
        recs = pfed.records(org, charge.session_id)
        assert [x["outcome"] for x in recs] == ["accepted", "released"], recs
        for x in recs:
            assert x["privacy_cost"]["rho"] == pytest.approx(cost.rho)
            assert x["privacy_cost"]["epsilon"] == pytest.approx(0.4, rel=1e-6)
            assert x["privacy_cost"]["delta"] == 1e-6
            assert x["backend"] == backend and x["computation"] == "var"
            assert x["columns"] == ["x", "y"] and x["analyst"] == "analyst"
            assert x["caller"].endswith("/coordinator/coordinator")
        want = "coordinator" if backend == "ss" else "analyst (key holder, via coordinator)"
        assert recs[0]["recipient"] == want
    assert len(sids) == 1  # one session, charged once at each party


def test_concurrent_requests_race_for_the_last_of_a_budget(pfed):
    """bob's budget at org-a fits one request of 0.6 of it, not two: exactly one succeeds."""
    rho = 0.6 * RHO_A
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def run():
        barrier.wait()
        try:
            outcomes.append(pfed.bob.compute(dp_mean(rho)))
        except Exception as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ok = [o for o in outcomes if not isinstance(o, Exception)]
    failed = [o for o in outcomes if isinstance(o, Exception)]
    assert len(ok) == 1 and len(failed) == 1, outcomes
    err = failed[0]
    assert isinstance(err, PermissionDenied), err
    assert err.node == "org-a" and "remaining rho" in str(err)
    a = pfed.ledger("org-a")
    spent = [c for c in a.charges(analyst="bob") if c.counted]
    assert len(spent) == 1 and spent[0].state == "spent"
    assert a.remaining("bob", "org-a") == pytest.approx(0.4 * RHO_A)
    for org in ("org-b", "org-c"):  # the loser's reservations there were refunded
        counted = [c for c in pfed.ledger(org).charges(analyst="bob") if c.counted]
        assert [c.session_id for c in counted] == [spent[0].session_id]
    with pytest.raises(PermissionDenied, match="remaining rho"):  # and the budget stays spent
        pfed.bob.compute(dp_mean(rho))


# ------------------------------------------------------------------------ at rest, cohort


def test_predictions_are_encrypted_at_rest_and_read_by_the_operator(pfed):
    p = pfed.analyst.predict("org-a", "org-c", model="lin", where="x > 5", backend="ss")
    sel = np.flatnonzero(pfed.data["org-a"]["x"] > 5)
    assert p.n_predictions == len(sel)
    cfg_path = pfed.lay.config("org-a")
    cfg = load_party_config(cfg_path)
    path = output_path(cfg, p.session_id)
    assert str(path) == p.output_path and path.stat().st_mode & 0o777 == 0o600
    blob = path.read_bytes()
    assert blob.startswith(b"SMPCENC") and b"row,prediction" not in blob
    proc = subprocess.run([sys.executable, "-m", "parties.cli.audit", "outputs", "read",
                           "--config", str(cfg_path), p.session_id],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "row,prediction" and len(lines) == len(sel) + 1
    got = np.array([[float(v) for v in ln.split(",")] for ln in lines[1:]])
    X = np.column_stack([pfed.data["org-a"][c] for c in MODEL.features])[sel]
    assert np.array_equal(got[:, 0], sel + 1)
    # the ss logit bound of smpc.linear (tests.tolerances); the CSV carries repr() floats
    assert_within(got[:, 1], X @ MODEL.weights + MODEL.intercept,
                  ss_logit_bound(MODEL.weights, MODEL.intercept, X))
    for org, recipient in (("org-a", "org-a (data owner)"),
                           ("org-c", "org-a (data owner), model lin")):
        recs = pfed.records(org, p.session_id)
        assert [r["outcome"] for r in recs] == ["accepted", "released"], recs
        assert recs[0]["computation"] == "predict-linear" and recs[0]["recipient"] == recipient
        assert recs[0]["columns"] == ["x", "y"] and recs[0]["privacy_cost"]["rho"] is None
    assert pfed.records("org-a", p.session_id)[0]["filter"] == "x > 5"
    # the model owner keeps its model encrypted too
    assert [q.name for q in pfed.lay.models("org-c").iterdir()] == ["lin.json.enc"]
    # a wrong key is refused in one line
    other = load_at_rest_key(load_party_config(pfed.lay.config("org-b")))
    assert other.key != load_at_rest_key(cfg).key
    # the minimum cohort binds the data owner of an inference too
    with pytest.raises(PermissionDenied, match="minimum cohort"):
        pfed.analyst.predict("org-a", "org-c", model="lin", where="x > 19.9")


# -------------------------------------------------------------------- audit verification


def _copy_party(pfed, tmp_path, party="org-a"):
    """A copy of the party's database (SQLite backup API), its audit key and its config."""
    src = sqlite3.connect(pfed.db(party))
    dst_path = tmp_path / "party.db"
    dst = sqlite3.connect(dst_path)
    src.backup(dst)
    src.close()
    dst.close()
    key = pfed.db(party).with_name("party.db.audit-key")
    (tmp_path / "party.db.audit-key").write_bytes(key.read_bytes())
    (tmp_path / "party.db.audit-key").chmod(0o600)
    cfg = load_party_config(pfed.lay.config(party))
    cfg.database = dst_path
    save_config(cfg, tmp_path / "config.json")
    return dst_path, tmp_path / "config.json"


def _cli_module() -> str:
    import inspect

    import parties.cli.main

    return "parties.cli" if "add_audit_parser" in inspect.getsource(parties.cli) \
        else "parties.cli.audit"


def _verify(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", _cli_module(), "audit", "verify", "--config",
                           str(config)], capture_output=True, text=True, timeout=60)


@pytest.fixture
def audit_copy(pfed, tmp_path):
    if len(pfed.audit("org-a")) < 6:  # make sure there is something to tamper with
        for _ in range(3):
            pfed.prepare("org-a", StatSpec("mean", ("x",)))
    db, config = _copy_party(pfed, tmp_path)
    assert audit_main(["audit", "verify", "--config", str(config)]) == 0
    return db, config


def _tampered(proc, words):
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    out = proc.stdout.strip()
    assert "\n" not in out and "tampered" in out and words in out, out
    return out


def test_audit_verify_detects_an_edited_record(audit_copy):
    """Record 3's outcome is flipped, whatever it was: which request record 3 holds depends on
    the tests that ran before on this module's federation (a replace of one fixed outcome was a
    no-op, and the test failed, when record 3 happened to hold another outcome)."""
    db, config = audit_copy
    with sqlite3.connect(db) as con:
        (body,) = con.execute("SELECT body FROM audit_records WHERE seq = 3").fetchone()
        rec = json.loads(body)
        rec["outcome"] = "accepted" if rec["outcome"] != "accepted" else "refused"
        edited = json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert edited != body
        con.execute("UPDATE audit_records SET body = ? WHERE seq = 3", (edited,))
    _tampered(_verify(config), "Record 3 was edited")


def test_audit_verify_detects_a_deleted_record(audit_copy):
    db, config = audit_copy
    with sqlite3.connect(db) as con:
        assert con.execute("DELETE FROM audit_records WHERE seq = 4").rowcount == 1
    _tampered(_verify(config), "Record 4 is missing (deleted)")


def test_audit_verify_detects_reordered_records(audit_copy):
    db, config = audit_copy
    with sqlite3.connect(db) as con:
        con.execute("UPDATE audit_records SET seq = -1 WHERE seq = 2")
        con.execute("UPDATE audit_records SET seq = 2 WHERE seq = 3")
        con.execute("UPDATE audit_records SET seq = 3 WHERE seq = -1")
    _tampered(_verify(config), "out of place")


def test_audit_show_head_and_budget_commands(pfed, tmp_path, capsys):
    """Three refused requests of its own first: run alone, org-a's log holds only its two budget
    records, and ``show --limit 3`` depended on the tests that ran before."""
    config = str(pfed.lay.config("org-a"))
    sids = [pfed.prepare("org-a", StatSpec("mean", ("x",)))[0] for _ in range(3)]
    assert audit_main(["audit", "show", "--config", config, "--limit", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all(ln.startswith("#") for ln in lines)
    assert [f"session={sid} " in ln for sid, ln in zip(sids, lines, strict=True)] == [True] * 3
    assert audit_main(["audit", "head", "--config", config]) == 0
    head = capsys.readouterr().out.strip()
    assert json.loads(head)["seq"] >= 3
    (tmp_path / "head.json").write_text(head)
    assert audit_main(["audit", "verify", "--config", config, "--head",
                       str(tmp_path / "head.json")]) == 0
    assert "matches the exported head" in capsys.readouterr().out
    assert audit_main(["audit", "budget", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "analyst=analyst dataset=org-a" in out and "remaining_rho=" in out
    assert audit_main(["audit", "show", "--config", str(tmp_path / "nope.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


# ------------------------------------------------------------------------------ crash


@pytest.mark.parametrize("point", ["after-charge", "after-commit"])
def test_a_party_killed_between_charge_and_release_keeps_the_charge(pfed, point):
    """SIGKILL with the charge reserved (after-charge: PENDING) or committed (after-commit:
    SPENT), before anything was sent.  Either way, after the restart the charge still counts,
    exactly once."""
    d = pfed.directory
    ledger = pfed.ledger("org-c")
    before = ledger.remaining("analyst", "org-c")
    known = {c.session_id for c in ledger.charges()}
    federation.stop_node(d, "org-c")
    federation.start_node(d, "org-c", env={"SMPC_FAULT": point})
    try:
        with pytest.raises((ComputationFailed, Unavailable)) as e:
            pfed.analyst.compute(dp_mean(0.003), timeout=20)
        assert e.value.node == "org-c"
        assert wait_for(lambda: not any(n.alive for n in federation.status(d)
                                        if n.name == "org-c"))
        (charge,) = [c for c in ledger.charges() if c.session_id not in known]
        sid = charge.session_id
        assert charge.state == ("pending" if point == "after-charge" else "spent")
        assert charge.rho == pytest.approx(0.003)
        assert ledger.remaining("analyst", "org-c") == pytest.approx(before - 0.003)
        assert f"SMPC_FAULT={point}" in pfed.lay.log("org-c").read_text()
    finally:
        federation.stop_node(d, "org-c", kill=True)
        federation.start_node(d, "org-c")
    # after the restart: still counted (kept as spent by recovery when it was pending)
    charge = ledger.charge(sid)
    assert charge.state == "spent"
    assert ledger.remaining("analyst", "org-c") == pytest.approx(before - 0.003)
    events = [e["event"] for e in ledger.events() if e["session_id"] == sid]
    recs = pfed.records("org-c", sid)
    if point == "after-charge":
        assert "recovery" in charge.reason
        assert events == ["reserved", "recovered"]
        assert [r["outcome"] for r in recs] == ["accepted", "failed"]
        assert recs[1]["computation"] == "recovery" and "pending" in recs[1]["reason"]
    else:
        assert events == ["reserved", "committed"]
        assert [r["outcome"] for r in recs] == ["accepted"]
    # never charged twice: the same session id is refused
    _sid, err = pfed.prepare("org-c", dp_mean(0.003), session_id=sid)
    assert err is not None and err.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "only once" in err.details()
    assert ledger.remaining("analyst", "org-c") == pytest.approx(before - 0.003)
    # the other parties settled theirs (refunded before Run, or spent): nothing left pending
    for org in ("org-a", "org-b"):
        assert wait_for(lambda org=org: not pfed.ledger(org).pending(), 5), org
    # and the federation serves the next request, charging once more (after the peers'
    # channels to the restarted node are past their reconnect backoff: wire.RECONNECT_BACKOFF_MS)
    time.sleep(wire.RECONNECT_BACKOFF_MS[1] / 1000 + 0.3)
    pfed.analyst.compute(dp_mean(0.003))
    assert ledger.remaining("analyst", "org-c") == pytest.approx(before - 0.006)
    assert AuditLog(pfed.db("org-c")).verify().ok


# ----------------------------------------------------------------------- the gate, alone


def test_policy_gate_bounds_rules():
    gate = PolicyGate("p", PolicyConfig(["x", "y"], ["a"], bounds={"x": (0.0, 10.0)},
                                        require_dp=False))
    req = PolicyRequest(analyst="a", kind="stat", computation="mean", columns=("x", "y"))
    spec = StatSpec("mean", ("x", "y"), dp=dp.DPRequest(rho=0.1, bounds={"y": [-1, 1]}))
    eff = gate.check_dp(req, spec)
    assert eff.dp.bounds == {"x": (0.0, 10.0), "y": (-1.0, 1.0)}  # x filled in, y kept
    inside = StatSpec("mean", ("x",), dp=dp.DPRequest(rho=0.1, bounds={"x": [2, 10]}))
    assert gate.check_dp(req, inside) is inside
    with pytest.raises(InputError, match=r"within \[0, 10\]"):
        gate.check_dp(req, StatSpec("mean", ("x",), dp=dp.DPRequest(rho=0.1,
                                                                   bounds={"x": [-1, 5]})))
    exact = StatSpec("mean", ("x",))
    assert gate.check_dp(req, exact) is exact  # require_dp false


def test_parties_whose_policies_fill_in_different_bounds_are_not_mixed():
    from parties.privacy.policy import agreed_spec, check_effective_spec

    asked = StatSpec("mean", ("x",), dp=dp.DPRequest(rho=0.1))
    a = StatSpec("mean", ("x",), dp=dp.DPRequest(rho=0.1, bounds={"x": [0, 10]}))
    b = StatSpec("mean", ("x",), dp=dp.DPRequest(rho=0.1, bounds={"x": [0, 20]}))
    assert agreed_spec(asked, {"p1": a, "p2": a}) == a
    with pytest.raises(InputError, match=r"different clipping bounds \(p1: x \[0.0, 10.0\]; "
                                         r"p2: x \[0.0, 20.0\]\)"):
        agreed_spec(asked, {"p1": a, "p2": b})
    # a party may only add bounds: a changed budget or statistic is refused
    for other in (StatSpec("mean", ("x",), dp=dp.DPRequest(rho=0.2, bounds={"x": [0, 10]})),
                  StatSpec("sum", ("x",), dp=dp.DPRequest(rho=0.1, bounds={"x": [0, 10]})),
                  StatSpec("mean", ("x",))):
        with pytest.raises(InputError, match="other than the one requested"):
            check_effective_spec(asked, other, "p1")
