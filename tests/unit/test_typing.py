"""The code type-checks: ``mypy smpc parties`` with the project's configuration reports no error.

Would fail on any typing regression in ``smpc/`` -- a wrong argument type, an Optional used
without a check, a name a module does not re-export explicitly (``no_implicit_reexport``), an
unused or blanket ``# type: ignore`` (``warn_unused_ignores``) -- in the core and the runtime.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_reports_no_error(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "smpc", "parties", "--cache-dir",
         str(tmp_path / "cache")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("Success: no issues found"), out.stdout
