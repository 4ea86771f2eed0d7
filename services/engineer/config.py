"""Engineer settings (ASIARCH_* environment variables, on top of the shared server settings).

The default budget preset is checked against the contract's preset names
(asiarch.common.contract.budget_presets()), so a preset added to the proto
enum is a valid setting without an edit here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from asiarch.common.config import ServerSettings
from asiarch.common.contract import budget_presets
from asiarch.common.devices import DEVICE_PATTERN
from asiarch.engineer.budgets import DEFAULT_PRESET
from asiarch.engineer.kernel_cache import default_dir as default_kernel_cache_dir

# The contract's preset names as a Literal: pydantic then checks the setting and its error lists them.
PresetName = Literal[tuple(budget_presets())]  # type: ignore[valid-type]


class EngineerSettings(ServerSettings):
    researcher_address: str | None = Field(
        default=None,
        description="host:port of the researcher used for self-healing; unset = no repairs.",
    )
    engineer_max_concurrent: int = Field(default=1, ge=1, le=64, description="Evaluations run at once.")
    engineer_max_queued: int = Field(
        default=8, ge=0, le=1024, description="Evaluations that may wait; beyond it RESOURCE_EXHAUSTED."
    )
    engineer_default_budget: PresetName = Field(
        default=DEFAULT_PRESET, description="Budget preset when a request names none: a BudgetPreset name."
    )
    engineer_default_device: str = Field(
        default="cpu",
        pattern=f"^(?:{DEVICE_PATTERN.pattern})$",
        description="cpu, cuda or cuda:N when a request says none.",
    )
    engineer_max_repairs: int = Field(
        default=3, ge=0, le=10, description="Self-healing rounds per evaluation."
    )
    engineer_repair_timeout_seconds: float = Field(default=180, gt=0)
    engineer_corpus_dir: str | None = Field(
        default=None, description="Folder of text to train on; unset = the Python standard library."
    )
    engineer_max_source_kb: int = Field(default=64, ge=1, le=1024, description="Candidate size cap.")
    engineer_sandbox_memory_gb: float = Field(
        default=6,
        ge=0,
        description=(
            "Address-space limit per sandbox; 0 = none. Use 0 on CUDA, whose driver reserves far more "
            "virtual memory than it uses; the container's memory limit still applies."
        ),
    )
    engineer_calibrate: bool = Field(
        default=True,
        description=(
            "Time a small CPU workload at start and scale preset wall-clock limits by how much slower "
            "this machine is than the one they were sized on (never below 1, at most 8)."
        ),
    )
    engineer_sandbox_unsafe: bool = Field(
        default=False,
        description=(
            "Run candidate code even when the sandbox cannot isolate it (no user namespaces, no seccomp, "
            "no cgroups as root). Off: such an evaluation is refused with FAILED_PRECONDITION naming what "
            "is missing. Only for a machine that runs nothing but trusted code."
        ),
    )
    engineer_sandbox_threads: int = Field(default=2, ge=1, le=256, description="torch threads per sandbox.")
    engineer_check_timeout_seconds: float = Field(default=180, gt=0, description="Wall clock for Validate.")
    engineer_kernel_cache_dir: str = Field(
        default_factory=default_kernel_cache_dir,
        description=(
            "Triton kernel cache shared by all evaluations: filled by the engineer's warm step, read-only to "
            "candidates, whose new kernels compile into their own folder. Must be the engineer's alone to "
            "write. Empty = no sharing (every evaluation compiles its kernels)."
        ),
    )
