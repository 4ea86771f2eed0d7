"""`asiarch bench analyst`: the analyst's speed with a full store, over real gRPC.

The store is filled directly (documents through the repository, vectors with
embeddings of a pool of distinct texts) to N experiments, then a real analyst
process serves it and the timed calls go through gRPC: Record (each one
embeds, scores, analyses and stores a new experiment), Retrieve,
ListExperiments (first and a deep leaderboard page), FindSimilar,
GetExperiment and Lineage.
"""

from __future__ import annotations

import asyncio
import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asiarch.analyst.cognition import CognitionBase, builtin_entries
from asiarch.analyst.repository import ExperimentRepository
from asiarch.analyst.store import EmbeddedDatabase
from asiarch.analyst.vectors import ANALYSES, MOTIVATIONS, Embedder, VectorIndex, point_id
from asiarch.common.client import open_channel
from asiarch.common.contract import DEFAULT_CLASS_NAME
from asiarch.common.llm import Backend
from asiarch.common.local import local_service
from asiarch.common.markdown import write_section
from asiarch.v1 import analyst_pb2, analyst_pb2_grpc, common_pb2

RUN = "bench"
POOL = 256
MECHANISMS = [
    "forget gate",
    "delta rule",
    "short convolution",
    "output gate",
    "L2-normalised keys",
    "per-head decay",
    "state expansion",
    "sliding-window attention",
    "Householder products",
    "feature map",
    "momentum memory",
    "token shift",
    "RMSNorm on heads",
    "negative eigenvalues",
]
GOALS = [
    "recall on long sequences",
    "training stability",
    "throughput",
    "fewer parameters",
    "lower loss",
    "forgetting stale associations",
    "local n-gram modelling",
    "state capacity",
]
SOURCE = (
    f"import torch\nfrom torch import nn\n\n\nclass {DEFAULT_CLASS_NAME}(nn.Module):\n"
    + "    # layer body\n" * 120
)


def motivation(rng: random.Random) -> str:
    a, b = rng.sample(MECHANISMS, 2)
    return f"Combine {a} with {b} to improve {rng.choice(GOALS)}; keep the layer linear in sequence length."


def synthetic(i: int, rng: random.Random, parent: str | None) -> common_pb2.Experiment:
    loss = 2.0 + rng.random() * 0.8
    metrics = common_pb2.Metrics(
        val_loss=loss,
        bits_per_byte=loss / 0.693,
        tokens_per_second=8000 + rng.random() * 4000,
        layer_parameters=40_000 + rng.randrange(20_000),
        benchmarks=[
            common_pb2.BenchmarkScore(
                name=f"mqar/seq{64 << j}_kv{4 << j}", task="mqar", score=rng.random() * 0.3
            )
            for j in range(3)
        ],
        loss_curve=[common_pb2.LossPoint(step=s * 10, train_loss=5 - s * 0.05) for s in range(50)],
    )
    e = common_pb2.Experiment(
        id=f"bench-{i:05d}",
        run_id=RUN,
        name=f"candidate-{i}",
        parent_ids=[parent] if parent else [],
        cycle=i // 8,
        status=common_pb2.EXPERIMENT_STATUS_SUCCEEDED,
        is_baseline=parent is None,
        proposal=common_pb2.Proposal(
            name=f"candidate-{i}",
            motivation=motivation(rng),
            source=common_pb2.ArchitectureSource(module_source=SOURCE, class_name=DEFAULT_CLASS_NAME),
        ),
        evaluation=common_pb2.Evaluation(status=common_pb2.EVALUATION_STATUS_SUCCEEDED, metrics=metrics),
    )
    e.fitness.total = rng.random() * 3
    e.analysis.synthesis = f"Keep the {rng.choice(MECHANISMS)}; it helped {rng.choice(GOALS)}."
    e.created_at.FromSeconds(1_790_000_000 + i)
    return e


async def fill(run_dir: Path, count: int, rng: random.Random) -> float:
    """Store `count` experiments and their vectors; returns seconds taken."""
    from qdrant_client import models

    started = time.perf_counter()
    embedder = Embedder("all-MiniLM-L6-v2")
    vectors = VectorIndex.open(url=None, api_key=None, run_dir=run_dir, embedder=embedder, prefix="asiarch_")
    database = EmbeddedDatabase(run_dir / "store", attempts=1)
    try:
        await vectors.ensure_collections()
        await CognitionBase(database.collection("cognition"), vectors).ingest(builtin_entries())
        repository = ExperimentRepository(database.collection("experiments"))
        pool_motivations = [motivation(rng) for _ in range(POOL)]
        pool_vectors = await embedder.encode(pool_motivations)
        batch: dict[str, list[Any]] = {MOTIVATIONS: [], ANALYSES: []}
        for i in range(count):
            parent = None if i < 3 else f"bench-{rng.randrange(i // 2, i):05d}"
            experiment = synthetic(i, rng, parent)
            await repository.insert(experiment)
            k = i % POOL
            payload = {"experiment_id": experiment.id, "run_id": RUN, "name": experiment.name}
            batch[MOTIVATIONS].append(
                models.PointStruct(
                    id=point_id(MOTIVATIONS, experiment.id),
                    vector=pool_vectors[k],
                    payload={**payload, "text": pool_motivations[k]},
                )
            )
            batch[ANALYSES].append(
                models.PointStruct(
                    id=point_id(ANALYSES, experiment.id),
                    vector=pool_vectors[(k * 7) % POOL],
                    payload={**payload, "text": experiment.analysis.synthesis},
                )
            )
            if len(batch[MOTIVATIONS]) == 1000 or i == count - 1:
                for collection, points in batch.items():
                    await vectors.client.upsert(vectors.name(collection), points=points)
                    points.clear()
    finally:
        await database.close()
        await vectors.close()
    return time.perf_counter() - started


async def timed(calls: int, call: Callable[[int], Awaitable[object]]) -> list[float]:
    latencies = []
    for i in range(calls):
        start = time.perf_counter()
        await call(i)
        latencies.append((time.perf_counter() - start) * 1000)
    return latencies


def row(name: str, latencies: list[float], note: str = "") -> str:
    p50 = statistics.median(latencies)
    p95 = sorted(latencies)[max(0, int(len(latencies) * 0.95) - 1)]
    rate = 1000 * len(latencies) / sum(latencies)
    return f"| {name} | {len(latencies)} | {p50:.1f} | {p95:.1f} | {rate:.1f} | {note} |"


@dataclass(frozen=True)
class _Timed:
    """One timed RPC: its row's name, the call (given its index), how many times, the row's note."""

    name: str
    call: Callable[[int], Awaitable[object]]
    calls: int
    note: str = ""


def _timed_calls(
    stub: analyst_pb2_grpc.AnalystStub, count: int, queries: int, rng: random.Random, deep_page_token: str
) -> list[_Timed]:
    """The calls `measure` times, in the order it times them (they draw from `rng` in that order)."""

    async def record(i: int) -> object:
        parent = f"bench-{rng.randrange(3, count):05d}"
        return await stub.Record(
            analyst_pb2.RecordRequest(experiment=synthetic(count + i, rng, parent)), timeout=120
        )

    async def retrieve(i: int) -> object:
        query = f"{rng.choice(GOALS)} with {rng.choice(MECHANISMS)}"
        return await stub.Retrieve(analyst_pb2.RetrieveRequest(query=query, k=5, run_id=RUN), timeout=60)

    async def leaderboard(i: int) -> object:
        return await stub.ListExperiments(
            analyst_pb2.ListExperimentsRequest(run_id=RUN, page_size=50), timeout=60
        )

    async def deep_page(i: int) -> object:
        request = analyst_pb2.ListExperimentsRequest(run_id=RUN, page_size=1000, page_token=deep_page_token)
        return await stub.ListExperiments(request, timeout=60)

    async def similar(i: int) -> object:
        return await stub.FindSimilar(
            analyst_pb2.FindSimilarRequest(motivation=motivation(rng), run_id=RUN), timeout=60
        )

    async def get(i: int) -> object:
        request = analyst_pb2.GetExperimentRequest(id=f"bench-{rng.randrange(count):05d}")
        return await stub.GetExperiment(request, timeout=60)

    async def lineage(i: int) -> object:
        request = analyst_pb2.LineageRequest(id=f"bench-{rng.randrange(count):05d}", max_depth=3)
        return await stub.Lineage(request, timeout=60)

    return [
        _Timed("Record (new experiment: embed, score, analyse, store)", record, queries, "sequential"),
        _Timed("Retrieve (cognition + analyses, k=5)", retrieve, queries),
        _Timed("ListExperiments (leaderboard, first 50)", leaderboard, queries),
        _Timed("ListExperiments (page 2 of 1000)", deep_page, max(5, queries // 5)),
        _Timed("FindSimilar (k=5)", similar, queries),
        _Timed("GetExperiment", get, queries),
        _Timed("Lineage (max_depth 3)", lineage, queries),
    ]


async def measure(run_dir: Path, count: int, queries: int, rng: random.Random) -> list[str]:
    """The table's rows: each call timed against a real analyst serving the store in `run_dir`."""
    env = {
        "ASIARCH_RUN_DIR": str(run_dir),
        "ASIARCH_LLM_BACKEND": Backend.NONE.value,
        "ASIARCH_LOG_LEVEL": "warning",
    }
    # Kept after the run (the store is not): the place to look when a call fails.
    log_path = Path(tempfile.gettempdir()) / "asiarch-bench-analyst.log"
    async with (
        local_service("analyst", env=env, log_path=log_path) as address,
        open_channel(address) as channel,
    ):
        stub = analyst_pb2_grpc.AnalystStub(channel)
        first = await stub.ListExperiments(
            analyst_pb2.ListExperimentsRequest(run_id=RUN, page_size=1000), timeout=60
        )
        return [
            row(timed_call.name, await timed(timed_call.calls, timed_call.call), timed_call.note)
            for timed_call in _timed_calls(stub, count, queries, rng, first.next_page_token)
        ]


def run(count: int, queries: int, out: Path | None, command: str) -> str:
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="asiarch-bench-analyst-") as tmp:
        run_dir = Path(tmp) / "run"
        fill_seconds = asyncio.run(fill(run_dir, count, rng))
        rows = asyncio.run(measure(run_dir, count, queries, rng))
    cpu = platform.processor() or platform.machine()
    text = "\n".join(
        [
            f"### Analyst at {count:,} experiments (embedded store + Qdrant local mode, CPU)",
            "",
            f"`{command}` on {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}; "
            f"the store was filled in {fill_seconds:.0f} s; `none` LLM (deterministic judge and analysis); "
            "each call over gRPC to a real `asiarch serve analyst` process, one client, calls in sequence.",
            "",
            "| call | calls | p50 ms | p95 ms | calls/s | note |",
            "|---|---:|---:|---:|---:|---|",
            *rows,
            "",
        ]
    )
    if out is not None:
        write_section(out, "analyst:cpu", text)
    return text
