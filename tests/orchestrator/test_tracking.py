"""MLflow tracking (asiarch.orchestrator.tracking) against MLflow's real SQLite store, read back with
MlflowClient: `asiarch export-runs mlflow RUN_DIR` on the recorded run of the results tests (a real
analyst, replicates and confirmations included), logging again without duplicates, one-line errors, and
discover's live tracking (its display hook, the confirmation logged after the cycle, a failing store
that only warns). One store per module: MLflow's first database creation takes seconds.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import types
from pathlib import Path
from typing import Any

import grpc
import pytest
import results_data
import test_results
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from support import BIN, RunningService

from asiarch.orchestrator.tracking import (
    ID_TAG,
    LiveTracking,
    MlflowTracker,
    TrackedDisplay,
    artifact_location,
    live_tracking,
    tracking_uri,
)
from asiarch.v1 import analyst_pb2_grpc, common_pb2

RUN_ID = results_data.RUN_ID
# The recorded run of the results tests (this module's own copy): a real analyst holding it, run.json
# beside it naming that analyst, as a running discover leaves it.
analyst, recorded, run_dir = test_results.analyst, test_results.recorded, test_results.run_dir


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlruns' / 'mlflow.db'}"


def export_runs(run_dir: Path, uri: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    env.pop("ASIARCH_ANALYST_ADDRESS", None)
    return subprocess.run(
        [str(BIN / "asiarch"), "export-runs", "mlflow", str(run_dir), *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def runs_by_id(uri: str, experiment_name: str) -> dict[str, Run]:
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(experiment_name)
    assert experiment is not None, f"no MLflow experiment {experiment_name!r}"
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    ids = [r.data.tags[ID_TAG] for r in runs]
    assert len(ids) == len(set(ids)), "an asiarch experiment was logged twice"
    return {r.data.tags[ID_TAG]: r for r in runs}


def artifact(uri: str, run: Run, name: str) -> str:
    return Path(MlflowClient(tracking_uri=uri).download_artifacts(run.info.run_id, name)).read_text()


@pytest.fixture(scope="module")
def exported(
    recorded: dict[str, common_pb2.Experiment],
    run_dir: Path,
    store: str,
) -> subprocess.CompletedProcess[str]:
    # No --analyst: run.json names the run's running analyst, as for the results commands.
    return export_runs(run_dir, store)


def test_export_runs_logs_each_experiment_with_params_metrics_curve_tags_and_artifacts(
    exported: subprocess.CompletedProcess[str],
    recorded: dict[str, common_pb2.Experiment],
    store: str,
) -> None:
    assert exported.returncode == 0, exported.stderr
    runs = runs_by_id(store, RUN_ID)
    replicates = {f"{o}.s{s}.r2" for o, losses in results_data.CONFIRMATIONS.items() for s in (1, 2, 3)}
    assert set(runs) == {i for i, e in recorded.items() if e.run_id == RUN_ID} | replicates
    assert f"{len(runs)} logged, 0 updated, 0 unchanged" in exported.stdout

    best, e = runs["c3-best"], recorded["c3-best"]
    assert best.info.run_name == "c3-best" and best.info.status == "FINISHED"
    params = best.data.params
    assert (params["parent"], params["cycle"], params["strategy"], params["budget"]) == (
        "c2-l2",
        "3",
        "ucb",
        "smoke",
    )
    assert params["device"] == "cpu: 2 threads" and params["rung"] == "1" and params["seed"] == "0"
    metrics = best.data.metrics
    assert metrics["val_loss"] == pytest.approx(1.85) and metrics["mqar/seq128_kv8"] == pytest.approx(0.62)
    assert metrics["mqar_mean"] == pytest.approx(0.67) and metrics["tokens_per_second"] == 21_000
    assert metrics["fitness/total"] == pytest.approx(e.fitness.total)
    assert metrics["fitness/loss_score"] == pytest.approx(e.fitness.loss_score)
    history = MlflowClient(tracking_uri=store).get_metric_history(best.info.run_id, "loss_curve/train")
    curve = e.evaluation.metrics.loss_curve
    assert sorted((m.step, m.value) for m in history) == [
        (p.step, pytest.approx(p.train_loss)) for p in curve
    ]
    tags = best.data.tags
    assert tags["asiarch.parent_ids"] == "c2-l2" and tags["asiarch.is_baseline"] == "false"
    assert tags["asiarch.confirmation"] == "confirmed" and tags["asiarch.breakthrough"] == "true"
    assert tags["asiarch.confirmation_verdict"] == e.confirmation.verdict
    assert tags["mlflow.note.content"] == results_data.SCRIPT_MOTIVATION

    assert artifact(store, best, "layer.py") == e.evaluation.final_source.module_source
    assert e.analysis.synthesis in artifact(store, best, "analysis.md")
    assert '"rival_id": "gated-deltanet"' in artifact(store, best, "analysis.json")
    # the repaired child: the source evaluated, not the broken one proposed
    assert "BROKEN" not in artifact(store, runs["c2-l2"], "layer.py")


def test_lineage_failures_and_replicates_are_tagged(
    exported: subprocess.CompletedProcess[str],
    recorded: dict[str, common_pb2.Experiment],
    store: str,
) -> None:
    runs = runs_by_id(store, RUN_ID)
    assert runs["c3-kitchen"].data.params["parents"] == "c2-l2,c1-noconv"
    assert runs["deltanet"].data.tags["asiarch.is_baseline"] == "true"
    assert "parent" not in runs["deltanet"].data.params
    failed = runs["c2-fail"]
    assert failed.info.status == "FAILED" and failed.data.tags["asiarch.status"] == "failed"
    assert "not causal" in failed.data.tags["asiarch.failure_reason"]
    assert "fitness/total" not in failed.data.metrics and "val_loss" not in failed.data.metrics
    replicate = runs["c3-best.s2.r2"]
    assert replicate.data.tags["asiarch.replicate_of"] == "c3-best"
    assert (replicate.data.params["seed"], replicate.data.params["rung"]) == ("2", "2")
    assert runs["c1-gate"].data.tags["asiarch.confirmation"] == "not confirmed"


def test_exporting_again_logs_nothing_twice_and_a_change_updates_the_same_run(
    exported: subprocess.CompletedProcess[str],
    recorded: dict[str, common_pb2.Experiment],
    run_dir: Path,
    store: str,
) -> None:
    before = runs_by_id(store, RUN_ID)
    again = export_runs(run_dir, store)
    assert again.returncode == 0, again.stderr
    assert f"0 logged, 0 updated, {len(before)} unchanged" in again.stdout
    # A confirmation recorded later (here: its verdict and a metric changed) updates the run in place.
    changed = common_pb2.Experiment()
    changed.CopyFrom(recorded["c1-gate"])
    changed.confirmation.verdict = "not confirmed: re-tested by hand"
    changed.fitness.total += 1.0
    assert MlflowTracker(RUN_ID, {}, uri=store).log(changed) == "updated"
    after = runs_by_id(store, RUN_ID)
    assert set(after) == set(before)
    run = after["c1-gate"]
    assert run.info.run_id == before["c1-gate"].info.run_id
    assert run.data.tags["asiarch.confirmation_verdict"] == "not confirmed: re-tested by hand"
    assert run.data.metrics["fitness/total"] == pytest.approx(changed.fitness.total)
    history = MlflowClient(tracking_uri=store).get_metric_history(run.info.run_id, "loss_curve/train")
    assert len(history) == len(changed.evaluation.metrics.loss_curve)  # the curve is not appended again


def test_the_store_is_mlflow_tracking_uri_else_sqlite_in_mlruns_with_the_artifacts_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    located = artifact_location(tracking_uri(), "run-7")
    assert located == (tmp_path.resolve() / "mlruns" / "artifacts" / "run-7").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert tracking_uri() == "http://mlflow.example:5000"
    assert artifact_location(tracking_uri(), "run-7") is None  # the server's own artifact store


def test_mlflow_is_loaded_only_when_tracking_is_used() -> None:
    probe = (
        "import sys, asiarch.orchestrator.cli, asiarch.orchestrator.tracking; print('mlflow' in sys.modules)"
    )
    result = subprocess.run(
        [str(BIN / "python"), "-P", "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip() == "False", result.stderr


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("uri", "said"),
    [
        ("bogus://nowhere", "MLflow cannot use the tracking URI 'bogus://nowhere' (MLFLOW_TRACKING_URI)"),
        ("http://127.0.0.1:{port}", "MLflow tracking at http://127.0.0.1:{port}: MlflowException"),
    ],
)
def test_a_tracker_that_cannot_be_used_is_one_line_and_exit_1(
    recorded: dict[str, common_pb2.Experiment],
    run_dir: Path,
    analyst: RunningService,
    uri: str,
    said: str,
) -> None:
    port = closed_port()
    result = export_runs(run_dir, uri.format(port=port), "--analyst", analyst.address)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"asiarch export-runs: {said.format(port=port)}"), lines


# ---------------------------------------------------------------------------------------------- discover


class Screen:
    """A discover Display that remembers what it was told."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.finished_ids: list[str] = []
        self.entered = False

    def __enter__(self) -> Screen:
        self.entered = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.entered = False

    def note(self, message: str) -> None:
        self.notes.append(message)

    def finished(self, key: str, experiment: common_pb2.Experiment) -> None:
        self.finished_ids.append(key)


async def track_live(
    experiments: list[common_pb2.Experiment], analyst_address: str, run_id: str, screen: Screen
) -> None:
    """What discover does with --track: each record through the display, then the cycle's end."""
    async with grpc.aio.insecure_channel(analyst_address) as channel:
        tracking = LiveTracking(
            run_id, {"strategy": "asi-arch"}, analyst_pb2_grpc.AnalystStub(channel), screen.note, True
        )
        display = tracking.display(screen)
        with display:
            assert isinstance(display, TrackedDisplay) and screen.entered
            for e in experiments:
                display.finished(e.id, e)
            cycle_ends: list[int] = []

            async def cycle_done(cycle: int, proposed: dict[str, Any]) -> None:
                cycle_ends.append(cycle)

            await tracking.after_cycle(cycle_done)(1, {})
            assert cycle_ends == [1]
        screen.note(await tracking.close())


def test_discover_logs_each_recorded_experiment_and_its_later_confirmation(
    recorded: dict[str, common_pb2.Experiment],
    analyst: RunningService,
    store: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    # As the loop records it: promising, not yet confirmed (the loop confirms it within the cycle).
    unconfirmed = common_pb2.Experiment()
    unconfirmed.CopyFrom(recorded["c3-best"])
    unconfirmed.ClearField("confirmation")
    screen = Screen()
    asyncio.run(track_live([recorded["deltanet"], unconfirmed], analyst.address, "live-run", screen))
    assert screen.finished_ids == ["deltanet", "c3-best"]  # the display still shows every record
    runs = runs_by_id(store, "live-run")
    assert set(runs) == {"deltanet", "c3-best"}
    # after the cycle, the verdict the analyst now holds was logged on the same run
    assert runs["c3-best"].data.tags["asiarch.confirmation"] == "confirmed"
    assert "MLflow: 2 experiment(s) of run 'live-run' logged at" in screen.notes[-1]


def test_a_failing_tracker_during_discover_is_a_warning_not_a_dead_run(
    recorded: dict[str, common_pb2.Experiment],
    analyst: RunningService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "bogus://nowhere")
    screen = Screen()
    asyncio.run(track_live([recorded["deltanet"], recorded["c1-gate"]], analyst.address, "dead-run", screen))
    assert screen.finished_ids == ["deltanet", "c1-gate"]
    warnings = [n for n in screen.notes if n.startswith("warning: MLflow tracking stopped, the run goes on")]
    assert len(warnings) == 1 and "asiarch export-runs mlflow RUN_DIR" in warnings[0]
    assert screen.notes[-1].startswith("MLflow tracking stopped: MLflow cannot use the tracking URI")


def test_a_run_that_stops_leaves_the_rest_to_export_runs(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    screen = Screen()
    stubs, options = types.SimpleNamespace(analyst=None), types.SimpleNamespace(confirm_seeds=0)

    async def stopped() -> None:
        async with live_tracking("mlflow", {"run_id": "stopped-run"}, stubs, screen, options):
            raise KeyboardInterrupt  # Ctrl-C in the middle of a cycle

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(stopped())
    assert screen.notes == [
        "MLflow tracking stopped with the run; `asiarch export-runs mlflow RUN_DIR` logs the rest"
    ]
