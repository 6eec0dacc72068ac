"""The data owner's side of an inference a data scientist can use, in one process.

:class:`parties.federation.inprocess.InProcessFederation` (real configs, SQLite, encrypted outputs,
TenSEAL; only the network replaced).  The data owner ``clinic-a`` has an ``id`` column declared
as its prediction key, declared ``bounds`` for ``age`` and ``bmi``, and gaps; the model owner
``clinic-c`` owns a scikit-learn ``Pipeline(StandardScaler, LogisticRegression)`` converted by
:func:`smpc.model_from_sklearn`, with the exact-predictions policy (``allow_exact``: no noise), so
the file's probabilities are compared with ``predict_proba`` within the ss bound of
``tests.tolerances`` (a quarter of :func:`ss_logit_bound`, plus float64 rounding of the folding:
``float_gap`` of ``test_sklearn_models``).

Each test asserts what would fail if the behaviour were missing: a file without the key column,
a row with a gap predicted (or the whole inference refused), the 1024 default bound instead of the
declared 120, an undeclared key column written, a refusal that names a value.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from parties.config import load_party_config, save_config
from parties.errors import NodeBlamed
from parties.federation.inprocess import InProcessFederation
from parties.federation.local import Layout, init_federation
from parties.privacy.audit import AuditLog
from parties.privacy.outputs import read_output
from smpc import model_from_sklearn
from tests.tolerances import logit_bound_to_probability, ss_logit_bound
from tests.unit.test_sklearn_models import float_gap

N = 60
GAPS = (3, 17, 41)          # 0-based rows of clinic-a with a missing bmi
OLD = 7                     # 0-based row of clinic-a with age 130, above its declared 120


def _write(path: Path, ids: list[str], age: np.ndarray, bmi: np.ndarray) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "age", "bmi"])
        for i, a, b in zip(ids, age, bmi, strict=True):
            w.writerow([i, repr(float(a)), "" if np.isnan(b) else repr(float(b))])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("infer")
    rng = np.random.default_rng(1313)
    age = rng.normal(55, 12, N).clip(20, 100)
    age[OLD] = 130.0
    bmi = rng.normal(27, 4, N)
    bmi[list(GAPS)] = np.nan
    ids = [f"P{k:04d}" for k in range(N)]
    _write(d / "clinic-a.csv", ids, age, bmi)
    _write(d / "clinic-c.csv", [f"Q{k}" for k in range(N)], age[::-1].copy(),
           np.nan_to_num(bmi, nan=27.0))
    Xt = np.column_stack([rng.normal(55, 12, 400), rng.normal(27, 4, 400)])
    y = (rng.uniform(size=400) < 1 / (1 + np.exp(-0.05 * (Xt[:, 0] - 55)))).astype(int)
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(Xt, y)
    model = model_from_sklearn(pipe, ("age", "bmi"))
    (d / "risk.json").write_text(json.dumps(model.to_json()))
    init_federation(d / "fed", [d / "clinic-a.csv", d / "clinic-c.csv"],
                    models={"clinic-c": d / "risk.json"}, min_cohort_size=5, allow_exact=True)
    path = Layout(d / "fed").config("clinic-a")
    cfg = load_party_config(path)
    policy = cfg.policy
    policy.columns_by_computation = {**policy.columns_by_computation, "prediction-key": ["id"]}
    policy.bounds = {**policy.bounds, "age": (0.0, 120.0), "bmi": (0.0, 80.0)}
    save_config(cfg, path)
    with InProcessFederation.open(d / "fed") as fed:
        yield fed, pipe, model, ids, np.column_stack([age, bmi])


def rows_of(fed: InProcessFederation, output_path: str) -> list[dict[str, str]]:
    cfg = fed.parties["clinic-a"].cfg
    return list(csv.DictReader(read_output(cfg, output_path).decode().splitlines()))


def test_rows_with_a_gap_are_left_out_and_the_file_carries_the_key(world) -> None:
    """Every selected row is in the file in table order with its ``id``; the three with a
    missing bmi have an empty prediction and are not counted; the others match
    ``predict_proba`` within the derived bound.  The analyst's count is the rows predicted."""
    fed, pipe, model, ids, X = world
    p = fed.predict("clinic-a", "clinic-c", where="age <= 120")
    keep = (X[:, 0] <= 120)
    complete = keep & ~np.isnan(X[:, 1])
    assert p.n_predictions == int(complete.sum()) == N - 1 - len(GAPS)
    rows = rows_of(fed, p.output_path)
    assert list(rows[0]) == ["row", "id", "prediction"]
    assert [int(r["row"]) for r in rows] == [k + 1 for k in range(N) if keep[k]]
    assert [r["id"] for r in rows] == [ids[k] for k in range(N) if keep[k]]
    assert [int(r["row"]) - 1 for r in rows if r["prediction"] == ""] == list(GAPS)
    got = np.array([float(r["prediction"]) for r in rows if r["prediction"]])
    Xc = X[complete]
    folded = model.folded()
    bound = logit_bound_to_probability(
        ss_logit_bound(folded.weights, folded.intercept, Xc) + float_gap(model, Xc))
    assert np.all(np.abs(got - pipe.predict_proba(Xc)[:, 1]) <= bound)
    from parties.federation.demo import read_predictions  # the demo's reader: NaN for a gap

    read = read_predictions(Path(p.output_path))
    assert np.isnan(read).sum() == len(GAPS)
    np.testing.assert_array_equal(read[~np.isnan(read)], got)
    log = AuditLog(fed.parties["clinic-a"].cfg.database)
    released = [r.event for r in log.records(limit=None)
                if r.event.get("session_id") == p.session_id
                and r.event.get("outcome") == "released"]
    assert released and "3 selected rows left out for a missing feature" in \
        released[-1]["reason"]


def test_missing_error_refuses_naming_the_column(world) -> None:
    fed = world[0]
    with pytest.raises(NodeBlamed) as e:
        fed.predict("clinic-a", "clinic-c", where="age <= 120", missing="error")
    assert e.value.node == "clinic-a"
    assert "column 'bmi' has missing values in the selected rows" in str(e.value)


def test_the_default_bound_is_the_declared_one_and_its_refusal_names_the_feature(world) -> None:
    """No ``feature_bound`` asked: the data owner's declared bounds give 120, which the age of
    130 exceeds -- refused naming ``age``, never 130 (the old default 1024 would have accepted
    it); an explicit bound from the analyst still wins."""
    fed = world[0]
    with pytest.raises(NodeBlamed) as e:
        fed.predict("clinic-a", "clinic-c")
    assert e.value.node == "clinic-a"
    assert "exceeds the declared feature bound 120 in feature 'age'" in str(e.value)
    assert "130" not in str(e.value)
    p = fed.predict("clinic-a", "clinic-c", feature_bound=200.0)
    assert p.n_predictions == N - len(GAPS)


def test_a_key_column_the_policy_does_not_declare_is_refused(world) -> None:
    fed = world[0]
    with pytest.raises(NodeBlamed) as e:
        fed.predict("clinic-a", "clinic-c", where="age <= 120", key="age")
    assert "does not write column 'age' beside its predictions (its policy's prediction-key " \
        "columns: id)" in str(e.value)
    p = fed.predict("clinic-a", "clinic-c", where="age <= 120", key="id")
    assert list(rows_of(fed, p.output_path)[0]) == ["row", "id", "prediction"]


def test_a_bound_changed_on_the_way_to_the_model_owner_is_refused() -> None:
    """The coordinator carries the data owner's chosen bound to the model owner; the model
    owner's requirements (sent on the owners' own channel) carry the bound it was given, and
    the data owner refuses before sending anything if it is not its own."""
    from parties.config import ModelPolicy
    from parties.errors import PolicyError
    from parties.node.jobs import DataOwnerJob
    from parties.privacy.models import Requirements
    from smpc import linear, simulator

    spec = linear.InferenceSpec("linear", 12, 2, feature_bound=120.0)
    X = np.random.default_rng(5).uniform(0, 100, (12, 2))
    job = DataOwnerJob("inf", spec=spec, rows=X, row_numbers=np.arange(1, 13),
                       model_owner="model", dealer="dealer", features=("age", "bmi"), me="data")
    sent: list[str] = []

    def model_owner(bound: float):
        def role(t):
            t.send("data", "inf/requirements", Requirements.of(
                "risk", ("age", "bmi"), ModelPolicy.exact(), bound).to_bytes())
        return role

    def data_owner(t):
        orig = t.send
        t.send = lambda to, tag, payload: (sent.append(tag), orig(to, tag, payload))[1]
        return job.run(t)

    with pytest.raises(PolicyError, match="was given another feature bound"):
        simulator.run({"data": data_owner, "model": model_owner(1024.0)})
    assert sent == []


# ------------------------------------------------------- a DP data owner: the public size


@pytest.fixture(scope="module")
def dp_world(tmp_path_factory):
    """``clinic-a`` under its default DP policy with 40 rows (padded size 64); ``clinic-c``'s
    model allows 32 rows per request."""
    from dataclasses import replace

    from parties.config import ModelPolicy

    d = tmp_path_factory.mktemp("infer-dp")
    rng = np.random.default_rng(4040)
    n = 40
    _write(d / "clinic-a.csv", [f"P{k}" for k in range(n)], rng.normal(55, 12, n),
           rng.normal(27, 4, n))
    _write(d / "clinic-c.csv", [f"Q{k}" for k in range(n)], rng.normal(55, 12, n),
           rng.normal(27, 4, n))
    model = {"kind": "logistic", "features": ["age", "bmi"], "coefficients": [0.02, 0.05],
             "intercept": -2.0}
    (d / "risk.json").write_text(json.dumps(model))
    init_federation(d / "fed", [d / "clinic-a.csv", d / "clinic-c.csv"],
                    models={"clinic-c": d / "risk.json"})
    path = Layout(d / "fed").config("clinic-c")
    cfg = load_party_config(path)
    cfg.policy.models = {"risk": replace(ModelPolicy(), max_rows_per_request=32)}
    save_config(cfg, path)
    with InProcessFederation.open(d / "fed") as fed:
        yield fed, n


def test_a_dp_data_owner_runs_at_the_size_the_analyst_chose(dp_world) -> None:
    """The padded size (64) exceeds the model's 32 rows per request: refused, as before.  With
    ``rows=32`` (public, chosen by the analyst) it runs: 32 predictions reported, and the file
    holds the first 32 usable rows (table order); ``rows=16`` holds 16 -- never the filter's
    count, which the analyst's number does not depend on."""
    from parties.errors import LimitExceeded
    from parties.privacy.dp_outputs import padded_rows

    fed, n = dp_world
    assert padded_rows(n, fed.parties["clinic-a"].cfg.policy.max_inference_rows) == 64
    with pytest.raises((NodeBlamed, LimitExceeded), match="max_rows_per_request"):
        fed.predict("clinic-a", "clinic-c")
    for rows in (32, 16):
        p = fed.predict("clinic-a", "clinic-c", rows=rows)
        assert p.n_predictions == rows
        got = rows_of(fed, p.output_path)
        assert [int(r["row"]) for r in got] == list(range(1, rows + 1))
        assert all(0.0 < float(r["prediction"]) < 1.0 for r in got)
    p = fed.predict("clinic-a", "clinic-c", rows=32, where="age > 1000")
    assert p.n_predictions == 32 and rows_of(fed, p.output_path) == []
    with pytest.raises(NodeBlamed, match="missing feature is left out, never refused"):
        fed.predict("clinic-a", "clinic-c", rows=32, missing="error")
