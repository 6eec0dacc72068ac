"""The secret randomness source (smpc.randomness): its edge cases and exact rejection sampling.

``random_below`` is documented as *exact* rejection sampling on keystream output: every
value it returns is a fresh CSPRNG word, masked to the smallest power of two at or above the
bound, that fell below the bound -- so it is uniform on ``[0, bound)`` with no modulo bias,
and at least half of the masked words are accepted.  The tests below check that statement
exactly, by recording the words ``random_ring`` hands out (observing, not replacing, the
CSPRNG), and check the edges of the argument ranges.

Statistical tests state their false-failure rate; the others are deterministic.
"""

from __future__ import annotations

import numpy as np
import pytest

from smpc import randomness

from .uniformity import assert_uniform

SEED = bytes(range(16))


def test_expand_of_zero_words_is_empty_and_a_negative_count_is_refused() -> None:
    """``count = 0`` is a valid (empty) expansion; a negative count is an error, not ``[]``."""
    empty = randomness.expand(SEED, 0, "s")
    assert empty.shape == (0,) and empty.dtype == np.uint64
    with pytest.raises(ValueError, match="non-negative"):
        randomness.expand(SEED, -1, "s")


@pytest.mark.parametrize("bound", [0, -1, 2**64 + 1, 2**65])
def test_random_below_refuses_bounds_outside_1_to_2_64(bound: int) -> None:
    """The bound is checked even when nothing is drawn (``count = 0``).

    A bound of 0 has no value to return (rejection would never end); above ``2**64`` the
    values do not fit the ring.
    """
    with pytest.raises(ValueError, match=r"bound must be in \[1, 2\*\*64\]"):
        randomness.random_below(bound, 0)


def _smallest_mask(bound: int) -> int:
    """``2^k - 1`` for the smallest ``k`` with ``2^k >= bound`` (an independent derivation)."""
    k = 0
    while (1 << k) < bound:
        k += 1
    return (1 << k) - 1


# 2**62 + 1 first, and this test before those of small bounds: its mask is 2^63 - 1, so a
# mask of all ones (the bits < 64 test gone) changes its output at once, where bounds 1, 2, 3
# would loop practically forever.
BOUNDS = [2**62 + 1, 3 * 2**62, 2**63 + 1, 2**64 - 1, 2**32, 2**32 + 1, 6, 3, 2]


@pytest.mark.parametrize("bound", BOUNDS)
def test_random_below_returns_exactly_the_accepted_keystream_words(
    bound: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The output is the CSPRNG words, masked to the smallest ``2^k - 1``, that fell below the
    bound, in order, and nothing else.

    That is exact rejection sampling (no modulo bias, every value equally likely) with an
    acceptance rate of at least 1/2.  A wider mask, a narrower one, an accepted ``bound``,
    a skipped or invented first value, or a later round that overwrites or overruns the
    output fail it deterministically.  The bound ``2**62 + 1`` (acceptance just over 1/2)
    is drawn 8 at a time 100 times: a single call needs a second round with probability
    P(Bin(16, 1/2) < 8) = 0.40, so the loop's later rounds are exercised except with
    probability 0.6^100 < 1e-22.
    """
    words: list[np.ndarray] = []
    real = randomness.random_ring

    def recording(count: int) -> np.ndarray:
        out = real(count)
        words.append(out.copy())
        return out

    monkeypatch.setattr(randomness, "random_ring", recording)
    mask = np.uint64(_smallest_mask(bound))
    calls = 100 if bound == 2**62 + 1 else 3
    count = 8 if bound == 2**62 + 1 else 1000
    for _ in range(calls):
        words.clear()
        out = randomness.random_below(bound, count)
        assert out.dtype == np.uint64 and out.shape == (count,)
        masked = np.concatenate(words) & mask
        accepted = masked[masked < np.uint64(bound)]
        np.testing.assert_array_equal(out, accepted[:count])


def test_random_below_one_is_always_zero() -> None:
    """``bound = 1`` is valid: the only value in ``[0, 1)`` is 0."""
    out = randomness.random_below(1, 64)
    assert out.dtype == np.uint64
    assert np.array_equal(out, np.zeros(64, dtype=np.uint64))


def test_random_below_2_64_is_the_whole_ring_and_uniform() -> None:
    """``bound = 2**64`` returns uniform ring elements: low and top byte both uniform.

    False failure: two chi-square tests at 1e-9 each (tests/unit/uniformity.py); a constant
    or a top byte confined to less than the ring fails them with probability 1.
    """
    out = randomness.random_below(2**64, 8192)
    assert out.dtype == np.uint64 and out.shape == (8192,)
    assert_uniform(out, "random_below(2**64)")


@pytest.mark.parametrize("bound", [2, 3, 5])
def test_random_below_small_bounds_reach_every_value_and_no_other(bound: int) -> None:
    """4000 draws below 2, 3 or 5 take every value in ``[0, bound)`` and nothing else.

    A value is missed with probability at most ``5 (4/5)^4000 < 1e-380``: a mask one bit too
    narrow (the top value unreachable), a lowest bit forced to zero or an accepted ``bound``
    fails deterministically in practice.
    """
    out = randomness.random_below(bound, 4000)
    assert set(out.tolist()) == set(range(bound))


# ------------------------------------------------------------- the keystream, written in place


def _reference_keystream(seed: bytes, n_bytes: int, label: str) -> bytes:
    """AES-128-CTR under ``seed`` over ``n_bytes`` zeros, computed the straightforward way with
    the ``cryptography`` library, from the stream format stated in smpc.randomness: the counter
    block is the first 8 bytes of SHA-256("smpc/v1/stream/" + label), then a 64-bit counter
    starting at zero.  Independent of the module's slicing and of its buffers."""
    import hashlib

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    nonce = hashlib.sha256(b"smpc/v1/stream/" + label.encode()).digest()[:8] + bytes(8)
    enc = Cipher(algorithms.AES(seed), modes.CTR(nonce)).encryptor()
    return enc.update(bytes(n_bytes)) + enc.finalize()


_SLICE_WORDS = len(randomness._ZERO_BLOCK) // 8


@pytest.mark.parametrize("count", [0, 1, 2, _SLICE_WORDS - 1, _SLICE_WORDS, _SLICE_WORDS + 1,
                                   3 * _SLICE_WORDS + 5])
def test_expand_is_the_aes_ctr_keystream_read_as_little_endian_words(count: int) -> None:
    """``expand`` equals an independent AES-CTR computation, word for word, at lengths on and
    around the boundaries of the slices the keystream is written in (one slice less one word,
    one slice, one slice and one word, several slices and a tail).

    A slice written twice, skipped, written at the wrong offset, a counter restarted per
    slice, a wrong byte order or a dropped tail changes at least one word (deterministic).
    """
    got = randomness.expand(SEED, count, "ref/label")
    ref = np.frombuffer(_reference_keystream(SEED, 8 * count, "ref/label"), dtype="<u8")
    assert got.dtype == np.uint64 and got.shape == (count,)
    assert got.flags.writeable and got.flags.c_contiguous
    np.testing.assert_array_equal(got, ref.astype(np.uint64))


def test_the_stream_format_is_unchanged() -> None:
    """A known answer computed with the previous (copying) implementation: seed-compressed
    shares made by an older node must still expand to the same vectors."""
    assert randomness.expand(SEED, 4, "kat/label").tolist() == [
        2290832274157282624, 14917481566852349944, 9292881952657633204, 1382151615132099181]
    assert randomness.keystream(SEED, 5).hex() == "d034c0b7e8"


@pytest.mark.parametrize("n_bytes", [0, 1, 15, 17, 8 * _SLICE_WORDS + 3])
def test_keystream_and_keystream_into_match_the_reference_at_odd_lengths(n_bytes: int) -> None:
    """Byte lengths that are not whole AES blocks or whole slices: the keystream is the
    reference's, and ``keystream_into`` writes exactly ``len(out)`` bytes of it."""
    ref = _reference_keystream(SEED, n_bytes, "odd")
    assert randomness.keystream(SEED, n_bytes, "odd") == ref
    out = bytearray(b"\xa5" * n_bytes)
    randomness.keystream_into(SEED, out, "odd")
    assert bytes(out) == ref


def test_distinct_labels_and_seeds_give_distinct_streams() -> None:
    """Two labels under one seed, or one label under two seeds, never give the same stream:
    a shared counter block would make them equal word for word (fails deterministically;
    equal by chance with probability 2^-512 for 8 words)."""
    a = randomness.expand(SEED, 8, "label/a")
    b = randomness.expand(SEED, 8, "label/b")
    c = randomness.expand(bytes(16), 8, "label/a")
    assert not np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(a, randomness.expand(SEED, 8, "label/a"))


def test_keystream_into_refuses_a_bad_seed_and_a_strided_buffer() -> None:
    """A seed of the wrong length is refused (AES-192/256 keys would silently change the
    stream); a non-contiguous destination cannot be written in place and is refused."""
    with pytest.raises(ValueError, match="16 bytes"):
        randomness.keystream_into(bytes(24), bytearray(8))
    with pytest.raises(ValueError, match="16 bytes"):
        randomness.expand(bytes(15), 1)
    with pytest.raises((TypeError, ValueError)):
        randomness.keystream_into(SEED, np.zeros(8, dtype=np.uint64)[::2].data)
