"""Mutant generation: small, meaningful source edits inside chosen functions.

A mutant is one edit of the source text -- a span ``[start, end)`` of the module's
text replaced by ``replacement`` -- made inside a *target* function (see
:mod:`tests.mutation.targets`).  Edits are found with :mod:`ast` and applied to the
original text, so the rest of the file (comments, formatting) is untouched.

Operators (each named in the mutant's id):

``binop``      arithmetic / bitwise operator swapped (``+``<->``-``, ``*``<->``/``, ``//``->``/``,
               ``%``->``*``, ``**``->``*``, ``<<``<->``>>``, ``&``<->``|``, ``^``->``|``),
               also in augmented assignments (``+=``<->``-=`` ...);
``compare``    comparison swapped (``<``<->``<=``, ``>``<->``>=``, ``==``<->``!=``,
               ``is``<->``is not``, ``in``<->``not in``);
``boolop``     ``and``<->``or``;
``not``        ``not x`` -> ``x``;  ``neg``: ``-x`` -> ``x``;
``const``      integer ``n`` -> ``n + 1`` and (n != 0) ``0``; float ``x`` -> ``2x`` (0.0 -> 1.0);
               ``True``<->``False``;
``delete``     a statement removed (replaced by ``pass``): ``raise``, a call statement, an
               augmented assignment, ``continue`` / ``break``, an early ``return`` inside ``if``;
``kwarg``      a keyword argument dropped from a call (the callee's default applies);
``random``     a call to a randomness source (seeds, keystreams, noise samplers) replaced by
               zeros of the same length/shape -- the strongest privacy mutant: the "secret"
               becomes constant;
``return``     ``return x`` -> ``return None`` where x is not already None (guards that return
               a decision).

Never mutated: docstrings, strings and f-strings, type annotations, decorators, the arguments
of ``raise``, ``assert`` statements, logging calls, and any line marked ``# pragma: no mutate``
(used only where the line cannot affect privacy or correctness: diagnostics, and a role's
stand-alone cancellation checks ``t.check_cancelled()``, which can only stop it; the checks the
noise sampler makes between chunks are mutated and tested).
"""

from __future__ import annotations

import ast
import hashlib
import io
import re
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass

BINOP_SWAPS: dict[type[ast.operator], tuple[str, str]] = {
    ast.Add: ("+", "-"), ast.Sub: ("-", "+"), ast.Mult: ("*", "/"), ast.Div: ("/", "*"),
    ast.FloorDiv: ("//", "/"), ast.Mod: ("%", "*"), ast.Pow: ("**", "*"),
    ast.LShift: ("<<", ">>"), ast.RShift: (">>", "<<"), ast.BitAnd: ("&", "|"),
    ast.BitOr: ("|", "&"), ast.BitXor: ("^", "|"), ast.MatMult: ("@", "*"),
}
COMPARE_SWAPS: dict[type[ast.cmpop], tuple[str, str]] = {
    ast.Lt: ("<", "<="), ast.LtE: ("<=", "<"), ast.Gt: (">", ">="), ast.GtE: (">=", ">"),
    ast.Eq: ("==", "!="), ast.NotEq: ("!=", "=="), ast.Is: ("is", "is not"),
    ast.IsNot: ("is not", "is"), ast.In: ("in", "not in"), ast.NotIn: ("not in", "in"),
}
# Calls whose result is secret randomness: bytes-valued and array-valued.
RANDOM_BYTES = frozenset({"fresh_seed", "urandom", "token_bytes", "keystream"})
RANDOM_ARRAYS = frozenset({"random_ring", "random_below", "expand", "expand_share",
                           "csprng_gaussian", "sample_discrete_gaussian", "party_noise",
                           "_sum_expansions", "_expand"})
LOG_NAMES = frozenset({"log", "logger", "logging", "warnings"})
PRAGMA = "pragma: no mutate"


@dataclass(frozen=True)
class Mutant:
    """One edit of one file.

    ``ident`` is stable under unrelated edits of the file and under moving the function to
    another file of the same target: it is made of the target's name, the function's
    qualified name, the operator, the original and replacement text and the occurrence.
    """

    label: str           # the target's name (part of the identity)
    path: str            # repository-relative path of the file
    function: str        # qualified name of the target function
    operator: str
    line: int            # 1-based line of the edit (for people; not part of the identity)
    start: int           # character offsets into the original text
    end: int
    original: str
    replacement: str
    occurrence: int      # how many identical (function, operator, original, replacement) before

    @property
    def ident(self) -> str:
        """A short id derived from everything but the position (stable across line shifts)."""
        key = "\x00".join([self.label, self.function, self.operator, self.original,
                           self.replacement, str(self.occurrence)])
        return hashlib.sha256(key.encode()).hexdigest()[:10]

    def describe(self) -> str:
        return (f"{self.path}:{self.line} {self.function} [{self.operator}] "
                f"{_short(self.original)!r} -> {_short(self.replacement)!r}")

    def apply(self, text: str) -> str:
        assert text[self.start:self.end] == self.original, "source changed under the mutant"
        return text[:self.start] + self.replacement + text[self.end:]


def _short(s: str, n: int = 60) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 3] + "..."


class _Source:
    """Line/column <-> offset conversion for one file's text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.line_starts = [0]
        for m in re.finditer("\n", text):
            self.line_starts.append(m.end())
        self.lines = text.split("\n")

    def offset(self, line: int, col: int) -> int:
        # ast columns are UTF-8 byte offsets; convert within the line.
        raw = self.lines[line - 1].encode()[:col].decode(errors="replace")
        return self.line_starts[line - 1] + len(raw)

    def span(self, node: ast.AST) -> tuple[int, int]:
        return (self.offset(node.lineno, node.col_offset),  # type: ignore[attr-defined]
                self.offset(node.end_lineno, node.end_col_offset))  # type: ignore[attr-defined]

    def pragma(self, node: ast.AST) -> bool:
        first, last = node.lineno, getattr(node, "end_lineno", node.lineno)  # type: ignore
        return any(PRAGMA in self.lines[i - 1] for i in range(first, last + 1))


def _find_token(text: str, start: int, end: int, token: str) -> int | None:
    """Offset of operator ``token`` in ``text[start:end]`` ignoring comments and parens."""
    chunk = text[start:end]
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(chunk).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        toks = []
    words = token.split()
    lines = chunk.split("\n")
    starts = [0]
    for ln in lines[:-1]:
        starts.append(starts[-1] + len(ln) + 1)
    names = [(t.string, starts[t.start[0] - 1] + t.start[1], starts[t.end[0] - 1] + t.end[1])
             for t in toks if t.type in (tokenize.OP, tokenize.NAME)]
    for i in range(len(names) - len(words) + 1):
        if [n[0] for n in names[i:i + len(words)]] == words:
            return start + names[i][1]
    return None


def _call_name(node: ast.Call) -> str | None:
    f = node.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        return f.attr
    return None


def _is_log_call(node: ast.Call) -> bool:
    f = node.func
    while isinstance(f, ast.Attribute):
        if isinstance(f.value, ast.Name) and f.value.id in LOG_NAMES:
            return True
        f = f.value
    return isinstance(f, ast.Name) and f.id in ("print",)


class _Collector(ast.NodeVisitor):
    def __init__(self, src: _Source, path: str, function: str) -> None:
        self.src = src
        self.path = path
        self.function = function
        self.out: list[tuple[str, int, int, str, int]] = []  # op, start, end, repl, line

    # -- helpers ---------------------------------------------------------------
    def add(self, op: str, start: int, end: int, repl: str, line: int) -> None:
        self.out.append((op, start, end, repl, line))

    def skip(self, node: ast.AST) -> bool:
        return self.src.pragma(node)

    # -- never descend ---------------------------------------------------------
    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:  # f-strings
        return

    def visit_Raise(self, node: ast.Raise) -> None:
        if not self.skip(node):
            s, e = self.src.span(node)
            self.add("delete", s, e, "pass", node.lineno)
        # the raised exception's construction (messages) is not mutated

    def visit_Assert(self, node: ast.Assert) -> None:
        return

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        # nested functions/closures belong to the target: mutate their bodies, not signatures
        for stmt in node.body:
            self.visit(stmt)
        for d in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
            self.visit(d)

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.visit(node.body)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        return

    # -- statements --------------------------------------------------------------
    def visit_Expr(self, node: ast.Expr) -> None:
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return  # docstring or bare string
        if isinstance(node.value, ast.Call) and _is_log_call(node.value):
            return
        if isinstance(node.value, ast.Call) and not self.skip(node):
            s, e = self.src.span(node)
            self.add("delete", s, e, "pass", node.lineno)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if not self.skip(node):
            s, e = self.src.span(node)
            self.add("delete", s, e, "pass", node.lineno)
            swap = BINOP_SWAPS.get(type(node.op))
            if swap:
                t_end = self.src.span(node.target)[1]
                v_start = self.src.span(node.value)[0]
                pos = _find_token(self.src.text, t_end, v_start, swap[0] + "=")
                if pos is not None:
                    self.add("binop", pos, pos + len(swap[0]) + 1, swap[1] + "=", node.lineno)
        self.visit(node.value)

    def visit_Continue(self, node: ast.Continue) -> None:
        if not self.skip(node):
            s, e = self.src.span(node)
            self.add("delete", s, e, "pass", node.lineno)

    visit_Break = visit_Continue  # type: ignore[assignment]

    def visit_If(self, node: ast.If) -> None:
        for stmt in node.body:
            if isinstance(stmt, ast.Return) and not self.skip(stmt):
                s, e = self.src.span(stmt)
                self.add("delete", s, e, "pass", stmt.lineno)
        self.generic_visit(node)

    def visit_Return(self, node: ast.Return) -> None:
        v = node.value
        if v is not None and not (isinstance(v, ast.Constant) and v.value is None) \
                and not self.skip(node):
            s, e = self.src.span(v)
            self.add("return", s, e, "None", node.lineno)
        self.generic_visit(node)

    # -- expressions -------------------------------------------------------------
    def visit_BinOp(self, node: ast.BinOp) -> None:
        swap = BINOP_SWAPS.get(type(node.op))
        if swap and not self.skip(node):
            a = self.src.span(node.left)[1]
            b = self.src.span(node.right)[0]
            pos = _find_token(self.src.text, a, b, swap[0])
            if pos is not None:
                self.add("binop", pos, pos + len(swap[0]), swap[1], node.lineno)
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        if not self.skip(node):
            left = node.left
            for op, right in zip(node.ops, node.comparators, strict=True):
                swap = COMPARE_SWAPS[type(op)]
                a = self.src.span(left)[1]
                b = self.src.span(right)[0]
                pos = _find_token(self.src.text, a, b, swap[0])
                if pos is not None:
                    m = re.match(r"is\s+not|not\s+in|is|in|[<>=!]=?", self.src.text[pos:b])
                    if m:
                        self.add("compare", pos, pos + m.end(), swap[1], node.lineno)
                left = right
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        if not self.skip(node):
            word = "and" if isinstance(node.op, ast.And) else "or"
            other = "or" if word == "and" else "and"
            for left, right in zip(node.values, node.values[1:], strict=False):
                a = self.src.span(left)[1]
                b = self.src.span(right)[0]
                pos = _find_token(self.src.text, a, b, word)
                if pos is not None:
                    self.add("boolop", pos, pos + len(word), other, node.lineno)
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if not self.skip(node) and isinstance(node.op, (ast.Not, ast.USub)):
            s, _ = self.src.span(node)
            o = self.src.span(node.operand)[0]
            name = "not" if isinstance(node.op, ast.Not) else "neg"
            self.add(name, s, o, "", node.lineno)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if self.skip(node):
            return
        v = node.value
        s, e = self.src.span(node)
        if isinstance(v, bool):
            self.add("const", s, e, str(not v), node.lineno)
        elif isinstance(v, int):
            self.add("const", s, e, str(v + 1), node.lineno)
            if v != 0:
                self.add("const", s, e, "0", node.lineno)
        elif isinstance(v, float):
            self.add("const", s, e, repr(v * 2 if v != 0 else 1.0), node.lineno)

    def visit_Call(self, node: ast.Call) -> None:
        if _is_log_call(node) or self.skip(node):
            return
        name = _call_name(node)
        s, e = self.src.span(node)
        call = self.src.text[s:e]
        if name in RANDOM_BYTES:
            self.add("random", s, e, f"bytes(len({call}))", node.lineno)
        elif name in RANDOM_ARRAYS:
            self.add("random", s, e, f"(({call}) * 0)", node.lineno)
        for kw in node.keywords:
            if kw.arg is None:
                continue
            ks = self.src.offset(kw.lineno, kw.col_offset)
            ke = self.src.span(kw.value)[1]
            text = self.src.text
            j = ke
            while j < len(text) and text[j] in " \t\n":
                j += 1
            if j < len(text) and text[j] == ",":
                self.add("kwarg", ks, j + 1, "", kw.lineno)
            else:
                i = ks - 1
                while i > 0 and text[i] in " \t\n":
                    i -= 1
                if text[i] == ",":
                    self.add("kwarg", i, ke, "", kw.lineno)
        self.generic_visit(node)

    def visit_arg(self, node: ast.arg) -> None:  # annotations
        return

    def visit_Subscript(self, node: ast.Subscript) -> None:
        self.generic_visit(node)


def _targets(tree: ast.Module, wanted: set[str] | None) -> Iterator[tuple[str, ast.AST]]:
    """(qualified name, node) of every function or method matching ``wanted`` (None: all)."""
    def walk(body: list[ast.stmt], prefix: str) -> Iterator[tuple[str, ast.AST]]:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                q = prefix + node.name
                if wanted is None or q in wanted or any(w.endswith(".*") and q.startswith(
                        w[:-1]) for w in wanted):
                    yield q, node
            elif isinstance(node, ast.ClassDef):
                yield from walk(node.body, prefix + node.name + ".")
    yield from walk(tree.body, "")


def generate(path: str, text: str, functions: list[str] | None, label: str = "") -> list[Mutant]:
    """Every mutant of the named functions (qualified names; ``Class.*``; None: all) in a file.

    ``label`` (the target's name; default: the path) enters the mutants' ids.
    """
    tree = ast.parse(text)
    src = _Source(text)
    wanted = None if functions is None else set(functions)
    found = dict(_targets(tree, wanted))
    if wanted is not None:
        missing = [w for w in wanted if not w.endswith(".*") and w not in found]
        if missing:
            raise ValueError(f"{path}: no function {', '.join(sorted(missing))}")
    mutants: list[Mutant] = []
    for qual, node in found.items():
        col = _Collector(src, path, qual)
        col.visit_FunctionDef(node)  # type: ignore[arg-type]
        seen: dict[tuple[str, str, str], int] = {}
        for op, start, end, repl, line in sorted(set(col.out), key=lambda m: (m[1], m[2], m[0],
                                                                              m[3])):
            original = text[start:end]
            if original == repl:
                continue
            key = (op, original, repl)
            occ = seen.get(key, 0)
            seen[key] = occ + 1
            m = Mutant(label or path, path, qual, op, line, start, end, original, repl, occ)
            try:
                ast.parse(m.apply(text))
            except SyntaxError:
                continue
            mutants.append(m)
    return mutants
