"""What the ckks key holder of a joint statistic tells its release, pass by pass.

``run_keyholder_ckks`` decrypts each pass's sum through :func:`smpc.aggregate.ckks_collect`,
whose release floods the CKKS error unless differential-privacy noise the key holder does not
know already covers it (``dp_noise_std``), sized for the CKKS error of ``summands`` fresh
encryptions (the number of parties).  What each release floods is tested in
``test_aggregate_guards.py`` and ``test_dp_released_noise.py``; here, recorded by wrapping
``ckks_collect`` (the real one runs), what the role passes it: for an exact statistic no DP
noise on either pass (so the release floods -- the key holder must never see raw CKKS error
it could solve for the key with); under DP the plan's ``release_noise_std`` of each pass,
pass 2 at the public shift the key holder computed; and the number of parties as summands.
Found by mutation testing (target ``stats-roles``).
"""

from __future__ import annotations

import numpy as np
import pytest

from smpc import aggregate, dp, stats
from smpc.stats import roles as stat_roles

PARTIES = 3


def _record(monkeypatch, spec):
    """Run ``spec`` over three parties on ckks; the keyword arguments of each ckks_collect
    call and the public shift, in pass order."""
    calls: list[dict] = []
    shifts: list[np.ndarray] = []
    real_collect, real_shift = aggregate.ckks_collect, stat_roles._public_shift

    def collect(t, **kwargs):
        calls.append(kwargs)
        return real_collect(t, **kwargs)

    def public_shift(*args):
        shift, n = real_shift(*args)
        shifts.append(shift)
        return shift, n

    monkeypatch.setattr(aggregate, "ckks_collect", collect)
    monkeypatch.setattr(stat_roles, "_public_shift", public_shift)
    rng = np.random.default_rng(48)
    tables = [rng.uniform(0.0, 60.0, (200, 1)) for _ in range(PARTIES)]
    stats.simulate(spec, tables)
    return calls, shifts


def test_an_exact_ckks_statistic_is_flooded_on_both_passes(monkeypatch):
    """No DP noise is claimed on any pass -- pass 1, the spread pass of exact two-pass
    statistics and the moment pass (the release then floods) -- and each flood is sized for
    the three parties' fresh encryptions."""
    calls, _ = _record(monkeypatch, stats.StatSpec("var", ("x",), backend="ckks"))
    assert [c["tag"].rsplit("/", 1)[-1] for c in calls] == ["p1", "spread", "p2"]
    assert [c.get("dp_noise_std") for c in calls] == [0.0, 0.0, 0.0]
    assert [c.get("summands") for c in calls] == [PARTIES, PARTIES, PARTIES]


def test_under_dp_each_release_is_told_its_passs_noise(monkeypatch):
    """Bounds (0, 100) and data in (0, 60): the public shift (~30) narrows pass 2's widths
    from 100 to ~70, so its noise differs from the shift-free one -- the key holder must
    claim the noise at the shift it sent, not more."""
    request = dp.DPRequest(epsilon=1.0, delta=1e-6, bounds={"x": (0.0, 100.0)})
    spec = stats.StatSpec("var", ("x",), backend="ckks", dp=request)
    calls, shifts = _record(monkeypatch, spec)
    plan = spec.noise_plan(PARTIES)
    assert len(shifts) == 1
    expected = [plan.release_noise_std(1), plan.release_noise_std(2, shift=shifts[0])]
    assert expected[1] != pytest.approx(plan.release_noise_std(2), rel=1e-3)
    assert [c.get("dp_noise_std") for c in calls] == pytest.approx(expected, rel=1e-12)
    assert [c.get("summands") for c in calls] == [PARTIES, PARTIES]


def test_under_dp_the_moment_pass_error_bound_has_no_flood_term(monkeypatch):
    """Under DP the key holder's release skips the flood on both passes (the parties' DP noise,
    at least the flood's std, already covers the CKKS error), so each pass's stated error is
    the parties' rounding to the release grid alone: ``P * grid / 2``.  A role that forgot to
    tell the bound of pass 2 its DP noise would add a flood that never happened (a 6-sigma
    flood term plus the CKKS error): a looser error bound than the one the release has.
    ``grid`` is the release's own (``ckks.release_parameters`` at the pass's noise)."""
    from smpc import ckks
    from smpc.stats import bounds

    released: list[bounds.Released] = []
    real_attach = bounds.attach

    def attach(spec, result, rel, **kwargs):
        released.append(rel)
        return real_attach(spec, result, rel, **kwargs)

    monkeypatch.setattr(bounds, "attach", attach)
    request = dp.DPRequest(epsilon=1.0, delta=1e-6, bounds={"x": (0.0, 100.0)})
    spec = stats.StatSpec("var", ("x",), backend="ckks", dp=request)
    _, shifts = _record(monkeypatch, spec)
    plan = spec.noise_plan(PARTIES)
    preset = ckks.get_preset(spec.ckks_preset)
    e = preset.error_bound(summands=PARTIES, independent=True)
    stds = [plan.release_noise_std(1), plan.release_noise_std(2, shift=shifts[0])]
    params = [ckks.release_parameters(preset, error_bound=e, dp_noise_std=s) for s in stds]
    assert not any(p.flooded for p in params)
    (rel,) = released
    assert rel.e1 == pytest.approx(PARTIES * params[0].grid / 2, rel=1e-12)
    assert rel.e2 == pytest.approx(PARTIES * params[1].grid / 2, rel=1e-12)


@pytest.mark.parametrize("backend", ["ss", "ckks"])
def test_the_stated_dp_noise_std_of_a_variance_is_the_noise_it_carries(backend):
    """``details["dp_noise_std"]`` of a private variance is the plan's pass-2 noise propagated
    to the value, at the public shift and (``ss``) the public divisor ``N``: compared here
    with the spread of 40 releases of the same variance on the same data (a fixed
    ``default_rng(49)`` table; the noise is the CSPRNG's).

    Tolerance: the sample std ``s`` of 40 draws of (first-order) Gaussian noise lies within
    ``[0.6, 1.6]`` of its ``sigma`` except with probability < 1e-4 (chi-square, 39 degrees
    of freedom: P(chi2 < 14.0) ~ 5e-5, P(chi2 > 99.8) < 1e-6).  Power: a std stated without
    the divisor (``ss``: ``N = 1,500`` times too large) or without the shift (the widths of
    bounds (0, 100) around a shift of ~40 are 60, not 100: the second-moment noise ~2.8x
    larger) falls outside the band with probability ~1.  Found by mutation testing.
    """
    rng = np.random.default_rng(49)
    tables = [rng.normal(40.0, 10.0, (n, 1)) for n in (300, 700, 500)]
    request = dp.DPRequest(epsilon=1.0, delta=1e-6, bounds={"x": (0.0, 100.0)})
    spec = stats.StatSpec("var", ("x",), backend=backend, dp=request)
    values, stated = [], []
    for _ in range(40):
        result, _ = stats.simulate(spec, tables)
        values.append(result.value[0])
        stated.append(result.details["dp_noise_std"][0])
    ratio = float(np.std(values, ddof=1)) / float(np.mean(stated))
    assert 0.6 <= ratio <= 1.6, ratio
