"""The ``smpc`` command line.

Every error a person can cause -- bad arguments, an unknown column, an
unreachable federation, out-of-range values, a refusal by a party's policy --
ends the command with one line on stderr and a non-zero exit status, never a
traceback.  ``--json`` prints machine-readable results on stdout, and an error
as ``{"error": <the same line>, "code": <gRPC status or null>, "node": <node
blamed or null>}`` on stdout as well.  What an error line may contain is in
SECURITY.md ("Errors carry no data"): a party's refusal names columns, rows
and limits, never a cell, a value or a path on its host.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from parties.pki.certs import (
    create_ca,
    issue_node_certificate,
    load_ca,
    save_ca,
    save_node_credentials,
)
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
    parser = argparse.ArgumentParser(
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
    init.add_argument("--force", action="store_true", help="replace an existing federation")
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
        start.set_defaults(func=_cmd_start_node, role=role)

    certs = sub.add_parser("certs", help="a federation CA and node certificates")
    csub = certs.add_subparsers(dest="action", required=True, metavar="ACTION")
    ca = csub.add_parser("ca", help="create a federation CA (key written 0600)")
    ca.add_argument("directory", type=Path)
    ca.add_argument("--federation", required=True, help="the federation's name")
    ca.add_argument("--days", type=int, default=3650)
    ca.set_defaults(func=_cmd_certs_ca)
    issue = csub.add_parser("issue", help="issue a node or analyst certificate from the CA")
    issue.add_argument("directory", type=Path, help="the CA's directory (ca.pem, ca.key)")
    issue.add_argument("--name", required=True)
    issue.add_argument("--role", required=True,
                       choices=("party", "coordinator", "dealer", "analyst"))
    issue.add_argument("--address", action="append", default=[], help="IP address (repeat)")
    issue.add_argument("--dns", action="append", default=[], help="DNS name (repeat)")
    issue.add_argument("--days", type=int, default=365)
    issue.add_argument("--out", type=Path, help="output directory (default: the CA's)")
    issue.set_defaults(func=_cmd_certs_issue)
    request = csub.add_parser("request", help="on a node's own host: its key (0600, never "
                                              "leaves) and a certificate request for the CA")
    request.add_argument("--name", required=True)
    request.add_argument("--role", required=True,
                         choices=("party", "coordinator", "dealer", "analyst"))
    request.add_argument("--federation", required=True, help="the federation's name")
    request.add_argument("--address", action="append", default=[], help="IP address (repeat)")
    request.add_argument("--dns", action="append", default=[], help="DNS name (repeat)")
    request.add_argument("--out", type=Path, default=Path("."),
                         help="the node's directory: key.pem (stays) and NAME.csr (to send); "
                              "default: here")
    request.add_argument("--force", action="store_true", help="replace an existing key")
    request.add_argument("--json", action="store_true")
    request.set_defaults(func=_cmd_certs_request)
    sign = csub.add_parser("sign", help="on the CA's host: sign a certificate request "
                                        "(the node's key is never seen)")
    sign.add_argument("--ca-dir", required=True, type=Path, help="the CA's directory "
                                                                  "(ca.pem, ca.key)")
    sign.add_argument("--csr", required=True, type=Path, help="the node's request")
    sign.add_argument("--name", help="refuse a request for another name")
    sign.add_argument("--role", choices=("party", "coordinator", "dealer", "analyst"),
                      help="refuse a request for another role")
    sign.add_argument("--days", type=int, default=365)
    sign.add_argument("--out", type=Path, help="the certificate (default: NAME.pem beside "
                                               "the request)")
    sign.add_argument("--json", action="store_true")
    sign.set_defaults(func=_cmd_certs_sign)

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
    run.add_argument("--frac-bits", type=int, default=16, help="ss fixed-point bits")
    run.add_argument("--timeout", type=_seconds, default=120.0)
    run.add_argument("--json", action="store_true", help="machine-readable output")
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
    pred.add_argument("--feature-bound", type=float, help="public bound on |feature|")
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
    sub.add_parser("bench", help="benchmarks of the ciphertext math and the protocols "
                                 "(smpc bench --help)")


# ------------------------------------------------------------------------------ commands


def _cmd_demo(args: argparse.Namespace) -> int:
    from parties.federation import demo

    rows = demo.simulated_demo(args.data) if args.simulated else demo.federation_demo(args.data)
    return 0 if all(r["within_tolerance"] for r in rows) else 1


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
        exact_safeguards={"min_cell_size": args.min_cell_size})
    parties = lay.parties()
    exact = parties if allow is True else [p for p in parties if p in (allow or [])]
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
        ["--config", str(args.config), "--log-level", args.log_level]))


def _cmd_certs_ca(args: argparse.Namespace) -> int:

    args.directory.mkdir(parents=True, exist_ok=True)
    ca = create_ca(args.federation, valid_days=args.days)
    save_ca(ca, args.directory / "ca.pem", args.directory / "ca.key")
    print(f"CA of federation {args.federation!r}: {args.directory / 'ca.pem'} "
          f"(key {args.directory / 'ca.key'}, mode 0600: keep it offline)")
    return 0


def _cmd_certs_issue(args: argparse.Namespace) -> int:

    ca = load_ca(args.directory / "ca.pem", args.directory / "ca.key")
    cert, key = issue_node_certificate(ca, args.name, args.role, addresses=args.address,
                                           dns_names=args.dns, valid_days=args.days)
    out = args.out or args.directory
    out.mkdir(parents=True, exist_ok=True)
    save_node_credentials(cert, key, out / f"{args.name}.pem", out / f"{args.name}.key")
    print(f"{args.role} {args.name!r}: {out / (args.name + '.pem')} "
          f"(fingerprint {fingerprint(cert)})")
    return 0


def _cmd_certs_request(args: argparse.Namespace) -> int:
    from parties.pki.requests import create_request, key_id, save_request

    csr, key = create_request(args.name, args.role, args.federation, addresses=args.address,
                              dns_names=args.dns)
    if not args.out.is_dir():
        args.out.mkdir(mode=0o700, parents=True)
    key_path, csr_path = args.out / "key.pem", args.out / f"{args.name}.csr"
    save_request(key, csr, key_path, csr_path, overwrite=args.force)
    kid = key_id(key.public_key())
    _emit(args, {"name": args.name, "role": args.role, "federation": args.federation,
                 "key": str(key_path), "request": str(csr_path), "key_id": kid},
          f"{args.role} {args.name!r}: key {key_path} (0600: it never leaves this host), "
          f"request {csr_path} (send it to the CA operator; key id {kid})")
    return 0


def _cmd_certs_sign(args: argparse.Namespace) -> int:
    from parties.pki.files import write_certificate
    from parties.pki.requests import load_request, read_request, sign_request

    ca = load_ca(args.ca_dir / "ca.pem", args.ca_dir / "ca.key")
    csr = load_request(args.csr)
    info = read_request(csr)
    cert = sign_request(ca, csr, name=args.name, role=args.role, valid_days=args.days)
    out = args.out or args.csr.with_name(f"{info.name}.pem")
    write_certificate(out, cert)
    fp = fingerprint(cert)
    _emit(args, {"name": info.name, "role": info.role, "federation": info.federation,
                 "certificate": str(out), "fingerprint": fp, "key_id": info.key_id,
                 "not_after": cert.not_valid_after_utc.isoformat()},
          f"signed {info.role} {info.name!r} of federation {info.federation!r}: {out} "
          f"(fingerprint {fp}; key id {info.key_id} -- check it with the node's operator)")
    return 0


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
                    frac_bits=args.frac_bits, dp=_privacy(args), **extra)


def _cmd_run(args: argparse.Namespace) -> int:
    from parties.analyst.client import Client

    spec = _spec_from_args(args)
    with Client(args.federation, timeout=args.timeout) as client:
        result = client.compute(spec, args.where, parties=args.parties)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(format_result(result))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from parties.analyst.client import Client

    with Client(args.federation, timeout=args.timeout) as client:
        p = client.predict(args.data_owner, args.model_owner, model=args.model,
                           where=args.where, backend=args.backend, output=args.output,
                           feature_bound=args.feature_bound)
    doc = {"session_id": p.session_id, "data_owner": p.data_owner,
           "n_predictions": p.n_predictions, "output_path": p.output_path, "kind": p.kind,
           "backend": p.backend}
    _emit(args, doc, f"{p.n_predictions} {p.kind} predictions ({p.backend}) revealed only to "
                     f"{p.data_owner}, stored on its host at {p.output_path}")
    return 0


def _bench(argv: list[str]) -> int:
    try:
        from smpc_bench.cli import main as bench_main
    except ImportError:
        print("smpc: error: the benchmark suite is not installed with this copy of smpc "
              "(install from a source checkout: pip install -e '.[bench]')", file=sys.stderr)
        return 2
    try:
        return int(bench_main(argv))
    except (SmpcError, ValueError, OSError) as exc:
        print(f"smpc: error: {_one_line(exc)}", file=sys.stderr)
        return 2


# ------------------------------------------------------------------------------ output


def _emit(args: argparse.Namespace, doc: Any, text: str) -> None:
    print(json.dumps(doc, indent=2) if getattr(args, "json", False) else text)


def _num(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def format_result(result: Any) -> str:
    """A statistic's result as a few readable lines."""
    lines = [f"{result.statistic} over {_num(result.n)} rows ({result.backend})"]
    cols = result.columns
    value = result.value
    if result.statistic == "count":
        lines.append(f"  count = {value}")
    elif result.statistic in ("sum", "mean", "var", "std"):
        lines += [f"  {c} = {_num(v)}" for c, v in zip(cols, value, strict=True)]
    elif result.statistic in ("cov", "corr"):
        width = max(len(c) for c in cols)
        lines.append(" " * (width + 2) + "  ".join(f"{c:>12}" for c in cols))
        lines += [f"  {c:>{width}}" + "".join(f"  {_num(v):>12}" for v in row)
                  for c, row in zip(cols, value, strict=True)]
    elif result.statistic == "histogram":
        edges = result.details["edges"]
        for c, counts, below, above in zip(cols, value, result.details["below"],
                                           result.details["above"], strict=True):
            lines.append(f"  {c}: below {edges[0]:g}: {below}, above {edges[-1]:g}: {above}")
            lines += [f"    [{lo:g}, {hi:g}): {n}"
                      for lo, hi, n in zip(edges, edges[1:], counts, strict=False)]
    elif result.statistic == "quantiles":
        probs = result.details["probabilities"]
        for c, qs in zip(cols, value, strict=True):
            lines.append(f"  {c}: " + ", ".join(f"q{p:g}={_num(q)}"
                                                for p, q in zip(probs, qs, strict=True)))
        lines.append(f"  (resolution {result.details['resolution']:.4g})")
    elif result.statistic == "linreg":
        lines.append(f"  {result.details.get('target')} = {_num(value['intercept'])}" + "".join(
            f" {'+' if b >= 0 else '-'} {abs(b):.6g}*{c}"
            for c, b in zip(cols, value["coefficients"], strict=True)))
        lines.append(f"  R^2 = {_num(result.details.get('r2'))}")
    from smpc.stats.bounds import summary_lines

    lines += summary_lines(result.details)
    privacy = result.details.get("privacy")
    if privacy:
        cost = privacy.get("cost", {})
        lines.append(f"  differential privacy: rho={_num(cost.get('rho'))}"
                     + (f", epsilon={_num(cost.get('epsilon'))} at delta={_num(cost['delta'])}"
                        if cost.get("delta") else ""))
    return "\n".join(lines)


# ------------------------------------------------------------------------------ main


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # the benchmark suite parses its own arguments
        return _bench(argv[1:])
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (SmpcError, ValueError, OSError, OverflowError) as exc:
        print(f"smpc: error: {_one_line(exc)}", file=sys.stderr)
        if getattr(args, "json", False):  # machine-readable too: {"error": ...} on stdout
            code = getattr(exc, "code", None)
            doc = {"error": _one_line(exc),
                   "code": code if isinstance(code, str) else getattr(code, "name", None),
                   "node": getattr(exc, "node", None)}
            print(json.dumps(doc))
        return 2
    except KeyboardInterrupt:
        print("smpc: interrupted", file=sys.stderr)
        return 130


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
