"""Who takes part in a Beaver protocol: the ordered parties, and this node's place among them.

Guarantees: :func:`check_parties` refuses fewer than two parties or a name given twice;
:func:`index_of` refuses a node that is not one of the parties.  Reveals nothing (names and
order are public).
"""

from __future__ import annotations

from collections.abc import Sequence

from smpc.errors import InputError
from smpc.transport import Transport

__all__ = ["check_parties", "index_of"]


def check_parties(parties: Sequence[str]) -> None:
    """Raise :class:`InputError` unless ``parties`` are at least two distinct names."""
    if len(parties) < 2:
        raise InputError("Beaver products need at least two parties")
    if len(set(parties)) != len(parties):
        raise InputError(f"party names must be distinct: {list(parties)}")


def index_of(t: Transport, parties: Sequence[str]) -> int:
    """This node's index among ``parties`` (party 0 adds public constants)."""
    if t.me not in parties:
        raise InputError(f"{t.me!r} is not one of the parties {list(parties)}")
    return list(parties).index(t.me)
