"""Contract suite of the experiment repository, run against every store backend available.

The embedded store (one SQLite file) always runs. A real MongoDB runs
when ASIARCH_MONGO_URI points at one; otherwise its cases are reported as
skipped with the reason. Kills and damaged files: test_analyst_crash.py.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from analyst_data import RUN, experiment

from asiarch.analyst.query import UnsupportedQuery
from asiarch.analyst.repository import SCHEMA_VERSION, ExperimentRepository
from asiarch.analyst.store import DuplicateId, EmbeddedDatabase, MongoDatabase, Retrying
from asiarch.common.errors import InvalidArgument, Unavailable
from asiarch.v1 import analyst_pb2, common_pb2

MONGO_URI = os.environ.get("ASIARCH_MONGO_URI")
SUCCEEDED, FAILED = common_pb2.EXPERIMENT_STATUS_SUCCEEDED, common_pb2.EXPERIMENT_STATUS_FAILED


@pytest.fixture(params=["embedded", "mongodb"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "embedded":
        db: Any = EmbeddedDatabase(tmp_path / "store", attempts=2)
        yield db
        await db.close()
        return
    if not MONGO_URI:
        pytest.skip("ASIARCH_MONGO_URI is not set: the MongoDB run of the store contract was SKIPPED")
    name = f"asiarch_test_{uuid.uuid4().hex[:8]}"
    db = MongoDatabase(MONGO_URI, name, timeout_ms=5000, attempts=2)
    yield db
    await db.client.drop_database(name)
    await db.close()


@pytest.fixture
def repository(database: Any) -> ExperimentRepository:
    return ExperimentRepository(database.collection("experiments"))


CLOCK = itertools.count(1_800_000_000)


def scored(e: common_pb2.Experiment, total: float) -> common_pb2.Experiment:
    """With a fitness and a creation time later than every earlier call's."""
    e.fitness.total = total
    e.created_at.FromSeconds(next(CLOCK))
    return e


async def test_round_trip_keeps_every_field(repository: ExperimentRepository, database: Any) -> None:
    original = scored(experiment("a", motivation="why"), 1.5)
    original.analysis.synthesis = "keep it"
    original.evaluation.metrics.loss_curve.add(step=10, train_loss=3.0, val_loss=2.9, elapsed_seconds=1.5)
    assert await repository.insert(original) is True
    assert await repository.get("a") == original
    raw = await database.collection("experiments").find_one({"_id": "a"})
    assert raw["schema_version"] == SCHEMA_VERSION
    assert raw["run_id"] == RUN and raw["fitness"] == 1.5 and raw["status"] == "EXPERIMENT_STATUS_SUCCEEDED"
    assert await repository.get("missing") is None


async def test_inserting_an_existing_id_writes_nothing(repository: ExperimentRepository) -> None:
    assert await repository.insert(scored(experiment("a"), 1.0))
    assert await repository.insert(scored(experiment("a", loss=0.1), 2.0)) is False
    assert (await repository.get("a")).evaluation.metrics.val_loss == 2.0  # type: ignore[union-attr]
    _, _, total = await repository.page("", [], 0, 10, "")
    assert total == 1


async def test_leaderboard_filters_sorts_and_pages(repository: ExperimentRepository) -> None:
    for i, total in enumerate([1.2, 2.5, 0.4, 1.9, 2.1]):
        status = FAILED if i == 2 else SUCCEEDED
        await repository.insert(scored(experiment(f"e{i}", status=status), total))
    await repository.insert(scored(experiment("other", run_id="run-b"), 3.0))

    page, token, total = await repository.page(RUN, [], analyst_pb2.EXPERIMENT_SORT_FITNESS_DESC, 2, "")
    assert [e.id for e in page] == ["e1", "e4"] and total == 5 and token
    page, token, _ = await repository.page(RUN, [], analyst_pb2.EXPERIMENT_SORT_FITNESS_DESC, 2, token)
    assert [e.id for e in page] == ["e3", "e0"] and token
    page, token, _ = await repository.page(RUN, [], analyst_pb2.EXPERIMENT_SORT_FITNESS_DESC, 2, token)
    assert [e.id for e in page] == ["e2"] and token == ""

    page, _, total = await repository.page(RUN, [SUCCEEDED], 0, 50, "")
    assert total == 4 and "e2" not in [e.id for e in page]
    page, _, _ = await repository.page("", [], analyst_pb2.EXPERIMENT_SORT_CREATED_ASC, 50, "")
    assert [e.id for e in page] == ["e0", "e1", "e2", "e3", "e4", "other"]
    page, _, _ = await repository.page("", [], analyst_pb2.EXPERIMENT_SORT_CREATED_DESC, 1, "")
    assert [e.id for e in page] == ["other"]


async def test_page_tokens_are_bound_to_their_query(repository: ExperimentRepository) -> None:
    for i in range(3):
        await repository.insert(scored(experiment(f"e{i}"), i))
    _, token, _ = await repository.page(RUN, [], 0, 1, "")
    with pytest.raises(InvalidArgument, match="different query"):
        await repository.page("run-b", [], 0, 1, token)
    with pytest.raises(InvalidArgument, match="not a token"):
        await repository.page(RUN, [], 0, 1, "garbage!")


async def test_family_queries(repository: ExperimentRepository) -> None:
    await repository.insert(scored(experiment("deltanet", baseline=True, loss=2.2), 1.0))
    await repository.insert(scored(experiment("softmax", baseline=True, loss=1.5, reference_only=True), 2.9))
    await repository.insert(scored(experiment("c1", parent="deltanet"), 1.8))
    await repository.insert(scored(experiment("c2", parent="deltanet", status=FAILED), 0.0))
    await repository.insert(scored(experiment("g1", parent="c1"), 2.0))
    assert [e.id for e in await repository.children(["deltanet"])] == ["c1", "c2"]
    assert {e.id for e in await repository.children(["c1", "c2"])} == {"g1"}
    assert [e.id for e in await repository.baselines(RUN)] == ["deltanet", "softmax"]
    best = await repository.best(RUN, exclude_id="g1")
    assert best is not None and best.id == "c1"  # the reference-only softmax is never "best"
    assert await repository.existing_ids(["c1", "nope", "g1"]) == {"c1", "g1"}


async def test_a_reopened_store_sorts_old_and_new_documents(tmp_path: Path) -> None:
    first = EmbeddedDatabase(tmp_path / "store", attempts=1)
    await ExperimentRepository(first.collection("experiments")).insert(scored(experiment("old"), 1.0))
    await first.close()
    reopened = EmbeddedDatabase(tmp_path / "store", attempts=1)
    try:
        repository = ExperimentRepository(reopened.collection("experiments"))
        await repository.insert(scored(experiment("new"), 2.0))
        page, _, total = await repository.page(RUN, [], analyst_pb2.EXPERIMENT_SORT_CREATED_DESC, 10, "")
        assert [e.id for e in page] == ["new", "old"] and total == 2
        assert (await repository.best(RUN, exclude_id="")).id == "new"  # type: ignore[union-attr]
    finally:
        await reopened.close()


async def test_queries_follow_mongodb_semantics(database: Any) -> None:
    """What the repository relies on, answered alike by both backends (the embedded one evaluates it)."""
    documents = database.collection("things")
    await documents.insert_one({"_id": "a", "tags": ["x", "y"], "flag": True, "n": 1})
    await documents.insert_one({"_id": "b", "tags": ["z"], "n": 2.5})
    await documents.insert_one({"_id": "c", "flag": False, "n": None})

    async def ids(query: dict[str, Any], sort: list[tuple[str, int]] | None = None, **page: int) -> list[str]:
        return [d["_id"] for d in await documents.find(query, sort or [("_id", 1)], **page)]

    assert await ids({"tags": {"$in": ["y", "q"]}}) == ["a"]  # an array matches when any element does
    assert await ids({"tags": "z"}) == ["b"]
    assert await ids({"flag": {"$ne": True}}) == ["b", "c"]  # a missing field is not equal to anything
    assert await ids({"flag": 1}) == [] and await ids({"n": 1}) == ["a"]  # a boolean is not a number
    assert await ids({}, [("n", 1)]) == ["c", "a", "b"]  # null sorts before numbers
    assert await ids({}, [("n", -1)]) == ["b", "a", "c"]
    assert await ids({"_id": {"$ne": "a"}}, [("_id", -1)], skip=1, limit=5) == ["b"]
    assert await documents.count({"flag": {"$ne": True}}) == 2
    assert await documents.replace_one({"tags": "z"}, {"n": 7}) == 1
    assert (await documents.find_one({"_id": "b"})) == {"_id": "b", "n": 7}
    assert await documents.delete_one({"n": {"$in": [7]}}) == 1 and await documents.count({}) == 2


@pytest.mark.parametrize(
    ("query", "sort"),
    [
        ({"n": {"$gt": 1}}, []),
        ({"$or": [{"n": 1}]}, []),
        ({"summary.breakthrough": True}, []),
        ({"n": {"$in": "not a list"}}, []),
        ({"pb": b"x"}, []),
        ({}, [("n", 2)]),
        ({}, [("tags", 1)]),
    ],
)
async def test_the_embedded_store_refuses_queries_outside_what_it_answers(
    tmp_path: Path, query: dict[str, Any], sort: list[tuple[str, int]]
) -> None:
    database = EmbeddedDatabase(tmp_path / "store", attempts=1)
    try:
        documents = database.collection("things")
        await documents.insert_one({"_id": "a", "tags": ["x"], "n": 1, "pb": b"bytes"})
        with pytest.raises(UnsupportedQuery):
            await documents.find(query, sort)
    finally:
        await database.close()


async def test_writes_of_another_process_are_seen(tmp_path: Path) -> None:
    """Two analysts on one run directory (a reader beside the writer): each sees the other's writes."""
    reader = EmbeddedDatabase(tmp_path / "store", attempts=1)
    writer = EmbeddedDatabase(tmp_path / "store", attempts=1)
    try:
        read, write = (ExperimentRepository(d.collection("experiments")) for d in (reader, writer))
        await write.insert(scored(experiment("a"), 1.0))
        assert [e.id for e in (await read.page(RUN, [], 0, 10, ""))[0]] == ["a"]
        await write.insert(scored(experiment("b"), 2.0))
        await write.replace(scored(experiment("a"), 3.0))
        page, _, total = await read.page(RUN, [], analyst_pb2.EXPERIMENT_SORT_FITNESS_DESC, 10, "")
        assert [(e.id, e.fitness.total) for e in page] == [("a", 3.0), ("b", 2.0)] and total == 2
    finally:
        await reader.close()
        await writer.close()


class Flaky:
    """A collection that fails the first `failures` calls the way a database does."""

    def __init__(self, failures: int, error: BaseException) -> None:
        self.failures, self.error, self.calls, self.documents = failures, error, 0, []

    async def insert_one(self, document: dict[str, Any]) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        self.documents.append(document)


async def test_transient_write_failures_are_retried() -> None:
    inner = Flaky(failures=2, error=OSError("disk busy"))
    collection = Retrying(inner, "experiments", attempts=3, transient=(OSError,), backoff_seconds=0)  # type: ignore[arg-type]
    await collection.insert_one({"_id": "a"})
    assert inner.calls == 3 and inner.documents == [{"_id": "a"}]


async def test_writes_that_keep_failing_become_unavailable() -> None:
    inner = Flaky(failures=5, error=OSError("disk full"))
    collection = Retrying(inner, "experiments", attempts=2, transient=(OSError,), backoff_seconds=0)  # type: ignore[arg-type]
    with pytest.raises(Unavailable, match=r"failed insert on 'experiments' 2 time.*disk full"):
        await collection.insert_one({"_id": "a"})
    assert inner.calls == 2 and inner.documents == []


async def test_duplicates_are_not_retried() -> None:
    inner = Flaky(failures=5, error=DuplicateId("a"))
    collection = Retrying(inner, "experiments", attempts=3, transient=(OSError,), backoff_seconds=0)  # type: ignore[arg-type]
    with pytest.raises(DuplicateId):
        await collection.insert_one({"_id": "a"})
    assert inner.calls == 1


async def test_an_unreachable_mongodb_is_reported_unavailable() -> None:
    # Real PyMongo against a port nobody listens on: server selection times out on each attempt.
    db = MongoDatabase("mongodb://127.0.0.1:9/?directConnection=true", "x", timeout_ms=200, attempts=2)
    repository = ExperimentRepository(db.collection("experiments"))
    try:
        with pytest.raises(Unavailable, match=r"document store failed .* 2 time"):
            await repository.insert(experiment("a"))
    finally:
        await db.close()
