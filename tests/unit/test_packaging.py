"""What the installed distribution puts into site-packages: only project-specific top-level names.

Reads the metadata of the installed ``smpc`` distribution (editable in CI, a wheel elsewhere):
its ``top_level.txt`` or, failing that, the files it lists.  Would fail if the benchmark suite
were installed as a generic ``benchmarks`` package again, or if any other stray top-level
package (``tests``, ``scripts`` ...) slipped into the package list.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

EXPECTED = {"smpc", "parties", "smpc_bench"}


def _top_level_from_files(dist: importlib.metadata.Distribution) -> set[str]:
    names = set()
    for f in dist.files or ():
        first = f.parts[0]
        if first.endswith((".dist-info", ".egg-info")) or first in ("..", "__pycache__"):
            continue
        if first.endswith(".pth") or first.startswith("__editable__"):
            continue  # an editable install's hook, not a package
        names.add(first.removesuffix(".py"))
    return names


def test_installed_top_level_names_are_project_specific():
    dist = importlib.metadata.distribution("smpc")
    listed = dist.read_text("top_level.txt")
    names = set(listed.split()) if listed is not None else _top_level_from_files(dist)
    assert names == EXPECTED


def test_benchmarks_import_under_their_project_name_and_files_are_typed():
    import parties
    import smpc
    import smpc_bench.cli  # the benchmarks/ folder, installed with the distribution

    assert callable(smpc_bench.cli.main)
    for pkg in (smpc, parties):
        assert (Path(pkg.__file__).parent / "py.typed").is_file(), pkg.__name__


def test_top_level_scan_of_a_file_list():
    """The fallback reader (used when a distribution has no top_level.txt) skips install hooks."""

    class Fake(importlib.metadata.Distribution):
        def read_text(self, filename):
            return None

        def locate_file(self, path):
            return Path(path)

        @property
        def files(self):
            return [importlib.metadata.PackagePath(p) for p in (
                "smpc/__init__.py", "smpc/ckks/ops.py", "parties/py.typed",
                "smpc_bench/cli.py", "smpc-0.1.0.dist-info/RECORD", "__editable__.smpc.pth",
                "../../../bin/smpc", "__pycache__/x.pyc", "stray.py")]

    assert _top_level_from_files(Fake()) == EXPECTED | {"stray"}
