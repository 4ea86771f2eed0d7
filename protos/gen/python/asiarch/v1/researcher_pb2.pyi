from asiarch.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProposeRequest(_message.Message):
    __slots__ = ("parent", "references", "mode", "seed", "run_id", "experiment_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    parent: _common_pb2.Experiment
    references: _containers.RepeatedCompositeFieldContainer[_common_pb2.Experiment]
    mode: _common_pb2.ProposalMode
    seed: int
    run_id: str
    experiment_id: str
    def __init__(self, parent: _Optional[_Union[_common_pb2.Experiment, _Mapping]] = ..., references: _Optional[_Iterable[_Union[_common_pb2.Experiment, _Mapping]]] = ..., mode: _Optional[_Union[_common_pb2.ProposalMode, str]] = ..., seed: _Optional[int] = ..., run_id: _Optional[str] = ..., experiment_id: _Optional[str] = ...) -> None: ...

class ProposeResponse(_message.Message):
    __slots__ = ("proposal", "knowledge_ids", "max_similarity", "rewrites", "fallback_reason")
    PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    KNOWLEDGE_IDS_FIELD_NUMBER: _ClassVar[int]
    MAX_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    REWRITES_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_REASON_FIELD_NUMBER: _ClassVar[int]
    proposal: _common_pb2.Proposal
    knowledge_ids: _containers.RepeatedScalarFieldContainer[str]
    max_similarity: float
    rewrites: int
    fallback_reason: str
    def __init__(self, proposal: _Optional[_Union[_common_pb2.Proposal, _Mapping]] = ..., knowledge_ids: _Optional[_Iterable[str]] = ..., max_similarity: _Optional[float] = ..., rewrites: _Optional[int] = ..., fallback_reason: _Optional[str] = ...) -> None: ...

class RepairRequest(_message.Message):
    __slots__ = ("source", "spec_json", "failed_stage", "error", "attempt", "previous_attempts", "motivation")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    FAILED_STAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    MOTIVATION_FIELD_NUMBER: _ClassVar[int]
    source: _common_pb2.ArchitectureSource
    spec_json: str
    failed_stage: _common_pb2.EvaluationStage
    error: str
    attempt: int
    previous_attempts: _containers.RepeatedCompositeFieldContainer[_common_pb2.RepairAttempt]
    motivation: str
    def __init__(self, source: _Optional[_Union[_common_pb2.ArchitectureSource, _Mapping]] = ..., spec_json: _Optional[str] = ..., failed_stage: _Optional[_Union[_common_pb2.EvaluationStage, str]] = ..., error: _Optional[str] = ..., attempt: _Optional[int] = ..., previous_attempts: _Optional[_Iterable[_Union[_common_pb2.RepairAttempt, _Mapping]]] = ..., motivation: _Optional[str] = ...) -> None: ...

class RepairResponse(_message.Message):
    __slots__ = ("source", "spec_json", "summary", "repaired_by")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    REPAIRED_BY_FIELD_NUMBER: _ClassVar[int]
    source: _common_pb2.ArchitectureSource
    spec_json: str
    summary: str
    repaired_by: str
    def __init__(self, source: _Optional[_Union[_common_pb2.ArchitectureSource, _Mapping]] = ..., spec_json: _Optional[str] = ..., summary: _Optional[str] = ..., repaired_by: _Optional[str] = ...) -> None: ...
