"""The control plane: what the coordinator asks of a node, as typed messages, behind one seam.

A computation is driven by four control calls on every participating node -- ``Prepare``
(validate the request, apply the policy, select the rows, reserve the privacy cost),
``Run`` (commit the cost, start the role), ``Await`` (the role's outcome) and ``Abort`` --
plus ``Describe`` (a party's public metadata) and ``Deal`` (a separate dealer's role).
This module defines them once:

* **typed messages** -- :class:`PrepareStatistic`, :class:`PrepareDataOwner`,
  :class:`PrepareModelOwner` (a :class:`Prepare`), :class:`Prepared`, :class:`Awaited`,
  :class:`Described`, :class:`Deal` -- and their one conversion to and from protobuf
  (:func:`prepare_to_pb` / :func:`prepare_from_pb` ...).  A request is parsed and validated
  **once**, at the receiving node's service edge (:func:`prepare_from_pb`); what travels
  inside a node is the typed object, never a spec to re-parse.
* **the seam** -- :class:`ControlPlane`, with a gRPC implementation
  (:class:`GrpcControlPlane`, over :class:`~parties.transport.channels.PeerChannels`) and an
  in-process one (:class:`parties.federation.inprocess.InProcessControlPlane`), so that the
  coordinator's stage machine, the party's policy checks, its ledger and its audit log run
  in one process in unit tests and across hosts in production.

Every method of a control plane either returns the typed answer or raises
:class:`~parties.errors.NodeBlamed` naming the node the failure is attributed to, with the
status to report -- whatever the implementation (an RPC error, or the node's own exception).
"""

from __future__ import annotations

import enum
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import grpc

from parties._pb import smpc_pb2 as pb
from parties.config import FederationConfig
from parties.data import filters
from parties.errors import NodeBlamed, failed_node_of, from_rpc_error, transport_detail
from parties.transport import wire
from parties.transport.channels import PeerChannels
from smpc.errors import InputError
from smpc.linear import InferenceSpec
from smpc.stats import StatSpec

__all__ = [
    "MAX_SESSION_SECONDS",
    "Awaited",
    "ControlPlane",
    "Deal",
    "Described",
    "GrpcControlPlane",
    "ModelInfo",
    "Prepare",
    "PrepareDataOwner",
    "PrepareModelOwner",
    "PrepareStatistic",
    "Prepared",
    "SessionKind",
    "SessionRole",
    "classify",
    "classify_rpc_failure",
    "deal_from_pb",
    "deal_to_pb",
    "kind_name",
    "prepare_from_pb",
    "prepare_to_pb",
]

MAX_SESSION_SECONDS = 24 * 3600.0


class SessionKind(str, enum.Enum):
    """What a node is asked to be in a session (the wire's ``SessionKind``)."""

    STAT = "stat"
    PREDICT_DATA = "predict-data"
    PREDICT_MODEL = "predict-model"
    DEAL = "deal"

    def __str__(self) -> str:
        return self.value


_KIND_TO_PB = {
    SessionKind.STAT: pb.SESSION_KIND_STAT,
    SessionKind.PREDICT_DATA: pb.SESSION_KIND_PREDICT_DATA,
    SessionKind.PREDICT_MODEL: pb.SESSION_KIND_PREDICT_MODEL,
    SessionKind.DEAL: pb.SESSION_KIND_DEAL,
}
_KIND_FROM_PB: dict[int, SessionKind] = {int(v): k for k, v in _KIND_TO_PB.items()}


class SessionRole(str, enum.Enum):
    """A member's role in one session (not its role in the federation)."""

    PARTY = "party"                  # a statistic's data party
    RECIPIENT = "recipient"          # ss statistic: reconstructs the sum (the coordinator)
    AGGREGATOR = "aggregator"        # ckks statistic: adds ciphertexts (the coordinator)
    KEYHOLDER = "keyholder"          # ckks statistic: decrypts (the analyst)
    DATA_OWNER = "data-owner"
    MODEL_OWNER = "model-owner"
    DEALER = "dealer"

    def __str__(self) -> str:
        return self.value


def kind_name(kind: int) -> str:
    """The name of a wire session kind, or "unknown" (for audit records of malformed requests)."""
    k = _KIND_FROM_PB.get(int(kind))
    return k.value if k is not None else "unknown"


def _members(raw: Mapping[str, str]) -> dict[str, SessionRole]:
    out: dict[str, SessionRole] = {}
    for name, role in raw.items():
        try:
            out[name] = SessionRole(role)
        except ValueError:
            raise InputError(f"unknown session role {str(role)[:40]!r} of member "
                             f"{str(name)[:64]!r}") from None
    return out


# ------------------------------------------------------------------------------ messages


@dataclass(frozen=True)
class Prepare:
    """A request to prepare a session (fields common to every kind).

    ``members``: every node of the session and its session role -- the only nodes whose
    messages the session accepts.  ``filter``: the parsed row filter (None: every row),
    ``where`` its text as sent.  ``timeout``: seconds from now (no clock agreement needed).
    """

    session_id: str
    analyst: str
    members: Mapping[str, SessionRole]
    timeout: float
    tag: str = "s"
    where: str = ""
    filter: filters.Expr | None = field(default=None, compare=False)
    signed_request: bytes = b""     # the analyst's signed request (parties.pki.signed)

    kind: SessionKind = field(init=False, default=SessionKind.STAT)

    def roles(self, *wanted: SessionRole) -> list[str]:
        """The members holding one of ``wanted`` (in member order)."""
        return [n for n, r in self.members.items() if r in wanted]

    def one(self, role: SessionRole, what: str) -> str:
        """The single member with ``role``; an InputError if there is not exactly one."""
        found = self.roles(role)
        if len(found) != 1:
            raise InputError(f"the session must have exactly one {what}")
        return found[0]

    def optional(self, role: SessionRole) -> str | None:
        found = self.roles(role)
        return found[0] if found else None


@dataclass(frozen=True)
class PrepareStatistic(Prepare):
    """Be one data party of a joint statistic."""

    spec: StatSpec | None = None
    kind: SessionKind = field(init=False, default=SessionKind.STAT)

    @property
    def statistic(self) -> StatSpec:
        assert self.spec is not None
        return self.spec


@dataclass(frozen=True)
class PrepareDataOwner(Prepare):
    """Be the data owner of an inference: ``features`` are the model's columns, in order;
    ``spec`` is the draft inference spec (its ``n_samples`` is set by the data owner)."""

    spec: InferenceSpec | None = None
    features: tuple[str, ...] = ()
    kind: SessionKind = field(init=False, default=SessionKind.PREDICT_DATA)

    @property
    def inference(self) -> InferenceSpec:
        assert self.spec is not None
        return self.spec


@dataclass(frozen=True)
class PrepareModelOwner(Prepare):
    """Be the model owner of an inference; ``model``: the model's name ("" = the only one)."""

    spec: InferenceSpec | None = None
    model: str = ""
    kind: SessionKind = field(init=False, default=SessionKind.PREDICT_MODEL)

    @property
    def inference(self) -> InferenceSpec:
        assert self.spec is not None
        return self.spec


@dataclass(frozen=True)
class Prepared:
    """A party's answer to Prepare: the spec it will run (its policy may have added clipping
    bounds; None = as requested) and, for a data owner, the number of selected rows."""

    spec: StatSpec | InferenceSpec | None = None
    n_samples: int = 0


@dataclass(frozen=True)
class Awaited:
    """A role's outcome: ``done``, or ``ready`` (a data owner's predictions are computed and
    held unwritten until the coordinator's second Await)."""

    status: str = "done"
    n_predictions: int = 0
    output_path: str = ""


@dataclass(frozen=True)
class ModelInfo:
    """The public metadata of a model (never its weights)."""

    name: str
    kind: str
    features: tuple[str, ...]


@dataclass(frozen=True)
class Described:
    """A party's public metadata for one analyst."""

    name: str
    columns: tuple[str, ...]
    models: tuple[ModelInfo, ...]


@dataclass(frozen=True)
class Deal:
    """A separate dealer's part in an ``ss`` inference."""

    session_id: str
    timeout: float
    spec: InferenceSpec
    members: Mapping[str, SessionRole]
    tag: str


# --------------------------------------------------------------------- protobuf, once


def _members_to_pb(members: Mapping[str, SessionRole]) -> list[pb.Member]:
    return [pb.Member(name=n, role=str(r)) for n, r in members.items()]


def _members_from_pb(raw: object, me: str, federation: FederationConfig) -> dict[str, SessionRole]:
    members: dict[str, str] = {}
    for m in raw:  # type: ignore[attr-defined]
        if not m.name or m.name in members:
            raise InputError("the session's member list is malformed")
        members[m.name] = m.role
    if me not in members:
        raise InputError(f"{me} is not a member of the session it was asked to prepare")
    for name in members:
        if name != me:
            try:
                federation.node(name)
            except KeyError:
                raise InputError(f"session member {name!r} is not a node of the federation"
                                 ) from None
    return _members(members)


def _timeout(value: float) -> float:
    if not 0 < value <= MAX_SESSION_SECONDS:
        raise InputError("the session timeout must be between 0 and 24 hours")
    return float(value)


def prepare_to_pb(req: Prepare) -> pb.PrepareRequest:
    """The wire form of a typed Prepare."""
    spec = getattr(req, "spec", None)
    msg = pb.PrepareRequest(
        session_id=req.session_id, timeout_seconds=req.timeout, kind=_KIND_TO_PB[req.kind],
        spec_json=json.dumps(spec.to_json()) if spec is not None else "", where=req.where,
        members=_members_to_pb(req.members), analyst=req.analyst, tag=req.tag,
        signed_request=req.signed_request)
    if isinstance(req, PrepareDataOwner):
        msg.columns.extend(req.features)
    if isinstance(req, PrepareModelOwner):
        msg.model = req.model
    return msg


def prepare_from_pb(msg: pb.PrepareRequest, me: str, federation: FederationConfig) -> Prepare:
    """Parse and validate a Prepare at the service edge (InputError with one sentence).

    Checks: the session id and tag, the timeout (0-24 h), the kind, the members (``me`` among
    them, every other one a node of the federation), the spec (a valid statistic or
    inference spec) and the filter (parsed by :mod:`parties.data.filters`, never evaluated as
    code).  The party's *policy* is applied later, by the node.
    """
    sid = wire.check_session_id(msg.session_id)
    tag = wire.check_tag(msg.tag or "s")
    kind = _KIND_FROM_PB.get(int(msg.kind))
    if kind is None or kind is SessionKind.DEAL:
        raise InputError(f"{me} cannot prepare a session of kind {msg.kind}")
    members = _members_from_pb(msg.members, me, federation)
    timeout = _timeout(msg.timeout_seconds)
    expr = filters.parse(msg.where) if msg.where.strip() else None
    doc = wire.parse_spec_json(msg.spec_json)
    if kind is SessionKind.STAT:
        return PrepareStatistic(sid, msg.analyst, members, timeout, tag, msg.where, expr,
                                msg.signed_request, spec=StatSpec.from_json(doc))
    if not isinstance(doc, dict):
        raise InputError("malformed inference spec")
    if kind is SessionKind.PREDICT_DATA:
        columns = tuple(msg.columns)
        if not columns or len(set(columns)) != len(columns):
            raise InputError("an inference needs the model's distinct feature names")
        draft = InferenceSpec.from_json({**doc, "n_samples": 1})
        if draft.n_features != len(columns):
            raise InputError("the inference spec and the feature list disagree")
        return PrepareDataOwner(sid, msg.analyst, members, timeout, tag, msg.where, expr,
                                msg.signed_request, spec=draft, features=columns)
    return PrepareModelOwner(sid, msg.analyst, members, timeout, tag, msg.where, expr,
                             msg.signed_request, spec=InferenceSpec.from_json(doc),
                             model=msg.model)


def prepared_to_pb(p: Prepared) -> pb.PrepareResponse:
    return pb.PrepareResponse(
        n_samples=p.n_samples, spec_json=json.dumps(p.spec.to_json()) if p.spec else "")


def prepared_from_pb(msg: pb.PrepareResponse, kind: SessionKind) -> Prepared:
    """A party's answer; a malformed spec in it is an InputError (blamed on that party)."""
    spec: StatSpec | InferenceSpec | None = None
    if msg.spec_json:
        doc = wire.parse_spec_json(msg.spec_json)
        spec = StatSpec.from_json(doc) if kind is SessionKind.STAT else InferenceSpec.from_json(doc)
    return Prepared(spec=spec, n_samples=int(msg.n_samples))


def deal_to_pb(d: Deal) -> pb.DealRequest:
    return pb.DealRequest(session_id=d.session_id, timeout_seconds=d.timeout,
                          spec_json=json.dumps(d.spec.to_json()),
                          members=_members_to_pb(d.members), tag=d.tag)


def deal_from_pb(msg: pb.DealRequest, me: str, federation: FederationConfig) -> Deal:
    """Parse and validate a Deal at the dealer's service edge."""
    return Deal(session_id=wire.check_session_id(msg.session_id),
                timeout=_timeout(msg.timeout_seconds),
                spec=InferenceSpec.from_json(wire.parse_spec_json(msg.spec_json)),
                members=_members_from_pb(msg.members, me, federation),
                tag=wire.check_tag(msg.tag or "inf"))


def described_from_pb(msg: pb.DescribeResponse) -> Described:
    return Described(msg.name, tuple(msg.columns), tuple(
        ModelInfo(m.name, m.kind, tuple(m.features)) for m in msg.models))


def described_to_pb(d: Described) -> pb.DescribeResponse:
    return pb.DescribeResponse(name=d.name, columns=list(d.columns), models=[
        pb.ModelInfo(name=m.name, kind=m.kind, features=list(m.features)) for m in d.models])


# ------------------------------------------------------------------------------ the seam


class ControlPlane(ABC):
    """The control calls a coordinator makes on nodes (see the module docstring).

    Every method raises :class:`~parties.errors.NodeBlamed` on failure.  ``timeout`` is in
    seconds.
    """

    @abstractmethod
    def describe(self, node: str, analyst: str, timeout: float) -> Described: ...

    @abstractmethod
    def prepare(self, node: str, request: Prepare, timeout: float) -> Prepared: ...

    @abstractmethod
    def run(self, node: str, session_id: str, timeout: float) -> None: ...

    @abstractmethod
    def await_(self, node: str, session_id: str, timeout: float) -> Awaited: ...

    @abstractmethod
    def abort(self, node: str, session_id: str, reason: str, failed_node: str | None,
              timeout: float) -> bool: ...

    @abstractmethod
    def deal(self, dealer: str, request: Deal, timeout: float) -> None: ...

    @abstractmethod
    def abort_dealer(self, dealer: str, session_id: str, reason: str,
                     failed_node: str | None, timeout: float) -> bool: ...


def _prefixed(node: str, message: str) -> str:
    return message if message.startswith(node) else f"{node}: {message}"


def classify(node: str, code: grpc.StatusCode, message: str, blamed: str | None) -> NodeBlamed:
    """The failure to report when a control call to ``node`` failed with ``code`` and
    ``message``, the node itself blaming ``blamed`` (None: no node answered, e.g. the
    connection failed).  A node that only reports another node's failure makes that node the
    (secondary) culprit."""
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED) and blamed is None:
        return NodeBlamed(node, f"{node} is unreachable or stopped ({message})",
                          grpc.StatusCode.UNAVAILABLE)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and blamed and blamed != node:
        return NodeBlamed(blamed, _prefixed(node, message), code, primary=False)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return NodeBlamed(node, f"{node} did not finish before the session deadline",
                          grpc.StatusCode.DEADLINE_EXCEEDED)
    if code == grpc.StatusCode.ABORTED and blamed and blamed != node:
        return NodeBlamed(blamed, _prefixed(node, message), code, primary=False)
    return NodeBlamed(node, _prefixed(node, message), code)


def classify_rpc_failure(node: str, err: grpc.RpcError) -> NodeBlamed:
    """:func:`classify` for a failed RPC to ``node``."""
    code = err.code()
    blamed = failed_node_of(err)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED) and blamed is None:
        return classify(node, code, transport_detail(err.details()),
                        None)
    return classify(node, code, from_rpc_error(err, node).message, blamed)


_T = TypeVar("_T")


class GrpcControlPlane(ControlPlane):
    """The control plane over mutual-TLS gRPC channels to the federation's nodes.

    Calls that have no side effect until they reach the node (Describe, Prepare, Deal) are
    retried once, after the reconnect backoff, when the node was unreachable at the transport
    level: a node that just restarted may still sit behind this process's channel backoff.
    """

    def __init__(self, peers: PeerChannels) -> None:
        self.peers = peers

    def _call(self, node: str, fn: Callable[[], _T], *, retry_until: float | None = None) -> _T:
        try:
            return fn()
        except grpc.RpcError as err:
            unreachable = self._unreachable(node, err)
            if not (unreachable and retry_until is not None
                    and retry_until - time.monotonic() >= 2.0):
                raise classify_rpc_failure(node, err) from None
        time.sleep(wire.RECONNECT_BACKOFF_MS[1] / 1000 + 0.1)
        try:
            return fn()
        except grpc.RpcError as err:
            self._unreachable(node, err)
            raise classify_rpc_failure(node, err) from None

    def _unreachable(self, node: str, err: grpc.RpcError) -> bool:
        """Whether ``node`` was unreachable at the transport level (worth one retry); if so
        its channel is dropped, so that the next call checks the node's certificate again.
        A certificate this side refused is not retried."""
        if err.code() != grpc.StatusCode.UNAVAILABLE \
                or getattr(err, "certificate_refused", False):
            return False
        if failed_node_of(err) is None:
            self.peers.forget(node)
        return True

    def describe(self, node: str, analyst: str, timeout: float) -> Described:
        end = time.monotonic() + timeout
        msg = self._call(node, lambda: self.peers.party(node).Describe(
            pb.DescribeRequest(analyst=analyst), timeout=max(end - time.monotonic(), 0.01)),
            retry_until=end)
        return described_from_pb(msg)

    def prepare(self, node: str, request: Prepare, timeout: float) -> Prepared:
        end = time.monotonic() + timeout
        msg = prepare_to_pb(request)
        answer = self._call(node, lambda: self.peers.party(node).Prepare(
            msg, timeout=max(end - time.monotonic(), 0.01)), retry_until=end)
        try:
            return prepared_from_pb(answer, request.kind)
        except (InputError, ValueError) as exc:
            raise NodeBlamed(node, f"{node}: {exc}", grpc.StatusCode.ABORTED) from None

    def run(self, node: str, session_id: str, timeout: float) -> None:
        self._call(node, lambda: self.peers.party(node).Run(
            pb.SessionRef(session_id=session_id), timeout=timeout))

    def await_(self, node: str, session_id: str, timeout: float) -> Awaited:
        msg = self._call(node, lambda: self.peers.party(node).Await(
            pb.SessionRef(session_id=session_id), timeout=timeout))
        return Awaited(status=msg.status or "done", n_predictions=int(msg.n_predictions),
                       output_path=msg.output_path)

    def abort(self, node: str, session_id: str, reason: str, failed_node: str | None,
              timeout: float) -> bool:
        msg = self._call(node, lambda: self.peers.party(node).Abort(pb.AbortRequest(
            session_id=session_id, reason=reason[:500], failed_node=failed_node or ""),
            timeout=timeout))
        return bool(msg.was_active)

    def deal(self, dealer: str, request: Deal, timeout: float) -> None:
        end = time.monotonic() + timeout
        msg = deal_to_pb(request)
        self._call(dealer, lambda: self.peers.dealer(dealer).Deal(
            msg, timeout=max(end - time.monotonic(), 0.01)), retry_until=end)

    def abort_dealer(self, dealer: str, session_id: str, reason: str,
                     failed_node: str | None, timeout: float) -> bool:
        msg = self._call(dealer, lambda: self.peers.dealer(dealer).Abort(pb.AbortRequest(
            session_id=session_id, reason=reason[:500], failed_node=failed_node or ""),
            timeout=timeout))
        return bool(msg.was_active)
