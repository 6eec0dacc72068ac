"""The order of the control calls: ``Await`` never starts a role, and the data owner writes
its predictions only on an ``Await`` that follows its ``ready``.

The coordinator sends each party's ``Await`` right behind its ``Run``, without waiting for the
``Run`` answers (:meth:`parties.coordinator.core.Coordinator.start_awaits`); that is safe only
because a party's ``Await`` on a session still PREPARED waits and starts nothing -- the first
test pins that down (an ``Await`` before ``Run``, then an abort: no role thread ever started,
nothing reached the recipient).

Built with :class:`parties.federation.inprocess.InProcessFederation` (real configs, SQLite,
encrypted outputs, TenSEAL; only the network replaced).  The coordinator's stages are driven by
hand so that the order of the control calls is the test's: the data owner's role finishes
*before* its first ``Await`` arrives -- what happens when the coordinator sends the ``Await``
late, or (since the coordinator pipelines ``Await`` behind ``Run``) when a role is fast.

The bug this catches: the data owner treated *any* ``Await`` that found its predictions
computed as the coordinator's release, so a first ``Await`` arriving after its role finished
wrote the file at once -- before the coordinator knew whether the model owner (or the
dealer) had finished, or the analyst was still there.  A model owner dying at ``on-await``
then left predictions written although the inference failed.
"""

from __future__ import annotations

import csv
import json
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from parties.coordinator.prediction import PredictionProtocol
from parties.coordinator.requests import PredictionRequest, StatisticRequest
from parties.coordinator.state import Stage
from parties.coordinator.statistic import StatisticProtocol
from parties.errors import NodeBlamed
from parties.federation.inprocess import InProcessFederation
from parties.federation.local import init_federation
from parties.transport.requests import prediction_request, statistic_request
from parties.transport.sessions import Status
from smpc.linear import LinearModel
from smpc.names import Backend
from smpc.stats import StatSpec

N = 40


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    d = tmp_path_factory.mktemp("release")
    rng = np.random.default_rng(1414)
    for name in ("clinic-a", "clinic-c"):
        with (d / f"{name}.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["x", "y"])
            for x, y in rng.uniform(0.0, 10.0, (N, 2)):
                w.writerow([repr(float(x)), repr(float(y))])
    model = LinearModel("linear", ("x", "y"), (1.5, -0.25), 2.0)
    (d / "m.json").write_text(json.dumps(model.to_json()))
    init_federation(d / "fed", [d / "clinic-a.csv", d / "clinic-c.csv"],
                    models={"clinic-c": d / "m.json"}, min_cohort_size=5, allow_exact=True)
    with InProcessFederation.open(d / "fed") as f:
        yield f


def _outputs(fed: InProcessFederation) -> list[Path]:
    out = Path(fed.parties["clinic-a"].cfg.database).parent / "outputs"
    return sorted(out.glob("*")) if out.exists() else []


def test_an_await_before_run_starts_nothing(fed) -> None:
    """Both parties of an exact mean prepared; ``Await`` sent to one before any ``Run`` (as
    the pipelined coordinator may deliver it): it blocks, its role never starts (no role
    thread; the recipient received no byte); an abort ends the ``Await`` with ABORTED.  Fails
    if ``Await`` started (or committed) a prepared session."""
    names = ("clinic-a", "clinic-c")
    spec = StatSpec("mean", ("x",))
    request = StatisticRequest(spec, names, "", 60.0,
                               fed.sign(statistic_request(spec, "", names), "statistic"))
    coord = fed.coordinator
    p = StatisticProtocol(coord, fed.analyst, request)
    st = p.state
    st.enter(Stage.PREPARE)
    p.prepare()
    outcome: dict[str, object] = {}

    def wait() -> None:
        try:
            outcome["ok"] = coord.control.await_("clinic-a", st.id, 30.0)
        except NodeBlamed as exc:
            outcome["error"] = exc

    waiter = threading.Thread(target=wait)
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive(), f"Await returned before Run: {outcome}"
    session = fed.parties["clinic-a"].registry.find(st.id)
    assert session is not None and session.status is Status.PREPARED
    assert session.thread is None, "Await started the role"
    try:
        assert st.local is not None and st.local.bytes_received == 0
    finally:
        for n in names:
            coord.control.abort(n, st.id, "the test aborts", None, 5.0)
        coord.registry.free(st.id)
    waiter.join(10.0)
    assert not waiter.is_alive()
    err = outcome.get("error")
    assert isinstance(err, NodeBlamed) and err.code == grpc.StatusCode.ABORTED, outcome
    assert session.thread is None


def _prepared_and_run(fed: InProcessFederation) -> PredictionProtocol:
    """A ckks inference (no dealer) prepared and run, both owners' roles finished."""
    body = prediction_request(data_owner="clinic-a", model_owner="clinic-c", backend="ckks",
                              feature_bound=20.0)
    request = PredictionRequest(data_owner="clinic-a", model_owner="clinic-c", backend=Backend.CKKS,
                                feature_bound=20.0, timeout=60.0,
                                signed=fed.sign(body, "prediction"))
    coord = fed.coordinator
    p = PredictionProtocol(coord, fed.analyst, request)
    p.state.enter(Stage.PREPARE)
    p.prepare()
    p.state.enter(Stage.RUN)
    coord.run(p.state)
    sessions = [fed.parties[n].registry.find(p.state.id) for n in ("clinic-a", "clinic-c")]
    end = time.monotonic() + 60
    while any(s is not None and s.status is not Status.DONE for s in sessions) \
            and time.monotonic() < end:
        time.sleep(0.02)
    data_session = sessions[0]
    assert data_session is not None and data_session.status is Status.DONE
    return p


def test_a_first_await_after_the_role_finished_writes_nothing(fed) -> None:
    """The data owner's role is done when its first ``Await`` arrives: it answers ``ready``
    and writes nothing; an abort then (the model owner failed) drops the predictions; the
    release happens only on the ``Await`` after ``ready``.  Fails on the old code, whose first
    ``Await`` answered ``done`` with the file written."""
    before = _outputs(fed)
    p = _prepared_and_run(fed)
    control = fed.coordinator.control
    first = control.await_("clinic-a", p.state.id, 30.0)
    assert first.status == "ready" and first.output_path == "", first
    assert first.n_predictions == N
    assert _outputs(fed) == before, "predictions written before the coordinator released them"
    control.abort("clinic-a", p.state.id, "clinic-c failed", "clinic-c", 5.0)
    control.abort("clinic-c", p.state.id, "clinic-c failed", "clinic-c", 5.0)
    assert _outputs(fed) == before, "an aborted inference left predictions written"


def test_the_await_after_ready_writes_them(fed) -> None:
    """The same order, then the release: the second ``Await`` writes the file (one more
    output, with the count the first ``Await`` reported)."""
    before = _outputs(fed)
    p = _prepared_and_run(fed)
    control = fed.coordinator.control
    assert control.await_("clinic-c", p.state.id, 30.0).status == "done"
    first = control.await_("clinic-a", p.state.id, 30.0)
    assert first.status == "ready"
    second = control.await_("clinic-a", p.state.id, 30.0)
    assert second.status == "done" and second.n_predictions == first.n_predictions == N
    after = _outputs(fed)
    new = set(after) - set(before)
    assert len(new) == 1 and Path(second.output_path).name == new.pop().name
