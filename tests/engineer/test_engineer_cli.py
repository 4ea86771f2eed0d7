"""`asiarch validate` and `asiarch evaluate` as a user runs them."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import layers
import pytest
from support import BIN, RunningService, start_service


@pytest.fixture(scope="module")
def engineer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    service = start_service("engineer", tmp_path_factory.mktemp("engineer-cli"))
    yield service
    assert service.stop() == 0


def asiarch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "asiarch"), *args], capture_output=True, text=True, timeout=300)


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


def test_validate_accepts_a_good_layer_with_a_local_engineer(tmp_path: Path) -> None:
    done = asiarch("validate", write(tmp_path, "good.py", layers.GOOD))  # no address: starts its own
    assert done.returncode == 0, done.stderr
    assert "good.py: valid" in done.stdout


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
