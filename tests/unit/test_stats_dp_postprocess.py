"""Under differential privacy the finished second moments are post-processed on both backends.

``smpc.dp.postprocess_covariance`` (nearest positive semi-definite matrix) is what makes a
private variance non-negative and a private correlation lie in [-1, 1]; the recipient (``ss``)
and the key holder (``ckks``) must apply it to every two-pass statistic they finish under DP.
Found by mutation testing: the accuracy tests of ``test_stats_dp.py`` use data whose true
covariance is far from singular, so the noisy matrix is PSD anyway and skipping the step went
unseen.
"""

import numpy as np
import pytest

from smpc import dp, stats

K = 24


@pytest.mark.parametrize("backend", ["ss", "ckks"])
def test_private_variances_of_constant_columns_are_never_negative(backend):
    """24 columns, every row 50 in each (true variances 0): every released variance is >= 0.

    Why this sees a skipped projection.  The unprojected variance of column j is
    ``(N2_j - 2 d_j N1_j) / D - N1_j^2 / D^2``: ``N2_j`` (its second-moment noise) and
    ``N1_j`` (its first-moment noise) are independent across columns and symmetric about 0,
    ``d_j`` (the centring error) depends only on pass 1, and the last term is <= 0; so given
    pass 1 each column is >= 0 with probability at most 1/2 (+ 1e-3 for the deterministic
    lattice rounding, <= 3/2 lattice units against noise scales of thousands), and all 24 are
    with probability at most 0.501^24 < 1e-7: the power against the bug.  With the
    projection the diagonal of a PSD matrix is a sum of non-negative terms, exactly >= 0: no
    false positive.
    """
    cols = tuple(f"c{j}" for j in range(K))
    request = dp.DPRequest(rho=1.0, bounds=dict.fromkeys(cols, (0.0, 100.0)))
    spec = stats.StatSpec("var", cols, backend=backend, dp=request)
    parts = [np.full((n, K), 50.0) for n in (40, 70, 90)]
    result, _ = stats.simulate(spec, parts)
    variances = np.asarray(result.value)
    assert variances.shape == (K,)
    assert np.all(variances >= 0.0), variances
    assert result.details["privacy"]["cost"]["rho"] == pytest.approx(1.0)


@pytest.mark.parametrize("backend", ["ss", "ckks"])
def test_under_dp_a_column_without_values_is_never_a_refusal(backend):
    """24 columns with no present value at all (every cell missing, ``missing="skip"``): under
    DP each column's count is a noisy ``n - missing``, raised to the floor by post-processing
    -- no decision may rest on the exact counts, or the refusal ("no present value") would be
    an oracle on them.  So the variance is released, never refused.

    Power against a shift computed as if exact (``dp_applied`` lost on the way to the public
    shift, found by mutation testing): each column's noisy count is ``0 + Z_j`` with ``Z_j``
    independent and symmetric about 0, below 1 with probability > 1/2, so at least one of 24
    columns is refused with probability > 1 - 2^-24.  No false positive: the DP path never
    raises on a count.
    """
    cols = tuple(f"c{j}" for j in range(K))
    request = dp.DPRequest(rho=1.0, bounds=dict.fromkeys(cols, (0.0, 100.0)))
    spec = stats.StatSpec("var", cols, backend=backend, dp=request, missing="skip")
    parts = [np.full((n, K), np.nan) for n in (40, 70, 90)]
    result, _ = stats.simulate(spec, parts)
    variances = np.asarray(result.value)
    assert variances.shape == (K,) and np.all(np.isfinite(variances))
    assert np.all(variances >= 0.0)
