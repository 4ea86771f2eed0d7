"""`asiarch discover` end to end: four real service processes, two cycles, then a resumed run during
which the engineer is killed mid-cycle. Smoke budget, no LLM. Before those, the mistakes that must be
refused before any service starts (they cost a second, not a run)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import BIN, REPO

from asiarch.analyst.repository import ExperimentRepository
from asiarch.analyst.store import EmbeddedDatabase
from asiarch.common.errors import ConfigError
from asiarch.common.llm.factory import Backend
from asiarch.orchestrator.cli import check_strategy
from asiarch.selector.strategies import list_strategies
from asiarch.v1 import analyst_pb2, common_pb2

# A refusal must come before anything starts: a second or so; generous for a loaded 2-core machine.
REFUSED_WITHIN_S = 30


def run_of_services(test: Callable[..., None]) -> Callable[..., None]:
    """A test of a discovery run with four services: minutes, not the suite's default two."""
    return pytest.mark.slow(pytest.mark.timeout(900)(test))


TERMINAL = {common_pb2.EXPERIMENT_STATUS_SUCCEEDED, common_pb2.EXPERIMENT_STATUS_FAILED}
BASELINES = 4  # linear-attention, deltanet, gated-deltanet, softmax-attention (reference)


def discover(run_dir: Path, *extra: str) -> list[str]:
    return [
        str(BIN / "asiarch"),
        "discover",
        "--budget",
        "smoke",
        "--llm",
        "none",
        "--run-dir",
        str(run_dir),
        *extra,
    ]


def stored(run_dir: Path) -> list[common_pb2.Experiment]:
    """The run's experiments, replicates included, read straight from the embedded store (no analyst
    process needed)."""

    async def load() -> list[common_pb2.Experiment]:
        database = EmbeddedDatabase(run_dir / "store", attempts=1)
        try:
            repository = ExperimentRepository(database.collection("experiments"))
            page, _, _ = await repository.page(
                run_dir.name, [], analyst_pb2.EXPERIMENT_SORT_CREATED_ASC, 1000, "", include_replicates=True
            )
            return page
        finally:
            await database.close()

    return asyncio.run(load())


def refused(run_dir: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run discover with a mistake; assert it exits 2 quickly, having created nothing; its stderr."""
    started = time.monotonic()
    result = subprocess.run(
        [str(BIN / "asiarch"), "discover", "--run-dir", str(run_dir), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=run_dir.parent,
        env={**os.environ, **(env or {})},
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert elapsed < REFUSED_WITHIN_S, f"refused after {elapsed:.1f} s"
    assert not run_dir.exists(), "nothing may be written before the options are checked"
    return result.stderr


@pytest.mark.parametrize(
    ("flag", "value", "valid"),
    [
        ("--strategy", "nope", [info.name for info in list_strategies()]),
        ("--budget", "nope", ["smoke", "cpu", "gpu", "small"]),
        ("--llm", "nope", [backend.value for backend in Backend]),
        ("--mode", "nope", ["code", "dsl"]),
        ("--device", "tpu", ["'cpu'", "'cuda'", "'cuda:N'"]),
    ],
)
def test_an_unknown_option_value_is_refused_at_once_with_the_valid_ones(
    tmp_path: Path, flag: str, value: str, valid: list[str]
) -> None:
    stderr = refused(tmp_path / "run", flag, value)
    assert f"argument {flag}" in stderr and repr(value) in stderr
    for name in valid:
        assert name in stderr


@pytest.mark.parametrize("share", ["1", "nan"])
def test_a_proxy_filter_share_outside_0_to_1_is_refused_at_once(tmp_path: Path, share: str) -> None:
    stderr = refused(tmp_path / "run", "--proxy-filter", share)
    assert f"argument --proxy-filter: must be at least 0 and below 1, got {share}" in stderr


def test_a_strategy_only_a_remote_selector_offers_is_left_to_that_selector() -> None:
    # A replacement selector given by address may offer strategies ours does not: the loop asks it.
    check_strategy("my-own-strategy", "selector.example:50051")
    check_strategy("asi-arch", None)
    with pytest.raises(ConfigError, match="'my-own-strategy' is not a strategy of the local selector"):
        check_strategy("my-own-strategy", None)


def test_code_without_an_llm_is_refused_rather_than_run_as_dsl(tmp_path: Path) -> None:
    stderr = refused(tmp_path / "run", "--mode", "code", "--llm", "none")
    assert "--mode code needs an LLM" in stderr and "--llm local|tgi|openai" in stderr


def test_an_unknown_llm_backend_in_the_environment_is_refused(tmp_path: Path) -> None:
    stderr = refused(tmp_path / "run", env={"ASIARCH_LLM_BACKEND": "gpt"})
    assert "ASIARCH_LLM_BACKEND='gpt'" in stderr and "none, local, tgi, openai" in stderr


# The environment a user's shell gives: no PYTHONSAFEPATH to hide a child started without -P.
UNSAFE_PATH_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONSAFEPATH", "PYTHONPATH")}


@dataclass
class FirstRun:
    run_dir: Path
    output: str
    experiments: list[common_pb2.Experiment]


def mlflow_store(run_dir: Path) -> str:
    return f"sqlite:///{run_dir.parent / 'mlruns' / 'mlflow.db'}"


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> FirstRun:
    run_dir = tmp_path_factory.mktemp("discover") / "e2e"
    # From the repository root, as `make run` does: there our kernels/ folder has the name of Hugging
    # Face's `kernels` package, which transformers imports in the services (issue 14).
    result = subprocess.run(
        # --proxy-filter: far below its bar (30 candidates), it records the proxies and says why it is off.
        # --track: into a store beside the run (test_the_run_was_tracked_in_mlflow_as_it_recorded).
        discover(run_dir, "--cycles", "2", "--confirm-seeds", "2", "--proxy-filter", "0.5", "--track=mlflow"),
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
        env={**UNSAFE_PATH_ENV, "MLFLOW_TRACKING_URI": mlflow_store(run_dir)},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return FirstRun(run_dir, result.stdout, stored(run_dir))


@run_of_services
def test_the_run_and_a_results_command_work_from_the_repository_root(first_run: FirstRun) -> None:
    # The hazard is real in this environment: Hugging Face's `kernels` is installed beside our folder.
    spec = importlib.util.find_spec("kernels")
    assert spec is not None and spec.origin is not None and "site-packages" in spec.origin
    assert (REPO / "kernels" / "__init__.py").exists()
    result = subprocess.run(
        [str(BIN / "asiarch"), "leaderboard", "--run-dir", str(first_run.run_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=UNSAFE_PATH_ENV,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Leaderboard of run e2e" in result.stdout and "deltanet" in result.stdout


@run_of_services
def test_a_run_records_baselines_and_candidates_with_parents_fitness_and_analysis(
    first_run: FirstRun,
) -> None:
    experiments = [e for e in first_run.experiments if not e.replicate_of]
    baselines = [e for e in experiments if e.is_baseline]
    candidates = [e for e in experiments if not e.is_baseline]
    assert len(baselines) == BASELINES and len(candidates) == 2
    assert [e.cycle for e in candidates] == [1, 2]
    ids = {e.id for e in experiments}
    for e in experiments:
        assert e.status in TERMINAL
        assert e.analysis.design_evaluation and e.analysis.synthesis
    for c in candidates:
        assert c.id == f"e2e.c{c.cycle:04d}.0"
        assert c.parent_ids and c.parent_ids[0] in ids
        assert c.proposal.generator.startswith("mutation:")  # no LLM: the researcher's DSL
        if c.status == common_pb2.EXPERIMENT_STATUS_SUCCEEDED:
            # Scored against the reference baseline, in units of the smoke budget's measured noise.
            assert c.fitness.baseline_id == "e2e.base.deltanet"
            assert c.fitness.noise_floor.startswith("measured: smoke/rung1")
            assert any(x.relation == common_pb2.RELATION_PARENT for x in c.analysis.comparisons)
            assert not c.analysis.breakthrough or c.confirmation.confirmed
    assert any(c.status == common_pb2.EXPERIMENT_STATUS_SUCCEEDED for c in candidates)
    # Baselines are ranked by the same formula: the reference scores 0 + 0 + judge, the others by what
    # they measured against it.
    by_name = {b.name: b for b in baselines}
    assert by_name["deltanet"].fitness.loss_score == 0 and by_name["deltanet"].fitness.benchmark_score == 0
    assert len({round(b.fitness.total, 6) for b in baselines}) == BASELINES  # no neutral ties


@run_of_services
def test_a_promising_candidate_was_confirmed_on_paired_seeds(first_run: FirstRun) -> None:
    """Every candidate that led the strongest baseline beyond the noise got its paired replicates and a
    verdict; every replicate is stored, pointing at what it repeats, at rung 2."""
    experiments = first_run.experiments
    replicates = [e for e in experiments if e.replicate_of]
    for c in experiments:
        if c.replicate_of or c.is_baseline or not c.analysis.promising:
            continue
        verdict = c.confirmation
        assert verdict.against_id == c.analysis.rival_id and verdict.verdict
        assert [p.seed for p in verdict.pairs] == [1, 2]  # --seed 0: seeds 1..--confirm-seeds
        mine = {r.evaluation.budget.seed for r in replicates if r.replicate_of == c.id}
        theirs = {r.evaluation.budget.seed for r in replicates if r.replicate_of == verdict.against_id}
        assert mine == theirs == {1, 2}
    assert all(r.evaluation.budget.rung == 2 and r.id.endswith(".r2") for r in replicates)


@run_of_services
def test_the_run_is_described_on_disk_and_on_screen(first_run: FirstRun) -> None:
    metadata = json.loads((first_run.run_dir / "run.json").read_text())
    assert metadata["state"] == "finished" and metadata["cycles_done"] == 2
    assert set(metadata["local_services"]) == {"analyst", "selector", "researcher", "engineer"}
    # No LLM: DSL is what was asked for (not code, then a fallback) and what ran, and nothing warns.
    assert metadata["options"]["mode"] == "dsl" and metadata["options"]["llm"] == "none"
    assert metadata["proposed"] == {"dsl_mutation": 2}
    assert "no LLM configured" not in first_run.output
    for name in ("analyst", "selector", "researcher", "engineer"):
        assert (first_run.run_dir / "logs" / f"{name}.log").stat().st_size > 0
    assert "Leaderboard of run e2e" in first_run.output
    assert f"report: {(first_run.run_dir / 'report.html').resolve()}" in first_run.output
    assert "cycle 2: parents" in first_run.output
    # The run-level line after each cycle (a plain line off a terminal), the ETA from measured cycles.
    assert re.search(r"cycle 1 of 2 done in \d+ s; best confirmed .+ · about .+ left", first_run.output)
    assert re.search(r"cycle 2 of 2 done in \d+ s; best confirmed .+ · about 0 s left", first_run.output)
    assert (first_run.run_dir / "report.html").exists()


@run_of_services
def test_the_run_writes_its_numbers_per_cycle(first_run: FirstRun) -> None:
    """stats.json (asiarch.orchestrator.stats): a line per cycle with what was proposed, rejected before
    training, trained and confirmed, the time in the engineer and the local services' CPU time."""
    stats = json.loads((first_run.run_dir / "stats.json").read_text())
    assert (stats["version"], stats["run_id"], stats["strategy"], stats["budget"]) == (
        1,
        "e2e",
        "asi-arch",
        "smoke",
    )
    assert [c["cycle"] for c in stats["cycles"]] == [1, 2]
    candidates = [e for e in first_run.experiments if not e.is_baseline and not e.replicate_of]
    for numbers in stats["cycles"]:
        mine = [e for e in candidates if e.cycle == numbers["cycle"]]
        rejected = numbers["rejected"]
        assert numbers["proposals"] >= len(mine) == 1
        # Each candidate was trained, or rejected by its checks before training, or reused its twin's result.
        assert numbers["evaluated"] + rejected["static"] + rejected["functional"] <= len(mine)
        assert rejected["proxy"] == 0  # the filter is off
        succeeded = sum(e.status == common_pb2.EXPERIMENT_STATUS_SUCCEEDED for e in mine)
        assert numbers["valid"] == (succeeded if numbers["evaluated"] else 0)
        assert numbers["confirmations"] == sum(bool(e.confirmation.against_id) for e in mine)
        assert 0 <= numbers["engineer_seconds"] <= numbers["wall_seconds"]  # --parallel 1
        # The four local services' CPU time, the sandboxes' included: at least what the engineer trained.
        assert numbers["cpu_seconds"] is not None and numbers["cpu_seconds"] > 0
    # Every trained candidate's proxies are recorded; the filter said once why it stayed off.
    assert all(
        e.evaluation.metrics.proxies for e in candidates if e.status == common_pb2.EXPERIMENT_STATUS_SUCCEEDED
    )
    assert first_run.output.count("proxy filter off: loss_slope rho") == 1
    assert "needs >= 0.5 on >= 30" in first_run.output


@run_of_services
def test_the_run_was_tracked_in_mlflow_as_it_recorded(first_run: FirstRun) -> None:
    """--track mlflow: each finished experiment (replicates included) is one MLflow run with its numbers
    and its confirmation verdict; exporting the finished run afterwards finds nothing new."""
    from mlflow.tracking import MlflowClient

    uri = mlflow_store(first_run.run_dir)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("e2e")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    by_id = {r.data.tags["asiarch.id"]: r for r in runs}
    finished = {e.id: e for e in first_run.experiments if e.status in TERMINAL}
    assert set(by_id) == set(finished) and len(runs) == len(by_id)
    for experiment_id, e in finished.items():
        run = by_id[experiment_id]
        if e.status == common_pb2.EXPERIMENT_STATUS_SUCCEEDED:
            assert run.info.status == "FINISHED"
            assert run.data.metrics["val_loss"] == pytest.approx(e.evaluation.metrics.val_loss)
            assert "loss_curve/train" in run.data.metrics
        if e.confirmation.against_id:
            assert run.data.tags["asiarch.confirmation_verdict"] == e.confirmation.verdict
    assert f"MLflow: {len(by_id)} experiment(s) of run 'e2e' logged at" in first_run.output
    again = subprocess.run(
        [str(BIN / "asiarch"), "export-runs", "mlflow", str(first_run.run_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MLFLOW_TRACKING_URI": uri},
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"0 logged, 0 updated, {len(by_id)} unchanged" in again.stdout


@run_of_services
def test_a_finished_run_is_not_overwritten_without_resume(first_run: FirstRun) -> None:
    result = subprocess.run(
        discover(first_run.run_dir, "--cycles", "1"), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "--resume" in result.stderr


@run_of_services
def test_resume_survives_an_engineer_killed_mid_cycle(first_run: FirstRun) -> None:
    """--resume runs cycle 3; the engineer is killed while it works; the local engineer is restarted on
    its port, the evaluation retried, and nothing is lost or recorded twice."""
    before = {e.id: e for e in stored(first_run.run_dir)}
    process = subprocess.Popen(
        discover(first_run.run_dir, "--cycles", "3", "--resume", "--confirm-seeds", "2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    output: list[str] = []
    killed = False
    deadline = time.monotonic() + 600
    for line in process.stdout:
        output.append(line)
        if not killed and "cycle 3: parents" in line:
            # A smoke evaluation takes seconds: 1 s in, the proposal is recorded and the evaluation (on a
            # loaded machine perhaps still the proposal) under way; later, a quick candidate may be done.
            time.sleep(1)
            assert process.poll() is None, "discover finished before the engineer could be killed"
            metadata = json.loads((first_run.run_dir / "run.json").read_text())
            os.kill(metadata["local_pids"]["engineer"], signal.SIGKILL)
            killed = True
        assert time.monotonic() < deadline, "".join(output)[-3000:]
    assert process.wait(timeout=60) == 0, "".join(output)[-3000:]
    text = "".join(output)
    assert killed and "restarting on the same port" in text

    everything = stored(first_run.run_dir)
    assert len(everything) == len({e.id for e in everything})
    after = [e for e in everything if not e.replicate_of]
    assert len(after) == BASELINES + 3
    assert [e.cycle for e in after if not e.is_baseline] == [1, 2, 3]
    assert all(e.status in TERMINAL for e in after)
    for e in after:  # the first run's records are untouched
        if e.id in before:
            assert e == before[e.id]
    third = next(e for e in after if e.cycle == 3)
    assert third.evaluation.status == common_pb2.EVALUATION_STATUS_SUCCEEDED, third.evaluation.failure_reason
    metadata = json.loads((first_run.run_dir / "run.json").read_text())
    assert metadata["cycles_done"] == 3 and metadata["proposed"] == {"dsl_mutation": 3}
    stats = json.loads((first_run.run_dir / "stats.json").read_text())
    assert [c["cycle"] for c in stats["cycles"]] == [1, 2, 3]  # the resumed run appended its cycle


@run_of_services
def test_confirm_by_hand_trains_only_the_missing_pairs_and_stores_the_verdict(first_run: FirstRun) -> None:
    """`asiarch confirm` on the stopped run: seeds 1-3 against the design's rival, where the seeds an
    earlier confirmation trained are answered by the store."""
    designs = [
        e
        for e in stored(first_run.run_dir)
        if not e.is_baseline and not e.replicate_of and e.status == common_pb2.EXPERIMENT_STATUS_SUCCEEDED
    ]
    design = designs[0]
    before = {e.id for e in stored(first_run.run_dir) if e.replicate_of}
    run = str(first_run.run_dir)
    result = subprocess.run(
        [str(BIN / "asiarch"), "confirm", design.id.removeprefix("e2e."), "--seeds", "3", "--run-dir", run],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    after = {e.id: e for e in stored(first_run.run_dir)}
    verdict = after[design.id].confirmation
    assert verdict.against_id == design.analysis.rival_id
    assert [p.seed for p in verdict.pairs] == [1, 2, 3]
    assert verdict.verdict.split(":")[0] in ("confirmed", "not confirmed")
    assert verdict.verdict in result.stdout
    assert after[design.id].analysis.breakthrough == verdict.confirmed
    made = {i for i, e in after.items() if e.replicate_of} - before
    # Three seeds for each side, less what the store already held.
    expected = {f"{i}.s{seed}.r2" for i in (design.id, verdict.against_id) for seed in (1, 2, 3)} - before
    assert made == expected
    metadata = json.loads((first_run.run_dir / "run.json").read_text())
    assert metadata["state"] == "finished"  # confirming by hand leaves the run as it was

    unknown = subprocess.run(
        [str(BIN / "asiarch"), "confirm", "no-such-design", "--run-dir", str(first_run.run_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert unknown.returncode == 1 and "no-such-design" in unknown.stderr
