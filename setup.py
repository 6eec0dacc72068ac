"""The package list, which pyproject.toml cannot express: everything else is in pyproject.toml.

``smpc`` (the core) and ``parties`` (the runtime) install as they are, with every subpackage
found on disk (so a new runtime subpackage needs no edit here).  The benchmark suite lives in
the folder ``benchmarks/`` but installs as ``smpc_bench``: a project-specific name, so that the
distribution puts no generic ``benchmarks`` package into site-packages
(tests/unit/test_packaging.py checks the installed top-level names).
"""

from setuptools import find_packages, setup

BENCH = "smpc_bench"

setup(
    packages=[
        *find_packages(include=["smpc", "smpc.*", "parties", "parties.*"]),
        BENCH,
        *(f"{BENCH}.{name}" for name in find_packages("benchmarks")),
    ],
    package_dir={BENCH: "benchmarks"},
)
