"""``smpc audit ...`` and ``smpc outputs read``: a party operator's view of its own records.

Register with ``from parties.cli.audit import add_audit_parser; add_audit_parser(sub)`` where
``sub`` is the ``add_subparsers()`` object of the ``smpc`` parser; each command sets
``func`` (``args.func(args)`` returns the exit status).  Also runnable on its own:
``python -m parties.cli.audit audit verify --config PARTY.json``.

Commands (``--config`` is the party's JSON config; its ``database`` holds the audit log and the
ledger, see :mod:`parties.privacy`)::

    smpc audit show   --config PARTY.json [--limit N] [--since SEQ|ISO-TIME] [--json]
    smpc audit verify --config PARTY.json [--head FILE] [--chain-only] [--witness FILE ...]
                      [--json]
    smpc audit head   --config PARTY.json [--json]
    smpc audit witnesses --config PARTY.json [--of PEER] [--json]
    smpc audit budget --config PARTY.json [--json]
    smpc outputs read --config PARTY.json SESSION [--output FILE] [--json]

With ``--json`` each prints one JSON document on stdout (README, "JSON output"), an error
as :func:`parties.errors.error_document`.

Exit status: 0 success; 1 ``audit verify`` found tampering (one line on stdout naming the
records: edited, deleted, reordered, ...); 2 an error (one line on stderr, never a traceback).

They never append or change anything (``--chain-only`` does not even need the MAC key), so they
are safe to run beside a live node.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from parties.cli.output import fail, print_json
from smpc.errors import SmpcError

__all__ = ["add_audit_parser", "cmd_audit_budget", "cmd_audit_head", "cmd_audit_show",
           "cmd_audit_verify", "cmd_outputs_read", "main"]

EXIT_OK, EXIT_TAMPERED, EXIT_ERROR = 0, 1, 2


class AuditCliError(SmpcError):
    """A problem the person running the command can fix (one line)."""


def _party_config(path: str) -> Any:
    from parties.config import PartyConfig, load_config

    cfg = load_config(path, check_files=False)
    if not isinstance(cfg, PartyConfig):
        raise AuditCliError(f"{path} is not a party config (audit logs are kept by parties)")
    return cfg


def _audit_log(cfg: Any, *, chain_only: bool = False) -> Any:
    from parties.privacy.audit import AuditLog

    if not Path(cfg.database).is_file():
        raise AuditCliError(f"there is no audit log at {cfg.database} (has the party started?)")
    return AuditLog(cfg.database, chain_only=chain_only)


def _since(text: str | None) -> int | str | None:
    if text is None:
        return None
    return int(text) if text.strip().isdigit() else text.strip()


def _guard(fn: Any) -> Any:
    """Errors become one line on stderr and exit status 2 (with ``--json``, also the error
    document on stdout: :func:`parties.cli.output.fail`)."""

    def run(args: argparse.Namespace) -> int:
        try:
            return int(fn(args))
        except (SmpcError, ValueError, OSError) as exc:
            return fail(exc, bool(getattr(args, "json", False)))

    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


@_guard
def cmd_audit_show(args: argparse.Namespace) -> int:
    """Print the audit records (the last ``--limit``; with ``--since`` the first after it)."""
    log = _audit_log(_party_config(args.config), chain_only=True)
    limit = None if args.limit == 0 else args.limit
    records = log.records(limit=limit, since=_since(args.since))
    if args.json:  # one document: {"records": [{"seq", <the event's fields>, "hash"}, ...]}
        print_json({"records": [{"seq": rec.seq, **rec.event, "hash": rec.hash}
                                for rec in records]})
        return EXIT_OK
    for rec in records:
        print(rec.line())
    return EXIT_OK


@_guard
def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Check the hash chain (and the MACs, unless ``--chain-only``); exit 1 on tampering."""
    from parties.privacy.audit import Head

    log = _audit_log(_party_config(args.config), chain_only=args.chain_only)
    anchor = None
    if args.head:
        try:
            anchor = Head.from_json(Path(args.head).read_text())
        except OSError as exc:
            raise AuditCliError(f"cannot read the exported head {args.head}: "
                                f"{exc.strerror}") from None
    report = log.verify(anchor)
    doc: dict[str, Any] = {"ok": report.ok, "message": " ".join(report.message.split()),
                           "witnesses": None}
    if not args.json:
        print(doc["message"])
    ok = report.ok
    if args.witness:
        checked, contradicted = _check_witnesses(_party_config(args.config), log, args.witness,
                                                 quiet=args.json)
        doc["witnesses"] = {"checked": checked, "contradicted": contradicted}
        if not args.json:
            for sentence in contradicted:
                print(sentence)
        ok = ok and not contradicted
    doc["ok"] = ok
    if args.json:
        print_json(doc)
    return EXIT_OK if ok else EXIT_TAMPERED


def _check_witnesses(cfg: Any, log: Any, files: Sequence[str], *, quiet: bool = False
                     ) -> tuple[int, list[str]]:
    """How many heads ``files`` hold (exported from peers with ``smpc audit witnesses``) and
    the sentences of :func:`parties.privacy.witness.check` for them; an invalid head is an
    error.  Prints a summary line unless ``quiet``."""
    from parties.pki.certs import load_certificate
    from parties.privacy.witness import WitnessError, check, verify_head

    ca = load_certificate(cfg.tls.ca)
    heads = []
    for name in files:
        try:
            lines = Path(name).read_text().splitlines()
        except OSError as exc:
            raise AuditCliError(f"cannot read the witness file {name}: {exc.strerror}") from None
        for n, line in enumerate((x for x in lines if x.strip()), start=1):
            try:
                heads.append(verify_head(line.encode(), ca_cert=ca,
                                         federation=cfg.federation.name, party=cfg.name))
            except WitnessError as exc:
                raise AuditCliError(f"{name}: head {n} is not a valid witness of "
                                    f"{cfg.name}: {exc}") from None
    problems = check(log, heads)
    if not quiet:
        print(f"{len(heads)} witnessed head(s) checked: "
              f"{'all agree' if not problems else f'{len(problems)} contradicted'}.")
    return len(heads), problems


@_guard
def cmd_audit_witnesses(args: argparse.Namespace) -> int:
    """Print the signed audit heads this party holds about another (one JSON line each)."""
    from parties.privacy.witness import WitnessStore

    cfg = _party_config(args.config)
    if not Path(cfg.database).is_file():
        raise AuditCliError(f"there is no database at {cfg.database} (has the party started?)")
    envelopes = WitnessStore(cfg.database).envelopes(args.of)
    if args.json:  # one document: {"heads": [<each signed head, parsed>]}
        print_json({"heads": [json.loads(e) for e in envelopes]})
        return EXIT_OK
    for envelope in envelopes:
        print(envelope.decode())
    return EXIT_OK


@_guard
def cmd_audit_head(args: argparse.Namespace) -> int:
    """Print the current head (one JSON line) -- keep it off the host, verify against it."""
    print(_audit_log(_party_config(args.config), chain_only=True).head().to_json())
    return EXIT_OK  # already one JSON document, with or without --json


@_guard
def cmd_audit_budget(args: argparse.Namespace) -> int:
    """Print each analyst's privacy budget on this party: total, spent, pending, remaining."""
    from parties.privacy.ledger import Ledger
    from smpc import dp

    cfg = _party_config(args.config)
    if not Path(cfg.database).is_file():
        raise AuditCliError(f"there is no ledger at {cfg.database} (has the party started?)")
    delta = cfg.policy.delta
    rows = []
    for b in Ledger(cfg.database).budgets():
        eps = dp.epsilon_from_rho(b.remaining, delta) if b.remaining > 0 else 0.0
        rows.append({"analyst": b.analyst, "dataset": b.dataset, "total_rho": b.total,
                     "spent_rho": b.spent, "pending_rho": b.pending,
                     "remaining_rho": b.remaining, "remaining_epsilon": eps, "delta": delta})
        if args.json:
            continue
        print(f"analyst={b.analyst} dataset={b.dataset} total_rho={b.total:.6g} "
              f"spent_rho={b.spent:.6g} pending_rho={b.pending:.6g} "
              f"remaining_rho={b.remaining:.6g} remaining_epsilon={eps:.4g} at delta={delta:g}")
    if args.json:
        print_json({"budgets": rows})
    return EXIT_OK


@_guard
def cmd_outputs_read(args: argparse.Namespace) -> int:
    """Decrypt a predictions file of this party (CSV ``row,prediction``) to stdout or a file."""
    from parties.pki.files import atomic_write
    from parties.privacy.outputs import read_output

    data = read_output(_party_config(args.config), args.session)
    if args.output:
        try:
            atomic_write(Path(args.output), data, 0o600, overwrite=False)
        except FileExistsError:
            raise AuditCliError(f"{args.output} already exists; refusing to replace it") from None
        print(f"wrote {args.output} (mode 0600, plaintext: delete it when done)",
              file=sys.stderr)
        if args.json:
            print_json({"session": args.session, "output": args.output, "csv": None})
    elif args.json:  # the CSV's text in the document (it is the operator's own plaintext)
        print_json({"session": args.session, "output": None, "csv": data.decode("utf-8")})
    else:
        sys.stdout.write(data.decode("utf-8"))
        sys.stdout.flush()
    return EXIT_OK


def _non_negative(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError("must be 0 (all) or more")
    return n


def add_audit_parser(subparsers: Any) -> None:
    """Add ``audit {show,verify,head,budget}`` and ``outputs read`` to ``smpc``'s subparsers."""
    config_help = "the party's JSON config (its database holds the audit log)"
    audit = subparsers.add_parser(
        "audit", help="a party's tamper-evident audit log and privacy budgets",
        description="Read and verify a party's hash-chained audit log.")
    asub = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")

    show = asub.add_parser("show", help="print audit records")
    show.add_argument("--config", required=True, help=config_help)
    show.add_argument("--limit", type=_non_negative, default=50,
                      help="how many records (default 50; 0 = all)")
    show.add_argument("--since", metavar="SEQ|TIME",
                      help="records after this seq number, or at/after this ISO 8601 time "
                           "with a timezone (e.g. 2025-01-31T00:00:00+00:00)")
    show.add_argument("--json", action="store_true",
                      help='one document {"records": [...]} on stdout')
    show.set_defaults(func=cmd_audit_show)

    verify = asub.add_parser("verify", help="detect edited, deleted or reordered records "
                                            "(exit 1 if any)")
    verify.add_argument("--config", required=True, help=config_help)
    verify.add_argument("--head", metavar="FILE",
                        help="a head exported earlier with 'smpc audit head' (also detects "
                             "truncation and rollback up to it)")
    verify.add_argument("--chain-only", action="store_true",
                        help="check the keyless hash chain only (no MAC key needed)")
    verify.add_argument("--witness", nargs="+", metavar="FILE", default=[],
                        help="signed heads of this party's log held by its peers (exported "
                             "with 'smpc audit witnesses --of NAME' on each peer): a chain "
                             "rewritten after a head went out is contradicted")
    verify.add_argument("--json", action="store_true",
                        help='{"ok", "message", "witnesses"} on stdout')
    verify.set_defaults(func=cmd_audit_verify)

    wit = asub.add_parser("witnesses", help="print the signed audit heads this party holds "
                                            "about its peers (one JSON line each)")
    wit.add_argument("--config", required=True, help=config_help)
    wit.add_argument("--of", metavar="PARTY", help="only the heads of this party")
    wit.add_argument("--json", action="store_true", help='{"heads": [...]} on stdout')
    wit.set_defaults(func=cmd_audit_witnesses)

    head = asub.add_parser("head", help="print the current head as one JSON line (export it)")
    head.add_argument("--config", required=True, help=config_help)
    head.add_argument("--json", action="store_true", help="(the head is JSON already)")
    head.set_defaults(func=cmd_audit_head)

    budget = asub.add_parser("budget", help="privacy budget per analyst: spent and remaining")
    budget.add_argument("--config", required=True, help=config_help)
    budget.add_argument("--json", action="store_true", help='{"budgets": [...]} on stdout')
    budget.set_defaults(func=cmd_audit_budget)

    outputs = subparsers.add_parser("outputs", help="a data owner's encrypted predictions",
                                    description="Decrypt what a party stored at rest.")
    osub = outputs.add_subparsers(dest="outputs_command", required=True, metavar="COMMAND")
    read = osub.add_parser("read", help="decrypt the predictions of one session")
    read.add_argument("--config", required=True, help="the data owner's party config")
    read.add_argument("session", help="the session id (or the output path the analyst got)")
    read.add_argument("--output", metavar="FILE",
                      help="write the CSV here (0600, never replacing a file) instead of stdout")
    read.add_argument("--json", action="store_true",
                      help='{"session", "output", "csv"} on stdout')
    read.set_defaults(func=cmd_outputs_read)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m parties.cli.audit audit|outputs ...`` (the same commands as ``smpc``)."""
    parser = argparse.ArgumentParser(prog="smpc", description="smpc audit and outputs commands")
    add_audit_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
