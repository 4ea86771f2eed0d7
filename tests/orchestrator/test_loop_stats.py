"""What a cycle does before training and what it reports: proposals checked with Validate (a rejected one
is recorded FAILED and never evaluated), the proxy filter (off below its bar, skipping the bottom share
above it), the next cycle prepared while this one trains, and RUN_DIR/stats.json.

In-test services with the stubs' call shapes, as in test_loop_requests; the analyst derives an
experiment's status from its evaluation as the real one does.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from test_loop_requests import ChoosingSelector, QuietDisplay

from asiarch.orchestrator.loop import Discovery, Options, Stubs, candidate_id
from asiarch.orchestrator.stats import RunStats, cpu_seconds, proxy_correlations
from asiarch.v1 import analyst_pb2, common_pb2, engineer_pb2, researcher_pb2

SUCCEEDED, FAILED = common_pb2.EXPERIMENT_STATUS_SUCCEEDED, common_pb2.EXPERIMENT_STATUS_FAILED
STATIC, FUNCTIONAL = common_pb2.EVALUATION_STAGE_STATIC_CHECKS, common_pb2.EVALUATION_STAGE_FUNCTIONAL_CHECKS
DERIVED = {common_pb2.EVALUATION_STATUS_SUCCEEDED: SUCCEEDED, common_pb2.EVALUATION_STATUS_FAILED: FAILED}


class Analyst:
    """Stores what is recorded; the status is the evaluation's, as the real analyst derives it."""

    def __init__(self, stored: list[common_pb2.Experiment]) -> None:
        self.stored = {e.id: e for e in stored}

    async def Record(self, request: analyst_pb2.RecordRequest, **_: object) -> Any:
        experiment = common_pb2.Experiment()
        experiment.CopyFrom(request.experiment)
        if experiment.status == common_pb2.EXPERIMENT_STATUS_UNSPECIFIED:
            experiment.status = DERIVED[experiment.evaluation.status]
        self.stored[experiment.id] = experiment
        return analyst_pb2.RecordResponse(experiment=experiment)

    async def ListExperiments(self, request: analyst_pb2.ListExperimentsRequest, **_: object) -> Any:
        return analyst_pb2.ListExperimentsResponse(experiments=list(self.stored.values()))


class Researcher:
    """Proposes a new design per call: `class DeltaNet` with the next of `marks` in its source."""

    def __init__(self, marks: list[str]) -> None:
        self.marks, self.requests = marks, []

    async def Propose(self, request: researcher_pb2.ProposeRequest, **_: object) -> Any:
        self.requests.append(request)
        mark = self.marks[(len(self.requests) - 1) % len(self.marks)]
        source = f"class DeltaNet:\n    design = {len(self.requests)}  # {mark}\n"
        proposal = common_pb2.Proposal(name=f"p{len(self.requests)}", source={"module_source": source})
        return researcher_pb2.ProposeResponse(proposal=proposal)


class Selector(ChoosingSelector):
    async def ListStrategies(self, request: Any, **_: object) -> Any:
        from asiarch.v1 import selector_pb2

        return selector_pb2.ListStrategiesResponse(strategies=[selector_pb2.StrategyInfo(name="asi-arch")])


class Engineer:
    """Validate reads its verdict from the source's mark: STATIC and FUNCTIONAL fail those checks, SLOW
    runs out of time, `proxy=X` passes with loss_slope X. Evaluate trains anything (and counts it)."""

    def __init__(self) -> None:
        self.evaluated: list[str] = []

    async def ListBaselines(self, request: Any, **_: object) -> Any:
        return engineer_pb2.ListBaselinesResponse()  # the run's baseline is recorded already

    async def Validate(self, request: engineer_pb2.ValidateRequest, **_: object) -> Any:
        source = request.source.module_source
        for mark, stage, name in (
            ("STATIC", STATIC, "static.imports"),
            ("FUNCTIONAL", FUNCTIONAL, "functional.causal"),
            ("SLOW", FUNCTIONAL, "functional.timeout"),
        ):
            if mark in source:
                check = common_pb2.CheckResult(name=name, stage=stage, passed=False, message="no")
                return engineer_pb2.ValidateResponse(checks=[check], failure_reason=f"{name}: no")
        found = re.search(r"proxy=([-\d.]+)", source)
        proxies = {"loss_slope": float(found.group(1))} if found else {}
        passed = common_pb2.CheckResult(name="functional.proxies", stage=FUNCTIONAL, passed=True)
        return engineer_pb2.ValidateResponse(valid=True, checks=[passed], proxies=proxies)

    def Evaluate(self, request: engineer_pb2.EvaluateRequest, timeout: float) -> Any:
        self.evaluated.append(request.proposal.source.module_source)

        async def stream() -> Any:
            metrics = common_pb2.Metrics(val_loss=2.0)
            result = common_pb2.Evaluation(status=common_pb2.EVALUATION_STATUS_SUCCEEDED, metrics=metrics)
            yield engineer_pb2.EvaluationEvent(result=result)

        return stream()


class Notes(QuietDisplay):
    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)


def measured(
    id: str, val_loss: float, proxy: float | None, *, budget: int = common_pb2.BUDGET_PRESET_SMOKE
) -> Any:
    """A succeeded experiment of run r trained at rung 1, with loss_slope `proxy` (None: not measured)."""
    e = common_pb2.Experiment(id=f"r.{id}", run_id="r", name=id, status=SUCCEEDED)
    e.proposal.source.module_source = f"class DeltaNet:\n    name = {id!r}\n"
    e.evaluation.budget.preset, e.evaluation.budget.rung = budget, 1  # type: ignore[assignment]
    e.evaluation.metrics.val_loss = val_loss
    if proxy is not None:
        e.evaluation.metrics.proxies["loss_slope"] = proxy
    return e


BASELINE = measured("base.deltanet", 2.5, None)


def discovery(
    marks: list[str], history: list[Any] | None = None, **options: Any
) -> tuple[Discovery, Analyst, Engineer, Researcher, Notes]:
    analyst, engineer, researcher, notes = (
        Analyst([BASELINE, *(history or [])]),
        Engineer(),
        Researcher(marks),
        Notes(),
    )
    stubs = Stubs(Selector(BASELINE.id), researcher, [engineer], analyst)
    loop = Discovery(Options(run_id="r", budget="smoke", confirm_seeds=0, **options), stubs, notes)
    return loop, analyst, engineer, researcher, notes


def below_the_bar() -> list[Any]:
    """12 measured candidates on which loss_slope ranks perfectly: too few to trust."""
    return [measured(f"h{i}", 2.0 - i / 100, proxy=i / 10) for i in range(12)]


async def test_proposals_failing_their_checks_are_recorded_failed_and_never_trained() -> None:
    # --parallel 4 with enough parents for four slots (as many as there are selectable experiments).
    loop, analyst, engineer, _, _ = discovery(
        ["STATIC", "FUNCTIONAL", "SLOW", "proxy=1"], below_the_bar(), parallel=4, self_heal=False
    )
    stats = await loop.run_cycle(1)
    slots = [analyst.stored[candidate_id("r", 1, slot)] for slot in range(4)]
    assert [e.status for e in slots] == [FAILED, FAILED, SUCCEEDED, SUCCEEDED]
    static, functional = slots[0].evaluation, slots[1].evaluation
    # The record an Evaluate that failed the same check makes: the stage, the engineer's reason, the checks.
    assert (static.failed_stage, static.failure_reason) == (STATIC, "static.imports: no")
    assert (functional.failed_stage, functional.failure_reason) == (FUNCTIONAL, "functional.causal: no")
    assert [c.name for c in static.checks] == ["static.imports"]
    assert static.final_source.module_source == slots[0].proposal.source.module_source
    # Only the two that passed, and the one whose check ran out of time (no verdict), were trained.
    assert len(engineer.evaluated) == 2 and all(
        "STATIC" not in s and "FUNCTIONAL" not in s for s in engineer.evaluated
    )
    assert (stats.proposals, stats.evaluated, stats.valid) == (4, 2, 2)
    assert (stats.rejected.static, stats.rejected.functional, stats.rejected.proxy) == (1, 1, 0)


async def test_by_default_a_proposal_failing_its_checks_goes_to_the_engineers_self_healing() -> None:
    loop, _, engineer, _, notes = discovery(["FUNCTIONAL", "proxy=1"], below_the_bar(), parallel=2)
    stats = await loop.run_cycle(1)
    assert any("FUNCTIONAL" in source for source in engineer.evaluated) and len(engineer.evaluated) == 2
    assert (stats.rejected.static, stats.rejected.functional, stats.evaluated) == (0, 0, 2)
    assert any(n.endswith("functional.causal: no; sent for repair") for n in notes.notes)


async def test_below_its_bar_the_proxy_filter_records_and_filters_nothing_and_says_why_once() -> None:
    loop, _, engineer, researcher, notes = discovery(
        ["proxy=0.1", "proxy=0.9"], below_the_bar(), parallel=2, proxy_filter=0.5
    )
    first, second = await loop.run_cycle(1), await loop.run_cycle(2)
    assert len(researcher.requests) == 4  # two per cycle, as without the filter
    assert len(engineer.evaluated) == 4 and first.rejected.proxy == second.rejected.proxy == 0
    off = [n for n in notes.notes if n.startswith("proxy filter")]
    assert off == ["proxy filter off: loss_slope rho 1.00 on 12 candidates, needs >= 0.5 on >= 30"]


def above_the_bar() -> list[Any]:
    """40 measured candidates, higher loss_slope with lower loss (rho 1), and some noise that must not count:
    another budget's, a replicate, a failed one."""
    history = [measured(f"h{i}", 2.0 - i / 100, proxy=i / 10) for i in range(40)]
    other = measured("gpu", 9.0, proxy=9.0, budget=common_pb2.BUDGET_PRESET_GPU)
    replicate = measured("rep", 9.0, proxy=9.0)
    replicate.replicate_of = "r.h0"
    failed = measured("failed", 9.0, proxy=9.0)
    failed.status = FAILED
    return [*history, other, replicate, failed]


async def test_above_its_bar_the_proxy_filter_trains_the_top_and_records_the_rest_as_skipped() -> None:
    marks = ["proxy=0.3", "proxy=0.9", "proxy=0.1", "proxy=0.7", "STATIC"]
    loop, analyst, engineer, researcher, notes = discovery(
        marks, above_the_bar(), parallel=2, proxy_filter=0.6, self_heal=False
    )
    stats = await loop.run_cycle(1)
    # 2 / (1 - 0.6) = 5 proposals checked for 2 training slots; the two best by loss_slope train.
    assert len(researcher.requests) == 5
    assert sorted(source.split("# ")[1] for source in engineer.evaluated) == ["proxy=0.7\n", "proxy=0.9\n"]
    skipped = [analyst.stored[candidate_id("r", 1, slot)] for slot in (0, 2)]
    assert [e.status for e in skipped] == [FAILED, FAILED]
    assert skipped[0].evaluation.failure_reason == (
        "skipped by proxy loss_slope: 0.3 in the bottom 0.6 (rho=1.00 on 40 candidates)"
    )
    assert skipped[1].evaluation.metrics.proxies["loss_slope"] == pytest.approx(0.1)
    assert (stats.rejected.proxy, stats.rejected.static, stats.evaluated) == (2, 1, 2)
    assert [n for n in notes.notes if n.startswith("proxy filter")] == [
        "proxy filter on: loss_slope rho 1.00 on 40 candidates, skips the bottom 0.6 of the checked proposals"
    ]


def test_proxy_correlations_are_signed_so_that_pointing_the_right_way_is_positive() -> None:
    history = above_the_bar()
    history[0].evaluation.metrics.benchmarks.add(name="mqar/a", task="mqar", score=0.1)
    history[1].evaluation.metrics.benchmarks.add(name="mqar/a", task="mqar", score=0.2)
    history[2].evaluation.metrics.benchmarks.add(name="mqar/a", task="mqar", score=0.3)
    found = proxy_correlations(history, "smoke")
    assert found["loss_slope"] == (pytest.approx(1.0), pytest.approx(1.0), 40)
    reversed_ = [measured(f"h{i}", 2.0 + i / 100, proxy=i / 10) for i in range(5)]  # higher proxy, worse
    assert proxy_correlations(reversed_, "smoke")["loss_slope"].rho_loss == pytest.approx(-1.0)
    assert proxy_correlations(history, "cpu") == {}  # another budget's candidates are not comparable
    assert proxy_correlations(history[:2], "smoke")["loss_slope"] == (None, None, 2)  # too few to rank


async def test_the_next_cycle_is_proposed_and_checked_while_this_one_trains() -> None:
    loop, _, engineer, researcher, _ = discovery(["proxy=1"], cycles=2)
    trained, next_checked = asyncio.Event(), asyncio.Event()
    evaluate, validate = engineer.Evaluate, engineer.Validate

    def held_evaluate(request: engineer_pb2.EvaluateRequest, timeout: float) -> Any:
        async def stream() -> Any:
            if request.experiment_id == candidate_id("r", 1, 0):  # cycle 1 trains until cycle 2 is checked
                await asyncio.wait_for(next_checked.wait(), timeout=30)
            async for event in evaluate(request, timeout):
                yield event
            trained.set()

        return stream()

    async def watched_validate(request: engineer_pb2.ValidateRequest, **kw: object) -> Any:
        if "design = 2" in request.source.module_source:  # cycle 2's proposal
            assert not trained.is_set()
            next_checked.set()
        return await validate(request, **kw)

    engineer.Evaluate, engineer.Validate = held_evaluate, watched_validate  # type: ignore[method-assign]
    assert await loop.run() == 2
    assert [r.experiment_id for r in researcher.requests] == [candidate_id("r", c, 0) for c in (1, 2)]
    assert len(engineer.evaluated) == 2


async def test_stats_json_holds_a_line_per_cycle_and_a_resumed_run_appends_to_it(tmp_path: Path) -> None:
    loop, analyst, *_ = discovery(
        ["proxy=1", "STATIC"], below_the_bar(), cycles=2, parallel=2, run_dir=tmp_path, self_heal=False
    )
    assert await loop.run() == 2
    data = json.loads((tmp_path / "stats.json").read_text())
    assert {k: data[k] for k in ("version", "run_id", "strategy", "budget", "parallel")} == {
        "version": 1,
        "run_id": "r",
        "strategy": "asi-arch",
        "budget": "smoke",
        "parallel": 2,
    }
    first = data["cycles"][0]
    assert list(first) == [
        "cycle", "started", "wall_seconds", "engineer_seconds", "proposals", "duplicates", "rejected",
        "evaluated", "valid", "confirmations", "confirmed", "best_confirmed_improvement", "cpu_seconds",
        "reused",
    ]  # fmt: skip
    assert [c["cycle"] for c in data["cycles"]] == [1, 2]
    assert first["rejected"] == {"static": 1, "functional": 0, "proxy": 0}
    assert (first["proposals"], first["evaluated"], first["valid"], first["duplicates"]) == (2, 1, 1, 0)
    assert first["best_confirmed_improvement"] is None and first["cpu_seconds"] is None  # no local services
    assert (
        first["wall_seconds"] > 0
        and first["started"] + first["wall_seconds"] <= data["cycles"][1]["started"] + 1e-6
    )
    # A confirmed design of the run: the best improvement so far from then on.
    confirmed = next(e for e in analyst.stored.values() if e.status == SUCCEEDED and e.cycle == 2)
    confirmed.confirmation.confirmed, confirmed.confirmation.improvement_mean = True, 0.02

    resumed = Discovery(
        Options(run_id="r", budget="smoke", confirm_seeds=0, cycles=3, parallel=2, run_dir=tmp_path),
        loop.stubs,
        QuietDisplay(),
    )
    assert await resumed.run() == 1
    cycles = RunStats.load(tmp_path, "r", "asi-arch", "smoke", 2).cycles
    assert [c.cycle for c in cycles] == [1, 2, 3]
    assert cycles[2].best_confirmed_improvement == pytest.approx(0.02)


def test_cpu_seconds_of_running_processes_and_none_for_a_gone_one() -> None:
    before = cpu_seconds([os.getpid()])
    sum(i * i for i in range(3_000_000))
    after = cpu_seconds([os.getpid()])
    assert before is not None and after is not None and after > before
    assert cpu_seconds([]) is None
    assert cpu_seconds([os.getpid(), 2**22 + 1]) is None  # above pid_max's default: no such process


def test_a_resumed_run_starts_at_the_first_unfinished_cycle_even_with_the_next_one_prepared() -> None:
    loop, *_ = discovery([])
    training = common_pb2.Experiment(
        id=candidate_id("r", 1, 0), cycle=1, status=common_pb2.EXPERIMENT_STATUS_PENDING
    )
    ahead = common_pb2.Experiment(
        id=candidate_id("r", 2, 0), cycle=2, status=common_pb2.EXPERIMENT_STATUS_PENDING
    )
    assert loop.first_cycle([BASELINE, training, ahead]) == 1
    training.status = SUCCEEDED
    assert loop.first_cycle([BASELINE, training, ahead]) == 2
