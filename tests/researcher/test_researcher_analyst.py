"""The researcher consults the analyst: knowledge retrieval and bounded novelty rewrites (in-test Analyst)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import pytest
from parents import baseline_parent
from support import serving, start_service

from asiarch.v1 import analyst_pb2, analyst_pb2_grpc, common_pb2, researcher_pb2, researcher_pb2_grpc


class ScriptedAnalyst(analyst_pb2_grpc.AnalystServicer):
    """Says the first `too_similar` motivations it sees are copies of earlier ones."""

    def __init__(self, too_similar: int) -> None:
        self.too_similar = too_similar
        self.queries: list[str] = []
        self.motivations: list[str] = []
        self.lock = threading.Lock()

    def Retrieve(self, request: analyst_pb2.RetrieveRequest, context: grpc.ServicerContext) -> object:
        self.queries.append(request.query)
        hit = analyst_pb2.KnowledgeHit(
            id="gated-deltanet",
            collection=analyst_pb2.COLLECTION_COGNITION,
            score=0.8,
            title="Gated DeltaNet",
            text="Gating lets the state forget quickly; the delta rule edits associations precisely.",
        )
        return analyst_pb2.RetrieveResponse(hits=[hit])

    def FindSimilar(self, request: analyst_pb2.FindSimilarRequest, context: grpc.ServicerContext) -> object:
        with self.lock:
            self.motivations.append(request.motivation)
            copy = len(self.motivations) <= self.too_similar
        return analyst_pb2.FindSimilarResponse(novelty=0.0 if copy else 0.9)


@pytest.fixture(scope="module")
def analyst() -> Iterator[tuple[ScriptedAnalyst, int]]:
    servicer = ScriptedAnalyst(too_similar=2)
    with serving(analyst_pb2_grpc.add_AnalystServicer_to_server, servicer) as port:
        yield servicer, port


def test_knowledge_is_retrieved_and_copies_are_rewritten(
    tmp_path_factory: pytest.TempPathFactory, analyst: tuple[ScriptedAnalyst, int]
) -> None:
    servicer, port = analyst
    env = {"ASIARCH_LLM_BACKEND": "none", "ASIARCH_ANALYST_ADDRESS": f"127.0.0.1:{port}"}
    service = start_service("researcher", tmp_path_factory.mktemp("researcher-analyst"), env=env)
    try:
        parent = baseline_parent()
        parent.analysis.synthesis = "Recall collapses on long sequences."
        stub = researcher_pb2_grpc.ResearcherStub(service.channel())
        reply = stub.Propose(
            researcher_pb2.ProposeRequest(parent=parent, mode=common_pb2.PROPOSAL_MODE_DSL, seed=9),
            timeout=60,
        )
    finally:
        assert service.stop() == 0
    assert list(reply.knowledge_ids) == ["gated-deltanet"]
    assert servicer.queries == ["Recall collapses on long sequences."]  # queried with the parent's analysis
    assert reply.rewrites == 2
    assert reply.max_similarity == pytest.approx(0.1)
    assert len(set(servicer.motivations)) == 3  # each rewrite is a different proposal
