"""ASI-Arch's loop over real gRPC: select → propose → evaluate (self-healing) → record.

All state lives in the analyst: the loop can be stopped at any point and
resumed from the store. Experiment ids are minted before any work (baselines:
`<run>.base.<name>`, candidates: `<run>.c<cycle>.<slot>`) and recorded as
PENDING with their proposal before evaluation, so a retried or resumed step
re-uses the same id and proposal and the analyst never holds a duplicate.

Seeds are experiments recorded before the loop at cycle 0 that are not
baselines (`asiarch import asi-arch` records them PENDING, ids
`<run>.seed.<name>`). The loop trains every unfinished seed right after the
baselines, as published (no repair), with the run's budget, so their fitness
is measured against the same baselines as everything else. Once a seed has
succeeded, the run searches from the imported pool: the baselines go to the
selector as reference-only (scored yardsticks and references, never parents).

A cycle is prepared, then trained. Preparing it selects parents, asks for its proposals (recorded
PENDING) and checks each with Engineer.Validate (static and sandboxed functional checks, no training);
a proposal that fails them is recorded FAILED with the engineer's stage and reason and never takes a
training slot, and neither does a design the run already measured (the stored evaluation is reused).
With --proxy-filter SHARE, and only while the proxy's Spearman rho against rung-1 loss clears the bar
(asiarch.orchestrator.stats), a cycle prepares about N/(1-SHARE) proposals and records the bottom
SHARE by the proxy as FAILED (skipped) instead of training them. The next cycle is prepared while this
one trains (a lookahead of one cycle: its parents are chosen from what had finished when its
preparation began), and --parallel N keeps up to N Evaluate calls in flight, confirmations included.
After every cycle its numbers go to RUN_DIR/stats.json (asiarch.orchestrator.stats). With tracing on
(asiarch.common.tracing), each cycle is one trace, rooted in a span `cycle N` that holds its calls, its
preparation ahead of time included.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import grpc
import structlog

from asiarch.common.cli import precision_value, proposal_mode_value
from asiarch.common.contract import DEFAULT_CLASS_NAME, budget_presets
from asiarch.common.source import SourceError, parse_source
from asiarch.common.tracing import CycleSpans
from asiarch.orchestrator.config import DEFAULT_BUDGET, DEFAULT_CONFIRM_RUNG, DEFAULT_CONFIRM_SEEDS
from asiarch.orchestrator.retry import retrying
from asiarch.orchestrator.stats import (
    Correlation,
    CycleStats,
    RunStats,
    bar,
    best_confirmed_improvement,
    clears_bar,
    cpu_seconds,
    describe,
    proxy_correlations,
)
from asiarch.v1 import analyst_pb2, common_pb2, engineer_pb2, researcher_pb2, selector_pb2

log = structlog.get_logger("asiarch.discover")

TERMINAL = {common_pb2.EXPERIMENT_STATUS_SUCCEEDED, common_pb2.EXPERIMENT_STATUS_FAILED}
RECORD_TIMEOUT = 900.0  # an LLM judge and analysis on a slow server
PROPOSE_TIMEOUT = 900.0
EVALUATE_TIMEOUT = 6 * 3600.0
VALIDATE_TIMEOUT = 900.0  # the engineer's check timeout (180 s) and a wait for a free slot
DUPLICATE_RETRIES = 3  # proposals asked for again while they repeat a design the run already has


@dataclass(frozen=True)
class Options:
    run_id: str
    cycles: int | None = 3
    time_budget_minutes: float | None = None
    strategy: str = "asi-arch"
    mode: str | None = None  # None: the researcher chooses (code with an LLM, DSL without)
    budget: str = DEFAULT_BUDGET
    precision: str | None = None  # None: the budget preset's default, decided by the engineer
    device: str = ""
    seed: int = 0
    parallel: int = 1
    promote: bool = False
    confirm_seeds: int = DEFAULT_CONFIRM_SEEDS  # for a candidate that leads the strongest baseline; 0: never
    confirm_rung: int = DEFAULT_CONFIRM_RUNG  # the rung its replicates train at
    run_dir: Path | None = None  # where stats.json goes; None: nowhere
    proxy_filter: float = 0.0  # share of the validated proposals a trusted proxy skips; 0: off
    proxy: str = "loss_slope"  # the zero-cost proxy (ValidateResponse.proxies) that ranks them
    service_pids: tuple[int, ...] = ()  # local service processes whose CPU time stats.json reports
    # A proposal that fails Validate goes to Evaluate, whose self-healing (ASI-Arch's debugger: the researcher
    # repairs, the checks run again) may save it and trains only what passes; False: it is recorded FAILED at
    # once and counted as rejected (cheap, but no repair).
    self_heal: bool = True
    # Runs whose unrepaired evaluations (baselines, seeds, replicates) this run copies instead of training
    # again when the same experiment there trained the same source at the same budget, seed and rung
    # (`same_training`); the benchmark's paired runs share their yardsticks this way.
    reuse_from: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.proxy_filter < 1:
            raise ValueError(f"proxy_filter must be in [0, 1), got {self.proxy_filter}")


@dataclass
class Stubs:
    selector: Any
    researcher: Any
    engineers: list[Any]
    analyst: Any


class Display(Protocol):
    def note(self, message: str) -> None: ...
    def started(self, key: str, label: str) -> None: ...
    def progress(self, key: str, event: common_pb2.EvaluationProgress | Any) -> None: ...
    def finished(self, key: str, experiment: common_pb2.Experiment) -> None: ...


def _now() -> Any:
    stamp = common_pb2.Experiment().created_at
    stamp.FromDatetime(datetime.now(UTC))
    return stamp


def same_training(donor: common_pb2.Experiment, request: engineer_pb2.EvaluateRequest) -> bool:
    """Whether `donor` succeeded training exactly what an unrepaired `request` asks for: the same source
    and class, and a budget resolved from the same preset, seed and rung (and precision and device where the
    request names them). Overrides are not compared: the loop never sends any."""
    evaluation, asked = donor.evaluation, request.budget
    source = evaluation.final_source if evaluation.final_source.module_source else donor.proposal.source
    ran = evaluation.budget
    return (
        donor.status == SUCCEEDED
        and evaluation.status == common_pb2.EVALUATION_STATUS_SUCCEEDED
        and not evaluation.repairs
        and source.module_source == request.proposal.source.module_source
        and source.class_name == request.proposal.source.class_name
        and ran.preset == asked.preset
        and ran.seed == asked.seed
        and ran.rung == max(asked.rung, 1)
        and (not asked.precision or ran.precision == asked.precision)
        and (not asked.device or ran.device == asked.device)
    )


def candidate_id(run_id: str, cycle: int, slot: int) -> str:
    return f"{run_id}.c{cycle:04d}.{slot}"


def baseline_id(run_id: str, name: str) -> str:
    return f"{run_id}.base.{name}"


def seed_id(run_id: str, name: str) -> str:
    return f"{run_id}.seed.{name}"


def is_seed(experiment: common_pb2.Experiment) -> bool:
    """Recorded before the loop (cycle 0) without being a baseline: an imported architecture."""
    return experiment.cycle == 0 and not experiment.is_baseline and not experiment.replicate_of


def replicate_id(experiment_id: str, seed: int, rung: int) -> str:
    return f"{experiment_id}.s{seed}.r{rung}"


SUCCEEDED = common_pb2.EXPERIMENT_STATUS_SUCCEEDED


@dataclass(frozen=True)
class Checked:
    """What Validate said of a proposal: a rejection to record (None: it may train), the checks that ran
    and the zero-cost proxies it measured."""

    rejection: common_pb2.Evaluation | None = None
    checks: tuple[common_pb2.CheckResult, ...] = ()
    proxies: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    """One slot of a prepared cycle."""

    experiment: common_pb2.Experiment  # PENDING, unless finished
    finished: bool = False  # recorded before a stop: only its confirmation may be due
    twin: common_pb2.Experiment | None = None  # a finished one of the same design: its evaluation is reused
    checked: Checked = Checked()

    @property
    def trains(self) -> bool:
        return not self.finished and self.twin is None


@dataclass(frozen=True)
class Prepared:
    """A cycle ready to train: its numbers so far and its slots."""

    stats: CycleStats
    jobs: list[Job]


def concluded(experiment: common_pb2.Experiment, evaluation: common_pb2.Evaluation) -> common_pb2.Experiment:
    """`experiment` with its evaluation, to record: the analyst derives the status from the evaluation."""
    final = common_pb2.Experiment()
    final.CopyFrom(experiment)
    final.status = common_pb2.EXPERIMENT_STATUS_UNSPECIFIED
    final.evaluation.CopyFrom(evaluation)
    return final


def rejected(
    reply: engineer_pb2.ValidateResponse, budget: common_pb2.Budget, proposal: common_pb2.Proposal
) -> common_pb2.Evaluation | None:
    """The record of a proposal Validate refused, as Evaluate records one that fails the same check
    (status FAILED, the stage, the engineer's reason, the checks); None when it passed, or when its
    failure says nothing of the candidate: a check that ran out of time on a busy machine goes to
    training, which runs a timed-out stage again."""
    if reply.valid:
        return None
    failed = next((check for check in reply.checks if not check.passed), None)
    if failed is None or failed.name.endswith(".timeout"):
        return None
    static = failed.stage == common_pb2.EVALUATION_STAGE_STATIC_CHECKS
    return common_pb2.Evaluation(
        status=common_pb2.EVALUATION_STATUS_FAILED,
        # Everything after the static checks runs in one sandboxed job: Evaluate names its stage so too.
        failed_stage=(
            common_pb2.EVALUATION_STAGE_STATIC_CHECKS
            if static
            else common_pb2.EVALUATION_STAGE_FUNCTIONAL_CHECKS
        ),
        failure_reason=reply.failure_reason,
        checks=reply.checks,
        final_source=proposal.source,
        budget=budget,
    )


class Discovery:
    def __init__(
        self,
        options: Options,
        stubs: Stubs,
        display: Display,
        on_cycle: Callable[[int, dict[str, int]], Awaitable[None]] | None = None,
    ) -> None:
        self.options, self.stubs, self.display, self.on_cycle = options, stubs, display, on_cycle
        self._next_engineer = 0
        self._reasons: set[str] = set()
        self._proposed: set[str] = set()  # design keys proposed by this process (parallel slots)
        self.started = time.monotonic()
        # --parallel N bounds the Evaluate calls in flight, whoever makes them (slots, confirmations).
        self._training = asyncio.Semaphore(options.parallel)
        # Validate calls at once: one per engineer, beside its trainings (discover gives a local
        # engineer a slot more than --parallel for them).
        self._checking = asyncio.Semaphore(max(1, len(stubs.engineers)))
        self.engineer_seconds = 0.0  # in Evaluate calls, since the start
        self.reused = 0  # evaluations copied from another run (Options.reuse_from), since the start
        self._proxy_state = ""  # "on" or "off" once said: said again only when it changes
        self._cycle_end: float | None = None  # unix time the last cycle ended, in this invocation
        self._cpu_mark: float | None = None  # the local services' CPU seconds then

    # --- store ---

    async def experiments(self) -> list[common_pb2.Experiment]:
        """Every experiment of the run, oldest first."""
        found: list[common_pb2.Experiment] = []
        token = ""
        while True:
            request = analyst_pb2.ListExperimentsRequest(
                run_id=self.options.run_id,
                sort=analyst_pb2.EXPERIMENT_SORT_CREATED_ASC,
                page_size=1000,
                page_token=token,
            )
            reply = await retrying(
                "Analyst.ListExperiments",
                lambda request=request: self.stubs.analyst.ListExperiments(request, timeout=120),
            )
            found += reply.experiments
            token = reply.next_page_token
            if not token:
                return found

    async def record(self, experiment: common_pb2.Experiment) -> common_pb2.Experiment:
        request = analyst_pb2.RecordRequest(experiment=experiment)
        reply = await retrying(
            "Analyst.Record", lambda: self.stubs.analyst.Record(request, timeout=RECORD_TIMEOUT)
        )
        return reply.experiment

    async def proposed(self) -> dict[str, int]:
        """How the run's candidates were proposed, by origin ("dsl_mutation": 3): what actually ran, which
        --mode only asks for (an LLM proposal that fails becomes a DSL mutation)."""
        origins = Counter(
            common_pb2.ProposalOrigin.Name(e.proposal.origin).removeprefix("PROPOSAL_ORIGIN_").lower()
            for e in await self.experiments()
            if not e.is_baseline
        )
        return dict(sorted(origins.items()))

    # --- evaluation ---

    def _engineer(self) -> Any:
        # Round-robin: with --parallel N and several engineers, evaluations spread over all of them.
        engineer = self.stubs.engineers[self._next_engineer % len(self.stubs.engineers)]
        self._next_engineer += 1
        return engineer

    def _budget(self, seed: int, rung: int) -> common_pb2.Budget:
        return common_pb2.Budget(
            preset=budget_presets()[self.options.budget],
            precision=precision_value(self.options.precision),
            device=self.options.device,
            seed=seed,
            rung=rung,
        )

    async def evaluate(
        self,
        experiment_id: str,
        proposal: common_pb2.Proposal,
        promote_below: float | None,
        *,
        repairable: bool = True,
        seed: int | None = None,
        rung: int = 0,
    ) -> common_pb2.Evaluation:
        budget = self._budget(self.options.seed if seed is None else seed, rung)
        if promote_below is not None:
            budget.promote_below_loss = promote_below
        request = engineer_pb2.EvaluateRequest(experiment_id=experiment_id, proposal=proposal, budget=budget)
        if not repairable:
            request.max_repairs = 0
            if promote_below is None and (reused := await self._reused(request)) is not None:
                return reused
        async with self._training:
            started = time.monotonic()
            try:
                return await self._evaluate(request)
            finally:
                self.engineer_seconds += time.monotonic() - started

    async def _reused(self, request: engineer_pb2.EvaluateRequest) -> common_pb2.Evaluation | None:
        """The evaluation of the same experiment (the same id after the run id) in a run of `reuse_from`,
        copied, when it trained what `request` would train; None otherwise."""
        suffix = request.experiment_id.removeprefix(self.options.run_id)
        for run_id in self.options.reuse_from:
            donor = await self.get(run_id + suffix) if run_id != self.options.run_id else None
            if donor is not None and same_training(donor, request):
                evaluation = common_pb2.Evaluation()
                evaluation.CopyFrom(donor.evaluation)
                evaluation.reused_from = donor.evaluation.reused_from or donor.id
                self.reused += 1
                return evaluation
        return None

    async def _evaluate(self, request: engineer_pb2.EvaluateRequest) -> common_pb2.Evaluation:
        engineer, experiment_id = self._engineer(), request.experiment_id

        async def attempt() -> common_pb2.Evaluation:
            result = None
            async for event in engineer.Evaluate(request, timeout=EVALUATE_TIMEOUT):
                if event.HasField("progress"):
                    self.display.progress(experiment_id, event.progress)
                elif event.HasField("result"):
                    result = event.result
            if result is None:  # the stream ended without a verdict: as good as a lost connection
                raise _lost(f"the engineer's stream for {experiment_id} ended without a result")
            return result

        try:
            return await retrying(f"Engineer.Evaluate {experiment_id}", attempt, attempts=6)
        except grpc.aio.AioRpcError as exc:
            return common_pb2.Evaluation(
                status=common_pb2.EVALUATION_STATUS_FAILED,
                failure_reason=f"the engineer refused the evaluation: {exc.code().name}: {exc.details()}",
            )

    async def validate(self, experiment: common_pb2.Experiment) -> Checked:
        """Engineer.Validate on a pending proposal with the run's budget: a rejection to record when it
        fails the static or functional checks, and the zero-cost proxies measured when it passes."""
        proposal = experiment.proposal
        request = engineer_pb2.ValidateRequest(
            source=proposal.source,
            budget=self._budget(self.options.seed, 0),
            reference_only=proposal.reference_only,
        )
        started_at, started = _now(), time.monotonic()
        async with self._checking:
            engineer = self._engineer()
            try:
                reply = await retrying(
                    f"Engineer.Validate {experiment.id}",
                    lambda: engineer.Validate(request, timeout=VALIDATE_TIMEOUT),
                )
            except grpc.aio.AioRpcError as exc:  # no verdict on the candidate: its evaluation will tell
                self.display.note(f"{experiment.id}: not checked before training ({exc.code().name})")
                return Checked()
        rejection = rejected(reply, request.budget, proposal)
        if rejection is not None:
            rejection.started_at.CopyFrom(started_at)
            rejection.finished_at.CopyFrom(_now())
            rejection.wall_seconds = time.monotonic() - started
        return Checked(rejection, tuple(reply.checks), dict(reply.proxies))

    # --- baselines ---

    async def seed_baselines(self, stored: dict[str, common_pb2.Experiment]) -> None:
        reply = await retrying(
            "Engineer.ListBaselines",
            lambda: self.stubs.engineers[0].ListBaselines(engineer_pb2.ListBaselinesRequest(), timeout=60),
        )
        done = {i for i, e in stored.items() if e.status in TERMINAL}
        todo = [p for p in reply.baselines if baseline_id(self.options.run_id, p.name) not in done]
        if todo:
            self.display.note(f"evaluating {len(todo)} baseline(s): {', '.join(p.name for p in todo)}")
        await self._bounded([self._baseline(p) for p in todo])

    async def _baseline(self, proposal: common_pb2.Proposal) -> None:
        experiment = common_pb2.Experiment(
            id=baseline_id(self.options.run_id, proposal.name),
            run_id=self.options.run_id,
            name=proposal.name,
            cycle=0,
            is_baseline=True,
            proposal=proposal,
            created_at=_now(),
        )
        await self._as_published(experiment, f"baseline {proposal.name}")

    async def evaluate_seeds(self, stored: dict[str, common_pb2.Experiment]) -> None:
        """Train the imported seeds not yet evaluated (a resumed run trains only what is left)."""
        todo = [e for e in stored.values() if is_seed(e) and e.status not in TERMINAL]
        if todo:
            self.display.note(f"evaluating {len(todo)} imported seed(s)")
        await self._bounded([self._as_published(e, f"seed {e.name}") for e in todo])

    async def _as_published(self, experiment: common_pb2.Experiment, label: str) -> None:
        """Evaluate and record a baseline or a seed. Never repaired: a baseline is the yardstick, a seed is
        someone's published design, and a "repaired" one would measure another layer."""
        self.display.started(experiment.id, label)
        evaluation = await self.evaluate(experiment.id, experiment.proposal, None, repairable=False)
        self.display.finished(experiment.id, await self.record(concluded(experiment, evaluation)))

    async def _bounded(self, jobs: Sequence[Awaitable[None]]) -> None:
        gate = asyncio.Semaphore(self.options.parallel)

        async def run(job: Awaitable[None]) -> None:
            try:
                async with gate:
                    await job
            finally:
                # A job cancelled while it waited for the gate (Ctrl-C, SIGTERM) never started: closing
                # it spares the "coroutine ... was never awaited" warning; a finished one ignores close().
                if asyncio.iscoroutine(job):
                    job.close()

        await asyncio.gather(*(run(j) for j in jobs))

    # --- confirmation ---

    async def get(self, experiment_id: str) -> common_pb2.Experiment | None:
        try:
            return await retrying(
                "Analyst.GetExperiment",
                lambda: self.stubs.analyst.GetExperiment(
                    analyst_pb2.GetExperimentRequest(id=experiment_id), timeout=60
                ),
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    def confirmation_seeds(self, count: int) -> list[int]:
        """Seeds of the replicates: after the run's own, the same for every candidate and baseline, so a
        baseline's replicates are trained once and paired with every candidate."""
        return [self.options.seed + i for i in range(1, count + 1)]

    async def confirm(
        self, experiment: common_pb2.Experiment, against_id: str = "", seeds: int | None = None
    ) -> common_pb2.Experiment:
        """Re-train the experiment and its rival on paired seeds at the next rung; the analyst tests them."""
        against_id = against_id or experiment.analysis.rival_id
        against = await self.get(against_id) if against_id else None
        if against is None:
            raise ValueError(f"{experiment.id}: no baseline to pair with (rival {against_id!r} not recorded)")
        count = self.options.confirm_seeds if seeds is None else seeds
        self.display.note(
            f"confirming {experiment.name} against {against.name}: "
            f"{count} paired seeds at rung {self.options.confirm_rung}"
        )
        await self._bounded(
            [
                self._replicate(original, seed)
                for seed in self.confirmation_seeds(count)
                for original in (against, experiment)
            ]
        )
        request = analyst_pb2.ConfirmRequest(
            experiment_id=experiment.id, against_id=against.id, rung=self.options.confirm_rung
        )
        reply = await retrying(
            "Analyst.Confirm", lambda: self.stubs.analyst.Confirm(request, timeout=RECORD_TIMEOUT)
        )
        self.display.note(f"{experiment.name}: {reply.experiment.confirmation.verdict}")
        return reply.experiment

    async def _replicate(self, original: common_pb2.Experiment, seed: int) -> None:
        """One replicate, trained unless the store already holds it."""
        experiment_id = replicate_id(original.id, seed, self.options.confirm_rung)
        stored = await self.get(experiment_id)
        if stored is not None and stored.status in TERMINAL:
            return
        proposal = common_pb2.Proposal()
        proposal.CopyFrom(original.proposal)
        if original.evaluation.final_source.module_source:  # what was evaluated, after any repair
            proposal.source.CopyFrom(original.evaluation.final_source)
        label = f"{original.name} seed {seed}"
        self.display.started(experiment_id, label)
        evaluation = await self.evaluate(
            experiment_id, proposal, None, repairable=False, seed=seed, rung=self.options.confirm_rung
        )
        recorded = await self.record(
            common_pb2.Experiment(
                id=experiment_id,
                run_id=self.options.run_id,
                name=label,
                cycle=original.cycle,
                is_baseline=original.is_baseline,
                replicate_of=original.id,
                proposal=proposal,
                evaluation=evaluation,
                created_at=_now(),
            )
        )
        self.display.finished(experiment_id, recorded)

    async def confirm_if_due(
        self, experiment: common_pb2.Experiment, stats: CycleStats | None = None
    ) -> common_pb2.Experiment:
        """Confirm a promising candidate not confirmed yet (counted in `stats`); else it, as it is."""
        due = (
            self.options.confirm_seeds > 0
            and experiment.analysis.promising
            and not experiment.confirmation.against_id
        )
        if not due:
            return experiment
        confirmed = await self.confirm(experiment)
        if stats is not None:
            stats.confirmations += 1
            stats.confirmed += int(confirmed.confirmation.confirmed)
        return confirmed

    # --- cycles ---

    def first_cycle(self, stored: Sequence[common_pb2.Experiment]) -> int:
        """1 for a new run; on resume, the first cycle with unfinished or missing work (a cycle prepared
        ahead may hold pending proposals while the one before it is unfinished too)."""
        cycles = [e.cycle for e in stored if e.cycle > 0]  # cycle 0: baselines and imported seeds
        if not cycles:
            return 1
        unfinished = [e.cycle for e in stored if e.cycle > 0 and e.status not in TERMINAL]
        if unfinished:
            return min(unfinished)
        last = max(cycles)
        complete = sum(1 for e in stored if e.cycle == last and not e.is_baseline) >= self.options.parallel
        return last + 1 if complete else last

    def out_of_time(self) -> bool:
        budget = self.options.time_budget_minutes
        return budget is not None and time.monotonic() - self.started >= budget * 60

    def planned(self, cycle: int) -> bool:
        return self.options.cycles is None or cycle <= self.options.cycles

    async def run(self) -> int:
        """Seed (or resume) the run and run cycles until the plan or the time budget is used; cycles run.
        Each cycle is prepared while the one before it trains, and its numbers go to stats.json."""
        await self._check_strategy()
        stored = {e.id: e for e in await self.experiments()}
        await self.seed_baselines(stored)
        await self.evaluate_seeds(stored)
        run_dir, options = self.options.run_dir, self.options
        stats = (
            RunStats.load(run_dir, options.run_id, options.strategy, options.budget, options.parallel)
            if run_dir is not None
            else None
        )
        cycle = self.first_cycle(list(stored.values()))
        self._cpu_mark = cpu_seconds(options.service_pids)
        done = 0
        ahead: asyncio.Task[Prepared] | None = None
        spans = CycleSpans(options.run_id)  # with tracing on, a trace per cycle, its lookahead included
        try:
            while self.planned(cycle) and not self.out_of_time():
                prepared = await ahead if ahead is not None else await spans.run(cycle, self.prepare(cycle))
                ahead = spans.task(cycle + 1, self.prepare(cycle + 1)) if self.planned(cycle + 1) else None
                numbers = await spans.run(cycle, self.run_cycle(cycle, prepared), last=True)
                if stats is not None and run_dir is not None:
                    stats.append(numbers, run_dir)
                done += 1
                if self.on_cycle is not None:
                    await self.on_cycle(cycle, await self.proposed())
                cycle += 1
        finally:
            if ahead is not None:  # out of time or stopped: what it recorded PENDING waits for --resume
                ahead.cancel()
                await asyncio.gather(ahead, return_exceptions=True)
            spans.end_all()
        return done

    async def _check_strategy(self) -> None:
        """An unknown strategy should fail now, not after the baselines have been trained."""
        strategies = await retrying(
            "Selector.ListStrategies",
            lambda: self.stubs.selector.ListStrategies(selector_pb2.ListStrategiesRequest(), timeout=60),
        )
        names = sorted(info.name for info in strategies.strategies)
        if self.options.strategy not in names:
            raise ValueError(
                f"unknown strategy {self.options.strategy!r}; the selector offers {', '.join(names)}"
            )

    async def run_cycle(self, cycle: int, prepared: Prepared | None = None) -> CycleStats:
        """Train a cycle (prepared here unless it was ahead of time); its numbers."""
        prepared = prepared or await self.prepare(cycle)
        await self.train(prepared)
        return await self._close(prepared.stats)

    async def prepare(self, cycle: int) -> Prepared:
        """The cycle's parents, its proposals (recorded PENDING), their checks and the proxy filter: what
        is left for training."""
        stats = CycleStats(cycle=cycle, started=time.time())
        population = await self.experiments()
        by_id = {e.id: e for e in population}
        selectable = self._selectable(population)
        if not selectable:
            raise RuntimeError(
                "no successfully evaluated, selectable experiment to build on (see the engineer log)"
            )
        trained = min(self.options.parallel, len(selectable))
        gate = self._proxy_gate(population)
        width = max(self._width(trained, gate), self._recorded_slots(population, cycle))
        choices = list((await self._select(cycle, population, min(width, len(selectable)))).selections)
        self.display.note(
            f"cycle {cycle}: parents "
            + ", ".join(by_id[s.parent_id].name for s in choices if s.parent_id in by_id)
        )
        jobs = await asyncio.gather(
            *(
                self._prepare_slot(cycle, slot, choices[slot % len(choices)], by_id, stats)
                for slot in range(width if choices else 0)
            )
        )
        ready = [job for job in jobs if job is not None]
        return Prepared(stats, await self._filter(ready, gate, trained, stats))

    def _selectable(self, population: Sequence[common_pb2.Experiment]) -> list[common_pb2.Experiment]:
        return [e for e in population if e.status == SUCCEEDED and not self._reference_only(e, population)]

    def _reference_only(self, e: common_pb2.Experiment, population: Sequence[common_pb2.Experiment]) -> bool:
        # With an imported pool the search starts from it; the baselines stay the yardstick.
        pool = any(is_seed(s) and s.status == SUCCEEDED for s in population)
        return e.proposal.reference_only or (pool and e.is_baseline)

    async def _select(
        self, cycle: int, population: Sequence[common_pb2.Experiment], k: int
    ) -> selector_pb2.SelectParentsResponse:
        succeeded = [e for e in population if e.status == SUCCEEDED]
        ids = {e.id for e in succeeded}
        request = selector_pb2.SelectParentsRequest(
            strategy=self.options.strategy,
            k=k,
            seed=self.options.seed * 1_000_003 + cycle,
            candidates=[
                selector_pb2.Candidate(
                    id=e.id,
                    name=e.name,
                    # A parent that failed (an imported seed's) is not a candidate: the lineage stops there.
                    parent_id=e.parent_ids[0] if e.parent_ids and e.parent_ids[0] in ids else "",
                    fitness=e.fitness.total,
                    metrics=e.evaluation.metrics,
                    reference_only=self._reference_only(e, population),
                )
                for e in succeeded
            ],
        )
        return await retrying(
            "Selector.SelectParents", lambda: self.stubs.selector.SelectParents(request, timeout=60)
        )

    def _width(self, trained: int, gate: Correlation | None) -> int:
        """Proposals to prepare for `trained` training slots: more when a trusted proxy filters."""
        if gate is None:
            return trained
        return math.ceil(trained / (1 - self.options.proxy_filter) - 1e-9)

    def _recorded_slots(self, population: Sequence[common_pb2.Experiment], cycle: int) -> int:
        """Slots of the cycle already in the store (a resumed cycle finishes every one it recorded)."""
        prefix = candidate_id(self.options.run_id, cycle, 0).removesuffix("0")
        slots = [e.id.removeprefix(prefix) for e in population if e.id.startswith(prefix)]
        return max((int(slot) + 1 for slot in slots if slot.isdigit()), default=0)

    def _proxy_gate(self, population: Sequence[common_pb2.Experiment]) -> Correlation | None:
        """The proxy's correlation when it may filter this cycle, else None; says which, when it changes."""
        if not self.options.proxy_filter:
            return None
        name = self.options.proxy
        found = proxy_correlations(population, self.options.budget).get(name)
        trusted = clears_bar(found)
        state = "on" if trusted else "off"
        if state != self._proxy_state:
            self._proxy_state = state
            why = (
                f"skips the bottom {self.options.proxy_filter:g} of the checked proposals"
                if trusted
                else bar()
            )
            self.display.note(f"proxy filter {state}: {name} {describe(found)}, {why}")
        return found if trusted else None

    async def _prepare_slot(
        self,
        cycle: int,
        slot: int,
        choice: selector_pb2.ParentSelection,
        by_id: dict[str, common_pb2.Experiment],
        stats: CycleStats,
    ) -> Job | None:
        """The slot's proposal, checked; None when nothing is left to do for it (the researcher failed, or
        the proposal failed its checks and was recorded FAILED without taking a training slot)."""
        experiment_id = candidate_id(self.options.run_id, cycle, slot)
        existing = by_id.get(experiment_id)
        if existing is not None and existing.status in TERMINAL:
            return Job(existing, finished=True)  # a run stopped during a confirmation finishes it
        # Resumed: the proposal was made and recorded before the stop.
        pending = existing or await self._propose(experiment_id, cycle, slot, choice, by_id, stats)
        if pending is None:
            return None
        twin = self._twin(pending, by_id)
        if twin is not None:  # the store answers: nothing to check or train
            return Job(pending, twin=twin)
        checked = await self.validate(pending)
        if checked.rejection is None:
            return Job(pending, checked=checked)
        if self.options.self_heal:  # Evaluate repairs it (and trains nothing unless a repair passes)
            self.display.note(f"{experiment_id}: {checked.rejection.failure_reason}; sent for repair")
            return Job(pending, checked=Checked(None, checked.checks, checked.proxies))
        if checked.rejection.failed_stage == common_pb2.EVALUATION_STAGE_STATIC_CHECKS:
            stats.rejected.static += 1
        else:
            stats.rejected.functional += 1
        await self._record_final(pending, checked.rejection)
        return None

    async def _filter(
        self, jobs: list[Job], gate: Correlation | None, trained: int, stats: CycleStats
    ) -> list[Job]:
        """`jobs`, less (with a trusted proxy) those to train beyond the best `trained` by the proxy:
        they are recorded FAILED, skipped."""
        waiting = [job for job in jobs if job.trains]
        if gate is None or len(waiting) <= trained:
            return jobs
        name = self.options.proxy
        ranked = sorted(waiting, key=lambda job: job.checked.proxies.get(name, -math.inf), reverse=True)
        skipped = ranked[trained:]
        for job in skipped:
            stats.rejected.proxy += 1
            await self._record_final(job.experiment, self._skipped(job, gate))
        return [job for job in jobs if not any(job is s for s in skipped)]

    def _skipped(self, job: Job, gate: Correlation) -> common_pb2.Evaluation:
        value = job.checked.proxies.get(self.options.proxy)
        shown = "missing" if value is None else f"{value:.4g}"
        evaluation = common_pb2.Evaluation(
            status=common_pb2.EVALUATION_STATUS_FAILED,
            # The proxies are measured with the functional checks: rung 0 of the evaluation.
            failed_stage=common_pb2.EVALUATION_STAGE_FUNCTIONAL_CHECKS,
            failure_reason=(
                f"skipped by proxy {self.options.proxy}: {shown} in the bottom {self.options.proxy_filter:g} "
                f"(rho={gate.rho_loss:.2f} on {gate.n} candidates)"
            ),
            checks=job.checked.checks,
            final_source=job.experiment.proposal.source,
            budget=self._budget(self.options.seed, 0),
        )
        evaluation.metrics.proxies.update(job.checked.proxies)
        return evaluation

    async def train(self, prepared: Prepared) -> None:
        """Evaluate, record and confirm what the cycle's preparation left, N Evaluate calls at once."""
        population = await self.experiments()  # as it is now: what finished while the cycle was prepared
        by_id = {e.id: e for e in population}
        # With --promote, a candidate whose first rung beats the run's best loss is trained again, longer.
        losses = [
            e.evaluation.metrics.val_loss
            for e in self._selectable(population)
            if e.evaluation.metrics.HasField("val_loss")
        ]
        promote_below = min(losses, default=None) if self.options.promote else None
        before, reused = self.engineer_seconds, self.reused
        await self._bounded([self._train(job, by_id, promote_below, prepared.stats) for job in prepared.jobs])
        prepared.stats.engineer_seconds += self.engineer_seconds - before
        prepared.stats.reused += self.reused - reused

    async def _train(
        self,
        job: Job,
        by_id: dict[str, common_pb2.Experiment],
        promote_below: float | None,
        stats: CycleStats,
    ) -> None:
        pending = job.experiment
        if job.finished:
            await self.confirm_if_due(pending, stats)
            return
        self.display.started(pending.id, f"c{pending.cycle}.{pending.id.rsplit('.', 1)[1]} {pending.name}")
        twin = job.twin or self._twin(pending, by_id)
        if twin is not None:  # the same design was measured: the store answers, nothing is trained
            self.display.note(f"{pending.id}: identical to {twin.id}; its evaluation is reused")
            evaluation = twin.evaluation
        else:
            evaluation = await self.evaluate(pending.id, pending.proposal, promote_below)
            stats.evaluated += 1
            stats.valid += int(evaluation.status == common_pb2.EVALUATION_STATUS_SUCCEEDED)
        await self.confirm_if_due(await self._record_final(pending, evaluation), stats)

    async def _record_final(
        self, pending: common_pb2.Experiment, evaluation: common_pb2.Evaluation
    ) -> common_pb2.Experiment:
        recorded = await self.record(concluded(pending, evaluation))
        self.display.finished(pending.id, recorded)
        return recorded

    async def _close(self, stats: CycleStats) -> CycleStats:
        """The cycle's stretch of time and CPU, and the best confirmed improvement so far, as it ends."""
        now, cpu = time.time(), cpu_seconds(self.options.service_pids)
        stats.started = max(stats.started, self._cycle_end or 0.0)
        stats.wall_seconds = now - stats.started
        if cpu is not None and self._cpu_mark is not None:
            stats.cpu_seconds = cpu - self._cpu_mark
        stats.best_confirmed_improvement = best_confirmed_improvement(await self.experiments())
        self._cycle_end, self._cpu_mark = now, cpu
        return stats

    def _twin(
        self, pending: common_pb2.Experiment, by_id: dict[str, common_pb2.Experiment]
    ) -> common_pb2.Experiment | None:
        """A finished experiment of the run with the same design as `pending`, if any."""
        key = design_key(pending.proposal)
        return next(
            (
                e
                for e in by_id.values()
                if e.id != pending.id and e.status in TERMINAL and design_key(e.proposal) == key
            ),
            None,
        )

    async def _propose(
        self,
        experiment_id: str,
        cycle: int,
        slot: int,
        choice: selector_pb2.ParentSelection,
        by_id: dict[str, common_pb2.Experiment],
        stats: CycleStats,
    ) -> common_pb2.Experiment | None:
        """A new proposal for the slot, recorded PENDING; asked again (another seed) while it repeats a
        design the run already has. None when the researcher fails."""
        parent = by_id[choice.parent_id]
        known = {design_key(e.proposal) for e in by_id.values()} | self._proposed
        for attempt in range(DUPLICATE_RETRIES + 1):
            request = researcher_pb2.ProposeRequest(
                parent=parent,
                references=[by_id[r] for r in choice.reference_ids if r in by_id],
                mode=proposal_mode_value(self.options.mode),
                seed=self.options.seed * 1_000_003 + cycle * 101 + slot + attempt * 7_919,
                run_id=self.options.run_id,
                experiment_id=experiment_id,
            )
            proposal = await self._ask(request)
            if proposal is None:
                return None
            stats.proposals += 1
            if design_key(proposal) not in known:
                break
            # Asked again, or (the last try) its twin's evaluation reused: never trained.
            stats.duplicates += 1
        self._proposed.add(design_key(proposal))
        return await self.record(
            common_pb2.Experiment(
                id=experiment_id,
                run_id=self.options.run_id,
                name=proposal.name,
                parent_ids=[parent.id],
                cycle=cycle,
                status=common_pb2.EXPERIMENT_STATUS_PENDING,
                proposal=proposal,
                created_at=_now(),
            )
        )

    async def _ask(self, request: researcher_pb2.ProposeRequest) -> common_pb2.Proposal | None:
        """The researcher's proposal; None (said) when it fails."""
        try:
            reply = await retrying(
                "Researcher.Propose",
                lambda: self.stubs.researcher.Propose(request, timeout=PROPOSE_TIMEOUT),
            )
        except grpc.aio.AioRpcError as exc:
            self.display.note(
                f"{request.experiment_id}: the researcher failed ({exc.code().name}: {exc.details()})"
            )
            return None
        if reply.fallback_reason and reply.fallback_reason not in self._reasons:
            self._reasons.add(reply.fallback_reason)  # said once per run, not once per proposal
            self.display.note(f"researcher: {reply.fallback_reason}")
        return reply.proposal


def design_key(proposal: common_pb2.Proposal) -> str:
    """What makes two proposals the same design: the layer's syntax tree and class. Comments,
    docstrings and formatting do not count, and a DSL spec is compared by the code it renders (two
    specs that render the same layer are the same design)."""
    source = proposal.source.module_source
    try:
        tree = parse_source(source)
    except SourceError:
        text = source.strip()
    else:
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and _is_docstring(body[0]):
                node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
        text = ast.dump(tree)
    return hashlib.sha256(f"{proposal.source.class_name or DEFAULT_CLASS_NAME}\n{text}".encode()).hexdigest()


def _is_docstring(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


class _LostStream(grpc.aio.AioRpcError):
    pass


def _lost(message: str) -> grpc.aio.AioRpcError:
    return _LostStream(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), details=message)
