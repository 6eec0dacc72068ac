"""The runtime's one error taxonomy: every exception kind maps to one status, via one table."""

from __future__ import annotations

import grpc
import pytest

from parties.errors import (
    STATUS_TABLE,
    AuthError,
    ColumnRefused,
    NodeBlamed,
    PolicyError,
    SessionError,
    StorageError,
    rpc_errors,
    status_of,
)
from parties.privacy.audit import AuditError
from parties.privacy.ledger import BudgetExceeded, ChargeReplay, LedgerError, LedgerValueError
from smpc.errors import InputError, PeerFailure, ProtocolError

C = grpc.StatusCode


@pytest.mark.parametrize(("exc", "code", "blamed"), [
    (AuthError("no", C.UNAUTHENTICATED), C.UNAUTHENTICATED, None),
    (ColumnRefused("no column"), C.INVALID_ARGUMENT, "me"),
    (PolicyError("refused"), C.PERMISSION_DENIED, "me"),
    (BudgetExceeded("over budget", analyst="ann", dataset="d", remaining=0.1, requested=0.5,
                    total=1.0), C.PERMISSION_DENIED, "me"),
    (SessionError("gone", C.NOT_FOUND), C.NOT_FOUND, None),
    (ChargeReplay("again"), C.ALREADY_EXISTS, None),
    (NodeBlamed("b", "b died", C.UNAVAILABLE), C.UNAVAILABLE, "b"),
    (PeerFailure("b", "late", deadline=True), C.DEADLINE_EXCEEDED, "b"),
    (PeerFailure("b", "aborted"), C.ABORTED, "b"),
    (ProtocolError("short share", peer="c"), C.ABORTED, "c"),
    (InputError("bad spec"), C.INVALID_ARGUMENT, "me"),
    (LedgerValueError("bad analyst name"), C.INVALID_ARGUMENT, "me"),
    (LedgerError("charge already spent"), C.FAILED_PRECONDITION, "me"),
    (AuditError("log locked"), C.FAILED_PRECONDITION, "me"),
    (StorageError("database is corrupt"), C.FAILED_PRECONDITION, "me"),
    (TimeoutError("too slow"), C.DEADLINE_EXCEEDED, "me"),
    (KeyError("oops"), C.INTERNAL, "me"),
])
def test_each_exception_kind_has_one_status(exc, code, blamed):
    got, message, node = status_of(exc, "me")
    assert (got, node) == (code, blamed)
    if code is C.INTERNAL:  # nothing internal leaks: a generic sentence
        assert message == "internal error in node 'me' (KeyError)" and "oops" not in message
    else:
        assert message == str(exc)


def test_a_ledger_or_audit_failure_is_not_an_input_error():
    assert not issubclass(LedgerError, InputError) and not issubclass(AuditError, InputError)
    classes = [cls for cls, _code, _blame in STATUS_TABLE]
    assert classes.index(InputError) < classes.index(StorageError)  # value errors stay input


class _Ctx:
    """The part of a gRPC servicer context the decorator uses."""

    def __init__(self) -> None:
        self.trailers: tuple = ()
        self.aborted: tuple | None = None

    def set_trailing_metadata(self, md):
        self.trailers = md

    def abort(self, code, message):
        self.aborted = (code, message)
        raise RuntimeError("aborted")


class _Service:
    me = "party-x"

    @rpc_errors()
    def Unary(self, request, context):
        raise LedgerError("ledger locked")

    @rpc_errors(lambda exc, me: InputError(f"{me} redacted"))
    def Redacted(self, request, context):
        raise InputError("cell 'Alice' is not a number")

    @rpc_errors()
    def Stream(self, request, context):
        yield 1
        raise PolicyError("no")


def test_rpc_errors_ends_the_call_with_the_table_status_and_the_node():
    s, ctx = _Service(), _Ctx()
    with pytest.raises(RuntimeError):
        s.Unary(None, ctx)
    assert ctx.aborted == (C.FAILED_PRECONDITION, "ledger locked")
    assert ctx.trailers == (("smpc-failed-node", "party-x"),)
    ctx = _Ctx()
    with pytest.raises(RuntimeError):
        s.Redacted(None, ctx)
    assert ctx.aborted == (C.INVALID_ARGUMENT, "party-x redacted")  # the cell never leaves
    ctx = _Ctx()
    gen = s.Stream(None, ctx)
    assert next(gen) == 1
    with pytest.raises(RuntimeError):
        next(gen)
    assert ctx.aborted == (C.PERMISSION_DENIED, "no")


def test_an_unexpected_exception_is_logged_without_its_message(caplog):
    """numpy, TenSEAL and sqlite quote values in their messages: the INTERNAL status names the
    type only, and the node's log gets the frames and the type, never the message. Catches a
    handler that logs with ``exc_info`` (which prints the message) or sends ``str(exc)``."""
    import logging

    try:
        float("Zebulon-Quartz-7731")
    except ValueError as exc:
        with caplog.at_level(logging.ERROR, logger="smpc.errors"):
            code, message, node = status_of(exc, "org-a")
    assert (code, message, node) == (C.INTERNAL, "internal error in node 'org-a' (ValueError)",
                                     "org-a")
    assert "builtins.ValueError (message not logged)" in caplog.text
    assert "test_errors.py" in caplog.text  # the frames are there for the operator
    assert "Zebulon" not in caplog.text


def test_the_nodes_log_formatter_writes_frames_not_messages():
    """Every node logs through :class:`SafeFormatter`: ``log.exception`` and ``exc_info`` give
    the frames and the types of the chain, never a message (a cell quoted by numpy, a cause's
    value)."""
    import io
    import logging

    from parties.errors import SafeFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(SafeFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("smpc.test.safe-formatter")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            float("987654.321 mg")
        except ValueError as inner:
            raise RuntimeError("cell 'Zebulon-Quartz-7731' was bad") from inner
    except RuntimeError:
        logger.exception("session failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert text.startswith("ERROR session failed\n")
    assert "builtins.RuntimeError (message not logged)" in text
    assert "builtins.ValueError (message not logged)" in text and "test_errors.py" in text
    assert "Zebulon" not in text and "987654" not in text
