"""Kernel benchmark: `asiarch bench kernels` / `make bench-kernels`.

Prints a table and writes it into docs/benchmarks.md (between markers, so
other benchmarks in that file are kept). Times are medians of repeated runs
after a warm-up. Nothing here is asserted: speed is reported, not tested.

CPU: our chunked PyTorch path against the per-token naive recurrence,
transformers' `torch_chunk_gated_delta_rule` (what Qwen3-Next runs without
FLA) and FLA's own `naive_chunk_*` functions when flash-linear-attention is
installed. CUDA: our Triton kernels against FLA's `chunk_*` kernels and
`scaled_dot_product_attention(is_causal=True)` at FLA's benchmark shapes.
"""

from __future__ import annotations

import importlib
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from asiarch.common.markdown import write_section

CPU_SHAPES = [(1, 4096, 4, 64), (4, 2048, 8, 64)]
GPU_SHAPES = [(1, 8192, 96, 128), (2, 16384, 16, 128), (4, 2048, 16, 128), (4, 4096, 64, 128),
              (8, 2048, 32, 256), (8, 1024, 8, 64)]  # fmt: skip

Inputs = dict[str, torch.Tensor]
Kernel = Callable[[Inputs], torch.Tensor]


@dataclass(frozen=True)
class Row:
    shape: tuple[int, int, int, int]
    family: str
    implementation: str
    mode: str  # "fwd" or "fwd+bwd"
    ms: float | None  # None: not available, see note
    note: str = ""


def make_inputs(shape: tuple[int, int, int, int], dtype: torch.dtype, device: str) -> Inputs:
    b, t, h, d = shape
    q = torch.randn(b, t, h, d, dtype=dtype, device=device)
    k = F.normalize(torch.randn(b, t, h, d, dtype=torch.float32, device=device), dim=-1).to(dtype)
    v = torch.randn(b, t, h, d, dtype=dtype, device=device)
    beta = torch.rand(b, t, h, dtype=dtype, device=device).sigmoid()
    g = F.logsigmoid(torch.randn(b, t, h, dtype=torch.float32, device=device))
    return {"q": q, "k": k, "v": v, "beta": beta, "g": g}


def with_grad(inputs: Inputs) -> Inputs:
    return {name: x.detach().clone().requires_grad_(True) for name, x in inputs.items()}


def time_ms(fn: Callable[[], object], repeats: int, device: str) -> float:
    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    fn()  # warm-up (and Triton compilation on CUDA)
    sync()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def measure(kernel: Kernel, inputs: Inputs, mode: str, repeats: int, device: str) -> float:
    if mode == "fwd":

        def forward() -> None:
            with torch.no_grad():
                kernel(inputs)

        return time_ms(forward, repeats, device)
    leaves = with_grad(inputs)

    def forward_backward() -> None:
        out = kernel(leaves)
        out.backward(torch.ones_like(out))
        for leaf in leaves.values():
            leaf.grad = None

    return time_ms(forward_backward, repeats, device)


def ours(family: str, form: str = "chunk") -> Kernel:
    module = importlib.import_module(f"asiarch.kernels.{family}")
    fn = getattr(module, f"{form}_{family}")
    if family == "linear_attn":
        return lambda x: fn(x["q"], x["k"], x["v"])[0]
    if family == "simple_gla":
        return lambda x: fn(x["q"], x["k"], x["v"], g=x["g"])[0]
    if family == "delta_rule":
        return lambda x: fn(x["q"], x["k"], x["v"], x["beta"])[0]
    return lambda x: fn(x["q"], x["k"], x["v"], x["g"], x["beta"])[0]


def transformers_gdn() -> Kernel | str:
    try:
        from transformers.models.qwen3_next.modeling_qwen3_next import torch_chunk_gated_delta_rule
    except ImportError as exc:
        return f"transformers not installed ({exc.name})"
    return lambda x: torch_chunk_gated_delta_rule(x["q"], x["k"], x["v"], x["g"], x["beta"])[0]


def fla_kernel(family: str, naive: bool) -> Kernel | str:
    """FLA's own implementation; never our shim (ASIARCH_FLA_COMPAT) posing as FLA."""
    try:
        fla = importlib.import_module("fla")
    except ImportError:
        return "flash-linear-attention not installed"
    if "asiarch" in getattr(fla, "__version__", ""):
        return "only the asiarch FLA shim is installed"
    name = f"naive_chunk_{family}" if naive else f"chunk_{family}"
    module_name = f"fla.ops.{family}.naive" if naive else f"fla.ops.{family}"
    try:
        fn = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        return f"FLA has no {module_name}.{name}"
    if family == "linear_attn":
        return lambda x: _first(fn(x["q"], x["k"], x["v"]))
    if family == "simple_gla":
        return lambda x: _first(fn(x["q"], x["k"], x["v"], g=x["g"]))
    if family == "delta_rule":
        return lambda x: _first(fn(x["q"], x["k"], x["v"], x["beta"]))
    return lambda x: _first(fn(x["q"], x["k"], x["v"], x["g"], x["beta"]))


def _first(result: object) -> torch.Tensor:
    return result[0] if isinstance(result, tuple) else result  # type: ignore[return-value]


FAMILIES = ("linear_attn", "simple_gla", "delta_rule", "gated_delta_rule")


def cpu_rows(repeats: int, quick: bool) -> list[Row]:
    rows = []
    shapes = CPU_SHAPES[:1] if quick else CPU_SHAPES
    for shape in shapes:
        inputs = make_inputs(shape, torch.float32, "cpu")
        for family in FAMILIES:
            candidates: list[tuple[str, Kernel | str]] = [
                ("asiarch chunk (PyTorch)", ours(family)),
                ("naive recurrence", ours(family, "naive_recurrent")),
                ("FLA naive_chunk", fla_kernel(family, naive=True)),
            ]
            if family == "gated_delta_rule":
                candidates.insert(1, ("transformers torch_chunk_gated_delta_rule", transformers_gdn()))
            for name, kernel in candidates:
                for mode in ("fwd", "fwd+bwd"):
                    if isinstance(kernel, str):
                        rows.append(Row(shape, family, name, mode, None, kernel))
                        continue
                    # The per-token recurrence is slow; one timed run says enough.
                    n = 1 if name == "naive recurrence" else repeats
                    rows.append(Row(shape, family, name, mode, measure(kernel, inputs, mode, n, "cpu")))
    return rows


def sdpa() -> Kernel:
    def run(x: Inputs) -> torch.Tensor:
        q, k, v = (x[n].transpose(1, 2) for n in ("q", "k", "v"))
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    return run


def gpu_rows(repeats: int, quick: bool) -> list[Row]:
    import triton.testing

    rows = []
    shapes = GPU_SHAPES[-1:] if quick else GPU_SHAPES
    for shape in shapes:
        inputs = make_inputs(shape, torch.bfloat16, "cuda")
        for family in FAMILIES:
            candidates: list[tuple[str, Kernel | str]] = [
                ("asiarch chunk (Triton)", ours(family)),
                ("FLA chunk", fla_kernel(family, naive=False)),
                ("SDPA causal (flash)", sdpa()),
            ]
            for name, kernel in candidates:
                for mode in ("fwd", "fwd+bwd"):
                    if isinstance(kernel, str):
                        rows.append(Row(shape, family, name, mode, None, kernel))
                        continue
                    leaves = with_grad(inputs) if mode == "fwd+bwd" else inputs

                    def step(kernel: Kernel = kernel, leaves: Inputs = leaves, mode: str = mode) -> None:
                        if mode == "fwd":
                            with torch.no_grad():
                                kernel(leaves)
                            return
                        out = kernel(leaves)
                        out.backward(torch.ones_like(out))

                    ms = triton.testing.do_bench(step, rep=max(25, repeats * 10), return_mode="median")
                    rows.append(Row(shape, family, name, mode, ms, _bandwidth_note(shape, ms, mode)))
    return rows


def _bandwidth_note(shape: tuple[int, int, int, int], ms: float, mode: str) -> str:
    # Lower bound on HBM traffic: read q, k, v, g, beta and write o once (bf16),
    # three times that with the backward pass; reported as achieved TB/s.
    b, t, h, d = shape
    elements = b * t * h * (4 * d + 2)
    factor = 3 if mode == "fwd+bwd" else 1
    tbps = factor * elements * 2 / (ms / 1000) / 1e12
    return f"≥ {tbps:.2f} TB/s"


def machine(device: str) -> str:
    parts = [f"Python {platform.python_version()}", f"torch {torch.__version__}"]
    for name in ("triton", "transformers", "fla"):
        try:
            parts.append(f"{name} {importlib.import_module(name).__version__}")
        except ImportError:
            parts.append(f"{name} not installed")
    if device == "cuda":
        hw = torch.cuda.get_device_name()
    else:
        cpu = platform.processor() or platform.machine()
        hw = f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
    return f"{hw}; " + ", ".join(parts)


def render(rows: list[Row], device: str, command: str, repeats: int) -> str:
    lines = [
        f"### Kernels on {device.upper()}",
        "",
        f"- machine: {machine(device)}",
        f"- command: `{command}`",
        f"- median of {repeats} runs after a warm-up (naive recurrence: one run); "
        "milliseconds, lower is better",
        "",
        "| shape (B,T,H,D) | family | implementation | fwd ms | fwd+bwd ms | note |",
        "|---|---|---|---:|---:|---|",
    ]
    grouped: dict[tuple[object, ...], dict[str, Row]] = {}
    for row in rows:
        grouped.setdefault((row.shape, row.family, row.implementation), {})[row.mode] = row
    for (shape, family, implementation), modes in grouped.items():
        fwd, both = modes.get("fwd"), modes.get("fwd+bwd")
        note = (both or fwd).note if (both or fwd) else ""  # type: ignore[union-attr]
        lines.append(f"| {shape} | {family} | {implementation} | {_fmt(fwd)} | {_fmt(both)} | {note} |")
    lines += ["", _speedups(rows)]
    return "\n".join(lines) + "\n"


def _fmt(row: Row | None) -> str:
    return "n/a" if row is None or row.ms is None else f"{row.ms:.1f}"


def _speedups(rows: list[Row]) -> str:
    """Our time against each other implementation on the same shape, family and mode."""
    ours_rows = {(r.shape, r.family, r.mode): r for r in rows if r.implementation.startswith("asiarch")}
    out = []
    for row in rows:
        mine = ours_rows.get((row.shape, row.family, row.mode))
        if row.implementation.startswith("asiarch") or row.ms is None or mine is None or mine.ms is None:
            continue
        out.append(
            f"- {row.shape} {row.family} {row.mode}: asiarch is {row.ms / mine.ms:.1f}× faster "
            f"than {row.implementation}"
        )
    return "Speed-ups:\n\n" + "\n".join(out) if out else ""


def run(device: str, quick: bool, repeats: int, out: Path | None, command: str) -> str:
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available on this machine")
    torch.manual_seed(0)
    rows = gpu_rows(repeats, quick) if device == "cuda" else cpu_rows(repeats, quick)
    text = render(rows, device, command, repeats)
    if out is not None:
        write_section(out, f"kernels:{device}", text)
    return text
