"""`asiarch discover` end to end: four real service processes, two cycles, then a resumed run during
which the engineer is killed mid-cycle. Smoke budget, no LLM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import BIN

from asiarch.analyst.repository import ExperimentRepository
from asiarch.analyst.store import EmbeddedDatabase
from asiarch.v1 import analyst_pb2, common_pb2

# A discovery run with four services takes minutes, not the suite's default two.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
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
    """The run's experiments, read straight from the embedded store (no analyst process needed)."""

    async def load() -> list[common_pb2.Experiment]:
        database = EmbeddedDatabase(run_dir / "store", attempts=1)
        try:
            repository = ExperimentRepository(database.collection("experiments"))
            page, _, _ = await repository.page(
                run_dir.name, [], analyst_pb2.EXPERIMENT_SORT_CREATED_ASC, 1000, ""
            )
            return page
        finally:
            await database.close()

    return asyncio.run(load())


@dataclass
class FirstRun:
    run_dir: Path
    output: str
    experiments: list[common_pb2.Experiment]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> FirstRun:
    run_dir = tmp_path_factory.mktemp("discover") / "e2e"
    result = subprocess.run(
        discover(run_dir, "--cycles", "2"), capture_output=True, text=True, timeout=900, cwd=run_dir.parent
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return FirstRun(run_dir, result.stdout, stored(run_dir))


def test_a_run_records_baselines_and_candidates_with_parents_fitness_and_analysis(
    first_run: FirstRun,
) -> None:
    experiments = first_run.experiments
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
            assert c.fitness.total > 0 and c.fitness.baseline_id
            assert any(x.relation == common_pb2.RELATION_PARENT for x in c.analysis.comparisons)
    assert any(c.status == common_pb2.EXPERIMENT_STATUS_SUCCEEDED for c in candidates)


def test_the_run_is_described_on_disk_and_on_screen(first_run: FirstRun) -> None:
    metadata = json.loads((first_run.run_dir / "run.json").read_text())
    assert metadata["state"] == "finished" and metadata["cycles_done"] == 2
    assert set(metadata["local_services"]) == {"analyst", "selector", "researcher", "engineer"}
    for name in ("analyst", "selector", "researcher", "engineer"):
        assert (first_run.run_dir / "logs" / f"{name}.log").stat().st_size > 0
    assert "Leaderboard of run e2e" in first_run.output
    assert f"report: {(first_run.run_dir / 'report.html').resolve()}" in first_run.output
    assert "cycle 2: parents" in first_run.output
    assert (first_run.run_dir / "report.html").exists()


def test_a_finished_run_is_not_overwritten_without_resume(first_run: FirstRun) -> None:
    result = subprocess.run(
        discover(first_run.run_dir, "--cycles", "1"), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "--resume" in result.stderr


def test_resume_survives_an_engineer_killed_mid_cycle(first_run: FirstRun) -> None:
    """--resume runs cycle 3; the engineer is killed while it works; the local engineer is restarted on
    its port, the evaluation retried, and nothing is lost or recorded twice."""
    before = {e.id: e for e in stored(first_run.run_dir)}
    process = subprocess.Popen(
        discover(first_run.run_dir, "--cycles", "3", "--resume"),
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
            time.sleep(4)  # the proposal is recorded and the evaluation under way
            metadata = json.loads((first_run.run_dir / "run.json").read_text())
            os.kill(metadata["local_pids"]["engineer"], signal.SIGKILL)
            killed = True
        assert time.monotonic() < deadline, "".join(output)[-3000:]
    assert process.wait(timeout=60) == 0, "".join(output)[-3000:]
    text = "".join(output)
    assert killed and "restarting on the same port" in text

    after = stored(first_run.run_dir)
    assert len(after) == len({e.id for e in after}) == BASELINES + 3
    assert [e.cycle for e in after if not e.is_baseline] == [1, 2, 3]
    assert all(e.status in TERMINAL for e in after)
    for e in after:  # the first run's records are untouched
        if e.id in before:
            assert e == before[e.id]
    third = next(e for e in after if e.cycle == 3)
    assert third.evaluation.status == common_pb2.EVALUATION_STATUS_SUCCEEDED, third.evaluation.failure_reason
    assert json.loads((first_run.run_dir / "run.json").read_text())["cycles_done"] == 3
