r"""Exceptions of the runtime and their mapping to and from gRPC status codes.

Server side: :func:`status_of` turns any exception a handler meets into a
``(code, sentence, node)`` triple and :func:`abort` ends the RPC with it; the
sentence is the exception's own message (never a traceback), ``node`` the node
to blame, sent as trailing metadata ``smpc-failed-node``.  Unexpected
exceptions become ``INTERNAL`` with a generic sentence (the details go to the
node's log only, so nothing internal leaks to callers).

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
anything else               INTERNAL (generic     :class:`RemoteError`
                            sentence; details in
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
import logging
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

import grpc

from smpc.errors import InputError, PeerFailure, ProtocolError, SmpcError

__all__ = [
    "FAILED_NODE_KEY",
    "STATUS_TABLE",
    "AuthError",
    "ColumnRefused",
    "ComputationFailed",
    "DeadlineExceeded",
    "InvalidRequest",
    "LimitExceeded",
    "NodeBlamed",
    "PermissionDenied",
    "PolicyError",
    "RemoteError",
    "SessionError",
    "SessionRejected",
    "StorageError",
    "Unauthenticated",
    "Unavailable",
    "abort",
    "failed_node_of",
    "from_rpc_error",
    "rpc_errors",
    "status_of",
    "transport_detail",
]

FAILED_NODE_KEY = "smpc-failed-node"

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
    """

    def __init__(
        self, node: str, message: str, code: grpc.StatusCode = grpc.StatusCode.ABORTED,
        primary: bool = True,
    ) -> None:
        super().__init__(message)
        self.node = node
        self.code = code
        self.primary = primary


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
        if blame == "self":
            node = me or None
        elif blame == "peer":
            node = getattr(exc, "node", None) or getattr(exc, "peer", None) or me or None
        message = str(exc) or (code.name.lower().replace("_", " ") if code else "")
        return code, message, node
    log.error("unexpected %s in %s", type(exc).__name__, me or "handler", exc_info=exc)
    where = f" in node {me!r}" if me else ""
    return grpc.StatusCode.INTERNAL, f"internal error{where} ({type(exc).__name__})", me or None


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
    if node:
        context.set_trailing_metadata(((FAILED_NODE_KEY, node),))
    context.abort(code, message)
    raise AssertionError("unreachable")  # context.abort raises


# ----------------------------------------------------------------------------- client side


class RemoteError(SmpcError):
    """An RPC failed. ``code``: gRPC status name; ``message``: the server's sentence;
    ``node``: the node the failure is attributed to (or None)."""

    def __init__(self, message: str, code: str = "UNKNOWN", node: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.node = node

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
    return _BY_CODE.get(code, RemoteError)(message, code.name, node)


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
