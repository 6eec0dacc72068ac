"""A party's preparation of a joint statistic.

Called by :meth:`parties.node.party.PartyNode.prepare` (which audits every outcome, claims
the signed request and reserves the charge): checks that the statistic is the one the analyst
signed, with the parties it signed, applies the party's policy before any row is read, then
selects the rows.  A statistic's row count never leaves the party.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from parties.data.sql.rows import Mode, SqlRows
from parties.data.sql.table import SqlTable
from parties.errors import PolicyError
from parties.node.checks import check_node_role, check_party_count, printable
from parties.node.jobs import Job, StatisticJob
from parties.privacy import dp_outputs, exact
from parties.privacy.policy import PolicyRequest
from parties.transport.control import Prepared, PrepareStatistic, SessionRole
from parties.transport.requests import statistic_of
from smpc import cost
from smpc.errors import InputError
from smpc.names import Backend
from smpc.stats.rowsource import LocalRows
from smpc.stats.spec import StatSpec

if TYPE_CHECKING:
    from parties.node.party import PartyNode
    from parties.pki.signed import Signed

__all__ = ["prepare_statistic"]


def prepare_statistic(node: PartyNode, r: PrepareStatistic, signed: Signed,
                      trail: list[PolicyRequest]) -> tuple[Job, Prepared]:
    """Check a statistic against what the analyst signed and the party's policy, select its
    rows (exact mode: the cohort and differencing checks on them; under DP: none that rests on
    the exact rows), and build its job."""
    me, fed = node.cfg.name, node.cfg.federation
    spec = r.statistic
    asked = statistic_of(signed)
    if asked.spec != spec or asked.where != r.where.strip():
        raise PolicyError(f"{me} refuses: the statistic it is asked to prepare is not the "
                          "one the analyst signed")
    if set(asked.parties) != set(r.roles(SessionRole.PARTY)):
        raise PolicyError(f"{me} refuses: the session's parties are not the ones the "
                          "analyst signed")
    check_party_count(me, node.cfg.policy.min_parties, len(asked.parties))
    if spec.backend == Backend.CKKS and signed.context_sha256 is None:
        raise PolicyError(f"{me} refuses: a ckks statistic must be signed with the "
                          "analyst's public key")
    if r.members[me] is not SessionRole.PARTY:
        raise InputError(f"{me} is not a party of this statistic")
    hubs = r.roles(SessionRole.RECIPIENT, SessionRole.AGGREGATOR)
    if len(hubs) != 1:
        raise InputError("the session must have exactly one recipient or aggregator")
    hub = hubs[0]
    check_node_role(fed, hub, ("coordinator",), "recipient or aggregator")
    parties = r.roles(SessionRole.PARTY)
    for name in parties:
        check_node_role(fed, name, ("party",), "parties")
    recipient = hub if spec.backend == Backend.SS else f"{r.analyst} (key holder, via {hub})"
    req = replace(trail[-1], computation=spec.statistic, backend=spec.backend,
                  columns=tuple(spec.value_columns), recipient=printable(recipient, 256),
                  cost=spec.dp.cost if spec.dp is not None else None)
    trail.append(req)
    req = node.with_filter(r, req)
    trail.append(req)
    node.policy.check_access(req)               # analyst, columns: nothing read yet
    spec = node.policy.check_dp(req, spec)      # exact allowed? bounds within the policy
    if spec.dp is not None:
        spec.noise_plan(len(parties))           # bounds complete, budget usable
    # what it would cost, over at most every row of the table (not the filter's count,
    # which a refusal must not reveal): refused before anything is read or reserved
    in_engine = isinstance(node.table, SqlTable)  # the rows stay there (parties.data.sql)
    node.policy.check_cost(req, cost.statistic_cost(spec, node.table.n_rows,
                                                    in_engine=in_engine),
                           rows_public=False)
    node.guard.precheck_budget(req)             # no budget: refuse before reading rows
    row_cap = None
    rows: np.ndarray | LocalRows
    if isinstance(node.table, SqlTable):  # the rows stay in the engine: aggregates in SQL
        rows, row_cap, req = _sql_rows(node, r, spec, req, trail)
    elif spec.dp is None:
        if spec.skips_missing:
            rows, numbers, req = node.read_with_gaps(r, spec, req)
        else:
            rows, numbers, req = node.read(r, list(spec.value_columns), req)
        trail.append(req)
        node.policy.check_cohort(req)           # on the rows actually used
        # exact mode: refuse a differencing pair (parties.privacy.exact)
        pol = node.cfg.policy
        node.exact_history.admit(
            me=me, analyst=req.analyst, dataset=node.guard.dataset,
            filter_text=req.filter or "", selected=numbers, n_table=node.table.n_rows,
            min_difference=pol.min_cohort_size, keep=pol.exact_history)
    else:  # under DP no decision rests on the exact rows (parties/privacy/dp_outputs.py)
        row_cap = node.table.n_rows
        dp_outputs.check_statistic_range(spec, len(parties), row_cap)
        mask, _ = node.rows(r, list(spec.value_columns), req)
        rows = dp_outputs.statistic_rows(node.table, spec.value_columns, mask,
                                         keep_missing=spec.skips_missing)
    job = StatisticJob(r.tag, spec=spec, rows=rows, parties=parties, hub=hub,
                       context_sha256=signed.context_sha256, row_cap=row_cap,
                       min_cell_size=exact.cell_floor(node.cfg.policy, spec))
    return job, Prepared(spec=spec)


def _sql_rows(node: PartyNode, r: PrepareStatistic, spec: StatSpec, req: PolicyRequest,
              trail: list[PolicyRequest]) -> tuple[SqlRows, int | None, PolicyRequest]:
    """The statistic's rows in a SQL engine: the same checks as the memory path, made with
    counts and a row mask computed in SQL (exact mode: cohort and differencing on the rows
    actually used; under DP none that rests on the exact rows), and the local aggregates left
    to the engine (:class:`~parties.data.sql.rows.SqlRows`)."""
    table = node.table
    assert isinstance(table, SqlTable)
    columns = list(spec.value_columns)
    node.rows_check(columns, req)             # every column is in the table
    table.check_values(columns)               # numbers, finite
    where = r.filter
    if spec.dp is not None:
        dp_outputs.check_statistic_range(spec, len(r.roles(SessionRole.PARTY)), table.n_rows)
        mode: Mode = "keep" if spec.skips_missing else "drop"
        return table.local_rows(columns, where, mode), table.n_rows, req
    rows = table.local_rows(columns, where, "keep" if spec.skips_missing else "error")
    seen = rows.counts(spec)                  # one scan: the checks' counts (and pass 1)
    if spec.skips_missing:
        used = seen.complete if seen.present is None else min(seen.present)
        req = replace(req, n_rows=used)
        numbers = table.row_mask(where, not_null=columns)
    else:
        if seen.complete < seen.selected:
            raise table.missing_error(where, columns)
        numbers = table.row_mask(where)
        req = replace(req, n_rows=seen.selected)
    trail.append(req)
    node.policy.check_cohort(req)             # on the rows actually used
    pol = node.cfg.policy
    node.exact_history.admit(
        me=node.cfg.name, analyst=req.analyst, dataset=node.guard.dataset,
        filter_text=req.filter or "", selected=numbers, n_table=table.n_rows,
        min_difference=pol.min_cohort_size, keep=pol.exact_history)
    return rows, None, req
