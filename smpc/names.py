"""The names the core and the runtime share, defined once: backends, statistics, model kinds.

Each is a ``str`` enum (``class X(str, enum.Enum)``, Python 3.10 compatible), so a member *is*
its string: it compares equal to it, hashes like it, formats as it (``f"{Backend.SS}"`` is
``"ss"``) and ``json.dumps`` writes it as a plain string.  Specs normalise their fields to these
members (:class:`smpc.stats.StatSpec`, :class:`smpc.linear.InferenceSpec`); their ``to_json()``
emits the plain strings, so the wire contract is unchanged.

Guarantees: :func:`parse` accepts exactly the members' values (or the members) and nothing else.
Reveals nothing: these are public names.
"""

from __future__ import annotations

import enum
from typing import TypeVar

__all__ = [
    "BIN_COUNT_STATISTICS",
    "TWO_PASS_STATISTICS",
    "Backend",
    "InferenceOutput",
    "ModelKind",
    "Statistic",
    "parse",
]


class _Name(str, enum.Enum):
    """A public name: a member is equal to, hashes like and prints as its string value."""

    def __str__(self) -> str:
        return str(self.value)


class Backend(_Name):
    """How a computation is protected."""

    SS = "ss"
    """Additive secret sharing over Z_2^64 (with a dealer for products)."""
    CKKS = "ckks"
    """TenSEAL CKKS under the recipient's (key holder's) public key."""


class Statistic(_Name):
    """The joint statistics of :mod:`smpc.stats`, in the order they are listed to users."""

    COUNT = "count"
    SUM = "sum"
    MEAN = "mean"
    VAR = "var"
    STD = "std"
    COV = "cov"
    CORR = "corr"
    HISTOGRAM = "histogram"
    QUANTILES = "quantiles"
    LINREG = "linreg"

    @property
    def two_pass(self) -> bool:
        """A second pass of centred moments follows the count and sums (var ... linreg)."""
        return self in TWO_PASS_STATISTICS

    @property
    def bin_counts(self) -> bool:
        """Released as a row count and bin counts over public bins (histogram, quantiles)."""
        return self in BIN_COUNT_STATISTICS


TWO_PASS_STATISTICS: frozenset[Statistic] = frozenset(
    {Statistic.VAR, Statistic.STD, Statistic.COV, Statistic.CORR, Statistic.LINREG}
)
"""The statistics with a second pass (centred moments around the pass-1 mean)."""

BIN_COUNT_STATISTICS: frozenset[Statistic] = frozenset(
    {Statistic.HISTOGRAM, Statistic.QUANTILES}
)
"""The count-type statistics: everything they release is a count (exact, integral)."""


class ModelKind(_Name):
    """The models of :mod:`smpc.linear`."""

    LINEAR = "linear"
    LOGISTIC = "logistic"


class InferenceOutput(_Name):
    """What the data owner asks an inference for."""

    PREDICTION = "prediction"
    """The model's prediction: ``X w + b``, or its sigmoid for a logistic model."""
    LOGIT = "logit"
    """``X w + b`` (a logistic model's logits)."""
    ENCRYPTED_SIGMOID = "encrypted-sigmoid"
    """The degree-3 sigmoid evaluated under CKKS by the model owner."""


N = TypeVar("N", bound=_Name)


def parse(kind: type[N], value: object) -> N | None:
    """The member of ``kind`` that ``value`` names, or None if it names none.

    Only a ``str`` (or a member) can name a member: ``1``, ``None`` or a list never do, even
    where the enum's machinery would look them up.
    """
    if not isinstance(value, str):
        return None
    try:
        return kind(value)
    except ValueError:
        return None
