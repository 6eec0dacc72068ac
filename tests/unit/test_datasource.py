"""Loading a party's local table from CSV and Parquet files.

Errors about a column carry no data (issue 12): they name the column, the row and the kind of
problem, never the cell's text or value nor the file's path; only errors about the file itself
name its path, and the party's log line (``log_text``) adds the CSV line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from parties.data.sources import DataSourceError, Table, load_table

CSV = """age, bmi ,sex,score
30,22.5,F,1e3
41, 27.0 ,M,-2
,30.1,F,NA

55,NaN,M,0.5
"""


@pytest.fixture
def csv_table(tmp_path: Path) -> Table:
    p = tmp_path / "data.csv"
    p.write_text(CSV)
    return load_table(p)


def test_csv_columns_and_values(csv_table: Table) -> None:
    t = csv_table
    assert t.columns == ["age", "bmi", "sex", "score"]
    assert t.n_rows == 4  # the blank line is skipped
    assert t.format == "csv"
    age = t.column("age")
    assert age.dtype == np.float64
    np.testing.assert_array_equal(age, [30, 41, np.nan, 55])
    np.testing.assert_array_equal(t.column("score"), [1000, -2, np.nan, 0.5])
    assert list(t.text("sex")) == ["F", "M", "F", "M"]
    assert t.is_numeric("age") and not t.is_numeric("sex")


def test_columns_are_read_only(csv_table: Table) -> None:
    with pytest.raises(ValueError, match="read-only"):
        csv_table.column("age")[0] = 1.0
    np.testing.assert_array_equal(csv_table.column("age")[:2], [30, 41])


def test_matrix_errors_on_missing_by_default(csv_table: Table) -> None:
    with pytest.raises(DataSourceError) as err:
        csv_table.matrix(["age", "bmi"])
    msg = str(err.value)
    assert msg == ("column 'age' has missing values in the selected rows, the first at row 3; "
                   "clean the data or drop incomplete rows (missing='drop')")
    e = err.value
    assert (e.kind, e.column, e.row, e.line) == ("missing", "age", 3, 4)
    assert e.log_text == f"missing: {msg} (line 4 of the file)"
    # the first missing row among the *selected* rows depends on the filter: not sent out
    assert e.public == "column 'age' has missing values in the selected rows"


def test_matrix_drop_excludes_and_counts(csv_table: Table) -> None:
    sel = csv_table.select(["age", "bmi"], missing="drop")
    np.testing.assert_array_equal(sel.values, [[30, 22.5], [41, 27.0]])
    assert sel.values.shape == (2, 2) and sel.values.dtype == np.float64
    assert sel.n_dropped == 2 and sel.n_rows == 2
    np.testing.assert_array_equal(sel.rows, [True, True, False, False])


def test_matrix_with_row_mask(csv_table: Table) -> None:
    rows = np.array([False, True, False, True])
    # row 3 (age missing) is not selected, so no error; row 4 has bmi missing
    np.testing.assert_array_equal(csv_table.matrix(["age"], rows=rows), [[41], [55]])
    sel = csv_table.select(["age", "bmi"], rows=rows, missing="drop")
    assert sel.n_dropped == 1
    np.testing.assert_array_equal(sel.values, [[41, 27.0]])
    with pytest.raises(DataSourceError, match="boolean array of shape"):
        csv_table.matrix(["age"], rows=np.array([1, 0, 1, 0]))


def test_repeated_and_interleaved_selections_agree_with_the_columns() -> None:
    """The all-rows fast path (and its one-entry reuse) returns the same values as a gather."""
    a = np.arange(10.0)
    b = np.where(np.arange(10) == 7, np.nan, np.arange(10.0) * 2)  # one missing value
    c = np.arange(10.0) ** 2
    t = Table.from_arrays({"a": a, "b": b, "c": c})
    full = t.select(["a", "c"])
    np.testing.assert_array_equal(full.values, np.column_stack([a, c]))
    assert full.n_dropped == 0 and full.rows.all()
    mask = np.arange(10) % 3 == 0
    part = t.select(["c", "a"], rows=mask)  # another order, a filter: not the reused matrix
    np.testing.assert_array_equal(part.values, np.column_stack([c, a])[mask])
    dropped = t.select(["a", "b"], missing="drop")
    np.testing.assert_array_equal(dropped.values, np.column_stack([a, b])[np.arange(10) != 7])
    again = t.select(["a", "c"])
    np.testing.assert_array_equal(again.values, full.values)
    for sel in (full, part, dropped, again):
        with pytest.raises(ValueError, match="read-only"):
            sel.values[0, 0] = -1.0
    np.testing.assert_array_equal(t.select(["c"]).values[:, 0], c)


def test_unknown_column_lists_available(csv_table: Table) -> None:
    with pytest.raises(DataSourceError) as err:
        csv_table.column("weight")
    assert "unknown column 'weight'" in str(err.value)
    assert "'age', 'bmi', 'sex', 'score'" in str(err.value)


def test_non_numeric_value_names_row_and_column_never_the_cell_or_file(tmp_path: Path) -> None:
    """The error names the row and the column; the cell ('987654.321 mg' -- its text and its
    number) and the file's path appear nowhere in it, nor in what may leave the party or in its
    log line. Before issue 12 the message quoted the cell and the path."""
    d = tmp_path / "ward-7731"
    d.mkdir()
    p = d / "d.csv"
    p.write_text("a,b\n1,2\n3,987654.321 mg\n")
    t = load_table(p)
    np.testing.assert_array_equal(t.column("a"), [1, 3])
    with pytest.raises(DataSourceError) as err:
        t.matrix(["a", "b"])
    e = err.value
    assert str(e) == "row 2 of column 'b' is not a number"
    assert (e.kind, e.column, e.row, e.line) == ("not-a-number", "b", 2, 3)
    for text in (str(e), e.public, e.log_text, repr(e)):
        assert "987654" not in text and "mg" not in text and "ward-7731" not in text
    with pytest.raises(DataSourceError, match="row 2 of column 'b' is not a number"):
        t.column("b")  # the error is cached and raised again


def test_infinite_value_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    p.write_text("a\n1\ninf\n")
    with pytest.raises(DataSourceError, match=r"row 2 of column 'a' is infinite") as err:
        load_table(p).column("a")
    assert str(p) not in str(err.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "file is empty; a header row is required"),
        ("1,2,3\n4,5,6\n", "looks like data; a header row"),
        ("a,,c\n1,2,3\n", "header column 2 has no name"),
        ("a,b,a\n1,2,3\n", "header names column 'a' more than once"),
        ("a,b\n1,2\n3\n", "row 2 (line 3) has 1 field(s), the header has 2"),
        ('a,b\n1,"2\n', "malformed CSV"),
    ],
)
def test_csv_format_errors(tmp_path: Path, content: str, expected: str) -> None:
    p = tmp_path / "d.csv"
    p.write_text(content)
    with pytest.raises(DataSourceError) as err:
        load_table(p)
    assert expected in str(err.value) and str(p) in str(err.value)
    assert err.value.kind == "file" and err.value.public == "its data file cannot be read"


def test_a_first_row_of_data_is_not_quoted(tmp_path: Path) -> None:
    """A headerless file's first row is data: the error says so without quoting it."""
    p = tmp_path / "d.csv"
    p.write_text("987654.321,31415.9\n1,2\n")
    with pytest.raises(DataSourceError, match="looks like data") as err:
        load_table(p)
    assert "987654" not in str(err.value) and "31415" not in str(err.value)


def test_header_only_and_bom(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    p.write_bytes("\ufeffa,b\n".encode())
    t = load_table(p)
    assert t.columns == ["a", "b"] and t.n_rows == 0
    assert t.matrix(["a"]).shape == (0, 1)


def test_format_and_file_errors(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="data file not found"):
        load_table(tmp_path / "nope.csv")
    (tmp_path / "d.txt").write_text("a\n1\n")
    with pytest.raises(DataSourceError, match="cannot tell the format"):
        load_table(tmp_path / "d.txt")
    assert load_table(tmp_path / "d.txt", "csv").n_rows == 1
    with pytest.raises(DataSourceError, match="unknown format 'xlsx'"):
        load_table(tmp_path / "d.txt", "xlsx")
    (tmp_path / "t.tsv").write_text("a\tb\n1\t2\n")
    assert load_table(tmp_path / "t.tsv", "csv", delimiter="\t").matrix(["a", "b"]).tolist() == [
        [1.0, 2.0]
    ]


def test_select_argument_errors(csv_table: Table) -> None:
    with pytest.raises(DataSourceError, match="no columns requested"):
        csv_table.matrix([])
    with pytest.raises(DataSourceError, match="requested twice"):
        csv_table.matrix(["age", "age"])


def test_from_arrays() -> None:
    t = Table.from_arrays(
        {"x": [1, 2, 3], "y": np.array([0.5, np.nan, 2.0]), "s": ["a", None, "c"]}
    )
    assert t.columns == ["x", "y", "s"] and t.n_rows == 3
    assert list(t.text("s")) == ["a", None, "c"]
    with pytest.raises(DataSourceError, match="numeric, not text"):
        t.text("x")
    with pytest.raises(DataSourceError, match="different lengths"):
        Table.from_arrays({"x": [1, 2], "y": [1.0]})


# --------------------------------------------------------------------------------- Parquet


def test_parquet_round_trip(tmp_path: Path) -> None:
    pa = pytest.importorskip(
        "pyarrow", reason="pyarrow is not installed: pip install 'smpc[parquet]'"
    )
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "age": pa.array([30, 41, None, 55], type=pa.int32()),
            "bmi": pa.array([22.5, 27.0, 30.1, float("nan")]),
            "smoker": pa.array([True, False, None, True]),
            "sex": pa.array(["F", "M", "F", None]),
            "seen": pa.array([1, 2, 3, 4], type=pa.timestamp("s")),
        }
    )
    p = tmp_path / "d.parquet"
    pq.write_table(table, p)
    t = load_table(p)
    assert t.format == "parquet"
    assert t.columns == ["age", "bmi", "smoker", "sex", "seen"] and t.n_rows == 4
    np.testing.assert_array_equal(t.column("age"), [30, 41, np.nan, 55])
    np.testing.assert_array_equal(t.column("smoker"), [1, 0, np.nan, 1])
    assert list(t.text("sex")) == ["F", "M", "F", None]
    sel = t.select(["age", "bmi"], missing="drop")
    np.testing.assert_array_equal(sel.values, [[30, 22.5], [41, 27.0]])
    assert sel.n_dropped == 2
    with pytest.raises(DataSourceError, match="missing value"):
        t.matrix(["age"])
    # issue 13: a timestamp is a date column (days since 1970-01-01 UTC), no longer refused
    np.testing.assert_array_equal(t.column("seen"), np.array([1, 2, 3, 4]) / 86400.0)
    assert t.is_date("seen") and not t.is_numeric("seen")
    with pytest.raises(DataSourceError, match="row 1 of column 'sex' is not a number"):
        t.column("sex")
    with pytest.raises(DataSourceError, match="numeric, not text"):
        t.text("age")

    # same data through CSV gives the same numbers
    c = tmp_path / "d.csv"
    c.write_text("age,bmi\n30,22.5\n41,27.0\n,30.1\n55,\n")
    np.testing.assert_array_equal(load_table(c).matrix(["age", "bmi"], missing="drop"), sel.values)


def test_corrupt_parquet_is_a_clear_error(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow", reason="pyarrow is not installed: pip install 'smpc[parquet]'")
    p = tmp_path / "bad.parquet"
    p.write_bytes(b"not parquet at all")
    with pytest.raises(DataSourceError, match="cannot read Parquet file"):
        load_table(p)


def test_parquet_without_pyarrow_says_how_to_install(tmp_path: Path) -> None:
    """Run in a fresh interpreter where importing pyarrow fails, as on a minimal install."""
    import subprocess
    import sys

    p = tmp_path / "d.parquet"
    p.write_bytes(b"PAR1")
    code = (
        "import sys; sys.modules['pyarrow'] = None\n"
        "from parties.data.sources import load_table, DataSourceError\n"
        f"try:\n    load_table({str(p)!r})\nexcept DataSourceError as e:\n    print(e)\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    assert "pip install 'smpc[parquet]'" in out and str(p) in out
