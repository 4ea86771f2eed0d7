"""Checks of the rendered Kubernetes manifests: validity, hardening, and drift from the code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from deployment import (
    ADDRESS_VARIABLES,
    BIN,
    KUBERNETES_VERSION,
    SERVICES,
    TLS_VARIABLES,
    Image,
    _address_problems,
    command_problems,
    image_for,
    run_tool,
    service_port,
    settings_problems,
    tls_file_problems,
)

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")


def render(directory: Path) -> tuple[str, list[str]]:
    """`kubectl kustomize DIR`: the rendered YAML, or the errors."""
    code, output = run_tool(BIN / "kubectl", "kustomize", directory)
    return (output, []) if code == 0 else ("", [f"kubectl kustomize {directory}: {output}"])


def validate_problems(rendered: str, scratch: Path) -> list[str]:
    """kubernetes-validate --strict against the API schemas of KUBERNETES_VERSION."""
    path = scratch / "rendered.yaml"
    path.write_text(rendered)
    code, output = run_tool(
        BIN / "kubernetes-validate", "-k", KUBERNETES_VERSION, "--strict", "--quiet", path, timeout=300
    )
    return [] if code == 0 else [line for line in output.splitlines() if line.strip()] or [f"exit {code}"]


def documents(rendered: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(rendered) if d]


def _pod(doc: dict[str, Any]) -> dict[str, Any]:
    spec = doc.get("spec", {})
    if doc["kind"] == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    return spec.get("template", {})


def _selects(service: dict[str, Any], labels: dict[str, str]) -> bool:
    selector = service.get("spec", {}).get("selector") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _env(container: dict[str, Any], configmaps: dict[str, dict[str, str]], where: str) -> tuple[dict, list]:
    env: dict[str, str | None] = {}
    problems = []
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            if name not in configmaps:
                problems.append(f"{where}: envFrom ConfigMap {name!r} is not in the manifests")
            env.update(configmaps.get(name, {}))
        else:
            problems.append(f"{where}: envFrom {sorted(source)} hides which variables are set; use env")
    for item in container.get("env", []):
        env[item["name"]] = str(item["value"]) if "value" in item else None
    return env, problems


def _hardening_problems(pod: dict[str, Any], container: dict[str, Any], where: str) -> list[str]:
    pod_context = pod.get("securityContext", {})
    context = container.get("securityContext", {})
    problems = []
    if not (context.get("runAsNonRoot") or pod_context.get("runAsNonRoot")):
        problems.append(f"{where}: runAsNonRoot is not set")
    if context.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{where}: the root filesystem is writable")
    if context.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: allowPrivilegeEscalation is not false")
    if "ALL" not in context.get("capabilities", {}).get("drop", []):
        problems.append(f"{where}: capabilities are not all dropped")
    resources = container.get("resources", {})
    for kind in ("requests", "limits"):
        missing = {"cpu", "memory"} - set(resources.get(kind, {}))
        if missing:
            problems.append(f"{where}: no {kind} for {', '.join(sorted(missing))}")
    return problems


def _probe_problem(probe: dict[str, Any], port: int, tls: bool) -> str | None:
    """Why a probe would not ask this server's health; None when it does.

    The kubelet's gRPC probe speaks plaintext only: with ASIARCH_TLS_* set the probe must run
    `asiarch health 127.0.0.1:PORT` in the container, which speaks TLS from the same variables.
    """
    if "grpc" in probe:
        if probe["grpc"].get("port") != port:
            return f"is not a gRPC probe on port {port}"
        return "is a gRPC probe, which cannot speak TLS: use exec asiarch health" if tls else None
    command = probe.get("exec", {}).get("command", [])
    if command[:2] == ["asiarch", "health"] and f"127.0.0.1:{port}" in command[2:]:
        return None
    return f"neither a gRPC probe on port {port} nor `asiarch health 127.0.0.1:{port}`"


def _port_problems(
    container: dict[str, Any], port: int, selecting: list[dict[str, Any]], where: str, tls: bool
) -> list[str]:
    problems = []
    named = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    if port not in named.values():
        problems.append(f"{where}: containerPorts {sorted(named.values())} do not include {port}")
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container.get(kind)
        if probe is None and kind != "startupProbe":
            problems.append(f"{where}: no {kind}")
        elif probe is not None and (problem := _probe_problem(probe, port, tls)) is not None:
            problems.append(f"{where}: {kind} {problem}: {probe}")
    if not selecting:
        problems.append(f"{where}: no Service selects this pod")
    for service in selecting:
        targets = [named.get(p["targetPort"], p["targetPort"]) for p in service["spec"].get("ports", [])]
        if port not in targets:
            problems.append(f"{where}: Service {service['metadata']['name']} targets {targets}, not {port}")
    return problems


def _mount_problems(pod: dict[str, Any], container: dict[str, Any], env: dict, where: str) -> list[str]:
    volumes = {v["name"] for v in pod.get("volumes", [])}
    mounts = container.get("volumeMounts", [])
    problems = [
        f"{where}: mounts the volume {m['name']!r}, which the pod does not have"
        for m in mounts
        if m["name"] not in volumes
    ]
    return problems + tls_file_problems(env, [m["mountPath"] for m in mounts], where)


def k8s_problems(docs: list[dict[str, Any]], known: dict[str, Image]) -> list[str]:
    problems: list[str] = []
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    services = [d for d in docs if d["kind"] == "Service"]
    answers: dict[str, list[tuple[str, int]]] = {}
    checks = []
    for doc in (d for d in docs if d["kind"] in WORKLOADS):
        pod = _pod(doc)
        spec, labels = pod.get("spec", {}), pod.get("metadata", {}).get("labels", {})
        selecting = [s for s in services if _selects(s, labels)]
        init = [(c, True) for c in spec.get("initContainers", [])]
        for container, is_init in [*init, *((c, False) for c in spec.get("containers", []))]:
            image = image_for(container.get("image", ""), known)
            if image is None:
                continue
            where = f"{doc['kind']} {doc['metadata']['name']}/{container['name']}"
            if not image.path.exists():
                problems.append(f"{where}: no Dockerfile builds the image {image.name}")
                continue
            env, env_problems = _env(container, configmaps, where)
            problems += env_problems + settings_problems(image.component, env, where)
            problems += _hardening_problems(spec, container, where)
            problems += _mount_problems(spec, container, env, where)
            argv = container.get("command") or image.entrypoint
            args = container.get("args", [] if container.get("command") else image.cmd)
            problems += command_problems([*argv, *args], where)
            checks.append((where, env))
            if not is_init and image.component in SERVICES:
                port = service_port(image.component, {**image.env, **env})
                assert port is not None
                tls = any(env.get(variable) for variable in TLS_VARIABLES)
                problems += _port_problems(container, port, selecting, where, tls)
                for service in selecting:
                    for p in service["spec"].get("ports", []):
                        answers.setdefault(service["metadata"]["name"], []).append(
                            (image.component, p["port"])
                        )
    for where, env in checks:
        for variable, wanted in ADDRESS_VARIABLES.items():
            if env.get(variable):
                problems += _address_problems(
                    env[variable] or "", wanted, answers.get, f"{where}: {variable}"
                )
    return problems
