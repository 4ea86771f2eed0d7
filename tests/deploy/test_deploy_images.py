"""The Dockerfiles: hadolint-clean, non-root, and in step with the code they run."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from pathlib import Path

import pytest
from deployment import (
    DOCKERFILES,
    IMAGE_PREFIX,
    REPO,
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
        ("pyproject.toml selector >", "pyproject.toml analyst >", "installs the extras ['analyst'] but runs"),
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


def _unlocked_installs(text: str) -> list[str]:
    """Each `pip install` of a Dockerfile that resolves dependencies without the lock as constraints."""
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    commands = re.split(r"&&|;|\n", code.replace("\\\n", " "))
    return [
        " ".join(c.split())
        for c in commands
        if "pip install" in c and "--no-deps" not in c and "--constraint requirements.lock" not in c
    ]


@pytest.mark.parametrize("path", sorted(DOCKERFILES.glob("*.Dockerfile")), ids=lambda p: p.name)
def test_every_image_installs_from_the_lock(path: Path) -> None:
    text = path.read_text()
    assert "COPY requirements.lock" in text
    assert _unlocked_installs(text) == []


def test_an_install_without_the_lock_is_caught(tmp_path: Path) -> None:
    path = _broken(tmp_path, "selector.Dockerfile", "--constraint requirements.lock -r", "-r")
    unlocked = _unlocked_installs(path.read_text())
    assert len(unlocked) == 1
    assert unlocked[0].endswith("pip install --no-cache-dir -r requirements.txt")


def _exporter():  # deploy/docker is not a package: load the script the images run
    spec = importlib.util.spec_from_file_location("requirements", DOCKERFILES / "requirements.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _applicable(requirements: list[str], extra: str = "") -> set[tuple[str, str]]:
    """(name, specifier) of each requirement whose marker holds here, as pip would judge it."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    parsed = [Requirement(r) for r in requirements]
    return {
        (canonicalize_name(r.name), str(r.specifier))
        for r in parsed
        if r.marker is None or r.marker.evaluate({"extra": extra})
    }


def _from_metadata(extra: str, seen: set[str]) -> set[tuple[str, str]]:
    """What setuptools recorded for `asiarch[extra]` in the installed metadata, extras followed."""
    from packaging.requirements import Requirement

    seen.add(extra)
    recorded = importlib.metadata.requires("asiarch") or []
    found = {pair for pair in _applicable(recorded, extra) if pair[0] != "asiarch"}
    for line in recorded:
        requirement = Requirement(line)
        applies = requirement.marker is None or requirement.marker.evaluate({"extra": extra})
        if requirement.name == "asiarch" and applies:
            for nested in requirement.extras - seen:
                found |= _from_metadata(nested, seen)
    return found


@pytest.mark.parametrize("extra", ["selector", "researcher", "engineer", "analyst", "orchestrator"])
def test_the_dependency_layer_installs_what_pip_would_for_the_extra(extra: str) -> None:
    exported = _exporter().requirements(REPO / "pyproject.toml", [extra])
    build_system = {("setuptools", ">=75")}  # the last step builds the wheel without isolation
    assert _applicable(exported) == build_system | _from_metadata(extra, set())


def test_the_exporter_refuses_an_unknown_extra() -> None:
    with pytest.raises(SystemExit, match="no extra 'analyts'"):
        _exporter().requirements(REPO / "pyproject.toml", ["analyts"])
