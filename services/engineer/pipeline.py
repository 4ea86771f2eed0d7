"""One evaluation: static checks, the sandboxed run, and self-healing through the researcher.

Events (progress, finished checks) go to `emit` as they happen; the return
value is the final Evaluation. Every attempt of the self-healing loop is
recorded, including the error that triggered it and the patch it produced.
"""

from __future__ import annotations

import dataclasses
import difflib
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import Counter

from asiarch.common.errors import FailedPrecondition
from asiarch.engineer import convert
from asiarch.engineer.budgets import Budget
from asiarch.engineer.sandbox import SandboxLimits, SandboxResult, run_in_sandbox
from asiarch.engineer.static_checks import run_static_checks
from asiarch.v1 import common_pb2, engineer_pb2, researcher_pb2

log = structlog.get_logger("asiarch.engineer")

Emit = Callable[[engineer_pb2.EvaluationEvent], Awaitable[None]]
ERROR_LIMIT = 4000  # characters of an error sent to the researcher and recorded
ENGINEER_VERSION = "asiarch-engineer 0.1.0"
# Runs of the same code after a wall-clock timeout (then the timeout stands; Repair is never asked).
TIMEOUT_RETRIES = 1
SANDBOX_KILLS = Counter(
    "asiarch_engineer_sandbox_kills_total",
    "Sandboxes killed: by the engineer at the wall clock (timeout) or for flooding its output "
    "(output_flood), or by SIGKILL from a limit or the OOM killer (sigkill).",
    ["reason"],
)


class Repairer(Protocol):
    """Whoever patches failing candidates (the researcher, over gRPC)."""

    async def repair(
        self,
        candidate: Candidate,
        failed_stage: int,
        error: str,
        attempt: int,
        previous: list[common_pb2.RepairAttempt],
    ) -> researcher_pb2.RepairResponse: ...


@dataclass
class Candidate:
    experiment_id: str
    source: str
    class_name: str
    budget: Budget
    reference_only: bool = False
    spec_json: str = ""
    motivation: str = ""
    promote_below_loss: float | None = None


@dataclass
class Attempt:
    """What one pass over the stages produced."""

    checks: list[common_pb2.CheckResult] = field(default_factory=list)
    metrics: dict[str, Any] | None = None
    failed_stage: int = common_pb2.EVALUATION_STAGE_UNSPECIFIED
    reason: str = ""
    status: int = common_pb2.EVALUATION_STATUS_SUCCEEDED
    device: str = ""
    enforcement: dict[str, str] = field(default_factory=dict)
    # The zero-cost proxies, measured once the functional checks passed (Validate's job too).
    proxies: dict[str, float] = field(default_factory=dict)


def _trim(text: str) -> str:
    return text if len(text) <= ERROR_LIMIT else "...\n" + text[-ERROR_LIMIT:]


def stage_rank(stage: int) -> int:
    order = [
        common_pb2.EVALUATION_STAGE_STATIC_CHECKS,
        common_pb2.EVALUATION_STAGE_FUNCTIONAL_CHECKS,
        common_pb2.EVALUATION_STAGE_COMPILE,
        common_pb2.EVALUATION_STAGE_TRAINING,
        common_pb2.EVALUATION_STAGE_BENCHMARKS,
    ]
    return order.index(stage) if stage in order else -1


@dataclass
class _Events:
    """What a check or an evaluation tells its caller as it happens: finished checks, and progress timed
    from the start."""

    candidate: Candidate
    emit: Emit
    started: float = field(default_factory=time.monotonic)

    async def progress(self, stage: int, message: str, attempt: int, **fields: Any) -> None:
        progress = engineer_pb2.EvaluationProgress(
            stage=stage,
            message=message,
            elapsed_seconds=time.monotonic() - self.started,
            attempt=attempt,
            **fields,
        )
        await self.emit(
            engineer_pb2.EvaluationEvent(experiment_id=self.candidate.experiment_id, progress=progress)
        )

    async def check(self, check: common_pb2.CheckResult) -> None:
        await self.emit(engineer_pb2.EvaluationEvent(experiment_id=self.candidate.experiment_id, check=check))


class _Relay:
    """The sandbox's events, passed on as they come; keeps the checks, the first failed one and the stage."""

    def __init__(self, events: _Events, attempt: int) -> None:
        self.events = events
        self.attempt = attempt
        self.stage = common_pb2.EVALUATION_STAGE_FUNCTIONAL_CHECKS
        self.checks: list[common_pb2.CheckResult] = []
        self.failed: common_pb2.CheckResult | None = None

    async def __call__(self, event: dict[str, Any]) -> None:
        self.stage = convert.STAGES.get(str(event.get("stage")), self.stage)
        if event.get("type") == "check":
            check = convert.check_to_proto(event["check"])
            self.checks.append(check)
            if not check.passed and self.failed is None:
                self.failed = check
            await self.events.check(check)
        elif event.get("type") == "progress":
            fields: dict[str, Any] = {
                "step": int(event.get("step", 0)),
                "total_steps": int(event.get("total_steps", 0)),
            }
            if event.get("loss") is not None:
                fields["loss"] = float(event["loss"])
            await self.events.progress(self.stage, str(event.get("message", "")), self.attempt, **fields)


def _conclude(attempt: Attempt, result: SandboxResult, relay: _Relay) -> None:
    """The attempt's verdict: a failed check first, then how the run ended, else what it measured."""
    if relay.failed is not None:
        attempt.failed_stage = common_pb2.EVALUATION_STAGE_FUNCTIONAL_CHECKS
        attempt.reason = f"{relay.failed.name}: {relay.failed.message}"
        attempt.status = common_pb2.EVALUATION_STATUS_FAILED
    elif result.outcome != "ok":
        attempt.failed_stage = relay.stage
        attempt.reason = _trim(result.error)
        timed_out = result.outcome == "timeout"
        attempt.status = (
            common_pb2.EVALUATION_STATUS_TIMED_OUT if timed_out else common_pb2.EVALUATION_STATUS_FAILED
        )
    elif result.result is not None:
        attempt.metrics = result.result.get("metrics")
        attempt.proxies = result.result.get("proxies", {})
        attempt.device = result.result.get("device", "")


def _count_kill(result: SandboxResult) -> None:
    if result.outcome in ("timeout", "output_flood"):
        SANDBOX_KILLS.labels(result.outcome).inc()
    elif result.outcome == "crashed" and result.returncode == -signal.SIGKILL:
        SANDBOX_KILLS.labels("sigkill").inc()


def _got_past(attempt: Attempt, repair: common_pb2.RepairAttempt) -> bool:
    """Whether the patch got past the stage that had failed: it succeeded, or failed at a later stage."""
    succeeded = attempt.status == common_pb2.EVALUATION_STATUS_SUCCEEDED
    return succeeded or stage_rank(attempt.failed_stage) > stage_rank(repair.failed_stage)


def _first_line(reason: str) -> str:
    return reason.splitlines()[0][:200]


async def _repair(
    candidate: Candidate,
    attempt: Attempt,
    number: int,
    repairs: list[common_pb2.RepairAttempt],
    repairer: Repairer,
    events: _Events,
) -> bool:
    """Ask for a patch of `attempt`'s failure, record the request in `repairs` and apply the patch to
    `candidate`. False when no patch came (the researcher is down or refused): healing stops there."""
    await events.progress(
        common_pb2.EVALUATION_STAGE_REPAIR,
        f"asking the researcher to repair: {_first_line(attempt.reason)}",
        number,
    )
    record = common_pb2.RepairAttempt(
        attempt=number, failed_stage=attempt.failed_stage, error=_trim(attempt.reason)
    )
    try:
        patched = await repairer.repair(candidate, attempt.failed_stage, record.error, number, list(repairs))
    except Exception as exc:  # the researcher is down or refused: record it and stop healing
        record.summary = f"repair unavailable: {exc}"
        repairs.append(record)
        return False
    record.summary = patched.summary
    record.repaired_by = patched.repaired_by
    record.patch = "".join(
        difflib.unified_diff(
            candidate.source.splitlines(keepends=True),
            patched.source.module_source.splitlines(keepends=True),
            "before.py",
            "after.py",
        )
    )
    repairs.append(record)
    candidate.source = patched.source.module_source
    candidate.class_name = patched.source.class_name or candidate.class_name
    candidate.spec_json = patched.spec_json or candidate.spec_json
    return True


def _evaluation(
    candidate: Candidate,
    attempt: Attempt,
    checks: list[common_pb2.CheckResult],
    repairs: list[common_pb2.RepairAttempt],
    started_at: Timestamp,
    started: float,
) -> common_pb2.Evaluation:
    """The record of the evaluation: the last attempt's verdict and metrics, every check and repair."""
    finished_at = Timestamp()
    finished_at.GetCurrentTime()
    evaluation = common_pb2.Evaluation(
        status=attempt.status,
        failed_stage=attempt.failed_stage,
        failure_reason=attempt.reason,
        checks=checks,
        repairs=repairs,
        final_source=common_pb2.ArchitectureSource(
            module_source=candidate.source, class_name=candidate.class_name
        ),
        budget=candidate.budget.to_proto(),
        device=attempt.device or candidate.budget.device,
        wall_seconds=time.monotonic() - started,
        started_at=started_at,
        finished_at=finished_at,
        engineer_version=ENGINEER_VERSION,
    )
    if attempt.metrics:
        evaluation.metrics.CopyFrom(convert.metrics_to_proto(attempt.metrics))
    return evaluation


class Pipeline:
    def __init__(self, limits: SandboxLimits, max_source_bytes: int, corpus_dir: str | None) -> None:
        self.limits = limits
        self.max_source_bytes = max_source_bytes
        self.corpus_dir = corpus_dir

    async def static_only(self, candidate: Candidate) -> Attempt:
        attempt = Attempt()
        for static in run_static_checks(candidate.source, candidate.class_name, self.max_source_bytes):
            attempt.checks.append(convert.static_check_to_proto(static))
            if not static.passed:
                attempt.failed_stage = common_pb2.EVALUATION_STAGE_STATIC_CHECKS
                attempt.reason = f"{static.name}: {static.message}"
                attempt.status = common_pb2.EVALUATION_STATUS_FAILED
        return attempt

    async def check(self, candidate: Candidate, kind: str, emit: Emit, attempt_number: int = 0) -> Attempt:
        """Static checks, then the sandboxed job ("check": functional only; "evaluate": everything)."""
        events = _Events(candidate, emit)
        await events.progress(common_pb2.EVALUATION_STAGE_STATIC_CHECKS, "static checks", attempt_number)
        static = await self.static_only(candidate)
        for check in static.checks:
            await events.check(check)
        if static.status != common_pb2.EVALUATION_STATUS_SUCCEEDED:
            return static
        relay = _Relay(events, attempt_number)
        result = await self._run_job(candidate, kind, relay)
        attempt = Attempt(checks=[*static.checks, *relay.checks], enforcement=result.enforcement)
        _conclude(attempt, result, relay)
        return attempt

    async def _run_job(self, candidate: Candidate, kind: str, relay: _Relay) -> SandboxResult:
        """The job in the sandbox, its events to `relay`; FailedPrecondition if the host cannot isolate it."""
        job = {
            "kind": kind,
            "source": candidate.source,
            "class_name": candidate.class_name,
            "budget": candidate.budget.to_json(),
            "reference_only": candidate.reference_only,
            "corpus_dir": self.corpus_dir,
            "threads": self.limits.threads,
        }
        # The budget owns the wall clock (Validate sets its own); the CPU-seconds rlimit must allow every
        # thread to run for all of it. A fixed sandbox cap here once cut every evaluation, rung 2 and the
        # gpu budget included, at 300 s.
        wall = candidate.budget.wall_clock_seconds
        cpu = max(self.limits.cpu_seconds, int(wall * self.limits.threads) + 60)
        limits = dataclasses.replace(self.limits, wall_seconds=wall, cpu_seconds=cpu)
        result = await run_in_sandbox(job, limits, relay)
        _count_kill(result)
        if result.outcome == "refused":  # the host's fault, not the candidate's: nothing is recorded
            raise FailedPrecondition(result.error)
        # What the sandbox could enforce depends on the host (a container without
        # capabilities cannot unshare the network): say it once per run, in the log.
        log.info(
            "sandbox",
            experiment_id=candidate.experiment_id,
            kind=kind,
            outcome=result.outcome,
            **result.enforcement,
        )
        return result

    async def _maybe_promote(
        self, candidate: Candidate, attempt: Attempt, emit: Emit, number: int
    ) -> Attempt:
        """Rung 2 right after a good rung 1 (successive halving with the caller's threshold)."""
        threshold = candidate.promote_below_loss
        loss = (attempt.metrics or {}).get("val_loss")
        if threshold is None or candidate.budget.rung != 1 or loss is None or loss > threshold:
            return attempt
        budget = candidate.budget.rung_two()
        promoted = dataclasses.replace(candidate, budget=budget)
        second = await self.check(promoted, "evaluate", emit, number)
        if second.status == common_pb2.EVALUATION_STATUS_SUCCEEDED:
            candidate.budget = budget
        return second

    async def _run_retrying_timeouts(
        self, candidate: Candidate, events: _Events, attempt_number: int
    ) -> Attempt:
        """One evaluation; after a wall-clock timeout the same code runs again (TIMEOUT_RETRIES times).

        A timeout says the machine was busy as often as that the code is slow, and there is no bug in
        it for Repair to fix: the caller never sends a timeout to Repair.
        """
        attempt = await self.check(candidate, "evaluate", events.emit, attempt_number)
        for _ in range(TIMEOUT_RETRIES):
            if attempt.status != common_pb2.EVALUATION_STATUS_TIMED_OUT:
                break
            reason = _first_line(attempt.reason) if attempt.reason else "wall-clock limit"
            message = f"timed out, running the same code again: {reason}"
            await events.progress(attempt.failed_stage, message, attempt_number)
            attempt = await self.check(candidate, "evaluate", events.emit, attempt_number)
        return attempt

    async def evaluate(
        self, candidate: Candidate, max_repairs: int, repairer: Repairer | None, emit: Emit
    ) -> common_pb2.Evaluation:
        """Evaluate; repair and evaluate again until it succeeds, times out or `max_repairs` are spent."""
        started_at = Timestamp()
        started_at.GetCurrentTime()
        events = _Events(candidate, emit)
        repairs: list[common_pb2.RepairAttempt] = []
        checks: list[common_pb2.CheckResult] = []
        attempt_number = 0
        while True:
            attempt = await self._run_retrying_timeouts(candidate, events, attempt_number)
            checks.extend(attempt.checks)
            attempt = await self._maybe_promote(candidate, attempt, emit, attempt_number)
            if repairs:
                repairs[-1].succeeded = _got_past(attempt, repairs[-1])
            if attempt.status == common_pb2.EVALUATION_STATUS_SUCCEEDED or attempt_number >= max_repairs:
                break
            if repairer is None or attempt.status == common_pb2.EVALUATION_STATUS_TIMED_OUT:
                break
            attempt_number += 1
            if not await _repair(candidate, attempt, attempt_number, repairs, repairer, events):
                break
        return _evaluation(candidate, attempt, checks, repairs, started_at, events.started)
