"""Running a node in the foreground: logging, signals, one-line start-up errors."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from parties.errors import SafeFormatter, error_document
from smpc.errors import SmpcError

log = logging.getLogger("smpc.node")


def setup_logging(level: str = "INFO") -> None:
    """One line per event on stderr (values are never logged; an exception is logged as its
    frames and type, never its message: :class:`parties.errors.SafeFormatter`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        handlers=[handler])


def serve_forever(stop: Any, name: str) -> None:
    """Block until SIGTERM / SIGINT (sets ``stop``)."""
    def handler(signum: int, frame: Any) -> None:
        logging.getLogger("smpc.node").info("%s: signal %d, shutting down", name, signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    while not stop.wait(1.0):
        pass


def run_in_foreground(role: str, argv: list[str] | None, load: Callable[[str], Any],
                      make: Callable[[Any], Any], started: Callable[[Any, Any, int], str]) -> int:
    """The ``python -m parties.<node> --config FILE`` entry point of every node kind.

    Loads the config, starts the node and serves until SIGTERM / SIGINT.  A
    start-up problem (config, certificate, data file, port in use) is one line
    on stderr prefixed ``smpc <role>:`` and exit status 2.  With ``--json`` the node also
    prints one JSON document on stdout: ``{"role", "name", "address", "status": "serving"}``
    once it serves, or the error document of :func:`parties.errors.error_document`.
    """
    ap = argparse.ArgumentParser(prog=f"smpc {role} start",
                                 description=f"Run an smpc {role} node in the foreground.")
    ap.add_argument("--config", required=True, help=f"the {role}'s JSON config file")
    ap.add_argument("--log-level", default="INFO")
    ap.add_argument("--json", action="store_true",
                    help="print a JSON document on stdout once serving (or the error)")
    args = ap.parse_args(argv)
    setup_logging(args.log_level)
    try:
        cfg = load(args.config)
        node = make(cfg)
        port = node.start()
    except (SmpcError, OSError) as exc:
        print(f"smpc {role}: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps(error_document(exc)), flush=True)
        return 2
    log.info("%s", started(cfg, node, port))
    if args.json:
        print(json.dumps({"role": role, "name": cfg.name,
                          "address": f"{getattr(cfg, 'host', '')}:{port}",
                          "status": "serving"}), flush=True)
    serve_forever(threading.Event(), cfg.name)
    node.stop()
    return 0
