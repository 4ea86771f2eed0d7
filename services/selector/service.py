"""The Selector gRPC service: translate requests, call the strategies, translate back.

All selection logic lives in `strategies` and `population` (pure functions of
their input); this module only converts between protobuf messages and those
plain types, so the logic can be tested without gRPC. The conversion and the
selection run on the `work.Worker` thread, never on the event loop, so a large
request cannot stall health checks or other calls; a request with more
candidates than `population.MAX_CANDIDATES` is refused before any work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import grpc
from prometheus_client import Counter

from asiarch.common.server import ServiceDefinition
from asiarch.selector.population import Candidate, CandidateMetrics, Options, check_candidate_count
from asiarch.selector.strategies import NextAction, list_strategies, select_parents
from asiarch.selector.work import Worker
from asiarch.v1 import common_pb2, selector_pb2, selector_pb2_grpc

DEFAULT_PORT = 50051
# Calls that may wait for the selection thread; one more is refused with RESOURCE_EXHAUSTED.
# The discovery loop makes one call per cycle, so a queue this long means an overload; a typical
# call takes milliseconds, the largest allowed a few seconds.
MAX_WAITING = 32

_NEXT_ACTION = {
    NextAction.NONE: selector_pb2.NEXT_ACTION_UNSPECIFIED,
    NextAction.EXPAND: selector_pb2.NEXT_ACTION_EXPAND,
    NextAction.REEVALUATE: selector_pb2.NEXT_ACTION_REEVALUATE,
}
SELECTIONS = Counter(
    "asiarch_selector_selections_total", "SelectParents calls answered, by strategy.", ["strategy"]
)


def _optional(message: object, field: str) -> object | None:
    return getattr(message, field) if message.HasField(field) else None  # type: ignore[attr-defined]


def metrics_from_proto(metrics: common_pb2.Metrics) -> CandidateMetrics:
    return CandidateMetrics(
        val_loss=_optional(metrics, "val_loss"),  # type: ignore[arg-type]
        benchmarks={score.name: score.score for score in metrics.benchmarks},
        tokens_per_second=_optional(metrics, "tokens_per_second"),  # type: ignore[arg-type]
        parameters=_optional(metrics, "parameters"),  # type: ignore[arg-type]
    )


def candidate_from_proto(candidate: selector_pb2.Candidate) -> Candidate:
    return Candidate(
        id=candidate.id,
        parent_id=candidate.parent_id or None,
        fitness=candidate.fitness,
        metrics=metrics_from_proto(candidate.metrics),
        reference_only=candidate.reference_only,
        evaluations=candidate.evaluations,
        name=candidate.name,
    )


def options_from_proto(options: selector_pb2.SelectionOptions) -> Options:
    fields = (
        "parent_pool",
        "reference_pool_end",
        "references",
        "exploration",
        "success_threshold",
        "expansion_exponent",
        "lexicase_epsilon",
    )
    return Options(
        **{name: _optional(options, name) for name in fields},  # type: ignore[arg-type]
        objectives=tuple(options.objectives),
    )


def select(request: selector_pb2.SelectParentsRequest) -> selector_pb2.SelectParentsResponse:
    """The answer to a SelectParents request (pure; InvalidArgument for bad input)."""
    selection = select_parents(
        request.strategy,
        [candidate_from_proto(c) for c in request.candidates],
        k=request.k,
        seed=request.seed,
        options=options_from_proto(request.options),
    )
    return selector_pb2.SelectParentsResponse(
        strategy=selection.strategy,
        selections=[
            selector_pb2.ParentSelection(
                parent_id=choice.parent_id,
                reference_ids=choice.reference_ids,
                score=choice.score,
                reason=choice.reason,
            )
            for choice in selection.choices
        ],
        next_action=_NEXT_ACTION[selection.next_action],
        next_action_reason=selection.next_action_reason,
    )


class SelectorServicer(selector_pb2_grpc.SelectorServicer):
    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    async def SelectParents(
        self, request: selector_pb2.SelectParentsRequest, context: grpc.aio.ServicerContext
    ) -> selector_pb2.SelectParentsResponse:
        check_candidate_count(len(request.candidates))  # before any work is queued
        response = await self._worker.run(lambda: select(request), context.time_remaining())
        SELECTIONS.labels(response.strategy).inc()  # the strategy that ran: a valid name, never the request's
        return response

    async def ListStrategies(
        self, request: selector_pb2.ListStrategiesRequest, context: grpc.aio.ServicerContext
    ) -> selector_pb2.ListStrategiesResponse:
        return selector_pb2.ListStrategiesResponse(
            strategies=[
                selector_pb2.StrategyInfo(
                    name=info.name, description=info.description, source=info.source, options=info.options
                )
                for info in list_strategies()
            ]
        )


@asynccontextmanager
async def lifespan(server: grpc.aio.Server, settings: object) -> AsyncIterator[Sequence[str]]:
    worker = Worker(MAX_WAITING)
    selector_pb2_grpc.add_SelectorServicer_to_server(SelectorServicer(worker), server)
    try:
        yield [selector_pb2.DESCRIPTOR.services_by_name["Selector"].full_name]
    finally:
        worker.close()


SERVICE = ServiceDefinition(
    name="selector",
    default_port=DEFAULT_PORT,
    lifespan=lifespan,
    summary="parent selection strategies (stateless)",
    default_metrics_port=9451,
)
