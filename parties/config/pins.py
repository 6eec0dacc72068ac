"""Pinning and revoking certificates in a federation file (``smpc federation pin`` / ``revoke``).

Rotating a node's certificate, with keys made where they live (:mod:`parties.pki.requests`)::

    node host:  smpc certs request --name org-b --role party --federation F --out next/
    CA host:    smpc certs sign --ca-dir ca/ --csr org-b.csr --role party
    anywhere:   smpc federation pin federation.json --cert org-b.pem --revoke-previous
    then:       copy federation.json to every node (they reload it within about a second),
                restart org-b with its new key and certificate.

Both functions write the file atomically (running nodes never read half a file) and validate
it as the loader does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from parties.config.model import AnalystEntry, ConfigError, FederationConfig, NodeEntry
from parties.config.reader import load_federation
from parties.config.writer import save_config
from parties.pki.certs import load_certificate
from parties.pki.identity import (
    NODE_ROLES,
    fingerprint,
    normalize_fingerprint,
    verify_node_certificate,
)

__all__ = ["Pinned", "pin_certificate", "revoke_certificate"]


@dataclass(frozen=True)
class Pinned:
    """What :func:`pin_certificate` did: the entry now pinned and the pin it replaced."""

    name: str
    role: str
    fingerprint: str
    previous: str | None
    revoked_previous: bool
    added: bool


def pin_certificate(
    federation_file: str | os.PathLike[str], cert: x509.Certificate, *,
    host: str | None = None, port: int | None = None, revoke_previous: bool = False,
    ca_cert: str | os.PathLike[str] | None = None,
) -> Pinned:
    """Pin ``cert`` for the node or analyst it names in ``federation_file``.

    The certificate must verify against the federation's CA and name this federation, and must
    not be revoked.  A node not yet listed is added (``host`` and ``port`` required); a listed
    node keeps its address unless ``host``/``port`` are given.  ``revoke_previous`` adds the
    pin it replaces to ``revoked``.  A missing file is created when ``ca_cert`` is given (the
    federation's name is the certificate's).
    """
    path = Path(federation_file)
    if path.exists():
        fed = load_federation(path)
    elif ca_cert is not None:
        fed = FederationConfig(name="", ca_cert=Path(os.path.abspath(ca_cert)), nodes=[])
    else:
        raise ConfigError(f"federation file {path} not found (give the CA certificate to "
                          "create it)", path=path)
    ident = verify_node_certificate(cert, load_certificate(fed.ca_cert))
    fed.name = fed.name or ident.federation or ""
    if ident.federation != fed.name:
        raise ConfigError(f"the certificate is for federation {ident.federation!r}, "
                          f"not {fed.name!r}", path=path)
    fp = fingerprint(cert)
    if fed.is_revoked(fp):
        raise ConfigError(f"the certificate of {ident.name} (sha256 {fp[:16]}...) is revoked "
                          f"in {path}; make a new request", path=path)
    previous: str | None = None
    added = False
    if ident.role == "analyst":
        if host is not None or port is not None:
            raise ConfigError("analysts have no address (they only connect)", path=path)
        for i, a in enumerate(fed.analysts):
            if a.name == ident.name:
                previous = a.fingerprint
                fed.analysts[i] = AnalystEntry(a.name, fp)
                break
        else:
            fed.analysts.append(AnalystEntry(ident.name, fp))
            added = True
    else:
        assert ident.role in NODE_ROLES
        for i, n in enumerate(fed.nodes):
            if n.name == ident.name:
                if n.role != ident.role:
                    raise ConfigError(f"{n.name} is listed as {n.role}, but the certificate is "
                                      f"for a {ident.role}", path=path)
                previous = n.fingerprint
                fed.nodes[i] = NodeEntry(n.name, n.role, host or n.host,
                                         n.port if port is None else port, fp)
                break
        else:
            if host is None or port is None:
                raise ConfigError(f"{ident.name} is not listed in {path}: give its host and "
                                  "port to add it", path=path)
            fed.nodes.append(NodeEntry(ident.name, ident.role, host, port, fp))
            added = True
    revoke = revoke_previous and previous is not None and previous != fp
    if revoke:
        fed.revoked.append(previous)  # type: ignore[arg-type]
    save_config(fed, path)
    return Pinned(ident.name, ident.role, fp, previous, revoke, added)


def revoke_certificate(federation_file: str | os.PathLike[str], fp: str) -> bool:
    """Add the certificate fingerprint ``fp`` to the federation's ``revoked`` list; returns
    False if it was already there.  A revoked certificate that is still pinned leaves its node
    unreachable until a new one is pinned."""
    path = Path(federation_file)
    fed = load_federation(path)
    fp = normalize_fingerprint(fp)
    if fed.is_revoked(fp):
        return False
    fed.revoked.append(fp)
    save_config(fed, path)
    return True
