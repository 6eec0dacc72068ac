"""The ``--json`` document of every ``smpc`` command, as README "JSON output" documents it.

A schema is a type (or a tuple of types), ``[item schema]`` for a list, a dict for an object
with exactly those keys, :class:`Has` for an object with at least those keys, :class:`MapOf`
for an object of any keys whose values all have one schema.  :func:`check` raises an
``AssertionError`` naming the path of the first mismatch.  ``bool`` is not accepted where an
``int`` or a ``float`` is asked (JSON's ``true`` is not a number).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NONE = type(None)
NUMBER = (int, float)


@dataclass(frozen=True)
class Has:
    """An object with at least these keys (others allowed)."""

    keys: dict[str, Any]


@dataclass(frozen=True)
class MapOf:
    """An object whose values all have this schema."""

    value: Any


ERROR = {"error": str, "code": (str, NONE), "node": (str, NONE), "declined": MapOf(str)}

SCHEMAS: dict[str, Any] = {
    "demo": {"simulated": bool, "within_tolerance": bool,
             "rows": [{"computation": str, "backend": str, "max_abs_diff": (float, NONE),
                       "tolerance": NUMBER, "within_tolerance": bool}]},
    "federation init": {"federation": str, "directory": str, "parties": [str], "exact": [str],
                        "epsilon": NUMBER, "delta": NUMBER, "min_cohort": int,
                        "min_cell_size": int},
    "federation up": {"started": [str]},
    "federation down": {"stopped": [str]},
    "federation status": [{"name": str, "role": str, "address": str, "pid": (int, NONE),
                           "running": bool}],
    "federation pin": {"name": str, "role": str, "fingerprint": str, "previous": (str, NONE),
                       "revoked_previous": bool, "added": bool, "federation": str},
    "federation revoke": {"fingerprint": str, "revoked": bool, "already": bool,
                          "federation": str},
    "start": {"role": str, "name": str, "address": str, "status": str},
    "certs ca": {"federation": str, "certificate": str, "key": str, "fingerprint": str},
    "certs issue": {"name": str, "role": str, "certificate": str, "key": str,
                    "fingerprint": str},
    "certs request": {"name": str, "role": str, "federation": str, "key": str, "request": str,
                      "key_id": str},
    "certs sign": {"name": str, "role": str, "federation": str, "certificate": str,
                   "fingerprint": str, "key_id": str, "not_after": str},
    "run": {"statistic": str, "columns": [str], "value": object, "n": NUMBER, "backend": str,
            "details": Has({"parties": [str], "declined": MapOf(str)})},
    "predict": {"session_id": str, "data_owner": str, "n_predictions": int,
                "output_path": str, "kind": str, "backend": str},
    "audit show": {"records": [Has({"seq": int, "hash": str})]},
    "audit verify": {"ok": bool, "message": str,
                     "witnesses": ({"checked": int, "contradicted": [str]}, NONE)},
    "audit witnesses": {"heads": [dict]},
    "audit head": {"log_id": str, "seq": int, "hash": str, "exported_at": str},
    "audit budget": {"budgets": [{"analyst": str, "dataset": str, "total_rho": NUMBER,
                                  "spent_rho": NUMBER, "pending_rho": NUMBER,
                                  "remaining_rho": NUMBER, "remaining_epsilon": NUMBER,
                                  "delta": NUMBER}]},
    "outputs read": {"session": str, "output": (str, NONE), "csv": (str, NONE)},
    "bench": {"status": int, "out": str, "lines": [str]},
}


def _is(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types and object not in types:
        return False
    return isinstance(value, types)


def check(doc: Any, schema: Any, path: str = "$") -> None:
    """Assert that ``doc`` has ``schema`` (see the module docstring)."""
    if isinstance(schema, tuple) and any(not isinstance(s, type) for s in schema):
        errors = []
        for alternative in schema:  # a union with structured alternatives
            try:
                check(doc, alternative, path)
                return
            except AssertionError as exc:
                errors.append(str(exc))
        raise AssertionError(" / ".join(errors))
    if isinstance(schema, (type, tuple)):
        types = schema if isinstance(schema, tuple) else (schema,)
        assert _is(doc, types), f"{path}: {doc!r} is not {types}"
    elif isinstance(schema, list):
        assert isinstance(doc, list), f"{path}: not a list: {doc!r}"
        for i, item in enumerate(doc):
            check(item, schema[0], f"{path}[{i}]")
    elif isinstance(schema, MapOf):
        assert isinstance(doc, dict), f"{path}: not an object: {doc!r}"
        for k, v in doc.items():
            check(v, schema.value, f"{path}.{k}")
    elif isinstance(schema, (dict, Has)):
        keys = schema.keys if isinstance(schema, Has) else schema
        assert isinstance(doc, dict), f"{path}: not an object: {doc!r}"
        missing = set(keys) - set(doc)
        assert not missing, f"{path}: missing {sorted(missing)}"
        if isinstance(schema, dict):
            extra = set(doc) - set(keys)
            assert not extra, f"{path}: unexpected {sorted(extra)}"
        for k, sub in keys.items():
            check(doc[k], sub, f"{path}.{k}")
    else:  # pragma: no cover - a schema typo
        raise TypeError(f"bad schema at {path}: {schema!r}")
