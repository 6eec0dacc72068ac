"""``smpc certs ca|issue|request|sign``: a federation CA and node certificates.

Register with ``add_certs_parser(sub)`` (``sub``: the ``smpc`` parser's subparsers); each
command sets ``func``.  With ``--json`` each prints one document (README, "JSON output").
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from parties.cli.output import emit
from parties.pki.certs import (
    create_ca,
    issue_node_certificate,
    load_ca,
    save_ca,
    save_node_credentials,
)
from parties.pki.identity import fingerprint

__all__ = ["add_certs_parser"]

ROLES = ("party", "coordinator", "dealer", "analyst")


def add_certs_parser(sub: Any) -> None:
    """Add ``certs {ca,issue,request,sign}`` to the ``smpc`` subparsers."""
    certs = sub.add_parser("certs", help="a federation CA and node certificates")
    csub = certs.add_subparsers(dest="action", required=True, metavar="ACTION")
    ca = csub.add_parser("ca", help="create a federation CA (key written 0600)")
    ca.add_argument("directory", type=Path)
    ca.add_argument("--federation", required=True, help="the federation's name")
    ca.add_argument("--days", type=int, default=3650)
    ca.add_argument("--json", action="store_true")
    ca.set_defaults(func=_cmd_certs_ca)
    issue = csub.add_parser("issue", help="issue a node or analyst certificate from the CA")
    issue.add_argument("directory", type=Path, help="the CA's directory (ca.pem, ca.key)")
    issue.add_argument("--name", required=True)
    issue.add_argument("--role", required=True, choices=ROLES)
    issue.add_argument("--address", action="append", default=[], help="IP address (repeat)")
    issue.add_argument("--dns", action="append", default=[], help="DNS name (repeat)")
    issue.add_argument("--days", type=int, default=365)
    issue.add_argument("--out", type=Path, help="output directory (default: the CA's)")
    issue.add_argument("--json", action="store_true")
    issue.set_defaults(func=_cmd_certs_issue)
    request = csub.add_parser("request", help="on a node's own host: its key (0600, never "
                                              "leaves) and a certificate request for the CA")
    request.add_argument("--name", required=True)
    request.add_argument("--role", required=True, choices=ROLES)
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
    sign.add_argument("--role", choices=ROLES, help="refuse a request for another role")
    sign.add_argument("--days", type=int, default=365)
    sign.add_argument("--out", type=Path, help="the certificate (default: NAME.pem beside "
                                               "the request)")
    sign.add_argument("--json", action="store_true")
    sign.set_defaults(func=_cmd_certs_sign)


def _cmd_certs_ca(args: argparse.Namespace) -> int:
    args.directory.mkdir(parents=True, exist_ok=True)
    ca = create_ca(args.federation, valid_days=args.days)
    cert, key = args.directory / "ca.pem", args.directory / "ca.key"
    save_ca(ca, cert, key)
    emit(args, {"federation": args.federation, "certificate": str(cert), "key": str(key),
                "fingerprint": fingerprint(ca.cert)},
         f"CA of federation {args.federation!r}: {cert} (key {key}, mode 0600: keep it "
         "offline)")
    return 0


def _cmd_certs_issue(args: argparse.Namespace) -> int:
    ca = load_ca(args.directory / "ca.pem", args.directory / "ca.key")
    cert, key = issue_node_certificate(ca, args.name, args.role, addresses=args.address,
                                       dns_names=args.dns, valid_days=args.days)
    out = args.out or args.directory
    out.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out / f"{args.name}.pem", out / f"{args.name}.key"
    save_node_credentials(cert, key, cert_path, key_path)
    fp = fingerprint(cert)
    emit(args, {"name": args.name, "role": args.role, "certificate": str(cert_path),
                "key": str(key_path), "fingerprint": fp},
         f"{args.role} {args.name!r}: {cert_path} (fingerprint {fp})")
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
    emit(args, {"name": args.name, "role": args.role, "federation": args.federation,
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
    emit(args, {"name": info.name, "role": info.role, "federation": info.federation,
                "certificate": str(out), "fingerprint": fp, "key_id": info.key_id,
                "not_after": cert.not_valid_after_utc.isoformat()},
         f"signed {info.role} {info.name!r} of federation {info.federation!r}: {out} "
         f"(fingerprint {fp}; key id {info.key_id} -- check it with the node's operator)")
    return 0
