"""Metrics in deploy/: every service's /metrics port is where compose, the k8s pods' annotations and ports
say, and deploy/grafana/asiarch.json is a dashboard Grafana loads, querying only series the code exports.

No Grafana schema is available offline (check-jsonschema vendors none; Grafana's own is CUE in its
repository), so the dashboard is checked with check-jsonschema against a schema of Grafana's documented
classic dashboard JSON model (DASHBOARD_SCHEMA: the fields a dashboard, a panel, its grid position and a
query need, with their types and bounds), plus the rules Grafana's grid and templating enforce: unique
panel ids, panels inside the 24 columns and not overlapping, unique refIds, every variable defined.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from deployment import COMPOSE, DEPLOY, K8S, SERVICES, compose_config, run_tool
from k8s_checks import documents, render
from prometheus_client import REGISTRY
from prometheus_client.metrics_core import Metric
from support import BIN

from asiarch.common.cli import load_service
from asiarch.common.config import ServerSettings, load_settings
from asiarch.common.metrics import metrics_port

DASHBOARD = DEPLOY / "grafana" / "asiarch.json"
# The modules that declare series (each where its fact is known); importing them registers the series.
DECLARING = [
    "asiarch.common.metrics",
    *(f"asiarch.{s}.service" for s in SERVICES),
    "asiarch.engineer.pipeline",
    "asiarch.analyst.store",
    "asiarch.analyst.vectors",
]
GRID_COLUMNS = 24
BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range"}

_GRID = {
    "type": "object",
    "required": ["h", "w", "x", "y"],
    "properties": {
        "h": {"type": "integer", "minimum": 1},
        "w": {"type": "integer", "minimum": 1, "maximum": GRID_COLUMNS},
        "x": {"type": "integer", "minimum": 0, "maximum": GRID_COLUMNS - 1},
        "y": {"type": "integer", "minimum": 0},
    },
}
_DATASOURCE = {"type": "object", "required": ["type", "uid"], "properties": {"type": {"const": "prometheus"}}}
_QUERY = {
    "type": "object",
    "required": ["refId", "expr", "datasource"],
    "properties": {"refId": {"type": "string", "minLength": 1}, "expr": {"type": "string", "minLength": 1}},
}
DASHBOARD_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["title", "uid", "schemaVersion", "panels", "templating", "time"],
    "properties": {
        "id": {"type": ["integer", "null"]},
        "uid": {"type": "string", "minLength": 8, "maxLength": 40, "pattern": "^[A-Za-z0-9_-]+$"},
        "title": {"type": "string", "minLength": 1},
        "tags": {"type": "array", "items": {"type": "string"}},
        "timezone": {"enum": ["browser", "utc", ""]},
        "editable": {"type": "boolean"},
        "graphTooltip": {"enum": [0, 1, 2]},
        "schemaVersion": {"type": "integer", "minimum": 36},  # datasources as {type, uid} references
        "time": {"type": "object", "required": ["from", "to"]},
        "refresh": {"type": "string"},
        "templating": {
            "type": "object",
            "required": ["list"],
            "properties": {
                "list": {
                    "type": "array",
                    "items": {"type": "object", "required": ["name", "type"]},
                }
            },
        },
        "panels": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "type", "title", "gridPos"],
                "properties": {"id": {"type": "integer"}, "gridPos": _GRID},
                "if": {"properties": {"type": {"const": "row"}}},
                "then": {"required": ["panels", "collapsed"]},
                "else": {
                    "required": ["datasource", "targets"],
                    "properties": {
                        "datasource": _DATASOURCE,
                        "targets": {"type": "array", "minItems": 1, "items": _QUERY},
                    },
                },
            },
        },
    },
}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _series_names(family: Metric) -> set[str]:
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
    return {family.name + suffix for suffix in suffixes}


def exported_series() -> set[str]:
    for module in DECLARING:
        importlib.import_module(module)
    return {name for family in REGISTRY.collect() for name in _series_names(family)}


def test_the_dashboard_is_a_grafana_dashboard(dashboard: dict[str, Any], tmp_path: Path) -> None:
    schema = tmp_path / "grafana-dashboard.schema.json"
    schema.write_text(json.dumps(DASHBOARD_SCHEMA))
    code, output = run_tool(BIN / "check-jsonschema", "--schemafile", schema, DASHBOARD)
    assert code == 0, output
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids repeat"
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= GRID_COLUMNS, panel["title"]
        for cell in (
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        ):
            assert cell not in cells, f"{panel['title']!r} overlaps {cells[cell]!r}"
            cells[cell] = panel["title"]
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(set(refs)) == len(refs), panel["title"]


def test_every_variable_the_dashboard_uses_is_defined(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    used = set(re.findall(r"\$\{?(\w+)", json.dumps(dashboard["panels"]) + json.dumps(variables["service"])))
    assert used - BUILTIN_VARIABLES - set(variables) == set()
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert {p["datasource"]["uid"] for p in panels} == {"${datasource}"}


def test_the_dashboard_queries_only_series_the_services_export(dashboard: dict[str, Any]) -> None:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    queried = {name for expr in exprs for name in re.findall(r"\b(?:grpc_server|asiarch)_\w+", expr)}
    exported = exported_series()
    assert queried - exported == set()
    # The issue's list: RPC rate/errors/latency, evaluations, queue, tokens/s, proposals by path, records.
    for wanted in (
        "grpc_server_handled_total",
        "grpc_server_handling_seconds_bucket",
        "asiarch_engineer_evaluations_total",
        "asiarch_engineer_queue_depth",
        "asiarch_engineer_training_tokens_per_second_count",
        "asiarch_researcher_proposals_total",
        "asiarch_analyst_records_total",
    ):
        assert wanted in queried, wanted


def _expected_port(component: str, env: dict[str, str]) -> int | None:
    definition = load_service(component)
    known = {f"ASIARCH_{name.upper()}": name for name in ServerSettings.model_fields}
    settings = load_settings(ServerSettings, **{known[k]: v for k, v in env.items() if k in known and v})
    return metrics_port(settings, definition.default_port, definition.default_metrics_port)


def test_each_k8s_pod_says_where_its_metrics_are() -> None:
    rendered, problems = render(K8S / "base")
    assert problems == []
    docs = documents(rendered)
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    for name in SERVICES:
        template = deployments[name]["spec"]["template"]
        [container] = [c for c in template["spec"]["containers"] if c["name"] == name]
        env = {
            k: v for ref in container["envFrom"] for k, v in configmaps[ref["configMapRef"]["name"]].items()
        }
        port = _expected_port(name, env)
        annotations = template["metadata"]["annotations"]
        assert annotations == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(port),
            "prometheus.io/path": "/metrics",
        }, name
        assert {"name": "metrics", "containerPort": port, "protocol": "TCP"} in container["ports"], name


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_compose_exposes_each_services_metrics_port(profile: str) -> None:
    config, problems = compose_config(COMPOSE / "compose.yaml", COMPOSE / ".env.example", profile)
    assert problems == []
    for name, service in config["services"].items():
        component = name.removesuffix("-cpu").removesuffix("-gpu")
        if component not in SERVICES:
            continue
        port = _expected_port(component, service["environment"])
        assert [str(e) for e in service.get("expose", [])] == [str(port)], name
