"""The ``smpc`` command line.

Every error a person can cause (bad arguments, unreadable or malformed data,
out-of-range values) ends the command with one line on stderr and a non-zero
exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from smpc.errors import SmpcError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smpc", description="Secure multi-party and homomorphic joint computation.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="a tour of secure statistics and inference, "
                                       "next to the plaintext answers")
    demo.add_argument("--data", nargs="+", type=Path, metavar="CSV",
                      help="one data file per party (default: generated sample hospitals)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from parties.demo import simulated_demo

            simulated_demo(args.data)
        return 0
    except (SmpcError, ValueError, OSError) as exc:
        print(f"smpc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("smpc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
