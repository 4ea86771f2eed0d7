from asiarch.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ValidateRequest(_message.Message):
    __slots__ = ("source", "budget", "reference_only", "static_only")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ONLY_FIELD_NUMBER: _ClassVar[int]
    STATIC_ONLY_FIELD_NUMBER: _ClassVar[int]
    source: _common_pb2.ArchitectureSource
    budget: _common_pb2.Budget
    reference_only: bool
    static_only: bool
    def __init__(self, source: _Optional[_Union[_common_pb2.ArchitectureSource, _Mapping]] = ..., budget: _Optional[_Union[_common_pb2.Budget, _Mapping]] = ..., reference_only: _Optional[bool] = ..., static_only: _Optional[bool] = ...) -> None: ...

class ValidateResponse(_message.Message):
    __slots__ = ("valid", "checks", "failure_reason", "proxies")
    class ProxiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VALID_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    PROXIES_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    checks: _containers.RepeatedCompositeFieldContainer[_common_pb2.CheckResult]
    failure_reason: str
    proxies: _containers.ScalarMap[str, float]
    def __init__(self, valid: _Optional[bool] = ..., checks: _Optional[_Iterable[_Union[_common_pb2.CheckResult, _Mapping]]] = ..., failure_reason: _Optional[str] = ..., proxies: _Optional[_Mapping[str, float]] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("experiment_id", "proposal", "budget", "max_repairs")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    MAX_REPAIRS_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    proposal: _common_pb2.Proposal
    budget: _common_pb2.Budget
    max_repairs: int
    def __init__(self, experiment_id: _Optional[str] = ..., proposal: _Optional[_Union[_common_pb2.Proposal, _Mapping]] = ..., budget: _Optional[_Union[_common_pb2.Budget, _Mapping]] = ..., max_repairs: _Optional[int] = ...) -> None: ...

class EvaluationProgress(_message.Message):
    __slots__ = ("stage", "step", "total_steps", "loss", "message", "elapsed_seconds", "attempt")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    stage: _common_pb2.EvaluationStage
    step: int
    total_steps: int
    loss: float
    message: str
    elapsed_seconds: float
    attempt: int
    def __init__(self, stage: _Optional[_Union[_common_pb2.EvaluationStage, str]] = ..., step: _Optional[int] = ..., total_steps: _Optional[int] = ..., loss: _Optional[float] = ..., message: _Optional[str] = ..., elapsed_seconds: _Optional[float] = ..., attempt: _Optional[int] = ...) -> None: ...

class EvaluationEvent(_message.Message):
    __slots__ = ("experiment_id", "progress", "check", "result")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    CHECK_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    progress: EvaluationProgress
    check: _common_pb2.CheckResult
    result: _common_pb2.Evaluation
    def __init__(self, experiment_id: _Optional[str] = ..., progress: _Optional[_Union[EvaluationProgress, _Mapping]] = ..., check: _Optional[_Union[_common_pb2.CheckResult, _Mapping]] = ..., result: _Optional[_Union[_common_pb2.Evaluation, _Mapping]] = ...) -> None: ...

class ListKernelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class KernelInfo(_message.Message):
    __slots__ = ("name", "family", "form", "devices", "has_backward", "fla_name")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    FORM_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    HAS_BACKWARD_FIELD_NUMBER: _ClassVar[int]
    FLA_NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    family: str
    form: str
    devices: _containers.RepeatedScalarFieldContainer[str]
    has_backward: bool
    fla_name: str
    def __init__(self, name: _Optional[str] = ..., family: _Optional[str] = ..., form: _Optional[str] = ..., devices: _Optional[_Iterable[str]] = ..., has_backward: _Optional[bool] = ..., fla_name: _Optional[str] = ...) -> None: ...

class ListKernelsResponse(_message.Message):
    __slots__ = ("kernels", "triton_version", "cuda_available")
    KERNELS_FIELD_NUMBER: _ClassVar[int]
    TRITON_VERSION_FIELD_NUMBER: _ClassVar[int]
    CUDA_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    kernels: _containers.RepeatedCompositeFieldContainer[KernelInfo]
    triton_version: str
    cuda_available: bool
    def __init__(self, kernels: _Optional[_Iterable[_Union[KernelInfo, _Mapping]]] = ..., triton_version: _Optional[str] = ..., cuda_available: _Optional[bool] = ...) -> None: ...

class ListBaselinesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListBaselinesResponse(_message.Message):
    __slots__ = ("baselines",)
    BASELINES_FIELD_NUMBER: _ClassVar[int]
    baselines: _containers.RepeatedCompositeFieldContainer[_common_pb2.Proposal]
    def __init__(self, baselines: _Optional[_Iterable[_Union[_common_pb2.Proposal, _Mapping]]] = ...) -> None: ...
