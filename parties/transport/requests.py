"""What an analyst's signed request says: built by the analyst, read by the coordinator and
every party (see :mod:`parties.pki.signed` for the envelope and its verification).

A **statistic** request is ``{"spec": <StatSpec JSON>, "where": <filter text>, "parties":
[<names>, sorted]}`` -- the party list is explicit, so a coordinator cannot run the statistic
over a subset (one party alone, say) without every party noticing.  A **prediction** request
is ``{"data_owner", "model_owner", "model", "where", "backend", "output", "feature_bound",
"frac_bits", "ckks_preset"}`` (``""`` / ``0``: the default).  :func:`statistic_of` and
:func:`prediction_of` parse them back into typed values (an
:class:`~smpc.errors.InputError` if malformed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from parties.pki.signed import Signed
from smpc.errors import InputError
from smpc.names import Backend, InferenceOutput, parse
from smpc.stats import StatSpec

__all__ = [
    "SignedPrediction",
    "SignedStatistic",
    "prediction_of",
    "prediction_request",
    "statistic_of",
    "statistic_request",
]


def statistic_request(spec: StatSpec, where: str, parties: Sequence[str]) -> dict[str, Any]:
    """The request body an analyst signs for a statistic over ``parties``."""
    return {"spec": spec.to_json(), "where": where.strip(), "parties": sorted(parties)}


def prediction_request(*, data_owner: str, model_owner: str, model: str = "", where: str = "",
                       backend: str = "ss", output: str = "prediction",
                       feature_bound: float = 0.0, frac_bits: int = 0,
                       ckks_preset: str = "", missing: str = "drop",
                       key: str = "", rows: int = 0) -> dict[str, Any]:
    """The request body an analyst signs for a prediction (``missing``: ``drop`` or
    ``error``, for data-owner rows with a missing feature; ``key``: the data owner's column to
    write beside its predictions, ``""`` for its policy's default; ``rows``: the public size of
    the inference at a data owner under DP, 0 for its padded table size)."""
    return {"data_owner": data_owner, "model_owner": model_owner, "model": model,
            "where": where.strip(), "backend": str(backend), "output": str(output),
            "feature_bound": float(feature_bound), "frac_bits": int(frac_bits),
            "ckks_preset": ckks_preset, "missing": missing, "key": key, "rows": int(rows)}


@dataclass(frozen=True)
class SignedStatistic:
    """A verified statistic request."""

    signed: Signed
    spec: StatSpec
    where: str
    parties: tuple[str, ...]


@dataclass(frozen=True)
class SignedPrediction:
    """A verified prediction request."""

    signed: Signed
    data_owner: str
    model_owner: str
    model: str
    where: str
    backend: Backend
    output: InferenceOutput
    feature_bound: float
    frac_bits: int
    ckks_preset: str
    missing: str = "drop"
    key: str = ""
    rows: int = 0


def _text(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise InputError(f"the signed request's {name!r} is missing or not text")
    return value


def statistic_of(signed: Signed) -> SignedStatistic:
    """The statistic a verified request asks for."""
    if signed.kind != "statistic":
        raise InputError("the signed request is not for a statistic")
    body = signed.request
    parties = body.get("parties")
    if not isinstance(parties, list) or not all(isinstance(p, str) for p in parties) \
            or len(set(parties)) != len(parties):
        raise InputError("the signed request's party list is malformed")
    spec = body.get("spec")
    if not isinstance(spec, dict):
        raise InputError("the signed request's spec is missing or malformed")
    return SignedStatistic(signed, StatSpec.from_json(spec), _text(body, "where"),
                           tuple(parties))


def prediction_of(signed: Signed) -> SignedPrediction:
    """The prediction a verified request asks for."""
    if signed.kind != "prediction":
        raise InputError("the signed request is not for a prediction")
    body = signed.request
    backend = parse(Backend, body.get("backend"))
    output = parse(InferenceOutput, body.get("output"))
    if backend is None or output is None:
        raise InputError("the signed request's backend or output is unknown")
    bound, bits = body.get("feature_bound"), body.get("frac_bits")
    if isinstance(bound, bool) or not isinstance(bound, int | float) \
            or not (math.isfinite(bound) and bound >= 0):
        raise InputError("the signed request's feature bound is malformed")
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 0:
        raise InputError("the signed request's fractional bits are malformed")
    missing = body.get("missing", "drop")  # absent from requests signed before it existed
    if missing not in ("drop", "error"):
        raise InputError("the signed request's missing-value rule is not 'drop' or 'error'")
    key = body.get("key", "")
    if not isinstance(key, str) or len(key) > 256:
        raise InputError("the signed request's key column is malformed")
    rows = body.get("rows", 0)
    if isinstance(rows, bool) or not isinstance(rows, int) or not 0 <= rows <= 1 << 24:
        raise InputError("the signed request's inference size is malformed")
    return SignedPrediction(signed, _text(body, "data_owner"), _text(body, "model_owner"),
                            _text(body, "model"), _text(body, "where"), backend, output,
                            float(bound), bits, _text(body, "ckks_preset"), missing, key, rows)
