import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProposalMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROPOSAL_MODE_UNSPECIFIED: _ClassVar[ProposalMode]
    PROPOSAL_MODE_CODE: _ClassVar[ProposalMode]
    PROPOSAL_MODE_DSL: _ClassVar[ProposalMode]

class ProposalOrigin(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROPOSAL_ORIGIN_UNSPECIFIED: _ClassVar[ProposalOrigin]
    PROPOSAL_ORIGIN_BASELINE: _ClassVar[ProposalOrigin]
    PROPOSAL_ORIGIN_LLM_CODE: _ClassVar[ProposalOrigin]
    PROPOSAL_ORIGIN_LLM_DSL: _ClassVar[ProposalOrigin]
    PROPOSAL_ORIGIN_DSL_MUTATION: _ClassVar[ProposalOrigin]
    PROPOSAL_ORIGIN_DSL_CROSSOVER: _ClassVar[ProposalOrigin]
    PROPOSAL_ORIGIN_MANUAL: _ClassVar[ProposalOrigin]

class BudgetPreset(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BUDGET_PRESET_UNSPECIFIED: _ClassVar[BudgetPreset]
    BUDGET_PRESET_SMOKE: _ClassVar[BudgetPreset]
    BUDGET_PRESET_CPU: _ClassVar[BudgetPreset]
    BUDGET_PRESET_GPU: _ClassVar[BudgetPreset]
    BUDGET_PRESET_SMALL: _ClassVar[BudgetPreset]

class Precision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRECISION_UNSPECIFIED: _ClassVar[Precision]
    PRECISION_FP32: _ClassVar[Precision]
    PRECISION_BF16_AUTOCAST: _ClassVar[Precision]

class EvaluationStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVALUATION_STAGE_UNSPECIFIED: _ClassVar[EvaluationStage]
    EVALUATION_STAGE_QUEUED: _ClassVar[EvaluationStage]
    EVALUATION_STAGE_STATIC_CHECKS: _ClassVar[EvaluationStage]
    EVALUATION_STAGE_FUNCTIONAL_CHECKS: _ClassVar[EvaluationStage]
    EVALUATION_STAGE_COMPILE: _ClassVar[EvaluationStage]
    EVALUATION_STAGE_TRAINING: _ClassVar[EvaluationStage]
    EVALUATION_STAGE_BENCHMARKS: _ClassVar[EvaluationStage]
    EVALUATION_STAGE_REPAIR: _ClassVar[EvaluationStage]
    EVALUATION_STAGE_DONE: _ClassVar[EvaluationStage]

class EvaluationStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVALUATION_STATUS_UNSPECIFIED: _ClassVar[EvaluationStatus]
    EVALUATION_STATUS_SUCCEEDED: _ClassVar[EvaluationStatus]
    EVALUATION_STATUS_FAILED: _ClassVar[EvaluationStatus]
    EVALUATION_STATUS_TIMED_OUT: _ClassVar[EvaluationStatus]
    EVALUATION_STATUS_CANCELLED: _ClassVar[EvaluationStatus]

class Relation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RELATION_UNSPECIFIED: _ClassVar[Relation]
    RELATION_PARENT: _ClassVar[Relation]
    RELATION_GRANDPARENT: _ClassVar[Relation]
    RELATION_SIBLING: _ClassVar[Relation]
    RELATION_BASELINE: _ClassVar[Relation]
    RELATION_BEST_SO_FAR: _ClassVar[Relation]

class ExperimentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPERIMENT_STATUS_UNSPECIFIED: _ClassVar[ExperimentStatus]
    EXPERIMENT_STATUS_PENDING: _ClassVar[ExperimentStatus]
    EXPERIMENT_STATUS_RUNNING: _ClassVar[ExperimentStatus]
    EXPERIMENT_STATUS_SUCCEEDED: _ClassVar[ExperimentStatus]
    EXPERIMENT_STATUS_FAILED: _ClassVar[ExperimentStatus]
PROPOSAL_MODE_UNSPECIFIED: ProposalMode
PROPOSAL_MODE_CODE: ProposalMode
PROPOSAL_MODE_DSL: ProposalMode
PROPOSAL_ORIGIN_UNSPECIFIED: ProposalOrigin
PROPOSAL_ORIGIN_BASELINE: ProposalOrigin
PROPOSAL_ORIGIN_LLM_CODE: ProposalOrigin
PROPOSAL_ORIGIN_LLM_DSL: ProposalOrigin
PROPOSAL_ORIGIN_DSL_MUTATION: ProposalOrigin
PROPOSAL_ORIGIN_DSL_CROSSOVER: ProposalOrigin
PROPOSAL_ORIGIN_MANUAL: ProposalOrigin
BUDGET_PRESET_UNSPECIFIED: BudgetPreset
BUDGET_PRESET_SMOKE: BudgetPreset
BUDGET_PRESET_CPU: BudgetPreset
BUDGET_PRESET_GPU: BudgetPreset
BUDGET_PRESET_SMALL: BudgetPreset
PRECISION_UNSPECIFIED: Precision
PRECISION_FP32: Precision
PRECISION_BF16_AUTOCAST: Precision
EVALUATION_STAGE_UNSPECIFIED: EvaluationStage
EVALUATION_STAGE_QUEUED: EvaluationStage
EVALUATION_STAGE_STATIC_CHECKS: EvaluationStage
EVALUATION_STAGE_FUNCTIONAL_CHECKS: EvaluationStage
EVALUATION_STAGE_COMPILE: EvaluationStage
EVALUATION_STAGE_TRAINING: EvaluationStage
EVALUATION_STAGE_BENCHMARKS: EvaluationStage
EVALUATION_STAGE_REPAIR: EvaluationStage
EVALUATION_STAGE_DONE: EvaluationStage
EVALUATION_STATUS_UNSPECIFIED: EvaluationStatus
EVALUATION_STATUS_SUCCEEDED: EvaluationStatus
EVALUATION_STATUS_FAILED: EvaluationStatus
EVALUATION_STATUS_TIMED_OUT: EvaluationStatus
EVALUATION_STATUS_CANCELLED: EvaluationStatus
RELATION_UNSPECIFIED: Relation
RELATION_PARENT: Relation
RELATION_GRANDPARENT: Relation
RELATION_SIBLING: Relation
RELATION_BASELINE: Relation
RELATION_BEST_SO_FAR: Relation
EXPERIMENT_STATUS_UNSPECIFIED: ExperimentStatus
EXPERIMENT_STATUS_PENDING: ExperimentStatus
EXPERIMENT_STATUS_RUNNING: ExperimentStatus
EXPERIMENT_STATUS_SUCCEEDED: ExperimentStatus
EXPERIMENT_STATUS_FAILED: ExperimentStatus

class ArchitectureSource(_message.Message):
    __slots__ = ("module_source", "class_name")
    MODULE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    module_source: str
    class_name: str
    def __init__(self, module_source: _Optional[str] = ..., class_name: _Optional[str] = ...) -> None: ...

class Proposal(_message.Message):
    __slots__ = ("name", "motivation", "source", "spec_json", "origin", "generator", "reference_only")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MOTIVATION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ONLY_FIELD_NUMBER: _ClassVar[int]
    name: str
    motivation: str
    source: ArchitectureSource
    spec_json: str
    origin: ProposalOrigin
    generator: str
    reference_only: bool
    def __init__(self, name: _Optional[str] = ..., motivation: _Optional[str] = ..., source: _Optional[_Union[ArchitectureSource, _Mapping]] = ..., spec_json: _Optional[str] = ..., origin: _Optional[_Union[ProposalOrigin, str]] = ..., generator: _Optional[str] = ..., reference_only: _Optional[bool] = ...) -> None: ...

class Budget(_message.Message):
    __slots__ = ("preset", "train_steps", "batch_size", "seq_len", "d_model", "n_layers", "n_heads", "learning_rate", "wall_clock_seconds", "device", "rung", "max_parameters", "seed", "promote_below_loss", "precision")
    PRESET_FIELD_NUMBER: _ClassVar[int]
    TRAIN_STEPS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    SEQ_LEN_FIELD_NUMBER: _ClassVar[int]
    D_MODEL_FIELD_NUMBER: _ClassVar[int]
    N_LAYERS_FIELD_NUMBER: _ClassVar[int]
    N_HEADS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    WALL_CLOCK_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    RUNG_FIELD_NUMBER: _ClassVar[int]
    MAX_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PROMOTE_BELOW_LOSS_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    preset: BudgetPreset
    train_steps: int
    batch_size: int
    seq_len: int
    d_model: int
    n_layers: int
    n_heads: int
    learning_rate: float
    wall_clock_seconds: float
    device: str
    rung: int
    max_parameters: int
    seed: int
    promote_below_loss: float
    precision: Precision
    def __init__(self, preset: _Optional[_Union[BudgetPreset, str]] = ..., train_steps: _Optional[int] = ..., batch_size: _Optional[int] = ..., seq_len: _Optional[int] = ..., d_model: _Optional[int] = ..., n_layers: _Optional[int] = ..., n_heads: _Optional[int] = ..., learning_rate: _Optional[float] = ..., wall_clock_seconds: _Optional[float] = ..., device: _Optional[str] = ..., rung: _Optional[int] = ..., max_parameters: _Optional[int] = ..., seed: _Optional[int] = ..., promote_below_loss: _Optional[float] = ..., precision: _Optional[_Union[Precision, str]] = ...) -> None: ...

class LossPoint(_message.Message):
    __slots__ = ("step", "train_loss", "val_loss", "elapsed_seconds")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    VAL_LOSS_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    step: int
    train_loss: float
    val_loss: float
    elapsed_seconds: float
    def __init__(self, step: _Optional[int] = ..., train_loss: _Optional[float] = ..., val_loss: _Optional[float] = ..., elapsed_seconds: _Optional[float] = ...) -> None: ...

class BenchmarkScore(_message.Message):
    __slots__ = ("name", "task", "score", "settings")
    class SettingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    task: str
    score: float
    settings: _containers.ScalarMap[str, float]
    def __init__(self, name: _Optional[str] = ..., task: _Optional[str] = ..., score: _Optional[float] = ..., settings: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Metrics(_message.Message):
    __slots__ = ("val_loss", "bits_per_byte", "train_loss", "benchmarks", "tokens_per_second", "parameters", "layer_parameters", "peak_memory_bytes", "loss_curve", "train_seconds", "compile_seconds", "steps", "proxies")
    class ProxiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VAL_LOSS_FIELD_NUMBER: _ClassVar[int]
    BITS_PER_BYTE_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    BENCHMARKS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    LAYER_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    PEAK_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    LOSS_CURVE_FIELD_NUMBER: _ClassVar[int]
    TRAIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COMPILE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    PROXIES_FIELD_NUMBER: _ClassVar[int]
    val_loss: float
    bits_per_byte: float
    train_loss: float
    benchmarks: _containers.RepeatedCompositeFieldContainer[BenchmarkScore]
    tokens_per_second: float
    parameters: int
    layer_parameters: int
    peak_memory_bytes: int
    loss_curve: _containers.RepeatedCompositeFieldContainer[LossPoint]
    train_seconds: float
    compile_seconds: float
    steps: int
    proxies: _containers.ScalarMap[str, float]
    def __init__(self, val_loss: _Optional[float] = ..., bits_per_byte: _Optional[float] = ..., train_loss: _Optional[float] = ..., benchmarks: _Optional[_Iterable[_Union[BenchmarkScore, _Mapping]]] = ..., tokens_per_second: _Optional[float] = ..., parameters: _Optional[int] = ..., layer_parameters: _Optional[int] = ..., peak_memory_bytes: _Optional[int] = ..., loss_curve: _Optional[_Iterable[_Union[LossPoint, _Mapping]]] = ..., train_seconds: _Optional[float] = ..., compile_seconds: _Optional[float] = ..., steps: _Optional[int] = ..., proxies: _Optional[_Mapping[str, float]] = ...) -> None: ...

class CheckResult(_message.Message):
    __slots__ = ("name", "stage", "passed", "message", "line", "duration_seconds", "measurements")
    class MeasurementsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    stage: EvaluationStage
    passed: bool
    message: str
    line: int
    duration_seconds: float
    measurements: _containers.ScalarMap[str, float]
    def __init__(self, name: _Optional[str] = ..., stage: _Optional[_Union[EvaluationStage, str]] = ..., passed: _Optional[bool] = ..., message: _Optional[str] = ..., line: _Optional[int] = ..., duration_seconds: _Optional[float] = ..., measurements: _Optional[_Mapping[str, float]] = ...) -> None: ...

class RepairAttempt(_message.Message):
    __slots__ = ("attempt", "failed_stage", "error", "summary", "patch", "succeeded", "repaired_by")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    FAILED_STAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    PATCH_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    REPAIRED_BY_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    failed_stage: EvaluationStage
    error: str
    summary: str
    patch: str
    succeeded: bool
    repaired_by: str
    def __init__(self, attempt: _Optional[int] = ..., failed_stage: _Optional[_Union[EvaluationStage, str]] = ..., error: _Optional[str] = ..., summary: _Optional[str] = ..., patch: _Optional[str] = ..., succeeded: _Optional[bool] = ..., repaired_by: _Optional[str] = ...) -> None: ...

class Evaluation(_message.Message):
    __slots__ = ("status", "failed_stage", "failure_reason", "checks", "metrics", "repairs", "final_source", "budget", "device", "wall_seconds", "started_at", "finished_at", "engineer_version", "reused_from")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FAILED_STAGE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    REPAIRS_FIELD_NUMBER: _ClassVar[int]
    FINAL_SOURCE_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    WALL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    ENGINEER_VERSION_FIELD_NUMBER: _ClassVar[int]
    REUSED_FROM_FIELD_NUMBER: _ClassVar[int]
    status: EvaluationStatus
    failed_stage: EvaluationStage
    failure_reason: str
    checks: _containers.RepeatedCompositeFieldContainer[CheckResult]
    metrics: Metrics
    repairs: _containers.RepeatedCompositeFieldContainer[RepairAttempt]
    final_source: ArchitectureSource
    budget: Budget
    device: str
    wall_seconds: float
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    engineer_version: str
    reused_from: str
    def __init__(self, status: _Optional[_Union[EvaluationStatus, str]] = ..., failed_stage: _Optional[_Union[EvaluationStage, str]] = ..., failure_reason: _Optional[str] = ..., checks: _Optional[_Iterable[_Union[CheckResult, _Mapping]]] = ..., metrics: _Optional[_Union[Metrics, _Mapping]] = ..., repairs: _Optional[_Iterable[_Union[RepairAttempt, _Mapping]]] = ..., final_source: _Optional[_Union[ArchitectureSource, _Mapping]] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ..., device: _Optional[str] = ..., wall_seconds: _Optional[float] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., engineer_version: _Optional[str] = ..., reused_from: _Optional[str] = ...) -> None: ...

class JudgeScores(_message.Message):
    __slots__ = ("performance", "innovation", "complexity", "rationale", "judged_by")
    PERFORMANCE_FIELD_NUMBER: _ClassVar[int]
    INNOVATION_FIELD_NUMBER: _ClassVar[int]
    COMPLEXITY_FIELD_NUMBER: _ClassVar[int]
    RATIONALE_FIELD_NUMBER: _ClassVar[int]
    JUDGED_BY_FIELD_NUMBER: _ClassVar[int]
    performance: float
    innovation: float
    complexity: float
    rationale: str
    judged_by: str
    def __init__(self, performance: _Optional[float] = ..., innovation: _Optional[float] = ..., complexity: _Optional[float] = ..., rationale: _Optional[str] = ..., judged_by: _Optional[str] = ...) -> None: ...

class Fitness(_message.Message):
    __slots__ = ("total", "loss_score", "benchmark_score", "judge_score", "judge", "novelty", "baseline_id", "baseline_loss", "baseline_benchmark", "loss_noise_sd", "benchmark_noise_sd", "noise_floor")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    LOSS_SCORE_FIELD_NUMBER: _ClassVar[int]
    BENCHMARK_SCORE_FIELD_NUMBER: _ClassVar[int]
    JUDGE_SCORE_FIELD_NUMBER: _ClassVar[int]
    JUDGE_FIELD_NUMBER: _ClassVar[int]
    NOVELTY_FIELD_NUMBER: _ClassVar[int]
    BASELINE_ID_FIELD_NUMBER: _ClassVar[int]
    BASELINE_LOSS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_BENCHMARK_FIELD_NUMBER: _ClassVar[int]
    LOSS_NOISE_SD_FIELD_NUMBER: _ClassVar[int]
    BENCHMARK_NOISE_SD_FIELD_NUMBER: _ClassVar[int]
    NOISE_FLOOR_FIELD_NUMBER: _ClassVar[int]
    total: float
    loss_score: float
    benchmark_score: float
    judge_score: float
    judge: JudgeScores
    novelty: float
    baseline_id: str
    baseline_loss: float
    baseline_benchmark: float
    loss_noise_sd: float
    benchmark_noise_sd: float
    noise_floor: str
    def __init__(self, total: _Optional[float] = ..., loss_score: _Optional[float] = ..., benchmark_score: _Optional[float] = ..., judge_score: _Optional[float] = ..., judge: _Optional[_Union[JudgeScores, _Mapping]] = ..., novelty: _Optional[float] = ..., baseline_id: _Optional[str] = ..., baseline_loss: _Optional[float] = ..., baseline_benchmark: _Optional[float] = ..., loss_noise_sd: _Optional[float] = ..., benchmark_noise_sd: _Optional[float] = ..., noise_floor: _Optional[str] = ...) -> None: ...

class ReplicatePair(_message.Message):
    __slots__ = ("seed", "experiment_id", "against_experiment_id", "val_loss", "against_val_loss", "benchmark", "against_benchmark")
    SEED_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    AGAINST_EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    VAL_LOSS_FIELD_NUMBER: _ClassVar[int]
    AGAINST_VAL_LOSS_FIELD_NUMBER: _ClassVar[int]
    BENCHMARK_FIELD_NUMBER: _ClassVar[int]
    AGAINST_BENCHMARK_FIELD_NUMBER: _ClassVar[int]
    seed: int
    experiment_id: str
    against_experiment_id: str
    val_loss: float
    against_val_loss: float
    benchmark: float
    against_benchmark: float
    def __init__(self, seed: _Optional[int] = ..., experiment_id: _Optional[str] = ..., against_experiment_id: _Optional[str] = ..., val_loss: _Optional[float] = ..., against_val_loss: _Optional[float] = ..., benchmark: _Optional[float] = ..., against_benchmark: _Optional[float] = ...) -> None: ...

class Confirmation(_message.Message):
    __slots__ = ("against_id", "against_name", "rung", "pairs", "val_loss_mean", "val_loss_sd", "against_val_loss_mean", "against_val_loss_sd", "improvement_mean", "improvement_lower_95", "p_value", "benchmark_delta_mean", "confirmed", "verdict")
    AGAINST_ID_FIELD_NUMBER: _ClassVar[int]
    AGAINST_NAME_FIELD_NUMBER: _ClassVar[int]
    RUNG_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    VAL_LOSS_MEAN_FIELD_NUMBER: _ClassVar[int]
    VAL_LOSS_SD_FIELD_NUMBER: _ClassVar[int]
    AGAINST_VAL_LOSS_MEAN_FIELD_NUMBER: _ClassVar[int]
    AGAINST_VAL_LOSS_SD_FIELD_NUMBER: _ClassVar[int]
    IMPROVEMENT_MEAN_FIELD_NUMBER: _ClassVar[int]
    IMPROVEMENT_LOWER_95_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    BENCHMARK_DELTA_MEAN_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    against_id: str
    against_name: str
    rung: int
    pairs: _containers.RepeatedCompositeFieldContainer[ReplicatePair]
    val_loss_mean: float
    val_loss_sd: float
    against_val_loss_mean: float
    against_val_loss_sd: float
    improvement_mean: float
    improvement_lower_95: float
    p_value: float
    benchmark_delta_mean: float
    confirmed: bool
    verdict: str
    def __init__(self, against_id: _Optional[str] = ..., against_name: _Optional[str] = ..., rung: _Optional[int] = ..., pairs: _Optional[_Iterable[_Union[ReplicatePair, _Mapping]]] = ..., val_loss_mean: _Optional[float] = ..., val_loss_sd: _Optional[float] = ..., against_val_loss_mean: _Optional[float] = ..., against_val_loss_sd: _Optional[float] = ..., improvement_mean: _Optional[float] = ..., improvement_lower_95: _Optional[float] = ..., p_value: _Optional[float] = ..., benchmark_delta_mean: _Optional[float] = ..., confirmed: _Optional[bool] = ..., verdict: _Optional[str] = ...) -> None: ...

class MetricDelta(_message.Message):
    __slots__ = ("metric", "value", "other_value", "delta", "improved")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    OTHER_VALUE_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    IMPROVED_FIELD_NUMBER: _ClassVar[int]
    metric: str
    value: float
    other_value: float
    delta: float
    improved: bool
    def __init__(self, metric: _Optional[str] = ..., value: _Optional[float] = ..., other_value: _Optional[float] = ..., delta: _Optional[float] = ..., improved: _Optional[bool] = ...) -> None: ...

class Comparison(_message.Message):
    __slots__ = ("experiment_id", "relation", "name", "deltas")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    RELATION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DELTAS_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    relation: Relation
    name: str
    deltas: _containers.RepeatedCompositeFieldContainer[MetricDelta]
    def __init__(self, experiment_id: _Optional[str] = ..., relation: _Optional[_Union[Relation, str]] = ..., name: _Optional[str] = ..., deltas: _Optional[_Iterable[_Union[MetricDelta, _Mapping]]] = ...) -> None: ...

class Analysis(_message.Message):
    __slots__ = ("design_evaluation", "results_analysis", "expectation_vs_reality", "theoretical_explanation", "synthesis", "comparisons", "breakthrough", "breakthrough_reason", "written_by", "rival_id", "promising")
    DESIGN_EVALUATION_FIELD_NUMBER: _ClassVar[int]
    RESULTS_ANALYSIS_FIELD_NUMBER: _ClassVar[int]
    EXPECTATION_VS_REALITY_FIELD_NUMBER: _ClassVar[int]
    THEORETICAL_EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    SYNTHESIS_FIELD_NUMBER: _ClassVar[int]
    COMPARISONS_FIELD_NUMBER: _ClassVar[int]
    BREAKTHROUGH_FIELD_NUMBER: _ClassVar[int]
    BREAKTHROUGH_REASON_FIELD_NUMBER: _ClassVar[int]
    WRITTEN_BY_FIELD_NUMBER: _ClassVar[int]
    RIVAL_ID_FIELD_NUMBER: _ClassVar[int]
    PROMISING_FIELD_NUMBER: _ClassVar[int]
    design_evaluation: str
    results_analysis: str
    expectation_vs_reality: str
    theoretical_explanation: str
    synthesis: str
    comparisons: _containers.RepeatedCompositeFieldContainer[Comparison]
    breakthrough: bool
    breakthrough_reason: str
    written_by: str
    rival_id: str
    promising: bool
    def __init__(self, design_evaluation: _Optional[str] = ..., results_analysis: _Optional[str] = ..., expectation_vs_reality: _Optional[str] = ..., theoretical_explanation: _Optional[str] = ..., synthesis: _Optional[str] = ..., comparisons: _Optional[_Iterable[_Union[Comparison, _Mapping]]] = ..., breakthrough: _Optional[bool] = ..., breakthrough_reason: _Optional[str] = ..., written_by: _Optional[str] = ..., rival_id: _Optional[str] = ..., promising: _Optional[bool] = ...) -> None: ...

class Experiment(_message.Message):
    __slots__ = ("id", "run_id", "name", "parent_ids", "cycle", "status", "proposal", "evaluation", "fitness", "analysis", "is_baseline", "created_at", "updated_at", "replicate_of", "confirmation")
    ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARENT_IDS_FIELD_NUMBER: _ClassVar[int]
    CYCLE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    FITNESS_FIELD_NUMBER: _ClassVar[int]
    ANALYSIS_FIELD_NUMBER: _ClassVar[int]
    IS_BASELINE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    REPLICATE_OF_FIELD_NUMBER: _ClassVar[int]
    CONFIRMATION_FIELD_NUMBER: _ClassVar[int]
    id: str
    run_id: str
    name: str
    parent_ids: _containers.RepeatedScalarFieldContainer[str]
    cycle: int
    status: ExperimentStatus
    proposal: Proposal
    evaluation: Evaluation
    fitness: Fitness
    analysis: Analysis
    is_baseline: bool
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    replicate_of: str
    confirmation: Confirmation
    def __init__(self, id: _Optional[str] = ..., run_id: _Optional[str] = ..., name: _Optional[str] = ..., parent_ids: _Optional[_Iterable[str]] = ..., cycle: _Optional[int] = ..., status: _Optional[_Union[ExperimentStatus, str]] = ..., proposal: _Optional[_Union[Proposal, _Mapping]] = ..., evaluation: _Optional[_Union[Evaluation, _Mapping]] = ..., fitness: _Optional[_Union[Fitness, _Mapping]] = ..., analysis: _Optional[_Union[Analysis, _Mapping]] = ..., is_baseline: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., replicate_of: _Optional[str] = ..., confirmation: _Optional[_Union[Confirmation, _Mapping]] = ...) -> None: ...
