"""CKKS release parameters, error bounds and the public-context edge, value by value.

The flood that hides the CKKS error (and with it the secret key) is ``2^flood_bits * E``; a
bound ``E`` that is too small, or a flood or grid that silently differs from the documented
one, weakens key privacy without changing any result a test of accuracy could see.  So the
bounds are checked at their exact documented values (all powers of two, so equality is
exact): :meth:`Preset.error_bound`'s two formulas with the preset's measured errors,
:func:`release_parameters`' flood and grid, :attr:`ReleaseParameters.output_std`.  Then the
refusals that keep a key holder's and an evaluator's inputs well-formed: argument ranges at
their edges, and contexts and ciphertexts from a peer that must not be used.

Preset numbers used below (smpc/ckks/presets.py): "aggregate" err_fresh_pub = 9.7e-9,
release bound 2^-23; "sigmoid" err_fresh_pub = 1.2e-8, err_sigmoid_ckks = 1.8e-7, release
bound 2^-21.  Powers of two for reading the arithmetic: 2^-23 = 1.19e-7, 2^-22 = 2.38e-7,
2^-21 = 4.77e-7, 2^-20 = 9.54e-7, 2^-19 = 1.91e-6.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import tenseal as ts

from smpc import ckks
from smpc.errors import InputError

AGG = ckks.get_preset("aggregate")
SIG = ckks.get_preset("sigmoid")


@pytest.fixture(scope="module")
def holder() -> ckks.KeyHolder:
    return ckks.KeyHolder("aggregate")


@pytest.fixture(scope="module")
def public(holder: ckks.KeyHolder) -> ts.Context:
    return ckks.load_context(holder.public_context())


# --------------------------------------------------------------------------- error bounds


def test_worst_case_error_bound_values() -> None:
    """``E = 4 err_fresh_pub summands max(1, ||w||_1)``, rounded up to a power of two.

    8 summands, default ``||w||_1 = 1``: 4 * 9.7e-9 * 8 = 3.10e-7 -> 2^-21.
    8 summands, ``||w||_1 = 4``: 4 * 9.7e-9 * 32 = 1.24e-6 -> 2^-19.
    A default call on a preset without the encrypted sigmoid is valid (``sigmoid`` is off).
    """
    assert AGG.error_bound(summands=8) == 2.0**-21
    assert AGG.error_bound(summands=8, weight_l1=4.0) == 2.0**-19
    assert AGG.error_bound() == AGG.release_error_bound  # 3.9e-8, below the floor 2^-23


def test_independent_error_bound_values() -> None:
    """``E = 3 err_fresh_pub sqrt(summands) max(1, ||w||_2)`` for independent summands.

    100 summands, ``||w||_2 = 1``: 3 * 9.7e-9 * 10 = 2.91e-7 -> 2^-21.
    100 summands, ``||w||_2 = 2`` (``||w||_1 = 8`` does not enter): 5.82e-7 -> 2^-20.
    """
    assert AGG.error_bound(summands=100, independent=True) == 2.0**-21
    assert AGG.error_bound(summands=100, weight_l1=8.0, weight_l2=2.0,
                           independent=True) == 2.0**-20


def test_error_bounds_with_the_encrypted_sigmoid() -> None:
    """The sigmoid's own error is added, on both forms ("sigmoid" preset).

    Worst case, ``||w||_1 = 2``: (4 * 1.2e-8 + 4 * 1.8e-7) * 2 = 1.54e-6 -> 2^-19 (without
    the sigmoid term 9.6e-8, i.e. the floor 2^-21).
    Independent, 2 summands: 3 * 1.2e-8 * sqrt(2) + 2 * 1.8e-7 * 2 = 7.71e-7 -> 2^-20
    (without the sigmoid term 5.1e-8, i.e. the floor 2^-21).
    """
    assert SIG.error_bound(weight_l1=2.0, sigmoid=True) == 2.0**-19
    assert SIG.error_bound(summands=2, sigmoid=True, independent=True) == 2.0**-20


@pytest.mark.parametrize("summands", [0, -1, 2.5, True])
def test_error_bound_refuses_a_count_of_summands_that_is_not_positive(summands: object) -> None:
    with pytest.raises(InputError, match="summands must be a positive integer"):
        AGG.error_bound(summands=summands)  # type: ignore[arg-type]


def test_error_bound_weight_norms_at_their_edges() -> None:
    """``||w||_1 >= 0`` and ``0 <= ||w||_2 <= ||w||_1`` (up to float rounding, 1e-12 relative).

    Zero weights and ``||w||_2 = ||w||_1`` are valid edges; a norm below zero, not finite,
    or an L2 norm above the L1 norm by more than rounding is refused (an understated norm
    would size the flood too small).
    """
    assert AGG.error_bound(weight_l1=0.0) == AGG.release_error_bound
    assert AGG.error_bound(weight_l1=0.0, weight_l2=0.0, independent=True) \
        == AGG.release_error_bound
    assert AGG.error_bound(weight_l1=3.0, weight_l2=3.0, independent=True) \
        == AGG.release_error_bound
    at_slack = 1.0 * (1 + 1e-12)  # the largest L2 norm accepted for an L1 norm of 1
    assert AGG.error_bound(weight_l1=1.0, weight_l2=at_slack, independent=True) \
        == AGG.release_error_bound
    for l1 in (-1.0, math.nan, math.inf):
        with pytest.raises(InputError, match="weight_l1 must be a non-negative finite"):
            AGG.error_bound(weight_l1=l1)
    for l2 in (-0.5, 1.5, 1.0 * (1 + 1.5e-12), math.nan):
        with pytest.raises(InputError, match="weight_l2 must be a finite number"):
            AGG.error_bound(weight_l1=1.0, weight_l2=l2, independent=True)


# --------------------------------------------------------------------------- release parameters


def test_flood_bits_range_is_0_to_40_inclusive() -> None:
    """``flood_bits`` 0 (flood = E) and 40 are valid, with sigma = 2^flood_bits E exactly."""
    low = ckks.release_parameters(AGG, flood_bits=0)
    assert (low.flood_std, low.grid) == (2.0**-23, 2.0**-23)
    high = ckks.release_parameters(AGG, flood_bits=40)
    assert (high.flood_std, high.grid) == (2.0**17, 2.0**17)
    for bad in (41, -1, True, 16.0):
        with pytest.raises(InputError, match=r"flood_bits must be an integer in \[0, 40\]"):
            ckks.release_parameters(AGG, flood_bits=bad)  # type: ignore[arg-type]


def test_output_std_is_flood_plus_uniform_rounding() -> None:
    """Released minus decrypted: N(0, sigma^2) plus rounding to the grid g, which is uniform
    on [-g/2, g/2] (variance g^2 / 12); without a flood only the rounding is left."""
    flooded = ckks.release_parameters(AGG)
    sigma = 2.0**-7  # 2^16 * 2^-23, and g = sigma
    assert flooded.flooded and flooded.grid == sigma
    assert flooded.output_std == pytest.approx(sigma * math.sqrt(1 + 1 / 12), rel=1e-15)
    rounding_only = ckks.release_parameters(AGG, dp_noise_std=sigma)
    assert not rounding_only.flooded
    assert rounding_only.output_std == pytest.approx(sigma / math.sqrt(12), rel=1e-15)


def test_csprng_gaussian_of_zero_samples_and_a_negative_count() -> None:
    empty = ckks.csprng_gaussian(0)
    assert empty.shape == (0,) and empty.dtype == np.float64
    with pytest.raises(InputError, match="count must be non-negative"):
        ckks.csprng_gaussian(-1)


# --------------------------------------------------------------------------- contexts


def test_load_context_size_limit_is_inclusive(holder: ckks.KeyHolder) -> None:
    data = holder.public_context()
    assert ckks.load_context(data, max_bytes=len(data)).is_public()
    with pytest.raises(InputError, match="limit"):
        ckks.load_context(data, max_bytes=len(data) - 1)


def test_load_context_refusals_name_the_problem(holder: ckks.KeyHolder) -> None:
    """Each refusal says what is wrong: empty, thread count, scheme, no preset, no key."""
    with pytest.raises(InputError, match="CKKS context is empty"):
        ckks.load_context(b"")
    for bad in (0, -1, True):
        with pytest.raises(InputError, match="n_threads must be a positive integer"):
            ckks.load_context(holder.public_context(), n_threads=bad)  # type: ignore[arg-type]
    bfv = ts.context(ts.SCHEME_TYPE.BFV, 8192, plain_modulus=1032193)
    with pytest.raises(InputError, match="not CKKS"):
        ckks.load_context(bfv.serialize(save_secret_key=False))
    other = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=[60, 40, 60])
    other.global_scale = 2.0**40
    with pytest.raises(InputError, match="matches none of the presets"):
        ckks.load_context(other.serialize(save_secret_key=False))


def test_a_context_without_public_key_is_refused_not_a_crash(holder: ckks.KeyHolder) -> None:
    """A key holder's context serialised without its public key is refused at the edge.

    TenSEAL loads such a context and then crashes the whole process (segmentation fault)
    on the first encryption or serialisation; a peer could thus kill an aggregator or a
    model owner.  ``load_context`` refuses it, and so does every operation that needs the
    public key (tested here with ``encrypt_public`` on the raw TenSEAL context).
    """
    keyless = holder.context.serialize(save_public_key=False, save_secret_key=False,
                                       save_galois_keys=False, save_relin_keys=False)
    with pytest.raises(InputError, match="no public key"):
        ckks.load_context(keyless)
    with pytest.raises(InputError, match="no public key"):
        ckks.encrypt_public(ts.context_from(keyless), np.ones(3))
    public = ckks.load_context(holder.public_context())
    assert public.has_public_key() and not public.has_secret_key()


# --------------------------------------------------------------------------- evaluator inputs


def test_public_key_encryption_refuses_values_too_large_for_the_context(
    public: ts.Context,
) -> None:
    with pytest.raises(InputError, match="too large for this CKKS context"):
        ckks.encrypt_public(public, np.array([1.0, 2.0**100]))


def test_add_ciphertexts_names_the_batch_that_does_not_fit(public: ts.Context) -> None:
    """The mismatching party's batch is named by its index (here the second of three)."""
    good = ckks.encrypt_public(public, np.ones(5))
    short = ckks.encrypt_public(public, np.ones(4))
    named = r"^batch\[1\] has chunk sizes \[4\], batch\[0\] has \[5\]"
    with pytest.raises(InputError, match=named):
        ckks.add_ciphertexts(public, [good, short, good])


def test_flood_ciphertexts_refuses_a_std_that_is_not_a_number(public: ts.Context) -> None:
    cts = ckks.encrypt_public(public, np.ones(3))
    for bad in ("abc", None, [1.0]):
        with pytest.raises(InputError, match="std must be a number"):
            ckks.flood_ciphertexts(public, cts, bad)  # type: ignore[arg-type]


def test_csprng_gaussian_tails_and_fourth_moment_are_normal() -> None:
    """The polar sampler's shape beyond the first two moments: P(|z| < 2) = 0.9545 within 6
    standard errors (0.0009 each at n = 200,001) and E[z^4] = 3 within 6 (sqrt(96 / n) =
    0.022 each); a sampler that scaled by sqrt(-2 ln s) without / s, or kept s >= 1, fails
    both.  Odd and even counts, and a count needing a second draw round, have their shape."""
    n = 200_001
    z = ckks.csprng_gaussian(n)
    assert z.shape == (n,) and np.isfinite(z).all()
    assert abs(np.mean(np.abs(z) < 2) - 0.9545) < 6 * 0.00047
    assert abs(np.mean(z**4) - 3.0) < 6 * (96 / n) ** 0.5
    for count in (1, 2, 3, 17, 4096):
        out = ckks.csprng_gaussian(count)
        assert out.shape == (count,) and len(set(out.tolist())) == count


@pytest.mark.parametrize("preset", sorted(ckks.PRESETS))
@pytest.mark.parametrize("galois", [False, True])
def test_key_id_from_the_public_context_equals_the_public_keys_own(preset, galois) -> None:
    """A key holder hashes its key id from its first public context (the bytes it sends, with
    relinearisation and Galois keys) instead of serializing the public key again: the id is
    the one a serialization of the public key alone gives, and the one a receiver computes
    from the loaded context; before any public context it is computed the old way."""
    from smpc.ckks.envelope import _ident

    first = ckks.KeyHolder(preset, galois=galois, n_threads=1)
    context = first.public_context()
    again = first.context.serialize(save_public_key=True, save_secret_key=False,
                                    save_galois_keys=False, save_relin_keys=False)
    fresh = ckks.load_context(again, n_threads=1)  # a new TenSEAL object: no cached id
    assert _ident(fresh).key_id.hex() == first.key_id
    received = ckks.load_context(context, n_threads=1, max_bytes=1 << 30)
    assert _ident(received).key_id.hex() == first.key_id
    other = ckks.KeyHolder(preset, galois=galois, n_threads=1)
    assert other.key_id != first.key_id  # computed before any public context
    assert ckks.load_context(other.public_context(), n_threads=1,
                             max_bytes=1 << 30) is not None
    values = np.linspace(-3, 3, 8)
    np.testing.assert_allclose(first.decrypt(ckks.encrypt_public(received, values), 8), values,
                               atol=1e-3)


def test_csprng_gaussian_fills_every_slot_over_many_rounds(monkeypatch) -> None:
    """With a draw far too small for one round (a tenth of the pairs wanted), the polar loop
    draws again until every sample is filled: the same shape, finite, distinct, standard
    normal moments (mean and std within 6 standard errors, P(|z| < 1) within 0.01), the first
    and the second half (the u and v samples) alike."""
    from smpc.ckks import release

    rounds = []

    def small(want: int) -> int:
        rounds.append(want)
        return max(1, want // 10)

    monkeypatch.setattr(release, "_pairs_to_draw", small)
    n = 40_001
    z = ckks.csprng_gaussian(n)
    assert len(rounds) > 10  # many rounds, each for what was still missing
    assert all(b <= a for a, b in itertools.pairwise(rounds))  # never more
    assert z.shape == (n,) and np.isfinite(z).all() and len(set(z.tolist())) == n
    for part in (z[: n // 2], z[n // 2:]):
        m = part.size
        assert abs(part.mean()) < 6 / m**0.5 and abs(part.std() - 1) < 6 / (2 * m) ** 0.5
        assert abs(np.mean(np.abs(part) < 1) - 0.6827) < 0.01
