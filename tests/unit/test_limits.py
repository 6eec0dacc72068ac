"""One request must not be able to exhaust a party (issue 11): limits checked up front, and
cooperative cancellation of a role whose session ended.

Built with :class:`parties.federation.inprocess.InProcessFederation` (real party nodes: policy,
SQLite ledger, hash-chained audit log; only the network is in-process).  The "coordinator" of
the cancellation tests is the coordinator's own control plane, driven call by call as a
deviating coordinator could: it prepares and runs a party, then aborts it, or goes silent.

How "the role kept working" is observed without timing anything: every chunk of exact noise
draws goes through :func:`smpc.dp.noise._draw` (:data:`smpc.dp.noise.SAMPLE_CHUNK` draws, 65,536
in production -- about 0.8 CPU seconds on the reference machine -- and 8,192 in these tests to
keep them short).  The tests wrap it to count the chunks each role draws and to hold a role
inside its first chunk until the session has been aborted (or has expired); the real sampler
then runs.  A DP quantile over 4 columns at 8,192 bins draws 32,769 values: 5 chunks.  Without
cancellation the role draws all 5 (the control test below shows it); with it, none after the
one in flight.
"""

from __future__ import annotations

import csv
import gc
import json
import threading
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import pytest

from parties.errors import NodeBlamed
from parties.federation.inprocess import InProcessFederation
from parties.federation.local import init_federation
from parties.node import party as party_module
from parties.privacy.audit import AuditLog
from parties.privacy.ledger import Ledger
from parties.transport.control import PrepareModelOwner, PrepareStatistic, SessionRole
from parties.transport.requests import prediction_request, statistic_request
from smpc import dp, linear
from smpc.dp import noise
from smpc.linear import LinearModel
from smpc.stats import StatSpec

PARTIES = ("clinic-a", "clinic-b", "clinic-c")
ROWS = {"clinic-a": 40, "clinic-b": 47, "clinic-c": 54}
MODEL = LinearModel("linear", ("age", "bmi"), (0.25, -1.5), 3.0)
#: A request that is expensive for its size: 4 x 8,192 bins, each with an exact noise draw.
EXPENSIVE = StatSpec("quantiles", ("age", "bmi", "age2", "bmi2"), probabilities=(0.5,),
                     bounds=(0.0, 200.0), resolution=8192,
                     dp=dp.DPRequest(epsilon=0.5, delta=1e-6))
EXPENSIVE_VALUES = 1 + 4 * 8192
CHUNK = 8192
EXPENSIVE_CHUNKS = 5                      # ceil(32,769 / 8,192)
GENEROUS = {"max_released_values": 1_000_000, "max_session_cpu_seconds": 600.0,
            "max_request_memory_mb": 4096.0}
HANG_GUARD = 120.0                        # seconds: a hang, not a performance bound


def write_csv(path: Path, cols: dict[str, np.ndarray]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(list(cols))
        for row in zip(*cols.values(), strict=True):
            w.writerow([repr(float(v)) for v in row])


def make_federation(root: Path, limits: dict[str, float] | None = None) -> InProcessFederation:
    """Three clinics (clinic-c owns MODEL) whose policies all carry ``limits``."""
    rng = np.random.default_rng(11)
    files = []
    for name in PARTIES:
        n = ROWS[name]
        cols = {"age": rng.normal(50, 12, n), "bmi": rng.normal(27, 4, n)}
        cols.update(age2=cols["age"] * 2, bmi2=cols["bmi"] * 2)
        files.append(root / f"{name}.csv")
        write_csv(files[-1], cols)
    model_file = root / "risk.json"
    model_file.write_text(json.dumps(MODEL.to_json()))
    init_federation(root / "fed", files, models={"clinic-c": model_file}, min_cohort_size=5,
                    limits=limits, allow_exact=True)  # exact requests reach the limits
    return InProcessFederation.open(root / "fed")


def record_selections(fed: InProcessFederation, monkeypatch) -> dict[str, int]:
    """Count every row selection (the copy of a party's rows) at every party."""
    calls = dict.fromkeys(PARTIES, 0)
    for name, node in fed.parties.items():
        original = node.table.select

        def select(*args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(node.table, "select", select)
    return calls


def last_audit(fed: InProcessFederation, party: str) -> dict:
    return AuditLog(fed.parties[party].cfg.database).records(limit=None)[-1].event


def ledger_state(fed: InProcessFederation, party: str) -> tuple[float, list]:
    ledger = Ledger(fed.parties[party].cfg.database)
    return ledger.remaining(fed.analyst, party), ledger.charges()


# ----------------------------------------------------------------------------- up front

HIST_2K = StatSpec("histogram", ("age", "bmi"), edges=tuple(np.linspace(0, 200, 1001)))
DP_HIST_10K = StatSpec("histogram", ("age",), edges=tuple(np.linspace(0, 200, 10_001)),
                       dp=dp.DPRequest(epsilon=0.5, delta=1e-6))
HIST_20K = StatSpec("histogram", ("age",), edges=tuple(np.linspace(0, 200, 20_001)))

#: limit -> (the policy's limits, the request, the refusal's sentence after "<party> refuses: ")
REFUSALS = {
    # 1 + 2 * (1000 bins + 2) = 2,005 values
    "max_released_values": ({"max_released_values": 1000}, HIST_2K,
                            "this histogram request releases 2,005 values; its policy allows "
                            "at most 1,000 (policy.max_released_values)"),
    # 10,003 exact noise draws x 1.2e-5 s = 0.12 s estimated (smpc.cost)
    "max_session_cpu_seconds": ({"max_session_cpu_seconds": 0.05}, DP_HIST_10K,
                                "this histogram request would take more CPU seconds than its "
                                "policy allows (at most 0.05) (policy.max_session_cpu_seconds)"),
    # 20,003 values x 96 bytes = 1.9 MB estimated
    "max_request_memory_mb": ({"max_request_memory_mb": 1.0}, HIST_20K,
                              "this histogram request would need more memory than its policy "
                              "allows (at most 1 MiB) (policy.max_request_memory_mb)"),
    # clinic-a, the data owner, selects its 40 rows
    "max_inference_rows": ({"max_inference_rows": 30}, None,
                           "this inference covers 40 rows; its policy allows at most 30 "
                           "(policy.max_inference_rows)"),
    # ckks: 40 rows x 2 features x 256 bytes + 32 MiB (context and keys) = 32 MiB estimated;
    # the inference's size is public, so the estimate is quoted
    "max_request_memory_mb (inference)": ({"max_request_memory_mb": 16.0}, "ckks",
                                          "this inference would need an estimated 32 MiB of "
                                          "memory; its policy allows at most 16 MiB "
                                          "(policy.max_request_memory_mb)"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_request_that_would_exhaust_a_party_is_refused_up_front(case, tmp_path, monkeypatch):
    """Each limit refuses at Prepare, naming itself in one sentence; nothing was selected
    (no copy of any row), nothing reserved or spent in any ledger, and the refusal is the
    party's last audit record (and a ledger ``refused`` event for a statistic)."""
    limits, request, sentence = REFUSALS[case]
    with make_federation(tmp_path, limits) as fed:
        selections = record_selections(fed, monkeypatch)
        before = {p: ledger_state(fed, p) for p in PARTIES}
        with pytest.raises(NodeBlamed) as err:
            if isinstance(request, StatSpec):
                fed.compute(request)
            else:
                fed.predict("clinic-a", "clinic-c", backend=request or "ss")
        refusing = err.value.node
        assert refusing in PARTIES and err.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert str(err.value) == f"{refusing} refuses: {sentence}"
        assert selections == dict.fromkeys(PARTIES, 0)       # no party copied a row
        involved = PARTIES if isinstance(request, StatSpec) else ("clinic-a",)
        for p in PARTIES:
            assert ledger_state(fed, p) == before[p]          # nothing reserved or spent
            assert fed.parties[p].registry.count() == 0
        for p in involved:                                    # every asked party refused
            event = last_audit(fed, p)
            assert event["outcome"] == "refused"
            assert event["reason"] == f"{p} refuses: {sentence}"
            if isinstance(request, StatSpec):
                ledger_events = Ledger(fed.parties[p].cfg.database).events()
                assert ledger_events[-1]["event"] == "refused"
                assert ledger_events[-1]["session_id"] == event["session_id"]


def test_a_model_owner_refuses_a_declared_size_beyond_its_limit(tmp_path, monkeypatch):
    """A deviating coordinator that declares 10^7 samples to the model owner (whose policy
    allows 10^6, the default) is refused before the model is loaded; audited."""
    with make_federation(tmp_path) as fed:
        owner = fed.parties["clinic-c"]
        loads: list[tuple] = []
        original = party_module.load_models
        monkeypatch.setattr(party_module, "load_models",
                            lambda *a: loads.append(a) or original(*a))
        coord = fed.coordinator
        request = PrepareModelOwner(
            session_id="declared-size-0001", analyst=fed.analyst, timeout=10.0,
            members={"clinic-a": SessionRole.DATA_OWNER, "clinic-c": SessionRole.MODEL_OWNER,
                     coord.me: SessionRole.DEALER},
            spec=linear.InferenceSpec("linear", 10_000_000, 2),
            signed_request=fed.sign(prediction_request(data_owner="clinic-a",
                                                       model_owner="clinic-c"),
                                    "prediction").envelope)
        with pytest.raises(NodeBlamed) as err:
            coord.control.prepare("clinic-c", request, 5.0)
        sentence = ("clinic-c refuses: this inference covers 10,000,000 rows; its policy "
                    "allows at most 1,000,000 (policy.max_inference_rows)")
        assert str(err.value) == sentence and err.value.node == "clinic-c"
        assert loads == [] and owner.registry.count() == 0
        event = last_audit(fed, "clinic-c")
        assert (event["outcome"], event["reason"]) == ("refused", sentence)


ORDINARY = {
    "DP quantile, 1 column at the finest resolution": (StatSpec(
        "quantiles", ("a",), probabilities=(0.5,), bounds=(0.0, 1.0), resolution=65536,
        dp=dp.DPRequest(epsilon=1.0, delta=1e-6)), 1_000_000),
    "DP linear regression on 255 features": (StatSpec(
        "linreg", tuple(f"x{i}" for i in range(255)), target="y",
        dp=dp.DPRequest(epsilon=1.0, delta=1e-6)), 100_000),
    "histogram, 10 columns x 1,000 bins": (StatSpec(
        "histogram", tuple(f"x{i}" for i in range(10)),
        edges=tuple(np.linspace(0, 1, 1001))), 1_000_000),
    "mean of 10 columns over 10^6 rows, ckks": (StatSpec(
        "mean", tuple(f"x{i}" for i in range(10)), backend="ckks"), 1_000_000),
    "ss inference, 65,536 x 30": (linear.InferenceSpec("linear", 65536, 30), None),
    "ckks inference, 65,536 x 30": (linear.InferenceSpec("linear", 65536, 30, backend="ckks"),
                                    None),
}


@pytest.mark.parametrize("case", list(ORDINARY))
def test_the_default_limits_serve_ordinary_requests(case):
    """The defaults (100,000 values, 10^6 inference rows, 60 CPU seconds, 1 GiB) refuse none
    of the requests the benchmarks and the rest of the suite make, at the sizes given."""
    from parties.config import PolicyConfig
    from parties.privacy.policy import PolicyGate, PolicyRequest
    from smpc import cost

    spec, rows = ORDINARY[case]
    gate = PolicyGate("org-a", PolicyConfig(["a"], ["analyst"]))
    if isinstance(spec, StatSpec):
        gate.check_cost(PolicyRequest("analyst", "stat", computation=str(spec.statistic)),
                        cost.statistic_cost(spec, rows), rows_public=False)
    else:
        gate.check_cost(PolicyRequest("analyst", "predict-data"), cost.inference_cost(spec),
                        rows_public=True)


def test_a_local_federation_refuses_an_unknown_limit(tmp_path):
    """``init_federation(limits=...)`` names the limits it knows instead of ignoring a typo
    (a misspelt limit would leave the default in place)."""
    from parties.federation.local import FederationError

    files = []
    for name in ("a", "b"):
        files.append(tmp_path / f"{name}.csv")
        write_csv(files[-1], {"x": np.arange(3.0)})
    with pytest.raises(FederationError) as err:
        init_federation(tmp_path / "fed", files, limits={"max_rows": 5})
    assert str(err.value) == ("unknown limit(s) max_rows (limits: max_released_values, "
                              "max_inference_rows, max_session_cpu_seconds, "
                              "max_request_memory_mb)")
    assert not (tmp_path / "fed").exists()


# ------------------------------------------------------------------------- cancellation

class NoiseGate:
    """Wraps :func:`smpc.dp.noise._draw`: counts each thread's chunks and holds the first
    chunk of each thread until :meth:`open` (the real sampler then runs)."""

    def __init__(self, monkeypatch) -> None:
        monkeypatch.setattr(noise, "SAMPLE_CHUNK", CHUNK)
        self.reached = threading.Event()
        self._open = threading.Event()
        self.chunks: dict[str, int] = {}
        original = noise._draw

        def draw(meas, zeros):
            name = threading.current_thread().name
            first = name not in self.chunks
            self.chunks[name] = self.chunks.get(name, 0) + 1
            if first:
                self.reached.set()
                assert self._open.wait(HANG_GUARD), "the test never opened the gate"
            return original(meas, zeros)

        monkeypatch.setattr(noise, "_draw", draw)

    def open(self) -> None:
        self._open.set()


def signed_statistic(fed: InProcessFederation, spec: StatSpec) -> bytes:
    """The analyst's signed request for ``spec`` over clinic-a and clinic-b (what every party
    verifies before it prepares anything)."""
    return fed.sign(statistic_request(spec, "", ("clinic-a", "clinic-b")), "statistic").envelope


def start_expensive_role(fed: InProcessFederation, sid: str, timeout: float):
    """Prepare and run EXPENSIVE at clinic-a only, as the coordinator's control plane does
    (the other members never hear of it); returns the role's session."""
    coord = fed.coordinator
    members = {"clinic-a": SessionRole.PARTY, "clinic-b": SessionRole.PARTY,
               coord.me: SessionRole.RECIPIENT}
    coord.control.prepare("clinic-a", PrepareStatistic(
        session_id=sid, analyst=fed.analyst, members=members, timeout=timeout, tag="stat",
        spec=EXPENSIVE, signed_request=signed_statistic(fed, EXPENSIVE)), 5.0)
    coord.control.run("clinic-a", sid, 5.0)
    return fed.parties["clinic-a"].registry.get(sid)


def core_bytes() -> int:
    """Bytes currently held by allocations made in the core (smpc/), numpy arrays included."""
    gc.collect()
    snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, "*/smpc/*")])
    return sum(s.size for s in snap.statistics("filename"))


def test_an_unstopped_role_draws_every_chunk(tmp_path, monkeypatch):
    """Control for the two tests below: the same role, left alone, draws all 5 chunks, then
    fails only when it sends to a recipient that never prepared."""
    with make_federation(tmp_path, GENEROUS) as fed:
        gate = NoiseGate(monkeypatch)
        s = start_expensive_role(fed, "unstopped-0001", timeout=HANG_GUARD)
        assert gate.reached.wait(HANG_GUARD)
        gate.open()
        s.thread.join(HANG_GUARD)
        assert not s.thread.is_alive()
        assert gate.chunks == {s.thread.name: EXPENSIVE_CHUNKS}


@pytest.mark.parametrize("how", ["coordinator's Abort", "node shutdown"])
def test_a_party_stops_work_when_its_session_is_aborted(how, tmp_path, monkeypatch):
    """A role held inside its first chunk of noise when its session is aborted (by the
    coordinator's Abort, or by its node stopping) draws no further chunk (4 more without
    cancellation), its thread ends (hang guard 120 s), and what the core allocated for it --
    at the abort point at least its 32,769 values and noise shares, 524 KB -- is released:
    below 64 KiB held by smpc/ allocations afterwards (tracemalloc, numpy arrays included).
    The audit log records the stop; the charge, committed at Run, stands."""
    fed = make_federation(tmp_path, GENEROUS)
    try:
        gate = NoiseGate(monkeypatch)
        tracemalloc.start()
        s = start_expensive_role(fed, "aborted-0001", timeout=HANG_GUARD)
        assert gate.reached.wait(HANG_GUARD)
        held = core_bytes()
        assert held >= 2 * EXPENSIVE_VALUES * 8              # values and noise: 524 KB
        if how == "node shutdown":
            fed.parties["clinic-a"].stop()
        else:
            assert fed.coordinator.control.abort("clinic-a", s.id, "the coordinator gave up",
                                                  None, 5.0)
        gate.open()
        s.thread.join(HANG_GUARD)
        assert not s.thread.is_alive()
        assert gate.chunks == {s.thread.name: 1}              # the one in flight, no other
        assert fed.parties["clinic-a"].registry.count() == 0
        assert core_bytes() < 64 * 1024
        event = last_audit(fed, "clinic-a")
        assert event["outcome"] == "failed" and "stopped its role" in event["reason"]
        charge = Ledger(fed.parties["clinic-a"].cfg.database).charge(s.id)
        assert charge is not None and charge.state == "spent"
    finally:
        tracemalloc.stop()
        fed.close()


def test_an_expired_session_stops_its_role(tmp_path, monkeypatch):
    """A coordinator that runs a party and then goes silent (no Await, no Abort): once the
    session's deadline has passed, the role held in its first chunk draws no further chunk
    and its thread ends; the audit log says it stopped at the deadline."""
    with make_federation(tmp_path, GENEROUS) as fed:
        gate = NoiseGate(monkeypatch)
        s = start_expensive_role(fed, "expired-0001", timeout=1.0)
        assert gate.reached.wait(HANG_GUARD)
        while not s.expired:          # wait for the deadline: a condition, not a timing
            time.sleep(0.05)
        gate.open()
        s.thread.join(HANG_GUARD)
        assert not s.thread.is_alive()
        assert gate.chunks == {s.thread.name: 1}
        event = last_audit(fed, "clinic-a")
        assert event["outcome"] == "failed" and "stopped its role" in event["reason"]
        assert "deadline" in event["reason"]


def test_a_role_that_uses_more_cpu_than_allowed_is_stopped(tmp_path, monkeypatch):
    """The CPU limit holds while the role runs, not only in the estimate: a DP quantile whose
    estimate (4,097 draws x 1.2e-5 s = 0.05 s) fits a 0.2 s limit, but whose role thread
    spends 0.3 CPU seconds in its first chunk (a sampler slower than estimated, modelled by
    burning CPU in that thread), draws no further chunk (chunks of 1,024 here: 5 in all) and
    fails with the limit named; the coordinator's Await reports it."""
    monkeypatch.setattr(noise, "SAMPLE_CHUNK", 1024)
    with make_federation(tmp_path, {"max_session_cpu_seconds": 0.2}) as fed:
        chunks: list[int] = []
        original = noise._draw

        def slow_first_chunk(meas, zeros):
            chunks.append(len(zeros))
            start = time.thread_time()
            while len(chunks) == 1 and time.thread_time() - start < 0.3:  # this thread's CPU
                pass
            return original(meas, zeros)

        monkeypatch.setattr(noise, "_draw", slow_first_chunk)
        coord = fed.coordinator
        spec = StatSpec("quantiles", ("age",), probabilities=(0.5,), bounds=(0.0, 200.0),
                        resolution=4096, dp=dp.DPRequest(epsilon=0.5, delta=1e-6))
        members = {"clinic-a": SessionRole.PARTY, "clinic-b": SessionRole.PARTY,
                   coord.me: SessionRole.RECIPIENT}
        coord.control.prepare("clinic-a", PrepareStatistic(
            session_id="cpu-limit-0001", analyst=fed.analyst, members=members, timeout=60.0,
            tag="stat", spec=spec, signed_request=signed_statistic(fed, spec)), 5.0)
        coord.control.run("clinic-a", "cpu-limit-0001", 5.0)
        with pytest.raises(NodeBlamed) as err:
            coord.control.await_("clinic-a", "cpu-limit-0001", 60.0)
        assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert err.value.node == "clinic-a"
        assert str(err.value).startswith("clinic-a stopped its role in session cpu-limit-0001 "
                                         "after ")
        assert str(err.value).endswith("CPU seconds: its policy allows at most 0.2 "
                                       "(policy.max_session_cpu_seconds)")
        assert chunks == [1024]                     # the slow one, no other
        event = last_audit(fed, "clinic-a")
        assert event["outcome"] == "failed" and "policy.max_session_cpu_seconds" in event["reason"]


def test_a_simulated_role_stops_when_another_node_failed(monkeypatch):
    """The simulator implements the same check: once a node's role has failed, a party still
    drawing noise stops before its next chunk (1 of 5 drawn), and :func:`smpc.simulator.run`
    raises the failed node's error."""
    from smpc import simulator, stats
    from smpc.errors import InputError

    gate = NoiseGate(monkeypatch)
    parties = ["p0", "p1"]
    spec = replace(EXPENSIVE, columns=("a", "b", "c", "d"))
    rows = np.random.default_rng(3).uniform(0, 200, (20, 4))

    def failing(t):
        assert gate.reached.wait(HANG_GUARD)
        raise InputError("p1 refuses")

    roles = {"p0": lambda t: stats.run_party(t, spec, rows, parties=parties,
                                             recipient="coordinator", tag="s"),
             "p1": failing,
             "coordinator": lambda t: stats.run_recipient_ss(t, spec, parties=parties,
                                                             tag="s")}
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            simulator.run(roles, timeout=HANG_GUARD)
        except BaseException as exc:  # inspected below
            outcome["error"] = exc

    runner = threading.Thread(target=run)
    runner.start()
    assert gate.reached.wait(HANG_GUARD)
    while any(t.name == "sim-p1" for t in threading.enumerate()):  # p1 failed and is done
        time.sleep(0.01)
    gate.open()
    runner.join(HANG_GUARD)
    assert not runner.is_alive()
    assert isinstance(outcome.get("error"), InputError)
    assert gate.chunks == {"sim-p0": 1}



def test_a_table_in_a_sql_engine_is_not_costed_as_rows_in_memory():
    """10^8 rows x 3 columns in DuckDB (benchmarks/results/engine-1e8-2core): the rows never
    enter the party's memory and a scan costs ~25 ns a cell, so the default limits admit a
    mean and a covariance there -- the numpy estimate (9.6 GB) would refuse them."""
    from parties.config.model import DEFAULT_MAX_REQUEST_MEMORY_MB, DEFAULT_MAX_SESSION_CPU_SECONDS
    from smpc import cost as cost_model
    from smpc.stats import StatSpec as Spec

    for statistic in ("mean", "cov"):
        spec = Spec(statistic, ("a", "b", "c"))
        memory = cost_model.statistic_cost(spec, 10**8)
        engine = cost_model.statistic_cost(spec, 10**8, in_engine=True)
        assert memory.memory_bytes > DEFAULT_MAX_REQUEST_MEMORY_MB * 2**20
        assert engine.memory_bytes < 2**20
        assert engine.cpu_seconds < DEFAULT_MAX_SESSION_CPU_SECONDS
        assert engine.cpu_seconds < memory.cpu_seconds
        # the measured CPU of the scans (7.3 s mean, 24.6 s cov) is within the estimate
        assert engine.cpu_seconds >= {"mean": 7.3, "cov": 24.6}[statistic]
