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
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import grpc
import structlog

from asiarch.common.cli import precision_value, proposal_mode_value
from asiarch.common.contract import DEFAULT_CLASS_NAME, budget_presets
from asiarch.common.source import SourceError, parse_source
from asiarch.orchestrator.config import DEFAULT_BUDGET, DEFAULT_CONFIRM_SEEDS
from asiarch.orchestrator.retry import retrying
from asiarch.v1 import analyst_pb2, common_pb2, engineer_pb2, researcher_pb2, selector_pb2

log = structlog.get_logger("asiarch.discover")

TERMINAL = {common_pb2.EXPERIMENT_STATUS_SUCCEEDED, common_pb2.EXPERIMENT_STATUS_FAILED}
RECORD_TIMEOUT = 900.0  # an LLM judge and analysis on a slow server
PROPOSE_TIMEOUT = 900.0
EVALUATE_TIMEOUT = 6 * 3600.0
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


CONFIRMATION_RUNG = 2  # replicates train at the rung after the exploratory one


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
        engineer = self._engineer()

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
        final = common_pb2.Experiment()
        final.CopyFrom(experiment)
        final.status = common_pb2.EXPERIMENT_STATUS_UNSPECIFIED  # the analyst derives it from the evaluation
        final.evaluation.CopyFrom(evaluation)
        self.display.finished(experiment.id, await self.record(final))

    async def _bounded(self, jobs: Sequence[Awaitable[None]]) -> None:
        gate = asyncio.Semaphore(self.options.parallel)

        async def run(job: Awaitable[None]) -> None:
            async with gate:
                await job

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
            f"{count} paired seeds at rung {CONFIRMATION_RUNG}"
        )
        await self._bounded(
            [
                self._replicate(original, seed)
                for seed in self.confirmation_seeds(count)
                for original in (against, experiment)
            ]
        )
        request = analyst_pb2.ConfirmRequest(
            experiment_id=experiment.id, against_id=against.id, rung=CONFIRMATION_RUNG
        )
        reply = await retrying(
            "Analyst.Confirm", lambda: self.stubs.analyst.Confirm(request, timeout=RECORD_TIMEOUT)
        )
        self.display.note(f"{experiment.name}: {reply.experiment.confirmation.verdict}")
        return reply.experiment

    async def _replicate(self, original: common_pb2.Experiment, seed: int) -> None:
        """One replicate, trained unless the store already holds it."""
        experiment_id = replicate_id(original.id, seed, CONFIRMATION_RUNG)
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
            experiment_id, proposal, None, repairable=False, seed=seed, rung=CONFIRMATION_RUNG
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

    async def confirm_if_due(self, experiment: common_pb2.Experiment) -> common_pb2.Experiment:
        due = (
            self.options.confirm_seeds > 0
            and experiment.analysis.promising
            and not experiment.confirmation.against_id
        )
        return await self.confirm(experiment) if due else experiment

    # --- cycles ---

    def first_cycle(self, stored: Sequence[common_pb2.Experiment]) -> int:
        """1 for a new run; on resume, the first cycle with unfinished or missing work."""
        cycles = [e.cycle for e in stored if e.cycle > 0]  # cycle 0: baselines and imported seeds
        if not cycles:
            return 1
        last = max(cycles)
        unfinished = any(e.cycle == last and e.status not in TERMINAL for e in stored)
        complete = sum(1 for e in stored if e.cycle == last and not e.is_baseline) >= self.options.parallel
        return last if unfinished or not complete else last + 1

    def out_of_time(self) -> bool:
        budget = self.options.time_budget_minutes
        return budget is not None and time.monotonic() - self.started >= budget * 60

    async def run(self) -> int:
        """Seed (or resume) the run and run cycles until the plan or the time budget is used; cycles run."""
        # An unknown strategy should fail now, not after the baselines have been trained.
        strategies = await retrying(
            "Selector.ListStrategies",
            lambda: self.stubs.selector.ListStrategies(selector_pb2.ListStrategiesRequest(), timeout=60),
        )
        names = sorted(info.name for info in strategies.strategies)
        if self.options.strategy not in names:
            raise ValueError(
                f"unknown strategy {self.options.strategy!r}; the selector offers {', '.join(names)}"
            )
        stored = {e.id: e for e in await self.experiments()}
        await self.seed_baselines(stored)
        await self.evaluate_seeds(stored)
        cycle = self.first_cycle(list(stored.values()))
        done = 0
        while (self.options.cycles is None or cycle <= self.options.cycles) and not self.out_of_time():
            await self.run_cycle(cycle)
            done += 1
            if self.on_cycle is not None:
                await self.on_cycle(cycle, await self.proposed())
            cycle += 1
        return done

    async def run_cycle(self, cycle: int) -> None:
        population = await self.experiments()
        by_id = {e.id: e for e in population}
        succeeded = [e for e in population if e.status == common_pb2.EXPERIMENT_STATUS_SUCCEEDED]
        # With an imported pool the search starts from it; the baselines stay the yardstick.
        pool = any(is_seed(e) for e in succeeded)

        def reference_only(e: common_pb2.Experiment) -> bool:
            return e.proposal.reference_only or (pool and e.is_baseline)

        selectable = [e for e in succeeded if not reference_only(e)]
        candidates = {e.id for e in succeeded}
        if not selectable:
            raise RuntimeError(
                "no successfully evaluated, selectable experiment to build on (see the engineer log)"
            )
        slots = min(self.options.parallel, len(selectable))
        request = selector_pb2.SelectParentsRequest(
            strategy=self.options.strategy,
            k=slots,
            seed=self.options.seed * 1_000_003 + cycle,
            candidates=[
                selector_pb2.Candidate(
                    id=e.id,
                    name=e.name,
                    # A parent that failed (an imported seed's) is not a candidate: the lineage stops there.
                    parent_id=e.parent_ids[0] if e.parent_ids and e.parent_ids[0] in candidates else "",
                    fitness=e.fitness.total,
                    metrics=e.evaluation.metrics,
                    reference_only=reference_only(e),
                )
                for e in succeeded
            ],
        )
        selection = await retrying(
            "Selector.SelectParents", lambda: self.stubs.selector.SelectParents(request, timeout=60)
        )
        # With --promote, a candidate whose first rung beats the run's best loss is trained again, longer.
        losses = [
            e.evaluation.metrics.val_loss for e in selectable if e.evaluation.metrics.HasField("val_loss")
        ]
        promote_below = min(losses, default=None) if self.options.promote else None
        self.display.note(
            f"cycle {cycle}: parents "
            + ", ".join(by_id[s.parent_id].name for s in selection.selections if s.parent_id in by_id)
        )
        jobs = [
            self._slot(cycle, slot, choice, by_id, promote_below)
            for slot, choice in enumerate(selection.selections[:slots])
        ]
        await self._bounded(jobs)

    async def _slot(
        self,
        cycle: int,
        slot: int,
        choice: selector_pb2.ParentSelection,
        by_id: dict[str, common_pb2.Experiment],
        promote_below: float | None,
    ) -> None:
        experiment_id = candidate_id(self.options.run_id, cycle, slot)
        existing = by_id.get(experiment_id)
        if existing is not None and existing.status in TERMINAL:
            await self.confirm_if_due(existing)  # a run stopped during a confirmation finishes it
            return
        # Resumed: the proposal was made and recorded before the stop.
        pending = existing or await self._propose(experiment_id, cycle, slot, choice, by_id)
        if pending is None:
            return
        self.display.started(experiment_id, f"c{cycle}.{slot} {pending.name}")
        twin = self._twin(pending, by_id)
        if twin is not None:  # the same design was measured: the store answers, nothing is trained
            self.display.note(f"{experiment_id}: identical to {twin.id}; its evaluation is reused")
            evaluation = twin.evaluation
        else:
            evaluation = await self.evaluate(experiment_id, pending.proposal, promote_below)
        final = common_pb2.Experiment()
        final.CopyFrom(pending)
        final.status = common_pb2.EXPERIMENT_STATUS_UNSPECIFIED  # the analyst derives it from the evaluation
        final.evaluation.CopyFrom(evaluation)
        recorded = await self.record(final)
        self.display.finished(experiment_id, recorded)
        await self.confirm_if_due(recorded)

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
            try:
                reply = await retrying(
                    "Researcher.Propose",
                    lambda request=request: self.stubs.researcher.Propose(request, timeout=PROPOSE_TIMEOUT),
                )
            except grpc.aio.AioRpcError as exc:
                self.display.note(
                    f"{experiment_id}: the researcher failed ({exc.code().name}: {exc.details()})"
                )
                return None
            if reply.fallback_reason and reply.fallback_reason not in self._reasons:
                self._reasons.add(reply.fallback_reason)  # said once per run, not once per proposal
                self.display.note(f"researcher: {reply.fallback_reason}")
            if design_key(reply.proposal) not in known:
                break
        self._proposed.add(design_key(reply.proposal))
        return await self.record(
            common_pb2.Experiment(
                id=experiment_id,
                run_id=self.options.run_id,
                name=reply.proposal.name,
                parent_ids=[parent.id],
                cycle=cycle,
                status=common_pb2.EXPERIMENT_STATUS_PENDING,
                proposal=reply.proposal,
                created_at=_now(),
            )
        )


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
