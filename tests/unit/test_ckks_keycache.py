"""The data owner's kept CKKS key pairs (:mod:`smpc.ckks.keycache`) and what they change.

* :class:`smpc.ckks.KeyCache`: one key pair per scope, reused within ``max_uses`` and
  ``max_age``, another scope (analyst, peer, preset) never sharing it.
* :func:`smpc.linear.run_data_owner_ckks` with a kept key: the model owner is handed the same
  public context on the second request, and every decryption under that key leaves through the
  key holder's own release (flooded and rounded to the release grid), never raw.
* The node (:class:`parties.node.jobs.DataOwnerJob`): two ckks inferences of one analyst against
  one model owner run under one key, the scope being (analyst, model owner).

What the model owner was handed is observed by recording :func:`smpc.ckks.load_context`'s input
(the real function still runs).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from smpc import ckks, linear, simulator
from smpc.errors import InputError
from tests.tolerances import Z, ckks_logit_bound


def fingerprint(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def loaded(monkeypatch) -> list[str]:
    """The fingerprints of every context :func:`smpc.ckks.load_context` was given, in order."""
    seen: list[str] = []
    real = ckks.load_context

    def record(data, **kwargs):
        seen.append(fingerprint(bytes(data)))
        return real(data, **kwargs)

    monkeypatch.setattr(ckks, "load_context", record)
    return seen


def test_a_scope_keeps_its_key_and_another_scope_gets_its_own() -> None:
    """Same (analyst, peer) and preset: the same key holder (same public context).  Another
    analyst, another peer or another preset: another key (a cache keyed on fewer fields would
    hand one analyst's key to another's requests)."""
    cache = ckks.KeyCache()
    first = cache.get(("ana", "model-owner"), "aggregate")
    assert cache.get(("ana", "model-owner"), "aggregate") is first
    ids = {first.key_id,
           cache.get(("bob", "model-owner"), "aggregate").key_id,
           cache.get(("ana", "other-owner"), "aggregate").key_id,
           cache.get(("ana", "model-owner"), "sigmoid").key_id}
    assert len(ids) == 4
    assert cache.get(("ana", "model-owner"), "aggregate") is first


def test_a_key_is_replaced_after_its_uses_and_its_age() -> None:
    """``max_uses=2``: the third request gets a fresh key; ``max_age=10`` (a test clock): a key
    made 10 s ago is replaced.  Bad limits are refused."""
    now = [0.0]
    cache = ckks.KeyCache(max_uses=2, max_age=10.0, clock=lambda: now[0])
    a = cache.get("scope", "aggregate")
    assert cache.get("scope", "aggregate") is a
    b = cache.get("scope", "aggregate")
    assert b is not a and b.key_id != a.key_id
    now[0] = 9.5
    assert cache.get("scope", "aggregate") is b  # 2nd use, 9.5 s old
    cache2 = ckks.KeyCache(max_uses=100, max_age=10.0, clock=lambda: now[0])
    c = cache2.get("scope", "aggregate")
    now[0] += 10.0
    assert cache2.get("scope", "aggregate").key_id != c.key_id
    for bad in ({"max_uses": 0}, {"max_uses": True}, {"max_age": 0.0}):
        with pytest.raises(InputError):
            ckks.KeyCache(**bad)


def _infer(spec, model, X, holder):
    roles = {
        "do": lambda t: linear.run_data_owner_ckks(t, spec, X, model_owner="mo", tag="inf",
                                                   holder=holder),
        "mo": lambda t: linear.run_model_owner_ckks(t, spec, model, data_owner="do", tag="inf"),
    }
    return np.asarray(simulator.run(roles).results["do"])


def test_a_kept_key_is_reused_and_every_decryption_under_it_is_released(loaded) -> None:
    """Two inferences with one kept key: the model owner loads the same public context (the
    holder's) both times, and the predictions lie on the release grid ``g`` -- the data owner's
    own flood and rounding ran (64 raw CKKS decryptions all on a 2^-7 grid: probability ~0).
    Within ``ckks_logit_bound`` (the evaluation and the model owner's flood ``sigma_mo``, at Z
    sigma) plus the release: its flood at Z ``sigma_do`` and the rounding ``g / 2``; 128 values
    at Z = 6 fail with probability below 128 * 2 * P_TAIL = 5e-7.  Without a kept key each
    inference makes its own key and decrypts without a release (off the grid)."""
    rng = np.random.default_rng(1414)
    model = linear.LinearModel("linear", ("a", "b", "c"), (0.5, -1.25, 2.0), 0.75)
    X = rng.uniform(-4, 4, (64, 3))
    spec = linear.InferenceSpec("linear", 64, 3, backend="ckks", feature_bound=4.0)
    holder = ckks.KeyHolder("aggregate")
    rel = holder.release_parameters()
    sigma_mo = linear.model_flood_std(spec, model.weights)
    tol = ckks_logit_bound(model.weights, "aggregate", sigma_mo) + Z * rel.flood_std \
        + rel.grid / 2
    for _ in range(2):
        got = _infer(spec, model, X, holder)
        assert np.abs(got - model.predict_plain(X)).max() <= tol
        np.testing.assert_array_equal(np.round(got / rel.grid) * rel.grid, got)
    assert loaded == [fingerprint(holder.public_context())] * 2
    fresh = [_infer(spec, model, X, None) for _ in range(2)]
    assert loaded[2] != loaded[3] and holder.key_id not in loaded[2:]
    assert not np.array_equal(np.round(fresh[0] / rel.grid) * rel.grid, fresh[0])


def test_a_kept_key_of_another_preset_is_refused() -> None:
    """A kept key pair made for another preset than the spec's is an InputError before
    anything is sent (the model owner would refuse its context anyway)."""
    spec = linear.InferenceSpec("logistic", 4, 1, backend="ckks", output="encrypted-sigmoid",
                                feature_bound=1.0)
    holder = ckks.KeyHolder("aggregate")
    roles = {"do": lambda t: linear.run_data_owner_ckks(t, spec, np.zeros((4, 1)),
                                                        model_owner="mo", tag="x",
                                                        holder=holder),
             "mo": lambda t: t.recv_bytes("do", "x/ctx")}
    with pytest.raises(InputError, match="kept key pair is for the 'aggregate' preset"):
        simulator.run(roles, timeout=10.0)


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    """Two parties (clinic-a: data owner, clinic-c: model owner of a 2-feature linear model),
    exact-prediction policy, in one process."""
    from parties.federation.inprocess import InProcessFederation
    from parties.federation.local import init_federation

    d: Path = tmp_path_factory.mktemp("keys")
    rng = np.random.default_rng(1515)
    for name in ("clinic-a", "clinic-c"):
        x = rng.uniform(0, 10, (40, 2))
        rows = "".join(f"{float(a)!r},{float(b)!r}\n" for a, b in x)
        (d / f"{name}.csv").write_text("u,v\n" + rows)
    model = linear.LinearModel("linear", ("u", "v"), (0.25, -0.5), 1.0)
    (d / "m.json").write_text(json.dumps(model.to_json()))
    init_federation(d / "fed", [d / "clinic-a.csv", d / "clinic-c.csv"],
                    models={"clinic-c": d / "m.json"}, min_cohort_size=5, allow_exact=True)
    with InProcessFederation.open(d / "fed") as f:
        yield f


def test_the_data_owner_node_keeps_one_key_per_analyst_and_model_owner(fed, loaded) -> None:
    """Two ckks inferences of one analyst against one model owner: the model owner is handed
    the same public context, which is the data owner's kept key for (analyst, model owner);
    another analyst's scope holds another key."""
    for _ in range(2):
        p = fed.predict("clinic-a", "clinic-c", backend="ckks", feature_bound=16.0)
        assert p.n_predictions == 40
    assert len(loaded) == 2 and loaded[0] == loaded[1]
    keys = fed.parties["clinic-a"].ckks_keys
    assert fingerprint(keys.get((fed.analyst, "clinic-c"), "aggregate").public_context()) \
        == loaded[0]
    assert fingerprint(keys.get((fed.analyst + "-2", "clinic-c"), "aggregate")
                       .public_context()) != loaded[0]
