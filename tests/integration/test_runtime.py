"""Every statistic on both backends, a filter, and both inference kinds, over real node
processes (mutual TLS on loopback), compared with numpy on the pooled plaintext.

Tolerances (3 parties, ~375 rows, values 15-250), all from :mod:`tests.tolerances`:

* ``ss`` (fixed point, f=16 for sums, f=24 for centred moments): counts and
  histogram counts exact; sums within 3 * 2^-17 (README: sums exact to 2.3e-5), means
  that / N; (co)variances within 3 * 2^-25 * N / (N - 1) (README: 9e-8); std, corr and
  regression by worst-case propagation (:class:`tests.tolerances.Moments`).
* ``ckks`` (aggregate preset): every released sum is within E + 6 sigma + g / 2 = 0.051
  (sigma = g = 2^-7, E = 2^-23: smpc.ckks.KeyHolder.release) except with probability 2e-9
  per value; means within that / N (1.4e-4), (co)variances within about that / (N - 1)
  (1.4e-4; pass 2 sends plain centred sums, times the public scale of the moment pass:
  :meth:`tests.tolerances.Backend.moment_scale`), the rest propagated as on ss; counts are
  exact after rounding (0.051 < 1/2).
* every result's own ``details["error_bound"]`` (:mod:`smpc.stats.bounds`) holds against
  numpy too, over the runtime's real messages (the spread pass and the scale included).
* quantiles: within one bin width ((hi - lo) / resolution) of numpy's
  inverted-CDF quantile on both backends (ckks bin counts are exact after rounding).
* inference: ``ss`` within the encoding bound of smpc.linear
  ((||w||_1 + ||x||_1) * 2^-17 + (d+2) * 2^-34 per logit); ``ckks`` within the preset's
  CKKS bound plus six standard deviations of the model owner's flooding noise
  (smpc.linear.model_flood_std) per logit; probabilities a quarter of the logit bound
  (the sigmoid is 1/4-Lipschitz).

False-failure rate of the ckks checks: at most (released values) * 2e-9 < 1e-6 per test.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from parties.analyst.client import InvalidRequest, PermissionDenied
from parties.data.filters import FilterError
from parties.federation import local as federation
from smpc import linear
from smpc.stats import StatSpec
from tests.tolerances import (
    Backend,
    Moments,
    assert_within,
    ckks_kept_key_bound,
    logit_bound_to_probability,
    quantile_tol,
    ss_logit_bound,
)

from .conftest import HOSPITALS

BACKENDS = ("ss", "ckks")


def moments(X, backend, ddof=1, parties=3):
    """Tolerances of the moment statistics of X over `parties` parties (the 3 hospitals)."""
    return Moments(X, Backend(backend, parties), ddof=ddof)


@pytest.mark.parametrize("backend", BACKENDS)
def test_count(fed, backend):
    r = fed.client.compute(StatSpec("count", ("age",), backend=backend))
    assert r.value == len(fed.pooled(["age"])) == 375
    assert r.backend == backend


@pytest.mark.parametrize("backend", BACKENDS)
def test_sum_and_mean(fed, backend):
    cols = ("age", "bmi", "sbp")
    X = fed.pooled(cols)
    m = moments(X, backend)
    r = fed.client.compute(StatSpec("sum", cols, backend=backend))
    assert_within(r.value, X.sum(axis=0), m.sum_tol, "sum")
    r = fed.client.compute(StatSpec("mean", cols, backend=backend))
    assert_within(r.value, X.mean(axis=0), m.mean_tol, "mean")
    assert r.n == len(X)


@pytest.mark.parametrize("backend", BACKENDS)
def test_var_and_std(fed, backend):
    X = fed.pooled(("sbp", "chol"))
    m = moments(X, backend)
    r = fed.client.compute(StatSpec("var", ("sbp", "chol"), backend=backend))
    assert_within(r.value, X.var(axis=0, ddof=1), m.var_tol, "var")
    assert_within(r.details["mean"], X.mean(axis=0), m.pass2_mean_tol, "mean")
    r = fed.client.compute(StatSpec("std", ("sbp", "chol"), backend=backend, ddof=0))
    assert_within(r.value, X.std(axis=0, ddof=0), moments(X, backend, ddof=0).std_tol, "std")


@pytest.mark.parametrize("backend", BACKENDS)
def test_cov_and_corr(fed, backend):
    cols = ("age", "bmi", "sbp", "chol")
    X = fed.pooled(cols)
    m = moments(X, backend)
    r = fed.client.compute(StatSpec("cov", cols, backend=backend))
    assert_within(r.value, np.cov(X.T, ddof=1), m.cov_tol, "cov")
    assert_within(r.value, np.cov(X.T, ddof=1), r.details["error_bound"], "cov's own bound")
    r = fed.client.compute(StatSpec("corr", cols, backend=backend))
    assert_within(r.value, np.corrcoef(X.T), m.corr_tol, "corr")
    assert_within(r.value, np.corrcoef(X.T), r.details["error_bound"], "corr's own bound")


@pytest.mark.parametrize("backend", BACKENDS)
def test_histogram(fed, backend):
    edges = (20, 30, 40, 50, 60, 70, 80, 90)
    r = fed.client.compute(StatSpec("histogram", ("age", "bmi"), edges=edges, backend=backend))
    X = fed.pooled(("age", "bmi"))
    for j in range(2):
        counts, _ = np.histogram(X[:, j], bins=edges)
        assert r.value[j] == counts.tolist()  # exact on both backends
        assert r.details["below"][j] == int((X[:, j] < edges[0]).sum())
        assert r.details["above"][j] == int((X[:, j] > edges[-1]).sum())


@pytest.mark.parametrize("backend", BACKENDS)
def test_quantiles(fed, backend):
    probs = (0.1, 0.25, 0.5, 0.9)
    spec = StatSpec("quantiles", ("sbp",), probabilities=probs, bounds=(80, 220),
                    resolution=1024, backend=backend)
    r = fed.client.compute(spec)
    want = np.quantile(fed.pooled(("sbp",))[:, 0], probs, method="inverted_cdf")
    assert Backend(backend, len(HOSPITALS)).count_exact()
    assert_within(r.value[0], want, quantile_tol((80, 220), 1024), "quantiles")


@pytest.mark.parametrize("backend", BACKENDS)
def test_linear_regression(fed, backend):
    X = fed.pooled(("age", "bmi", "sbp"))
    A = np.column_stack([X[:, :2], np.ones(len(X))])
    coef, *_ = np.linalg.lstsq(A, X[:, 2], rcond=None)
    r = fed.client.compute(StatSpec("linreg", ("age", "bmi"), target="sbp", backend=backend))
    coef_tol, intercept_tol, r2_tol = moments(X, backend).linreg_tol()
    assert_within(r.value["coefficients"], coef[:2], coef_tol, "coefficients")
    assert_within(r.value["intercept"], coef[2], intercept_tol, "intercept")
    resid = X[:, 2] - A @ coef
    assert_within(r.details["r2"], 1 - resid.var() / X[:, 2].var(), r2_tol, "R^2")


@pytest.mark.parametrize("backend", BACKENDS)
def test_where_filter(fed, backend):
    where = "age > 45 and (sex == 'F' or bmi >= 30)"

    def mask(d):
        return (d["age"] > 45) & ((d["sex"] == "F") | (d["bmi"] >= 30))

    X = fed.pooled(("bmi", "sbp"), mask=mask)
    assert 40 < len(X) < 300  # the filter really filters
    r = fed.client.compute(StatSpec("count", ("bmi",), backend=backend), where=where)
    assert r.value == len(X)
    r = fed.client.compute(StatSpec("var", ("bmi", "sbp"), backend=backend), where=where)
    m = moments(X, backend)
    assert_within(r.details["mean"], X.mean(axis=0), m.pass2_mean_tol, "mean")
    assert_within(r.value, X.var(axis=0, ddof=1), m.var_tol, "var")


def test_a_subset_of_parties(fed):
    r = fed.client.compute(StatSpec("mean", ("age",)), parties=HOSPITALS[:2])
    X = fed.pooled(("age",), parties=HOSPITALS[:2])
    assert_within(r.value, X.mean(axis=0), moments(X, "ss", parties=2).mean_tol, "mean")


def read_predictions(path):
    """Decrypt a data owner's predictions file (encrypted at rest) with its party config."""
    from pathlib import Path

    from parties.privacy.outputs import read_output

    config = Path(path).parents[1] / "config.json"  # the data owner's node directory
    rows = list(csv.DictReader(read_output(config, path).decode().splitlines()))
    return (np.array([int(r["row"]) for r in rows]),
            np.array([float(r["prediction"]) for r in rows]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("model_name", ["risk", "cost"])
def test_inference(fed, backend, model_name):
    model = fed.models[model_name]
    p = fed.client.predict("hospital-b", "insurer", model=model_name, where="age >= 40",
                           backend=backend)
    d = fed.data["hospital-b"]
    selected = np.flatnonzero(d["age"] >= 40)
    assert p.data_owner == "hospital-b" and p.kind == model.kind and p.backend == backend
    assert p.n_predictions == len(selected)
    # the values are on the data owner's host only; the analyst got count and path
    out = federation.Layout(fed.directory).outputs("hospital-b")
    assert str(out) in p.output_path
    rows, preds = read_predictions(p.output_path)
    assert np.array_equal(rows, selected + 1)
    X = np.column_stack([d[f] for f in model.features])[selected]
    want = model.predict_plain(X)
    if backend == "ss":
        tol = ss_logit_bound(model.weights, model.intercept, X)
    else:
        spec = linear.InferenceSpec(model.kind, len(X), X.shape[1], backend="ckks")
        flood = linear.model_flood_std(spec, model.weights)
        tol = ckks_kept_key_bound(model.weights, spec.ckks_preset, flood)  # node: kept key
    if model.kind == "logistic":
        tol = logit_bound_to_probability(tol)
    assert_within(preds, want, tol, "predictions")
    if model.kind == "logistic":
        assert np.all((preds > 0) & (preds < 1))


def test_describe_lists_columns_and_model_metadata_only(fed):
    info = fed.client.describe()
    assert set(info.parties) == {*HOSPITALS, "insurer"}
    assert info.parties["hospital-a"].columns == ("age", "bmi", "sbp", "chol", "sex")
    models = {m.name: m for m in info.parties["insurer"].models}
    assert models["risk"].kind == "logistic" and models["risk"].features == ("age", "bmi", "sbp")
    assert models["cost"].features == ("age", "bmi", "sbp", "chol")
    assert not hasattr(models["risk"], "coefficients")


def test_clear_errors_for_bad_requests(fed):
    with pytest.raises(InvalidRequest, match="no column 'weight'") as e:
        fed.client.compute(StatSpec("mean", ("weight",)))
    assert e.value.node in HOSPITALS
    # a malformed filter is refused by the analyst's own client, before it is signed or sent
    with pytest.raises(FilterError, match="position 6"):
        fed.client.compute(StatSpec("mean", ("age",)), where="age >> 3")
    with pytest.raises(PermissionDenied, match="minimum cohort"):
        fed.client.compute(StatSpec("mean", ("age",)), where="age > 94.9")
    with pytest.raises(InvalidRequest, match="exceeds the declared feature bound 50") as e:
        fed.client.predict("hospital-a", "insurer", model="cost", feature_bound=50)
    assert e.value.node == "hospital-a"
    # no value: the only number is the analyst's own bound
    assert not any(ch.isdigit() for ch in
                   str(e.value).replace("hospital-a", "").replace("bound 50", ""))
    with pytest.raises(InvalidRequest, match="unknown party"):
        fed.client.compute(StatSpec("mean", ("age",)), parties=["hospital-a", "nowhere"])


def test_health_and_no_session_left_behind(fed):
    fed.client.compute(StatSpec("mean", ("age",), backend="ckks"))
    nodes = fed.client.health()
    assert {n.name for n in nodes} == {"coordinator", *HOSPITALS, "insurer"}
    assert all(n.ok for n in nodes)
    assert all(n.active_sessions == 0 for n in nodes), nodes


@pytest.mark.parametrize("module", ["parties.node", "parties.coordinator", "parties.dealer"])
def test_startup_errors_are_one_line(tmp_path, module):
    import subprocess
    import sys

    missing = tmp_path / "nope.json"
    p = subprocess.run([sys.executable, "-m", module, "--config", str(missing)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope.json" in lines[0] and "Traceback" not in p.stderr


def test_a_port_in_use_is_one_line(fed):
    import subprocess
    import sys

    cfg = federation.Layout(fed.directory).config("hospital-a")  # already running
    p = subprocess.run([sys.executable, "-m", "parties.node", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("smpc party: hospital-a cannot listen on")
    assert "in use" in lines[0]


def test_status_reports_every_running_node(fed):
    nodes = {n.name: n for n in federation.status(fed.directory)}
    assert set(nodes) == {"coordinator", *HOSPITALS, "insurer"}
    assert all(n.alive and n.pid for n in nodes.values())


def test_federation_files_and_permissions(fed):
    import stat

    lay = federation.Layout(fed.directory)

    def mode(p):
        return stat.S_IMODE(p.stat().st_mode)

    assert mode(lay.ca_key) == 0o600 and mode(lay.analyst_key) == 0o600
    for n in ("coordinator", *HOSPITALS, "insurer"):
        assert mode(lay.node_dir(n) / "key.pem") == 0o600
        assert lay.config(n).is_file() and lay.log(n).is_file() and lay.pid_file(n).is_file()
    assert {p.name for p in lay.models("insurer").iterdir()} == {"risk.json.enc",
                                                                  "cost.json.enc"}
    assert all(mode(p) == 0o600 for p in lay.models("insurer").iterdir())
    fedcfg = lay.federation()
    assert all(n.host == "127.0.0.1" and n.fingerprint for n in fedcfg.nodes)
    assert [a.name for a in fedcfg.analysts] == ["analyst"]
    for n in ("coordinator", *HOSPITALS):  # logs never carry values
        text = lay.log(n).read_text()
        assert not any(t in text for t in fed.csv_text["hospital-a"][:50])


def test_up_names_a_node_that_does_not_start(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "Site B.csv"
    for p in (a, b):
        p.write_text("x\n" + "\n".join(str(i + 0.5) for i in range(20)) + "\n")
    d = tmp_path / "fed"
    lay = federation.init_federation(d, [a, b])
    assert lay.parties() == ["a", "site-b"]
    b.unlink()  # the party's data file disappears before start-up
    with pytest.raises(federation.FederationError, match="site-b") as e:
        federation.up(d, timeout=30)
    assert "does not exist" in str(e.value)
    assert not any(n.alive for n in federation.status(d))  # what it started was stopped
    with pytest.raises(federation.FederationError, match="already holds a federation"):
        federation.init_federation(d, [a, a])
