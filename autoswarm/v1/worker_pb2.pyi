from autoswarm.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisterRequest(_message.Message):
    __slots__ = ("worker_id", "name", "hardware", "slots", "mutators", "client_version")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    MUTATORS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    name: str
    hardware: _common_pb2.Hardware
    slots: int
    mutators: _containers.RepeatedScalarFieldContainer[str]
    client_version: str
    def __init__(self, worker_id: _Optional[str] = ..., name: _Optional[str] = ..., hardware: _Optional[_Union[_common_pb2.Hardware, _Mapping]] = ..., slots: _Optional[int] = ..., mutators: _Optional[_Iterable[str]] = ..., client_version: _Optional[str] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("worker_id", "heartbeat_interval_seconds", "hardware_class", "credential", "owner", "lease_wait_seconds")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_CLASS_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    LEASE_WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    heartbeat_interval_seconds: float
    hardware_class: str
    credential: str
    owner: str
    lease_wait_seconds: float
    def __init__(self, worker_id: _Optional[str] = ..., heartbeat_interval_seconds: _Optional[float] = ..., hardware_class: _Optional[str] = ..., credential: _Optional[str] = ..., owner: _Optional[str] = ..., lease_wait_seconds: _Optional[float] = ...) -> None: ...

class LeaseRequest(_message.Message):
    __slots__ = ("worker_id", "wait_seconds", "pipelined", "state")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PIPELINED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    wait_seconds: float
    pipelined: bool
    state: str
    def __init__(self, worker_id: _Optional[str] = ..., wait_seconds: _Optional[float] = ..., pipelined: _Optional[bool] = ..., state: _Optional[str] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("lease_id", "study", "kind", "bundle_hash", "bundle_size", "parent", "candidate", "seed", "deadline_unix", "memory", "edits_ahead", "order_seed")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    STUDY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_HASH_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_UNIX_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    EDITS_AHEAD_FIELD_NUMBER: _ClassVar[int]
    ORDER_SEED_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    study: str
    kind: _common_pb2.TaskKind
    bundle_hash: str
    bundle_size: int
    parent: _common_pb2.Version
    candidate: _common_pb2.Version
    seed: int
    deadline_unix: float
    memory: str
    edits_ahead: int
    order_seed: int
    def __init__(self, lease_id: _Optional[str] = ..., study: _Optional[str] = ..., kind: _Optional[_Union[_common_pb2.TaskKind, str]] = ..., bundle_hash: _Optional[str] = ..., bundle_size: _Optional[int] = ..., parent: _Optional[_Union[_common_pb2.Version, _Mapping]] = ..., candidate: _Optional[_Union[_common_pb2.Version, _Mapping]] = ..., seed: _Optional[int] = ..., deadline_unix: _Optional[float] = ..., memory: _Optional[str] = ..., edits_ahead: _Optional[int] = ..., order_seed: _Optional[int] = ...) -> None: ...

class LeaseResponse(_message.Message):
    __slots__ = ("has_task", "task", "heartbeat_interval_seconds", "lease_wait_seconds")
    HAS_TASK_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LEASE_WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    has_task: bool
    task: Task
    heartbeat_interval_seconds: float
    lease_wait_seconds: float
    def __init__(self, has_task: _Optional[bool] = ..., task: _Optional[_Union[Task, _Mapping]] = ..., heartbeat_interval_seconds: _Optional[float] = ..., lease_wait_seconds: _Optional[float] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("worker_id", "lease_ids", "state", "descriptions", "candidate_hashes", "slot_times")
    class DescriptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class CandidateHashesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_IDS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_HASHES_FIELD_NUMBER: _ClassVar[int]
    SLOT_TIMES_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    lease_ids: _containers.RepeatedScalarFieldContainer[str]
    state: str
    descriptions: _containers.ScalarMap[str, str]
    candidate_hashes: _containers.ScalarMap[str, str]
    slot_times: _containers.RepeatedCompositeFieldContainer[_common_pb2.SlotTime]
    def __init__(self, worker_id: _Optional[str] = ..., lease_ids: _Optional[_Iterable[str]] = ..., state: _Optional[str] = ..., descriptions: _Optional[_Mapping[str, str]] = ..., candidate_hashes: _Optional[_Mapping[str, str]] = ..., slot_times: _Optional[_Iterable[_Union[_common_pb2.SlotTime, _Mapping]]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("cancelled_lease_ids", "duplicate_lease_ids", "heartbeat_interval_seconds", "stale_lease_ids")
    CANCELLED_LEASE_IDS_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_LEASE_IDS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STALE_LEASE_IDS_FIELD_NUMBER: _ClassVar[int]
    cancelled_lease_ids: _containers.RepeatedScalarFieldContainer[str]
    duplicate_lease_ids: _containers.RepeatedScalarFieldContainer[str]
    heartbeat_interval_seconds: float
    stale_lease_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, cancelled_lease_ids: _Optional[_Iterable[str]] = ..., duplicate_lease_ids: _Optional[_Iterable[str]] = ..., heartbeat_interval_seconds: _Optional[float] = ..., stale_lease_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("status", "has_metric", "metric", "extra_metrics", "candidate", "description", "log_tail", "mutate_seconds", "evaluate_seconds", "setup_seconds", "bundle_cache_hit", "llm_tokens", "cost_usd")
    class ExtraMetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    STATUS_FIELD_NUMBER: _ClassVar[int]
    HAS_METRIC_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    EXTRA_METRICS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LOG_TAIL_FIELD_NUMBER: _ClassVar[int]
    MUTATE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EVALUATE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SETUP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    LLM_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    status: _common_pb2.ResultStatus
    has_metric: bool
    metric: float
    extra_metrics: _containers.ScalarMap[str, float]
    candidate: bytes
    description: str
    log_tail: str
    mutate_seconds: float
    evaluate_seconds: float
    setup_seconds: float
    bundle_cache_hit: bool
    llm_tokens: int
    cost_usd: float
    def __init__(self, status: _Optional[_Union[_common_pb2.ResultStatus, str]] = ..., has_metric: _Optional[bool] = ..., metric: _Optional[float] = ..., extra_metrics: _Optional[_Mapping[str, float]] = ..., candidate: _Optional[bytes] = ..., description: _Optional[str] = ..., log_tail: _Optional[str] = ..., mutate_seconds: _Optional[float] = ..., evaluate_seconds: _Optional[float] = ..., setup_seconds: _Optional[float] = ..., bundle_cache_hit: _Optional[bool] = ..., llm_tokens: _Optional[int] = ..., cost_usd: _Optional[float] = ...) -> None: ...

class ReportRequest(_message.Message):
    __slots__ = ("worker_id", "lease_id", "result", "next")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    lease_id: str
    result: Result
    next: LeaseRequest
    def __init__(self, worker_id: _Optional[str] = ..., lease_id: _Optional[str] = ..., result: _Optional[_Union[Result, _Mapping]] = ..., next: _Optional[_Union[LeaseRequest, _Mapping]] = ...) -> None: ...

class ReportResponse(_message.Message):
    __slots__ = ("result_id", "duplicate", "decision", "new_champion", "next", "stale_lease_ids")
    RESULT_ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    NEW_CHAMPION_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    STALE_LEASE_IDS_FIELD_NUMBER: _ClassVar[int]
    result_id: str
    duplicate: bool
    decision: str
    new_champion: bool
    next: LeaseResponse
    stale_lease_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, result_id: _Optional[str] = ..., duplicate: _Optional[bool] = ..., decision: _Optional[str] = ..., new_champion: _Optional[bool] = ..., next: _Optional[_Union[LeaseResponse, _Mapping]] = ..., stale_lease_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("worker_id", "lease_ids")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_IDS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    lease_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, worker_id: _Optional[str] = ..., lease_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ("released",)
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    released: int
    def __init__(self, released: _Optional[int] = ...) -> None: ...

class FetchBundleRequest(_message.Message):
    __slots__ = ("bundle_hash",)
    BUNDLE_HASH_FIELD_NUMBER: _ClassVar[int]
    bundle_hash: str
    def __init__(self, bundle_hash: _Optional[str] = ...) -> None: ...

class BundleChunk(_message.Message):
    __slots__ = ("data", "offset", "total_size")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    offset: int
    total_size: int
    def __init__(self, data: _Optional[bytes] = ..., offset: _Optional[int] = ..., total_size: _Optional[int] = ...) -> None: ...
