"""Federation, party, coordinator and dealer configuration: dataclasses stored as JSON files.

Guarantees of the loaders (:func:`load_federation`, :func:`load_party_config`,
:func:`load_coordinator_config`, :func:`load_dealer_config`, :func:`load_config`):

* every problem raises :class:`ConfigError` (a ``ValueError``) whose message is one sentence naming
  the file and the field, e.g. ``/etc/smpc/party.json: field 'listen.port' must be an integer from
  0 to 65535, got 70000.``; nothing is silently defaulted from a malformed value, and unknown
  fields are errors (a typo in a policy must not widen it);
* relative paths are resolved against the directory of the file that contains them (``~`` is
  expanded); loaded configs hold absolute paths;
* with ``check_files=True`` (the default) every referenced file exists, the database's directory
  exists, and private-key files are not accessible to group or others;
* cross-references hold: a party/coordinator/dealer config names a node of its federation with
  the matching role, a coordinator's ``dealer`` is a dealer node, every analyst a policy allows is
  in the federation's ``analysts`` list, node names (and analyst names) are unique, and no two
  nodes share a host:port.

The federation config is the **allow-list**: :meth:`FederationConfig.authorize` is the check every
server applies to the identity of each caller (see ``parties.tls.peer_identity``), and every
client applies to each server (:mod:`parties.transport.pinning`). Removing a node from it
removes that node; pinning ``fingerprint`` on an entry accepts only that one certificate;
``revoked`` lists certificate fingerprints refused everywhere. A loaded federation carries a
:class:`~parties.config.watch.FederationWatch` on the file it came from, so a running node
reloads it when it changes (:meth:`FederationConfig.refresh`).
"""

from __future__ import annotations

import codecs
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from parties.config.model import (
    _SUFFIX_FORMATS,
    CONFIG_VERSION,
    DATA_ENGINES,
    DATA_FORMATS,
    DEFAULT_ENGINE,
    DEFAULT_EXACT_HISTORY,
    DEFAULT_EXACT_QUANTILE_MARGIN,
    DEFAULT_MAX_INFERENCE_ROWS,
    DEFAULT_MAX_RELEASED_VALUES,
    DEFAULT_MAX_REQUEST_MEMORY_MB,
    DEFAULT_MAX_SESSION_CPU_SECONDS,
    DEFAULT_MIN_CELL_SIZE,
    MODEL_POLICY_FIELDS,
    POLICY_COMPUTATIONS,
    SPARK_FIXED_CONF,
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
from parties.config.typed_reader import _MISSING, _abs, _got, _read_json, _Reader, _type_name
from parties.config.watch import FederationWatch
from parties.pki.certs import load_certificate, load_private_key
from parties.pki.identity import (
    NODE_ROLES,
    PKIError,
    verify_node_certificate,
)


def _check_header(r: _Reader, d: Mapping[str, Any], kind: str) -> None:
    if "kind" in d and d["kind"] != kind:
        raise r.error("kind", f"must be {kind!r} for this file, got {d['kind']!r}")
    if "version" in d and d["version"] != CONFIG_VERSION:
        raise r.error("version", f"must be {CONFIG_VERSION}, got {d['version']!r}")


_FED_FIELDS = ("kind", "version", "name", "ca_cert", "nodes", "analysts", "revoked")


_NODE_FIELDS = ("name", "role", "host", "port", "fingerprint")


_ANALYST_FIELDS = ("name", "fingerprint")


def _parse_federation(r: _Reader, raw: Any, prefix: str | None) -> FederationConfig:
    d = r.obj(raw, prefix, _FED_FIELDS)
    if prefix is None:
        _check_header(r, d, "federation")

    def f(key: str) -> str:
        return key if prefix is None else f"{prefix}.{key}"

    name = r.get(d, "name", prefix, r.name)
    ca_cert = r.get(d, "ca_cert", prefix, r.existing_file)
    raw_nodes = r.get(d, "nodes", prefix, lambda v, fld: v)
    if not isinstance(raw_nodes, list):
        raise r.error(f("nodes"), f"must be a list of node objects, got {_type_name(raw_nodes)}")
    nodes: list[NodeEntry] = []
    names: dict[str, str] = {}
    addresses: dict[tuple[str, int], str] = {}
    for i, item in enumerate(raw_nodes):
        p = f"{f('nodes')}[{i}]"
        nd = r.obj(item, p, _NODE_FIELDS)
        node_name = r.get(nd, "name", p, r.name)
        role = nd.get("role", _MISSING)
        if role == "analyst":
            raise r.error(f"{p}.role", "is 'analyst', but analysts belong in the 'analysts' list")
        role = r.get(nd, "role", p, r.choice(NODE_ROLES))
        host = r.get(nd, "host", p, r.host)
        port = r.get(nd, "port", p, r.port)
        fp = r.get(nd, "fingerprint", p, r.fingerprint, None)
        if node_name in names:
            raise r.error(
                f"{p}.name",
                f"duplicates node name {node_name!r} (already used by {names[node_name]})",
            )
        if (host.lower(), port) in addresses:
            raise r.error(
                f"{p}.port",
                f"duplicates address {host}:{port} (already used by "
                f"{addresses[(host.lower(), port)]})",
            )
        names[node_name] = p
        addresses[(host.lower(), port)] = p
        nodes.append(NodeEntry(node_name, role, host, port, fp))
    raw_analysts = r.get(d, "analysts", prefix, lambda v, fld: v, [])
    if not isinstance(raw_analysts, list):
        raise r.error(
            f("analysts"), f"must be a list of analyst objects, got {_type_name(raw_analysts)}"
        )
    analysts: list[AnalystEntry] = []
    for i, item in enumerate(raw_analysts):
        p = f"{f('analysts')}[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        ad = r.obj(item, p, _ANALYST_FIELDS)
        a_name = r.get(ad, "name", p, r.name)
        fp = r.get(ad, "fingerprint", p, r.fingerprint, None)
        if a_name in names:
            raise r.error(
                f"{p}.name", f"duplicates name {a_name!r} (already used by {names[a_name]})"
            )
        names[a_name] = p
        analysts.append(AnalystEntry(a_name, fp))
    raw_revoked = r.get(d, "revoked", prefix, lambda v, fld: v, [])
    if not isinstance(raw_revoked, list):
        raise r.error(f("revoked"), f"must be a list of SHA-256 fingerprints, got "
                                    f"{_type_name(raw_revoked)}")
    revoked: list[str] = []
    for i, item in enumerate(raw_revoked):
        fp = r.fingerprint(item, f"{f('revoked')}[{i}]")
        if fp in revoked:
            raise r.error(f"{f('revoked')}[{i}]", f"repeats {fp!r}")
        revoked.append(fp)
    return FederationConfig(name=name, ca_cert=ca_cert, nodes=nodes, analysts=analysts,
                            revoked=revoked)


def _parse_federation_ref(r: _Reader, d: Mapping[str, Any]) -> tuple[FederationConfig, Path | None]:
    raw = r.get(d, "federation", None, lambda v, fld: v)
    if isinstance(raw, str):
        fed_path = r.path(raw, "federation")
        if not fed_path.is_file():
            raise r.error("federation", f"names a federation file that does not exist: {fed_path}")
        sub = _Reader(fed_path, r.check_files)
        return _parse_federation(sub, _read_json(fed_path), None), fed_path
    if isinstance(raw, dict):
        return _parse_federation(r, raw, "federation"), None
    raise r.error("federation", f"must be a file path or an embedded object, got {_type_name(raw)}")


def _own_entry(r: _Reader, fed: FederationConfig, name: str, role: str) -> NodeEntry:
    for n in fed.nodes:
        if n.name == name:
            if n.role != role:
                raise r.error("name", f"names node {name!r}, whose federation role is {n.role!r}")
            return n
    raise r.error(
        "name",
        f"names {name!r}, which is not a {role} node of federation {fed.name!r} "
        f"(nodes: {', '.join(x.name for x in fed.nodes) or 'none'})",
    )


def _parse_listen(r: _Reader, d: Mapping[str, Any], own: NodeEntry) -> tuple[str, int]:
    raw = d.get("listen")
    if raw is None:
        return own.host, own.port
    ld = r.obj(raw, "listen", ("host", "port"))
    host = r.get(ld, "host", "listen", r.host, own.host)
    port = r.get(ld, "port", "listen", r.listen_port, own.port)
    return host, port


def _parse_tls(
    r: _Reader, d: Mapping[str, Any], fed: FederationConfig, name: str, role: str
) -> TLSFiles:
    td = r.obj(r.get(d, "tls", None, lambda v, fld: v), "tls", ("cert", "key", "ca"))
    files = TLSFiles(
        cert=r.get(td, "cert", "tls", r.existing_file),
        key=r.get(td, "key", "tls", r.private_key_file),
        ca=r.get(td, "ca", "tls", r.existing_file, fed.ca_cert),
    )
    if r.check_files:
        _check_credentials(r, files, fed, name, role)
    return files


def _check_credentials(
    r: _Reader, files: TLSFiles, fed: FederationConfig, name: str, role: str
) -> None:
    """The certificate is a CA-signed one for this node, and the key is its key."""
    try:
        cert = load_certificate(files.cert)
    except PKIError:
        raise r.error("tls.cert", f"is not a PEM certificate: {files.cert}") from None
    try:
        ca = load_certificate(files.ca)
    except PKIError:
        raise r.error("tls.ca", f"is not a PEM certificate: {files.ca}") from None
    try:
        ident = verify_node_certificate(cert, ca)
    except PKIError as exc:
        msg = str(exc).rstrip(".")
        raise r.error(
            "tls.cert", f"is not a valid node certificate of {files.ca} ({msg})"
        ) from None
    if (ident.name, ident.role) != (name, role):
        raise r.error(
            "tls.cert",
            f"is a certificate for {ident.name!r} ({ident.role}), not for {name!r} ({role})",
        )
    if ident.federation != fed.name:
        raise r.error(
            "tls.cert",
            f"belongs to federation {ident.federation!r}, not {fed.name!r}",
        )
    try:
        key = load_private_key(files.key)
    except PKIError:
        raise r.error("tls.key", f"is not an unencrypted EC private key: {files.key}") from None
    if key.public_key() != cert.public_key():
        raise r.error("tls.key", f"is not the private key of certificate {files.cert}")


#: Characters a CSV delimiter may not be: they occur in numbers, dates or quoting.
_NOT_DELIMITERS = frozenset("\"'\r\n.-+:_ ")


def _delimiter(r: _Reader) -> Callable[[Any, str], str]:
    def conv(v: Any, fld: str) -> str:
        if not isinstance(v, str) or len(v) != 1 or v.isalnum() or v in _NOT_DELIMITERS:
            raise r.error(fld, "must be one character such as ',' ';' '|' or a tab, not a "
                          "letter, a digit, a quote, a space, '.', '-', '+', ':' or '_', got "
                          f"{_got(v)}")
        return v

    return conv


def _encoding(r: _Reader) -> Callable[[Any, str], str]:
    def conv(v: Any, fld: str) -> str:
        if not isinstance(v, str):
            raise r.error(fld, f"must be the name of a text encoding, got {_got(v)}")
        try:  # the check of parties.data.csvfile.text_encoding (config may not import data)
            info = codecs.lookup(v)
            "a".encode(info.name)
            ok = getattr(info, "_is_text_encoding", True)
        except LookupError:
            ok = False
        if not ok:
            raise r.error(fld, f"must be the name of a text encoding such as utf-8, cp1252 or "
                          f"latin-1, got {v!r}")
        return v

    return conv


def _parse_data(r: _Reader, d: Mapping[str, Any]) -> DataSourceConfig:
    dd = r.obj(r.get(d, "data", None, lambda v, fld: v), "data",
               ("path", "format", "delimiter", "encoding", "decimal", "engine", "table",
                "memory_limit", "threads", "dsn", "password_file", "key",
                "statement_timeout_ms", "master", "spark_conf"))
    engine = r.get(dd, "engine", "data", r.choice(DATA_ENGINES), DEFAULT_ENGINE)
    if engine == "postgresql":
        return _parse_database(r, dd)
    if engine == "spark":
        return _parse_spark(r, dd)
    for key in ("master", "spark_conf"):
        if key in dd:
            raise r.error(f"data.{key}", "applies only to engine 'spark'")
    for key in ("dsn", "password_file", "key", "statement_timeout_ms"):
        if key in dd:
            raise r.error(f"data.{key}", "applies only to engine 'postgresql'")
    path = r.get(dd, "path", "data", r.existing_file)
    fmt = r.get(dd, "format", "data", r.choice(DATA_FORMATS), None)
    if fmt is None:
        fmt = _SUFFIX_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise r.error(
                "data.format",
                f"is required because {path.name!r} does not end in .csv, .parquet or .pq",
            )
    delimiter = r.get(dd, "delimiter", "data", _delimiter(r), None)
    encoding = r.get(dd, "encoding", "data", _encoding(r), None)
    decimal = r.get(dd, "decimal", "data", r.choice((".", ",")), ".")
    if fmt != "csv":
        for key in ("delimiter", "encoding", "decimal"):
            if key in dd:
                raise r.error(f"data.{key}", f"applies only to CSV files, not {fmt}")
    if delimiter is not None and delimiter == decimal:
        raise r.error("data.delimiter", f"must differ from data.decimal ({decimal!r})")
    table = r.get(dd, "table", "data", r.string, None)
    memory_limit = r.get(dd, "memory_limit", "data", _memory_limit(r), "1GB")
    threads = r.get(dd, "threads", "data", r.integer_range(1, 1024), None)
    if fmt == "duckdb" and engine != "duckdb":
        raise r.error("data.engine", "must be 'duckdb' to read a DuckDB database file")
    if fmt == "duckdb" and table is None:
        raise r.error("data.table", "is required: the table or view of the DuckDB file that "
                      "holds the rows")
    if table is not None and fmt != "duckdb":
        raise r.error("data.table", f"applies only to a DuckDB database file, not {fmt}")
    if engine == "memory":
        for key in ("memory_limit", "threads"):
            if key in dd:
                raise r.error(f"data.{key}", "applies only to engine 'duckdb'")
    return DataSourceConfig(path=path, format=fmt, delimiter=delimiter, encoding=encoding,
                            decimal=decimal, engine=engine, table=table,
                            memory_limit=memory_limit, threads=threads)


def _parse_database(r: _Reader, dd: Mapping[str, Any]) -> DataSourceConfig:
    """``engine = "postgresql"``: a connection string and a table, no file."""
    for key in ("path", "format", "delimiter", "encoding", "decimal", "memory_limit",
                "threads", "master", "spark_conf"):
        if key in dd:
            raise r.error(f"data.{key}", "does not apply to engine 'postgresql' (its rows are "
                          "data.table of the database data.dsn)")
    dsn = r.get(dd, "dsn", "data", r.string)
    if "password" in dsn.lower():
        raise r.error("data.dsn", "must not hold a password: put it in data.password_file "
                      "(mode 0600)")
    return DataSourceConfig(
        path=None, format="postgresql", engine="postgresql", dsn=dsn,
        table=r.get(dd, "table", "data", r.string),
        password_file=r.get(dd, "password_file", "data", r.password_file, None),
        key=r.get(dd, "key", "data", r.string, None),
        statement_timeout_ms=r.get(dd, "statement_timeout_ms", "data",
                                   r.integer_range(100, 86_400_000), 60_000))


#: A Spark master URL (parties.data.sql.spark checks the same): local mode or a cluster manager.
_SPARK_MASTER = re.compile(r"local(\[(\*|[1-9][0-9]{0,3})(,[1-9][0-9]{0,3})?\])?|"
                           r"(spark|k8s|mesos)://\S+|yarn")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")


def _parse_spark(r: _Reader, dd: Mapping[str, Any]) -> DataSourceConfig:
    """``engine = "spark"``: a table of the Spark catalog or Parquet paths, a master and
    settings; no file of the memory engines' kinds."""
    for key in ("delimiter", "encoding", "decimal", "memory_limit", "threads", "dsn",
                "password_file", "statement_timeout_ms"):
        if key in dd:
            raise r.error(f"data.{key}", "does not apply to engine 'spark' (its rows are "
                          "data.table of the Spark catalog or the Parquet files of data.path)")
    table = r.get(dd, "table", "data", r.string, None)
    if table is not None and (any(not p.strip() for p in table.split(".")) or "\x00" in table):
        raise r.error("data.table", f"must be a table name such as lake.visits, got {table!r}")
    paths = r.get(dd, "path", "data", _spark_paths(r), None)
    if table is not None and paths is not None:
        raise r.error("data.path", "cannot be given with data.table: the rows are one or the "
                      "other")
    if table is None and paths is None:
        raise r.error("data.table", "is required with engine 'spark' unless data.path names "
                      "Parquet files")
    if table is not None and "format" in dd:
        raise r.error("data.format", "applies only to data.path (Parquet files)")
    fmt = r.get(dd, "format", "data", r.choice(("parquet",)), "parquet")
    master = r.get(dd, "master", "data", r.string, "local[*]")
    if not _SPARK_MASTER.fullmatch(master):
        raise r.error("data.master", f"must be a Spark master such as local[*], "
                      f"spark://host:7077 or yarn, got {master!r}")
    return DataSourceConfig(
        path=None, format="spark" if table is not None else fmt, engine="spark", table=table,
        paths=tuple(paths or ()), key=r.get(dd, "key", "data", r.string, None), master=master,
        spark_conf=r.get(dd, "spark_conf", "data", _spark_conf(r), {}))


def _spark_paths(r: _Reader) -> Callable[[Any, str], list[str]]:
    """One path or a list: a URI (``s3a://``, ``hdfs://`` ..) as written, else a local path
    resolved against the config's directory that exists (unless it is a glob)."""
    def conv(v: Any, fld: str) -> list[str]:
        items = [v] if isinstance(v, str) else v
        if not isinstance(items, list) or not items:
            raise r.error(fld, f"must be a path or a non-empty list of paths, got {_got(v)}")
        out: list[str] = []
        for i, item in enumerate(items):
            at = fld if isinstance(v, str) else f"{fld}[{i}]"
            s = r.string(item, at)
            if _URI.fullmatch(s):
                out.append(s)
                continue
            p = r.path(s, at)
            if r.check_files and not any(c in s for c in "*?[{") and not p.exists():
                raise r.error(at, f"names a path that does not exist: {p}")
            out.append(str(p))
        return out

    return conv


def _spark_conf(r: _Reader) -> Callable[[Any, str], dict[str, str]]:
    def conv(v: Any, fld: str) -> dict[str, str]:
        if not isinstance(v, dict):
            raise r.error(fld, f"must be an object of Spark settings, got {_got(v)}")
        out: dict[str, str] = {}
        for k, value in v.items():
            if not k.startswith("spark.") or len(k) == len("spark."):
                raise r.error(f"{fld}.{k}", "is not a Spark setting: its name must start with "
                              "'spark.'")
            if k == "spark.master":
                raise r.error(f"{fld}.{k}", "is set by data.master")
            if k in SPARK_FIXED_CONF:
                raise r.error(f"{fld}.{k}", "is set by the node itself (the generated SQL "
                              "relies on it)")
            if not isinstance(value, str):
                raise r.error(f"{fld}.{k}", f"must be a string, got {_got(value)}")
            out[k] = value
        return out

    return conv


_MEMORY_LIMIT = re.compile(r"[1-9][0-9]{0,5}(\.[0-9]{1,3})?\s?(KB|MB|GB|TB|KiB|MiB|GiB|TiB)")


def _memory_limit(r: _Reader) -> Callable[[Any, str], str]:
    def conv(v: Any, fld: str) -> str:
        if not isinstance(v, str) or not _MEMORY_LIMIT.fullmatch(v.strip()):
            raise r.error(fld, f"must be a size such as '512MB' or '2GB', got {_got(v)}")
        return v.strip()

    return conv


_POLICY_FIELDS = (
    "allowed_columns", "allowed_analysts", "min_cohort_size", "epsilon", "delta",
    "columns_by_computation", "require_dp", "bounds", "dataset", "min_parties",
    "min_flood_bits", "max_released_values", "max_inference_rows", "max_session_cpu_seconds",
    "max_request_memory_mb", "min_cell_size", "exact_quantile_margin", "exact_history",
    "models",
)  # fmt: skip


def _bounds_pair(r: _Reader, pair: Any, fld: str) -> tuple[float, float]:
    ok = isinstance(pair, list) and len(pair) == 2 and all(
        isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
        for x in pair)
    if not ok or not float(pair[0]) < float(pair[1]):
        raise r.error(fld, f"must be a pair [lo, hi] of finite numbers with lo < hi, got "
                           f"{_got(pair) if not isinstance(pair, list) else pair!r}")
    return float(pair[0]), float(pair[1])


def _parse_model_policies(r: _Reader, pd: Mapping[str, Any], known: set[str]
                          ) -> dict[str, ModelPolicy]:
    """``policy.models``: ``{name: {field: value}}``, each field optional (defaults: safe)."""
    raw = r.get(pd, "models", "policy", lambda v, fld: v, {})
    if not isinstance(raw, dict):
        raise r.error("policy.models", f"must be an object mapping model names to their "
                                       f"policies, got {_type_name(raw)}")
    out: dict[str, ModelPolicy] = {}
    base = ModelPolicy()
    for name, doc in raw.items():
        f = f"policy.models.{name}"
        md = r.obj(doc, f, MODEL_POLICY_FIELDS)
        analysts = md.get("allowed_analysts")
        if analysts is not None:
            analysts = r.string_list(analysts, f"{f}.allowed_analysts")
            for i, a in enumerate(analysts):
                if a not in known:
                    raise r.error(f"{f}.allowed_analysts[{i}]",
                                  f"names {a!r}, who is not an analyst of the federation")
        fb_raw = r.get(md, "feature_bounds", f, lambda v, fld: v, {})
        if not isinstance(fb_raw, dict):
            raise r.error(f"{f}.feature_bounds", "must be an object mapping features to "
                                                 f"[lo, hi], got {_type_name(fb_raw)}")
        out[name] = ModelPolicy(
            allowed_analysts=None if analysts is None else tuple(analysts),
            max_rows_per_request=r.get(md, "max_rows_per_request", f, r.integer_min(1),
                                       base.max_rows_per_request),
            max_requests_per_day=r.get(md, "max_requests_per_day", f, r.integer_min(1),
                                       base.max_requests_per_day),
            prediction_budget_rows=r.get(md, "prediction_budget_rows", f, r.integer_min(1),
                                         base.prediction_budget_rows),
            min_distinct_rows=r.get(md, "min_distinct_rows", f, r.integer_min(1),
                                    base.min_distinct_rows),
            feature_bounds={c: _bounds_pair(r, p, f"{f}.feature_bounds.{c}")
                            for c, p in fb_raw.items()},
            max_sparse_row_fraction=r.get(md, "max_sparse_row_fraction", f,
                                          r.number(0, 1, False, False),
                                          base.max_sparse_row_fraction),
            prediction_noise_std=r.get(md, "prediction_noise_std", f,
                                       r.number(0, 1e6, False, False),
                                       base.prediction_noise_std))
    return out


def _parse_policy(r: _Reader, d: Mapping[str, Any], fed: FederationConfig) -> PolicyConfig:
    pd = r.obj(r.get(d, "policy", None, lambda v, fld: v), "policy", _POLICY_FIELDS)
    cols = r.get(pd, "allowed_columns", "policy", r.string_list)
    analysts = r.get(pd, "allowed_analysts", "policy", r.string_list)
    known = {a.name for a in fed.analysts}
    for i, a in enumerate(analysts):
        if a not in known:
            raise r.error(
                f"policy.allowed_analysts[{i}]",
                f"names {a!r}, who is not in the analysts list of federation {fed.name!r} "
                f"(analysts: {', '.join(sorted(known)) or 'none'})",
            )
    by_comp_raw = r.get(pd, "columns_by_computation", "policy", lambda v, fld: v, {})
    fld = "policy.columns_by_computation"
    if not isinstance(by_comp_raw, dict):
        raise r.error(fld, f"must be an object mapping computations to column lists, got "
                           f"{_type_name(by_comp_raw)}")
    by_comp: dict[str, list[str]] = {}
    for comp, comp_cols in by_comp_raw.items():
        if comp not in POLICY_COMPUTATIONS:
            raise r.error(f"{fld}.{comp}", f"is not a computation (expected one of: "
                                           f"{', '.join(POLICY_COMPUTATIONS)})")
        by_comp[comp] = r.string_list(comp_cols, f"{fld}.{comp}")
    everywhere = set(cols).union(*by_comp.values())
    bounds_raw = r.get(pd, "bounds", "policy", lambda v, fld: v, {})
    if not isinstance(bounds_raw, dict):
        raise r.error("policy.bounds", f"must be an object mapping columns to [lo, hi], got "
                                       f"{_type_name(bounds_raw)}")
    bounds: dict[str, tuple[float, float]] = {}
    for col, pair in bounds_raw.items():
        bf = f"policy.bounds.{col}"
        if col not in everywhere:
            raise r.error(bf, "names a column this policy does not allow")
        bounds[col] = _bounds_pair(r, pair, bf)
    return PolicyConfig(
        allowed_columns=cols,
        allowed_analysts=analysts,
        min_cohort_size=r.get(pd, "min_cohort_size", "policy", r.integer_min(1), 10),
        epsilon=r.get(pd, "epsilon", "policy", r.number(0, math.inf, True, True), 1.0),
        delta=r.get(pd, "delta", "policy", r.number(0, 1, True, True), 1e-6),
        columns_by_computation=by_comp,
        require_dp=r.get(pd, "require_dp", "policy", r.boolean, True),
        bounds=bounds,
        dataset=r.get(pd, "dataset", "policy", r.name, None),
        min_parties=r.get(pd, "min_parties", "policy", r.integer_min(2), 2),
        min_flood_bits=r.get(pd, "min_flood_bits", "policy", r.integer_range(0, 40), 16),
        max_released_values=r.get(pd, "max_released_values", "policy", r.integer_min(1),
                                  DEFAULT_MAX_RELEASED_VALUES),
        max_inference_rows=r.get(pd, "max_inference_rows", "policy", r.integer_min(1),
                                 DEFAULT_MAX_INFERENCE_ROWS),
        max_session_cpu_seconds=r.get(pd, "max_session_cpu_seconds", "policy",
                                      r.number(0, math.inf, True, True),
                                      DEFAULT_MAX_SESSION_CPU_SECONDS),
        max_request_memory_mb=r.get(pd, "max_request_memory_mb", "policy",
                                    r.number(0, math.inf, True, True),
                                    DEFAULT_MAX_REQUEST_MEMORY_MB),
        min_cell_size=r.get(pd, "min_cell_size", "policy", r.integer_min(1),
                            DEFAULT_MIN_CELL_SIZE),
        exact_quantile_margin=r.get(pd, "exact_quantile_margin", "policy",
                                    r.number(0, 0.5, False, True),
                                    DEFAULT_EXACT_QUANTILE_MARGIN),
        exact_history=r.get(pd, "exact_history", "policy", r.integer_range(0, 1_000_000),
                            DEFAULT_EXACT_HISTORY),
        models=_parse_model_policies(r, pd, known),
    )


_PARTY_FIELDS = (
    "kind", "version", "name", "listen", "tls", "data", "policy", "database", "federation",
    "at_rest_key",
)  # fmt: skip


_COORD_FIELDS = (
    "kind", "version", "name", "listen", "tls", "database", "federation", "dealer",
    "session_timeout",
)  # fmt: skip


_DEALER_FIELDS = ("kind", "version", "name", "listen", "tls", "federation")


def _parse_party(r: _Reader, raw: Any) -> PartyConfig:
    d = r.obj(raw, None, _PARTY_FIELDS)
    _check_header(r, d, "party")
    name = r.get(d, "name", None, r.name)
    fed, fed_path = _parse_federation_ref(r, d)
    own = _own_entry(r, fed, name, "party")
    host, port = _parse_listen(r, d, own)
    return PartyConfig(
        name=name,
        host=host,
        port=port,
        tls=_parse_tls(r, d, fed, name, "party"),
        data=_parse_data(r, d),
        policy=_parse_policy(r, d, fed),
        database=r.get(d, "database", None, r.db_path),
        federation=fed,
        federation_path=fed_path,
        at_rest_key=r.get(d, "at_rest_key", None, r.secret_file, None),
    )


def _parse_coordinator(r: _Reader, raw: Any) -> CoordinatorConfig:
    d = r.obj(raw, None, _COORD_FIELDS)
    _check_header(r, d, "coordinator")
    name = r.get(d, "name", None, r.name)
    fed, fed_path = _parse_federation_ref(r, d)
    own = _own_entry(r, fed, name, "coordinator")
    host, port = _parse_listen(r, d, own)
    dealer = r.get(d, "dealer", None, r.name, None)
    if dealer is not None and dealer not in {n.name for n in fed.nodes_with_role("dealer")}:
        raise r.error(
            "dealer",
            f"names {dealer!r}, which is not a dealer node of federation {fed.name!r} "
            f"(dealers: {', '.join(n.name for n in fed.nodes_with_role('dealer')) or 'none'})",
        )
    return CoordinatorConfig(
        name=name,
        host=host,
        port=port,
        tls=_parse_tls(r, d, fed, name, "coordinator"),
        database=r.get(d, "database", None, r.db_path),
        federation=fed,
        federation_path=fed_path,
        dealer=dealer,
        session_timeout=r.get(d, "session_timeout", None, r.number(0, 86400, True, False), 60.0),
    )


def _parse_dealer(r: _Reader, raw: Any) -> DealerConfig:
    d = r.obj(raw, None, _DEALER_FIELDS)
    _check_header(r, d, "dealer")
    name = r.get(d, "name", None, r.name)
    fed, fed_path = _parse_federation_ref(r, d)
    own = _own_entry(r, fed, name, "dealer")
    host, port = _parse_listen(r, d, own)
    return DealerConfig(
        name=name,
        host=host,
        port=port,
        tls=_parse_tls(r, d, fed, name, "dealer"),
        federation=fed,
        federation_path=fed_path,
    )


_PARSERS: dict[str, Callable[[_Reader, Any], Any]] = {
    "federation": lambda r, raw: _parse_federation(r, raw, None),
    "party": _parse_party,
    "coordinator": _parse_coordinator,
    "dealer": _parse_dealer,
}


def _load(path: str | os.PathLike[str], kind: str, check_files: bool) -> Any:
    p = _abs(path)
    return _watched(_PARSERS[kind](_Reader(p, check_files), _read_json(p)), p, check_files)


def _reparse_federation(path: Path, check_files: bool, embedded: bool) -> FederationConfig:
    raw = _read_json(path)
    r = _Reader(path, check_files)
    if not embedded:
        return _parse_federation(r, raw, None)
    if not isinstance(raw, dict) or not isinstance(raw.get("federation"), dict):
        raise r.error("federation", "is no longer an embedded federation object")
    return _parse_federation(r, raw["federation"], "federation")


def _watched(cfg: Any, path: Path, check_files: bool) -> Any:
    """Attach a :class:`FederationWatch` to the federation of a config loaded from ``path``:
    the federation file it names, or ``path`` itself (a federation file, or a node file with an
    embedded federation)."""
    if isinstance(cfg, FederationConfig):
        fed, source, embedded = cfg, path, False
    else:
        fed = cfg.federation
        source = cfg.federation_path or path
        embedded = cfg.federation_path is None
    fed._watch = FederationWatch(
        source, lambda: _reparse_federation(source, check_files, embedded))
    return cfg


def load_federation(path: str | os.PathLike[str], *, check_files: bool = True) -> FederationConfig:
    """Load and validate a federation file (``"kind": "federation"``)."""
    return _load(path, "federation", check_files)


def load_party_config(path: str | os.PathLike[str], *, check_files: bool = True) -> PartyConfig:
    """Load and validate a party file (``"kind": "party"``) and the federation it names."""
    return _load(path, "party", check_files)


def load_coordinator_config(
    path: str | os.PathLike[str], *, check_files: bool = True
) -> CoordinatorConfig:
    """Load and validate a coordinator file (``"kind": "coordinator"``)."""
    return _load(path, "coordinator", check_files)


def load_dealer_config(path: str | os.PathLike[str], *, check_files: bool = True) -> DealerConfig:
    """Load and validate a dealer file (``"kind": "dealer"``)."""
    return _load(path, "dealer", check_files)


def load_config(path: str | os.PathLike[str], *, check_files: bool = True) -> AnyConfig:
    """Load any config file, dispatching on its required ``kind`` field."""
    p = _abs(path)
    raw = _read_json(p)
    r = _Reader(p, check_files)
    if not isinstance(raw, dict):
        r.obj(raw, None, ())
    kind = raw.get("kind")
    if kind is None:
        raise ConfigError(f"{p}: required field 'kind' is missing.", path=p, field="kind")
    if kind not in _PARSERS:
        raise r.error("kind", f"must be one of {', '.join(_PARSERS)}, got {kind!r}")
    return _watched(_PARSERS[kind](r, raw), p, check_files)
