"""The researcher with an LLM behind TGI's protocol (a fake TGI server in the test)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from llm_fake_server import FakeLLMServer
from parents import baseline_parent
from support import RunningService, start_service

from asiarch.v1 import common_pb2, researcher_pb2, researcher_pb2_grpc

LLM_LAYER = """import torch
from torch import nn


class DeltaNet(nn.Module):
    def __init__(self, hidden_size, num_heads, **kwargs):
        super().__init__()
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, hidden_states, **kwargs):
        x = self.proj(hidden_states)
        counts = torch.arange(1, x.shape[1] + 1).view(1, -1, 1)
        return torch.cumsum(x, dim=1) / counts, None
"""


@pytest.fixture(scope="module")
def stub(
    tmp_path_factory: pytest.TempPathFactory, fake_tgi: FakeLLMServer
) -> Iterator[researcher_pb2_grpc.ResearcherStub]:
    # HF_HUB_OFFLINE=1 would make huggingface_hub refuse even a local server.
    env = {
        "ASIARCH_LLM_BACKEND": "tgi",
        "ASIARCH_LLM_URL": fake_tgi.url,
        "ASIARCH_LLM_MAX_RETRIES": "0",
        "HF_HUB_OFFLINE": "0",
    }
    service: RunningService = start_service("researcher", tmp_path_factory.mktemp("researcher-llm"), env=env)
    yield researcher_pb2_grpc.ResearcherStub(service.channel())
    assert service.stop() == 0


def answer(payload: dict[str, Any]) -> str:
    return json.dumps(payload)


def test_code_proposal_comes_from_the_llm_with_a_json_grammar(
    stub: researcher_pb2_grpc.ResearcherStub, fake_tgi: FakeLLMServer
) -> None:
    fake_tgi.state.reply = answer(
        {
            "name": "running-mean",
            "motivation": "A causal running mean keeps a cheap memory.",
            "code": LLM_LAYER,
        }
    )
    reply = stub.Propose(
        researcher_pb2.ProposeRequest(parent=baseline_parent(), mode=common_pb2.PROPOSAL_MODE_CODE),
        timeout=60,
    )
    assert reply.proposal.origin == common_pb2.PROPOSAL_ORIGIN_LLM_CODE
    assert reply.proposal.name == "running-mean"
    assert reply.proposal.source.module_source == LLM_LAYER
    assert reply.fallback_reason == ""
    sent = fake_tgi.state.posts("/generate")[-1]
    assert sent["parameters"]["grammar"]["type"] == "json"
    assert "code" in sent["parameters"]["grammar"]["value"]["properties"]
    assert "chunk_delta_rule" in sent["inputs"]  # the parent's source is in the prompt


def test_an_invalid_llm_answer_falls_back_to_a_dsl_mutation(
    stub: researcher_pb2_grpc.ResearcherStub, fake_tgi: FakeLLMServer
) -> None:
    fake_tgi.state.reply = "I would rather not answer in JSON."
    reply = stub.Propose(researcher_pb2.ProposeRequest(parent=baseline_parent(), seed=5), timeout=60)
    assert reply.proposal.origin == common_pb2.PROPOSAL_ORIGIN_DSL_MUTATION
    assert "no valid answer" in reply.fallback_reason


def test_an_unavailable_llm_falls_back_too(
    stub: researcher_pb2_grpc.ResearcherStub, fake_tgi: FakeLLMServer
) -> None:
    fake_tgi.state.fail_next(503, "Model is overloaded", "overloaded", times=5)
    reply = stub.Propose(researcher_pb2.ProposeRequest(parent=baseline_parent(), seed=6), timeout=60)
    fake_tgi.state.failures.clear()
    assert reply.proposal.origin == common_pb2.PROPOSAL_ORIGIN_DSL_MUTATION
    assert "the LLM failed" in reply.fallback_reason


def test_llm_repair_returns_the_patched_code(
    stub: researcher_pb2_grpc.ResearcherStub, fake_tgi: FakeLLMServer
) -> None:
    fake_tgi.state.reply = answer({"summary": "divide by the running count", "code": LLM_LAYER})
    reply = stub.Repair(
        researcher_pb2.RepairRequest(
            source=common_pb2.ArchitectureSource(module_source=LLM_LAYER.replace("/ counts", "* 0 / 0")),
            failed_stage=common_pb2.EVALUATION_STAGE_FUNCTIONAL_CHECKS,
            error="functional.finite: the output has NaN values",
            attempt=1,
            motivation="a running mean",
        ),
        timeout=60,
    )
    assert reply.source.module_source == LLM_LAYER
    assert reply.summary == "divide by the running count"
    assert reply.repaired_by.startswith("llm:")
    prompt = fake_tgi.state.posts("/generate")[-1]["inputs"]
    assert "functional.finite" in prompt
    assert "smallest change" in prompt


def test_repair_needs_an_error(stub: researcher_pb2_grpc.ResearcherStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Repair(
            researcher_pb2.RepairRequest(source=common_pb2.ArchitectureSource(module_source=LLM_LAYER)),
            timeout=30,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "error must say what failed" in caught.value.details()
