"""Measuring the released differential-privacy noise (the harness of test_dp_released_noise.py).

Method, error rates and power: see the docstring of test_dp_released_noise.py.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest
from scipy import stats as scipy_stats

from smpc import aggregate, ckks, simulator, stats
from smpc.errors import InputError
from smpc.stats import rowsource as stat_rowsource

P = 3
ALPHA = 1e-6
POWER = 1 - 1e-6
TOO_SMALL = 1 / 17**2
MISSING = (P - 1) / P
ONE_FULL = (2 * P - 1) / P
ALL_FULL = float(P)
NEAR = {"no noise": 0.0, "17x too small": TOO_SMALL, "a share missing": MISSING,
        "one party full sigma": ONE_FULL, "every party full sigma": ALL_FULL}
FAR = {"no noise": 0.0, "17x too small": TOO_SMALL, "every party full sigma": ALL_FULL}

# The documented split of rho over the released blocks (smpc/dp/planning.py, "Split of rho").
SPLIT = {
    "count": {"count": 1.0},
    "sum": {"count": 0.1, "sums": 0.9},
    "mean": {"count": 0.25, "sums": 0.75},
    "two_pass": {"count": 0.10, "sums": 0.05, "first": 0.10, "second": 0.75},
    "counts": {"counts": 1.0},
}
TWO_PASS = ("var", "std", "cov", "corr", "linreg")
CKKS_GRID_BITS = -round(math.log2(ckks.release_parameters(ckks.get_preset("aggregate")).grid))


# ---------------------------------------------------------------------------
# the mechanism as documented, derived here
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Blk:
    name: str
    start: int
    length: int
    sigma: float        # planned std (real units): what min_honest honest shares add up to
    sigma_units: float  # the same in lattice units
    integral: bool
    released: float     # std of the released noise: all P shares, sigma sqrt(P / min_honest)

    @property
    def slice(self) -> slice:
        return slice(self.start, self.start + self.length)

    @property
    def slack(self) -> float:
        """Bound on |lattice rounding| per coordinate, in units of the released std."""
        return 0.0 if self.integral else (P / 2 + 0.01) / (self.sigma_units * self.released
                                                           / self.sigma)


def expected_blocks(spec: stats.StatSpec, rho: float, pass_index: int,
                    shift: np.ndarray | None = None, divisor: float = 1.0) -> list[Blk]:
    """Blocks of one pass with the total noise std the documentation prescribes.

    Shares of ``sigma^2 / m`` (``m = min_honest``, default P): the calibration
    is for m honest shares, and all P of them are released.
    """
    m = spec.dp.min_honest or P
    k = len(spec.value_columns)
    stat = spec.statistic
    if stat in ("histogram", "quantiles"):
        # quantiles: the fine bins, then the counts below / above the bounds (issue 13)
        per = len(spec.edges) + 1 if stat == "histogram" else spec.resolution + 2
        layout = [("counts", 1 + k * per, math.sqrt(1 + k), True)]
        split = SPLIT["counts"]
    else:
        b = np.array([spec.dp.bounds[c] for c in spec.value_columns])
        split = SPLIT["two_pass" if stat in TWO_PASS else stat]
        if pass_index == 1:
            mags = np.max(np.abs(b), axis=1)
            layout = [("count", 1, 1.0, True)]
            if stat != "count":
                layout.append(("sums", k, float(np.sqrt(np.sum(mags**2))), False))
        else:
            w = np.maximum(b[:, 1] - shift, shift - b[:, 0])
            w2 = w**2
            second = math.sqrt((np.sum(w2) ** 2 + np.sum(w2**2)) / 2)  # sum_{i<=j} Wi^2 Wj^2
            layout = [("first", k, float(np.sqrt(np.sum(w2))) / divisor, False),
                      ("second", k * (k + 1) // 2, second / divisor, False)]
    if spec.backend == "ss":
        bits = spec.frac_bits if pass_index == 1 else spec.moment_codec.frac_bits
    else:
        bits = CKKS_GRID_BITS
    out, start = [], 0
    for name, length, sens, integral in layout:
        units = (sens * 2.0**bits + (0.0 if integral else math.sqrt(length))) / math.sqrt(
            2 * rho * split[name])
        assert units / math.sqrt(m) >= 6, "shares below 6 lattice units: KLS tau not negligible"
        sigma = units * 2.0**-bits
        out.append(Blk(name, start, length, sigma, units, integral, sigma * math.sqrt(P / m)))
        start += length
    return out


# ---------------------------------------------------------------------------
# running many protocol instances and recording what each pass releases
# ---------------------------------------------------------------------------

@dataclass
class Releases:
    summed: dict[str, np.ndarray] = field(default_factory=dict)
    release_std: dict[str, float] = field(default_factory=dict)
    shifts: list[tuple[tuple[float, ...], float]] = field(default_factory=list)


def recorded(monkeypatch: pytest.MonkeyPatch) -> Releases:
    """Wrap the recipients' collect functions and the parties' pass-2 aggregation (observe only)."""
    rec = Releases()
    ss_collect, ckks_collect, local_pass2 = (
        aggregate.ss_collect, aggregate.ckks_collect, stat_rowsource.local_pass2)

    def ss(t, **kw):
        out = ss_collect(t, **kw)
        rec.summed[kw["tag"]] = out.copy()
        return out

    def ck(t, **kw):
        out = ckks_collect(t, **kw)
        rec.summed[kw["tag"]] = out.copy()
        rec.release_std[kw["tag"]] = kw["dp_noise_std"]
        return out

    def lp2(spec, rows, shift, total, scale=None):
        assert scale is None  # under DP the moments are never scaled (smpc.stats.bounds)
        rec.shifts.append((tuple(np.asarray(shift, dtype=np.float64)), float(total)))
        return local_pass2(spec, rows, shift, total)

    monkeypatch.setattr(aggregate, "ss_collect", ss)
    monkeypatch.setattr(aggregate, "ckks_collect", ck)
    monkeypatch.setattr(stat_rowsource, "local_pass2", lp2)  # where ArrayRows looks it up
    return rec


def run_instances(specs: Sequence[stats.StatSpec], tables: Sequence[np.ndarray]) -> list:
    """Run ``specs[i]`` as protocol instance ``i{i}``, in order, in one simulation.

    The real roles of :func:`smpc.stats.simulate`, looped; on ckks one key
    holder serves every instance (an analyst keeps its key between queries).
    Returns the recipient's results; an InputError of the recipient (raised
    while finishing, after both passes were released: e.g. a fit made
    impossible by far too much noise) is returned in its place, so that the
    noise checks still run and say what went wrong -- the tests then assert
    that there was none.
    """
    parties = [f"p{i}" for i in range(len(tables))]
    jobs = [(s, f"i{i}") for i, s in enumerate(specs)]
    roles = {}
    public = None
    if specs[0].backend == "ckks":
        holder = ckks.KeyHolder("aggregate")
        public = ckks.load_context(holder.public_context())
        roles["coordinator"] = lambda t: [
            stats.run_aggregator_ckks(t, s, parties=parties, keyholder="analyst", tag=g,
                                      public_context=public) for s, g in jobs]
        roles["analyst"] = lambda t: [
            _or_error(stats.run_keyholder_ckks, t, s, aggregator="coordinator",
                      keyholder=holder, tag=g) for s, g in jobs]
        recipient = "analyst"
    else:
        roles["coordinator"] = lambda t: [
            _or_error(stats.run_recipient_ss, t, s, parties=parties, tag=g) for s, g in jobs]
        recipient = "coordinator"
    for name, rows in zip(parties, tables, strict=True):
        roles[name] = lambda t, rows=rows: [
            stats.run_party(t, s, rows[:, : len(s.value_columns)], parties=parties,
                            recipient="coordinator", tag=g, public_context=public)
            for s, g in jobs]
    return simulator.run(roles, timeout=600).results[recipient]


def _or_error(role, *args, **kwargs):
    try:
        return role(*args, **kwargs)
    except InputError as exc:
        return exc


# ---------------------------------------------------------------------------
# exact aggregates, computed independently
# ---------------------------------------------------------------------------

def exact_pass1(spec: stats.StatSpec, pooled: np.ndarray) -> np.ndarray:
    """The exact pass-1 aggregate of the pooled rows (clipped where DP has bounds)."""
    x = pooled[:, : len(spec.value_columns)]
    n = float(x.shape[0])
    if spec.statistic == "histogram":
        e = np.asarray(spec.edges)
        parts = [np.concatenate([np.histogram(c, e)[0], [np.sum(c < e[0]), np.sum(c > e[-1])]])
                 for c in x.T]
        return np.concatenate([[n], *parts]).astype(np.float64)
    if spec.statistic == "quantiles":
        lo, hi = spec.bounds
        e = np.linspace(lo, hi, spec.resolution + 1)
        parts = [np.concatenate([np.histogram(c[(c >= lo) & (c <= hi)], e)[0],
                                 [np.sum(c < lo), np.sum(c > hi)]]) for c in x.T]
        return np.concatenate([[n], *parts]).astype(np.float64)
    b = np.array([spec.dp.bounds[c] for c in spec.value_columns])
    x = np.clip(x, b[:, 0], b[:, 1])
    return np.array([n]) if spec.statistic == "count" else np.concatenate([[n], x.sum(axis=0)])


def raw_moments(spec: stats.StatSpec, pooled: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    b = np.array([spec.dp.bounds[c] for c in spec.value_columns])
    x = np.clip(pooled[:, : len(spec.value_columns)], b[:, 0], b[:, 1])
    return float(x.shape[0]), x.sum(axis=0), x.T @ x


def exact_pass2(moments, shift: np.ndarray, divisor: float) -> np.ndarray:
    """sum (x-s) / D and upper triangle of sum (x-s)(x-s)^T / D from the raw moments.

    Float error: |sum x x^T| <= 1e7 here, so about 1e-9 absolute before the
    division by D -- below 1e-6 lattice unit on either backend.
    """
    n, s1, s2 = moments
    first = s1 - n * shift
    second = s2 - np.outer(shift, s1) - np.outer(s1, shift) + n * np.outer(shift, shift)
    iu = np.triu_indices(len(shift))
    return np.concatenate([first, second[iu]]) / divisor


def public_shift(spec: stats.StatSpec, released1: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(shift, count sent to the parties, divisor D) as post-processing of the noisy pass 1.

    The documented rules: the count at least ddof + 1 (whole on ckks, where the
    key holder rounds it), the mean rounded to the pass-1 grid, clamped into
    the bounds, rounded again; D = that count on ss, 1 on ckks.
    """
    n = released1[0] if spec.backend == "ss" else float(round(released1[0]))
    n = max(n, spec.ddof + 1.0)
    g = spec.codec.resolution
    b = np.array([spec.dp.bounds[c] for c in spec.value_columns])
    shift = np.round(np.clip(np.round(released1[1:] / n / g) * g, b[:, 0], b[:, 1]) / g) * g
    return shift, n, (n if spec.backend == "ss" else 1.0)


@dataclass
class Draws:
    """Normalised noise draws of one pass of one run, with its blocks."""

    z: np.ndarray
    blocks: list[Blk]

    @property
    def slack(self) -> np.ndarray:
        out = np.empty(self.z.size)
        for b in self.blocks:
            out[b.slice] = b.slack
        return out


def measure(specs, tables, rec: Releases, rho: float) -> list[list[Draws]]:
    """Per run: the normalised draws of each pass; checks the plan and the public values."""
    pooled = np.vstack(tables)
    out = []
    expected_shifts = []
    for i, spec in enumerate(specs):
        plan = spec.noise_plan(P)
        released1 = rec.summed[f"i{i}/p1"]
        blocks = expected_blocks(spec, rho, 1)
        assert plan.lattice_sigmas(1) == pytest.approx([b.sigma_units for b in blocks], rel=1e-9)
        z1 = released1 - exact_pass1(spec, pooled)
        runs = [Draws(np.concatenate([z1[b.slice] / b.released for b in blocks]), blocks)]
        if spec.backend == "ckks":
            check_release_std(spec, rec.release_std[f"i{i}/p1"], blocks)
        if spec.passes == 2:
            shift, n, divisor = public_shift(spec, released1)
            expected_shifts += [(tuple(shift), n)] * P
            blocks = expected_blocks(spec, rho, 2, shift, divisor)
            assert plan.lattice_sigmas(2, divisor=divisor, shift=shift) == pytest.approx(
                [b.sigma_units for b in blocks], rel=1e-9)
            z2 = rec.summed[f"i{i}/p2"] - exact_pass2(raw_moments(spec, pooled), shift, divisor)
            runs.append(Draws(np.concatenate([z2[b.slice] / b.released for b in blocks]), blocks))
            if spec.backend == "ckks":
                check_release_std(spec, rec.release_std[f"i{i}/p2"], blocks)
        out.append(runs)
    # the parties' pass-2 shift and count are exactly the post-processed noisy pass 1
    assert Counter(rec.shifts) == Counter(expected_shifts)
    return out


def check_release_std(spec, dp_noise_std: float, blocks: list[Blk]) -> None:
    """The key holder skips its flood only for DP noise it does not know, at least the flood.

    It is not a data party here, so it is told the noise of the min_honest
    guaranteed shares: the smallest block's planned sigma.
    """
    assert dp_noise_std == pytest.approx(min(b.sigma for b in blocks), rel=1e-9)
    assert dp_noise_std >= ckks.release_parameters(ckks.get_preset(spec.ckks_preset)).flood_std


# ---------------------------------------------------------------------------
# the statistical checks
# ---------------------------------------------------------------------------

@dataclass
class Check:
    name: str
    kind: str                # "chi2" (value ~ chi^2_dof) or "normal" (value ~ N(0, 1))
    value: float
    dof: int
    slack: float             # widening for the lattice rounding (sqrt scale / additive)
    against: dict[str, float]  # variance factors c the check must reject (chi2)
    repeat_norm: int = 0     # normal checks: n of the "same draws repeated" alternative
    repeat_slack: float = 0.0


class Verdicts:
    """Collects checks, then evaluates them at ALPHA / m each and asserts their power."""

    def __init__(self) -> None:
        self.checks: list[Check] = []

    def variance(self, name: str, z: np.ndarray, slack: np.ndarray,
                 against: dict[str, float]) -> None:
        self.checks.append(Check(name, "chi2", float(np.sum(z**2)), z.size,
                                 float(np.linalg.norm(slack)), against))

    def spread(self, name: str, draws: list[Draws]) -> None:
        """Within-block spread: sum (z - block mean)^2, pooled; 0 if a draw is reused."""
        total, dof, slack2 = 0.0, 0, 0.0
        for d in draws:
            for b in d.blocks:
                if b.length > 1:
                    v = d.z[b.slice]
                    total += float(np.sum((v - v.mean()) ** 2))
                    dof += b.length - 1
                    slack2 += b.length * b.slack**2
        # with one draw per block the spread is that of the rounding alone: <= slack^2
        self.checks.append(Check(name, "chi2", total, dof, math.sqrt(slack2),
                                 {"one draw reused across a block": 0.0}))

    def across_runs(self, name: str, draws: list[Draws]) -> None:
        """Spread of each coordinate over the runs (same data): 0 if every run reuses one draw."""
        z = np.stack([d.z for d in draws])
        slack = np.stack([d.slack for d in draws])
        self.checks.append(Check(name, "chi2", float(np.sum((z - z.mean(axis=0)) ** 2)),
                                 (z.shape[0] - 1) * z.shape[1], float(np.linalg.norm(slack)),
                                 {"the same noise in every run": 0.0}))

    def mean(self, name: str, z: np.ndarray, slack: np.ndarray) -> None:
        self.checks.append(Check(name, "normal", float(z.sum() / math.sqrt(z.size)), 0,
                                 float(slack.sum() / math.sqrt(z.size)), {}))

    def independent(self, name: str, a: np.ndarray, b: np.ndarray, slack_a: np.ndarray,
                    slack_b: np.ndarray) -> None:
        """C = a.b / |b| ~ N(0, 1) if a is independent of b (exactly, given b)."""
        self.checks.append(Check(name, "normal", float(a @ b / np.linalg.norm(b)), 0,
                                 float(np.linalg.norm(slack_a)), {}, repeat_norm=b.size,
                                 repeat_slack=float(np.linalg.norm(slack_b))))

    def assert_all(self) -> None:
        level = ALPHA / len(self.checks)
        failures, weak = [], []
        for c in self.checks:
            if c.kind == "chi2":
                lo = scipy_stats.chi2.ppf(level / 2, c.dof)
                hi = scipy_stats.chi2.isf(level / 2, c.dof)
                lo_w = max(math.sqrt(lo) - c.slack, 0.0) ** 2
                hi_w = (math.sqrt(hi) + c.slack) ** 2
                if not lo_w <= c.value <= hi_w:
                    failures.append(f"{c.name}: {c.value / c.dof:.4f} x planned variance, "
                                    f"outside [{lo_w / c.dof:.4f}, {hi_w / c.dof:.4f}]")
                for what, factor in c.against.items():
                    if factor == 0.0:  # only the rounding is left: at most slack^2
                        power = 1.0 if c.slack**2 < lo_w else 0.0
                    else:
                        power = (scipy_stats.chi2.cdf(lo_w / factor, c.dof)
                                 + scipy_stats.chi2.sf(hi_w / factor, c.dof))
                    if power < POWER:
                        weak.append(f"{c.name}: power {power:.3g} against {what}")
            else:
                bound = scipy_stats.norm.isf(level / 2) + c.slack
                if abs(c.value) > bound:
                    failures.append(f"{c.name}: {c.value:.2f} outside +-{bound:.2f}")
                if c.repeat_norm:
                    power = scipy_stats.chi2.sf((bound + c.repeat_slack) ** 2, c.repeat_norm)
                    if power < POWER:
                        weak.append(f"{c.name}: power {power:.3g} against repeated noise")
        assert not weak, "test design too weak: " + "; ".join(weak)
        assert not failures, "released noise is not as planned: " + "; ".join(failures)


def check_statistic(v: Verdicts, label: str, runs: list[list[Draws]], pass_index: int,
                    against_pass: dict[str, float], *, pairs: bool = True) -> None:
    """Variance (pass and blocks), spread, mean and freshness of one pass over its runs."""
    draws = [r[pass_index - 1] for r in runs]
    z = np.concatenate([d.z for d in draws])
    slack = np.concatenate([d.slack for d in draws])
    tag = f"{label} pass {pass_index}"
    v.variance(f"{tag} all", z, slack, against_pass)
    blocks = draws[0].blocks
    if len(blocks) > 1:
        for j, b in enumerate(blocks):
            zb = np.concatenate([d.z[d.blocks[j].slice] for d in draws])
            sb = np.concatenate([np.full(b.length, d.blocks[j].slack) for d in draws])
            # a block noised at another block's scale: variance (sigma_other / sigma_b)^2
            swaps = {f"{b.name} at the {o.name} scale": (o.released / b.released) ** 2
                     for o in blocks if o.name != b.name}
            # one value per run (the count) leaves only the far alternatives
            v.variance(f"{tag} block {b.name}", zb, sb,
                       {**(FAR if b.length > 1 else {"no noise": 0.0}), **swaps})
    if any(b.length > 1 for b in blocks):
        v.spread(f"{tag} spread within blocks", draws)
    v.mean(f"{tag} mean", z, slack)
    v.across_runs(f"{tag} spread across runs", draws)
    if not pairs:
        return
    first = range(0, len(draws) - 1, 2)
    v.independent(f"{tag} fresh across runs",
                  np.concatenate([draws[i].z for i in first]),
                  np.concatenate([draws[i + 1].z for i in first]),
                  np.concatenate([draws[i].slack for i in first]),
                  np.concatenate([draws[i + 1].slack for i in first]))
