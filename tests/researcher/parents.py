"""Parent experiments the researcher tests propose from."""

from __future__ import annotations

from pathlib import Path

from asiarch.v1 import common_pb2

BASELINES = Path(__file__).resolve().parents[2] / "services" / "engineer" / "baselines"


def baseline_parent(name: str = "deltanet") -> common_pb2.Experiment:
    source = (BASELINES / f"{name.replace('-', '_')}.py").read_text()
    return common_pb2.Experiment(
        id=f"baseline-{name}",
        name=name,
        proposal=common_pb2.Proposal(name=name, source=common_pb2.ArchitectureSource(module_source=source)),
        status=common_pb2.EXPERIMENT_STATUS_SUCCEEDED,
    )
