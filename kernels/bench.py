"""Kernel benchmark: `asiarch bench kernels` / `make bench-kernels`.

Prints a table and writes it into a markdown file (between markers, so other
benchmarks in that file are kept; kernels/cli.py decides which file). CPU
times are the fastest of repeated runs after a warm-up, CUDA times
`triton.testing.do_bench` medians. Nothing here is asserted: speed is
reported, not tested.

CPU: our chunked PyTorch path against our per-token naive recurrence,
transformers' `torch_chunk_gated_delta_rule` (what Qwen3-Next runs without
FLA) and, when flash-linear-attention is installed, FLA's own pure-PyTorch
references (its Triton kernels need a GPU): the chunked and the per-token one
of each family, whatever their names in fla.ops.<family>.naive. CUDA: our
Triton kernels against FLA's `chunk_*` kernels and
`scaled_dot_product_attention(is_causal=True)` at FLA's benchmark shapes.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

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


def time_ms(fn: Callable[[], object], repeats: int, device: str, warm_up: bool = True) -> float:
    """The fastest of `repeats` runs, in milliseconds.

    The fastest, not the median: on a shared machine other work only ever adds
    time, so the fastest run is the closest to what the code itself costs (the
    reasoning of Python's timeit); a median measures the neighbours too.
    """

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    if warm_up:
        fn()  # and Triton compilation on CUDA
        sync()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        samples.append((time.perf_counter() - start) * 1000)
    return min(samples)


def measure(
    kernel: Kernel, inputs: Inputs, mode: str, repeats: int, device: str, warm_up: bool = True
) -> float:
    if mode == "fwd":

        def forward() -> None:
            with torch.no_grad():
                kernel(inputs)

        return time_ms(forward, repeats, device, warm_up)
    leaves = with_grad(inputs)

    def forward_backward() -> None:
        out = kernel(leaves)
        out.backward(torch.ones_like(out))
        for leaf in leaves.values():
            leaf.grad = None

    return time_ms(forward_backward, repeats, device, warm_up)


def arguments(family: str, x: Inputs) -> dict[str, torch.Tensor | bool]:
    """A family's inputs by keyword: the argument orders differ between functions
    (`naive_recurrent_gated_delta_rule` takes beta before g, in FLA and here), the names do not.

    linear_attn runs without normalisation everywhere, as FLA's references compute it
    (`chunk_linear_attn` itself defaults to normalize=True, in FLA and here).
    """
    qkv: dict[str, torch.Tensor | bool] = {"q": x["q"], "k": x["k"], "v": x["v"]}
    if family == "linear_attn":
        return {**qkv, "normalize": False}
    if family == "simple_gla":
        return {**qkv, "g": x["g"]}
    if family == "delta_rule":
        return {**qkv, "beta": x["beta"]}
    return {**qkv, "g": x["g"], "beta": x["beta"]}


def ours(family: str, form: str = "chunk", **options: object) -> Kernel:
    """Our `<form>_<family>`; `options` add to or override `arguments` (e.g. normalize=True)."""
    fn = getattr(importlib.import_module(f"asiarch.kernels.{family}"), f"{form}_{family}")
    return lambda x: _first(fn(**(arguments(family, x) | options)))


def transformers_gdn() -> Kernel | str:
    try:
        from transformers.models.qwen3_next.modeling_qwen3_next import torch_chunk_gated_delta_rule
    except ImportError as exc:
        return f"transformers not installed ({exc.name})"
    return lambda x: torch_chunk_gated_delta_rule(x["q"], x["k"], x["v"], x["g"], x["beta"])[0]


def real_fla() -> ModuleType | str:
    """flash-linear-attention itself, or why not; never our shim (ASIARCH_FLA_COMPAT) posing as FLA."""
    from asiarch.kernels import fla_compat

    # The benchmark compares with FLA: stand the shim aside in this process
    # (too late once `fla` is imported, hence the version check below).
    fla_compat.uninstall()
    try:
        with warnings.catch_warnings():
            # "Triton is not supported on current platform, roll back to CPU": expected on a CPU.
            warnings.simplefilter("ignore")
            fla = importlib.import_module("fla")
    except ImportError as exc:
        if exc.name == "fla":
            return "flash-linear-attention not installed"
        return f"flash-linear-attention does not import ({exc})"
    if "asiarch" in getattr(fla, "__version__", ""):
        return "only the asiarch FLA shim is importable"
    return fla


def fla_kernel(family: str, **options: object) -> Kernel | str:
    """FLA's Triton `chunk_*` kernel of a family (CUDA), or why not; `options` as in `ours`."""
    fla = real_fla()
    if isinstance(fla, str):
        return fla
    try:
        fn = getattr(importlib.import_module(f"fla.ops.{family}"), f"chunk_{family}")
    except (ImportError, AttributeError):
        return f"FLA {fla.__version__} has no fla.ops.{family}.chunk_{family}"
    return lambda x: _first(fn(**(arguments(family, x) | options)))


# FLA's pure-PyTorch references in fla.ops.<family>.naive (FLA 0.6.0), which
# run on a CPU: (chunked, per-token). Their names follow no single pattern.
FLA_NAIVE = {
    "linear_attn": ("naive_chunk_linear_attn", "naive_recurrent_linear_attn"),
    "simple_gla": ("naive_chunk_simple_gla", "naive_recurrent_simple_gla"),
    "delta_rule": ("delta_rule_chunkwise", "delta_rule_recurrence"),
    "gated_delta_rule": ("naive_chunk_gated_delta_rule", "naive_recurrent_gated_delta_rule"),
}


def fla_naive(family: str, chunked: bool) -> Kernel | str:
    """FLA's chunked (or per-token) pure-PyTorch reference of a family, or why not."""
    fla = real_fla()
    if isinstance(fla, str):
        return fla
    name = FLA_NAIVE[family][0 if chunked else 1]
    try:
        fn = getattr(importlib.import_module(f"fla.ops.{family}.naive"), name)
    except (ImportError, AttributeError):
        return f"FLA {fla.__version__} has no fla.ops.{family}.naive.{name}"
    if family == "delta_rule":
        # The delta-rule references take [B, H, T, D] and beta [B, H, T].
        def heads_first(x: Inputs) -> torch.Tensor:
            q, k, v, beta = (x[n].transpose(1, 2) for n in ("q", "k", "v", "beta"))
            return _first(fn(q, k, v, beta)).transpose(1, 2)

        return heads_first
    return lambda x: _first(fn(**arguments(family, x)))


def _first(result: object) -> torch.Tensor:
    return result[0] if isinstance(result, tuple) else result  # type: ignore[return-value]


FAMILIES = ("linear_attn", "simple_gla", "delta_rule", "gated_delta_rule")
NORMALIZED = "normalize=True"


@dataclass(frozen=True)
class Candidate:
    name: str
    kernel: Kernel | str  # a string says why it is not available
    per_token: bool = False  # a per-token loop: one run, no warm-up
    backward: bool = True  # False: fwd+bwd is not timed


# FLA's per-token references keep every step's state for autograd: one
# forward+backward took 6.5-9.6 s at (1, 4096, 4, 64) on an idle 2-core box and
# 1.5-3.5 minutes on a loaded one (2026-12-04), more than the rest of a full
# run together. Their forward says what they cost.
SLOW_BACKWARD = "fwd+bwd not timed: a per-token backward, seconds to minutes per run"


def cpu_candidates(family: str) -> list[Candidate]:
    """What the CPU table times for one family, in table order."""
    chunked, per_token = FLA_NAIVE[family]
    candidates = [
        Candidate("asiarch chunk (PyTorch)", ours(family)),
        Candidate("asiarch naive recurrence", ours(family, "naive_recurrent"), per_token=True),
        Candidate(f"FLA {chunked}", fla_naive(family, chunked=True)),
        Candidate(f"FLA {per_token}", fla_naive(family, chunked=False), per_token=True, backward=False),
    ]
    if family == "gated_delta_rule":
        candidates.insert(1, Candidate("transformers torch_chunk_gated_delta_rule", transformers_gdn()))
    return candidates


def cpu_rows(repeats: int, quick: bool) -> Iterator[Row]:
    """Each row as soon as it is measured."""
    shapes = CPU_SHAPES[:1] if quick else CPU_SHAPES
    for shape in shapes:
        inputs = make_inputs(shape, torch.float32, "cpu")
        for family in FAMILIES:
            for c in cpu_candidates(family):
                for mode in ("fwd", "fwd+bwd"):
                    if isinstance(c.kernel, str):
                        yield Row(shape, family, c.name, mode, None, c.kernel)
                    elif mode == "fwd+bwd" and not c.backward:
                        yield Row(shape, family, c.name, mode, None, SLOW_BACKWARD)
                    else:
                        # A per-token loop takes seconds and compiles nothing: one run
                        # without a warm-up says enough (and keeps a shared box usable).
                        n, warm_up = (1, False) if c.per_token else (repeats, True)
                        ms, note = attempt(measure, c.kernel, inputs, mode, n, "cpu", warm_up)
                        yield Row(shape, family, c.name, mode, ms, note)


def attempt(timed: Callable[..., float], *args: object) -> tuple[float | None, str]:
    """A time, or None and why: one implementation that refuses an input must not end the benchmark.

    FLA 0.6.0, for one, refuses its gated kernels on Hopper with Triton >= 3.4, < 3.7.1.
    """
    try:
        return timed(*args), ""
    except Exception as exc:  # reported in the table instead
        message = str(exc).splitlines()[0] if str(exc) else ""
        # One line of a markdown table cell: no pipes, bounded length.
        return None, f"failed: {type(exc).__name__}: {message}".replace("|", "/")[:160]


def sdpa() -> Kernel:
    def run(x: Inputs) -> torch.Tensor:
        q, k, v = (x[n].transpose(1, 2) for n in ("q", "k", "v"))
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    return run


def do_bench_ms(kernel: Kernel, inputs: Inputs, mode: str, repeats: int) -> float:
    """`triton.testing.do_bench` median in milliseconds of one forward (no grad) or forward+backward."""
    import triton.testing

    leaves = with_grad(inputs) if mode == "fwd+bwd" else inputs

    def step() -> None:
        if mode == "fwd":
            with torch.no_grad():
                kernel(leaves)
            return
        out = kernel(leaves)
        out.backward(torch.ones_like(out))

    return triton.testing.do_bench(step, rep=max(25, repeats * 10), return_mode="median")


def gpu_candidates(family: str) -> list[tuple[str, Kernel | str]]:
    """What the CUDA table times for one family, in table order (a string says why it is not available).

    Linear attention also as `chunk_linear_attn` runs by default (normalize=True, in FLA and here): the
    normalisation is extra work outside the core, fused kernels here, eager PyTorch ops in FLA.
    """
    candidates = [("asiarch chunk (Triton)", ours(family)), ("FLA chunk", fla_kernel(family))]
    if family == "linear_attn":
        candidates += [
            (f"asiarch chunk (Triton) {NORMALIZED}", ours(family, normalize=True)),
            (f"FLA chunk {NORMALIZED}", fla_kernel(family, normalize=True)),
        ]
    return [*candidates, ("SDPA causal (flash)", sdpa())]


def timed_row(
    shape: tuple[int, int, int, int], family: str, name: str, kernel: Kernel | str, inputs: Inputs,
    mode: str, repeats: int,
) -> Row:  # fmt: skip
    """One CUDA measurement as a table row: the time and achieved bandwidth, or why there is none."""
    if isinstance(kernel, str):
        return Row(shape, family, name, mode, None, kernel)
    ms, note = attempt(do_bench_ms, kernel, inputs, mode, repeats)
    if ms is not None:
        note = _bandwidth_note(shape, ms, mode)
    return Row(shape, family, name, mode, ms, note)


def gpu_rows(repeats: int, quick: bool) -> Iterator[Row]:
    """Each row as soon as it is measured."""
    shapes = GPU_SHAPES[-1:] if quick else GPU_SHAPES
    for shape in shapes:
        inputs = make_inputs(shape, torch.bfloat16, "cuda")
        for family in FAMILIES:
            for name, kernel in gpu_candidates(family):
                for mode in ("fwd", "fwd+bwd"):
                    yield timed_row(shape, family, name, kernel, inputs, mode, repeats)


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
    # Installed distributions, not imported modules: `fla` may be our shim, and
    # importing transformers or FLA only to print a version costs seconds.
    for name in ("triton", "transformers", "flash-linear-attention", "fla-core"):
        try:
            parts.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{name} not installed")
    if device == "cuda":
        hw = torch.cuda.get_device_name()
    else:
        cpu = platform.processor() or platform.machine()
        hw = f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
    return f"{hw}; " + ", ".join(parts)


def render(
    rows: list[Row], device: str, command: str, repeats: int, load: tuple[float, float] | None = None
) -> str:
    lines = [
        f"### Kernels on {device.upper()}",
        "",
        f"- machine: {machine(device)}",
        f"- command: `{command}`",
    ]
    if load is not None:
        # Other work on a shared machine inflates every time, unevenly: say how busy it was.
        lines.append(
            f"- load average (1 min) at the start / end: {load[0]:.1f} / {load[1]:.1f} "
            f"on {os.cpu_count()} cores"
        )
    if device == "cuda":
        method = f"`triton.testing.do_bench` median ({max(25, repeats * 10)} ms of runs after a warm-up)"
    else:
        method = f"fastest of {repeats} runs after a warm-up (per-token recurrences: one run, no warm-up)"
    lines += [
        f"- {method}; milliseconds, lower is better",
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


def relative_speed(ours_ms: float, other_ms: float, other: str) -> str:
    """Our time against another in words: "N× faster", "N× slower", or "about as fast" within 5%."""
    faster = ours_ms <= other_ms
    factor = other_ms / ours_ms if faster else ours_ms / other_ms
    if f"{factor:.1f}" == "1.0":
        return f"asiarch is about as fast as {other}"
    return f"asiarch is {factor:.1f}× {'faster' if faster else 'slower'} than {other}"


def _variant(row: Row) -> tuple[object, ...]:
    """What a row is compared within: shape, family, mode and the option beyond the defaults, if any."""
    return (row.shape, row.family, row.mode, row.implementation.endswith(NORMALIZED))


def _speedups(rows: list[Row]) -> str:
    """Our chunked time against each other implementation on the same shape, family, mode and options."""
    ours_rows = {_variant(r): r for r in rows if r.implementation.startswith("asiarch chunk")}
    out = []
    for row in rows:
        mine = ours_rows.get(_variant(row))
        if row is mine or row.ms is None or mine is None or mine.ms is None:
            continue
        out.append(
            f"- {row.shape} {row.family} {row.mode}: {relative_speed(mine.ms, row.ms, row.implementation)}"
        )
    return "Compared with asiarch chunk:\n\n" + "\n".join(out) if out else ""


def row_line(row: Row) -> str:
    """One measured row as a plain line (what `asiarch bench kernels` prints as it goes)."""
    took = "–" if row.ms is None else f"{row.ms:.3f} ms"
    return f"{row.shape} {row.family} {row.implementation} {row.mode}: {took}" + (
        f" ({row.note})" if row.note else ""
    )


def run(
    device: str,
    quick: bool,
    repeats: int,
    out: Path | None,
    command: str,
    on_row: Callable[[Row], None] = lambda row: None,
) -> str:
    """Measure every row (`on_row` sees each as it finishes), then the table, written to `out`."""
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available on this machine")
    torch.manual_seed(0)
    load_start = os.getloadavg()[0]
    rows = []
    for row in gpu_rows(repeats, quick) if device == "cuda" else cpu_rows(repeats, quick):
        rows.append(row)
        on_row(row)
    text = render(rows, device, command, repeats, (load_start, os.getloadavg()[0]))
    if out is not None:
        write_section(out, f"kernels:{device}", text)
    return text
