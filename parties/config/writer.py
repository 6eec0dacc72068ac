"""Saving configs (:func:`save_config`): validated like loading (files are not checked), paths
written relative to the file's directory when they lie inside it, written atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from parties.config.model import (
    CONFIG_VERSION,
    AnyConfig,
    CoordinatorConfig,
    DealerConfig,
    FederationConfig,
    ModelPolicy,
    PartyConfig,
)
from parties.config.reader import _PARSERS, _URI
from parties.config.typed_reader import _abs, _Reader
from parties.pki.files import atomic_write


def _rel(p: Path, base: Path) -> str:
    p = _abs(p)
    try:
        return p.relative_to(base).as_posix()
    except ValueError:
        return str(p)


def _federation_dict(fed: FederationConfig, base: Path, header: bool) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": "federation", "version": CONFIG_VERSION} if header else {}
    d["name"] = fed.name
    d["ca_cert"] = _rel(fed.ca_cert, base)
    nodes = []
    for n in fed.nodes:
        nd: dict[str, Any] = {"name": n.name, "role": n.role, "host": n.host, "port": n.port}
        if n.fingerprint is not None:
            nd["fingerprint"] = n.fingerprint
        nodes.append(nd)
    d["nodes"] = nodes
    d["analysts"] = [
        {"name": a.name}
        if a.fingerprint is None
        else {"name": a.name, "fingerprint": a.fingerprint}
        for a in fed.analysts
    ]
    if fed.revoked:
        d["revoked"] = list(fed.revoked)
    return d


def _node_common(cfg: Any, kind: str, base: Path) -> dict[str, Any]:
    return {
        "kind": kind,
        "version": CONFIG_VERSION,
        "name": cfg.name,
        "listen": {"host": cfg.host, "port": cfg.port},
        "tls": {
            "cert": _rel(cfg.tls.cert, base),
            "key": _rel(cfg.tls.key, base),
            "ca": _rel(cfg.tls.ca, base),
        },
    }


def _model_policy_dict(m: ModelPolicy) -> dict[str, Any]:
    """A model's policy as written: every field, so that what applies is visible."""
    d: dict[str, Any] = {
        "max_rows_per_request": m.max_rows_per_request,
        "max_requests_per_day": m.max_requests_per_day,
        "prediction_budget_rows": m.prediction_budget_rows,
        "min_distinct_rows": m.min_distinct_rows,
        "feature_bounds": {k: list(v) for k, v in m.feature_bounds.items()},
        "max_sparse_row_fraction": m.max_sparse_row_fraction,
        "prediction_noise_std": m.prediction_noise_std,
    }
    if m.allowed_analysts is not None:
        d = {"allowed_analysts": list(m.allowed_analysts), **d}
    return d


def _to_dict(cfg: AnyConfig, base: Path) -> tuple[str, dict[str, Any]]:
    if isinstance(cfg, FederationConfig):
        return "federation", _federation_dict(cfg, base, header=True)
    if isinstance(cfg, PartyConfig):
        kind = "party"
        d = _node_common(cfg, kind, base)
        if cfg.data.engine == "spark":  # a Spark catalog table or Parquet paths
            d["data"] = {"engine": "spark"}
            if cfg.data.table is not None:
                d["data"]["table"] = cfg.data.table
            else:
                paths = [p if _URI.fullmatch(p) else _rel(Path(p), base)
                         for p in cfg.data.paths]
                d["data"]["path"] = paths[0] if len(paths) == 1 else paths
                d["data"]["format"] = cfg.data.format
            d["data"]["master"] = cfg.data.master
            if cfg.data.key is not None:
                d["data"]["key"] = cfg.data.key
            if cfg.data.spark_conf:
                d["data"]["spark_conf"] = dict(cfg.data.spark_conf)
        elif cfg.data.path is None:  # a database: its connection, never a password
            d["data"] = {"engine": cfg.data.engine, "dsn": cfg.data.dsn,
                         "table": cfg.data.table,
                         "statement_timeout_ms": cfg.data.statement_timeout_ms}
            if cfg.data.password_file is not None:
                d["data"]["password_file"] = _rel(cfg.data.password_file, base)
            if cfg.data.key is not None:
                d["data"]["key"] = cfg.data.key
        else:
            d["data"] = {"path": _rel(cfg.data.path, base), "format": cfg.data.format}
        for key in ("delimiter", "encoding"):
            if getattr(cfg.data, key) is not None:
                d["data"][key] = getattr(cfg.data, key)
        if cfg.data.decimal != ".":
            d["data"]["decimal"] = cfg.data.decimal
        d["data"]["engine"] = cfg.data.engine
        if cfg.data.engine == "duckdb":
            d["data"]["memory_limit"] = cfg.data.memory_limit
            for key in ("table", "threads"):
                if getattr(cfg.data, key) is not None:
                    d["data"][key] = getattr(cfg.data, key)
        d["policy"] = {
            "allowed_columns": list(cfg.policy.allowed_columns),
            "allowed_analysts": list(cfg.policy.allowed_analysts),
            "min_cohort_size": cfg.policy.min_cohort_size,
            "epsilon": cfg.policy.epsilon,
            "delta": cfg.policy.delta,
            "require_dp": cfg.policy.require_dp,
            "max_released_values": cfg.policy.max_released_values,
            "max_inference_rows": cfg.policy.max_inference_rows,
            "max_session_cpu_seconds": cfg.policy.max_session_cpu_seconds,
            "max_request_memory_mb": cfg.policy.max_request_memory_mb,
            "min_cell_size": cfg.policy.min_cell_size,
            "exact_quantile_margin": cfg.policy.exact_quantile_margin,
            "exact_history": cfg.policy.exact_history,
        }
        if cfg.policy.columns_by_computation:
            d["policy"]["columns_by_computation"] = {
                k: list(v) for k, v in cfg.policy.columns_by_computation.items()}
        if cfg.policy.bounds:
            d["policy"]["bounds"] = {k: list(v) for k, v in cfg.policy.bounds.items()}
        if cfg.policy.dataset is not None:
            d["policy"]["dataset"] = cfg.policy.dataset
        if cfg.policy.min_parties != 2:
            d["policy"]["min_parties"] = cfg.policy.min_parties
        if cfg.policy.min_flood_bits != 16:
            d["policy"]["min_flood_bits"] = cfg.policy.min_flood_bits
        if cfg.policy.models:
            d["policy"]["models"] = {n: _model_policy_dict(m)
                                     for n, m in cfg.policy.models.items()}
        d["database"] = _rel(cfg.database, base)
        if cfg.at_rest_key is not None:
            d["at_rest_key"] = _rel(cfg.at_rest_key, base)
    elif isinstance(cfg, CoordinatorConfig):
        kind = "coordinator"
        d = _node_common(cfg, kind, base)
        d["database"] = _rel(cfg.database, base)
        d["dealer"] = cfg.dealer
        d["session_timeout"] = cfg.session_timeout
    elif isinstance(cfg, DealerConfig):
        kind = "dealer"
        d = _node_common(cfg, kind, base)
    else:
        raise TypeError(f"cannot save {type(cfg).__name__} as a config file")
    d["federation"] = (
        _rel(cfg.federation_path, base)
        if cfg.federation_path is not None
        else _federation_dict(cfg.federation, base, header=False)
    )
    return kind, d


def save_config(cfg: AnyConfig, path: str | os.PathLike[str], *, overwrite: bool = True) -> Path:
    """Validate ``cfg`` and write it as JSON to ``path`` (atomically, mode 0644).

    A party/coordinator/dealer config with ``federation_path`` refers to that file (save the
    federation separately with ``save_config(fed, federation_path)``); otherwise the federation
    is embedded. Validation is the loader's, without file checks, so a config that saves is one
    that loads (given its files); it raises :class:`ConfigError` naming ``path`` otherwise.
    """
    p = _abs(path)
    kind, d = _to_dict(cfg, p.parent)
    if kind != "federation" and cfg.federation_path is not None:  # type: ignore[union-attr]
        # validate against the in-memory federation, not whatever is on disk now
        d_check = dict(d)
        d_check["federation"] = _federation_dict(cfg.federation, p.parent, header=False)  # type: ignore[union-attr]
    else:
        d_check = d
    _PARSERS[kind](_Reader(p, check_files=False), d_check)
    text = json.dumps(d, indent=2) + "\n"
    atomic_write(p, text.encode("utf-8"), 0o644, overwrite=overwrite)
    return p
