"""A small population of selector candidates (as protobuf) shared by the selector tests."""

from __future__ import annotations

from asiarch.v1 import common_pb2, selector_pb2


def candidate(
    id: str,
    fitness: float,
    parent: str = "",
    loss: float | None = None,
    mqar: float | None = None,
    tps: float | None = None,
    params: int | None = None,
    reference_only: bool = False,
) -> selector_pb2.Candidate:
    metrics = common_pb2.Metrics()
    if loss is not None:
        metrics.val_loss = loss
    if mqar is not None:
        metrics.benchmarks.add(name="mqar/seq64_kv4", task="mqar", score=mqar)
    if tps is not None:
        metrics.tokens_per_second = tps
    if params is not None:
        metrics.parameters = params
    return selector_pb2.Candidate(
        id=id, parent_id=parent, fitness=fitness, metrics=metrics, reference_only=reference_only, name=id
    )


def population() -> list[selector_pb2.Candidate]:
    """Three baselines, a softmax reference and a few children, with full metrics."""
    return [
        candidate("linear", 1.20, loss=2.10, mqar=0.30, tps=9000, params=1_000_000),
        candidate("deltanet", 1.50, loss=1.95, mqar=0.55, tps=7000, params=1_050_000),
        candidate("gated-deltanet", 1.60, loss=1.90, mqar=0.60, tps=6500, params=1_100_000),
        candidate("softmax", 1.70, loss=1.85, mqar=0.90, tps=4000, params=1_000_000, reference_only=True),
        candidate("child-a", 1.65, parent="deltanet", loss=1.92, mqar=0.58, tps=6800, params=1_060_000),
        candidate("child-b", 1.10, parent="deltanet", loss=2.30, mqar=0.20, tps=6900, params=1_070_000),
        candidate("grandchild", 1.75, parent="child-a", loss=1.88, mqar=0.62, tps=6600, params=1_080_000),
    ]
