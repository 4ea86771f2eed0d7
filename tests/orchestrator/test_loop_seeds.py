"""What the loop does with imported seeds (cycle 0, not baselines), read from the requests it sends.

In-test engineer, analyst and selector with the stubs' call shapes, as in test_loop_requests: the seeds
are trained once, as published; with a trained seed, the search starts from the imported pool (the
baselines go to the selector as reference-only); a seed whose parent failed is a root for the selector.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from typing import Any

import pytest
from test_loop_requests import ConfirmingAnalyst, QuietDisplay, RecordingEngineer

from asiarch.orchestrator.loop import Discovery, Options, Stubs
from asiarch.v1 import common_pb2, selector_pb2

SUCCEEDED, PENDING, FAILED = (
    common_pb2.EXPERIMENT_STATUS_SUCCEEDED,
    common_pb2.EXPERIMENT_STATUS_PENDING,
    common_pb2.EXPERIMENT_STATUS_FAILED,
)


def experiment(id: str, status: int, *, baseline: bool = False, parent: str = "", cycle: int = 0) -> Any:
    return common_pb2.Experiment(
        id=f"r.{id}",
        run_id="r",
        name=id,
        cycle=cycle,
        is_baseline=baseline,
        status=status,
        parent_ids=[f"r.{parent}"] if parent else [],
        proposal=common_pb2.Proposal(name=id, source=common_pb2.ArchitectureSource(module_source=f"# {id}")),
    )


class RecordingSelector:
    def __init__(self) -> None:
        self.requests: list[selector_pb2.SelectParentsRequest] = []

    async def SelectParents(self, request: selector_pb2.SelectParentsRequest, **_: object) -> Any:
        self.requests.append(request)
        return selector_pb2.SelectParentsResponse()  # no selection: the cycle proposes nothing


RUN = [
    experiment("base.deltanet", SUCCEEDED, baseline=True),
    experiment("seed.a", SUCCEEDED),
    experiment("seed.b", FAILED),
    experiment("seed.c", SUCCEEDED, parent="seed.b"),  # its parent failed: not a candidate
    experiment("seed.d", PENDING, parent="seed.a"),
]


def loop(analyst: ConfirmingAnalyst, engineer: RecordingEngineer, selector: RecordingSelector) -> Discovery:
    stubs = Stubs(selector=selector, researcher=None, engineers=[engineer], analyst=analyst)
    return Discovery(Options(run_id="r", budget="smoke"), stubs, QuietDisplay())


async def test_unfinished_seeds_are_trained_once_as_published_after_the_baselines() -> None:
    analyst, engineer = ConfirmingAnalyst(RUN), RecordingEngineer()
    discovery = loop(analyst, engineer, RecordingSelector())
    await discovery.evaluate_seeds({e.id: e for e in RUN})
    [request] = (
        engineer.requests
    )  # the pending seed only: the others are finished, the baseline is not a seed
    assert request.experiment_id == "r.seed.d" and request.proposal.source.module_source == "# seed.d"
    assert request.HasField("max_repairs") and request.max_repairs == 0  # as published: never repaired
    recorded = analyst.stored["r.seed.d"]
    assert recorded.cycle == 0 and list(recorded.parent_ids) == ["r.seed.a"]
    # Baselines and seeds are cycle 0: a run with nothing else starts at cycle 1, pending seeds or not.
    assert discovery.first_cycle(RUN) == 1


async def test_with_a_trained_seed_the_baselines_are_yardsticks_and_failed_parents_are_no_links() -> None:
    selector = RecordingSelector()
    await loop(ConfirmingAnalyst(RUN), RecordingEngineer(), selector).run_cycle(1)
    [request] = selector.requests
    sent = {c.id: c for c in request.candidates}
    assert set(sent) == {"r.base.deltanet", "r.seed.a", "r.seed.c"}  # the succeeded ones
    assert sent["r.base.deltanet"].reference_only  # scored, a possible reference, never a parent
    assert not sent["r.seed.a"].reference_only and not sent["r.seed.c"].reference_only
    assert sent["r.seed.c"].parent_id == ""  # r.seed.b failed: the selector would refuse it as a parent


async def test_without_seeds_the_baselines_are_parents_as_before() -> None:
    selector = RecordingSelector()
    run = [experiment("base.deltanet", SUCCEEDED, baseline=True), experiment("c0001.0", SUCCEEDED, cycle=1)]
    await loop(ConfirmingAnalyst(run), RecordingEngineer(), selector).run_cycle(2)
    assert not any(c.reference_only for c in selector.requests[0].candidates)


async def test_jobs_cancelled_before_their_turn_leave_no_never_awaited_warning() -> None:
    """Stopping a confirmation (Ctrl-C, SIGTERM) cancels replicates still waiting for a slot; they are
    closed, not left to warn "coroutine ... was never awaited" as the process exits."""
    started: list[int] = []

    async def job(n: int) -> None:
        started.append(n)
        await asyncio.sleep(3600)

    discovery = loop(ConfirmingAnalyst([]), RecordingEngineer(), RecordingSelector())  # parallel 1

    async def stopped_midway() -> None:
        running = asyncio.ensure_future(discovery._bounded([job(n) for n in range(3)]))
        await asyncio.sleep(0.05)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await stopped_midway()
        await asyncio.sleep(0.05)  # the cancelled tasks' last steps run: all they made is garbage now
        gc.collect()
    assert started == [0]
    assert not [w for w in caught if "never awaited" in str(w.message)]
