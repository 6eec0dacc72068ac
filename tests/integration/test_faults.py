"""Faults injected into real node processes (mutual TLS on loopback), each with its consequences
checked: who is blamed, what is released, what is charged, what is freed, what comes next.

The faults come from the test-only hook ``SMPC_FAULT`` (:mod:`parties.privacy`, read when a node
starts): one node, restarted with it, dies (SIGKILL of itself), stalls, or sends a truncated or
duplicated protocol message at a named stage.

**The kill matrix** (:func:`test_kill`, :func:`test_kill_dealer`): every kind of node -- a party,
the coordinator, a separate dealer (``separate_dealer=True`` federation) -- killed at each of its
stages, in each protocol -- a one-pass statistic (``mean``), a two-pass statistic (``var``), an
inference (model owner ``org-c``, data owner ``org-a``) -- on both backends (a dealer only in
``ss`` inference: ``ckks`` inference has none).  Statistics are DP requests, so that every
party's ledger has a charge to account for.  Each row asserts:

1. the analyst's call raises, within the session deadline, an error naming the killed node
   (a dead coordinator: the client says the coordinator is unreachable) -- nothing is released;
2. the node died at that stage (its log has the hook's line for that stage);
3. every surviving node frees the session (``active_sessions`` 0 within a bounded wait: at once
   after the coordinator's Abort, or -- when the coordinator died -- once the parties' reaper
   passes the deadline);
4. after the killed node restarts (without the fault), every party's ledger tells what happened:
   one charge per party for the session, never left pending; *refunded* where the party never
   received ``Run`` (nothing left it), *spent* where it did (its contribution may have left) or
   where it died holding a pending charge (kept as spent by crash recovery, never silently
   refunded); the remaining budget is exactly the total minus what is spent.  An inference
   writes nothing to the data owner's ``outputs/``;
5. the federation serves the same protocol again, and the answer matches numpy.

**Beyond kills**: a slow peer (``stall`` past the session deadline: a deadline error naming it,
the session freed everywhere); a wrong-length share (``corrupt:mid-protocol``) and wrong-length
dealer triples (``corrupt:mid-deal``); a duplicated (replayed) protocol message
(``duplicate:mid-protocol``) -- each fails the computation with an error naming the node that
misbehaved, releases nothing, frees every session; a reused session id (Prepare on a party, Deal
on the dealer, with the id of a finished computation: ALREADY_EXISTS).  The wire-level replay of a
Deliver and Prepare twice on a fresh id are covered by ``test_fuzz_rpc.py``.

What these tests found, fixed in the runtime (a test that failed before each fix runs by
default):

* predictions were written although the inference failed -- the model owner or the coordinator
  died after the data owner's last message, or the data owner died before answering: the data
  owner now holds them in memory and writes them only on the coordinator's second ``Await``,
  sent once every other participant finished (:mod:`parties.node`, ``RELEASE`` in
  :mod:`parties.coordinator`);
* a wrong-length share, truncated dealer triples or an invalid CKKS context were blamed on the
  node that *received* them (and on the coordinator, as INTERNAL, when it was the receiver):
  :class:`smpc.errors.ProtocolError` now names the sender (``peer``) and the blame follows it;
* a duplicated message was blamed on its receiver: a payload the receiver refuses as a replay
  (or as malformed) is now the sender's own protocol error;
* a peer late past the deadline was reported as ABORTED: it is now DEADLINE_EXCEEDED naming it;
* the first computation after a restart could fail ("could not deliver ... unreachable") while a
  peer's channel sat in its reconnect backoff: ``Deliver`` and ``Describe`` are retried once
  after the backoff ceiling, as ``Prepare`` already was (a deterministic regression test for
  ``Deliver`` is in ``tests/unit/test_wire.py``; for ``Describe``,
  :func:`test_a_restarted_node_serves_the_very_next_computation` catches the old behaviour
  about three times in five).

The default run keeps every stage of every kind of node at least once, every protocol, backend
and fault kind; the rest of the matrix is marked ``slow`` (``pytest -m slow``).  On 2 cores: the
default run about 1.5 minutes, the whole module about 5.
"""

from __future__ import annotations

import csv
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest

from parties._pb import smpc_pb2 as pb
from parties._pb import smpc_pb2_grpc as pb_grpc
from parties.analyst.client import (
    Client,
    ComputationFailed,
    DeadlineExceeded,
    RemoteError,
    Unavailable,
)
from parties.config import load_party_config
from parties.federation import local as federation
from parties.privacy.ledger import Ledger
from parties.privacy.outputs import read_output
from parties.transport import wire
from parties.transport.sessions import REAP_GRACE_SECONDS
from parties.transport.tls import channel_credentials, channel_options
from smpc import dp, linear
from smpc.linear import LinearModel
from smpc.stats import StatSpec
from tests.integration.signing import signed_prediction
from tests.tolerances import (
    Backend,
    Moments,
    assert_within,
    ckks_kept_key_bound,
    ss_logit_bound,
)

from .conftest_hardening import (
    active_sessions,
    hardened_federation,  # noqa: F401  (fixture)
    wait_for,
)

ORGS = ("org-a", "org-b", "org-c")
DATA_OWNER, MODEL_OWNER = "org-a", "org-c"
STAT_VICTIM = "org-b"
COLUMNS = ("x", "y")
BOUNDS = {"x": (0.0, 20.0), "y": (-10.0, 10.0)}
MODEL = LinearModel("linear", COLUMNS, (1.5, -0.25), 2.0)
RHO = 0.01                     # per DP request; the budget (epsilon 1000) allows thousands
PROTOCOLS = ("mean", "var", "inference")
BACKENDS = ("ss", "ckks")
TIMEOUT = 15.0                 # the analyst's deadline for a computation that meets a fault
SHORT = 5.0                    # ... where the test must wait for the deadline itself
PARTY_STAGES = ("on-prepare", "after-charge", "after-commit", "on-run", "mid-protocol",
                "on-await")
COORDINATOR_STAGES = ("after-prepare", "mid-run")
DEALER_STAGES = ("on-deal", "mid-deal")


# ------------------------------------------------------------------------------ fixtures


def _data(seed: int, orgs) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {o: {"x": np.clip(rng.normal(9 + k, 2.5, 12), 0.5, 19.5),
                "y": np.clip(rng.normal(-3, 1, 12), -9.5, 9.5)} for k, o in enumerate(orgs)}


@dataclass
class FFed:
    directory: Path
    data: dict[str, dict[str, np.ndarray]]
    client: Client

    @property
    def layout(self) -> federation.Layout:
        return federation.Layout(self.directory)

    def nodes(self) -> list[str]:
        return [n.name for n in self.layout.nodes()]

    def parties(self) -> list[str]:
        return self.layout.parties()

    def ledger(self, party: str) -> Ledger:
        return Ledger(self.layout.node_dir(party) / "party.db")

    def outputs(self) -> set[str]:
        return {p.name for p in self.layout.outputs(DATA_OWNER).glob("*")}

    def pooled(self) -> np.ndarray:
        return np.vstack([np.column_stack([self.data[p][c] for c in COLUMNS])
                          for p in self.parties()])

    def log_size(self, node: str) -> int:
        path = self.layout.log(node)
        return path.stat().st_size if path.exists() else 0

    def log_since(self, node: str, offset: int) -> str:
        with self.layout.log(node).open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")

    def alive(self, node: str) -> bool:
        return any(n.alive for n in federation.status(self.directory) if n.name == node)


def _make(factory, name: str, orgs, **init_kwargs) -> FFed:
    data = _data(len(name), orgs)
    h = factory(name, data, models={MODEL_OWNER: [MODEL]}, min_cohort_size=2, epsilon=1000.0,
                session_timeout=30.0, **init_kwargs)
    return FFed(h.directory, data, Client(h.directory, timeout=TIMEOUT, parties=orgs))


@pytest.fixture(scope="module")
def ffed(hardened_federation):  # noqa: F811
    """Three parties; the coordinator deals for ``ss`` inference; org-c owns a linear model."""
    f = _make(hardened_federation, "faults", ORGS)
    yield f
    f.client.close()


@pytest.fixture(scope="module")
def dfed(hardened_federation):  # noqa: F811
    """Two parties and a separate dealer node."""
    f = _make(hardened_federation, "faults-dealer", (DATA_OWNER, MODEL_OWNER),
              separate_dealer=True)
    yield f
    f.client.close()


# ------------------------------------------------------------------------------ helpers


def compute(fed: FFed, protocol: str, backend: str, *, private: bool, timeout: float,
            client: Client | None = None):
    """Run ``protocol``; statistics as DP requests when ``private``."""
    c = client or fed.client
    if protocol == "inference":
        return c.predict(DATA_OWNER, MODEL_OWNER, backend=backend, timeout=timeout)
    spec = StatSpec(protocol, COLUMNS, backend=backend,
                    dp=dp.DPRequest(rho=RHO, bounds=BOUNDS) if private else None)
    return c.compute(spec, timeout=timeout)


def assert_serves(fed: FFed, protocol: str, backend: str) -> None:
    """The next computation (exact) is right: compared with numpy on the pooled data."""
    with Client(fed.directory, timeout=60, parties=fed.parties()) as c:  # a new channel
        r = compute(fed, protocol, backend, private=False, timeout=30, client=c)
    if protocol == "inference":
        cfg = load_party_config(fed.layout.config(DATA_OWNER))
        rows = list(csv.DictReader(read_output(cfg, r.output_path).decode().splitlines()))
        X = np.column_stack([fed.data[DATA_OWNER][c] for c in COLUMNS])
        assert [int(row["row"]) for row in rows] == list(range(1, len(X) + 1))
        got = np.array([float(row["prediction"]) for row in rows])
        if backend == "ss":
            tol = ss_logit_bound(MODEL.weights, MODEL.intercept, X)
        else:
            spec = linear.InferenceSpec("linear", len(X), 2, backend="ckks")
            flood = linear.model_flood_std(spec, MODEL.weights)
            tol = ckks_kept_key_bound(MODEL.weights, spec.ckks_preset, flood)  # kept key
        assert_within(got, X @ MODEL.weights + MODEL.intercept, tol, "predictions")
        return
    X = fed.pooled()
    m = Moments(X, Backend(backend, len(fed.parties())))  # derivation: tests.tolerances
    if protocol == "mean":
        assert_within(r.value, X.mean(axis=0), m.mean_tol, "mean")
    else:
        assert_within(r.value, X.var(axis=0, ddof=1), m.var_tol, "var")
    assert r.n == len(X)


@dataclass
class Before:
    charged: dict[str, set[str]]
    remaining: dict[str, float]
    outputs: set[str]


def snapshot(fed: FFed) -> Before:
    return Before({p: {c.session_id for c in fed.ledger(p).charges()} for p in fed.parties()},
                  {p: fed.ledger(p).remaining("analyst", p) for p in fed.parties()},
                  fed.outputs())


def new_charges(fed: FFed, before: Before) -> dict[str, list]:
    return {p: [c for c in fed.ledger(p).charges() if c.session_id not in before.charged[p]]
            for p in fed.parties()}


def check_ledgers(fed: FFed, before: Before, protocol: str,
                  expected: dict[str, str] | None = None, bound: float = 5.0) -> dict[str, str]:
    """One charge per party for the failed session (none for an inference), settled (never
    pending), as ``expected`` (party -> spent | refunded) when given; the remaining budget is
    the previous one minus exactly what was spent.  Returns the states."""
    if protocol == "inference":
        assert all(not v for v in new_charges(fed, before).values())
        assert fed.outputs() == before.outputs, "an inference that failed wrote predictions"
        return {}

    def settled() -> bool:
        return all(len(v) == 1 and v[0].state != "pending"
                   for v in new_charges(fed, before).values())

    assert wait_for(settled, bound), new_charges(fed, before)
    charges = {p: v[0] for p, v in new_charges(fed, before).items()}
    assert len({c.session_id for c in charges.values()}) == 1, charges  # the same session
    states = {p: c.state for p, c in charges.items()}
    if expected is not None:
        assert states == expected, (states, expected)
    for p, c in charges.items():
        assert c.rho == pytest.approx(RHO)
        spent = RHO if c.state == "spent" else 0.0
        assert fed.ledger(p).remaining("analyst", p) == pytest.approx(
            before.remaining[p] - spent), p
        events = [e["event"] for e in fed.ledger(p).events() if e["session_id"] == c.session_id]
        settled_by = {"spent": ("committed", "recovered"), "refunded": ("aborted",)}[c.state]
        assert len(events) == 2 and events[0] == "reserved" and events[1] in settled_by, events
    return states


def inject(fed: FFed, node: str, fault: str) -> int:
    """Restart ``node`` with ``SMPC_FAULT=fault``; returns the offset of its log before."""
    federation.stop_node(fed.directory, node)
    offset = fed.log_size(node)
    federation.start_node(fed.directory, node, env={"SMPC_FAULT": fault})
    return offset


def restart_clean(fed: FFed, node: str) -> None:
    federation.stop_node(fed.directory, node, kill=True)
    federation.start_node(fed.directory, node)


def all_free(fed: FFed, nodes, bound: float) -> bool:
    return wait_for(lambda: all(v == 0 for v in active_sessions(fed.directory, nodes).values()),
                    bound, 0.2)


def failed_call(fed: FFed, protocol: str, backend: str, timeout: float
                ) -> tuple[RemoteError, float]:
    t0 = time.monotonic()
    with pytest.raises(RemoteError) as e:
        compute(fed, protocol, backend, private=protocol != "inference", timeout=timeout)
    return e.value, time.monotonic() - t0


# --------------------------------------------------------------------------- the matrix


def _expected(kind: str, victim: str, stage: str, parties) -> dict[str, str]:
    """Each party's charge after the fault (statistics)."""
    if kind == "coordinator":
        return {p: "refunded" if stage == "after-prepare" else "spent" for p in parties}
    return {p: "spent" if p == victim or stage != "on-prepare" else "refunded" for p in parties}


# The default run: every stage of every kind of node at least once, every protocol and backend,
# and the rows that caught predictions written although the inference failed (on-await, the
# coordinator's mid-run; see the module docstring).  The rest of the matrix is slow.
FAST = {
    ("party", STAT_VICTIM, "on-prepare", "mean", "ss"),
    ("party", STAT_VICTIM, "after-charge", "mean", "ss"),
    ("party", STAT_VICTIM, "after-commit", "var", "ckks"),
    ("party", STAT_VICTIM, "on-run", "var", "ss"),
    ("party", STAT_VICTIM, "mid-protocol", "mean", "ckks"),
    ("party", MODEL_OWNER, "on-prepare", "inference", "ss"),
    ("party", MODEL_OWNER, "mid-protocol", "inference", "ss"),
    ("party", MODEL_OWNER, "on-await", "inference", "ckks"),
    ("party", DATA_OWNER, "on-await", "inference", "ss"),
    ("coordinator", "coordinator", "after-prepare", "var", "ss"),
    ("coordinator", "coordinator", "mid-run", "inference", "ckks"),
}


def _rows():
    rows = []
    for protocol, backend in itertools.product(PROTOCOLS, BACKENDS):
        for stage in PARTY_STAGES:
            if protocol == "inference" and stage in ("after-charge", "after-commit"):
                continue  # reached only by a charged (DP) request: an inference has no cost
            victim = STAT_VICTIM if protocol != "inference" else MODEL_OWNER
            rows.append(("party", victim, stage, protocol, backend))
            if protocol == "inference" and stage in ("mid-protocol", "on-await"):
                rows.append(("party", DATA_OWNER, stage, protocol, backend))
        for stage in COORDINATOR_STAGES:
            rows.append(("coordinator", "coordinator", stage, protocol, backend))
    assert FAST.issubset(rows)
    return [pytest.param(*r, id="-".join((r[0] if r[0] != "party" else r[1], *r[2:])),
                         marks=() if r in FAST else pytest.mark.slow) for r in rows]


@pytest.mark.parametrize(("kind", "victim", "stage", "protocol", "backend"), _rows())
def test_kill(ffed, kind, victim, stage, protocol, backend):
    kill_row(ffed, kind, victim, stage, protocol, backend)


@pytest.mark.parametrize("stage", DEALER_STAGES)
def test_kill_dealer(dfed, stage):
    kill_row(dfed, "dealer", "dealer", stage, "inference", "ss")


def kill_row(fed: FFed, kind: str, victim: str, stage: str, protocol: str, backend: str
             ) -> None:
    d = fed.directory
    survivors = [n for n in fed.nodes() if n != victim]
    timeout = SHORT if kind == "coordinator" else TIMEOUT
    before = snapshot(fed)
    offset = inject(fed, victim, f"kill:{stage}")
    try:
        err, seconds = failed_call(fed, protocol, backend, timeout)
        if kind == "coordinator":
            assert isinstance(err, Unavailable), repr(err)
            assert err.node == "coordinator" and "coordinator" in str(err) \
                and "unreachable" in str(err), str(err)
        else:
            assert isinstance(err, (ComputationFailed, Unavailable)), repr(err)
            assert err.node == victim and victim in str(err), (err.node, str(err))
        assert seconds < timeout, seconds
        assert wait_for(lambda: not fed.alive(victim), 5), f"{victim} did not die"
        assert f"SMPC_FAULT={stage}: killing this process here" in fed.log_since(victim, offset)
        bound = timeout + REAP_GRACE_SECONDS + 5 if kind == "coordinator" else 5
        assert all_free(fed, survivors, bound), active_sessions(d, survivors)
    finally:
        restart_clean(fed, victim)
    expected = _expected(kind, victim, stage, fed.parties())
    check_ledgers(fed, before, protocol, expected, bound=SHORT + 5)
    assert_serves(fed, protocol, backend)
    assert all_free(fed, fed.nodes(), 5)


# ----------------------------------------------------------------------------- slow peer

STALLS = [  # (node, stage, protocol, backend)
    pytest.param(STAT_VICTIM, "on-run", "mean", "ss", id="party-on-run-mean-ss"),
    pytest.param(STAT_VICTIM, "on-prepare", "var", "ckks", id="party-on-prepare-var-ckks"),
    pytest.param(MODEL_OWNER, "mid-protocol", "inference", "ckks",
                 id="model-owner-mid-protocol-inference-ckks"),
    pytest.param(STAT_VICTIM, "on-await", "var", "ss", id="party-on-await-var-ss",
                 marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("victim", "stage", "protocol", "backend"), STALLS)
def test_slow_peer(ffed, victim, stage, protocol, backend):
    stall_row(ffed, victim, stage, protocol, backend)


def test_slow_dealer(dfed):
    stall_row(dfed, "dealer", "on-deal", "inference", "ss")


def stall_row(fed: FFed, victim: str, stage: str, protocol: str, backend: str) -> None:
    """The node sleeps far past the session deadline at ``stage``: the analyst gets a deadline
    error naming it soon after the deadline (not when the node wakes up), and every node --
    the slow one included, its worker still asleep -- frees the session."""
    before = snapshot(fed)
    offset = inject(fed, victim, f"stall:{stage}:120")
    try:
        err, seconds = failed_call(fed, protocol, backend, SHORT)
        assert isinstance(err, DeadlineExceeded), repr(err)
        assert err.node == victim and victim in str(err), (err.node, str(err))
        assert "before the session deadline" in str(err), str(err)
        assert SHORT - 0.5 < seconds < SHORT + 10, seconds
        assert f"SMPC_FAULT=stall:{stage}:120: stalling here" in fed.log_since(victim, offset)
        assert fed.alive(victim)
        assert all_free(fed, fed.nodes(), REAP_GRACE_SECONDS + 5), \
            active_sessions(fed.directory, fed.nodes())
        check_ledgers(fed, before, protocol)
    finally:
        restart_clean(fed, victim)
    assert_serves(fed, protocol, backend)


# ------------------------------------------------------------ wrong length, duplicates

MISBEHAVIOUR = [  # (fault, node, protocol, backend, the receiver's complaint)
    pytest.param("corrupt", STAT_VICTIM, "mean", "ss", "byte seed", id="corrupt-seed-mean-ss"),
    pytest.param("corrupt", STAT_VICTIM, "var", "ckks", "with shape",
                 id="corrupt-count-var-ckks"),
    pytest.param("corrupt", DATA_OWNER, "inference", "ss", "byte seed",
                 id="corrupt-seed-inference-ss"),
    pytest.param("corrupt", DATA_OWNER, "inference", "ckks", "context",
                 id="corrupt-context-inference-ckks"),
    pytest.param("duplicate", STAT_VICTIM, "mean", "ss", "replay refused",
                 id="duplicate-seed-mean-ss"),
    pytest.param("duplicate", STAT_VICTIM, "var", "ckks", "replay refused",
                 id="duplicate-count-var-ckks"),
    pytest.param("duplicate", MODEL_OWNER, "inference", "ss", "replay refused",
                 id="duplicate-seed-inference-ss"),
]


@pytest.mark.parametrize(("fault", "victim", "protocol", "backend", "complaint"), MISBEHAVIOUR)
def test_misbehaving_peer(ffed, fault, victim, protocol, backend, complaint):
    misbehave_row(ffed, f"{fault}:mid-protocol", victim, protocol, backend, complaint)


@pytest.mark.parametrize("fault", ["corrupt", "duplicate"])
def test_misbehaving_dealer(dfed, fault):
    misbehave_row(dfed, f"{fault}:mid-deal", "dealer", "inference", "ss",
                  "shape" if fault == "corrupt" else "replay refused")


def misbehave_row(fed: FFed, fault: str, victim: str, protocol: str, backend: str,
                  complaint: str) -> None:
    """A session member sends its first protocol message one element short, or twice: the
    computation fails at once with an error naming that member; nothing is released."""
    before = snapshot(fed)
    offset = inject(fed, victim, fault)
    try:
        err, seconds = failed_call(fed, protocol, backend, TIMEOUT)
        assert isinstance(err, ComputationFailed), repr(err)
        assert err.node == victim and victim in str(err), (err.node, str(err))
        assert complaint in str(err), str(err)
        assert seconds < TIMEOUT / 2, seconds  # detected, not waited out
        assert f"SMPC_FAULT={fault}: sending" in fed.log_since(victim, offset)
        assert all_free(fed, fed.nodes(), 5), active_sessions(fed.directory, fed.nodes())
        check_ledgers(fed, before, protocol)
    finally:
        restart_clean(fed, victim)
    assert_serves(fed, protocol, backend)


# ---------------------------------------------------------------------- reused session ids


def _stub(fed: FFed, target: str, kind: str):
    lay = fed.layout
    coord = lay.node_dir("coordinator")
    creds = channel_credentials(coord / "cert.pem", coord / "key.pem", lay.ca_cert)
    ch = grpc.secure_channel(lay.federation().node(target).address, creds,
                             options=channel_options(target, wire.grpc_options()))
    return ch, getattr(pb_grpc, f"{kind}Stub")(ch)


def test_a_reused_session_id_is_refused(dfed):
    """The id of a finished inference, reused by the coordinator's own certificate: each
    participant refuses it (ALREADY_EXISTS) and keeps serving."""
    p = dfed.client.predict(DATA_OWNER, MODEL_OWNER, backend="ss")
    members = [pb.Member(name=DATA_OWNER, role="data-owner"),
               pb.Member(name=MODEL_OWNER, role="model-owner"),
               pb.Member(name="dealer", role="dealer")]
    spec = linear.InferenceSpec("linear", 12, 2, backend="ss")
    ch, party = _stub(dfed, MODEL_OWNER, "Party")
    try:
        with pytest.raises(grpc.RpcError) as e:
            party.Prepare(pb.PrepareRequest(
                session_id=p.session_id, kind=pb.SESSION_KIND_PREDICT_MODEL,
                spec_json=json.dumps(spec.to_json()), members=members, analyst="analyst",
                tag="inf", timeout_seconds=10, signed_request=signed_prediction(
                    dfed.directory, data_owner=DATA_OWNER, model_owner=MODEL_OWNER)),
                timeout=10)
        assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS, e.value
        assert p.session_id in e.value.details() and "already used" in e.value.details()
    finally:
        ch.close()
    ch, dealer = _stub(dfed, "dealer", "Dealer")
    try:
        with pytest.raises(grpc.RpcError) as e:
            dealer.Deal(pb.DealRequest(session_id=p.session_id, timeout_seconds=10,
                                       spec_json=json.dumps(spec.to_json()),
                                       tag="inf", members=members), timeout=10)
        assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS, e.value
    finally:
        ch.close()
    assert all_free(dfed, dfed.nodes(), 5)
    assert_serves(dfed, "inference", "ss")


def test_a_malformed_fault_stops_the_node_at_start(dfed):
    """``SMPC_FAULT`` naming a stage the node never reaches is a one-line start-up error, not
    a fault that silently never fires."""
    federation.stop_node(dfed.directory, "dealer")
    try:
        with pytest.raises(federation.FederationError) as e:
            federation.start_node(dfed.directory, "dealer", env={"SMPC_FAULT": "kill:on-run"},
                                  timeout=30)
        assert "SMPC_FAULT='kill:on-run' is not a fault a dealer node can inject" in str(e.value)
    finally:
        federation.start_node(dfed.directory, "dealer")
    assert_serves(dfed, "inference", "ss")


def test_a_restarted_node_serves_the_very_next_computation(ffed):
    """The coordinator's channel to the model owner failed while it was down (it sits in its
    reconnect backoff when the node is back): the next inference, sent at once, succeeds."""
    d = ffed.directory
    federation.stop_node(d, MODEL_OWNER)
    try:
        err, _seconds = failed_call(ffed, "inference", "ss", TIMEOUT)
        assert isinstance(err, Unavailable) and err.node == MODEL_OWNER, repr(err)
        time.sleep(3.0)  # the channel keeps failing: its backoff grows to the ceiling (1 s)
    finally:
        federation.start_node(d, MODEL_OWNER)
    assert_serves(ffed, "inference", "ss")
