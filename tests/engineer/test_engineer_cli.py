"""`asiarch validate`, `asiarch evaluate` and `asiarch baselines` as a user runs them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import layers
import pytest
from support import BIN, REPO, RunningService, start_service

from asiarch.common.cli import output_path


@pytest.fixture(scope="module")
def engineer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    service = start_service("engineer", tmp_path_factory.mktemp("engineer-cli"))
    yield service
    assert service.stop() == 0


def asiarch(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "asiarch"), *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_validate_rejects_softmax_as_quadratic(engineer: RunningService) -> None:
    done = asiarch("validate", str(layers.BASELINES / "softmax_attention.py"), "--engineer", engineer.address)
    assert done.returncode == 1
    assert "FAIL functional.complexity" in done.stdout
    assert "quadratic" in done.stderr


def test_validate_rejects_a_peeking_layer_as_non_causal(engineer: RunningService, tmp_path: Path) -> None:
    done = asiarch("validate", write(tmp_path, "peek.py", layers.NON_CAUSAL), "--engineer", engineer.address)
    assert done.returncode == 1
    assert "FAIL functional.causality" in done.stdout
    assert "future tokens" in done.stderr


def test_validate_names_the_stage_of_a_runtime_failure(engineer: RunningService, tmp_path: Path) -> None:
    # A layer that raises while being built once left only passed static checks and a traceback.
    broken = write(tmp_path, "broken.py", layers.layer(init="raise RuntimeError('boom in init')"))
    done = asiarch("validate", broken, "--engineer", engineer.address)
    assert done.returncode == 1
    assert "FAIL functional.run [functional checks]" in done.stdout
    assert "invalid at functional checks:" in done.stderr and "boom in init" in done.stderr
    as_json = asiarch("validate", broken, "--engineer", engineer.address, "--json")
    assert as_json.returncode == 1
    response = json.loads(as_json.stdout)
    assert response["valid"] is False
    failed = [check for check in response["checks"] if not check["passed"]]
    assert [(c["name"], c["stage"]) for c in failed] == [
        ("functional.run", "EVALUATION_STAGE_FUNCTIONAL_CHECKS")
    ]
    assert all("line" in check for check in response["checks"])  # zeros are printed, not dropped


def test_json_output_keeps_zero_scores() -> None:
    from asiarch.engineer.cli import _json
    from asiarch.v1 import common_pb2

    result = common_pb2.Evaluation(
        metrics=common_pb2.Metrics(benchmarks=[common_pb2.BenchmarkScore(name="mqar")])
    )
    (score,) = json.loads(_json(result))["metrics"]["benchmarks"]
    assert score["name"] == "mqar" and score["score"] == 0.0


def test_validate_accepts_a_good_layer_with_a_local_engineer(tmp_path: Path) -> None:
    done = asiarch("validate", write(tmp_path, "good.py", layers.GOOD))  # no address: starts its own
    assert done.returncode == 0, done.stderr
    assert "good.py: valid" in done.stdout
    # The seconds the local engineer takes to start are said as they pass, on stderr (stdout is the verdict).
    assert re.search(
        r"starting a local engineer …\na local engineer serves on 127\.0\.0\.1:\d+ \(\d+\.\d s\)", done.stderr
    )
    assert "local engineer" not in done.stdout


def test_evaluate_prints_json_metrics(engineer: RunningService) -> None:
    done = asiarch(
        "evaluate", str(layers.BASELINES / "gated_deltanet.py"), "--budget", "smoke", "--json",
        "--engineer", engineer.address,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "EVALUATION_STATUS_SUCCEEDED"
    assert result["metrics"]["val_loss"] > 0
    assert len(result["metrics"]["benchmarks"]) == 3


@pytest.mark.slow  # four smoke evaluations: about 20 s on 2 cores
def test_baselines_outside_the_repository_write_to_a_temporary_folder_and_say_where(
    engineer: RunningService, tmp_path: Path
) -> None:
    done = asiarch("baselines", "--budget", "smoke", "--engineer", engineer.address, cwd=tmp_path)
    written = re.search(r"written to (\S+)", done.stdout)
    assert done.returncode == 0 and written, done.stdout[-2000:] + done.stderr[-2000:]
    page = Path(written.group(1))
    try:
        assert page.name == "baselines.md" and "| gated-deltanet |" in page.read_text()
        assert not page.is_relative_to(tmp_path) and list(tmp_path.iterdir()) == []  # no docs/ here
    finally:
        shutil.rmtree(page.parent)


def test_baselines_write_the_docs_page_only_from_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = tmp_path / "mine.md"
    assert output_path(given, "baselines.md") == given
    monkeypatch.chdir(REPO)
    assert output_path(None, "baselines.md") == Path("docs/baselines.md")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "someone-else"\n')
    monkeypatch.chdir(tmp_path)
    elsewhere = output_path(None, "baselines.md")
    assert elsewhere.parent.is_dir() and not elsewhere.is_relative_to(tmp_path)
    elsewhere.parent.rmdir()
