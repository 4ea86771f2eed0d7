"""The contract in protos/: compiles, committed stubs are current, everything documented."""

from __future__ import annotations

import filecmp
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from support import REPO

PROTOS = REPO / "protos"
COMMITTED = PROTOS / "gen" / "python"
PROTO_FILES = sorted((PROTOS / "asiarch" / "v1").glob("*.proto"))
SERVICES = {"selector": "Selector", "researcher": "Researcher", "engineer": "Engineer", "analyst": "Analyst"}


def test_every_service_has_a_proto_file() -> None:
    assert {p.stem for p in PROTO_FILES} == {"common", *SERVICES}


def test_committed_stubs_match_the_protos(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(PROTOS / "generate.py"), "--out", str(tmp_path)], check=True)
    fresh = tmp_path / "asiarch" / "v1"
    committed = COMMITTED / "asiarch" / "v1"
    fresh_names = sorted(p.name for p in fresh.iterdir() if p.is_file())
    committed_names = sorted(p.name for p in committed.iterdir() if p.is_file())
    assert fresh_names == committed_names, "stub files differ: run `make proto`"
    _, mismatch, errors = filecmp.cmpfiles(fresh, committed, fresh_names, shallow=False)
    assert not mismatch and not errors, f"stale generated stubs {mismatch or errors}: run `make proto`"


@pytest.mark.parametrize(("module", "service"), sorted(SERVICES.items()))
def test_stubs_import_and_define_client_and_servicer(module: str, service: str) -> None:
    grpc_module = importlib.import_module(f"asiarch.v1.{module}_pb2_grpc")
    messages = importlib.import_module(f"asiarch.v1.{module}_pb2")
    assert hasattr(grpc_module, f"{service}Stub")
    assert hasattr(grpc_module, f"{service}Servicer")
    assert messages.DESCRIPTOR.package == "asiarch.v1"
    assert service in messages.DESCRIPTOR.services_by_name


def _descriptor_set(tmp_path: Path) -> descriptor_pb2.FileDescriptorSet:
    out = tmp_path / "contract.pb"
    subprocess.run(
        [
            sys.executable,
            "-P",
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            "--include_source_info",
            f"--descriptor_set_out={out}",
            *(str(p.relative_to(PROTOS)) for p in PROTO_FILES),
        ],
        check=True,
        cwd=PROTOS,
    )
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _elements(proto: descriptor_pb2.FileDescriptorProto) -> list[tuple[tuple[int, ...], str]]:
    """(source path, name) of every message, field, oneof, enum, value, service and method."""
    found: list[tuple[tuple[int, ...], str]] = []

    def enum(path: tuple[int, ...], item: descriptor_pb2.EnumDescriptorProto, scope: str) -> None:
        found.append((path, f"{scope}{item.name}"))
        for j, value in enumerate(item.value):
            found.append(((*path, 2, j), f"{scope}{item.name}.{value.name}"))

    def message(path: tuple[int, ...], item: descriptor_pb2.DescriptorProto, scope: str) -> None:
        name = f"{scope}{item.name}"
        found.append((path, name))
        for j, field in enumerate(item.field):
            found.append(((*path, 2, j), f"{name}.{field.name}"))
        for j, oneof in enumerate(item.oneof_decl):
            if not oneof.name.startswith("_"):  # synthetic oneofs of proto3 `optional`
                found.append(((*path, 8, j), f"{name}.{oneof.name}"))
        for j, nested in enumerate(item.nested_type):
            if not nested.options.map_entry:
                message((*path, 3, j), nested, f"{name}.")
        for j, nested_enum in enumerate(item.enum_type):
            enum((*path, 4, j), nested_enum, f"{name}.")

    for i, item in enumerate(proto.message_type):
        message((4, i), item, "")
    for i, item in enumerate(proto.enum_type):
        enum((5, i), item, "")
    for i, service in enumerate(proto.service):
        found.append(((6, i), service.name))
        for j, method in enumerate(service.method):
            found.append(((6, i, 2, j), f"{service.name}.{method.name}"))
    return found


def test_every_element_of_the_contract_has_a_comment(tmp_path: Path) -> None:
    undocumented = []
    for proto in _descriptor_set(tmp_path).file:
        commented = {
            tuple(loc.path)
            for loc in proto.source_code_info.location
            if loc.leading_comments.strip() or loc.trailing_comments.strip()
        }
        undocumented += [f"{proto.name}: {name}" for path, name in _elements(proto) if path not in commented]
    assert not undocumented, "add a comment (meaning, unit, range) to:\n" + "\n".join(undocumented)
