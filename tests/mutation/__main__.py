"""``python -m tests.mutation``: mutation testing of smpc's privacy-critical code.

Commands (run from the repository root with the project's virtualenv)::

    python -m tests.mutation list   [--target T ...]                 # mutants per target
    python -m tests.mutation run    [--target T ...] [--sample N] [--seed S] [--jobs J]
                                    [--ids ID ...] [--no-planted] [--out DIR]
    python -m tests.mutation report DIR                              # re-render DIR/mutation.md

``run`` copies the repository once per job into a scratch directory, measures every chosen
target's tests unmutated (they must pass), then judges the planted bugs of
:mod:`tests.mutation.planted` and the mutants (all of them, ``--sample N`` of them chosen with
``--seed``, or ``--ids``), and writes ``DIR/mutation.json`` and ``DIR/mutation.md`` (default
DIR: ``mutation-report``).  Exit status 1 if a planted bug or a mutant not explained in
:mod:`tests.mutation.equivalent` survived.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

from tests.mutation import operators, runner
from tests.mutation.equivalent import EQUIVALENT
from tests.mutation.planted import PLANTED
from tests.mutation.targets import TARGETS, Target, by_name

ROOT = runner.ROOT


def mutants_of(targets: list[Target]) -> list[tuple[Target, operators.Mutant]]:
    out = []
    for t in targets:
        for path, functions in t.files:
            text = (ROOT / path).read_text()
            out += [(t, m) for m in operators.generate(
                path, text, list(functions) if functions is not None else None, label=t.name)]
    return out


def _available(t: Target) -> Target:
    """``t`` without the test files that do not exist (yet)."""
    from dataclasses import replace

    return replace(t, tests=tuple(x for x in t.tests if (ROOT / x.split("::")[0]).exists()))


def jobs_for(chosen: list[tuple[Target, operators.Mutant]], planted: bool) -> list[runner.Job]:
    jobs: list[runner.Job] = []
    if planted:
        for p in PLANTED:
            text = (ROOT / p.path).read_text()
            jobs.append(runner.Job(f"planted:{p.name}", "planted", "planted", p.path, p.what,
                                   p.tests, p.apply(text), expect=p.tests))
    texts: dict[str, str] = {}
    for t, m in chosen:
        text = texts.setdefault(m.path, (ROOT / m.path).read_text())
        jobs.append(runner.Job(m.ident, "mutant", t.name, m.path, m.describe(), t.tests,
                               m.apply(text)))
    return jobs


def render(doc: dict[str, object]) -> str:
    """The Markdown report: score per target, planted bugs, and every survivor."""
    outcomes = doc["outcomes"]
    meta = doc["meta"]
    assert isinstance(outcomes, list) and isinstance(meta, dict)
    lines = ["# Mutation report", "",
             f"Run {meta.get('started', '?')}, {meta.get('mode', '?')}, "
             f"{meta.get('jobs', '?')} jobs, {meta.get('seconds', 0):.0f} s.", ""]
    planted = [o for o in outcomes if o["kind"] == "planted"]
    if planted:
        lines += ["## Planted bugs", "", "| bug | caught | by |", "|---|---|---|"]
        for o in planted:
            ok = "yes" if o["status"] in ("killed", "timeout") else "**NO**"
            lines.append(f"| {o['ident'][8:]} | {ok} | `{o['killed_by'] or '-'}` |")
        lines.append("")
    mutants = [o for o in outcomes if o["kind"] == "mutant"]
    by_target: dict[str, Counter[str]] = {}
    for o in mutants:
        by_target.setdefault(o["target"], Counter())[o["status"]] += 1
    lines += ["## Mutants by target", "",
              "| target | mutants | killed | timeout | survived (equivalent) | score |",
              "|---|---|---|---|---|---|"]
    total: Counter[str] = Counter()
    eq_total = 0
    for name, c in by_target.items():
        n = sum(c.values())
        eq = sum(1 for o in mutants if o["target"] == name and o["status"] == "survived"
                 and o["ident"] in EQUIVALENT)
        eq_total += eq
        total += c
        score = (c["killed"] + c["timeout"]) / n if n else 1.0
        lines.append(f"| {name} | {n} | {c['killed']} | {c['timeout']} | "
                     f"{c['survived']} ({eq}) | {score:.1%} |")
    n = sum(total.values())
    if n:
        lines.append(f"| **all** | {n} | {total['killed']} | {total['timeout']} | "
                     f"{total['survived']} ({eq_total}) | "
                     f"{(total['killed'] + total['timeout']) / n:.1%} |")
    survivors = [o for o in mutants if o["status"] in ("survived", "error")]
    if survivors:
        lines += ["", "## Survivors", "", "| id | mutant | status | equivalent because |",
                  "|---|---|---|---|"]
        for o in survivors:
            why = EQUIVALENT.get(o["ident"], "**not explained: a test gap**")
            desc = o["description"].replace("|", "\\|")
            lines.append(f"| `{o['ident']}` | {desc} | {o['status']} | {why} |")
    return "\n".join(lines) + "\n"


def unexplained(outcomes: list[runner.Outcome]) -> list[runner.Outcome]:
    """Planted bugs not caught, and surviving mutants not explained as equivalent."""
    def caught(o: runner.Outcome) -> bool:
        return o.status in ("killed", "timeout")

    return [o for o in outcomes
            if (o.kind == "planted" and not caught(o))
            or (o.kind == "mutant" and not caught(o) and o.ident not in EQUIVALENT)]


def cmd_list(args: argparse.Namespace) -> int:
    chosen = mutants_of(by_name(args.target))
    counts = Counter(t.name for t, _ in chosen)
    for t in by_name(args.target):
        print(f"{t.name:14s} {counts[t.name]:5d}  {t.path}")
    print(f"{'all':14s} {len(chosen):5d}")
    if args.verbose:
        for _, m in chosen:
            print(m.ident, m.describe())
    return 0


def run(targets: list[str] | None, *, sample: int | None = None, seed: int = 0,
        ids: list[str] | None = None, jobs: int = 2, planted: bool = True,
        out: Path | None = None, baseline: bool = True, echo: bool = True,
        timeout: float = 900.0) -> tuple[list[runner.Outcome], dict[str, object]]:
    """Judge the chosen mutants (and the planted bugs); returns the outcomes and run metadata.

    Without ``baseline`` every mutant gets ``timeout`` seconds (a mutant that makes its tests
    loop forever costs that much; a timeout counts as detected)."""
    chosen_targets = by_name(targets)
    chosen = mutants_of(chosen_targets)
    if ids:
        wanted = set(ids)
        chosen = [(t, m) for t, m in chosen if m.ident in wanted]
    elif sample is not None:
        chosen = random.Random(seed).sample(chosen, min(sample, len(chosen)))
    missing = sorted({test for t in chosen_targets for test in t.tests
                      if not (ROOT / test.split("::")[0]).exists()})
    if missing and echo:
        print(f"warning: test files missing, left out: {', '.join(missing)}", flush=True)
    chosen_targets = [t for t in map(_available, chosen_targets) if t.tests]
    names = {t.name: t for t in chosen_targets}
    chosen = [(names[t.name], m) for t, m in chosen if t.name in names]
    job_list = jobs_for(chosen, planted)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    t0 = time.monotonic()
    copies = runner.make_workspace(max(1, min(jobs, len(job_list))))
    timeouts: dict[str, float] = {"planted": 900.0}
    used = {t.name for t, _ in chosen}
    for t in chosen_targets:
        if t.name not in used:
            continue
        if baseline:
            secs = runner.baseline(copies[0], t.tests)
            timeouts[t.name] = 3 * secs + 30
            if echo:
                print(f"baseline {t.name}: {secs:.1f} s", flush=True)
        else:
            timeouts[t.name] = timeout

    def progress(o: runner.Outcome, k: int, n: int) -> None:
        if echo:
            by = f" by {o.killed_by}" if o.killed_by else ""
            print(f"[{k}/{n}] {o.status:8s} {o.seconds:6.1f}s {o.ident} {o.description}{by}",
                  flush=True)

    outcomes = runner.run_all(job_list, copies, timeouts, progress)
    for c in copies:
        import shutil
        shutil.rmtree(c, ignore_errors=True)
    meta: dict[str, object] = {
        "started": started, "seconds": time.monotonic() - t0, "jobs": len(copies),
        "mode": (f"sample of {sample} (seed {seed})" if sample is not None and not ids
                 else "chosen ids" if ids else "full"),
        "targets": [t.name for t in chosen_targets], "python": sys.version.split()[0],
    }
    if out is not None:
        path = runner.save(outcomes, out, meta)
        doc = json.loads(path.read_text())
        (out / "mutation.md").write_text(render(doc))
    return outcomes, meta


def cmd_run(args: argparse.Namespace) -> int:
    outcomes, _ = run(args.target, sample=args.sample, seed=args.seed, ids=args.ids,
                      jobs=args.jobs, planted=not args.no_planted, out=Path(args.out),
                      baseline=not args.no_baseline, timeout=args.timeout)
    print((Path(args.out) / "mutation.md").read_text())
    bad = unexplained(outcomes)
    for o in bad:
        print(f"NOT CAUGHT: {o.ident} {o.description} ({o.status})", file=sys.stderr)
    return 1 if bad else 0


def cmd_report(args: argparse.Namespace) -> int:
    out = Path(args.dir)
    doc = json.loads((out / "mutation.json").read_text())
    (out / "mutation.md").write_text(render(doc))
    print(render(doc))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    names = [t.name for t in TARGETS]
    pl = sub.add_parser("list", help="count (and with -v print) the mutants")
    pl.add_argument("--target", nargs="+", choices=names)
    pl.add_argument("-v", "--verbose", action="store_true")
    pl.set_defaults(func=cmd_list)
    pr = sub.add_parser("run", help="judge mutants and planted bugs")
    pr.add_argument("--target", nargs="+", choices=names)
    pr.add_argument("--sample", type=int)
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--ids", nargs="+")
    pr.add_argument("--jobs", type=int, default=2)
    pr.add_argument("--no-planted", action="store_true")
    pr.add_argument("--no-baseline", action="store_true",
                    help="skip measuring unmutated tests (a fixed --timeout per mutant)")
    pr.add_argument("--timeout", type=float, default=900.0,
                    help="seconds per mutant with --no-baseline (default 900)")
    pr.add_argument("--out", default="mutation-report")
    pr.set_defaults(func=cmd_run)
    rp = sub.add_parser("report", help="re-render DIR/mutation.md from DIR/mutation.json")
    rp.add_argument("dir")
    rp.set_defaults(func=cmd_report)
    args = p.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
