"""Record: store an experiment with its novelty, fitness and analysis, exactly once.

Idempotent on the experiment id. A PENDING or RUNNING record may be advanced
to a later status (the orchestrator mints ids before evaluating); a record
that reached SUCCEEDED or FAILED is final, and recording it again returns the
stored copy. Vectors are upserted on every call, so a retry after a vector
store failure heals the index without duplicating anything.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pydantic
import structlog

from asiarch.analyst import comparisons, confirmation, fitness, prompts, reports
from asiarch.analyst.config import AnalystSettings
from asiarch.analyst.repository import TERMINAL, ExperimentRepository
from asiarch.analyst.vectors import ANALYSES, MOTIVATIONS, Point, VectorIndex
from asiarch.common.errors import FailedPrecondition, InvalidArgument, NotFound
from asiarch.common.llm import LLM, Message, NoLLM, generate_model
from asiarch.v1 import common_pb2

log = structlog.get_logger("asiarch.analyst.record")

_ORDER = {
    common_pb2.EXPERIMENT_STATUS_PENDING: 0,
    common_pb2.EXPERIMENT_STATUS_RUNNING: 1,
    common_pb2.EXPERIMENT_STATUS_SUCCEEDED: 2,
    common_pb2.EXPERIMENT_STATUS_FAILED: 2,
}
_FROM_EVALUATION = {
    common_pb2.EVALUATION_STATUS_SUCCEEDED: common_pb2.EXPERIMENT_STATUS_SUCCEEDED,
    common_pb2.EVALUATION_STATUS_FAILED: common_pb2.EXPERIMENT_STATUS_FAILED,
    common_pb2.EVALUATION_STATUS_TIMED_OUT: common_pb2.EXPERIMENT_STATUS_FAILED,
    common_pb2.EVALUATION_STATUS_CANCELLED: common_pb2.EXPERIMENT_STATUS_FAILED,
}
MAX_SIBLINGS = 5
SOURCE_CHARS = 6000


class AnalysisAnswer(pydantic.BaseModel):
    """What the LLM analyst must return: ASI-Arch's five parts."""

    design_evaluation: str = pydantic.Field(min_length=20, max_length=3000)
    results_analysis: str = pydantic.Field(min_length=20, max_length=3000)
    expectation_vs_reality: str = pydantic.Field(min_length=20, max_length=3000)
    theoretical_explanation: str = pydantic.Field(min_length=20, max_length=3000)
    synthesis: str = pydantic.Field(min_length=20, max_length=3000)


def effective_status(experiment: common_pb2.Experiment) -> int:
    """The status given, or the one the evaluation implies when none was."""
    if experiment.status != common_pb2.EXPERIMENT_STATUS_UNSPECIFIED:
        return experiment.status
    return _FROM_EVALUATION.get(experiment.evaluation.status, common_pb2.EXPERIMENT_STATUS_PENDING)


def analysis_text(experiment: common_pb2.Experiment) -> str:
    a = experiment.analysis
    return "\n".join(p for p in (a.synthesis, a.results_analysis, a.theoretical_explanation) if p)


class Recorder:
    def __init__(
        self,
        settings: AnalystSettings,
        repository: ExperimentRepository,
        vectors: VectorIndex,
        llm: LLM,
        llm_label: str,
    ) -> None:
        self.settings, self.repository, self.vectors = settings, repository, vectors
        self.llm, self.llm_label = llm, llm_label
        # One record at a time: novelty and best-so-far must see every earlier record.
        self._lock = asyncio.Lock()

    async def record(self, incoming: common_pb2.Experiment) -> tuple[common_pb2.Experiment, bool]:
        async with self._lock:
            return await self._record(incoming)

    async def _record(self, incoming: common_pb2.Experiment) -> tuple[common_pb2.Experiment, bool]:
        experiment = common_pb2.Experiment()
        experiment.CopyFrom(incoming)
        experiment.status = effective_status(incoming)
        experiment.ClearField("fitness")
        experiment.ClearField("analysis")
        experiment.name = experiment.name or experiment.proposal.name

        stored = await self.repository.get(experiment.id)
        if stored is not None:
            if stored.run_id != experiment.run_id:
                raise InvalidArgument(
                    f"experiment.id {experiment.id!r} is already recorded in run {stored.run_id!r}"
                )
            if stored.status in TERMINAL or _ORDER[experiment.status] <= _ORDER[stored.status]:
                await self._index(stored)
                return stored, False
            experiment.created_at.CopyFrom(stored.created_at)
        missing = set(experiment.parent_ids) - await self.repository.existing_ids(list(experiment.parent_ids))
        if missing:
            first = next(i for i, p in enumerate(experiment.parent_ids) if p in missing)
            raise InvalidArgument(
                f"experiment.parent_ids[{first}] {experiment.parent_ids[first]!r} is not recorded; "
                "record parents before their children"
            )

        now = datetime.now(UTC)
        if not experiment.HasField("created_at"):
            experiment.created_at.FromDatetime(now)
        experiment.updated_at.FromDatetime(now)
        if experiment.status in TERMINAL:
            await self._score(experiment)

        if stored is None:
            created = await self.repository.insert(experiment)
            if not created:  # lost a race with another analyst replica: theirs stands
                winner = await self.repository.get(experiment.id)
                return (winner or experiment), False
        else:
            await self.repository.replace(experiment)
            created = False
        if experiment.is_baseline and not experiment.replicate_of and experiment.status in TERMINAL:
            await self.rescore(experiment.run_id)
            experiment = await self.repository.get(experiment.id) or experiment
        await self._index(experiment)
        log.info(
            "experiment recorded",
            experiment_id=experiment.id,
            status=common_pb2.ExperimentStatus.Name(experiment.status),
            fitness=round(experiment.fitness.total, 4),
            created=created,
            judged_by=experiment.fitness.judge.judged_by,
            written_by=experiment.analysis.written_by,
        )
        return experiment, created

    async def _index(self, experiment: common_pb2.Experiment) -> None:
        if experiment.replicate_of:
            return  # a repeat of an indexed experiment: indexing it again would only echo its motivation
        payload = {"experiment_id": experiment.id, "run_id": experiment.run_id, "name": experiment.name}
        motivation = experiment.proposal.motivation.strip()
        if motivation:
            await self.vectors.upsert(MOTIVATIONS, [Point(experiment.id, motivation, payload)])
        if text := analysis_text(experiment):
            await self.vectors.upsert(ANALYSES, [Point(experiment.id, text, payload)])

    async def novelty(self, motivation: str, run_id: str, exclude_id: str) -> float:
        if not motivation.strip():
            return 0.0
        [vector] = await self.vectors.embedder.encode([motivation])
        hits = await self.vectors.search(
            MOTIVATIONS, vector, 1, equals={"run_id": run_id}, exclude={"experiment_id": exclude_id}
        )
        return max(0.0, min(1.0, 1.0 - hits[0].score)) if hits else 1.0

    async def relatives(self, experiment: common_pb2.Experiment) -> comparisons.Relatives:
        repository = self.repository
        parent = await repository.get(experiment.parent_ids[0]) if experiment.parent_ids else None
        grandparent = await repository.get(parent.parent_ids[0]) if parent and parent.parent_ids else None
        siblings = []
        if parent is not None:
            siblings = [
                s
                for s in await repository.children([parent.id])
                if s.id != experiment.id and s.status == common_pb2.EXPERIMENT_STATUS_SUCCEEDED
            ][-MAX_SIBLINGS:]
        baselines = [b for b in await repository.baselines(experiment.run_id) if b.id != experiment.id]
        best = await repository.best(experiment.run_id, experiment.id)
        return comparisons.Relatives(parent, grandparent, siblings, baselines, best)

    async def _score(self, experiment: common_pb2.Experiment) -> None:
        replicate = bool(experiment.replicate_of)
        novelty = (
            0.0  # a replicate repeats a recorded motivation: it is not a new idea
            if replicate
            else await self.novelty(experiment.proposal.motivation, experiment.run_id, experiment.id)
        )
        if experiment.status == common_pb2.EXPERIMENT_STATUS_FAILED:
            experiment.fitness.CopyFrom(common_pb2.Fitness(novelty=novelty))
            experiment.analysis.CopyFrom(reports.failure_analysis(experiment))
            return
        relatives = await self.relatives(experiment)
        # Baselines are scored by the same formula as candidates, against the same reference.
        candidates = list(relatives.baselines) + (
            [experiment] if experiment.is_baseline and not replicate else []
        )
        reference = fitness.choose_baseline(candidates, self.settings.analyst_fitness_baseline)
        parts = fitness.measured_parts(experiment, reference)
        table = comparisons.comparisons(experiment, relatives)
        fallback_judge = fitness.deterministic_judge(
            parts.loss,
            parts.benchmark,
            novelty,
            fitness.layer_parameters(experiment.evaluation.metrics),
            fitness.layer_parameters(reference.evaluation.metrics) if reference else None,
        )
        if experiment.is_baseline or replicate:
            # References and repeats are measured, not reviewed: the LLM's time goes to new candidates.
            judge, analysis = fallback_judge, reports.deterministic_analysis(experiment, table)
        else:
            judge, analysis = await self._write(experiment, table, reference, novelty, fallback_judge)
        experiment.fitness.CopyFrom(fitness.compose(parts, judge, novelty, reference))
        analysis.comparisons.extend(table)
        analysis.breakthrough = False  # only a confirmed result is a breakthrough (Confirm sets it)
        analysis.breakthrough_reason = comparisons.exploratory_verdict(experiment, relatives)
        if (rival := fitness.strongest_baseline(relatives.baselines)) is not None:
            analysis.rival_id = rival.id
            original = not experiment.is_baseline and not experiment.replicate_of
            analysis.promising = original and comparisons.leads(experiment, rival)
        experiment.analysis.CopyFrom(analysis)

    async def confirm(self, experiment_id: str, against_id: str, rung: int) -> common_pb2.Experiment:
        """Pair the recorded replicates of both by seed, test them, store the verdict on the experiment."""
        async with self._lock:
            experiment = await self.repository.get(experiment_id)
            against = await self.repository.get(against_id)
            for name, found, wanted in (
                ("experiment_id", experiment, experiment_id),
                ("against_id", against, against_id),
            ):
                if found is None:
                    raise NotFound(f"{name}: no experiment with id {wanted!r}")
            assert experiment is not None and against is not None
            if experiment.status != common_pb2.EXPERIMENT_STATUS_SUCCEEDED or experiment.replicate_of:
                raise FailedPrecondition(
                    f"experiment {experiment_id!r} is not a succeeded original experiment: nothing to confirm"
                )
            if against.run_id != experiment.run_id or not against.is_baseline:
                raise InvalidArgument(
                    f"against_id {against_id!r} is not a baseline of run {experiment.run_id!r}"
                )
            matched = confirmation.pairs(
                await self.repository.replicates(experiment.id),
                await self.repository.replicates(against.id),
                rung,
            )
            experiment.confirmation.CopyFrom(
                confirmation.confirm(matched, against, rung, experiment.fitness.benchmark_noise_sd)
            )
            experiment.analysis.breakthrough = experiment.confirmation.confirmed
            experiment.analysis.breakthrough_reason = experiment.confirmation.verdict
            experiment.updated_at.FromDatetime(datetime.now(UTC))
            await self.repository.replace(experiment)
            log.info(
                "experiment confirmation",
                experiment_id=experiment.id,
                against=against.id,
                pairs=len(matched),
                confirmed=experiment.confirmation.confirmed,
                p_value=round(experiment.confirmation.p_value, 4),
            )
            return experiment

    async def rescore(self, run_id: str) -> int:
        """Score every result of the run against the current reference; how many changed.

        A baseline recorded after others (or a reference that changed) would otherwise leave earlier
        records scored against something else, or against themselves.
        """
        reference = fitness.choose_baseline(
            await self.repository.baselines(run_id), self.settings.analyst_fitness_baseline
        )
        if reference is None:
            return 0
        changed = 0
        for experiment in await self.repository.run_results(run_id):
            old = experiment.fitness
            if old.baseline_id == reference.id and old.baseline_loss == reference.evaluation.metrics.val_loss:
                continue
            experiment.fitness.CopyFrom(fitness.rescored(experiment, reference))
            await self.repository.replace(experiment)
            changed += 1
        if changed:
            log.info("run rescored", run_id=run_id, reference=reference.id, rescored=changed)
        return changed

    async def _write(
        self,
        experiment: common_pb2.Experiment,
        table: list[common_pb2.Comparison],
        baseline: common_pb2.Experiment | None,
        novelty: float,
        fallback_judge: common_pb2.JudgeScores,
    ) -> tuple[common_pb2.JudgeScores, common_pb2.Analysis]:
        """The LLM's judge scores and analysis, each falling back to the deterministic one."""
        deterministic = reports.deterministic_analysis(experiment, table)
        # Baselines are references, not designs under review: the LLM's time goes to candidates.
        if isinstance(self.llm, NoLLM) or experiment.is_baseline:
            return fallback_judge, deterministic
        limit = self.settings.analyst_llm_timeout_seconds
        try:
            async with asyncio.timeout(limit):
                judge = await self._llm_judge(experiment, table, baseline, novelty)
                analysis = await self._llm_analysis(experiment, table)
        except TimeoutError:
            reason = f"the LLM took longer than {limit:g} s"
            judge = analysis = None
        except Exception as exc:  # LLMError or a broken client: the record must still be written
            log.warning("LLM judge/analysis failed", error=f"{type(exc).__name__}: {exc}"[:300])
            reason = f"the LLM failed ({type(exc).__name__})"
            judge = analysis = None
        else:
            reason = "the LLM gave no valid answer"
        if judge is None:
            judge = fallback_judge
            judge.judged_by = f"{fitness.DETERMINISTIC_JUDGE} (fallback: {reason})"
        if analysis is None:
            analysis = deterministic
            analysis.written_by = f"{reports.WRITTEN_BY} (fallback: {reason})"
        return judge, analysis

    async def _llm_judge(
        self,
        experiment: common_pb2.Experiment,
        table: list[common_pb2.Comparison],
        baseline: common_pb2.Experiment | None,
        novelty: float,
    ) -> common_pb2.JudgeScores | None:
        baseline_rows = [c for c in table if c.experiment_id == (baseline.id if baseline else "")]
        prompt = prompts.load("judge").format(
            baseline_name=baseline.name if baseline else "none recorded",
            novelty=novelty,
            name=experiment.name,
            motivation=experiment.proposal.motivation or "(none)",
            results=reports.table_text(baseline_rows or table[:1]),
            source=experiment.proposal.source.module_source[:SOURCE_CHARS],
        )
        answer = await generate_model(
            self.llm,
            [Message("system", "You review research code. Answer with JSON only."), Message("user", prompt)],
            fitness.JudgeAnswer,
            attempts=self.settings.analyst_llm_attempts,
            max_tokens=300,
        )
        if answer is None:
            return None
        return common_pb2.JudgeScores(
            performance=answer.performance,
            innovation=answer.innovation,
            complexity=answer.complexity,
            rationale=answer.rationale,
            judged_by=self.llm_label,
        )

    async def _llm_analysis(
        self, experiment: common_pb2.Experiment, table: list[common_pb2.Comparison]
    ) -> common_pb2.Analysis | None:
        prompt = prompts.load("analysis").format(
            name=experiment.name,
            motivation=experiment.proposal.motivation or "(none)",
            table=reports.table_text(table),
            source=experiment.proposal.source.module_source[:SOURCE_CHARS],
        )
        answer = await generate_model(
            self.llm,
            [
                Message("system", "You analyse ML experiments. Answer with JSON only."),
                Message("user", prompt),
            ],
            AnalysisAnswer,
            attempts=self.settings.analyst_llm_attempts,
            max_tokens=900,
        )
        if answer is None:
            return None
        return common_pb2.Analysis(**answer.model_dump(), written_by=self.llm_label)
