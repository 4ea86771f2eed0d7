"""The results commands (leaderboard, show, lineage, report, export, status) against a real analyst.

A real analyst process holds a small recorded run (results_data.py); every command runs as a
user would run it, `asiarch ...` in a subprocess, and the tests check what a user would see.
The last tests stop that analyst, let commands start their own (a reader) on the run directory,
and check from its log that reading a run never loaded the embedding model.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import results_data
from support import BIN, RunningService, start_service

from asiarch.orchestrator.access import write_run
from asiarch.v1 import analyst_pb2, analyst_pb2_grpc, common_pb2

CHROMIUM = Path("/usr/bin/chromium")
ANALYST_ENV = {"ASIARCH_ANALYST_INGEST_BUILTIN": "false", "ASIARCH_LLM_BACKEND": "none"}
# Runs the first exported file as installed here, where asiarch's `fla` shim (ASIARCH_FLA_COMPAT=1)
# stands in for a real FLA; then every file with asiarch, and so the shim, made unimportable.
# One process for all: importing torch alone takes seconds.
RUNNER = """
import runpy, sys

print("=== with fla: " + sys.argv[1], flush=True)
runpy.run_path(sys.argv[1], run_name="__main__")

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name == "asiarch" or name.startswith("asiarch."):
            raise ImportError(f"{name} is not installed here")
        return None

for name in [m for m in sys.modules if m.split(".")[0] in ("asiarch", "fla")]:
    del sys.modules[name]
sys.meta_path.insert(0, Blocked())
for path in sys.argv[1:]:
    print("=== without asiarch: " + path, flush=True)
    runpy.run_path(path, run_name="__main__")
assert not [m for m in sys.modules if m.split(".")[0] == "asiarch"], "an export imported asiarch"
"""


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped): what run.json holds after a run."""
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


DEAD_PID = dead_pid()


def metadata(analyst_address: str, state: str = "running") -> dict[str, object]:
    return {
        "run_id": results_data.RUN_ID,
        "state": state,
        "started_at": "2026-01-01T10:00:00+00:00",
        "updated_at": "2026-01-01T10:30:00+00:00",
        "pid": os.getpid(),  # alive while the tests run, so the run looks like a live discover
        "cycles_done": 3,
        "cycles_planned": 5,
        "time_budget_minutes": None,
        "options": {
            "strategy": "ucb",
            "mode": "dsl",
            "llm": "none",
            "budget": "smoke",
            "seed": 0,
            "parallel": 1,
        },
        "services": {
            "selector": "127.0.0.1:1",
            "researcher": "127.0.0.1:2",
            "engineer": ["127.0.0.1:3"],
            "analyst": analyst_address,
        },
        "local_services": ["selector", "researcher", "engineer", "analyst"],
        "local_pids": {
            "selector": DEAD_PID,
            "researcher": DEAD_PID,
            "engineer": DEAD_PID,
            "analyst": DEAD_PID,
        },
        "message": "",
    }


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("results") / "run"


@pytest.fixture(scope="module")
def analyst(run_dir: Path) -> Iterator[RunningService]:
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {"ASIARCH_RUN_DIR": str(run_dir), **ANALYST_ENV}
    service = start_service("analyst", run_dir.parent, env=env, timeout=120)
    yield service
    if service.process.poll() is None:
        assert service.stop() == 0


@pytest.fixture(scope="module")
def recorded(analyst: RunningService, run_dir: Path) -> dict[str, common_pb2.Experiment]:
    stub = analyst_pb2_grpc.AnalystStub(analyst.channel())
    stored = {}
    for experiment in results_data.run_experiments():
        reply = stub.Record(analyst_pb2.RecordRequest(experiment=experiment), timeout=60)
        stored[experiment.id] = reply.experiment
    for original, losses in results_data.CONFIRMATIONS.items():
        for seed, loss in enumerate(losses, 1):
            copy = results_data.replicate(stored[original], seed, loss)
            stub.Record(analyst_pb2.RecordRequest(experiment=copy), timeout=60)
    for original in ("c3-best", "c1-gate"):
        assert stored[original].analysis.rival_id == "gated-deltanet" and stored[original].analysis.promising
        request = analyst_pb2.ConfirmRequest(experiment_id=original, against_id="gated-deltanet")
        stored[original] = stub.Confirm(request, timeout=60).experiment
    write_run(run_dir, metadata(analyst.address))
    return stored


def asiarch(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("ASIARCH_ANALYST_ADDRESS", None)
    result = subprocess.run(
        [str(BIN / "asiarch"), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout
    )
    if "invalid choice" in result.stderr:
        pytest.fail(
            "results commands not registered: asiarch.orchestrator.results.commands:register belongs in "
            "the asiarch.commands entry points (then reinstall: pip install -e .)"
        )
    return result


def command(
    name: str, *args: str, run_dir: Path, analyst: RunningService | None
) -> subprocess.CompletedProcess[str]:
    where = ["--run-dir", str(run_dir)] + (["--analyst", analyst.address] if analyst else [])
    result = asiarch(name, *args, *where)
    return result


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result.stdout


def expected_order(recorded: dict[str, common_pb2.Experiment]) -> list[str]:
    mine = [e for e in recorded.values() if e.run_id == results_data.RUN_ID]
    selectable = [e for e in mine if e.status == common_pb2.EXPERIMENT_STATUS_SUCCEEDED]
    selectable = [e for e in selectable if not e.proposal.reference_only]
    return [e.id for e in sorted(selectable, key=lambda e: -e.fitness.total)]


# ---------------------------------------------------------------------------------------------- leaderboard


def test_leaderboard_ranks_succeeded_designs_by_fitness(
    recorded: dict[str, common_pb2.Experiment], run_dir: Path, analyst: RunningService
) -> None:
    rows = json.loads(ok(command("leaderboard", "--json", run_dir=run_dir, analyst=analyst)))
    assert [r["id"] for r in rows] == expected_order(recorded)
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    by_id = {r["id"]: r for r in rows}
    # baselines are ranked and marked; the reference design, the failure and the other run are not listed
    assert by_id["deltanet"]["is_baseline"] and not by_id["c1-gate"]["is_baseline"]
    assert {"softmax", "c2-fail", "elsewhere"}.isdisjoint(by_id)
    best = by_id["c3-best"]
    assert best["parent_name"] == "c2-l2" and best["val_loss"] == pytest.approx(1.85)
    assert best["mqar_mean"] == pytest.approx(0.67) and best["layer_parameters"] == 66_000
    fitness = recorded["c3-best"].fitness
    assert best["fitness"] == pytest.approx(fitness.total)
    assert best["loss_score"] + best["benchmark_score"] + best["judge_score"] == pytest.approx(fitness.total)
    # discover's ids lose the run's prefix in short_id (what the table shows and `show` accepts)
    assert by_id[f"{results_data.RUN_ID}.c0004.0"]["short_id"] == "c0004.0"
    assert best["short_id"] == "c3-best"

    everything = json.loads(ok(command("leaderboard", "--json", "--all", run_dir=run_dir, analyst=analyst)))
    statuses = {r["id"]: r["status"] for r in everything}
    assert statuses["c2-fail"] == "failed" and statuses["softmax"] == "succeeded"
    assert everything[-1]["id"] == "c2-fail"  # failures rank after every succeeded design
    assert (
        len(json.loads(ok(command("leaderboard", "--json", "--top", "2", run_dir=run_dir, analyst=analyst))))
        == 2
    )


def test_leaderboard_table_shows_the_columns_and_markers(
    recorded: dict[str, common_pb2.Experiment], run_dir: Path, analyst: RunningService
) -> None:
    table = ok(command("leaderboard", run_dir=run_dir, analyst=analyst))
    header = next(line for line in table.splitlines() if "fitness" in line)
    for column in (
        "#",
        "id",
        "name",
        "fitness",
        "loss",
        "bench",
        "judge",
        "val_loss",
        "MQAR",
        "layer params",
        "parent",
    ):
        assert column in header
    order = expected_order(recorded)
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in table.splitlines() if "│" in line]
    assert [r[0] for r in rows] == [str(i) for i in range(1, len(order) + 1)]
    # the id column is the id `show` and `export` take, without the run's prefix; then the name
    assert [r[1] for r in rows] == [i.removeprefix(f"{results_data.RUN_ID}.") for i in order]
    assert [r[2].split(" [")[0] for r in rows] == [recorded[i].name for i in order]
    by_name = {r[2].split(" [")[0]: r for r in rows}
    assert by_name["c4-wide-keys"][1] == "c0004.0"
    assert by_name["deltanet"][2] == "deltanet [baseline]" and by_name["c3-best"][10] == "c2-l2"
    best = recorded[order[0]].fitness
    assert by_name[recorded[order[0]].name][3:7] == [
        f"{best.total:.3f}",
        *(f"{x:.2f}" for x in (best.loss_score, best.benchmark_score, best.judge_score)),
    ]
    # The confirmation column: mean ± sd over the paired seeds and the mark, for the tested designs only.
    assert {i for i in order if recorded[i].analysis.breakthrough} == {"c3-best"}
    assert {name for name, r in by_name.items() if "★" in r[-1]} == {"c3-best"}
    assert by_name["c3-best"][-1].startswith("★ confirmed 1.8500 ± 0.0100 (n=3")
    assert by_name["c1-gate"][-1].startswith("not confirmed 2.1033 ± 0.0473 (n=3")
    assert (
        by_name["deltanet"][-1] == ""
        and "finding: c3-best (c3-best), confirmed against gated-deltanet" in table
    )


# ---------------------------------------------------------------------------------------------- show


def test_show_prints_everything_about_one_experiment(
    recorded: dict[str, common_pb2.Experiment], run_dir: Path, analyst: RunningService
) -> None:
    text = ok(command("show", "c2-l2", run_dir=run_dir, analyst=analyst))
    e = recorded["c2-l2"]
    assert "Normalise keys so the delta rule stays stable." in text
    # the code shown is the repaired source the engineer evaluated, with line numbers
    assert "l2norm(q), l2norm(k)" in text and "BROKEN" not in text
    assert re.search(r"^\s*│?\s*1 \"\"\"DeltaNet", text, re.M)
    for fragment in (
        "val loss",
        "1.9000",
        "bits per byte",
        "mqar/seq64_kv4",
        "0.700",
        "mqar/seq128_kv8",
        "tokens/s",
        "21.0k",
        "1.2M",
        "350.0 MiB",
        "static.imports",
        "functional.causality",
        "passed",
        "restore the L2 normalisation of q and k",
        "dsl:deterministic",
        "fixed",
        f"{e.fitness.total:.3f}",
        f"{e.fitness.loss_score:.3f}",
        f"{e.fitness.judge_score:.3f}",
        "Design evaluation",
        "Synthesis",
        "Comparisons",
        "parent",
        "c1-gate",
    ):
        assert fragment in text, fragment
    assert e.fitness.judge.rationale.split(".")[0][:40] in " ".join(text.split())
    assert e.analysis.synthesis.split("\n")[0][:40] in " ".join(text.split())
    assert ("BREAKTHROUGH" in text) == e.analysis.breakthrough

    # the code panel says "after repair" only when there were repairs (every experiment has a final source)
    assert "Code: class DeltaNet (after 1 repair)" in text
    unrepaired = ok(command("show", "c1-gate", run_dir=run_dir, analyst=analyst))
    assert (
        "Code: class DeltaNet" in unrepaired
        and "after" not in unrepaired.split("Code: class")[1].split("\n")[0]
    )
    assert "Repair attempts" not in unrepaired

    failed = ok(command("show", "c2-fail", run_dir=run_dir, analyst=analyst))
    assert "FAILED" in failed and "output at t=3 changes when token 7 changes (line 41)" in failed
    assert "the layer is not causal" in failed


def test_show_an_unknown_id_says_once_what_to_type_instead(
    recorded: dict[str, common_pb2.Experiment], run_dir: Path, analyst: RunningService
) -> None:
    for name in ("show", "export"):
        result = command(name, "no-such-design", run_dir=run_dir, analyst=analyst)
        assert result.returncode == 1 and result.stdout == ""
        [line] = result.stderr.splitlines()
        assert line.startswith(f"asiarch {name}: no experiment of run 'results-run'")
        assert line.count("no-such-design") == 1, line
        assert f"`asiarch leaderboard --all --run-dir {run_dir}`" in line
    # not shaped like an id at all (spaces): the same sentence, not a validation error
    result = command("show", "my best design", run_dir=run_dir, analyst=analyst)
    assert result.returncode == 1 and "has the id or name 'my best design'" in result.stderr


def test_show_and_export_take_a_short_id_a_name_or_a_unique_prefix(
    recorded: dict[str, common_pb2.Experiment], run_dir: Path, analyst: RunningService, tmp_path: Path
) -> None:
    def shown(reference: str) -> str:
        text = ok(command("show", reference, run_dir=run_dir, analyst=analyst))
        return re.search(r"^\s*│?\s*id\s+(\S+)", text, re.M).group(1)  # type: ignore[union-attr]

    keys, values = f"{results_data.RUN_ID}.c0004.0", f"{results_data.RUN_ID}.c0004.1"
    assert shown(keys) == keys  # the full id
    assert shown("c0004.1") == values  # the leaderboard's id column
    assert shown("c4-wide-values") == values  # the name
    assert shown("c4-wide-k") == keys  # a unique name prefix
    assert shown("c3-b") == "c3-best"
    out = tmp_path / "values.py"
    ok(command("export", "c4-wide-v", "--out", str(out), run_dir=run_dir, analyst=analyst))
    assert out.read_text().startswith("# c4-wide-values: ")

    for ambiguous in ("c4-wide", f"{results_data.RUN_ID}.c0004"):
        result = command("show", ambiguous, run_dir=run_dir, analyst=analyst)
        assert result.returncode == 1 and result.stdout == ""
        [line] = result.stderr.splitlines()
        assert f"'{ambiguous}' matches 2 experiments" in line
        assert "c0004.0 (c4-wide-keys)" in line and "c0004.1 (c4-wide-values)" in line


def test_without_a_run_the_commands_say_how_to_name_one(tmp_path: Path) -> None:
    result = asiarch("leaderboard", cwd=tmp_path)
    assert result.returncode == 2 and "--run-dir" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------------- lineage


def test_lineage_writes_svg_and_png(
    recorded: dict[str, common_pb2.Experiment], run_dir: Path, analyst: RunningService, tmp_path: Path
) -> None:
    svg = tmp_path / "tree.svg"
    assert ok(command("lineage", "--out", str(svg), run_dir=run_dir, analyst=analyst)).strip() == str(svg)
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text and len(text) > 5_000
    for name in ("deltanet", "c1-gate", "c3-best", "c2-fail", "fitness (total)"):
        assert name in text, name
    assert "softmax" in text and "elsewhere" not in text
    png = tmp_path / "tree.image"
    ok(command("lineage", "--out", str(png), "--format", "png", run_dir=run_dir, analyst=analyst))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    unknown = command("lineage", "--out", str(tmp_path / "tree.txt"), run_dir=run_dir, analyst=analyst)
    assert unknown.returncode == 2 and "--format" in unknown.stderr


# ---------------------------------------------------------------------------------------------- report


@pytest.fixture(scope="module")
def report(recorded: dict[str, common_pb2.Experiment], run_dir: Path, analyst: RunningService) -> Path:
    printed = ok(command("report", run_dir=run_dir, analyst=analyst)).strip()
    assert printed == str(run_dir / "report.html")
    return Path(printed)


def test_report_is_one_self_contained_page(report: Path, recorded: dict[str, common_pb2.Experiment]) -> None:
    page = report.read_text()
    assert [p.name for p in report.parent.glob("report*")] == ["report.html"]
    assert page.count("<svg") >= 4
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert not re.search(r"<(script|link|img|iframe)\b", page, re.I)
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    top = expected_order(recorded)
    candidates = [i for i in top if not recorded[i].is_baseline][:5]
    for name in candidates:
        assert f'id="design-{name}"' in page
    assert page.count("<details>") == len(candidates)
    assert "loss curves" in page.lower() and "MQAR accuracy" in page and "Evolution tree" in page
    assert "results-run" in page and "running" in page and "3 of 5" in page
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "element ids repeat between the inline figures"


@pytest.mark.chromium
def test_report_renders_in_chromium(report: Path, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("chromium not installed: apt-get install chromium to run the report rendering test")
    flags = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [*flags, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    svgs = re.findall(r"<svg\b.*?</svg>", dom, re.S)
    assert len(svgs) >= 4 and all("<path" in svg for svg in svgs)
    shot = tmp_path / "report.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1280,4000", report.as_uri()],
        capture_output=True,
        timeout=60,
        check=True,
    )
    from PIL import Image

    with Image.open(shot) as image:
        colours = image.convert("RGB").resize((160, 500)).getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 200, "the screenshot is (nearly) blank"


# ---------------------------------------------------------------------------------------------- export


@pytest.fixture(scope="module")
def exported(
    recorded: dict[str, common_pb2.Experiment],
    run_dir: Path,
    analyst: RunningService,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("exported")
    paths = {}
    for experiment_id in ("c1-gate", "c3-best", "c3-kitchen"):
        out = folder / f"{experiment_id.replace('-', '_')}.py"
        printed = ok(command("export", experiment_id, "--out", str(out), run_dir=run_dir, analyst=analyst))
        assert str(out) in printed
        paths[experiment_id] = out
    return paths


def load(path: Path, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    monkeypatch.setenv("STANDALONE_KERNELS", "fallback")
    spec = importlib.util.spec_from_file_location(f"exported_{path.stem}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_export_writes_a_file_that_runs_without_asiarch(
    recorded: dict[str, common_pb2.Experiment], exported: dict[str, Path]
) -> None:
    text = exported["c1-gate"].read_text()
    assert "# experiment: c1-gate" in text and "Mamba-2 forget gate" in text
    assert f"# fitness: {recorded['c1-gate'].fitness.total:.3f}" in text
    assert not [line for line in text.splitlines() if re.match(r"\s*(from|import) asiarch", line)]
    # only what the layer imports is copied from asiarch.kernels
    assert "def chunk_gated_delta_rule(" in text and "def chunk_delta_rule(" not in text
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["ASIARCH_FLA_COMPAT"] = "1"
    files = [str(exported[i]) for i in ("c1-gate", "c3-kitchen")]
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, *files],
        capture_output=True,
        text=True,
        env=env,
        cwd=exported["c1-gate"].parent,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    runs = result.stdout.split("=== ")[1:]
    assert len(runs) == 3
    # FLA first when it imports; the pure-PyTorch fallbacks when it does not
    assert "kernels: flash-linear-attention (fla)" in runs[0]
    for run in runs[1:]:
        assert "kernels: pure-PyTorch fallbacks" in run and "output shape: (2, 64, 256)" in run


def test_exported_model_computes_what_the_engineer_trained(
    recorded: dict[str, common_pb2.Experiment], exported: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from asiarch.kernels.models import LanguageModel

    best = load(exported["c3-best"], monkeypatch)
    assert best.STANDALONE_KERNELS_USED.startswith("pure-PyTorch fallbacks")
    original = types.ModuleType("original_layer")
    exec(compile(recorded["c3-best"].proposal.source.module_source, "original", "exec"), original.__dict__)
    torch.manual_seed(0)
    mine = best.BackboneLanguageModel(best.DeltaNet, vocab=256, dim=64, layers=2, heads=4)
    theirs = LanguageModel(original.DeltaNet, vocab=256, dim=64, layers=2, heads=4)
    theirs.load_state_dict(mine.state_dict())
    tokens = torch.randint(0, 256, (2, 48))
    with torch.no_grad():
        torch.testing.assert_close(mine(tokens), theirs(tokens), atol=1e-4, rtol=1e-4)


@pytest.fixture
def exported_kernels(exported: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The kernel names the kitchen-sink layer's exported file binds, by their asiarch name."""
    fb = load(exported["c3-kitchen"], monkeypatch)
    return {
        "chunk_delta_rule": fb.chunk_delta_rule,
        "fused_recurrent_delta_rule": fb.fused_recurrent_delta_rule,
        "chunk_gated_delta_rule": fb.fla.ops.gated_delta_rule.chunk_gated_delta_rule,
        "fused_recurrent_gated_delta_rule": fb.K.fused_recurrent_gated_delta_rule,
        "chunk_simple_gla": fb.chunk_simple_gla,
        "fused_recurrent_simple_gla": fb.fused_recurrent_simple_gla,
        "chunk_linear_attn": fb.chunk_linear_attn,
        "fused_recurrent_linear_attn": fb.fused_recurrent_linear_attn,
        "l2norm": fb.l2norm,
        "l2_norm": fb.l2_norm,
        "L2Norm": fb.L2Norm,
        "RMSNorm": fb.HeadNorm,
        "FusedRMSNormGated": fb.K.FusedRMSNormGated,
        "ShortConvolution": fb.ShortConvolution,
    }


def test_exported_kernels_are_asiarchs_own(exported_kernels: dict[str, Any]) -> None:
    """Every kernel name the kitchen-sink layer uses is bound to the file's copy of asiarch.kernels."""
    import asiarch.kernels as K
    import asiarch.kernels.modules as KM

    bound = exported_kernels
    for name, value in bound.items():
        # the copy (a private package), not asiarch, and not the real FLA
        assert value.__module__.startswith("_asiarch_kernels_"), (name, value.__module__)
        assert value.__qualname__ == (getattr(KM, name, None) or getattr(K, name)).__qualname__, name


def test_exported_ops_compute_what_asiarchs_do(exported_kernels: dict[str, Any]) -> None:
    import torch

    import asiarch.kernels as K

    bound = exported_kernels
    torch.manual_seed(0)
    B, T, H, D, V = 2, 19, 3, 8, 5
    q, k = torch.randn(B, T, H, D), torch.nn.functional.normalize(torch.randn(B, T, H, D), dim=-1)
    v, h0 = torch.randn(B, T, H, V), torch.randn(B, H, D, V)
    g, beta, gamma = -torch.rand(B, T, H), torch.rand(B, T, H), -torch.rand(H)
    state = {"initial_state": h0, "output_final_state": True}
    cases = [
        ("chunk_delta_rule", (q, k, v, beta), {"use_qk_l2norm_in_kernel": True}),
        ("fused_recurrent_delta_rule", (q, k, v), {}),
        ("chunk_gated_delta_rule", (q, k, v, g, beta), {}),
        ("fused_recurrent_gated_delta_rule", (q, k, v, g), {"beta": beta}),
        ("chunk_simple_gla", (q, k, v), {"g_gamma": gamma}),
        ("fused_recurrent_simple_gla", (q, k, v, g), {"reverse": True}),
        ("chunk_linear_attn", (q.abs(), k.abs(), v), {}),
        ("fused_recurrent_linear_attn", (q, k, v), {"scale": 0.3}),
    ]
    for name, args, options in cases:
        expected = getattr(K, name)(*args, **options, **state)
        got = bound[name](*args, **options, **state)
        for mine, theirs in zip(got, expected, strict=True):
            torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=1e-4, msg=name)
    # packed sequences too: the copy is the whole implementation, not a per-token stand-in
    packed = (q[:1], k[:1], v[:1], beta[:1])
    cu_seqlens = torch.tensor([0, 7, T])
    torch.testing.assert_close(
        bound["chunk_delta_rule"](*packed, cu_seqlens=cu_seqlens),
        K.chunk_delta_rule(*packed, cu_seqlens=cu_seqlens),
    )


def test_exported_modules_compute_what_asiarchs_do(exported_kernels: dict[str, Any]) -> None:
    import torch

    import asiarch.kernels as K

    bound = exported_kernels
    torch.manual_seed(0)
    B, T = 2, 19
    h0 = torch.randn(B, 3, 8, 5)
    x, residual, gate = torch.randn(B, T, 12), torch.randn(B, T, 12), torch.randn(B, T, 12)
    torch.testing.assert_close(bound["l2norm"](x), K.l2norm(x))
    torch.testing.assert_close(bound["L2Norm"]()(x), K.l2norm(x))
    for mine, theirs, call in [
        (bound["RMSNorm"](12), K.RMSNorm(12), lambda m: m(x, residual, prenorm=True)),
        (bound["FusedRMSNormGated"](12), K.FusedRMSNormGated(12), lambda m: m(x, gate)),
        (
            bound["ShortConvolution"](12, 4, bias=True),
            K.ShortConvolution(12, 4, bias=True),
            lambda m: m(x, cache=h0[:, :, :4, :4].reshape(B, 12, 4).contiguous(), output_final_state=True),
        ),
    ]:
        with torch.no_grad():
            for p in mine.parameters():
                p.uniform_(-1, 1)
        theirs.load_state_dict(mine.state_dict())
        torch.testing.assert_close(call(mine), call(theirs), msg=type(theirs).__name__)
    # a decoding step (one token, no autograd) updates the given cache in place, as FLA's does
    conv = bound["ShortConvolution"](12, 4)
    reference = K.ShortConvolution(12, 4)
    reference.load_state_dict(conv.state_dict())
    mine_cache = torch.randn(B, 12, 4)
    their_cache = mine_cache.clone()
    with torch.no_grad():
        torch.testing.assert_close(
            conv(x[:, :1], cache=mine_cache)[0], reference(x[:, :1], cache=their_cache)[0]
        )
    torch.testing.assert_close(mine_cache, their_cache)


def test_export_rewrites_guarded_imports_and_refuses_kernels_without_fallback() -> None:
    from asiarch.orchestrator.results.export import ExportError, standalone_source

    guarded = results_data.experiment(
        "guarded",
        "from __future__ import annotations\n"
        "try:\n    from fla.ops.delta_rule import chunk_delta_rule\n"
        "except ImportError:\n    from asiarch.kernels import chunk_delta_rule\n"
        "from torch import nn\n\n\nclass DeltaNet(nn.Module):\n    pass\n"
        "# a form feed in a string must not shift the line numbers the rewrite uses\n"
        "PAGE = '\f'\n",
    )
    text = standalone_source(guarded)
    compile(text, "exported", "exec")
    # the layer's own future import is dropped: the file's one stays its first statement
    future = [n for n in ast.parse(text).body if isinstance(n, ast.ImportFrom) and n.module == "__future__"]
    assert len(future) == 1
    assert "    pass  # from fla.ops.delta_rule import chunk_delta_rule" in text
    with pytest.raises(ExportError, match=r"fla\.layers\.utils\.pad_input"):
        standalone_source(results_data.experiment("padded", "from fla.layers.utils import pad_input\n"))


# ---------------------------------------------------------------------------------------------- status


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_status_reports_the_run_and_its_analyst(
    recorded: dict[str, common_pb2.Experiment], run_dir: Path, analyst: RunningService
) -> None:
    # no --analyst: a running discover's analyst is found through run.json
    status = json.loads(ok(asiarch("status", "--json", "--run-dir", str(run_dir))))
    assert status["run_id"] == results_data.RUN_ID and status["state"] == "running"
    assert status["cycles_done"] == 3 and status["cycles_planned"] == 5 and status["process_alive"] is True
    assert status["services"]["analyst"] == analyst.address
    assert status["analyst"]["reachable"] is True
    mine = [e for e in recorded.values() if e.run_id == results_data.RUN_ID]
    succeeded = sum(e.status == common_pb2.EXPERIMENT_STATUS_SUCCEEDED for e in mine)
    assert status["analyst"]["counts"] == {"pending": 0, "running": 0, "succeeded": succeeded, "failed": 1}
    # "best" counts confirmed results only (the top of the exploratory ranking is not enough)
    assert status["analyst"]["best"]["id"] == "c3-best"
    assert status["analyst"]["verdict"].startswith("c3-best (c3-best), confirmed against gated-deltanet")
    # a live run: each service is asked (only the analyst is really there)
    assert status["service_states"] == {
        "analyst": "alive",
        "selector": "not answering",
        "researcher": "not answering",
        "engineer": "not answering",
    }
    text = ok(asiarch("status", "--run-dir", str(run_dir)))
    for fragment in ("results-run", "running", "3 of 5", "alive", "strategy=ucb", f"{len(mine)} (", "best"):
        assert fragment in text, fragment
    assert re.search(rf"analyst\s+{re.escape(analyst.address)} \(local, alive\)", text)
    assert re.search(r"selector\s+127\.0\.0\.1:1 \(local, not answering\)", text)
    assert "recorded them" not in text


def test_status_without_a_reachable_analyst_shows_run_json(
    recorded: dict[str, common_pb2.Experiment], run_dir: Path
) -> None:
    result = asiarch("status", "--json", "--run-dir", str(run_dir), "--analyst", closed_port(), timeout=20)
    status = json.loads(ok(result))
    assert status["state"] == "running" and status["cycles_done"] == 3
    assert status["analyst"]["reachable"] is False and status["analyst"]["error"]
    text = ok(asiarch("status", "--run-dir", str(run_dir), "--analyst", closed_port(), timeout=20))
    assert "not reachable" in text and "3 of 5" in text


# ---------------------------------------------------------------------------------------------- last


def test_leaderboard_starts_its_own_analyst_on_the_run_directory(
    recorded: dict[str, common_pb2.Experiment], run_dir: Path, analyst: RunningService
) -> None:
    # Qdrant's local mode admits one process per directory: the module's analyst must go first.
    assert analyst.stop() == 0
    write_run(run_dir, metadata("127.0.0.1:1", state="finished"))
    rows = json.loads(ok(asiarch("leaderboard", "--json", "--run-dir", str(run_dir), timeout=180)))
    assert [r["id"] for r in rows] == expected_order(recorded)
    assert (run_dir / "logs" / "analyst-reader.log").exists()

    # a finished run: its services are reported as the run's, stopped; not as if they were current
    status = json.loads(ok(asiarch("status", "--json", "--local", "--run-dir", str(run_dir))))
    assert status["run_alive"] is False and status["analyst"]["reachable"] is True
    assert set(status["service_states"].values()) == {"stopped"}
    text = ok(asiarch("status", "--run-dir", str(run_dir)))
    assert "the run's services, as run.json recorded them (the run is finished)" in text
    assert re.search(r"analyst\s+127\.0\.0\.1:1 \(local, stopped\)", text)
    assert "alive" not in text
    assert "c0004.0" in ok(asiarch("show", "c4-wide-k", "--run-dir", str(run_dir)))


def test_reading_a_run_never_loads_the_embedding_model(
    recorded: dict[str, common_pb2.Experiment], run_dir: Path, analyst: RunningService
) -> None:
    # Runs after the local-reader test above: every reader it started has stopped and said what it loaded.
    closing = [
        json.loads(line)
        for line in (run_dir / "logs" / "analyst-reader.log").read_text().splitlines()
        if '"analyst closing"' in line
    ]
    assert len(closing) >= 3, "each local reader logs what it loaded when it stops"
    for record in closing:
        assert record["embedding_model_loaded"] is False and record["torch_imported"] is False, record
        assert record["vector_store_opened"] is False, record
    # the signal is real: the module's analyst recorded experiments, which needs the model
    [stopped] = [r for r in analyst.log_records() if r.get("event") == "analyst closing"]
    assert stopped["embedding_model_loaded"] is True and stopped["torch_imported"] is True


# ---------------------------------------------------------------------------------------------- plots


def test_the_fitness_plot_has_whole_cycle_ticks() -> None:
    from asiarch.orchestrator.results import plots

    experiments = [e for e in results_data.run_experiments() if e.cycle <= 2]  # few cycles: 0.5 steps before
    for e in experiments:
        e.fitness.total = 1.0 + e.cycle / 10
    figure = plots.fitness_over_cycles(experiments)
    figure.draw_without_rendering()
    [ax] = figure.axes
    labels = [t.get_text().replace("\u2212", "-") for t in ax.get_xticklabels() if t.get_text()]
    assert labels and all(re.fullmatch(r"-?\d+", label) for label in labels), labels
