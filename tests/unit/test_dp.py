"""Distributed differential privacy (smpc.dp): accounting, sensitivity, noise, post-processing.

Seeded numpy generators make test *data* only; every noise draw comes from
smpc.dp (OpenDP's CSPRNG-driven sampler).

Statistical tolerance of the noise tests.  For n iid draws of a distribution
with variance s^2 and (as for a Gaussian, or a discrete Gaussian with
scale >= 1 lattice unit) excess kurtosis 0, the sample variance S^2 satisfies
(n - 1) S^2 / s^2 ~ chi^2_{n-1}, so S^2 / s^2 has mean 1 and standard deviation
sqrt(2 / (n - 1)).  We accept |S^2 / s^2 - 1| <= Z sqrt(2 / (n - 1)) and
|mean| <= Z s / sqrt(n) with Z = 5: each check fails by chance with probability
about 6e-7.  With n = 20002 draws that is a 5% band on the variance, while a
share drawn at the wrong scale (sigma instead of sigma / sqrt(P)) moves the
variance by (P - 1) / P * 100% or more (67% for P = 3): the check fails, and
the tests show that it does.
"""

import itertools
import math

import numpy as np
import pytest

from smpc import dp, stats
from smpc.encoding import EncodingRangeError, FixedPoint
from smpc.errors import InputError

Z = 5.0
P = 3


def check_noise(samples: np.ndarray, sigma: float) -> None:
    """Assert mean ~ 0 and variance ~ sigma^2 within the chi-square band (module notes)."""
    x = np.asarray(samples, dtype=np.float64)
    n = x.size
    ratio = x.var(ddof=1) / sigma**2
    band = Z * math.sqrt(2.0 / (n - 1))
    assert abs(ratio - 1.0) <= band, f"variance ratio {ratio:.4f} outside 1 +- {band:.4f}"
    assert abs(x.mean()) <= Z * sigma / math.sqrt(n), f"mean {x.mean():.4g} not ~ 0"


# ---------------------------------------------------------------------------
# accounting
# ---------------------------------------------------------------------------

def cks_epsilon(rho: float, delta: float) -> float:
    """Canonne-Kamath-Steinke 2020 Prop. 12 by brute force over the Renyi order."""
    a = np.exp(np.linspace(np.log(1.0001), np.log(1e6), 200_000))
    eps = a * rho + np.log1p(-1 / a) - (np.log(delta) + np.log(a)) / (a - 1)
    return max(float(eps.min()), 0.0)


@pytest.mark.parametrize("rho", [1e-4, 0.0244, 0.5, 10.0])
@pytest.mark.parametrize("delta", [1e-5, 1e-9])
def test_conversion_matches_cks_and_beats_bun_steinke(rho, delta):
    eps = dp.epsilon_from_rho(rho, delta)
    assert eps == pytest.approx(cks_epsilon(rho, delta), rel=1e-6)
    assert eps <= rho + 2 * math.sqrt(rho * math.log(1 / delta))
    assert dp.delta_from_rho(rho, eps) == pytest.approx(delta, rel=1e-3)


def test_conversion_matches_dp_accounting():
    dpa = pytest.importorskip("dp_accounting")
    from dp_accounting.rdp import RdpAccountant

    orders = list(np.linspace(1.01, 100, 2000)) + list(range(101, 2000))
    for rho, delta in [(1e-3, 1e-6), (0.0244, 1e-6), (0.5, 1e-6), (2.0, 1e-9)]:
        acc = RdpAccountant(orders=orders)
        acc.compose(dpa.dp_event.ZCDpEvent(rho))
        theirs = acc.get_epsilon(delta)  # same formula on a grid of orders: >= ours
        ours = dp.epsilon_from_rho(rho, delta)
        assert ours <= theirs * (1 + 1e-9)
        assert ours == pytest.approx(theirs, rel=1e-4)


def test_known_values():
    assert dp.epsilon_from_rho(0.5, 1e-6) == pytest.approx(5.2215, abs=1e-4)
    assert dp.rho_from_epsilon(1.0, 1e-6) == pytest.approx(0.024356, rel=1e-4)
    assert dp.epsilon_from_rho(0.0, 1e-6) == 0.0


@pytest.mark.parametrize(("epsilon", "delta"), [(0.1, 1e-6), (1.0, 1e-6), (3.0, 1e-9), (10, 1e-5)])
def test_epsilon_request_is_charged_the_largest_rho_within_it(epsilon, delta):
    cost = dp.cost_from_request(epsilon=epsilon, delta=delta)
    assert cost.epsilon <= epsilon
    assert cost.epsilon >= epsilon * (1 - 1e-9)
    assert dp.epsilon_from_rho(cost.rho * (1 + 1e-6), delta) > epsilon


def test_composition_adds_rho():
    a, b = dp.cost_from_request(rho=0.1, delta=1e-6), dp.cost_from_request(epsilon=1, delta=1e-6)
    total = a + b
    assert total.rho == pytest.approx(0.1 + b.rho)
    assert total.delta == 1e-6
    assert dp.compose([a, b, a]).rho == pytest.approx(0.2 + b.rho)
    assert dp.compose([]).rho == 0.0
    assert total.epsilon > max(a.epsilon, b.epsilon)
    # k-fold composition of rho is exactly (k rho)-zCDP: same epsilon view
    assert dp.compose([a] * 4).epsilon_at(1e-6) == pytest.approx(dp.epsilon_from_rho(0.4, 1e-6))
    assert dp.PrivacyCost.from_json(total.to_json()) == total


@pytest.mark.parametrize(("kwargs", "match"), [
    ({}, "needs epsilon with delta, or rho"),
    ({"epsilon": 1.0}, "epsilon needs a delta"),
    ({"delta": 1e-6}, "delta needs an epsilon"),
    ({"epsilon": 1.0, "delta": 1e-6, "rho": 0.1}, "either rho or"),
    ({"epsilon": 1.0, "delta": 1.0}, "delta must lie strictly between 0 and 1"),
    ({"epsilon": 1.0, "delta": 0.0}, "delta must lie strictly between 0 and 1"),
    ({"epsilon": -1.0, "delta": 1e-6}, "epsilon must be a positive"),
    ({"epsilon": math.inf, "delta": 1e-6}, "epsilon must be a positive"),
    ({"rho": 0.0}, "rho must be a positive"),
    ({"rho": math.nan}, "rho must be a positive"),
    ({"rho": True}, "rho must be a number"),
    ({"rho": "0.1"}, "rho must be a number"),
])
def test_request_validation_is_one_clear_sentence(kwargs, match):
    with pytest.raises(InputError, match=match) as info:
        dp.cost_from_request(**kwargs)
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match=match):
        dp.DPRequest(**kwargs)


def test_dprequest_json_and_bounds():
    req = dp.DPRequest(epsilon=1, delta=1e-6, bounds={"age": [0, 120], "bmi": (10, 60)},
                       min_honest=2)
    again = dp.DPRequest.from_json(req.to_json())
    assert again == req
    assert req.bounds_for(["bmi", "age"]) == ((10.0, 60.0), (0.0, 120.0))
    with pytest.raises(InputError, match=r"clipping bounds for column.*weight"):
        req.bounds_for(["age", "weight"])
    with pytest.raises(InputError, match="unknown DP request field"):
        dp.DPRequest.from_json({"rho": 0.1, "sigma": 3})
    with pytest.raises(InputError, match="lo < hi"):
        dp.DPRequest(rho=0.1, bounds={"age": (5, 5)})
    with pytest.raises(InputError, match="pair"):
        dp.DPRequest(rho=0.1, bounds={"age": 5})
    with pytest.raises(InputError, match="min_honest must be a positive integer"):
        dp.DPRequest(rho=0.1, min_honest=0)
    with pytest.raises(InputError, match="JSON object"):
        dp.DPRequest.from_json([1])


def test_effective_rho_and_min_honest():
    assert dp.effective_rho(0.1, 4, 4) == pytest.approx(0.1)
    assert dp.effective_rho(0.1, 4, 2) == pytest.approx(0.2)       # rho P / h
    assert dp.effective_rho(0.1, 4, 1) == pytest.approx(0.4)
    assert dp.effective_rho(0.1, 4, 0) == math.inf
    # conservative mode: shares sized for 2 honest parties
    assert dp.effective_rho(0.1, 4, 2, min_honest=2) == pytest.approx(0.1)
    assert dp.effective_rho(0.1, 4, 4, min_honest=2) == pytest.approx(0.05)
    assert dp.effective_rho(0.1, 4, 1, min_honest=2) == pytest.approx(0.2)
    with pytest.raises(InputError, match="cannot exceed"):
        dp.effective_rho(0.1, 4, 5)
    with pytest.raises(InputError, match="cannot exceed"):
        dp.effective_rho(0.1, 4, 2, min_honest=5)
    spec = stats.StatSpec("mean", ("x",))
    with pytest.raises(InputError, match="cannot exceed"):
        dp.plan(spec, dp.DPRequest(rho=0.1, bounds={"x": (0, 1)}, min_honest=4), 3)


# ---------------------------------------------------------------------------
# plans and sensitivity
# ---------------------------------------------------------------------------

BOUNDS = {"a": (-3.0, 5.0), "b": (0.0, 120.0), "c": (-2.5, -0.5)}


def make_spec(statistic: str, k: int) -> stats.StatSpec:
    cols = tuple("abc"[:k])
    if statistic == "linreg":
        return stats.StatSpec("linreg", cols[:-1], target=cols[-1])
    if statistic == "histogram":
        return stats.StatSpec("histogram", cols, edges=(-1.0, 0.0, 0.5, 2.0, 4.0))
    if statistic == "quantiles":
        return stats.StatSpec("quantiles", cols, probabilities=(0.5,), bounds=(-1.0, 4.0),
                              resolution=16)
    return stats.StatSpec(statistic, cols)


CASES = [(s, k) for s in stats.STATISTICS for k in (1, 2, 3)
         if not (s in ("cov", "corr", "linreg") and k == 1)]


@pytest.mark.parametrize(("statistic", "k"), CASES)
def test_plan_spends_exactly_rho_and_matches_the_stats_layout(statistic, k):
    spec = make_spec(statistic, k)
    req = dp.DPRequest(epsilon=1.0, delta=1e-6, bounds=BOUNDS)
    p = dp.plan(spec, req, P)
    assert sum(pp.rho for pp in p.passes) == pytest.approx(req.cost.rho, rel=1e-12)
    assert len(p.passes) == spec.passes
    expected1 = 1 if statistic == "count" else stats.pass1_length(spec)
    assert p.passes[0].length == expected1
    if spec.passes == 2:
        assert p.passes[1].length == stats.pass2_length(spec)
    for pp in p.passes:
        assert sum(b.length for b in pp.blocks) == pp.length
        assert all(s > 0 for s in p.sigmas(pp.index))
    assert p.to_json()["cost"]["rho"] == pytest.approx(req.cost.rho)


def released_pass1(spec, plan, rows):
    return stats.local_pass1(spec, rows)[: plan.passes[0].length]


def neighbours(rows: np.ndarray, candidates: np.ndarray):
    """Every dataset one row away: each row removed, each candidate added."""
    for i in range(rows.shape[0]):
        yield np.delete(rows, i, axis=0)
    for c in candidates:
        yield np.vstack([rows, c[None, :]])


def block_gaps(plan, pass_index, a, b):
    return [float(np.linalg.norm(a[blk.start:blk.start + blk.length]
                                 - b[blk.start:blk.start + blk.length]))
            for blk in plan.pass_plan(pass_index).blocks]


@pytest.mark.parametrize(("statistic", "k"), CASES)
def test_sensitivity_brute_force(statistic, k):
    """Adding or removing one (clipped) row never moves a block by more than its sensitivity."""
    rng = np.random.default_rng(1000 + 10 * k + stats.STATISTICS.index(statistic))
    spec = make_spec(statistic, k)
    plan = dp.plan(spec, dp.DPRequest(rho=0.5, bounds=BOUNDS), P)
    cols = spec.value_columns
    if plan.bounds is not None:
        box = np.asarray(plan.bounds)
        corners = np.array(list(itertools.product(*box)))
    else:  # histogram / quantiles: values around and on the public edges
        box = np.array([[-2.0, 5.0]] * k)
        corners = np.array(list(itertools.product(*([[-2.0, -1.0, 0.0, 2.0, 4.0, 5.0]] * k))))
    worst1 = np.zeros(len(plan.passes[0].blocks))
    for _ in range(4):
        raw = rng.uniform(box[:, 0] - 2, box[:, 1] + 2, size=(int(rng.integers(3, 7)), k))
        outside = rng.uniform(box[:, 0] - 50, box[:, 1] + 50, size=(5, k))
        inside = rng.uniform(box[:, 0], box[:, 1], size=(5, k))
        candidates = np.vstack([corners, outside, inside])
        clip = (lambda r: dp.clip_rows(r, plan.bounds)) if plan.bounds else (lambda r: r)
        rows = clip(raw)
        base = released_pass1(spec, plan, rows)
        for other in neighbours(rows, clip(candidates)):
            gaps = block_gaps(plan, 1, base, released_pass1(spec, plan, other))
            assert all(g <= s * (1 + 1e-9) for g, s in zip(gaps, plan.sensitivities(1),
                                                              strict=True)), (gaps, cols)
            worst1 = np.maximum(worst1, gaps)
        if spec.passes == 2:
            for shift in (rng.uniform(box[:, 0], box[:, 1]), box[:, 0] - 1.5, None):
                divisor = float(rng.uniform(0.5, 20))
                s = box.mean(axis=1) if shift is None else shift
                base2 = stats.local_pass2(spec, rows, s, divisor)
                sens = plan.sensitivities(2, divisor=divisor, shift=shift)
                worst2 = np.zeros(len(sens))
                for other in neighbours(rows, clip(candidates)):
                    gaps = block_gaps(plan, 2, base2, stats.local_pass2(spec, other, s, divisor))
                    assert all(g <= t * (1 + 1e-9) for g, t in zip(gaps, sens, strict=True))
                    worst2 = np.maximum(worst2, gaps)
                if shift is not None:  # a corner row attains the bound: it is tight
                    assert worst2 == pytest.approx(sens, rel=1e-9)
    # and the pass-1 bound is attained by some corner row
    assert worst1 == pytest.approx(plan.sensitivities(1), rel=1e-9)


def test_pass2_worst_case_covers_every_shift_inside_the_bounds():
    bounds = [BOUNDS["a"], BOUNDS["b"]]
    worst = dp.pass2_sensitivities(bounds)
    rng = np.random.default_rng(7)
    for _ in range(50):
        s = rng.uniform([-3, 0], [5, 120])
        got = dp.pass2_sensitivities(bounds, s)
        assert got[0] <= worst[0] and got[1] <= worst[1]


def test_clip_rows():
    rows = np.array([[-10.0, 50.0], [3.0, 500.0]])
    assert dp.clip_rows(rows, [(-3, 5), (0, 120)]).tolist() == [[-3, 50], [3, 120]]
    assert dp.clip_rows(np.array([1.0, 9.0]), [(0, 5)]).tolist() == [1.0, 5.0]
    with pytest.raises(InputError, match="bounds for a table"):
        dp.clip_rows(rows, [(0, 1)])


def test_count_under_dp_needs_no_bounds_for_other_columns_only_its_own():
    spec = stats.StatSpec("count", ("a",))
    p = dp.plan(spec, dp.DPRequest(rho=0.1, bounds={"a": (0, 1)}), 2)
    assert p.passes[0].length == 1 and p.sensitivities(1) == (1.0,)
    hist = stats.StatSpec("histogram", ("a",), edges=(0.0, 1.0, 2.0))
    assert dp.plan(hist, dp.DPRequest(rho=0.1), 2).sensitivities(1) == (math.sqrt(2),)
    with pytest.raises(InputError, match="clipping bounds for column"):
        dp.plan(stats.StatSpec("mean", ("a",)), dp.DPRequest(rho=0.1), 2)


def test_sigma_calibration_meets_rho_exactly():
    """sum_b (Delta_b / sigma_b)^2 / 2 over all blocks and passes = rho (lattice margin in)."""
    spec = stats.StatSpec("cov", ("a", "b"))
    req = dp.DPRequest(rho=0.3, bounds=BOUNDS)
    p = dp.plan(spec, req, P)
    total = 0.0
    for pp in p.passes:
        bits = pp.lattice_bits
        for blk, sens, sig in zip(pp.blocks, p.sensitivities(pp.index),
                                  p.lattice_sigmas(pp.index), strict=True):
            units = sens * 2.0**bits + (0 if blk.integral else math.sqrt(blk.length))
            total += units**2 / (2 * sig**2)
    assert total == pytest.approx(0.3, rel=1e-12)
    # KLS's tau is zero at these scales but matters for tiny shares
    assert dp.kls_tau(1000.0, 5) == 0.0
    assert dp.kls_tau(0.6, 5) > 1e-3
    assert dp.kls_tau(0.6, 1) == 0.0


def test_budget_too_large_for_the_lattice_is_refused():
    spec = stats.StatSpec("count", ("a",), frac_bits=0)
    with pytest.raises(InputError, match="below one lattice step"):
        dp.plan(spec, dp.DPRequest(rho=50.0, bounds={"a": (0, 1)}), 4)


# ---------------------------------------------------------------------------
# noise: the summed shares have the stated variance (and a wrong scale is caught)
# ---------------------------------------------------------------------------

BIG_HIST = stats.StatSpec("histogram", ("a",), edges=tuple(np.linspace(0.0, 1.0, 20_001)))


def hist_plan(backend: str, parties: int, min_honest: int | None = None) -> dp.NoisePlan:
    spec = stats.StatSpec("histogram", ("a",), edges=BIG_HIST.edges, backend=backend)
    return dp.plan(spec, dp.DPRequest(rho=0.05, min_honest=min_honest), parties)


@pytest.fixture(scope="module", params=["ss", "ckks"])
def shares(request):
    backend = request.param
    plan = hist_plan(backend, P)
    length = plan.passes[0].length
    draws = [dp.party_noise(plan, 1, length, backend) for _ in range(P)]
    return backend, plan, draws


def test_summed_shares_have_the_stated_variance(shares):
    backend, plan, draws = shares
    (sigma,) = plan.sigmas(1)
    total = np.sum(draws, axis=0)
    if backend == "ss":
        assert all(d.dtype == np.int64 for d in draws)  # whole ulps
        sigma_units = plan.lattice_sigmas(1)[0]
        check_noise(total, sigma_units)
    else:
        grid = 2.0 ** -plan.passes[0].lattice_bits
        assert all(d.dtype == np.float64 for d in draws)
        assert all(np.array_equal(d / grid, np.rint(d / grid)) for d in draws)  # on the grid
        check_noise(total, sigma)
    # each share alone has sigma / sqrt(P)
    scale = 2.0 ** plan.passes[0].lattice_bits if backend == "ss" else 1.0
    check_noise(draws[0], sigma * scale / math.sqrt(P))


def test_a_share_at_the_wrong_scale_fails_the_check(shares):
    backend, plan, draws = shares
    (sigma,) = plan.sigmas(1)
    scale = 2.0 ** plan.passes[0].lattice_bits if backend == "ss" else 1.0
    # one party draws with sigma instead of sigma / sqrt(P): a one-party plan
    wrong_plan = hist_plan(backend, 1)
    wrong = dp.party_noise(wrong_plan, 1, plan.passes[0].length, backend)
    with pytest.raises(AssertionError, match="variance ratio"):
        check_noise(wrong + draws[1] + draws[2], sigma * scale)
    # a party that omits its share is caught too (variance (P-1)/P sigma^2)
    with pytest.raises(AssertionError, match="variance ratio"):
        check_noise(draws[1] + draws[2], sigma * scale)


def test_chunked_draws_are_the_measurements_own_in_order(monkeypatch):
    """Drawing in chunks (:data:`smpc.dp.noise.SAMPLE_CHUNK`, 4,096 here) changes nothing but
    the batching: one OpenDP measurement at the scale asked, applied to int64 zeros chunk by
    chunk; the result is the chunks' draws concatenated in order; every full chunk has the
    stated variance (:func:`check_noise` on each of 4 chunks of 4,096: 5% band, false-positive
    rate 6e-7 each), so a chunk drawn at another scale or left unfilled is caught.  ``check``
    runs before every chunk and after the last, and a raising check stops the sampling."""
    from smpc.dp import noise
    from smpc.dp.accounting import _opendp

    monkeypatch.setattr(noise, "SAMPLE_CHUNK", 4096)
    odp = _opendp()
    scales: list[float] = []
    make = odp.m.make_gaussian
    monkeypatch.setattr(odp.m, "make_gaussian",
                        lambda *a, scale, **kw: scales.append(scale) or make(*a, scale=scale,
                                                                             **kw))
    inputs: list[np.ndarray] = []
    outputs: list[np.ndarray] = []
    draw = noise._draw

    def recorded(meas, zeros):
        inputs.append(np.array(zeros))
        out = draw(meas, zeros)
        outputs.append(np.asarray(out, dtype=np.int64))
        return out

    monkeypatch.setattr(noise, "_draw", recorded)
    checks: list[int] = []
    x = dp.sample_discrete_gaussian(1000.0, 4 * 4096 + 3, check=lambda: checks.append(1))
    assert scales == [1000.0]
    assert [len(z) for z in inputs] == [4096] * 4 + [3]
    assert all(z.dtype == np.int64 and not z.any() for z in inputs)
    assert x.dtype == np.int64 and np.array_equal(x, np.concatenate(outputs))
    for chunk in outputs[:4]:
        check_noise(chunk, 1000.0)
    assert len(checks) == 6

    def stop_at_second_chunk():
        if len(inputs) == 6:
            raise InputError("cancelled")

    with pytest.raises(InputError, match="cancelled"):
        dp.sample_discrete_gaussian(1000.0, 3 * 4096, check=stop_at_second_chunk)
    assert len(inputs) == 6  # the first chunk of the second call, no other


def test_party_noise_checks_for_cancellation_between_chunks(monkeypatch):
    """:func:`dp.party_noise` hands its ``check`` to the sampler of every block: called before
    each chunk and after each block's last (chunks of 4,096 here)."""
    from smpc.dp import noise

    monkeypatch.setattr(noise, "SAMPLE_CHUNK", 4096)
    plan = hist_plan("ss", P)
    calls: list[int] = []
    dp.party_noise(plan, 1, plan.passes[0].length, "ss", check=lambda: calls.append(1))
    assert len(calls) == sum(-(-b.length // 4096) + 1 for b in plan.pass_plan(1).blocks)


FRESH_NOISE_CODE = """
from smpc import dp, stats
spec = stats.StatSpec("sum", tuple("abcdefgh"), dp=dp.DPRequest(rho=1.0, bounds=dict.fromkeys(
    "abcdefgh", (0, 1))))
print(dp.party_noise(spec.noise_plan(3), 1, 9, "ss").tolist())
"""


def test_noise_differs_between_processes():
    """Noise is fresh in every process, not only within one (no seed fixed at start-up).

    A sampler seeded the same way in every process would give every query of
    the runtime the same noise, which an observer could learn and subtract;
    within one process that bug is invisible.  Two interpreters each draw one
    party's 9 noise values (scales >= 1e4 ulps): a fresh CSPRNG repeats them
    with probability below 1e-36.
    """
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    outs = [subprocess.run([sys.executable, "-c", FRESH_NOISE_CODE], capture_output=True,
                           text=True, check=True, cwd=root).stdout for _ in range(2)]
    assert len(json.loads(outs[0])) == 9
    assert outs[0] != outs[1]


def test_min_honest_shares_are_sized_for_m_parties():
    plan = hist_plan("ss", P, min_honest=2)
    sigma = plan.lattice_sigmas(1)[0]
    length = plan.passes[0].length
    draws = [dp.party_noise(plan, 1, length, "ss") for _ in range(P)]
    check_noise(draws[0] + draws[1], sigma)                      # any 2 honest: sigma^2
    check_noise(np.sum(draws, axis=0), sigma * math.sqrt(P / 2))  # all 3: 3/2 sigma^2
    assert plan.release_noise_std(1) == pytest.approx(plan.sigmas(1)[0])
    assert plan.release_noise_std(1, keyholder_is_party=True) == pytest.approx(
        plan.sigmas(1)[0] / math.sqrt(2))


def test_party_noise_validation():
    plan = hist_plan("ss", P)
    n = plan.passes[0].length
    with pytest.raises(InputError, match="releases 20003 value"):
        dp.party_noise(plan, 1, n - 1, "ss")
    with pytest.raises(InputError, match="backend 'ss'"):
        dp.party_noise(plan, 1, n, "ckks")
    with pytest.raises(InputError, match="pass"):
        dp.party_noise(plan, 2, n, "ss")
    with pytest.raises(InputError, match="only pass 2"):
        dp.party_noise(plan, 1, n, "ss", divisor=10.0)
    ck = hist_plan("ckks", P)
    with pytest.raises(InputError, match="release grid"):
        dp.party_noise(ck, 1, n, "ckks", frac_bits=16)
    with pytest.raises(InputError, match="noise scale"):
        dp.sample_discrete_gaussian(0.0, 3)


def test_pass2_noise_scales_with_the_divisor():
    spec = stats.StatSpec("var", ("b",))
    p = dp.plan(spec, dp.DPRequest(rho=0.1, bounds=BOUNDS), P)
    s1 = p.sigmas(2, divisor=1.0, shift=np.array([40.0]))
    s1000 = p.sigmas(2, divisor=1000.0, shift=np.array([40.0]))
    # real-unit sigma tracks Delta / D (up to the sqrt(len) ulp rounding margin)
    assert s1000[1] == pytest.approx(s1[1] / 1000, rel=1e-3)
    noise = dp.party_noise(p, 2, 2, "ss", divisor=1000.0, shift=np.array([40.0]))
    assert noise.shape == (2,) and noise.dtype == np.int64


# ---------------------------------------------------------------------------
# adding the noise: ss ring and ckks grid
# ---------------------------------------------------------------------------

def test_add_ring_noise_and_range_check():
    codec = FixedPoint(16)
    values = np.array([1.5, -2.25, 1000.0])
    noise = np.array([3, -70000, 5], dtype=np.int64)
    enc = codec.encode(values, headroom=P)
    noisy = dp.add_ring_noise(enc, noise, headroom=P, codec=codec)
    assert np.allclose(codec.decode(noisy), values + noise * 2.0**-16)
    near = codec.encode(np.array([codec.max_abs(P) * 0.999999]), headroom=P)
    with pytest.raises(EncodingRangeError, match="plus its privacy noise") as info:
        dp.add_ring_noise(near, np.array([2**50], dtype=np.int64), headroom=P)
    assert str(codec.max_abs(P) * 0.999999)[:6] not in str(info.value)  # no value leaked
    with pytest.raises(EncodingRangeError):  # int64 overflow is caught, not wrapped
        dp.add_ring_noise(np.array([2**63 - 10], dtype=np.uint64),
                          np.array([100], dtype=np.int64), headroom=1)


def test_ss_end_to_end_mean_is_within_the_stated_noise():
    rng = np.random.default_rng(3)
    spec = stats.StatSpec("mean", ("b",))
    plan = dp.plan(spec, dp.DPRequest(epsilon=1.0, delta=1e-6, bounds=BOUNDS), P)
    tables = [rng.normal(40, 20, size=(n, 1)) for n in (300, 500, 200)]
    codec = spec.codec
    total = np.zeros(2, dtype=np.uint64)
    for rows in tables:
        agg = stats.local_pass1(spec, dp.clip_rows(rows, plan.bounds))
        noise = dp.party_noise(plan, 1, 2, "ss")
        total += dp.add_ring_noise(codec.encode(agg, headroom=P), noise, headroom=P)
    summed = dp.postprocess_pass1(plan, codec.decode(total))
    exact = stats.local_pass1(spec, dp.clip_rows(np.vstack(tables), plan.bounds))
    sig = plan.sigmas(1)
    assert abs(summed[0] - exact[0]) <= 6 * sig[0]
    assert abs(summed[1] - exact[1]) <= 6 * sig[1]


def test_ckks_release_removes_the_ckks_error_exactly():
    ckks = pytest.importorskip("smpc.ckks")
    spec = stats.StatSpec("sum", ("b",), backend="ckks")
    plan = dp.plan(spec, dp.DPRequest(rho=0.1, bounds=BOUNDS), P)
    holder = ckks.KeyHolder("aggregate")
    public = ckks.load_context(holder.public_context())
    rng = np.random.default_rng(5)
    contributions = []
    for _ in range(P):
        agg = stats.local_pass1(spec, dp.clip_rows(rng.uniform(0, 150, (50, 1)), plan.bounds))
        contributions.append(dp.noisy_ckks_values(plan, agg, dp.party_noise(plan, 1, 2, "ckks")))
    cts = ckks.add_ciphertexts(public, [ckks.encrypt_public(public, c) for c in contributions])
    std = plan.release_noise_std(1)
    assert std >= plan.flood_std  # the DP noise replaces the flood
    released = holder.release(holder.decrypt(cts, 2), dp_noise_std=std)
    # exactly the grid-valued sum of the noisy contributions: no CKKS error left
    assert np.array_equal(released, np.sum(contributions, axis=0))


# ---------------------------------------------------------------------------
# post-processing
# ---------------------------------------------------------------------------

def test_postprocessing():
    req = dp.DPRequest(rho=0.1, bounds=BOUNDS)
    count = dp.plan(stats.StatSpec("count", ("a",)), req, 2)
    assert dp.postprocess_pass1(count, np.array([-3.4])).tolist() == [0]
    mean = dp.plan(stats.StatSpec("mean", ("a",)), req, 2)
    assert dp.postprocess_pass1(mean, np.array([-3.0, 7.0])).tolist() == [1.0, 7.0]
    var = dp.plan(stats.StatSpec("var", ("a",)), req, 2)
    assert dp.postprocess_pass1(var, np.array([0.2, 7.0]))[0] == 2.0
    hist = dp.plan(stats.StatSpec("histogram", ("a",), edges=(0.0, 1.0)), req, 2)
    assert dp.postprocess_pass1(hist, np.array([4.4, -1.2, 2.6, -0.2, 0.3])).tolist() == [
        4, 0, 3, 0, 0]
    assert dp.postprocess_shift(var, np.array([9.0])).tolist() == [5.0]
    cov = dp.postprocess_covariance(np.array([[1.0, 2.0], [2.0, -0.5]]))
    assert np.all(np.linalg.eigvalsh(cov) >= -1e-12) and np.all(np.diag(cov) >= 0)
    assert np.allclose(cov, cov.T)
    good = np.array([[2.0, 0.5], [0.5, 1.0]])
    assert np.allclose(dp.postprocess_covariance(good), good)


def test_dp_module_uses_no_insecure_randomness():
    import ast
    from pathlib import Path

    from tests.unit.test_hygiene import insecure_randomness

    files = sorted(Path(dp.__file__).parent.glob("*.py"))
    assert len(files) > 1  # every part of the package, not only its __init__
    for path in files:
        assert not insecure_randomness(ast.parse(path.read_text())), path
