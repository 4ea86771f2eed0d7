"""The researcher as a real process over gRPC, with no LLM: DSL proposals and deterministic repairs."""

from __future__ import annotations

import types
from collections.abc import Iterator

import grpc
import pytest
import torch
from parents import baseline_parent
from support import RunningService, start_service

from asiarch.engineer.static_checks import run_static_checks
from asiarch.researcher.dsl import ArchitectureSpec
from asiarch.v1 import common_pb2, researcher_pb2, researcher_pb2_grpc


@pytest.fixture(scope="module")
def researcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    service = start_service(
        "researcher", tmp_path_factory.mktemp("researcher"), env={"ASIARCH_LLM_BACKEND": "none"}
    )
    yield service
    assert service.stop() == 0


@pytest.fixture(scope="module")
def stub(researcher: RunningService) -> researcher_pb2_grpc.ResearcherStub:
    return researcher_pb2_grpc.ResearcherStub(researcher.channel())


def runs_forward(source: str) -> bool:
    module = types.ModuleType("candidate")
    exec(source, module.__dict__)
    layer = module.DeltaNet(hidden_size=32, num_heads=4)
    out = layer(torch.randn(2, 19, 32))[0]
    return out.shape == (2, 19, 32) and bool(torch.isfinite(out).all())


@pytest.mark.parametrize("name", ["linear-attention", "deltanet", "gated-deltanet"])
def test_propose_without_llm_mutates_the_baseline(
    stub: researcher_pb2_grpc.ResearcherStub, name: str
) -> None:
    request = researcher_pb2.ProposeRequest(
        parent=baseline_parent(name), mode=common_pb2.PROPOSAL_MODE_CODE, seed=4
    )
    response = stub.Propose(request, timeout=60)
    proposal = response.proposal
    assert proposal.origin == common_pb2.PROPOSAL_ORIGIN_DSL_MUTATION
    assert proposal.generator.startswith("mutation:")
    assert "no LLM configured" in response.fallback_reason
    assert f"Mutation `{proposal.generator.removeprefix('mutation:')}`" in proposal.motivation
    ArchitectureSpec.model_validate_json(proposal.spec_json)
    assert all(check.passed for check in run_static_checks(proposal.source.module_source))
    assert runs_forward(proposal.source.module_source)
    assert stub.Propose(request, timeout=60) == response  # same seed, same proposal


def test_a_dsl_parent_is_mutated_from_its_spec(stub: researcher_pb2_grpc.ResearcherStub) -> None:
    first = stub.Propose(researcher_pb2.ProposeRequest(parent=baseline_parent(), seed=1), timeout=60).proposal
    child = common_pb2.Experiment(id="c1", name=first.name, proposal=first)
    second = stub.Propose(researcher_pb2.ProposeRequest(parent=child, seed=2), timeout=60).proposal
    assert second.spec_json != first.spec_json
    assert "the parent's spec" in second.motivation


def test_deterministic_repair_of_a_dsl_candidate(stub: researcher_pb2_grpc.ResearcherStub) -> None:
    proposal = stub.Propose(
        researcher_pb2.ProposeRequest(parent=baseline_parent(), seed=3), timeout=60
    ).proposal
    reply = stub.Repair(
        researcher_pb2.RepairRequest(
            source=proposal.source,
            spec_json=proposal.spec_json,
            failed_stage=common_pb2.EVALUATION_STAGE_FUNCTIONAL_CHECKS,
            error="functional.finite: the output has 12 NaN/inf values for a normal input",
            attempt=1,
        ),
        timeout=60,
    )
    assert reply.repaired_by == "dsl:deterministic"
    assert "non-finite" in reply.summary
    assert ArchitectureSpec.model_validate_json(reply.spec_json).output_norm == "rmsnorm"
    assert runs_forward(reply.source.module_source)


def test_free_form_code_cannot_be_repaired_without_an_llm(stub: researcher_pb2_grpc.ResearcherStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Repair(
            researcher_pb2.RepairRequest(
                source=common_pb2.ArchitectureSource(module_source="import torch\n"), error="boom", attempt=1
            ),
            timeout=30,
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "ASIARCH_LLM_BACKEND" in caught.value.details()


@pytest.mark.parametrize(
    ("request_message", "message"),
    [
        (researcher_pb2.ProposeRequest(), "parent.proposal needs a source or a spec_json"),
        (
            researcher_pb2.ProposeRequest(
                parent=common_pb2.Experiment(proposal=common_pb2.Proposal(spec_json="{not json"))
            ),
            "parent.proposal.spec_json is not a valid spec",
        ),
    ],
)
def test_bad_propose_requests(
    stub: researcher_pb2_grpc.ResearcherStub, request_message: researcher_pb2.ProposeRequest, message: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Propose(request_message, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()


def test_the_minted_experiment_id_tags_the_proposal_in_the_log(
    stub: researcher_pb2_grpc.ResearcherStub, researcher: RunningService
) -> None:
    request = researcher_pb2.ProposeRequest(
        parent=baseline_parent("deltanet"), seed=11, experiment_id="run-7.c3.e2"
    )
    proposal = stub.Propose(request, timeout=60).proposal
    lines = [r for r in researcher.log_records() if r.get("event") == "proposed"]
    assert any(r.get("experiment_id") == "run-7.c3.e2" and r.get("name") == proposal.name for r in lines)

    with pytest.raises(grpc.RpcError) as caught:
        stub.Propose(
            researcher_pb2.ProposeRequest(parent=baseline_parent("deltanet"), experiment_id="no spaces"),
            timeout=30,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "experiment_id must be" in caught.value.details()


def test_bad_repair_requests(stub: researcher_pb2_grpc.ResearcherStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Repair(researcher_pb2.RepairRequest(error="x"), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "source.module_source must not be empty" in caught.value.details()
