"""The optional separate dealer node: correlated randomness for Beaver products.

By default the coordinator deals (:mod:`parties.coordinator`).  A federation
whose coordinator config names a ``dealer`` node uses this server instead:
``python -m parties.dealer --config dealer.json`` (start-up problems print one
line to stderr and exit with status 2).

It serves ``Node`` (Health, Deliver) and ``Dealer``, callable **only by the
coordinator**: ``Deal`` registers the session (members and deadline from the
request), runs :func:`smpc.linear.run_dealer` -- which only *sends* seed-
compressed triples to the two owners -- and returns when they are delivered;
``Abort`` stops and frees it.  The dealer learns nothing about inputs: it
never receives an opening.  Trust assumption (as in CrypTen's TTP): it does
not collude with a party.
"""

from __future__ import annotations

import logging
import sys
import threading

import grpc

from parties._pb import smpc_pb2 as pb
from parties._pb import smpc_pb2_grpc as pb_grpc
from parties.config import DealerConfig, load_dealer_config
from parties.errors import abort
from parties.node.party import MAX_SESSION_SECONDS
from parties.transport import wire
from parties.transport.channels import GrpcTransport, PeerChannels
from parties.transport.faults import fault_point, fault_transport, install_fault
from parties.transport.lifecycle import run_in_foreground
from parties.transport.server import NODE_ACCESS, NodeService, start_server
from parties.transport.sessions import SessionRegistry
from smpc import linear
from smpc.errors import InputError

__all__ = ["DEALER_ACCESS", "DealerNode", "main"]

log = logging.getLogger("smpc.dealer")

DEALER_ACCESS: dict[str, tuple[str, ...]] = {
    **NODE_ACCESS,
    "/smpc.v1.Dealer/Deal": ("coordinator",),
    "/smpc.v1.Dealer/Abort": ("coordinator",),
}


class DealerNode:
    """A dealer: config, session registry, channels and server."""

    def __init__(self, cfg: DealerConfig) -> None:
        self.cfg = cfg
        self.registry = SessionRegistry(cfg.name)
        self.peers = PeerChannels(cfg.federation, cfg.tls)
        self.server: grpc.Server | None = None
        self.port: int | None = None

    def start(self) -> int:
        install_fault("dealer")  # SMPC_FAULT: test-only, a no-op when unset
        node_service = NodeService(self.cfg.name, "dealer", self.cfg.federation, self.registry)
        service = DealerService(self)
        self.server, self.port = start_server(
            name=self.cfg.name, federation=self.cfg.federation, tls=self.cfg.tls,
            host=self.cfg.host, port=self.cfg.port, access=DEALER_ACCESS,
            register=[lambda s: pb_grpc.add_NodeServicer_to_server(node_service, s),
                      lambda s: pb_grpc.add_DealerServicer_to_server(service, s)],
        )
        self.registry.start_reaper()
        return self.port

    def stop(self, grace: float = 2.0) -> None:
        self.registry.close()
        if self.server is not None:
            self.server.stop(grace).wait()
        self.peers.close()

    def deal(self, r: pb.DealRequest) -> None:
        """Validate, register, deal; frees the session whatever happens."""
        me = self.cfg.name
        fault_point("on-deal")
        sid = wire.check_session_id(r.session_id)
        tag = wire.check_tag(r.tag or "s")
        if not 0 < r.timeout_seconds <= MAX_SESSION_SECONDS:
            raise InputError("the session timeout must be between 0 and 24 hours")
        members = {m.name: m.role for m in r.members}
        if members.get(me) != "dealer":
            raise InputError(f"{me} is not the dealer of this session")
        owners = {role: name for name, role in members.items() if role != "dealer"}
        if set(owners) != {"data-owner", "model-owner"} or len(members) != 3:
            raise InputError("a dealt session has exactly one data owner and one model owner")
        for name in members:
            if name != me:
                try:
                    self.cfg.federation.node(name)
                except KeyError:
                    raise InputError(f"session member {name!r} is not a federation node"
                                     ) from None
        spec = linear.InferenceSpec.from_json(wire.parse_spec_json(r.spec_json,
                                                                   "inference spec"))
        session = self.registry.create(sid, members, r.timeout_seconds, "deal")
        session.set_running()
        done = threading.Event()
        errors: list[BaseException] = []

        def role() -> None:
            try:
                t = fault_transport(GrpcTransport(session, self.peers), "mid-deal")
                linear.run_dealer(t, spec, data_owner=owners["data-owner"],
                                  model_owner=owners["model-owner"], tag=tag)
                session.finish(None)
            except BaseException as exc:  # reported to the coordinator
                errors.append(exc)
                session.fail(exc)
            finally:
                done.set()

        threading.Thread(target=role, daemon=True, name=f"deal-{sid[:8]}").start()
        try:
            if not session.wait_done(session.remaining() + 1.0):
                self.registry.abort(sid, "deadline passed")
                raise TimeoutError(f"{me} could not deal before the session deadline")
            if errors:
                raise errors[0]
            if session.error is None and session.abort_reason:
                raise InputError(f"session aborted: {session.abort_reason}")
        finally:
            self.registry.free(sid, session.status.value)
        log.info("session %s: dealt", sid)


class DealerService(pb_grpc.DealerServicer):
    def __init__(self, node: DealerNode) -> None:
        self.node = node

    def Deal(self, request: pb.DealRequest, context: grpc.ServicerContext) -> pb.DealResponse:
        failure: BaseException | None = None
        try:
            self.node.deal(request)
        except Exception as exc:
            failure = exc
        if failure is not None:
            abort(context, failure, self.node.cfg.name)
        return pb.DealResponse()

    def Abort(self, request: pb.AbortRequest, context: grpc.ServicerContext
              ) -> pb.AbortResponse:
        was = self.node.registry.abort(request.session_id, request.reason[:500] or "aborted",
                                       request.failed_node[:64] or None)
        return pb.AbortResponse(was_active=was)


def main(argv: list[str] | None = None) -> int:
    """``python -m parties.dealer --config FILE``: run the dealer in the foreground."""
    return run_in_foreground(
        "dealer", argv, load_dealer_config, DealerNode,
        lambda cfg, _node, port: (
            f"dealer {cfg.name} of federation {cfg.federation.name} listening on "
            f"{cfg.host}:{port}"))


if __name__ == "__main__":
    sys.exit(main())
