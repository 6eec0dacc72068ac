"""The ``smpc`` command line.

Every error a person can cause -- bad arguments, an unknown column, an
unreachable federation, out-of-range values, a refusal by a party's policy --
ends the command with one line on stderr and a non-zero exit status, never a
traceback.  Every command takes ``--json``: it then prints on stdout exactly one
JSON document, its result (one schema per command, README "JSON output") or,
on any error -- argument errors included -- ``{"error": <the same line>,
"code": <gRPC status name or null>, "node": <node blamed or null>, "declined":
{<party>: <its reason>}}`` (:mod:`parties.cli.output`).  What an error line may
contain is in SECURITY.md ("Errors carry no data"): a party's refusal names
columns, rows and limits, never a cell, a value or a path on its host.

Commands: ``demo``, ``federation init|up|down|status|pin|revoke``, ``party|coordinator|dealer
start``, ``certs ca|issue|request|sign`` (:mod:`.certs`), ``run``, ``predict``, ``audit
show|verify|witnesses|head|budget`` and ``outputs read`` (:mod:`.audit`), ``bench``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from parties.cli.certs import add_certs_parser
from parties.cli.output import (
    EXIT_ERROR,
    JsonParser,
    UsageError,
    fail,
    format_result,
    print_json,
    wants_json,
)
from parties.cli.output import emit as _emit
from parties.config.model import DEFAULT_ENGINE, FILE_ENGINES
from parties.pki.identity import fingerprint, normalize_fingerprint
from smpc.errors import SmpcError
from smpc.names import Backend

STATISTICS = ("count", "sum", "mean", "var", "std", "cov", "corr", "histogram", "quantiles",
              "linreg")


class CliError(SmpcError):
    """A usage problem found after parsing (one line, exit status 2)."""


# ------------------------------------------------------------------------------ parsing


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value < 86_400 * 7):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _model_arg(text: str) -> tuple[str, Path]:
    party, sep, path = text.partition("=")
    if not sep or not party or not path:
        raise argparse.ArgumentTypeError(f"expected PARTY=model.json, got {text!r}")
    return party, Path(path)


def _clip_arg(text: str) -> tuple[str, tuple[float, float]]:
    column, sep, rng = text.partition("=")
    lo, sep2, hi = rng.partition(":")
    try:
        if not (sep and sep2 and column):
            raise ValueError
        return column, (float(lo), float(hi))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected COLUMN=LO:HI, got {text!r}") from None


def _add_privacy_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("differential privacy (distributed noise, charged to each "
                             "party's budget)")
    g.add_argument("--epsilon", type=float, help="epsilon of the (epsilon, delta) guarantee")
    g.add_argument("--delta", type=float, help="delta of the guarantee (with --epsilon)")
    g.add_argument("--rho", type=float, help="zero-concentrated DP budget instead of epsilon")
    g.add_argument("--clip", type=_clip_arg, action="append", default=[], metavar="COL=LO:HI",
                   help="public clipping bounds of a column (repeat per column)")
    g.add_argument("--min-honest", type=int,
                   help="parties whose noise must stay secret for the full guarantee")


def _version() -> str:
    import smpc

    return str(smpc.__version__)


def _parser() -> argparse.ArgumentParser:
    parser = JsonParser(
        prog="smpc", description="Secure multi-party and homomorphic joint computation.")
    parser.add_argument("--version", action="version", version=f"smpc {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="a tour of secure statistics and inference on a local "
                                       "federation, next to the plaintext answers")
    demo.add_argument("--data", nargs="+", type=Path, metavar="CSV",
                      help="one data file per party (default: generated sample hospitals)")
    demo.add_argument("--simulated", action="store_true",
                      help="run the protocols among parties simulated in this process "
                           "instead of real nodes")
    demo.add_argument("--json", action="store_true",
                      help="the tour's table on stderr, its rows as JSON on stdout")
    demo.set_defaults(func=_cmd_demo)

    fed = sub.add_parser("federation", help="create, start and stop a local federation")
    fsub = fed.add_subparsers(dest="action", required=True, metavar="ACTION")
    init = fsub.add_parser("init", help="CA, certificates and configs for one party per file")
    init.add_argument("directory", type=Path)
    init.add_argument("--data", nargs="+", type=Path, required=True, metavar="FILE")
    init.add_argument("--model", type=_model_arg, action="append", default=[],
                      metavar="PARTY=model.json", help="a model owned by a party (repeatable)")
    init.add_argument("--names", nargs="+", help="party names (default: the file stems)")
    init.add_argument("--name", default="smpc-local", help="the federation's name")
    init.add_argument("--analyst", default="analyst", help="the analyst identity to create")
    init.add_argument("--min-cohort", type=int, default=10, help="parties' minimum cohort")
    exactness = init.add_mutually_exclusive_group()
    exactness.add_argument("--require-dp", action="store_true",
                           help="every party refuses exact (non-DP) statistics (the default)")
    exactness.add_argument("--allow-exact", nargs="*", metavar="PARTY",
                           help="these parties (every party if none is named) also answer "
                                "exact statistics, with small cells suppressed, quantile "
                                "extremes and differencing pairs refused")
    init.add_argument("--min-cell-size", type=int, default=10,
                      help="in exact answers, cells of fewer of a party's rows are sent as 0")
    init.add_argument("--epsilon", type=float, default=1.0,
                      help="each party's total privacy budget per analyst (epsilon)")
    init.add_argument("--delta", type=float, default=1e-6, help="... and its delta")
    init.add_argument("--separate-dealer", action="store_true",
                      help="run the dealer as its own node instead of the coordinator")
    init.add_argument("--engine", choices=FILE_ENGINES, default=DEFAULT_ENGINE,
                      help="every party's local engine: memory (numpy) or duckdb (SQL over "
                           "the file, memory bounded whatever its rows)")
    init.add_argument("--force", action="store_true", help="replace an existing federation")
    init.add_argument("--json", action="store_true")
    init.set_defaults(func=_cmd_federation_init)
    for action, helptext, func in (("up", "start every node in the background", _cmd_up),
                                   ("down", "stop every node", _cmd_down),
                                   ("status", "which nodes run and answer", _cmd_status)):
        p = fsub.add_parser(action, help=helptext)
        p.add_argument("directory", type=Path)
        if action == "up":
            p.add_argument("--timeout", type=_seconds, default=60.0)
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=func)

    pin = fsub.add_parser("pin", help="pin a node's or analyst's certificate in a federation "
                                      "config (running nodes reload it)")
    pin.add_argument("federation", type=Path, help="federation.json (or its directory)")
    pin.add_argument("--cert", required=True, type=Path, help="the certificate to pin")
    pin.add_argument("--host", help="the node's address (to add a node not yet listed)")
    pin.add_argument("--port", type=int, help="the node's port (to add a node not yet listed)")
    pin.add_argument("--revoke-previous", action="store_true",
                     help="revoke the certificate pinned before (rotation)")
    pin.add_argument("--ca-cert", type=Path,
                     help="the CA certificate, to create a federation file that does not exist")
    pin.add_argument("--json", action="store_true")
    pin.set_defaults(func=_cmd_federation_pin)
    revoke = fsub.add_parser("revoke", help="revoke a certificate in a federation config "
                                            "(refused by every node, both ways)")
    revoke.add_argument("federation", type=Path, help="federation.json (or its directory)")
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--fingerprint", help="SHA-256 fingerprint of the certificate")
    which.add_argument("--cert", type=Path, help="the certificate itself")
    revoke.add_argument("--json", action="store_true")
    revoke.set_defaults(func=_cmd_federation_revoke)

    for role in ("party", "coordinator", "dealer"):
        p = sub.add_parser(role, help=f"run one {role} node")
        rsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
        start = rsub.add_parser("start", help="in the foreground (for real deployments)")
        start.add_argument("--config", required=True, type=Path)
        start.add_argument("--log-level", default="INFO")
        start.add_argument("--json", action="store_true",
                           help="a JSON document on stdout once serving (or the error)")
        start.set_defaults(func=_cmd_start_node, role=role)

    add_certs_parser(sub)

    run = sub.add_parser("run", help="a joint statistic, as the federation's analyst")
    run.add_argument("statistic", choices=STATISTICS)
    run.add_argument("columns", nargs="+", metavar="COLUMN")
    run.add_argument("--federation", required=True, type=Path)
    run.add_argument("--backend", choices=[b.value for b in Backend], default=Backend.SS.value)
    run.add_argument("--where", help="row filter, e.g. \"age >= 40 and bmi < 30\"")
    run.add_argument("--target", help="linreg: the response column")
    run.add_argument("--edges", nargs="+", type=float, help="histogram: public bin edges")
    run.add_argument("--probs", nargs="+", type=float, default=[0.25, 0.5, 0.75],
                     help="quantiles: probabilities")
    run.add_argument("--bounds", nargs=2, type=float, metavar=("LO", "HI"),
                     help="quantiles: public bounds of the fine histogram")
    run.add_argument("--resolution", type=int, default=1024, help="quantiles: bins")
    run.add_argument("--parties", nargs="+", help="parties taking part (default: all)")
    run.add_argument("--ddof", type=int, default=1, choices=(0, 1))
    run.add_argument("--missing", choices=("skip", "error"), default="skip",
                     help="missing values: leave them out and count them, like pandas "
                          "(skip, the default) or refuse them (error)")
    run.add_argument("--frac-bits", type=int, default=16, help="ss fixed-point bits")
    run.add_argument("--timeout", type=_seconds, default=120.0)
    run.add_argument("--json", action="store_true", help="machine-readable output")
    run.add_argument("--proceed-without-declining", "--partial", dest="partial",
                     action="store_true",
                     help="if parties decline (their policies refuse: cohort, columns, "
                          "budget), ask again without them (at least two must remain); the "
                          "answer names who took part and who declined, with their reasons")
    _add_privacy_options(run)
    run.set_defaults(func=_cmd_run)

    pred = sub.add_parser("predict", help="one party's model on another party's features")
    pred.add_argument("--federation", required=True, type=Path)
    pred.add_argument("--data-owner", required=True)
    pred.add_argument("--model-owner", required=True)
    pred.add_argument("--model", help="the model's name, if the owner has several")
    pred.add_argument("--backend", choices=[b.value for b in Backend],
                      default=Backend.SS.value)
    pred.add_argument("--where")
    pred.add_argument("--output", choices=("prediction", "logit", "encrypted-sigmoid"),
                      default="prediction")
    pred.add_argument("--feature-bound", type=float,
                      help="public bound on |feature| (default: the data owner's declared "
                           "bounds of the features, else 1024)")
    pred.add_argument("--missing", choices=("skip", "error"), default="skip",
                      help="a row with a missing feature: left out (no prediction, an empty "
                           "cell in the file) or an error")
    pred.add_argument("--key", help="the data owner's column written beside the predictions "
                                    "(one its policy declares under prediction-key; default: "
                                    "the one it declares)")
    pred.add_argument("--rows", type=int, help="the public size of the inference at a data "
                                               "owner under differential privacy (default: "
                                               "its table size rounded up to a power of two)")
    pred.add_argument("--timeout", type=_seconds, default=120.0)
    pred.add_argument("--json", action="store_true")
    pred.set_defaults(func=_cmd_predict)

    _add_optional_commands(sub)
    return parser


def _add_optional_commands(sub: Any) -> None:
    """Command groups that live in their own modules."""
    try:
        from parties.cli.audit import add_audit_parser
    except ImportError:  # built with issue 4; absent in older checkouts
        pass
    else:
        add_audit_parser(sub)
    from parties.cli.model import add_model_parser

    add_model_parser(sub)
    sub.add_parser("bench", help="benchmarks of the ciphertext math and the protocols "
                                 "(smpc bench --help; --json: a JSON document on stdout)")


# ------------------------------------------------------------------------------ commands


def _cmd_demo(args: argparse.Namespace) -> int:
    from parties.federation import demo

    out = sys.stderr if args.json else sys.stdout  # with --json stdout holds the document only
    rows = (demo.simulated_demo(args.data, out=out) if args.simulated
            else demo.federation_demo(args.data, out=out))
    ok = all(r["within_tolerance"] for r in rows)
    if args.json:
        print_json({"simulated": bool(args.simulated), "within_tolerance": ok, "rows": rows})
    return 0 if ok else 1


def _cmd_federation_init(args: argparse.Namespace) -> int:
    from parties.federation import local as federation

    models: dict[str, list[Path]] = {}
    for party, path in args.model:
        models.setdefault(party, []).append(path)
    if args.min_cell_size < 1:
        raise CliError(f"--min-cell-size must be at least 1, got {args.min_cell_size}")
    allow: bool | list[str] = False if args.allow_exact is None else (args.allow_exact or True)
    lay = federation.init_federation(
        args.directory, args.data, models=models or None, names=args.names,
        federation_name=args.name, analyst=args.analyst, min_cohort_size=args.min_cohort,
        separate_dealer=args.separate_dealer, overwrite=args.force,
        epsilon=args.epsilon, delta=args.delta, allow_exact=allow,
        exact_safeguards={"min_cell_size": args.min_cell_size}, engine=args.engine)
    parties = lay.parties()
    exact = parties if allow is True else [p for p in parties if p in (allow or [])]
    if args.json:
        print_json({"federation": args.name, "directory": str(lay.directory),
                    "parties": parties, "exact": exact, "epsilon": args.epsilon,
                    "delta": args.delta, "min_cohort": args.min_cohort,
                    "min_cell_size": args.min_cell_size})
        return 0
    print(f"federation {args.name!r} created in {lay.directory}: "
          f"{len(parties)} parties ({', '.join(parties)}); "
          f"start it with: smpc federation up {args.directory}")
    print(f"privacy: differential privacy with a budget of epsilon={args.epsilon:g}, "
          f"delta={args.delta:g} per analyst at each party; exact answers allowed by "
          + (f"{', '.join(exact)} (minimum cohort {args.min_cohort}, cells of fewer than "
             f"{args.min_cell_size} rows sent as 0)" if exact else
             "no party (opt in with --allow-exact [PARTY ...])"))
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    from parties.federation import local as federation

    started = federation.up(args.directory, args.timeout)
    _emit(args, {"started": started},
          f"{len(started)} node(s) up: {', '.join(started)}" if started
          else "every node was already running")
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    from parties.federation import local as federation

    stopped = federation.down(args.directory)
    _emit(args, {"stopped": stopped},
          f"{len(stopped)} node(s) stopped" if stopped else "no node was running")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from parties.federation import local as federation

    rows = federation.status(args.directory)
    doc = [{"name": r.name, "role": r.role, "address": r.address, "pid": r.pid,
            "running": r.alive}
           for r in rows]
    text = "\n".join(f"{r['name']:20} {r['role']:12} {r['address']:22} "
                     + (f"running (pid {r['pid']})" if r["running"] else "stopped")
                     for r in doc)
    _emit(args, doc, text)
    return 0 if all(r["running"] for r in doc) else 1


def _cmd_start_node(args: argparse.Namespace) -> int:
    import importlib

    module = {"party": "parties.node.party", "coordinator": "parties.coordinator.node",
              "dealer": "parties.dealer.node"}[args.role]
    return int(importlib.import_module(module).main(
        ["--config", str(args.config), "--log-level", args.log_level]
        + (["--json"] if args.json else [])))


def _federation_file(path: Path) -> Path:
    from parties.config.layout import Layout

    return Layout(path).federation_file if path.is_dir() else path


def _cmd_federation_pin(args: argparse.Namespace) -> int:
    from parties.config.pins import pin_certificate
    from parties.pki.certs import load_certificate

    path = _federation_file(args.federation)
    p = pin_certificate(path, load_certificate(args.cert), host=args.host, port=args.port,
                        revoke_previous=args.revoke_previous, ca_cert=args.ca_cert)
    what = "added and pinned" if p.added else "pinned"
    extra = f"; revoked the previous certificate {p.previous}" if p.revoked_previous else ""
    _emit(args, {"name": p.name, "role": p.role, "fingerprint": p.fingerprint,
                 "previous": p.previous, "revoked_previous": p.revoked_previous,
                 "added": p.added, "federation": str(path)},
          f"{p.role} {p.name!r} {what} in {path}: {p.fingerprint}{extra} "
          f"(copy the file to every node; running nodes reload it)")
    return 0


def _cmd_federation_revoke(args: argparse.Namespace) -> int:
    from parties.config.pins import revoke_certificate
    from parties.pki.certs import load_certificate

    path = _federation_file(args.federation)
    fp = normalize_fingerprint(args.fingerprint) if args.fingerprint \
        else fingerprint(load_certificate(args.cert))
    added = revoke_certificate(path, fp)
    _emit(args, {"fingerprint": fp, "revoked": True, "already": not added,
                 "federation": str(path)},
          f"certificate {fp} {'revoked' if added else 'was already revoked'} in {path} "
          f"(copy the file to every node; running nodes reload it)")
    return 0


def _privacy(args: argparse.Namespace) -> Any:
    from smpc import dp

    if args.epsilon is None and args.rho is None:
        if args.delta is not None or args.clip or args.min_honest is not None:
            raise CliError("differential privacy needs --epsilon (with --delta) or --rho")
        return None
    return dp.DPRequest(epsilon=args.epsilon, delta=args.delta, rho=args.rho,
                        bounds=dict(args.clip), min_honest=args.min_honest)


def _spec_from_args(args: argparse.Namespace) -> Any:
    from smpc.stats import StatSpec

    extra: dict[str, Any] = {}
    if args.statistic == "linreg":
        extra["target"] = args.target
    elif args.target:
        raise CliError("--target is for linreg only")
    if args.statistic == "histogram":
        extra["edges"] = tuple(args.edges or ())
    if args.statistic == "quantiles":
        extra.update(probabilities=tuple(args.probs), resolution=args.resolution,
                     bounds=tuple(args.bounds) if args.bounds else None)
    return StatSpec(args.statistic, tuple(args.columns), backend=args.backend, ddof=args.ddof,
                    frac_bits=args.frac_bits, dp=_privacy(args), missing=args.missing, **extra)


def _cmd_run(args: argparse.Namespace) -> int:
    from parties.analyst.client import Client

    spec = _spec_from_args(args)
    with Client(args.federation, timeout=args.timeout) as client:
        result = client.compute(spec, args.where, parties=args.parties,
                                allow_partial=args.partial)
    for warning in result.details.get("warnings", ()):
        print(f"smpc: warning: {warning}", file=sys.stderr)
    if args.json:
        print_json(result.to_json())
    else:
        print(format_result(result))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from parties.analyst.client import Client

    with Client(args.federation, timeout=args.timeout) as client:
        p = client.predict(args.data_owner, args.model_owner, model=args.model,
                           where=args.where, backend=args.backend, output=args.output,
                           feature_bound=args.feature_bound, missing=args.missing,
                           key=args.key, rows=args.rows)
    doc = {"session_id": p.session_id, "data_owner": p.data_owner,
           "n_predictions": p.n_predictions, "output_path": p.output_path, "kind": p.kind,
           "backend": p.backend}
    _emit(args, doc, f"{p.n_predictions} {p.kind} predictions ({p.backend}) revealed only to "
                     f"{p.data_owner}, stored on its host at {p.output_path}")
    return 0


def _bench(argv: list[str]) -> int:
    """``smpc bench ...`` (the suite parses its own arguments).  With ``--json`` its own
    output goes to stderr and stdout holds ``{"status", "out", "lines"}`` (README)."""
    as_json = "--json" in argv
    argv = [a for a in argv if a != "--json"]
    try:
        from smpc_bench.cli import main as bench_main
    except ImportError:
        return fail(CliError("the benchmark suite is not installed with this copy of smpc "
                             "(install from a source checkout: pip install -e '.[bench]')"),
                    as_json)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured if as_json else sys.stdout):
            status = int(bench_main(argv))
    except SystemExit as exc:  # its argument parser's usage errors (already on stderr)
        if exc.code in (0, None):
            status = 0
        else:
            return fail(UsageError("smpc bench: invalid arguments (see smpc bench --help)"),
                        as_json)
    except (SmpcError, ValueError, OSError) as exc:
        return fail(exc, as_json)
    finally:
        if as_json:
            sys.stderr.write(captured.getvalue())
    if as_json:
        out = next((argv[k + 1] for k, a in enumerate(argv[:-1]) if a == "--out"),
                   "bench-results")
        print_json({"status": status, "out": out, "lines": captured.getvalue().splitlines()})
    return status


# ------------------------------------------------------------------------------ main


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # the benchmark suite parses its own arguments
        return _bench(argv[1:])
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:  # argparse's message, as argparse prints it; or a document
        if wants_json(None, argv):
            return fail(exc, True)
        refusing = exc.parser or parser
        refusing.print_usage(sys.stderr)
        print(f"{refusing.prog}: error: {exc.detail}", file=sys.stderr)
        return EXIT_ERROR
    try:
        return int(args.func(args))
    except (SmpcError, ValueError, OSError, OverflowError) as exc:
        return fail(exc, wants_json(args))
    except KeyboardInterrupt:
        print("smpc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
