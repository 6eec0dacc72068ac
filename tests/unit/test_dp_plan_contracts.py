"""The DP planning and accounting functions keep their stated contracts at their edges.

Each test pins one sentence of a docstring that the end-to-end DP tests do not reach: a
refusal with its own message, the exact arithmetic of a calibration or a release, the
direction of a conversion.  (Written against the survivors of the ``dp`` mutation run:
every assertion here fails for one of them.)
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from smpc import dp, stats
from smpc.dp import planning
from smpc.errors import InputError

BOUNDS = {"x": (0.0, 10.0), "y": (-5.0, 5.0)}


def request(rho: float = 0.5) -> dp.DPRequest:
    return dp.DPRequest(rho=rho, bounds=BOUNDS)


def test_costs_add_only_to_costs():
    """``a + b`` composes two costs; with anything else Python's own TypeError (the operator
    declines, it does not return None or fail inside)."""
    a, b = dp.PrivacyCost(0.1, 1e-6), dp.PrivacyCost(0.2)
    assert (a + b).rho == pytest.approx(0.3) and (a + b).delta == 1e-6
    for other in (1, 0.5, "rho", None):
        with pytest.raises(TypeError):
            a + other  # type: ignore[operator]


@pytest.mark.parametrize("rho", [0.25, 1.0, 2.0, 4.0])
def test_epsilon_of_a_positive_rho_lies_between_rho_and_the_bun_steinke_bound(rho):
    """CKS20's conversion is at least rho and at most rho + 2 sqrt(rho ln(1/delta)); only
    rho = 0 costs nothing."""
    delta = 1e-6
    eps = dp.epsilon_from_rho(rho, delta)
    assert rho < eps <= rho + 2.0 * math.sqrt(rho * math.log(1.0 / delta)) + 1e-9
    assert dp.epsilon_from_rho(0.0, delta) == 0.0


def test_calibration_refuses_a_budget_too_large_for_the_lattice_and_accepts_the_edge():
    """``_calibrate``: a per-party share below one lattice step is refused; a share of 1.73
    steps is accepted, with ``(Delta/sigma + sqrt(d) tau)^2 / 2 <= rho`` and sigma within a
    hair of Delta / sqrt(2 rho) (tau is tiny there)."""
    with pytest.raises(InputError, match="below one lattice step"):
        planning._calibrate(1.0, 2.0, 1, 3)        # sigma0 = 0.5, share 0.29 steps
    sigma = planning._calibrate(3.0, 0.5, 1, 3)   # sigma0 = 3, share 1.73 steps
    tau = planning.kls_tau(sigma / math.sqrt(3), 3)
    assert (3.0 / sigma + tau) ** 2 / 2 <= 0.5 + 1e-12
    assert sigma == pytest.approx(3.0, rel=1e-3)


def test_calibration_at_one_lattice_step_still_covers_the_kls_term():
    """At a share of exactly one lattice step KLS21's tau is about 5e-4 -- no longer
    negligible: the returned sigma must satisfy the bound with tau at its *own* share
    (tau decreases in sigma; the code evaluates it at the smaller sigma0), and a share of 0.9
    steps is refused even though the room left is ample."""
    honest, dim, rho = 3, 4, 0.5
    sens = math.sqrt(honest)                       # sigma0 = sqrt(3): a share of 1.0 step
    sigma = planning._calibrate(sens, rho, dim, honest)
    tau = planning.kls_tau(sigma / math.sqrt(honest), honest)
    assert tau > 1e-4
    assert (sens / sigma + math.sqrt(dim) * tau) ** 2 / 2 <= rho * (1 + 1e-12)
    with pytest.raises(InputError, match="below one lattice step"):
        planning._calibrate(0.9 * math.sqrt(2), rho, 1, 2)  # share 0.9 steps


def test_the_divisor_is_checked_with_its_own_sentences():
    for bad, message in (("ten", "divisor must be a number"),
                         (None, "divisor must be a number"),
                         (0.0, "divisor must be a positive finite number"),
                         (math.inf, "divisor must be a positive finite number"),
                         (-2.0, "divisor must be a positive finite number")):
        with pytest.raises(InputError, match=message):
            planning._check_divisor(bad, 2)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="only pass 2"):
        planning._check_divisor(2.0, 1)
    assert planning._check_divisor("4", 2) == 4.0


def test_plan_needs_a_request():
    spec = stats.StatSpec("var", ("x", "y"))
    with pytest.raises(InputError, match="plan needs a DPRequest"):
        dp.plan(spec, {"rho": 0.5}, 3)  # type: ignore[arg-type]


def test_released_noise_of_pass_two_shrinks_with_the_public_divisor():
    """Pass 2 is divided by the public count: every sigma, and the release's unknown noise,
    scale by 1 / divisor."""
    p = dp.plan(stats.StatSpec("var", ("x", "y")), request(), 3)
    base = p.release_noise_std(2)
    # (not exactly: the rounding floor of each share does not scale; here it is 1e-8 of it)
    assert p.release_noise_std(2, divisor=8.0) == pytest.approx(base / 8.0, rel=1e-6)
    assert p.sigmas(2, divisor=8.0) == pytest.approx(tuple(s / 8.0 for s in p.sigmas(2)),
                                                     rel=1e-6)
    # a shift narrows pass 2 only; pass 1 (count and sums) does not depend on it
    assert p.sensitivities(1, shift=np.array([5.0, 0.0])) == p.sensitivities(1)
    assert p.sensitivities(2, shift=np.array([5.0, 0.0])) < p.sensitivities(2)


def test_party_noise_is_drawn_on_the_lattice_it_is_asked_for():
    """On ``ss`` a finer ``frac_bits`` means proportionally more ulps of noise: the draws'
    spread follows the lattice sigma of the bits given (3,000 draws: the standard error of a
    spread estimate is 1.3 %; the band is 6 %, and the wrong lattice is 16x off)."""
    p = dp.plan(stats.StatSpec("sum", ("x",)), request(), 3)
    pp = p.pass_plan(1)
    bits = pp.lattice_bits + 4
    (sigma,) = [s for s, b in zip(p.lattice_sigmas(1, frac_bits=bits), pp.blocks, strict=True)
                if b.name == "sums"]
    at = next(b.start for b in pp.blocks if b.name == "sums")
    sums = np.array([dp.party_noise(p, 1, pp.length, "ss", frac_bits=bits)[at]
                     for _ in range(3_000)], dtype=np.float64)
    share = sigma / math.sqrt(p.min_honest)
    assert np.std(sums) == pytest.approx(share, rel=0.06)


def test_noisy_ckks_values_are_the_grid_rounded_values_plus_the_noise_given():
    p = dp.plan(stats.StatSpec("sum", ("x",), backend="ckks"), request(), 3)
    grid = 2.0 ** -p.pass_plan(1).lattice_bits
    values = np.array([1.0 + grid / 3, 7.25, -grid * 2.6])
    noise = np.array([3 * grid, -5 * grid, 0.0])
    got = dp.noisy_ckks_values(p, values, noise)
    np.testing.assert_array_equal(got, np.round(values / grid) * grid + noise)
    ss = dp.plan(stats.StatSpec("sum", ("x",)), request(), 3)
    with pytest.raises(InputError, match="for the ckks backend"):
        dp.noisy_ckks_values(ss, values, noise)


def test_a_bound_that_is_not_a_pair_of_numbers_is_named_as_such():
    for pair in ("ab", [1.0, 2.0, 3.0], [4.0]):
        with pytest.raises(InputError, match=r"the bounds of column 'x' must be a pair"):
            dp.DPRequest(rho=0.5, bounds={"x": pair})  # type: ignore[dict-item]
    for pair in (["lo", "hi"], [None, 1.0], [0.0, {}]):
        with pytest.raises(InputError, match=r"the bounds of column 'x' must be numbers"):
            dp.DPRequest(rho=0.5, bounds={"x": pair})  # type: ignore[dict-item]


def test_a_private_histogram_skipping_gaps_has_a_missing_cell_per_column():
    """bins + below + above + the missing cell, per column, after the count; one row moves
    the count and one cell per column, so the sensitivity stays sqrt(1 + k)."""
    spec = stats.StatSpec("histogram", ("x", "y"), edges=(0.0, 1.0, 2.0, 5.0), missing="skip")
    p = dp.plan(spec, request(), 3)
    (block,) = p.pass_plan(1).blocks
    assert p.pass_plan(1).length == 1 + 2 * (3 + 2 + 1)
    assert block.sensitivity == pytest.approx(math.sqrt(3))
    plain = dp.plan(stats.StatSpec("histogram", ("x", "y"), edges=(0.0, 1.0, 2.0, 5.0)),
                    request(), 3)
    assert plain.pass_plan(1).length == 1 + 2 * (3 + 2)


def test_the_shift_of_a_statistic_without_bounds_and_mismatched_noise_are_refused():
    hist = dp.plan(stats.StatSpec("histogram", ("x",), edges=(0.0, 1.0)), request(), 3)
    with pytest.raises(InputError, match="has no clipping bounds"):
        dp.postprocess_shift(hist, np.array([1.0]))
    p = dp.plan(stats.StatSpec("sum", ("x",), backend="ckks"), request(), 3)
    with pytest.raises(InputError, match=r"noise of shape \(1,\) for values of shape \(3,\)"):
        dp.noisy_ckks_values(p, np.ones(3), np.zeros(1))  # would broadcast silently


def test_ring_noise_given_as_integral_floats_is_taken_as_ulps():
    """``add_ring_noise`` adds int64 ulps; noise handed over as integral floats is cast to
    them, never reinterpreted bit for bit (the sum is the exact ring sum)."""
    enc = np.array([5, 2**40, 0], dtype=np.uint64)
    got = dp.add_ring_noise(enc, np.array([3.0, -5.0, -1.0]), headroom=3)
    want = (enc.view(np.int64) + np.array([3, -5, -1], dtype=np.int64)).view(np.uint64)
    np.testing.assert_array_equal(got, want)


def test_a_lattice_the_fixed_point_codec_cannot_hold_is_refused():
    p = dp.plan(stats.StatSpec("sum", ("x",)), request(), 3)
    pp = p.pass_plan(1)
    for bits in (-1, 31, 40, 64):  # the codec holds 0..30 (products need 2 * bits < 63)
        with pytest.raises(InputError, match="frac_bits must be between 0 and 30"):
            dp.party_noise(p, 1, pp.length, "ss", frac_bits=bits)
    for bits in (20.5, True, "20"):
        with pytest.raises(InputError, match="frac_bits must be an integer"):
            dp.party_noise(p, 1, pp.length, "ss", frac_bits=bits)  # type: ignore[arg-type]


def test_the_headroom_of_the_ring_check_is_at_least_one_party():
    enc = np.zeros(2, dtype=np.uint64)
    for headroom in (0.5, 0.0, math.inf, math.nan):
        with pytest.raises(InputError, match="headroom must be a finite number >= 1"):
            dp.add_ring_noise(enc, np.zeros(2, dtype=np.int64), headroom=headroom)


def test_post_processing_never_writes_into_the_callers_sum():
    """``postprocess_pass1`` returns a new array: the noisy sum the caller holds (and may
    log or compare) keeps its value, and an integer sum is accepted too."""
    p = dp.plan(stats.StatSpec("var", ("x", "y")), request(), 3)
    summed = np.array([-4.0, 12.5, -3.0], dtype=np.float64)
    out = dp.postprocess_pass1(p, summed)
    assert out[0] == 2.0 and summed[0] == -4.0  # the count floored at ddof + 1, a copy
    np.testing.assert_array_equal(dp.postprocess_pass1(p, np.array([5, 1, 2])), [5.0, 1.0, 2.0])


def test_party_noise_takes_the_pass_length_as_an_integer_only():
    """A length that equals the pass's but is a bool or a float is refused, not coerced."""
    count = dp.plan(stats.StatSpec("count", ("x",)), request(), 3)
    assert count.pass_plan(1).length == 1
    total = dp.plan(stats.StatSpec("sum", ("x",)), request(), 3)
    n = total.pass_plan(1).length
    for plan_, length in ((count, True), (total, float(n)), (total, n + 1)):
        with pytest.raises(InputError, match="under differential privacy, not"):
            dp.party_noise(plan_, 1, length, "ss")  # type: ignore[arg-type]
    assert dp.party_noise(total, 1, np.int64(n), "ss").shape == (n,)


def test_passes_are_numbered_from_one():
    p = dp.plan(stats.StatSpec("var", ("x", "y")), request(), 3)
    assert [p.pass_plan(i).index for i in (1, 2)] == [1, 2]
    for bad in (0, 3, -1, True):
        with pytest.raises(InputError, match=r"has pass\(es\) 1\.\.2"):
            p.pass_plan(bad)  # type: ignore[arg-type]


def test_remaining_refusals_and_the_real_unit_sigmas():
    """A noise vector of the wrong shape is refused (not broadcast); a draw count must be a
    non-negative integer; a block's noise std in real units barely depends on the lattice
    asked for (only the rounding floor of a finer lattice is smaller)."""
    with pytest.raises(InputError, match=r"noise of shape \(1,\) for a vector of shape \(3,\)"):
        dp.add_ring_noise(np.zeros(3, dtype=np.uint64), np.zeros(1, dtype=np.int64),
                          headroom=3)
    for count in (True, 2.0, -1, "3"):
        with pytest.raises(InputError, match="count must be a non-negative integer"):
            dp.sample_discrete_gaussian(1.0, count)  # type: ignore[arg-type]
    p = dp.plan(stats.StatSpec("sum", ("x",)), request(), 3)
    finer = p.sigmas(1, frac_bits=p.pass_plan(1).lattice_bits + 4)
    assert finer == pytest.approx(p.sigmas(1), rel=0.01)
