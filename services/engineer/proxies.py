"""Zero-cost proxies of a candidate layer at initialisation: rung 0, measured in the sandbox before training.

What this module guarantees:
- Every proxy is measured on the model training will use (asiarch.kernels.models.LanguageModel with the
  candidate layer at the budget's d_model, n_layers and n_heads, on the budget's device, every forward
  pass under the budget's precision) and one batch of budget.batch_size x budget.seq_len bytes of the
  training corpus, drawn as training draws its first batch, so Validate and Evaluate measure the same
  numbers.
- Deterministic for a seed: each proxy builds its own model after torch.manual_seed(budget.seed) and the
  batch comes from a generator seeded with it. Training reseeds itself, so its numbers do not change.
  The corpus comes from the caller's loader, which the worker shares with training (0.13 s to load).
- `measure_proxies` never raises and never returns a non-finite number: a proxy that raises or gives
  NaN/inf is left out of the map and named, with the reason, in the message of the check
  "functional.proxies", which always passes (a proxy never fails an evaluation). The check's
  measurements hold every value and "<name>_seconds", the seconds each took, model building included.
- Each proxy takes well under a second at the `cpu` budget on 2 cores not loaded by others
  (docs/benchmarks.md, "Zero-cost proxies"); their values are comparable within one budget only
  (jacob_cov grows with the batch size, output_rank is a share of d_model).

Reading them: in their papers a higher output_rank, loss_slope or jacob_cov marks a more trainable
layer, and grad_norm has no agreed direction; whether any of that holds here is what their Spearman
rho against rung-1 val_loss says (`asiarch bench discovery`).

It runs candidate code, so only the sandboxed worker (asiarch.engineer.worker) calls it.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from asiarch.engineer.budgets import Budget
from asiarch.engineer.corpus import Corpus, batches
from asiarch.engineer.precision import autocast
from asiarch.engineer.training import BYTE_VOCAB, adamw, lm_loss
from asiarch.kernels.models import LanguageModel, mixer_output

CHECK_NAME = "functional.proxies"
LOSS_SLOPE_STEPS = 5
JACOB_COV_K = 1e-5  # Mellor et al.'s k, keeps the log and the reciprocal of a zero eigenvalue finite
REASON_CHARS = 200


@dataclass(frozen=True)
class Setting:
    """What every proxy measures on: the layer, the budget and one batch (inputs and next-byte targets)."""

    layer_type: type[torch.nn.Module]
    budget: Budget
    inputs: torch.Tensor
    targets: torch.Tensor

    def model(self) -> LanguageModel:
        """A fresh model at initialisation, the same for the same seed."""
        torch.manual_seed(self.budget.seed)
        b = self.budget
        return LanguageModel(self.layer_type, BYTE_VOCAB, b.d_model, b.n_layers, b.n_heads).to(b.device)

    def loss(self, model: torch.nn.Module) -> torch.Tensor:
        return lm_loss(model, self.inputs, self.targets, self.budget.precision)


def grad_norm(setting: Setting) -> float:
    """log10 of the LM loss's gradient norm at init (grad_norm of Abdelfattah et al., ICLR 2021)."""
    model = setting.model()
    setting.loss(model).backward()
    grads = [p.grad.float().norm() for p in model.parameters() if p.grad is not None]
    return math.log10(torch.linalg.vector_norm(torch.stack(grads)).item())


def _effective_rank(matrix: torch.Tensor) -> float:
    singular = torch.linalg.svdvals(matrix.double())
    total = singular.sum()
    if total <= 0:  # an all-zero output has rank 0, not an undefined entropy
        return 0.0
    shares = singular / total
    shares = shares[shares > 0]
    return math.exp(-(shares * shares.log()).sum().item())


def output_rank(setting: Setting) -> float:
    """Effective rank / d_model of the layer outputs at init, mean of blocks (RankMe, Garrido et al. 2023)."""
    model = setting.model()
    outputs: list[torch.Tensor] = []
    hooks = [
        block.mixer.register_forward_hook(lambda _m, _i, out: outputs.append(mixer_output(out).detach()))
        for block in model.blocks
    ]
    try:
        with torch.no_grad(), autocast(setting.budget.precision, setting.inputs.device):
            model(setting.inputs)
    finally:
        for hook in hooks:
            hook.remove()
    ranks = [_effective_rank(output.flatten(0, -2)) for output in outputs]
    return sum(ranks) / len(ranks) / setting.budget.d_model


def loss_slope(setting: Setting) -> float:
    """Per-step LM-loss decrease over 5 AdamW steps on one batch (training speed, Ru et al., NeurIPS 2021)."""
    model = setting.model()
    optimizer = adamw(model, setting.budget.learning_rate)
    losses = []
    for _ in range(LOSS_SLOPE_STEPS):
        loss = setting.loss(model)
        losses.append(loss.item())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # as training clips
        optimizer.step()
    with torch.no_grad():
        losses.append(setting.loss(model).item())
    return -statistics.linear_regression(range(len(losses)), losses).slope


def jacob_cov(setting: Setting) -> float:
    """Score of the input-Jacobian correlations across sequences (jacob_cov, Mellor et al. 2020, arXiv v1)."""
    model = setting.model()
    embedded: list[torch.Tensor] = []
    hook = model.embedding.register_forward_hook(lambda _m, _i, out: embedded.append(out))
    try:
        with autocast(setting.budget.precision, setting.inputs.device):
            logits = model(setting.inputs)
    finally:
        hook.remove()
    (jacobian,) = torch.autograd.grad(logits.float().sum(), embedded[0])
    correlation = torch.corrcoef(jacobian.flatten(1).double())
    eigenvalues = torch.linalg.eigvalsh(correlation).clamp(min=0)  # rounding can leave -1e-17
    k = JACOB_COV_K
    return -(torch.log(eigenvalues + k) + 1 / (eigenvalues + k)).sum().item()


PROXIES: dict[str, Callable[[Setting], float]] = {
    "grad_norm": grad_norm,
    "output_rank": output_rank,
    "loss_slope": loss_slope,
    "jacob_cov": jacob_cov,
}


def _setting(layer_type: type[torch.nn.Module], budget: Budget, corpus: Callable[[], Corpus]) -> Setting:
    generator = torch.Generator().manual_seed(budget.seed)
    window = batches(corpus().train, budget.batch_size, budget.seq_len, generator).to(budget.device)
    return Setting(layer_type, budget, window[:, :-1], window[:, 1:])


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:REASON_CHARS]


def measure_proxies(
    layer_type: type[torch.nn.Module], budget: Budget, corpus: Callable[[], Corpus]
) -> tuple[dict[str, float], dict[str, Any]]:
    """The finite proxies by name, and the check "functional.proxies" (always passed) that reports them.

    `corpus` loads the training corpus (or raises: then every proxy is left out)."""
    started = time.perf_counter()
    values: dict[str, float] = {}
    seconds: dict[str, float] = {}
    problems: list[str] = []
    try:
        setting = _setting(layer_type, budget, corpus)
    except Exception as exc:  # no batch, no proxies; the evaluation goes on
        problems.append(f"every proxy ({_reason(exc)})")
    else:
        for name, proxy in PROXIES.items():
            began = time.perf_counter()
            try:
                value = float(proxy(setting))
            except Exception as exc:  # a proxy is a hint, never a verdict: a failing one is left out
                problems.append(f"{name} ({_reason(exc)})")
            else:
                if math.isfinite(value):
                    values[name] = value
                else:
                    problems.append(f"{name} (it came out {value})")
            seconds[f"{name}_seconds"] = time.perf_counter() - began
    message = "left out: " + "; ".join(problems) if problems else ""
    check = {
        "name": CHECK_NAME,
        "passed": True,
        "message": message,
        "measurements": {**values, **seconds},
        "duration_seconds": time.perf_counter() - started,
    }
    return values, check
