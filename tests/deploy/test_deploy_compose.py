"""docker compose: valid against the compose specification and wired to what the code reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from deployment import (
    COMPOSE,
    compose_problems,
    compose_schema_problems,
    images,
    interpolate,
    load_compose,
    read_env_file,
)

COMPOSE_FILE = COMPOSE / "compose.yaml"
ENV_EXAMPLE = COMPOSE / ".env.example"


def _compose() -> dict:
    return load_compose(COMPOSE_FILE, ENV_EXAMPLE)


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    assert compose_schema_problems(COMPOSE_FILE) == []


def test_compose_wiring_matches_the_code() -> None:
    assert compose_problems(_compose(), images()) == []


def test_profiles_pair_an_llm_server_with_an_engineer() -> None:
    services = _compose()["services"]
    for profile in ("gpu", "cpu"):
        members = {name for name, s in services.items() if profile in s.get("profiles", [])}
        assert len(members) == 2, (profile, members)
        aliases = {
            alias
            for name in members
            for network in services[name]["networks"].values()
            for alias in (network or {}).get("aliases", [])
        }
        assert aliases == {"llm", "engineer"}, (profile, aliases)
    gpu = services["engineer-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]


def test_env_example_names_every_variable_compose_reads_and_holds_no_secret() -> None:
    text = COMPOSE_FILE.read_text()
    read = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text)) | {"COMPOSE_PROFILES"}
    example = read_env_file(ENV_EXAMPLE)
    assert read <= set(example), f"missing from .env.example: {sorted(read - set(example))}"
    assert example["ASIARCH_AUTH_TOKEN"] == "" and example["HF_TOKEN"] == ""
    assert example["MONGO_PASSWORD"] == "change-me"


def test_engineers_have_no_route_out() -> None:
    compose = _compose()
    assert compose["networks"]["engineers"]["internal"] is True
    for name in ("engineer-cpu", "engineer-gpu"):
        assert set(compose["services"][name]["networks"]) == {"engineers"}


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
    broken = yaml.safe_load(_write(tmp_path, old, new).read_text())
    problems = compose_problems(interpolate(broken, read_env_file(ENV_EXAMPLE)), images())
    assert any(expected in problem for problem in problems), problems
