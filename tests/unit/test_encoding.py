"""Fixed-point codec over Z_2^64: round trip, range checks, signed decode.

Tolerances (smpc.encoding docstring): encoding rounds x 2^f to the nearest integer, so a round
trip is off by at most 2^-(f+1); the scaling by 2^f and the division by it are exact in
float64, and the int64 -> float64 conversion in ``decode`` is exact below 2^53 and otherwise
rounds once (relative 2^-53).
"""

import numpy as np
import pytest

from smpc.encoding import EncodingRangeError, FixedPoint


@pytest.mark.parametrize("f", [0, 8, 16, 24])
def test_round_trip_within_half_ulp(f):
    codec = FixedPoint(f)
    rng = np.random.default_rng(1)  # test data only, not secret
    x = rng.uniform(-1e6, 1e6, 10_000)
    err = np.abs(codec.decode(codec.encode(x)) - x)
    assert np.abs(x).max() * 2.0**f < 2.0**53  # decode converts exactly: no float term
    assert err.max() <= 2.0 ** -(f + 1)


def test_negative_values_are_twos_complement():
    codec = FixedPoint(16)
    enc = codec.encode(np.array([-1.0]))
    assert enc.dtype == np.uint64
    assert int(enc[0]) == 2**64 - 2**16
    assert codec.decode(enc)[0] == -1.0


def test_values_just_inside_the_bound_survive_and_outside_raise():
    codec = FixedPoint(16)
    bound = codec.max_abs()
    inside = np.array([np.nextafter(bound, 0), -np.nextafter(bound, 0)])
    # near 2^47 x 2^16 = 2^63 the int64 -> float64 conversion may round: 2^-53 |x| = 0.016
    err = np.abs(codec.decode(codec.encode(inside)) - inside)
    assert np.all(err <= 2.0**-17 + 2.0**-53 * np.abs(inside))
    with pytest.raises(EncodingRangeError, match="outside the fixed-point range"):
        codec.encode(np.array([0.0, bound]))
    with pytest.raises(EncodingRangeError, match=r"-1\.40737e\+14"):
        codec.encode(np.array([-bound]))


def test_headroom_shrinks_the_bound_so_sums_cannot_wrap():
    codec = FixedPoint(16)
    x = codec.max_abs() / 2.5
    codec.encode(np.array([x]), headroom=2)
    with pytest.raises(EncodingRangeError, match="headroom for 3 terms"):
        codec.encode(np.array([x]), headroom=3)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(bad):
    with pytest.raises(EncodingRangeError, match="not a finite number"):
        FixedPoint().encode(np.array([1.0, bad]))


def test_product_of_encodings_decodes_with_double_fraction_bits():
    codec = FixedPoint(16)
    a, b = codec.encode(np.array([-3.5])), codec.encode(np.array([2.25]))
    assert codec.decode(a * b, frac_bits=32)[0] == -7.875


def test_frac_bits_out_of_range_is_refused():
    with pytest.raises(ValueError, match="frac_bits"):
        FixedPoint(40)
