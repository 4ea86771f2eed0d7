"""Request rules: every bad input is INVALID_ARGUMENT with the field and the reason.

The rules every field of every request obeys (finite numbers, defined enum values) are checked before
these, by `asiarch.common.fields` (every server checks every request); these are the analyst's own.
"""

from __future__ import annotations

import math

from asiarch.common.contract import EXPERIMENT_ID, EXPERIMENT_ID_RULE
from asiarch.common.errors import InvalidArgument
from asiarch.v1 import analyst_pb2, common_pb2

MAX_QUERY_CHARS = 4000
MAX_K = 100
COLLECTIONS = {
    analyst_pb2.COLLECTION_MOTIVATIONS,
    analyst_pb2.COLLECTION_ANALYSES,
    analyst_pb2.COLLECTION_COGNITION,
}


def check_id(value: str, field: str) -> None:
    if not value:
        raise InvalidArgument(f"{field} is required")
    if not EXPERIMENT_ID.fullmatch(value):
        raise InvalidArgument(f"{field} {value[:140]!r} must be {EXPERIMENT_ID_RULE}")


def check_experiment(experiment: common_pb2.Experiment, max_bytes: int) -> None:
    size = experiment.ByteSize()
    if size > max_bytes:
        raise InvalidArgument(
            f"experiment is {size / 1024:.0f} KiB; the limit is {max_bytes // 1024} KiB "
            "(ASIARCH_ANALYST_MAX_EXPERIMENT_KB): trim the loss curve or the source"
        )
    check_id(experiment.id, "experiment.id")
    check_id(experiment.run_id, "experiment.run_id")
    if not experiment.HasField("proposal"):
        raise InvalidArgument("experiment.proposal is required")
    if not (experiment.name or experiment.proposal.name).strip():
        raise InvalidArgument("experiment.name (or experiment.proposal.name) is required")
    seen: set[str] = set()
    for i, parent in enumerate(experiment.parent_ids):
        check_id(parent, f"experiment.parent_ids[{i}]")
        if parent == experiment.id:
            raise InvalidArgument(f"experiment.parent_ids[{i}] is the experiment itself")
        if parent in seen:
            raise InvalidArgument(f"experiment.parent_ids[{i}] {parent!r} is listed twice")
        seen.add(parent)
    metrics = experiment.evaluation.metrics
    if metrics.HasField("val_loss") and metrics.val_loss < 0:
        raise InvalidArgument(f"experiment.evaluation.metrics.val_loss must be >= 0, got {metrics.val_loss}")
    for i, benchmark in enumerate(metrics.benchmarks):
        if not 0 <= benchmark.score <= 1:
            raise InvalidArgument(
                f"experiment.evaluation.metrics.benchmarks[{i}].score must lie in [0, 1], "
                f"got {benchmark.score}"
            )
    if experiment.status == common_pb2.EXPERIMENT_STATUS_SUCCEEDED and not metrics.HasField("val_loss"):
        raise InvalidArgument("a SUCCEEDED experiment needs experiment.evaluation.metrics.val_loss")


def page_size(requested: int) -> int:
    if requested > 1000:
        raise InvalidArgument(f"page_size must be at most 1000, got {requested}")
    return requested or 50


def top_k(requested: int) -> int:
    if requested > MAX_K:
        raise InvalidArgument(f"k must be at most {MAX_K}, got {requested}")
    return requested or 5


def check_text(value: str, field: str) -> None:
    if not value.strip():
        raise InvalidArgument(f"{field} must not be empty")
    if len(value) > MAX_QUERY_CHARS:
        raise InvalidArgument(f"{field} is longer than {MAX_QUERY_CHARS} characters")


def collections(requested: list[int]) -> list[int]:
    for i, collection in enumerate(requested):
        if collection not in COLLECTIONS:
            name = (
                analyst_pb2.Collection.Name(collection)
                if collection in analyst_pb2.Collection.values()
                else str(collection)
            )
            raise InvalidArgument(
                f"collections[{i}] {name} is not a collection; use MOTIVATIONS, ANALYSES or COGNITION"
            )
    return list(dict.fromkeys(requested)) or [
        analyst_pb2.COLLECTION_COGNITION,
        analyst_pb2.COLLECTION_ANALYSES,
    ]


def check_min_score(value: float) -> None:
    if not math.isfinite(value) or not -1 <= value <= 1:
        raise InvalidArgument(f"min_score must lie in [-1, 1], got {value}")
