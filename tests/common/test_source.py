"""Candidate source read with ast: deep or broken sources are a SourceError with a reason, never a crash."""

from __future__ import annotations

import pytest

from asiarch.common.source import MAX_NESTING, SourceError, parse_source
from asiarch.orchestrator.loop import design_key
from asiarch.v1 import common_pb2

DEEP = [
    "y = torch" + ".a" * 5000,  # RecursionError inside Python's parser
    "x = " + "-" * 30000 + "1",  # MemoryError inside Python's parser
    "x = 1" + " + 1" * 2000,  # parses, then ast.dump / ast.unparse recurse past the interpreter's limit
    "x = " + "[" * 150 + "]" * 150,
]


@pytest.mark.parametrize("source", DEEP)
def test_deep_sources_are_refused_with_a_reason(source: str) -> None:
    with pytest.raises(SourceError, match="nested"):
        parse_source(source)


def test_a_syntax_error_keeps_its_line() -> None:
    with pytest.raises(SourceError) as caught:
        parse_source("x = 1\ndef f(:\n")
    assert caught.value.line == 2
    assert caught.value.reason.startswith("line 2: syntax error")


def test_nesting_up_to_the_limit_parses() -> None:
    depth = MAX_NESTING - 5  # the module, the assignment and the list's load context add levels
    parse_source("x = " + "[" * depth + "]" * depth)


@pytest.mark.parametrize("source", DEEP)
def test_duplicate_detection_keys_deep_sources_by_their_text(source: str) -> None:
    proposal = common_pb2.Proposal(source=common_pb2.ArchitectureSource(module_source=source))
    assert design_key(proposal) == design_key(proposal)
    other = common_pb2.Proposal(source=common_pb2.ArchitectureSource(module_source=source + "\n# x"))
    assert design_key(proposal) != design_key(other)


@pytest.mark.parametrize("source", DEEP)
def test_export_refuses_deep_sources_with_a_reason(source: str) -> None:
    from asiarch.orchestrator.results.export import ExportError, standalone_source

    proposal = common_pb2.Proposal(source=common_pb2.ArchitectureSource(module_source=source))
    with pytest.raises(ExportError, match=r"the layer's source does not parse: .*nested"):
        standalone_source(common_pb2.Experiment(id="deep", proposal=proposal))
