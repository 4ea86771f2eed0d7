"""The budget's precision (issue 17): fp32, or bf16 autocast as ASI-Arch trains.

A layer that casts an intermediate to bf16 on purpose, as ASI-Arch's published layers do, must run under
bf16-autocast and fail under fp32 with a check that names the dtypes, the line and the way out; a plain
float32 layer runs under both; the causality check still rejects a layer that reads future tokens under
autocast. In-process tests first (the pieces the sandbox runs), then one engineer over gRPC and the CLI.
"""

from __future__ import annotations

import dataclasses
import subprocess
import types
from collections.abc import Iterator
from typing import Any, ClassVar

import grpc
import layers
import pytest
import torch
from support import BIN, RunningService, start_service

from asiarch.common.cli import precisions
from asiarch.common.contract import budget_presets
from asiarch.engineer import convert
from asiarch.engineer.budgets import PRECISIONS, PRESETS, Budget, BudgetError, resolve
from asiarch.engineer.corpus import load_corpus
from asiarch.engineer.functional import run_functional_checks
from asiarch.engineer.training import run_mqar, train_language_model
from asiarch.v1 import common_pb2, engineer_pb2, engineer_pb2_grpc

FP32, BF16 = "fp32", "bf16-autocast"

# Chunked causal linear attention that casts the intra-chunk scores to bf16 and multiplies them with float32
# values, the habit of ASI-Arch's layers (`attn = attn.to(torch.bfloat16)`; `u = attn @ v`).
BF16_CAST = """
import torch
from torch import nn
import torch.nn.functional as F

CHUNK = 16


class DeltaNet(nn.Module):
    def __init__(self, hidden_size, num_heads, **kwargs):
        super().__init__()
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size, bias=False)
        self.out = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, hidden_states, **kwargs):
        b, t, d = hidden_states.shape
        q, k, v = self.qkv(hidden_states).sigmoid().chunk(3, dim=-1)
        pad = (-t) % CHUNK
        n = (t + pad) // CHUNK
        q, k, v = (F.pad(x, (0, 0, 0, pad)).reshape(b, n, CHUNK, d) for x in (q, k, v))
        mask = torch.ones(CHUNK, CHUNK, dtype=torch.bool, device=q.device).tril()
        attn = (q @ k.transpose(-1, -2)).masked_fill(~mask, 0)
        attn = attn.to(torch.bfloat16)
        u = attn @ v
        kv = k.transpose(-1, -2) @ v
        {state}
        o = (u + q @ state).reshape(b, n * CHUNK, d)[:, :t]
        counts = torch.arange(1, t + 1, device=o.device).view(1, -1, 1)
        return self.out(o / (counts * d)), None
"""
# The state entering a chunk: the sum of the earlier chunks (causal); by mistake the chunk itself too (it
# then reads the tokens after each position in its chunk); or all chunks up to this one minus this one
# (causal in exact arithmetic, but the subtraction leaves the chunk's bf16 rounding in earlier outputs).
BF16_LAYER = BF16_CAST.replace("{state}", "state = F.pad(kv, (0, 0, 0, 0, 1, 0))[:, :-1].cumsum(1)")
BF16_FUTURE = BF16_CAST.replace("{state}", "state = kv.cumsum(1)")
BF16_CANCELLING = BF16_CAST.replace("{state}", "state = kv.cumsum(1) - kv")
CLASH_LINE = 1 + BF16_CAST.splitlines().index("        u = attn @ v")
# A clash bf16 autocast does not reconcile: index_put into a float32 tensor from a bf16 one.
BF16_INDEX_PUT = layers.layer(
    """out = torch.zeros_like(hidden_states)
        out[torch.arange(x.shape[0])] = x.to(torch.bfloat16)
        return out, None"""
)


def load(source: str) -> type[torch.nn.Module]:
    module = types.ModuleType("candidate")
    exec(compile(source, "candidate.py", "exec"), module.__dict__)
    return module.DeltaNet


def checks(source: str, precision: str, **budget: Any) -> list[dict[str, Any]]:
    return run_functional_checks(
        load(source), resolve("smoke", budget, precision=precision), False, lambda _: None
    )


def failed(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((c for c in results if not c["passed"]), None)


# --- the budget ---


def test_every_preset_has_a_default_precision_and_a_request_overrides_it() -> None:
    # The defaults docs/benchmarks.md chose from measurements (and README states).
    assert {name: resolve(name).precision for name in PRESETS} == {
        "smoke": FP32,
        "small": FP32,
        "cpu": FP32,
        "gpu": BF16,
    }
    assert resolve("cpu", precision=BF16).precision == BF16
    assert resolve("gpu", precision=FP32).precision == FP32
    assert resolve("smoke", precision=BF16).rung_two().precision == BF16  # promotion keeps it
    with pytest.raises(
        BudgetError, match=r"budget\.precision must be one of fp32, bf16-autocast, got 'fp16'"
    ):
        resolve("smoke", precision="fp16")


def test_the_contract_the_cli_and_the_budgets_name_the_same_precisions_and_presets() -> None:
    assert set(precisions()) == set(PRECISIONS)
    assert set(budget_presets()) == set(PRESETS)


def test_unspecified_means_the_presets_default_and_the_evaluation_echoes_what_ran() -> None:
    for preset_name, preset in budget_presets().items():
        unspecified = Budget.from_proto(common_pb2.Budget(preset=preset), "cpu", "cpu")  # type: ignore[arg-type]
        assert unspecified.precision == PRESETS[preset_name].precision
    asked = common_pb2.Budget(
        preset=common_pb2.BUDGET_PRESET_SMOKE, precision=common_pb2.PRECISION_BF16_AUTOCAST
    )
    resolved = Budget.from_proto(asked, "cpu", "cpu")
    assert resolved.precision == BF16
    assert resolved.to_proto().precision == common_pb2.PRECISION_BF16_AUTOCAST
    fp32 = resolve("smoke", precision=FP32).to_proto()
    assert fp32.precision == common_pb2.PRECISION_FP32


# --- the functional checks ---


def test_a_layer_casting_to_bf16_fails_under_fp32_with_a_check_naming_dtypes_line_and_the_way_out() -> None:
    check = failed(checks(BF16_LAYER, FP32))
    assert check is not None and check["name"] == "functional.precision"
    assert "BFloat16" in check["message"] and f"line {CLASH_LINE}" in check["message"]
    assert "--precision bf16-autocast" in check["message"]
    assert check["line"] == CLASH_LINE
    assert convert.check_to_proto(check).line == CLASH_LINE


def test_a_layer_casting_to_bf16_passes_every_check_under_bf16_autocast() -> None:
    results = checks(BF16_LAYER, BF16)
    assert failed(results) is None
    assert [c["name"] for c in results][-1] == "functional.parameters"


@pytest.mark.parametrize("precision", PRECISIONS)
def test_a_float32_layer_passes_under_both_precisions(precision: str) -> None:
    assert failed(checks(layers.GOOD, precision)) is None
    assert failed(checks(layers.baseline("deltanet"), precision)) is None


@pytest.mark.parametrize("source", [layers.NON_CAUSAL, BF16_FUTURE])
def test_a_layer_reading_future_tokens_is_still_rejected_under_bf16_autocast(source: str) -> None:
    check = failed(checks(source, BF16))
    assert check is not None and check["name"] == "functional.causality", check


def test_a_layer_cancelling_future_terms_is_rejected_under_bf16_autocast_and_told_why() -> None:
    assert failed(checks(BF16_CANCELLING.replace("attn.to(torch.bfloat16)", "attn"), FP32)) is None
    check = failed(checks(BF16_CANCELLING, BF16))
    assert check is not None and check["name"] == "functional.causality"
    assert "cumsum(x) - x" in check["message"]
    future = failed(checks(BF16_FUTURE, BF16))
    assert future is not None and "cumsum(x) - x" not in future["message"]  # a real leak is far larger


def test_a_clash_autocast_does_not_reconcile_says_so() -> None:
    check = failed(checks(BF16_INDEX_PUT, BF16))
    assert check is not None and check["name"] == "functional.precision"
    assert "even under bf16-autocast" in check["message"]


# --- training and MQAR ---


class Probe(torch.nn.Module):
    """A float32 layer that records, for every forward pass with gradients, whether autocast was on and the
    dtype of its weight (AdamW's master weights must stay float32)."""

    seen: ClassVar[list[tuple[bool, torch.dtype]]] = []

    def __init__(self, hidden_size: int, num_heads: int, **kwargs: object) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(hidden_size, hidden_size)

    def forward(self, hidden_states: torch.Tensor, **kwargs: object) -> tuple[torch.Tensor, None]:
        if torch.is_grad_enabled():
            Probe.seen.append((torch.is_autocast_enabled("cpu"), self.proj.weight.dtype))
        x = self.proj(hidden_states)
        return torch.cumsum(x, dim=1) / torch.arange(1, x.shape[1] + 1).view(1, -1, 1), None


@pytest.fixture(scope="module")
def corpus() -> Any:
    return load_corpus(max_bytes=1_000_000)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_training_runs_under_the_budgets_precision_with_float32_weights(precision: str, corpus: Any) -> None:
    Probe.seen.clear()
    budget = dataclasses.replace(resolve("smoke", precision=precision), train_steps=3, mqar_steps=3)
    train_language_model(Probe, corpus, budget, lambda _: None)
    run_mqar(Probe, budget, lambda _: None)
    assert len(Probe.seen) == 6
    assert set(Probe.seen) == {(precision == BF16, torch.float32)}


def test_a_layer_casting_to_bf16_trains_and_benchmarks_under_bf16_autocast_only(corpus: Any) -> None:
    budget = dataclasses.replace(resolve("smoke", precision=BF16), train_steps=3, mqar_steps=3)
    metrics = train_language_model(load(BF16_LAYER), corpus, budget, lambda _: None)
    assert 0 < metrics["val_loss"] < 10
    scores = run_mqar(load(BF16_LAYER), budget, lambda _: None)
    assert all(0 <= s["score"] <= 1 for s in scores)
    fp32 = dataclasses.replace(budget, precision=FP32)
    with pytest.raises(RuntimeError, match="expected scalar type Float but found BFloat16"):
        train_language_model(load(BF16_LAYER), corpus, fp32, lambda _: None)


# --- over gRPC and from the command line ---


@pytest.fixture(scope="module")
def engineer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    env = {"ASIARCH_ENGINEER_SANDBOX_MEMORY_GB": "3", "ASIARCH_ENGINEER_CHECK_TIMEOUT_SECONDS": "120"}
    service = start_service("engineer", tmp_path_factory.mktemp("engineer"), env=env)
    yield service
    assert service.stop() == 0


def test_the_engineer_evaluates_a_bf16_layer_under_bf16_autocast_and_says_so(
    engineer: RunningService,
) -> None:
    stub = engineer_pb2_grpc.EngineerStub(engineer.channel())
    request = engineer_pb2.EvaluateRequest(
        experiment_id="bf16",
        proposal=common_pb2.Proposal(
            name="bf16", source=common_pb2.ArchitectureSource(module_source=BF16_LAYER)
        ),
        budget=common_pb2.Budget(
            preset=common_pb2.BUDGET_PRESET_SMOKE, precision=common_pb2.PRECISION_BF16_AUTOCAST
        ),
        max_repairs=0,
    )
    result = list(stub.Evaluate(request, timeout=300))[-1].result
    assert result.status == common_pb2.EVALUATION_STATUS_SUCCEEDED, result.failure_reason
    assert result.budget.precision == common_pb2.PRECISION_BF16_AUTOCAST
    assert result.metrics.HasField("val_loss") and len(result.metrics.benchmarks) == 3


def test_an_undefined_precision_is_refused_naming_the_field(engineer: RunningService) -> None:
    stub = engineer_pb2_grpc.EngineerStub(engineer.channel())
    request = engineer_pb2.ValidateRequest(
        source=common_pb2.ArchitectureSource(module_source=layers.GOOD), budget=common_pb2.Budget(precision=7)
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub.Validate(request, timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "budget.precision" in caught.value.details()


def test_validate_takes_the_precision_from_the_command_line(engineer: RunningService, tmp_path: Any) -> None:
    path = tmp_path / "bf16_layer.py"
    path.write_text(BF16_LAYER)
    command = [str(BIN / "asiarch"), "validate", str(path), "--engineer", engineer.address]
    fp32 = subprocess.run([*command, "--precision", FP32], capture_output=True, text=True, timeout=300)
    assert fp32.returncode == 1
    assert "FAIL functional.precision" in fp32.stdout and "--precision bf16-autocast" in fp32.stdout
    bf16 = subprocess.run([*command, "--precision", BF16], capture_output=True, text=True, timeout=300)
    assert bf16.returncode == 0, bf16.stdout + bf16.stderr
    wrong = subprocess.run([*command, "--precision", "fp16"], capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "invalid choice: 'fp16'" in wrong.stderr
