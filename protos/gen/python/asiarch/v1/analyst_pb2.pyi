from asiarch.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExperimentSort(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPERIMENT_SORT_UNSPECIFIED: _ClassVar[ExperimentSort]
    EXPERIMENT_SORT_FITNESS_DESC: _ClassVar[ExperimentSort]
    EXPERIMENT_SORT_CREATED_DESC: _ClassVar[ExperimentSort]
    EXPERIMENT_SORT_CREATED_ASC: _ClassVar[ExperimentSort]

class Collection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COLLECTION_UNSPECIFIED: _ClassVar[Collection]
    COLLECTION_MOTIVATIONS: _ClassVar[Collection]
    COLLECTION_ANALYSES: _ClassVar[Collection]
    COLLECTION_COGNITION: _ClassVar[Collection]
EXPERIMENT_SORT_UNSPECIFIED: ExperimentSort
EXPERIMENT_SORT_FITNESS_DESC: ExperimentSort
EXPERIMENT_SORT_CREATED_DESC: ExperimentSort
EXPERIMENT_SORT_CREATED_ASC: ExperimentSort
COLLECTION_UNSPECIFIED: Collection
COLLECTION_MOTIVATIONS: Collection
COLLECTION_ANALYSES: Collection
COLLECTION_COGNITION: Collection

class RecordRequest(_message.Message):
    __slots__ = ("experiment",)
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: _common_pb2.Experiment
    def __init__(self, experiment: _Optional[_Union[_common_pb2.Experiment, _Mapping]] = ...) -> None: ...

class RecordResponse(_message.Message):
    __slots__ = ("experiment", "created")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    experiment: _common_pb2.Experiment
    created: bool
    def __init__(self, experiment: _Optional[_Union[_common_pb2.Experiment, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class GetExperimentRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListExperimentsRequest(_message.Message):
    __slots__ = ("run_id", "statuses", "sort", "page_size", "page_token", "include_replicates")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    SORT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_REPLICATES_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    statuses: _containers.RepeatedScalarFieldContainer[_common_pb2.ExperimentStatus]
    sort: ExperimentSort
    page_size: int
    page_token: str
    include_replicates: bool
    def __init__(self, run_id: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[_common_pb2.ExperimentStatus, str]]] = ..., sort: _Optional[_Union[ExperimentSort, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., include_replicates: _Optional[bool] = ...) -> None: ...

class ListExperimentsResponse(_message.Message):
    __slots__ = ("experiments", "next_page_token", "total")
    EXPERIMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    experiments: _containers.RepeatedCompositeFieldContainer[_common_pb2.Experiment]
    next_page_token: str
    total: int
    def __init__(self, experiments: _Optional[_Iterable[_Union[_common_pb2.Experiment, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total: _Optional[int] = ...) -> None: ...

class LineageRequest(_message.Message):
    __slots__ = ("id", "max_depth")
    ID_FIELD_NUMBER: _ClassVar[int]
    MAX_DEPTH_FIELD_NUMBER: _ClassVar[int]
    id: str
    max_depth: int
    def __init__(self, id: _Optional[str] = ..., max_depth: _Optional[int] = ...) -> None: ...

class LineageNode(_message.Message):
    __slots__ = ("id", "name", "parent_ids", "fitness", "generation", "status")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARENT_IDS_FIELD_NUMBER: _ClassVar[int]
    FITNESS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    parent_ids: _containers.RepeatedScalarFieldContainer[str]
    fitness: float
    generation: int
    status: _common_pb2.ExperimentStatus
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., parent_ids: _Optional[_Iterable[str]] = ..., fitness: _Optional[float] = ..., generation: _Optional[int] = ..., status: _Optional[_Union[_common_pb2.ExperimentStatus, str]] = ...) -> None: ...

class LineageResponse(_message.Message):
    __slots__ = ("node", "ancestors", "descendants")
    NODE_FIELD_NUMBER: _ClassVar[int]
    ANCESTORS_FIELD_NUMBER: _ClassVar[int]
    DESCENDANTS_FIELD_NUMBER: _ClassVar[int]
    node: LineageNode
    ancestors: _containers.RepeatedCompositeFieldContainer[LineageNode]
    descendants: _containers.RepeatedCompositeFieldContainer[LineageNode]
    def __init__(self, node: _Optional[_Union[LineageNode, _Mapping]] = ..., ancestors: _Optional[_Iterable[_Union[LineageNode, _Mapping]]] = ..., descendants: _Optional[_Iterable[_Union[LineageNode, _Mapping]]] = ...) -> None: ...

class RetrieveRequest(_message.Message):
    __slots__ = ("query", "collections", "k", "min_score", "run_id")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    query: str
    collections: _containers.RepeatedScalarFieldContainer[Collection]
    k: int
    min_score: float
    run_id: str
    def __init__(self, query: _Optional[str] = ..., collections: _Optional[_Iterable[_Union[Collection, str]]] = ..., k: _Optional[int] = ..., min_score: _Optional[float] = ..., run_id: _Optional[str] = ...) -> None: ...

class KnowledgeHit(_message.Message):
    __slots__ = ("id", "collection", "score", "title", "text", "experiment_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    collection: Collection
    score: float
    title: str
    text: str
    experiment_id: str
    def __init__(self, id: _Optional[str] = ..., collection: _Optional[_Union[Collection, str]] = ..., score: _Optional[float] = ..., title: _Optional[str] = ..., text: _Optional[str] = ..., experiment_id: _Optional[str] = ...) -> None: ...

class RetrieveResponse(_message.Message):
    __slots__ = ("hits",)
    HITS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[KnowledgeHit]
    def __init__(self, hits: _Optional[_Iterable[_Union[KnowledgeHit, _Mapping]]] = ...) -> None: ...

class FindSimilarRequest(_message.Message):
    __slots__ = ("motivation", "k", "run_id", "exclude_id")
    MOTIVATION_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_ID_FIELD_NUMBER: _ClassVar[int]
    motivation: str
    k: int
    run_id: str
    exclude_id: str
    def __init__(self, motivation: _Optional[str] = ..., k: _Optional[int] = ..., run_id: _Optional[str] = ..., exclude_id: _Optional[str] = ...) -> None: ...

class SimilarExperiment(_message.Message):
    __slots__ = ("experiment_id", "name", "similarity", "motivation")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    MOTIVATION_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    name: str
    similarity: float
    motivation: str
    def __init__(self, experiment_id: _Optional[str] = ..., name: _Optional[str] = ..., similarity: _Optional[float] = ..., motivation: _Optional[str] = ...) -> None: ...

class FindSimilarResponse(_message.Message):
    __slots__ = ("matches", "novelty")
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    NOVELTY_FIELD_NUMBER: _ClassVar[int]
    matches: _containers.RepeatedCompositeFieldContainer[SimilarExperiment]
    novelty: float
    def __init__(self, matches: _Optional[_Iterable[_Union[SimilarExperiment, _Mapping]]] = ..., novelty: _Optional[float] = ...) -> None: ...

class CognitionEntry(_message.Message):
    __slots__ = ("id", "title", "trigger_patterns", "design_insight", "algorithm", "implementation_guidance", "reference", "tags")
    ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_PATTERNS_FIELD_NUMBER: _ClassVar[int]
    DESIGN_INSIGHT_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    IMPLEMENTATION_GUIDANCE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    id: str
    title: str
    trigger_patterns: _containers.RepeatedScalarFieldContainer[str]
    design_insight: str
    algorithm: str
    implementation_guidance: str
    reference: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., title: _Optional[str] = ..., trigger_patterns: _Optional[_Iterable[str]] = ..., design_insight: _Optional[str] = ..., algorithm: _Optional[str] = ..., implementation_guidance: _Optional[str] = ..., reference: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class IngestCognitionRequest(_message.Message):
    __slots__ = ("entries", "include_builtin")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_BUILTIN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[CognitionEntry]
    include_builtin: bool
    def __init__(self, entries: _Optional[_Iterable[_Union[CognitionEntry, _Mapping]]] = ..., include_builtin: _Optional[bool] = ...) -> None: ...

class IngestCognitionResponse(_message.Message):
    __slots__ = ("ingested", "unchanged", "total")
    INGESTED_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    ingested: int
    unchanged: int
    total: int
    def __init__(self, ingested: _Optional[int] = ..., unchanged: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class ConfirmRequest(_message.Message):
    __slots__ = ("experiment_id", "against_id", "rung")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    AGAINST_ID_FIELD_NUMBER: _ClassVar[int]
    RUNG_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    against_id: str
    rung: int
    def __init__(self, experiment_id: _Optional[str] = ..., against_id: _Optional[str] = ..., rung: _Optional[int] = ...) -> None: ...

class ConfirmResponse(_message.Message):
    __slots__ = ("experiment",)
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: _common_pb2.Experiment
    def __init__(self, experiment: _Optional[_Union[_common_pb2.Experiment, _Mapping]] = ...) -> None: ...
