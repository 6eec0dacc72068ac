"""Distributed differential privacy for the joint statistics: accounting, sensitivity, noise.

Pure functions, no I/O.  The runtime (``parties/``) keeps the budget ledger;
:mod:`smpc.stats` calls :func:`plan`, :func:`clip_rows`, :func:`party_noise`
and the post-processing helpers.

What is protected, and against whom
===================================

Neighbouring datasets: **add/remove one row** (unbounded DP) of one party's
table, after the request's public filters.  A row is one individual; if a
person can own ``r`` rows, the guarantee for that person is ``r^2 rho``
(zCDP group privacy).

**Guarantee.**  Let ``m = min_honest`` (default: all ``P`` parties).  If at
least ``m`` parties clip their rows to the public bounds, add the noise share
:func:`party_noise` draws for them and keep it secret, then *everything
released* by one statistic -- the noisy summed aggregates of every pass, and
what anyone derives from them (the pass-2 shift and count, the finished
statistic) -- satisfies ``rho``-zero-concentrated DP (Bun & Steinke 2016),
hence ``(epsilon(rho, delta), delta)``-DP for every ``delta``
(:func:`epsilon_from_rho`), against any observer: the recipient, the
coordinator, the CKKS key holder, or a coalition of parties, as long as the
coalition does not know the honest parties' noise.  The guarantee is
computational only in that it rests on the secure aggregation
(:mod:`smpc.aggregate`: the observer sees the *sum*, never one party's
vector) and on the CSPRNG that draws the noise.

**When fewer parties add their share.**  Each party draws variance
``sigma^2 / m``.  If only ``h`` parties' shares are unknown to the observer
(the others omitted theirs, or are curious and reveal them), the noise the
observer cannot remove has variance ``h / m * sigma^2`` and the guarantee
against that observer degrades to ``rho * m / h`` (:func:`effective_rho`; no
guarantee at ``h = 0``).  Two modes:

* default ``min_honest = P``: shares of ``sigma^2 / P``, the least noise; one
  missing share already costs ``rho * P / (P - 1)``;
* conservative ``min_honest = m < P``: shares of ``sigma^2 / m``; the full
  ``rho`` holds as long as any ``m`` parties are honest (when all ``P`` are,
  the released noise has variance ``P / m * sigma^2``: that is the price).

A party that is also the recipient / key holder knows its own share: count it
out of ``h``.

**Composition.**  zCDP composes by adding ``rho`` (adaptively: pass 2 is
chosen after pass 1's output).  :func:`plan` splits the request's ``rho``
over the released blocks of every pass so that the blocks add up to exactly
the requested ``rho``; a ledger charges that one number per request and
adds the charges (:class:`PrivacyCost`).

**What each node learns** (one statistic under DP):

* a data party: its own rows and its own noise share (to be discarded, never
  sent), the public plan (bounds, sigmas), and for the two-pass statistics
  the pass-2 shift and count -- post-processed pass-1 *noisy* output (exact
  answers add a spread pass and a public scale, :mod:`smpc.stats.bounds`;
  under DP neither runs: the moments are sent unscaled);
* the ``ss`` recipient (coordinator): each pass's noisy sum, nothing else
  (the shares it adds are uniform);
* the ``ckks`` aggregator: ciphertexts only; the key holder: each pass's
  noisy sum, rounded to the release grid -- the same values as on ``ss``
  up to the lattice, and nothing of the CKKS error.

**Post-processing is free**: anything computed from the released noisy
vectors alone (clamping a count at >= 1, negative bins at 0, variances at
>= 0, rounding, the shift, the finished statistic) costs no budget
(:func:`postprocess_pass1`, :func:`postprocess_shift`,
:func:`postprocess_covariance`).

**Outside the noisy sums** the caller must make every observable decision
independent of the exact rows (the runtime does: :mod:`parties.privacy.dp_outputs`,
SECURITY.md "What differential privacy covers, output by output"): no refusal
on an exact cohort, missing values dropped by a public rule without disclosing
how many, the ``ss`` range decided on public quantities before anything is
encoded (:func:`check_pass_range`).  Not covered: timing and message sizes.

The parts
=========

=========================  ===============================================================
:mod:`.accounting`         zCDP costs, composition, the (epsilon, delta) view, degradation
:mod:`.request`            :class:`DPRequest`: budget, clipping bounds, ``min_honest``
:mod:`.planning`           sensitivities, the split of ``rho``, :class:`NoisePlan`
:mod:`.noise`              the mechanism: each party's discrete Gaussian share
:mod:`.postprocess`        free post-processing of released values
:mod:`.ranges`             the ``ss`` range, decided on public quantities only
=========================  ===============================================================

Everything public is importable from :mod:`smpc.dp` itself.


Precision cost (``sigma`` of the released noise, in the statistic's units)
==========================================================================

epsilon = 1, delta = 1e-6 (rho = 0.02436); the total noise does not depend on
``P``; ``N`` rows; "measured" = RMS error over 300 simulated runs with
P = 3, N = 1000 ages ~ N(40, 20) clipped to [0, 120], both backends:

* count: ``sigma = 4.5`` rows (measured 4.4);
* mean of one column in ``[0, 120]``: sums ``sigma = 628``, n
  ``sigma = 9.1``, so the mean's error has std
  ``sqrt(628^2 + 40^2 * 9.1^2) / N = 0.73`` years at N = 1000 (measured
  0.67 ss, 0.79 ckks), 0.07 at N = 10000;
* variance of that column (shift clamped near the mean, ``W = 80``): second
  moment ``sigma = 33500`` (divided by ``D`` on ``ss``, then multiplied
  back), so the variance's error has std about ``33500 / N``: 34 years^2 at
  N = 1000 (measured 38, i.e. 10% of a variance of 390), 1% at N = 10000;
* histogram / quantiles over one column: every bin ``sigma = 6.4`` counts.

Lattice rounding adds at most ``P * 2^-(b+1)`` per value (negligible).
Sampling costs about 12 microseconds per coordinate per party.
"""

from __future__ import annotations

from smpc.dp.accounting import (
    DELTA_RANGE,
    EPSILON_RANGE,
    RHO_RANGE,
    PrivacyCost,
    compose,
    cost_from_request,
    delta_from_rho,
    effective_rho,
    epsilon_from_rho,
    rho_from_epsilon,
)
from smpc.dp.noise import (
    MAX_SHARE_UNITS,
    add_ring_noise,
    noisy_ckks_values,
    party_noise,
    sample_discrete_gaussian,
)
from smpc.dp.planning import (
    NEIGHBOURING,
    SPLITS,
    Block,
    NoisePlan,
    PassPlan,
    clip_rows,
    kls_tau,
    pass2_sensitivities,
    pass2_widths,
    plan,
)
from smpc.dp.postprocess import postprocess_covariance, postprocess_pass1, postprocess_shift
from smpc.dp.ranges import TAIL_SIGMAS, check_pass_range, pass_bounds
from smpc.dp.request import BOUND_LIMIT, DPRequest

__all__ = [
    "BOUND_LIMIT",
    "DELTA_RANGE",
    "EPSILON_RANGE",
    "MAX_SHARE_UNITS",
    "NEIGHBOURING",
    "RHO_RANGE",
    "SPLITS",
    "TAIL_SIGMAS",
    "Block",
    "DPRequest",
    "NoisePlan",
    "PassPlan",
    "PrivacyCost",
    "add_ring_noise",
    "check_pass_range",
    "clip_rows",
    "compose",
    "cost_from_request",
    "delta_from_rho",
    "effective_rho",
    "epsilon_from_rho",
    "kls_tau",
    "noisy_ckks_values",
    "party_noise",
    "pass2_sensitivities",
    "pass2_widths",
    "pass_bounds",
    "plan",
    "postprocess_covariance",
    "postprocess_pass1",
    "postprocess_shift",
    "rho_from_epsilon",
    "sample_discrete_gaussian",
]
