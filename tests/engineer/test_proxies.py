"""Zero-cost proxies (rung 0): finite, deterministic, telling, recorded by Validate and Evaluate.

In-process for the proxies themselves (the test layers are ours), over gRPC for what a caller sees. Each
proxy's seconds are recorded (pytest's record_property: `--junitxml`), not asserted.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator

import layers
import pytest
from support import RunningService, start_service
from test_engineer_service import ENV, SMOKE, evaluate, validate

from asiarch.engineer.budgets import Budget, resolve
from asiarch.engineer.candidate import load_layer
from asiarch.engineer.corpus import Corpus, load_corpus
from asiarch.engineer.proxies import CHECK_NAME, PROXIES, measure_proxies
from asiarch.engineer.training import train_language_model
from asiarch.v1 import common_pb2, engineer_pb2_grpc

NAMES = set(PROXIES)
BASELINES = ("deltanet", "gated_deltanet", "linear_attention", "softmax_attention")
CPU = resolve("cpu")
ZERO = layers.layer("return x * 0, None")
CONSTANT = layers.layer(
    "return self.bias.expand_as(hidden_states), None",
    init="self.bias = nn.Parameter(torch.randn(hidden_size))",
)
# Fine in training and in every check (eval mode), NaN or raising only in training mode without gradients,
# which only output_rank and loss_slope's last loss use: the proxies' failure, not the layer's.
_ODD_MODE = """if self.training and not torch.is_grad_enabled():
            {odd}
        return torch.cumsum(x, dim=1) / torch.arange(1, x.shape[1] + 1).view(1, -1, 1), None"""
NAN_WITHOUT_GRAD = layers.layer(_ODD_MODE.format(odd="return x * float('nan'), None"))
RAISES_WITHOUT_GRAD = layers.layer(_ODD_MODE.format(odd="raise RuntimeError('no gradients here')"))


@pytest.fixture(scope="module")
def corpus() -> Callable[[], Corpus]:
    return functools.cache(load_corpus)


def proxies_of(
    source: str, corpus: Callable[[], Corpus], budget: Budget = CPU
) -> tuple[dict[str, float], dict[str, object]]:
    return measure_proxies(load_layer(source, "DeltaNet"), budget, corpus)


@pytest.mark.parametrize("name", BASELINES)
def test_the_baselines_proxies_are_finite_and_the_same_every_time(
    name: str, corpus: Callable[[], Corpus], record_property: Callable[[str, object], None]
) -> None:
    values, check = proxies_of(layers.baseline(name), corpus)
    assert set(values) == NAMES and all(math.isfinite(v) for v in values.values()), check["message"]
    assert check["passed"] and check["message"] == ""
    again, _ = proxies_of(layers.baseline(name), corpus)
    assert again == values
    other_seed, _ = proxies_of(layers.baseline(name), corpus, resolve("cpu", seed=CPU.seed + 1))
    assert other_seed != values  # the seed decides the weights and the batch
    measurements = check["measurements"]
    assert isinstance(measurements, dict)
    for proxy in NAMES:
        assert measurements[proxy] == values[proxy]
        record_property(f"{name}.{proxy}_seconds", round(measurements[f"{proxy}_seconds"], 3))


def test_a_layer_whose_output_is_zero_or_constant_has_a_far_lower_output_rank(
    corpus: Callable[[], Corpus],
) -> None:
    deltanet, _ = proxies_of(layers.baseline("deltanet"), corpus)
    zero, _ = proxies_of(ZERO, corpus)
    constant, _ = proxies_of(CONSTANT, corpus)
    assert deltanet["output_rank"] > 0.5
    assert zero["output_rank"] == 0.0  # rank 0, not a NaN entropy
    assert constant["output_rank"] == pytest.approx(1 / CPU.d_model, rel=0.1)  # one direction


def test_a_layer_that_gives_nan_or_raises_leaves_those_proxies_out_and_says_why(
    corpus: Callable[[], Corpus],
) -> None:
    for source, why in ((NAN_WITHOUT_GRAD, ""), (RAISES_WITHOUT_GRAD, "no gradients here")):
        values, check = proxies_of(source, corpus)
        assert set(values) == {"grad_norm", "jacob_cov"}
        assert all(math.isfinite(v) for v in values.values())
        assert check["passed"]
        message = str(check["message"])
        assert message.startswith("left out: ") and "output_rank (" in message and "loss_slope (" in message
        assert why in message
    values, check = proxies_of(layers.NAN, corpus)
    assert values == {} and check["passed"]
    assert all(f"{name} (" in str(check["message"]) for name in NAMES)


def test_a_corpus_that_cannot_load_leaves_every_proxy_out(corpus: Callable[[], Corpus]) -> None:
    def missing() -> Corpus:
        return load_corpus("/nonexistent/corpus")

    values, check = proxies_of(layers.GOOD, missing)
    assert values == {} and check["passed"]
    assert "every proxy (FileNotFoundError" in str(check["message"])


def test_training_numbers_do_not_depend_on_the_proxies(corpus: Callable[[], Corpus]) -> None:
    """The proxies run before training in the same process and leave nothing behind that training reads."""
    budget = resolve("smoke", {"train_steps": 2})
    layer = load_layer(layers.baseline("deltanet"), "DeltaNet")
    before = train_language_model(layer, corpus(), budget, lambda _: None)
    measure_proxies(layer, budget, corpus)
    after = train_language_model(layer, corpus(), budget, lambda _: None)
    assert after["val_loss"] == before["val_loss"]


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[engineer_pb2_grpc.EngineerStub]:
    service: RunningService = start_service("engineer", tmp_path_factory.mktemp("engineer"), env=ENV)
    yield engineer_pb2_grpc.EngineerStub(service.channel())
    assert service.stop() == 0


def _proxy_check(checks: list[common_pb2.CheckResult]) -> common_pb2.CheckResult:
    (check,) = [c for c in checks if c.name == CHECK_NAME]
    assert check.passed and check.stage == common_pb2.EVALUATION_STAGE_FUNCTIONAL_CHECKS
    assert {f"{name}_seconds" for name in NAMES} <= set(check.measurements)
    return check


def test_validate_and_evaluate_return_the_same_proxies_over_grpc(
    stub: engineer_pb2_grpc.EngineerStub,
) -> None:
    validated = validate(stub, layers.baseline("deltanet"), budget=SMOKE)
    assert validated.valid, validated.failure_reason
    assert set(validated.proxies) == NAMES
    _proxy_check(list(validated.checks))
    events, result = evaluate(stub, layers.baseline("deltanet"))
    assert result.status == common_pb2.EVALUATION_STATUS_SUCCEEDED, result.failure_reason
    assert dict(result.metrics.proxies) == dict(validated.proxies)
    check = _proxy_check(list(result.checks))
    assert all(check.measurements[name] == value for name, value in result.metrics.proxies.items())
    messages = [e.progress.message for e in events if e.WhichOneof("event") == "progress"]
    assert messages.index("proxies") < messages.index("loading the corpus")  # before training


def test_validate_of_an_invalid_layer_returns_no_proxies(stub: engineer_pb2_grpc.EngineerStub) -> None:
    for response in (validate(stub, layers.NON_CAUSAL), validate(stub, layers.GOOD, static_only=True)):
        assert not response.proxies
        assert CHECK_NAME not in [c.name for c in response.checks]


def test_a_proxy_that_fails_is_missing_and_the_evaluation_still_succeeds(
    stub: engineer_pb2_grpc.EngineerStub,
) -> None:
    _, result = evaluate(stub, NAN_WITHOUT_GRAD, max_repairs=0)
    assert result.status == common_pb2.EVALUATION_STATUS_SUCCEEDED, result.failure_reason
    assert set(result.metrics.proxies) == {"grad_norm", "jacob_cov"}
    assert "output_rank (" in _proxy_check(list(result.checks)).message
    assert result.metrics.HasField("val_loss")
