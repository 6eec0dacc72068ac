"""Exceptions raised by the computation core.

Each carries a sentence a person can act on; the runtime maps them to gRPC
status codes (``parties/``), the CLI prints them as one line.
"""

from __future__ import annotations


class SmpcError(Exception):
    """Base class of every error the toolkit raises on purpose."""


class InputError(SmpcError, ValueError):
    """A request or a local input is malformed, out of range or inconsistent."""


class ProtocolError(SmpcError):
    """A peer sent something the protocol does not allow (wrong shape, tag, order).

    ``peer`` names the node whose message broke the rules, when the receiver knows it, so
    that the failure is blamed on the sender rather than on the node that noticed it.
    """

    def __init__(self, message: str, peer: str | None = None) -> None:
        super().__init__(message)
        self.peer = peer


class PeerFailure(SmpcError):
    """A named peer failed, vanished or did not answer in time.

    ``peer`` names the node, so that the analyst's error says who failed;
    ``deadline`` is True when the peer's failure is that the session deadline
    passed (it did not send in time).
    """

    def __init__(self, peer: str, message: str, *, deadline: bool = False) -> None:
        super().__init__(message)
        self.peer = peer
        self.deadline = deadline
