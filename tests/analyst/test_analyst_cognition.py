"""The cognition base: shipped entries, retrieval by symptom, idempotent ingestion, persistence, the CLI."""

from __future__ import annotations

import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from analyst_data import experiment
from support import BIN, REPO, RunningService, start_service

from asiarch.analyst.cognition import builtin_entries
from asiarch.v1 import analyst_pb2, analyst_pb2_grpc, common_pb2, researcher_pb2, researcher_pb2_grpc

SHIPPED = sorted((REPO / "services" / "analyst" / "cognition_base").glob("*.toml"))
COGNITION = analyst_pb2.COLLECTION_COGNITION


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cognition") / "run"


@pytest.fixture(scope="module")
def analyst(run_dir: Path) -> Iterator[RunningService]:
    service = start_service("analyst", run_dir.parent, env={"ASIARCH_RUN_DIR": str(run_dir)}, timeout=120)
    yield service
    assert service.stop() == 0


@pytest.fixture(scope="module")
def stub(analyst: RunningService) -> analyst_pb2_grpc.AnalystStub:
    return analyst_pb2_grpc.AnalystStub(analyst.channel())


def test_the_shipped_base_covers_the_literature() -> None:
    entries = builtin_entries()
    assert len(entries) >= 40 and len(entries) == len(SHIPPED)
    ids = {e.id for e in entries}
    for topic in (
        "linear-transformer", "performer", "retnet", "gla", "deltanet", "gated-deltanet", "mamba", "mamba2",
        "rwkv6", "rwkv7", "hgrn2", "based", "hedgehog", "xlstm", "ttt", "titans", "longhorn",
        "short-convolution", "chunked-training", "wy-ut-transform", "hybrid-sliding-window-attention",
    ):  # fmt: skip
        assert topic in ids, topic
    for entry in entries:
        assert entry.title and entry.design_insight and entry.algorithm and entry.implementation_guidance
        assert entry.reference and 3 <= len(entry.trigger_patterns) <= 5
        assert tomllib.loads((SHIPPED[0].parent / f"{entry.id}.toml").read_text())["id"] == entry.id


def top_ids(stub: analyst_pb2_grpc.AnalystStub, query: str, k: int = 3) -> list[str]:
    reply = stub.Retrieve(analyst_pb2.RetrieveRequest(query=query, collections=[COGNITION], k=k), timeout=30)
    assert all(h.collection == COGNITION and h.text.startswith("Insight:") for h in reply.hits)
    return [h.id for h in reply.hits]


@pytest.mark.parametrize(
    ("symptom", "expected", "within"),
    [
        ("recall accuracy collapses on long sequences", "fixed-state-capacity", 1),
        ("MQAR accuracy near chance while language-model loss is fine", "zoology-mqar-findings", 1),
        ("local n-gram patterns are poorly modelled", "short-convolution", 1),
        ("the delta rule chunked training is slow", "wy-ut-transform", 1),
        ("too many parameters for a small gain", "parameter-budget", 1),
        ("the model cannot forget stale associations", "gla", 2),
        ("loss spikes and diverges early in training", "numerical-stability", 2),
    ],
)
def test_retrieval_finds_the_entry_for_a_symptom(
    stub: analyst_pb2_grpc.AnalystStub, symptom: str, expected: str, within: int
) -> None:
    assert expected in top_ids(stub, symptom)[:within]


def test_hits_are_distinct_entries_best_first(stub: analyst_pb2_grpc.AnalystStub) -> None:
    reply = stub.Retrieve(analyst_pb2.RetrieveRequest(query="gating and decay", k=10), timeout=30)
    ids = [h.id for h in reply.hits]
    assert len(ids) == 10 and len(set(ids)) == 10  # one hit per entry, not per facet
    scores = [h.score for h in reply.hits]
    assert scores == sorted(scores, reverse=True)


def test_ingestion_is_idempotent_and_updates_changed_entries(stub: analyst_pb2_grpc.AnalystStub) -> None:
    again = stub.IngestCognition(analyst_pb2.IngestCognitionRequest(include_builtin=True), timeout=60)
    assert (again.ingested, again.unchanged, again.total) == (0, len(SHIPPED), len(SHIPPED))

    entry = analyst_pb2.CognitionEntry(
        id="team-note-sparse-write",
        title="Team note: write only the top-k keys",
        trigger_patterns=["the state saturates when every token writes to it"],
        design_insight="Writing only the most surprising tokens keeps the state from saturating.",
        reference="internal note",
    )
    first = stub.IngestCognition(analyst_pb2.IngestCognitionRequest(entries=[entry]), timeout=60)
    assert (first.ingested, first.unchanged, first.total) == (1, 0, len(SHIPPED) + 1)
    same = stub.IngestCognition(analyst_pb2.IngestCognitionRequest(entries=[entry]), timeout=60)
    assert (same.ingested, same.unchanged) == (0, 1)
    assert top_ids(stub, "every token writes and the state saturates", k=1) == ["team-note-sparse-write"]

    entry.trigger_patterns[:] = ["keys collide in a small head dimension"]
    changed = stub.IngestCognition(analyst_pb2.IngestCognitionRequest(entries=[entry]), timeout=60)
    assert (changed.ingested, changed.total) == (1, len(SHIPPED) + 1)
    # The old trigger facet is gone: the entry is found by its new symptom only.
    assert top_ids(stub, "keys collide in a small head dimension", k=1) == ["team-note-sparse-write"]
    hits = stub.Retrieve(
        analyst_pb2.RetrieveRequest(
            query="every token writes and the state saturates", k=1, collections=[COGNITION]
        ),
        timeout=30,
    ).hits
    assert hits[0].id != "team-note-sparse-write" or hits[0].score < 0.8


def test_the_researcher_draws_on_the_real_analyst(
    analyst: RunningService, stub: analyst_pb2_grpc.AnalystStub, run_dir: Path
) -> None:
    """Propose with ASIARCH_ANALYST_ADDRESS: knowledge from the cognition base, novelty from FindSimilar."""
    source = (REPO / "services" / "engineer" / "baselines" / "deltanet.py").read_text()
    parent = common_pb2.Experiment(
        id="researcher-parent",
        run_id="with-researcher",
        name="deltanet",
        is_baseline=True,
        status=common_pb2.EXPERIMENT_STATUS_SUCCEEDED,
        proposal=common_pb2.Proposal(
            name="deltanet", source=common_pb2.ArchitectureSource(module_source=source, class_name="DeltaNet")
        ),
        analysis=common_pb2.Analysis(synthesis="recall accuracy collapses on long sequences"),
    )
    env = {"ASIARCH_LLM_BACKEND": "none", "ASIARCH_ANALYST_ADDRESS": analyst.address}
    researcher = start_service("researcher", run_dir.parent, env=env)
    try:
        reply = researcher_pb2_grpc.ResearcherStub(researcher.channel()).Propose(
            researcher_pb2.ProposeRequest(parent=parent, run_id="with-researcher", seed=3), timeout=120
        )
    finally:
        assert researcher.stop() == 0
    assert reply.knowledge_ids[0] == "fixed-state-capacity"
    assert set(reply.knowledge_ids) <= {e.id for e in builtin_entries()}
    # Nothing recorded in this run yet: the proposal is as novel as can be.
    assert reply.max_similarity == 0.0 and reply.rewrites == 0


def test_cli_search(analyst: RunningService) -> None:
    # Against the running analyst; starting a local one is the same `local_service` the other CLIs use.
    query = "recall accuracy collapses on long sequences"
    result = subprocess.run(
        [str(BIN / "asiarch"), "cognition", "search", query, "--k", "3", "--analyst", analyst.address],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    first = result.stdout.splitlines()[0]
    assert first.startswith("1. ") and "[fixed-state-capacity]" in first


def test_a_restarted_analyst_keeps_everything(
    analyst: RunningService, stub: analyst_pb2_grpc.AnalystStub, run_dir: Path
) -> None:
    stub.Record(
        analyst_pb2.RecordRequest(experiment=experiment("kept", baseline=True, run_id="r")), timeout=60
    )
    assert analyst.stop() == 0
    restarted = start_service("analyst", run_dir.parent, env={"ASIARCH_RUN_DIR": str(run_dir)}, timeout=120)
    try:
        again = analyst_pb2_grpc.AnalystStub(restarted.channel())
        kept = again.GetExperiment(analyst_pb2.GetExperimentRequest(id="kept"), timeout=30)
        assert kept.fitness.total > 0
        ready = next(r for r in restarted.log_records() if r.get("event") == "cognition base ready")
        assert ready["ingested"] == 0 and ready["unchanged"] == len(SHIPPED)
    finally:
        assert restarted.stop() == 0
