"""Tracing (asiarch.common.tracing): off unless OTEL_* ask for it, and then one trace per cycle.

The end-to-end test runs one cycle of a real discovery at the smoke budget: the four services as
subprocesses exporting with OTLP/gRPC to a collector in this test (a real TraceService server that keeps
the spans), the orchestrator in this process with an in-memory exporter. The cycle's proposal is broken
on its way back from the researcher so that the engineer's self-healing calls the researcher's Repair
(which, with no LLM, refuses it: nothing trains), and the test checks that a single trace holds the
select → propose → validate → evaluate → repair → record spans of the four services.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support import BIN, RunningService, serving

from asiarch.common import tracing
from asiarch.common.client import open_channel
from asiarch.engineer.service import baseline_proposals
from asiarch.orchestrator.loop import Discovery, Options, Stubs, baseline_id
from asiarch.v1 import (
    analyst_pb2,
    analyst_pb2_grpc,
    common_pb2,
    engineer_pb2,
    engineer_pb2_grpc,
    researcher_pb2,
    researcher_pb2_grpc,
    selector_pb2,
    selector_pb2_grpc,
)

RUN = "traced"
SUCCEEDED = common_pb2.EXPERIMENT_STATUS_SUCCEEDED


def without_otel() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}


def python(code: str, env: dict[str, str]) -> str:
    """Run `code` in a fresh interpreter (tracing is per process); its stdout."""
    result = subprocess.run(
        [sys.executable, "-P", "-c", code], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


# Configures tracing as a service does, then notes the interceptors build_server and open_channel hand
# to gRPC (caught on their way in), whether a provider is installed, and the service name.
PROBE = """
import sys
import grpc.aio
from opentelemetry import trace
from asiarch.common import tracing
from asiarch.common.client import open_channel
from asiarch.common.config import ServerSettings
from asiarch.common.server import build_server
given = {}
grpc.aio.server = lambda **kwargs: given.setdefault("server", kwargs["interceptors"])
grpc.aio.insecure_channel = lambda address, **kwargs: given.setdefault("channel", kwargs["interceptors"])
on = tracing.configure("selector")
open_channel("127.0.0.1:1")
build_server(ServerSettings())
print(on, [type(i).__name__ for i in given["server"]], len(given["channel"]))
print(type(trace.get_tracer_provider()).__name__, "opentelemetry.sdk.trace" in sys.modules)
print(trace.get_tracer_provider().resource.attributes.get("service.name") if on else "-")
"""


@pytest.mark.parametrize(
    "otel",
    [{}, {"OTEL_TRACES_EXPORTER": "none"}, {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}],
    ids=["unset", "none", "sdk-disabled"],
)
def test_without_an_exporter_nothing_is_installed_and_calls_take_todays_path(otel: dict[str, str]) -> None:
    lines = python(PROBE, {**without_otel(), **otel}).splitlines()
    assert lines[0] == "False ['ServerInterceptor'] 4", "only our own interceptors on servers and channels"
    assert lines[1] == "ProxyTracerProvider False", "no provider, and the SDK not even imported"


def test_an_exporter_turns_it_on_with_the_service_name_defaulting_to_asiarch_service() -> None:
    lines = python(PROBE, {**without_otel(), "OTEL_TRACES_EXPORTER": "console"}).splitlines()
    # OTel's server interceptor first (outermost: ours runs inside its span); its four beside ours.
    assert lines[0] == "True ['OpenTelemetryAioServerInterceptor', 'ServerInterceptor'] 8"
    assert lines[2] == "asiarch-selector"
    named = {**without_otel(), "OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "selector-eu-1"}
    assert python(PROBE, named).splitlines()[2] == "selector-eu-1"


def test_an_exporter_no_package_provides_is_refused_at_start() -> None:
    result = subprocess.run(
        [str(BIN / "asiarch"), "services"],
        capture_output=True,
        text=True,
        env={**without_otel(), "OTEL_TRACES_EXPORTER": "zipkin"},
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "OTEL_TRACES_EXPORTER" in result.stderr and "zipkin" in result.stderr


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, into memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.shutdown()


# --- the lookahead: in-process stand-ins that note the trace each call was made in ---


def current_trace() -> int:
    return trace.get_current_span().get_span_context().trace_id


class Stand:
    """Selector, researcher, engineer and analyst in one: just enough for the loop."""

    def __init__(self) -> None:
        baseline = common_pb2.Experiment(
            id=f"{RUN}.base.deltanet", run_id=RUN, name="deltanet", status=SUCCEEDED
        )
        baseline.is_baseline = True
        baseline.evaluation.status = common_pb2.EVALUATION_STATUS_SUCCEEDED
        baseline.evaluation.metrics.val_loss = 3.0
        self.stored = {baseline.id: baseline}
        self.proposed_in: dict[str, int] = {}  # experiment id → trace id

    async def ListStrategies(self, request: Any, **_: Any) -> Any:
        return selector_pb2.ListStrategiesResponse(strategies=[selector_pb2.StrategyInfo(name="asi-arch")])

    async def SelectParents(self, request: Any, **_: Any) -> Any:
        return selector_pb2.SelectParentsResponse(
            selections=[selector_pb2.ParentSelection(parent_id=f"{RUN}.base.deltanet")]
        )

    async def Propose(self, request: researcher_pb2.ProposeRequest, **_: Any) -> Any:
        self.proposed_in[request.experiment_id] = current_trace()
        source = f"class DeltaNet:\n    design = {request.experiment_id!r}\n"
        return researcher_pb2.ProposeResponse(
            proposal=common_pb2.Proposal(name=request.experiment_id, source={"module_source": source})
        )

    async def ListBaselines(self, request: Any, **_: Any) -> Any:
        return engineer_pb2.ListBaselinesResponse()

    async def Validate(self, request: Any, **_: Any) -> Any:
        return engineer_pb2.ValidateResponse(valid=True)

    def Evaluate(self, request: Any, **_: Any) -> Any:
        async def stream() -> AsyncIterator[Any]:
            await asyncio.sleep(0.05)  # the next cycle is prepared meanwhile
            evaluation = common_pb2.Evaluation(status=common_pb2.EVALUATION_STATUS_SUCCEEDED)
            evaluation.metrics.val_loss = 2.9
            yield engineer_pb2.EvaluationEvent(result=evaluation)

        return stream()

    async def Record(self, request: analyst_pb2.RecordRequest, **_: Any) -> Any:
        experiment = common_pb2.Experiment()
        experiment.CopyFrom(request.experiment)
        if experiment.evaluation.status == common_pb2.EVALUATION_STATUS_SUCCEEDED:
            experiment.status = SUCCEEDED
        self.stored[experiment.id] = experiment
        return analyst_pb2.RecordResponse(experiment=experiment)

    async def ListExperiments(self, request: Any, **_: Any) -> Any:
        return analyst_pb2.ListExperimentsResponse(experiments=list(self.stored.values()))


class Quiet:
    def note(self, message: str) -> None: ...
    def started(self, key: str, label: str) -> None: ...
    def progress(self, key: str, event: object) -> None: ...
    def finished(self, key: str, experiment: common_pb2.Experiment) -> None: ...


async def test_each_cycle_is_one_trace_its_lookahead_preparation_included(
    spans: InMemorySpanExporter,
) -> None:
    stand = Stand()
    options = Options(run_id=RUN, cycles=3, budget="smoke", confirm_seeds=0)
    assert await Discovery(options, Stubs(stand, stand, [stand], stand), Quiet()).run() == 3
    cycles = {span.name: span for span in spans.get_finished_spans() if span.name.startswith("cycle ")}
    assert sorted(cycles) == ["cycle 1", "cycle 2", "cycle 3"]
    for span in cycles.values():
        assert span.parent is None and span.attributes["asiarch.run_id"] == RUN
    assert len({span.context.trace_id for span in cycles.values()}) == 3
    for experiment_id, trace_id in stand.proposed_in.items():
        cycle = int(experiment_id.split(".c")[1].split(".")[0])
        assert trace_id == cycles[f"cycle {cycle}"].context.trace_id, experiment_id


async def test_without_tracing_the_loop_opens_no_span() -> None:
    stand = Stand()
    options = Options(run_id=RUN, cycles=2, budget="smoke", confirm_seeds=0)
    assert await Discovery(options, Stubs(stand, stand, [stand], stand), Quiet()).run() == 2
    assert set(stand.proposed_in.values()) == {0}  # the invalid trace id: no span was current


# --- one real cycle across the four services ---


@dataclass(frozen=True)
class Exported:
    service: str
    name: str
    trace_id: int
    span_id: int
    parent_id: int
    attributes: dict[str, Any]


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace collector that keeps what it is sent."""

    def __init__(self) -> None:
        self.spans: list[Exported] = []

    def Export(self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any) -> Any:
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        Exported(
                            service=resource.get("service.name", ""),
                            name=span.name,
                            trace_id=int.from_bytes(span.trace_id, "big"),
                            span_id=int.from_bytes(span.span_id, "big"),
                            parent_id=int.from_bytes(span.parent_span_id, "big"),
                            attributes={a.key: a.value.string_value for a in span.attributes},
                        )
                    )
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def collector() -> Iterator[tuple[Collector, int]]:
    servicer = Collector()
    with serving(trace_service_pb2_grpc.add_TraceServiceServicer_to_server, servicer) as port:
        yield servicer, port


class BreakingResearcher:
    """The real researcher's stub, whose proposals come back with an import the static checks refuse and
    no DSL spec, so the engineer's self-healing asks the researcher's Repair, which without an LLM refuses
    free-form code: healing stops there and nothing is trained (a cycle of seconds, not a minute)."""

    def __init__(self, stub: researcher_pb2_grpc.ResearcherStub) -> None:
        self.stub = stub

    async def Propose(self, request: researcher_pb2.ProposeRequest, **kwargs: Any) -> Any:
        reply = await self.stub.Propose(request, **kwargs)
        reply.proposal.source.module_source += "\nimport os\n"
        reply.proposal.ClearField("spec_json")
        return reply


def baseline_records() -> list[common_pb2.Experiment]:
    """The engineer's baselines, recorded as measured (made-up numbers): the cycle trains no baseline."""
    records = []
    for loss, proposal in zip((3.1, 3.2, 3.3, 3.0), baseline_proposals(), strict=True):
        evaluation = common_pb2.Evaluation(status=common_pb2.EVALUATION_STATUS_SUCCEEDED)
        evaluation.metrics.val_loss, evaluation.metrics.tokens_per_second = loss, 10_000
        evaluation.metrics.benchmarks.add(name="mqar/seq32_kv2", task="mqar", score=0.2)
        records.append(
            common_pb2.Experiment(
                id=baseline_id(RUN, proposal.name),
                run_id=RUN,
                name=proposal.name,
                is_baseline=True,
                proposal=proposal,
                evaluation=evaluation,
            )
        )
    return records


def start_four(
    start: Callable[..., RunningService], tmp_path: Path, otlp_port: int
) -> dict[str, RunningService]:
    otel = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "ASIARCH_LLM_BACKEND": "none",
    }
    with futures.ThreadPoolExecutor(2) as pool:  # two at a time: each start is mostly imports
        analyst = pool.submit(
            start,
            "analyst",
            env={**otel, "ASIARCH_RUN_DIR": str(tmp_path / RUN), "ASIARCH_ANALYST_INGEST_BUILTIN": "false"},
            timeout=120,
        )
        selector = pool.submit(start, "selector", env=otel)
        services = {"analyst": analyst.result(), "selector": selector.result()}
    services["researcher"] = start(
        "researcher", env={**otel, "ASIARCH_ANALYST_ADDRESS": services["analyst"].address}
    )
    services["engineer"] = start(
        "engineer",
        env={
            **otel,
            "ASIARCH_RESEARCHER_ADDRESS": services["researcher"].address,
            "ASIARCH_ENGINEER_CALIBRATE": "false",
            "ASIARCH_ENGINEER_MAX_CONCURRENT": "2",
        },
    )
    return services


async def one_cycle(services: dict[str, RunningService]) -> list[common_pb2.Experiment]:
    """Cycle 1 of a discovery on the four services, traced in this process; the run's experiments."""
    channels = {name: open_channel(service.address) for name, service in services.items()}
    try:
        analyst = analyst_pb2_grpc.AnalystStub(channels["analyst"])
        for record in baseline_records():
            await analyst.Record(analyst_pb2.RecordRequest(experiment=record), timeout=60)
        stubs = Stubs(
            selector=selector_pb2_grpc.SelectorStub(channels["selector"]),
            researcher=BreakingResearcher(researcher_pb2_grpc.ResearcherStub(channels["researcher"])),
            engineers=[engineer_pb2_grpc.EngineerStub(channels["engineer"])],
            analyst=analyst,
        )
        options = Options(run_id=RUN, cycles=1, budget="smoke", mode="dsl", confirm_seeds=0)
        discovery = Discovery(options, stubs, Quiet())
        assert await discovery.run() == 1
        return await discovery.experiments()
    finally:
        for channel in channels.values():
            await channel.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_one_cycle_is_one_trace_across_the_four_services(
    spans: InMemorySpanExporter,
    collector: tuple[Collector, int],
    service_factory: Callable[..., RunningService],
    tmp_path: Path,
) -> None:
    received, otlp_port = collector
    services = start_four(service_factory, tmp_path, otlp_port)
    experiments = asyncio.run(one_cycle(services))
    for service in services.values():
        assert service.stop() == 0  # a stopping service exports what it still holds

    (candidate,) = [e for e in experiments if e.cycle == 1]
    (repair,) = candidate.evaluation.repairs
    assert "free-form code can only be repaired by an LLM" in repair.summary

    (cycle,) = [s for s in spans.get_finished_spans() if s.name == "cycle 1"]
    in_trace = [s for s in received.spans if s.trace_id == cycle.context.trace_id]
    served = {(s.service, s.name) for s in in_trace}
    for expected in [
        ("asiarch-selector", "/asiarch.v1.Selector/SelectParents"),
        ("asiarch-researcher", "/asiarch.v1.Researcher/Propose"),
        ("asiarch-engineer", "/asiarch.v1.Engineer/Validate"),
        ("asiarch-engineer", "/asiarch.v1.Engineer/Evaluate"),
        ("asiarch-researcher", "/asiarch.v1.Researcher/Repair"),
        ("asiarch-analyst", "/asiarch.v1.Analyst/Record"),
    ]:
        assert expected in served, f"{expected} not in the cycle's trace: {sorted(served)}"
    assert_repair_is_a_child_of_the_evaluation(in_trace)
    assert_request_ids_join_the_logs(in_trace, services["engineer"])


def assert_repair_is_a_child_of_the_evaluation(in_trace: list[Exported]) -> None:
    """Researcher.Repair (server) ← the engineer's client span ← Engineer.Evaluate (server)."""
    by_id = {s.span_id: s for s in in_trace}
    repair = next(s for s in in_trace if s.name.endswith("/Repair") and s.service == "asiarch-researcher")
    client = by_id[repair.parent_id]
    assert client.service == "asiarch-engineer" and client.name == repair.name
    assert by_id[client.parent_id].name == "/asiarch.v1.Engineer/Evaluate"


def assert_request_ids_join_the_logs(in_trace: list[Exported], engineer: RunningService) -> None:
    """The Evaluate span's request id is the one on the engineer's access-log line of that call, and that
    line names the span's trace and span."""
    evaluate = next(s for s in in_trace if s.name == "/asiarch.v1.Engineer/Evaluate")
    request_id = evaluate.attributes[tracing.REQUEST_ID_ATTRIBUTE]
    (line,) = [
        r for r in engineer.log_records() if r.get("event") == "rpc" and r.get("request_id") == request_id
    ]
    assert line["trace_id"] == trace.format_trace_id(evaluate.trace_id)
    assert line["span_id"] == trace.format_span_id(evaluate.span_id)
