"""Tests of smpc.ckks against numpy, on real TenSEAL contexts (no mocks).

Tolerances: the preset's stated conservative CKKS error bound for the computation,
:meth:`smpc.ckks.Preset.error_bound` (4 x the measured fresh public-key error per summand,
times the weights' L1 norm, + the sigmoid's, rounded up to a power of two and never below the
release's E); for the sigmoid against the exact logistic function, the cubic's documented max
error 0.0608 on top.  :func:`test_ckks_error_stays_below_the_bound_the_release_floods` checks
that those bounds -- and the E the release floods by default -- really hold, over full-slot
vectors, for every preset.  Statistical checks of the noise state their false-failure rate.
Test data are seeded per test (``np.random.default_rng(<int>)``), so no test depends on another.
"""

from __future__ import annotations

import math
import pathlib
import re

import numpy as np
import pytest
import tenseal as ts
import tenseal.sealapi as sealapi

from smpc import ckks
from smpc.errors import InputError

AGG = ckks.get_preset("aggregate")
TOL = AGG.error_bound()  # one fresh public-key encryption (2^-23)
Z = 6.0  # Gaussian checks at 6 standard errors: P(|N(0,1)| > 6) = 2e-9


def rng_for(seed: int) -> np.random.Generator:
    """Test data only (not secret): a seeded numpy generator, one per test."""
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def agg() -> ckks.KeyHolder:
    return ckks.KeyHolder("aggregate")


@pytest.fixture(scope="module")
def agg_pub(agg: ckks.KeyHolder) -> ts.Context:
    return ckks.load_context(agg.public_context())


@pytest.fixture(scope="module")
def sig() -> ckks.KeyHolder:
    return ckks.KeyHolder("sigmoid")


@pytest.fixture(scope="module")
def sig_pub(sig: ckks.KeyHolder) -> ts.Context:
    return ckks.load_context(sig.public_context())


@pytest.fixture(scope="module")
def rot() -> ckks.KeyHolder:
    return ckks.KeyHolder("rotate")


# --------------------------------------------------------------------------- presets


def test_presets_within_seal_128_bit_limits() -> None:
    assert {"aggregate", "sigmoid", "long"} <= set(ckks.PRESETS)
    for p in ckks.PRESETS.values():
        assert p.total_coeff_bits <= ckks.SEAL_MAX_COEFF_BITS_128[p.poly_modulus_degree]
        assert p.slots == p.poly_modulus_degree // 2
        assert p.scale == 2.0**p.scale_bits
        assert p.release_error_bound >= max(p.err_linear30, p.err_sigmoid_ckks or 0.0)
    assert ckks.get_preset("aggregate").poly_modulus_degree == 8192
    assert ckks.get_preset("aggregate").mult_depth == 2
    assert ckks.get_preset("sigmoid").mult_depth == 3
    assert ckks.get_preset("long").poly_modulus_degree == 16384


def test_preset_over_the_limit_is_refused() -> None:
    p = ckks.get_preset("sigmoid")
    with pytest.raises(ValueError, match="128-bit"):
        ckks.Preset(**{**p.__dict__, "name": "x", "coeff_mod_bit_sizes": (60, 40, 40, 40, 60)})


def test_unknown_preset_lists_valid_names() -> None:
    with pytest.raises(InputError, match=r"aggregate.*long.*sigmoid"):
        ckks.get_preset("nope")
    with pytest.raises(InputError):
        ckks.KeyHolder("nope")


def test_max_abs_value_and_error_bound() -> None:
    p = ckks.get_preset("aggregate")
    assert p.max_abs_value(0) == 2.0**99 and p.max_abs_value(1) == 2.0**59
    assert p.max_abs_value(2) == 2.0**19
    assert p.error_bound() == p.release_error_bound
    big = p.error_bound(summands=1000, weight_l1=30)
    assert big > p.release_error_bound and math.log2(big).is_integer()
    with pytest.raises(InputError):
        ckks.get_preset("aggregate").error_bound(sigmoid=True)


# --------------------------------------------------------------------------- contexts


def test_public_context_has_no_secret_and_no_galois_keys(agg: ckks.KeyHolder) -> None:
    data = agg.public_context()
    ctx = ckks.load_context(data)
    assert ctx.has_secret_key() is False
    assert ctx.is_public() and not ctx.is_private()
    assert ctx.has_galois_keys() is False
    assert ctx.has_relin_keys() is False  # "aggregate" never multiplies ciphertexts
    assert len(data) < 1_000_000  # measured 0.46 MB
    assert ckks.context_preset(ctx).name == "aggregate"


def test_sigmoid_public_context_carries_relin_keys_only(sig_pub: ts.Context) -> None:
    assert sig_pub.has_relin_keys() and not sig_pub.has_galois_keys()
    assert not sig_pub.has_secret_key()


def test_galois_context_is_much_larger(agg: ckks.KeyHolder, rot: ckks.KeyHolder) -> None:
    small, big = agg.public_context(), rot.public_context()
    assert len(big) > 30 * len(small)  # measured 35.3 MB vs 0.46 MB
    ctx = ckks.load_context(big)
    assert ctx.has_galois_keys() and not ctx.has_secret_key()
    with pytest.raises(InputError, match="limit"):
        ckks.load_context(big, max_bytes=len(small) * 2)


@pytest.mark.parametrize(
    "data",
    [b"", b"garbage" * 50, bytes(1000)],
    ids=["empty", "garbage", "zeros"],
)
def test_load_context_garbage(data: bytes) -> None:
    with pytest.raises(InputError):
        ckks.load_context(data)


def test_load_context_truncated_and_secret(agg: ckks.KeyHolder) -> None:
    data = agg.public_context()
    with pytest.raises(InputError):
        ckks.load_context(data[: len(data) // 2])
    with pytest.raises(InputError):
        ckks.load_context("not bytes")  # type: ignore[arg-type]
    secret = agg.context.serialize(save_secret_key=True)
    with pytest.raises(InputError, match="secret key"):
        ckks.load_context(secret)
    assert ckks.load_context(secret, allow_secret_key=True).has_secret_key()


def test_n_threads_option() -> None:
    rng = rng_for(101)
    kh = ckks.KeyHolder("aggregate", n_threads=1)
    ctx = ckks.load_context(kh.public_context(), n_threads=1)
    x = rng.uniform(-10, 10, 100)
    np.testing.assert_allclose(kh.decrypt(ckks.encrypt_public(ctx, x), 100), x, atol=TOL)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InputError):
            ckks.KeyHolder("aggregate", n_threads=bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- encryption


def test_symmetric_and_public_round_trip(agg: ckks.KeyHolder, agg_pub: ts.Context) -> None:
    rng = rng_for(102)
    assert agg.encryption_mode == "symmetric"
    x = rng.uniform(-10, 10, 1000)
    np.testing.assert_allclose(agg.decrypt(agg.encrypt(x), 1000), x, atol=TOL)
    np.testing.assert_allclose(agg.decrypt(ckks.encrypt_public(agg_pub, x), 1000), x, atol=TOL)


def test_the_symmetric_twin_is_built_once_at_the_first_encrypt() -> None:
    """A key holder that only decrypts never builds its symmetric twin; the first encrypts,
    from four threads at once, build exactly one, and every ciphertext decrypts."""
    import threading

    holder = ckks.KeyHolder("aggregate")
    assert holder._sym is None and not holder._sym_built
    x = rng_for(109).uniform(-10, 10, 64)
    out: list[np.ndarray] = []
    twins: list[object] = []
    start = threading.Barrier(4)

    def one() -> None:
        start.wait()
        cts = holder.encrypt(x)
        twins.append(holder._sym)
        out.append(holder.decrypt(cts, x.size))

    threads = [threading.Thread(target=one) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(out) == 4 and all(np.allclose(o, x, atol=TOL) for o in out)
    assert twins[0] is not None and all(t is twins[0] for t in twins)
    assert holder.encryption_mode == "symmetric"


def test_long_vectors_are_chunked(agg: ckks.KeyHolder, agg_pub: ts.Context) -> None:
    rng = rng_for(103)
    n = 2 * agg.preset.slots + 5
    x = rng.uniform(-1000, 1000, n)
    cts = ckks.encrypt_public(agg_pub, x)
    assert len(cts) == 3
    assert ckks.ciphertext_length(agg_pub, cts) == n
    np.testing.assert_allclose(agg.decrypt(cts, n), x, atol=TOL)
    with pytest.raises(InputError, match="carry"):
        agg.decrypt(cts, n - 1)


def test_encrypt_rejects_bad_values(agg: ckks.KeyHolder, agg_pub: ts.Context) -> None:
    for bad in ([], [[1.0, 2.0]], [1.0, float("nan")], [float("inf")], ["a"]):
        with pytest.raises(InputError):
            agg.encrypt(bad)  # type: ignore[arg-type]
        with pytest.raises(InputError):
            ckks.encrypt_public(agg_pub, bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="too large"):
        agg.encrypt(np.array([2.0**100]))


def test_add_ciphertexts_matches_numpy(agg: ckks.KeyHolder, agg_pub: ts.Context) -> None:
    rng = rng_for(104)
    n = agg.preset.slots + 7
    parts = [rng.uniform(-10, 10, n) for _ in range(5)]
    batches = [ckks.encrypt_public(agg_pub, p) for p in parts[:4]] + [agg.encrypt(parts[4])]
    total = ckks.add_ciphertexts(agg_pub, batches)
    np.testing.assert_allclose(agg.decrypt(total, n), np.sum(parts, axis=0),
                               atol=AGG.error_bound(summands=5))
    with pytest.raises(InputError, match="chunk sizes"):
        ckks.add_ciphertexts(agg_pub, [batches[0], ckks.encrypt_public(agg_pub, parts[0][:10])])
    with pytest.raises(InputError):
        ckks.add_ciphertexts(agg_pub, [])


# --------------------------------------------------------------------------- packing & linear


def test_pack_columns_more_samples_than_slots(agg: ckks.KeyHolder, agg_pub: ts.Context) -> None:
    rng = rng_for(105)
    n = agg.preset.slots + 7
    X = rng.uniform(-10, 10, (n, 3))
    for packer in (agg, agg_pub):
        cols = ckks.pack_columns(packer, X)
        assert len(cols) == 3 and all(len(c) == 2 for c in cols)
        for j, col in enumerate(cols):
            np.testing.assert_allclose(agg.decrypt(col, n), X[:, j], atol=TOL)
    with pytest.raises(InputError):
        ckks.pack_columns(agg_pub, np.zeros(5))


@pytest.mark.parametrize("rescale_once", [True, False], ids=["rescale_once", "rescale_each"])
def test_linear_combination_matches_numpy(
    agg: ckks.KeyHolder, agg_pub: ts.Context, rescale_once: bool
) -> None:
    rng = rng_for(106)
    n, d = agg.preset.slots + 7, 30
    X = rng.uniform(-10, 10, (n, d))
    w = rng.uniform(-1, 1, d)
    b = 0.5
    cols = ckks.pack_columns(agg_pub, X)
    out = ckks.linear_combination(agg_pub, cols, w, b, rescale_once=rescale_once)
    assert len(out) == 2
    assert ckks.levels_left(agg_pub, out[0]) == agg.preset.mult_depth - 1
    np.testing.assert_allclose(agg.decrypt(out, n), X @ w + b,
                               atol=AGG.error_bound(weight_l1=float(np.abs(w).sum())))


def test_linear_combination_zero_weights_and_errors(
    agg: ckks.KeyHolder, agg_pub: ts.Context
) -> None:
    rng = rng_for(107)
    X = rng.uniform(-10, 10, (50, 3))
    cols = ckks.pack_columns(agg, X)
    w = np.array([0.0, 0.75, 0.0])
    np.testing.assert_allclose(
        agg.decrypt(ckks.linear_combination(agg_pub, cols, w, -2.0), 50), X @ w - 2.0,
        atol=AGG.error_bound(weight_l1=0.75),
    )
    zero = ckks.linear_combination(agg_pub, cols, np.zeros(3), 3.25)
    np.testing.assert_allclose(agg.decrypt(zero, 50), np.full(50, 3.25), atol=TOL)
    with pytest.raises(InputError, match="weights"):
        ckks.linear_combination(agg_pub, cols, np.ones(2), 0.0)
    with pytest.raises(InputError, match="chunk sizes"):
        ckks.linear_combination(agg_pub, [*cols[:2], agg.encrypt(X[:10, 2])], np.ones(3), 0.0)
    with pytest.raises(InputError):
        ckks.linear_combination(agg_pub, cols, np.ones(3), float("nan"))


def test_linear_combination_on_deeper_ciphertexts_falls_back(
    agg: ckks.KeyHolder, agg_pub: ts.Context
) -> None:
    rng = rng_for(108)
    # After one linear combination an "aggregate" ciphertext has 100 modulus
    # bits left, too few for the Delta^3 label: the per-product path runs.
    X = rng.uniform(-10, 10, (100, 2))
    first = ckks.linear_combination(agg_pub, ckks.pack_columns(agg_pub, X), [0.5, -0.25], 1.0)
    second = ckks.linear_combination(agg_pub, [first, first], [2.0, -0.5], -1.0)
    y = 1.5 * (X @ np.array([0.5, -0.25]) + 1.0) - 1.0
    # two chained combinations: the outer one (weights' L1 norm 2.5) scales the inner's error
    np.testing.assert_allclose(agg.decrypt(second, 100), y,
                               atol=AGG.error_bound(summands=2, weight_l1=2.5))
    assert ckks.levels_left(agg_pub, second[0]) == 0
    with pytest.raises(InputError, match="no multiplicative level"):
        ckks.linear_combination(agg_pub, [second], [1.0], 0.0)


# --------------------------------------------------------------------------- sigmoid


def test_sigmoid_coefficients_documented_error() -> None:
    x = np.linspace(-5, 5, 100001)
    c0, c1, c2, c3 = ckks.sigmoid_coefficients(5.0)
    assert (c0, c2) == (0.5, 0.0)
    err = np.max(np.abs(c0 + c1 * x + c3 * x**3 - 1 / (1 + np.exp(-x))))
    assert 0.060 < err < 0.0609
    x8 = np.linspace(-8, 8, 100001)
    c0, c1, _, c3 = ckks.sigmoid_coefficients(8.0)
    assert np.max(np.abs(c0 + c1 * x8 + c3 * x8**3 - 1 / (1 + np.exp(-x8)))) < 0.1144


def test_sigmoid_poly3_after_linear(sig: ckks.KeyHolder, sig_pub: ts.Context) -> None:
    rng = rng_for(109)
    n, d = 2000, 10
    X = rng.uniform(-1, 1, (n, d))
    w = rng.uniform(-1, 1, d)
    w *= 4.9 / np.max(np.abs(X @ w))  # logits cover [-4.9, 4.9]
    b = 0.05
    logits = ckks.linear_combination(sig_pub, ckks.pack_columns(sig_pub, X), w, b)
    out = sig.decrypt(ckks.sigmoid_poly3(sig_pub, logits), n)
    z = X @ w + b
    c0, c1, _, c3 = ckks.sigmoid_coefficients()
    ckks_bound = sig.preset.error_bound(weight_l1=float(np.abs(w).sum()), sigmoid=True)
    np.testing.assert_allclose(out, c0 + c1 * z + c3 * z**3, atol=ckks_bound)  # CKKS error
    # plus the cubic's documented max error on [-5, 5] (test_sigmoid_coefficients_...)
    assert np.max(np.abs(out - 1 / (1 + np.exp(-z)))) <= 0.0608 + ckks_bound


def test_sigmoid_needs_depth_and_relin(
    agg: ckks.KeyHolder, agg_pub: ts.Context, sig: ckks.KeyHolder, sig_pub: ts.Context
) -> None:
    with pytest.raises(InputError, match="relinearisation"):
        ckks.sigmoid_poly3(agg_pub, ckks.encrypt_public(agg_pub, np.zeros(4)))
    twice = ckks.linear_combination(
        sig_pub,
        [ckks.linear_combination(sig_pub, [sig.encrypt(np.ones(4))], np.ones(1), 0.0)],
        np.ones(1),
        0.0,
    )
    with pytest.raises(InputError, match="levels"):
        ckks.sigmoid_poly3(sig_pub, twice)


# --------------------------------------------------------------------------- rotations


def test_sum_slots_reveals_only_the_total(rot: ckks.KeyHolder, agg_pub: ts.Context) -> None:
    rng = rng_for(110)
    ctx = ckks.load_context(rot.public_context())
    x = rng.uniform(-10, 10, rot.preset.slots + 100)
    total = ckks.sum_slots(ctx, ckks.encrypt_public(ctx, x))
    # sum_slots: "the summed CKKS errors plus one rescale rounding" -- the stated bound for a
    # sum of len(x) ciphertexts, 2^-12 (measured 4e-6); every other slot holds 0 plus an
    # error of the same computation, so it is bounded alike, while an unmasked slot would
    # hold a partial sum of magnitude ~10-500
    bound = rot.preset.error_bound(summands=len(x))
    assert abs(rot.decrypt(total, 1)[0] - x.sum()) <= bound
    # Look under the hood at every slot: the partial sums are masked away.
    sc = rot.context.seal_context().data
    plain = sealapi.Plaintext()
    vec = ts.ckks_vector_from(rot.context, total[0][len(b"SMCK\x01") + 24 :])
    sealapi.Decryptor(sc, rot.context.secret_key().data).decrypt(vec.ciphertext()[0], plain)
    slots = np.array(sealapi.CKKSEncoder(sc).decode_double(plain))
    assert np.max(np.abs(slots[1:])) <= bound
    with pytest.raises(InputError, match="Galois"):
        ckks.sum_slots(agg_pub, ckks.encrypt_public(agg_pub, x[:10]))


# --------------------------------------------------------------------------- malformed input


def test_malformed_ciphertexts(agg: ckks.KeyHolder, agg_pub: ts.Context) -> None:
    good = agg.encrypt(np.arange(10.0))[0]
    header = good[:29]
    bad_cases = [
        b"",
        b"garbage",
        good[:100],
        good[:-50],
        header + b"x" * 100,
        header + good[29:][: len(good) // 2],
        b"XXXX" + good[4:],
    ]
    for bad in bad_cases:
        with pytest.raises(InputError):
            agg.decrypt([bad], 10)
        with pytest.raises(InputError):
            ckks.add_ciphertexts(agg_pub, [[good], [bad]])
    with pytest.raises(InputError):
        agg.decrypt(good, 10)  # bytes, not a list of bytes
    with pytest.raises(InputError):
        agg.decrypt([], 10)
    with pytest.raises(InputError):
        agg.decrypt(["text"], 10)  # type: ignore[list-item]


def test_ciphertext_from_other_key_or_preset(agg: ckks.KeyHolder, sig: ckks.KeyHolder) -> None:
    other = ckks.KeyHolder("aggregate")
    ct = other.encrypt(np.ones(4))
    with pytest.raises(InputError, match="another public key"):
        agg.decrypt(ct, 4)
    with pytest.raises(InputError, match="other CKKS parameters"):
        agg.decrypt(sig.encrypt(np.ones(4)), 4)
    with pytest.raises(InputError, match="other CKKS parameters"):
        sig.decrypt(agg.encrypt(np.ones(4)), 4)


# --------------------------------------------------------------------------- error bounds


@pytest.mark.parametrize("name, seed", [("aggregate", 1), ("sigmoid", 2), ("long", 3)])
def test_ckks_error_stays_below_the_bound_the_release_floods(name: str, seed: int) -> None:
    """The CKKS error is below E, so the release's flood (sigma = 2^16 E) really hides it.

    Over 30 full-slot vectors of values in [-10, 10] (the module docstring's measurement):
    fresh public-key and symmetric encryptions, sums of 5 parties' ciphertexts (6 disjoint
    groups) and of all 30, the 30-feature linear combination (weights in [-1, 1], on the
    symmetric columns the data owner sends and on public-key ones) and, on presets with the
    depth, the encrypted cubic after it (logits in [-4.9, 4.9]).  Each stays below the
    preset's stated conservative bound for that computation (``Preset.error_bound``) and below
    ``release_error_bound`` -- the E that ``KeyHolder.release`` and the model owner's flood
    (``smpc.linear.model_flood_std``) use by default, whatever the number of parties.  If the
    error exceeded E the flood would no longer hide it (Li-Micciancio).  Measured on the
    reference machine: at most 0.4 E (aggregate, sum of 30).  It grows like sqrt(summands):
    a sum over roughly 200 parties would reach E, and the statistics' key holder
    (``smpc.aggregate.ckks_collect``) floods with the default E whatever the party count.
    """
    rng = rng_for(seed)
    kh = ckks.KeyHolder(name)
    pub = ckks.load_context(kh.public_context())
    p, n, E = kh.preset, kh.preset.slots, kh.preset.release_error_bound
    xs = rng.uniform(-10, 10, (30, n))
    pub_cts = [ckks.encrypt_public(pub, x) for x in xs]
    sym_cts = [kh.encrypt(x) for x in xs]

    def err(cts: list[bytes], want: np.ndarray) -> float:
        return float(np.max(np.abs(kh.decrypt(cts, n) - want)))

    assert max(err(c, x) for c, x in zip(pub_cts, xs, strict=True)) < min(p.error_bound(), E)
    assert max(err(c, x) for c, x in zip(sym_cts, xs, strict=True)) < min(p.error_bound(), E)
    for g in range(6):
        total = ckks.add_ciphertexts(pub, pub_cts[5 * g : 5 * g + 5])
        assert err(total, xs[5 * g : 5 * g + 5].sum(axis=0)) < min(p.error_bound(summands=5), E)
    assert err(ckks.add_ciphertexts(pub, pub_cts), xs.sum(axis=0)) < E
    w = rng.uniform(-1, 1, 30)
    l1 = float(np.abs(w).sum())
    for cols in (sym_cts, pub_cts):
        out = ckks.linear_combination(pub, cols, w, 0.5)
        assert err(out, xs.T @ w + 0.5) < min(p.error_bound(weight_l1=l1), E)
    if p.err_sigmoid_ckks is not None:
        w *= 4.9 / np.max(np.abs(xs.T @ w))
        z = xs.T @ w
        c0, c1, _, c3 = ckks.sigmoid_coefficients()
        out = ckks.sigmoid_poly3(pub, ckks.linear_combination(pub, sym_cts, w, 0.0))
        bound = p.error_bound(weight_l1=float(np.abs(w).sum()), sigmoid=True)
        assert err(out, c0 + c1 * z + c3 * z**3) < min(bound, E)


# --------------------------------------------------------------------------- release


def test_release_floods_and_rounds(agg: ckks.KeyHolder) -> None:
    rng = rng_for(111)
    n = 40_000
    raw = rng.uniform(-10, 10, n)
    params = agg.release_parameters()
    assert params.flood_std == agg.preset.release_error_bound * 2**ckks.DEFAULT_FLOOD_BITS
    assert params.grid >= params.flood_std and params.flooded
    out = agg.release(raw)
    assert not np.array_equal(out, raw)
    assert np.all(np.round(out / params.grid) * params.grid == out)  # on the grid
    diff = out - raw
    # mean within 5 standard errors (false failure 6e-7); the sample std within Z / sqrt(2n)
    # relative (flood + uniform rounding has kurtosis 2.99, so the Gaussian standard error
    # sqrt(1 / 2n) holds; false failure 2e-9) -- a missing flood (std g / sqrt(12) = 0.29
    # output_std) or one off by 10% fails
    assert abs(np.mean(diff)) < 5 * params.output_std / math.sqrt(n)
    assert abs(np.std(diff) / params.output_std - 1) < Z / math.sqrt(2 * n)
    # Different on every call (fresh CSPRNG noise).
    assert not np.array_equal(agg.release(raw), out)


def test_release_of_decryption_and_dp_rule(agg: ckks.KeyHolder) -> None:
    rng = rng_for(112)
    x = rng.uniform(-10, 10, 3000)
    cts = agg.encrypt(x)
    raw = agg.decrypt(cts, 3000)
    released = agg.decrypt_and_release(cts, 3000)
    assert not np.array_equal(released, raw)
    sigma = agg.release_parameters().flood_std
    # E + 6 sigma + grid / 2 (the release's docstring; false failure 3000 * 2e-9)
    grid = agg.release_parameters().grid
    assert np.max(np.abs(released - x)) <= agg.preset.release_error_bound + Z * sigma + grid / 2
    # DP noise at least as large as the flood replaces it: rounding only.
    p = agg.release_parameters(dp_noise_std=sigma)
    assert not p.flooded
    np.testing.assert_array_equal(
        agg.release(raw, dp_noise_std=sigma), np.round(raw / p.grid) * p.grid
    )
    assert agg.release_parameters(dp_noise_std=sigma / 2).flooded
    # A larger error bound or flood factor scales the noise.
    assert agg.release_parameters(flood_bits=10).flood_std == sigma / 64
    assert agg.release_parameters(error_bound=2.0**-20).flood_std == 8 * sigma
    for bad in ({"flood_bits": -1}, {"error_bound": 0.0}, {"dp_noise_std": -1.0}):
        with pytest.raises(InputError):
            agg.release(raw, **bad)


def test_flood_ciphertexts_adds_noise_of_the_given_std(
    agg: ckks.KeyHolder, agg_pub: ts.Context
) -> None:
    rng = rng_for(113)
    n = 2 * agg.preset.slots
    x = rng.uniform(-10, 10, n)
    out = agg.decrypt(ckks.flood_ciphertexts(agg_pub, ckks.encrypt_public(agg_pub, x), 0.01), n)
    # sample std within Z / sqrt(2n) relative (false failure 2e-9); the CKKS error (< 2^-23)
    # is 1e-5 of the std
    assert abs(np.std(out - x) / 0.01 - 1) < Z / math.sqrt(2 * n)
    with pytest.raises(InputError):
        ckks.flood_ciphertexts(agg_pub, agg.encrypt(x[:3]), 0.0)


def test_csprng_gaussian_is_standard_normal() -> None:
    n = 50_001
    z = ckks.csprng_gaussian(n)
    assert z.shape == (n,)
    # mean and std within Z standard errors (1 / sqrt(n), 1 / sqrt(2n): 0.027, 0.019; false
    # failure 2e-9 each); P(|z| < 1) within 0.01 = 4.8 standard errors (false failure 1.6e-6),
    # which a uniform of the same variance (0.577) or a Laplace (0.757) fails
    assert abs(z.mean()) < Z / math.sqrt(n) and abs(z.std() - 1) < Z / math.sqrt(2 * n)
    assert abs(np.mean(np.abs(z) < 1) - 0.6827) < 0.01


def test_no_numpy_random_in_ckks_source() -> None:
    files = sorted(pathlib.Path(ckks.__file__).parent.glob("*.py"))
    assert len(files) > 1  # the package's every part, not only its __init__
    for path in files:
        src = path.read_text()
        assert "np.random" not in src and "numpy.random" not in src, path
        assert not re.search(r"^\s*(import random|from random import)\b", src, re.MULTILINE), path


# --------------------------------------------------------------------------- N=16384


def test_long_preset_round_trip_and_linear() -> None:
    rng = rng_for(114)
    kh = ckks.KeyHolder("long")
    ctx = ckks.load_context(kh.public_context())
    assert not ctx.has_secret_key() and not ctx.has_galois_keys()
    n = kh.preset.slots + 7
    X = rng.uniform(-10, 10, (n, 2))
    cols = ckks.pack_columns(kh, X)
    assert [len(c) for c in cols] == [2, 2]
    w = np.array([0.3, -0.9])
    out = ckks.linear_combination(ctx, cols, w, 1.0)
    np.testing.assert_allclose(kh.decrypt(out, n), X @ w + 1.0,
                               atol=kh.preset.error_bound(weight_l1=1.2))
