"""The analyst's client: joint statistics and inference through the coordinator.

::

    from parties.analyst.client import Client
    from smpc.stats import StatSpec

    with Client("path/to/federation-dir") as c:          # made by federation.init_federation
        r = c.compute(StatSpec("mean", ("age",), backend="ss"), where="age > 40")
        print(r.value, r.n)
        p = c.predict("hospital-a", "insurer", backend="ckks")
        print(p.n_predictions, "predictions written at", p.output_path, "on", p.data_owner)

Or with explicit files: ``Client("federation.json", cert=..., key=..., ca=...)``.

Guarantees:

* every connection is mutual TLS with the analyst's certificate and trusts
  only the coordinator's own certificate -- verified against the federation CA,
  its identity, its pin and the revocations of the federation config, which is
  reloaded when its file changes (:mod:`parties.transport.pinning`); a
  coordinator presenting another certificate gets nothing and the error names
  it;
* ``ckks`` statistics: the client creates the CKKS key pair **locally**
  (:class:`smpc.ckks.KeyHolder`), sends only the public context (no secret
  key, no Galois keys), runs the key holder's role over the ``Compute`` stream,
  and decrypts only the summed aggregates, released through flooding
  (:meth:`smpc.ckks.KeyHolder.release`) -- the secret key never leaves this
  process;
* a result is returned only when the coordinator ended the computation
  successfully; every failure raises a :class:`parties.errors.RemoteError`
  subclass whose ``str()`` is the server's one-sentence reason, with ``code``
  (gRPC status name) and ``node`` (the failed node, when known):
  :class:`Unavailable` (federation unreachable), :class:`PermissionDenied`,
  :class:`InvalidRequest` (bad spec, unknown column, out-of-range value),
  :class:`ComputationFailed` (a node failed mid-protocol), :class:`DeadlineExceeded`.
* predictions are never returned: the data owner writes them, encrypted at
  rest, on its host; the client learns how many and where;
* differential privacy (``spec.dp``) is enforced and charged by each party,
  which may fill in its policy's clipping bounds; the result's
  ``details["privacy"]`` shows the plan the parties used, and a refusal
  (policy, cohort, budget) is a :class:`PermissionDenied` naming the party.
"""

from __future__ import annotations

import json
import math
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from parties._pb import smpc_pb2 as pb
from parties._pb import smpc_pb2_grpc as pb_grpc
from parties.analyst.keyholder import run_keyholder
from parties.analyst.partial import proceed_without_decliners
from parties.config import FederationConfig, TLSFiles, load_federation
from parties.data import filters
from parties.errors import (
    ComputationFailed,
    DeadlineExceeded,
    InvalidRequest,
    PermissionDenied,
    RemoteError,
    SessionRejected,
    Unauthenticated,
    Unavailable,
    failed_node_of,
    from_rpc_error,
)
from parties.pki import signed
from parties.pki.certs import load_certificate, load_private_key
from parties.pki.identity import identity_from_certificate
from parties.transport import wire
from parties.transport.pinning import PinnedChannels
from parties.transport.requests import prediction_request, statistic_request
from parties.transport.sessions import Session
from smpc.errors import InputError, PeerFailure, SmpcError
from smpc.names import Backend
from smpc.stats import StatResult, StatSpec
from smpc.transport import Payload, Transport

__all__ = [
    "Client",
    "ComputationFailed",
    "DeadlineExceeded",
    "FederationInfo",
    "InvalidRequest",
    "ModelInfo",
    "NodeHealth",
    "PartyInfo",
    "PermissionDenied",
    "Prediction",
    "RemoteError",
    "SessionRejected",
    "Unauthenticated",
    "Unavailable",
]

DEFAULT_TIMEOUT = 120.0


@dataclass(frozen=True)
class Prediction:
    """The outcome of an inference as the analyst sees it (never the values)."""

    session_id: str
    data_owner: str
    n_predictions: int
    output_path: str
    kind: str
    backend: str


@dataclass(frozen=True)
class NodeHealth:
    name: str
    role: str
    ok: bool
    detail: str = ""
    active_sessions: int = 0


@dataclass(frozen=True)
class ModelInfo:
    name: str
    kind: str
    features: tuple[str, ...]


@dataclass(frozen=True)
class PartyInfo:
    name: str
    columns: tuple[str, ...]
    models: tuple[ModelInfo, ...] = ()


@dataclass(frozen=True)
class FederationInfo:
    federation: str
    coordinator: str
    parties: dict[str, PartyInfo] = field(default_factory=dict)


class _StreamTransport(Transport):
    """The key holder's channels: sends go up the Compute stream, receives come from it."""

    def __init__(self, session: Session, up: queue.Queue[pb.ComputeUp | None]) -> None:
        super().__init__(session.me)
        self.session = session
        self.up = up

    def _send(self, to: str, tag: str, payload: Payload) -> None:
        if to not in self.session.members:
            raise InputError(f"the key holder can only talk to the coordinator, not {to!r}")
        for chunk in wire.chunks(self.session.id, tag, payload):
            self.up.put(pb.ComputeUp(chunk=chunk))

    def _recv(self, sender: str, tag: str) -> Payload:
        return self.session.wait_message(sender, tag)


class Client:
    """An analyst's connection to a federation's coordinator.

    ``federation``: a federation directory made by
    :func:`parties.federation.local.init_federation` (the analyst's certificate, key
    and the CA are found in it), a federation JSON file, or a loaded
    :class:`~parties.config.FederationConfig` (then ``cert``, ``key`` and
    ``ca`` are required).  ``coordinator`` picks one if several are listed.
    ``timeout``: default seconds per computation (the coordinator caps it at
    its ``session_timeout``).  ``parties``: the default parties of a
    statistic (None: every party of the federation).
    """

    def __init__(
        self,
        federation: str | os.PathLike[str] | FederationConfig,
        *,
        cert: str | os.PathLike[str] | None = None,
        key: str | os.PathLike[str] | None = None,
        ca: str | os.PathLike[str] | None = None,
        coordinator: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        parties: Sequence[str] | None = None,
    ) -> None:
        if isinstance(federation, FederationConfig):
            fed = federation
        else:
            path = Path(federation)
            if path.is_dir():
                from parties.config.layout import Layout

                lay = Layout(path)
                fed = load_federation(lay.federation_file)
                cert = cert or lay.analyst_cert
                key = key or lay.analyst_key
                ca = ca or lay.ca_cert
            else:
                fed = load_federation(path)
        if cert is None or key is None:
            raise InputError("the analyst's certificate and key are required (cert=, key=)")
        ca = ca or fed.ca_cert
        self.federation = fed
        self._cert = load_certificate(cert)
        self._key = load_private_key(key)
        self.analyst = identity_from_certificate(self._cert).name
        coordinators = fed.nodes_with_role("coordinator")
        if coordinator is not None:
            coordinators = [n for n in coordinators if n.name == coordinator]
        if len(coordinators) != 1:
            raise InputError(
                "the federation must list exactly one coordinator (or name it: coordinator=)")
        self.coordinator = coordinators[0]
        self.timeout = float(timeout)
        self.parties = tuple(parties) if parties else None
        self._channels = PinnedChannels(fed, TLSFiles(Path(cert), Path(key), Path(ca)),
                                        wire.grpc_options())

    # ----------------------------------------------------------------- plumbing

    @property
    def _stub(self) -> pb_grpc.CoordinatorStub:
        """The coordinator's service over a channel that trusts only its (pinned, unrevoked)
        certificate; raises a :class:`grpc.RpcError` if it cannot be had."""
        return pb_grpc.CoordinatorStub(self._channels.channel(self.coordinator.name))

    @property
    def _node(self) -> pb_grpc.NodeStub:
        return pb_grpc.NodeStub(self._channels.channel(self.coordinator.name))

    def close(self) -> None:
        """Close the channel (idempotent)."""
        self._channels.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _error(self, err: grpc.RpcError) -> RemoteError:
        remote = from_rpc_error(err, self.coordinator.name)
        transport = err.code() == grpc.StatusCode.UNAVAILABLE and failed_node_of(err) is None
        if transport:
            self._channels.forget(self.coordinator.name)  # check its certificate again
        if transport and isinstance(remote, Unavailable) \
                and remote.node == self.coordinator.name:
            remote = Unavailable(
                f"the coordinator {self.coordinator.name} at {self.coordinator.address} is "
                f"unreachable: is the federation up? ({remote.message.split('(', 1)[-1]}",
                remote.code, remote.node)
        return remote

    def sign(self, request: dict[str, Any], kind: str, context_sha256: str | None = None
             ) -> bytes:
        """``request`` signed with this analyst's key (:mod:`parties.pki.signed`): what the
        coordinator forwards and every party verifies before reading a row."""
        return signed.sign(request, kind=kind, federation=self.federation.name,
                           analyst=self.analyst, key=self._key, cert=self._cert,
                           context_sha256=context_sha256)

    def _timeout(self, timeout: float | None) -> float:
        return float(timeout if timeout is not None else self.timeout)

    # ------------------------------------------------------------------- health

    def ping(self, timeout: float = 5.0) -> NodeHealth:
        """The coordinator's own health (raises :class:`Unavailable` if it is down)."""
        try:
            h = self._node.Health(pb.HealthRequest(), timeout=timeout)
        except grpc.RpcError as err:
            raise self._error(err) from None
        return NodeHealth(h.name, h.role, True, "", h.active_sessions)

    def health(self, timeout: float = 10.0) -> list[NodeHealth]:
        """Every node's health as the coordinator sees it (the coordinator first)."""
        try:
            resp = self._stub.Status(pb.StatusRequest(), timeout=timeout)
        except grpc.RpcError as err:
            raise self._error(err) from None
        return [NodeHealth(n.name, n.role, n.ok, n.detail, n.active_sessions)
                for n in resp.nodes]

    def describe(self, timeout: float = 30.0) -> FederationInfo:
        """Public metadata of every party: the columns it allows, its models' features."""
        try:
            resp = self._stub.Describe(pb.FederationRequest(), timeout=timeout)
        except grpc.RpcError as err:
            raise self._error(err) from None
        parties = {
            p.name: PartyInfo(p.name, tuple(p.columns), tuple(
                ModelInfo(m.name, m.kind, tuple(m.features)) for m in p.models))
            for p in resp.parties
        }
        return FederationInfo(resp.federation, resp.coordinator, parties)

    # --------------------------------------------------------------- statistics

    def compute(
        self, spec: StatSpec, where: str | None = None, *,
        parties: Sequence[str] | None = None, timeout: float | None = None,
        allow_partial: bool = False,
    ) -> StatResult:
        """Run one joint statistic (``spec.backend``: ss or ckks) over the parties' rows
        that satisfy ``where``; ``parties`` defaults to the client's ``parties``,
        else every party of the federation.

        ``allow_partial``: when parties *decline* (their own policies refuse at Prepare:
        cohort, columns, budget, limits), ask again -- a freshly signed request -- without
        them, as long as at least two parties remain (:mod:`parties.analyst.partial`); a
        party that is unreachable or fails is never skipped.  Without it a decline fails the
        computation, naming every decliner (``declines`` of the :class:`PermissionDenied`).

        Returns the :class:`smpc.stats.StatResult`, whose ``details["parties"]`` lists the
        parties that took part and ``details["declined"]`` maps each decliner to its public
        reason; reveals to the analyst only what the statistic reveals (see
        :mod:`smpc.stats`).
        """
        timeout = self._timeout(timeout)
        names = list(parties or self.parties or (n.name for n in self.federation.parties))
        if len(set(names)) != len(names):
            raise InputError("a party is named twice")
        if where and where.strip():
            filters.parse(where)  # a filter that cannot be signed and sent is refused here
        return proceed_without_decliners(
            lambda chosen: self._compute_once(spec, where or "", chosen, timeout), names,
            allow=allow_partial)

    def _compute_once(self, spec: StatSpec, where: str, names: list[str], timeout: float
                      ) -> StatResult:
        """One attempt over exactly ``names``, with its own signed request (fresh nonce)."""
        body = statistic_request(spec, where or "", names)
        request = pb.StatRequest(spec_json=json.dumps(spec.to_json()), where=where or "",
                                 parties=names, timeout_seconds=timeout)
        if spec.backend == Backend.CKKS:
            return self._compute_ckks(spec, request, body, timeout)
        request.signed_request = self.sign(body, "statistic")
        up: queue.Queue[pb.ComputeUp | None] = queue.Queue()
        up.put(pb.ComputeUp(request=request))
        up.put(None)
        try:
            result_json = None
            for msg in self._stub.Compute(_drain(up), timeout=timeout + 10.0):
                if msg.WhichOneof("body") == "result":
                    result_json = msg.result.result_json
        except grpc.RpcError as err:
            raise self._error(err) from None
        if not result_json:
            raise RemoteError("the coordinator ended the computation without a result")
        return StatResult(**json.loads(result_json))

    def _compute_ckks(self, spec: StatSpec, request: pb.StatRequest, body: dict[str, Any],
                      timeout: float) -> StatResult:
        from smpc import ckks

        holder = ckks.KeyHolder(spec.ckks_preset)
        context = holder.public_context()
        # the parties encrypt only under the key the analyst signed
        request.signed_request = self.sign(body, "statistic", signed.context_hash(context))
        up: queue.Queue[pb.ComputeUp | None] = queue.Queue()
        up.put(pb.ComputeUp(request=request))
        try:
            stub = self._stub
        except grpc.RpcError as err:
            raise self._error(err) from None
        call = stub.Compute(_drain(up), timeout=timeout + 10.0)
        outcome: dict[str, Any] = {}
        session: Session | None = None
        thread: threading.Thread | None = None
        try:
            asm: wire.Assembler | None = None
            for msg in call:
                which = msg.WhichOneof("body")
                if which == "started" and session is None:
                    st = msg.started
                    session = Session(st.session_id, self.analyst, {st.coordinator: "aggregator"},
                                      timeout)
                    for chunk in wire.chunks(st.session_id, "context", context):
                        up.put(pb.ComputeUp(chunk=chunk))
                    transport = _StreamTransport(session, up)
                    thread = threading.Thread(
                        target=_keyholder, daemon=True, name="keyholder",
                        args=(run_keyholder, transport, spec, st.coordinator, holder,
                              st.tag, outcome, call))
                    thread.start()
                elif which == "chunk" and session is not None:
                    asm = asm or wire.Assembler()
                    asm.add(msg.chunk)
                    if asm.complete:
                        header, payload = asm.finish()
                        asm = None
                        session.deliver(next(iter(session.members)), header.tag, payload)
                elif which == "result":
                    outcome["done"] = True
        except grpc.RpcError as err:
            if session is not None:
                session.abort("the coordinator ended the computation with an error")
            if "error" in outcome:  # our own failure cancelled the call
                raise outcome["error"] from None
            raise self._error(err) from None
        finally:
            up.put(None)
        if thread is None or session is None:
            raise RemoteError("the coordinator ended the computation before it started")
        thread.join(max(session.remaining(), 1.0))
        if "error" in outcome:
            raise outcome["error"]
        if "result" not in outcome or not outcome.get("done"):
            raise RemoteError("the computation ended without a result")
        return outcome["result"]

    # ---------------------------------------------------------------- inference

    def predict(
        self, data_owner: str, model_owner: str, *, model: str | None = None,
        where: str | None = None, backend: str = "ss", output: str = "prediction",
        feature_bound: float | None = None, frac_bits: int | None = None,
        ckks_preset: str | None = None, timeout: float | None = None,
        missing: str = "skip", key: str | None = None, rows: int | None = None,
    ) -> Prediction:
        """Apply ``model_owner``'s model to ``data_owner``'s rows matching ``where``.

        Only the data owner learns the predictions (written to a CSV on its
        host); the analyst gets the count and that path.  ``missing``: a row with a
        missing feature is left out (``"skip"``: no prediction, an empty cell in the file) or
        refuses the inference (``"error"``); ``key``: the data owner's column written beside
        the predictions (it must be one its policy declares, ``prediction-key``; default: the
        one it declares, if any).  ``feature_bound`` left out: the data owner's declared
        ``bounds`` of the features, else 1024.  ``rows``: the public size of the inference at
        a data owner under DP (default: its table's size rounded up to a power of two); an
        exact data owner predicts its selected rows whatever it says.
        """
        if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int)
                                 or not 1 <= rows <= 1 << 24):
            raise InputError(f"rows must be a whole number from 1 to {1 << 24}, not {rows!r}")
        # "skip" is the word statistics use too; the signed request's field says "drop"
        missing = {"skip": "drop"}.get(missing, missing)
        if missing not in ("drop", "error"):
            raise InputError(f"missing must be 'skip' or 'error', not {missing!r}")
        req = pb.PredictRequest(
            data_owner=data_owner, model_owner=model_owner, model=model or "",
            where=where or "", backend=backend, output=output,
            feature_bound=float(feature_bound or 0.0), frac_bits=int(frac_bits or 0),
            ckks_preset=ckks_preset or "", timeout_seconds=self._timeout(timeout))
        bound = float(feature_bound or 0.0)
        if not (math.isfinite(bound) and bound >= 0):
            raise InputError(f"the feature bound must be a finite positive number, got {bound}")
        if where and where.strip():
            filters.parse(where)
        req.signed_request = self.sign(prediction_request(
            data_owner=data_owner, model_owner=model_owner, model=model or "",
            where=where or "", backend=backend, output=output,
            feature_bound=float(feature_bound or 0.0), frac_bits=int(frac_bits or 0),
            ckks_preset=ckks_preset or "", missing=missing, key=key or "",
            rows=rows or 0), "prediction")
        try:
            r = self._stub.Predict(req, timeout=self._timeout(timeout) + 10.0)
        except grpc.RpcError as err:
            raise self._error(err) from None
        return Prediction(r.session_id, r.data_owner, int(r.n_predictions), r.output_path,
                          r.kind, r.backend)


def _drain(up: queue.Queue[pb.ComputeUp | None]) -> Iterator[pb.ComputeUp]:
    while True:
        item = up.get()
        if item is None:
            return
        yield item


def _keyholder(run: Any, transport: Transport, spec: StatSpec, coordinator: str, holder: Any,
               tag: str, outcome: dict[str, Any], call: Any) -> None:
    try:
        outcome["result"] = run(transport, spec, aggregator=coordinator, keyholder=holder,
                                tag=tag or "stat")
    except PeerFailure:
        pass  # the coordinator's own error (from the stream) is the one to report
    except SmpcError as exc:
        outcome["error"] = exc
        call.cancel()
    except BaseException as exc:
        outcome["error"] = RemoteError(f"the key holder failed: {exc}")
        call.cancel()


