"""Missing values through the runtime and the demo, and ``isnull`` / ``notnull`` in filters.

Real party nodes in one process (:class:`~parties.federation.inprocess.InProcessFederation`:
their policies, SQLite ledgers and audit logs, the protobuf edge; only the sockets are
replaced) read CSV files with blank cells; results are compared with pandas on the pooled
files within the bounds of :mod:`tests.tolerances` (ss: ``P 2^-(f+1)`` per summed aggregate
plus float64 sums).
"""

from __future__ import annotations

import csv
import io
import re

import numpy as np
import pandas as pd
import pytest

from parties.data import filters
from parties.data.sources import load_table
from parties.federation import demo, sampledata
from parties.federation.inprocess import InProcessFederation
from parties.federation.local import init_federation
from smpc.errors import InputError
from smpc.stats import StatSpec
from tests.tolerances import Backend, Moments, assert_within

PARTIES = ("clinic-a", "clinic-b", "clinic-c")


def write_with_gaps(path, seed: int, n: int) -> pd.DataFrame:
    """A CSV with blank cells, ``NA`` markers and a text column; returns what it holds."""
    rng = np.random.default_rng(seed)
    age = rng.normal(50, 10, n).round(1)
    chol = (150 + 1.1 * age + rng.normal(0, 12, n)).round(1)
    sex = rng.choice(["F", "M"], n)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["age", "chol", "sex"])
        for i in range(n):
            a = "" if i % 7 == 3 else repr(float(age[i]))
            c = "NA" if i % 5 == 1 else repr(float(chol[i]))
            w.writerow([a, c, "" if i % 11 == 4 else sex[i]])
    return pd.read_csv(path, keep_default_na=True)


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    d = tmp_path_factory.mktemp("gaps")
    frames, files = [], []
    for i, name in enumerate(PARTIES):
        files.append(d / f"{name}.csv")
        frames.append(write_with_gaps(files[-1], 40 + i, 60 + 10 * i))
    # the differencing history (tested in test_exact_safeguards) would refuse this module's
    # overlapping exact requests; here the values are under test
    init_federation(d / "fed", files, min_cohort_size=5, allow_exact=True,
                    exact_safeguards={"exact_history": 0})
    with InProcessFederation.open(d / "fed") as f:
        yield f, pd.concat(frames, ignore_index=True)


def test_exact_statistics_on_files_with_gaps_match_pandas(fed):
    """mean per column skips its own gaps, corr uses the complete rows, the missing counts
    are exact, and a filter with isnull / notnull selects what pandas selects.  Catches: the
    runtime refusing blanks (today's behaviour), gaps read as 0, a filter ignoring NaN."""
    f, df = fed
    result = f.compute(StatSpec("mean", ("age", "chol"), missing="skip"))
    for j, c in enumerate(("age", "chol")):
        col = df[c].dropna().to_numpy()
        assert_within(result.value[j], col.mean(), Moments(col, Backend("ss", 3)).mean_tol[0],
                      f"mean {c}")
    assert result.details["missing"] == df[["age", "chol"]].isna().sum().to_dict()
    complete = df[["age", "chol"]].dropna()
    result = f.compute(StatSpec("corr", ("age", "chol"), missing="skip"))
    assert result.n == len(complete)
    assert_within(result.value, complete.corr().to_numpy(),
                  Moments(complete.to_numpy(), Backend("ss", 3)).corr_tol, "corr")
    result = f.compute(StatSpec("count", ("chol",), missing="skip"), "isnull(age)")
    assert result.value == int(df.loc[df["age"].isna(), "chol"].count())
    result = f.compute(StatSpec("count", ("age",), missing="skip"),
                       "notnull(sex) and not isnull(chol)")
    assert result.value == int(df.loc[df["sex"].notna() & df["chol"].notna(), "age"].count())


def test_missing_error_is_refused_naming_the_column(fed):
    """``missing="error"`` keeps today's strictness; the refusal names the column and no
    value, and no row number (which row is first depends on the filter)."""
    f, df = fed
    with pytest.raises(Exception, match="'chol'") as err:
        f.compute(StatSpec("mean", ("chol",), missing="error"))
    text = str(err.value)
    assert re.search(r"row \d", text) is None
    for v in df["chol"].dropna().to_numpy()[:40]:
        assert repr(float(v)) not in text


def test_the_minimum_cohort_applies_to_the_rows_used(fed):
    """min_cohort_size is 5 per party: a filter keeping 9+ rows of every party but no present
    value of the requested column is refused for the cohort (the rows used, not the rows
    selected).  Catches a cohort check on the filter's row count (which would pass, and the
    statistic would then fail for another reason)."""
    f, _ = fed
    # the filter keeps the rows whose age is blank (i % 7 == 3: 9 to 12 per party, >= 5),
    # of which none has an age to count
    where = "isnull(age) or age < 0"
    with pytest.raises(Exception, match="minimum cohort size"):
        f.compute(StatSpec("count", ("age",), missing="skip"), where)
    with pytest.raises(Exception, match="minimum cohort size"):
        f.compute(StatSpec("mean", ("chol",), missing="skip"), "isnull(chol)")


def test_isnull_notnull_parse_evaluate_and_round_trip():
    """Parsing, canonical text (parse(str(e)) == e), evaluation on NaN / missing text, and
    the column list a policy checks."""
    table = {"age": np.array([1.0, np.nan, 3.0, np.nan]),
             "sex": ["F", None, "NA", "M"]}
    for text, want in [
        ("isnull(age)", [False, True, False, True]),
        ("NOTNULL(age)", [True, False, True, False]),
        ("notnull(sex)", [True, False, False, True]),  # "NA" is a missing marker
        ("not isnull(age) and notnull(sex)", [True, False, False, False]),
        ("isnull(age) or age > 2", [False, True, True, True]),
        ('isnull("age")', [False, True, False, True]),
    ]:
        e = filters.parse(text)
        assert filters.parse(str(e)) == e, text
        assert filters.evaluate(e, table).tolist() == want, text
    assert filters.parse("isnull(age) and sex == 'F'").columns() == {"age", "sex"}
    # a column named like the function still compares
    assert filters.evaluate("isnull > 1", {"isnull": np.array([1.0, 2.0])}).tolist() == \
        [False, True]
    with pytest.raises(filters.FilterError, match="unknown column 'weight'"):
        filters.evaluate("isnull(weight)", table)


@pytest.mark.parametrize("text", [
    "isnull()", "isnull(3)", "isnull('age')", "isnull(age", "isnull(age, sex)",
    "isnull(age) > 1", "isnull(__import__('os').system('id'))", "isnull(age); drop table x",
    "isnull(" * 200 + "age" + ")" * 200, "not " * 120 + "isnull(age)",
])
def test_hostile_null_tests_are_refused(text):
    """Malformed or hostile input is one FilterError (never evaluated as code, no
    RecursionError)."""
    with pytest.raises(filters.FilterError):
        filters.parse(text)


def test_demo_runs_on_files_with_gaps(tmp_path):
    """``smpc demo --data`` on files with blank cells (the tour, simulated, ss): every step
    runs and agrees with pandas skipna / dropna on the pooled files within the tour's own
    tolerance; before, it stopped at the first column with a blank."""
    files, _ = sampledata.write_sample_federation_data(tmp_path)
    gapped = []
    for i, path in enumerate(files[:2]):
        df = pd.read_csv(path)
        rng = np.random.default_rng(60 + i)
        num = df.select_dtypes("number").columns
        for c in num[:3]:
            df.loc[rng.random(len(df)) < 0.1, c] = np.nan
        out = tmp_path / f"gaps-{i}.csv"
        df.to_csv(out, index=False, na_rep="")
        gapped.append(out)
    tables = [load_table(p) for p in gapped]
    assert all(pd.read_csv(p).isna().any().any() for p in gapped)
    rows = demo.run_tour(demo.SimulatedExecutor(tables, tables[0]), tables, None, None,
                         out=io.StringIO(), backends=("ss",))
    assert len(rows) == 6
    assert all(r["within_tolerance"] for r in rows), rows


def test_a_statistic_over_gaps_refuses_inf_in_both_modes():
    """Infinite values are never treated as missing (they have no encoding)."""
    from smpc import stats

    with pytest.raises(InputError, match="infinite"):
        stats.simulate(StatSpec("mean", ("x",), missing="skip"),
                       [np.array([[1.0], [np.inf]]), np.array([[2.0]])])
