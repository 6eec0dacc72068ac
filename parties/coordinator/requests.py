"""What an analyst asks the coordinator for, parsed once at the coordinator's edge.

Every request is **signed by the analyst** (:mod:`parties.pki.signed`): the coordinator
verifies the signature and that the signer is the caller, and takes the request's content
from what was signed -- never from fields beside it -- then forwards the envelope to the
parties, which verify it again themselves (the coordinator's opinion is never trusted).

:func:`statistic_request` and :func:`prediction_request` turn the wire messages of the
``Coordinator`` service into typed requests and validate what the coordinator can: the
signature, the spec, the filter, that the named parties exist, that there are at least two data
parties, and that the data owner and the model owner differ.  Errors are one-sentence
:class:`~smpc.errors.InputError`\\ s (a bad signature: a :class:`~parties.errors.PolicyError`).
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from cryptography import x509

from parties._pb import smpc_pb2 as pb
from parties.config import FederationConfig
from parties.data import filters
from parties.errors import AuthError
from parties.pki.signed import Signed, SignedRequestError, verify
from parties.transport.requests import prediction_of, statistic_of
from smpc.errors import InputError
from smpc.names import Backend, InferenceOutput
from smpc.stats import StatSpec

__all__ = ["PredictionRequest", "StatisticRequest", "prediction_request", "statistic_request"]


@dataclass(frozen=True)
class StatisticRequest:
    """A joint statistic over ``parties`` (named explicitly in the signed request)."""

    spec: StatSpec
    parties: tuple[str, ...]
    where: str
    timeout: float                   # 0 = the coordinator's session timeout
    signed: Signed | None = None     # what the analyst signed (forwarded to every party)


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
    signed: Signed | None = None


def _known_parties(federation: FederationConfig) -> list[str]:
    return [n.name for n in federation.parties]


def verify_signed(envelope: bytes, caller: str, federation: FederationConfig,
                  ca_cert: x509.Certificate) -> Signed:
    """The caller's signed request, verified; PERMISSION_DENIED if it is not the caller's."""
    try:
        signed = verify(envelope, ca_cert=ca_cert, federation=federation.name,
                        allowed=federation)
    except SignedRequestError as exc:
        raise AuthError(f"the request is refused: {exc}", grpc.StatusCode.PERMISSION_DENIED
                        ) from None
    if signed.signer.name != caller:
        raise AuthError(f"analyst {caller!r} sent a request signed by {signed.signer.name!r}",
                        grpc.StatusCode.PERMISSION_DENIED)
    return signed


def statistic_request(msg: pb.StatRequest, federation: FederationConfig, *, caller: str,
                      ca_cert: x509.Certificate) -> StatisticRequest:
    """Verify and check a ``StatRequest``: its content is the signed request's."""
    signed = verify_signed(msg.signed_request, caller, federation, ca_cert)
    stat = statistic_of(signed)
    if stat.where:
        filters.parse(stat.where)  # fail early; every party parses it again itself
    known = _known_parties(federation)
    unknown = [p for p in stat.parties if p not in known]
    if unknown:
        raise InputError(f"unknown part{'ies' if len(unknown) > 1 else 'y'} "
                         f"{', '.join(unknown)} (parties: {', '.join(known) or 'none'})")
    if len(stat.parties) < 2:
        raise InputError("a joint statistic needs at least two parties")
    return StatisticRequest(stat.spec, stat.parties, stat.where, float(msg.timeout_seconds),
                            signed)


def prediction_request(msg: pb.PredictRequest, federation: FederationConfig, *, caller: str,
                       ca_cert: x509.Certificate) -> PredictionRequest:
    """Verify and check a ``PredictRequest``: its content is the signed request's."""
    signed = verify_signed(msg.signed_request, caller, federation, ca_cert)
    r = prediction_of(signed)
    known = set(_known_parties(federation))
    for who, name in (("data owner", r.data_owner), ("model owner", r.model_owner)):
        if name not in known:
            raise InputError(f"the {who} {name!r} is not a party of the federation "
                             f"(parties: {', '.join(sorted(known))})")
    if r.data_owner == r.model_owner:
        raise InputError("the data owner and the model owner must be different parties")
    if r.where:
        filters.parse(r.where)
    return PredictionRequest(
        data_owner=r.data_owner, model_owner=r.model_owner, model=r.model, where=r.where,
        backend=r.backend, output=r.output, feature_bound=r.feature_bound,
        frac_bits=r.frac_bits, ckks_preset=r.ckks_preset,
        timeout=float(msg.timeout_seconds), signed=signed)
