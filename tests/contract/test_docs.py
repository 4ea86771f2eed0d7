"""The README's configuration table names every variable the processes read."""

from __future__ import annotations

from support import REPO

from asiarch.common.cli import load_service
from asiarch.common.config import env_name
from asiarch.orchestrator.config import OrchestratorSettings


def test_every_setting_is_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    kinds = {OrchestratorSettings}
    for name in ("selector", "researcher", "engineer", "analyst"):
        definition = load_service(name)
        kinds |= set(definition.all_settings())
    variables = {env_name(kind, field) for kind in kinds for field in kind.model_fields}
    missing = sorted(v for v in variables if f"`{v}`" not in readme)
    assert missing == [], f"README's configuration table lacks {missing}"
