from autoswarm.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AddStudyRequest(_message.Message):
    __slots__ = ("bundle", "max_evaluations", "priority")
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    MAX_EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    bundle: bytes
    max_evaluations: int
    priority: int
    def __init__(self, bundle: _Optional[bytes] = ..., max_evaluations: _Optional[int] = ..., priority: _Optional[int] = ...) -> None: ...

class AddStudyResponse(_message.Message):
    __slots__ = ("study", "bundle_hash", "champion_hash", "already_present", "max_evaluations", "priority", "changed")
    STUDY_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_HASH_FIELD_NUMBER: _ClassVar[int]
    CHAMPION_HASH_FIELD_NUMBER: _ClassVar[int]
    ALREADY_PRESENT_FIELD_NUMBER: _ClassVar[int]
    MAX_EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    study: str
    bundle_hash: str
    champion_hash: str
    already_present: bool
    max_evaluations: int
    priority: int
    changed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, study: _Optional[str] = ..., bundle_hash: _Optional[str] = ..., champion_hash: _Optional[str] = ..., already_present: _Optional[bool] = ..., max_evaluations: _Optional[int] = ..., priority: _Optional[int] = ..., changed: _Optional[_Iterable[str]] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("workers",)
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    workers: WorkerPage
    def __init__(self, workers: _Optional[_Union[WorkerPage, _Mapping]] = ...) -> None: ...

class WorkerPage(_message.Message):
    __slots__ = ("offset", "limit")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    offset: int
    limit: int
    def __init__(self, offset: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class WorkerCount(_message.Message):
    __slots__ = ("state", "hardware_class", "workers", "slots", "running")
    STATE_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_CLASS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    state: str
    hardware_class: str
    workers: int
    slots: int
    running: int
    def __init__(self, state: _Optional[str] = ..., hardware_class: _Optional[str] = ..., workers: _Optional[int] = ..., slots: _Optional[int] = ..., running: _Optional[int] = ...) -> None: ...

class MutatorCount(_message.Message):
    __slots__ = ("mutator", "workers")
    MUTATOR_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    mutator: str
    workers: int
    def __init__(self, mutator: _Optional[str] = ..., workers: _Optional[int] = ...) -> None: ...

class StudyStatus(_message.Message):
    __slots__ = ("name", "metric", "direction", "champion_hash", "has_champion_metric", "champion_metric", "evaluations", "improvements", "in_flight", "max_evaluations", "done", "initial_metric", "has_initial_metric", "error", "pending_claims", "compare", "quorum", "llm_tokens", "cost_usd", "max_tokens", "max_cost_usd", "failed_edits", "paused", "priority", "spec_json", "bundle_hash")
    NAME_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    CHAMPION_HASH_FIELD_NUMBER: _ClassVar[int]
    HAS_CHAMPION_METRIC_FIELD_NUMBER: _ClassVar[int]
    CHAMPION_METRIC_FIELD_NUMBER: _ClassVar[int]
    EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    IMPROVEMENTS_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    MAX_EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    INITIAL_METRIC_FIELD_NUMBER: _ClassVar[int]
    HAS_INITIAL_METRIC_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PENDING_CLAIMS_FIELD_NUMBER: _ClassVar[int]
    COMPARE_FIELD_NUMBER: _ClassVar[int]
    QUORUM_FIELD_NUMBER: _ClassVar[int]
    LLM_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_COST_USD_FIELD_NUMBER: _ClassVar[int]
    FAILED_EDITS_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_HASH_FIELD_NUMBER: _ClassVar[int]
    name: str
    metric: str
    direction: str
    champion_hash: str
    has_champion_metric: bool
    champion_metric: float
    evaluations: int
    improvements: int
    in_flight: int
    max_evaluations: int
    done: bool
    initial_metric: float
    has_initial_metric: bool
    error: str
    pending_claims: int
    compare: str
    quorum: int
    llm_tokens: int
    cost_usd: float
    max_tokens: int
    max_cost_usd: float
    failed_edits: int
    paused: bool
    priority: int
    spec_json: str
    bundle_hash: str
    def __init__(self, name: _Optional[str] = ..., metric: _Optional[str] = ..., direction: _Optional[str] = ..., champion_hash: _Optional[str] = ..., has_champion_metric: _Optional[bool] = ..., champion_metric: _Optional[float] = ..., evaluations: _Optional[int] = ..., improvements: _Optional[int] = ..., in_flight: _Optional[int] = ..., max_evaluations: _Optional[int] = ..., done: _Optional[bool] = ..., initial_metric: _Optional[float] = ..., has_initial_metric: _Optional[bool] = ..., error: _Optional[str] = ..., pending_claims: _Optional[int] = ..., compare: _Optional[str] = ..., quorum: _Optional[int] = ..., llm_tokens: _Optional[int] = ..., cost_usd: _Optional[float] = ..., max_tokens: _Optional[int] = ..., max_cost_usd: _Optional[float] = ..., failed_edits: _Optional[int] = ..., paused: _Optional[bool] = ..., priority: _Optional[int] = ..., spec_json: _Optional[str] = ..., bundle_hash: _Optional[str] = ...) -> None: ...

class WorkerStatus(_message.Message):
    __slots__ = ("worker_id", "name", "state", "hardware_class", "last_seen_unix", "results", "slots", "running", "mutators", "claims_confirmed", "claims_refuted", "owner", "slot_times")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_CLASS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_UNIX_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    MUTATORS_FIELD_NUMBER: _ClassVar[int]
    CLAIMS_CONFIRMED_FIELD_NUMBER: _ClassVar[int]
    CLAIMS_REFUTED_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    SLOT_TIMES_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    name: str
    state: str
    hardware_class: str
    last_seen_unix: float
    results: int
    slots: int
    running: int
    mutators: _containers.RepeatedScalarFieldContainer[str]
    claims_confirmed: int
    claims_refuted: int
    owner: str
    slot_times: _containers.RepeatedCompositeFieldContainer[_common_pb2.SlotTime]
    def __init__(self, worker_id: _Optional[str] = ..., name: _Optional[str] = ..., state: _Optional[str] = ..., hardware_class: _Optional[str] = ..., last_seen_unix: _Optional[float] = ..., results: _Optional[int] = ..., slots: _Optional[int] = ..., running: _Optional[int] = ..., mutators: _Optional[_Iterable[str]] = ..., claims_confirmed: _Optional[int] = ..., claims_refuted: _Optional[int] = ..., owner: _Optional[str] = ..., slot_times: _Optional[_Iterable[_Union[_common_pb2.SlotTime, _Mapping]]] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("studies", "workers", "worker_counts", "mutator_counts", "workers_total", "counted_unix")
    STUDIES_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    WORKER_COUNTS_FIELD_NUMBER: _ClassVar[int]
    MUTATOR_COUNTS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    COUNTED_UNIX_FIELD_NUMBER: _ClassVar[int]
    studies: _containers.RepeatedCompositeFieldContainer[StudyStatus]
    workers: _containers.RepeatedCompositeFieldContainer[WorkerStatus]
    worker_counts: _containers.RepeatedCompositeFieldContainer[WorkerCount]
    mutator_counts: _containers.RepeatedCompositeFieldContainer[MutatorCount]
    workers_total: int
    counted_unix: float
    def __init__(self, studies: _Optional[_Iterable[_Union[StudyStatus, _Mapping]]] = ..., workers: _Optional[_Iterable[_Union[WorkerStatus, _Mapping]]] = ..., worker_counts: _Optional[_Iterable[_Union[WorkerCount, _Mapping]]] = ..., mutator_counts: _Optional[_Iterable[_Union[MutatorCount, _Mapping]]] = ..., workers_total: _Optional[int] = ..., counted_unix: _Optional[float] = ...) -> None: ...

class HistoryRequest(_message.Message):
    __slots__ = ("study",)
    STUDY_FIELD_NUMBER: _ClassVar[int]
    study: str
    def __init__(self, study: _Optional[str] = ...) -> None: ...

class HistoryRow(_message.Message):
    __slots__ = ("result_id", "version", "parent", "kind", "status", "has_metric", "metric", "description", "worker", "hardware_class", "created_unix", "evaluate_seconds", "verifies_of", "has_improvement", "improvement", "threshold", "llm_tokens", "cost_usd", "reason", "mutate_seconds")
    RESULT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    HAS_METRIC_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_CLASS_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    EVALUATE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    VERIFIES_OF_FIELD_NUMBER: _ClassVar[int]
    HAS_IMPROVEMENT_FIELD_NUMBER: _ClassVar[int]
    IMPROVEMENT_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    LLM_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MUTATE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    result_id: str
    version: str
    parent: str
    kind: str
    status: str
    has_metric: bool
    metric: float
    description: str
    worker: str
    hardware_class: str
    created_unix: float
    evaluate_seconds: float
    verifies_of: str
    has_improvement: bool
    improvement: float
    threshold: float
    llm_tokens: int
    cost_usd: float
    reason: str
    mutate_seconds: float
    def __init__(self, result_id: _Optional[str] = ..., version: _Optional[str] = ..., parent: _Optional[str] = ..., kind: _Optional[str] = ..., status: _Optional[str] = ..., has_metric: _Optional[bool] = ..., metric: _Optional[float] = ..., description: _Optional[str] = ..., worker: _Optional[str] = ..., hardware_class: _Optional[str] = ..., created_unix: _Optional[float] = ..., evaluate_seconds: _Optional[float] = ..., verifies_of: _Optional[str] = ..., has_improvement: _Optional[bool] = ..., improvement: _Optional[float] = ..., threshold: _Optional[float] = ..., llm_tokens: _Optional[int] = ..., cost_usd: _Optional[float] = ..., reason: _Optional[str] = ..., mutate_seconds: _Optional[float] = ...) -> None: ...

class HistoryResponse(_message.Message):
    __slots__ = ("study", "metric", "direction", "rows")
    STUDY_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    study: str
    metric: str
    direction: str
    rows: _containers.RepeatedCompositeFieldContainer[HistoryRow]
    def __init__(self, study: _Optional[str] = ..., metric: _Optional[str] = ..., direction: _Optional[str] = ..., rows: _Optional[_Iterable[_Union[HistoryRow, _Mapping]]] = ...) -> None: ...

class GetVersionRequest(_message.Message):
    __slots__ = ("study", "hash")
    STUDY_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    study: str
    hash: str
    def __init__(self, study: _Optional[str] = ..., hash: _Optional[str] = ...) -> None: ...

class LineageRow(_message.Message):
    __slots__ = ("seq", "version", "parent", "description", "has_metric", "metric", "claimed_by", "verified_by", "deltas", "created_unix")
    class DeltasEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SEQ_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    HAS_METRIC_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_BY_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_BY_FIELD_NUMBER: _ClassVar[int]
    DELTAS_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    seq: int
    version: str
    parent: str
    description: str
    has_metric: bool
    metric: float
    claimed_by: str
    verified_by: _containers.RepeatedScalarFieldContainer[str]
    deltas: _containers.ScalarMap[str, float]
    created_unix: float
    def __init__(self, seq: _Optional[int] = ..., version: _Optional[str] = ..., parent: _Optional[str] = ..., description: _Optional[str] = ..., has_metric: _Optional[bool] = ..., metric: _Optional[float] = ..., claimed_by: _Optional[str] = ..., verified_by: _Optional[_Iterable[str]] = ..., deltas: _Optional[_Mapping[str, float]] = ..., created_unix: _Optional[float] = ...) -> None: ...

class LineageResponse(_message.Message):
    __slots__ = ("study", "metric", "direction", "rows", "events")
    STUDY_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    study: str
    metric: str
    direction: str
    rows: _containers.RepeatedCompositeFieldContainer[LineageRow]
    events: _containers.RepeatedCompositeFieldContainer[StudyEventRow]
    def __init__(self, study: _Optional[str] = ..., metric: _Optional[str] = ..., direction: _Optional[str] = ..., rows: _Optional[_Iterable[_Union[LineageRow, _Mapping]]] = ..., events: _Optional[_Iterable[_Union[StudyEventRow, _Mapping]]] = ...) -> None: ...

class StudyEventRow(_message.Message):
    __slots__ = ("created_unix", "kind", "detail")
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    created_unix: float
    kind: str
    detail: str
    def __init__(self, created_unix: _Optional[float] = ..., kind: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class CreateTokenRequest(_message.Message):
    __slots__ = ("name", "team", "display_name", "anonymous", "reader")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_FIELD_NUMBER: _ClassVar[int]
    READER_FIELD_NUMBER: _ClassVar[int]
    name: str
    team: str
    display_name: str
    anonymous: bool
    reader: bool
    def __init__(self, name: _Optional[str] = ..., team: _Optional[str] = ..., display_name: _Optional[str] = ..., anonymous: _Optional[bool] = ..., reader: _Optional[bool] = ...) -> None: ...

class CreateTokenResponse(_message.Message):
    __slots__ = ("name", "token")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    name: str
    token: str
    def __init__(self, name: _Optional[str] = ..., token: _Optional[str] = ...) -> None: ...

class ListTokensRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TokenInfo(_message.Message):
    __slots__ = ("name", "created_unix", "revoked", "workers", "kind", "team")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    name: str
    created_unix: float
    revoked: bool
    workers: int
    kind: str
    team: str
    def __init__(self, name: _Optional[str] = ..., created_unix: _Optional[float] = ..., revoked: _Optional[bool] = ..., workers: _Optional[int] = ..., kind: _Optional[str] = ..., team: _Optional[str] = ...) -> None: ...

class ListTokensResponse(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[TokenInfo]
    def __init__(self, tokens: _Optional[_Iterable[_Union[TokenInfo, _Mapping]]] = ...) -> None: ...

class RevokeTokenRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RevokeTokenResponse(_message.Message):
    __slots__ = ("revoked",)
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    revoked: int
    def __init__(self, revoked: _Optional[int] = ...) -> None: ...

class ChangeStudyRequest(_message.Message):
    __slots__ = ("study", "action", "priority", "set_max_evaluations", "max_evaluations")
    STUDY_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    SET_MAX_EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    study: str
    action: str
    priority: int
    set_max_evaluations: bool
    max_evaluations: int
    def __init__(self, study: _Optional[str] = ..., action: _Optional[str] = ..., priority: _Optional[int] = ..., set_max_evaluations: _Optional[bool] = ..., max_evaluations: _Optional[int] = ...) -> None: ...

class ChangeStudyResponse(_message.Message):
    __slots__ = ("study", "leases_released")
    STUDY_FIELD_NUMBER: _ClassVar[int]
    LEASES_RELEASED_FIELD_NUMBER: _ClassVar[int]
    study: StudyStatus
    leases_released: int
    def __init__(self, study: _Optional[_Union[StudyStatus, _Mapping]] = ..., leases_released: _Optional[int] = ...) -> None: ...

class GetResultRequest(_message.Message):
    __slots__ = ("result_id",)
    RESULT_ID_FIELD_NUMBER: _ClassVar[int]
    result_id: str
    def __init__(self, result_id: _Optional[str] = ...) -> None: ...

class ResultDetail(_message.Message):
    __slots__ = ("study", "metric", "row", "log_tail", "worker_status", "extra_metrics", "timings")
    class ExtraMetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class TimingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    STUDY_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    ROW_FIELD_NUMBER: _ClassVar[int]
    LOG_TAIL_FIELD_NUMBER: _ClassVar[int]
    WORKER_STATUS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_METRICS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    study: str
    metric: str
    row: HistoryRow
    log_tail: str
    worker_status: str
    extra_metrics: _containers.ScalarMap[str, float]
    timings: _containers.ScalarMap[str, float]
    def __init__(self, study: _Optional[str] = ..., metric: _Optional[str] = ..., row: _Optional[_Union[HistoryRow, _Mapping]] = ..., log_tail: _Optional[str] = ..., worker_status: _Optional[str] = ..., extra_metrics: _Optional[_Mapping[str, float]] = ..., timings: _Optional[_Mapping[str, float]] = ...) -> None: ...

class CreditRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreditRow(_message.Message):
    __slots__ = ("name", "team", "credit", "recent_average", "discoveries", "discovery", "badge", "members", "granted_results")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    RECENT_AVERAGE_FIELD_NUMBER: _ClassVar[int]
    DISCOVERIES_FIELD_NUMBER: _ClassVar[int]
    DISCOVERY_FIELD_NUMBER: _ClassVar[int]
    BADGE_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    GRANTED_RESULTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    team: str
    credit: float
    recent_average: float
    discoveries: int
    discovery: float
    badge: str
    members: int
    granted_results: int
    def __init__(self, name: _Optional[str] = ..., team: _Optional[str] = ..., credit: _Optional[float] = ..., recent_average: _Optional[float] = ..., discoveries: _Optional[int] = ..., discovery: _Optional[float] = ..., badge: _Optional[str] = ..., members: _Optional[int] = ..., granted_results: _Optional[int] = ...) -> None: ...

class CreditResponse(_message.Message):
    __slots__ = ("volunteers", "teams", "computed_unix")
    VOLUNTEERS_FIELD_NUMBER: _ClassVar[int]
    TEAMS_FIELD_NUMBER: _ClassVar[int]
    COMPUTED_UNIX_FIELD_NUMBER: _ClassVar[int]
    volunteers: _containers.RepeatedCompositeFieldContainer[CreditRow]
    teams: _containers.RepeatedCompositeFieldContainer[CreditRow]
    computed_unix: float
    def __init__(self, volunteers: _Optional[_Iterable[_Union[CreditRow, _Mapping]]] = ..., teams: _Optional[_Iterable[_Union[CreditRow, _Mapping]]] = ..., computed_unix: _Optional[float] = ...) -> None: ...
