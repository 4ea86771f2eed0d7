"""The engineer's series on its live /metrics: results by rpc, stage and outcome, sandbox kills, slots."""

from __future__ import annotations

from pathlib import Path

import layers
from metrics_support import metrics_port, moved, scrape, value
from support import start_service

from asiarch.v1 import common_pb2, engineer_pb2, engineer_pb2_grpc

ENV = {
    "ASIARCH_ENGINEER_CALIBRATE": "false",
    "ASIARCH_ENGINEER_MAX_CONCURRENT": "2",
    "ASIARCH_ENGINEER_SANDBOX_MEMORY_GB": "3",
}


Stub = engineer_pb2_grpc.EngineerStub


def validate(stub: Stub, text: str, **fields: bool) -> engineer_pb2.ValidateResponse:
    source = common_pb2.ArchitectureSource(module_source=text)
    return stub.Validate(engineer_pb2.ValidateRequest(source=source, **fields), timeout=120)


def test_validations_are_counted_by_stage_and_a_flooding_sandbox_as_killed(tmp_path: Path) -> None:
    engineer = start_service("engineer", tmp_path, env=ENV)
    try:
        port = metrics_port(engineer)
        stub = engineer_pb2_grpc.EngineerStub(engineer.channel())
        before = scrape(port)
        static = validate(stub, layers.OS_SYSTEM, static_only=True)
        flooded = validate(stub, layers.STDOUT_FLOOD)
        after = scrape(port)
    finally:
        engineer.stop()

    assert not static.valid and not flooded.valid
    results = "asiarch_engineer_evaluations_total"
    assert moved(before, after, results, rpc="validate", stage="static_checks", outcome="failed") == 1
    assert moved(before, after, results, rpc="validate", stage="functional_checks", outcome="failed") == 1
    assert moved(before, after, "asiarch_engineer_sandbox_kills_total", reason="output_flood") == 1
    assert value(after, "asiarch_engineer_slots") == 2
    assert value(after, "asiarch_engineer_slots_busy") == 0
    assert value(after, "asiarch_engineer_queue_depth") == 0
