"""Exports as they come (issue 13, item 4): a party's CSV and Parquet files as hospitals write
them, read the way pandas / pyarrow read them.

Every file here is written by the test -- semicolons with decimal commas, tabs, Latin-1 /
Windows-1252 with accented column names and text, a UTF-8 byte-order mark, quoted fields holding
the delimiter, quotes and newlines, blanks, dates, a Parquet file with columns of types the
table cannot use -- and read both by :func:`parties.data.sources.load_table` (with the
delimiter and the encoding detected) and by pandas / pyarrow told the dialect.

Tolerance: **exact** for numbers. Each number is written as the shortest decimal text that
round-trips its float64 (``repr``; with a decimal comma, the same digits with ``,``); the table
(numpy's float conversion) rounds that text correctly, so it gives back the very float written
(asserted), and pandas (its default parser) gives the same. Dates are compared as days since
1970-01-01: a date alone is an integer number of days; a timestamp is the same integer tick
count converted to float64 and divided by the ticks per day on both sides.

Errors: a cell that cannot be read is named by its row and column, never by its text; the test
plants a recognisable text and asserts it is absent from every sentence (the exception, the
sentence that leaves the party, the party's log line, the redacted error).
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from parties.data.csvfile import describe_dialect
from parties.data.dates import days_since_epoch
from parties.data.filters import FilterError, evaluate
from parties.data.sources import DataSourceError, Table, load_table
from parties.node.redact import redact

NAMES = ("patient_id", "âge", "poids (kg)", "cholestérol", "sexe", "visite", "commentaire")
NUMERIC = ("patient_id", "âge", "poids (kg)", "cholestérol")
COMMENTS = ("", "suivi; contrôle à 3 mois", 'dit "ça va"', "ligne 1\nligne 2", "crème, 2x/jour",
            "allergie | pénicilline", "tab\there", "RAS")
EPOCH = dt.date(1970, 1, 1)


def clinic_rows(seed: int, n: int) -> list[dict[str, Any]]:
    """``n`` realistic rows: ids, ages with one decimal, weights with blanks, full-precision
    cholesterol, a categorical column, visit dates with blanks, free text with delimiters,
    quotes and newlines."""
    rng = np.random.default_rng(seed)
    start = dt.date(2022, 1, 1)
    rows = []
    for i in range(n):
        blank_w = rng.random() < 0.05
        blank_v = rng.random() < 0.03
        rows.append({
            "patient_id": float(100000 + i),
            "âge": round(float(rng.normal(55, 15)), 1),
            "poids (kg)": None if blank_w else round(float(rng.normal(75, 12)), 2),
            "cholestérol": float(rng.normal(200, 35)),
            "sexe": "F" if rng.random() < 0.5 else "M",
            "visite": None if blank_v else (start + dt.timedelta(int(rng.integers(0, 1000))))
            .isoformat(),
            "commentaire": COMMENTS[int(rng.integers(0, len(COMMENTS)))],
        })
    return rows


def write_export(path: Path, rows: list[dict[str, Any]], *, delimiter: str, decimal: str,
                 encoding: str, extra_cells: dict[tuple[int, str], str] | None = None) -> None:
    """Write ``rows`` as a spreadsheet would: ``decimal`` in numbers, minimal quoting, CRLF.
    ``extra_cells`` overwrites cells (row index, column) with raw text."""
    def cell(name: str, v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return repr(v).replace(".", decimal)
        return str(v)

    with path.open("w", encoding=encoding, newline="") as fh:
        w = csv.writer(fh, delimiter=delimiter, lineterminator="\r\n")
        w.writerow(NAMES)
        for i, r in enumerate(rows):
            w.writerow([(extra_cells or {}).get((i, n), cell(n, r[n])) for n in NAMES])


def pandas_read(path: Path, delimiter: str, decimal: str, encoding: str) -> pd.DataFrame:
    return pd.read_csv(path, sep=delimiter, decimal=decimal, encoding=encoding,
                       keep_default_na=False, na_values=[""])


def days(series: pd.Series) -> np.ndarray:
    """pandas' dates as days since 1970-01-01 (NaT -> NaN)."""
    stamps = pd.to_datetime(series)
    out = (stamps - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)
    return out.to_numpy(dtype=float)


DIALECTS = [
    # (delimiter, decimal, encoding written, encoding pandas is told, encoding detected)
    pytest.param(";", ",", "cp1252", "cp1252", "cp1252", id="semicolon-decimal-comma-cp1252"),
    pytest.param("\t", ".", "utf-8-sig", "utf-8-sig", "utf-8-sig", id="tab-utf8-bom"),
    pytest.param(",", ".", "latin-1", "latin-1", "cp1252", id="comma-latin1"),
    pytest.param("|", ".", "utf-8", "utf-8", "utf-8", id="pipe-utf8"),
]


@pytest.mark.parametrize(("delim", "decimal", "written", "told", "detected"), DIALECTS)
def test_export_reads_like_pandas(tmp_path: Path, caplog: pytest.LogCaptureFixture, delim: str,
                                  decimal: str, written: str, told: str, detected: str) -> None:
    """3000 rows in each dialect, the delimiter and encoding detected: the same column names
    (accents included), row count, numbers (exactly, NaN where blank), text (quotes,
    delimiters and newlines inside cells kept) and dates as pandas told the dialect -- and
    the numbers are the floats written. Would fail on a wrong delimiter or encoding guess
    (names and text differ), on a field split at an embedded delimiter or newline (the row
    count or a column differs), on a decimal comma misread, or on a date read as text."""
    rows = clinic_rows(13, 3000)
    if written == "cp1252":  # characters only Windows-1252 has (0x80-0x9f)
        rows[7]["commentaire"] = "coût 12 € — œdème"
    p = tmp_path / "export.csv"
    write_export(p, rows, delimiter=delim, decimal=decimal, encoding=written)
    with caplog.at_level(logging.INFO, logger="smpc.data"):
        t = load_table(p, decimal=decimal)
    df = pandas_read(p, delim, decimal, told)
    assert t.dialect["delimiter"] == delim and t.dialect["delimiter_chosen"] == "detected"
    assert t.dialect["encoding"] == detected and t.dialect["encoding_chosen"].startswith("detected")
    # loading logs nothing (a node logs the choice once it listens, so that a start-up error
    # stays one line); the line it logs says what was detected
    assert not [r for r in caplog.records if r.name == "smpc.data"]
    note = describe_dialect(t.dialect)
    assert f"delimiter {delim!r} (detected)" in note
    assert f"encoding {detected} (detected" in note

    assert t.columns == list(NAMES) == list(df.columns)
    assert t.n_rows == len(df) == len(rows)
    for c in NUMERIC:
        written_values = np.array([np.nan if r[c] is None else r[c] for r in rows])
        np.testing.assert_array_equal(t.column(c), df[c].to_numpy(dtype=float), err_msg=c)
        np.testing.assert_array_equal(t.column(c), written_values, err_msg=c)
        assert t.is_numeric(c)
    for c in ("sexe", "commentaire"):
        want = [None if isinstance(v, float) and np.isnan(v) else v for v in df[c]]
        assert list(t.text(c)) == want
        assert not t.is_numeric(c) and not t.is_date(c)
    assert t.is_date("visite") and not t.is_numeric("visite")
    np.testing.assert_array_equal(t.column("visite"), days(df["visite"]))
    # text columns never break numeric ones: the numeric columns select together
    sel = t.select(["âge", "poids (kg)", "visite"], missing="drop")
    keep = df[["âge", "poids (kg)", "visite"]].notna().all(axis=1).to_numpy()
    np.testing.assert_array_equal(sel.values[:, 0], df["âge"].to_numpy()[keep])
    np.testing.assert_array_equal(sel.values[:, 2], days(df["visite"])[keep])
    # a date filter selects the rows pandas selects (missing dates never match)
    stamps = pd.to_datetime(df["visite"])
    mask = evaluate("visite >= '2023-01-01' and visite < '2023-07-01'", t)
    want = ((stamps >= "2023-01-01") & (stamps < "2023-07-01")).to_numpy()
    assert mask.sum() > 100
    np.testing.assert_array_equal(mask, want)


def test_given_dialect_is_used_and_a_wrong_encoding_names_the_key(tmp_path: Path) -> None:
    """A given delimiter and encoding are used as given (recorded as such); a given encoding
    the file does not decode with is a file error naming ``data.encoding``, and its public
    sentence says only that the file cannot be read."""
    rows = clinic_rows(14, 50)
    p = tmp_path / "e.csv"
    write_export(p, rows, delimiter=";", decimal=",", encoding="cp1252")
    t = load_table(p, delimiter=";", encoding="cp1252", decimal=",")
    assert (t.dialect["delimiter_chosen"], t.dialect["encoding_chosen"]) == ("given", "given")
    assert t.columns == list(NAMES)
    np.testing.assert_array_equal(t.column("âge"), [r["âge"] for r in rows])
    with pytest.raises(DataSourceError) as err:
        load_table(p, encoding="utf-8", decimal=",")
    assert "not valid utf-8 text" in str(err.value) and "data.encoding" in str(err.value)
    assert err.value.kind == "file" and err.value.public == "its data file cannot be read"


@pytest.mark.parametrize(("content", "expected"), [
    ("a,b;c\n1,2;3\n4,5;6\n", "',' and ';' each split the header and the first rows"),
    ("a,b;c\n1;2;3\n4,5,6\n", "',' and ';' each split the header but none"),
])
def test_an_ambiguous_delimiter_says_which_key_to_set(tmp_path: Path, content: str,
                                                      expected: str) -> None:
    p = tmp_path / "amb.csv"
    p.write_text(content)
    with pytest.raises(DataSourceError) as err:
        load_table(p)
    assert expected in str(err.value) and "set data.delimiter" in str(err.value)
    assert err.value.kind == "file" and err.value.public == "its data file cannot be read"
    if "first rows into" in expected:  # the key the error names resolves it
        assert load_table(p, delimiter=";").matrix(["c"]).ravel().tolist() == [3.0, 6.0]


def test_one_column_and_ragged_files(tmp_path: Path) -> None:
    """A one-column file needs no delimiter; with one plausible delimiter, a ragged row is the
    row error with its line (not a detection failure)."""
    p = tmp_path / "one.csv"
    p.write_text("x\n1.5\n2\n")
    np.testing.assert_array_equal(load_table(p).column("x"), [1.5, 2.0])
    p.write_text("a;b\n1;2\n3\n")
    with pytest.raises(DataSourceError, match=r"row 2 \(line 3\) has 1 field\(s\), the header "
                                              r"has 2 \(delimiter ';'\)"):
        load_table(p)


def _assert_no_cell(exc: DataSourceError, secret: str) -> list[str]:
    texts = [str(exc), exc.public, exc.log_text, str(redact(exc, "hospital-a"))]
    for text in texts:
        assert secret not in text, text
    return texts


def test_a_text_cell_in_a_numeric_column_names_row_and_column_never_the_cell(
        tmp_path: Path) -> None:
    """A lab value typed as text in row 1234 of a 3000-row export with multi-line comments:
    the error names row 1234 and the column everywhere -- the analyst's sentence (redacted) as
    well as the party's log, which adds the physical line (shifted by the embedded newlines) --
    and never the cell. The other columns still read. Would fail if the row or column were lost
    on the way out (the issue's "a value is not a number") or if the cell were quoted."""
    rows = clinic_rows(15, 3000)
    secret = "SECRET-4242 mg/dL"
    k = 1233  # 0-based: row 1234
    p = tmp_path / "lab.csv"
    write_export(p, rows, delimiter=";", decimal=",", encoding="cp1252",
                 extra_cells={(k, "cholestérol"): secret})
    t = load_table(p, decimal=",")
    with pytest.raises(DataSourceError) as err:
        t.column("cholestérol")
    e = err.value
    assert (e.kind, e.column, e.row) == ("not-a-number", "cholestérol", k + 1)
    line = 1 + sum(1 + sum(str(v).count("\n") for v in r.values()) for r in rows[: k + 1])
    assert e.line == line and line > k + 2  # the comments' newlines shift the line
    texts = _assert_no_cell(e, secret)
    assert all("row 1234 of column 'cholestérol' is not a number" in s for s in texts)
    assert str(redact(e, "hospital-a")) == ("hospital-a cannot use the requested columns: "
                                           "row 1234 of column 'cholestérol' is not a number")
    assert f"(line {line} of the file)" in e.log_text
    with pytest.raises(DataSourceError):  # the same error again, from the cache
        t.select(["âge", "cholestérol"])
    np.testing.assert_array_equal(t.column("âge"), [r["âge"] for r in rows])


def test_a_decimal_comma_without_the_option_is_an_error_with_a_hint_in_the_log_only(
        tmp_path: Path) -> None:
    """A ';' export with decimal commas read with the default '.': the first such cell is
    refused by row and column; the hint to set ``data.decimal`` is in the party's log line
    only (it describes the cell's shape). With ``decimal=','`` a '.' in a number is refused
    (it could be a thousands separator), with the opposite hint."""
    p = tmp_path / "dc.csv"
    p.write_text("id;poids\n1;72\n2;72,5\n3;80\n", encoding="utf-8")
    t = load_table(p)
    assert t.dialect["delimiter"] == ";"
    with pytest.raises(DataSourceError) as err:
        t.column("poids")
    assert err.value.row == 2 and "set data.decimal to ','" in err.value.log_text
    texts = _assert_no_cell(err.value, "72,5")
    assert all("data.decimal" not in s for s in texts[:2] + texts[3:])
    np.testing.assert_array_equal(load_table(p, decimal=",").column("poids"), [72, 72.5, 80])
    p.write_text("id;poids\n1;72,5\n2;1.250\n", encoding="utf-8")
    with pytest.raises(DataSourceError) as err:
        load_table(p, decimal=",").column("poids")
    assert err.value.row == 2 and "may not contain '.'" in err.value.log_text
    _assert_no_cell(err.value, "1.250")


def test_dates_with_times_offsets_and_a_bad_cell(tmp_path: Path) -> None:
    """ISO timestamps (with 'T' or a space, 'Z' or an offset) are days since 1970-01-01 UTC,
    as pandas computes them in UTC; a cell that is not a date is refused by row and column
    (never quoted), also when a filter asks for the column."""
    cells = ["2024-01-01", "2024-01-01T12:00:00", "2024-01-01 18:30", "2024-01-02T00:00:00Z",
             "2024-01-01T23:00:00-02:00", "", "2023-12-31T23:59:59.250000+00:00"]
    p = tmp_path / "d.csv"
    p.write_text("id,when\n" + "".join(f"{i},{c}\n" for i, c in enumerate(cells)))
    t = load_table(p)
    want = [np.nan if not c else
            (pd.Timestamp(c, tz="UTC") if pd.Timestamp(c).tzinfo is None else
             pd.Timestamp(c).tz_convert("UTC")) for c in cells]
    ref = np.array([np.nan if isinstance(w, float) else
                    ((w - pd.Timestamp("1970-01-01", tz="UTC")) // pd.Timedelta(microseconds=1))
                    / 86400e6 for w in want])
    np.testing.assert_array_equal(t.column("when"), ref)
    assert ref[4] == 19724.0 + 1 / 24  # 23:00 at -02:00 is 01:00 UTC the next day
    secret = "31/12/2023"
    p.write_text("id,when\n1,2024-01-01\n2,2024-02-01\n3," + secret + "\n")
    t = load_table(p)
    with pytest.raises(DataSourceError) as err:
        t.column("when")
    assert (err.value.kind, err.value.row) == ("not-a-date", 3)
    assert "row 3 of column 'when' is not a date" in str(err.value)
    _assert_no_cell(err.value, secret)
    with pytest.raises(FilterError, match="row 3 of column 'when' is not a date") as ferr:
        evaluate("when >= '2024-01-01'", t)
    assert secret not in str(ferr.value)


def test_date_filter_rules() -> None:
    """The comparison rules of the filter docstring, each refusal naming the column."""
    t = Table({"visit": ["2024-01-01", "2023-12-31T23:00", "", "2024-06-01T10:00+02:00"],
               "x": ["1", "2", "3", "4"], "s": ["a", "b", "c", "d"]})
    assert evaluate("visit >= '2024-01-01'", t).tolist() == [True, False, False, True]
    assert evaluate("'2024-01-01' > visit", t).tolist() == [False, True, False, False]
    assert evaluate("visit == '2024-01-01'", t).tolist() == [True, False, False, False]
    assert evaluate("visit != '2024-01-01'", t).tolist() == [False, True, False, True]
    assert evaluate("not visit < '2024-02-01'", t).tolist() == [False, False, False, True]
    assert evaluate("visit <= visit", t).tolist() == [True, True, False, True]
    for expr, message in [
        ("visit > 3", "column 'visit' at position 1 holds dates; compare it with a date"),
        ("visit < x", "column 'visit' at position 1 holds dates"),
        ("visit == 'soon'", "holds dates; compare it with a date such as '2024-01-01'"),
        ("visit < '2024-02-30'", "holds dates; compare it with a date such as '2024-01-01'"),
        ("x > '2024-01-01'", "column 'x' at position 1 is not a date column"),
        ("s <= '2024-01-01'", "column 's' at position 1 is not a date column"),
        ("s < 'abc'", "strings can only be compared with '==' or '!='"),
    ]:
        with pytest.raises(FilterError, match=message):
            evaluate(expr, t)
    assert days_since_epoch("2024-01-01") == (dt.date(2024, 1, 1) - EPOCH).days


# --------------------------------------------------------------------------------- Parquet


def test_parquet_odd_columns_do_not_break_the_file(tmp_path: Path) -> None:
    """A Parquet export with list, struct, map, binary, time-of-day and oversized-integer
    columns next to usable ones: the file loads, the usable columns equal pyarrow's values
    (exactly), dates and timestamps (with and without a zone) are days since 1970 UTC, and
    each odd column is refused only when requested, by name and type -- in the sentence that
    leaves the party too. Before, the oversized integer made the whole file unreadable."""
    pa = pytest.importorskip("pyarrow", reason="pip install 'smpc[parquet]'")
    import pyarrow.parquet as pq

    rng = np.random.default_rng(16)
    n = 500
    base = dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)
    stamps = [base + dt.timedelta(seconds=int(s)) for s in rng.integers(0, 10**8, n)]
    day_list = [dt.date(2020, 1, 1) + dt.timedelta(int(d)) for d in rng.integers(0, 2000, n)]
    chol = rng.normal(200, 35, n)
    table = pa.table({
        "id": pa.array(np.arange(n), pa.int64()),
        "chol": pa.array(chol),
        "ward": pa.array([["A", "B", "C"][i % 3] for i in range(n)]).dictionary_encode(),
        "seen": pa.array(day_list, pa.date32()),
        "at": pa.array(stamps, pa.timestamp("us", tz="Europe/Paris")),
        "at_naive": pa.array([s.replace(tzinfo=None) for s in stamps], pa.timestamp("ns")),
        "tags": pa.array([["x"]] * n, pa.list_(pa.string())),
        "meta": pa.array([{"k": 1}] * n),
        "blob": pa.array([b"\x00"] * n),
        "clock": pa.array([dt.time(8, 30)] * n, pa.time64("us")),
        "hash": pa.array([2**63 + i for i in range(n)], pa.uint64()),
        "attrs": pa.array([[("a", 1)]] * n, pa.map_(pa.string(), pa.int64())),
    })
    p = tmp_path / "odd.parquet"
    pq.write_table(table, p)
    t = load_table(p)
    assert t.columns == table.column_names and t.n_rows == n
    np.testing.assert_array_equal(t.column("chol"), chol)
    np.testing.assert_array_equal(t.column("id"), np.arange(n, dtype=float))
    assert list(t.text("ward")) == table.column("ward").cast(pa.string()).to_pylist()
    np.testing.assert_array_equal(t.column("seen"),
                                  [float((d - EPOCH).days) for d in day_list])
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    micros = [(s - epoch) // dt.timedelta(microseconds=1) for s in stamps]
    np.testing.assert_array_equal(t.column("at"), [m / 86400e6 for m in micros])
    np.testing.assert_array_equal(t.column("at_naive"), [m * 1000 / 86400e9 for m in micros])
    assert all(t.is_date(c) for c in ("seen", "at", "at_naive"))
    assert evaluate("seen >= '2022-01-01'", t).tolist() == [d >= dt.date(2022, 1, 1)
                                                            for d in day_list]
    for name, type_text in [("tags", "list<"), ("meta", "struct<k: int64>"), ("blob", "binary"),
                            ("clock", "time64[us]"), ("hash", "uint64 with integers beyond 2^53"),
                            ("attrs", "map<string, int64")]:
        with pytest.raises(DataSourceError) as err:
            t.column(name)
        e = err.value
        assert e.kind == "unsupported-column" and e.column == name
        assert f"column {name!r} has Parquet type {type_text}" in e.public
        assert f"column {name!r} has Parquet type" in str(redact(e, "hospital-a"))
        assert not t.is_numeric(name)
    sel = t.select(["chol", "seen", "at"])
    assert sel.values.shape == (n, 3)


def test_utf16_bom_and_bytes_undefined_in_cp1252(tmp_path: Path) -> None:
    """A UTF-16 byte-order mark decides the encoding; a byte Windows-1252 leaves undefined
    (0x81) makes the fallback Latin-1, which decodes every byte -- the text is then what
    Latin-1 says (a wrong order of fallbacks would raise instead)."""
    p = tmp_path / "u16.csv"
    p.write_text("âge;poids\n41;72,5\n", encoding="utf-16")
    t = load_table(p, decimal=",")
    assert t.dialect["encoding"] == "utf-16" and t.columns == ["âge", "poids"]
    np.testing.assert_array_equal(t.column("poids"), [72.5])
    p.write_bytes(b"nom,x\nA\x81\xe9,1\n")
    t = load_table(p)
    assert t.dialect["encoding"] == "latin-1"
    assert list(t.text("nom")) == [b"A\x81\xe9".decode("latin-1")]
