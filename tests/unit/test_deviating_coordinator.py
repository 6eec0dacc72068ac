"""A deviating coordinator cannot learn a party's data: every attack of issue 11, as a test.

The coordinator carries the analyst's requests but is not trusted with the parties' data.
Each test below runs a federation in one process (real party nodes: policy, ledger, audit log
in SQLite, TenSEAL; :class:`parties.federation.inprocess.InProcessFederation`) whose
coordinator deviates -- through the same control plane and the same protobuf edge as over gRPC
-- and asserts that the parties refuse **before reading a row or sending anything**, that no
budget moved, and that the refusal is audited.  Each attack worked before the analyst signed
its requests (the coordinator was trusted for what it asked).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from parties.coordinator.prediction import PredictionProtocol
from parties.coordinator.requests import PredictionRequest, StatisticRequest
from parties.coordinator.statistic import CONTEXT_TAG, STAT_TAG, StatisticProtocol
from parties.errors import NodeBlamed
from parties.federation.inprocess import InProcessFederation
from parties.federation.local import init_federation
from parties.pki import signed as signed_mod
from parties.pki.certs import load_certificate, load_private_key
from parties.privacy.audit import AuditLog
from parties.privacy.ledger import Ledger
from parties.transport.control import PrepareModelOwner
from parties.transport.requests import prediction_request, statistic_request
from smpc import ckks, dp
from smpc.linear import LinearModel
from smpc.stats import StatSpec

PARTIES = ("clinic-a", "clinic-b", "clinic-c")
MODEL = LinearModel("linear", ("age", "bmi"), (0.25, -1.5), 3.0)
DP = dp.DPRequest(epsilon=0.2, delta=1e-6, bounds={"age": (0.0, 120.0)})


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    d = tmp_path_factory.mktemp("deviating")
    rng = np.random.default_rng(8)
    files = []
    for k, name in enumerate(PARTIES):
        n = 30 + 5 * k
        files.append(d / f"{name}.csv")
        with files[-1].open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["age", "bmi"])
            for a, b in zip(rng.normal(50, 10, n), rng.normal(27, 4, n), strict=True):
                w.writerow([repr(float(a)), repr(float(b))])
    model = d / "risk.json"
    model.write_text(json.dumps(MODEL.to_json()))
    init_federation(d / "fed", files, models={"clinic-c": model}, min_cohort_size=5)
    with InProcessFederation.open(d / "fed") as f:
        yield f


def budgets(fed: InProcessFederation) -> dict[str, float]:
    return {p: Ledger(fed.parties[p].cfg.database).remaining(fed.analyst, p) for p in PARTIES}


def last_outcomes(fed: InProcessFederation, party: str, n: int = 1) -> list[dict]:
    return [r.event for r in AuditLog(fed.parties[party].cfg.database).records(limit=None)][-n:]


def signed_statistic(fed, spec, parties=PARTIES, where="", context=None):
    body = statistic_request(spec, where, parties)
    return fed.sign(body, "statistic", signed_mod.context_hash(context) if context else None)


def run(fed, request, protocol=StatisticProtocol, **kw):
    coord = fed.coordinator
    return coord.execute(protocol(coord, fed.analyst, request, **kw))


def assert_refused_everywhere(fed, before, *, contains):
    assert budgets(fed) == before  # nothing spent, nothing pending
    for p in PARTIES:
        assert fed.parties[p].registry.count() == 0
    last = [last_outcomes(fed, p)[0] for p in PARTIES]
    assert all(e["outcome"] == "refused" and contains in e["reason"] for e in last), \
        [(e["outcome"], e["reason"]) for e in last]


def test_a_coordinator_that_swaps_the_ckks_key_gets_nothing_encrypted_under_it(fed):
    """The coordinator hands the parties its own public key instead of the analyst's: with it
    it could decrypt each party's individual aggregate.  Every party checks the key against
    the hash the analyst signed and encrypts nothing."""
    analyst_key = ckks.KeyHolder("aggregate")
    attacker_key = ckks.KeyHolder("aggregate")
    spec = StatSpec("sum", ("age",), backend="ckks")
    request = StatisticRequest(spec, PARTIES, "", 30.0,
                               signed_statistic(fed, spec, context=analyst_key.public_context()))
    sent: list[bytes] = []

    class SwapsTheKey(StatisticProtocol):
        def _local_role(self):
            t = self.transport
            for p in self.parties:  # the attacker's key, not the one the analyst signed
                t.send(p, f"{STAT_TAG}/{CONTEXT_TAG}", attacker_key.public_context())
            for p in self.parties:
                with contextlib.suppress(Exception):
                    sent.append(t.recv_bytes(p, f"{STAT_TAG}/p1/ct/0"))
            return None

    with pytest.raises(NodeBlamed) as e:
        run(fed, request, SwapsTheKey, to_analyst=lambda tag, payload: None,
            context_bytes=analyst_key.public_context())
    assert e.value.node == fed.coordinator.me
    assert "public key the analyst did not sign" in str(e.value)
    assert sent == []  # no party encrypted anything under the attacker's key
    for p in PARTIES:
        assert last_outcomes(fed, p)[0]["outcome"] == "failed"


def test_a_coordinator_that_runs_a_single_party_session_is_refused(fed):
    """The coordinator runs a "joint" statistic over one party to read its aggregate."""
    spec = StatSpec("sum", ("age",), dp=DP)
    before = budgets(fed)
    signed = signed_statistic(fed, spec)  # the analyst asked for all three
    with pytest.raises(NodeBlamed) as e:
        run(fed, StatisticRequest(spec, ("clinic-a",), "", 30.0, signed))
    assert e.value.node == "clinic-a"
    assert "parties are not the ones the analyst signed" in str(e.value)
    # an analyst's own request over one party is refused by the party's policy too
    lonely = signed_statistic(fed, spec, parties=("clinic-b",))
    with pytest.raises(NodeBlamed, match="at least 2 data parties"):
        run(fed, StatisticRequest(spec, ("clinic-b",), "", 30.0, lonely))
    assert budgets(fed) == before


def test_a_coordinator_that_impersonates_an_analyst_is_refused_and_spends_no_budget(fed):
    """The coordinator asks in an analyst's name: without a request, with a request signed by
    its own key, or with a real request while claiming another analyst (whose budget the
    audit log would name)."""
    spec = StatSpec("mean", ("age",), dp=DP)
    before = budgets(fed)
    with pytest.raises(NodeBlamed, match="not signed by an analyst"):
        run(fed, StatisticRequest(spec, PARTIES, "", 30.0, None))
    assert_refused_everywhere(fed, before, contains="not signed by an analyst")
    # the coordinator's own key, with the analyst's certificate attached
    coord_key = load_private_key(fed.layout.node_dir(fed.coordinator.me) / "key.pem")
    forged = signed_mod.sign(statistic_request(spec, "", PARTIES), kind="statistic",
                             federation=fed.coordinator.federation.name, analyst=fed.analyst,
                             key=coord_key, cert=load_certificate(fed.layout.analyst_cert))
    forged_signed = dataclasses.replace(signed_statistic(fed, spec), envelope=forged)
    with pytest.raises(NodeBlamed, match="signature does not verify"):
        run(fed, StatisticRequest(spec, PARTIES, "", 30.0, forged_signed))
    assert_refused_everywhere(fed, before, contains="signature does not verify")
    # a genuine request, asked in another analyst's name
    real = signed_statistic(fed, spec)
    coord = fed.coordinator
    with pytest.raises(NodeBlamed, match="signed by"):
        coord.execute(StatisticProtocol(coord, "someone-else",
                                        StatisticRequest(spec, PARTIES, "", 30.0, real)))
    assert_refused_everywhere(fed, before, contains="signed by")


def test_a_coordinator_that_replays_a_signed_request_is_refused(fed):
    """The coordinator runs the same signed request twice: to read a fresh noisy answer and
    spend the analyst's budget again.  Every party accepts a signed request once."""
    spec = StatSpec("mean", ("age",), dp=DP)
    request = StatisticRequest(spec, PARTIES, "", 30.0, signed_statistic(fed, spec))
    run(fed, request)
    once = budgets(fed)
    with pytest.raises(NodeBlamed, match="already used"):
        run(fed, request)
    assert budgets(fed) == once
    hashes = {e["request_hash"] for p in PARTIES for e in last_outcomes(fed, p, 3)
              if "request_hash" in e}
    assert hashes == {request.signed.request_hash}  # the audit log names what was signed


def test_a_coordinator_that_changes_what_was_asked_is_refused(fed):
    """The analyst signed a mean over one filter; the coordinator prepares another statistic,
    another filter or another column."""
    asked = StatSpec("mean", ("age",), dp=DP)
    signed = signed_statistic(fed, asked, where="age > 40")
    before = budgets(fed)
    for spec, where in ((StatSpec("sum", ("age",), dp=DP), "age > 40"), (asked, "age > 0"),
                        (StatSpec("mean", ("bmi",), dp=dp.DPRequest(
                            epsilon=0.2, delta=1e-6, bounds={"bmi": (0.0, 80.0)})), "age > 40")):
        with pytest.raises(NodeBlamed, match="not the one the analyst signed"):
            run(fed, StatisticRequest(spec, PARTIES, where, 30.0, signed))
    assert budgets(fed) == before


def test_a_coordinator_that_turns_flooding_off_is_refused_by_the_model_owner(fed):
    """The coordinator sets ``flood_bits=0`` in a ckks inference: the model owner would return
    logits whose exact CKKS error the data owner (the key holder) could solve for the weights
    with.  The model owner's policy fixes its least flooding."""
    body = prediction_request(data_owner="clinic-a", model_owner="clinic-c", backend="ckks")
    request = PredictionRequest("clinic-a", "clinic-c", backend="ckks", timeout=30.0,
                                signed=fed.sign(body, "prediction"))

    class NoFlood(PredictionProtocol):
        def prepare(self):
            real = self.coord.prepare

            def unflooded(st, requests):
                return real(st, {n: dataclasses.replace(
                    r, spec=dataclasses.replace(r.spec, flood_bits=0))
                    if isinstance(r, PrepareModelOwner) else r for n, r in requests.items()})

            self.coord.prepare = unflooded
            try:
                super().prepare()
            finally:
                del self.coord.prepare

    with pytest.raises(NodeBlamed) as e:
        run(fed, request, NoFlood)
    assert e.value.node == "clinic-c" and "policy.min_flood_bits" in str(e.value)
    outputs = list(fed.layout.outputs("clinic-a").glob("*.enc"))
    assert all(request.signed.request_hash not in p.name for p in outputs)
    assert last_outcomes(fed, "clinic-c")[0]["outcome"] == "refused"


def test_the_audit_log_records_the_signed_request_and_the_members(fed):
    spec = StatSpec("count", ("age",))
    request = StatisticRequest(spec, PARTIES, "", 30.0, signed_statistic(fed, spec))
    run(fed, request)
    for p in PARTIES:
        accepted = next(e for e in last_outcomes(fed, p, 2) if e["outcome"] == "accepted")
        assert accepted["request_hash"] == request.signed.request_hash
        assert sorted(accepted["members"]) == sorted([*PARTIES, fed.coordinator.me])
        assert accepted["analyst"] == fed.analyst


def test_the_signed_envelope_refuses_tampering_and_expiry(fed):
    spec = StatSpec("count", ("age",))
    good = signed_statistic(fed, spec)
    ca = load_certificate(fed.layout.ca_cert)
    name = fed.coordinator.federation.name
    outer = json.loads(good.envelope)
    tampered = json.dumps({**outer, "payload": outer["payload"].replace("count", "sum")}).encode()
    with pytest.raises(signed_mod.SignedRequestError, match="does not verify"):
        signed_mod.verify(tampered, ca_cert=ca, federation=name)
    with pytest.raises(signed_mod.SignedRequestError, match="expired"):
        signed_mod.verify(good.envelope, ca_cert=ca, federation=name,
                          now=good.expires + signed_mod.CLOCK_SKEW_SECONDS + 1)
    with pytest.raises(signed_mod.SignedRequestError, match="not an analyst of federation"):
        signed_mod.verify(good.envelope, ca_cert=ca, federation="other-fed")
    assert signed_mod.verify(good.envelope, ca_cert=ca, federation=name).request_hash \
        == good.request_hash
    assert Path(fed.layout.analyst_key).stat().st_mode & 0o077 == 0
