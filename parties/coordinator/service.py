"""The coordinator's gRPC edge for analysts: ``Compute``, ``Predict``, ``Status``, ``Describe``.

Analysts only (the access guard checks their certificates against the federation's list).
Each request is parsed once here (:mod:`.requests`) and run by the engine
(:class:`~.core.Coordinator`) as a protocol (:mod:`.statistic`, :mod:`.prediction`).

``Compute`` is a bidirectional stream: the analyst sends its request (and, on ``ckks``, its
public context, then its key holder's messages); the coordinator answers with the session's
start, the aggregator's messages to the key holder, and the result (``ss``) or an empty result
(``ckks``: the analyst computed it).  An analyst that goes away aborts its session everywhere.
"""

from __future__ import annotations

import functools
import json
import logging
import queue
import secrets
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import grpc

from parties._pb import smpc_pb2 as pb
from parties._pb import smpc_pb2_grpc as pb_grpc
from parties.coordinator.prediction import PredictionProtocol
from parties.coordinator.requests import prediction_request, statistic_request
from parties.coordinator.state import SessionState, Stage
from parties.coordinator.statistic import CONTEXT_TAG, STAT_TAG, StatisticProtocol
from parties.errors import SessionError, abort, rpc_errors
from parties.pki.signed import context_hash
from parties.transport import wire
from parties.transport.control import described_to_pb
from parties.transport.server import caller
from smpc.errors import InputError, PeerFailure
from smpc.names import Backend
from smpc.transport import Payload

if TYPE_CHECKING:
    from parties.coordinator.node import CoordinatorNode

__all__ = ["MAX_ANALYST_CALLS", "SERVER_WORKERS", "CoordinatorService", "next_within"]

log = logging.getLogger("smpc.coordinator")


#: Analyst calls (Compute streams, Predict) served at once.  Each holds a
#: server worker for its whole session, so the cap stays well below the
#: server's pool (:data:`SERVER_WORKERS`): parties' Deliver calls and Health
#: always find a worker.  Calls beyond it get RESOURCE_EXHAUSTED at once.
MAX_ANALYST_CALLS = 64
SERVER_WORKERS = 256
#: How long the coordinator waits for each message an analyst owes it before
#: a session exists (the request, the public CKKS context).
ANALYST_MESSAGE_TIMEOUT = 30.0


def next_within(iterator: Iterator[Any], seconds: float, what: str) -> Any:
    """The next item of a request stream, or TimeoutError after ``seconds``.

    gRPC request iterators block without a deadline of their own; a reader
    thread keeps a silent client from holding a server worker forever.
    """
    box: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)

    def read() -> None:
        try:
            box.put((True, next(iterator, None)))
        except Exception as exc:  # the stream broke: report it to the waiter
            box.put((False, exc))

    threading.Thread(target=read, daemon=True, name="stream-read").start()
    try:
        ok, item = box.get(timeout=seconds)
    except queue.Empty:
        raise TimeoutError(f"the analyst did not send {what} within {seconds:g} s") from None
    if not ok:
        raise InputError(f"the analyst's stream broke before {what}")
    return item


class CoordinatorService(pb_grpc.CoordinatorServicer):
    """``Coordinator`` RPCs: analysts only (enforced by the access guard)."""

    def __init__(self, node: CoordinatorNode) -> None:
        self.me = node.me
        self.node = node
        self._slots = threading.BoundedSemaphore(MAX_ANALYST_CALLS)

    def _admit(self, context: grpc.ServicerContext) -> None:
        if not self._slots.acquire(blocking=False):
            abort(context, SessionError(
                f"the coordinator is busy ({MAX_ANALYST_CALLS} computations running); "
                "retry shortly", grpc.StatusCode.RESOURCE_EXHAUSTED), self.node.me)

    def Compute(self, request_iterator: Iterator[pb.ComputeUp], context: grpc.ServicerContext
                ) -> Iterator[pb.ComputeDown]:
        self._admit(context)
        try:
            yield from self._compute(request_iterator, context)
        finally:
            self._slots.release()

    def _compute(self, request_iterator: Iterator[pb.ComputeUp], context: grpc.ServicerContext
                 ) -> Iterator[pb.ComputeDown]:
        analyst = caller(context).name
        node = self.node
        failure: BaseException | None = None
        try:
            first = next_within(request_iterator, ANALYST_MESSAGE_TIMEOUT, "its request")
            if first is None or first.WhichOneof("body") != "request":
                raise InputError("a Compute stream must start with the statistic request")
            request = statistic_request(first.request, node.cfg.federation,
                                        caller=analyst, ca_cert=node.ca_cert)
        except Exception as exc:
            failure = exc
        if failure is not None:
            abort(context, failure, node.me)
        if request.spec.backend == Backend.SS:
            yield from self._compute_ss(analyst, request, context)
        else:
            yield from self._compute_ckks(analyst, request, request_iterator, context)

    def _compute_ss(self, analyst: str, request: Any,
                    context: grpc.ServicerContext) -> Iterator[pb.ComputeDown]:
        sid = secrets.token_hex(16)
        yield pb.ComputeDown(started=pb.ComputeStarted(session_id=sid,
                                                       coordinator=self.node.me, tag=STAT_TAG))

        def on_rpc_done() -> None:  # the analyst went away: stop the session everywhere
            if self.node.coordinator.registry.find(sid) is not None:
                self.node.coordinator.registry.abort(sid, "the analyst disconnected", analyst)

        context.add_callback(on_rpc_done)
        failure: BaseException | None = None
        try:
            coord = self.node.coordinator
            result = coord.execute(StatisticProtocol(coord, analyst, request, session_id=sid))
        except Exception as exc:
            failure = exc
        if failure is not None:
            abort(context, failure, self.node.me)
        assert result is not None
        yield pb.ComputeDown(result=pb.ComputeResult(result_json=json.dumps(result.to_json())))

    def _compute_ckks(self, analyst: str, request: Any,
                      request_iterator: Iterator[pb.ComputeUp], context: grpc.ServicerContext
                      ) -> Iterator[pb.ComputeDown]:
        """Relay between the analyst's stream and the coordinator's aggregator session."""
        from smpc import ckks

        node = self.node
        out: queue.Queue[pb.ComputeDown | BaseException | None] = queue.Queue()
        sid = secrets.token_hex(16)
        yield pb.ComputeDown(started=pb.ComputeStarted(
            session_id=sid, coordinator=node.me, keyholder=analyst, tag=STAT_TAG))
        failure: BaseException | None = None
        try:
            asm = wire.Assembler(max_bytes=ckks.MAX_CONTEXT_BYTES)
            while not asm.complete:
                msg = next_within(request_iterator, ANALYST_MESSAGE_TIMEOUT,
                                  "its public CKKS context")
                if msg is None or msg.WhichOneof("body") != "chunk":
                    raise InputError("expected the analyst's public CKKS context")
                asm.add(msg.chunk)
            header, ctx_payload = asm.finish()
            if header.tag != CONTEXT_TAG or header.session_id != sid \
                    or not isinstance(ctx_payload, bytes):
                raise InputError("expected the analyst's public CKKS context")
            context_bytes: bytes = ctx_payload
            signed = request.signed
            if signed is None or signed.context_sha256 != context_hash(context_bytes):
                raise InputError("the public CKKS context is not the one the analyst signed")
        except Exception as exc:
            failure = exc
        if failure is not None:
            abort(context, failure, node.me)

        ready = threading.Event()
        holder: dict[str, SessionState] = {}

        def on_state(st: SessionState) -> None:
            holder["st"] = st
            ready.set()

        def to_analyst(tag: str, payload: Payload) -> None:
            if not context.is_active():
                raise PeerFailure(analyst, f"the analyst {analyst} disconnected")
            st = holder["st"]
            for chunk in wire.chunks(st.id, tag, payload):
                out.put(pb.ComputeDown(chunk=chunk))

        def upstream() -> None:
            """Analyst -> coordinator session: the key holder's messages."""
            ready.wait()
            st = holder.get("st")
            if st is None:
                return
            asm: wire.Assembler | None = None
            try:
                for msg in request_iterator:
                    if msg.WhichOneof("body") != "chunk":
                        raise InputError("unexpected message on the Compute stream")
                    if asm is None:
                        asm = wire.Assembler()
                    asm.add(msg.chunk)
                    if asm.complete:
                        header, payload = asm.finish()
                        asm = None
                        if header.session_id != st.id:
                            raise InputError("a payload names another session")
                        assert st.local is not None
                        st.local.deliver(analyst, header.tag, payload)
            except Exception as exc:
                if st.stage not in (Stage.DONE, Stage.FAILED):
                    log.info("session %s: analyst stream failed: %s", st.id, exc)
                    node.coordinator.registry.abort(
                        st.id, f"the analyst's stream failed: {exc}", analyst)

        def machine() -> None:
            try:
                coord = node.coordinator
                coord.execute(StatisticProtocol(
                    coord, analyst, request, to_analyst=to_analyst, context_bytes=context_bytes,
                    on_state=on_state, session_id=sid))
                out.put(pb.ComputeDown(result=pb.ComputeResult(result_json="")))
                out.put(None)
            except BaseException as exc:
                ready.set()
                out.put(exc)

        def on_rpc_done() -> None:
            st = holder.get("st")
            if st is not None and st.stage not in (Stage.DONE, Stage.FAILED):
                node.coordinator.registry.abort(st.id, "the analyst disconnected", analyst)

        context.add_callback(on_rpc_done)
        threading.Thread(target=upstream, daemon=True, name="compute-up").start()
        threading.Thread(target=machine, daemon=True, name="compute-machine").start()
        while True:
            item = out.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                abort(context, item, node.me)
            yield item

    def Predict(self, request: pb.PredictRequest, context: grpc.ServicerContext
                ) -> pb.PredictResponse:
        self._admit(context)
        try:
            return self._predict(request, context)
        finally:
            self._slots.release()

    @rpc_errors()
    def _predict(self, request: pb.PredictRequest, context: grpc.ServicerContext
                 ) -> pb.PredictResponse:
        coord = self.node.coordinator
        typed = prediction_request(request, self.node.cfg.federation,
                                   caller=caller(context).name, ca_cert=self.node.ca_cert)
        # an analyst that went away (Ctrl-C, a lost connection) gets nothing written
        p = coord.execute(PredictionProtocol(coord, caller(context).name, typed,
                                             analyst_present=context.is_active))
        return pb.PredictResponse(session_id=p.session_id, data_owner=p.data_owner,
                                  n_predictions=p.n_predictions, output_path=p.output_path,
                                  kind=p.kind, backend=p.backend)

    def Status(self, request: pb.StatusRequest, context: grpc.ServicerContext
               ) -> pb.StatusResponse:
        return self.node.status()

    @rpc_errors()
    def Describe(self, request: pb.FederationRequest, context: grpc.ServicerContext
                 ) -> pb.FederationResponse:
        analyst = caller(context).name
        coord = self.node.coordinator
        parties = [n.name for n in self.node.cfg.federation.parties]
        described = coord.fan_out({p: functools.partial(coord.describe, p, analyst)
                                   for p in parties})
        return pb.FederationResponse(
            federation=self.node.cfg.federation.name, coordinator=self.me,
            parties=[described_to_pb(described[p]) for p in parties])
