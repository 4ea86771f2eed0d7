"""The one-shot device check (kernels/gpu_check.py), tested on the CPU with --device cpu and --quick.

What a user of the check relies on: the environment it builds from a folder of wheels and this
checkout imports our code and those wheels even under `python -I` (how the engineer starts its
sandbox); accuracy rows compare every family's output and gradients with float64 and flag a kernel
that is off; bench rows are written, with the reason when an implementation is not available; a
step that fails leaves the others' results and says so; the carried wheel list is the lock's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from support import REPO

from asiarch.kernels import bench, gpu_check

GRADIENTS = {
    "linear_attn": {"o", "dq", "dk", "dv"},
    "linear_attn normalize=True": {"o", "dq", "dk", "dv"},
    "simple_gla": {"o", "dq", "dk", "dv", "dg"},
    "delta_rule": {"o", "dq", "dk", "dv", "dbeta"},
    "gated_delta_rule": {"o", "dq", "dk", "dv", "dg", "dbeta"},
}


def probe_wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel holding one module, `gpu_check_probe`."""
    folder.mkdir(parents=True, exist_ok=True)
    info = "gpu_check_probe-1.0.dist-info"
    files = {
        "gpu_check_probe.py": "VALUE = 42\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: gpu-check-probe\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"])
    wheel = folder / "gpu_check_probe-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return wheel


def test_the_environment_imports_the_wheels_and_this_checkout_under_python_isolated(tmp_path: Path) -> None:
    probe_wheel(tmp_path / "wheels")
    log = tmp_path / "install.log"
    python, problems = gpu_check.install(tmp_path / "work", tmp_path / "wheels", REPO, log)
    assert problems == [], log.read_text()[-2000:]
    # -I, as the engineer starts its sandbox: no PYTHONPATH, only the interpreter's site directories.
    script = (
        "import gpu_check_probe, asiarch.kernels.gpu_check as g, importlib.metadata as m; "
        "print(gpu_check_probe.VALUE, g.__file__, "
        "sorted(e.name for e in m.entry_points(group='asiarch.commands')))"
    )
    done = subprocess.run([str(python), "-I", "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    value, module, commands = done.stdout.split(" ", 2)
    assert value == "42"
    assert Path(module).is_relative_to(tmp_path / "work" / "env"), "asiarch is not the one built here"
    assert "'engineer'" in commands and "'bench'" in commands  # `asiarch evaluate` and `bench` are registered


def test_accuracy_compares_every_output_and_gradient_with_float64(tmp_path: Path) -> None:
    gpu_check.accuracy_step(tmp_path, "cpu", quick=True, deadline=float("inf"))
    rows = gpu_check.read_rows(tmp_path / "accuracy.jsonl")
    for family, tensors in GRADIENTS.items():
        mine = [r for r in rows if r["family"] == family]
        assert {r["tensor"] for r in mine} == tensors, family
        # fp32 on the CPU: far inside FLA's bf16 tolerances
        assert all(r["passed"] and r["rel_rms"] < 1e-5 for r in mine), mine


def test_a_kernel_that_is_one_percent_off_is_flagged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = bench.ours

    def off(family: str, form: str = "chunk", **options: object) -> bench.Kernel:
        kernel = real(family, form, **options)
        return (lambda x: kernel(x) * 1.01) if form == "chunk" else kernel

    monkeypatch.setattr(bench, "ours", off)
    gpu_check.accuracy_step(tmp_path, "cpu", quick=True, deadline=float("inf"))
    rows = {(r["family"], r["tensor"]): r for r in gpu_check.read_rows(tmp_path / "accuracy.jsonl")}
    assert not rows[("delta_rule", "o")]["passed"]
    assert rows[("delta_rule", "o")]["rel_rms"] == pytest.approx(0.01, rel=0.01)
    (tmp_path / "machine.json").write_text("{}")
    gpu_check.write_summary(tmp_path)
    assert (
        "| delta_rule | (1, 37, 2, 12) | fp32 | o | 1.00e-02 | 6e-03 | **FAIL** |"
        in (tmp_path / "summary.md").read_text()
    )


def test_tuned_configs_are_read_from_our_autotuners(monkeypatch: pytest.MonkeyPatch) -> None:
    import triton

    from asiarch.kernels.common import triton_normalize

    tuner = triton_normalize.normalize_fwd_kernel
    monkeypatch.setattr(tuner, "cache", {(128, 128, 64, "torch.bfloat16"): triton.Config({}, num_warps=4)})
    rows = [r for r in gpu_check.tuned_configs() if r["kernel"] == "normalize_fwd_kernel"]
    assert rows == [
        {
            "kernel": "normalize_fwd_kernel",
            "key": {"K": "128", "V": "128", "BT": "64"},
            "dtypes": ["torch.bfloat16"],
            "config": str(triton.Config({}, num_warps=4)),
        }
    ]


def test_the_summary_says_whether_the_head_count_changed_a_best_config() -> None:
    def row(kernel: str, H: int, config: str, K: int = 128) -> dict[str, object]:
        return {"kernel": kernel, "key": {"H": str(H), "K": str(K)}, "dtypes": ["bf16"], "config": config}

    same = [row("a", 4, "w4"), row("a", 16, "w4"), row("b", 4, "w2"), row("b", 4, "w2", K=64)]
    assert gpu_check.head_sensitive(same) == (1, [])
    several, differ = gpu_check.head_sensitive([*same, row("c", 4, "w2"), row("c", 64, "w8")])
    assert several == 2 and len(differ) == 1 and '"c"' in differ[0] and "w8" in differ[0]


def test_bench_writes_a_row_per_measurement_and_says_why_fla_is_absent(tmp_path: Path) -> None:
    gpu_check.bench_step(tmp_path, "cpu", quick=True, deadline=float("inf"), repeats=1)
    rows = gpu_check.read_rows(tmp_path / "bench.jsonl")
    ours = [r for r in rows if r["implementation"] == "asiarch chunk (PyTorch)"]
    fla = [r for r in rows if r["implementation"] == "FLA chunk"]
    sdpa = [r for r in rows if r["family"] == "attention"]
    assert len(ours) == len(fla) == 8 and len(sdpa) == 2
    assert all(r["ms"] > 0 for r in ours + sdpa)
    assert all(r["ms"] is None and "need CUDA" in r["note"] for r in fla)


def test_bench_stops_at_its_deadline_and_says_so(tmp_path: Path) -> None:
    gpu_check.bench_step(tmp_path, "cpu", quick=True, deadline=0, repeats=1)
    rows = gpu_check.read_rows(tmp_path / "bench.jsonl")
    assert len(rows) == 1 and "time budget spent" in rows[0]["skipped"]


@pytest.mark.slow
def test_a_failing_step_leaves_the_others_results(tmp_path: Path) -> None:
    """No wheels: the install step fails and says why, and the next step still runs in what it built."""
    out, empty = tmp_path / "out", tmp_path / "no-wheels"
    empty.mkdir()
    code = gpu_check.main(
        ["--out", str(out), "--device", "cpu", "--quick", "--work", str(tmp_path / "work"),
         "--wheels", str(empty), "--steps", "install,accuracy"]
    )  # fmt: skip
    assert code == 1
    steps = {s["step"]: s for s in gpu_check.read_rows(out / "steps.jsonl")}
    assert steps["install"]["status"] == "failed" and f"no wheels in {empty}" in steps["install"]["detail"]
    assert steps["accuracy"]["status"] == "ok", (out / "accuracy.log").read_text()[-2000:]
    assert len(gpu_check.read_rows(out / "accuracy.jsonl")) == sum(map(len, GRADIENTS.values()))
    summary = (out / "summary.md").read_text()
    assert "| install | failed |" in summary and "| linear_attn | (1, 37, 2, 12) | fp32 | o |" in summary


def test_each_step_stops_at_its_share_so_the_evaluation_gets_its_turn(tmp_path: Path) -> None:
    check = gpu_check.Check(gpu_check.parse(["--out", str(tmp_path), "--budget-seconds", "400"]))
    start = check.deadline - 400
    assert check.step_deadline("accuracy") - start == pytest.approx(100, abs=5)
    assert check.step_deadline("bench") - start == pytest.approx(160, abs=5)
    assert check.step_deadline("evaluate") == check.deadline - gpu_check.GRACE_SECONDS


def test_a_step_past_its_time_is_ended(tmp_path: Path) -> None:
    with (tmp_path / "out").open("w") as out:
        status = gpu_check.run_process([sys.executable, "-c", "import time; time.sleep(600)"], out, out, 0.5)
    assert status == "timeout"


def test_the_carried_wheels_are_the_locks_pins_minus_what_the_machine_has() -> None:
    pins = dict(pin.split("==") for pin in gpu_check.wheel_pins())
    lock = (REPO / "requirements.lock").read_text()
    assert all(f"\n{name}=={version}\n" in lock for name, version in pins.items())
    # what `asiarch evaluate` imports, FLA to compare with, setuptools to build asiarch there
    for needed in ("grpcio", "protobuf", "pydantic-core", "structlog", "opentelemetry-sdk", "pyseccomp",
                   "flash-linear-attention", "fla-core", "setuptools"):  # fmt: skip
        assert needed in pins, needed
    assert not {"torch", "triton", "transformers", "einops"} & pins.keys()
    assert not any(name.startswith("nvidia") for name in pins)


@pytest.mark.slow
def test_evaluate_runs_a_baseline_end_to_end(tmp_path: Path) -> None:
    """`asiarch evaluate … --json` as the check runs it (smoke budget on the CPU; ~30 s on 2 loaded cores)."""
    out = tmp_path / "out"
    args = ["--out", str(out), "--device", "cpu", "--python", sys.executable, "--steps", "evaluate"]
    code = gpu_check.main(args)
    assert code == 0, (out / "evaluate.log").read_text()[-2000:]
    result = json.loads((out / "evaluate.json").read_text())
    assert result["status"] == "EVALUATION_STATUS_SUCCEEDED" and float(result["metrics"]["val_loss"]) > 0
    assert "EVALUATION_STATUS_SUCCEEDED" in (out / "summary.md").read_text()
