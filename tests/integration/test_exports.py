"""A party node on a spreadsheet export as it comes (issue 13, item 4), over real gRPC + mTLS.

``clinique-a`` holds a Windows-1252 file with ';' delimiters, decimal commas, accented column
names, quoted comments holding ';' and newlines, ISO visit dates, and one lab value typed as
text; its operator set only ``"decimal": ","`` in the party config (delimiter and encoding are
detected by the node, which logs its choice). ``hospital-b`` holds a plain UTF-8 CSV. The
analyst gets, over the real runtime: an exact mean of a decimal-comma column and of the dates
(days since 1970-01-01), a mean filtered on dates, and, for the column with the text cell, a
refusal naming the party, the row and the column, never the cell.

Tolerance (exact mode, ``ss``, 2 parties): :class:`tests.tolerances.Moments` -- each value is
rounded to 2^-16 in fixed point, so a sum is within (parties + 1) * 2^-17 of numpy's and a mean
within that / N (the README's "sums exact to 2.3e-5").
"""

from __future__ import annotations

import csv
import datetime as dt
import json

import numpy as np
import pytest

from parties.analyst.client import Client, InvalidRequest
from parties.federation import local as federation
from parties.privacy.exact import SAFEGUARDS_OFF
from smpc.stats import StatSpec
from tests.tolerances import Backend, Moments, assert_within

SECRET = "SECRET-9917 mmol"
BAD_ROW = 17  # 1-based, header excluded
NAMES = ("patient_id", "poids (kg)", "cholestérol", "visite", "commentaire")
COMMENTS = ("suivi; contrôle", 'dit "ça va"', "ligne 1\nligne 2", "coût 12 €", "RAS")


def party_rows(rng: np.random.Generator, n: int) -> dict[str, list]:
    start = dt.date(2022, 1, 1)
    return {
        "patient_id": [float(i) for i in range(1, n + 1)],
        "poids (kg)": [round(float(v), 2) for v in rng.normal(75, 12, n)],
        "cholestérol": [float(v) for v in rng.normal(200, 35, n)],
        "visite": [start + dt.timedelta(int(d)) for d in rng.integers(0, 1000, n)],
        "commentaire": [COMMENTS[int(i)] for i in rng.integers(0, len(COMMENTS), n)],
    }


def write(path, cols, *, delimiter, decimal, encoding, bad_row=None) -> None:
    with path.open("w", encoding=encoding, newline="") as fh:
        w = csv.writer(fh, delimiter=delimiter, lineterminator="\r\n")
        w.writerow(NAMES)
        for i in range(len(cols["patient_id"])):
            row = []
            for n in NAMES:
                v = cols[n][i]
                text = repr(v).replace(".", decimal) if isinstance(v, float) else str(v)
                row.append(SECRET if (n == "cholestérol" and i + 1 == bad_row) else text)
            w.writerow(row)


def days(values) -> np.ndarray:
    return np.array([float((d - dt.date(1970, 1, 1)).days) for d in values])


def test_a_node_on_a_semicolon_cp1252_export_answers_over_grpc(tmp_path):
    """Would fail if the node ignored ``data.decimal`` from its config (the mean is refused),
    misdetected the delimiter or encoding (the accented columns are unknown), read dates
    wrongly (the date mean or the filtered mean differs from numpy's), or lost the row and
    column of a bad cell on the way to the analyst (or leaked the cell)."""
    rng = np.random.default_rng(20261313)
    data = {"clinique-a": party_rows(rng, 160), "hospital-b": party_rows(rng, 120)}
    files = [tmp_path / "clinique-a.csv", tmp_path / "hospital-b.csv"]
    write(files[0], data["clinique-a"], delimiter=";", decimal=",", encoding="cp1252",
          bad_row=BAD_ROW)
    write(files[1], data["hospital-b"], delimiter=",", decimal=".", encoding="utf-8")
    directory = tmp_path / "fed"
    lay = federation.init_federation(directory, files, allow_exact=True,
                                     exact_safeguards=SAFEGUARDS_OFF)
    cfg_file = lay.config("clinique-a")
    cfg = json.loads(cfg_file.read_text())
    cfg["data"]["decimal"] = ","  # what the operator writes; delimiter and encoding detected
    cfg_file.write_text(json.dumps(cfg))
    federation.up(directory, timeout=60)
    try:
        with Client(directory, timeout=60) as client:
            pooled = {c: np.concatenate([np.asarray(data[p][c] if c != "visite" else
                                                    days(data[p][c])) for p in data])
                      for c in ("poids (kg)", "visite")}
            X = np.column_stack([pooled["poids (kg)"], pooled["visite"]])
            r = client.compute(StatSpec("mean", ("poids (kg)", "visite"), backend="ss"))
            m = Moments(X, Backend("ss", 2))
            assert_within(r.value, X.mean(axis=0), m.mean_tol, "mean")
            assert r.n == 280

            cut = dt.date(2023, 1, 1)
            keep = np.concatenate([[d >= cut for d in data[p]["visite"]] for p in data])
            r = client.compute(StatSpec("mean", ("poids (kg)",), backend="ss"),
                               "visite >= '2023-01-01'")
            Xf = X[keep, :1]
            assert_within(r.value, Xf.mean(axis=0), Moments(Xf, Backend("ss", 2)).mean_tol,
                          "filtered mean")
            assert r.n == int(keep.sum())

            with pytest.raises(InvalidRequest) as err:
                client.compute(StatSpec("mean", ("cholestérol",), backend="ss"))
            msg = err.value.message
            assert (f"clinique-a cannot use the requested columns: row {BAD_ROW} of column "
                    "'cholestérol' is not a number") in msg
            assert "SECRET" not in f"{msg} {err.value!r}" and "9917" not in msg
    finally:
        federation.down(directory)
    log = lay.log("clinique-a").read_text(errors="replace")
    assert "data file read as CSV with delimiter ';' (detected), encoding cp1252 (detected: " \
           "not valid UTF-8), decimal ','" in log
    assert str(files[0]) not in log and "clinique-a.csv" not in log
    # the party's own log has the row and the physical line (comments span lines), no cell
    line = 1 + sum(1 + data["clinique-a"]["commentaire"][i].count("\n") for i in range(BAD_ROW))
    assert f"row {BAD_ROW} of column 'cholestérol' is not a number (line {line} of the " \
           "file)" in log
    assert "SECRET" not in log
