"""What `asiarch discover` and the results commands read from the environment.

A deployed orchestrator (the compose service, the Kubernetes Job) finds the
services through these variables; command-line flags win over them. Unset
addresses mean "start that service locally", the one-command laptop run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from asiarch.common.config import ENV_PREFIX

# Paired seeds a promising candidate is confirmed with (discover --confirm-seeds, confirm --seeds).
DEFAULT_CONFIRM_SEEDS = 3
# The rung the replicates of a confirmation train at (discover --confirm-rung): 2 trains them longer than
# the exploratory rung 1, so a confirmed lead also survives more training; 1 repeats the rung-1 training on
# new seeds (a cheaper test that the lead is not seed noise, what the CPU benchmark uses).
DEFAULT_CONFIRM_RUNG = 2
CONFIRM_RUNGS = (1, 2)
# Experiment trackers a run can be logged to (discover --track, export-runs), and where MLflow's local store
# goes when MLFLOW_TRACKING_URI is not set (asiarch.orchestrator.tracking).
TRACKERS = ("mlflow",)
DEFAULT_MLFLOW_STORE = Path("mlruns") / "mlflow.db"
# The budget preset (asiarch.common.contract.budget_presets) of discover and import when --budget is not
# given, and of a run whose run.json records none.
DEFAULT_BUDGET = "cpu"


class OrchestratorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    selector_address: str | None = Field(default=None, description="host:port of the selector.")
    researcher_address: str | None = Field(default=None, description="host:port of the researcher.")
    engineer_address: str | None = Field(
        default=None,
        description=(
            "Engineers: a comma-separated list of host:port, or one gRPC target that resolves to several "
            "(dns:///engineer-pool:50053); calls are spread round-robin."
        ),
    )
    analyst_address: str | None = Field(default=None, description="host:port of the analyst.")
    auth_token: SecretStr | None = Field(default=None, description="Bearer token the services require.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info")
    log_format: Literal["json", "console"] = Field(
        default="console", description="Format of log lines (retries, warnings) on stderr."
    )

    @property
    def token(self) -> str | None:
        return self.auth_token.get_secret_value() if self.auth_token else None

    @property
    def engineers(self) -> list[str]:
        return split_addresses([self.engineer_address] if self.engineer_address else [])


def split_addresses(given: list[str]) -> list[str]:
    """Flags may repeat and each may hold a comma-separated list."""
    return [a.strip() for item in given for a in item.split(",") if a.strip()]
