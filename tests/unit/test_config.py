"""Federation / party / coordinator / dealer config files: round trips and every error message."""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from parties import config as C
from parties.pki import certs as pki_certs
from parties.pki.identity import Identity


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fed")
    (d / "certs").mkdir()
    ca = pki_certs.create_ca("demo")
    pki_certs.save_ca(ca, d / "certs" / "ca.pem", d / "certs" / "ca.key")
    for name, role in [("hospital-a", "party"), ("coord", "coordinator"), ("dealer1", "dealer")]:
        cert, key = pki_certs.issue_node_certificate(ca, name, role)
        pki_certs.save_node_credentials(
            cert, key, d / "certs" / f"{name}.pem", d / "certs" / f"{name}.key"
        )
    (d / "data.csv").write_text("age,bmi\n30,22.5\n")
    return d


def federation_dict() -> dict[str, Any]:
    return {
        "kind": "federation",
        "name": "demo",
        "ca_cert": "certs/ca.pem",
        "nodes": [
            {"name": "coord", "role": "coordinator", "host": "127.0.0.1", "port": 50050},
            {"name": "hospital-a", "role": "party", "host": "127.0.0.1", "port": 50051},
            {"name": "hospital-b", "role": "party", "host": "10.0.0.2", "port": 50051},
            {"name": "dealer1", "role": "dealer", "host": "127.0.0.1", "port": 50059},
        ],
        "analysts": ["alice", {"name": "bob"}],
    }


def party_dict() -> dict[str, Any]:
    return {
        "kind": "party",
        "name": "hospital-a",
        "listen": {"host": "0.0.0.0", "port": 50051},
        "tls": {"cert": "certs/hospital-a.pem", "key": "certs/hospital-a.key"},
        "data": {"path": "data.csv"},
        "policy": {
            "allowed_columns": ["age", "bmi"],
            "allowed_analysts": ["alice"],
            "min_cohort_size": 5,
            "epsilon": 2,
            "delta": 1e-7,
        },
        "database": "state/hospital-a.db",
        "federation": "federation.json",
    }


def coordinator_dict() -> dict[str, Any]:
    return {
        "kind": "coordinator",
        "name": "coord",
        "tls": {"cert": "certs/coord.pem", "key": "certs/coord.key", "ca": "certs/ca.pem"},
        "database": "coord.db",
        "federation": "federation.json",
        "dealer": "dealer1",
    }


@pytest.fixture
def fed_dir(pki_dir: Path, tmp_path: Path) -> Path:
    """A fresh config directory: symlinks to the shared certs, data file and a federation."""
    d = tmp_path / "conf"
    d.mkdir()
    (d / "certs").symlink_to(pki_dir / "certs")
    (d / "data.csv").symlink_to(pki_dir / "data.csv")
    (d / "state").mkdir()
    write(d / "federation.json", federation_dict())
    return d


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


# ------------------------------------------------------------------------------ round trips


def test_load_federation_resolves_paths_relative_to_file(
    fed_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # not the config directory
    fed = C.load_federation(fed_dir / "federation.json")
    assert fed.name == "demo"
    assert fed.ca_cert == fed_dir / "certs" / "ca.pem"
    assert [n.name for n in fed.parties] == ["hospital-a", "hospital-b"]
    assert fed.node("hospital-b").address == "10.0.0.2:50051"
    assert fed.analysts == [C.AnalystEntry("alice"), C.AnalystEntry("bob")]
    with pytest.raises(KeyError, match="no node 'zed'"):
        fed.node("zed")


def test_party_config_load_and_round_trip(fed_dir: Path) -> None:
    p = write(fed_dir / "party.json", party_dict())
    cfg = C.load_party_config(p)
    assert (cfg.name, cfg.host, cfg.port) == ("hospital-a", "0.0.0.0", 50051)
    assert cfg.tls.ca == fed_dir / "certs" / "ca.pem"  # defaults to the federation CA
    assert cfg.data == C.DataSourceConfig(fed_dir / "data.csv", "csv")
    assert cfg.policy == C.PolicyConfig(["age", "bmi"], ["alice"], 5, 2.0, 1e-7)
    assert cfg.database == fed_dir / "state" / "hospital-a.db"
    assert cfg.federation_path == fed_dir / "federation.json"
    assert C.load_config(p) == cfg

    C.save_config(cfg, fed_dir / "party2.json")
    saved = json.loads((fed_dir / "party2.json").read_text())
    assert saved["federation"] == "federation.json"
    assert saved["tls"]["key"] == "certs/hospital-a.key"  # relative inside the directory
    assert C.load_party_config(fed_dir / "party2.json") == cfg

    cfg.federation_path = None  # embed the federation instead
    C.save_config(cfg, fed_dir / "party3.json")
    assert isinstance(json.loads((fed_dir / "party3.json").read_text())["federation"], dict)
    assert C.load_config(fed_dir / "party3.json") == cfg


def test_party_policy_defaults_are_strict(fed_dir: Path) -> None:
    cfg = C.load_party_config(write(fed_dir / "party.json", party_dict()))
    p = cfg.policy
    assert p.require_dp is True  # exact results need an explicit "require_dp": false
    assert p.columns_by_computation == {} and p.bounds == {} and p.dataset is None
    assert p.columns_for("mean") == ["age", "bmi"] and p.all_columns() == ["age", "bmi"]
    assert cfg.at_rest_key is None
    assert cfg.at_rest_key_path == fed_dir / "state" / "hospital-a.db.atrest-key"


def test_party_policy_limits_default_round_trip_and_save(fed_dir: Path) -> None:
    """The request limits are optional with the documented defaults, read as given, and
    written by save_config so that the saved file loads to the same limits."""
    cfg = C.load_party_config(write(fed_dir / "party.json", party_dict()))
    p = cfg.policy
    assert (p.max_released_values, p.max_inference_rows, p.max_session_cpu_seconds,
            p.max_request_memory_mb) == (100_000, 1_000_000, 60.0, 1024.0)
    d = party_dict()
    d["policy"].update({"max_released_values": 2500, "max_inference_rows": 7,
                        "max_session_cpu_seconds": 1.5, "max_request_memory_mb": 64})
    cfg = C.load_party_config(write(fed_dir / "party.json", d))
    p = cfg.policy
    assert (p.max_released_values, p.max_inference_rows, p.max_session_cpu_seconds,
            p.max_request_memory_mb) == (2500, 7, 1.5, 64.0)
    C.save_config(cfg, fed_dir / "party2.json")
    saved = json.loads((fed_dir / "party2.json").read_text())["policy"]
    assert {k: saved[k] for k in C.LIMIT_FIELDS} == {
        "max_released_values": 2500, "max_inference_rows": 7, "max_session_cpu_seconds": 1.5,
        "max_request_memory_mb": 64.0}
    assert C.load_party_config(fed_dir / "party2.json") == cfg


def test_party_policy_exact_safeguards_default_round_trip_and_save(fed_dir: Path) -> None:
    """The exact-mode safeguards default to on (cells of fewer than 10 rows sent as 0,
    quantiles within [0.05, 0.95], 1000 row sets remembered), are read as given, and are
    written by save_config (catches a safeguard silently off by default or lost on save)."""
    p = C.load_party_config(write(fed_dir / "party.json", party_dict())).policy
    assert (p.min_cell_size, p.exact_quantile_margin, p.exact_history) == (10, 0.05, 1000)
    d = party_dict()
    d["policy"].update({"min_cell_size": 1, "exact_quantile_margin": 0, "exact_history": 0})
    cfg = C.load_party_config(write(fed_dir / "party.json", d))
    assert (cfg.policy.min_cell_size, cfg.policy.exact_quantile_margin,
            cfg.policy.exact_history) == (1, 0.0, 0)
    C.save_config(cfg, fed_dir / "party2.json")
    saved = json.loads((fed_dir / "party2.json").read_text())["policy"]
    assert {k: saved[k] for k in C.EXACT_FIELDS} == {
        "min_cell_size": 1, "exact_quantile_margin": 0.0, "exact_history": 0}
    assert C.load_party_config(fed_dir / "party2.json") == cfg


def test_party_policy_full_round_trip(fed_dir: Path) -> None:
    d = party_dict()
    d["policy"].update({
        "columns_by_computation": {"histogram": ["zip"], "predict": ["bmi", "weight"]},
        "require_dp": False,
        "bounds": {"age": [0, 120], "zip": [1000, 9999.5]},
        "dataset": "cohort-2024",
    })
    key = fed_dir / "state" / "atrest.key"
    key.write_bytes(b"k" * 32)
    key.chmod(0o600)
    d["at_rest_key"] = "state/atrest.key"
    cfg = C.load_party_config(write(fed_dir / "party.json", d))
    p = cfg.policy
    assert p.columns_by_computation == {"histogram": ["zip"], "predict": ["bmi", "weight"]}
    assert p.columns_for("histogram") == ["age", "bmi", "zip"]
    assert p.columns_for("predict") == ["age", "bmi", "weight"]
    assert p.columns_for("mean") == ["age", "bmi"]
    assert p.all_columns() == ["age", "bmi", "zip", "weight"]
    assert p.require_dp is False and p.dataset == "cohort-2024"
    assert p.bounds == {"age": (0.0, 120.0), "zip": (1000.0, 9999.5)}
    assert cfg.at_rest_key == key and cfg.at_rest_key_path == key
    C.save_config(cfg, fed_dir / "party2.json")
    saved = json.loads((fed_dir / "party2.json").read_text())
    assert saved["at_rest_key"] == "state/atrest.key"
    assert saved["policy"]["bounds"] == {"age": [0.0, 120.0], "zip": [1000.0, 9999.5]}
    assert C.load_party_config(fed_dir / "party2.json") == cfg
    key.chmod(0o640)
    with pytest.raises(C.ConfigError) as err:
        C.load_party_config(fed_dir / "party2.json")
    _assert_one_sentence(err.value, fed_dir / "party2.json",
                         "field 'at_rest_key' names a key file readable by group or others")


def test_party_model_policies_default_safe_and_round_trip(fed_dir: Path) -> None:
    """A model not listed gets the safe defaults (noisy predictions, a budget, plausibility);
    a listed one keeps every field through save and load.  Catches a default that releases
    exact predictions or a writer that drops ``policy.models``."""
    d = party_dict()
    d["policy"]["models"] = {"risk": {"allowed_analysts": [], "max_rows_per_request": 7,
                                      "feature_bounds": {"age": [18, 95]},
                                      "prediction_noise_std": 0.25}}
    p = write(fed_dir / "party.json", d)
    cfg = C.load_party_config(p)
    default = cfg.policy.model("other")
    assert default == C.ModelPolicy() and default.prediction_noise_std > 0
    assert default.prediction_budget_rows < 10**6 and default.min_distinct_rows > 1
    risk = cfg.policy.model("risk")
    assert risk.allowed_analysts == () and risk.max_rows_per_request == 7
    assert risk.feature_bounds == {"age": (18.0, 95.0)} and risk.prediction_noise_std == 0.25
    assert risk.max_requests_per_day == default.max_requests_per_day
    out = fed_dir / "saved.json"
    C.save_config(cfg, out)
    assert C.load_party_config(out).policy.models == cfg.policy.models


def test_coordinator_and_dealer_round_trip(fed_dir: Path) -> None:
    cfg = C.load_coordinator_config(write(fed_dir / "coord.json", coordinator_dict()))
    assert (cfg.host, cfg.port, cfg.dealer, cfg.session_timeout) == (
        "127.0.0.1",
        50050,
        "dealer1",
        60.0,
    )  # listen defaults to the federation entry
    C.save_config(cfg, fed_dir / "coord2.json")
    assert C.load_config(fed_dir / "coord2.json") == cfg

    dealer = {
        "kind": "dealer",
        "name": "dealer1",
        "tls": {"cert": "certs/dealer1.pem", "key": "certs/dealer1.key"},
        "federation": "federation.json",
    }
    dcfg = C.load_config(write(fed_dir / "dealer.json", dealer))
    assert isinstance(dcfg, C.DealerConfig) and dcfg.port == 50059
    C.save_config(dcfg, fed_dir / "dealer2.json")
    assert C.load_dealer_config(fed_dir / "dealer2.json") == dcfg


def test_federation_round_trip_with_pins(fed_dir: Path) -> None:
    fed = C.load_federation(fed_dir / "federation.json")
    pin = "AB:" * 31 + "AB"
    fed.nodes[0] = C.NodeEntry("coord", "coordinator", "::1", 50050, pin)
    C.save_config(fed, fed_dir / "fed2.json")
    again = C.load_federation(fed_dir / "fed2.json")
    assert again.nodes[0].fingerprint == "ab" * 32
    assert again.nodes[0].address == "[::1]:50050"


def test_check_files_false_allows_absent_files(tmp_path: Path) -> None:
    cfg = C.load_federation(write(tmp_path / "f.json", federation_dict()), check_files=False)
    assert cfg.ca_cert == tmp_path / "certs" / "ca.pem"


def test_save_refuses_an_invalid_config(fed_dir: Path) -> None:
    fed = C.load_federation(fed_dir / "federation.json")
    fed.nodes.append(C.NodeEntry("coord", "party", "h", 1))
    with pytest.raises(C.ConfigError, match=r"field 'nodes\[4\]\.name' duplicates node name"):
        C.save_config(fed, fed_dir / "bad.json")
    assert not (fed_dir / "bad.json").exists()


# -------------------------------------------------------------------------- authorisation


def test_authorize_is_the_allow_list(fed_dir: Path) -> None:
    fed = C.load_federation(fed_dir / "federation.json")
    coord = Identity("coord", "coordinator", "demo", "f" * 64)
    assert fed.authorize(coord, ["coordinator"]) == fed.node("coord")
    assert fed.authorize(coord, ["party"]) is None  # wrong role for this RPC
    assert fed.authorize(None, ["coordinator"]) is None
    assert fed.authorize(Identity("coord", "coordinator", "other"), ["coordinator"]) is None
    assert fed.authorize(Identity("coord", "party", "demo"), ["party"]) is None  # role lie
    assert fed.authorize(Identity("mallory", "party", "demo"), ["party"]) is None
    assert fed.authorize(Identity("alice", "analyst", "demo"), ["analyst"]) is not None
    assert fed.authorize(Identity("carol", "analyst", "demo"), ["analyst"]) is None
    fed.nodes[0] = C.NodeEntry("coord", "coordinator", "127.0.0.1", 50050, "e" * 64)
    assert fed.authorize(coord, ["coordinator"]) is None  # pinned to another certificate
    assert fed.authorize(Identity("coord", "coordinator", "demo", "e" * 64), ["coordinator"])


# ---------------------------------------------------------------------------------- errors

Mut = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mut:
    def mut(d: dict[str, Any]) -> None:
        keys = re.findall(r"[^.\[\]]+", path)
        cur: Any = d
        for k in keys[:-1]:
            cur = cur[int(k)] if k.isdigit() else cur[k]
        last = keys[-1]
        if value is _DEL:
            del cur[last]
        elif last.isdigit():
            cur[int(last)] = value
        else:
            cur[last] = value

    return mut


_DEL = object()

FEDERATION_ERRORS: list[tuple[Mut, str]] = [
    (_set("name", _DEL), "required field 'name' is missing"),
    (_set("nodes[1].port", "50051"), "field 'nodes[1].port' must be an integer from 1 to 65535"),
    (_set("nodes[1].port", 70000), "'nodes[1].port' must be an integer from 1 to 65535, got 70000"),
    (
        _set("nodes[1].port", True),
        "field 'nodes[1].port' must be an integer from 1 to 65535, got true",
    ),
    (_set("nodes[2].name", "coord"), "field 'nodes[2].name' duplicates node name 'coord'"),
    (
        _set("nodes[2].host", "127.0.0.1"),
        "field 'nodes[2].port' duplicates address 127.0.0.1:50051",
    ),
    (
        _set("nodes[1].role", "boss"),
        "'nodes[1].role' must be one of party, coordinator, dealer, got 'boss'",
    ),
    (_set("nodes[1].role", "analyst"), "field 'nodes[1].role' is 'analyst', but analysts belong"),
    (_set("ca_cert", "certs/missing.pem"), "field 'ca_cert' names a file that does not exist"),
    (_set("nodes", {}), "field 'nodes' must be a list of node objects, got an object"),
    (_set("nodes[0].hots", "x"), "field 'nodes[0].hots' is not a known field"),
    (_set("nodes[0].name", "bad name"), "field 'nodes[0].name' must be a name of 1-63 letters"),
    (_set("nodes[0].host", ""), "field 'nodes[0].host' must be a non-empty string"),
    (_set("nodes[0].fingerprint", "xyz"), "field 'nodes[0].fingerprint' must be a SHA-256"),
    (_set("analysts[1].name", "coord"), "field 'analysts[1].name' duplicates name 'coord'"),
    (_set("kind", "party"), "field 'kind' must be 'federation' for this file, got 'party'"),
    (_set("version", 2), "field 'version' must be 1, got 2"),
]


def _assert_one_sentence(err: C.ConfigError, path: Path, expected: str) -> None:
    msg = str(err)
    assert msg.startswith(f"{path}: ") or msg.startswith(f"config file {path}"), msg
    assert expected in msg, msg
    assert msg.endswith(".") and "\n" not in msg
    assert msg[len(str(path)) :].count(". ") == 0, msg  # one sentence
    assert isinstance(err, ValueError)


@pytest.mark.parametrize(("mut", "expected"), FEDERATION_ERRORS)
def test_federation_errors(fed_dir: Path, mut: Mut, expected: str) -> None:
    d = copy.deepcopy(federation_dict())
    mut(d)
    p = write(fed_dir / "bad-fed.json", d)
    with pytest.raises(C.ConfigError) as err:
        C.load_federation(p)
    _assert_one_sentence(err.value, p, expected)
    assert err.value.path == p


PARTY_ERRORS: list[tuple[Mut, str]] = [
    (_set("policy", _DEL), "required field 'policy' is missing"),
    (_set("policy.allowed_columns", _DEL), "required field 'policy.allowed_columns' is missing"),
    (
        _set("policy.allowed_columns", "age"),
        "'policy.allowed_columns' must be a list of strings, got a string",
    ),
    (
        _set("policy.allowed_columns", ["age", "age"]),
        "field 'policy.allowed_columns[1]' repeats 'age'",
    ),
    (
        _set("policy.allowed_analysts", ["eve"]),
        "'policy.allowed_analysts[0]' names 'eve', who is not in the analysts",
    ),
    (
        _set("policy.min_cohort_size", 0),
        "field 'policy.min_cohort_size' must be an integer >= 1, got 0",
    ),
    (
        _set("policy.min_cohort_size", 2.5),
        "field 'policy.min_cohort_size' must be an integer >= 1, got 2.5",
    ),
    (_set("policy.epsilon", -1), "field 'policy.epsilon' must be a number in (0, inf), got -1"),
    (_set("policy.delta", 1), "field 'policy.delta' must be a number in (0, 1), got 1"),
    (_set("policy.delta", 0), "field 'policy.delta' must be a number in (0, 1), got 0"),
    (_set("policy.require_dp", "yes"), "field 'policy.require_dp' must be true or false"),
    (
        _set("policy.columns_by_computation", {"median": ["age"]}),
        "field 'policy.columns_by_computation.median' is not a computation",
    ),
    (
        _set("policy.columns_by_computation", ["age"]),
        "field 'policy.columns_by_computation' must be an object mapping computations",
    ),
    (
        _set("policy.columns_by_computation", {"histogram": "zip"}),
        "field 'policy.columns_by_computation.histogram' must be a list of strings",
    ),
    (
        _set("policy.bounds", {"agee": [0, 1]}),
        "field 'policy.bounds.agee' names a column this policy does not allow",
    ),
    (
        _set("policy.bounds", {"age": [5, 1]}),
        "field 'policy.bounds.age' must be a pair [lo, hi] of finite numbers with lo < hi",
    ),
    (
        _set("policy.bounds", {"age": [0, 1, 2]}),
        "field 'policy.bounds.age' must be a pair [lo, hi]",
    ),
    (
        _set("policy.bounds", {"age": "0-1"}),
        "field 'policy.bounds.age' must be a pair [lo, hi]",
    ),
    (_set("policy.bounds", [0, 1]), "field 'policy.bounds' must be an object mapping columns"),
    (_set("policy.dataset", "bad name"), "field 'policy.dataset' must be a name of 1-63"),
    (_set("policy.max_released_values", 0),
     "field 'policy.max_released_values' must be an integer >= 1, got 0"),
    (_set("policy.max_inference_rows", 2.5),
     "field 'policy.max_inference_rows' must be an integer >= 1, got 2.5"),
    (_set("policy.max_session_cpu_seconds", 0),
     "field 'policy.max_session_cpu_seconds' must be a number in (0, inf), got 0"),
    (_set("policy.max_request_memory_mb", "lots"),
     "field 'policy.max_request_memory_mb' must be a number in (0, inf), got 'lots'"),
    (_set("policy.max_request_memory_mb", float("inf")),
     "field 'policy.max_request_memory_mb' must be a number in (0, inf), got inf"),
    (_set("policy.min_cell_size", 0),
     "field 'policy.min_cell_size' must be an integer >= 1, got 0"),
    (_set("policy.exact_quantile_margin", 0.5),
     "field 'policy.exact_quantile_margin' must be a number in [0, 0.5), got 0.5"),
    (_set("policy.exact_history", -1),
     "field 'policy.exact_history' must be an integer from 0 to 1000000, got -1"),
    (_set("at_rest_key", "certs/missing.key"), "field 'at_rest_key' names a file that does not"),
    (_set("policy.polcy", 1), "field 'policy.polcy' is not a known field"),
    (
        _set("listen.port", 65536),
        "field 'listen.port' must be an integer from 0 to 65535, got 65536",
    ),
    (_set("listen.port", -1), "field 'listen.port' must be an integer from 0 to 65535, got -1"),
    (_set("listen.host", 5), "field 'listen.host' must be a non-empty string, got an integer"),
    (
        _set("name", "hospital-b"),
        "certificate for 'hospital-a' (party), not for 'hospital-b' (party)",
    ),
    (
        _set("tls.cert", "certs/coord.pem"),
        "'tls.cert' is a certificate for 'coord' (coordinator), not for",
    ),
    (_set("tls.key", "certs/coord.key"), "field 'tls.key' is not the private key of certificate"),
    (_set("tls.cert", "data.csv"), "field 'tls.cert' is not a PEM certificate"),
    (
        _set("name", "zed"),
        "field 'name' names 'zed', which is not a party node of federation 'demo'",
    ),
    (
        _set("name", "coord"),
        "field 'name' names node 'coord', whose federation role is 'coordinator'",
    ),
    (_set("tls.key", "certs/nope.key"), "field 'tls.key' names a file that does not exist"),
    (_set("data.path", "data.txt"), "field 'data.path' names a file that does not exist"),
    (_set("data.format", "xlsx"),
     "field 'data.format' must be one of csv, parquet, duckdb, got 'xlsx'"),
    # the local engine (issue 15): a typo or a field for another engine is refused
    (_set("data.engine", "sqlite"),
     "field 'data.engine' must be one of memory, duckdb, got 'sqlite'"),
    (_set("data.memory_limit", "2GB"), "field 'data.memory_limit' applies only to engine"),
    (_set("data.threads", 2), "field 'data.threads' applies only to engine 'duckdb'"),
    (_set("data.table", "visits"), "field 'data.table' applies only to a DuckDB database file"),
    (_set("data.format", "duckdb"), "field 'data.engine' must be 'duckdb' to read a DuckDB"),
    (
        _set("database", "nodir/x.db"),
        "field 'database' names a database whose directory does not exist",
    ),
    (
        _set("federation", "nofed.json"),
        "field 'federation' names a federation file that does not exist",
    ),
    (
        _set("federation", 3),
        "'federation' must be a file path or an embedded object, got an integer",
    ),
    (_set("kind", "coordinator"), "field 'kind' must be 'party' for this file, got 'coordinator'"),
    # a model owner's per-model policy (issue 12): a typo must not widen it
    (_set("policy.models", []), "'policy.models' must be an object mapping model names"),
    (_set("policy.models", {"risk": {"noise": 1}}),
     "field 'policy.models.risk.noise' is not a known field"),
    (_set("policy.models", {"risk": {"allowed_analysts": ["eve"]}}),
     "'policy.models.risk.allowed_analysts[0]' names 'eve', who is not an analyst"),
    (_set("policy.models", {"risk": {"max_rows_per_request": 0}}),
     "field 'policy.models.risk.max_rows_per_request' must be an integer >= 1, got 0"),
    (_set("policy.models", {"risk": {"prediction_noise_std": -0.1}}),
     "field 'policy.models.risk.prediction_noise_std' must be a number in [0, 1e+06]"),
    (_set("policy.models", {"risk": {"max_sparse_row_fraction": 1.5}}),
     "field 'policy.models.risk.max_sparse_row_fraction' must be a number in [0, 1]"),
    (_set("policy.models", {"risk": {"feature_bounds": {"age": [5, 5]}}}),
     "'policy.models.risk.feature_bounds.age' must be a pair [lo, hi] of finite numbers"),
]


@pytest.mark.parametrize(("mut", "expected"), PARTY_ERRORS)
def test_party_errors(fed_dir: Path, mut: Mut, expected: str) -> None:
    d = copy.deepcopy(party_dict())
    mut(d)
    p = write(fed_dir / "bad-party.json", d)
    with pytest.raises(C.ConfigError) as err:
        C.load_party_config(p)
    _assert_one_sentence(err.value, p, expected)


def test_party_error_inside_referenced_federation_names_that_file(fed_dir: Path) -> None:
    fed = federation_dict()
    fed["nodes"][0]["port"] = 0
    write(fed_dir / "federation.json", fed)
    with pytest.raises(C.ConfigError) as err:
        C.load_party_config(write(fed_dir / "party.json", party_dict()))
    _assert_one_sentence(err.value, fed_dir / "federation.json", "field 'nodes[0].port'")


def test_embedded_federation_errors_name_the_nested_field(fed_dir: Path) -> None:
    d = party_dict()
    fed = federation_dict()
    del fed["kind"]
    fed["nodes"][1]["role"] = "boss"
    d["federation"] = fed
    p = write(fed_dir / "party.json", d)
    with pytest.raises(C.ConfigError) as err:
        C.load_party_config(p)
    _assert_one_sentence(err.value, p, "field 'federation.nodes[1].role' must be one of")


def test_data_format_required_for_unknown_suffix(fed_dir: Path) -> None:
    (fed_dir / "data.txt").write_text("a\n1\n")
    d = party_dict()
    d["data"] = {"path": "data.txt"}
    p = write(fed_dir / "party.json", d)
    with pytest.raises(C.ConfigError) as err:
        C.load_party_config(p)
    _assert_one_sentence(err.value, p, "field 'data.format' is required because 'data.txt'")
    d["data"]["format"] = "csv"
    assert C.load_party_config(write(p, d)).data.format == "csv"


def test_world_readable_key_is_refused(fed_dir: Path, tmp_path: Path) -> None:
    key = tmp_path / "loose.key"
    key.write_bytes((fed_dir / "certs" / "hospital-a.key").read_bytes())
    os.chmod(key, 0o644)
    d = party_dict()
    d["tls"]["key"] = str(key)
    p = write(fed_dir / "party.json", d)
    with pytest.raises(C.ConfigError) as err:
        C.load_party_config(p)
    _assert_one_sentence(err.value, p, "readable by group or others (mode 0644)")


def test_coordinator_errors(fed_dir: Path) -> None:
    for mut, expected in [
        (_set("dealer", "hospital-a"), "field 'dealer' names 'hospital-a', which is not a dealer"),
        (_set("session_timeout", 0), "field 'session_timeout' must be a number in (0, 86400]"),
        (_set("policy", {}), "field 'policy' is not a known field"),
    ]:
        d = coordinator_dict()
        mut(d)
        p = write(fed_dir / "coord.json", d)
        with pytest.raises(C.ConfigError) as err:
            C.load_coordinator_config(p)
        _assert_one_sentence(err.value, p, expected)


def test_file_level_errors(tmp_path: Path) -> None:
    missing = tmp_path / "absent.json"
    with pytest.raises(C.ConfigError) as err:
        C.load_federation(missing)
    _assert_one_sentence(err.value, missing, "not found")

    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x",, }')
    with pytest.raises(C.ConfigError) as err:
        C.load_config(bad)
    _assert_one_sentence(err.value, bad, "invalid JSON at line 1 column 14")

    for data, expected in [
        ([1], "the top level must be a JSON object, got a list"),
        ({"name": "x"}, "required field 'kind' is missing"),
        ({"kind": "robot"}, "field 'kind' must be one of federation, party, coordinator, dealer"),
    ]:
        with pytest.raises(C.ConfigError) as err:
            C.load_config(write(bad, data))
        _assert_one_sentence(err.value, bad, expected)


# ------------------------------------------------------------- data: delimiter, encoding, decimal


@pytest.mark.parametrize(("data", "expected"), [
    ({"delimiter": ";;"}, "field 'data.delimiter' must be one character such as ',' ';' '|'"),
    ({"delimiter": "a"}, "field 'data.delimiter' must be one character"),
    ({"delimiter": '"'}, "field 'data.delimiter' must be one character"),
    ({"delimiter": "."}, "field 'data.delimiter' must be one character"),
    ({"delimiter": 4}, "field 'data.delimiter' must be one character"),
    ({"encoding": "klingon-8"}, "field 'data.encoding' must be the name of a text encoding"),
    ({"encoding": "rot13"}, "field 'data.encoding' must be the name of a text encoding"),
    ({"encoding": 8}, "field 'data.encoding' must be the name of a text encoding"),
    ({"decimal": ";"}, "field 'data.decimal' must be one of ., ,, got ';'"),
    ({"decimal": ",", "delimiter": ","}, "field 'data.delimiter' must differ from data.decimal"),
    ({"separator": ";"}, "field 'data.separator' is not a known field"),
])
def test_data_dialect_errors(fed_dir: Path, data: dict[str, Any], expected: str) -> None:
    """Each bad delimiter / encoding / decimal is one sentence naming the field (a wrong
    validator would let a value through to fail, or silently misread, at node start)."""
    d = party_dict()
    d["data"].update(data)
    p = write(fed_dir / "party.json", d)
    with pytest.raises(C.ConfigError) as err:
        C.load_party_config(p)
    _assert_one_sentence(err.value, p, expected)


def test_data_dialect_applies_only_to_csv(fed_dir: Path) -> None:
    (fed_dir / "data.parquet").write_bytes(b"PAR1")
    for key, value in (("delimiter", ";"), ("encoding", "cp1252"), ("decimal", ",")):
        d = party_dict()
        d["data"] = {"path": "data.parquet", key: value}
        p = write(fed_dir / "party.json", d)
        with pytest.raises(C.ConfigError) as err:
            C.load_party_config(p)
        _assert_one_sentence(err.value, p, f"field 'data.{key}' applies only to CSV files")


def test_data_dialect_loads_and_round_trips(fed_dir: Path) -> None:
    """Given keys are kept and saved (a writer dropping them would make a saved config read a
    ';' / cp1252 export with detection instead); absent keys mean "detect" and "."."""
    d = party_dict()
    d["data"].update({"delimiter": "\t", "encoding": "latin-1", "decimal": ","})
    cfg = C.load_party_config(write(fed_dir / "party.json", d))
    assert (cfg.data.delimiter, cfg.data.encoding, cfg.data.decimal) == ("\t", "latin-1", ",")
    C.save_config(cfg, fed_dir / "party2.json")
    saved = json.loads((fed_dir / "party2.json").read_text())
    assert saved["data"] == {"path": "data.csv", "format": "csv", "delimiter": "\t",
                             "encoding": "latin-1", "decimal": ","}
    assert C.load_party_config(fed_dir / "party2.json") == cfg
    plain = C.load_party_config(write(fed_dir / "party.json", party_dict()))
    assert (plain.data.delimiter, plain.data.encoding, plain.data.decimal) == (None, None, ".")
    C.save_config(plain, fed_dir / "party3.json")
    assert json.loads((fed_dir / "party3.json").read_text())["data"] == {
        "path": "data.csv", "format": "csv"}


@pytest.mark.parametrize("limit,ok", [("512MB", True), ("2GB", True), ("1.5GiB", True),
                                      ("lots", False), ("0GB", False), ("2GB; SET x", False),
                                      (2, False)])
def test_duckdb_engine_fields(fed_dir: Path, limit: Any, ok: bool) -> None:
    d = copy.deepcopy(party_dict())
    d["data"].update(engine="duckdb", memory_limit=limit, threads=2)
    p = write(fed_dir / "duck-party.json", d)
    if ok:
        cfg = C.load_party_config(p)
        assert (cfg.data.engine, cfg.data.memory_limit, cfg.data.threads) == ("duckdb", limit, 2)
    else:
        with pytest.raises(C.ConfigError, match=r"field 'data\.memory_limit' must be a size"):
            C.load_party_config(p)
