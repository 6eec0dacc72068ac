"""Federation, party, coordinator and dealer configuration: dataclasses stored as JSON files.

The configs as data (:mod:`.model`), loaded with every check (:mod:`.reader`) and saved
(:mod:`.writer`).  The federation config is the **allow-list**:
:meth:`FederationConfig.authorize` is the check every server applies to each caller.
May import: :mod:`parties.errors`, :mod:`parties.pki` and the core.
"""

from parties.config.model import (
    CONFIG_VERSION,
    DATA_FORMATS,
    POLICY_COMPUTATIONS,
    AnalystEntry,
    AnyConfig,
    ConfigError,
    CoordinatorConfig,
    DataSourceConfig,
    DealerConfig,
    FederationConfig,
    NodeEntry,
    PartyConfig,
    PolicyConfig,
    TLSFiles,
)
from parties.config.reader import (
    load_config,
    load_coordinator_config,
    load_dealer_config,
    load_federation,
    load_party_config,
)
from parties.config.writer import save_config

__all__ = [
    "CONFIG_VERSION",
    "DATA_FORMATS",
    "POLICY_COMPUTATIONS",
    "AnalystEntry",
    "AnyConfig",
    "ConfigError",
    "CoordinatorConfig",
    "DataSourceConfig",
    "DealerConfig",
    "FederationConfig",
    "NodeEntry",
    "PartyConfig",
    "PolicyConfig",
    "TLSFiles",
    "load_config",
    "load_coordinator_config",
    "load_dealer_config",
    "load_federation",
    "load_party_config",
    "save_config",
]
