from asiarch.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NextAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NEXT_ACTION_UNSPECIFIED: _ClassVar[NextAction]
    NEXT_ACTION_EXPAND: _ClassVar[NextAction]
    NEXT_ACTION_REEVALUATE: _ClassVar[NextAction]
NEXT_ACTION_UNSPECIFIED: NextAction
NEXT_ACTION_EXPAND: NextAction
NEXT_ACTION_REEVALUATE: NextAction

class Candidate(_message.Message):
    __slots__ = ("id", "parent_id", "fitness", "metrics", "reference_only", "evaluations", "name")
    ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    FITNESS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ONLY_FIELD_NUMBER: _ClassVar[int]
    EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    id: str
    parent_id: str
    fitness: float
    metrics: _common_pb2.Metrics
    reference_only: bool
    evaluations: int
    name: str
    def __init__(self, id: _Optional[str] = ..., parent_id: _Optional[str] = ..., fitness: _Optional[float] = ..., metrics: _Optional[_Union[_common_pb2.Metrics, _Mapping]] = ..., reference_only: _Optional[bool] = ..., evaluations: _Optional[int] = ..., name: _Optional[str] = ...) -> None: ...

class SelectionOptions(_message.Message):
    __slots__ = ("parent_pool", "reference_pool_end", "references", "exploration", "success_threshold", "expansion_exponent", "lexicase_epsilon", "objectives")
    PARENT_POOL_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_POOL_END_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    EXPLORATION_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    EXPANSION_EXPONENT_FIELD_NUMBER: _ClassVar[int]
    LEXICASE_EPSILON_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVES_FIELD_NUMBER: _ClassVar[int]
    parent_pool: int
    reference_pool_end: int
    references: int
    exploration: float
    success_threshold: float
    expansion_exponent: float
    lexicase_epsilon: float
    objectives: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, parent_pool: _Optional[int] = ..., reference_pool_end: _Optional[int] = ..., references: _Optional[int] = ..., exploration: _Optional[float] = ..., success_threshold: _Optional[float] = ..., expansion_exponent: _Optional[float] = ..., lexicase_epsilon: _Optional[float] = ..., objectives: _Optional[_Iterable[str]] = ...) -> None: ...

class SelectParentsRequest(_message.Message):
    __slots__ = ("strategy", "candidates", "k", "seed", "options")
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    strategy: str
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    k: int
    seed: int
    options: SelectionOptions
    def __init__(self, strategy: _Optional[str] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., k: _Optional[int] = ..., seed: _Optional[int] = ..., options: _Optional[_Union[SelectionOptions, _Mapping]] = ...) -> None: ...

class ParentSelection(_message.Message):
    __slots__ = ("parent_id", "reference_ids", "score", "reason")
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_IDS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    parent_id: str
    reference_ids: _containers.RepeatedScalarFieldContainer[str]
    score: float
    reason: str
    def __init__(self, parent_id: _Optional[str] = ..., reference_ids: _Optional[_Iterable[str]] = ..., score: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class SelectParentsResponse(_message.Message):
    __slots__ = ("strategy", "selections", "next_action", "next_action_reason")
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    SELECTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_ACTION_FIELD_NUMBER: _ClassVar[int]
    NEXT_ACTION_REASON_FIELD_NUMBER: _ClassVar[int]
    strategy: str
    selections: _containers.RepeatedCompositeFieldContainer[ParentSelection]
    next_action: NextAction
    next_action_reason: str
    def __init__(self, strategy: _Optional[str] = ..., selections: _Optional[_Iterable[_Union[ParentSelection, _Mapping]]] = ..., next_action: _Optional[_Union[NextAction, str]] = ..., next_action_reason: _Optional[str] = ...) -> None: ...

class ListStrategiesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StrategyInfo(_message.Message):
    __slots__ = ("name", "description", "source", "options")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    source: str
    options: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., source: _Optional[str] = ..., options: _Optional[_Iterable[str]] = ...) -> None: ...

class ListStrategiesResponse(_message.Message):
    __slots__ = ("strategies",)
    STRATEGIES_FIELD_NUMBER: _ClassVar[int]
    strategies: _containers.RepeatedCompositeFieldContainer[StrategyInfo]
    def __init__(self, strategies: _Optional[_Iterable[_Union[StrategyInfo, _Mapping]]] = ...) -> None: ...
