"""Training and benchmarks for one candidate, inside the sandbox.

Byte-level language modelling with a held-out split (validation loss and bits
per byte), then MQAR at several (seq_len, kv_pairs) settings (accuracy per
setting). Deterministic for a seed on CPU. Every forward pass runs under the
budget's precision (asiarch.engineer.precision: float32, or bf16 autocast);
the loss is computed in float32 outside it, and AdamW keeps float32 weights
(autocast never changes a parameter's dtype), so no gradient scaling is needed.
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from asiarch.engineer import mqar
from asiarch.engineer.budgets import Budget
from asiarch.engineer.corpus import Corpus, batches
from asiarch.engineer.precision import autocast
from asiarch.kernels.models import LanguageModel

Emit = Callable[[dict[str, Any]], None]
BYTE_VOCAB = 256
MAX_CURVE_POINTS = 200
PROGRESS_EVERY_SECONDS = 1.0
# MQAR examples scored per setting: 256 x kv_pairs queries, so one query is < 0.4 % of the accuracy.
EVAL_EXAMPLES = 256


def adamw(model: torch.nn.Module, lr: float) -> torch.optim.AdamW:
    """The optimiser every training run uses (the schedule is the caller's)."""
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1, betas=(0.9, 0.95))


def lm_loss(
    model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor, precision: str
) -> torch.Tensor:
    """Cross-entropy of the model's next-token predictions: forward under the precision, loss in float32."""
    with autocast(precision, inputs.device):
        logits = model(inputs)
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=mqar.IGNORE)


def _optimizer(model: torch.nn.Module, lr: float, steps: int) -> tuple[Any, Any]:
    optimizer = adamw(model, lr)
    warmup = max(1, steps // 10)

    def schedule(step: int) -> float:  # linear warm-up, cosine decay to 10 %
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, progress)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def _step(
    model: torch.nn.Module,
    optimizer: Any,
    scheduler: Any,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    precision: str,
) -> float:
    loss = lm_loss(model, inputs, targets, precision)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"training loss became {loss.item()}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    scheduler.step()
    return loss.item()


def _peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # KiB on Linux


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def _validation_loss(
    model: torch.nn.Module, data: torch.Tensor, budget: Budget, device: torch.device
) -> float:
    model.eval()
    generator = torch.Generator().manual_seed(12345)  # the same held-out windows for every candidate
    total = 0.0
    for _ in range(budget.eval_batches):
        window = batches(data, budget.batch_size, budget.seq_len, generator).to(device)
        with autocast(budget.precision, device):
            logits = model(window[:, :-1])
        total += F.cross_entropy(logits.float().flatten(0, 1), window[:, 1:].flatten()).item()
    model.train()
    return total / budget.eval_batches


def _compile_warmup(model: torch.nn.Module, budget: Budget, device: torch.device) -> float:
    """On CUDA, run the kernels once before timing so Triton compilation is not counted as training."""
    if device.type != "cuda":
        return 0.0
    started = time.perf_counter()
    tokens = torch.randint(0, BYTE_VOCAB, (budget.batch_size, budget.seq_len), device=device)
    with autocast(budget.precision, device):  # compile the kernels for the dtypes training runs
        logits = model(tokens)
    logits.float().mean().backward()
    model.zero_grad(set_to_none=True)
    _sync(device)
    return time.perf_counter() - started


def train_language_model(
    layer_type: type[torch.nn.Module], corpus: Corpus, budget: Budget, emit: Emit
) -> dict[str, Any]:
    device = torch.device(budget.device)
    torch.manual_seed(budget.seed)
    model = LanguageModel(layer_type, BYTE_VOCAB, budget.d_model, budget.n_layers, budget.n_heads).to(device)
    steps = budget.train_steps
    optimizer, scheduler = _optimizer(model, budget.learning_rate, steps)
    generator = torch.Generator().manual_seed(budget.seed)
    compile_seconds = _compile_warmup(model, budget, device)
    every = max(1, steps // MAX_CURVE_POINTS)
    curve: list[dict[str, float]] = []
    started = last_emit = time.perf_counter()
    loss = float("nan")
    for step in range(1, steps + 1):
        window = batches(corpus.train, budget.batch_size, budget.seq_len, generator).to(device)
        loss = _step(model, optimizer, scheduler, window[:, :-1], window[:, 1:], budget.precision)
        now = time.perf_counter()
        if step % every == 0 or step == steps:
            curve.append({"step": step, "train_loss": loss, "elapsed_seconds": now - started})
        if now - last_emit >= PROGRESS_EVERY_SECONDS or step == steps:
            emit({"type": "progress", "stage": "training", "step": step, "total_steps": steps, "loss": loss})
            last_emit = now
    _sync(device)
    train_seconds = time.perf_counter() - started
    val_loss = _validation_loss(model, corpus.validation, budget, device)
    if not math.isfinite(val_loss):  # a failed evaluation, never a NaN metric in the record
        raise FloatingPointError(f"validation loss is {val_loss}")
    curve[-1]["val_loss"] = val_loss
    parameters = sum(p.numel() for p in model.parameters())
    return {
        "val_loss": val_loss,
        "bits_per_byte": val_loss / math.log(2),
        "train_loss": loss,
        "tokens_per_second": steps * budget.batch_size * budget.seq_len / train_seconds,
        "parameters": parameters,
        "layer_parameters": model.layer_parameters(),
        "peak_memory_bytes": _peak_memory(device),
        "loss_curve": curve,
        "train_seconds": train_seconds,
        "compile_seconds": compile_seconds,
        "steps": steps,
    }


def run_mqar(layer_type: type[torch.nn.Module], budget: Budget, emit: Emit) -> list[dict[str, Any]]:
    """Train one model on a mix of all settings, then score each setting on fresh examples."""
    device = torch.device(budget.device)
    settings = budget.mqar_settings
    vocab = budget.mqar_vocab
    torch.manual_seed(budget.seed + 1)
    model = LanguageModel(layer_type, vocab, budget.d_model, budget.n_layers, budget.n_heads).to(device)
    steps, batch = budget.mqar_steps, budget.mqar_batch_size
    optimizer, scheduler = _optimizer(model, budget.mqar_learning_rate, steps)
    generator = torch.Generator().manual_seed(budget.seed + 2)
    last_emit = time.perf_counter()
    for step in range(1, steps + 1):
        length, pairs = settings[step % len(settings)]
        inputs, labels = mqar.generate(batch, length, pairs, vocab, generator)
        loss = _step(model, optimizer, scheduler, inputs.to(device), labels.to(device), budget.precision)
        if time.perf_counter() - last_emit >= PROGRESS_EVERY_SECONDS or step == steps:
            emit(
                {"type": "progress", "stage": "benchmarks", "step": step, "total_steps": steps, "loss": loss}
            )
            last_emit = time.perf_counter()
    model.eval()
    scores = []
    evaluation = torch.Generator().manual_seed(54321)
    with torch.no_grad():
        for length, pairs in settings:
            inputs, labels = mqar.generate(EVAL_EXAMPLES, length, pairs, vocab, evaluation)
            with autocast(budget.precision, device):
                predictions = model(inputs.to(device)).argmax(-1).cpu()
            scored = labels != mqar.IGNORE
            accuracy = (predictions[scored] == labels[scored]).float().mean().item()
            scores.append(
                {
                    "name": f"mqar/seq{length}_kv{pairs}",
                    "task": "mqar",
                    "score": accuracy,
                    "settings": {"seq_len": float(length), "kv_pairs": float(pairs)},
                }
            )
    return scores
