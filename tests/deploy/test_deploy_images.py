"""The Dockerfiles: hadolint-clean, non-root, and in step with the code they run."""

from __future__ import annotations

from pathlib import Path

import pytest
from deployment import (
    DOCKERFILES,
    IMAGE_PREFIX,
    SERVICES,
    hadolint_problems,
    image_problems,
    images,
    parse_dockerfile,
)

REQUIRED = {*SERVICES, "engineer-cuda", "orchestrator"}


def test_every_service_the_orchestrator_and_the_cuda_engineer_have_an_image() -> None:
    built = images()
    assert set(built) >= REQUIRED, f"missing Dockerfiles: {sorted(REQUIRED - set(built))}"
    assert {image.component for image in built.values()} == {*SERVICES, "orchestrator"}


def test_hadolint_passes_on_every_dockerfile() -> None:
    assert hadolint_problems(sorted(DOCKERFILES.glob("*.Dockerfile"))) == []


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_image_matches_the_code(name: str) -> None:
    assert image_problems(images()[name]) == []


def test_images_are_referenced_by_the_names_the_manifests_use() -> None:
    # compose and kustomize refer to ghcr.io/asiarch/<file stem>; a renamed file would orphan them.
    for path in DOCKERFILES.glob("*.Dockerfile"):
        assert f"{IMAGE_PREFIX}{path.name.removesuffix('.Dockerfile')}:" in path.read_text()


def _broken(tmp_path: Path, name: str, old: str, new: str) -> Path:
    text = (DOCKERFILES / name).read_text()
    assert old in text
    path = tmp_path / name
    path.write_text(text.replace(old, new))
    return path


def test_shell_form_entrypoint_fails_hadolint(tmp_path: Path) -> None:
    path = _broken(
        tmp_path, "selector.Dockerfile", '["asiarch", "serve", "selector"]', "asiarch serve selector"
    )
    assert any("DL3025" in line for line in hadolint_problems([path]))


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('"serve", "selector"]', '"serve", "selecter"]', "unknown service 'selecter'"),
        ("ASIARCH_PORT=50051", "ASIARCH_PORT=50061", "EXPOSE [50051] but the selector listens on 50061"),
        (
            "ASIARCH_LOG_FORMAT=json",
            "ASIARCH_LOG_FORMT=json",
            "ASIARCH_LOG_FORMT is not a setting of the selector",
        ),
        ("ASIARCH_LOG_FORMAT=json", "ASIARCH_LOG_FORMAT=xml", "ASIARCH_LOG_FORMAT"),
        ("USER 10001:10001", "USER root", "runs as root"),
    ],
)
def test_a_broken_dockerfile_is_caught(tmp_path: Path, old: str, new: str, expected: str) -> None:
    problems = image_problems(parse_dockerfile(_broken(tmp_path, "selector.Dockerfile", old, new)))
    assert any(expected in problem for problem in problems), problems


def test_orchestrator_default_command_parses_and_a_bad_flag_does_not(tmp_path: Path) -> None:
    assert image_problems(images()["orchestrator"]) == []
    path = _broken(tmp_path, "orchestrator.Dockerfile", '"--resume",', '"--resume", "--budget", "huge",')
    problems = image_problems(parse_dockerfile(path))
    assert any("does not parse" in p and "huge" in p for p in problems), problems
