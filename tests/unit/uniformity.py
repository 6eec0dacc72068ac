"""Chi-square tests that ring elements (``uint64``) are uniform, for the sharing and leak tests.

Every helper returns a chi-square statistic over 256 cells (255 degrees of
freedom); :func:`critical` is the Wilson-Hilferty upper quantile for the
normal deviate of ``ALPHA``.  For 255 degrees of freedom and ``ALPHA = 1e-9``
it is 414.92, whose exact tail probability is 9.3e-10 (checked once against
``scipy.stats.chi2.sf``; scipy is not imported here because it costs more
than every test of this kind put together), so a test that compares a
statistic with ``critical(255)`` rejects uniform data with probability at
most ``ALPHA``.

``ALPHA = 1e-9`` per statistic: a test file that computes ``k`` statistics on
truly uniform shares fails with probability at most ``k * 1e-9`` (union bound)
-- the shares come from the OS CSPRNG, which no test can seed, so this is the
honest false-positive rate.  The bugs these tests target (an unmasked value, a
reused mask, a constant) concentrate the tested byte on one or a few cells: for
``N`` samples on at most ``c`` of 256 cells the statistic is at least
``N * (256 / c - 1)``, which for the sample sizes used (``N >= 4096``) is
above 1e4 for every ``c <= 64`` while ``critical(255)`` is about 415, so
such a bug is rejected with probability 1 (a deterministic inequality, not a
tail bound).
"""

from __future__ import annotations

import math

import numpy as np

ALPHA = 1e-9
Z_ALPHA = 5.9978  # the standard normal deviate with upper tail ALPHA
MIN_SAMPLES = 4096


def chi_square_critical(df: int, z: float = 4.265) -> float:
    """Wilson-Hilferty upper quantile of chi^2(df); z=4.265 is the 1e-5 tail."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def critical(df: int) -> float:
    """Upper :data:`ALPHA` quantile of chi^2(df) (Wilson-Hilferty; see the module docstring)."""
    return chi_square_critical(df, Z_ALPHA)


def _chi_square(cells: np.ndarray, n_cells: int) -> float:
    observed = np.bincount(cells.astype(np.int64), minlength=n_cells)
    expected = cells.size / n_cells
    return float(((observed - expected) ** 2 / expected).sum())


def chi_square_uniform_bytes(values: np.ndarray, byte_index: int) -> float:
    """Chi-square statistic of one byte of each uint64 against the uniform law (df 255)."""
    values = np.asarray(values, dtype=np.uint64).ravel()
    byte = (values >> np.uint64(8 * byte_index)) & np.uint64(0xFF)
    return _chi_square(byte, 256)


def chi_square_joint_top_nibbles(u: np.ndarray, v: np.ndarray) -> float:
    """Chi-square of the pair (top 4 bits of u, top 4 bits of v) over 256 cells (df 255).

    Small if and only if (as far as 256 cells can tell) ``u`` and ``v`` are
    each uniform *and independent*: two equal or affinely related shares fail.
    """
    u = np.asarray(u, dtype=np.uint64).ravel()
    v = np.asarray(v, dtype=np.uint64).ravel()
    cells = ((u >> np.uint64(60)) << np.uint64(4)) | (v >> np.uint64(60))
    return _chi_square(cells, 256)


def assert_uniform(values: np.ndarray, what: str, byte_indices: tuple[int, ...] = (0, 7)) -> None:
    """Assert that the given bytes of ``values`` pass the chi-square test at :data:`ALPHA`."""
    values = np.asarray(values, dtype=np.uint64).ravel()
    assert values.size >= MIN_SAMPLES, f"{what}: only {values.size} samples"
    crit = critical(255)
    for b in byte_indices:
        stat = chi_square_uniform_bytes(values, b)
        assert stat < crit, f"{what}: byte {b} is not uniform (chi2 {stat:.0f} >= {crit:.0f})"


def assert_jointly_uniform(u: np.ndarray, v: np.ndarray, what: str) -> None:
    """Assert that ``u`` and ``v`` look uniform and independent (joint top nibbles, ALPHA)."""
    assert np.asarray(u).size >= MIN_SAMPLES, f"{what}: only {np.asarray(u).size} samples"
    stat = chi_square_joint_top_nibbles(u, v)
    crit = critical(255)
    assert stat < crit, f"{what}: not jointly uniform (chi2 {stat:.0f} >= {crit:.0f})"
