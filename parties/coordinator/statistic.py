"""The joint-statistic protocol: PREPARE every party -> RUN -> AWAIT (parties + own role).

The coordinator's own role in a statistic:

* ``ss``: it is the **recipient** (:func:`smpc.stats.run_recipient_ss`) and the result goes
  to the analyst;
* ``ckks``: it is the **aggregator** (:func:`smpc.stats.run_aggregator_ckks`); the analyst is
  the **key holder**, reached through ``to_analyst`` (the analyst's Compute stream), and the
  coordinator distributes the analyst's public context -- validated to carry no secret key --
  to the parties.  It never holds a secret key.

Each party returns the spec it prepared (its policy may fill in DP clipping bounds the
request left open); the protocol proceeds only if all agree, finishes an ``ss`` statistic
with that spec, and for ``ckks`` under DP sends it to the key holder (tag ``stat/spec``),
which checks that it differs from its request only by the added bounds.

What the coordinator learns: an ``ss`` statistic's summed aggregates and result (it is the
recipient); on ``ckks`` only ciphertexts it cannot decrypt, and the shift it relays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import grpc

from parties.coordinator.core import AWAIT_GRACE, Awaits, Coordinator
from parties.coordinator.requests import StatisticRequest
from parties.coordinator.state import Protocol, SessionState, Stage
from parties.errors import NodeBlamed
from parties.privacy.policy import agreed_spec, check_effective_spec
from parties.transport.channels import Route
from parties.transport.control import Prepared, PrepareStatistic, SessionRole
from parties.transport.faults import fault_point
from smpc import stats
from smpc.errors import InputError
from smpc.names import Backend
from smpc.transport import Transport, pack_json

__all__ = ["CONTEXT_TAG", "SPEC_TAG", "STAT_TAG", "StatisticProtocol"]

STAT_TAG = "stat"
CONTEXT_TAG = "context"
SPEC_TAG = "spec"             # ckks + DP: the parties' effective spec, to the key holder


def effective_spec(me: str, spec: stats.StatSpec, answers: dict[str, Prepared]
                   ) -> stats.StatSpec:
    """The spec every party prepared: the request, with the clipping bounds their policies
    filled in for columns the request gave none for; they must all agree."""
    parsed: dict[str, stats.StatSpec | None] = {}
    for node, answer in answers.items():
        prepared = answer.spec
        if prepared is not None and not isinstance(prepared, stats.StatSpec):
            raise NodeBlamed(node, f"{node}: prepared something other than a statistic",
                             grpc.StatusCode.ABORTED)
        try:
            parsed[node] = prepared
            check_effective_spec(spec, prepared or spec, node)
        except (InputError, ValueError) as exc:
            raise NodeBlamed(node, f"{node}: {exc}", grpc.StatusCode.ABORTED) from None
    try:
        return agreed_spec(spec, parsed)
    except InputError as exc:
        raise NodeBlamed(me, str(exc), grpc.StatusCode.INVALID_ARGUMENT) from None


class StatisticProtocol(Protocol):
    """One joint statistic, driven by :meth:`Coordinator.execute`."""

    name: ClassVar[str] = "statistic"
    stages: ClassVar[tuple[Stage, ...]] = (Stage.PREPARE, Stage.RUN, Stage.AWAIT)

    def __init__(self, coord: Coordinator, analyst: str, request: StatisticRequest, *,
                 to_analyst: Route | None = None, context_bytes: bytes | None = None,
                 on_state: Callable[[SessionState], None] | None = None,
                 session_id: str | None = None) -> None:
        self.coord = coord
        self.analyst = analyst
        self.request = request
        self.spec = request.spec
        self.parties = list(request.parties)
        self.ckks = self.spec.backend == Backend.CKKS
        members = {p: SessionRole.PARTY for p in self.parties}
        members[coord.me] = SessionRole.AGGREGATOR if self.ckks else SessionRole.RECIPIENT
        local_members = dict(members)
        self.public_context: Any = None
        self.context_bytes = context_bytes
        self.to_analyst = to_analyst
        if self.ckks:
            from smpc import ckks

            if to_analyst is None or context_bytes is None:
                raise InputError("a ckks statistic needs the analyst's public context")
            self.public_context = ckks.load_context(context_bytes)  # refuses a secret key
            local_members[analyst] = SessionRole.KEYHOLDER
        state = coord.new_state("stat-ckks" if self.ckks else "stat-ss", analyst,
                                coord.timeout(request.timeout), members, self.parties,
                                session_id)
        state.local = coord.registry.create(
            state.id, {n: str(r) for n, r in local_members.items()},
            state.remaining() + AWAIT_GRACE, state.protocol)
        super().__init__(state)
        self.effective = self.spec
        self.transport: Transport | None = None
        self.awaits: Awaits | None = None
        self.value: stats.StatResult | None = None
        if on_state is not None:
            on_state(state)

    def prepare(self) -> None:
        st = self.state
        requests = {p: PrepareStatistic(
            session_id=st.id, analyst=self.analyst, members=st.members,
            timeout=st.remaining(), tag=STAT_TAG, where=self.request.where, spec=self.spec,
            signed_request=self.request.signed.envelope if self.request.signed else b"")
            for p in self.parties}
        answers = self.coord.prepare(st, requests)
        self.effective = effective_spec(self.coord.me, self.spec, answers)
        fault_point("after-prepare")

    def run(self) -> None:
        st = self.state
        assert st.local is not None
        routes = {self.analyst: self.to_analyst} if self.ckks and self.to_analyst else None
        self.transport = self.coord.network.transport(st.local, routes)
        self.awaits = self.coord.start_awaits(st)  # each Await right behind its Run
        self.coord.run(st)
        fault_point("mid-run")

    def _local_role(self) -> stats.StatResult | None:
        t, eff = self.transport, self.effective
        assert t is not None
        if not self.ckks:
            return stats.run_recipient_ss(t, eff, parties=self.parties, tag=STAT_TAG)
        assert self.context_bytes is not None
        if eff.dp is not None:  # the key holder plans the release with the parties' spec
            t.send(self.analyst, f"{STAT_TAG}/{SPEC_TAG}", pack_json(eff.to_json()))
        for p in self.parties:
            t.send(p, f"{STAT_TAG}/{CONTEXT_TAG}", self.context_bytes)
        stats.run_aggregator_ckks(t, eff, parties=self.parties, keyholder=self.analyst,
                                  tag=STAT_TAG, public_context=self.public_context)
        return None

    def await_(self) -> None:
        results = self.coord.await_all(self.state, {self.coord.me: self._local_role},
                                       self.awaits)
        self.value = results[self.coord.me]

    def result(self) -> stats.StatResult | None:
        """The result on ``ss``; None on ``ckks`` (the analyst computed it)."""
        return self.value
