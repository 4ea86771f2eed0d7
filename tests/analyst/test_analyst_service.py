"""The analyst over real gRPC: a real process, the embedded store, Qdrant local mode, real embeddings."""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from analyst_data import experiment
from support import RunningService, health_status, start_service

from asiarch.common.contract import EXPERIMENT_ID
from asiarch.v1 import analyst_pb2, analyst_pb2_grpc, common_pb2

SUCCEEDED = common_pb2.EXPERIMENT_STATUS_SUCCEEDED


@pytest.fixture(scope="module")
def analyst(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    workdir = tmp_path_factory.mktemp("analyst")
    # The cognition base has its own module (test_analyst_cognition); skipping its ingestion here saves
    # the embedding of ~230 facets at start.
    env = {"ASIARCH_RUN_DIR": str(workdir / "run"), "ASIARCH_ANALYST_INGEST_BUILTIN": "false"}
    service = start_service("analyst", workdir, env=env, timeout=120)
    yield service
    assert service.stop() == 0


@pytest.fixture(scope="module")
def stub(analyst: RunningService) -> analyst_pb2_grpc.AnalystStub:
    return analyst_pb2_grpc.AnalystStub(analyst.channel())


def record(stub: analyst_pb2_grpc.AnalystStub, e: common_pb2.Experiment) -> analyst_pb2.RecordResponse:
    return stub.Record(analyst_pb2.RecordRequest(experiment=e), timeout=60)


@pytest.fixture(scope="module")
def family(stub: analyst_pb2_grpc.AnalystStub) -> dict[str, common_pb2.Experiment]:
    """Three baselines, two children of deltanet, one grandchild; recorded once for the module."""
    run = "family"
    recorded = {}
    for e in [
        experiment("deltanet", baseline=True, loss=2.2, recall=(0.10, 0.05), run_id=run),
        experiment("linear-attention", baseline=True, loss=2.6, recall=(0.05, 0.02), run_id=run),
        experiment("softmax", baseline=True, loss=1.5, recall=(0.9, 0.8), run_id=run, reference_only=True),
        experiment(
            "c1",
            parent="deltanet",
            loss=2.0,
            recall=(0.30, 0.20),
            run_id=run,
            motivation="Add a data-dependent forget gate so the state can decay stale associations.",
        ),
        experiment(
            "c2",
            parent="deltanet",
            loss=2.4,
            recall=(0.08, 0.04),
            run_id=run,
            motivation="Remove the short convolution to save parameters and increase throughput.",
        ),
        experiment(
            "g1",
            parent="c1",
            loss=1.9,
            recall=(0.35, 0.25),
            run_id=run,
            motivation="Normalise keys with L2 norm so the delta rule update stays stable.",
        ),
    ]:
        reply = record(stub, e)
        assert reply.created
        recorded[e.id] = reply.experiment
    return recorded


def test_record_fills_in_fitness_against_the_runs_baseline(family: dict[str, common_pb2.Experiment]) -> None:
    c1 = family["c1"]
    f = c1.fitness
    assert f.baseline_id == "deltanet" and f.baseline_loss == pytest.approx(2.2)
    # These records name no budget preset, so the noise is the assumed one (1 % of L_ref, 0.02) and says so.
    assert f.noise_floor.startswith("assumed:")
    assert f.loss_noise_sd == pytest.approx(0.022) and f.benchmark_noise_sd == pytest.approx(0.02)
    assert f.loss_score == pytest.approx((2.2 - 2.0) / (2 * 0.022))
    assert f.benchmark_score == pytest.approx((0.25 - 0.075) / (2 * 0.02))
    assert f.total == pytest.approx(f.loss_score + f.benchmark_score + f.judge_score)
    assert f.judge.judged_by.startswith("deterministic:") and 1 <= f.judge.performance <= 10
    assert 0 < f.novelty <= 1
    # The reference scores 0 + 0 + judge; the baselines are scored by the same formula, so their
    # fitness follows their measurements (no neutral tie).
    deltanet, linear = family["deltanet"].fitness, family["linear-attention"].fitness
    assert deltanet.loss_score == 0 and deltanet.benchmark_score == 0
    assert deltanet.judge.judged_by.startswith("deterministic:")
    assert linear.loss_score < 0 and linear.total < deltanet.total
    assert family["c2"].fitness.loss_score < 0 < c1.fitness.loss_score


def test_record_writes_the_five_part_analysis_with_a_quasi_ablation(
    family: dict[str, common_pb2.Experiment],
) -> None:
    g1 = family["g1"].analysis
    for part in ("design_evaluation", "results_analysis", "expectation_vs_reality"):
        assert getattr(g1, part).strip()
    assert g1.theoretical_explanation.strip() and g1.synthesis.strip()
    assert g1.written_by == "deterministic"
    relations = {(c.experiment_id, c.relation) for c in g1.comparisons}
    assert ("c1", common_pb2.RELATION_PARENT) in relations
    assert ("deltanet", common_pb2.RELATION_GRANDPARENT) in relations
    assert ("linear-attention", common_pb2.RELATION_BASELINE) in relations
    parent = next(c for c in g1.comparisons if c.relation == common_pb2.RELATION_PARENT)
    loss = next(d for d in parent.deltas if d.metric == "val_loss")
    assert loss.value == pytest.approx(1.9) and loss.other_value == pytest.approx(2.0) and loss.improved
    assert "val_loss 1.9 vs 2" in g1.results_analysis
    c2 = family["c2"].analysis
    assert ("c1", common_pb2.RELATION_SIBLING) in {(c.experiment_id, c.relation) for c in c2.comparisons}
    assert "Revert" in c2.synthesis


def test_an_exploratory_lead_is_promising_but_never_a_breakthrough(
    family: dict[str, common_pb2.Experiment],
) -> None:
    g1, c2 = family["g1"].analysis, family["c2"].analysis
    assert not any(e.analysis.breakthrough for e in family.values())  # only Confirm makes one
    assert g1.promising and g1.rival_id == "deltanet"  # the strongest selectable baseline, not softmax
    assert (
        g1.breakthrough_reason.startswith("not confirmed yet") and "asiarch confirm" in g1.breakthrough_reason
    )
    assert not c2.promising and "no lead beyond the noise" in c2.breakthrough_reason
    assert not family["deltanet"].analysis.promising


def test_a_reference_recorded_late_rescores_the_run(stub: analyst_pb2_grpc.AnalystStub) -> None:
    run = "late-reference"
    linear = experiment("late-linear", baseline=True, loss=2.6, run_id=run)
    linear.name = linear.proposal.name = "linear-attention"
    first = record(stub, linear).experiment
    assert first.fitness.baseline_id == "late-linear" and first.fitness.loss_score == 0  # only itself yet
    child = record(stub, experiment("late-child", parent="late-linear", loss=2.0, run_id=run)).experiment
    assert child.fitness.baseline_id == "late-linear"
    deltanet = experiment("late-deltanet", baseline=True, loss=2.2, run_id=run)
    deltanet.name = deltanet.proposal.name = "deltanet"
    record(stub, deltanet)
    get = stub.GetExperiment
    child = get(analyst_pb2.GetExperimentRequest(id="late-child"), timeout=10)
    linear_now = get(analyst_pb2.GetExperimentRequest(id="late-linear"), timeout=10)
    assert child.fitness.baseline_id == "late-deltanet" and child.fitness.baseline_loss == pytest.approx(2.2)
    assert child.fitness.loss_score == pytest.approx(0.2 / (2 * 0.022))
    assert linear_now.fitness.baseline_id == "late-deltanet" and linear_now.fitness.loss_score < 0


def replicate(
    original: str, seed: int, loss: float, run: str, baseline: bool = False
) -> common_pb2.Experiment:
    e = experiment(f"{original}.s{seed}.r2", loss=loss, run_id=run, baseline=baseline)
    e.replicate_of = original
    e.evaluation.budget.seed = seed
    e.evaluation.budget.rung = 2
    return e


def test_replicates_are_stored_apart_and_confirm_tests_the_pairs(stub: analyst_pb2_grpc.AnalystStub) -> None:
    run = "confirmation"
    record(stub, experiment("conf-base", baseline=True, loss=2.2, run_id=run))
    record(stub, experiment("winner", parent="conf-base", loss=2.0, run_id=run, motivation="A real gain."))
    record(stub, experiment("lucky", parent="conf-base", loss=2.1, run_id=run, motivation="A lucky seed."))
    for seed, base, win, luck in ((1, 2.20, 2.00, 2.25), (2, 2.21, 2.02, 2.12), (3, 2.19, 1.99, 2.21)):
        record(stub, replicate("conf-base", seed, base, run, baseline=True))
        stored = record(stub, replicate("winner", seed, win, run)).experiment
        assert not stored.analysis.promising and stored.fitness.novelty == 0
        record(stub, replicate("lucky", seed, luck, run))
    listed = stub.ListExperiments(analyst_pb2.ListExperimentsRequest(run_id=run), timeout=10)
    assert listed.total == 3  # the search's own experiments; replicates only when asked for
    everything = stub.ListExperiments(
        analyst_pb2.ListExperimentsRequest(run_id=run, include_replicates=True), timeout=10
    )
    assert everything.total == 12

    confirmed = stub.Confirm(
        analyst_pb2.ConfirmRequest(experiment_id="winner", against_id="conf-base"), timeout=30
    ).experiment
    c = confirmed.confirmation
    assert c.confirmed and confirmed.analysis.breakthrough
    assert [p.seed for p in c.pairs] == [1, 2, 3] and c.rung == 2
    assert c.improvement_mean == pytest.approx(0.1967, abs=1e-3) and c.improvement_lower_95 > 0
    assert c.p_value < 0.05 and c.verdict.startswith("confirmed:")
    assert c.val_loss_sd > 0 and c.against_val_loss_mean == pytest.approx(2.2)
    stored = stub.GetExperiment(analyst_pb2.GetExperimentRequest(id="winner"), timeout=10)
    assert stored.confirmation == c

    lucky = stub.Confirm(
        analyst_pb2.ConfirmRequest(experiment_id="lucky", against_id="conf-base"), timeout=30
    ).experiment
    assert not lucky.confirmation.confirmed and not lucky.analysis.breakthrough
    assert (
        lucky.confirmation.p_value >= 0.05 and "within the seed-to-seed noise" in lucky.confirmation.verdict
    )


def test_confirm_refuses_what_it_cannot_test(stub: analyst_pb2_grpc.AnalystStub) -> None:
    run = "confirm-errors"
    record(stub, experiment("ce-base", baseline=True, loss=2.2, run_id=run))
    record(stub, experiment("ce-child", parent="ce-base", loss=2.0, run_id=run))
    cases = [
        (analyst_pb2.ConfirmRequest(against_id="ce-base"), grpc.StatusCode.INVALID_ARGUMENT, "experiment_id"),
        (
            analyst_pb2.ConfirmRequest(experiment_id="nope", against_id="ce-base"),
            grpc.StatusCode.NOT_FOUND,
            "nope",
        ),
        (
            analyst_pb2.ConfirmRequest(experiment_id="ce-child", against_id="ce-child"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "against_id",
        ),
        (
            analyst_pb2.ConfirmRequest(experiment_id="ce-child", against_id="ce-base", rung=3),
            grpc.StatusCode.INVALID_ARGUMENT,
            "rung",
        ),
    ]
    for request, code, named in cases:
        with pytest.raises(grpc.RpcError) as caught:
            stub.Confirm(request, timeout=30)
        assert caught.value.code() == code and named in caught.value.details()
    # No replicates recorded: a verdict, not an error, and nothing is called confirmed.
    none = stub.Confirm(
        analyst_pb2.ConfirmRequest(experiment_id="ce-child", against_id="ce-base"), timeout=30
    )
    assert not none.experiment.confirmation.confirmed
    assert "0 seed(s)" in none.experiment.confirmation.verdict


def test_get_list_and_lineage(
    stub: analyst_pb2_grpc.AnalystStub, family: dict[str, common_pb2.Experiment]
) -> None:
    assert stub.GetExperiment(analyst_pb2.GetExperimentRequest(id="g1"), timeout=10) == family["g1"]

    board = stub.ListExperiments(analyst_pb2.ListExperimentsRequest(run_id="family", page_size=3), timeout=10)
    assert board.total == 6 and board.next_page_token
    totals = [e.fitness.total for e in board.experiments]
    assert totals == sorted(totals, reverse=True)
    rest = stub.ListExperiments(
        analyst_pb2.ListExperimentsRequest(run_id="family", page_size=3, page_token=board.next_page_token),
        timeout=10,
    )
    assert not rest.next_page_token
    assert {e.id for e in board.experiments} | {e.id for e in rest.experiments} == set(family)

    lineage = stub.Lineage(analyst_pb2.LineageRequest(id="c1"), timeout=10)
    assert [(n.id, n.generation) for n in lineage.ancestors] == [("deltanet", -1)]
    assert [(n.id, n.generation) for n in lineage.descendants] == [("g1", 1)]
    assert lineage.node.fitness == pytest.approx(family["c1"].fitness.total)
    tree = stub.Lineage(analyst_pb2.LineageRequest(id="deltanet"), timeout=10)
    assert [(n.id, n.generation) for n in tree.descendants] == [("c1", 1), ("c2", 1), ("g1", 2)]
    shallow = stub.Lineage(analyst_pb2.LineageRequest(id="deltanet", max_depth=1), timeout=10)
    assert [n.id for n in shallow.descendants] == ["c1", "c2"]


def test_recording_twice_never_duplicates(stub: analyst_pb2_grpc.AnalystStub) -> None:
    run = "idempotent"
    first = record(stub, experiment("base", baseline=True, run_id=run, motivation="The delta rule."))
    child = experiment("x", parent="base", loss=1.8, run_id=run, motivation="Gate the state with a decay.")
    created = record(stub, child)
    again = record(stub, child)
    assert first.created and created.created and not again.created
    assert again.experiment == created.experiment
    listed = stub.ListExperiments(analyst_pb2.ListExperimentsRequest(run_id=run), timeout=10)
    assert listed.total == 2
    similar = stub.FindSimilar(
        analyst_pb2.FindSimilarRequest(motivation="Gate the state with a decay.", run_id=run, k=10),
        timeout=10,
    )
    assert [m.experiment_id for m in similar.matches].count("x") == 1  # one point, however often recorded
    assert similar.matches[0].experiment_id == "x" and similar.matches[0].similarity > 0.99
    assert similar.novelty < 0.01


def test_a_pending_record_is_advanced_once_and_then_final(stub: analyst_pb2_grpc.AnalystStub) -> None:
    run = "lifecycle"
    record(stub, experiment("life-base", baseline=True, run_id=run))
    pending = experiment("p", parent="life-base", run_id=run, status=common_pb2.EXPERIMENT_STATUS_PENDING)
    pending.ClearField("evaluation")
    reply = record(stub, pending)
    assert reply.created and reply.experiment.status == common_pb2.EXPERIMENT_STATUS_PENDING
    assert not reply.experiment.HasField("fitness")

    done = experiment("p", parent="life-base", loss=1.7, run_id=run)
    done.status = common_pb2.EXPERIMENT_STATUS_UNSPECIFIED  # derived from the evaluation
    advanced = record(stub, done)
    assert not advanced.created and advanced.experiment.status == SUCCEEDED
    assert advanced.experiment.fitness.total > 0
    assert advanced.experiment.created_at == reply.experiment.created_at

    stale = record(stub, pending)
    assert not stale.created and stale.experiment == advanced.experiment


def test_a_failed_experiment_is_kept_with_a_failure_analysis(stub: analyst_pb2_grpc.AnalystStub) -> None:
    run = "failures"
    record(stub, experiment("fail-base", baseline=True, run_id=run))
    failed = record(
        stub,
        experiment(
            "bad", parent="fail-base", loss=None, run_id=run, status=common_pb2.EXPERIMENT_STATUS_FAILED
        ),
    ).experiment
    assert failed.status == common_pb2.EXPERIMENT_STATUS_FAILED
    assert failed.fitness.total == 0
    assert "static_checks" in failed.analysis.design_evaluation
    assert "import of 'os'" in failed.analysis.results_analysis


def test_novelty_falls_for_a_repeated_idea(stub: analyst_pb2_grpc.AnalystStub) -> None:
    run = "novelty"
    base = experiment(
        "novel-base", baseline=True, run_id=run, motivation="Delta rule with a short convolution."
    )
    record(stub, base)
    idea = "Replace the sigmoid write strength with a learned per-head temperature."
    first = record(stub, experiment("n1", parent="novel-base", run_id=run, motivation=idea)).experiment
    copy = record(stub, experiment("n2", parent="novel-base", run_id=run, motivation=idea)).experiment
    assert first.fitness.novelty > 0.3
    assert copy.fitness.novelty < 0.01
    assert copy.fitness.judge.innovation < first.fitness.judge.innovation


def test_retrieve_searches_analyses_and_motivations_of_a_run(
    stub: analyst_pb2_grpc.AnalystStub, family: dict[str, common_pb2.Experiment]
) -> None:
    reply = stub.Retrieve(
        analyst_pb2.RetrieveRequest(
            query="forget gate that decays stale associations",
            collections=[analyst_pb2.COLLECTION_MOTIVATIONS],
            run_id="family",
            k=2,
        ),
        timeout=30,
    )
    assert (
        reply.hits[0].experiment_id == "c1" and reply.hits[0].collection == analyst_pb2.COLLECTION_MOTIVATIONS
    )
    analyses = stub.Retrieve(
        analyst_pb2.RetrieveRequest(
            query="revert this change", collections=[analyst_pb2.COLLECTION_ANALYSES], run_id="family", k=10
        ),
        timeout=30,
    )
    assert {h.experiment_id for h in analyses.hits} <= set(family)
    assert all(h.collection == analyst_pb2.COLLECTION_ANALYSES for h in analyses.hits)
    strict = stub.Retrieve(
        analyst_pb2.RetrieveRequest(query="forget gate", run_id="family", min_score=0.99), timeout=30
    )
    assert all(h.score >= 0.99 for h in strict.hits)


def invalid(call: object, request: object) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)  # type: ignore[operator]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    return caught.value.details()


def _nan_loss() -> common_pb2.Experiment:
    e = experiment("nan", run_id="bad")
    e.evaluation.metrics.val_loss = math.nan
    return e


def _inf_curve() -> common_pb2.Experiment:
    e = experiment("inf", run_id="bad")
    e.evaluation.metrics.loss_curve.add(step=1, train_loss=math.inf)
    return e


def _huge() -> common_pb2.Experiment:
    e = experiment("huge", run_id="bad")
    e.proposal.source.module_source = "#" * (3 * 1024 * 1024)
    return e


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: None, "experiment is required"),
        (lambda: experiment("", run_id="bad"), "experiment.id is required"),
        (lambda: experiment("has space", run_id="bad"), "experiment.id 'has space' must be"),
        (lambda: experiment("ok", run_id=""), "experiment.run_id is required"),
        (lambda: common_pb2.Experiment(id="np", run_id="bad", name="np"), "experiment.proposal is required"),
        (_nan_loss, "experiment.evaluation.metrics.val_loss is NaN or infinite"),
        (_inf_curve, "experiment.evaluation.metrics.loss_curve[0].train_loss is NaN or infinite"),
        (lambda: experiment("neg", loss=-1.0, run_id="bad"), "val_loss must be >= 0"),
        (lambda: experiment("acc", recall=(1.5,), run_id="bad"), "benchmarks[0].score must lie in [0, 1]"),
        (lambda: experiment("orphan", parent="ghost", run_id="bad"), "parent_ids[0] 'ghost' is not recorded"),
        (lambda: experiment("self", parent="self", run_id="bad"), "parent_ids[0] is the experiment itself"),
        (lambda: experiment("noloss", loss=None, run_id="bad"), "SUCCEEDED experiment needs"),
        (_huge, "KiB; the limit is 2048 KiB"),
    ],
)
def test_record_rejects_bad_experiments(
    stub: analyst_pb2_grpc.AnalystStub, build: object, message: str
) -> None:
    e = build()  # type: ignore[operator]
    request = analyst_pb2.RecordRequest() if e is None else analyst_pb2.RecordRequest(experiment=e)
    assert message in invalid(stub.Record, request)
    if e is not None and EXPERIMENT_ID.fullmatch(e.id):
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetExperiment(analyst_pb2.GetExperimentRequest(id=e.id), timeout=10)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # nothing half-written


def test_an_id_cannot_move_to_another_run(stub: analyst_pb2_grpc.AnalystStub) -> None:
    record(stub, experiment("mover", baseline=True, run_id="run-one"))
    assert "already recorded in run 'run-one'" in invalid(
        stub.Record,
        analyst_pb2.RecordRequest(experiment=experiment("mover", baseline=True, run_id="run-two")),
    )


@pytest.mark.parametrize(
    ("rpc", "request_", "message"),
    [
        (
            "ListExperiments",
            analyst_pb2.ListExperimentsRequest(page_size=5000),
            "page_size must be at most 1000",
        ),
        ("ListExperiments", analyst_pb2.ListExperimentsRequest(page_token="nonsense"), "page_token"),
        ("ListExperiments", analyst_pb2.ListExperimentsRequest(statuses=[9]), "statuses[0] 9"),
        ("GetExperiment", analyst_pb2.GetExperimentRequest(), "id is required"),
        ("Lineage", analyst_pb2.LineageRequest(id="a b"), "must be 1-128 characters"),
        ("Retrieve", analyst_pb2.RetrieveRequest(query="  "), "query must not be empty"),
        (
            "Retrieve",
            analyst_pb2.RetrieveRequest(query="q", collections=[0]),
            "COLLECTION_UNSPECIFIED is not",
        ),
        ("Retrieve", analyst_pb2.RetrieveRequest(query="q", collections=[7]), "collections[0] 7 is not"),
        ("Retrieve", analyst_pb2.RetrieveRequest(query="q", k=500), "k must be at most 100"),
        ("Retrieve", analyst_pb2.RetrieveRequest(query="q", min_score=2), "min_score must lie in [-1, 1]"),
        ("FindSimilar", analyst_pb2.FindSimilarRequest(), "motivation must not be empty"),
        ("IngestCognition", analyst_pb2.IngestCognitionRequest(), "nothing to ingest"),
        (
            "IngestCognition",
            analyst_pb2.IngestCognitionRequest(entries=[analyst_pb2.CognitionEntry(id="Bad Id", title="t")]),
            "entries[0].id must be",
        ),
        (
            "IngestCognition",
            analyst_pb2.IngestCognitionRequest(
                entries=[analyst_pb2.CognitionEntry(id="x", title="t", design_insight="d")]
            ),
            "entries[0].trigger_patterns needs",
        ),
    ],
)
def test_bad_requests_are_invalid_argument(
    stub: analyst_pb2_grpc.AnalystStub, rpc: str, request_: object, message: str
) -> None:
    assert message in invalid(getattr(stub, rpc), request_)


def test_unknown_ids_are_not_found(stub: analyst_pb2_grpc.AnalystStub) -> None:
    for call, request in [
        (stub.GetExperiment, analyst_pb2.GetExperimentRequest(id="nobody")),
        (stub.Lineage, analyst_pb2.LineageRequest(id="nobody")),
    ]:
        with pytest.raises(grpc.RpcError) as caught:
            call(request, timeout=10)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert "no experiment with id 'nobody'" in caught.value.details()


def test_the_service_survives_bad_input(analyst: RunningService) -> None:
    assert health_status(analyst.address) == 1  # SERVING
    assert analyst.process.poll() is None


def test_without_preloading_reads_need_no_model_and_the_first_vector_call_loads_it(tmp_path: Path) -> None:
    """ASIARCH_ANALYST_PRELOAD_VECTORS=false (what the results commands' reader uses): listing and
    getting experiments leave the model and Qdrant alone; Record and FindSimilar load them on demand."""
    env = {
        "ASIARCH_RUN_DIR": str(tmp_path / "run"),
        "ASIARCH_ANALYST_INGEST_BUILTIN": "false",
        "ASIARCH_ANALYST_PRELOAD_VECTORS": "false",
    }
    service = start_service("analyst", tmp_path, env=env, timeout=60)
    try:
        stub = analyst_pb2_grpc.AnalystStub(service.channel())
        listed = stub.ListExperiments(analyst_pb2.ListExperimentsRequest(run_id="lazy"), timeout=10)
        assert listed.total == 0
        assert not any(r.get("event") == "embedding model loaded" for r in service.log_records())
        record(stub, experiment("lazy-base", baseline=True, run_id="lazy", motivation="The delta rule."))
        similar = stub.FindSimilar(
            analyst_pb2.FindSimilarRequest(motivation="the delta rule", run_id="lazy", k=1), timeout=60
        )
        assert [m.experiment_id for m in similar.matches] == ["lazy-base"]
    finally:
        assert service.stop() == 0
    events = {r.get("event"): r for r in service.log_records()}
    assert events["analyst ready"]["embedding_model_loaded"] is False
    assert events["embedding model loaded"]["seconds"] > 0
    closing = events["analyst closing"]
    assert closing["embedding_model_loaded"] and closing["vector_store_opened"] and closing["torch_imported"]


def test_an_unreachable_mongodb_fails_calls_unavailable_not_the_service(tmp_path: Path) -> None:
    """Real PyMongo against a port nobody listens on: calls fail UNAVAILABLE with the reason, the
    service stays up (health SERVING) and retries the cognition base in the background."""
    env = {
        "ASIARCH_RUN_DIR": str(tmp_path / "run"),
        "ASIARCH_MONGO_URI": "mongodb://127.0.0.1:9/?directConnection=true",
        "ASIARCH_MONGO_TIMEOUT_MS": "200",
        "ASIARCH_ANALYST_WRITE_ATTEMPTS": "2",
    }
    service = start_service("analyst", tmp_path, env=env, timeout=120)
    try:
        stub = analyst_pb2_grpc.AnalystStub(service.channel())
        with pytest.raises(grpc.RpcError) as caught:
            record(stub, experiment("lost", baseline=True, run_id="down"))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "document store failed" in caught.value.details() and "2 time(s)" in caught.value.details()
        assert health_status(service.address) == 1
        assert any(
            r.get("event") == "cognition base not ingested yet; retrying" for r in service.log_records()
        )
    finally:
        assert service.stop() == 0


@pytest.mark.parametrize("server", ["ASIARCH_MONGO_URI", "ASIARCH_QDRANT_URL"])
def test_against_a_real_server_when_one_is_given(tmp_path: Path, server: str) -> None:
    address = os.environ.get(server)
    if not address:
        pytest.skip(f"{server} is not set: the analyst was NOT tested against a real server of that kind")
    suffix = uuid.uuid4().hex[:8]
    env = {
        "ASIARCH_RUN_DIR": str(tmp_path / "run"),
        "ASIARCH_MONGO_DATABASE": f"asiarch_test_{suffix}",
        "ASIARCH_QDRANT_COLLECTION_PREFIX": f"test_{suffix}_",
    }
    service = start_service("analyst", tmp_path, env=env, timeout=180)
    try:
        stub = analyst_pb2_grpc.AnalystStub(service.channel())
        record(
            stub, experiment(f"real-base-{suffix}", baseline=True, run_id=suffix, motivation="Delta rule.")
        )
        child = experiment(f"real-child-{suffix}", parent=f"real-base-{suffix}", loss=1.8, run_id=suffix)
        child.proposal.motivation = "A forget gate that decays stale associations."
        assert record(stub, child).created and not record(stub, child).created
        listed = stub.ListExperiments(analyst_pb2.ListExperimentsRequest(run_id=suffix), timeout=30)
        assert [e.id for e in listed.experiments] == [child.id, f"real-base-{suffix}"]
        hits = stub.Retrieve(
            analyst_pb2.RetrieveRequest(query="recall accuracy collapses on long sequences", k=1), timeout=30
        ).hits
        assert hits[0].id == "fixed-state-capacity"
    finally:
        assert service.stop() == 0
