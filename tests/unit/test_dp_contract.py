"""smpc.dp's stated contracts at their edges: refusals, exact formulas, the sampler's domain.

Each test pins one documented behaviour that the broader DP tests (``test_dp.py``) pass
through without deciding it, found by mutation testing (``python -m tests.mutation run
--target dp``): a budget field of the wrong type or at zero, the delta a composed cost keeps,
KLS21's tau at a scale where it matters, the noise sampler's documented scale range, the
ring-overflow refusal when the wrapped sum looks small, and the shape of a bounds map.
Expected values are computed here from the papers' formulas, not by asking the code.
"""

import math

import numpy as np
import pytest

from smpc import dp
from smpc.encoding import EncodingRangeError
from smpc.errors import InputError


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"epsilon": "1.0", "delta": 1e-6}, "epsilon must be a positive number"),
    ({"epsilon": 1.0, "delta": "1e-6"}, "delta must be a number"),
    ({"epsilon": 1.0, "delta": True}, "delta must be a number"),
    ({"epsilon": True, "delta": 1e-6}, "epsilon must be a positive number"),
    ({"epsilon": 0.0, "delta": 1e-6}, "epsilon must be a positive finite number"),
    ({"epsilon": 0, "delta": 1e-6}, "epsilon must be a positive finite number"),
])
def test_budget_fields_of_the_wrong_type_or_zero_are_refused(kwargs, match):
    """A budget that is not a number (a string that ``float`` would accept, a bool) or an
    epsilon of 0 is refused by name; accepting "1e-6" as a delta, or epsilon 0 (a request the
    plan cannot calibrate: rho 0, infinite noise scale), would let a malformed request reach the
    ledger."""
    with pytest.raises(InputError, match=match):
        dp.cost_from_request(**kwargs)
    with pytest.raises(InputError, match=match):
        dp.DPRequest(**kwargs)


def test_delta_from_rho_refuses_a_non_number_epsilon():
    """``delta_from_rho`` reads epsilon as a number, never as a string or bool."""
    for bad in ("1.0", True, None):
        with pytest.raises(InputError, match="epsilon must be a number"):
            dp.delta_from_rho(0.1, bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="non-negative finite"):
        dp.delta_from_rho(0.1, -0.5)
    assert 0.0 < dp.delta_from_rho(0.1, 0) < 1.0  # epsilon 0 is a valid (epsilon, delta) view


def test_a_sum_of_costs_keeps_the_first_delta_and_shows_epsilon_there():
    """``a + b`` adds rho and keeps ``a``'s delta, else ``b``'s (``PrivacyCost.__add__``).

    The delta only says where the epsilon view is shown; a sum that took the other
    operand's delta (or dropped it) would report the total at another delta than the one
    the first request was made at.  The epsilon is checked against CKS20 Prop. 12 computed
    here by brute force over the Renyi order (as in ``test_dp.cks_epsilon``).
    """
    first, second = dp.PrivacyCost(0.1, 1e-5), dp.PrivacyCost(0.2, 1e-6)
    assert (first + second).delta == 1e-5
    assert (second + first).delta == 1e-6
    assert (dp.PrivacyCost(0.1) + second).delta == 1e-6
    assert (second + dp.PrivacyCost(0.1)).delta == 1e-6
    assert (dp.PrivacyCost(0.1) + dp.PrivacyCost(0.2)).delta is None
    total = dp.compose([dp.PrivacyCost(0.05), first, second])
    assert total.rho == pytest.approx(0.35, rel=1e-12)
    assert total.delta == 1e-5
    a = np.exp(np.linspace(np.log(1.0001), np.log(1e6), 200_000))
    cks = float(np.min(a * 0.35 + np.log1p(-1 / a) - (np.log(1e-5) + np.log(a)) / (a - 1)))
    assert total.epsilon == pytest.approx(cks, rel=1e-6)


def test_kls_tau_is_the_papers_sum():
    """KLS21 Prop. 14: ``tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 sigma^2 k / (k + 1))``.

    At share scales below one lattice unit tau is not negligible (0.85 for sigma = 1/2,
    two honest shares), so a wrong constant in the exponent changes the calibration of
    small shares; the values are the formula evaluated by hand.
    """
    assert dp.kls_tau(0.5, 2) == pytest.approx(10 * math.exp(-math.pi**2 / 4), rel=1e-12)
    assert dp.kls_tau(0.5, 3) == pytest.approx(
        10 * (math.exp(-math.pi**2 / 4) + math.exp(-math.pi**2 / 3)), rel=1e-12)
    assert dp.kls_tau(0.3, 4) == pytest.approx(10 * sum(
        math.exp(-2 * math.pi**2 * 0.09 * k / (k + 1)) for k in (1, 2, 3)), rel=1e-12)
    assert dp.kls_tau(0.5, 1) == 0.0  # one honest share: a discrete Gaussian, no correction


def discrete_gaussian_variance(scale: float) -> float:
    """Exact variance of N_Z(0, scale^2): ``sum x^2 e^{-x^2/2s^2} / sum e^{-x^2/2s^2}``."""
    x = np.arange(-60, 61, dtype=np.float64)
    w = np.exp(-(x**2) / (2 * scale**2))
    return float(np.sum(x**2 * w) / np.sum(w))


def test_the_sampler_accepts_its_whole_documented_scale_range():
    """``sample_discrete_gaussian`` takes any scale in ``(0, 2^55]`` lattice units.

    At scale 1/2 (below one lattice unit, inside the documented range) the draws follow the
    discrete Gaussian: mean 0 and variance ``v = 0.2150`` (its exact value, summed here).
    Check: 20,000 draws; the sample variance has sd ``sqrt((mu4 - v^2) / n)`` with ``mu4``
    the exact fourth moment; a band of 5.3 sd (two-sided false-positive rate 1.2e-7) for
    the variance and 5.3 sd for the mean.  A sampler refusing scales at or below 1 fails
    outright; one drawing at scale 1 instead (variance 1.00) is 265 sd (0.003) away.
    """
    scale, n = 0.5, 20_000
    draws = dp.sample_discrete_gaussian(scale, n).astype(np.float64)
    x = np.arange(-60, 61, dtype=np.float64)
    w = np.exp(-(x**2) / (2 * scale**2))
    w /= w.sum()
    v = float(np.sum(x**2 * w))
    mu4 = float(np.sum(x**4 * w))
    assert v == pytest.approx(discrete_gaussian_variance(scale))
    z = 5.3
    assert abs(draws.var() - v) <= z * math.sqrt((mu4 - v**2) / n)
    assert abs(draws.mean()) <= z * math.sqrt(v / n)
    top = dp.sample_discrete_gaussian(2.0**55, 2)  # the documented upper end
    assert top.dtype == np.int64 and top.shape == (2,)
    for bad in (0.0, -1.0, 2.0**55 * (1 + 2.0**-50), math.inf, math.nan):
        with pytest.raises(InputError, match="noise scale"):
            dp.sample_discrete_gaussian(bad, 1)


def test_ring_overflow_is_refused_even_when_the_wrapped_sum_looks_small():
    """``add_ring_noise`` refuses any int64 overflow of value + noise, not only large sums.

    ``(2^63 - 1) + (2^63 - 1)`` wraps to ``-2``, far inside the range bound, so only the
    overflow test sees it; without it the party would share ``-2`` ulps as its noisy
    aggregate.  The mirror case (two large negatives wrapping to a small positive) too.
    """
    top = np.array([2**63 - 1], dtype=np.int64)
    with pytest.raises(EncodingRangeError, match="plus its privacy noise"):
        dp.add_ring_noise(top.view(np.uint64), top, headroom=1)
    low = np.array([-(2**63) + 1], dtype=np.int64)
    with pytest.raises(EncodingRangeError, match="plus its privacy noise"):
        dp.add_ring_noise(low.view(np.uint64), np.array([-(2**63) + 2], dtype=np.int64),
                          headroom=1)


@pytest.mark.parametrize("bounds", [
    {"": (0, 1)}, {5: (0, 1)}, {"a": "12"}, {"a": b"12"}, {"a": (0, 1, 2)}, {"a": 5},
])
def test_a_malformed_bounds_map_is_refused(bounds):
    """Bounds are keyed by non-empty column names and are pairs of numbers: a two-character
    string such as "12" is not the pair (1, 2), and a nameless column cannot be clipped."""
    with pytest.raises(InputError, match="bounds"):
        dp.DPRequest(rho=0.1, bounds=bounds)


def test_the_accounting_does_not_import_scikit_learn():
    """``opendp.prelude`` imports ``opendp.extras.sklearn`` and, where it is installed,
    scikit-learn and SciPy (3.6 s of every node's start-up); the accounting imports only the
    OpenDP modules it uses -- and still converts (checked in a fresh interpreter)."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from smpc.dp import accounting, noise\n"
            "rho = accounting.rho_from_epsilon(1.0, 1e-6)\n"
            "assert 0 < rho < 1, rho\n"
            "assert noise.sample_discrete_gaussian(1.0, 8).shape == (8,)\n"
            "bad = sorted(m for m in sys.modules if m.startswith(('sklearn', 'opendp.extras')))\n"
            "assert not bad, bad\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
