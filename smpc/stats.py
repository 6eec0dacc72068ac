"""Joint statistics over horizontally partitioned rows, on either backend.

Every statistic is computed from *sums of local aggregates*, so no
multiplication of private values is needed: each party aggregates its own
rows, the aggregates are summed securely (:mod:`smpc.aggregate`), and the
recipient finishes the statistic in the clear from the summed aggregates.

Passes
------
1. every statistic: ``[n, sum(x_1) .. sum(x_k)]`` -- or, for ``histogram`` /
   ``quantiles``, the bin counts;
2. ``var``, ``std``, ``cov``, ``corr``, ``linreg`` only: with the pass-1 mean
   ``s`` (rounded to the fixed-point grid) and total count ``N`` made public to
   the parties as a *shift*, each party contributes the centred moments
   ``sum (x - s)`` and ``sum (x - s)(x - s)^T`` -- divided by ``N`` on ``ss``
   to stay within the ring's range (:func:`moment_divisor`).  Any shift
   gives the exact result (the formula corrects for ``s`` differing from the
   mean), and a shift near the mean keeps the numbers small: this is the
   numerically stable two-pass form, not raw ``sum x^2`` on large values.

What is revealed
----------------
* to the recipient: the summed aggregates of each pass (count, column sums,
  centred second moments / bin counts), from which it computes the result;
* to the parties (pass 2 only): the rounded mean and the total count, used
  as the shift;
* nothing about any single party's aggregate or rows (see
  :mod:`smpc.aggregate` for the backend assumptions).

Precision and range (``ss``, ``P`` parties).  Pass 1 encodes counts and
column sums with ``f`` fractional bits (16 by default): each sum is exact to
``P * 2^-(f+1)`` and must stay below ``2^(63-f) / P`` (4.7e13 for f=16, P=3).
Pass 2 encodes the normalised moments with ``f + 8`` fractional bits
(``moment_frac_bits``; 24 by default): each variance / covariance is exact to
``P * 2^-25`` (9e-8 for P=3) and must stay below ``2^39 / P`` (1.8e11, i.e. a
standard deviation up to about 4e5).  Beyond either bound the party refuses
with an :class:`~smpc.encoding.EncodingRangeError` naming the value; lower the
fractional bits to widen the range.  Histogram and quantile counts
are exact on ``ss``.

Precision (``ckks``): the key holder's release (:meth:`smpc.ckks.KeyHolder.release`)
adds Gaussian flooding noise of std ``sigma = 2^16 E`` (``E`` the preset's
error bound; ``sigma = 2^-7 ~ 0.0078`` for the ``aggregate`` preset) to every
summed aggregate and rounds it to a grid of ``2^-7``.  So a sum is within
about ``6 sigma`` (0.05), a mean within ``0.05 / N``, a variance or covariance
within about ``0.1 / (N - 1)``; counts are rounded to whole numbers (exact).

Quantiles are read off a fine histogram over public bounds ``[lo, hi]``
with ``resolution`` bins: the reported value lies in the bin that contains the
inverted-CDF quantile (numpy ``method="inverted_cdf"``), so it is within one
bin width ``(hi - lo) / resolution`` of it.  Values outside the bounds are
clipped into the end bins (the bounds are public clipping bounds).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from smpc import aggregate, dp
from smpc.encoding import DEFAULT_FRAC_BITS, FixedPoint
from smpc.errors import InputError
from smpc.transport import Transport, pack_json, unpack_json

STATISTICS = ("count", "sum", "mean", "var", "std", "cov", "corr", "histogram", "quantiles",
              "linreg")
TWO_PASS = frozenset({"var", "std", "cov", "corr", "linreg"})
BACKENDS = ("ss", "ckks")
DEFAULT_QUANTILE_RESOLUTION = 1024
MAX_BINS = 1 << 16
MAX_COLUMNS = 256


@dataclass(frozen=True)
class StatSpec:
    """A public description of one joint statistic; every party validates it.

    ``columns`` are the value columns (for ``linreg``: the features, with the
    response in ``target``).  ``edges`` are the public histogram bin edges;
    ``bounds`` and ``resolution`` define the fine histogram behind
    ``quantiles`` (``probabilities`` in [0, 1]).
    """

    statistic: str
    columns: tuple[str, ...]
    backend: str = "ss"
    target: str | None = None
    edges: tuple[float, ...] | None = None
    probabilities: tuple[float, ...] = ()
    bounds: tuple[float, float] | None = None
    resolution: int = DEFAULT_QUANTILE_RESOLUTION
    ddof: int = 1
    frac_bits: int = DEFAULT_FRAC_BITS
    moment_frac_bits: int | None = None
    ckks_preset: str = "aggregate"
    dp: dp.DPRequest | None = None

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
            object.__setattr__(self, "dp", dp.DPRequest.from_json(self.dp))
        elif self.dp is not None and not isinstance(self.dp, dp.DPRequest):
            raise InputError("dp must be a differential-privacy request (JSON object)")
        if self.edges is not None:
            object.__setattr__(self, "edges", tuple(float(e) for e in self.edges))
        if self.bounds is not None:
            bounds = tuple(float(b) for b in self.bounds)
            if len(bounds) != 2:
                raise InputError("quantile bounds are two numbers: (lo, hi)")
            object.__setattr__(self, "bounds", bounds)
        object.__setattr__(self, "probabilities", tuple(float(p) for p in self.probabilities))

    def validate(self) -> None:
        """Raise :class:`InputError` with one clear sentence if the spec is unusable."""
        if self.statistic not in STATISTICS:
            raise InputError(
                f"unknown statistic {self.statistic!r}; choose one of {', '.join(STATISTICS)}"
            )
        if self.backend not in BACKENDS:
            raise InputError(f"unknown backend {self.backend!r}; choose 'ss' or 'ckks'")
        if not self.columns:
            raise InputError(f"{self.statistic} needs at least one column")
        if len(self.columns) > MAX_COLUMNS:
            raise InputError(f"at most {MAX_COLUMNS} columns per computation")
        if len(set(self.value_columns)) != len(self.value_columns):
            raise InputError("a column is named twice")
        if self.statistic == "linreg" and not self.target:
            raise InputError("linreg needs a target column (the response)")
        if self.statistic != "linreg" and self.target:
            raise InputError("only linreg takes a target column")
        if self.statistic in ("cov", "corr") and len(self.columns) < 2:
            raise InputError(f"{self.statistic} needs at least two columns")
        if self.statistic == "histogram":
            edges = self.edges
            if edges is None or len(edges) < 2:
                raise InputError("histogram needs at least two public bin edges")
            if len(edges) - 1 > MAX_BINS:
                raise InputError(f"histogram has {len(edges) - 1} bins; at most {MAX_BINS}")
            if not all(math.isfinite(e) for e in edges) or any(
                b <= a for a, b in itertools.pairwise(edges)
            ):
                raise InputError("histogram edges must be finite and strictly increasing")
        if self.statistic == "quantiles":
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
        if self.ddof not in (0, 1):
            raise InputError("ddof must be 0 (population) or 1 (sample)")
        FixedPoint(self.frac_bits)  # validates the bit count
        FixedPoint(self.moment_codec.frac_bits)

    @property
    def value_columns(self) -> tuple[str, ...]:
        """All columns a party must read, in order (features then target)."""
        return self.columns + ((self.target,) if self.target else ())

    @property
    def passes(self) -> int:
        return 2 if self.statistic in TWO_PASS else 1

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

    def noise_plan(self, parties: int) -> dp.NoisePlan | None:
        """The differential-privacy noise plan for ``parties`` parties (None without DP)."""
        return None if self.dp is None else dp.plan(self, self.dp, parties)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
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
    """The outcome of a joint statistic, as the recipient sees it."""

    statistic: str
    columns: list[str]
    value: Any
    n: float
    backend: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------
# Local aggregates (pure numpy, run by each party on its own rows)
# ---------------------------------------------------------------------------

def _check_rows(spec: StatSpec, rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim == 1:
        rows = rows[:, None]
    if rows.ndim != 2 or rows.shape[1] != len(spec.value_columns):
        raise InputError(
            f"expected a table with {len(spec.value_columns)} column(s) "
            f"({', '.join(spec.value_columns)}), got shape {rows.shape}"
        )
    if not np.isfinite(rows).all():
        raise InputError("the data contain NaN or infinite values in the requested columns")
    return rows


def _fine_edges(spec: StatSpec) -> np.ndarray:
    assert spec.bounds is not None
    return np.linspace(spec.bounds[0], spec.bounds[1], spec.resolution + 1)


def local_pass1(spec: StatSpec, rows: np.ndarray) -> np.ndarray:
    """Pass-1 aggregate of one party's rows (what it contributes to the secure sum)."""
    rows = _check_rows(spec, rows)
    if spec.statistic == "histogram":
        edges = np.asarray(spec.edges)
        out = []
        for j in range(rows.shape[1]):
            col = rows[:, j]
            counts, _ = np.histogram(col, bins=edges)
            out.append(np.concatenate([counts, [np.sum(col < edges[0]), np.sum(col > edges[-1])]]))
        return np.concatenate([[rows.shape[0]], *out]).astype(np.float64)
    if spec.statistic == "quantiles":
        edges = _fine_edges(spec)
        clipped = np.clip(rows, edges[0], edges[-1])
        out = [np.histogram(clipped[:, j], bins=edges)[0] for j in range(rows.shape[1])]
        return np.concatenate([[rows.shape[0]], *out]).astype(np.float64)
    if spec.statistic == "count":
        return np.array([float(rows.shape[0])])
    return np.concatenate([[rows.shape[0]], rows.sum(axis=0)])


def pass1_length(spec: StatSpec) -> int:
    k = len(spec.value_columns)
    if spec.statistic == "count":
        return 1
    if spec.statistic == "histogram":
        assert spec.edges is not None
        return 1 + k * (len(spec.edges) + 1)
    if spec.statistic == "quantiles":
        return 1 + k * spec.resolution
    return 1 + k


def moment_divisor(spec: StatSpec, total: float) -> float:
    """What pass-2 sums are divided by before they are shared.

    ``ss`` divides by the pooled count ``N`` so that the moments stay within
    the ring's range; ``ckks`` has range to spare but adds absolute release
    noise, so it sends the plain centred sums (the noise is then relative to
    ``N * var``, not to ``var``).
    """
    return total if spec.backend == "ss" else 1.0


def local_pass2(spec: StatSpec, rows: np.ndarray, shift: np.ndarray, total: float) -> np.ndarray:
    """Pass-2 aggregate: centred first and second moments, divided by :func:`moment_divisor`.

    Returns ``[sum(x - s) / D  (k values), upper triangle of sum (x-s)(x-s)^T / D]``.
    """
    rows = _check_rows(spec, rows)
    divisor = moment_divisor(spec, total)
    centred = rows - shift[None, :]
    first = centred.sum(axis=0) / divisor
    second = (centred.T @ centred) / divisor
    iu = np.triu_indices(rows.shape[1])
    return np.concatenate([first, second[iu]])


def pass2_length(spec: StatSpec) -> int:
    k = len(spec.value_columns)
    return k + k * (k + 1) // 2


# ---------------------------------------------------------------------------
# Finishing a statistic from the summed aggregates (the recipient, in the clear)
# ---------------------------------------------------------------------------

def shift_from_pass1(spec: StatSpec, summed: np.ndarray) -> tuple[np.ndarray, float]:
    """The public shift (rounded mean) and total count for pass 2."""
    n = float(summed[0])
    if n < 1:
        raise InputError("no rows matched: the cohort is empty")
    if n - spec.ddof <= 0 and spec.statistic in TWO_PASS:
        raise InputError(f"{spec.statistic} needs more than {spec.ddof} row(s) in total")
    mean = summed[1:] / n
    grid = spec.codec.resolution
    return np.round(mean / grid) * grid, n


def _moments(spec: StatSpec, summed2: np.ndarray, n: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean offset d and covariance matrix from the pass-2 sums (shift already applied)."""
    k = len(spec.value_columns)
    per_row = moment_divisor(spec, n) / n
    d = summed2[:k] * per_row
    second = np.zeros((k, k))
    iu = np.triu_indices(k)
    second[iu] = summed2[k:] * per_row
    second = second + np.triu(second, 1).T
    population = second - np.outer(d, d)
    cov = population * (n / (n - spec.ddof))
    return d, cov


def finish(
    spec: StatSpec, summed1: np.ndarray, summed2: np.ndarray | None, shift: np.ndarray | None,
    *, dp_applied: bool = False,
) -> StatResult:
    """Compute the statistic from the summed aggregates."""
    cols = list(spec.columns)
    n = float(summed1[0])
    if spec.statistic == "count":
        return StatResult("count", cols, round(n), round(n), spec.backend)
    if n < 1:
        raise InputError("no rows matched: the cohort is empty")
    k = len(spec.value_columns)
    if spec.statistic == "sum":
        return StatResult("sum", cols, summed1[1:].tolist(), n, spec.backend)
    if spec.statistic == "mean":
        return StatResult("mean", cols, (summed1[1:] / n).tolist(), n, spec.backend)
    if spec.statistic == "histogram":
        assert spec.edges is not None
        width = len(spec.edges) + 1
        blocks = np.rint(summed1[1:]).reshape(k, width).astype(np.int64)
        value = [b[:-2].tolist() for b in blocks]
        details = {
            "edges": list(spec.edges),
            "below": [int(b[-2]) for b in blocks],
            "above": [int(b[-1]) for b in blocks],
        }
        return StatResult("histogram", cols, value, n, spec.backend, details)
    if spec.statistic == "quantiles":
        counts = np.clip(np.rint(summed1[1:]).reshape(k, spec.resolution), 0, None)
        edges = _fine_edges(spec)
        value = [quantiles_from_histogram(c, edges, spec.probabilities).tolist() for c in counts]
        details = {
            "probabilities": list(spec.probabilities),
            "bounds": list(spec.bounds or ()),
            "resolution": (edges[-1] - edges[0]) / spec.resolution,
        }
        return StatResult("quantiles", cols, value, n, spec.backend, details)
    assert summed2 is not None and shift is not None
    d, cov = _moments(spec, summed2, n)
    if dp_applied:
        cov = dp.postprocess_covariance(cov)  # post-processing: costs no privacy
    mean = shift + d
    if spec.statistic == "var":
        return StatResult("var", cols, np.diag(cov).tolist(), n, spec.backend,
                          {"mean": mean.tolist()})
    if spec.statistic == "std":
        return StatResult("std", cols, np.sqrt(np.clip(np.diag(cov), 0, None)).tolist(), n,
                          spec.backend, {"mean": mean.tolist()})
    if spec.statistic == "cov":
        return StatResult("cov", cols, cov.tolist(), n, spec.backend, {"mean": mean.tolist()})
    if spec.statistic == "corr":
        return StatResult("corr", cols, correlation_from_cov(cov).tolist(), n, spec.backend,
                          {"mean": mean.tolist()})
    return _linreg(spec, cov, mean, n)


def correlation_from_cov(cov: np.ndarray) -> np.ndarray:
    """Pearson correlation matrix; a constant column gives NaN in its row and column."""
    sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = cov / np.outer(sd, sd)
    corr = np.where(np.outer(sd, sd) > 0, np.clip(corr, -1.0, 1.0), np.nan)
    np.fill_diagonal(corr, np.where(sd > 0, 1.0, np.nan))
    return corr


def _linreg(spec: StatSpec, cov: np.ndarray, mean: np.ndarray, n: float) -> StatResult:
    kx = len(spec.columns)
    sxx, sxy, syy = cov[:kx, :kx], cov[:kx, kx], cov[kx, kx]
    if np.linalg.matrix_rank(sxx) < kx:
        raise InputError(
            "the features are collinear or constant in the pooled data: "
            "the least-squares fit is not unique"
        )
    beta = np.linalg.solve(sxx, sxy)
    intercept = float(mean[kx] - mean[:kx] @ beta)
    residual = float(syy - sxy @ beta)
    r2 = float(1.0 - residual / syy) if syy > 0 else float("nan")
    return StatResult(
        "linreg", list(spec.columns), {"coefficients": beta.tolist(), "intercept": intercept},
        n, spec.backend, {"target": spec.target, "r2": r2},
    )


def quantiles_from_histogram(
    counts: np.ndarray, edges: np.ndarray, probabilities: Sequence[float]
) -> np.ndarray:
    """Quantiles read off a histogram, interpolating linearly inside the bin.

    For each ``p`` the result lies in the first bin whose cumulative count
    reaches ``p * N`` -- the bin that contains the inverted-CDF quantile -- so
    it is within one bin width of that quantile.
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        raise InputError("no rows matched: the cohort is empty")
    cum = np.cumsum(counts)
    out = np.empty(len(probabilities))
    for i, p in enumerate(probabilities):
        # inverted CDF: the k-th smallest value with k = ceil(p N), at least 1
        target = max(math.ceil(p * total - 1e-9), 1)
        b = int(np.searchsorted(cum, target, side="left"))
        b = min(b, len(counts) - 1)
        before = cum[b - 1] if b > 0 else 0.0
        inside = counts[b]
        frac = 0.0 if inside <= 0 else min(max((target - before) / inside, 0.0), 1.0)
        out[i] = edges[b] + frac * (edges[b + 1] - edges[b])
    return out


# ---------------------------------------------------------------------------
# Protocol roles
# ---------------------------------------------------------------------------

def run_party(
    t: Transport,
    spec: StatSpec,
    rows: np.ndarray,
    *,
    parties: Sequence[str],
    recipient: str,
    tag: str,
    public_context: object = None,
) -> None:
    """One data party's role in a joint statistic.

    ``recipient`` is the node that learns the summed aggregates: on ``ss`` the
    node that reconstructs (normally the coordinator); on ``ckks`` the
    aggregator, which forwards the encrypted sum to the key holder.
    ``public_context`` is the key holder's public TenSEAL context (``ckks``).

    With ``spec.dp`` the party clips its rows to the public bounds and adds
    its share of distributed discrete Gaussian noise to each contribution
    before it is encoded or encrypted (:mod:`smpc.dp`), so no node ever sees
    the exact aggregate.
    """
    rows = _check_rows(spec, rows)
    plan = spec.noise_plan(len(parties))
    if plan is not None and plan.bounds is not None:
        rows = dp.clip_rows(rows, plan.bounds)
    values = local_pass1(spec, rows)
    noise = None if plan is None else dp.party_noise(plan, 1, values.size, spec.backend)
    _contribute(t, spec, values, noise, plan, 1, parties, recipient, f"{tag}/p1",
                public_context, spec.codec)
    if spec.passes == 2:
        doc = unpack_json(t.recv(recipient, f"{tag}/shift"))
        shift = np.asarray(doc["shift"], dtype=np.float64)
        total = float(doc["n"])
        if shift.shape != (len(spec.value_columns),) or not total >= 1:
            raise InputError(f"{recipient} sent a malformed shift for {tag!r}")
        values = local_pass2(spec, rows, shift, total)
        noise = None if plan is None else dp.party_noise(
            plan, 2, values.size, spec.backend, divisor=moment_divisor(spec, total), shift=shift)
        _contribute(t, spec, values, noise, plan, 2, parties, recipient, f"{tag}/p2",
                    public_context, spec.moment_codec)


def _contribute(
    t: Transport, spec: StatSpec, values: np.ndarray, noise: np.ndarray | None,
    plan: dp.NoisePlan | None, pass_index: int, parties: Sequence[str], recipient: str,
    tag: str, public_context: object, codec: FixedPoint,
) -> None:
    if spec.backend == "ss":
        aggregate.ss_contribute(t, parties=parties, recipient=recipient, values=values,
                                codec=codec, tag=tag, noise_ulps=noise)
    else:
        if plan is not None and noise is not None:
            values = dp.noisy_ckks_values(plan, values, noise, pass_index)
        aggregate.ckks_contribute(t, aggregator=recipient, public_context=public_context,
                                  values=values, tag=tag)


def _public_shift(spec: StatSpec, plan: dp.NoisePlan | None, summed1: np.ndarray
                  ) -> tuple[np.ndarray, float]:
    shift, n = shift_from_pass1(spec, summed1)
    if plan is not None:
        grid = spec.codec.resolution
        shift = np.round(dp.postprocess_shift(plan, shift) / grid) * grid
    return shift, n


def run_recipient_ss(
    t: Transport, spec: StatSpec, *, parties: Sequence[str], tag: str
) -> StatResult:
    """The ``ss`` recipient (coordinator): reconstructs each pass's sum and finishes."""
    plan = spec.noise_plan(len(parties))
    summed1 = aggregate.ss_collect(t, parties=parties, shape=(pass1_length(spec),),
                                   codec=spec.codec, tag=f"{tag}/p1")
    if plan is not None:
        summed1 = dp.postprocess_pass1(plan, summed1, spec.ddof)
    if spec.passes == 1:
        return _with_privacy(finish(spec, summed1, None, None), plan)
    shift, n = _public_shift(spec, plan, summed1)
    t.broadcast(parties, f"{tag}/shift", pack_json({"shift": shift.tolist(), "n": n}))
    summed2 = aggregate.ss_collect(t, parties=parties, shape=(pass2_length(spec),),
                                   codec=spec.moment_codec, tag=f"{tag}/p2")
    return _with_privacy(finish(spec, summed1, summed2, shift, dp_applied=plan is not None),
                         plan)


def _with_privacy(result: StatResult, plan: dp.NoisePlan | None) -> StatResult:
    if plan is not None:
        result.details["privacy"] = plan.to_json()
    return result


def run_aggregator_ckks(
    t: Transport, spec: StatSpec, *, parties: Sequence[str], keyholder: str, tag: str,
    public_context: object,
) -> None:
    """The ``ckks`` aggregator (coordinator): sums ciphertexts, relays the shift.

    First tells the key holder how many parties take part (public; the key
    holder needs it for the differential-privacy noise plan).
    """
    t.send(keyholder, f"{tag}/parties", pack_json({"parties": len(parties)}))
    aggregate.ckks_aggregate(t, parties=parties, keyholder=keyholder,
                             public_context=public_context, tag=f"{tag}/p1")
    if spec.passes == 2:
        shift_doc = t.recv(keyholder, f"{tag}/shift")
        t.broadcast(parties, f"{tag}/shift", shift_doc)
        aggregate.ckks_aggregate(t, parties=parties, keyholder=keyholder,
                                 public_context=public_context, tag=f"{tag}/p2")


def run_keyholder_ckks(
    t: Transport, spec: StatSpec, *, aggregator: str, keyholder: object, tag: str
) -> StatResult:
    """The ``ckks`` key holder (analyst): decrypts and releases sums, finishes.

    With ``spec.dp`` the noise plan (for the number of parties the aggregator
    announces) tells the release how much DP noise already floods the CKKS
    error; the key holder relies on the aggregator for that count.
    """
    doc = unpack_json(t.recv(aggregator, f"{tag}/parties"))
    parties = doc.get("parties") if isinstance(doc, dict) else None
    if not isinstance(parties, int) or not 1 <= parties <= 10_000:
        raise InputError(f"{aggregator} announced a malformed party count")
    plan = spec.noise_plan(parties)
    std1 = 0.0 if plan is None else plan.release_noise_std(1)
    summed1 = aggregate.ckks_collect(t, aggregator=aggregator, keyholder=keyholder,
                                     length=pass1_length(spec), tag=f"{tag}/p1",
                                     dp_noise_std=std1, summands=parties)
    summed1[0] = float(round(summed1[0]))  # a count is a whole number
    if plan is not None:
        summed1 = dp.postprocess_pass1(plan, summed1, spec.ddof)
    if spec.passes == 1:
        return _with_privacy(finish(spec, summed1, None, None), plan)
    shift, n = _public_shift(spec, plan, summed1)
    t.send(aggregator, f"{tag}/shift", pack_json({"shift": shift.tolist(), "n": n}))
    std2 = 0.0 if plan is None else plan.release_noise_std(2, shift=shift)
    summed2 = aggregate.ckks_collect(t, aggregator=aggregator, keyholder=keyholder,
                                     length=pass2_length(spec), tag=f"{tag}/p2",
                                     dp_noise_std=std2, summands=parties)
    return _with_privacy(finish(spec, summed1, summed2, shift, dp_applied=plan is not None),
                         plan)


def simulate(
    spec: StatSpec, tables: Sequence[np.ndarray], *, tag: str = "stat", timeout: float = 300.0,
) -> tuple[StatResult, Any]:
    """Run a joint statistic among ``len(tables)`` simulated parties in this process.

    Party ``i`` holds ``tables[i]`` (rows x columns, in ``spec.value_columns``
    order).  Returns the result and the :class:`smpc.simulator.SimulationResult`
    (traffic per node).  On ``ckks`` a simulated analyst holds the key and the
    coordinator aggregates.
    """
    from smpc import simulator

    parties = [f"p{i}" for i in range(len(tables))]
    roles: dict[str, Any] = {}
    if spec.backend == "ss":
        for name, rows in zip(parties, tables, strict=True):
            roles[name] = lambda t, rows=rows: run_party(
                t, spec, rows, parties=parties, recipient="coordinator", tag=tag)
        roles["coordinator"] = lambda t: run_recipient_ss(t, spec, parties=parties, tag=tag)
        sim = simulator.run(roles, timeout=timeout)
        return sim.results["coordinator"], sim
    from smpc import ckks

    holder = ckks.KeyHolder(spec.ckks_preset)
    public = ckks.load_context(holder.public_context())
    for name, rows in zip(parties, tables, strict=True):
        roles[name] = lambda t, rows=rows: run_party(
            t, spec, rows, parties=parties, recipient="coordinator", tag=tag,
            public_context=public)
    roles["coordinator"] = lambda t: run_aggregator_ckks(
        t, spec, parties=parties, keyholder="analyst", tag=tag, public_context=public)
    roles["analyst"] = lambda t: run_keyholder_ckks(
        t, spec, aggregator="coordinator", keyholder=holder, tag=tag)
    sim = simulator.run(roles, timeout=timeout)
    return sim.results["analyst"], sim
