"""The pieces the sandbox runs, in-process: budgets, corpus, MQAR, training determinism."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import layers
import pytest
import torch

from asiarch.engineer import calibration, mqar
from asiarch.engineer.budgets import PRESETS, BudgetError, resolve
from asiarch.engineer.corpus import batches, default_root, load_corpus
from asiarch.engineer.training import run_mqar, train_language_model


def layer_type() -> type[torch.nn.Module]:
    module = types.ModuleType("candidate")
    exec(layers.baseline("deltanet"), module.__dict__)
    return module.DeltaNet


def test_budget_presets_and_overrides() -> None:
    smoke = resolve("smoke", seed=3)
    assert smoke.train_steps == 6
    assert smoke.seed == 3
    assert resolve("smoke", rung=2).train_steps == 24
    assert resolve("cpu", {"d_model": 96, "n_heads": 6}).d_model == 96
    gpu = resolve("gpu")
    assert (gpu.n_layers, gpu.d_model, gpu.n_heads, gpu.seq_len) == (8, 256, 8, 2048)


def test_a_presets_wall_clock_limit_grows_with_the_rung_and_the_calibration_a_callers_does_not() -> None:
    preset = PRESETS["cpu"].wall_clock_seconds
    assert resolve("cpu").wall_clock_seconds == preset
    assert resolve("cpu", rung=2).wall_clock_seconds == 4 * preset  # four times the steps
    assert resolve("cpu", wall_factor=1.5).wall_clock_seconds == 1.5 * preset
    assert resolve("cpu", {"wall_clock_seconds": 30.0}, rung=2, wall_factor=3).wall_clock_seconds == 30
    promoted = resolve("cpu", wall_factor=2).rung_two()
    assert promoted.wall_clock_seconds == 8 * preset and promoted.train_steps == 4 * 300


def test_the_calibration_factor_never_shrinks_a_limit_and_is_capped() -> None:
    assert calibration.factor_for(calibration.REFERENCE_SECONDS / 2) == 1.0
    assert calibration.factor_for(3 * calibration.REFERENCE_SECONDS) == pytest.approx(3.0)
    assert calibration.factor_for(100.0) == calibration.MAX_FACTOR
    assert calibration.factor_for(0.0) == 1.0  # a failed measurement changes nothing
    measured = calibration.measure(1)
    assert 0 < measured < 60


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"preset": "huge"}, "unknown preset 'huge'"),
        ({"overrides": {"n_heads": 5}}, "must divide budget.d_model"),
        ({"overrides": {"train_steps": 0}}, "budget.train_steps must be at least 1"),
        ({"overrides": {"learning_rate": -1.0}}, "budget.learning_rate must be > 0"),
        ({"rung": 3}, "budget.rung must be 1 or 2"),
        ({"device": "tpu"}, "budget.device"),
        ({"precision": "fp16"}, "budget.precision must be one of fp32, bf16-autocast"),
    ],
)
def test_bad_budgets_name_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(BudgetError, match=message):
        resolve(**kwargs)  # type: ignore[arg-type]


def test_corpus_is_the_standard_library_split_by_file() -> None:
    corpus = load_corpus(max_bytes=2_000_000)
    assert corpus.source == str(default_root())
    assert corpus.train.numel() > 10 * corpus.validation.numel() > 0
    assert bytes(corpus.train[:500_000].tolist()).decode("utf-8", errors="ignore").count("def ") > 100
    window = batches(corpus.train, 3, 16, torch.Generator().manual_seed(0))
    assert window.shape == (3, 17)
    assert window.dtype == torch.long


def test_corpus_from_a_folder(tmp_path: object) -> None:
    folder = tmp_path  # type: ignore[assignment]
    for i in range(40):
        (folder / f"doc{i}.txt").write_text(f"document {i} " * 200)  # type: ignore[operator]
    corpus = load_corpus(str(folder))
    assert b"document" in bytes(corpus.train[:100].tolist())


def test_the_corpus_leaves_out_installed_packages_and_tests_at_any_depth(tmp_path: Path) -> None:
    for i in range(40):
        (tmp_path / "lib" / f"m{i}").mkdir(parents=True)
        (tmp_path / "lib" / f"m{i}" / "doc.txt").write_text(f"kept {i} " * 50)
        for skipped in ("site-packages", "test", "tests"):
            (tmp_path / "lib" / f"m{i}" / skipped / "deep").mkdir(parents=True)
            (tmp_path / "lib" / f"m{i}" / skipped / "deep" / "x.py").write_text("SKIPPED " * 50)
    corpus = load_corpus(str(tmp_path))
    text = bytes(corpus.train.tolist() + corpus.validation.tolist())
    assert text.count(b"kept ") == 40 * 50
    assert b"SKIPPED" not in text
    with pytest.raises(ValueError, match="too little text"):  # a corpus inside one of them is empty
        load_corpus(str(tmp_path / "lib" / "m0" / "tests"))


def test_mqar_examples_follow_zoology() -> None:
    inputs, labels = mqar.generate(8, 64, 4, 128, torch.Generator().manual_seed(0))
    assert inputs.shape == labels.shape == (8, 64)
    for row in range(8):
        keys, values = inputs[row, 0:8:2], inputs[row, 1:8:2]
        # Zoology's filler: every position that is not a key, a value, a query or its answer is 0.
        answers = (labels[row] != mqar.IGNORE).nonzero().flatten()
        used = set(range(8)) | set(answers.tolist()) | {p + 1 for p in answers.tolist()}
        assert all(inputs[row, p].item() == 0 for p in range(64) if p not in used)
        assert ((keys >= 1) & (keys < 64)).all()
        assert ((values >= 64) & (values < 128)).all()
        scored = (labels[row] != mqar.IGNORE).nonzero().flatten()
        assert len(scored) == 4
        for position in scored.tolist():
            key = inputs[row, position].item()
            assert labels[row, position].item() == values[(keys == key).nonzero().item()].item()
    with pytest.raises(ValueError, match="4 \\* kv_pairs <= seq_len"):
        mqar.generate(1, 16, 8, 64, torch.Generator())
    with pytest.raises(ValueError, match="distinct keys"):
        mqar.generate(1, 64, 16, 32, torch.Generator())


def test_training_is_deterministic_for_a_seed() -> None:
    corpus = load_corpus(max_bytes=1_000_000)
    budget = resolve("smoke", seed=7)
    first = train_language_model(layer_type(), corpus, budget, lambda _: None)
    second = train_language_model(layer_type(), corpus, budget, lambda _: None)
    assert first["val_loss"] == second["val_loss"]
    assert [p["train_loss"] for p in first["loss_curve"]] == [p["train_loss"] for p in second["loss_curve"]]
    other = train_language_model(layer_type(), corpus, resolve("smoke", seed=8), lambda _: None)
    assert other["val_loss"] != first["val_loss"]


def test_a_validation_loss_that_is_not_finite_fails_the_training(monkeypatch: Any) -> None:
    # The analyst refuses NaN metrics: a record must never carry one, so the evaluation fails instead.
    from asiarch.engineer import training

    monkeypatch.setattr(training, "_validation_loss", lambda *_: float("inf"))
    budget = resolve("smoke", {"train_steps": 2}, seed=7)
    with pytest.raises(FloatingPointError, match="validation loss is inf"):
        train_language_model(layer_type(), load_corpus(max_bytes=1_000_000), budget, lambda _: None)


def test_mqar_reports_every_setting() -> None:
    events: list[dict[str, object]] = []
    scores = run_mqar(layer_type(), resolve("smoke"), events.append)
    assert [s["name"] for s in scores] == ["mqar/seq32_kv2", "mqar/seq32_kv4", "mqar/seq64_kv4"]
    assert all(0.0 <= s["score"] <= 1.0 for s in scores)
    assert events[-1]["stage"] == "benchmarks"


async def test_the_budgets_wall_clock_reaches_the_sandbox_beyond_its_default_cap(monkeypatch: Any) -> None:
    """A rung-2 cpu evaluation (2,400 s) or a gpu one (3 h) must get its whole budget, and enough CPU seconds
    for every thread: a fixed 300 s sandbox cap once cut them all short."""
    from asiarch.engineer import pipeline
    from asiarch.engineer.sandbox import SandboxLimits, SandboxResult

    seen: list[SandboxLimits] = []

    async def fake_sandbox(job: dict[str, Any], limits: SandboxLimits, on_event: Any) -> SandboxResult:
        seen.append(limits)
        return SandboxResult(outcome="ok", result={"checks": []})

    monkeypatch.setattr(pipeline, "run_in_sandbox", fake_sandbox)
    runner = pipeline.Pipeline(SandboxLimits(threads=2), 64 * 1024, None)
    budget = resolve("cpu", rung=2)
    candidate = pipeline.Candidate("wall", (layers.BASELINES / "deltanet.py").read_text(), "DeltaNet", budget)

    async def ignore(event: object) -> None:
        return None

    await runner.check(candidate, "check", ignore)
    assert seen[0].wall_seconds == budget.wall_clock_seconds == 2400
    assert seen[0].cpu_seconds >= 2 * 2400
