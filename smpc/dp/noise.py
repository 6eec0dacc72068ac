"""Each party's noise share: the distributed discrete Gaussian, on the ring or the CKKS grid.

Guarantees: :func:`party_noise` draws this party's share of every block from OpenDP's exact
discrete Gaussian sampler on OpenSSL's CSPRNG, sized by the :class:`~smpc.dp.NoisePlan`;
:func:`add_ring_noise` refuses (without naming the noisy value) a sum that could wrap the ring.
Reveals nothing by itself: a share must be added before anything leaves the party, and never
be sent on its own.

Mechanism and its noise
=======================

Both backends add noise on an integer lattice ``2^-b Z`` (``b`` lattice bits):

* ``ss``: the fixed-point ulps, ``b = spec.frac_bits`` (pass 1) or
  ``spec.moment_codec.frac_bits`` (pass 2);
* ``ckks``: the key holder's release grid ``g = 2^-b`` of the preset
  (``b = 7`` for "aggregate"): each party rounds its aggregate to the grid
  before adding noise (:func:`noisy_ckks_values`); the sum is then on the
  grid exactly, and the release's final rounding to ``g`` removes the CKKS
  error exactly (``|e| <= E = 2^-23 << g/2``), so the released value is
  exactly ``sum_i round_g(a_i) + Z``: the same mechanism as on ``ss``, and it
  carries nothing of the CKKS error (no key leakage) -- the DP noise *is* the
  flood.  The key holder passes ``dp_noise_std`` =
  :meth:`NoisePlan.release_noise_std` to :meth:`smpc.ckks.KeyHolder.release`,
  which then skips its flood (the noise unknown to it is at least the
  flood's std for every realistic budget; if not, it floods as well, which
  only adds noise, but the exactness argument above then no longer applies).

Rounding the local aggregate to the lattice moves a non-integer block by at
most ``sqrt(len)`` lattice units, so the block's sensitivity in lattice units
is ``Delta_b 2^b / D + sqrt(len)`` (0 extra for integer blocks: counts, bins).

**Noise: distributed discrete Gaussian** (Kairouz, Liu & Steinke, "The
Distributed Discrete Gaussian Mechanism for Federated Learning with Secure
Aggregation", ICML 2021).  Each party adds ``N_Z(0, sigma_b^2 / m)`` to every
coordinate of block ``b``.  A sum of discrete Gaussians is not exactly a
discrete Gaussian; KLS21 Prop. 14 bounds the mechanism with ``n`` honest
shares of scale ``sigma_i`` by ``(Delta/sigma + sqrt(d) tau)^2 / 2``-zCDP,
``tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 sigma_i^2 k/(k+1))``; we calibrate
``sigma_b = Delta_b / (sqrt(2 rho_b) - sqrt(d) tau)`` so that bound is met
exactly (``tau`` underflows to 0 for shares above ~6 lattice units; ours are
thousands of ulps, so the correction is there for rigour, not for size).

Why not Skellam (Agarwal, Kairouz & Liu 2021; exactly closed under sums):
it needs an exact Poisson sampler with means around ``sigma^2 ~ 1e10-1e20``
ulps^2 driven by a CSPRNG, which no maintained library offers, while
OpenDP ships an exact discrete Gaussian sampler (Canonne-Kamath-Steinke
2020, exact rational arithmetic) and the sum-closure gap of the discrete
Gaussian is provably negligible here (above).

**Randomness.**  The shares are drawn by OpenDP 0.16's
``make_gaussian`` on ``vector_domain(atom_domain(T="i64"))``, whose samplers
take every random bit from ``fill_bytes``, which the PyPI wheels build with
the ``use-openssl`` feature: OpenSSL's ``RAND_bytes`` (a NIST SP 800-90A
DRBG seeded by the OS), i.e. a CSPRNG (``rust/src/traits/samplers/mod.rs``
in the OpenDP sources; the wheel's library carries the "OpenSSL error"
branch of that function).  ``numpy.random`` and :mod:`random` are never used.
:func:`sample_discrete_gaussian` calls ``opendp.prelude.enable_features
("contrib")``, a process-wide OpenDP setting.

**Cost.**  The exact sampler costs about 12 microseconds of CPU per draw on the
2-core reference machine, whatever the scale (exact rational arithmetic in
OpenDP's Rust core): noise is what makes a statistic that releases many values
expensive (a profile of a DP quantile at 16 x 65,536 bins: over 99% of the
party's CPU in the sampler, the local histogram and the secure sum well under
1%).  Draws are made :data:`SAMPLE_CHUNK` at a time from a numpy input (OpenDP's
zero-copy path for arrays): a single call on a Python list of ``count`` zeros,
as before, converted every value through Python objects both ways -- 10-20%
more CPU and ~75 bytes of transient memory per draw (300 MB for 4 million
draws); chunks bound that to a few MB and give the caller a cancellation point
(``check``) between chunks.  The draws are the same measurement's, in order.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from smpc.dp.accounting import _opendp
from smpc.dp.planning import NoisePlan
from smpc.encoding import EncodingRangeError, FixedPoint
from smpc.errors import InputError
from smpc.names import Backend

__all__ = [
    "MAX_SHARE_UNITS",
    "SAMPLE_CHUNK",
    "add_ring_noise",
    "noisy_ckks_values",
    "party_noise",
    "sample_discrete_gaussian",
]

MAX_SHARE_UNITS = 2.0**55
"""Largest noise-share scale, in lattice units, that stays far from int64 overflow."""

SAMPLE_CHUNK = 1 << 16
"""Draws per call into OpenDP (module notes: bounds transient memory, spaces the checks)."""

Check = Callable[[], None]


def sample_discrete_gaussian(scale: float, count: int, *, check: Check | None = None
                             ) -> np.ndarray:
    """``count`` iid draws of the discrete Gaussian ``N_Z(0, scale^2)`` as int64.

    OpenDP's exact sampler (Canonne-Kamath-Steinke 2020) on OpenSSL's CSPRNG
    (module notes).  ``P(x) ~ exp(-x^2 / (2 scale^2))``; its variance is
    ``scale^2`` to within ``1e-7`` relative for ``scale >= 1``.  ``check`` is
    called before every chunk of :data:`SAMPLE_CHUNK` draws and after the last;
    it raises to stop the sampling (a cancelled session).
    """
    if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 0:
        raise InputError(f"count must be a non-negative integer, got {count!r}")
    scale = float(scale)
    if not (math.isfinite(scale) and 0 < scale <= MAX_SHARE_UNITS):
        raise InputError(f"the noise scale must lie in (0, 2^55] lattice units, got {scale!r}")
    count = int(count)
    out = np.empty(count, dtype=np.int64)
    odp = _opendp()
    meas = odp.m.make_gaussian(
        odp.vector_domain(odp.atom_domain(T="i64")), odp.l2_distance(T="i64"), scale=scale
    )
    zeros = np.zeros(min(count, SAMPLE_CHUNK), dtype=np.int64)
    for start in range(0, count, SAMPLE_CHUNK):
        if check is not None:
            check()
        n = min(SAMPLE_CHUNK, count - start)
        out[start:start + n] = _draw(meas, zeros[:n])
    if check is not None:
        check()
    return out


def _draw(meas: Callable[[np.ndarray], list[int]], zeros: np.ndarray) -> list[int]:
    """One chunk: the measurement applied to ``len(zeros)`` zeros (numpy in: no Python ints)."""
    return meas(zeros)


def party_noise(
    plan: NoisePlan, pass_index: int, length: int, backend: str, frac_bits: int | None = None,
    *, divisor: float = 1.0, shift: np.ndarray | None = None, check: Check | None = None,
) -> np.ndarray:
    """This party's noise share for one pass: int64 ulps on ``ss``, float64 on ``ckks``.

    Each coordinate of block ``b`` gets ``N_Z(0, sigma_b^2 / min_honest)`` in
    lattice units ``2^-frac_bits`` (``frac_bits`` defaults to the plan's: the
    pass's codec on ``ss``, the release grid on ``ckks``).  Pass 2 needs the
    public ``divisor`` the moments were divided by and, for the tightest
    noise, the public ``shift`` (else the worst shift inside the bounds is
    assumed: clamp the shift with :func:`postprocess_shift`).  Add it with
    :func:`add_ring_noise` (``ss``, after encoding) or :func:`noisy_ckks_values`.
    Draw it once per pass and never reveal it.  ``check`` (a cancellation check, e.g.
    :meth:`smpc.transport.Transport.check_cancelled`) is called between chunks of draws.
    """
    if backend != plan.backend:
        raise InputError(f"the plan is for backend {str(plan.backend)!r}, not {backend!r}")
    pp = plan.pass_plan(pass_index)
    if isinstance(length, bool) or not isinstance(length, int | np.integer) or length != pp.length:
        raise InputError(
            f"pass {pass_index} of {plan.statistic} releases {pp.length} value(s) under "
            f"differential privacy, not {length!r}"
        )
    bits = plan._bits(pp, frac_bits)
    sigmas = plan.lattice_sigmas(pass_index, frac_bits=bits, divisor=divisor, shift=shift)
    out = np.empty(pp.length, dtype=np.int64)
    for block, sigma in zip(pp.blocks, sigmas, strict=True):
        share = sigma / math.sqrt(plan.min_honest)
        out[block.start:block.start + block.length] = sample_discrete_gaussian(
            share, block.length, check=check)
    if backend == Backend.SS:
        return out
    return out.astype(np.float64) * 2.0**-bits


def add_ring_noise(
    encoded: np.ndarray, noise: np.ndarray, *, headroom: float, what: str = "noisy aggregate",
    codec: FixedPoint | None = None,
) -> np.ndarray:
    """Add int64 noise ulps to an encoded ring vector (uint64), with the range check.

    The noisy value must stay below ``2^63 / headroom`` ulps (``headroom`` =
    number of parties, as :meth:`FixedPoint.encode` uses) so that the secure
    sum cannot wrap; otherwise :class:`EncodingRangeError`, whose message does
    not contain the noisy value.
    """
    enc = np.asarray(encoded, dtype=np.uint64).view(np.int64)
    z = np.asarray(noise, dtype=np.int64)
    if enc.shape != z.shape:
        raise InputError(f"noise of shape {z.shape} for a vector of shape {enc.shape}")
    if not (math.isfinite(float(headroom)) and float(headroom) >= 1):
        raise InputError("headroom must be a finite number >= 1")
    with np.errstate(over="ignore"):
        total = enc + z
    overflow = ((enc >= 0) == (z >= 0)) & ((total >= 0) != (enc >= 0))
    bound = 2.0**63 / float(headroom)
    if overflow.any() or (np.abs(total.astype(np.float64)) >= bound).any():
        bits = "" if codec is None else f" with {codec.frac_bits} fractional bits"
        raise EncodingRangeError(
            f"the {what} plus its privacy noise is outside the fixed-point range{bits} "
            f"(headroom for {float(headroom):g} parties): lower frac_bits or tighten the bounds"
        )
    return total.view(np.uint64)


def noisy_ckks_values(plan: NoisePlan, values: np.ndarray, noise: np.ndarray,
                      pass_index: int = 1) -> np.ndarray:
    """Round ``values`` to the release grid and add the ``ckks`` noise share (float64).

    Rounding first puts the sum of all parties' contributions exactly on the
    grid, so the key holder's release rounding removes the CKKS error exactly
    (module notes).
    """
    if plan.backend != Backend.CKKS:
        raise InputError("noisy_ckks_values is for the ckks backend")
    grid = 2.0**-plan.pass_plan(pass_index).lattice_bits
    v = np.asarray(values, dtype=np.float64)
    z = np.asarray(noise, dtype=np.float64)
    if v.shape != z.shape:
        raise InputError(f"noise of shape {z.shape} for values of shape {v.shape}")
    return np.round(v / grid) * grid + z
