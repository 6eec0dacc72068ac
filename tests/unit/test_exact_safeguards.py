"""Safe defaults and exact mode, attacked over real party nodes (processes, mutual TLS).

A federation made by ``smpc federation init`` answers only with differential privacy; exact
answers are an explicit opt-in (``--allow-exact``), and then each party enforces, on its own
rows and before anything leaves it, that one query does not return one person's value
(:mod:`parties.privacy.exact`).  Each test is named after the attack of issue 12 it stops.

Every attack here is deterministic (exact answers, exact ``ss`` counts), so each test's false
positive rate is 0 and its power against the bug it targets is 1: without the safeguard the
attack's premise -- asserted from numpy on the same data -- makes the assertion fail.

The data: three parties of 30 rows each (a 90-row cohort).  Each party has 18 people aged 45,
6 aged 52 and 6 people whose ages are unique in the federation (3 below 45, 3 above 52), so a
fine histogram puts each of those 18 alone in a bin, and the 5th youngest -- what a 0.05
quantile returns -- is one of them.  The 52-year-olds are 18 in the federation but 6 at each
party: a cell only a coordinator-side suppression would release.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from parties.analyst.client import Client, PermissionDenied
from parties.config import load_party_config
from parties.config.layout import Layout
from parties.federation import local as federation
from parties.privacy.exact import DifferencingRefused, ExactHistory
from smpc import dp
from smpc.errors import InputError
from smpc.stats import StatSpec, finish, local_pass1, quantiles_from_histogram, suppress_small_cells
from tests.tolerances import Backend, Moments, assert_within, quantile_tol

PARTIES = ("org-a", "org-b", "org-c")
MIN_CELL = 10     # smpc federation init's default --min-cell-size (asserted below)
MIN_COHORT = 10   # ... and --min-cohort
EDGES = np.linspace(0.0, 125.0, 2501)  # 2,500 bins of 0.05 years


def party_data(k: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Party ``k``'s 30 rows: ages 45 (x18), 52 (x6) and six ages no other row has."""
    lone = [20 + 7 * k, 22 + 7 * k, 24 + 7 * k, 70 + 7 * k, 72 + 7 * k, 74 + 7 * k]
    age = np.array([45.0] * 18 + [52.0] * 6 + lone, dtype=float)
    return {"age": age, "sex": rng.integers(0, 2, 30).astype(float),
            "zip": rng.integers(1000, 1100, 30).astype(float),
            "chol": np.round(rng.normal(200.0, 30.0, 30), 1)}


def write_csv(path: Path, cols: dict[str, np.ndarray]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(list(cols))
        for row in zip(*cols.values(), strict=True):
            w.writerow([repr(float(v)) for v in row])


def smpc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "parties.cli", *args], capture_output=True,
                          text=True, timeout=120)


def init(directory: Path, files: list[Path], *flags: str) -> str:
    """``smpc federation init DIR --data FILES... FLAGS`` (the command a user runs)."""
    proc = smpc("federation", "init", str(directory), "--data", *map(str, files), *flags)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("exact")
    rng = np.random.default_rng(1212)
    data, files = {}, []
    for k, name in enumerate(PARTIES):
        data[name] = party_data(k, rng)
        files.append(root / f"{name}.csv")
        write_csv(files[-1], data[name])
    return root, files, data


@pytest.fixture(scope="module")
def exact_fed(world):
    """A federation whose every party opted in to exact answers (``--allow-exact``)."""
    root, files, data = world
    d = root / "exact-fed"
    out = init(d, files, "--allow-exact")
    assert "exact answers allowed by org-a, org-b, org-c" in out
    federation.up(d, timeout=60)
    client = Client(d, timeout=60)
    try:
        yield client, data
    finally:
        client.close()
        federation.down(d)


def pooled(data, column: str) -> np.ndarray:
    return np.concatenate([data[p][column] for p in PARTIES])


def released_histogram(data, column: str, edges: np.ndarray, min_cell: int) -> np.ndarray:
    """What the parties' suppression should release: each party's own bin counts with those
    below ``min_cell`` set to 0, summed (computed here with numpy, independently)."""
    total = np.zeros(len(edges) - 1)
    for p in PARTIES:
        counts = np.histogram(data[p][column], bins=edges)[0].astype(float)
        counts[counts < min_cell] = 0
        total += counts
    return total


def refusal_sentence(err: PermissionDenied) -> str:
    """The refusal without the refusing party's name (the first party to refuse may vary)."""
    text = str(err)
    for p in PARTIES:
        text = text.replace(p, "<party>")
    return text


# ------------------------------------------------------------------------------ defaults


def test_exact_default_answers(world, exact_fed, tmp_path):
    """``smpc federation init`` writes DP-only policies: an exact statistic is refused by
    every party, a differentially private one is answered (budget epsilon=1, delta=1e-6 per
    analyst).  Exact answers are a per-party opt-in: ``--allow-exact org-a`` opens org-a only;
    ``--allow-exact`` alone opens every party, whose exact mean is then the pooled mean.

    Catches: a default that answers exactly (the exact mean would be returned, not refused),
    an opt-in that opens other parties than those named, an opt-in that does not work."""
    _root, files, data = world
    d = tmp_path / "default"
    out = init(d, files)
    assert "exact answers allowed by no party" in out
    lay = Layout(d)
    for p in PARTIES:
        pol = load_party_config(lay.config(p)).policy
        assert pol.require_dp is True and (pol.epsilon, pol.delta) == (1.0, 1e-6)
        assert (pol.min_cell_size, pol.min_cohort_size) == (MIN_CELL, MIN_COHORT)
    one = tmp_path / "one"
    init(one, files, "--allow-exact", "org-a")
    assert {p: load_party_config(Layout(one).config(p)).policy.require_dp
            for p in PARTIES} == {"org-a": False, "org-b": True, "org-c": True}

    federation.up(d, timeout=60)
    try:
        with Client(d, timeout=60) as client:
            with pytest.raises(PermissionDenied) as err:
                client.compute(StatSpec("mean", ("chol",)))
            assert "requires differential privacy" in str(err.value)
            noisy = client.compute(StatSpec("mean", ("chol",), dp=dp.DPRequest(
                epsilon=0.5, delta=1e-6, bounds={"chol": (0.0, 400.0)})))
            assert noisy.details["privacy"]["cost"]["epsilon"] == pytest.approx(0.5)
    finally:
        federation.down(d)

    client, data = exact_fed
    got = client.compute(StatSpec("mean", ("chol",)))
    X = pooled(data, "chol")
    assert got.n == 90 and "privacy" not in got.details
    assert_within(got.value, [X.mean()], Moments(X, Backend("ss", 3)).mean_tol, "exact mean")


def test_allow_exact_names_only_parties(world, tmp_path):
    """``--allow-exact`` with a name that is not a party, or ``--min-cell-size 0``, is one
    line on stderr and no federation (catches an opt-in that silently opens nobody)."""
    _root, files, _data = world
    for flags, words in ((("--allow-exact", "nobody"), "allow_exact names nobody, not a party"),
                         (("--min-cell-size", "0"), "--min-cell-size must be at least 1")):
        d = tmp_path / flags[0].strip("-")
        proc = smpc("federation", "init", str(d), "--data", *map(str, files), *flags)
        assert proc.returncode != 0 and proc.stderr.count("\n") == 1, proc.stderr
        assert words in proc.stderr and "Traceback" not in proc.stderr
        assert not (d / "federation.json").exists()


# ------------------------------------------------------------------------ differencing


def test_differencing_two_exact_sums(exact_fed):
    """Two exact sums whose filters differ by one person's quasi-identifiers (age, sex, zip of
    one of org-b's rows): their difference would be that person's cholesterol.  The first is
    answered; the second is refused -- at org-b its rows differ by one person, at the other
    parties its rows are the same under another filter, which is refused alike (an answer
    equal to the first would say "nobody differs", and the refusal must not tell "no
    difference" from "one person": the same sentence for every filter over the very same
    rows; :class:`ExactHistory` is tested row by row below).  A filter that drops 54 rows
    (18 per party, >= min_cohort_size) and the first filter again are answered.

    Catches: a party that does not remember the rows of its exact answers, or compares them
    wrongly (the one-person difference is answered), and a refusal that tells 0 from 1."""
    client, data = exact_fed
    b = data["org-b"]
    i = 18  # org-b's first row with a unique age
    victim = (f"not (age == {b['age'][i]:g} and sex == {b['sex'][i]:g} and "
              f"zip == {b['zip'][i]:g})")
    X = pooled(data, "chol")
    tol = Moments(X, Backend("ss", 3)).sum_tol
    first = client.compute(StatSpec("sum", ("chol",)))
    assert_within(first.value, [X.sum()], tol, "exact sum")
    # the attack's premise: the two sums would differ by exactly the victim's value
    others = np.ones(90, dtype=bool)
    others[30 + i] = False
    assert X.sum() - X[others].sum() == pytest.approx(b["chol"][i])

    with pytest.raises(PermissionDenied) as err:
        client.compute(StatSpec("sum", ("chol",)), victim)
    text = str(err.value)
    assert refusal_sentence(err.value).startswith(
        "<party> refuses: the rows of this exact request differ from those of an earlier exact "
        f"answer to 'analyst' by fewer than {MIN_COHORT}")
    assert "policy.min_cohort_size" in text and f"{b['chol'][i]:g}" not in text
    with pytest.raises(PermissionDenied) as same_rows:
        client.compute(StatSpec("sum", ("chol",)), "age >= 0")  # every row, another filter
    assert refusal_sentence(same_rows.value) == refusal_sentence(err.value)

    wide = client.compute(StatSpec("sum", ("chol",)), "age != 45")
    keep = pooled(data, "age") != 45
    assert wide.n == 36 and keep.sum() == 36
    assert_within(wide.value, [X[keep].sum()], Moments(X[keep], Backend("ss", 3)).sum_tol,
                  "exact sum without the 45-year-olds")
    again = client.compute(StatSpec("sum", ("chol",)))
    assert_within(again.value, [X.sum()], tol, "the first sum again")


def test_exact_history_refuses_only_small_differences(tmp_path):
    """The row-set comparison itself (no network): the same filter over the same rows passes;
    1 to k-1 rows of difference, or none under another filter, are refused; k rows pass; other
    analysts and datasets are compared separately; ``keep`` bounds the rows remembered and
    ``keep=0`` turns the check off.

    Catches: an off-by-one at ``min_difference``, a comparison across analysts, an unbounded
    history."""
    h = ExactHistory(tmp_path / "party.db")
    n = 100
    everyone = np.ones(n, dtype=bool)

    def admit(rows, text="", analyst="a", dataset="d", keep=50):
        h.admit(me="org-x", analyst=analyst, dataset=dataset, filter_text=text, selected=rows,
                n_table=n, min_difference=10, keep=keep)

    admit(everyone)
    admit(everyone)                                      # identical: answered again
    assert h.count("a", "d") == 1
    for dropped in (1, 9):
        rows = everyone.copy()
        rows[:dropped] = False
        with pytest.raises(DifferencingRefused, match="fewer than 10"):
            admit(rows, f"drop {dropped}")
    with pytest.raises(DifferencingRefused, match="fewer than 10"):
        admit(everyone, "another filter")
    rows = everyone.copy()
    rows[:10] = False
    admit(rows, "drop 10")                               # 10 rows apart: answered
    admit(np.flatnonzero(rows) + 1, "drop 10")           # row numbers work as a mask does
    assert h.count("a", "d") == 2
    one_less = everyone.copy()
    one_less[50] = False
    admit(one_less, "x", analyst="b")                    # another analyst: its own history
    admit(one_less, "x", dataset="e")                    # another dataset: its own history
    for k in range(3):
        many = np.zeros(n, dtype=bool)
        many[10 * k:10 * k + 50] = True
        admit(many, f"window {k}", analyst="c", keep=2)
    assert h.count("c", "d") == 2                        # only the newest 2 are kept
    admit(one_less, "y", keep=0)                         # the check turned off


# ------------------------------------------------------------------------- quantiles


def test_quantile_extremes(exact_fed):
    """Exact quantiles at probabilities 0 and 1 -- the youngest and the oldest person -- are
    refused by the parties (``policy.exact_quantile_margin``, from the public request alone).
    Within the margin, a quantile is read off the parties' suppressed fine histogram: the
    0.05 quantile, which on the raw data is a lone person's age (the 5th youngest, alone in
    its bin), is instead read from the 45-year-olds' bin (54 rows), and no returned quantile
    is within a bin of any of the 18 lone ages.  The recipient reads every quantile off the
    same released histogram, which ``test_small_cells_suppressed`` observes in full (same
    2,500 bins), so no probability it could finish with returns a lone person either.

    Catches: extremes answered, a fine histogram sent unsuppressed (the 0.05 quantile would
    be within a bin of the lone 5th youngest)."""
    client, data = exact_fed
    bounds = (0.0, 125.0)
    with pytest.raises(PermissionDenied) as err:
        client.compute(StatSpec("quantiles", ("age",), probabilities=(0.0, 1.0), bounds=bounds,
                                resolution=2500))
    assert "policy.exact_quantile_margin" in str(err.value)
    assert "between 0.05 and 0.95" in str(err.value)

    probs = (0.05, 0.5, 0.95)
    got = client.compute(StatSpec("quantiles", ("age",), probabilities=probs, bounds=bounds,
                                  resolution=2500))
    ages = pooled(data, "age")
    lone = ages[(ages != 45) & (ages != 52)]
    tol = quantile_tol(bounds, 2500)  # one bin, plus float64 rounding of the edges
    raw = np.quantile(ages, 0.05, method="inverted_cdf")
    assert raw in lone and abs(quantiles_from_histogram(
        np.histogram(ages, bins=EDGES)[0], EDGES, [0.05])[0] - raw) <= tol  # the premise
    want = quantiles_from_histogram(released_histogram(data, "age", EDGES, MIN_CELL), EDGES,
                                    probs)
    assert np.allclose(got.value[0], want, rtol=0, atol=1e-9)  # exact ss counts
    assert 45.0 <= got.value[0][0] <= 45.0 + tol
    assert all(np.min(np.abs(lone - q)) > tol for q in got.value[0])


# ------------------------------------------------------------------------ small cells


def test_small_cells_suppressed(exact_fed):
    """A 2,500-bin histogram of the 90-row cohort: on the raw data 18 people are alone in
    their bins; as released, every count is 0 or at least ``min_cell_size`` (10) -- exactly
    the sum of each party's own counts with those below 10 sent as 0 -- so nobody is alone.
    The 52-year-olds' bin (18 in all, 6 at each party) is 0: each party suppressed its own
    cell before it left, as it must (the coordinator is not trusted to suppress the joint
    cell).  ``n`` stays exact: the released bins hold 54 of the 90 rows (the bias, stated in
    :mod:`parties.privacy.exact`).

    Catches: cells sent unsuppressed (18 counts of 1), suppression of the joint sum instead
    of each party's own cells (the 52 bin would be 18), or of the wrong cells."""
    client, data = exact_fed
    ages = pooled(data, "age")
    raw = np.histogram(ages, bins=EDGES)[0]
    assert np.count_nonzero(raw == 1) == 18  # the attack's premise
    got = client.compute(StatSpec("histogram", ("age",), edges=tuple(EDGES)))
    counts = np.asarray(got.value[0])
    assert got.n == 90 and counts.shape == (2500,)
    assert np.all((counts == 0) | (counts >= MIN_CELL))
    assert np.array_equal(counts, released_histogram(data, "age", EDGES, MIN_CELL))
    at52 = int(np.searchsorted(EDGES, 52.0, side="right")) - 1
    assert raw[at52] == 18 and counts[at52] == 0
    assert counts.sum() == 54 and got.details["below"] == [0] and got.details["above"] == [0]


def test_suppression_leaves_n_and_other_statistics_alone():
    """The core's suppression on one party's pass-1 vector: bins, ``below`` and ``above`` of
    fewer than 10 rows become 0, ``n`` and bins of 10 or more stay; a sum is untouched; and a
    quantile whose every fine bin was suppressed says so rather than "the cohort is empty"
    (catches suppression of ``n``, of the wrong cells, or of a non-histogram aggregate)."""
    rows = np.array([[-5.0]] * 3 + [[1.0]] * 10 + [[2.0]] * 9 + [[50.0]] * 4)
    spec = StatSpec("histogram", ("x",), edges=(0.0, 1.5, 3.0, 4.5))
    raw = local_pass1(spec, rows)  # n, 3 bins, below, above
    assert raw.tolist() == [26, 10, 9, 0, 3, 4]
    assert suppress_small_cells(spec, raw, 10).tolist() == [26, 10, 0, 0, 0, 0]
    assert suppress_small_cells(spec, raw, 1).tolist() == raw.tolist()
    total = StatSpec("sum", ("x",))
    assert suppress_small_cells(total, local_pass1(total, rows), 10).tolist() == [26, 213.0]
    quant = StatSpec("quantiles", ("x",), probabilities=(0.5,), bounds=(0.0, 125.0),
                     resolution=2500)
    summed = np.zeros(1 + 2500 + 2)  # n, the fine bins, below and above the bounds
    summed[0] = 90
    with pytest.raises(InputError, match="lower resolution"):
        finish(quant, summed, None, None)
