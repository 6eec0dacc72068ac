"""What one request costs a party, known from its public shape before any work is done.

Guarantees: :func:`statistic_cost` and :func:`inference_cost` are pure functions of a request's
public parameters (its spec) and a row count; they do no work and read no data, so a party can
compare them with its own limits and refuse a request that would exhaust it *before* it selects
a row or reserves any budget (the runtime's policy gate does: ``parties.privacy.policy``).
Reveals nothing: the inputs are public or the party's own.

What grows, and with what (profiled on the 2-core reference machine, AMD EPYC, Python 3.11,
OpenDP 0.16, TenSEAL 0.3.18; one party's role, ``tracemalloc`` peaks and CPU time):

* **released values** -- what a statistic sums securely: ``1 + k (bins + 2)`` for a histogram
  of ``k`` columns, ``1 + k resolution`` for quantiles, ``1 + k`` for sums and means, and in a
  second pass ``k + k(k+1)/2`` centred moments.  Each costs about 40 bytes of memory without
  differential privacy and 73 with it (values, noise, encoding, shares, the expansions of the
  peers' seeds); :data:`BYTES_PER_RELEASED_VALUE` rounds up to 96.
* **noise draws** -- one exact discrete Gaussian draw per released value under DP: 12-18
  microseconds of CPU each (OpenDP's exact sampler), over 99% of a high-resolution DP
  quantile's CPU; :data:`SECONDS_PER_NOISE_DRAW` is the unloaded figure, 1.2e-5 s.
* **CKKS encryption** -- 4.7 microseconds per released value (one ciphertext per 4,096).
* **rows** -- a statistic copies its ``k`` columns of the selected rows (8 bytes a cell) and
  clips or centres them: at most 16 more bytes a cell, 15-30 ns of CPU a cell per pass.  In a
  SQL engine (``in_engine``) nothing is copied: the engine scans, about 25 ns a cell per pass.
* **inference** -- per cell of the ``n x d`` feature matrix, at either owner: about 40-80
  bytes and 0.15 microseconds on ``ss`` (shares, Beaver openings), 95 bytes (plus TenSEAL's
  own memory, about as much again) and 7.3 microseconds on ``ckks``.

These are estimates, rounded up, not bounds: the runtime also stops a role that uses more
CPU than allowed while it runs (``Transport.check_cancelled``).
"""

from __future__ import annotations

from dataclasses import dataclass

from smpc import linear
from smpc.names import Backend
from smpc.stats import StatSpec
from smpc.stats.local import pass1_length, pass2_length

__all__ = [
    "BYTES_PER_RELEASED_VALUE",
    "BYTES_PER_ROW_CELL",
    "SECONDS_PER_ENGINE_ROW_CELL",
    "Cost",
    "inference_cost",
    "released_lengths",
    "statistic_cost",
]

BYTES_PER_RELEASED_VALUE = 96
BYTES_PER_ROW_CELL = 32
SECONDS_PER_NOISE_DRAW = 1.2e-5
SECONDS_PER_CKKS_VALUE = 5e-6
SECONDS_PER_ROW_CELL = 1e-7
#: A SQL engine's scan, per cell and pass (DuckDB at 10^8 rows x 3 columns: 7.3 s of CPU for a
#: mean, 24.6 s for a covariance's three passes, benchmarks/results/engine-1e8-2core), rounded up.
SECONDS_PER_ENGINE_ROW_CELL = 3e-8
CKKS_FIXED_BYTES = 32 << 20         # the public context, keys, one ciphertext in flight
CKKS_FIXED_SECONDS = 0.1            # loading or making a context and its keys
BYTES_PER_INFERENCE_CELL = {Backend.SS: 96, Backend.CKKS: 256}
SECONDS_PER_INFERENCE_CELL = {Backend.SS: 3e-7, Backend.CKKS: 8e-6}


@dataclass(frozen=True)
class Cost:
    """What one request costs one party.

    ``released_values``: values a statistic releases over all its passes (0 for an inference);
    ``noise_draws``: exact DP noise draws; ``rows``: rows it computes on; ``cpu_seconds`` and
    ``memory_bytes``: estimates of its CPU time and peak memory (module notes).
    """

    released_values: int
    noise_draws: int
    rows: int
    cpu_seconds: float
    memory_bytes: int


def released_lengths(spec: StatSpec) -> tuple[int, ...]:
    """The number of values each pass of ``spec`` releases (exact two-pass statistics: pass 1,
    the spread pass of ``k`` values, the moment pass; :mod:`smpc.stats.bounds`)."""
    if spec.passes == 2 and spec.dp is None:
        return pass1_length(spec), len(spec.value_columns), pass2_length(spec)
    if spec.passes == 2:
        return pass1_length(spec), pass2_length(spec)
    return (pass1_length(spec),)


def statistic_cost(spec: StatSpec, rows: int, *, in_engine: bool = False) -> Cost:
    """One data party's cost of the statistic ``spec`` over (at most) ``rows`` rows.

    ``in_engine``: the rows stay in a SQL engine that computes the local aggregates
    (``parties.data.sql``): no row is copied into the party's memory (the engine's own is
    bounded by its configuration), and a scan costs :data:`SECONDS_PER_ENGINE_ROW_CELL` per cell
    and pass instead of numpy's copies."""
    lengths = released_lengths(spec)
    released = sum(lengths)
    draws = released if spec.dp is not None else 0
    cells = max(int(rows), 0) * len(spec.value_columns)
    per_cell = SECONDS_PER_ENGINE_ROW_CELL if in_engine else SECONDS_PER_ROW_CELL
    cpu = draws * SECONDS_PER_NOISE_DRAW + cells * len(lengths) * per_cell
    memory = (0 if in_engine else cells * BYTES_PER_ROW_CELL) + \
        max(lengths) * BYTES_PER_RELEASED_VALUE
    if spec.backend == Backend.CKKS:
        cpu += released * SECONDS_PER_CKKS_VALUE + CKKS_FIXED_SECONDS
        memory += CKKS_FIXED_BYTES
    return Cost(released, draws, max(int(rows), 0), cpu, memory)


def inference_cost(spec: linear.InferenceSpec, rows: int | None = None) -> Cost:
    """Either owner's cost of the inference ``spec`` over ``rows`` samples (default: the
    spec's ``n_samples``): ``rows x n_features`` cells."""
    rows = spec.n_samples if rows is None else max(int(rows), 0)
    cells = rows * spec.n_features
    cpu = cells * SECONDS_PER_INFERENCE_CELL[spec.backend]
    memory = cells * BYTES_PER_INFERENCE_CELL[spec.backend]
    if spec.backend == Backend.CKKS:
        cpu += CKKS_FIXED_SECONDS
        memory += CKKS_FIXED_BYTES
    return Cost(0, 0, rows, cpu, memory)
