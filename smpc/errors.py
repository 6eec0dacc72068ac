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
    """A peer sent something the protocol does not allow (wrong shape, tag, order)."""


class PeerFailure(SmpcError):
    """A named peer failed, vanished or did not answer in time.

    ``peer`` names the node, so that the analyst's error says who failed.
    """

    def __init__(self, peer: str, message: str) -> None:
        super().__init__(message)
        self.peer = peer
