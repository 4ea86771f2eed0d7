"""The cpu images built and run with docker compose: only where a Docker engine is.

The other deploy tests validate the files; this one runs them. It needs an engine and
network for the builds, which the CI machines do not have, so it runs only when asked:
ASIARCH_DOCKER_SMOKE=1 (and then a missing engine is a failure, not a skip). It builds
the cpu profile's images, starts the four services with compose's own settings (read-only
root, no capabilities, non-root user, the engineers' internal network, a bearer token on
every call), waits for their health checks and runs the orchestrator container for one
smoke-budget cycle. The LLM server is left out (the researcher mutates its DSL); the
MongoDB and Qdrant servers too, unless ASIARCH_DOCKER_SMOKE_STORES=servers, because their
images cannot always be pulled (the analyst then uses its embedded stores).

Build inputs pass through: PYTHON_IMAGE and TORCH_INDEX_URL from this environment.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from deployment import BIN, COMPOSE, read_env_file
from support import REPO

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("ASIARCH_DOCKER_SMOKE") != "1",
        reason="the docker compose run of the images was SKIPPED: set ASIARCH_DOCKER_SMOKE=1 "
        "where a Docker engine runs to build and run them",
    ),
    # Builds from nothing take tens of minutes; every step below has its own timeout.
    pytest.mark.timeout(7200),
]

OVERRIDES = Path(__file__).parent / "compose"
SERVICES = ("selector", "researcher", "analyst", "engineer-cpu")
RUN_DIR = "/var/lib/asiarch/runs/smoke"
NOBODY_CAPABILITIES = "0000000000000000"


class Stack:
    """One compose project from deploy/compose/compose.yaml plus the smoke overrides."""

    def __init__(self, env_file: Path, files: list[Path]) -> None:
        self.project = f"asiarch-smoke-{secrets.token_hex(3)}"
        self.base = [str(BIN / "docker-compose"), "-p", self.project, "--env-file", str(env_file)]
        self.base += ["--project-directory", str(COMPOSE)]
        for path in files:
            self.base += ["-f", str(path)]

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)
        if check and done.returncode != 0:
            raise AssertionError(
                f"docker compose {' '.join(args)} exited {done.returncode}:\n"
                f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
            )
        return done

    def exec(self, service: str, *argv: str) -> subprocess.CompletedProcess:
        return self.compose("exec", "-T", service, *argv, check=False, timeout=120)


def _env_file(tmp: Path) -> Path:
    values = read_env_file(COMPOSE / ".env.example")
    values.update(
        COMPOSE_PROFILES="cpu",
        MONGO_PASSWORD=secrets.token_hex(16),
        ASIARCH_AUTH_TOKEN=secrets.token_hex(16),
        ASIARCH_LLM_BACKEND="none",
        ASIARCH_BUDGET="smoke",
        ASIARCH_CYCLES="1",
        ASIARCH_RUN_NAME="smoke",
    )
    for name in ("PYTHON_IMAGE", "TORCH_INDEX_URL"):
        if os.environ.get(name):
            values[name] = os.environ[name]
    path = tmp / ".env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    engine = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    assert engine.returncode == 0, f"ASIARCH_DOCKER_SMOKE=1 but no Docker engine answers: {engine.stderr}"
    files = [COMPOSE / "compose.yaml", OVERRIDES / "smoke.yaml"]
    if os.environ.get("ASIARCH_DOCKER_SMOKE_STORES") != "servers":
        files.append(OVERRIDES / "embedded-stores.yaml")
    scratch = tmp_path_factory.mktemp("compose")
    stack = Stack(_env_file(scratch), files)
    stack.compose("build", *SERVICES, "orchestrator", timeout=3600)
    try:
        stack.compose("up", "--detach", "--wait", "--wait-timeout", "600", *SERVICES, timeout=900)
        yield stack
    finally:
        # The containers go with `down`: keep what they said for whoever reads a failure.
        logs = scratch / "compose.log"
        logs.write_text(stack.compose("logs", "--no-color", check=False).stdout)
        print(f"docker compose logs of the smoke run: {logs}")
        stack.compose("down", "--volumes", "--remove-orphans", check=False, timeout=300)


def test_every_service_passes_its_health_check(stack: Stack) -> None:
    listed = stack.compose("ps", "--format", "json").stdout
    rows = [json.loads(line) for line in listed.splitlines() if line.strip()]
    health = {row["Service"]: row.get("Health") for row in rows}
    assert health == dict.fromkeys(SERVICES, "healthy")


@pytest.mark.parametrize("service", SERVICES)
def test_containers_run_unprivileged_on_a_read_only_root(stack: Stack, service: str) -> None:
    assert stack.exec(service, "id", "-u").stdout.strip() == "10001"
    written = stack.exec(service, "touch", "/probe")
    assert written.returncode != 0 and "Read-only file system" in written.stderr
    status = stack.exec(service, "grep", "CapEff", "/proc/1/status").stdout
    assert status.split() == ["CapEff:", NOBODY_CAPABILITIES]
    assert stack.exec(service, "touch", "/tmp/probe").returncode == 0  # its scratch space


def _connects(stack: Stack, service: str, host: str, port: int) -> bool:
    probe = f"import socket; socket.create_connection(({host!r}, {port}), timeout=5).close()"
    return stack.exec(service, "python", "-c", probe).returncode == 0


def test_the_engineer_reaches_the_researcher_and_nothing_else(stack: Stack) -> None:
    assert _connects(stack, "engineer-cpu", "researcher", 50052)
    assert not _connects(stack, "engineer-cpu", "analyst", 50054)
    assert not _connects(stack, "engineer-cpu", "pypi.org", 443)


def test_the_orchestrator_container_runs_a_discovery_cycle(stack: Stack) -> None:
    done = stack.compose("run", "--rm", "orchestrator", timeout=1800)
    assert "report.html" in done.stdout + done.stderr
    board = stack.compose(
        "run",
        "--rm",
        "--no-deps",
        "-T",
        "orchestrator",
        "leaderboard",
        "--all",
        "--json",
        f"--run-dir={RUN_DIR}",
    )
    rows = json.loads(board.stdout)
    baselines = [row for row in rows if row["is_baseline"]]
    candidates = [row for row in rows if not row["is_baseline"]]
    assert len(baselines) >= 4 and len(candidates) == 1, rows
    assert candidates[0]["cycle"] == 1 and candidates[0]["parent_id"] in {b["id"] for b in baselines}
    # Baselines are evaluated like candidates (static checks, the sandboxed child, training,
    # MQAR), so their success shows the engineer's pipeline works under the container's limits.
    assert {row["status"] for row in baselines} == {"succeeded"}, baselines
    assert candidates[0]["status"] in ("succeeded", "failed"), candidates  # recorded, not left pending
    # Restarting the job continues the finished run instead of refusing its directory
    # (compose() fails the test on a non-zero exit).
    stack.compose("run", "--rm", "--no-deps", "orchestrator", timeout=900)


def test_calls_without_the_token_are_refused(stack: Stack) -> None:
    # After the cycle: the run directory exists, so only the missing token can fail this.
    denied = stack.compose(
        "run",
        "--rm",
        "--no-deps",
        "-e",
        "ASIARCH_AUTH_TOKEN=",
        "orchestrator",
        "leaderboard",
        f"--run-dir={RUN_DIR}",
        check=False,
        timeout=300,
    )
    assert denied.returncode != 0
    assert "UNAUTHENTICATED" in denied.stdout + denied.stderr


def test_services_stop_cleanly_on_sigterm(stack: Stack) -> None:
    # exec-form entrypoints make asiarch PID 1, so `docker stop`'s SIGTERM reaches the
    # graceful shutdown rather than waiting out the timeout for a SIGKILL (exit 137).
    stack.compose("stop", "--timeout", "60", *SERVICES, timeout=300)
    listed = stack.compose("ps", "--all", "--format", "json").stdout
    rows = [json.loads(line) for line in listed.splitlines() if line.strip()]
    assert {row["Service"]: row["ExitCode"] for row in rows} == dict.fromkeys(SERVICES, 0), rows
