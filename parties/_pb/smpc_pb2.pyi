from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PayloadKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYLOAD_KIND_UNSPECIFIED: _ClassVar[PayloadKind]
    PAYLOAD_KIND_ARRAY: _ClassVar[PayloadKind]
    PAYLOAD_KIND_BYTES: _ClassVar[PayloadKind]

class SessionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SESSION_KIND_UNSPECIFIED: _ClassVar[SessionKind]
    SESSION_KIND_STAT: _ClassVar[SessionKind]
    SESSION_KIND_PREDICT_DATA: _ClassVar[SessionKind]
    SESSION_KIND_PREDICT_MODEL: _ClassVar[SessionKind]
    SESSION_KIND_DEAL: _ClassVar[SessionKind]
PAYLOAD_KIND_UNSPECIFIED: PayloadKind
PAYLOAD_KIND_ARRAY: PayloadKind
PAYLOAD_KIND_BYTES: PayloadKind
SESSION_KIND_UNSPECIFIED: SessionKind
SESSION_KIND_STAT: SessionKind
SESSION_KIND_PREDICT_DATA: SessionKind
SESSION_KIND_PREDICT_MODEL: SessionKind
SESSION_KIND_DEAL: SessionKind

class PayloadHeader(_message.Message):
    __slots__ = ("session_id", "tag", "kind", "dtype", "shape", "total_bytes")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    tag: str
    kind: PayloadKind
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    total_bytes: int
    def __init__(self, session_id: _Optional[str] = ..., tag: _Optional[str] = ..., kind: _Optional[_Union[PayloadKind, str]] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., total_bytes: _Optional[int] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: PayloadHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[PayloadHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Chunks(_message.Message):
    __slots__ = ("chunks",)
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    chunks: _containers.RepeatedCompositeFieldContainer[Chunk]
    def __init__(self, chunks: _Optional[_Iterable[_Union[Chunk, _Mapping]]] = ...) -> None: ...

class DeliverAck(_message.Message):
    __slots__ = ("bytes_received",)
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    bytes_received: int
    def __init__(self, bytes_received: _Optional[int] = ...) -> None: ...

class WitnessRequest(_message.Message):
    __slots__ = ("signed_head",)
    SIGNED_HEAD_FIELD_NUMBER: _ClassVar[int]
    signed_head: bytes
    def __init__(self, signed_head: _Optional[bytes] = ...) -> None: ...

class WitnessResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthResponse(_message.Message):
    __slots__ = ("name", "role", "federation", "version", "active_sessions", "running_sessions")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    FEDERATION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: str
    federation: str
    version: str
    active_sessions: int
    running_sessions: int
    def __init__(self, name: _Optional[str] = ..., role: _Optional[str] = ..., federation: _Optional[str] = ..., version: _Optional[str] = ..., active_sessions: _Optional[int] = ..., running_sessions: _Optional[int] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("name", "role")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: str
    def __init__(self, name: _Optional[str] = ..., role: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "kind", "features")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    features: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., features: _Optional[_Iterable[str]] = ...) -> None: ...

class DescribeRequest(_message.Message):
    __slots__ = ("analyst",)
    ANALYST_FIELD_NUMBER: _ClassVar[int]
    analyst: str
    def __init__(self, analyst: _Optional[str] = ...) -> None: ...

class DescribeResponse(_message.Message):
    __slots__ = ("name", "columns", "models")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, name: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class PrepareRequest(_message.Message):
    __slots__ = ("session_id", "timeout_seconds", "kind", "spec_json", "where", "members", "analyst", "columns", "model", "tag", "signed_request")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    ANALYST_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    SIGNED_REQUEST_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    timeout_seconds: float
    kind: SessionKind
    spec_json: str
    where: str
    members: _containers.RepeatedCompositeFieldContainer[Member]
    analyst: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    model: str
    tag: str
    signed_request: bytes
    def __init__(self, session_id: _Optional[str] = ..., timeout_seconds: _Optional[float] = ..., kind: _Optional[_Union[SessionKind, str]] = ..., spec_json: _Optional[str] = ..., where: _Optional[str] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., analyst: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., model: _Optional[str] = ..., tag: _Optional[str] = ..., signed_request: _Optional[bytes] = ...) -> None: ...

class PrepareResponse(_message.Message):
    __slots__ = ("n_samples", "spec_json")
    N_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    n_samples: int
    spec_json: str
    def __init__(self, n_samples: _Optional[int] = ..., spec_json: _Optional[str] = ...) -> None: ...

class SessionRef(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class RunResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AwaitResponse(_message.Message):
    __slots__ = ("status", "n_predictions", "output_path")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    N_PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PATH_FIELD_NUMBER: _ClassVar[int]
    status: str
    n_predictions: int
    output_path: str
    def __init__(self, status: _Optional[str] = ..., n_predictions: _Optional[int] = ..., output_path: _Optional[str] = ...) -> None: ...

class AbortRequest(_message.Message):
    __slots__ = ("session_id", "reason", "failed_node")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FAILED_NODE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    reason: str
    failed_node: str
    def __init__(self, session_id: _Optional[str] = ..., reason: _Optional[str] = ..., failed_node: _Optional[str] = ...) -> None: ...

class AbortResponse(_message.Message):
    __slots__ = ("was_active",)
    WAS_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    was_active: bool
    def __init__(self, was_active: _Optional[bool] = ...) -> None: ...

class DealRequest(_message.Message):
    __slots__ = ("session_id", "timeout_seconds", "spec_json", "members", "tag")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    timeout_seconds: float
    spec_json: str
    members: _containers.RepeatedCompositeFieldContainer[Member]
    tag: str
    def __init__(self, session_id: _Optional[str] = ..., timeout_seconds: _Optional[float] = ..., spec_json: _Optional[str] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., tag: _Optional[str] = ...) -> None: ...

class DealResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatRequest(_message.Message):
    __slots__ = ("spec_json", "where", "parties", "timeout_seconds", "signed_request")
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    PARTIES_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SIGNED_REQUEST_FIELD_NUMBER: _ClassVar[int]
    spec_json: str
    where: str
    parties: _containers.RepeatedScalarFieldContainer[str]
    timeout_seconds: float
    signed_request: bytes
    def __init__(self, spec_json: _Optional[str] = ..., where: _Optional[str] = ..., parties: _Optional[_Iterable[str]] = ..., timeout_seconds: _Optional[float] = ..., signed_request: _Optional[bytes] = ...) -> None: ...

class ComputeUp(_message.Message):
    __slots__ = ("request", "chunk")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    request: StatRequest
    chunk: Chunk
    def __init__(self, request: _Optional[_Union[StatRequest, _Mapping]] = ..., chunk: _Optional[_Union[Chunk, _Mapping]] = ...) -> None: ...

class ComputeStarted(_message.Message):
    __slots__ = ("session_id", "coordinator", "keyholder", "tag")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_FIELD_NUMBER: _ClassVar[int]
    KEYHOLDER_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    coordinator: str
    keyholder: str
    tag: str
    def __init__(self, session_id: _Optional[str] = ..., coordinator: _Optional[str] = ..., keyholder: _Optional[str] = ..., tag: _Optional[str] = ...) -> None: ...

class ComputeResult(_message.Message):
    __slots__ = ("result_json",)
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    result_json: str
    def __init__(self, result_json: _Optional[str] = ...) -> None: ...

class ComputeDown(_message.Message):
    __slots__ = ("started", "chunk", "result")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    started: ComputeStarted
    chunk: Chunk
    result: ComputeResult
    def __init__(self, started: _Optional[_Union[ComputeStarted, _Mapping]] = ..., chunk: _Optional[_Union[Chunk, _Mapping]] = ..., result: _Optional[_Union[ComputeResult, _Mapping]] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("data_owner", "model_owner", "model", "where", "backend", "output", "feature_bound", "frac_bits", "ckks_preset", "timeout_seconds", "signed_request")
    DATA_OWNER_FIELD_NUMBER: _ClassVar[int]
    MODEL_OWNER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    FEATURE_BOUND_FIELD_NUMBER: _ClassVar[int]
    FRAC_BITS_FIELD_NUMBER: _ClassVar[int]
    CKKS_PRESET_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SIGNED_REQUEST_FIELD_NUMBER: _ClassVar[int]
    data_owner: str
    model_owner: str
    model: str
    where: str
    backend: str
    output: str
    feature_bound: float
    frac_bits: int
    ckks_preset: str
    timeout_seconds: float
    signed_request: bytes
    def __init__(self, data_owner: _Optional[str] = ..., model_owner: _Optional[str] = ..., model: _Optional[str] = ..., where: _Optional[str] = ..., backend: _Optional[str] = ..., output: _Optional[str] = ..., feature_bound: _Optional[float] = ..., frac_bits: _Optional[int] = ..., ckks_preset: _Optional[str] = ..., timeout_seconds: _Optional[float] = ..., signed_request: _Optional[bytes] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("session_id", "data_owner", "n_predictions", "output_path", "kind", "backend")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_OWNER_FIELD_NUMBER: _ClassVar[int]
    N_PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PATH_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    data_owner: str
    n_predictions: int
    output_path: str
    kind: str
    backend: str
    def __init__(self, session_id: _Optional[str] = ..., data_owner: _Optional[str] = ..., n_predictions: _Optional[int] = ..., output_path: _Optional[str] = ..., kind: _Optional[str] = ..., backend: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("name", "role", "ok", "detail", "active_sessions")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: str
    ok: bool
    detail: str
    active_sessions: int
    def __init__(self, name: _Optional[str] = ..., role: _Optional[str] = ..., ok: _Optional[bool] = ..., detail: _Optional[str] = ..., active_sessions: _Optional[int] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeStatus]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeStatus, _Mapping]]] = ...) -> None: ...

class FederationRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FederationResponse(_message.Message):
    __slots__ = ("federation", "coordinator", "parties")
    FEDERATION_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_FIELD_NUMBER: _ClassVar[int]
    PARTIES_FIELD_NUMBER: _ClassVar[int]
    federation: str
    coordinator: str
    parties: _containers.RepeatedCompositeFieldContainer[DescribeResponse]
    def __init__(self, federation: _Optional[str] = ..., coordinator: _Optional[str] = ..., parties: _Optional[_Iterable[_Union[DescribeResponse, _Mapping]]] = ...) -> None: ...
