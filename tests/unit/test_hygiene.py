"""Source-tree rules: no insecure randomness, and the core never imports the runtime."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("smpc", "parties")
# Modules that make synthetic, public-by-construction data with a seeded numpy
# generator; nothing they produce is secret (each says so in its docstring).
SYNTHETIC_DATA_MODULES = {"parties/federation/sampledata.py"}


def python_files(*dirs: str, skip: frozenset[str] = frozenset()):
    for d in dirs:
        for path in sorted((ROOT / d).rglob("*.py")):
            if "_pb" not in path.parts and path.relative_to(ROOT).as_posix() not in skip:
                yield path


def insecure_randomness(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name in ("random", "numpy.random")]
        elif isinstance(node, ast.ImportFrom):
            if node.module in ("random", "numpy.random") or (
                node.module == "numpy" and any(a.name == "random" for a in node.names)
            ):
                found.append(node.module or "")
        elif (
            isinstance(node, ast.Attribute)
            and node.attr == "random"
            and isinstance(node.value, ast.Name)
            and node.value.id in ("np", "numpy")
        ):
            found.append(f"{node.value.id}.random")
    return found


@pytest.mark.parametrize(
    "path", list(python_files(*SOURCE_DIRS, skip=frozenset(SYNTHETIC_DATA_MODULES))),
    ids=lambda p: p.name,
)
def test_no_insecure_randomness_outside_tests(path):
    hits = insecure_randomness(ast.parse(path.read_text(), str(path)))
    assert not hits, f"{path.relative_to(ROOT)} uses {hits}: use smpc.randomness"


def test_the_scan_catches_each_form():
    for src in (
        "import random",
        "from random import randint",
        "import numpy.random",
        "from numpy import random",
        "import numpy as np\nnp.random.rand()",
    ):
        assert insecure_randomness(ast.parse(src)), src
    assert not insecure_randomness(ast.parse("import secrets\nsecrets.token_bytes(8)"))


def test_core_never_imports_the_runtime():
    for path in python_files("smpc"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n == "parties" or n.startswith("parties.") for n in names), path


def test_synthetic_data_modules_say_they_are_not_secret():
    for rel in SYNTHETIC_DATA_MODULES:
        doc = ast.get_docstring(ast.parse((ROOT / rel).read_text())) or ""
        assert "not secret" in doc or "public by construction" in doc, rel


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = ".venv/bin/python -m pytest -q"
    assert command in readme and command in ci.splitlines()
