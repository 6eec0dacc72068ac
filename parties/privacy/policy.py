"""A party's own policy: which analysts, columns, computations, bounds and cohorts it allows.

A party's own privacy enforcement: policy, privacy-budget ledger, audit log, data at rest.

Zero trust.  Everything here runs **inside the party node** and decides on the party's own
configuration; the coordinator's opinion is never consulted.  :class:`parties.node.PartyNode`
calls it at every request:

``Describe``            :meth:`PrivacyGuard.describe_allowed` -- analyst allowed? -- audited.
``Prepare`` (statistic, inference)
    1. :meth:`PolicyGate.check_access`: the analyst is in ``allowed_analysts``; every column the
       request reads, *including its filter's*, is allowed for that computation
       (``allowed_columns`` + ``columns_by_computation``);
    2. :meth:`PolicyGate.check_dp` (statistics): an exact request is refused when the policy says
       ``require_dp``; a DP request's clipping bounds must lie within the policy's ``bounds``, and
       a column the request gives no bounds for gets the policy's (the *effective* spec, returned
       to the coordinator in ``PrepareResponse.spec_json``);
    3. :meth:`PolicyGate.check_cost`: what the request would cost the party -- values
       released, inference rows, estimated CPU seconds and memory (:mod:`smpc.cost`) -- within
       the policy's limits (``max_released_values``, ``max_inference_rows``,
       ``max_session_cpu_seconds``, ``max_request_memory_mb``); budget pre-check: a DP request
       that no longer fits the analyst's remaining budget is refused *before* any row is read,
       so an analyst without budget learns nothing more;
    4. the rows are selected; :meth:`PolicyGate.check_cohort`: fewer than ``min_cohort_size``
       selected rows (a statistic's contribution, or an inference's data owner) is refused;
    5. :meth:`PrivacyGuard.reserve`: the DP cost is reserved in the ledger (PENDING, durable,
       atomic against concurrent requests: see :mod:`parties.privacy.ledger`).  Over budget is
       refused
       (PERMISSION_DENIED) with the remaining budget, in rho and in (epsilon, delta), in the
       message.
    Every outcome -- accepted or refused at any step -- is one audit record; a refused statistic
    is also a ``refused`` event of the ledger.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from parties.config import PolicyConfig
from parties.errors import ColumnRefused, LimitExceeded, PolicyError
from parties.pki.identity import Identity
from smpc import dp
from smpc.cost import Cost
from smpc.errors import InputError
from smpc.stats import StatSpec

_NO_BOUNDS_STATS = frozenset({"histogram", "quantiles"})  # their bins are public


@dataclass(frozen=True)
class PolicyRequest:
    """What a request asks of a party, as its policy and audit log see it (metadata only).

    ``kind``: describe | stat | predict-data | predict-model; ``computation``: the statistic
    (``mean`` ...), ``predict-linear`` / ``predict-logistic`` or ``describe``; ``columns``: the
    value columns it reads; ``filter_columns`` / ``filter``: the columns its filter reads and the
    filter's canonical text; ``n_rows``: rows selected after the filter (None until known);
    ``recipient``: who learns the result; ``cost``: its DP cost (None = exact);
    ``caller`` / ``caller_fingerprint``: the RPC caller's certificate identity.
    """

    analyst: str
    kind: str
    columns: tuple[str, ...] = ()
    filter_columns: tuple[str, ...] = ()
    n_rows: int | None = None
    session_id: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    computation: str = ""
    backend: str | None = None
    filter: str | None = None
    recipient: str | None = None
    cost: dp.PrivacyCost | None = None
    caller: str = ""
    caller_fingerprint: str | None = None
    request_hash: str | None = None      # SHA-256 of the analyst's signed request
    members: tuple[str, ...] = ()        # the session's nodes

    @property
    def policy_computation(self) -> str:
        """The computation name the policy's ``columns_by_computation`` uses."""
        if self.kind == "predict-data":
            return "predict"
        return self.computation or self.kind


def caller_uri(ident: Identity | None) -> str:
    """``smpc://<federation>/<role>/<name>`` for a verified caller ("unknown" without one)."""
    if ident is None:
        return "unknown"
    fed = ident.federation or "-"
    return f"smpc://{fed}/{ident.role}/{ident.name}"


def _fmt(x: float) -> str:
    return f"{x:.6g}"


class PolicyGate:
    """A party's own rules, applied to every request before any data is used.

    Each ``check_*`` raises :class:`parties.errors.PolicyError` (PERMISSION_DENIED) or
    :class:`parties.errors.ColumnRefused` (INVALID_ARGUMENT: the same answer for a column that
    does not exist and one the policy hides) naming the rule that refused.
    """

    def __init__(self, party: str, policy: PolicyConfig) -> None:
        self.party = party
        self.policy = policy

    # -- analyst and columns (nothing read yet)

    def check_access(self, req: PolicyRequest) -> None:
        p = self.policy
        if req.analyst not in p.allowed_analysts:
            raise PolicyError(f"{self.party} does not serve analyst {req.analyst!r}")
        comp = req.policy_computation
        allowed = p.columns_for(comp)
        bad = [c for c in (*req.columns, *req.filter_columns) if c not in allowed]
        if bad:
            cols = ", ".join(repr(c) for c in dict.fromkeys(bad))
            where = f" for {comp}" if p.columns_by_computation else ""
            raise ColumnRefused(
                f"{self.party} has no column {cols} it may use{where} "
                f"(its columns{where}: {', '.join(allowed) or 'none'})"
            )

    # -- differential privacy (statistics)

    def check_dp(self, req: PolicyRequest, spec: StatSpec) -> StatSpec:
        """The effective spec: refuses an exact request under ``require_dp`` and DP bounds that
        exceed the policy's; fills in the policy's bounds for columns the request left open."""
        p = self.policy
        if spec.dp is None:
            if p.require_dp:
                raise PolicyError(
                    f"{self.party} refuses exact results: its policy requires differential "
                    "privacy (ask again with epsilon and delta, or rho)"
                )
            return spec
        if spec.statistic in _NO_BOUNDS_STATS:
            return spec
        bounds = dict(spec.dp.bounds)
        for col in spec.value_columns:
            mine = p.bounds.get(col)
            if mine is None:
                continue
            if col not in bounds:
                bounds[col] = mine
                continue
            lo, hi = bounds[col]
            if lo < mine[0] or hi > mine[1]:
                raise PolicyError(
                    f"{self.party} refuses clipping bounds [{lo:g}, {hi:g}] for column "
                    f"{col!r}: its policy allows bounds within [{mine[0]:g}, {mine[1]:g}]"
                )
        if bounds == dict(spec.dp.bounds):
            return spec
        return replace(spec, dp=replace(spec.dp, bounds=bounds))

    # -- what one request may cost (before any row is selected)

    def check_cost(self, req: PolicyRequest, cost: Cost, *, rows_public: bool) -> None:
        """Refuse a request whose cost exceeds one of the policy's limits, naming the limit.

        ``rows_public``: the row count in ``cost`` is known to the coordinator anyway (an
        inference's), so the estimates may be quoted.  A statistic's estimates include the
        party's total row count, which is not public: its refusal quotes only the limit.
        """
        p, what = self.policy, self._what(req)
        if cost.released_values > p.max_released_values:
            raise LimitExceeded(
                f"{self.party} refuses: this {what} releases {cost.released_values:,} values; "
                f"its policy allows at most {p.max_released_values:,} "
                "(policy.max_released_values)", "max_released_values")
        if req.kind.startswith("predict") and cost.rows > p.max_inference_rows:
            raise LimitExceeded(
                f"{self.party} refuses: this inference covers {cost.rows:,} rows; its policy "
                f"allows at most {p.max_inference_rows:,} (policy.max_inference_rows)",
                "max_inference_rows")
        if cost.cpu_seconds > p.max_session_cpu_seconds:
            limit = f"{p.max_session_cpu_seconds:,g}"
            need = (f"would take an estimated {cost.cpu_seconds:,.1f} CPU seconds; its policy "
                    f"allows at most {limit}" if rows_public else
                    f"would take more CPU seconds than its policy allows (at most {limit})")
            raise LimitExceeded(f"{self.party} refuses: this {what} {need} "
                                "(policy.max_session_cpu_seconds)", "max_session_cpu_seconds")
        mib = cost.memory_bytes / 2**20
        if mib > p.max_request_memory_mb:
            limit = f"{p.max_request_memory_mb:,g} MiB"
            need = (f"would need an estimated {mib:,.0f} MiB of memory; its policy allows at "
                    f"most {limit}" if rows_public else
                    f"would need more memory than its policy allows (at most {limit})")
            raise LimitExceeded(f"{self.party} refuses: this {what} {need} "
                                "(policy.max_request_memory_mb)", "max_request_memory_mb")

    @staticmethod
    def _what(req: PolicyRequest) -> str:
        if req.kind.startswith("predict"):
            return "inference"
        return f"{req.computation} request" if req.computation else "request"

    # -- cohort (after selection)

    def check_cohort(self, req: PolicyRequest) -> None:
        p = self.policy
        if req.kind in ("stat", "predict-data") and req.n_rows is not None \
                and req.n_rows < p.min_cohort_size:
            raise PolicyError(
                f"{self.party} refuses: fewer than {p.min_cohort_size} of its rows match "
                "(minimum cohort size)"
            )

    def check(self, req: PolicyRequest) -> None:
        """:meth:`check_access` then :meth:`check_cohort`."""
        self.check_access(req)
        self.check_cohort(req)


def check_effective_spec(requested: StatSpec, effective: StatSpec, who: str) -> StatSpec:
    """``effective`` if it is ``requested`` with, at most, clipping bounds added for value
    columns the request gave none for (what a party's policy fills in); else InputError."""
    ok = (effective.dp is None) == (requested.dp is None) \
        and replace(effective, dp=None) == replace(requested, dp=None)
    if ok and requested.dp is not None and effective.dp is not None:
        a, b = requested.dp, effective.dp
        added = set(b.bounds) - set(a.bounds)
        ok = replace(a, bounds={}) == replace(b, bounds={}) \
            and all(b.bounds.get(c) == v for c, v in a.bounds.items()) \
            and added <= set(requested.value_columns)
    if not ok:
        raise InputError(f"{who} answered with a computation other than the one requested")
    return effective


def agreed_spec(requested: StatSpec, answers: dict[str, StatSpec | None]) -> StatSpec:
    """The one effective spec every party answered (None: the party left it unchanged).

    Raises InputError naming the parties whose policies filled in different clipping bounds:
    the noise shares must all follow one plan for the stated guarantee to hold.
    """
    effective = {who: requested if e is None else check_effective_spec(requested, e, who)
                 for who, e in answers.items()}
    distinct = {json.dumps(e.to_json(), sort_keys=True) for e in effective.values()}
    if len(distinct) <= 1:
        return next(iter(effective.values()), requested)
    cols = sorted({c for e in effective.values() if e.dp is not None for c in e.dp.bounds
                   if requested.dp is None or c not in requested.dp.bounds})

    def shown(e: StatSpec, c: str) -> str:
        return str(list(e.dp.bounds[c])) if e.dp is not None and c in e.dp.bounds else "none"

    views = "; ".join(f"{who}: " + ", ".join(f"{c} {shown(e, c)}" for c in cols)
                      for who, e in effective.items())
    raise InputError(
        f"the parties' policies give different clipping bounds ({views}); give the bounds "
        "in the request (each within every party's policy)")
