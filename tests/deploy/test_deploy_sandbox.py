"""Every deployment of the engineer lets its sandbox build namespaces, and takes nothing else away.

The sandbox refuses to run candidate code without its own user, pid, mount and network
namespaces (FAILED_PRECONDITION), and the runtimes' default seccomp and AppArmor profiles
forbid creating them. So the engineer's container, and only it, runs without those two
profiles; everything else that hardens it stays.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from deployment import COMPOSE, K8S, compose_config
from k8s_checks import documents, render

PROFILES = ("cpu", "gpu")


@pytest.mark.parametrize("profile", PROFILES)
def test_compose_lets_only_the_engineer_build_its_sandbox(profile: str) -> None:
    config, problems = compose_config(COMPOSE / "compose.yaml", COMPOSE / ".env.example", profile)
    assert problems == []
    for name, service in config["services"].items():
        options = set(service.get("security_opt", []))
        if name.startswith("engineer"):
            assert {"seccomp=unconfined", "apparmor=unconfined", "no-new-privileges:true"} <= options, name
            assert service["cap_drop"] == ["ALL"] and service["read_only"] is True, name
        else:
            assert not {o for o in options if o.endswith("=unconfined")}, name


@pytest.mark.parametrize("target", ["base", "overlays/gpu", "overlays/scaled-engineer"])
def test_kubernetes_lets_only_the_engineer_build_its_sandbox(target: str, tmp_path: Path) -> None:
    text, problems = render(K8S / target)
    assert problems == []
    for document in documents(text):
        spec = document.get("spec", {})
        spec = spec.get("jobTemplate", {}).get("spec", spec)  # a CronJob's pods are one level down
        pod = spec.get("template", {}).get("spec", {})
        for container in pod.get("containers", []):
            context = container.get("securityContext", {})
            profiles = ("seccompProfile", "appArmorProfile")
            unconfined = {key for key in profiles if context.get(key, {}).get("type") == "Unconfined"}
            if container["name"] == "engineer":
                assert unconfined == set(profiles), target
                assert context["capabilities"]["drop"] == ["ALL"], target
                assert context["allowPrivilegeEscalation"] is False, target
            else:
                assert not unconfined, (target, container["name"])
