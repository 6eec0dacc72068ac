"""Additive sharing: reconstruction, linearity, seed compression, uniformity."""

import itertools

import numpy as np
import pytest

from smpc import randomness, sharing
from smpc.encoding import FixedPoint

from .uniformity import (
    assert_jointly_uniform,
    assert_uniform,
    chi_square_critical,
    chi_square_uniform_bytes,
)


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


# --------------------------------------------------------------------------- leaks
# False positives: each chi-square below is compared with its 1 - 1e-9 quantile
# (tests/unit/uniformity.py); power against the targeted bugs is 1 (the bug puts
# every sample of the tested byte on one or two cells).

SECRET = FixedPoint().encode(np.linspace(-31_415.9265, 27_182.8182, 50_000))


def test_explicit_share_is_masked_by_every_seed():
    """The share a party keeps is ``x - sum E(seed_k)``: uniform, and never ``x`` itself.

    Catches ``share_with_seeds`` forgetting to subtract the seeds' expansions
    (the explicit share would be the secret: a party's sum-share then carries
    its aggregate masked only by what its peers sent) or subtracting only one
    of the three (adding any one expansion back must still leave a uniform
    value).
    """
    s = sharing.share_with_seeds(SECRET, 3, stream="leak/explicit")
    assert not np.any(s.explicit == SECRET)
    assert_uniform(s.explicit, "explicit share")
    expansions = s.expanded()[1:]
    for k in range(3):
        partial = s.explicit + expansions[k]  # what is left if seed k was not subtracted
        assert_uniform(partial, f"explicit share without seed {k}")


def test_seeds_are_distinct_per_peer_and_per_call():
    """Every peer gets its own seed, and no seed comes back in a later sharing.

    Catches one seed given to every peer (any two peers could then rebuild
    each other's share, and with the recipient unmask the holder) and
    deterministic seeds (the same secret, stream and peer count shared 20
    times: 80 seeds, all different).
    """
    seeds = [seed for _ in range(20)
             for seed in sharing.share_with_seeds(SECRET[:8], 4, stream="leak/seeds").seeds]
    assert all(len(seed) == 16 for seed in seeds)
    assert len(set(seeds)) == 80


@pytest.mark.parametrize("seeded", [False, True])
def test_any_n_minus_1_shares_are_jointly_uniform(seeded):
    """Of 3 shares of a fixed secret, any 2 are jointly uniform and so are their differences.

    Catches correlated shares -- equal seeds for two peers (their expansions
    coincide), a share derived from another -- that would let fewer than all
    holders learn something about the secret.  Covers ``share`` (explicit
    shares) and ``share_with_seeds`` (two seeds and the explicit share).
    """
    shares = (sharing.share_with_seeds(SECRET, 2, stream="leak/joint").expanded() if seeded
              else sharing.share(SECRET, 3))
    assert np.array_equal(sharing.reconstruct(shares), SECRET)
    for i, j in itertools.combinations(range(3), 2):
        assert_jointly_uniform(shares[i], shares[j], f"shares {i} and {j}")
        assert_uniform(shares[i] - shares[j], f"share {i} minus share {j}")


# --------------------------------------------------------------------------- edges and types


def test_share_needs_at_least_one_share_and_one_share_is_the_secret() -> None:
    """``n = 1`` is the trivial sharing (the secret itself); ``n < 1`` is refused.

    Zero shares must not silently come back as one share holding the secret.
    """
    x = FixedPoint().encode(np.array([2.5, -7.0]))
    (only,) = sharing.share(x, 1)
    assert only.dtype == np.uint64 and np.array_equal(only, x)
    for n in (0, -1):
        with pytest.raises(ValueError, match="at least one share"):
            sharing.share(x, n)
    with pytest.raises(ValueError, match="no shares"):
        sharing.reconstruct([])


def test_scalar_secrets_share_with_seeds() -> None:
    """A 0-d secret (one aggregate) shares and reconstructs; its seed expands to one word."""
    secret = np.uint64(123_456_789)
    s = sharing.share_with_seeds(secret, 2, stream="scalar")
    assert s.explicit.shape == ()
    expanded = sharing.expand_share(s.seeds[0], (), "scalar")
    assert expanded.shape == () and expanded == randomness.expand(s.seeds[0], 1, "scalar")[0]
    assert sharing.reconstruct(s.expanded()) == secret


SIGNED = np.array([-1, 5, -(2**63), 2**40], dtype=np.int64)
RING = SIGNED.view(np.uint64)  # the same values mod 2**64 (two's complement)


def test_sharing_takes_signed_integers_as_ring_elements() -> None:
    """Signed 64-bit secrets are ring elements mod 2**64: shares are ``uint64`` and wrap.

    ``as_ring`` documents the convention (two's complement); ``share`` and
    ``share_with_seeds`` must not compute in ``int64`` (where subtracting uniform
    ``uint64`` masks is refused by numpy or would not wrap).
    """
    for shares in (sharing.share(SIGNED, 3),
                   sharing.share_with_seeds(SIGNED, 2, stream="signed").expanded()):
        assert all(s.dtype == np.uint64 for s in shares)
        assert np.array_equal(sharing.reconstruct(shares), RING)
    # reconstruct: the first share and the others may be signed arrays too
    parts = [np.array([1, 2], dtype=np.int64), np.array([-1, 3], dtype=np.int64)]
    total = sharing.reconstruct(parts)
    assert total.dtype == np.uint64 and np.array_equal(total, np.array([0, 5], dtype=np.uint64))


def test_public_operations_stay_in_the_ring_and_only_party_0_adds() -> None:
    """``add_public`` adds the constant at party 0 only; results are ``uint64`` mod 2**64."""
    x = sharing.share(RING, 3)
    shifted = [sharing.add_public(s, 7, i) for i, s in enumerate(x)]
    assert np.array_equal(shifted[0], x[0] + np.uint64(7))
    assert np.array_equal(shifted[1], x[1]) and np.array_equal(shifted[2], x[2])
    assert np.array_equal(sharing.reconstruct(shifted), RING + np.uint64(7))
    # a share given as a signed array is still a ring element
    for i in (0, 1):
        out = sharing.add_public(SIGNED, 1, i)
        assert out.dtype == np.uint64
        assert np.array_equal(out, RING + np.uint64(1 if i == 0 else 0))
    tripled = sharing.mul_public_int(SIGNED, 3)
    assert tripled.dtype == np.uint64 and np.array_equal(tripled, RING * np.uint64(3))


def test_as_ring_reduces_any_integer_mod_2_64_and_refuses_reals() -> None:
    """Signed arrays wrap (two's complement); Python ints of any size reduce mod 2**64.

    The object array starts with a small value and continues with ``2**64 - 1`` (which
    fits no signed type), so an output type guessed from the first element fails.
    """
    assert np.array_equal(sharing.as_ring(SIGNED), RING)
    assert np.array_equal(sharing.as_ring(np.array([-1], dtype=np.int8)),
                          np.array([2**64 - 1], dtype=np.uint64))
    big = np.array([5, 2**64 - 1, 2**64 + 7, -(2**70) + 3, -1], dtype=object)
    ring = sharing.as_ring(big)
    assert ring.dtype == np.uint64
    assert ring.tolist() == [5, 2**64 - 1, 7, 3, 2**64 - 1]
    assert sharing.as_ring(2**64 + 5) == 5 and sharing.as_ring(-1) == 2**64 - 1
    for real in (np.array([1.5]), 0.5):
        with pytest.raises(TypeError, match="ring values must be integers"):
            sharing.as_ring(real)
