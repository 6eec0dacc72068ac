r"""Exceptions of the runtime and their mapping to and from gRPC status codes.

Server side: :func:`status_of` turns any exception a handler meets into a
``(code, sentence, node)`` triple and :func:`abort` ends the RPC with it; the
sentence is the exception's own message (never a traceback), ``node`` the node
to blame, sent as trailing metadata ``smpc-failed-node``.  Unexpected
exceptions become ``INTERNAL`` with a generic sentence naming only their type; the node's log
records their frames (:func:`safe_traceback`) but not their message, which may quote a value
(numpy, TenSEAL and sqlite put values in their messages).

Client side: :func:`from_rpc_error` turns a :class:`grpc.RpcError` into a
:class:`RemoteError` subclass carrying ``code`` (the status code name),
``message`` (the server's sentence) and ``node``.

==========================  ====================  ==============================
exception (server)          status                client exception
==========================  ====================  ==============================
no verified identity,       UNAUTHENTICATED /     :class:`Unauthenticated` /
caller not allowed          PERMISSION_DENIED     :class:`PermissionDenied`
(:class:`AuthError`)
:class:`ColumnRefused`      INVALID_ARGUMENT      :class:`InvalidRequest`
:class:`PolicyError`,       PERMISSION_DENIED     :class:`PermissionDenied`
:class:`LimitExceeded`
:class:`SessionError`       its own code: NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION,
                            RESOURCE_EXHAUSTED -> :class:`SessionRejected`
:class:`NodeBlamed`         its own code          by code (usually :class:`ComputationFailed`)
PeerFailure                 ABORTED, or           :class:`ComputationFailed`,
                            DEADLINE_EXCEEDED     :class:`DeadlineExceeded`
ProtocolError               ABORTED (the sender   :class:`ComputationFailed`
                            of the bad message)
:class:`StorageError`       FAILED_PRECONDITION   :class:`SessionRejected`
(ledger, audit log)
InputError (spec, filter,   INVALID_ARGUMENT      :class:`InvalidRequest`
column, range, config)
TimeoutError                DEADLINE_EXCEEDED     :class:`DeadlineExceeded`
node unreachable            UNAVAILABLE           :class:`Unavailable`
anything else (also as      INTERNAL (generic     :class:`RemoteError`
:class:`InternalFailure`)   sentence; frames in
                            the node's log only)
==========================  ====================  ==============================

:data:`STATUS_TABLE` is that table in code: :func:`status_of` walks it in order (the first
matching class wins).  Only genuine input problems are :class:`~smpc.errors.InputError`\ s;
a ledger or audit log that cannot be used is a :class:`StorageError`, never
INVALID_ARGUMENT.  Handlers do not write their own ``try``/``abort``: :func:`rpc_errors`.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import traceback
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

import grpc

from smpc.errors import InputError, PeerFailure, ProtocolError, SmpcError

__all__ = [
    "DECLINED_KEY",
    "DECLINE_CODES",
    "FAILED_NODE_KEY",
    "STATUS_TABLE",
    "AuthError",
    "ColumnRefused",
    "ComputationFailed",
    "DeadlineExceeded",
    "InternalFailure",
    "InvalidRequest",
    "LimitExceeded",
    "NodeBlamed",
    "PermissionDenied",
    "PolicyError",
    "RemoteError",
    "SafeFormatter",
    "SessionError",
    "SessionRejected",
    "StorageError",
    "Unauthenticated",
    "Unavailable",
    "abort",
    "declines_of",
    "error_document",
    "failed_node_of",
    "from_rpc_error",
    "one_line",
    "rpc_errors",
    "safe_traceback",
    "status_of",
    "transport_detail",
]

FAILED_NODE_KEY = "smpc-failed-node"
#: Trailing metadata of a statistic refused only by parties' own policies: a JSON object
#: ``{party: its one-sentence public reason}`` (see :data:`DECLINE_CODES`).
DECLINED_KEY = "smpc-declined"
#: The statuses of a *decline*: a party's own policy refusing a request at Prepare (analyst,
#: columns, cohort, budget, limits: PERMISSION_DENIED; a column it does not have or allow, a
#: filter or data it cannot use: INVALID_ARGUMENT).  Anything else -- unreachable, deadline,
#: internal error, a ledger that cannot be used (FAILED_PRECONDITION), busy -- is a failure,
#: which an analyst may not proceed without.
DECLINE_CODES = frozenset({grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT})

log = logging.getLogger("smpc.errors")

_Handler = TypeVar("_Handler", bound=Callable[..., Any])


# ----------------------------------------------------------------------------- server side


class PolicyError(InputError):
    """A party's own policy refuses the request (analyst, cohort size): PERMISSION_DENIED."""


class LimitExceeded(PolicyError):
    """A request would cost (or a running role used) more than the party's policy allows one
    request: PERMISSION_DENIED.  ``limit`` names the policy field (``max_released_values`` ...).
    """

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


class ColumnRefused(PolicyError):
    """A requested column does not exist or the policy does not allow it: INVALID_ARGUMENT.

    The two cases get the same answer, so a refusal does not reveal whether a
    column the policy hides exists.
    """


class SessionError(SmpcError):
    """A session id is unknown, closed, reused or expired.

    ``code`` is the gRPC status to answer with.
    """

    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.NOT_FOUND) -> None:
        super().__init__(message)
        self.code = code


class AuthError(SmpcError):
    """The caller is not authenticated (``code`` UNAUTHENTICATED) or not allowed."""

    def __init__(self, message: str, code: grpc.StatusCode) -> None:
        super().__init__(message)
        self.code = code


class StorageError(SmpcError):
    """A party's ledger or audit log cannot be used (locked, corrupt, wrong version, a charge
    in the wrong state): FAILED_PRECONDITION -- the request was fine, the node is not."""


class NodeBlamed(SmpcError):
    """Coordinator side: a failure attributed to the named node while a session ran.

    Raised inside the coordinator (by the control plane and the protocols) and turned into the
    analyst's status; the analyst sees it as a :class:`ComputationFailed` (or another
    :class:`RemoteError`) naming the node.

    ``code`` is the status to report to the analyst; ``primary`` is False when
    the failure was only reported by another node (e.g. "did not receive from X").
    ``declines``: when the failure is only parties declining at Prepare, each decliner's
    public reason (``{party: sentence}``); empty otherwise.
    """

    def __init__(
        self, node: str, message: str, code: grpc.StatusCode = grpc.StatusCode.ABORTED,
        primary: bool = True, declines: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.node = node
        self.code = code
        self.primary = primary
        self.declines: dict[str, str] = dict(declines or {})


class InternalFailure(SmpcError):
    """An unexpected exception (numpy, TenSEAL, sqlite, a bug) as it may leave a node: named by
    its type only, since its message may quote a value.  ``original`` is the exception (for the
    node's own log, frames only).  INTERNAL."""

    def __init__(self, me: str, original: BaseException) -> None:
        where = f" in node {me!r}" if me else ""
        super().__init__(f"internal error{where} ({type(original).__name__})")
        self.original = original


_Blame = str  # "self": the node handling the call; "peer": the exception's own; "": nobody

#: (exception class, status or None = the exception's own ``code``, whom to blame), in order.
STATUS_TABLE: tuple[tuple[type[BaseException], grpc.StatusCode | None, _Blame], ...] = (
    (AuthError, None, ""),
    (ColumnRefused, grpc.StatusCode.INVALID_ARGUMENT, "self"),
    (PolicyError, grpc.StatusCode.PERMISSION_DENIED, "self"),
    (SessionError, None, ""),
    (NodeBlamed, None, "peer"),
    (PeerFailure, None, "peer"),
    (ProtocolError, grpc.StatusCode.ABORTED, "peer"),
    (InputError, grpc.StatusCode.INVALID_ARGUMENT, "self"),
    (StorageError, grpc.StatusCode.FAILED_PRECONDITION, "self"),
    (TimeoutError, grpc.StatusCode.DEADLINE_EXCEEDED, "self"),
    (InternalFailure, grpc.StatusCode.INTERNAL, "self"),
)


def status_of(exc: BaseException, me: str = "") -> tuple[grpc.StatusCode, str, str | None]:
    """``(status code, one-sentence message, node to blame or None)`` for an exception,
    from :data:`STATUS_TABLE`; anything not in it is INTERNAL with a generic sentence."""
    for cls, code, blame in STATUS_TABLE:
        if not isinstance(exc, cls):
            continue
        if code is None:
            if isinstance(exc, PeerFailure):
                code = grpc.StatusCode.DEADLINE_EXCEEDED if exc.deadline \
                    else grpc.StatusCode.ABORTED
            else:
                code = exc.code  # type: ignore[attr-defined]
        node: str | None = None
        if isinstance(exc, InternalFailure):
            log.error("unexpected %s in %s\n%s", type(exc.original).__name__, me or "handler",
                      safe_traceback(exc.original))
        if blame == "self":
            node = me or None
        elif blame == "peer":
            node = getattr(exc, "node", None) or getattr(exc, "peer", None) or me or None
        message = str(exc) or (code.name.lower().replace("_", " ") if code else "")
        return code, message, node
    log.error("unexpected %s in %s\n%s", type(exc).__name__, me or "handler",
              safe_traceback(exc))
    return grpc.StatusCode.INTERNAL, str(InternalFailure(me, exc)), me or None


def safe_traceback(exc: BaseException) -> str:
    """The frames (file, line, function) of ``exc`` and of its chain, each exception named by
    its type -- **without any exception's message**, which may quote a cell or a value."""
    lines: list[str] = []
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if lines:
            lines.append("raised while handling, or caused by:")
        lines.append(f"{type(e).__module__}.{type(e).__qualname__} (message not logged)")
        lines += [f'  File "{f.filename}", line {f.lineno}, in {f.name}'
                  for f in traceback.extract_tb(e.__traceback__)]
        e = e.__cause__ or e.__context__
    return "\n".join(lines)


class SafeFormatter(logging.Formatter):
    """A log formatter whose exceptions (``exc_info``, ``log.exception``) are written as
    :func:`safe_traceback`: frames and types, never a message.  Every node logs with it."""

    def formatException(self, ei: Any) -> str:
        exc = ei[1] if isinstance(ei, tuple) else ei
        return safe_traceback(exc) if isinstance(exc, BaseException) else ""


def rpc_errors(redactor: Callable[[BaseException, str], BaseException] | None = None
               ) -> Callable[[_Handler], _Handler]:
    """Decorate a servicer method ``(self, request, context)``: any exception ends the RPC
    with the status this module's table gives it, blaming ``self.me`` where the table blames
    the node; ``redactor(exc, me)`` first replaces errors that must not leave as they are.

    Works for unary and streaming-response handlers (generator functions) alike, so that no
    handler writes its own try/except-abort.
    """
    def decorate(fn: _Handler) -> _Handler:
        def fail(self: Any, context: grpc.ServicerContext, exc: Exception) -> NoReturn:
            me = getattr(self, "me", "")
            abort(context, redactor(exc, me) if redactor is not None else exc, me)

        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def stream(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                try:
                    yield from fn(self, request, context)
                except Exception as exc:  # mapped to a status
                    fail(self, context, exc)
            return stream  # type: ignore[return-value]

        @functools.wraps(fn)
        def unary(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return fn(self, request, context)
            except Exception as exc:  # mapped to a status
                fail(self, context, exc)
        return unary  # type: ignore[return-value]
    return decorate


def abort(context: grpc.ServicerContext, exc: BaseException, me: str = "") -> NoReturn:
    """End the current RPC with the status :func:`status_of` gives for ``exc``."""
    code, message, node = status_of(exc, me)
    trailers: list[tuple[str, str]] = [(FAILED_NODE_KEY, node)] if node else []
    declines = getattr(exc, "declines", None)
    if declines and isinstance(exc, NodeBlamed):
        trailers.append((DECLINED_KEY, json.dumps(declines, ensure_ascii=True)))
    if trailers:
        context.set_trailing_metadata(tuple(trailers))
    context.abort(code, message)
    raise AssertionError("unreachable")  # context.abort raises


# ----------------------------------------------------------------------------- client side


class RemoteError(SmpcError):
    """An RPC failed. ``code``: gRPC status name; ``message``: the server's sentence;
    ``node``: the node the failure is attributed to (or None); ``declines``: when parties
    only declined (their policies refused at Prepare), ``{party: its public reason}`` --
    what :meth:`parties.analyst.client.Client.compute` may proceed without."""

    def __init__(self, message: str, code: str = "UNKNOWN", node: str | None = None,
                 declines: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.node = node
        self.declines: dict[str, str] = dict(declines or {})

    def __str__(self) -> str:
        return self.message


class Unauthenticated(RemoteError):
    """The server found no valid client certificate."""


class PermissionDenied(RemoteError):
    """The caller is not allowed (federation allow-list or a party's policy)."""


class InvalidRequest(RemoteError, InputError):
    """The request is malformed or names something that does not exist."""


class SessionRejected(RemoteError):
    """A session id was unknown, reused or already closed."""


class ComputationFailed(RemoteError):
    """Client side: the computation failed because a node did (``node`` names it); nothing
    was revealed."""


class DeadlineExceeded(RemoteError):
    """The computation did not finish within its deadline."""


class Unavailable(RemoteError):
    """A node (or the federation) could not be reached."""


_BY_CODE: dict[grpc.StatusCode, type[RemoteError]] = {
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequest,
    grpc.StatusCode.NOT_FOUND: SessionRejected,
    grpc.StatusCode.ALREADY_EXISTS: SessionRejected,
    grpc.StatusCode.FAILED_PRECONDITION: SessionRejected,
    grpc.StatusCode.ABORTED: ComputationFailed,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
}


def declines_of(err: grpc.RpcError) -> dict[str, str]:
    """The ``smpc-declined`` trailing metadata of a failed call (``{}`` if absent or
    malformed)."""
    try:
        trailers: Any = err.trailing_metadata()
    except Exception:  # not every RpcError carries metadata
        return {}
    for key, value in trailers or ():
        if key != DECLINED_KEY:
            continue
        try:
            doc = json.loads(value if isinstance(value, str) else value.decode())
        except (ValueError, UnicodeDecodeError):
            return {}
        if isinstance(doc, dict):
            return {str(k): str(v) for k, v in doc.items()}
    return {}


def failed_node_of(err: grpc.RpcError) -> str | None:
    """The ``smpc-failed-node`` trailing metadata of a failed call, if any."""
    try:
        trailers: Any = err.trailing_metadata()
    except Exception:  # not every RpcError carries metadata
        return None
    for key, value in trailers or ():
        if key == FAILED_NODE_KEY:
            return value if isinstance(value, str) else value.decode()
    return None


def from_rpc_error(err: grpc.RpcError, target: str = "") -> RemoteError:
    """The :class:`RemoteError` for a failed call to ``target`` (a node name)."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else None
    node = failed_node_of(err)
    message = details or code.name.lower()
    if node is None:  # not an answer of our server: a transport-level failure
        if code == grpc.StatusCode.UNAVAILABLE:
            node = target or None
            message = f"{target or 'the node'} is unreachable ({transport_detail(details)})"
        elif code == grpc.StatusCode.DEADLINE_EXCEEDED and details == "Deadline Exceeded":
            node = target or None
            message = f"{target or 'the node'} did not answer before the deadline"
    declines = declines_of(err) if node is not None else {}
    return _BY_CODE.get(code, RemoteError)(message, code.name, node, declines)


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (its type's name if it has none)."""
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def error_document(exc: BaseException) -> dict[str, Any]:
    """The machine-readable form of an error (every ``--json`` command prints it on stdout):
    ``{"error": <one line>, "code": <gRPC status name or null>, "node": <the node blamed or
    null>, "declined": {<party>: <its public reason>}}`` -- ``declined`` is empty unless
    parties declined a statistic (:class:`RemoteError` ``declines``)."""
    code = getattr(exc, "code", None)
    name = code if isinstance(code, str) else getattr(code, "name", None)
    node = getattr(exc, "node", None)
    declines = getattr(exc, "declines", None)
    return {"error": one_line(exc), "code": name if isinstance(name, str) else None,
            "node": node if isinstance(node, str) else None,
            "declined": {str(k): str(v) for k, v in declines.items()}
            if isinstance(declines, dict) else {}}


def transport_detail(details: str | None) -> str:
    """A short, one-line form of gRPC's connection-failure details."""
    if not details:
        return "no connection"
    text = " ".join(details.replace("(", " ").replace(")", " ").split())
    for marker in ("Connection refused", "Connection reset by peer", "Socket closed",
                   "Broken pipe", "handshake", "Handshake", "CERTIFICATE", "certificate"):
        if marker in text:
            return marker if marker[0].isupper() and " " in marker else text[-200:]
    return text if len(text) <= 200 else text[:197] + "..."
