"""One-shot device check: `make gpu-check OUT=DIR`, or `python3 -P kernels/gpu_check.py --out DIR`.

Built for a fresh GPU machine that is lent for minutes, whose Python has torch, Triton, transformers
and einops but nothing else of ours and no network. What it guarantees:

- Every result lands under `--out` as soon as it exists: each step appends JSON lines row by row
  (flushed), `steps.jsonl` gets one line per finished step, and `summary.md` is rewritten after
  every step, so a machine taken back mid-run still leaves what was measured.
- One failing step never stops the others: each runs in its own process (a crash, a CUDA error or a
  hang stays there) and is recorded `ok`, `failed` (exit status and log file) or `skipped` (why).
- It stops within the time budget (`--budget-seconds`, default 480): steps check it between rows and
  a step still running at the end is ended (SIGINT, then SIGKILL of its process group).

Steps, in order:
1. install: a virtual environment under `--work` (a temporary folder by default, never `--out`) that
   sees this interpreter's packages, with the wheels of `--wheels` (`make gpu-wheels` downloads
   them) and asiarch itself built from a copy of this checkout's package folders (no editable
   install: the engineer's sandbox runs `python -I`, which ignores PYTHONPATH, so asiarch must sit in a
   site directory of the interpreter the engineer runs on).
2. machine: device name and versions (machine.json).
3. accuracy: each family's chunked kernel (Triton on CUDA, in bf16; the PyTorch path on CPU, in fp32)
   forward and every gradient against our per-token recurrence in float64 on the same rounded inputs,
   as relative RMS next to FLA's tolerance (accuracy.jsonl).
   Linear attention also with normalize=True (its default; the fused normaliser) on positive features.
4. bench: ours vs FLA's chunk kernels vs causal SDPA, fwd and fwd+bwd, at the issue's shape first
   and then FLA's benchmark shapes (bench.jsonl), measured by kernels/bench.py's own code; after each
   shape, the configs our autotuned kernels picked (autotune.jsonl: does the head count change one?).
5. evaluate: `asiarch evaluate services/engineer/baselines/deltanet.py --budget gpu --device cuda
   --json` end to end (evaluate.json, its log in evaluate.log).

The top level imports only the standard library (it runs before anything is installed); torch and
asiarch are imported inside the steps, which run in the prepared environment as
`python -P -m asiarch.kernels.gpu_check --step NAME`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import venv
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

REPO = Path(__file__).resolve().parents[1]
STEPS = ("install", "machine", "accuracy", "bench", "evaluate")
FAMILIES = ("linear_attn", "simple_gla", "delta_rule", "gated_delta_rule")
# FLA's correctness tolerances (relative RMS), per output or gradient; "*" for the rest.
TOLERANCES: dict[str, dict[str, float]] = {
    "linear_attn": {"*": 1e-3},
    "simple_gla": {"*": 5e-3},
    "delta_rule": {"o": 6e-3, "*": 8e-3},
    "gated_delta_rule": {"o": 5e-3, "dbeta": 2e-2, "dg": 2e-2, "*": 8e-3},
}
# What the accuracy step checks: (row label, family, options beyond bench.arguments). Linear attention also as
# chunk_linear_attn runs by default (normalize=True: the fused normaliser), on positive features (elu + 1)
# so that <q_t, sum k_s> stays away from 0, as a feature map keeps it in use.
ACCURACY_CASES: list[tuple[str, str, dict[str, Any]]] = [
    *((family, family, {}) for family in FAMILIES),
    ("linear_attn normalize=True", "linear_attn", {"normalize": True}),
]
# FLA's odd-size test shapes: a ragged T with a head dim that is no power of two, and a longer T.
ACCURACY_SHAPES = [(2, 500, 3, 60), (2, 1000, 3, 128)]
# The shape for every family first (the rows it asks about), then FLA's benchmark shapes: head dim 128
# first (those kernels are compiled by then), then 64 and 256, each group smallest first.
BENCH_SHAPES = [(32, 2048, 4, 128), (4, 2048, 16, 128), (2, 16384, 16, 128), (1, 8192, 96, 128),
                (4, 4096, 64, 128), (8, 1024, 8, 64), (8, 2048, 32, 256)]  # fmt: skip
QUICK_SHAPES = [(1, 37, 2, 12)]  # --quick: tiny, ragged T, head dim no power of two
BASELINE = Path("services/engineer/baselines/deltanet.py")
# The packages the device machine already has: never carried, and their own dependencies not followed.
PROVIDED = {"torch", "triton", "transformers", "einops"}
# Carried beyond asiarch's runtime: FLA to compare with, setuptools to build asiarch there.
EXTRA_WHEELS = ("flash-linear-attention", "fla-core", "setuptools")
GRACE_SECONDS = 20  # after SIGINT, for a step's own clean-up (the evaluation stops its engineer)
# The most of the total budget a step may take, so the later steps get their turn; evaluate gets the rest.
# A step stops between rows at its share; one row may run over (a first call compiles and autotunes).
STEP_SHARES = {"machine": 0.05, "accuracy": 0.25, "bench": 0.4}
ROW_OVERRUN_SECONDS = 60


class JsonLines:
    """Appends one JSON object per line and flushes it: a killed run keeps every finished row."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
            handle.flush()


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------------
# Step 1: the environment (runs in the machine's own Python; standard library and pip only)


def base_site_dirs() -> list[str]:
    """The site directories this interpreter reads (a system Python's dist-packages or a venv's)."""
    return [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]


def create_environment(work: Path) -> tuple[Path, Path]:
    """A venv whose own site directory comes first and that also sees this interpreter's packages.

    `--system-site-packages` would only add the base installation's, which misses torch when this
    interpreter is itself a venv; a .pth line that adds each of our site directories works for both,
    and for `python -I` children too (they still read .pth files).
    """
    env = work / "env"
    venv.EnvBuilder(with_pip=False, symlinks=True, clear=True).create(env)
    python = env / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    site_dir = Path(purelib)
    lines = [f"import site; site.addsitedir({p!r})\n" for p in base_site_dirs()]
    (site_dir / "zz-gpu-check-base.pth").write_text("".join(lines))
    return python, site_dir


def package_sources(repo: Path, dest: Path) -> Path:
    """A copy of what building asiarch reads (pyproject's package folders, setup.py, README), so the build
    writes its build/ and egg-info there and never into the checkout."""
    config = tomllib.loads((repo / "pyproject.toml").read_text())
    folders = set(config["tool"]["setuptools"]["package-dir"].values())
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.rmtree(dest, ignore_errors=True)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / name, dest / name)
    for folder in sorted(folders):
        shutil.copytree(repo / folder, dest / folder, ignore=ignore, dirs_exist_ok=True)
    return dest


def pip_install(python: Path, site_dir: Path, targets: list[str], log: Path) -> None:
    # --upgrade: a later install may bring a folder an earlier one made (bin/); --target keeps it otherwise.
    command = [str(python), "-m", "pip", "install", "--no-index", "--no-deps", "--no-build-isolation",
               "--disable-pip-version-check", "--upgrade", "--target", str(site_dir), *targets]  # fmt: skip
    with log.open("a") as handle:
        handle.write(f"$ {' '.join(command)}\n")
        handle.flush()
        subprocess.run(command, check=True, stdout=handle, stderr=subprocess.STDOUT)


def install(work: Path, wheels: Path | None, repo: Path, log: Path) -> tuple[Path, list[str]]:
    """The environment's interpreter and what went wrong on the way (empty when nothing did)."""
    python, site_dir = create_environment(work)
    problems = []
    found = sorted(str(w) for w in wheels.glob("*.whl")) if wheels else []
    if not found:
        problems.append(f"no wheels in {wheels}" if wheels else "no --wheels folder given")
    else:
        with contextlib.suppress(subprocess.CalledProcessError):
            pip_install(python, site_dir, found, log)
            found = []
        if found:
            problems.append(f"installing the wheels of {wheels} failed (see {log.name})")
    try:
        pip_install(python, site_dir, [str(package_sources(repo, work / "src"))], log)
    except subprocess.CalledProcessError:
        problems.append(f"building asiarch from this checkout failed (see {log.name})")
    return python, problems


# ---------------------------------------------------------------------------------------------------
# `--list-wheels` (run here, in the project's venv): what the device machine needs carried


# "    # via pydantic", "    #   asiarch (pyproject.toml)"; a bare "    # via" names nothing.
VIA = re.compile(r"^    #(?: via)? +(?!via$)([A-Za-z0-9][A-Za-z0-9._-]*)")


def lock_graph(lock_text: str) -> tuple[dict[str, str], dict[str, set[str]]]:
    """Each pinned package's version, and what pulled it in, from pip-compile's `# via` comments."""
    pins: dict[str, str] = {}
    via: dict[str, set[str]] = {}
    current = ""
    for line in lock_text.splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name, version = line.split(";")[0].strip().split("==")
            current = _canonical(name)
            pins[current], via[current] = version, set()
        elif current and (parent := VIA.match(line)):
            via[current].add(_canonical(parent[1]))
    return pins, via


def _canonical(name: str) -> str:
    # PEP 503 normalisation, what pip-compile writes and pip reads.
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def wheel_pins(repo: Path = REPO) -> list[str]:
    """`name==version` from requirements.lock for everything `asiarch evaluate` imports beyond what the
    device provides: the runtime dependencies and the engineer extra and what they pulled into the lock,
    FLA and setuptools; never PROVIDED nor anything only they pulled in."""
    pins, via = lock_graph((repo / "requirements.lock").read_text())
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    roots = [*project["dependencies"], *EXTRA_WHEELS]
    for requirement in project["optional-dependencies"]["engineer"]:
        # asiarch[kernels]: torch, triton and einops, all provided
        if not requirement.startswith("asiarch["):
            roots.append(requirement)
    needed = {_canonical(re.split(r"[<>=!~\[;@ ]", r, maxsplit=1)[0]) for r in roots} - PROVIDED
    while grown := {n for n, parents in via.items() if parents & needed and n not in PROVIDED} - needed:
        needed |= grown
    unpinned = sorted(needed - pins.keys())
    if unpinned:
        raise SystemExit(f"not pinned in requirements.lock: {', '.join(unpinned)}")
    return sorted(f"{name}=={pins[name]}" for name in needed)


# ---------------------------------------------------------------------------------------------------
# Steps 2-4: run inside the environment (`python -P -m asiarch.kernels.gpu_check --step NAME`)


def machine_step(out: Path, device: str) -> None:
    import torch

    from asiarch.kernels import bench

    info = {"device": device, "machine": bench.machine(device), "torch": torch.__version__}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    (out / "machine.json").write_text(json.dumps(info, indent=1) + "\n")


def family_errors(
    family: str, shape: tuple[int, int, int, int], device: str, options: dict[str, Any] | None = None
) -> dict[str, float]:
    """Relative RMS of our chunked kernel's output and gradients against the float64 recurrence."""
    import torch
    import torch.nn.functional as F

    from asiarch.kernels import bench
    from asiarch.kernels.testing import error_ratio

    options = options or {}
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    x = bench.make_inputs(shape, dtype, device)
    if options.get("normalize"):
        x |= {n: (F.elu(x[n].float()) + 1).to(dtype) for n in ("q", "k")}
    used = [n for n, v in bench.arguments(family, x).items() if isinstance(v, torch.Tensor)]
    leaves = bench.with_grad({n: x[n] for n in used})
    # The reference starts from the same rounded inputs: only the kernel's own arithmetic is measured.
    exact = {n: t.detach().double().requires_grad_(True) for n, t in leaves.items()}
    out = bench.ours(family, **options)(leaves)
    reference = bench.ours(family, "naive_recurrent", **options)(exact)
    grad = torch.randn_like(reference)
    out.backward(grad.to(out.dtype))
    reference.backward(grad)
    errors = {"o": error_ratio(reference, out)}
    for n in used:
        errors[f"d{n}"] = error_ratio(exact[n].grad, leaves[n].grad)  # type: ignore[arg-type]
    return errors


def accuracy_step(out: Path, device: str, quick: bool, deadline: float) -> None:
    import torch

    rows = JsonLines(out / "accuracy.jsonl")
    dtype = "bf16" if device == "cuda" else "fp32"
    for shape in QUICK_SHAPES if quick else ACCURACY_SHAPES:
        for label, family, options in ACCURACY_CASES:
            base = {"family": label, "shape": list(shape), "dtype": dtype, "device": device}
            if time.time() > deadline:
                rows.write({**base, "skipped": "time budget spent"})
                continue
            torch.manual_seed(0)
            try:
                errors = family_errors(family, shape, device, options)
            except Exception as exc:  # one family's failure is a row, not the end of the step
                rows.write({**base, "error": f"{type(exc).__name__}: {exc}"[:300]})
                continue
            for tensor, ratio in errors.items():
                tolerance = TOLERANCES[family].get(tensor, TOLERANCES[family]["*"])
                rows.write({**base, "tensor": tensor, "rel_rms": ratio, "tolerance": tolerance,
                            "passed": ratio <= tolerance})  # fmt: skip


def bench_candidates(family: str, device: str) -> list[tuple[str, Any]]:
    """(name, kernel or why not) per implementation of a family; SDPA is timed once per shape instead."""
    from asiarch.kernels import bench

    if device == "cuda":
        return [c for c in bench.gpu_candidates(family) if not c[0].startswith("SDPA")]
    return [("asiarch chunk (PyTorch)", bench.ours(family)), ("FLA chunk", "FLA's Triton kernels need CUDA")]


def bench_row(
    shape: tuple[int, int, int, int], family: str, name: str, kernel: Any, inputs: Any, mode: str,
    device: str, repeats: int,
) -> dict[str, Any]:  # fmt: skip
    """One measurement; `seconds` is its wall time, compilation and autotuning included."""
    import dataclasses

    from asiarch.kernels import bench

    start = time.perf_counter()
    if device == "cuda":
        row = bench.timed_row(shape, family, name, kernel, inputs, mode, repeats)
    elif isinstance(kernel, str):
        row = bench.Row(shape, family, name, mode, None, kernel)
    else:
        ms, note = bench.attempt(bench.measure, kernel, inputs, mode, repeats, device)
        row = bench.Row(shape, family, name, mode, ms, note)
    return {**dataclasses.asdict(row), "seconds": round(time.perf_counter() - start, 2)}


def tuned_configs() -> list[dict[str, Any]]:
    """What each of our autotuned kernels picked so far: one row per kernel and key (empty off CUDA,
    where there is one config and nothing is tuned)."""
    import triton

    from asiarch.kernels.common import triton_chunk_bwd, triton_chunk_fwd, triton_normalize

    rows = []
    for module in (triton_chunk_fwd, triton_chunk_bwd, triton_normalize):
        for name, tuner in vars(module).items():
            if isinstance(tuner, triton.runtime.Autotuner):
                for key, config in tuner.cache.items():
                    named = dict(zip(tuner.keys, map(str, key), strict=False))
                    dtypes = [str(k) for k in key[len(tuner.keys) :]]
                    rows.append({"kernel": name, "key": named, "dtypes": dtypes, "config": str(config)})
    return rows


def head_sensitive(rows: list[dict[str, Any]]) -> tuple[int, list[str]]:
    """Whether the head count H changes a kernel's best config: (how many kernel keys were tuned at
    more than one H, the ones among them whose best config differed), from autotune.jsonl rows."""
    by_rest: dict[str, dict[str, str]] = {}
    for r in rows:
        rest = json.dumps([r["kernel"], {k: v for k, v in r["key"].items() if k != "H"}, r["dtypes"]])
        by_rest.setdefault(rest, {})[r["key"].get("H", "")] = r["config"]
    several = {rest: configs for rest, configs in by_rest.items() if len(configs) > 1}
    differ = [f"{rest}: {configs}" for rest, configs in several.items() if len(set(configs.values())) > 1]
    return len(several), differ


def bench_step(out: Path, device: str, quick: bool, deadline: float, repeats: int) -> None:
    import torch

    from asiarch.kernels import bench

    rows = JsonLines(out / "bench.jsonl")
    tuned, seen = JsonLines(out / "autotune.jsonl"), set()
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    for shape in QUICK_SHAPES if quick else BENCH_SHAPES:
        torch.manual_seed(0)
        inputs = bench.make_inputs(shape, dtype, device)
        plan = [(f, n, k) for f in FAMILIES for n, k in bench_candidates(f, device)]
        plan.append(("attention", "SDPA causal", bench.sdpa()))
        for family, name, kernel in plan:
            for mode in ("fwd", "fwd+bwd"):
                if time.time() > deadline:
                    rows.write(
                        {"shape": list(shape), "skipped": "time budget spent; later rows not measured"}
                    )
                    return
                rows.write(bench_row(shape, family, name, kernel, inputs, mode, device, repeats))
        for row in tuned_configs() if device == "cuda" else []:
            if (entry := json.dumps(row, sort_keys=True)) not in seen:
                seen.add(entry)
                tuned.write(row)
        del inputs
        if device == "cuda":
            torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------------
# The driver (runs in the machine's own Python)


class Check:
    """The run's folder, clock and step log."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out: Path = args.out
        self.deadline = time.time() + args.budget_seconds
        self.steps = JsonLines(self.out / "steps.jsonl")

    def left(self) -> float:
        return self.deadline - time.time()

    def step_deadline(self, step: str) -> float:
        """When a step should stop starting rows: its share of the budget, never past the whole."""
        share = STEP_SHARES.get(step)
        own = time.time() + share * self.args.budget_seconds if share else self.deadline
        return min(own, self.deadline - GRACE_SECONDS)

    def step_timeout(self, step: str) -> float:
        """When a step is ended: a row's overrun after its deadline, never past the whole budget."""
        overrun = ROW_OVERRUN_SECONDS if step in STEP_SHARES else GRACE_SECONDS
        return min(self.step_deadline(step) + overrun, self.deadline) - time.time()

    def record(self, step: str, status: str, seconds: float, detail: str = "") -> None:
        self.steps.write({"step": step, "status": status, "seconds": round(seconds, 1), "detail": detail})
        write_summary(self.out)


def run_process(
    command: list[str], stdout: TextIO, stderr: TextIO, timeout: float, env: dict[str, str] | None = None
) -> int | str:
    """The exit status, or "timeout" once it had to be ended (SIGINT, then SIGKILL of its process group)."""
    process = subprocess.Popen(
        command, stdout=stdout, stderr=stderr, cwd=REPO, start_new_session=True, env=env
    )
    try:
        return process.wait(timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)  # lets an evaluation stop its engineer and sandbox
    try:
        process.wait(timeout=GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return "timeout"


def step_command(check: Check, python: Path, step: str) -> tuple[list[str], str]:
    """The command of a step and the file its stdout goes to (its stderr goes to STEP.log)."""
    a = check.args
    if step == "evaluate":
        command = [str(python), "-P", "-m", "asiarch.common.cli", "evaluate", str(a.evaluate_file),
                   "--budget", a.evaluate_budget or ("gpu" if a.device == "cuda" else "smoke"),
                   "--device", a.device, "--json"]  # fmt: skip
        return command, "evaluate.json"
    command = [str(python), "-P", "-m", "asiarch.kernels.gpu_check", "--step", step, "--out", str(check.out),
               "--device", a.device, "--deadline", str(check.step_deadline(step)),
               "--repeats", str(a.repeats)]  # fmt: skip
    return command + (["--quick"] if a.quick else []), f"{step}.log"


def run_step(check: Check, python: Path, step: str) -> bool:
    if check.left() < 5:
        check.record(step, "skipped", 0, "time budget spent")
        return False
    command, stdout_name = step_command(check, python, step)
    env = None
    if step == "evaluate" and not check.args.strict_sandbox:
        # The check evaluates our own baseline, trusted code: a layer of isolation the machine cannot set up
        # (cgroups in a container, say) must not cost the only GPU run; what was enforced is in evaluate.json.
        env = {**os.environ, "ASIARCH_ENGINEER_SANDBOX_UNSAFE": "1"}
    start = time.time()
    with (check.out / stdout_name).open("w") as stdout, (check.out / f"{step}.log").open("a") as stderr:
        status = run_process(command, stdout, stderr, check.step_timeout(step), env)
    seconds = time.time() - start
    if status == 0:
        check.record(step, "ok", seconds)
        return True
    why = "ended at the time budget" if status == "timeout" else f"exit status {status}"
    check.record(step, "failed", seconds, f"{why}; see {step}.log")
    return False


def install_step(check: Check, work: Path) -> tuple[Path, bool]:
    """The interpreter the later steps run on (the new environment's, or this one if it could not be made)
    and whether everything was installed."""
    start, a = time.time(), check.args
    try:
        python, problems = install(work, a.wheels, REPO, check.out / "install.log")
    except Exception as exc:  # the later steps still run, on this interpreter
        check.record("install", "failed", time.time() - start, f"{type(exc).__name__}: {exc}"[:300])
        return Path(sys.executable), False
    check.record("install", "failed" if problems else "ok", time.time() - start, "; ".join(problems))
    return python, not problems


@contextlib.contextmanager
def work_folder(given: Path | None) -> Iterator[Path]:
    """`--work`, kept; or a temporary folder, removed at the end."""
    if given is not None:
        yield given
        return
    temporary = Path(tempfile.mkdtemp(prefix="asiarch-gpu-check-"))
    temporary.chmod(0o755)  # mkdtemp's 0700 would hide the environment from the sandbox's `nobody`
    try:
        yield temporary
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def run_check(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    check = Check(args)
    steps = [s for s in STEPS if s in args.steps.split(",")]
    python, passed = args.python or Path(sys.executable), [True]
    with work_folder(args.work) as work:
        if "install" in steps and args.python is None:
            python, installed = install_step(check, work)
            passed = [installed]
        passed += [run_step(check, python, step) for step in steps if step != "install"]
    write_summary(check.out)
    return 0 if all(passed) else 1


# ---------------------------------------------------------------------------------------------------
# summary.md (standard library only: it is written after every step, whatever was installed)


def _accuracy_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| family | shape (B,T,H,D) | dtype | tensor | rel. RMS | FLA tolerance | |"]
    lines.append("|---|---|---|---|---:|---:|---|")
    for r in rows:
        shape = tuple(r["shape"])
        if "rel_rms" in r:
            mark = "pass" if r["passed"] else "**FAIL**"
            lines.append(f"| {r['family']} | {shape} | {r['dtype']} | {r['tensor']} | {r['rel_rms']:.2e} "
                         f"| {r['tolerance']:.0e} | {mark} |")  # fmt: skip
        else:
            lines.append(
                f"| {r['family']} | {shape} | {r['dtype']} | | | | {r.get('error') or r.get('skipped')} |"
            )
    return lines


def _bench_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| shape (B,T,H,D) | family | implementation | mode | ms | wall s | note |"]
    lines.append("|---|---|---|---|---:|---:|---|")
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {tuple(r['shape'])} | | | | | | {r['skipped']} |")
            continue
        ms = "n/a" if r["ms"] is None else f"{r['ms']:.3f}"
        lines.append(f"| {tuple(r['shape'])} | {r['family']} | {r['implementation']} | {r['mode']} | {ms} "
                     f"| {r['seconds']} | {r['note']} |")  # fmt: skip
    return lines


def _evaluate_lines(out: Path) -> list[str]:
    try:
        result = json.loads((out / "evaluate.json").read_text())
    except (OSError, ValueError):
        return ["no result (see evaluate.log)"]
    metrics = result.get("metrics", {})
    keys = ("val_loss", "bits_per_byte", "tokens_per_second", "parameters")
    # protobuf's JSON writes 64-bit integers as strings
    parts = [f"{k} {_number(float(metrics[k]))}" for k in keys if k in metrics]
    wall = float(result.get("wall_seconds", 0))
    status = f"status {result.get('status')}, {wall:.1f} s on {result.get('device')}"
    return [f"{status}; " + ", ".join(parts), f"reason: {result.get('failure_reason') or '-'}"]


def _number(value: float) -> str:
    return f"{int(value):,}" if value.is_integer() else f"{value:.4g}"


def write_summary(out: Path) -> None:
    machine = json.loads((out / "machine.json").read_text()) if (out / "machine.json").exists() else {}
    lines = ["# GPU check", "", f"- machine: {machine.get('machine', 'not recorded (see machine.log)')}", ""]
    lines += ["## Steps", "", "| step | status | seconds | detail |", "|---|---|---:|---|"]
    lines += [
        f"| {s['step']} | {s['status']} | {s['seconds']} | {s['detail']} |"
        for s in read_rows(out / "steps.jsonl")
    ]
    lines += [
        "",
        "## Accuracy (vs float64 recurrence)",
        "",
        *_accuracy_lines(read_rows(out / "accuracy.jsonl")),
    ]
    lines += [
        "",
        "## Bench (ms: CUDA `do_bench` median, CPU fastest run; wall s: compilation included)",
        "",
        *_bench_lines(read_rows(out / "bench.jsonl")),
    ]
    lines += ["", "## Autotune: does the head count change the best config?", "", _autotune_line(out)]
    lines += ["", "## asiarch evaluate", "", *_evaluate_lines(out), ""]
    (out / "summary.md").write_text("\n".join(lines))


def _autotune_line(out: Path) -> str:
    rows = read_rows(out / "autotune.jsonl")
    several, differ = head_sensitive(rows)
    if not several:
        return f"{len(rows)} tuned kernel keys; none was tuned at more than one head count (autotune.jsonl)"
    verdict = "; ".join(differ) if differ else "the same config at every H"
    return f"{several} kernel keys tuned at several head counts: {verdict} (autotune.jsonl)"


# ---------------------------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--out", type=Path, help="folder for every result (created)")
    p.add_argument(
        "--wheels", type=Path, default=REPO / "build" / "gpu-wheels", help="folder of wheels to install"
    )
    p.add_argument(
        "--work", type=Path, default=None, help="where the environment goes (default: a new temp folder)"
    )
    p.add_argument("--python", type=Path, default=None, help="run the steps on this interpreter; no install")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--quick", action="store_true", help="one tiny shape (for testing the check itself)")
    p.add_argument("--budget-seconds", type=float, default=480, help="total time budget (default 480)")
    p.add_argument("--steps", default=",".join(STEPS), help=f"comma list of {', '.join(STEPS)}")
    p.add_argument("--repeats", type=int, default=5, help="bench repeats (CPU) / do_bench scale (CUDA)")
    p.add_argument("--evaluate-file", type=Path, default=BASELINE, help="layer file to evaluate")
    p.add_argument(
        "--evaluate-budget", default=None, help="budget preset (default gpu on cuda, smoke on cpu)"
    )
    p.add_argument(
        "--strict-sandbox", action="store_true", help="refuse the evaluation when a sandbox layer is missing"
    )
    p.add_argument("--list-wheels", action="store_true", help="print the pins `make gpu-wheels` downloads")
    p.add_argument("--step", choices=("machine", "accuracy", "bench"), help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, default=float("inf"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.list_wheels and args.out is None:
        p.error("--out is required")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.list_wheels:
        print("\n".join(wheel_pins()))
        return 0
    if args.step is None:
        return run_check(args)
    steps: dict[str, Callable[[], None]] = {
        "machine": lambda: machine_step(args.out, args.device),
        "accuracy": lambda: accuracy_step(args.out, args.device, args.quick, args.deadline),
        "bench": lambda: bench_step(args.out, args.device, args.quick, args.deadline, args.repeats),
    }
    steps[args.step]()
    return 0


def _script_dir_off_path() -> None:
    # `python kernels/gpu_check.py` puts kernels/ first on sys.path, where our bench.py, testing.py and
    # utils/ would shadow anything of those names; nothing is wanted from there.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != here]


if __name__ == "__main__":
    _script_dir_off_path()
    sys.exit(main())
