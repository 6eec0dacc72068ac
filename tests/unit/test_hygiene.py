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


def imports_in(tree: ast.AST) -> list[tuple[str, str]]:
    """Every module an import in ``tree`` names, with the enclosing function's qualified name.

    Import statements (``import a.b``, ``from a import b`` -> ``a.b``, ``from a.b import c``
    -> ``a.b.c``) and dynamic imports with a constant name (``importlib.import_module("a")``,
    ``__import__("a")``); ``""`` is module level.
    """
    found: list[tuple[str, str]] = []

    def visit(node: ast.AST, where: str) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            where = f"{where}.{node.name}" if where else node.name
        if isinstance(node, ast.Import):
            found.extend((a.name, where) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.extend((f"{node.module}.{a.name}", where) for a in node.names)
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id == "__import__"))):
            found.append((node.args[0].value, where))
        for child in ast.iter_child_nodes(node):
            visit(child, where)

    visit(tree, "")
    return found


def runtime_imports_of_the_core() -> list[tuple[str, str, str]]:
    return [(path.relative_to(ROOT).as_posix(), where, name)
            for path in python_files("smpc")
            for name, where in imports_in(ast.parse(path.read_text()))
            if name == "parties" or name.startswith("parties.")]


# The one runtime import the core may make: smpc.Federation & co., looked up lazily (PEP 562).
ALLOWED_RUNTIME_IMPORTS = [("smpc/__init__.py", "__getattr__", "parties.api")]


def test_core_never_imports_the_runtime():
    """Only ``smpc.__getattr__`` imports the runtime, only ``parties.api``, only once.

    (tests/unit/test_namespace.py checks the behaviour: importing the core loads no runtime.)
    """
    assert runtime_imports_of_the_core() == ALLOWED_RUNTIME_IMPORTS


def test_the_import_scan_sees_each_form_and_where_it_is():
    src = (
        "import parties.a\n"
        "from parties import b\n"
        "def f():\n    from parties.c import d\n"
        "class K:\n    def g(self):\n        importlib.import_module('parties.e')\n"
        "def __getattr__(n):\n    __import__('parties')\n"
    )
    assert imports_in(ast.parse(src)) == [
        ("parties.a", ""), ("parties.b", ""), ("parties.c.d", "f"), ("parties.e", "K.g"),
        ("parties", "__getattr__")]


def test_synthetic_data_modules_say_they_are_not_secret():
    for rel in SYNTHETIC_DATA_MODULES:
        doc = ast.get_docstring(ast.parse((ROOT / rel).read_text())) or ""
        assert "not secret" in doc or "public by construction" in doc, rel


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = ".venv/bin/python -m pytest -q -n auto --dist loadfile"
    assert command in readme and command in ci.splitlines()


# The runtime's layers: what each subpackage of ``parties`` may import (besides the core
# ``smpc`` and third-party packages).  It must stay a DAG: nothing imports upward.
RUNTIME_ALLOWED: dict[str, set[str]] = {
    "_pb": set(),
    "errors": set(),
    "pki": {"errors"},
    "config": {"errors", "pki"},
    "data": {"errors"},
    "transport": {"_pb", "errors", "pki", "config", "data"},
    "privacy": {"errors", "pki", "config"},
    "node": {"_pb", "errors", "pki", "config", "data", "transport", "privacy"},
    "dealer": {"_pb", "errors", "config", "transport"},
    "coordinator": {"_pb", "errors", "pki", "config", "data", "transport", "privacy"},
    "analyst": {"_pb", "errors", "pki", "config", "data", "transport", "privacy"},
    "federation": {"_pb", "errors", "pki", "config", "data", "transport", "privacy", "node",
                   "dealer", "coordinator", "analyst"},
    "api": {"errors", "config", "analyst", "federation"},
    "cli": {"_pb", "errors", "pki", "config", "data", "transport", "privacy", "node",
            "dealer", "coordinator", "analyst", "federation", "api"},
}


def runtime_imports() -> dict[str, dict[str, set[str]]]:
    """subpackage -> imported subpackage -> the files that import it (every import statement,
    including those inside functions)."""
    graph: dict[str, dict[str, set[str]]] = {}
    for path in python_files("parties"):
        rel = path.relative_to(ROOT / "parties").parts
        pkg = rel[0].removesuffix(".py")
        if pkg == "__init__":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = ([f"parties.{a.name}" for a in node.names] if node.module == "parties"
                         else [node.module])
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] == "parties" and len(parts) > 1 and parts[1] != pkg:
                    graph.setdefault(pkg, {}).setdefault(parts[1], set()).add(
                        path.relative_to(ROOT).as_posix())
    return graph


def test_runtime_subpackages_import_only_downward():
    graph = runtime_imports()
    assert set(graph) <= set(RUNTIME_ALLOWED), set(graph) - set(RUNTIME_ALLOWED)
    bad = {f"{pkg} -> {dep} ({', '.join(sorted(files))})"
           for pkg, deps in graph.items() for dep, files in deps.items()
           if dep not in RUNTIME_ALLOWED[pkg]}
    assert not bad, f"upward or undeclared imports: {sorted(bad)}"


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                return [*stack[stack.index(m):], m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_the_layers_are_a_dag_and_the_check_catches_a_cycle():
    assert _cycle(RUNTIME_ALLOWED) is None
    assert _cycle({k: set(v) for k, v in runtime_imports().items()}) is None
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_every_runtime_subpackage_says_what_it_owns_and_may_import():
    for pkg in RUNTIME_ALLOWED:
        init = ROOT / "parties" / pkg / "__init__.py"
        if pkg.startswith("_") or not init.exists():
            continue
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "Owns" in doc and "May import" in doc, pkg
