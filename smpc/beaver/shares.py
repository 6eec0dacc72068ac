"""One party's shares of the dealt randomness, each usable once.

Guarantees: a :class:`TripleShare` or :class:`TruncPairShare` refuses a second use (reusing a
triple reveals ``x - x'``, reusing truncation masks reveals ``z - z'``).  Reveals nothing: the
shares are uniform to every coalition of at most ``n - 1`` parties that excludes the dealer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from smpc.beaver.requests import TripleKind, TripleRequest, TruncRequest
from smpc.errors import InputError

__all__ = ["Share", "TripleShare", "TruncPairShare"]


@dataclass
class TripleShare:
    """One party's share of a triple.  Single use: see :func:`mul`."""

    request: TripleRequest
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    used: bool = False

    def _consume(self, kind: TripleKind) -> None:
        if self.request.kind != kind:
            raise InputError(f"a {self.request.kind!r} triple cannot be used for {kind!r}")
        if self.used:
            raise InputError("this triple was already used; reusing one reveals x - x'")
        self.used = True


@dataclass
class TruncPairShare:
    """One party's shares of ``count + spares`` truncation pairs ``(r, r >> f)``.

    Single use.  After use, ``rounds`` is the number of openings made and
    ``rejected`` the number of rejected openings redone with spares (both
    public: they are the same at every party and independent of the data).
    """

    request: TruncRequest
    r: np.ndarray
    r_trunc: np.ndarray
    used: bool = False
    rounds: int = 0
    rejected: int = 0
    rejected_per_round: list[int] = field(default_factory=list)

    def _consume(self, count: int) -> None:
        if count != self.request.count:
            raise InputError(
                f"truncation pairs were dealt for {self.request.count} elements, "
                f"the product has {count}"
            )
        if self.used:
            raise InputError("these truncation pairs were already used; reusing r leaks z - z'")
        self.used = True


Share = TripleShare | TruncPairShare
