"""The ``smpc`` namespace: lazy names (PEP 562), no runtime or gRPC behind the core, the version.

Each check runs in a fresh interpreter (``subprocess``), because this test process has long
imported gRPC and the runtime through other tests: only a new process can show what an import
of the core really loads.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import smpc

ROOT = Path(__file__).resolve().parents[2]


def fresh(code: str) -> dict:
    """Run ``code`` in a new interpreter (from the repository root); it prints one JSON line."""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# what the fresh interpreter has loaded: gRPC? any runtime module?
LOADED = ("{'grpc': 'grpc' in sys.modules, "
          "'parties': sorted(m for m in sys.modules if m.split('.')[0] == 'parties')}")


def test_importing_the_core_loads_no_grpc_and_federation_still_resolves():
    got = fresh(
        "import json, sys\n"
        "import smpc, smpc.sharing, smpc.stats\n"
        f"before = {LOADED}\n"
        "fed = smpc.Federation\n"
        "import parties.api\n"
        "print(json.dumps({'before': before, 'same': fed is parties.api.Federation,"
        " 'grpc_after': 'grpc' in sys.modules, 'name': fed.__qualname__}))\n"
    )
    assert got["before"] == {"grpc": False, "parties": []}
    assert got["same"] and got["name"] == "Federation"
    assert got["grpc_after"]  # the lazy lookup did load the runtime: the check above can fail


def test_every_core_module_and_core_name_loads_without_the_runtime():
    got = fresh(
        "import json, pkgutil, importlib, sys\n"
        "import smpc\n"
        "mods = [m.name for m in pkgutil.walk_packages(smpc.__path__, 'smpc.')]\n"
        "for m in mods: importlib.import_module(m)\n"
        "core = [n for n in smpc.__all__ if n not in (*smpc._RUNTIME, '__version__')]\n"
        "vals = {n: getattr(smpc, n).__module__ for n in core}\n"
        "vals['__version__'] = smpc.__version__\n"
        f"print(json.dumps({{'mods': mods, 'vals': vals, 'loaded': {LOADED}}}))\n"
    )
    assert len(got["mods"]) >= 30  # the walk found the subpackages' parts
    assert got["loaded"] == {"grpc": False, "parties": []}
    version = got["vals"].pop("__version__")
    assert version == smpc.__version__
    assert len(got["vals"]) >= 10 and all(mod.startswith("smpc.") for mod in got["vals"].values())


def test_namespace_names_are_the_real_objects():
    from parties.analyst.client import Prediction
    from parties.api import Federation, LinearRegression
    from smpc.dp import DPRequest
    from smpc.names import Backend
    from smpc.stats import StatResult, StatSpec

    assert smpc.Federation is Federation and smpc.LinearRegression is LinearRegression
    assert smpc.Prediction is Prediction and smpc.StatResult is StatResult
    assert smpc.StatSpec is StatSpec and smpc.DPRequest is DPRequest and smpc.Backend is Backend
    assert set(smpc.__all__) <= set(dir(smpc))
    try:
        smpc.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


def test_version_is_the_installed_distributions_and_the_pyprojects():
    project = re.search(r"(?ms)^\[project\]\s*$(.*?)(?=^\[|\Z)",
                        (ROOT / "pyproject.toml").read_text())
    assert project is not None
    declared = re.search(r'(?m)^version\s*=\s*"([^"]+)"', project.group(1))
    assert declared is not None
    assert smpc.__version__ == importlib.metadata.version("smpc") == declared.group(1)
    from smpc import __version__  # the form parties.transport.server uses

    assert __version__ == smpc.__version__


def test_version_falls_back_to_the_pyproject_when_not_installed():
    """With the distribution's metadata hidden, the source tree's pyproject.toml answers."""
    got = fresh(
        "import json, importlib.metadata as md\n"
        "def missing(name): raise md.PackageNotFoundError(name)\n"
        "md.version = missing\n"
        "import smpc\n"
        "print(json.dumps({'v': smpc.__version__}))\n"
    )
    assert got["v"] == importlib.metadata.version("smpc")


def test_smpc_version_prints_the_installed_version():
    """``smpc --version`` answers with the distribution's version (exit 0, one line)."""
    import importlib.metadata
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "parties.cli", "--version"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert out.stdout.strip() == f"smpc {importlib.metadata.version('smpc')}"
