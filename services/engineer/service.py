"""The Engineer gRPC service: Validate, Evaluate (streaming), ListKernels, ListBaselines.

Candidate code never runs in this process: checks and training happen in
sandboxed children (sandbox.py). Evaluations take a slot from a bounded pool;
callers beyond the pool and its queue get RESOURCE_EXHAUSTED at once rather
than an unbounded wait.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib import resources

import grpc
import structlog
from prometheus_client import Counter, Gauge, Histogram

from asiarch.common import contract
from asiarch.common.client import open_channel
from asiarch.common.contract import DEFAULT_CLASS_NAME, EXPERIMENT_ID, EXPERIMENT_ID_RULE
from asiarch.common.errors import InvalidArgument, ResourceExhausted
from asiarch.common.fields import short
from asiarch.common.server import ServiceDefinition
from asiarch.engineer.budgets import Budget, BudgetError
from asiarch.engineer.calibration import Calibration, calibrate
from asiarch.engineer.config import EngineerSettings
from asiarch.engineer.kernel_cache import prepare_shared_dir
from asiarch.engineer.kernel_warm import KernelWarmer
from asiarch.engineer.pipeline import Attempt, Candidate, Pipeline
from asiarch.engineer.sandbox import SandboxLimits, remove_leftovers
from asiarch.kernels.registry import kernels
from asiarch.v1 import common_pb2, engineer_pb2, engineer_pb2_grpc, researcher_pb2, researcher_pb2_grpc

log = structlog.get_logger("asiarch.engineer")

DEFAULT_PORT = 50053
EVALUATIONS = Counter(
    "asiarch_engineer_evaluations_total",
    "Evaluate and Validate results, by rpc, the stage that failed (none when it passed) and outcome.",
    ["rpc", "stage", "outcome"],
)
QUEUE_DEPTH = Gauge("asiarch_engineer_queue_depth", "Evaluations and validations waiting for a slot.")
SLOTS_BUSY = Gauge("asiarch_engineer_slots_busy", "Slots running an evaluation or a validation now.")
SLOTS = Gauge("asiarch_engineer_slots", "Slots (ASIARCH_ENGINEER_MAX_CONCURRENT).")
TOKENS_PER_SECOND = Histogram(
    "asiarch_engineer_training_tokens_per_second",
    "Training throughput of each evaluation that measured one (Metrics.tokens_per_second).",
    buckets=(100, 250, 500, 1e3, 2.5e3, 5e3, 1e4, 2.5e4, 5e4, 1e5, 2.5e5, 5e5, 1e6, 2.5e6),
)
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_CLASS_NAME = 128
# (file in baselines/, name, motivation, reference_only); deltanet first: it is the analyst's default
# fitness reference, so a run's first records are scored against it rather than rescored later.
BASELINES = (
    (
        "deltanet.py",
        "deltanet",
        "DeltaNet: the delta rule with short convolutions and L2-normalised keys.",
        False,
    ),
    (
        "gated_deltanet.py",
        "gated-deltanet",
        "Gated DeltaNet: the delta rule with a Mamba-2 style forget gate.",
        False,
    ),
    (
        "linear_attention.py",
        "linear-attention",
        "Linear attention with elu+1 features and output normalisation.",
        False,
    ),
    ("softmax_attention.py", "softmax-attention", "Causal softmax attention, the quadratic reference.", True),
)


def baseline_proposals() -> list[common_pb2.Proposal]:
    folder = resources.files("asiarch.engineer") / "baselines"
    return [
        common_pb2.Proposal(
            name=name,
            motivation=motivation,
            source=common_pb2.ArchitectureSource(
                module_source=(folder / file).read_text(), class_name=DEFAULT_CLASS_NAME
            ),
            origin=common_pb2.PROPOSAL_ORIGIN_BASELINE,
            generator="baseline",
            reference_only=reference_only,
        )
        for file, name, motivation, reference_only in BASELINES
    ]


class ResearcherRepairer:
    """Self-healing through the researcher's Repair RPC."""

    def __init__(self, address: str, token: str | None, timeout: float) -> None:
        self.channel = open_channel(address, auth_token=token)
        self.stub = researcher_pb2_grpc.ResearcherStub(self.channel)
        self.timeout = timeout

    async def repair(
        self,
        candidate: Candidate,
        failed_stage: int,
        error: str,
        attempt: int,
        previous: list[common_pb2.RepairAttempt],
    ) -> researcher_pb2.RepairResponse:
        request = researcher_pb2.RepairRequest(
            source=common_pb2.ArchitectureSource(
                module_source=candidate.source, class_name=candidate.class_name
            ),
            spec_json=candidate.spec_json,
            failed_stage=failed_stage,  # type: ignore[arg-type]
            error=error,
            attempt=attempt,
            previous_attempts=previous,
            motivation=candidate.motivation,
        )
        response = await self.stub.Repair(request, timeout=self.timeout)
        if not response.source.module_source.strip():
            raise ValueError("the researcher returned an empty source")
        return response


class Slots:
    """A bounded pool with a bounded queue in front of it."""

    def __init__(self, running: int, queued: int) -> None:
        self.semaphore = asyncio.Semaphore(running)
        self.running = running
        self.capacity = running + queued
        self.holders = 0
        self.busy = 0  # holders past the semaphore; the others wait in the queue

    @asynccontextmanager
    async def take(self) -> AsyncIterator[None]:
        if self.holders >= self.capacity:
            raise ResourceExhausted(
                f"the engineer is busy: {self.holders} evaluations running or queued "
                f"(ASIARCH_ENGINEER_MAX_CONCURRENT + ASIARCH_ENGINEER_MAX_QUEUED = {self.capacity}); "
                "retry later"
            )
        self.holders += 1
        try:
            async with self.semaphore:
                self.busy += 1
                try:
                    yield
                finally:
                    self.busy -= 1
        finally:
            self.holders -= 1


def _source(source: common_pb2.ArchitectureSource, field: str) -> tuple[str, str]:
    if not source.module_source.strip():
        raise InvalidArgument(f"{field}.module_source must not be empty")
    class_name = source.class_name or DEFAULT_CLASS_NAME
    # Bounded: the name is quoted in check messages, which go back to the caller.
    if len(class_name) > MAX_CLASS_NAME or not IDENTIFIER.fullmatch(class_name):
        raise InvalidArgument(
            f"{field}.class_name {short(class_name)} is not a Python identifier of at most "
            f"{MAX_CLASS_NAME} characters"
        )
    return source.module_source, class_name


def _count(rpc: str, status: int, failed_stage: int) -> None:
    stage = contract.stage_key(failed_stage) if failed_stage else "none"
    outcome = common_pb2.EvaluationStatus.Name(status).removeprefix("EVALUATION_STATUS_").lower()
    EVALUATIONS.labels(rpc, stage, outcome).inc()


def _failure_outside_checks(attempt: Attempt) -> list[common_pb2.CheckResult]:
    """A failure no check reported (the candidate raised, timed out, crashed) as a failed check of its stage.

    The checks are the response's account of what ran: without this, a candidate that raised while
    being built left only passed checks and a reason, and no stage.
    """
    failed = attempt.status != common_pb2.EVALUATION_STATUS_SUCCEEDED
    if not failed or any(not check.passed for check in attempt.checks):
        return []
    stage = attempt.failed_stage or common_pb2.EVALUATION_STAGE_FUNCTIONAL_CHECKS
    prefix = contract.stage_key(stage).removesuffix("_checks")
    outcome = "timeout" if attempt.status == common_pb2.EVALUATION_STATUS_TIMED_OUT else "run"
    return [
        common_pb2.CheckResult(name=f"{prefix}.{outcome}", stage=stage, passed=False, message=attempt.reason)
    ]


class EngineerServicer(engineer_pb2_grpc.EngineerServicer):
    def __init__(self, settings: EngineerSettings) -> None:
        self.settings = settings
        kernel_cache_dir = prepare_shared_dir(settings.engineer_kernel_cache_dir)
        self.kernels = KernelWarmer(kernel_cache_dir, settings.engineer_sandbox_threads)
        limits = SandboxLimits(
            kernel_cache_dir=kernel_cache_dir,
            memory_bytes=int(settings.engineer_sandbox_memory_gb * (1 << 30)),
            threads=settings.engineer_sandbox_threads,
            allow_unisolated=settings.engineer_sandbox_unsafe,
            readable_paths=(settings.engineer_corpus_dir,) if settings.engineer_corpus_dir else (),
        )
        if stale := remove_leftovers():
            log.info("removed the folders and cgroups of sandboxes whose engineer was killed", count=stale)
        self.pipeline = Pipeline(limits, settings.engineer_max_source_kb * 1024, settings.engineer_corpus_dir)
        self.slots = Slots(settings.engineer_max_concurrent, settings.engineer_max_queued)
        token = settings.auth_token.get_secret_value() if settings.auth_token else None
        self.repairer = (
            ResearcherRepairer(settings.researcher_address, token, settings.engineer_repair_timeout_seconds)
            if settings.researcher_address
            else None
        )
        self.calibration: asyncio.Task[Calibration] | None = None

    async def _budget(self, budget: common_pb2.Budget) -> Budget:
        device = budget.device or self.settings.engineer_default_device
        # The calibration times a CPU workload: it says nothing about a GPU's speed.
        factor = (await self.calibration).factor if self.calibration and device == "cpu" else 1.0
        try:
            return Budget.from_proto(
                budget, self.settings.engineer_default_budget, self.settings.engineer_default_device, factor
            )
        except BudgetError as exc:
            raise InvalidArgument(str(exc)) from None

    async def Validate(
        self, request: engineer_pb2.ValidateRequest, context: grpc.aio.ServicerContext
    ) -> engineer_pb2.ValidateResponse:
        source, class_name = _source(request.source, "source")
        # Validate runs no training: its wall clock is the engineer's, whatever the budget's preset says.
        timeout = self.settings.engineer_check_timeout_seconds
        budget = dataclasses.replace(await self._budget(request.budget), wall_clock_seconds=timeout)
        candidate = Candidate("validate", source, class_name, budget, reference_only=request.reference_only)

        async def ignore(_: engineer_pb2.EvaluationEvent) -> None:
            return None

        if request.static_only:
            attempt = await self.pipeline.static_only(candidate)
        else:
            async with self.slots.take():
                attempt = await self.pipeline.check(candidate, "check", ignore)
        valid = attempt.status == common_pb2.EVALUATION_STATUS_SUCCEEDED
        _count("validate", attempt.status, attempt.failed_stage)
        return engineer_pb2.ValidateResponse(
            valid=valid,
            checks=[*attempt.checks, *_failure_outside_checks(attempt)],
            failure_reason=attempt.reason,
            proxies=attempt.proxies if valid else {},
        )

    async def Evaluate(
        self, request: engineer_pb2.EvaluateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[engineer_pb2.EvaluationEvent]:
        if not EXPERIMENT_ID.fullmatch(request.experiment_id):
            raise InvalidArgument(f"experiment_id must be {EXPERIMENT_ID_RULE}")
        source, class_name = _source(request.proposal.source, "proposal.source")
        budget = await self._budget(request.budget)
        max_repairs = (
            request.max_repairs if request.HasField("max_repairs") else self.settings.engineer_max_repairs
        )
        candidate = Candidate(
            request.experiment_id,
            source,
            class_name,
            budget,
            reference_only=request.proposal.reference_only,
            spec_json=request.proposal.spec_json,
            motivation=request.proposal.motivation,
            promote_below_loss=(
                request.budget.promote_below_loss if request.budget.HasField("promote_below_loss") else None
            ),
        )
        events: asyncio.Queue[engineer_pb2.EvaluationEvent | None] = asyncio.Queue()

        async def emit(event: engineer_pb2.EvaluationEvent) -> None:
            await events.put(event)

        async def run() -> common_pb2.Evaluation:
            try:
                await emit(
                    engineer_pb2.EvaluationEvent(
                        experiment_id=request.experiment_id,
                        progress=engineer_pb2.EvaluationProgress(
                            stage=common_pb2.EVALUATION_STAGE_QUEUED, message="waiting for a free slot"
                        ),
                    )
                )
                async with self.slots.take():
                    await self.kernels.ready(budget)  # the first evaluation of a budget's shapes warms them
                    return await self.pipeline.evaluate(candidate, max_repairs, self.repairer, emit)
            finally:
                await events.put(None)

        task = asyncio.create_task(run())
        try:
            while (event := await events.get()) is not None:
                yield event
            evaluation = await task
        finally:
            task.cancel()  # a cancelled call kills its sandbox
        _count("evaluate", evaluation.status, evaluation.failed_stage)
        if evaluation.metrics.tokens_per_second > 0:
            TOKENS_PER_SECOND.observe(evaluation.metrics.tokens_per_second)
        yield engineer_pb2.EvaluationEvent(experiment_id=request.experiment_id, result=evaluation)

    async def ListKernels(
        self, request: engineer_pb2.ListKernelsRequest, context: grpc.aio.ServicerContext
    ) -> engineer_pb2.ListKernelsResponse:
        try:
            triton_version = importlib.metadata.version("triton")
        except importlib.metadata.PackageNotFoundError:
            triton_version = ""
        import torch  # the engineer image has torch; keep other services free of it

        return engineer_pb2.ListKernelsResponse(
            kernels=[
                engineer_pb2.KernelInfo(
                    name=k.name,
                    family=k.family,
                    form=k.form,
                    devices=k.devices,
                    has_backward=k.has_backward,
                    fla_name=k.fla_name,
                )
                for k in kernels()
            ],
            triton_version=triton_version,
            cuda_available=torch.cuda.is_available(),
        )

    async def ListBaselines(
        self, request: engineer_pb2.ListBaselinesRequest, context: grpc.aio.ServicerContext
    ) -> engineer_pb2.ListBaselinesResponse:
        return engineer_pb2.ListBaselinesResponse(baselines=baseline_proposals())


@asynccontextmanager
async def lifespan(server: grpc.aio.Server, settings: EngineerSettings) -> AsyncIterator[Sequence[str]]:
    servicer = EngineerServicer(settings)
    if settings.engineer_calibrate:
        # In the background: the service answers health checks at once; the first evaluation waits for it.
        servicer.calibration = asyncio.create_task(calibrate(settings.engineer_sandbox_threads))
    engineer_pb2_grpc.add_EngineerServicer_to_server(servicer, server)
    slots = servicer.slots
    QUEUE_DEPTH.set_function(lambda: slots.holders - slots.busy)  # read at each scrape
    SLOTS_BUSY.set_function(lambda: slots.busy)
    SLOTS.set(slots.running)
    try:
        yield [engineer_pb2.DESCRIPTOR.services_by_name["Engineer"].full_name]
    finally:
        if servicer.calibration is not None:
            servicer.calibration.cancel()
        servicer.kernels.close()
        if servicer.repairer is not None:
            await servicer.repairer.channel.close()


SERVICE = ServiceDefinition(
    name="engineer",
    default_port=DEFAULT_PORT,
    lifespan=lifespan,  # type: ignore[arg-type]
    settings_type=EngineerSettings,
    summary="validation, sandboxed training and benchmarks of candidates",
    default_metrics_port=9453,
)
