"""Every benchmark figure the READMEs cite comes from a committed result file.

README.md and benchmarks/README.md cite reference runs as ``benchmarks/results/<name>/...``;
a fresh clone must have every cited file (issue 14: the results directory used to be
git-ignored, so none of them existed).  In tables with a ``measured`` and a ``source``
column (the headline targets), every number of the ``measured`` cell must also appear in the
cited file, verbatim or at least all on one line of it: a figure edited by hand, or copied
from another run, fails.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "benchmarks/README.md")
CITE = re.compile(r"benchmarks/results/[A-Za-z0-9_.\-]+[A-Za-z0-9_.\-/]*")  # a run, not the root
NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


def cited_paths(text: str) -> list[str]:
    """Every ``benchmarks/results/...`` path in a Markdown text (trailing dots trimmed)."""
    return [m.rstrip(".") for m in CITE.findall(text)]


def missing(root: Path, paths: list[str]) -> list[str]:
    """Cited paths that do not exist; a cited directory must hold results.json and .md."""
    out = []
    for p in paths:
        f = root / p
        if not f.exists():
            out.append(p)
        elif f.is_dir() and not ((f / "results.json").is_file() and (f / "results.md").is_file()):
            out.append(p + " (no results.json + results.md)")
    return out


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def unsupported_numbers(root: Path, text: str) -> list[str]:
    """Numbers of a ``measured`` cell absent from the file its row's ``source`` cites."""
    out = []
    header: list[str] | None = None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = _cells(line)
        if header is None:
            header = cells
            continue
        if set(cells) <= {"---", ""} or "measured" not in header or "source" not in header:
            continue
        measured, source = cells[header.index("measured")], cells[header.index("source")]
        paths = cited_paths(source)
        if not paths:
            out.append(f"row without a cited result file: {line}")
            continue
        f = root / paths[0]
        body = f.read_text(encoding="utf-8") if f.is_file() else ""
        # the whole cell verbatim (the report writes it so), or failing that every number of
        # it on one line of the file: a number taken from another row or run does not pass
        if f"| {measured} |" in body:
            continue
        lines = [ln for ln in body.splitlines()
                 if all(n in ln for n in NUMBER.findall(measured))]
        if not lines:
            out.append(f"{measured} ({paths[0]})")
    return out


def test_every_cited_result_file_exists():
    """A README citing benchmarks/results/X that is not committed fails here."""
    found = []
    for doc in DOCS:
        paths = cited_paths((ROOT / doc).read_text(encoding="utf-8"))
        found += paths
        assert not missing(ROOT, paths), (doc, missing(ROOT, paths))
    assert found, "the READMEs cite no reference result at all"


def test_headline_figures_appear_in_their_cited_file():
    """Each number of the README's targets table is in the results file cited on its row."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "| measured |" in text.replace("|measured|", "| measured |")
    assert unsupported_numbers(ROOT, text) == []


def test_checkers_catch_a_missing_file_and_a_foreign_number(tmp_path):
    """The checks above are not vacuous: a missing file and a number not in it are found."""
    run = tmp_path / "benchmarks" / "results" / "run1"
    run.mkdir(parents=True)
    (run / "results.md").write_text("| P1 | sum | 243 ms vs floor 45 ms = 4.8x |\n"
                                    "| P6 | mean | 45 ms |\n| 5.1 | other | 5.9x |\n")
    (run / "results.json").write_text("{}\n")
    text = ("| id | measured | source |\n|---|---|---|\n"
            "| P1 | 243 ms vs floor 45 ms = 4.8x | `benchmarks/results/run1/results.md` |\n"
            "| P6 | 45 ms = 5.9x | `benchmarks/results/run1/results.md` |\n"
            "See benchmarks/results/run2/results.md.\n")
    assert missing(tmp_path, cited_paths(text)) == ["benchmarks/results/run2/results.md"]
    assert unsupported_numbers(tmp_path, text) == [
        "45 ms = 5.9x (benchmarks/results/run1/results.md)"]  # 45 and 5.9 on different lines
