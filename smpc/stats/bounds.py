"""Error bounds of every joint statistic, the public scale of the moment pass, refusals.

Guarantees
==========

:func:`attach` puts ``details["error_bound"]`` (same shape as the value) on every
:class:`~smpc.stats.StatResult`: a bound on ``|returned - exact pooled statistic|`` (the
statistic numpy computes on the pooled rows) from the fixed-point encoding (``ss``), the CKKS
error and the key holder's release flood and rounding (``ckks``), and float64 rounding -- not
from differential-privacy noise, which is reported separately under DP as
``details["dp_noise_std"]`` (the noise's standard deviation propagated to the value, first
order; ``None`` where it has no closed form, e.g. quantiles: see ``details["privacy"]``).
Nor does it count deliberate changes made for privacy in exact mode: small cells a party
sends as 0 (:func:`~smpc.stats.local.suppress_small_cells`, a stated bias of up to
``P (min_cell_size - 1)`` rows per cell).  Quantiles assume the values lie within the public
bounds (values outside are clipped into the end bins).
``details["error_bound_confidence"]`` says how sure the bound is: 1 on ``ss`` (deterministic),
``1 - 2e-9`` per released value on ``ckks`` (the release's Gaussian flood taken at
:data:`Z` = 6 standard deviations, as in ``tests/tolerances.py``).

Per summed coordinate (``P`` parties; a party's aggregate is computed in float64 and encoded):

* ``ss`` with ``b`` fractional bits: ``P 2^-(b+1)`` (each party rounds to nearest);
* ``ckks``: ``E + Z sigma + g/2`` (CKKS error bound ``E`` of a sum of ``P`` fresh encryptions,
  flood std ``sigma = 2^16 E``, release grid ``g``: :meth:`smpc.ckks.KeyHolder.release`);
  under DP each party rounds to ``g`` first (``+ P g/2``) and, when the DP noise replaces the
  flood, the release rounding removes the CKKS error exactly (no ``E + Z sigma`` term).
* counts (row count, bins) are exact on both backends (whole numbers; on ``ckks`` the error
  above is below 1/2 and the count is rounded).

Propagation: sums and means are linear; a covariance is ``(S / N - d d^T) N / (N - ddof)``
from the centred sums, bounded term by term; a standard deviation over the interval of its
variance; a correlation over the 8 corners of the box of its covariance and two variances
(exact: it is monotone in each); regression coefficients by the Neumann-series bound of the
perturbed normal equations (rigorous while ``rho < 1``, see :func:`_linreg_bound`).  Float64:
each party sums a column contiguously (numpy's pairwise summation: blocks of 128 in 8
accumulators, then halving), off by at most ``gamma(log2 n + 24) sum |x|`` -- bounded here by
``gamma(log2 N + 24) |S|`` for the pooled sum ``S`` (exact when every row of a column has the
same sign, as for data far from zero; otherwise the encoding term dominates as long as
``sum |x|`` stays under about ``2^(46-b)``); the centred moments by ``2 gamma(n+2)`` times
their Cauchy-Schwarz bound (Higham 3.5); the finishing arithmetic by a few ``u``.  Quantiles:
one fine-histogram bin (the inverted-CDF quantile's bin, values inside the bounds).

Small spread, large mean (the moment pass)
==========================================

Without DP a two-pass statistic (var, std, cov, corr, linreg) runs a third, cheap pass: after
pass 1 (count, sums) the parties send the *spread* ``sum (x_j - s_j)^2 / D`` per column (``k``
values, pass-1 precision), and the recipient picks a public power of two ``c_j`` per column
(:func:`choose_scale`) so that the scaled moments ``sum u u^T / D`` with ``u = (x - s) / c``
stay below :data:`TARGET` (``2^20`` on ``ss``, within the moment codec's range;
``2^26`` on ``ckks``, where the decryption stays exact to the CKKS error).  The moment pass then
carries the statistic with a *relative* precision of about ``P 2^-(b+1) / TARGET`` on ``ss``
and ``6 sigma / TARGET`` on ``ckks``, whatever the columns' units and means: a column with
standard deviation 1e-4 around 1e6 is as precise as one of 1 around 0.

**What it reveals.**  The recipient learns the summed spreads (a coarser version of the
variances it then learns anyway); every party learns ``c_j``: the power of two just above
``sqrt(U_j / TARGET)``, ``U_j`` an upper bound on the pooled ``sum (x_j - s_j)^2 / D`` -- the
order of magnitude (a factor of 2) of each column's pooled spread.  Under DP there is no spread
pass and no scale (``c = 1``): nothing beyond the noisy pass 1 is revealed, as before.

Refusals
========

:func:`check_resolved` (exact answers only; under DP a noisy variance is the answer and its
noise is reported) refuses, naming the column, a two-pass statistic whose variance bound is
not below a quarter of the returned variance: a constant column, or one whose spread is below
what the computation resolves.  The message names the column and what to change, never a value.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from smpc.errors import InputError
from smpc.names import Backend, Statistic
from smpc.stats.spec import StatResult, StatSpec

__all__ = [
    "TARGET",
    "Released",
    "Z",
    "attach",
    "check_resolved",
    "choose_scale",
    "pass_error",
    "summary_lines",
]

U = 2.0**-53
"""Unit roundoff of float64."""

Z = 6.0
"""The release flood is bounded at Z standard deviations: P(|N(0,1)| > 6) = 2.0e-9."""

TARGET = {Backend.SS: 2.0**20, Backend.CKKS: 2.0**26}
"""Upper bound of a scaled moment ``sum u^2 / D`` in the moment pass, per backend."""

MIN_SCALE_EXP, MAX_SCALE_EXP = -200, 200


def _gamma(n: float) -> float:
    return n * U / (1.0 - n * U)


def pass_error(spec: StatSpec, parties: int, frac_bits: int, *,
               dp_noise_std: float | None = None, dp_rounding: bool = False) -> float:
    """Bound on ``|released - exact|`` of one summed non-count coordinate of a pass.

    ``frac_bits``: the pass's codec on ``ss``.  ``ckks``: ``dp_noise_std`` is what the key
    holder passed to the release (DP noise unknown to it), ``dp_rounding`` whether the
    parties rounded to the release grid before adding DP noise.
    """
    if spec.backend == Backend.SS:
        return parties * 2.0 ** -(frac_bits + 1)
    from smpc import ckks

    preset = ckks.get_preset(spec.ckks_preset)
    e = preset.error_bound(summands=parties, independent=True)
    params = ckks.release_parameters(preset, error_bound=e, dp_noise_std=dp_noise_std)
    out = parties * params.grid / 2 if dp_rounding else 0.0
    if params.flooded or not dp_rounding:
        out += e + Z * params.flood_std + params.grid / 2
    return out


def choose_scale(spec: StatSpec, spread: np.ndarray, error: float) -> np.ndarray:
    """The public per-column powers of two ``c_j`` of the moment pass (module notes).

    ``spread``: the released pooled ``sum (x_j - s_j)^2 / D``; ``error``: its bound
    (:func:`pass_error`).  ``U_j = max(spread_j, 0) + error`` bounds the exact spread, and
    ``c_j = 2^ceil(log2 sqrt(U_j / TARGET))`` makes every scaled moment at most ``TARGET``.
    On ``ss`` ``c_j`` is at most 1 (a column of large spread is sent unscaled, as without the
    spread pass: same range, same absolute error, already small relative to the spread).
    """
    # (1 + 1e-9): the parties' float64 sums of squares, relative error below gamma(n)
    upper = np.clip(np.asarray(spread, dtype=np.float64), 0.0, None) * (1 + 1e-9) + error
    exp = np.ceil(0.5 * np.log2(upper / TARGET[Backend(spec.backend)]))
    # ss: never above 1 (a large spread keeps the unscaled moments, their range and their
    # error); ckks: above 1 too, so that no slot of a ciphertext is large enough for the
    # float64 encoder's error (relative to the largest slot) to reach the others
    top = 0 if spec.backend == Backend.SS else MAX_SCALE_EXP
    return np.exp2(np.clip(exp, MIN_SCALE_EXP, top))


def check_scale(scale: Any, k: int) -> np.ndarray:
    """A party's check of a public scale: ``k`` powers of two in the allowed range."""
    try:
        arr = np.asarray(scale, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("the public scale must be numbers, one per column") from None
    if arr.shape != (k,) or not np.isfinite(arr).all() or (arr <= 0).any():
        raise InputError("the public scale must be positive finite numbers, one per column")
    mant, exp = np.frexp(arr)
    if (mant != 0.5).any() or (exp - 1 < MIN_SCALE_EXP).any() or (exp - 1 > MAX_SCALE_EXP).any():
        raise InputError("the public scale must be powers of two")
    return arr


@dataclass
class Released:
    """What the recipient knows after the passes, to bound a result.

    ``e1`` / ``e2``: per-coordinate bounds of pass 1 / the moment pass (:func:`pass_error`);
    ``sig1`` / ``sig2``: the DP noise std of each coordinate (None without DP).
    """

    parties: int
    summed1: np.ndarray
    e1: float
    summed2: np.ndarray | None = None
    e2: float = 0.0
    shift: np.ndarray | None = None
    scale: np.ndarray | None = None
    divisor: float = 1.0
    sig1: np.ndarray | None = None
    sig2: np.ndarray | None = None


def _moment_terms(spec: StatSpec, rel: Released, n: float,
                  counts: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """d, second moments per row, their bounds and the covariance bound (two-pass).

    ``counts``: each column's number of values (``missing="skip"``: fewer than the ``n`` rows
    where values are missing; None: all ``n``), as :func:`smpc.stats.finishing._moments` uses.
    """
    assert rel.summed2 is not None
    k = len(spec.value_columns)
    c = np.ones(k) if rel.scale is None else np.asarray(rel.scale, dtype=np.float64)
    cnt = np.full(k, n) if counts is None else np.asarray(counts, dtype=np.float64)
    per_row = rel.divisor / cnt
    pr2 = np.sqrt(np.outer(per_row, per_row))
    first = rel.summed2[:k]
    sec = np.zeros((k, k))
    sec[np.triu_indices(k)] = rel.summed2[k:]
    sec = sec + np.triu(sec, 1).T
    diag = np.clip(np.diag(sec), 0.0, None) + rel.e2
    g = 2 * _gamma(n + 2)
    e_first = rel.e2 + g * np.sqrt(n * diag / rel.divisor)
    e_sec = rel.e2 + g * np.sqrt(np.outer(diag, diag))
    d = c * first * per_row
    dd = c * e_first * per_row
    cc = np.outer(c, c)
    second = cc * sec * pr2
    dsec = cc * e_sec * pr2
    pair = np.sqrt(np.outer(cnt, cnt))
    k1 = pair / (pair - spec.ddof)
    ad = np.abs(d)
    dpop = dsec + np.outer(ad, dd) + np.outer(dd, ad) + np.outer(dd, dd)
    dcov = (dpop + 8 * U * (np.abs(second) + np.outer(ad, ad))) * k1
    return {"d": d, "dd": dd, "dcov": dcov, "per_row": per_row, "pr2": pr2, "k1": k1,
            "c": c, "counts": cnt}


def _std_bound(var: np.ndarray, dvar: np.ndarray) -> np.ndarray:
    v = np.clip(var, 0.0, None)
    up = np.sqrt(v + dvar) - np.sqrt(v)
    down = np.sqrt(v) - np.sqrt(np.clip(v - dvar, 0.0, None))
    return np.maximum(up, down) + 2 * U * np.sqrt(v)


def _corr_bound(cov: np.ndarray, dcov: np.ndarray) -> np.ndarray:
    """Worst change of ``c_ij / sqrt(v_i v_j)`` over the error box: its 8 corners.

    Monotone in each of the three arguments while the variances stay positive, so the
    extremes are at corners (exact).  Infinite where a variance is not resolved.
    """
    k = cov.shape[0]
    out = np.full((k, k), 8 * U)
    for i, j in itertools.product(range(k), repeat=2):
        if i == j:
            continue
        vi, vj, cij = cov[i, i], cov[j, j], cov[i, j]
        if not (vi > dcov[i, i] and vj > dcov[j, j]):
            out[i, j] = math.inf
            continue
        r = float(np.clip(cij / math.sqrt(vi * vj), -1.0, 1.0))
        worst = max(abs(float(np.clip((cij + a) / math.sqrt((vi + b) * (vj + e)), -1, 1)) - r)
                    for a, b, e in itertools.product((-dcov[i, j], dcov[i, j]),
                                                     (-dcov[i, i], dcov[i, i]),
                                                     (-dcov[j, j], dcov[j, j])))
        out[i, j] = worst + 8 * U
    return out


def _linreg_bound(cov: np.ndarray, dcov: np.ndarray, mean: np.ndarray, dmean: np.ndarray,
                  beta: np.ndarray) -> tuple[np.ndarray, float]:
    """(coefficient bounds, intercept bound) of ``beta = A^-1 b``, ``A``, ``b`` within dcov.

    In the features' own units (a fixed change of variables by ``s = sqrt(diag A)``:
    ``R = A / s s^T``, ``b_s = b / s``, ``beta_s = s beta``), with the returned ``R``,
    ``beta_s``: the exact ``beta_s* - beta_s = (I + R^-1 dR)^-1 R^-1 (db_s - dR beta_s)``;
    ``w = |R^-1| (D_b + D_R |beta_s|)`` and ``rho = || |R^-1| D_R ||_inf < 1`` give
    ``|beta_s* - beta_s| <= w + rho / (1 - rho) max(w)`` (Neumann series), divided back by
    ``s``.  Infinite if ``rho >= 1/2``.  The intercept ``m_y - m_x . beta`` adds the means'
    errors.
    """
    k = cov.shape[0] - 1
    s = np.sqrt(np.diag(cov[:k, :k]))
    ss = np.outer(s, s)
    R, b = cov[:k, :k] / ss, cov[:k, k] / s
    DR, Db = dcov[:k, :k] / ss, dcov[:k, k] / s
    bs = beta * s
    rinv = np.abs(np.linalg.inv(R))
    rho = float(np.max((rinv @ DR).sum(axis=1)))
    if not rho < 0.5:
        return np.full(k, math.inf), math.inf
    w = rinv @ (Db + DR @ np.abs(bs))
    fl = _gamma(4 * (k + 1) ** 2)
    tol = (w + rho / (1 - rho) * float(w.max()) + fl * (rinv @ np.abs(b) + np.abs(bs))) / s
    am = np.abs(mean)
    icpt = float(dmean[k] + dmean[:k] @ (np.abs(beta) + tol) + (am[:k] + dmean[:k]) @ tol
                 + fl * (am[:k] @ np.abs(beta) + am[k]))
    return tol, icpt


def check_resolved(spec: StatSpec, cov: np.ndarray, dcov: np.ndarray) -> None:
    """Refuse (exact answers) a correlation or regression over a column whose variance is not
    resolved (module notes).  A column whose variance came out exactly 0 on ``ss`` (constant
    in every party's rows) is left to the statistic: NaN correlations, the collinearity
    refusal of ``linreg``; on ``ckks`` it is refused like any unresolved spread.
    """
    for j, col in enumerate(spec.value_columns):
        # a variance of exactly 0 is a constant column only on ss (exact arithmetic); on ckks
        # it is release noise cancelling, and is refused like any unresolved spread
        exactly_constant = cov[j, j] == 0 and spec.backend == Backend.SS
        if not exactly_constant and not cov[j, j] > 4 * dcov[j, j]:
            hint = ("raise --frac-bits or rescale the column (e.g. multiply it by a power of "
                    "ten)" if spec.backend == Backend.SS else
                    "rescale the column (e.g. multiply it by a power of ten) or use the ss "
                    "backend")
            raise InputError(
                f"the column {col!r} is constant, or its spread is below what this "
                f"{spec.statistic} can resolve: no result is given rather than an inaccurate "
                f"one; {hint}")


def _cov_of(result: StatResult, spec: StatSpec, terms: dict[str, np.ndarray], n: float,
            rel: Released) -> np.ndarray:
    from smpc.stats.finishing import _moments

    assert rel.summed2 is not None
    _, cov = _moments(spec, rel.summed2, n, terms["counts"], rel.scale)
    return cov


def attach(spec: StatSpec, result: StatResult, rel: Released, *, dp_applied: bool) -> StatResult:
    """Put the error bound (and under DP the noise std) on ``result`` (module notes)."""
    from smpc.stats.finishing import column_counts

    n = float(rel.summed1[0])
    stat = Statistic(spec.statistic)
    ckks_ = spec.backend == Backend.CKKS
    det = result.details
    det["error_bound_confidence"] = 1.0 - 2e-9 if ckks_ else 1.0
    dp_std: Any = None
    if stat == Statistic.COUNT:
        bound: Any = 0
        if rel.sig1 is not None:
            dp_std = float(rel.sig1[0])
    elif stat in (Statistic.SUM, Statistic.MEAN):
        k = len(spec.value_columns)
        sums = rel.summed1[1:1 + k]
        cnt = column_counts(spec, rel.summed1, dp_applied=dp_applied)
        e = rel.e1 + _gamma(math.ceil(math.log2(max(n, 2))) + 24) * np.abs(sums)
        bound = (e if stat == Statistic.SUM else e / cnt + U * np.abs(sums / cnt)).tolist()
        if rel.sig1 is not None:
            s_n, s_s = float(rel.sig1[0]), rel.sig1[1:1 + k]
            dp_std = (s_s if stat == Statistic.SUM
                      else np.sqrt(s_s**2 + (sums / cnt) ** 2 * s_n**2) / cnt).tolist()
    elif stat == Statistic.HISTOGRAM:
        bound = [[0] * (len(row)) for row in result.value]
        if rel.sig1 is not None:
            dp_std = float(rel.sig1[1])
    elif stat == Statistic.QUANTILES:
        width = float(result.details["resolution"])
        bound = [[width * (1 + 8 * U) + 8 * U * max(abs(b) for b in spec.bounds or (0,))]
                 * len(qs) for qs in result.value]
    else:
        bound, dp_std = _two_pass(spec, stat, result, rel, n, dp_applied)
    det["error_bound"] = bound
    if rel.sig1 is not None:
        det["dp_noise_std"] = dp_std
    return result


def _two_pass(spec: StatSpec, stat: Statistic, result: StatResult, rel: Released, n: float,
              dp_applied: bool) -> tuple[Any, Any]:
    from smpc.stats.finishing import column_counts

    terms = _moment_terms(spec, rel, n, column_counts(spec, rel.summed1, dp_applied=dp_applied))
    cov = _cov_of(result, spec, terms, n, rel)
    dcov = terms["dcov"]
    if not dp_applied and stat in (Statistic.CORR, Statistic.LINREG):
        check_resolved(spec, cov, dcov)
    assert rel.shift is not None
    mean = np.asarray(rel.shift, dtype=np.float64) + terms["d"]
    dmean = terms["dd"] + U * np.abs(mean)
    result.details["mean_error_bound"] = dmean.tolist()
    sig_cov = _dp_cov_std(spec, rel, terms, cov, n) if rel.sig2 is not None else None
    var = np.diag(cov)
    if stat == Statistic.VAR:
        return np.diag(dcov).tolist(), None if sig_cov is None else np.diag(sig_cov).tolist()
    if stat == Statistic.STD:
        sd = np.sqrt(np.clip(var, 0, None))
        dp = None if sig_cov is None else (np.diag(sig_cov) / np.where(sd > 0, 2 * sd, 1)).tolist()
        return _std_bound(var, np.diag(dcov)).tolist(), dp
    if stat == Statistic.COV:
        return dcov.tolist(), None if sig_cov is None else sig_cov.tolist()
    if stat == Statistic.CORR:
        dp = None
        if sig_cov is not None:
            sd = np.sqrt(np.clip(var, 1e-300, None))
            r = np.asarray(result.value, dtype=np.float64)
            rel_v = np.diag(sig_cov) / sd**2
            dp = np.sqrt((sig_cov / np.outer(sd, sd)) ** 2
                         + r**2 / 4 * (rel_v[:, None] ** 2 + rel_v[None, :] ** 2))
            np.fill_diagonal(dp, 0.0)
            dp = np.nan_to_num(dp, nan=math.inf).tolist()
        cb = _corr_bound(cov, dcov)
        cb[np.isnan(np.asarray(result.value, dtype=np.float64))] = math.nan
        return _finite(cb).tolist(), dp
    beta = np.asarray(result.value["coefficients"], dtype=np.float64)
    tol, icpt = _linreg_bound(cov, dcov, mean, dmean, beta)
    if not dp_applied and not math.isfinite(icpt):
        raise InputError(
            "the features' covariance is not resolved well enough for a regression with an "
            "error bound (nearly collinear features): drop or combine features")
    dp_lin = None
    if sig_cov is not None:
        k = len(spec.columns)
        sdx = np.sqrt(np.diag(cov[:k, :k]))
        ainv = np.linalg.inv(cov[:k, :k] / np.outer(sdx, sdx)) / np.outer(sdx, sdx)
        var_r = sig_cov[:k, k] ** 2 + (sig_cov[:k, :k] ** 2) @ (beta**2)
        sb = np.sqrt((ainv**2) @ var_r)
        sm = np.asarray(_dp_mean_std(rel, terms), dtype=np.float64)
        si = math.sqrt(float(sm[k] ** 2 + mean[:k] ** 2 @ sb**2 + beta**2 @ sm[:k] ** 2))
        dp_lin = {"coefficients": sb.tolist(), "intercept": si}
    return {"coefficients": _finite(tol).tolist(),
            "intercept": icpt if math.isfinite(icpt) else None}, dp_lin


def _finite(arr: np.ndarray) -> np.ndarray:
    """Bounds for JSON: an infinite bound (nothing resolved, only under DP) becomes None."""
    out = np.asarray(arr, dtype=object)
    out[np.isinf(np.asarray(arr, dtype=np.float64))] = None
    return out


def _dp_mean_std(rel: Released, terms: dict[str, np.ndarray]) -> np.ndarray:
    assert rel.sig2 is not None
    k = terms["c"].size
    return terms["c"] * rel.sig2[:k] * terms["per_row"]


def _dp_cov_std(spec: StatSpec, rel: Released, terms: dict[str, np.ndarray], cov: np.ndarray,
                n: float) -> np.ndarray:
    """First-order std of the DP noise in the covariance (second moments, d, and the count)."""
    assert rel.sig2 is not None and rel.sig1 is not None
    k = terms["c"].size
    sig_sec = np.zeros((k, k))
    sig_sec[np.triu_indices(k)] = rel.sig2[k:]
    sig_sec = sig_sec + np.triu(sig_sec, 1).T
    sd_d = _dp_mean_std(rel, terms)
    d = terms["d"]
    k1 = terms["k1"]
    var = (np.outer(terms["c"], terms["c"]) * sig_sec * terms["pr2"]) ** 2 \
        + np.outer(d**2, sd_d**2) + np.outer(sd_d**2, d**2)
    if rel.divisor == 1.0:  # ckks: the noisy count divides the moments
        var = var + (cov * float(rel.sig1[0]) / n) ** 2
    return np.sqrt(var) * k1


def block_sigmas(lengths: Sequence[int], sigmas: Sequence[float]) -> np.ndarray:
    """Expand per-block sigmas to per-coordinate sigmas."""
    return np.concatenate([np.full(n, s) for n, s in zip(lengths, sigmas, strict=True)])


def _largest(tree: Any) -> float | None:
    """The largest number in a nested list / dict of bounds (None if there is none)."""
    if isinstance(tree, dict):
        tree = list(tree.values())
    if isinstance(tree, list):
        found = [x for x in map(_largest, tree) if x is not None]
        return max(found) if found else None
    return float(tree) if isinstance(tree, int | float) else None


def summary_lines(details: dict[str, Any]) -> list[str]:
    """Lines for a printed result: the largest error bound and DP noise std it carries."""
    out = []
    bound = _largest(details.get("error_bound"))
    if bound is not None:
        out.append(f"  error bound (encoding, CKKS, release): at most {bound:.3g} per value")
    noise = _largest(details.get("dp_noise_std"))
    if noise is not None:
        out.append(f"  differential-privacy noise: std up to {noise:.3g} per value")
    return out
