"""Error bounds for the tests, derived from the code's stated guarantees (one place for all).

Every tolerance in the suite comes from here or from a derivation written next to it; none is
a loose constant.  The building blocks, each with where it is stated:

* **float64.**  A sum of ``n`` terms computed in any order is off by at most
  ``gamma(n) * sum |x_i|`` (Higham, *Accuracy and Stability of Numerical Algorithms*, eq.
  (3.5) and Lemma 3.1: ``gamma(n) = n u / (1 - n u)``, ``u = 2^-53``).  The product code and
  the numpy reference each compute such sums, so the float term of an aggregate is twice that.
* **ss** (:mod:`smpc.encoding`, :mod:`smpc.stats` docstring, README "Fixed point").  A party
  encodes each aggregate with ``f`` fractional bits, rounding to nearest: at most
  ``2^-(f+1)`` per party, so a summed pass-1 aggregate is within ``P 2^-(f+1)``.  Pass-2
  moments are divided by ``N`` and encoded with ``f + 8`` bits: within ``P 2^-(f+9)`` each.
* **ckks** (:meth:`smpc.ckks.KeyHolder.release`, :func:`smpc.ckks.release_parameters`, README
  "Release").  The key holder decrypts (CKKS error at most the preset's error bound ``E``,
  asserted in ``tests/unit/test_ckks.py``), adds Gaussian noise of std ``sigma = 2^16 E`` and
  rounds to the grid ``g = 2^ceil(log2 sigma)``.  So a released value is within
  ``E + Z sigma + g / 2`` of the exact one, except with probability ``P_TAIL = P(|N(0,1)| > Z)``
  = 2.0e-9 per value for ``Z = 6`` (a union bound over the values of a test gives its false
  failure rate: below 1e-5 for every test here).  On ``ckks`` the parties send plain centred
  sums in pass 2 (:func:`smpc.stats.moment_divisor` is 1), so a moment per row is within that
  bound divided by ``N``, times the public scales of its columns (exact answers scale the
  centred values by powers of two chosen from a spread pass: :mod:`smpc.stats.bounds`).
* **statistics from aggregates** (:class:`Moments`): the mean is the pass-1 sum over ``N``;
  a variance / covariance is ``(S2/N - d d^T) N / (N - ddof)`` with ``S2`` the centred second
  moments and ``d`` the centred first moments of pass 2 around the public shift ``s`` (the
  pass-1 mean rounded to ``2^-f``, so ``|mean - s| <= t = mean error + 2^-(f+1)``):
  ``|d cov_ij| <= (e2 + e1 (|t_i| + |t_j|) + e1^2) N / (N - ddof)``.  Standard deviations,
  correlations and regression coefficients follow by the worst-case propagation written in
  each method (rigorous, not first-order).
* **inference** (:mod:`smpc.linear` docstring, README "Inference"): ``ss`` logits within the
  encoding error of features, weights and intercept; ``ckks`` logits within the CKKS error
  bound of the linear combination plus ``Z`` times the model owner's flood
  (:func:`smpc.linear.model_flood_std`).  Probabilities: a quarter of that (the sigmoid is
  1/4-Lipschitz).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from smpc import ckks
from smpc.encoding import DEFAULT_FRAC_BITS
from smpc.names import Backend as SmpcBackend
from smpc.stats.bounds import TARGET

U = 2.0**-53
"""Unit roundoff of float64."""

Z = 6.0
"""Gaussian bounds are taken at 6 standard deviations."""

P_TAIL = math.erfc(Z / math.sqrt(2.0))
"""P(|N(0, 1)| > Z) = 1.97e-9: the false-failure probability of one Z-sigma bound."""


def gamma(n: int) -> float:
    """Higham's gamma_n = n u / (1 - n u): relative error bound of an n-term float sum."""
    return n * U / (1.0 - n * U)


# ---------------------------------------------------------------------------------- ckks


@dataclass(frozen=True)
class Release:
    """What :meth:`smpc.ckks.KeyHolder.release` does to a value, derived from its docstring.

    ``E`` the CKKS error bound the release assumes, ``sigma = 2^16 E`` the flood std, ``grid``
    the rounding grid ``2^ceil(log2 sigma)``.
    """

    E: float
    sigma: float
    grid: float

    @classmethod
    def of(cls, preset: str = "aggregate", error_bound: float | None = None,
           flood_bits: int = ckks.DEFAULT_FLOOD_BITS) -> Release:
        e = ckks.get_preset(preset).release_error_bound if error_bound is None else error_bound
        sigma = e * 2.0**flood_bits
        return cls(E=e, sigma=sigma, grid=2.0 ** math.ceil(math.log2(sigma)))

    @property
    def bound(self) -> float:
        """|released - exact| <= E + Z sigma + grid / 2 (probability 1 - P_TAIL per value)."""
        return self.E + Z * self.sigma + self.grid / 2


def ckks_logit_bound(model_weights: np.ndarray, preset: str = "aggregate",
                     flood_std: float = 0.0, sigmoid: bool = False) -> float:
    """|logit - exact| on ``ckks`` inference (no release step: the data owner decrypts).

    The CKKS error of the linear combination (and of the encrypted sigmoid) is within the
    preset's stated conservative bound ``Preset.error_bound(weight_l1=||w||_1)``; the model
    owner's flood adds a fresh public-key encryption (a second ``error_bound()``) of Gaussian
    noise with std ``flood_std``, within ``Z flood_std`` except with probability P_TAIL.
    """
    p = ckks.get_preset(preset)
    l1 = float(np.abs(np.asarray(model_weights, dtype=float)).sum())
    e = p.error_bound(weight_l1=l1, sigmoid=sigmoid) + (p.error_bound() if flood_std else 0.0)
    return e + Z * flood_std


def ckks_kept_key_bound(model_weights: np.ndarray, preset: str = "aggregate",
                        flood_std: float = 0.0, sigmoid: bool = False) -> float:
    """|logit - exact| on ``ckks`` inference run by party nodes, whose data owner keeps its key
    pair (:mod:`smpc.ckks.keycache`) and so releases every decryption itself
    (:meth:`smpc.ckks.KeyHolder.release` with the preset's defaults).

    :func:`ckks_logit_bound`, with the model owner's flood (std ``flood_std``) and the data
    owner's release flood (std ``sigma_r``) independent Gaussians: their sum is Gaussian with
    std ``hypot(flood_std, sigma_r)``, within Z of it except with probability P_TAIL; the
    release then rounds to its grid ``g``, which moves a value by at most ``g / 2``.
    """
    p = ckks.get_preset(preset)
    rel = ckks.release_parameters(p)
    l1 = float(np.abs(np.asarray(model_weights, dtype=float)).sum())
    e = p.error_bound(weight_l1=l1, sigmoid=sigmoid) + (p.error_bound() if flood_std else 0.0)
    return e + Z * math.hypot(flood_std, rel.flood_std) + rel.grid / 2


def ss_logit_bound(model_weights: np.ndarray, intercept: float, X: np.ndarray,
                   frac_bits: int = DEFAULT_FRAC_BITS) -> np.ndarray:
    """Per-row |logit - exact| on ``ss`` inference (:mod:`smpc.linear`, README "Inference").

    Features and weights are encoded with f bits (error e = 2^-(f+1) each) and the product is
    revealed untruncated at 2f bits, the intercept encoded at 2f bits (error 2 e^2):
    ``sum_j (x_j + dx)(w_j + dw) - x_j w_j`` is within ``(||x||_1 + ||w||_1) e + d e^2``.
    Decoding at 2f bits is exact below 2^53; the float64 reference ``X w + b`` is within
    ``gamma(d + 1) (|X| |w| + |b|)``.
    """
    X = np.asarray(X, dtype=float)
    w = np.asarray(model_weights, dtype=float)
    e = 2.0 ** -(frac_bits + 1)
    d = X.shape[1]
    enc = (np.abs(X).sum(axis=1) + np.abs(w).sum()) * e + d * e * e + 2 * e * e
    return enc + gamma(d + 1) * (np.abs(X) @ np.abs(w) + abs(intercept))


def logit_bound_to_probability(bound: np.ndarray | float) -> np.ndarray | float:
    """The sigmoid is 1/4-Lipschitz: a logit bound b gives a probability bound b / 4."""
    return bound / 4.0


# ------------------------------------------------------------------------- aggregates


@dataclass(frozen=True)
class Backend:
    """Per-value error bounds of the summed aggregates a statistic is finished from."""

    name: str
    parties: int
    frac_bits: int = DEFAULT_FRAC_BITS
    preset: str = "aggregate"

    @property
    def release(self) -> Release:
        return Release.of(self.preset)

    def pass1(self) -> float:
        """A summed pass-1 aggregate (count, column sum): |error| bound."""
        if self.name == "ss":
            return self.parties * 2.0 ** -(self.frac_bits + 1)
        return self.release.bound

    def pass2_per_row(self, n: int) -> float:
        """A pass-2 centred moment as the finisher uses it (divided by N): |error| bound, per
        unit of the public scale (:meth:`moment_scale`)."""
        if self.name == "ss":
            moment_bits = min(self.frac_bits + 8, 30)  # StatSpec.moment_codec
            return self.parties * 2.0 ** -(moment_bits + 1)
        return self.release.bound / n

    def moment_scale(self, X: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Upper bound of the public scale ``c_j`` of the moment pass (exact answers).

        :func:`smpc.stats.bounds.choose_scale`: ``c_j = 2^ceil(log2 sqrt(U_j / T))``, ``U_j`` =
        released spread + its bound, so ``U_j <= S_j + 2 e`` with ``S_j = sum (x_j - s_j)^2 / D
        <= (sum (x_j - mean_j)^2 + n t_j^2) (1 + 2 gamma(n)) / D`` and ``e`` the pass-1 bound.
        A pass-2 error of ``e2`` per scaled moment is ``e2 c_i c_j`` in the data's units.  On
        ``ss`` ``c_j <= 1`` (kept at 1 here: the unscaled bound still holds).
        """
        if self.name == "ss":
            return np.ones(X.shape[1])
        n = X.shape[0]
        spread = (((X - X.mean(axis=0)) ** 2).sum(axis=0) + n * t**2) * (1 + 2 * gamma(n))
        upper = spread * (1 + 1e-9) + 2 * self.pass1()
        return np.exp2(np.ceil(0.5 * np.log2(upper / TARGET[SmpcBackend.CKKS])))

    def count_exact(self) -> bool:
        """Counts are exact: ss encodes whole numbers; ckks rounds, exact while bound < 1/2."""
        return self.name == "ss" or self.release.bound < 0.5


class Moments:
    """Tolerances of every moment statistic of the pooled rows ``X`` (n x k) on a backend."""

    def __init__(self, X: np.ndarray, backend: Backend, ddof: int = 1) -> None:
        self.X = np.asarray(X, dtype=float)
        if self.X.ndim == 1:
            self.X = self.X[:, None]
        self.b = backend
        self.ddof = ddof
        self.n, self.k = self.X.shape
        n = self.n
        absx = np.abs(self.X)
        self.sum_tol = backend.pass1() + 2 * gamma(n) * absx.sum(axis=0)
        self.mean_tol = self.sum_tol / n + 2 * U * np.abs(self.X.mean(axis=0))
        # |mean - shift|: the released mean rounded to the 2^-f grid
        self.t = self.mean_tol + 2.0 ** -(backend.frac_bits + 1)
        dev = np.abs(self.X - self.X.mean(axis=0)).max(axis=0) + self.t  # max |x - s|
        c = backend.moment_scale(self.X, self.t)
        e2 = backend.pass2_per_row(n)
        self.e1 = e2 * c + 2 * gamma(n + 1) * dev
        self.e2 = e2 * np.outer(c, c) + 2 * gamma(n + 2) * np.outer(dev, dev)
        t, e1 = self.t, self.e1
        self.cov_tol = (self.e2 + np.outer(e1, t) + np.outer(t, e1) + np.outer(e1, e1)) \
            * n / (n - ddof)
        self.cov = np.atleast_2d(np.cov(self.X, rowvar=False, ddof=ddof))

    @property
    def pass2_mean_tol(self) -> np.ndarray:
        """The mean a two-pass statistic reports (shift + d): off by d's error e1."""
        return self.e1

    @property
    def var_tol(self) -> np.ndarray:
        return np.diag(self.cov_tol).copy()

    @property
    def std_tol(self) -> np.ndarray:
        """|sqrt(a) - sqrt(b)| <= |a - b| / sqrt(b) for a >= 0 (b the exact variance)."""
        return self.var_tol / np.sqrt(np.diag(self.cov))

    @property
    def corr_tol(self) -> np.ndarray:
        """Worst case of (c + a) / sqrt((v_i + b)(v_j + c')) over the error box.

        The correlation is monotone in each of the three perturbations separately (its
        partial derivatives keep their sign while the variances stay positive), so its
        extremes over the box lie at the 8 corners -- exact, not first-order.  Plus 8
        float64 roundings (division, square root, products, and numpy's own).
        """
        C, D = self.cov, self.cov_tol
        out = np.zeros_like(C)
        for i, j in itertools.product(range(self.k), repeat=2):
            if i == j:
                out[i, j] = 8 * U
                continue
            assert C[i, i] > D[i, i] and C[j, j] > D[j, j], "variance not resolved"
            r = C[i, j] / math.sqrt(C[i, i] * C[j, j])
            worst = max(abs((C[i, j] + a) / math.sqrt((C[i, i] + b) * (C[j, j] + c)) - r)
                        for a, b, c in itertools.product((-D[i, j], D[i, j]),
                                                         (-D[i, i], D[i, i]),
                                                         (-D[j, j], D[j, j])))
            out[i, j] = worst + 8 * U
        return out

    def linreg_tol(self) -> tuple[np.ndarray, float, float]:
        """(coefficient bounds, intercept bound, R^2 bound): the last column is the target.

        beta = A^-1 b with A the features' covariance and b their covariance with the
        target, perturbed by at most D (``cov_tol``) elementwise.  Exactly,
        ``d beta = (I + A^-1 dA)^-1 A^-1 (db - dA beta)``; with ``w = |A^-1| (D_b + D_A
        |beta|)`` and ``rho = || |A^-1| D_A ||_inf < 1`` the Neumann series gives
        ``|d beta| <= w + rho / (1 - rho) max(w)``.  The intercept ``m_y - m_x . beta``
        adds the reported means' errors; ``R^2 = b . beta / s_yy`` is bounded from the
        perturbed numerator and denominator.  Plus float64 terms (solve and products:
        ``gamma(4k^2)`` relative to the magnitudes).
        """
        k = self.k - 1
        C, D = self.cov, self.cov_tol
        A, bvec, syy = C[:k, :k], C[:k, k], C[k, k]
        DA, Db, Dyy = D[:k, :k], D[:k, k], D[k, k]
        Ainv = np.linalg.inv(A)
        beta = Ainv @ bvec
        absinv = np.abs(Ainv)
        rho = float(np.max((absinv @ DA).sum(axis=1)))
        assert rho < 0.5, "covariance too uncertain for a bound"
        w = absinv @ (Db + DA @ np.abs(beta))
        fl = gamma(4 * self.k * self.k)
        beta_tol = w + rho / (1 - rho) * w.max() + fl * (absinv @ np.abs(bvec))
        means = np.abs(self.X.mean(axis=0)) + self.e1
        e_mean = self.e1
        intercept_tol = float(e_mean[k] + e_mean[:k] @ (np.abs(beta) + beta_tol)
                              + means[:k] @ beta_tol + fl * (means[:k] @ np.abs(beta) + means[k]))
        q = float(bvec @ beta)
        dq = float(Db @ (np.abs(beta) + beta_tol) + np.abs(bvec) @ beta_tol)
        assert syy > Dyy
        r2_tol = dq / (syy - Dyy) + abs(q) * Dyy / (syy * (syy - Dyy)) + fl * abs(q) / syy
        return beta_tol, intercept_tol, r2_tol


def quantile_tol(bounds: Sequence[float], resolution: int) -> float:
    """Within one fine-histogram bin of numpy's inverted-CDF quantile (:mod:`smpc.stats`).

    Plus float64 rounding of the bin edges (``np.linspace``) and of the interpolation inside
    the bin: a few ulps of the bounds' magnitude, ``8 u max(|lo|, |hi|)``.
    """
    lo, hi = float(bounds[0]), float(bounds[1])
    return (hi - lo) / resolution + 8 * U * max(abs(lo), abs(hi))


def assert_within(got, want, tol, what: str = "") -> None:
    """|got - want| <= tol elementwise, with the worst ratio in the message."""
    got = np.asarray(got, dtype=float)
    want = np.asarray(want, dtype=float)
    tol = np.broadcast_to(np.asarray(tol, dtype=float), want.shape)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    err = np.abs(got - want)
    ok = err <= tol
    assert np.all(ok), (f"{what}: max |error| / tolerance = {np.max(err / tol):.3g} "
                        f"(error {err[~ok].ravel()[:4]}, tolerance {tol[~ok].ravel()[:4]})")
