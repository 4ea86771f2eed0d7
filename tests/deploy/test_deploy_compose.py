"""docker compose: valid against the compose specification and wired to what the code reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from deployment import (
    COMPOSE,
    compose_config,
    compose_problems,
    compose_schema_problems,
    images,
    read_env_file,
)

COMPOSE_FILE = COMPOSE / "compose.yaml"
ENV_EXAMPLE = COMPOSE / ".env.example"
PROFILES = ("cpu", "gpu")
STORES_AND_SERVICES = {"mongodb", "qdrant", "selector", "researcher", "analyst", "orchestrator"}


def _compose(profile: str, path: Path = COMPOSE_FILE, env_file: Path = ENV_EXAMPLE) -> dict:
    config, problems = compose_config(path, env_file, profile)
    assert problems == []
    return config


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    assert compose_schema_problems(COMPOSE_FILE) == []


@pytest.mark.parametrize("profile", PROFILES)
def test_docker_compose_accepts_each_profile(profile: str) -> None:
    assert compose_config(COMPOSE_FILE, ENV_EXAMPLE, profile)[1] == []


@pytest.mark.parametrize("profile", PROFILES)
def test_compose_wiring_matches_the_code(profile: str) -> None:
    assert compose_problems(_compose(profile), images()) == []


@pytest.mark.parametrize(
    ("profile", "engineer", "llm"), [("cpu", "engineer-cpu", "llamacpp"), ("gpu", "engineer-gpu", "tgi")]
)
def test_a_profile_runs_one_llm_server_and_one_engineer(profile: str, engineer: str, llm: str) -> None:
    services = _compose(profile)["services"]
    assert set(services) == STORES_AND_SERVICES | {engineer, llm}
    assert services[engineer]["networks"] == {"engineers": {"aliases": ["engineer"]}}
    assert services[llm]["networks"] == {"backend": {"aliases": ["llm"]}}
    if profile == "gpu":
        for name in (engineer, llm):
            devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
            assert devices[0]["capabilities"] == ["gpu"]


def test_compose_refuses_to_start_without_a_mongodb_password(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(ENV_EXAMPLE.read_text().replace("MONGO_PASSWORD=change-me", "MONGO_PASSWORD="))
    config, problems = compose_config(COMPOSE_FILE, env_file, "cpu")
    assert config == {}
    assert any("set MONGO_PASSWORD in deploy/compose/.env" in line for line in problems), problems


def test_env_example_names_every_variable_compose_reads_and_holds_no_secret() -> None:
    text = COMPOSE_FILE.read_text()
    read = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text)) | {"COMPOSE_PROFILES"}
    example = read_env_file(ENV_EXAMPLE)
    assert read <= set(example), f"missing from .env.example: {sorted(read - set(example))}"
    assert example["ASIARCH_AUTH_TOKEN"] == "" and example["HF_TOKEN"] == ""
    assert example["MONGO_PASSWORD"] == "change-me"


@pytest.mark.parametrize("profile", PROFILES)
def test_engineers_have_no_route_out(profile: str) -> None:
    compose = _compose(profile)
    assert compose["networks"]["engineers"]["internal"] is True
    for name, service in compose["services"].items():
        if name.startswith("engineer"):
            assert set(service["networks"]) == {"engineers"}
            assert service["read_only"] is True and service["cap_drop"] == ["ALL"]


def _write(tmp_path: Path, old: str, new: str) -> Path:
    text = COMPOSE_FILE.read_text()
    assert old in text
    path = tmp_path / "compose.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_a_field_the_specification_does_not_allow_fails_validation(tmp_path: Path) -> None:
    path = _write(tmp_path, "analyst: {condition: service_healthy}", "analyst: {condition: service_healty}")
    problems = compose_schema_problems(path)
    assert problems and any("service_healty" in line for line in problems), problems
    problems = compose_config(path, ENV_EXAMPLE, "cpu")[1]
    assert any("depends_on.analyst.condition value must be one of" in line for line in problems), problems


def test_a_dependency_on_a_missing_service_is_refused_by_compose(tmp_path: Path) -> None:
    path = _write(tmp_path, "selector: {condition: service_healthy}", "selectr: {condition: service_healthy}")
    assert compose_schema_problems(path) == []  # the schema cannot see this; compose does
    problems = compose_config(path, ENV_EXAMPLE, "gpu")[1]
    assert any("selectr" in line for line in problems), problems


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "ASIARCH_ENGINEER_MAX_CONCURRENT: ${",
            "ASIARCH_ENGINEER_MAX_CONCURENT: ${",
            "ASIARCH_ENGINEER_MAX_CONCURENT is not a setting of the engineer",
        ),
        (
            "ASIARCH_ANALYST_ADDRESS: analyst:50054",
            "ASIARCH_ANALYST_ADDRESS: analyst:50055",
            "no analyst answers",
        ),
        (
            "ASIARCH_ENGINEER_ADDRESS: engineer:50053",
            "ASIARCH_ENGINEER_ADDRESS: llm:50053",
            "no engineer answers",
        ),
        ("ASIARCH_ENGINEER_DEFAULT_DEVICE: cuda", "ASIARCH_ENGINEER_DEFAULT_DEVICE: tpu", "DEFAULT_DEVICE"),
        (
            'test: ["CMD", "asiarch", "health", "127.0.0.1:50051"]',
            'test: ["CMD", "true"]',
            "does not ask port 50051",
        ),
        ("--budget=${ASIARCH_BUDGET:-gpu}", "--budgt=gpu", "does not parse"),
        (
            "dockerfile: deploy/docker/engineer-cuda.Dockerfile",
            "dockerfile: deploy/docker/engineer.Dockerfile",
            "builds",
        ),
    ],
)
def test_drift_between_compose_and_the_code_is_caught(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    broken = _write(tmp_path, old, new)
    problems = [p for profile in PROFILES for p in compose_problems(_compose(profile, broken), images())]
    assert any(expected in problem for problem in problems), problems


TLS_FILE = COMPOSE / "compose.tls.yaml"
TLS_MOUNT = "/etc/asiarch/tls"


def test_the_tls_override_is_valid_against_the_compose_specification() -> None:
    assert compose_schema_problems(TLS_FILE) == []


@pytest.mark.parametrize("profile", PROFILES)
def test_the_tls_override_gives_every_asiarch_process_the_certificate(profile: str) -> None:
    config, problems = compose_config(COMPOSE_FILE, ENV_EXAMPLE, profile, (TLS_FILE,))
    assert problems == []
    assert compose_problems(config, images()) == []
    ours = {n: s for n, s in config["services"].items() if s["image"].startswith("ghcr.io/asiarch/")}
    assert len(ours) == 5  # four services and the orchestrator
    for name, service in ours.items():
        env = service["environment"]
        assert env["ASIARCH_TLS_CERT"] == f"{TLS_MOUNT}/tls.crt", name
        assert env["ASIARCH_TLS_KEY"] == f"{TLS_MOUNT}/tls.key", name
        assert env["ASIARCH_TLS_CA"] == f"{TLS_MOUNT}/ca.crt", name
        assert "ASIARCH_LOG_LEVEL" in env, name  # merged into compose.yaml's, not replacing them
        mount = next(v for v in service["volumes"] if v["target"] == TLS_MOUNT)
        assert mount["read_only"] is True and mount["source"].endswith("/deploy/compose/tls"), name


def test_a_tls_path_outside_the_mounted_folder_is_caught(tmp_path: Path) -> None:
    broken = tmp_path / "compose.tls.yaml"
    text = TLS_FILE.read_text()
    assert "ASIARCH_TLS_KEY: /etc/asiarch/tls/tls.key" in text
    broken.write_text(
        text.replace("ASIARCH_TLS_KEY: /etc/asiarch/tls/tls.key", "ASIARCH_TLS_KEY: /etc/tls.key")
    )
    config, problems = compose_config(COMPOSE_FILE, ENV_EXAMPLE, "cpu", (broken,))
    assert problems == []
    found = compose_problems(config, images())
    assert any("ASIARCH_TLS_KEY=/etc/tls.key is in no mounted folder" in p for p in found), found
