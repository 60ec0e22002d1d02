from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_KIND_UNSPECIFIED: _ClassVar[TaskKind]
    TASK_KIND_EXPLORE: _ClassVar[TaskKind]
    TASK_KIND_VERIFY: _ClassVar[TaskKind]
    TASK_KIND_BASELINE: _ClassVar[TaskKind]

class ResultStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESULT_STATUS_UNSPECIFIED: _ClassVar[ResultStatus]
    RESULT_STATUS_OK: _ClassVar[ResultStatus]
    RESULT_STATUS_CRASH: _ClassVar[ResultStatus]
    RESULT_STATUS_TIMEOUT: _ClassVar[ResultStatus]
    RESULT_STATUS_NO_METRIC: _ClassVar[ResultStatus]
    RESULT_STATUS_INVALID_METRIC: _ClassVar[ResultStatus]
    RESULT_STATUS_TAMPERED: _ClassVar[ResultStatus]
    RESULT_STATUS_MUTATOR_ERROR: _ClassVar[ResultStatus]
    RESULT_STATUS_RESOURCE_LIMIT: _ClassVar[ResultStatus]
    RESULT_STATUS_SETUP_FAILED: _ClassVar[ResultStatus]
    RESULT_STATUS_NO_CHANGE: _ClassVar[ResultStatus]
    RESULT_STATUS_DUPLICATE: _ClassVar[ResultStatus]
TASK_KIND_UNSPECIFIED: TaskKind
TASK_KIND_EXPLORE: TaskKind
TASK_KIND_VERIFY: TaskKind
TASK_KIND_BASELINE: TaskKind
RESULT_STATUS_UNSPECIFIED: ResultStatus
RESULT_STATUS_OK: ResultStatus
RESULT_STATUS_CRASH: ResultStatus
RESULT_STATUS_TIMEOUT: ResultStatus
RESULT_STATUS_NO_METRIC: ResultStatus
RESULT_STATUS_INVALID_METRIC: ResultStatus
RESULT_STATUS_TAMPERED: ResultStatus
RESULT_STATUS_MUTATOR_ERROR: ResultStatus
RESULT_STATUS_RESOURCE_LIMIT: ResultStatus
RESULT_STATUS_SETUP_FAILED: ResultStatus
RESULT_STATUS_NO_CHANGE: ResultStatus
RESULT_STATUS_DUPLICATE: ResultStatus

class Gpu(_message.Message):
    __slots__ = ("index", "name", "memory_bytes", "driver")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    index: int
    name: str
    memory_bytes: int
    driver: str
    def __init__(self, index: _Optional[int] = ..., name: _Optional[str] = ..., memory_bytes: _Optional[int] = ..., driver: _Optional[str] = ...) -> None: ...

class Hardware(_message.Message):
    __slots__ = ("cpu_model", "cpu_cores", "memory_bytes", "gpus", "platform", "python_version")
    CPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    CPU_CORES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    cpu_model: str
    cpu_cores: int
    memory_bytes: int
    gpus: _containers.RepeatedCompositeFieldContainer[Gpu]
    platform: str
    python_version: str
    def __init__(self, cpu_model: _Optional[str] = ..., cpu_cores: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., gpus: _Optional[_Iterable[_Union[Gpu, _Mapping]]] = ..., platform: _Optional[str] = ..., python_version: _Optional[str] = ...) -> None: ...

class Version(_message.Message):
    __slots__ = ("study", "hash", "parent_hash", "content", "description", "author", "has_metric", "metric", "created_unix")
    STUDY_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    PARENT_HASH_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    HAS_METRIC_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    study: str
    hash: str
    parent_hash: str
    content: bytes
    description: str
    author: str
    has_metric: bool
    metric: float
    created_unix: float
    def __init__(self, study: _Optional[str] = ..., hash: _Optional[str] = ..., parent_hash: _Optional[str] = ..., content: _Optional[bytes] = ..., description: _Optional[str] = ..., author: _Optional[str] = ..., has_metric: _Optional[bool] = ..., metric: _Optional[float] = ..., created_unix: _Optional[float] = ...) -> None: ...

class SlotTime(_message.Message):
    __slots__ = ("slot", "evaluating_seconds", "mutating_seconds", "waiting_seconds")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    EVALUATING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MUTATING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WAITING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    slot: int
    evaluating_seconds: float
    mutating_seconds: float
    waiting_seconds: float
    def __init__(self, slot: _Optional[int] = ..., evaluating_seconds: _Optional[float] = ..., mutating_seconds: _Optional[float] = ..., waiting_seconds: _Optional[float] = ...) -> None: ...
