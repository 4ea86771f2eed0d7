"""Kubernetes: every overlay renders, passes strict schema validation and matches the code."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from deployment import K8S, SERVICES, images
from k8s_checks import documents, k8s_problems, render, validate_problems

OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())
TARGETS = ["base", *(f"overlays/{name}" for name in OVERLAYS)]


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    out = {}
    for target in TARGETS:
        text, problems = render(K8S / target)
        assert problems == []
        out[target] = text
    return out


def test_the_overlays_users_need_exist() -> None:
    assert {"cpu", "gpu", "scaled-engineer"} <= set(OVERLAYS)


@pytest.mark.parametrize("target", TARGETS)
def test_rendered_manifests_pass_strict_validation(
    rendered: dict[str, str], target: str, tmp_path: Path
) -> None:
    assert validate_problems(rendered[target], tmp_path) == []


@pytest.mark.parametrize("target", TARGETS)
def test_rendered_manifests_match_the_code(rendered: dict[str, str], target: str) -> None:
    assert k8s_problems(documents(rendered[target]), images()) == []


def _by_kind(rendered: str, kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in documents(rendered) if d["kind"] == kind}


def test_base_has_what_every_deployment_needs(rendered: dict[str, str]) -> None:
    base = rendered["base"]
    deployments, services = _by_kind(base, "Deployment"), _by_kind(base, "Service")
    assert set(SERVICES) <= set(deployments) and set(SERVICES) <= set(services)
    for name in SERVICES:
        assert [p["name"] for p in services[name]["spec"]["ports"]] == ["grpc"]
        pod = deployments[name]["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == name
    assert {"mongodb", "qdrant"} <= set(_by_kind(base, "StatefulSet"))
    assert "orchestrator" in _by_kind(base, "Job")
    assert "mongodb-backup" in _by_kind(base, "CronJob")
    assert all("namespace" not in d["metadata"] for d in documents(base))


def test_engineer_egress_is_denied_except_to_the_researcher_and_dns(rendered: dict[str, str]) -> None:
    policy = _by_kind(rendered["base"], "NetworkPolicy")["engineer-egress"]["spec"]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "engineer"
    assert policy["policyTypes"] == ["Egress"]
    targets = [peer for rule in policy["egress"] for peer in rule["to"]]
    names = {p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name") for p in targets}
    assert "researcher" in names
    dns_ports = {(p["protocol"], p["port"]) for rule in policy["egress"] for p in rule.get("ports", [])}
    assert {("UDP", 53), ("TCP", 53), ("TCP", 50052)} <= dns_ports


def test_gpu_overlay_gives_the_engineer_a_gpu_and_the_cuda_image(rendered: dict[str, str]) -> None:
    engineer = _by_kind(rendered["overlays/gpu"], "Deployment")["engineer"]["spec"]["template"]["spec"]
    container = engineer["containers"][0]
    assert container["image"].startswith("ghcr.io/asiarch/engineer-cuda:")
    assert container["resources"]["limits"]["nvidia.com/gpu"] in (1, "1")
    assert any(t["key"] == "nvidia.com/gpu" for t in engineer["tolerations"])
    assert engineer["nodeSelector"]


def test_scaled_engineer_overlay_points_parallel_evaluations_at_every_replica(
    rendered: dict[str, str],
) -> None:
    scaled = rendered["overlays/scaled-engineer"]
    replicas = _by_kind(scaled, "Deployment")["engineer"]["spec"]["replicas"]
    assert replicas > 1
    pool = _by_kind(scaled, "Service")["engineer-pool"]["spec"]
    assert pool["clusterIP"] == "None"
    job = _by_kind(scaled, "Job")["orchestrator"]["spec"]["template"]["spec"]["containers"][0]
    args = job["args"]
    assert args[args.index("--parallel") + 1] == str(replicas)
    config = _by_kind(scaled, "ConfigMap")
    orchestrator_env = next(c["data"] for n, c in config.items() if n.startswith("orchestrator-config"))
    assert orchestrator_env["ASIARCH_ENGINEER_ADDRESS"] == "dns:///engineer-pool:50053"


def _broken_copy(tmp_path: Path, relative: str, old: str, new: str) -> Path:
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    path = copy / relative
    text = path.read_text()
    assert old in text, f"{old!r} not in {relative}"
    path.write_text(text.replace(old, new, 1))
    return copy


def test_an_unknown_field_fails_strict_validation(tmp_path: Path) -> None:
    copy = _broken_copy(tmp_path, "base/selector.yaml", "readinessProbe:", "readinessProbes:")
    text, problems = render(copy / "base")
    assert problems == []
    found = validate_problems(text, tmp_path)
    assert any("readinessProbes" in line for line in found), found


@pytest.mark.parametrize(
    ("relative", "old", "new", "expected"),
    [
        (
            "base/engineer.env",
            "ASIARCH_ENGINEER_MAX_CONCURRENT=",
            "ASIARCH_ENGINEER_MAX_CONCURENT=",
            "MAX_CONCURENT",
        ),
        (
            "base/researcher.env",
            "ASIARCH_ANALYST_ADDRESS=analyst:50054",
            "ASIARCH_ANALYST_ADDRESS=analyst:5054",
            "no analyst",
        ),
        ("base/selector.env", "ASIARCH_PORT=50051", "ASIARCH_PORT=50061", "do not include 50061"),
        (
            "base/engineer.env",
            "ASIARCH_ENGINEER_DEFAULT_BUDGET=",
            "ASIARCH_ENGINEER_DEFAULT_BUDGET=huge\n#",
            "BUDGET",
        ),
        ("base/selector.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "writable"),
    ],
)
def test_drift_between_the_manifests_and_the_code_is_caught(
    tmp_path: Path, relative: str, old: str, new: str, expected: str
) -> None:
    copy = _broken_copy(tmp_path, relative, old, new)
    text, problems = render(copy / "base")
    assert problems == []
    found = k8s_problems(documents(text), images())
    assert any(expected in problem for problem in found), found


TLS_MOUNT = "/etc/asiarch/tls"


def _asiarch_containers(rendered: str) -> list[tuple[str, dict, dict]]:
    """(where, pod spec, container) of every container running one of our images."""
    found = []
    for doc in documents(rendered):
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        pod = doc["spec"]["template"]["spec"]
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            if container["image"].startswith("ghcr.io/asiarch/"):
                found.append((f"{doc['kind']} {doc['metadata']['name']}/{container['name']}", pod, container))
    return found


def _tls_problems(rendered: str) -> list[str]:
    problems = []
    for where, pod, container in _asiarch_containers(rendered):
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        wanted = {
            "ASIARCH_TLS_CERT": f"{TLS_MOUNT}/tls.crt",
            "ASIARCH_TLS_KEY": f"{TLS_MOUNT}/tls.key",
            "ASIARCH_TLS_CA": f"{TLS_MOUNT}/ca.crt",
        }
        if {k: env.get(k) for k in wanted} != wanted:
            problems.append(f"{where}: TLS variables {[(k, env.get(k)) for k in wanted]}")
        mount = next((m for m in container.get("volumeMounts", []) if m["mountPath"] == TLS_MOUNT), None)
        volume = next((v for v in pod["volumes"] if mount and v["name"] == mount["name"]), {})
        if volume.get("secret", {}).get("secretName") != "asiarch-tls" or not mount.get("readOnly"):
            problems.append(f"{where}: {TLS_MOUNT} is not the asiarch-tls Secret, read-only")
        probes = [container[k] for k in ("startupProbe", "readinessProbe", "livenessProbe") if k in container]
        if any("grpc" in probe for probe in probes):
            problems.append(f"{where}: a plaintext gRPC probe")
    return problems


def test_the_tls_overlay_gives_every_asiarch_container_the_certificate_and_probes_that_speak_tls(
    rendered: dict[str, str],
) -> None:
    tls = rendered["overlays/tls"]
    assert len(_asiarch_containers(tls)) == 6  # four services, the orchestrator and its wait step
    assert _tls_problems(tls) == []
    selector = _by_kind(tls, "Deployment")["selector"]["spec"]["template"]["spec"]["containers"][0]
    assert selector["readinessProbe"]["exec"]["command"] == ["asiarch", "health", "127.0.0.1:50051"]
    assert _tls_problems(rendered["overlays/cpu"])  # the check sees a deployment without TLS


@pytest.mark.parametrize("overlay", ["gpu", "scaled-engineer"])
def test_the_tls_component_applies_to_the_other_overlays(tmp_path: Path, overlay: str) -> None:
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    mine = copy / "overlays" / f"{overlay}-tls"
    mine.mkdir()
    (mine / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [../{overlay}]\ncomponents: [../../components/tls]\n"
    )
    text, problems = render(mine)
    assert problems == []
    assert _tls_problems(text) == []
    assert k8s_problems(documents(text), images()) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # a probe left as the kubelet's plaintext gRPC probe on a TLS-only server
        (
            "          readinessProbe:\n            grpc: null\n",
            "          readinessProbe:\n",
            "cannot speak TLS",
        ),
        ("value: /etc/asiarch/tls/tls.key}", "value: /etc/asiarch/tsl/tls.key}", "is in no mounted folder"),
    ],
)
def test_tls_drift_is_caught(tmp_path: Path, old: str, new: str, expected: str) -> None:
    copy = _broken_copy(tmp_path, "components/tls/services.yaml", old, new)
    text, problems = render(copy / "overlays" / "tls")
    assert problems == []
    found = k8s_problems(documents(text), images())
    assert any(expected in problem for problem in found), found
