"""The experiment repository: every query the analyst makes, written once.

Documents keep the whole experiment (protobuf JSON, so it stays readable in
`mongosh`) under `experiment`, plus the top-level fields the queries filter
and sort on. `schema_version` is on every document so a later layout can be
migrated in place.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from asiarch.analyst.store import Document, DocumentCollection, DuplicateId
from asiarch.common.errors import InvalidArgument
from asiarch.v1 import analyst_pb2, common_pb2

SCHEMA_VERSION = 1
# The largest offset a page token may carry: what MongoDB's skip (an int64) accepts.
MAX_OFFSET = 2**63 - 1
TERMINAL = {common_pb2.EXPERIMENT_STATUS_SUCCEEDED, common_pb2.EXPERIMENT_STATUS_FAILED}

_SORTS: dict[int, list[tuple[str, int]]] = {
    analyst_pb2.EXPERIMENT_SORT_UNSPECIFIED: [("fitness", -1), ("created_at", 1), ("_id", 1)],
    analyst_pb2.EXPERIMENT_SORT_FITNESS_DESC: [("fitness", -1), ("created_at", 1), ("_id", 1)],
    analyst_pb2.EXPERIMENT_SORT_CREATED_DESC: [("created_at", -1), ("_id", -1)],
    analyst_pb2.EXPERIMENT_SORT_CREATED_ASC: [("created_at", 1), ("_id", 1)],
}
NOT_A_REPLICATE: dict[str, Any] = {"is_replicate": {"$ne": True}}
INDEXES: list[list[tuple[str, int]]] = [
    [("run_id", 1), ("fitness", -1)],
    [("run_id", 1), ("created_at", 1)],
    [("parent_ids", 1)],
    [("replicate_of", 1)],
    [("fitness", -1)],
    [("created_at", 1)],
    [("status", 1)],
]


def _utc(moment: datetime) -> datetime:
    # Naive UTC, BSON's convention: the embedded store hands back naive datetimes for documents read from
    # disk, and sorting a mix of naive and aware ones fails.
    return moment.astimezone(UTC).replace(tzinfo=None)


def _timestamp(experiment: common_pb2.Experiment) -> datetime:
    if experiment.HasField("created_at"):
        return _utc(experiment.created_at.ToDatetime(tzinfo=UTC))
    return _utc(datetime.now(UTC))


def to_document(experiment: common_pb2.Experiment) -> Document:
    evaluation = experiment.evaluation
    return {
        "_id": experiment.id,
        "schema_version": SCHEMA_VERSION,
        "run_id": experiment.run_id,
        "name": experiment.name,
        "status": common_pb2.ExperimentStatus.Name(experiment.status),
        "parent_ids": list(experiment.parent_ids),
        "cycle": experiment.cycle,
        "is_baseline": experiment.is_baseline,
        # Documents written before replicates existed lack the field: queries use {"$ne": True}.
        "is_replicate": bool(experiment.replicate_of),
        "replicate_of": experiment.replicate_of,
        "reference_only": experiment.proposal.reference_only,
        "fitness": experiment.fitness.total,
        "val_loss": evaluation.metrics.val_loss if evaluation.metrics.HasField("val_loss") else None,
        "created_at": _timestamp(experiment),
        "updated_at": _utc(datetime.now(UTC)),
        # The whole record as protobuf bytes: parsed in C on every read (JSON parsing cost ~1 ms per
        # experiment, the dominant cost of a leaderboard page); `summary` keeps it readable in mongosh.
        "pb": experiment.SerializeToString(),
        "summary": {
            "motivation": experiment.proposal.motivation[:2000],
            "benchmarks": {b.name.replace(".", "_"): b.score for b in evaluation.metrics.benchmarks},
            "breakthrough": experiment.analysis.breakthrough,
            "judged_by": experiment.fitness.judge.judged_by,
        },
    }


def from_document(document: Document) -> common_pb2.Experiment:
    if document.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"experiment {document.get('_id')!r} has schema version {document.get('schema_version')!r}; "
            f"this analyst reads version {SCHEMA_VERSION}"
        )
    return common_pb2.Experiment.FromString(document["pb"])


def _status_names(statuses: Iterable[int]) -> list[str]:
    return sorted({common_pb2.ExperimentStatus.Name(s) for s in statuses})


class PageToken:
    """Opaque paging token: an offset bound to the query that produced it."""

    @staticmethod
    def _fingerprint(query: dict[str, Any], sort: int) -> str:
        raw = json.dumps([query, sort], sort_keys=True, default=str).encode()
        return hashlib.sha256(raw).hexdigest()[:12]

    @classmethod
    def encode(cls, offset: int, query: dict[str, Any], sort: int) -> str:
        payload = json.dumps({"o": offset, "q": cls._fingerprint(query, sort)}).encode()
        return base64.urlsafe_b64encode(payload).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str, query: dict[str, Any], sort: int) -> int:
        if not token:
            return 0
        try:
            # RecursionError: a deeply nested JSON token; the offset is checked as issued (an int the
            # store can skip), so Infinity or 1e400 is refused here rather than overflowing later.
            payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            offset, fingerprint = payload["o"], str(payload["q"])
            if type(offset) is not int or not 0 <= offset <= MAX_OFFSET:
                raise ValueError(f"offset {offset!r} out of range")
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise InvalidArgument("page_token is not a token this service issued") from exc
        if fingerprint != cls._fingerprint(query, sort):
            raise InvalidArgument(
                "page_token belongs to a different query (run_id, statuses or sort changed)"
            )
        return offset


class ExperimentRepository:
    def __init__(self, experiments: DocumentCollection) -> None:
        self.experiments = experiments
        self._indexed = False

    async def ensure_indexes(self) -> None:
        # Lazily, so the service starts (and reports its health) while the
        # database is still coming up; the first call that needs it creates them.
        if self._indexed:
            return
        for keys in INDEXES:
            await self.experiments.create_index(keys)
        self._indexed = True

    async def get(self, experiment_id: str) -> common_pb2.Experiment | None:
        await self.ensure_indexes()
        document = await self.experiments.find_one({"_id": experiment_id})
        return None if document is None else from_document(document)

    async def existing_ids(self, ids: Sequence[str]) -> set[str]:
        # One lookup per id: `_id` lookups are indexed everywhere, `$in` scans in the embedded store.
        await self.ensure_indexes()
        return {i for i in dict.fromkeys(ids) if await self.experiments.find_one({"_id": i}) is not None}

    async def insert(self, experiment: common_pb2.Experiment) -> bool:
        """Store a new experiment; False (and nothing written) when the id exists."""
        await self.ensure_indexes()
        try:
            await self.experiments.insert_one(to_document(experiment))
        except DuplicateId:
            return False
        return True

    async def replace(self, experiment: common_pb2.Experiment) -> None:
        await self.ensure_indexes()
        await self.experiments.replace_one({"_id": experiment.id}, to_document(experiment))

    async def page(
        self,
        run_id: str,
        statuses: Sequence[int],
        sort: int,
        page_size: int,
        page_token: str,
        include_replicates: bool = False,
    ) -> tuple[list[common_pb2.Experiment], str, int]:
        await self.ensure_indexes()
        query: dict[str, Any] = {} if include_replicates else dict(NOT_A_REPLICATE)
        if run_id:
            query["run_id"] = run_id
        if statuses:
            query["status"] = {"$in": _status_names(statuses)}
        offset = PageToken.decode(page_token, query, sort)
        total = await self.experiments.count(query)
        documents = await self.experiments.find(query, _SORTS[sort], offset, page_size)
        following = offset + len(documents)
        token = PageToken.encode(following, query, sort) if following < total else ""
        return [from_document(d) for d in documents], token, total

    async def find(
        self, query: dict[str, Any], sort: Sequence[tuple[str, int]] = (), limit: int = 0
    ) -> list[common_pb2.Experiment]:
        await self.ensure_indexes()
        return [from_document(d) for d in await self.experiments.find(query, sort, 0, limit)]

    async def replicates(self, experiment_id: str) -> list[common_pb2.Experiment]:
        """The recorded replicates of one experiment, oldest first."""
        return await self.find({"replicate_of": experiment_id}, [("created_at", 1), ("_id", 1)])

    async def run_results(self, run_id: str) -> list[common_pb2.Experiment]:
        """The run's succeeded experiments, replicates left out: what fitness ranks."""
        return await self.find(
            {"run_id": run_id, "status": "EXPERIMENT_STATUS_SUCCEEDED", **NOT_A_REPLICATE},
            [("created_at", 1), ("_id", 1)],
        )

    async def children(self, parent_ids: Sequence[str]) -> list[common_pb2.Experiment]:
        """Experiments with any of these as a parent, oldest first."""
        return await self.find({"parent_ids": {"$in": list(parent_ids)}}, [("created_at", 1), ("_id", 1)])

    async def baselines(self, run_id: str) -> list[common_pb2.Experiment]:
        """The run's successfully evaluated baselines that may serve as fitness references."""
        found = await self.find(
            {
                "run_id": run_id,
                "is_baseline": True,
                "status": "EXPERIMENT_STATUS_SUCCEEDED",
                **NOT_A_REPLICATE,
            },
            [("created_at", 1), ("_id", 1)],
        )
        return [e for e in found if e.evaluation.metrics.HasField("val_loss")]

    async def best(self, run_id: str, exclude_id: str) -> common_pb2.Experiment | None:
        """The run's best selectable experiment so far (highest fitness), other than `exclude_id`."""
        found = await self.find(
            {
                "run_id": run_id,
                "status": "EXPERIMENT_STATUS_SUCCEEDED",
                "reference_only": False,
                "_id": {"$ne": exclude_id},
                **NOT_A_REPLICATE,
            },
            _SORTS[analyst_pb2.EXPERIMENT_SORT_FITNESS_DESC],
            limit=1,
        )
        return found[0] if found else None
