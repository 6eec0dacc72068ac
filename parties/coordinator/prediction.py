"""The inference protocol: one party's model on another party's rows.

Stages: PREPARE (describe the model owner's model; prepare the data owner, then the model
owner with the data owner's row count) -> RUN -> AWAIT (both owners, and the dealer's role on
``ss``: the coordinator itself or a separate dealer node, started here -- the owners wait for its
hello before they send it their mask seeds, so it need not exist before RUN) -> RELEASE (the
data owner writes its predictions) -> DONE.

RUN sends each owner's ``Await`` right behind its ``Run`` (:meth:`Coordinator.start_awaits`:
an ``Await`` starts nothing, so no guarantee moves; one round trip fewer).

RELEASE: the data owner answers the first ``Await`` with ``ready`` and keeps its predictions
in memory -- also when its role had already finished when that ``Await`` arrived; only once
every other participant finished does the coordinator ``Await`` it again, and only that
``Await``, the one after ``ready``, writes them (:mod:`parties.node`).  This second round trip
stays: what it carries -- every other participant finished, the analyst is still there -- is
known only to the coordinator, only after the others' ``Await`` answered; a data owner that
wrote on its own (on the model owner's last message, say) would write for a coordinator that
died or an analyst that left.  A failure anywhere before that
-- or a coordinator that dies -- leaves nothing written.  Nor does an analyst that went away
(Ctrl-C in ``smpc predict``, a killed process, a lost connection): the coordinator checks that
the analyst's call is still open (``analyst_present``) before it lets the data owner write, and
aborts the session everywhere otherwise -- the data owner drops its predictions unwritten.  The
one window left is the data owner's final write itself: an analyst that leaves during it (after
the check) finds the file written and its own call failed.

What the coordinator learns: the sizes of the inference and where the predictions are stored;
never a feature, a weight, an opened Beaver value or a prediction.  As the default dealer it also
receives the owners' mask seeds (it knows the triple, and is trusted not to collude with an
owner); it never chooses a mask, and a wrong correction fails the owners' check, naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import grpc

from parties.coordinator.core import AWAIT_GRACE, Awaits, Coordinator
from parties.coordinator.requests import PredictionRequest
from parties.coordinator.state import Protocol, Stage
from parties.errors import NodeBlamed
from parties.transport.control import (
    Awaited,
    Deal,
    ModelInfo,
    PrepareDataOwner,
    PrepareModelOwner,
    SessionRole,
)
from parties.transport.faults import fault_point
from smpc import linear
from smpc.errors import InputError
from smpc.names import Backend, ModelKind, parse

__all__ = ["PREDICT_TAG", "Predicted", "PredictionProtocol"]

PREDICT_TAG = "inf"


@dataclass(frozen=True)
class Predicted:
    """What the analyst learns of an inference: how many predictions, where they are."""

    session_id: str
    data_owner: str
    n_predictions: int
    output_path: str
    kind: str
    backend: str


class PredictionProtocol(Protocol):
    """One inference, driven by :meth:`Coordinator.execute`."""

    name: ClassVar[str] = "prediction"
    stages: ClassVar[tuple[Stage, ...]] = (Stage.PREPARE, Stage.RUN, Stage.AWAIT, Stage.RELEASE)

    def __init__(self, coord: Coordinator, analyst: str, request: PredictionRequest,
                 analyst_present: Callable[[], bool] | None = None) -> None:
        self.coord = coord
        self.analyst = analyst
        self.analyst_present = analyst_present
        self.request = r = request
        members = {r.data_owner: SessionRole.DATA_OWNER, r.model_owner: SessionRole.MODEL_OWNER}
        self.dealer: str | None = None
        if r.backend == Backend.SS:
            self.dealer = coord.dealer or coord.me
            members[self.dealer] = SessionRole.DEALER
        state = coord.new_state(f"predict-{r.backend}", analyst, coord.timeout(r.timeout),
                                members, [r.data_owner, r.model_owner])
        if self.dealer == coord.me:
            state.local = coord.registry.create(
                state.id, {n: str(x) for n, x in members.items()},
                state.remaining() + AWAIT_GRACE, state.protocol)
        elif self.dealer is not None:
            state.dealer_node = self.dealer
        super().__init__(state)
        self.spec: linear.InferenceSpec | None = None
        self.outcome: Awaited | None = None
        self.awaits: Awaits | None = None

    @property
    def _envelope(self) -> bytes:
        return self.request.signed.envelope if self.request.signed is not None else b""

    def _model(self) -> ModelInfo:
        r = self.request
        info = self.coord.fan_out({r.model_owner: lambda: self.coord.describe(
            r.model_owner, self.analyst)})[r.model_owner]
        models = {m.name: m for m in info.models}
        if r.model:
            if r.model not in models:
                raise NodeBlamed(r.model_owner, f"{r.model_owner} has no model {r.model!r} "
                                 f"(models: {', '.join(models) or 'none'})",
                                 grpc.StatusCode.INVALID_ARGUMENT)
            return models[r.model]
        if len(models) == 1:
            return next(iter(models.values()))
        raise NodeBlamed(r.model_owner, f"{r.model_owner} owns "
                         f"{'no model' if not models else 'several models; name one'}",
                         grpc.StatusCode.INVALID_ARGUMENT)

    def prepare(self) -> None:
        r, st, me = self.request, self.state, self.coord.me
        model = self._model()
        try:
            options: dict[str, Any] = {}
            if r.feature_bound:
                options["feature_bound"] = r.feature_bound
            if r.frac_bits:
                options["frac_bits"] = r.frac_bits
            if r.ckks_preset:
                options["ckks_preset"] = r.ckks_preset
            kind = parse(ModelKind, model.kind)
            if kind is None:
                raise NodeBlamed(r.model_owner, f"{r.model_owner} described a model of unknown "
                                 "kind", grpc.StatusCode.ABORTED)
            draft = linear.InferenceSpec(
                kind=kind, n_samples=1, n_features=len(model.features),
                backend=r.backend, output=r.output, **options)
        except InputError as exc:
            raise NodeBlamed(me, str(exc), grpc.StatusCode.INVALID_ARGUMENT) from None
        data_req = PrepareDataOwner(
            session_id=st.id, analyst=self.analyst, members=st.members, timeout=st.remaining(),
            tag=PREDICT_TAG, where=r.where, spec=draft, features=model.features,
            signed_request=self._envelope)
        answer = self.coord.prepare(st, {r.data_owner: data_req})[r.data_owner]
        spec = answer.spec
        # the data owner fills in the feature bound its policy declares when the analyst gave
        # none (parties.node.inference); the model owner's check of it is on the owners' channel
        bound = r.feature_bound or (spec.feature_bound
                                    if isinstance(spec, linear.InferenceSpec) else 0.0)
        if not isinstance(spec, linear.InferenceSpec) or \
                spec != replace(draft, n_samples=spec.n_samples, feature_bound=bound):
            raise NodeBlamed(r.data_owner, f"{r.data_owner} returned an inconsistent spec",
                             grpc.StatusCode.ABORTED)
        self.spec = spec
        model_req = PrepareModelOwner(
            session_id=st.id, analyst=self.analyst, members=st.members, timeout=st.remaining(),
            tag=PREDICT_TAG, spec=spec, model=model.name, signed_request=self._envelope)
        self.coord.prepare(st, {r.model_owner: model_req})
        fault_point("after-prepare")

    def run(self) -> None:
        self.awaits = self.coord.start_awaits(self.state)  # each Await right behind its Run
        self.coord.run(self.state)
        fault_point("mid-run")

    def await_(self) -> None:
        r, st, spec = self.request, self.state, self.spec
        assert spec is not None
        local: dict[str, Any] = {}
        if self.dealer == self.coord.me:
            assert st.local is not None
            t = self.coord.network.transport(st.local)
            local[self.coord.me] = lambda: linear.run_dealer(
                t, spec, data_owner=r.data_owner, model_owner=r.model_owner, tag=PREDICT_TAG)
        elif self.dealer is not None:
            dealer = self.dealer
            deal = Deal(session_id=st.id, timeout=st.remaining(), spec=spec, members=st.members,
                        tag=PREDICT_TAG)
            local[dealer] = lambda: self.coord.control.deal(dealer, deal,
                                                            st.remaining() + AWAIT_GRACE)
        self.outcome = self.coord.await_all(st, local, self.awaits)[r.data_owner]

    def release(self) -> None:
        """Everyone finished: the data owner may write its predictions now."""
        assert self.outcome is not None
        if self.analyst_present is not None and not self.analyst_present():
            raise NodeBlamed(self.analyst, f"the analyst {self.analyst} went away before the "
                             "predictions were released: nothing was written",
                             grpc.StatusCode.CANCELLED)
        if self.outcome.status == "ready":
            owner = self.request.data_owner
            self.outcome = self.coord.control.await_(owner, self.state.id,
                                                     self.state.remaining() + AWAIT_GRACE)

    def result(self) -> Predicted:
        assert self.outcome is not None and self.spec is not None
        return Predicted(self.state.id, self.request.data_owner, self.outcome.n_predictions,
                         self.outcome.output_path, self.spec.kind, self.request.backend)
