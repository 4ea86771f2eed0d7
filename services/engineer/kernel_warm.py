"""The engineer's warm step: compile a budget's kernels into the shared kernel cache, in a trusted process.

What runs: each baseline layer (services/engineer/baselines, the engineer's own code, never a
candidate's) in a one-layer LanguageModel, forward and backward under the budget's precision on
its device, at every (batch, length) the evaluation runs: training and validation, MQAR training
and MQAR scoring. Triton compiles and autotunes what those calls hit straight into the shared
folder (TRITON_CACHE_DIR there); a candidate whose kernels match then compiles nothing. What a
candidate calls otherwise (other flags, dtypes, its own kernels) compiles into its overlay.

When: on the first evaluation of a budget's shapes (`KernelWarmer.ready`, awaited inside the
evaluation's slot), not at start: the shapes, device and precision are known only from a request
(the engineer's defaults are `cpu`, while GPU runs name their budget), and a warm that holds the
slot does not compete with an evaluation for the GPU. The first evaluation of a budget waits for
the compile it would otherwise do itself; later ones (and, since the folder persists, later
engineers) find it done. A warm that fails or times out is logged; evaluations then compile as before.

On CPU, or with TRITON_INTERPRET=1, nothing compiles: no process is started.
The process gets a sandbox child's environment (sandbox.child_env) but for TRITON_CACHE_DIR, so what
it compiles has the keys (Triton hashes the cache-relevant variables in) a candidate's would have.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from importlib import resources
from typing import Any

import structlog

from asiarch.common.contract import DEFAULT_CLASS_NAME
from asiarch.common.local import python_command
from asiarch.engineer import sandbox
from asiarch.engineer.budgets import Budget
from asiarch.engineer.kernel_cache import AUTOTUNE_ENV

log = structlog.get_logger("asiarch.engineer.kernel_warm")

STDERR_TAIL_CHARS = 2000


def compiles(device: str) -> bool:
    """Whether Triton compiles for `device` here (on CPU the kernels run in PyTorch or the interpreter)."""
    interpreted = os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")
    return device.startswith("cuda") and not interpreted


def warm_env(home: str, threads: int, shared_dir: str) -> dict[str, str]:
    """A sandbox child's environment, but with Triton's cache the shared folder itself."""
    return {**sandbox.child_env(home, threads), "TRITON_CACHE_DIR": shared_dir, **AUTOTUNE_ENV}


def warm_shapes(budget: Budget) -> list[tuple[int, int]]:
    """Every (batch, length) an evaluation of `budget` runs its model at."""
    from asiarch.engineer.training import EVAL_EXAMPLES

    lengths = [length for length, _ in budget.mqar_settings]
    shapes = {(budget.batch_size, budget.seq_len)}
    shapes |= {(batch, length) for batch in (budget.mqar_batch_size, EVAL_EXAMPLES) for length in lengths}
    return sorted(shapes)


def _signature(budget: Budget) -> tuple[Any, ...]:
    """What decides which kernels a budget compiles: two budgets alike here share one warm."""
    return (budget.device, budget.precision, budget.d_model, budget.n_heads, tuple(warm_shapes(budget)))


class KernelWarmer:
    """Warms each budget's kernels once per engineer, in the background of its first evaluation."""

    def __init__(self, shared_dir: str | None, threads: int) -> None:
        self.shared_dir = shared_dir
        self.threads = threads
        self.tasks: dict[tuple[Any, ...], asyncio.Task[None]] = {}

    async def ready(self, budget: Budget) -> None:
        """Return once `budget`'s kernels are in the shared cache (or warming them failed)."""
        if self.shared_dir is None or not compiles(budget.device):
            return
        key = _signature(budget)
        if key not in self.tasks:
            self.tasks[key] = asyncio.create_task(self._warm(budget, self.shared_dir))
        # Shielded: a cancelled evaluation leaves the warm running for the next one.
        await asyncio.shield(self.tasks[key])

    def close(self) -> None:
        for task in self.tasks.values():
            task.cancel()

    async def _warm(self, budget: Budget, shared_dir: str) -> None:
        """Never raises: a warm that fails costs each evaluation its compile time, nothing else."""
        started = time.monotonic()
        try:
            returncode, out, err = await self._run(budget, shared_dir)
        except OSError as exc:
            returncode, out, err = None, b"", str(exc).encode()
        seconds = round(time.monotonic() - started, 1)
        if returncode == 0:
            summary = out.decode(errors="replace").strip()[-STDERR_TAIL_CHARS:]
            log.info("kernel cache warmed", budget=budget.preset, seconds=seconds, kernels=summary)
        else:
            tail = err.decode(errors="replace")[-STDERR_TAIL_CHARS:]
            log.warning("kernel cache warm failed: evaluations compile their kernels", error=tail)

    async def _run(self, budget: Budget, shared_dir: str) -> tuple[int | None, bytes, bytes]:
        """The warm process's exit code and output; killed at the budget's wall clock or when cancelled."""
        home = tempfile.mkdtemp(prefix="asiarch-kernel-warm-")
        try:
            process = await asyncio.create_subprocess_exec(
                *python_command("-m", __name__, json.dumps(budget.to_json()), isolated=True),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=home,
                env=warm_env(home, self.threads, shared_dir),
            )
            try:
                out, err = await asyncio.wait_for(process.communicate(), budget.wall_clock_seconds)
            except TimeoutError:
                out, err = b"", f"timed out after {budget.wall_clock_seconds:g} s".encode()
            finally:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
        finally:
            shutil.rmtree(home, ignore_errors=True)
        return process.returncode, out, err


def _baseline_layers() -> list[type[Any]]:
    from asiarch.engineer.candidate import load_layer

    folder = resources.files("asiarch.engineer") / "baselines"
    files = sorted(entry for entry in folder.iterdir() if entry.name.endswith(".py"))
    return [load_layer(entry.read_text(), DEFAULT_CLASS_NAME) for entry in files]


def warm(budget: Budget) -> dict[str, int]:
    """Run every baseline at `budget`'s shapes; returns how many kernels compiled and were found cached."""
    import torch
    from triton import knobs

    from asiarch.engineer.training import BYTE_VOCAB, _compile_warmup
    from asiarch.kernels.models import LanguageModel

    counts = {"compiled": 0, "cached": 0}

    def count(*, cache_hit: bool, **_: object) -> None:
        counts["cached" if cache_hit else "compiled"] += 1

    device = torch.device(budget.device)
    knobs.compilation.listener = count
    try:
        for layer in _baseline_layers():
            torch.manual_seed(0)
            model = LanguageModel(layer, BYTE_VOCAB, budget.d_model, 1, budget.n_heads).to(device)
            for batch, length in warm_shapes(budget):
                _compile_warmup(model, dataclasses.replace(budget, batch_size=batch, seq_len=length), device)
    finally:
        knobs.compilation.listener = None
    return counts


def main() -> None:
    budget = Budget.from_json(json.loads(sys.argv[1]))
    os.umask(0o022)  # readable by all: as root, candidates run as `nobody`
    import torch

    if not torch.cuda.is_available():
        sys.exit(f"no CUDA device here for budget device {budget.device!r}")
    print(json.dumps(warm(budget)))


if __name__ == "__main__":
    main()
