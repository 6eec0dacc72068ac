"""Real federations for the integration tests: node processes on free loopback ports, mTLS.

``fed`` (session scope) is three hospitals with generated clinical data plus an
insurer that owns two models (``risk``: logistic, ``cost``: linear); it is
started with ``parties.federation.local.up`` (real subprocesses) and stopped at the
end.  ``make_federation`` builds further federations for tests that need
their own (wire capture, killing a node).

The real data services (``postgres_server``, ``postgres_database``, ``local_spark``,
``spark_session``) are defined in ``tests/services/fixtures.py`` and imported below.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from parties.analyst.client import Client
from parties.federation import local as federation
from parties.privacy.exact import SAFEGUARDS_OFF
from smpc.linear import LinearModel

from ..services.fixtures import (  # noqa: F401  (fixtures, found by pytest by name)
    local_spark,
    postgres_database,
    postgres_server,
    spark_session,
)

HOSPITALS = ("hospital-a", "hospital-b", "hospital-c")
COLUMNS = ("age", "bmi", "sbp", "chol")


@dataclass
class Fed:
    """A running federation and the plaintext it was built from (for numpy references)."""

    directory: Path
    client: Client
    data: dict[str, dict[str, np.ndarray]]     # party -> column -> values (float or text)
    models: dict[str, LinearModel] = field(default_factory=dict)
    csv_text: dict[str, list[str]] = field(default_factory=dict)  # party -> every cell as text

    def pooled(self, columns, parties=HOSPITALS, mask=None):
        """Rows of ``parties`` (columns in order), optionally filtered by mask(party data)."""
        blocks = []
        for p in parties:
            d = self.data[p]
            X = np.column_stack([d[c] for c in columns])
            if mask is not None:
                X = X[mask(d)]
            blocks.append(X)
        return np.vstack(blocks)


def write_csv(path: Path, columns: dict[str, np.ndarray]) -> list[str]:
    """Write columns with full float precision; returns every cell as written."""
    names = list(columns)
    cells = []
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(names)
        for i in range(len(columns[names[0]])):
            row = []
            for n in names:
                v = columns[n][i]
                row.append(v if isinstance(v, str) else repr(float(v)))
            cells += [c for c in row if not c.isalpha()]
            w.writerow(row)
    return cells


def hospital_data(rng: np.random.Generator, n: int, shift: float) -> dict[str, np.ndarray]:
    age = np.clip(rng.normal(52 + shift, 14, n), 18, 95)
    bmi = np.clip(rng.normal(26.5 + shift / 5, 4.5, n), 15, 55)
    sbp = 95 + 0.45 * age + 0.8 * bmi + rng.normal(0, 9, n)
    chol = 150 + 0.6 * age + rng.normal(0, 25, n)
    sex = np.where(rng.random(n) < 0.52, "F", "M")
    return {"age": age, "bmi": bmi, "sbp": sbp, "chol": chol, "sex": sex}


RISK = LinearModel("logistic", ("age", "bmi", "sbp"), (0.045, 0.08, 0.021), -8.2)
COST = LinearModel("linear", ("age", "bmi", "sbp", "chol"), (12.5, 30.25, 4.75, 1.5), -310.0)


@pytest.fixture(scope="session")
def make_federation(tmp_path_factory):
    """Factory: build and start a federation; every one is stopped at session end."""
    started: list[Path] = []

    def make(name: str, parties: dict[str, dict[str, np.ndarray]], *,
             models: dict[str, list[LinearModel]] | None = None, env=None,
             stat_parties=None, **init_kwargs) -> Fed:
        root = tmp_path_factory.mktemp(name)
        files, csv_text = [], {}
        for party, cols in parties.items():
            path = root / f"{party}.csv"
            csv_text[party] = write_csv(path, cols)
            files.append(path)
        model_files: dict[str, list[Path]] = {}
        named: dict[str, LinearModel] = {}
        for owner, ms in (models or {}).items():
            for m in ms:
                mname = "risk" if m.kind == "logistic" else "cost"
                p = root / f"{mname}.json"
                p.write_text(json.dumps(m.to_json()))
                model_files.setdefault(owner, []).append(p)
                named[mname] = m
        directory = root / "federation"
        # these tests compare exact answers (small filtered cohorts, fine histograms) with
        # numpy: exact answers opted in, their safeguards off (tested in
        # tests/unit/test_exact_safeguards.py)
        init_kwargs.setdefault("allow_exact", True)
        init_kwargs.setdefault("exact_safeguards", SAFEGUARDS_OFF)
        federation.init_federation(directory, files, models=model_files, **init_kwargs)
        started.append(directory)
        federation.up(directory, timeout=60, env=env)
        client = Client(directory, timeout=60, parties=stat_parties)
        return Fed(directory, client, parties, named, csv_text)

    yield make
    for d in started:
        federation.down(d)


@pytest.fixture(scope="session")
def fed(make_federation) -> Fed:
    rng = np.random.default_rng(20240601)
    parties = {h: hospital_data(rng, n, shift)
               for h, n, shift in zip(HOSPITALS, (140, 110, 125), (0.0, 6.0, -4.0),
                                      strict=True)}
    parties["insurer"] = {"member": np.arange(1, 31, dtype=float),
                          "premium": rng.normal(900, 120, 30)}
    f = make_federation("runtime", parties, models={"insurer": [RISK, COST]},
                        stat_parties=HOSPITALS)
    yield f
    f.client.close()
