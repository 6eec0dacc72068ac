"""Federation, party, coordinator and dealer configuration: dataclasses stored as JSON files.

Owns: the configs as data (:mod:`.model`), loading them with every check (:mod:`.reader`),
saving them (:mod:`.writer`) and the files of a federation directory (:mod:`.layout`).  The
federation config is the **allow-list**: :meth:`FederationConfig.authorize` is the check every
server applies to each caller.
May import: :mod:`parties.errors`, :mod:`parties.pki` and the core.
"""

from parties.config.model import (
    CONFIG_VERSION,
    DATA_ENGINES,
    DATA_FORMATS,
    DEFAULT_ENGINE,
    EXACT_FIELDS,
    FILE_ENGINES,
    LIMIT_FIELDS,
    MODEL_POLICY_FIELDS,
    POLICY_COMPUTATIONS,
    AnalystEntry,
    AnyConfig,
    ConfigError,
    CoordinatorConfig,
    DataSourceConfig,
    DealerConfig,
    FederationConfig,
    ModelPolicy,
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
    "DATA_ENGINES",
    "DATA_FORMATS",
    "DEFAULT_ENGINE",
    "EXACT_FIELDS",
    "FILE_ENGINES",
    "LIMIT_FIELDS",
    "MODEL_POLICY_FIELDS",
    "POLICY_COMPUTATIONS",
    "AnalystEntry",
    "AnyConfig",
    "ConfigError",
    "CoordinatorConfig",
    "DataSourceConfig",
    "DealerConfig",
    "FederationConfig",
    "ModelPolicy",
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
