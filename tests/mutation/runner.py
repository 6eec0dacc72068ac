"""Run mutants against their tests in scratch copies of the repository, in parallel.

For each worker the repository is copied (without ``.git``, virtualenvs and caches) into a
scratch directory.  A mutant is written into the worker's copy, the target's tests run there
with ``PYTHONPATH`` pointing at the copy -- so node processes the tests start import the
mutated code too -- and ``PYTHONDONTWRITEBYTECODE`` set, so no stale bytecode can stand in for
a mutant.  The original file is restored afterwards.

Outcomes: ``killed`` (a test failed or errored; the first failing test is recorded),
``timeout`` (the tests ran past 3x their unmutated time + 30 s: an endless loop, also a
detection), ``survived`` (every test passed).  The unmutated tests of each target must pass
first (``baseline``), otherwise the run stops: a red suite cannot judge mutants.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IGNORE = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", ".pytest_cache",
                                ".hypothesis", ".ruff_cache", ".mypy_cache", "mutation-report",
                                "bench-results", "build", "dist")
FAILED_RE = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)


@dataclass
class Job:
    """One mutated source to judge: a generated mutant or a planted bug."""

    ident: str
    kind: str                   # "mutant" or "planted"
    target: str
    path: str
    description: str
    tests: tuple[str, ...]
    mutated_text: str
    expect: tuple[str, ...] = ()    # planted: tests that must fail


@dataclass
class Outcome:
    ident: str
    kind: str
    target: str
    description: str
    status: str                 # killed | survived | timeout | error
    seconds: float
    killed_by: str = ""
    exit_code: int = 0
    detail: str = ""
    expect: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def pytest_command(tests: Sequence[str]) -> list[str]:
    if not tests:  # pytest without paths would run the whole suite
        raise ValueError("a mutation target needs at least one test file")
    return [sys.executable, "-m", "pytest", "-x", "-q", "-rfE", "-p", "no:cacheprovider",
            "--no-header", "-o", "addopts=", *tests]


def make_workspace(jobs: int) -> list[Path]:
    base = Path(tempfile.mkdtemp(prefix="smpc-mutation-"))
    dirs = []
    for j in range(jobs):
        d = base / f"w{j}"
        shutil.copytree(ROOT, d, ignore=IGNORE, symlinks=True)
        dirs.append(d)
    return dirs


def _env(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH")
                                     else "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("SMPC_FAULT", None)
    return env


def run_tests(copy: Path, tests: Sequence[str], timeout: float) -> tuple[int | None, str, float]:
    """(exit code or None on timeout, combined output, seconds)."""
    start = time.monotonic()
    proc = subprocess.Popen(
        pytest_command(tests), cwd=copy, env=_env(copy), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, _ = proc.communicate()
        code = None
    return code, out.decode(errors="replace"), time.monotonic() - start


def baseline(copy: Path, tests: Sequence[str]) -> float:
    """Seconds the unmutated tests take; raises SystemExit if they do not pass."""
    code, out, seconds = run_tests(copy, tests, timeout=1800)
    if code != 0:
        tail = "\n".join(out.splitlines()[-30:])
        raise SystemExit(f"the unmutated tests fail ({' '.join(tests)}):\n{tail}")
    return seconds


def judge(copy: Path, job: Job, timeout: float) -> Outcome:
    target_file = copy / job.path
    original = target_file.read_text()
    try:
        target_file.write_text(job.mutated_text)
        code, out, seconds = run_tests(copy, job.tests, timeout)
    finally:
        target_file.write_text(original)
    failed = FAILED_RE.findall(out)
    if code is None:
        status = "timeout"
    elif code == 0:
        status = "survived"
    elif code in (1, 2, 3):
        status = "killed"
    else:
        status = "error"
    detail = "" if status in ("killed", "survived") else "\n".join(out.splitlines()[-8:])
    return Outcome(job.ident, job.kind, job.target, job.description, status, round(seconds, 2),
                   killed_by=failed[0] if failed else ("" if code != 2 else "collection error"),
                   exit_code=-1 if code is None else code, detail=detail,
                   expect=list(job.expect))


def run_all(jobs: Sequence[Job], copies: Sequence[Path], timeouts: dict[str, float],
            progress: Callable[[Outcome, int, int], None]) -> list[Outcome]:
    """Judge every job, one worker thread per copy; results in job order."""
    todo: queue.Queue[tuple[int, Job]] = queue.Queue()
    for i, job in enumerate(jobs):
        todo.put((i, job))
    results: list[Outcome | None] = [None] * len(jobs)
    lock = threading.Lock()
    done = [0]

    def worker(copy: Path) -> None:
        while True:
            try:
                i, job = todo.get_nowait()
            except queue.Empty:
                return
            outcome = judge(copy, job, timeouts[job.target])
            results[i] = outcome
            with lock:
                done[0] += 1
                progress(outcome, done[0], len(jobs))

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in copies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [r for r in results if r is not None]


def save(outcomes: Sequence[Outcome], out_dir: Path, meta: dict[str, object]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "mutation.json"
    path.write_text(json.dumps({"meta": meta, "outcomes": [o.to_json() for o in outcomes]},
                               indent=1))
    return path
