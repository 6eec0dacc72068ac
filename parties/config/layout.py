"""Where a federation directory keeps its files (made by ``smpc federation init``).

::

    federation.json              the federation config (the allow-list)
    ca/ca.pem, ca/ca.key         the CA certificate and key (keep the key offline)
    analyst/cert.pem, key.pem    the analyst's credentials
    nodes/<name>/config.json     each node's config; its key, certificate, database,
    nodes/<name>/outputs/        predictions it holds as a data owner (encrypted),
    nodes/<name>/models/         models it owns (encrypted), atrest.key
    logs/<name>.log, run/<name>.pid   local processes (``smpc federation up``)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from parties.config.model import ConfigError, FederationConfig, NodeEntry
from parties.config.reader import load_federation

__all__ = ["Layout"]


@dataclass(frozen=True)
class Layout:
    """The files of a federation directory (see the module docstring)."""

    directory: Path

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "directory", Path(directory).resolve())

    @property
    def federation_file(self) -> Path:
        return self.directory / "federation.json"

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca" / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca" / "ca.key"

    @property
    def analyst_cert(self) -> Path:
        return self.directory / "analyst" / "cert.pem"

    @property
    def analyst_key(self) -> Path:
        return self.directory / "analyst" / "key.pem"

    def node_dir(self, name: str) -> Path:
        return self.directory / "nodes" / name

    def config(self, name: str) -> Path:
        return self.node_dir(name) / "config.json"

    def log(self, name: str) -> Path:
        return self.directory / "logs" / f"{name}.log"

    def pid_file(self, name: str) -> Path:
        return self.directory / "run" / f"{name}.pid"

    def outputs(self, party: str) -> Path:
        """Where ``party`` writes predictions it receives as a data owner."""
        return self.node_dir(party) / "outputs"

    def models(self, party: str) -> Path:
        return self.node_dir(party) / "models"

    def at_rest_key(self, party: str) -> Path:
        """The AES-256-GCM key file of ``party`` (0600) for its models and predictions."""
        return self.node_dir(party) / "atrest.key"

    def federation(self) -> FederationConfig:
        """The federation config (FederationError if the directory has none)."""
        if not self.federation_file.is_file():
            raise ConfigError(f"{self.directory} is not a federation directory "
                              "(no federation.json); create one with init_federation",
                              path=self.federation_file)
        return load_federation(self.federation_file)

    def nodes(self) -> list[NodeEntry]:
        """Every node of the federation, coordinator and dealers first."""
        order = {"coordinator": 0, "dealer": 1, "party": 2}
        return sorted(self.federation().nodes, key=lambda n: order.get(n.role, 3))

    def parties(self) -> list[str]:
        return [n.name for n in self.federation().parties]
