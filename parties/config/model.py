"""The configuration as data: federation, party, coordinator and dealer configs.

Frozen dataclasses holding absolute paths; :mod:`.reader` builds them from JSON files (with
every check), :mod:`.writer` saves them.  The federation config is the **allow-list**:
:meth:`FederationConfig.authorize` is the check every server applies to the identity of each
caller.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from parties.config.watch import FederationWatch
from parties.pki.identity import Identity
from smpc.errors import InputError

CONFIG_VERSION = 1


DATA_FORMATS: tuple[str, ...] = ("csv", "parquet", "duckdb")
#: Where a party's local step runs (parties.data.open): DuckDB over the file (the default), numpy in
#: memory, the party's PostgreSQL database, or Spark SQL (a catalog table or Parquet files).
DATA_ENGINES: tuple[str, ...] = ("duckdb", "memory", "postgresql", "spark")
DEFAULT_ENGINE = "duckdb"
#: The engines that read a party's file (``smpc federation init --engine``).
FILE_ENGINES: tuple[str, ...] = ("duckdb", "memory")
#: Spark settings the node makes on its own session (parties.data.sql.spark): not configurable.
SPARK_FIXED_CONF: tuple[str, ...] = ("spark.master", "spark.sql.session.timeZone",
                                     "spark.sql.ansi.enabled", "spark.sql.caseSensitive")


_SUFFIX_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".duckdb": "duckdb"}

#: Defaults of a party's request limits (:class:`PolicyConfig`): a single-column quantile at the
#: finest resolution (65,537 values) fits, as does a linear regression on 256 columns; the
#: defaults keep one request under about a minute of CPU and a GiB of memory.
DEFAULT_MAX_RELEASED_VALUES = 100_000
DEFAULT_MAX_INFERENCE_ROWS = 1_000_000
DEFAULT_MAX_SESSION_CPU_SECONDS = 60.0
DEFAULT_MAX_REQUEST_MEMORY_MB = 1024.0
#: Defaults of a party's exact-mode safeguards (:mod:`parties.privacy.exact`):
#: cells of fewer rows sent as 0, the quantile margin, the row sets remembered per analyst.
DEFAULT_MIN_CELL_SIZE = 10
DEFAULT_EXACT_QUANTILE_MARGIN = 0.05
DEFAULT_EXACT_HISTORY = 1000
#: The policy fields that limit what one request may cost the party.
LIMIT_FIELDS: tuple[str, ...] = ("max_released_values", "max_inference_rows",
                                 "max_session_cpu_seconds", "max_request_memory_mb")
#: The policy fields of the safeguards a party applies to the exact answers it allows.
EXACT_FIELDS: tuple[str, ...] = ("min_cell_size", "exact_quantile_margin", "exact_history")

#: Defaults of a model owner's per-model policy (:class:`ModelPolicy`); SECURITY.md, "Model
#: owners' policy", derives what they guarantee against extraction.
DEFAULT_PREDICTION_NOISE_STD = 0.1
DEFAULT_MODEL_ROWS_PER_REQUEST = 1_000
DEFAULT_MODEL_REQUESTS_PER_DAY = 20
DEFAULT_PREDICTION_BUDGET_ROWS = 10_000
DEFAULT_MIN_DISTINCT_ROWS = 10
DEFAULT_MAX_SPARSE_ROW_FRACTION = 0.5


class ConfigError(InputError):
    """A configuration file is missing, malformed or inconsistent.

    ``path`` is the file, ``field`` the dotted field path (``None`` for file-level problems).
    """

    def __init__(self, message: str, *, path: Path | None = None, field: str | None = None):
        super().__init__(message)
        self.path = path
        self.field = field


@dataclass(frozen=True)
class NodeEntry:
    """A server node of the federation: who it is and where to reach it.

    ``fingerprint`` (optional, SHA-256 hex of the DER certificate) pins the one certificate
    accepted for this node.
    """

    name: str
    role: str
    host: str
    port: int
    fingerprint: str | None = None

    @property
    def address(self) -> str:
        """``host:port`` for a gRPC target (IPv6 literals are bracketed)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class AnalystEntry:
    """An analyst allowed in the federation (analysts connect, they do not listen)."""

    name: str
    fingerprint: str | None = None


@dataclass
class FederationConfig:
    """The federation: its name, its CA certificate, the allow-list of nodes and analysts, and
    the certificates it revokes (SHA-256 fingerprints refused everywhere, as caller and as
    server).

    Loaded from a file (:func:`parties.config.load_federation` and the node loaders), it can
    :meth:`refresh` itself from that file while the node runs: every holder of this object sees
    the new pins and revocations (see :mod:`parties.config.watch`).
    """

    name: str
    ca_cert: Path
    nodes: list[NodeEntry]
    analysts: list[AnalystEntry] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    #: Bumped by every :meth:`refresh` that changed something (channels re-check their peers).
    generation: int = field(default=0, compare=False, repr=False)
    #: Set by the loader; not copied by ``dataclasses.replace`` (a copy must not consume the
    #: changes its original is waiting for).
    _watch: FederationWatch | None = field(default=None, compare=False, repr=False, init=False)

    def node(self, name: str) -> NodeEntry:
        """The node called ``name``; ``KeyError`` naming the known nodes if there is none."""
        for n in self.nodes:
            if n.name == name:
                return n
        known = ", ".join(n.name for n in self.nodes) or "none"
        raise KeyError(f"no node {name!r} in federation {self.name!r} (nodes: {known})")

    def nodes_with_role(self, role: str) -> list[NodeEntry]:
        """The nodes with ``role``, in config order."""
        return [n for n in self.nodes if n.role == role]

    @property
    def parties(self) -> list[NodeEntry]:
        """The party nodes, in config order."""
        return self.nodes_with_role("party")

    def is_revoked(self, fingerprint: str) -> bool:
        """Whether the certificate with this SHA-256 fingerprint is revoked."""
        return fingerprint in self.revoked

    def certificate_problem(self, name: str, pinned: str | None, fingerprint: str) -> str | None:
        """Why the certificate ``fingerprint`` presented by ``name`` (pinned to ``pinned``, or
        unpinned) is refused, or None: revoked, or not the pinned one.  One sentence naming the
        node, the same on both ends of a connection."""
        if self.is_revoked(fingerprint):
            return (f"{name} presented a revoked certificate (sha256 {fingerprint[:16]}...) "
                    f"-- revoked in federation {self.name!r}")
        if pinned is not None and pinned != fingerprint:
            return (f"{name} presented a certificate that is not the one pinned for {name} "
                    f"(sha256 {fingerprint[:16]}..., pinned {pinned[:16]}...)")
        return None

    def check_caller(
        self, identity: Identity | None, roles: Iterable[str]
    ) -> tuple[NodeEntry | AnalystEntry | None, str]:
        """``(entry, "")`` if the caller may act in one of ``roles``, else ``(None, reason)``.

        The caller must carry an identity, belong to this federation (when the certificate
        names one), have one of ``roles``, be listed under that name with that role (nodes) or
        in ``analysts`` (role ``analyst``), present a certificate that is not revoked, and match
        the entry's pinned fingerprint if one is set.
        """
        if identity is None:
            return None, "no verified federation certificate"
        allowed = tuple(roles)
        listed = f"listed in federation {self.name!r}"
        if identity.role not in allowed:
            return None, f"only {', '.join(allowed)} {listed} may"
        if identity.federation is not None and identity.federation != self.name:
            return None, f"its certificate is for federation {identity.federation!r}"
        entry: NodeEntry | AnalystEntry | None = None
        if identity.role == "analyst":
            entry = next((a for a in self.analysts if a.name == identity.name), None)
        else:
            entry = next(
                (n for n in self.nodes if n.name == identity.name and n.role == identity.role),
                None,
            )
        if entry is None:
            return None, f"it is not {listed} as {identity.role}"
        problem = self.certificate_problem(identity.name, entry.fingerprint, identity.fingerprint)
        if problem is not None:
            return None, problem
        return entry, ""

    def authorize(
        self, identity: Identity | None, roles: Iterable[str]
    ) -> NodeEntry | AnalystEntry | None:
        """Return the allow-list entry of a caller if it may act in one of ``roles``, else None
        (:meth:`check_caller` says why)."""
        return self.check_caller(identity, roles)[0]

    def refresh(self, *, force: bool = False) -> bool:
        """Reload pins, revocations, nodes and analysts from the file this config was loaded
        from, if it changed (checked at most once per the watch's interval unless ``force``).

        Returns True if something changed.  A file that no longer loads, or that changes the
        federation's name or CA certificate, is ignored (logged; the node keeps its config).
        """
        if self._watch is None:
            return False
        new = self._watch.poll(force=force)
        if new is None:
            return False
        if new.name != self.name or new.ca_cert != self.ca_cert:
            self._watch.refuse(f"it changes the federation's name or CA certificate "
                               f"({new.name!r}, {new.ca_cert}); restart the node for that")
            return False
        if (new.nodes, new.analysts, new.revoked) == (self.nodes, self.analysts, self.revoked):
            return False
        self.nodes, self.analysts, self.revoked = new.nodes, new.analysts, new.revoked
        self.generation += 1
        self._watch.reloaded(self)
        return True


@dataclass
class TLSFiles:
    """A node's certificate, private key and the federation CA certificate it trusts."""

    cert: Path
    key: Path
    ca: Path


@dataclass
class DataSourceConfig:
    """A party's local table: a file and its format (``csv`` or ``parquet``).

    For CSV only: ``delimiter`` (one character; ``None``: detected from the header and the
    first rows), ``encoding`` (a Python text codec such as ``utf-8`` or ``cp1252``; ``None``:
    UTF-8, else cp1252/Latin-1 when the file is not valid UTF-8) and ``decimal`` (``.`` or
    ``,``, never detected) -- :mod:`parties.data.csvfile`.

    ``engine`` (:data:`DATA_ENGINES`): ``memory`` reads the file into numpy arrays at start;
    ``duckdb`` scans it with DuckDB and computes every statistic's local aggregates in SQL, so
    memory stays within ``memory_limit`` (a DuckDB size such as ``512MB``; DuckDB spills to
    disk beyond it) whatever the rows (:mod:`parties.data.sql.duck`); ``threads``: DuckDB's
    threads (None: one per core).  Format ``duckdb`` (engine ``duckdb`` only): a DuckDB
    database file, opened read-only, whose table or view ``table`` holds the rows.

    Engine ``postgresql`` (no file: ``path`` is None, ``format`` ``"postgresql"``): the rows are
    the table or view ``table`` (``schema.name`` or ``name``) of the database ``dsn`` names (a
    libpq connection string without a password), read by a read-only session with a
    ``statement_timeout_ms``; the password, if any, is in ``password_file`` (mode 0600);
    ``key``: a unique column that numbers the rows (:mod:`parties.data.sql.postgres`).

    Engine ``spark`` (``path`` is None): the rows are the table or view ``table`` of the Spark
    session's catalog (``format`` ``"spark"``), or the Parquet files, directories, globs or URIs
    ``paths`` (``format`` ``"parquet"``; local ones absolute), read by Spark SQL on ``master``
    (``local[*]``, ``spark://host:7077``, ``yarn`` ..) with the extra ``spark_conf`` settings
    (keys ``spark.*``); ``key`` as for PostgreSQL (:mod:`parties.data.sql.spark`).
    """

    path: Path | None
    format: str
    delimiter: str | None = None
    encoding: str | None = None
    decimal: str = "."
    engine: str = "duckdb"
    table: str | None = None
    memory_limit: str = "1GB"
    threads: int | None = None
    dsn: str | None = None
    password_file: Path | None = None
    key: str | None = None
    statement_timeout_ms: int = 60_000
    paths: tuple[str, ...] = ()
    master: str = "local[*]"
    spark_conf: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelPolicy:
    """A model owner's rules for one of its models (``policy.models.<name>``), enforced by the
    owner's node at ``Prepare`` -- before the model is loaded -- and, for the plausibility of
    the rows, by the data owner's node before it sends anything (:mod:`parties.privacy.models`).

    * ``allowed_analysts``: who may run the model (None: every analyst the party's policy
      serves; a list narrows it, ``[]`` allows nobody).
    * ``max_rows_per_request``: the rows one inference may cover.
    * ``max_requests_per_day``: inferences per analyst in any 24 hours (a rolling window).
    * ``prediction_budget_rows``: the rows each analyst may have predicted in total, ever.
    * ``min_distinct_rows``: the fewest distinct rows an inference may cover.
    * ``feature_bounds``: per feature ``[lo, hi]`` the rows' values must lie in.
    * ``max_sparse_row_fraction``: the largest fraction of rows with at most one nonzero
      feature (unit vectors, zero rows) an inference may cover (models of 2+ features).
    * ``prediction_noise_std``: the std of the Gaussian noise added to every logit the owner
      releases (model output units); 0 releases exact predictions.

    The defaults are safe: noisy predictions, a budget, plausible rows.  :meth:`exact` is the
    explicit opt-out a local demo writes.
    """

    allowed_analysts: tuple[str, ...] | None = None
    max_rows_per_request: int = DEFAULT_MODEL_ROWS_PER_REQUEST
    max_requests_per_day: int = DEFAULT_MODEL_REQUESTS_PER_DAY
    prediction_budget_rows: int = DEFAULT_PREDICTION_BUDGET_ROWS
    min_distinct_rows: int = DEFAULT_MIN_DISTINCT_ROWS
    feature_bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    max_sparse_row_fraction: float = DEFAULT_MAX_SPARSE_ROW_FRACTION
    prediction_noise_std: float = DEFAULT_PREDICTION_NOISE_STD

    @classmethod
    def exact(cls) -> ModelPolicy:
        """Exact predictions, no practical limits, no plausibility checks: for local demos and
        tests only -- the model can then be extracted from ``d + 1`` rows."""
        return cls(max_rows_per_request=DEFAULT_MAX_INFERENCE_ROWS,
                   max_requests_per_day=1_000_000, prediction_budget_rows=10**15,
                   min_distinct_rows=1, max_sparse_row_fraction=1.0, prediction_noise_std=0.0)


#: The fields of a :class:`ModelPolicy` in a config file.
MODEL_POLICY_FIELDS: tuple[str, ...] = (
    "allowed_analysts", "max_rows_per_request", "max_requests_per_day",
    "prediction_budget_rows", "min_distinct_rows", "feature_bounds", "max_sparse_row_fraction",
    "prediction_noise_std")


@dataclass
class PolicyConfig:
    """What a party allows -- enforced by the party node itself, whatever the coordinator says
    (:mod:`parties.privacy`).

    * ``allowed_columns``: columns any computation may read (as values or in a filter);
      ``columns_by_computation`` maps a computation (a statistic name such as ``"histogram"``,
      or ``"predict"`` for the features of an inference on this party's rows) to further columns
      allowed for that computation only. Empty = nothing allowed.
    * ``allowed_analysts``: who may ask (each must be in the federation's ``analysts``).
    * ``min_cohort_size``: the fewest of its rows (after the request's filter) the party
      contributes a statistic over, or lets an inference run on.
    * ``epsilon`` / ``delta``: the differential-privacy budget of **each** allowed analyst on
      this party's dataset, converted once to zCDP ``rho`` (:func:`smpc.dp.rho_from_epsilon`) and
      kept in the party's ledger.
    * ``require_dp``: refuse every statistic that does not ask for differential privacy.
      Defaults to True (exact aggregates invite differencing attacks that no cohort minimum
      stops), and :func:`parties.federation.local.init_federation` writes True unless a party
      is named in its ``allow_exact`` (``smpc federation init --allow-exact``).
    * ``bounds``: per-column clipping bounds ``[lo, hi]`` the party insists on: a DP request's
      bounds must lie within them, and a request without bounds for a column gets these.
    * ``dataset``: the name the budget is kept under (default: the party's name). Change it only
      when the table holds different individuals -- a new name starts a fresh budget.
    * ``min_parties``: the fewest data parties a statistic may have for this party to take part
      (at least 2: a party never contributes a "joint" statistic alone).
    * ``min_flood_bits``: as a model owner, the least flooding (``2^bits`` x the CKKS error) it
      adds to the logits it returns, whatever the request says (0 is refused below this).

    What one request may cost the party (each refused at ``Prepare``, before any row is
    selected or any budget reserved, with the limit named; see :mod:`smpc.cost`):

    * ``max_released_values``: the values one statistic releases, over its passes (a histogram's
      bins plus two per column, a quantile's resolution per column, ``k + k(k+1)/2`` moments in
      pass 2 ...).  Under DP each is one exact noise draw (about 12 microseconds of CPU).
    * ``max_inference_rows``: the rows of one inference -- selected as its data owner, declared
      by the request as its model owner.
    * ``max_session_cpu_seconds``: CPU seconds of one session's role: a request whose
      estimate exceeds it is refused, and a role that uses more is stopped.
    * ``max_request_memory_mb``: the estimated peak memory of one request (its selected rows
      and what it computes and sends), in MiB.

    The safeguards of *exact mode* -- a request without differential privacy, answered because
    ``require_dp`` is false (:mod:`parties.privacy.exact` says what each does and what remains):

    * ``min_cell_size``: every cell of this party's own histogram (and of the fine histogram
      behind quantiles) holding fewer rows than this is sent as 0, so each released cell is 0 or
      at least this; 1 turns suppression off.
    * ``exact_quantile_margin``: exact quantile probabilities must lie in ``[m, 1 - m]`` (the
      minimum and maximum are refused); 0 allows every probability.
    * ``exact_history``: how many row sets of its exact answers the party remembers per analyst
      and dataset, to refuse an exact request whose rows differ from an earlier one's by fewer
      than ``min_cohort_size`` rows (two answers differing by one person); 0 turns it off.

    As a model owner: ``models`` maps a model's name to its :class:`ModelPolicy`; a model not
    listed gets the defaults (:meth:`model`).
    """

    allowed_columns: list[str]
    allowed_analysts: list[str]
    min_cohort_size: int = 10
    epsilon: float = 1.0
    delta: float = 1e-6
    columns_by_computation: dict[str, list[str]] = field(default_factory=dict)
    require_dp: bool = True
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    dataset: str | None = None
    min_parties: int = 2
    min_flood_bits: int = 16
    max_released_values: int = DEFAULT_MAX_RELEASED_VALUES
    max_inference_rows: int = DEFAULT_MAX_INFERENCE_ROWS
    max_session_cpu_seconds: float = DEFAULT_MAX_SESSION_CPU_SECONDS
    max_request_memory_mb: float = DEFAULT_MAX_REQUEST_MEMORY_MB
    min_cell_size: int = DEFAULT_MIN_CELL_SIZE
    exact_quantile_margin: float = DEFAULT_EXACT_QUANTILE_MARGIN
    exact_history: int = DEFAULT_EXACT_HISTORY
    models: dict[str, ModelPolicy] = field(default_factory=dict)

    def model(self, name: str) -> ModelPolicy:
        """The policy of the model called ``name`` (the defaults if it is not listed)."""
        return self.models.get(name) or ModelPolicy()

    def columns_for(self, computation: str) -> list[str]:
        """The columns ``computation`` may read: ``allowed_columns`` plus its own extras."""
        extra = self.columns_by_computation.get(computation, [])
        return list(self.allowed_columns) + [c for c in extra if c not in self.allowed_columns]

    def all_columns(self) -> list[str]:
        """Every column some computation may read (what ``Describe`` lists)."""
        out = list(self.allowed_columns)
        for cols in self.columns_by_computation.values():
            out += [c for c in cols if c not in out]
        return out


@dataclass
class PartyConfig:
    """Everything a party node needs to start.

    ``federation_path`` is the federation file it was loaded from (``None`` when the federation
    is embedded in the party file).
    """

    name: str
    host: str
    port: int
    tls: TLSFiles
    data: DataSourceConfig
    policy: PolicyConfig
    database: Path
    federation: FederationConfig
    federation_path: Path | None = None
    at_rest_key: Path | None = None

    @property
    def at_rest_key_path(self) -> Path:
        """The AES-256-GCM key file for what the party writes to disk (predictions, models):
        ``at_rest_key`` if set, else ``<database>.atrest-key`` (created 0600 at first start)."""
        if self.at_rest_key is not None:
            return self.at_rest_key
        return self.database.with_name(self.database.name + ".atrest-key")


@dataclass
class CoordinatorConfig:
    """Everything the coordinator needs. ``dealer`` names a separate dealer node, or ``None``
    when the coordinator also acts as the dealer (the default)."""

    name: str
    host: str
    port: int
    tls: TLSFiles
    database: Path
    federation: FederationConfig
    federation_path: Path | None = None
    dealer: str | None = None
    session_timeout: float = 60.0


@dataclass
class DealerConfig:
    """Everything a separate dealer node needs."""

    name: str
    host: str
    port: int
    tls: TLSFiles
    federation: FederationConfig
    federation_path: Path | None = None


AnyConfig = FederationConfig | PartyConfig | CoordinatorConfig | DealerConfig


#: The computations a policy can name in ``columns_by_computation``: every statistic of
#: :mod:`smpc.stats`, and ``predict`` (the features of an inference run on the party's rows).
POLICY_COMPUTATIONS = ("count", "sum", "mean", "var", "std", "cov", "corr", "histogram",
                       "quantiles", "linreg", "predict", "prediction-key")
