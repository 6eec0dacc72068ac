"""Additive sharing: reconstruction, linearity, seed compression, uniformity."""

import math

import numpy as np
import pytest

from smpc import randomness, sharing
from smpc.encoding import FixedPoint


def chi_square_uniform_bytes(values: np.ndarray, byte_index: int) -> float:
    """Chi-square statistic of one byte of each uint64 against the uniform law."""
    byte = ((values >> np.uint64(8 * byte_index)) & np.uint64(0xFF)).astype(np.int64)
    observed = np.bincount(byte, minlength=256)
    expected = values.size / 256
    return float(((observed - expected) ** 2 / expected).sum())


def chi_square_critical(df: int, z: float = 4.265) -> float:
    """Wilson-Hilferty upper quantile of chi^2(df); z=4.265 is the 1e-5 tail."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


@pytest.mark.parametrize("n", [2, 3, 5])
def test_share_reconstruct(n):
    x = FixedPoint().encode(np.array([0.0, -1.5, 1e9, -1e9]))
    assert np.array_equal(sharing.reconstruct(sharing.share(x, n)), x)


def test_shares_are_linear():
    codec = FixedPoint()
    x, y = codec.encode(np.array([1.25, -7.0])), codec.encode(np.array([3.5, 2.0]))
    sx, sy = sharing.share(x, 3), sharing.share(y, 3)
    summed = [a + b for a, b in zip(sx, sy, strict=True)]
    assert np.allclose(codec.decode(sharing.reconstruct(summed)), [4.75, -5.0])
    scaled = [sharing.mul_public_int(s, -3) for s in sx]
    assert np.allclose(codec.decode(sharing.reconstruct(scaled)), [-3.75, 21.0])
    shifted = [
        sharing.add_public(s, codec.encode(np.array([1.0, 1.0])), i) for i, s in enumerate(sx)
    ]
    assert np.allclose(codec.decode(sharing.reconstruct(shifted)), [2.25, -6.0])


def test_seeded_sharing_reconstructs_and_is_deterministic_per_seed():
    x = FixedPoint().encode(np.linspace(-5, 5, 1000))
    s = sharing.share_with_seeds(x, 4, stream="session/x")
    assert len(s.seeds) == 4 and all(len(seed) == 16 for seed in s.seeds)
    assert np.array_equal(sharing.reconstruct(s.expanded()), x)
    again = sharing.expand_share(s.seeds[0], x.shape, "session/x")
    assert np.array_equal(again, s.expanded()[1])
    other_stream = sharing.expand_share(s.seeds[0], x.shape, "session/y")
    assert not np.array_equal(other_stream, again)


@pytest.mark.parametrize("which", [0, 1, 2])
def test_shares_of_a_fixed_input_are_uniform(which):
    """Every share of a constant secret passes a chi-square test on each byte."""
    secret = np.full(200_000, FixedPoint().encode(np.array([42.0]))[0], dtype=np.uint64)
    share_ = sharing.share(secret, 3)[which]
    crit = chi_square_critical(255)
    for byte_index in (0, 3, 7):
        assert chi_square_uniform_bytes(share_, byte_index) < crit


def test_seed_expanded_and_explicit_shares_are_uniform():
    secret = np.zeros(200_000, dtype=np.uint64)
    s = sharing.share_with_seeds(secret, 2, stream="u")
    crit = chi_square_critical(255)
    for share_ in s.expanded():
        assert chi_square_uniform_bytes(share_, 7) < crit


def test_the_uniformity_test_rejects_a_biased_generator():
    """The same test fails on shares drawn with modulo bias (so it can fail)."""
    secret = np.zeros(200_000, dtype=np.uint64)
    biased_mask = randomness.random_ring(secret.size) % np.uint64(3 * 2**62)
    share_ = secret - biased_mask
    assert chi_square_uniform_bytes(share_, 7) > chi_square_critical(255)


def test_random_below_has_no_modulo_bias():
    draws = randomness.random_below(3 * 2**62, 200_000)
    assert draws.max() < 3 * 2**62
    top = (draws >> np.uint64(62)).astype(np.int64)
    counts = np.bincount(top, minlength=4)
    assert counts[3] == 0
    expected = draws.size / 3
    stat = float(((counts[:3] - expected) ** 2 / expected).sum())
    assert stat < chi_square_critical(2)


def test_keystream_depends_on_seed_and_stream():
    a = randomness.expand(b"\x00" * 16, 8, "a")
    assert np.array_equal(a, randomness.expand(b"\x00" * 16, 8, "a"))
    assert not np.array_equal(a, randomness.expand(b"\x01" + b"\x00" * 15, 8, "a"))
    assert np.array_equal(randomness.expand(b"\x00" * 16, 16, "a")[:8], a)
    with pytest.raises(ValueError, match="16 bytes"):
        randomness.expand(b"short", 4)
