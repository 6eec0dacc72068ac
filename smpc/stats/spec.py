"""The public description of a joint statistic (:class:`StatSpec`) and its outcome.

Guarantees: a :class:`StatSpec` that exists is usable -- every field is checked at construction
and anything malformed is one clear :class:`~smpc.errors.InputError` sentence -- and is the same
at every party (it is public and validated by each).  Reveals nothing: specs are public;
:class:`StatResult` holds what the recipient computed from the released sums.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from smpc.dp import DPRequest, NoisePlan
from smpc.dp import plan as plan_noise
from smpc.encoding import DEFAULT_FRAC_BITS, FixedPoint
from smpc.errors import InputError
from smpc.names import Backend, Statistic, parse

__all__ = [
    "DEFAULT_QUANTILE_RESOLUTION",
    "MAX_BINS",
    "MAX_COLUMNS",
    "MISSING_POLICIES",
    "STATISTICS",
    "StatResult",
    "StatSpec",
]

STATISTICS: tuple[str, ...] = tuple(s.value for s in Statistic)
"""The statistics' names, in order (an alias of :class:`~smpc.names.Statistic`'s values)."""
DEFAULT_QUANTILE_RESOLUTION = 1024
MAX_BINS = 1 << 16
MAX_COLUMNS = 256
MISSING_POLICIES: tuple[str, ...] = ("skip", "error")
"""``missing="skip"`` (the default of the CLI, the API and the demo): like pandas' ``skipna``,
per-column statistics leave out each column's missing values separately; ``cov``, ``corr`` and
``linreg`` use the rows complete in every requested column (pandas ``dropna``, statsmodels
``missing='drop'``).  ``"error"``: a missing value in a requested column is refused (exact mode;
see :mod:`smpc.stats`).  A spec without the field means ``"error"``: today's layout and noise
plan, so a request signed by an older client keeps its meaning."""


@dataclass(frozen=True)
class StatSpec:
    """A public description of one joint statistic; every party validates it.

    ``columns`` are the value columns (for ``linreg``: the features, with the
    response in ``target``).  ``edges`` are the public histogram bin edges;
    ``bounds`` and ``resolution`` define the fine histogram behind
    ``quantiles`` (``probabilities`` in [0, 1]).  ``statistic`` and ``backend`` may be
    given as strings; they are normalised to :class:`~smpc.names.Statistic` and
    :class:`~smpc.names.Backend` (:meth:`to_json` writes the strings).
    ``missing`` (:data:`MISSING_POLICIES`) says what a missing value (NaN) in a requested column
    does: ``"skip"`` leaves it out and counts it, ``"error"`` refuses it; it is part of the
    public spec, so of what the analyst signs.
    """

    statistic: Statistic
    columns: tuple[str, ...]
    backend: Backend = Backend.SS
    target: str | None = None
    edges: tuple[float, ...] | None = None
    probabilities: tuple[float, ...] = ()
    bounds: tuple[float, float] | None = None
    resolution: int = DEFAULT_QUANTILE_RESOLUTION
    ddof: int = 1
    frac_bits: int = DEFAULT_FRAC_BITS
    moment_frac_bits: int | None = None
    ckks_preset: str = "aggregate"
    dp: DPRequest | None = None
    missing: str = "error"

    def __post_init__(self) -> None:
        try:
            self._normalise()
        except InputError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise InputError(f"malformed statistic spec: {exc}") from None
        self.validate()

    def _normalise(self) -> None:
        if isinstance(self.columns, str) or not all(isinstance(c, str) for c in self.columns):
            raise InputError("columns must be a list of column names")
        object.__setattr__(self, "columns", tuple(self.columns))
        if self.target is not None and not isinstance(self.target, str):
            raise InputError("the target must be a column name")
        for name in ("resolution", "ddof", "frac_bits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(f"{name} must be a whole number, got {value!r}")
        if isinstance(self.dp, dict):
            object.__setattr__(self, "dp", DPRequest.from_json(self.dp))
        elif self.dp is not None and not isinstance(self.dp, DPRequest):
            raise InputError("dp must be a differential-privacy request (JSON object)")
        if self.edges is not None:
            object.__setattr__(self, "edges", tuple(float(e) for e in self.edges))
        if self.bounds is not None:
            bounds = tuple(float(b) for b in self.bounds)
            if len(bounds) != 2:
                raise InputError("quantile bounds are two numbers: (lo, hi)")
            object.__setattr__(self, "bounds", bounds)
        object.__setattr__(self, "probabilities", tuple(float(p) for p in self.probabilities))
        statistic = parse(Statistic, self.statistic)
        if statistic is None:
            raise InputError(
                f"unknown statistic {self.statistic!r}; choose one of {', '.join(STATISTICS)}"
            )
        object.__setattr__(self, "statistic", statistic)
        backend = parse(Backend, self.backend)
        if backend is None:
            raise InputError(f"unknown backend {self.backend!r}; choose 'ss' or 'ckks'")
        object.__setattr__(self, "backend", backend)

    def validate(self) -> None:
        """Raise :class:`InputError` with one clear sentence if the spec is unusable."""
        if not self.columns:
            raise InputError(f"{self.statistic} needs at least one column")
        if len(self.columns) > MAX_COLUMNS:
            raise InputError(f"at most {MAX_COLUMNS} columns per computation")
        if len(set(self.value_columns)) != len(self.value_columns):
            raise InputError("a column is named twice")
        if self.statistic == Statistic.LINREG and not self.target:
            raise InputError("linreg needs a target column (the response)")
        if self.statistic != Statistic.LINREG and self.target:
            raise InputError("only linreg takes a target column")
        if self.statistic in (Statistic.COV, Statistic.CORR) and len(self.columns) < 2:
            raise InputError(f"{self.statistic} needs at least two columns")
        if self.statistic == Statistic.HISTOGRAM:
            edges = self.edges
            if edges is None or len(edges) < 2:
                raise InputError("histogram needs at least two public bin edges")
            if len(edges) - 1 > MAX_BINS:
                raise InputError(f"histogram has {len(edges) - 1} bins; at most {MAX_BINS}")
            if not all(math.isfinite(e) for e in edges) or any(
                b <= a for a, b in itertools.pairwise(edges)
            ):
                raise InputError("histogram edges must be finite and strictly increasing")
        if self.statistic == Statistic.QUANTILES:
            if not self.probabilities:
                raise InputError("quantiles needs at least one probability")
            if any(not 0.0 <= p <= 1.0 for p in self.probabilities):
                raise InputError("quantile probabilities must lie between 0 and 1")
            if self.bounds is None:
                raise InputError(
                    "quantiles needs public bounds (lo, hi): the fine histogram is built over them"
                )
            lo, hi = self.bounds
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise InputError("quantile bounds must be finite with lo < hi")
            if not 2 <= self.resolution <= MAX_BINS:
                raise InputError(f"quantile resolution must be between 2 and {MAX_BINS} bins")
        if self.missing not in MISSING_POLICIES:
            raise InputError(f"missing must be one of {', '.join(MISSING_POLICIES)}")
        if self.ddof not in (0, 1):
            raise InputError("ddof must be 0 (population) or 1 (sample)")
        FixedPoint(self.frac_bits)  # validates the bit count
        FixedPoint(self.moment_codec.frac_bits)

    @property
    def value_columns(self) -> tuple[str, ...]:
        """All columns a party must read, in order (features then target)."""
        return self.columns + ((self.target,) if self.target else ())

    @property
    def skips_missing(self) -> bool:
        """Whether missing values are left out and counted (``missing="skip"``)."""
        return self.missing == "skip"

    @property
    def complete_rows(self) -> bool:
        """Whether the statistic uses only rows complete in every requested column
        (``cov``, ``corr``, ``linreg``; pandas ``dropna``) rather than each column's own
        present values (every other statistic; pandas ``skipna``)."""
        return self.statistic in (Statistic.COV, Statistic.CORR, Statistic.LINREG)

    @property
    def passes(self) -> int:
        return 2 if self.statistic.two_pass else 1

    @property
    def codec(self) -> FixedPoint:
        """Codec of pass 1 (counts and column sums)."""
        return FixedPoint(self.frac_bits)

    @property
    def moment_codec(self) -> FixedPoint:
        """Codec of pass 2 (normalised centred moments): ``frac_bits + 8`` unless set.

        The moments are of the order of the variances, not of the values, so
        they can trade range for precision.
        """
        bits = self.moment_frac_bits
        return FixedPoint(min(self.frac_bits + 8, 30) if bits is None else bits)

    def noise_plan(self, parties: int) -> NoisePlan | None:
        """The differential-privacy noise plan for ``parties`` parties (None without DP)."""
        return None if self.dp is None else plan_noise(self, self.dp, parties)

    def to_json(self) -> dict[str, Any]:
        """The spec as JSON: plain strings for the names, the DP request as its own JSON."""
        doc = asdict(self)
        doc["statistic"] = str(self.statistic)
        doc["backend"] = str(self.backend)
        doc["dp"] = None if self.dp is None else self.dp.to_json()
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> StatSpec:
        if not isinstance(doc, dict):
            raise InputError("a statistic spec is a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = set(doc) - known
        if unknown:
            raise InputError(f"unknown spec field(s): {', '.join(sorted(unknown))}")
        try:
            return cls(**doc)
        except InputError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise InputError(f"malformed statistic spec: {exc}") from None


@dataclass
class StatResult:
    """The outcome of a joint statistic, as the recipient sees it.

    ``n`` is an ``int`` for every statistic: the number of rows used (the rows complete in
    every column for ``cov`` / ``corr`` / ``linreg``; for the other statistics the values each
    column used when they are as many, else the rows selected, with each column's own count
    in ``details["n"]``).  Under DP it is the noisy count rounded (post-processing, free).
    With ``missing="skip"`` ``details["missing"]`` maps each column to its number of missing
    values (noisy under DP).  ``quantiles`` and ``histogram`` report ``details["below"]`` /
    ``["above"]``, the values outside the bounds / edges; a quantile that lies outside the
    bounds is reported as the bound, flagged in ``details["clamped"]`` (``-1`` below, ``+1``
    above) and explained in ``details["warnings"]``.
    """

    statistic: str
    columns: list[str]
    value: Any
    n: int
    backend: str
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Plain strings, whether built by finish() (enum members) or from JSON.
        if isinstance(self.statistic, Statistic):
            self.statistic = self.statistic.value
        if isinstance(self.backend, Backend):
            self.backend = self.backend.value

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
