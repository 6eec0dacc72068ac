"""The DP core at its edges: zero, the exact boundary of each check, the types it refuses.

Each test pins one boundary that a random test almost never reaches (found by the mutation
run of the ``dp`` target, README "Mutation testing"): an encoded value of exactly 0 with
noise of either sign (the ring-overflow test compares signs, and 0 is non-negative), a noisy
value exactly at the range bound, a request for zero noise draws, rho = 0 and the honest
count's type checks.  Every expected value is exact (integers and the definitions), so no
tolerance is involved.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from smpc import dp
from smpc.encoding import EncodingRangeError
from smpc.errors import InputError


@pytest.mark.parametrize("noise", [-3, -1, 0, 1, 3])
def test_noise_on_an_encoded_zero_is_no_overflow(noise: int) -> None:
    """An encoded 0 plus a few ulps of noise of either sign is that many ulps (mod 2^64),
    not an overflow: 0 counts as non-negative in the sign test (catches ``>=`` -> ``>`` in
    any sign of the overflow test, which flags 0 + noise as a wrap)."""
    enc = np.zeros(4, dtype=np.uint64)
    z = np.full(4, noise, dtype=np.int64)
    out = dp.add_ring_noise(enc, z, headroom=2.0)
    np.testing.assert_array_equal(out.view(np.int64), z)


def test_a_noisy_value_exactly_at_the_bound_is_refused() -> None:
    """The bound is exclusive: with headroom 2 a noisy value of exactly 2^62 could wrap when
    two parties add theirs, so it is refused; 2^62 - 512 (the float64 just below 2^62, the
    check compares in float64) is accepted (catches ``>=`` -> ``>`` at the bound)."""
    enc = np.array([2**62 - 1024], dtype=np.uint64)
    with pytest.raises(EncodingRangeError):
        dp.add_ring_noise(enc, np.array([1024], dtype=np.int64), headroom=2.0)
    out = dp.add_ring_noise(enc, np.array([512], dtype=np.int64), headroom=2.0)
    assert int(out.view(np.int64)[0]) == 2**62 - 512


def test_zero_draws_is_an_empty_sample() -> None:
    """Asking for 0 draws is valid (an empty block) and returns an empty int64 array; a
    negative count is refused (catches the count check moved to ``< 1``)."""
    out = dp.sample_discrete_gaussian(4.0, 0)
    assert out.shape == (0,) and out.dtype == np.int64
    with pytest.raises(InputError):
        dp.sample_discrete_gaussian(4.0, -1)


def test_rho_zero_means_no_loss_and_rho_one_does_not() -> None:
    """rho = 0 (nothing released) gives delta 0 at any epsilon and an effective rho of 0; a
    rho of 1 gives a delta strictly between 0 and 1 at epsilon 1 (the zCDP conversion is not
    short-circuited for rho other than 0)."""
    assert dp.delta_from_rho(0.0, 1.0) == 0.0
    assert dp.effective_rho(0.0, 3, 2) == 0.0
    delta = dp.delta_from_rho(1.0, 1.0)
    assert 0.0 < delta < 1.0
    # and the conversion is monotone: more epsilon, less delta
    assert dp.delta_from_rho(1.0, 3.0) < delta


@pytest.mark.parametrize("honest", [True, 2.0, -1, "2", None])
def test_the_honest_count_must_be_a_non_negative_integer(honest: object) -> None:
    """``honest`` is a count of parties: a boolean, a float, a negative number, a string or
    None is refused with one sentence (catches any ``or`` of the check turned into ``and``)."""
    with pytest.raises(InputError, match="honest must be a non-negative integer"):
        dp.effective_rho(0.1, 3, honest)  # type: ignore[arg-type]


def test_no_honest_share_means_no_guarantee() -> None:
    """With no unknown noise share the observer removes the noise: rho is infinite."""
    assert dp.effective_rho(0.1, 3, 0) == math.inf


@pytest.mark.parametrize("shift", [[0.5], [0.5, 1.0, 1.5], [math.nan, 1.0], [0.5, math.inf]])
def test_a_shift_of_the_wrong_length_or_not_finite_is_refused(shift: list[float]) -> None:
    """The second pass's widths need one finite shift per column: a shift of another length,
    or with a NaN or an infinity, is refused, not broadcast or propagated into the noise's
    sensitivity (catches the check deleted)."""
    with pytest.raises(InputError, match="the shift must be 2 finite number"):
        dp.pass2_widths([(0.0, 1.0), (0.0, 2.0)], np.array(shift))
    # and a good shift gives the largest distance to a bound, per column
    np.testing.assert_array_equal(dp.pass2_widths([(0.0, 1.0), (0.0, 2.0)], np.array([0.25, 2.0])),
                                  [0.75, 2.0])


@pytest.mark.parametrize("bounds", [[["x", [0, 1]]], "x=0:1", 3.0])
def test_bounds_that_are_not_a_map_are_one_sentence(bounds: object) -> None:
    """Clipping bounds must map column names to pairs: a list of pairs, a string or a number
    is refused with one sentence, not an AttributeError from deep inside (catches the type
    check deleted)."""
    with pytest.raises(InputError, match="bounds must map each column name to"):
        dp.DPRequest.from_json({"epsilon": 1.0, "delta": 1e-6, "bounds": bounds})
