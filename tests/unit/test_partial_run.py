"""Proceeding without parties that decline (issue 13, item 6), on real party nodes in process.

Built with :class:`parties.federation.inprocess.InProcessFederation` from a federation made by
``init_federation`` (real policies, real SQLite ledgers and audit logs; the control calls go
through the protobuf edge).  Four parties: ``clinic-a``, ``clinic-b`` (40 and 50 rows),
``clinic-c`` (45 rows, its policy ``min_parties`` = 3) and ``small`` (12 rows, of which only 4
have ``age >= 40``, and no ``chol`` column).  Every party answers exact statistics with a
minimum cohort of 10, so ``small`` declines the filtered query ``age >= 40`` (the
differencing safeguard is off: ``exact_history`` 0).

Exact answers are compared with numpy on the pooled rows of the parties that took part:
``ss`` count and mean with 16 fractional bits, the mean's error is at most one rounding of the
sum's encoding per party plus the division's (well below 1e-3 for values < 200 and n >= 40;
the project's stated bound for an exact ``ss`` mean, see ``tests.tolerances``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import grpc
import numpy as np
import pytest

from parties.coordinator.requests import StatisticRequest
from parties.coordinator.statistic import StatisticProtocol
from parties.errors import NodeBlamed, PermissionDenied
from parties.federation.inprocess import InProcessFederation
from parties.federation.local import init_federation
from parties.privacy.ledger import Ledger
from parties.transport.requests import statistic_request
from smpc import dp
from smpc.stats import StatSpec
from tests.tolerances import Backend, Moments

WHERE = "age >= 40"
#: |secure exact mean - numpy mean|: fixed point with 16 fractional bits rounds each party's
#: sum by at most 2^-17 and the finishing division is float64; 1e-6 covers both for n >= 40
#: and sums < 1e4 (the decoded sum is exact to 2^-17 * parties).
MEAN_TOL = 1e-6


def _write_csv(path: Path, cols: dict[str, np.ndarray]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(list(cols))
        for row in zip(*cols.values(), strict=True):
            w.writerow([repr(float(v)) for v in row])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The four parties (see the module docstring), built in process, and their data."""
    d = tmp_path_factory.mktemp("partial")
    rng = np.random.default_rng(1313)
    data: dict[str, dict[str, np.ndarray]] = {}
    sizes = {"clinic-a": 40, "clinic-b": 50, "clinic-c": 45}
    for name, n in sizes.items():
        data[name] = {"age": rng.uniform(41, 90, n), "chol": rng.normal(5.2, 0.9, n)}
    # small: 4 rows with age >= 40, 8 below -- a cohort of 4 < 10 under the filter
    data["small"] = {"age": np.concatenate([rng.uniform(41, 90, 4), rng.uniform(18, 39, 8)])}
    files = []
    for name, cols in data.items():
        files.append(d / f"{name}.csv")
        _write_csv(files[-1], cols)
    # exact_history 0: no differencing refusal, so that the tests do not depend on each other
    lay = init_federation(d / "fed", files, min_cohort_size=10, allow_exact=True,
                          exact_safeguards={"exact_history": 0})
    cfg_path = Path(lay.config("clinic-c"))
    cfg = json.loads(cfg_path.read_text())
    cfg["policy"]["min_parties"] = 3
    cfg_path.write_text(json.dumps(cfg))
    with InProcessFederation.open(d / "fed") as fed:
        assert fed.parties["clinic-c"].cfg.policy.min_parties == 3
        yield fed, data


def _pooled(data, column, parties, where=True):
    out = []
    for p in parties:
        v = data[p][column]
        out.append(v[data[p]["age"] >= 40] if where else v)
    return np.concatenate(out)


def test_decline_fails_without_the_option_naming_the_party(world):
    """Without ``allow_partial`` a decline fails the whole query, naming the decliner and its
    reason (catches: a coordinator that silently drops a decliner, or an error without the
    ``declines`` the analyst needs to proceed)."""
    fed, _ = world
    with pytest.raises(NodeBlamed) as err:
        fed.compute(StatSpec("mean", ("age",)), WHERE)
    assert err.value.node == "small"
    assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "small" in str(err.value) and "cohort" in str(err.value)
    assert set(err.value.declines) == {"small"}
    assert err.value.declines["small"] == str(err.value)


def test_proceeds_without_the_decliner_and_names_who_took_part(world):
    """With ``allow_partial`` the mean comes from the three others, equals numpy on their
    pooled rows, and the answer names the participants and the decliner with its reason
    (catches: the decliner's rows counted, a result without the participants, a reason
    lost)."""
    fed, data = world
    r = fed.compute(StatSpec("mean", ("age",)), WHERE, allow_partial=True)
    took = ["clinic-a", "clinic-b", "clinic-c"]
    assert r.details["parties"] == took
    assert list(r.details["declined"]) == ["small"]
    assert "small refuses" in r.details["declined"]["small"]
    assert "cohort" in r.details["declined"]["small"]
    ref = _pooled(data, "age", took)
    assert r.n == ref.size
    assert abs(r.value[0] - ref.mean()) <= MEAN_TOL
    # the small clinic's 4 filtered rows are not in it: with them the mean would differ
    assert ref.size != _pooled(data, "age", [*took, "small"]).size


def test_no_decline_names_every_party(world):
    """A query nobody declines still names its parties and an empty ``declined``."""
    fed, data = world
    r = fed.compute(StatSpec("count", ("age",)), "", allow_partial=True)
    assert r.details["parties"] == sorted(data)
    assert r.details["declined"] == {}
    assert r.value == sum(d["age"].size for d in data.values())


def test_min_parties_still_applies_to_the_reduced_run(world):
    """``clinic-c`` (``min_parties`` = 3) refuses the run of two that remains after ``small``
    declines, so the query fails naming both decliners (catches: a reduced run that skips a
    party's ``min_parties``, or a client that proceeds with a single party)."""
    fed, _ = world
    with pytest.raises(PermissionDenied) as err:
        fed.compute(StatSpec("mean", ("age",)), WHERE,
                    parties=("clinic-a", "clinic-c", "small"), allow_partial=True)
    assert set(err.value.declines) == {"small", "clinic-c"}
    assert "policy.min_parties" in err.value.declines["clinic-c"]
    assert "too few parties remain" in str(err.value)
    assert "clinic-c refuses" in str(err.value) and "small refuses" in str(err.value)


def test_first_attempts_reservation_is_released(world):
    """Under DP, ``small`` declines (it has no ``chol``) after the three others reserved the
    request's rho; the abandoned attempt's reservations are refunded and the answer is
    charged once per answering party (catches: an analyst charged twice for one answer, or a
    reservation left pending)."""
    fed, _ = world
    req = dp.DPRequest(rho=0.01, bounds={"chol": (0.0, 10.0)})
    before = {p: {c.session_id for c in Ledger(fed.parties[p].cfg.database).charges()}
              for p in fed.parties}
    r = fed.compute(StatSpec("mean", ("chol",), dp=req), "", allow_partial=True)
    assert r.details["parties"] == ["clinic-a", "clinic-b", "clinic-c"]
    assert "small" in r.details["declined"]
    for p in r.details["parties"]:
        new = [c for c in Ledger(fed.parties[p].cfg.database).charges()
               if c.session_id not in before[p]]
        states = sorted(c.state for c in new)
        assert states == ["refunded", "spent"], (p, states)
        assert all(c.rho == pytest.approx(0.01) for c in new)
    small = [c for c in Ledger(fed.parties["small"].cfg.database).charges()
             if c.session_id not in before["small"]]
    assert small == []  # it declined before reserving anything


def test_unreachable_party_is_not_skipped(world):
    """A party that cannot be reached is a failure, not a decline: with ``allow_partial`` the
    query still fails naming it -- alone, or beside a party that declines (catches: a client
    that treats every failure as skippable)."""
    fed, _ = world
    control = fed.coordinator.control
    gone = control.parties.pop("clinic-b")  # the in-process plane's "unreachable"
    try:
        for where in ("", WHERE):
            with pytest.raises(NodeBlamed) as err:
                fed.compute(StatSpec("count", ("age",)), where, allow_partial=True)
            assert err.value.node == "clinic-b"
            assert err.value.code == grpc.StatusCode.UNAVAILABLE
            assert err.value.declines == {}
    finally:
        control.parties["clinic-b"] = gone


def test_a_coordinator_cannot_drop_the_decliner_on_its_own(world):
    """A deviating coordinator reruns the analyst's signed request (which names all four
    parties) over the three that accepted: each of them refuses, since the session's parties
    are not the ones the analyst signed -- only the analyst's client can ask without a
    decliner (catches: a member-set check that accepts a subset)."""
    fed, _ = world
    spec = StatSpec("mean", ("age",))
    everyone = tuple(sorted(fed.parties))
    signed = fed.sign(statistic_request(spec, WHERE, everyone), "statistic")
    rest = ("clinic-a", "clinic-b", "clinic-c")
    coord = fed.coordinator
    with pytest.raises(NodeBlamed) as err:
        coord.execute(StatisticProtocol(coord, fed.analyst,
                                        StatisticRequest(spec, rest, WHERE, 30.0, signed)))
    assert set(err.value.declines) == set(rest)
    assert all("not the ones the analyst signed" in why for why in err.value.declines.values())


def test_proceeds_on_ckks_with_a_fresh_key_per_attempt(world):
    """On ``ckks`` the rerun signs a new request under a new key holder's context (each party
    checks the signed context hash): the mean from the three others equals numpy within the
    ckks mean bound of :mod:`tests.tolerances` (release flooding at 6 sigma, false failure
    below 1e-6) -- catches a rerun that reuses the first attempt's signed context."""
    fed, data = world
    r = fed.compute(StatSpec("mean", ("age",), backend="ckks"), WHERE, allow_partial=True)
    took = ["clinic-a", "clinic-b", "clinic-c"]
    assert r.details["parties"] == took and list(r.details["declined"]) == ["small"]
    ref = _pooled(data, "age", took)
    assert abs(r.value[0] - ref.mean()) <= Moments(ref, Backend("ckks", 3)).mean_tol[0]
