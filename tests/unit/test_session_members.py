"""Who may take part in a session, as each party checks it on its own.

A party accepts a Prepare only if the member list is well formed, names it, and names only
nodes of its federation (checked once, at the service edge: :func:`prepare_from_pb`); then the
node checks each member's session role against that member's role in the federation config: a
statistic's sum goes to a coordinator (never to another party), the parties of a statistic and
the owners of an inference are party nodes, the dealer is a dealer or the coordinator.  A
coordinator that names anyone else gets a refusal naming the rule, and nothing is registered.

Built with :class:`InProcessFederation` from ``init_federation`` (real configs, certificates,
SQLite ledgers and audit logs; only the network is replaced): three parties, a separate dealer,
org-b owning a linear model.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from parties.errors import NodeBlamed
from parties.federation.inprocess import InProcessFederation
from parties.federation.local import init_federation
from parties.pki.certs import issue_node_certificate, load_ca
from parties.pki.signed import sign
from parties.privacy.audit import AuditLog
from parties.transport.control import (
    Deal,
    PrepareDataOwner,
    PrepareModelOwner,
    PrepareStatistic,
    deal_from_pb,
    deal_to_pb,
    prepare_from_pb,
    prepare_to_pb,
)
from parties.transport.control import SessionRole as R
from parties.transport.requests import prediction_request, statistic_request
from smpc.errors import InputError
from smpc.linear import InferenceSpec, LinearModel
from smpc.stats import StatSpec

PARTIES = ("org-a", "org-b", "org-c")
COORD, DEALER = "coordinator", "dealer"
MEAN = StatSpec("mean", ("age",))
N_ROWS = 12


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessFederation]:
    d = tmp_path_factory.mktemp("members")
    rng = np.random.default_rng(9)
    files = []
    for name in PARTIES:
        path = d / f"{name}.csv"
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["age", "bmi"])
            w.writerows([[repr(float(a)), repr(float(b))] for a, b in
                         zip(rng.normal(50, 10, N_ROWS), rng.normal(27, 3, N_ROWS), strict=True)])
        files.append(path)
    model = d / "risk.json"
    model.write_text(json.dumps(LinearModel("linear", ("age", "bmi"), (0.25, -1.5), 3.0)
                                .to_json()))
    # exact answers allowed: these tests are about who may take part in a session
    init_federation(d / "fed", files, models={"org-b": model}, min_cohort_size=5,
                    separate_dealer=True, allow_exact=True)
    with InProcessFederation.open(d / "fed") as f:
        assert {n.name: n.role for n in f.layout.federation().nodes} == {
            COORD: "coordinator", DEALER: "dealer", "org-a": "party", "org-b": "party",
            "org-c": "party"}
        yield f


_ids = iter(range(10**6))


def sid() -> str:
    return f"members-{next(_ids):08d}"


def statistic(fed: InProcessFederation, members: dict[str, R]) -> PrepareStatistic:
    """A statistic over ``members``, signed by the analyst for exactly these parties (so the
    signature check passes and the node's own member checks decide)."""
    parties = [n for n, role in members.items() if role is R.PARTY]
    signed = fed.sign(statistic_request(MEAN, "", parties), "statistic").envelope
    return PrepareStatistic(sid(), fed.analyst, members, 30.0, spec=MEAN, signed_request=signed)


def signed_prediction(fed: InProcessFederation, members: dict[str, R], backend: str = "ss",
                      **fields: Any) -> bytes:
    """The analyst's signed prediction between the owners named in ``members`` (``fields``
    override the body's other entries)."""
    owners = {role: n for n, role in members.items()}
    body = prediction_request(data_owner=owners[R.DATA_OWNER],
                              model_owner=owners[R.MODEL_OWNER], backend=backend)
    return fed.sign({**body, **fields}, "prediction").envelope


def data_owner(fed: InProcessFederation, members: dict[str, R], backend: str = "ss"
               ) -> PrepareDataOwner:
    return PrepareDataOwner(sid(), fed.analyst, members, 30.0, spec=draft(backend),
                            features=("age", "bmi"),
                            signed_request=signed_prediction(fed, members, backend))


def model_owner(fed: InProcessFederation, members: dict[str, R]) -> PrepareModelOwner:
    return PrepareModelOwner(sid(), fed.analyst, members, 30.0, spec=draft(n_samples=N_ROWS),
                             signed_request=signed_prediction(fed, members))


def draft(backend: str = "ss", n_samples: int = 1) -> InferenceSpec:
    return InferenceSpec(kind="linear", n_samples=n_samples, n_features=2, backend=backend)


def prepare(fed: InProcessFederation, node: str, request: PrepareStatistic | PrepareDataOwner
            | PrepareModelOwner) -> None:
    """Prepare ``request`` on ``node`` through the protobuf edge; abort it again if accepted."""
    control = fed.coordinator.control
    control.prepare(node, request, 30.0)
    control.abort(node, request.session_id, "test done", None, 30.0)


def refused(fed: InProcessFederation, node: str, request: PrepareStatistic | PrepareDataOwner
            | PrepareModelOwner) -> str:
    before = fed.parties[node].registry.count()
    with pytest.raises(NodeBlamed) as ei:
        prepare(fed, node, request)
    assert fed.parties[node].registry.count() == before  # nothing registered
    return str(ei.value)


# ------------------------------------------------------------------------------ the edge


def test_a_well_formed_member_list_is_parsed_with_its_roles(fed: InProcessFederation) -> None:
    """The control case: the members come out as typed session roles, in order."""
    members = {"org-a": R.PARTY, "org-b": R.PARTY, COORD: R.RECIPIENT}
    msg = prepare_to_pb(statistic(fed, members))
    parsed = prepare_from_pb(msg, "org-a", fed.layout.federation())
    assert dict(parsed.members) == members and list(parsed.members) == list(members)
    deal = Deal(sid(), 30.0, draft(), {"org-a": R.DATA_OWNER, "org-b": R.MODEL_OWNER,
                                       DEALER: R.DEALER}, "inf")
    assert deal_from_pb(deal_to_pb(deal), DEALER, fed.layout.federation()) == deal


@pytest.mark.parametrize(("names", "message"), [
    (["org-a", "", COORD], "the session's member list is malformed"),
    (["org-a", "org-b", "org-b", COORD], "the session's member list is malformed"),
    (["org-b", COORD], "org-a is not a member of the session it was asked to prepare"),
    (["org-a", "mallory", COORD], "session member 'mallory' is not a node of the federation"),
    (["org-a", "org-b", "analyst"], "session member 'analyst' is not a node of the federation"),
], ids=["unnamed-member", "member-twice", "not-me", "stranger", "analyst-as-node"])
def test_a_malformed_member_list_is_refused_at_the_edge(
    fed: InProcessFederation, names: list[str], message: str,
) -> None:
    """A member without a name or named twice, a session that does not include the party, or
    a member that is not a node of the federation: refused before the node sees the request
    (the session would accept messages from it). Catches each member check being skipped."""
    msg = prepare_to_pb(statistic(fed, {"org-a": R.PARTY, COORD: R.RECIPIENT}))
    del msg.members[:]
    for i, name in enumerate(names):
        msg.members.add(name=name, role=str(R.RECIPIENT if i == len(names) - 1 else R.PARTY))
    with pytest.raises(InputError) as ei:
        prepare_from_pb(msg, "org-a", fed.layout.federation())
    assert str(ei.value) == message


# ------------------------------------------------------------------------------ the node


def test_well_formed_sessions_are_prepared(fed: InProcessFederation) -> None:
    """The control cases: a statistic whose sum goes to the coordinator; an ss inference with
    the separate dealer and one with the coordinator as dealer (both sides); a ckks inference
    with no dealer at all."""
    prepare(fed, "org-a", statistic(fed, {"org-a": R.PARTY, "org-b": R.PARTY,
                                          COORD: R.RECIPIENT}))
    prepare(fed, "org-b", statistic(fed, {"org-a": R.PARTY, "org-b": R.PARTY,
                                          COORD: R.AGGREGATOR}))
    for dealer in (DEALER, COORD):
        members = {"org-a": R.DATA_OWNER, "org-b": R.MODEL_OWNER, dealer: R.DEALER}
        prepare(fed, "org-a", data_owner(fed, members))
        prepare(fed, "org-b", model_owner(fed, members))
    prepare(fed, "org-a", data_owner(fed, {"org-a": R.DATA_OWNER, "org-b": R.MODEL_OWNER},
                                     "ckks"))


@pytest.mark.parametrize(("members", "rule"), [
    ({"org-a": R.PARTY, "org-c": R.PARTY, "org-b": R.RECIPIENT},
     "the recipient or aggregator of a session must be a coordinator node, not 'org-b'"),
    ({"org-a": R.PARTY, "org-b": R.PARTY, "org-c": R.AGGREGATOR},
     "the recipient or aggregator of a session must be a coordinator node, not 'org-c'"),
    ({"org-a": R.PARTY, DEALER: R.PARTY, COORD: R.RECIPIENT},
     "the parties of a session must be a party node, not 'dealer'"),
    ({"org-a": R.PARTY, COORD: R.PARTY, DEALER: R.RECIPIENT},
     "must be a coordinator node, not 'dealer'"),
], ids=["party-as-recipient", "party-as-aggregator", "dealer-as-party", "dealer-as-recipient"])
def test_a_statistic_whose_members_have_the_wrong_roles_is_refused(
    fed: InProcessFederation, members: dict[str, R], rule: str,
) -> None:
    """The share of the sum goes to a coordinator only, and the parties of a statistic are
    party nodes: a coordinator that routes the sum to another party (or lists a dealer as a
    party) is refused by org-a itself. Catches the role check being skipped or inverted."""
    assert rule in refused(fed, "org-a", statistic(fed, members))


@pytest.mark.parametrize(("node", "members", "rule"), [
    ("org-a", {"org-a": R.DATA_OWNER, COORD: R.MODEL_OWNER, DEALER: R.DEALER},
     "the model owner of a session must be a party node, not 'coordinator'"),
    ("org-a", {"org-a": R.DATA_OWNER, "org-b": R.MODEL_OWNER, "org-c": R.DEALER},
     "the dealer of a session must be a dealer or coordinator node, not 'org-c'"),
    ("org-b", {DEALER: R.DATA_OWNER, "org-b": R.MODEL_OWNER, COORD: R.DEALER},
     "the data owner of a session must be a party node, not 'dealer'"),
    ("org-b", {"org-a": R.DATA_OWNER, "org-b": R.MODEL_OWNER, "org-c": R.DEALER},
     "the dealer of a session must be a dealer or coordinator node, not 'org-c'"),
], ids=["coordinator-as-model-owner", "party-as-dealer-for-data-owner",
        "dealer-as-data-owner", "party-as-dealer-for-model-owner"])
def test_an_inference_whose_members_have_the_wrong_roles_is_refused(
    fed: InProcessFederation, node: str, members: dict[str, R], rule: str,
) -> None:
    """Each owner checks the other owner is a party and the dealer a dealer or the
    coordinator (a party as dealer would hold the triples that open the other's masked data).
    Catches the role check being skipped or inverted on either side."""
    if members[node] is R.DATA_OWNER:
        req: PrepareDataOwner | PrepareModelOwner = data_owner(fed, members)
    else:
        req = model_owner(fed, members)
    assert rule in refused(fed, node, req)


# ------------------------------------------------------------------ what the analyst signed

SS = {"org-a": R.DATA_OWNER, "org-b": R.MODEL_OWNER, DEALER: R.DEALER}


@pytest.mark.parametrize(("node", "signed", "prepared", "rule"), [
    ("org-a", {"data_owner": "org-b", "model_owner": "org-a"}, {},
     "the inference's owners are not the ones the analyst signed"),
    ("org-b", {"data_owner": "org-b", "model_owner": "org-a"}, {},
     "the inference's owners are not the ones the analyst signed"),
    ("org-a", {"model_owner": "org-c"}, {},
     "the inference's owners are not the ones the analyst signed"),
    ("org-b", {"data_owner": "org-c"}, {},
     "the inference's owners are not the ones the analyst signed"),
    ("org-a", {}, {"where": "age > 40"},
     "the inference it is asked to prepare is not the one the analyst signed"),
    ("org-a", {"backend": "ckks"}, {},
     "the inference it is asked to prepare is not the one the analyst signed"),
    ("org-b", {"output": "logit"}, {},
     "the inference it is asked to prepare is not the one the analyst signed"),
    ("org-a", {"feature_bound": 100.0}, {},
     "the inference it is asked to prepare is not the one the analyst signed"),
    ("org-b", {"frac_bits": 20}, {},
     "the inference it is asked to prepare is not the one the analyst signed"),
    ("org-a", {"backend": "ckks", "ckks_preset": "sigmoid"}, {"backend": "ckks"},
     "the inference it is asked to prepare is not the one the analyst signed"),
    ("org-b", {"model": "risk"}, {"model": "other"},
     "the model it is asked to apply is not the one the analyst signed"),
], ids=["swapped-owners-at-data-owner", "swapped-owners-at-model-owner", "other-model-owner",
        "other-data-owner", "other-filter", "other-backend", "other-output",
        "other-feature-bound", "other-precision", "other-ckks-preset", "other-model"])
def test_a_prediction_other_than_the_signed_one_is_refused(
    fed: InProcessFederation, node: str, signed: dict[str, Any], prepared: dict[str, Any],
    rule: str,
) -> None:
    """A coordinator that changes a signed prediction before it reaches an owner: swaps the
    owners (the model owner would receive the data owner's masked rows as its own role), pairs
    the owner with another party, widens the filter, changes the backend, the output (logits
    instead of predictions), the feature bound, the precision, the CKKS preset or the model.
    Each owner compares what it is asked with what the analyst signed and refuses before
    reading a row; nothing is registered. Catches each comparison dropped or inverted."""
    envelope = fed.sign({**prediction_request(data_owner="org-a", model_owner="org-b"),
                         **signed}, "prediction").envelope
    backend = prepared.get("backend", "ss")
    members = SS if backend == "ss" else {"org-a": R.DATA_OWNER, "org-b": R.MODEL_OWNER}
    if node == "org-a":
        req: PrepareDataOwner | PrepareModelOwner = PrepareDataOwner(
            sid(), fed.analyst, members, 30.0, where=prepared.get("where", ""),
            spec=draft(backend), features=("age", "bmi"), signed_request=envelope)
    else:
        req = PrepareModelOwner(sid(), fed.analyst, members, 30.0, model=prepared.get("model", ""),
                                spec=draft(backend, n_samples=N_ROWS), signed_request=envelope)
    assert f"{node} refuses: {rule}" in refused(fed, node, req)


def test_a_prediction_with_its_signed_parameters_is_prepared(fed: InProcessFederation) -> None:
    """The control case for the test above: the analyst signed a feature bound, a precision
    and an output, and both owners are asked exactly that (catches a comparison that refuses
    any parameter the analyst set)."""
    fields = {"feature_bound": 100.0, "frac_bits": 20, "output": "logit", "model": "risk"}
    spec = replace(draft(n_samples=N_ROWS), feature_bound=100.0, frac_bits=20, output="logit")
    envelope = signed_prediction(fed, SS, **fields)
    prepare(fed, "org-a", PrepareDataOwner(sid(), fed.analyst, SS, 30.0,
                                           spec=replace(spec, n_samples=1),
                                           features=("age", "bmi"), signed_request=envelope))
    prepare(fed, "org-b", PrepareModelOwner(sid(), fed.analyst, SS, 30.0, spec=spec,
                                            model="risk", signed_request=envelope))


# ------------------------------------------------------------------------------ who signed


def test_a_request_signed_with_a_certificate_the_federation_did_not_pin_is_refused(
    fed: InProcessFederation,
) -> None:
    """Whoever holds the CA key can mint a second certificate in the analyst's name; the
    federation pins the analyst's own certificate, and every party checks the signer against
    that pin before it reads a row (catches a party that verifies the signature and the CA
    only: the minted key could then spend the analyst's budget and receive its results)."""
    ca = load_ca(fed.layout.ca_cert, fed.layout.ca_key)
    cert, key = issue_node_certificate(ca, fed.analyst, "analyst")
    envelope = sign(statistic_request(MEAN, "", ["org-a", "org-b"]), kind="statistic",
                    federation=fed.coordinator.federation.name, analyst=fed.analyst, key=key,
                    cert=cert)
    req = PrepareStatistic(sid(), fed.analyst, {"org-a": R.PARTY, "org-b": R.PARTY,
                                                COORD: R.RECIPIENT}, 30.0, spec=MEAN,
                           signed_request=envelope)
    assert (f"org-a refuses: analyst {fed.analyst!r} is not listed in federation "
            f"{fed.coordinator.federation.name!r} with this certificate") in refused(
                fed, "org-a", req)


def test_a_refusal_is_audited_under_the_analyst_who_signed(fed: InProcessFederation) -> None:
    """The coordinator presents a genuine signed request in another analyst's name: refused,
    and the audit record names the analyst who signed it (with the request's hash and the
    members), not the name the coordinator claimed (catches an audit trail that believes the
    coordinator about who asked)."""
    good = statistic(fed, {"org-a": R.PARTY, "org-b": R.PARTY, COORD: R.RECIPIENT})
    claimed = replace(good, analyst="someone-else")
    assert ("org-a refuses: the request is asked in the name of 'someone-else' but signed by "
            f"{fed.analyst!r}") in refused(fed, "org-a", claimed)
    last = AuditLog(fed.parties["org-a"].cfg.database).records(limit=None)[-1].event
    assert (last["outcome"], last["analyst"]) == ("refused", fed.analyst)
    assert last["request_hash"] == hashlib.sha256(
        json.loads(good.signed_request)["payload"].encode()).hexdigest()
    assert last["members"] == sorted(["org-a", "org-b", COORD])
