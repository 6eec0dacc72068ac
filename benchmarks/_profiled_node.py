"""Run a federation node under cProfile in *every* thread; dump merged stats at exit.

Used by ``smpc bench --profile`` for protocol cases::

    python -m smpc_bench._profiled_node --out FILE.prof --module parties.node --config CFG

cProfile only sees the thread that enables it, and a node does its work in gRPC handler
threads and per-session role threads, so ``threading.Thread.run`` is wrapped to give each
thread its own profiler; at exit all of them are merged into ``FILE.prof`` (pstats format).
"""

from __future__ import annotations

import argparse
import atexit
import cProfile
import pstats
import runpy
import sys
import threading

_PROFILES: list[cProfile.Profile] = []
_LOCK = threading.Lock()


def _install() -> None:
    original = threading.Thread.run

    def run(self: threading.Thread) -> None:
        prof = cProfile.Profile()
        with _LOCK:
            _PROFILES.append(prof)
        prof.enable()
        try:
            original(self)
        finally:
            prof.disable()

    threading.Thread.run = run  # type: ignore[method-assign]


def _dump(path: str, main: cProfile.Profile) -> None:
    main.disable()
    with _LOCK:
        profiles = [main, *_PROFILES]
    stats = None
    for prof in profiles:
        try:
            prof.create_stats()
            if stats is None:
                stats = pstats.Stats(prof)
            else:
                stats.add(prof)
        except (TypeError, ValueError):  # a profiler with nothing recorded
            continue
    if stats is not None:
        stats.dump_stats(path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--module", required=True)
    args, rest = parser.parse_known_args()
    _install()
    prof = cProfile.Profile()
    atexit.register(_dump, args.out, prof)
    sys.argv = [args.module, *rest]
    prof.enable()
    runpy.run_module(args.module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
