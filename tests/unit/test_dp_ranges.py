"""``smpc.dp.check_pass_range``: under DP the ``ss`` range is decided on public quantities, and
when it accepts, the encoding cannot fail on the clipped rows (issue 12's range oracle).

The threshold is derived here independently of ``smpc/dp/ranges.py``, from the mechanism as
``smpc/dp/planning.py`` and ``smpc/dp/noise.py`` document it: for a DP mean of one column with
bounds ``(0, M)`` over ``P`` parties, the sums block gets ``rho_s = 0.75 rho``; its noise is
``sigma = (M 2^f + 1) / sqrt(2 rho_s)`` lattice units (KLS's tau underflows: every share here is
far above 6 units), each party's share ``sigma / sqrt(P)``; a party's encoded sum is at most
``row_cap M 2^f`` ulps; the ring holds ``|x| < 2^63 / P``.  With the 40-sigma tail:

    row_cap M 2^f + 1 + 40 (M 2^f + 1) / sqrt(2 rho_s P) < 2^63 / P.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from smpc import dp, simulator, stats
from smpc.encoding import EncodingRangeError
from smpc.stats import StatSpec
from smpc.stats import roles as stat_roles
from smpc.stats import rowsource as stat_rowsource

F, P, RHO, ROW_CAP = 16, 2, 1.0, 1000


def mean_spec(m: float) -> StatSpec:
    return StatSpec("mean", ("x",), dp=dp.DPRequest(rho=RHO, bounds={"x": (0.0, m)}))


def threshold() -> float:
    """The largest M the inequality of the module docstring accepts (solved for M)."""
    tail = 40.0 / math.sqrt(2 * 0.75 * RHO * P)
    return (2.0**63 / P - 1 - tail) / (2.0**F * (ROW_CAP + tail))


def test_the_range_check_refuses_exactly_beyond_the_public_threshold():
    """Accepts M one part in 10^9 below the derived threshold, refuses one part in 10^9
    above.  Catches a check that forgets the noise tail or the rounding (threshold too high),
    the number of parties in the ring's headroom (twice too high), or the row cap; and a
    check on the wrong pass's bits."""
    m = threshold()
    plan = mean_spec(m * (1 - 1e-9)).noise_plan(P)
    dp.check_pass_range(plan, 1, ROW_CAP, frac_bits=F)
    plan = mean_spec(m * (1 + 1e-9)).noise_plan(P)
    with pytest.raises(EncodingRangeError) as e:
        dp.check_pass_range(plan, 1, ROW_CAP, frac_bits=F)
    # the sentence names public quantities only: pass 1, 16 bits, Z_2^64, 2 parties
    assert set(re.findall(r"\d+", str(e.value))) <= {"1", "16", "2", "64"}, str(e.value)
    # a ckks plan has no ring: nothing to refuse
    ckks_plan = StatSpec("mean", ("x",), backend="ckks", dp=dp.DPRequest(
        rho=RHO, bounds={"x": (0.0, m * 10)})).noise_plan(P)
    dp.check_pass_range(ckks_plan, 1, ROW_CAP, frac_bits=7)


def test_accepted_means_the_clipped_rows_always_encode():
    """At the largest accepted M, every party holding ``row_cap`` rows at the bound (the worst
    clipped table) runs the real roles without a range error: the check is sufficient (the
    noise leaves the range only beyond 40 sigma, probability < 2^-1000)."""
    m = threshold() * (1 - 1e-9)
    spec = mean_spec(m)
    dp.check_pass_range(spec.noise_plan(P), 1, ROW_CAP, frac_bits=F)
    tables = [np.full((ROW_CAP, 1), m * 2.0) for _ in range(P)]   # clipped down to m
    result, _ = stats.simulate(spec, tables)
    # mean * n is the released noisy sum of 2000 rows at m: within 6 of its sigma
    # (false alarm 2e-9; the lattice rounding, at most P/2 ulps, is far below)
    sigma_sum = (m * 2.0**F + 1) / math.sqrt(2 * 0.75 * RHO) * 2.0**-F
    assert abs(result.value[0] * result.n - P * ROW_CAP * m) <= 6 * sigma_sum


def test_pass_two_is_refused_on_the_public_shift_and_count_before_any_moment(monkeypatch):
    """A DP variance whose pass 1 fits but whose centred moments could not, divided by the
    public noisy count ``D`` of a small pooled cohort, for tables of up to ``row_cap`` rows: the
    party refuses when pass 2 starts, before it computes a moment (``local_pass2`` is never
    called), whatever its rows -- here 30 small values each, which would fit (the control
    without a row cap runs to the end)."""
    # W = 3e5: 1000 W^2 / D 2^24 ~ 2.5e19 > 2^63 / 2 for D ~ 60, while the pass-2 noise share
    # (~1.5e16 units) stays within what the sampler draws, so the control can run
    spec = StatSpec("var", ("x",), dp=dp.DPRequest(rho=RHO, bounds={"x": (0.0, 3e5)}))
    plan = spec.noise_plan(P)
    dp.check_pass_range(plan, 1, ROW_CAP, frac_bits=spec.codec.frac_bits)  # pass 1 fits
    tables = [np.arange(1.0, 31.0)[:, None], np.arange(31.0, 61.0)[:, None]]
    parties = ["p0", "p1"]
    calls: list[int] = []
    original = stat_rowsource.local_pass2

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    def roles(row_cap):
        r = {name: (lambda t, rows=rows: stat_roles.run_party(
            t, spec, rows, parties=parties, recipient="coordinator", tag="s", row_cap=row_cap))
            for name, rows in zip(parties, tables, strict=True)}
        r["coordinator"] = lambda t: stat_roles.run_recipient_ss(t, spec, parties=parties,
                                                                 tag="s")
        return r

    monkeypatch.setattr(stat_rowsource, "local_pass2", spy)
    with pytest.raises(Exception) as e:
        simulator.run(roles(ROW_CAP), timeout=60)
    assert calls == []
    assert "pass 2" in str(e.value) and "fixed-point range" in str(e.value), str(e.value)
    simulator.run(roles(None), timeout=60)  # control: the old path, data that fit
    assert len(calls) == P


def test_pass_one_is_refused_on_the_row_cap_before_anything_is_sent():
    """A DP mean whose bound is one part in 10^9 above the threshold: with ``row_cap`` each
    party refuses pass 1 (naming it) before it sends a seed or a share, whatever its rows --
    here 5 small values, which would fit (the control without a row cap runs to the end and
    sends).  An exact statistic has no noise plan: its ``row_cap`` is ignored."""
    spec = mean_spec(threshold() * (1 + 1e-9))
    parties = ["p0", "p1"]
    tables = [np.arange(1.0, 6.0)[:, None], np.arange(6.0, 11.0)[:, None]]
    sent: list[str] = []

    def roles(spec, row_cap):
        def party(rows):
            def role(t):
                send = t.send

                def watched(to, tag, payload):
                    sent.append(tag)
                    return send(to, tag, payload)

                t.send = watched
                stat_roles.run_party(t, spec, rows, parties=parties, recipient="coordinator",
                                     tag="s", row_cap=row_cap)
            return role

        r = {name: party(rows) for name, rows in zip(parties, tables, strict=True)}
        r["coordinator"] = lambda t: stat_roles.run_recipient_ss(t, spec, parties=parties,
                                                                 tag="s")
        return r

    with pytest.raises(EncodingRangeError, match="pass 1 of this mean request"):
        simulator.run(roles(spec, ROW_CAP), timeout=60)
    assert sent == []
    simulator.run(roles(spec, None), timeout=60)  # control: the old path, data that fit
    assert sent
    exact = StatSpec("mean", ("x",))
    result = simulator.run(roles(exact, ROW_CAP), timeout=60).results["coordinator"]
    assert result.value == [5.5]


def test_pass_two_is_checked_with_the_public_divisor_and_shift():
    """The pass-2 check must use the public count ``D`` (the divisor) and the public shift: a
    DP variance with bounds (0, W), W = 5.2e5, rows near W/2, 600 rows in all, ``row_cap``
    1000.  With ``D ~ 600`` and ``s ~ W/2`` the centred moments fit and the party serves pass 2;
    checked with ``D = 1`` or without the shift (widths ``W`` instead of ``W/2``) the same
    request would be refused -- asserted below on the check itself, so this test fails for a
    party that passes either wrongly.  Margins (found by bisection on ``check_pass_range``):
    it accepts for every ``D >= 570`` and ``s`` in ``[0.4 W, 0.6 W]`` up to W = 6.5e5, and
    refuses without the shift for every ``D <= 630`` above W = 4.1e5.  The public count's noise
    has std 2.24 (``|D - 600| < 30`` fails with probability < 1e-38) and the shift's about
    1.64e6 / 600 = 2.7e3 = 0.005 W (out of ``[0.4 W, 0.6 W]`` with probability < 1e-70)."""
    w = 5.2e5
    spec = StatSpec("var", ("x",), dp=dp.DPRequest(rho=RHO, bounds={"x": (0.0, w)}))
    plan = spec.noise_plan(P)
    frac = spec.moment_codec.frac_bits
    half = np.array([w / 2])
    for wrong in ({"divisor": 1.0, "shift": half}, {"divisor": 600.0, "shift": None}):
        with pytest.raises(EncodingRangeError, match="pass 2"):
            dp.check_pass_range(plan, 2, ROW_CAP, frac_bits=frac, **wrong)
    rng = np.random.default_rng(44)
    tables = [w / 2 + rng.uniform(-1000.0, 1000.0, (300, 1)) for _ in range(P)]
    parties = ["p0", "p1"]
    roles = {name: (lambda t, rows=rows: stat_roles.run_party(
        t, spec, rows, parties=parties, recipient="coordinator", tag="s", row_cap=ROW_CAP))
        for name, rows in zip(parties, tables, strict=True)}
    roles["coordinator"] = lambda t: stat_roles.run_recipient_ss(t, spec, parties=parties,
                                                                 tag="s")
    result = simulator.run(roles, timeout=60).results["coordinator"]
    assert "privacy" in result.details
