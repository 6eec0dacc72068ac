"""``smpc bench``: run the benchmark suite, write JSON + Markdown + plots, or profile one case.

::

    smpc bench --quick                      # < 2 minutes on 2 cores
    smpc bench                              # the full suite (see README for its run time)
    smpc bench --only proto/vector-sum      # cases whose name contains a substring
    smpc bench --list                       # the case names
    smpc bench --only engine                # the DuckDB engine sweep (10^4 .. 10^8 rows)
    smpc bench --profile proto/mean/ss/P=3/rows=1e4
                                            # one case under pyinstrument (or cProfile); for
                                            # protocol cases every node process is profiled too

Also ``python -m smpc_bench ...``.  Results go to ``--out`` (default ``bench-results/``):
``results.json`` (machine info, every row, the headline targets), ``results.md`` and
``plots/*.png``.  Numbers are recorded, never asserted; the exit status is 1 only when a
case raised an error (the error is recorded and the other cases still run).
"""

from __future__ import annotations

import argparse
import io
import json
import pstats
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from smpc_bench import report, targets
from smpc_bench.common import (
    Case,
    Config,
    Progress,
    Resources,
    Row,
    git_commit,
    load_averages,
    machine_info,
    row,
)

SUITES = ("sharing", "ciphertext", "protocols", "peers", "crypten_peer", "scaling", "engine")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="smpc bench",
        description="Benchmark the CKKS and secret-sharing math, the protocols end to end over "
                    "gRPC + mutual TLS, and peers (MPyC, TenSEAL row-wise).")
    p.add_argument("--quick", action="store_true",
                   help="the small suite: under 2 minutes on a 2-core machine")
    p.add_argument("--only", metavar="SUBSTR", action="append", default=[],
                   help="run only cases whose name contains SUBSTR (repeatable; see --list)")
    p.add_argument("--out", metavar="DIR", default="bench-results",
                   help="output directory (default: bench-results)")
    p.add_argument("--profile", metavar="NAME",
                   help="run one case (exact name, or a substring matching one case) under "
                        "pyinstrument if installed, else cProfile, and print the top functions")
    p.add_argument("--no-plots", action="store_true", help="do not draw PNG plots")
    p.add_argument("--list", action="store_true", help="list the case names and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--from-json", metavar="FILE",
                   help="only re-render results.md and the plots from a results.json")
    p.add_argument("--scaling-max-rows", metavar="N", type=int, default=10**7,
                   help="largest rows per party of the scaling sweep (default 10^7)")
    p.add_argument("--engine-max-rows", metavar="N", type=int, default=10**8,
                   help="largest rows per party of the DuckDB engine sweep (default 10^8; "
                        "3 Parquet files of 2.4 GB each at 10^8)")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the smoke test
    return p


def _collect(cfg: Config, res: Resources) -> list[Case]:
    import importlib

    out: list[Case] = []
    for name in SUITES:
        mod = importlib.import_module(f"smpc_bench.{name}")
        out += mod.cases(cfg, res)
    return out


def _select(cases: list[Case], only: list[str]) -> list[Case]:
    if not only:
        return cases
    return [c for c in cases if any(s in c.name for s in only)]


def _run_case(case: Case) -> tuple[list[Row], dict[str, Any] | None]:
    try:
        return case.run(), None
    except Exception as exc:
        tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
        return [], {"case": case.name, "error": f"{type(exc).__name__}: {exc}",
                    "traceback": "".join(tb[-6:])}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.from_json:
        doc = json.loads(Path(args.from_json).read_text())
        doc["headline"] = report.headline(doc["rows"])
        paths = report.write(doc, Path(args.out), plots=not args.no_plots)
        print("wrote " + ", ".join(str(p) for p in paths))
        return 0
    work = tempfile.mkdtemp(prefix="smpc-bench-")
    cfg = Config(quick=args.quick or args.tiny, tiny=args.tiny, workdir=work,
                 scaling_max_rows=args.scaling_max_rows,
                 engine_max_rows=args.engine_max_rows)
    res = Resources()
    try:
        cases = _collect(cfg, res)
        if args.list:
            for c in _select(cases, args.only):
                print(c.name)
            return 0
        if args.profile:
            return _profile(cfg, res, cases, args.profile)
        return _run(cfg, res, _select(cases, args.only), args, argv)
    finally:
        res.close()
        shutil.rmtree(work, ignore_errors=True)


def _run(cfg: Config, res: Resources, cases: list[Case], args: argparse.Namespace,
         argv: list[str] | None) -> int:
    if not cases:
        print("no benchmark case matches --only " + " ".join(args.only), file=sys.stderr)
        return 2
    start = time.perf_counter()
    load_before = load_averages()
    rows: list[Row] = []
    errors: list[dict[str, Any]] = []
    progress = Progress(sum(c.weight for c in cases), enabled=not args.no_progress)
    last_of_group = {c.group: i for i, c in enumerate(cases) if c.group}
    try:
        for i, c in enumerate(cases):
            progress.start(c.name)
            got, err = _run_case(c)
            if c.group and last_of_group[c.group] == i:
                res.release(c.group)  # e.g. stop a federation no later case needs
            rows += got
            if err is not None:
                errors.append(err)
                rows.append(row(c.name.split("/")[0], c.name, "error", {}, {},
                                f"error: {err['error']}"))
            progress.advance(c.weight)
    finally:
        progress.close()
        res.close()
    doc = {
        "mode": cfg.mode,
        "command": "smpc bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {**machine_info(), "load_average_before": load_before,
                    "load_average_after": load_averages()},
        "source": git_commit(),
        "duration_s": time.perf_counter() - start,
        "rows": rows,
        "errors": errors,
    }
    doc["headline"] = report.headline(rows)
    paths = report.write(doc, Path(args.out), plots=not args.no_plots)
    hl = doc["headline"]
    if any(h["met"] is not None for h in hl):
        print(report._table(["id", "target", "measured", "met"],
                            [[h.get("id", ""), h["target"], h["measured"],
                              targets.met_label(h["met"])] for h in hl]))
    for e in errors:
        print(f"ERROR in {e['case']}: {e['error']}\n{e['traceback']}", file=sys.stderr)
    print(f"{len(rows)} results in {doc['duration_s']:.0f} s; wrote "
          + ", ".join(str(p) for p in paths[:2])
          + (f" and {len(paths) - 2} plots" if len(paths) > 2 else ""))
    return 1 if errors else 0


# ------------------------------------------------------------------------------- profile


def _profile(cfg: Config, res: Resources, cases: list[Case], name: str) -> int:
    exact = [c for c in cases if c.name == name]
    matches = exact or [c for c in cases if name in c.name]
    if len(matches) != 1:
        print(f"--profile {name!r} matches {len(matches)} cases; name exactly one:",
              file=sys.stderr)
        for c in matches[:30]:
            print("  " + c.name, file=sys.stderr)
        return 2
    case = matches[0]
    node_dir = None
    if case.name.startswith("proto/"):
        node_dir = tempfile.mkdtemp(prefix="smpc-bench-prof-")
        cfg.profile_dir = node_dir
    print(f"profiling {case.name} ({'pyinstrument' if _has_pyinstrument() else 'cProfile'})"
          + ("; node processes under cProfile" if node_dir else ""), file=sys.stderr)
    rows, err = _profile_call(case)
    res.close()  # stops profiled nodes: they write their profiles on exit
    for r in rows:
        shown = {k: v for k, v in r["metrics"].items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)}
        print(f"\n{r['case']} {r['op']}: " + ", ".join(
            f"{k}={v:.4g}" for k, v in shown.items()))
    if node_dir:
        _print_node_profiles(Path(node_dir))
        shutil.rmtree(node_dir, ignore_errors=True)
    if err is not None:
        print(f"ERROR: {err['error']}\n{err['traceback']}", file=sys.stderr)
        return 1
    return 0


def _has_pyinstrument() -> bool:
    try:
        import pyinstrument  # noqa: F401
    except ImportError:
        return False
    return True


def _profile_call(case: Case) -> tuple[list[Row], dict[str, Any] | None]:
    if _has_pyinstrument():
        from pyinstrument import Profiler

        prof = Profiler(interval=0.0005)
        prof.start()
        try:
            out = _run_case(case)
        finally:
            prof.stop()
        print("\n=== this process (pyinstrument) ===")
        print(prof.output_text(unicode=False, color=False, show_all=False))
        return out
    import cProfile

    cp = cProfile.Profile()
    cp.enable()
    try:
        out = _run_case(case)
    finally:
        cp.disable()
    print("\n=== this process (cProfile, top 30 by cumulative time) ===")
    buf = io.StringIO()
    pstats.Stats(cp, stream=buf).sort_stats("cumulative").print_stats(30)
    print(buf.getvalue())
    return out


_STARTUP = {"<module>", "main", "serve_forever", "loop", "_sweep_loop", "__init__",
            "start", "_serve", "load_table", "_load_parquet", "_load_csv"}


def _print_node_profiles(directory: Path) -> None:
    for path in sorted(directory.glob("*.prof")):
        node = path.stem.rsplit("-", 1)[-1]
        try:
            st = pstats.Stats(str(path))
        except Exception as exc:
            print(f"\n=== node {node}: no profile ({exc}) ===")
            continue
        rows = []
        for (file, line, func), (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
            if ("/smpc/" in file or "/parties/" in file or "grpc/_channel" in file) \
                    and func not in _STARTUP:
                rows.append((ct, nc, tt, f"{Path(file).parent.name}/{Path(file).name}:{line}"
                                         f"({func})"))
        rows.sort(reverse=True)
        print(f"\n=== node {node}: smpc / parties / grpc-client functions by cumulative time "
              "(all threads, warm-up + timed calls; start-up and idle loops left out) ===")
        print(f"{'cumulative':>11} {'calls':>6} {'per call':>10} {'own':>9}  function")
        for ct, nc, tt, name in rows[:22]:
            print(f"{ct:10.3f}s {nc:6d} {1e3 * ct / max(nc, 1):8.2f}ms {tt:8.3f}s  {name}")


if __name__ == "__main__":
    sys.exit(main())
