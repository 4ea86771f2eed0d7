"""`asiarch discover --precision`: every evaluation of the run asks the engineer for it (issue 17)."""

from __future__ import annotations

import subprocess

import pytest
from support import BIN
from test_loop_requests import QuietDisplay, RecordingEngineer, StoringAnalyst

from asiarch.orchestrator.loop import Discovery, Options, Stubs
from asiarch.v1 import common_pb2


@pytest.mark.parametrize(
    ("precision", "expected"),
    [
        (None, common_pb2.PRECISION_UNSPECIFIED),  # the engineer applies the preset's default
        ("fp32", common_pb2.PRECISION_FP32),
        ("bf16-autocast", common_pb2.PRECISION_BF16_AUTOCAST),
    ],
)
async def test_baselines_candidates_and_replicates_are_evaluated_at_the_runs_precision(
    precision: str | None, expected: int
) -> None:
    engineer = RecordingEngineer()
    loop = Discovery(
        Options(run_id="r", budget="smoke", precision=precision),
        Stubs(selector=None, researcher=None, engineers=[engineer], analyst=StoringAnalyst()),
        QuietDisplay(),
    )
    await loop._baseline(common_pb2.Proposal(name="deltanet", generator="baseline"))
    await loop.evaluate("r.c0001.0", common_pb2.Proposal(name="child"), None)
    await loop.evaluate("r.c0001.0.s1", common_pb2.Proposal(name="child"), None, seed=1, rung=2)
    assert [r.budget.precision for r in engineer.requests] == [expected] * 3
    assert [r.budget.preset for r in engineer.requests] == [common_pb2.BUDGET_PRESET_SMOKE] * 3


def test_discover_refuses_an_unknown_precision_before_anything_starts() -> None:
    done = subprocess.run(
        [str(BIN / "asiarch"), "discover", "--precision", "fp16"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "argument --precision: invalid choice: 'fp16'" in done.stderr and "'bf16-autocast'" in done.stderr
