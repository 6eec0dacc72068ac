"""What an analyst asks the coordinator for, parsed once at the coordinator's edge.

:func:`statistic_request` and :func:`prediction_request` turn the wire messages of the
``Coordinator`` service into typed requests and validate what the coordinator can: the spec
parses, the filter parses (every party parses it again itself: the coordinator's opinion is
never trusted), the named parties exist, there are at least two data parties, and the data
owner and the model owner differ.  Errors are one-sentence
:class:`~smpc.errors.InputError`\\ s.
"""

from __future__ import annotations

from dataclasses import dataclass

from parties._pb import smpc_pb2 as pb
from parties.config import FederationConfig
from parties.data import filters
from parties.transport import wire
from smpc.errors import InputError
from smpc.names import Backend, InferenceOutput, parse
from smpc.stats import StatSpec

__all__ = ["PredictionRequest", "StatisticRequest", "prediction_request", "statistic_request"]


@dataclass(frozen=True)
class StatisticRequest:
    """A joint statistic over ``parties`` (all of the federation's when the analyst named none)."""

    spec: StatSpec
    parties: tuple[str, ...]
    where: str
    timeout: float                   # 0 = the coordinator's session timeout


@dataclass(frozen=True)
class PredictionRequest:
    """One party's model applied to another's rows; the predictions stay with the data owner."""

    data_owner: str
    model_owner: str
    model: str = ""                  # "" = the model owner's only model
    where: str = ""
    backend: Backend = Backend.SS
    output: InferenceOutput = InferenceOutput.PREDICTION
    feature_bound: float = 0.0       # 0 = the default
    frac_bits: int = 0               # 0 = the default
    ckks_preset: str = ""            # "" = the default
    timeout: float = 0.0


def _known_parties(federation: FederationConfig) -> list[str]:
    return [n.name for n in federation.parties]


def statistic_request(msg: pb.StatRequest, federation: FederationConfig) -> StatisticRequest:
    """Parse and check a ``StatRequest``."""
    spec = StatSpec.from_json(wire.parse_spec_json(msg.spec_json, "statistic spec"))
    where = msg.where.strip()
    if where:
        filters.parse(where)  # fail early; every party parses it again itself
    known = _known_parties(federation)
    parties = list(msg.parties) or known
    unknown = [p for p in parties if p not in known]
    if unknown:
        raise InputError(f"unknown part{'ies' if len(unknown) > 1 else 'y'} "
                         f"{', '.join(unknown)} (parties: {', '.join(known) or 'none'})")
    if len(set(parties)) != len(parties):
        raise InputError("a party is named twice")
    if len(parties) < 2:
        raise InputError("a joint statistic needs at least two parties")
    return StatisticRequest(spec, tuple(parties), where, float(msg.timeout_seconds))


def prediction_request(msg: pb.PredictRequest, federation: FederationConfig
                       ) -> PredictionRequest:
    """Parse and check a ``PredictRequest``."""
    known = set(_known_parties(federation))
    for who, name in (("data owner", msg.data_owner), ("model owner", msg.model_owner)):
        if name not in known:
            raise InputError(f"the {who} {name!r} is not a party of the federation "
                             f"(parties: {', '.join(sorted(known))})")
    if msg.data_owner == msg.model_owner:
        raise InputError("the data owner and the model owner must be different parties")
    backend = parse(Backend, msg.backend or Backend.SS)
    if backend is None:
        raise InputError(f"unknown backend {msg.backend!r}; choose 'ss' or 'ckks'")
    output = parse(InferenceOutput, msg.output or InferenceOutput.PREDICTION)
    if output is None:
        raise InputError(f"unknown output {msg.output!r}; choose one of "
                         f"{', '.join(o.value for o in InferenceOutput)}")
    where = msg.where.strip()
    if where:
        filters.parse(where)
    return PredictionRequest(
        data_owner=msg.data_owner, model_owner=msg.model_owner, model=msg.model, where=where,
        backend=backend, output=output, feature_bound=msg.feature_bound,
        frac_bits=int(msg.frac_bits), ckks_preset=msg.ckks_preset,
        timeout=float(msg.timeout_seconds))
