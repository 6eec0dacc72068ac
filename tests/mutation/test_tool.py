"""The mutation tool itself: mutants are the edits they claim, and the runner judges them."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from tests.mutation import operators, runner
from tests.mutation.planted import PLANTED
from tests.mutation.targets import TARGETS

ROOT = runner.ROOT

SAMPLE = textwrap.dedent('''
    import logging
    log = logging.getLogger("x")

    def f(x, n=3):
        """Docstring: never mutated."""
        if x < n and x != 0:
            raise ValueError(f"bad {x + 1}")
        log.info("value %s", x * 2)
        y = x * 2 + 1
        y += seed_of(x)
        z = fresh_seed()
        call(y, scale=2.5)
        total = x - 1  # pragma: no mutate
        return not y

    class C:
        def g(self, a):
            return a is None
''')


def test_operators_make_the_edits_they_name():
    ms = operators.generate("m.py", SAMPLE, ["f", "C.g"])
    got = {(m.operator, m.original, m.replacement) for m in ms}
    for expected in [("compare", "<", "<="), ("compare", "!=", "=="), ("boolop", "and", "or"),
                     ("binop", "*", "/"), ("binop", "+", "-"), ("binop", "+=", "-="),
                     ("const", "3", "4"), ("const", "2.5", "5.0"), ("delete",
                     "call(y, scale=2.5)", "pass"), ("random", "fresh_seed()",
                     "bytes(len(fresh_seed()))"), ("not", "not ", ""),
                     ("compare", "is", "is not"), ("kwarg", ", scale=2.5", "")]:
        assert expected in got, expected
    for m in ms:
        ast.parse(m.apply(SAMPLE))  # every mutant is valid Python


def test_strings_messages_logging_and_pragmas_are_left_alone():
    ms = operators.generate("m.py", SAMPLE, ["f"])
    lines = SAMPLE.splitlines()
    for m in ms:
        line = lines[m.line - 1]
        assert "pragma: no mutate" not in line
        assert "log.info" not in line
        assert "Docstring" not in m.original
        if "raise" in line:  # the raise may be deleted; its message is not edited
            assert m.operator == "delete"


def test_ids_are_stable_when_lines_move():
    a = {m.ident for m in operators.generate("m.py", SAMPLE, ["f"])}
    b = {m.ident for m in operators.generate("m.py", "\n\n# moved\n" + SAMPLE, ["f"])}
    assert a == b and len(a) == len(operators.generate("m.py", SAMPLE, ["f"]))


def test_unknown_function_is_an_error():
    with pytest.raises(ValueError, match="no function nope"):
        operators.generate("m.py", SAMPLE, ["nope"])


def test_every_target_names_existing_functions_and_tests():
    for t in TARGETS:
        for path, functions in t.files:
            text = (ROOT / path).read_text()
            assert operators.generate(path, text, list(functions) if functions else None), t
        for test in t.tests:
            assert (ROOT / test.split("::")[0]).exists(), f"{t.name}: {test} does not exist"


def test_every_planted_bug_applies_to_the_current_source():
    for p in PLANTED:
        text = (ROOT / p.path).read_text()
        assert p.apply(text) != text
        ast.parse(p.apply(text))
        for test in p.tests:
            assert (ROOT / test.split("::")[0]).exists(), f"{p.name}: {test} does not exist"


def test_the_runner_tells_a_killed_mutant_from_a_survivor(tmp_path: Path):
    (tmp_path / "mod.py").write_text("def double(x):\n    return x * 2\n\n\n"
                                     "def unused(x):\n    return x + 1\n")
    (tmp_path / "test_mod.py").write_text("from mod import double\n\n\n"
                                          "def test_double():\n    assert double(3) == 6\n")
    text = (tmp_path / "mod.py").read_text()
    outcomes = {}
    for m in operators.generate("mod.py", text, None):
        job = runner.Job(m.ident, "mutant", "t", "mod.py", m.describe(), ("test_mod.py",),
                         m.apply(text))
        outcomes[(m.function, m.operator, m.replacement)] = runner.judge(tmp_path, job, 120)
    assert outcomes[("double", "binop", "/")].status == "killed"
    assert outcomes[("double", "binop", "/")].killed_by == "test_mod.py::test_double"
    assert outcomes[("unused", "binop", "-")].status == "survived"
    assert (tmp_path / "mod.py").read_text() == text  # restored
