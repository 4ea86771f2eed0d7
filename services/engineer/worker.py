"""What runs inside the sandbox: load the candidate, check it, train and benchmark it.

`run(job, emit)` is called by sandbox_child after the process is locked down.
`emit` sends progress events and check results to the service as they happen;
the return value is the final result. Anything the candidate raises is turned
into a short, useful description by `describe_error`. Before the candidate loads,
torch.compile becomes `candidate.CompileShim` (an identity on CPU), and what it did is
reported as the passed check `functional.torch_compile`. Once the functional checks
pass, the zero-cost proxies (asiarch.engineer.proxies) are measured before any training,
for Validate's "check" job too; they are reported as the passed check
`functional.proxies` and never fail the job.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from typing import Any

import torch

from asiarch.engineer.budgets import Budget
from asiarch.engineer.candidate import CompileShim, load_layer
from asiarch.engineer.corpus import load_corpus
from asiarch.engineer.functional import run_functional_checks
from asiarch.engineer.proxies import measure_proxies
from asiarch.engineer.training import run_mqar, train_language_model

Emit = Callable[[dict[str, Any]], None]
ERROR_TAIL_LINES = 12


def describe_error(exc: BaseException) -> str:
    """The exception and the last frames that point into the candidate's code."""
    if isinstance(exc, MemoryError):
        return "MemoryError: the candidate exceeded the sandbox's memory limit"
    if isinstance(exc, RecursionError):
        return "RecursionError: maximum recursion depth exceeded"
    frames = traceback.format_exception(exc)
    candidate = [f for f in frames if 'File "candidate.py"' in f]
    tail = "".join(candidate[-3:]).rstrip()
    headline = f"{type(exc).__name__}: {exc}"
    text = f"{tail}\n{headline}" if tail else headline
    return "\n".join(text.splitlines()[-ERROR_TAIL_LINES:])


def run(job: dict[str, Any], emit: Emit) -> dict[str, Any]:
    budget = Budget.from_json(job["budget"])
    torch.set_num_threads(int(job.get("threads", 2)))
    torch.manual_seed(budget.seed)
    emit({"type": "progress", "stage": "functional", "message": "loading the candidate"})
    compile_shim = CompileShim.install(budget.device)  # before candidate code runs
    layer_type = load_layer(job["source"], job["class_name"])

    def emit_check(check: dict[str, Any]) -> None:
        emit({"type": "check", "stage": "functional", "check": check})

    checks = run_functional_checks(layer_type, budget, bool(job.get("reference_only")), emit_check)
    if compile_note := compile_shim.report():
        emit_check(compile_note)
        checks.append(compile_note)
    result: dict[str, Any] = {"checks": checks}
    if not all(c["passed"] for c in checks):
        return result
    # One load for the proxies and training; a failed load fails training, as before, not the proxies.
    corpus = functools.cache(functools.partial(load_corpus, job.get("corpus_dir") or None))
    emit({"type": "progress", "stage": "functional", "message": "proxies"})
    proxies, proxy_check = measure_proxies(layer_type, budget, corpus)
    emit_check(proxy_check)
    checks.append(proxy_check)
    result["proxies"] = proxies
    if job["kind"] == "check":
        return result

    emit({"type": "progress", "stage": "training", "message": "loading the corpus"})
    metrics = train_language_model(layer_type, corpus(), budget, emit)
    metrics["proxies"] = proxies
    emit({"type": "progress", "stage": "benchmarks", "message": "multi-query associative recall"})
    metrics["benchmarks"] = run_mqar(layer_type, budget, emit)
    result["metrics"] = metrics
    result["device"] = _device_name(budget.device)
    return result


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return f"cuda: {torch.cuda.get_device_name(torch.device(device))}"
    return f"cpu: {torch.get_num_threads()} threads"
