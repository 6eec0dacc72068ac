"""The party node: a gRPC server beside one organisation's data.

``python -m parties.node --config party.json`` runs it in the foreground
(SIGTERM / Ctrl-C stop it).  A start-up problem (bad config, unreadable data,
port in use) prints one line to stderr and exits with status 2.

What it serves (all over mutual TLS, see :mod:`parties.grpc_transport`):

* ``Node.Health`` (any federation member) and ``Node.Deliver`` (only nodes that
  are members of the session the payload names);
* ``Party.*`` -- callable **only by the coordinator**: ``Describe`` (the
  column names its policy allows, and the public metadata of its models:
  name, kind, feature names -- never the coefficients), ``Prepare``, ``Run``,
  ``Await``, ``Abort``.

Zero trust.  At ``Prepare`` the party validates everything itself -- the spec,
the members of the session, the filter (parsed by :mod:`parties.filters`, never
evaluated as code), that every column exists -- and applies its own policy
(:class:`PolicyGate`: allowed analysts, allowed columns including the filter's,
minimum cohort size after filtering).  Only then does it load and filter its
rows and register the session.  Roles of :mod:`smpc.stats` and
:mod:`smpc.linear` run in worker threads, so ``Health`` always answers.

What a party reveals.  To the coordinator: that it accepted or refused a
request (and the refusal's reason), for an inference as data owner the number
of selected rows (a public size the model owner needs).  A statistic's row
count is never sent.  Everything else leaves only as the protocol's messages
(seeds, shares, masked openings, ciphertexts).

Files next to the party's database path (``database`` in its config):

* ``models/<name>.json`` -- models it owns (``{"kind", "features",
  "coefficients", "intercept"}``, see :class:`smpc.linear.LinearModel`);
* ``outputs/<session id>.csv`` -- predictions, when it is the data owner of an
  inference: columns ``row`` (1-based row number in its table, header
  excluded) and ``prediction``; mode 0600.  The values never leave the host:
  the coordinator and the analyst learn only the count and this path.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from parties import filters, wire
from parties._pb import smpc_pb2 as pb
from parties._pb import smpc_pb2_grpc as pb_grpc
from parties.config import PartyConfig, PolicyConfig, load_party_config
from parties.datasource import DataSourceError, Table, load_table
from parties.errors import ColumnRefused, PolicyError, SessionError, abort
from parties.grpc_transport import (
    NODE_ACCESS,
    GrpcTransport,
    NodeService,
    PeerChannels,
    start_server,
)
from parties.sessions import Session, SessionRegistry, Status
from parties.tls import atomic_write
from smpc import linear, stats
from smpc.encoding import EncodingRangeError
from smpc.errors import InputError, SmpcError

__all__ = [
    "PARTY_ACCESS",
    "PartyNode",
    "PolicyGate",
    "PolicyRequest",
    "load_models",
    "main",
    "models_dir",
    "outputs_dir",
    "redact",
]

log = logging.getLogger("smpc.party")

COORDINATOR_ONLY = ("coordinator",)
PARTY_ACCESS: dict[str, tuple[str, ...]] = {
    **NODE_ACCESS,
    "/smpc.v1.Party/Describe": COORDINATOR_ONLY,
    "/smpc.v1.Party/Prepare": COORDINATOR_ONLY,
    "/smpc.v1.Party/Run": COORDINATOR_ONLY,
    "/smpc.v1.Party/Await": COORDINATOR_ONLY,
    "/smpc.v1.Party/Abort": COORDINATOR_ONLY,
}

MAX_SESSION_SECONDS = 24 * 3600.0
AWAIT_GRACE_SECONDS = 2.0
MAX_ACTIVE_SESSIONS = 64
_MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

KIND_NAMES = {
    pb.SESSION_KIND_STAT: "stat",
    pb.SESSION_KIND_PREDICT_DATA: "predict-data",
    pb.SESSION_KIND_PREDICT_MODEL: "predict-model",
}


def models_dir(cfg: PartyConfig) -> Path:
    """Where a party's models live: ``<database dir>/models``."""
    return cfg.database.parent / "models"


def outputs_dir(cfg: PartyConfig) -> Path:
    """Where a data owner's predictions are written: ``<database dir>/outputs``."""
    return cfg.database.parent / "outputs"


# ------------------------------------------------------------------------------ policy


@dataclass(frozen=True)
class PolicyRequest:
    """What a request asks of a party, as its policy sees it.

    ``kind``: describe | stat | predict-data | predict-model; ``columns``: the
    value columns it reads; ``filter_columns``: the columns its filter reads;
    ``n_rows``: rows selected after the filter (None when not applicable).
    """

    analyst: str
    kind: str
    columns: tuple[str, ...] = ()
    filter_columns: tuple[str, ...] = ()
    n_rows: int | None = None
    session_id: str = ""
    details: dict[str, Any] = field(default_factory=dict)


class PolicyGate:
    """A party's own rules, applied to every request before any data is used.

    :meth:`check` raises :class:`parties.errors.PolicyError` (PERMISSION_DENIED)
    with the rule that refused; :meth:`record` is called for every request,
    accepted or refused -- the place for a privacy-budget ledger and an
    audit log (today: one log line without values).
    """

    def __init__(self, party: str, policy: PolicyConfig) -> None:
        self.party = party
        self.policy = policy

    def check(self, req: PolicyRequest) -> None:
        p = self.policy
        if req.analyst not in p.allowed_analysts:
            raise PolicyError(f"{self.party} does not serve analyst {req.analyst!r}")
        allowed = set(p.allowed_columns)
        bad = [c for c in (*req.columns, *req.filter_columns) if c not in allowed]
        if bad:
            raise ColumnRefused(
                f"{self.party} has no column {', '.join(repr(c) for c in bad)} it may use "
                f"(its columns: {', '.join(p.allowed_columns) or 'none'})"
            )
        if req.kind == "stat" and req.n_rows is not None and req.n_rows < p.min_cohort_size:
            raise PolicyError(
                f"{self.party} refuses: fewer than {p.min_cohort_size} of its rows match "
                "(minimum cohort size)"
            )

    def record(self, req: PolicyRequest, accepted: bool, reason: str = "") -> None:
        log.info(
            "policy %s: session=%s kind=%s analyst=%s columns=%s filter_columns=%s%s",
            "accepted" if accepted else "refused", req.session_id or "-", req.kind,
            req.analyst, ",".join(req.columns) or "-", ",".join(req.filter_columns) or "-",
            f" reason={reason}" if reason else "",
        )

    def enforce(self, req: PolicyRequest) -> None:
        """:meth:`check` then :meth:`record` (refusals are recorded too)."""
        try:
            self.check(req)
        except PolicyError as exc:
            self.record(req, False, str(exc))
            raise
        self.record(req, True)


# ------------------------------------------------------------------------------ models


def load_models(directory: Path) -> dict[str, linear.LinearModel]:
    """Every valid ``<name>.json`` model in ``directory`` (invalid ones are logged, skipped)."""
    out: dict[str, linear.LinearModel] = {}
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob("*.json")):
        if not _MODEL_NAME_RE.match(path.stem):
            continue
        try:
            out[path.stem] = linear.LinearModel.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, InputError) as exc:
            log.warning("skipping model file %s: %s", path.name, exc)
    return out


def _pick_model(models: dict[str, linear.LinearModel], name: str, me: str
                ) -> tuple[str, linear.LinearModel]:
    if name:
        if name not in models:
            raise InputError(f"{me} has no model {name!r} (models: {', '.join(models) or 'none'})")
        return name, models[name]
    if len(models) == 1:
        return next(iter(models.items()))
    if not models:
        raise InputError(f"{me} owns no model")
    raise InputError(f"{me} owns several models ({', '.join(models)}); name one")


# ------------------------------------------------------------------------------- jobs


@dataclass
class _Job:
    kind: str
    tag: str
    spec: Any
    rows: np.ndarray | None = None
    row_numbers: np.ndarray | None = None
    model: linear.LinearModel | None = None
    parties: list[str] = field(default_factory=list)
    hub: str = ""             # stat: recipient / aggregator
    peer: str = ""            # predict: the other owner
    dealer: str | None = None


@dataclass(frozen=True)
class _Outcome:
    n_predictions: int = 0
    output_path: str = ""


def _members(req_members: Any, me: str, federation: Any) -> dict[str, str]:
    members: dict[str, str] = {}
    for m in req_members:
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
    return members


def _one(members: dict[str, str], roles: tuple[str, ...], what: str) -> str:
    found = [n for n, r in members.items() if r in roles]
    if len(found) != 1:
        raise InputError(f"the session must have exactly one {what}")
    return found[0]


# ----------------------------------------------------------------------- what may leave


def redact(exc: BaseException, me: str) -> BaseException:
    """The error a party may send out: range and data errors lose the values they carry.

    Range errors name the offending value or aggregate (a party's own sum, its
    largest feature, its model's weight norm) and data errors quote cells and
    file paths: the analyst gets the kind of problem and the remedy, the
    party's log keeps the full sentence.
    """
    if isinstance(exc, EncodingRangeError):
        log.info("%s: out-of-range value (not disclosed to the caller): %s", me, exc)
        return InputError(
            f"{me} refuses: one of its values or aggregates is outside the range this "
            "computation can encode (raise the declared feature bound, scale the column or "
            "lower the fractional bits); the value is not disclosed")
    if isinstance(exc, DataSourceError):
        log.info("%s: data problem (details not disclosed to the caller): %s", me, exc)
        text = str(exc)
        what = ("some selected rows have missing values" if "missing" in text
                else "a value is not a number" if "non-numeric" in text
                else "a value is infinite" if "infinite" in text
                else "its data file cannot be read")
        return InputError(f"{me} cannot use the requested columns: {what} "
                          "(details in its log)")
    return exc


# ------------------------------------------------------------------------------ service


class PartyService(pb_grpc.PartyServicer):
    """The ``Party`` service of one node (see the module docstring)."""

    def __init__(self, node: PartyNode) -> None:
        self.node = node

    @property
    def me(self) -> str:
        return self.node.cfg.name

    def Describe(self, request: pb.DescribeRequest, context: grpc.ServicerContext
                 ) -> pb.DescribeResponse:
        try:
            resp = self.node.describe(request.analyst)
        except Exception as exc:  # mapped to a status
            abort(context, exc, self.me)
        return resp

    def Prepare(self, request: pb.PrepareRequest, context: grpc.ServicerContext
                ) -> pb.PrepareResponse:
        failure: BaseException | None = None
        try:
            resp = self.node.prepare(request)
        except Exception as exc:
            failure = exc
        if failure is not None:
            log.info("prepare %s refused: %s", request.session_id[:64], failure)
            abort(context, redact(failure, self.me), self.me)
        return resp

    def Run(self, request: pb.SessionRef, context: grpc.ServicerContext) -> pb.RunResponse:
        failure: BaseException | None = None
        try:
            self.node.run(request.session_id)
        except Exception as exc:
            failure = exc
        if failure is not None:
            abort(context, failure, self.me)
        return pb.RunResponse()

    def Await(self, request: pb.SessionRef, context: grpc.ServicerContext
              ) -> pb.AwaitResponse:
        failure: BaseException | None = None
        try:
            outcome = self.node.wait(request.session_id)
        except Exception as exc:
            failure = exc
        if failure is not None:
            abort(context, redact(failure, self.me), self.me)
        return pb.AwaitResponse(status="done", n_predictions=outcome.n_predictions,
                                output_path=outcome.output_path)

    def Abort(self, request: pb.AbortRequest, context: grpc.ServicerContext
              ) -> pb.AbortResponse:
        was = self.node.registry.abort(request.session_id, request.reason[:500] or "aborted",
                                       request.failed_node[:64] or None)
        if was:
            log.info("session %s aborted by the coordinator: %s", request.session_id,
                     request.reason[:200])
        return pb.AbortResponse(was_active=was)


# -------------------------------------------------------------------------------- node


class PartyNode:
    """A party: its config, table, policy, sessions and gRPC server."""

    def __init__(self, cfg: PartyConfig, table: Table | None = None) -> None:
        self.cfg = cfg
        self.table = table if table is not None else load_table(cfg.data.path, cfg.data.format)
        self.policy = PolicyGate(cfg.name, cfg.policy)
        self.registry = SessionRegistry(cfg.name)
        self.peers = PeerChannels(cfg.federation, cfg.tls)
        self.server: grpc.Server | None = None
        self.port: int | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> int:
        """Start serving; returns the bound port."""
        node_service = NodeService(self.cfg.name, "party", self.cfg.federation, self.registry)
        party_service = PartyService(self)
        self.server, self.port = start_server(
            name=self.cfg.name, federation=self.cfg.federation, tls=self.cfg.tls,
            host=self.cfg.host, port=self.cfg.port, access=PARTY_ACCESS,
            register=[lambda s: pb_grpc.add_NodeServicer_to_server(node_service, s),
                      lambda s: pb_grpc.add_PartyServicer_to_server(party_service, s)],
        )
        self.registry.start_reaper()
        return self.port

    def stop(self, grace: float = 2.0) -> None:
        self.registry.close()
        if self.server is not None:
            self.server.stop(grace).wait()
        self.peers.close()

    # ----------------------------------------------------------------- requests

    def describe(self, analyst: str) -> pb.DescribeResponse:
        """Public metadata for ``analyst``: allowed columns present, model metadata."""
        self.policy.enforce(PolicyRequest(analyst=analyst, kind="describe"))
        allowed = set(self.cfg.policy.allowed_columns)
        models = load_models(models_dir(self.cfg))
        return pb.DescribeResponse(
            name=self.cfg.name,
            columns=[c for c in self.table.columns if c in allowed],
            models=[pb.ModelInfo(name=n, kind=m.kind, features=list(m.features))
                    for n, m in models.items()],
        )

    def _select(self, where: str, columns: list[str], req: PolicyRequest
                ) -> tuple[np.ndarray, np.ndarray, PolicyRequest]:
        """Apply the policy (before touching data), the filter, then read the columns."""
        expr = filters.parse(where) if where.strip() else None
        fcols = tuple(sorted(expr.columns())) if expr is not None else ()
        req = replace(req, columns=tuple(columns), filter_columns=fcols)
        self.policy.check(req)  # columns and analyst, before any row is read
        missing = [c for c in (*columns, *fcols) if c not in self.table.columns]
        if missing:  # allowed by the policy but absent from the table
            raise ColumnRefused(f"{self.cfg.name} has no column "
                                f"{', '.join(repr(c) for c in missing)} in its data")
        mask = filters.evaluate(expr, self.table) if expr is not None else None
        sel = self.table.select(columns, rows=mask)
        row_numbers = np.flatnonzero(sel.rows) + 1
        return sel.values, row_numbers, replace(req, n_rows=sel.n_rows)

    def prepare(self, r: pb.PrepareRequest) -> pb.PrepareResponse:
        """Validate a session request, select the rows, register the session."""
        me = self.cfg.name
        sid = wire.check_session_id(r.session_id)
        tag = wire.check_tag(r.tag or "s")
        kind = KIND_NAMES.get(r.kind)
        if kind is None:
            raise InputError(f"{me} cannot prepare a session of kind {r.kind}")
        if not 0 < r.timeout_seconds <= MAX_SESSION_SECONDS:
            raise InputError("the session timeout must be between 0 and 24 hours")
        if self.registry.count() >= MAX_ACTIVE_SESSIONS:
            raise SessionError(f"{me} is busy ({MAX_ACTIVE_SESSIONS} active sessions)",
                               grpc.StatusCode.RESOURCE_EXHAUSTED)
        members = _members(r.members, me, self.cfg.federation)
        try:
            doc = json.loads(r.spec_json)
        except json.JSONDecodeError:
            raise InputError("the spec is not valid JSON") from None
        base = PolicyRequest(analyst=r.analyst, kind=kind, session_id=sid)
        resp = pb.PrepareResponse()
        try:
            if kind == "stat":
                job, req = self._prepare_stat(doc, r, members, base, tag)
            elif kind == "predict-data":
                job, resp, req = self._prepare_data_owner(doc, r, members, base, tag)
            else:
                job, req = self._prepare_model_owner(doc, r, members, base, tag)
        except Exception as exc:  # every refusal is recorded
            self.policy.record(base, False, str(exc))
            raise
        self.registry.create(sid, members, r.timeout_seconds, kind, job)
        self.policy.record(req, True)
        log.info("session %s prepared: %s for %s, %d members", sid, kind, r.analyst,
                 len(members))
        return resp

    def _prepare_stat(self, doc: Any, r: pb.PrepareRequest, members: dict[str, str],
                      base: PolicyRequest, tag: str) -> tuple[_Job, PolicyRequest]:
        spec = stats.StatSpec.from_json(doc)
        if members[self.cfg.name] != "party":
            raise InputError(f"{self.cfg.name} is not a party of this statistic")
        hub = _one(members, ("recipient", "aggregator"), "recipient or aggregator")
        parties = [n for n, role in members.items() if role == "party"]
        rows, _numbers, req = self._select(r.where, list(spec.value_columns), base)
        self.policy.check(req)  # now with the cohort size
        return _Job("stat", tag, spec, rows=rows, parties=parties, hub=hub), req

    def _prepare_data_owner(self, doc: Any, r: pb.PrepareRequest, members: dict[str, str],
                            base: PolicyRequest, tag: str
                            ) -> tuple[_Job, pb.PrepareResponse, PolicyRequest]:
        if members[self.cfg.name] != "data-owner":
            raise InputError(f"{self.cfg.name} is not the data owner of this inference")
        columns = list(r.columns)
        if not columns or len(set(columns)) != len(columns):
            raise InputError("an inference needs the model's distinct feature names")
        X, numbers, req = self._select(r.where, columns, base)
        self.policy.check(req)
        if X.shape[0] == 0:
            raise InputError(f"no rows of {self.cfg.name} match the filter")
        if not isinstance(doc, dict):
            raise InputError("malformed inference spec")
        spec = linear.InferenceSpec.from_json({**doc, "n_samples": int(X.shape[0])})
        if spec.n_features != len(columns):
            raise InputError("the inference spec and the feature list disagree")
        linear.check_features(spec, X)
        model_owner = _one(members, ("model-owner",), "model owner")
        dealer = next((n for n, role in members.items() if role == "dealer"), None)
        job = _Job("predict-data", tag, spec, rows=X, row_numbers=numbers, peer=model_owner,
                   dealer=dealer)
        resp = pb.PrepareResponse(n_samples=int(X.shape[0]), spec_json=json.dumps(spec.to_json()))
        return job, resp, req

    def _prepare_model_owner(self, doc: Any, r: pb.PrepareRequest, members: dict[str, str],
                             base: PolicyRequest, tag: str) -> tuple[_Job, PolicyRequest]:
        if members[self.cfg.name] != "model-owner":
            raise InputError(f"{self.cfg.name} is not the model owner of this inference")
        self.policy.check(base)
        _name, model = _pick_model(load_models(models_dir(self.cfg)), r.model, self.cfg.name)
        spec = linear.InferenceSpec.from_json(doc)
        linear.check_model(spec, model)
        data_owner = _one(members, ("data-owner",), "data owner")
        dealer = next((n for n, role in members.items() if role == "dealer"), None)
        job = _Job("predict-model", tag, spec, model=model, peer=data_owner, dealer=dealer)
        return job, base

    def run(self, session_id: str) -> None:
        """Start the session's role in a worker thread (returns at once)."""
        s = self.registry.get(session_id)
        s.set_running()
        s.thread = threading.Thread(target=self._role, args=(s,), daemon=True,
                                    name=f"role-{session_id[:8]}")
        s.thread.start()

    def wait(self, session_id: str) -> _Outcome:
        """Block until the role ends or the deadline passes; frees the session."""
        s = self.registry.get(session_id)
        done = s.wait_done(s.remaining() + AWAIT_GRACE_SECONDS)
        if not done:
            self.registry.abort(session_id, "deadline passed")
            raise TimeoutError(f"{self.cfg.name} did not finish before the session deadline")
        self.registry.free(session_id, s.status.value)
        if s.status == Status.DONE:
            return s.outcome or _Outcome()
        if s.status == Status.FAILED and s.error is not None:
            raise s.error
        raise SessionError(f"session {session_id} was aborted on {self.cfg.name}: "
                           f"{s.abort_reason}", grpc.StatusCode.ABORTED)

    # -------------------------------------------------------------------- roles

    def _role(self, s: Session) -> None:
        job: _Job = s.job
        t = GrpcTransport(s, self.peers)
        started = time.perf_counter()
        try:
            if job.kind == "stat":
                ctx = None
                if job.spec.backend == "ckks":
                    from smpc import ckks

                    data = t.recv_bytes(job.hub, f"{job.tag}/context",
                                        max_len=ckks.MAX_CONTEXT_BYTES)
                    ctx = ckks.load_context(data)
                stats.run_party(t, job.spec, job.rows, parties=job.parties, recipient=job.hub,
                                tag=job.tag, public_context=ctx)
                outcome = _Outcome()
            elif job.kind == "predict-data":
                preds = linear.run_data_owner(t, job.spec, job.rows, model_owner=job.peer,
                                              dealer=job.dealer, tag=job.tag)
                path = self._write_predictions(s.id, job.row_numbers, preds)
                outcome = _Outcome(n_predictions=len(preds), output_path=str(path))
            else:
                linear.run_model_owner(t, job.spec, job.model, data_owner=job.peer,
                                       dealer=job.dealer, tag=job.tag)
                outcome = _Outcome()
        except BaseException as exc:  # reported through Await
            level = logging.INFO if isinstance(exc, SmpcError) else logging.ERROR
            log.log(level, "session %s failed on %s: %s: %s", s.id, self.cfg.name,
                    type(exc).__name__, exc, exc_info=not isinstance(exc, SmpcError))
            s.fail(exc)
            return
        log.info("session %s done on %s in %.2f s (sent %d msgs / %d B, received %d / %d B)",
                 s.id, self.cfg.name, time.perf_counter() - started, t.traffic.messages_sent,
                 t.traffic.bytes_sent, t.traffic.messages_received, t.traffic.bytes_received)
        s.finish(outcome)

    def _write_predictions(self, session_id: str, row_numbers: np.ndarray | None,
                           preds: np.ndarray) -> Path:
        out = outputs_dir(self.cfg)
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = out / f"{session_id}.csv"
        numbers = row_numbers if row_numbers is not None else np.arange(1, len(preds) + 1)
        lines = ["row,prediction"] + [f"{int(i)},{float(v)!r}" for i, v in
                                      zip(numbers, preds, strict=True)]
        atomic_write(path, ("\n".join(lines) + "\n").encode(), 0o600, overwrite=False)
        return path


# -------------------------------------------------------------------------------- main


def setup_logging(level: str = "INFO") -> None:
    """One line per event on stderr (values are never logged)."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def serve_forever(stop: Any, name: str) -> None:
    """Block until SIGTERM / SIGINT (sets ``stop``)."""
    def handler(signum: int, frame: Any) -> None:
        logging.getLogger("smpc.node").info("%s: signal %d, shutting down", name, signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    while not stop.wait(1.0):
        pass


def main(argv: list[str] | None = None) -> int:
    """``python -m parties.node --config FILE``: run one party in the foreground."""
    ap = argparse.ArgumentParser(prog="python -m parties.node", description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="the party's JSON config file")
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    setup_logging(args.log_level)
    try:
        cfg = load_party_config(args.config)
        node = PartyNode(cfg)
        port = node.start()
    except (InputError, OSError) as exc:
        print(f"smpc party: {exc}", file=sys.stderr)
        return 2
    log.info("party %s of federation %s listening on %s:%d (%d rows, %d columns)", cfg.name,
             cfg.federation.name, cfg.host, port, node.table.n_rows, len(node.table.columns))
    stop = threading.Event()
    serve_forever(stop, cfg.name)
    node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
