"""The researcher's series on its live /metrics: proposals by path, and each LLM answer's time and outcome."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from llm_fake_server import FakeLLMServer
from metrics_support import metrics_port, moved, scrape
from parents import baseline_parent
from support import RunningService, start_service

from asiarch.v1 import common_pb2, researcher_pb2, researcher_pb2_grpc

# Only the answer's shape matters here: nothing runs this code.
LAYER = "import torch\n\n\nclass DeltaNet(torch.nn.Module):\n    pass\n" * 2


@pytest.fixture(scope="module")
def researcher(tmp_path_factory: pytest.TempPathFactory, fake_tgi: FakeLLMServer) -> Iterator[RunningService]:
    env = {
        "ASIARCH_LLM_BACKEND": "tgi",
        "ASIARCH_LLM_URL": fake_tgi.url,
        "ASIARCH_LLM_MAX_RETRIES": "0",
        "HF_HUB_OFFLINE": "0",  # would make huggingface_hub refuse even a local server
    }
    service = start_service("researcher", tmp_path_factory.mktemp("researcher-metrics"), env=env)
    yield service
    assert service.stop() == 0


def propose(service: RunningService, mode: int) -> researcher_pb2.ProposeResponse:
    stub = researcher_pb2_grpc.ResearcherStub(service.channel())
    request = researcher_pb2.ProposeRequest(parent=baseline_parent(), mode=mode, seed=3)
    return stub.Propose(request, timeout=60)


def test_proposals_are_counted_by_path_and_llm_answers_by_outcome(
    researcher: RunningService, fake_tgi: FakeLLMServer
) -> None:
    port = metrics_port(researcher)
    before = scrape(port)
    fake_tgi.state.reply = json.dumps({"name": "n", "motivation": "a cheap running memory", "code": LAYER})
    by_llm = propose(researcher, common_pb2.PROPOSAL_MODE_CODE)
    fake_tgi.state.reply = "no JSON today"
    fell_back = propose(researcher, common_pb2.PROPOSAL_MODE_CODE)
    by_dsl = propose(researcher, common_pb2.PROPOSAL_MODE_DSL)
    after = scrape(port)

    assert by_llm.proposal.origin == common_pb2.PROPOSAL_ORIGIN_LLM_CODE
    assert fell_back.fallback_reason and by_dsl.proposal.origin == common_pb2.PROPOSAL_ORIGIN_DSL_MUTATION
    for path in ("llm", "fallback", "dsl"):
        assert moved(before, after, "asiarch_researcher_proposals_total", path=path) == 1, path
    seconds = "asiarch_researcher_llm_seconds_count"
    assert moved(before, after, seconds, task="propose", outcome="ok") == 1
    assert moved(before, after, seconds, task="propose", outcome="invalid") == 1
    assert moved(before, after, seconds, task="repair") == 0
