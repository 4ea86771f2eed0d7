"""Every service bounds torch's and the BLAS libraries' threads to ASIARCH_THREADS (issue 16).

torch is imported in fresh processes here: its thread pools are sized once per process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import start_service

from asiarch.common.errors import ConfigError
from asiarch.common.threads import LIBRARY_VARIABLES, ThreadSettings, bound_threads

# More threads than this machine has cores: torch's own default (one per core) can never equal it,
# so a test that sees it knows the bound was applied.
UNUSUAL = (os.cpu_count() or 1) + 1


def _python(code: str, **env: str) -> list[str]:
    """Run code in a fresh interpreter (no OMP/MKL variables inherited); what it printed after '='."""
    clean = {k: v for k, v in os.environ.items() if k not in LIBRARY_VARIABLES and k != "ASIARCH_THREADS"}
    done = subprocess.run(
        [sys.executable, "-P", "-c", code], env={**clean, **env}, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return [word for line in done.stdout.splitlines() if line.startswith("=") for word in line[1:].split()]


def test_torch_imported_after_the_bound_takes_it_in_every_thread() -> None:
    # The analyst imports torch when it loads its embedding model, after start-up, in a worker thread.
    # Read from the variables, torch's pool never exceeds the cores, so the bound tested is 1.
    if _python('import torch; print("=", torch.get_num_threads())') == ["1"]:
        pytest.skip("torch's default on this machine is already one thread")
    code = """
import threading
from asiarch.common.threads import bound_threads
bound_threads()
def report():
    import torch
    print("=", torch.get_num_threads())
worker = threading.Thread(target=report)
worker.start(); worker.join()
report()
"""
    assert _python(code, ASIARCH_THREADS="1") == ["1", "1"]


def test_torch_already_imported_is_bounded_too() -> None:
    code = """
import torch
from asiarch.common.threads import bound_threads
bound_threads()
print("=", torch.get_num_threads(), torch.get_num_interop_threads())
"""
    assert _python(code, ASIARCH_THREADS=str(UNUSUAL)) == [str(UNUSUAL)] * 2


def test_the_default_is_one_thread_and_child_processes_inherit_it() -> None:
    code = """
import os
from asiarch.common.threads import LIBRARY_VARIABLES, bound_threads
bound_threads()
print("=", *sorted({os.environ[name] for name in LIBRARY_VARIABLES}))
"""
    assert _python(code) == ["1"]


@pytest.mark.parametrize("value", ["0", "two"])
def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("ASIARCH_THREADS", value)
    with pytest.raises(ConfigError, match="ASIARCH_THREADS"):
        bound_threads()
    assert ThreadSettings(threads=2).threads == 2


# What each service needs to start quickly and leave nothing behind.
LIGHT = {
    "selector": {},
    "researcher": {"ASIARCH_LLM_BACKEND": "none"},
    "engineer": {"ASIARCH_ENGINEER_CALIBRATE": "false"},
    "analyst": {"ASIARCH_LLM_BACKEND": "none", "ASIARCH_ANALYST_PRELOAD_VECTORS": "false"},
}


@pytest.mark.parametrize("service", sorted(LIGHT))
def test_a_started_service_reports_its_bound(tmp_path: Path, service: str) -> None:
    env = {**LIGHT[service], "ASIARCH_RUN_DIR": str(tmp_path / "run")}
    env |= {"ASIARCH_THREADS": str(UNUSUAL), "OMP_NUM_THREADS": "7"}
    running = start_service(service, tmp_path, env=env)
    try:
        bounded = [r for r in running.log_records() if r.get("event") == "threads bounded"]
    finally:
        assert running.stop() == 0
    assert len(bounded) == 1
    assert bounded[0]["threads"] == UNUSUAL
    assert bounded[0]["replaced"] == {"OMP_NUM_THREADS": "7"}  # the one setting wins, and says so
