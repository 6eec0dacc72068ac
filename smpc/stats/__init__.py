"""Joint statistics over horizontally partitioned rows, on either backend.

Every statistic is computed from *sums of local aggregates*, so no
multiplication of private values is needed: each party aggregates its own
rows, the aggregates are summed securely (:mod:`smpc.aggregate`), and the
recipient finishes the statistic in the clear from the summed aggregates.

Passes
------
1. every statistic: ``[n, sum(x_1) .. sum(x_k)]`` (with ``missing="skip"``
   followed by each column's missing count) -- or, for ``histogram`` /
   ``quantiles``, the bin counts with the counts below / above (and missing);
2. ``var``, ``std``, ``cov``, ``corr``, ``linreg`` only: with the pass-1 mean
   ``s`` (rounded to the fixed-point grid) and total count ``N`` made public to
   the parties as a *shift*, each party contributes the centred moments
   ``sum (x - s)`` and ``sum (x - s)(x - s)^T`` -- divided by ``N`` on ``ss``
   to stay within the ring's range (:func:`moment_divisor`).  Any shift
   gives the exact result (the formula corrects for ``s`` differing from the
   mean), and a shift near the mean keeps the numbers small: this is the
   numerically stable two-pass form, not raw ``sum x^2`` on large values.
   Exact answers run a cheap *spread pass* first (``sum (x - s)^2 / D`` per
   column) and divide the centred values by a public power of two per column
   (the *scale*), so that the moments' precision is relative to the column's
   spread, not its magnitude (:mod:`.bounds`); under DP the moments are sent
   unscaled and there is no spread pass.

What is revealed
----------------
* to the recipient: the summed aggregates of each pass (count, column sums,
  centred second moments / bin counts), from which it computes the result;
* to the parties (pass 2 only): the rounded mean and the total count, used
  as the shift, and for exact answers the scale: per column a power of two,
  the order of magnitude (within a factor of 2) of its pooled spread; the
  recipient also learns the summed spreads;
* nothing about any single party's aggregate or rows (see
  :mod:`smpc.aggregate` for the backend assumptions).

Every :class:`StatResult` carries ``details["error_bound"]``, a derived bound on
its error against the exact pooled statistic, and under DP
``details["dp_noise_std"]`` (:mod:`.bounds`); the figures below are the
per-aggregate terms it starts from.

Precision and range (``ss``, ``P`` parties).  Pass 1 encodes counts and
column sums with ``f`` fractional bits (16 by default): each sum is exact to
``P * 2^-(f+1)`` and must stay below ``2^(63-f) / P`` (4.7e13 for f=16, P=3).
Pass 2 encodes the normalised moments with ``f + 8`` fractional bits
(``moment_frac_bits``; 24 by default): each scaled variance / covariance is
exact to ``P * 2^-25`` (9e-8 for P=3), times ``c_i c_j`` in the data's units,
and must stay below ``2^39 / P`` (1.8e11, i.e. a standard deviation up to
about 4e5).  Beyond either bound the party refuses
with an :class:`~smpc.encoding.EncodingRangeError` naming the value; lower the
fractional bits to widen the range.  Histogram and quantile counts
are exact on ``ss``.

Precision (``ckks``): the key holder's release (:meth:`smpc.ckks.KeyHolder.release`)
adds Gaussian flooding noise of std ``sigma = 2^16 E`` (``E`` the preset's
error bound; ``sigma = 2^-7 ~ 0.0078`` for the ``aggregate`` preset) to every
summed aggregate and rounds it to a grid of ``2^-7``.  So a sum is within
about ``6 sigma`` (0.05), a mean within ``0.05 / N``, a variance or covariance
within about ``0.1 c_i c_j / (N - 1)`` with the public scale ``c`` (so that
``sum u^2 <= 2^26``: relative to the spread); counts are rounded to whole
numbers (exact).

Quantiles are read off a fine histogram over public bounds ``[lo, hi]``
with ``resolution`` bins: the reported value lies in the bin that contains the
inverted-CDF quantile (numpy ``method="inverted_cdf"``), so it is within one
bin width ``(hi - lo) / resolution`` of it.  Values outside the bounds are
counted below / above them (not clipped into the end bins); a quantile whose
rank falls among them is reported as the bound, flagged ``clamped`` and
explained in ``details["warnings"]`` (:func:`quantiles_with_tails`).

Missing values (``spec.missing``): with ``"skip"`` each party leaves NaN out
and counts it -- per column for ``count`` ... ``quantiles`` (pandas
``skipna``), over the rows complete in every column for ``cov``, ``corr``,
``linreg`` (pandas ``dropna``) -- and the missing counts are summed securely
with pass 1 (:func:`local_pass1` gives the layout), so the recipient learns
the pooled count per column only; ``"error"`` refuses NaN.

The parts
---------

=====================  ==================================================================
:mod:`.spec`           :class:`StatSpec` (the public request) and :class:`StatResult`
:mod:`.local`          each party's local aggregates, pass 1 and pass 2
:mod:`.finishing`      the recipient's finish from the summed aggregates
:mod:`.bounds`         every result's error bound, the moment pass's scale, refusals
:mod:`.roles`          the protocol roles over a transport, and :func:`simulate`
=====================  ==================================================================

Everything public is importable from :mod:`smpc.stats` itself.
"""

from __future__ import annotations

from smpc.stats.finishing import (
    column_counts,
    correlation_from_cov,
    finish,
    missing_counts,
    quantiles_from_histogram,
    quantiles_with_tails,
    shift_from_pass1,
)
from smpc.stats.local import (
    cells_per_column,
    local_pass1,
    local_pass2,
    local_spread,
    moment_divisor,
    pass1_length,
    pass2_length,
    suppress_small_cells,
)
from smpc.stats.roles import (
    run_aggregator_ckks,
    run_keyholder_ckks,
    run_party,
    run_recipient_ss,
    simulate,
)
from smpc.stats.spec import (
    DEFAULT_QUANTILE_RESOLUTION,
    MAX_BINS,
    MAX_COLUMNS,
    MISSING_POLICIES,
    STATISTICS,
    StatResult,
    StatSpec,
)

__all__ = [
    "DEFAULT_QUANTILE_RESOLUTION",
    "MAX_BINS",
    "MAX_COLUMNS",
    "MISSING_POLICIES",
    "STATISTICS",
    "StatResult",
    "StatSpec",
    "cells_per_column",
    "column_counts",
    "correlation_from_cov",
    "finish",
    "local_pass1",
    "local_pass2",
    "local_spread",
    "missing_counts",
    "moment_divisor",
    "pass1_length",
    "pass2_length",
    "quantiles_from_histogram",
    "quantiles_with_tails",
    "run_aggregator_ckks",
    "run_keyholder_ckks",
    "run_party",
    "run_recipient_ss",
    "shift_from_pass1",
    "simulate",
    "suppress_small_cells",
]
