"""What the loop asks the engineer for: baselines are never repaired, candidates may be.

The loop is a gRPC client; here its engineer and analyst are in-test objects with the stubs'
call shapes, so the requests it sends can be read exactly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from asiarch.orchestrator.loop import Discovery, Options, Stubs
from asiarch.v1 import analyst_pb2, common_pb2, engineer_pb2, selector_pb2


class RecordingEngineer:
    def __init__(self) -> None:
        self.requests: list[engineer_pb2.EvaluateRequest] = []
        self.checked: list[engineer_pb2.ValidateRequest] = []

    async def Validate(self, request: engineer_pb2.ValidateRequest, **_: object) -> Any:
        self.checked.append(request)
        return engineer_pb2.ValidateResponse(valid=True)

    def Evaluate(self, request: engineer_pb2.EvaluateRequest, timeout: float) -> AsyncIterator[Any]:
        self.requests.append(request)

        async def stream() -> AsyncIterator[engineer_pb2.EvaluationEvent]:
            yield engineer_pb2.EvaluationEvent(
                result=common_pb2.Evaluation(status=common_pb2.EVALUATION_STATUS_SUCCEEDED)
            )

        return stream()


class StoringAnalyst:
    async def Record(self, request: analyst_pb2.RecordRequest, **_: object) -> analyst_pb2.RecordResponse:
        return analyst_pb2.RecordResponse(experiment=request.experiment)


class QuietDisplay:
    def note(self, message: str) -> None: ...
    def started(self, key: str, label: str) -> None: ...
    def progress(self, key: str, event: object) -> None: ...
    def finished(self, key: str, experiment: common_pb2.Experiment) -> None: ...


async def test_baselines_are_evaluated_without_repairs_and_candidates_with_the_engineers_default() -> None:
    engineer = RecordingEngineer()
    loop = Discovery(
        Options(run_id="r", budget="smoke"),
        Stubs(selector=None, researcher=None, engineers=[engineer], analyst=StoringAnalyst()),
        QuietDisplay(),
    )
    proposal = common_pb2.Proposal(name="deltanet", generator="baseline")
    await loop._baseline(proposal)
    await loop.evaluate("r.c0001.0", common_pb2.Proposal(name="child"), None)
    baseline, candidate = engineer.requests
    assert baseline.HasField("max_repairs") and baseline.max_repairs == 0
    assert not candidate.HasField("max_repairs")  # the engineer's ASIARCH_ENGINEER_MAX_REPAIRS decides


class ConfirmingAnalyst(StoringAnalyst):
    """Stores what is recorded, answers GetExperiment from it, and records Confirm calls."""

    def __init__(self, stored: list[common_pb2.Experiment]) -> None:
        self.stored = {e.id: e for e in stored}
        self.confirms: list[analyst_pb2.ConfirmRequest] = []

    async def Record(self, request: analyst_pb2.RecordRequest, **_: object) -> analyst_pb2.RecordResponse:
        experiment = common_pb2.Experiment()
        experiment.CopyFrom(request.experiment)
        experiment.status = common_pb2.EXPERIMENT_STATUS_SUCCEEDED
        self.stored[experiment.id] = experiment
        return analyst_pb2.RecordResponse(experiment=experiment)

    async def ListExperiments(self, request: analyst_pb2.ListExperimentsRequest, **_: object) -> Any:
        return analyst_pb2.ListExperimentsResponse(experiments=list(self.stored.values()))

    async def GetExperiment(self, request: analyst_pb2.GetExperimentRequest, **_: object) -> Any:
        if request.id not in self.stored:
            raise grpc.aio.AioRpcError(grpc.StatusCode.NOT_FOUND, grpc.aio.Metadata(), grpc.aio.Metadata())
        return self.stored[request.id]

    async def Confirm(self, request: analyst_pb2.ConfirmRequest, **_: object) -> analyst_pb2.ConfirmResponse:
        self.confirms.append(request)
        confirmed = common_pb2.Experiment()
        confirmed.CopyFrom(self.stored[request.experiment_id])
        confirmed.confirmation.against_id = request.against_id
        confirmed.confirmation.verdict = "confirmed: test"
        return analyst_pb2.ConfirmResponse(experiment=confirmed)


async def test_a_promising_candidate_is_confirmed_on_paired_seeds_and_stored_replicates_are_reused() -> None:
    baseline = common_pb2.Experiment(
        id="r.base.deltanet", run_id="r", name="deltanet", is_baseline=True, proposal=common_pb2.Proposal()
    )
    baseline.proposal.source.module_source = "class DeltaNet: ..."
    candidate = common_pb2.Experiment(id="r.c0001.0", run_id="r", name="child", cycle=1)
    candidate.proposal.source.module_source = "BROKEN"
    candidate.evaluation.final_source.module_source = "REPAIRED"  # what was evaluated
    candidate.analysis.promising = True
    candidate.analysis.rival_id = baseline.id
    # A baseline replicate from an earlier confirmation: the store answers, nothing is trained again.
    earlier = common_pb2.Experiment(
        id="r.base.deltanet.s11.r2",
        run_id="r",
        status=common_pb2.EXPERIMENT_STATUS_SUCCEEDED,
        replicate_of=baseline.id,
    )
    analyst = ConfirmingAnalyst([baseline, candidate, earlier])
    engineer = RecordingEngineer()
    loop = Discovery(
        Options(run_id="r", budget="smoke", seed=10, confirm_seeds=2),
        Stubs(selector=None, researcher=None, engineers=[engineer], analyst=analyst),
        QuietDisplay(),
    )
    confirmed = await loop.confirm_if_due(candidate)
    assert confirmed.confirmation.against_id == baseline.id
    trained = {(r.experiment_id, r.budget.seed, r.budget.rung, r.max_repairs) for r in engineer.requests}
    assert trained == {
        ("r.base.deltanet.s12.r2", 12, 2, 0),
        ("r.c0001.0.s11.r2", 11, 2, 0),
        ("r.c0001.0.s12.r2", 12, 2, 0),
    }
    assert all(r.HasField("max_repairs") for r in engineer.requests)  # a replicate is never repaired
    sources = {r.experiment_id: r.proposal.source.module_source for r in engineer.requests}
    assert sources["r.c0001.0.s11.r2"] == "REPAIRED"
    replicas = [analyst.stored[i] for i in ("r.c0001.0.s11.r2", "r.c0001.0.s12.r2", "r.base.deltanet.s12.r2")]
    assert [r.replicate_of for r in replicas] == [candidate.id, candidate.id, baseline.id]
    assert replicas[2].is_baseline and not replicas[0].is_baseline
    assert [(c.experiment_id, c.against_id, c.rung) for c in analyst.confirms] == [
        (candidate.id, baseline.id, 2)
    ]

    # Confirmed once: not again (a resumed run passes the recorded experiment here too).
    engineer.requests.clear()
    assert (await loop.confirm_if_due(confirmed)) is confirmed and not engineer.requests
    # Nothing is due for a design that did not lead, or with --confirm-seeds 0.
    candidate.analysis.promising = False
    assert (await loop.confirm_if_due(candidate)) is candidate and not engineer.requests


class RepeatingResearcher:
    """Proposes the given sources in turn (the last one forever)."""

    def __init__(self, sources: list[str]) -> None:
        self.sources, self.seeds = sources, []

    async def Propose(self, request: Any, **_: object) -> Any:
        from asiarch.v1 import researcher_pb2

        self.seeds.append(request.seed)
        source = self.sources[min(len(self.seeds), len(self.sources)) - 1]
        return researcher_pb2.ProposeResponse(
            proposal=common_pb2.Proposal(
                name=f"p{len(self.seeds)}", source=common_pb2.ArchitectureSource(module_source=source)
            )
        )


class ChoosingSelector:
    """Chooses the given parent for every slot."""

    def __init__(self, parent_id: str) -> None:
        self.parent_id = parent_id

    async def SelectParents(self, request: selector_pb2.SelectParentsRequest, **_: object) -> Any:
        choice = selector_pb2.ParentSelection(parent_id=self.parent_id)
        return selector_pb2.SelectParentsResponse(selections=[choice] * request.k)


PARENT_SOURCE = '"""DeltaNet."""\nclass DeltaNet:\n    width = 1\n'


async def run_slot(sources: list[str]) -> tuple[RepeatingResearcher, RecordingEngineer, ConfirmingAnalyst]:
    parent = common_pb2.Experiment(
        id="r.base.deltanet",
        run_id="r",
        name="deltanet",
        is_baseline=True,
        status=common_pb2.EXPERIMENT_STATUS_SUCCEEDED,
        proposal=common_pb2.Proposal(source=common_pb2.ArchitectureSource(module_source=PARENT_SOURCE)),
        evaluation=common_pb2.Evaluation(status=common_pb2.EVALUATION_STATUS_SUCCEEDED, device="measured"),
    )
    researcher, engineer, analyst = (
        RepeatingResearcher(sources),
        RecordingEngineer(),
        ConfirmingAnalyst([parent]),
    )
    loop = Discovery(
        Options(run_id="r", budget="smoke", confirm_seeds=0),
        Stubs(
            selector=ChoosingSelector(parent.id), researcher=researcher, engineers=[engineer], analyst=analyst
        ),
        QuietDisplay(),
    )
    await loop.run_cycle(1)
    return researcher, engineer, analyst


async def test_a_proposal_that_repeats_a_measured_design_is_asked_for_again() -> None:
    # Only a comment and the docstring differ from the parent: the same design.
    same = '"""Same, reworded."""\nclass DeltaNet:\n    width = 1  # unchanged\n'
    researcher, engineer, analyst = await run_slot([same, "class DeltaNet:\n    width = 2\n"])
    assert len(researcher.seeds) == 2 and researcher.seeds[0] != researcher.seeds[1]
    assert [r.proposal.source.module_source for r in engineer.requests] == [
        "class DeltaNet:\n    width = 2\n"
    ]
    assert analyst.stored["r.c0001.0"].name == "p2"


async def test_a_design_proposed_again_and_again_reuses_the_stored_evaluation() -> None:
    researcher, engineer, analyst = await run_slot([PARENT_SOURCE])
    assert len(researcher.seeds) == 4  # the first answer and three more tries
    assert not engineer.requests  # nothing is trained twice: the store answers
    assert analyst.stored["r.c0001.0"].evaluation.device == "measured"


def _trained(run_id: str, seed: int, source: str, *, ok: bool = True) -> common_pb2.Experiment:
    """A baseline of run `run_id` trained at smoke, rung 1, `seed`, on `source`."""
    experiment = common_pb2.Experiment(
        id=f"{run_id}.base.deltanet",
        run_id=run_id,
        name="deltanet",
        is_baseline=True,
        status=common_pb2.EXPERIMENT_STATUS_SUCCEEDED if ok else common_pb2.EXPERIMENT_STATUS_FAILED,
    )
    experiment.proposal.source.module_source = source
    experiment.proposal.source.class_name = "DeltaNet"
    evaluation = experiment.evaluation
    evaluation.status = common_pb2.EVALUATION_STATUS_SUCCEEDED if ok else common_pb2.EVALUATION_STATUS_FAILED
    evaluation.budget.preset, evaluation.budget.seed, evaluation.budget.rung = (
        common_pb2.BUDGET_PRESET_SMOKE,
        seed,
        1,
    )
    evaluation.metrics.val_loss = 2.5
    return experiment


async def test_a_baseline_trained_identically_in_another_run_is_copied_and_says_so() -> None:
    engineer = RecordingEngineer()
    analyst = ConfirmingAnalyst([_trained("a", 0, "class DeltaNet: ...")])
    loop = Discovery(
        Options(run_id="b", budget="smoke", reuse_from=("a",)),
        Stubs(selector=None, researcher=None, engineers=[engineer], analyst=analyst),
        QuietDisplay(),
    )
    proposal = common_pb2.Proposal(name="deltanet", generator="baseline")
    proposal.source.module_source, proposal.source.class_name = "class DeltaNet: ...", "DeltaNet"
    await loop._baseline(proposal)
    assert not engineer.requests
    copied = analyst.stored["b.base.deltanet"]
    assert copied.evaluation.reused_from == "a.base.deltanet"
    assert copied.evaluation.metrics.val_loss == 2.5
    assert loop.reused == 1


async def test_a_twin_that_trained_anything_else_is_not_copied() -> None:
    proposal = common_pb2.Proposal(name="deltanet", generator="baseline")
    proposal.source.module_source, proposal.source.class_name = "class DeltaNet: ...", "DeltaNet"
    for donor, seed in [
        (_trained("a", 0, "class DeltaNet: pass"), 0),  # another source
        (_trained("a", 0, "class DeltaNet: ..."), 1),  # another seed
        (_trained("a", 0, "class DeltaNet: ...", ok=False), 0),  # it failed
    ]:
        engineer = RecordingEngineer()
        loop = Discovery(
            Options(run_id="b", budget="smoke", seed=seed, reuse_from=("a",)),
            Stubs(selector=None, researcher=None, engineers=[engineer], analyst=ConfirmingAnalyst([donor])),
            QuietDisplay(),
        )
        await loop._baseline(proposal)
        assert len(engineer.requests) == 1 and loop.reused == 0


async def test_with_confirm_rung_one_the_replicates_repeat_the_exploratory_training_on_new_seeds() -> None:
    baseline = common_pb2.Experiment(id="r.base.deltanet", run_id="r", name="deltanet", is_baseline=True)
    candidate = common_pb2.Experiment(id="r.c0001.0", run_id="r", name="child", cycle=1)
    candidate.analysis.promising, candidate.analysis.rival_id = True, baseline.id
    analyst, engineer = ConfirmingAnalyst([baseline, candidate]), RecordingEngineer()
    loop = Discovery(
        Options(run_id="r", budget="smoke", seed=0, confirm_seeds=2, confirm_rung=1),
        Stubs(selector=None, researcher=None, engineers=[engineer], analyst=analyst),
        QuietDisplay(),
    )
    await loop.confirm_if_due(candidate)
    assert sorted((r.experiment_id, r.budget.seed, r.budget.rung) for r in engineer.requests) == [
        ("r.base.deltanet.s1.r1", 1, 1),
        ("r.base.deltanet.s2.r1", 2, 1),
        ("r.c0001.0.s1.r1", 1, 1),
        ("r.c0001.0.s2.r1", 2, 1),
    ]
    assert [(c.experiment_id, c.rung) for c in analyst.confirms] == [(candidate.id, 1)]
