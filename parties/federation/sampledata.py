"""Synthetic sample data for the demo: three hospitals and a model owner.

The values are *synthetic and public by construction*, so this module uses
numpy's seeded generator (the one place outside tests that may: nothing it
makes is secret).  Columns are clinical-looking and mutually correlated so
that correlations and regressions have something to find.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

COLUMNS = ("age", "bmi", "systolic_bp", "cholesterol", "glucose", "smoker")
HOSPITALS = (("hospital_a", 420, 0.0), ("hospital_b", 310, 4.0), ("hospital_c", 270, -3.0))
#: The model owner: a cardiology lab with its own (small) research cohort.
MODEL_OWNER = ("cardio_lab", 120, 2.0)
RISK_MODEL = {
    "kind": "logistic",
    "features": ["age", "bmi", "systolic_bp", "cholesterol"],
    "coefficients": [0.045, 0.06, 0.018, 0.004],
    "intercept": -8.5,
}


def hospital_rows(n: int, age_shift: float, seed: int) -> np.ndarray:
    """``n`` synthetic patients (rows) with the :data:`COLUMNS`."""
    gen = np.random.default_rng(seed)  # synthetic demo data, not secret
    age = np.clip(gen.normal(54 + age_shift, 14, n), 18, 95)
    bmi = np.clip(gen.normal(22 + 0.09 * age, 3.5, n), 15, 55)
    smoker = (gen.uniform(0, 1, n) < 0.22).astype(float)
    systolic = gen.normal(95 + 0.5 * age + 0.6 * bmi + 4 * smoker, 11, n)
    cholesterol = gen.normal(150 + 0.7 * age + 1.2 * bmi, 28, n)
    glucose = gen.normal(70 + 0.25 * age + 0.9 * bmi, 12, n)
    return np.round(np.column_stack([age, bmi, systolic, cholesterol, glucose, smoker]), 1)


def write_csv(path: Path, rows: np.ndarray, columns: tuple[str, ...] = COLUMNS) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows(rows.tolist())
    return path


def write_sample_federation_data(directory: Path, *, with_model_owner: bool = False
                                 ) -> tuple[list[Path], Path]:
    """Write one CSV per hospital and the risk model; return (data files, model path).

    With ``with_model_owner`` the data files end with the model owner's own
    cohort (a party of the federation that owns the model).
    """
    directory.mkdir(parents=True, exist_ok=True)
    members = [*HOSPITALS, *([MODEL_OWNER] if with_model_owner else [])]
    files = [write_csv(directory / f"{name}.csv", hospital_rows(n, shift, seed))
             for seed, (name, n, shift) in enumerate(members)]
    model_path = directory / "risk_model.json"
    model_path.write_text(json.dumps(RISK_MODEL, indent=2))
    return files, model_path
