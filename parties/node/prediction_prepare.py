"""A party's preparation of an inference, as data owner or as model owner.

Called by :meth:`parties.node.party.PartyNode.prepare` (which audits every outcome, claims
the signed request and reserves the charge); these functions check that the prediction is the
one the analyst signed (:func:`check_prediction`), apply the party's policy and, for a model
owner, its model's own policy, and build the session's job.  What they reveal is in the
module docstring of :mod:`parties.node.party`: a data owner's row count (public under DP: a
padded size), nothing else.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from parties.errors import PolicyError
from parties.node import inference
from parties.node.checks import check_flood_bits, check_node_role, pick_model
from parties.node.jobs import DataOwnerJob, Job, ModelOwnerJob
from parties.privacy import dp_outputs
from parties.privacy.models import Requirements, model_names
from parties.privacy.outputs import load_models, models_dir
from parties.privacy.policy import PolicyRequest
from parties.transport.control import Prepared, PrepareDataOwner, PrepareModelOwner, SessionRole
from parties.transport.requests import SignedPrediction, prediction_of
from smpc import cost, linear
from smpc.errors import InputError

if TYPE_CHECKING:
    from parties.node.party import PartyNode
    from parties.pki.signed import Signed

__all__ = ["check_prediction", "prepare_data_owner", "prepare_model_owner"]


def check_prediction(node: PartyNode, r: PrepareDataOwner | PrepareModelOwner,
                     signed: Signed, role: SessionRole) -> SignedPrediction:
    """The prediction ``r`` is what the analyst signed: the owners, the filter and every
    parameter of the inference spec (the flooding aside: the model owner's policy fixes
    its minimum)."""
    me = node.cfg.name
    asked = prediction_of(signed)
    owners = {SessionRole.DATA_OWNER: asked.data_owner,
              SessionRole.MODEL_OWNER: asked.model_owner}
    if owners[role] != me or any(
            r.one(x, str(x)) != name for x, name in owners.items()):
        raise PolicyError(f"{me} refuses: the inference's owners are not the ones the "
                          "analyst signed")
    options: dict[str, Any] = {}
    if asked.feature_bound:
        options["feature_bound"] = asked.feature_bound
    elif role is SessionRole.MODEL_OWNER:  # the data owner's choice (inference.py): the
        # data owner checks on the owners' own channel that this is the bound it chose
        options["feature_bound"] = r.inference.feature_bound
    if asked.frac_bits:
        options["frac_bits"] = asked.frac_bits
    if asked.ckks_preset:
        options["ckks_preset"] = asked.ckks_preset
    spec = r.inference
    try:
        expected = linear.InferenceSpec(
            kind=spec.kind, n_samples=spec.n_samples, n_features=spec.n_features,
            backend=asked.backend, output=asked.output, flood_bits=spec.flood_bits,
            **options)
    except InputError:
        expected = None
    if expected != spec or (isinstance(r, PrepareDataOwner)
                            and r.where.strip() != asked.where):
        raise PolicyError(f"{me} refuses: the inference it is asked to prepare is not the "
                          "one the analyst signed")
    return asked


def prepare_data_owner(node: PartyNode, r: PrepareDataOwner, signed: Signed,
                        trail: list[PolicyRequest]) -> tuple[Job, Prepared]:
    me, fed = node.cfg.name, node.cfg.federation
    if r.members[me] is not SessionRole.DATA_OWNER:
        raise InputError(f"{me} is not the data owner of this inference")
    asked = check_prediction(node, r, signed, SessionRole.DATA_OWNER)
    draft = r.inference
    columns = list(r.features)
    if not asked.feature_bound:  # the bound its policy declares for these features
        declared = inference.declared_feature_bound(node.cfg.policy, columns)
        if declared is not None:
            draft = replace(draft, feature_bound=declared)
    req = replace(trail[-1], computation=f"predict-{draft.kind}", backend=draft.backend,
                  columns=tuple(columns), recipient=f"{me} (data owner)")
    trail.append(req)
    req = node.with_filter(r, req)
    trail.append(req)
    node.policy.check_access(req)
    mask, n_rows = node.rows(r, columns, req)  # nothing selected yet
    key = inference.prediction_key(node.cfg.policy, node.table, asked.key, me)
    if dp_outputs.hides_inference_size(node.cfg.policy):
        if asked.missing == "error":  # a refusal would depend on the rows
            raise PolicyError(f"{me} answers under differential privacy: a row with a "
                              "missing feature is left out, never refused (ask with "
                              "missing='skip')")
        job, prepared = _prepare_padded(node, r, req, draft, columns, mask, trail,
                                             asked.rows)
        assert isinstance(job, DataOwnerJob)
        job.key_column = key
        return job, prepared
    # the row count is public (the model owner learns it): the estimates may be quoted
    node.policy.check_cost(req, cost.inference_cost(draft, rows=n_rows), rows_public=True)
    sel = node.table.select(columns, rows=mask,
                            missing="error" if asked.missing == "error" else "drop")
    X, numbers = sel.values, np.flatnonzero(sel.rows) + 1
    chosen = np.ones(node.table.n_rows, dtype=bool) if mask is None else mask
    left_out = np.flatnonzero(chosen & ~sel.rows) + 1  # selected, a feature missing
    req = replace(req, n_rows=sel.n_rows)
    trail.append(req)
    node.policy.check_cohort(req)
    if X.shape[0] == 0:
        raise InputError(f"no rows of {me} match the filter")
    spec = replace(draft, n_samples=int(X.shape[0]))
    linear.check_features(spec, X, columns)
    model_owner, dealer = _data_owner_peers(fed, r)
    job = DataOwnerJob(r.tag, spec=spec, rows=X, row_numbers=numbers,
                       model_owner=model_owner, dealer=dealer, features=tuple(columns),
                       me=me, key_column=key, left_out=left_out, analyst=req.analyst,
                       keys=node.ckks_keys)
    return job, Prepared(spec=spec, n_samples=int(X.shape[0]))


def _data_owner_peers(fed: Any, r: PrepareDataOwner) -> tuple[str, str | None]:
    """The inference's model owner (a party) and its dealer, if any (a dealer or the
    coordinator), as the session names them, each checked against the federation."""
    model_owner = r.one(SessionRole.MODEL_OWNER, "model owner")
    dealer = r.optional(SessionRole.DEALER)
    check_node_role(fed, model_owner, ("party",), "model owner")
    check_node_role(fed, dealer, ("dealer", "coordinator"), "dealer")
    return model_owner, dealer


def _prepare_padded(node: PartyNode, r: PrepareDataOwner, req: PolicyRequest,
                    draft: linear.InferenceSpec, columns: list[str],
                    mask: np.ndarray | None, trail: list[PolicyRequest], rows: int = 0
                    ) -> tuple[Job, Prepared]:
    """The data owner under a DP policy: the inference runs on a public number of rows (the
    selected ones, then dummies); no cohort or feature refusal (:mod:`.dp_outputs`).  The
    size is ``rows`` when the analyst chose one (issue 13: a model owner's
    ``max_rows_per_request`` below the padded size refused every inference), else the padded
    size of the table; extra usable rows get no prediction."""
    size = rows or dp_outputs.padded_rows(node.table.n_rows,
                                          node.cfg.policy.max_inference_rows)
    node.policy.check_cost(req, cost.inference_cost(draft, rows=size), rows_public=True)
    padded = dp_outputs.pad_features(node.table, columns, mask, size, draft.feature_bound)
    spec = replace(draft, n_samples=size)
    linear.check_features(spec, padded.features, columns)
    model_owner, dealer = _data_owner_peers(node.cfg.federation, r)
    job = DataOwnerJob(r.tag, spec=spec, rows=padded.features,
                       row_numbers=padded.row_numbers, model_owner=model_owner,
                       dealer=dealer, public_count=size, features=tuple(columns),
                       me=node.cfg.name, analyst=req.analyst, keys=node.ckks_keys)
    return job, Prepared(spec=spec, n_samples=size)


def prepare_model_owner(node: PartyNode, r: PrepareModelOwner, signed: Signed,
                         trail: list[PolicyRequest]) -> tuple[Job, Prepared]:
    me, fed = node.cfg.name, node.cfg.federation
    if r.members[me] is not SessionRole.MODEL_OWNER:
        raise InputError(f"{me} is not the model owner of this inference")
    asked = check_prediction(node, r, signed, SessionRole.MODEL_OWNER)
    if asked.model not in ("", r.model):
        raise PolicyError(f"{me} refuses: the model it is asked to apply is not the one "
                          "the analyst signed")
    check_flood_bits(me, node.cfg.policy.min_flood_bits, r.inference.backend,
                      r.inference.flood_bits)
    node.policy.check_access(trail[-1])
    # the size the request declares: refused before the model is even loaded
    node.policy.check_cost(trail[-1], cost.inference_cost(r.inference), rows_public=True)
    data_owner = r.one(SessionRole.DATA_OWNER, "data owner")
    # the model's own policy (who, rows, usage), before it is loaded; reserved in prepare()
    analyst, rows = trail[-1].analyst, r.inference.n_samples
    names = model_names(models_dir(node.cfg))
    wanted = r.model or (names[0] if len(names) == 1 else "")
    mp = node.models.precheck(analyst, wanted, rows) if wanted in names else None
    name, model = pick_model(load_models(models_dir(node.cfg), node.key, me), r.model, me)
    if mp is None or name != wanted:
        mp = node.models.precheck(analyst, name, rows)
    spec = r.inference
    trail.append(replace(trail[-1], computation=f"predict-{spec.kind}", backend=spec.backend,
                         columns=tuple(model.features),
                         recipient=f"{data_owner} (data owner), model {name}"))
    linear.check_model(spec, model, noise_std=mp.prediction_noise_std)
    dealer = r.optional(SessionRole.DEALER)
    check_node_role(fed, data_owner, ("party",), "data owner")
    check_node_role(fed, dealer, ("dealer", "coordinator"), "dealer")
    job = ModelOwnerJob(r.tag, spec=spec, model=model, data_owner=data_owner,
                        dealer=dealer, model_name=name, noise_std=mp.prediction_noise_std,
                        requirements=Requirements.of(name, model.features, mp,
                                                     spec.feature_bound).to_bytes())
    return job, Prepared()
