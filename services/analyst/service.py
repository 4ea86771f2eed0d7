"""The Analyst gRPC service: the memory of the system.

Experiments live in the document store (MongoDB or the embedded store),
their motivations and analyses and the cognition base in Qdrant. Record
scores and analyses an experiment as it stores it (`recorder.py`); the other
RPCs read. Reading experiments (GetExperiment, ListExperiments, Lineage)
touches only the document store: with ASIARCH_ANALYST_PRELOAD_VECTORS=false the
embedding model and Qdrant are opened by the first call that needs vectors.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import grpc
import structlog
from prometheus_client import Counter

from asiarch.analyst import validation
from asiarch.analyst.cognition import CognitionBase, builtin_entries, validate_entry
from asiarch.analyst.config import AnalystSettings
from asiarch.analyst.recorder import Recorder
from asiarch.analyst.repository import ExperimentRepository
from asiarch.analyst.store import StoreUnreadable, open_database
from asiarch.analyst.vectors import ANALYSES, COGNITION, MOTIVATIONS, Embedder, Hit, VectorIndex
from asiarch.common import contract
from asiarch.common.errors import ConfigError, InvalidArgument, NotFound, Unavailable
from asiarch.common.llm import LLMSettings, create_llm
from asiarch.common.retry import Backoff, Policy
from asiarch.common.server import ServiceDefinition, report_not_serving
from asiarch.v1 import analyst_pb2, analyst_pb2_grpc, common_pb2

DEFAULT_PORT = 50054
ANALYST = analyst_pb2.DESCRIPTOR.services_by_name["Analyst"].full_name
log = structlog.get_logger("asiarch.analyst")
_COLLECTION_NAMES = {
    analyst_pb2.COLLECTION_MOTIVATIONS: MOTIVATIONS,
    analyst_pb2.COLLECTION_ANALYSES: ANALYSES,
    analyst_pb2.COLLECTION_COGNITION: COGNITION,
}
# A cognition entry has several points (facets); over-fetch so k distinct entries survive.
FACETS_PER_ENTRY = 8
RECORDS = Counter(
    "asiarch_analyst_records_total",
    "Record calls answered, by the experiment's status and whether it was new (created) or already stored.",
    ["status", "outcome"],
)
COGNITION_HITS = Counter(
    "asiarch_analyst_cognition_hits_total", "Cognition-base entries returned by Retrieve."
)


def _node(experiment: common_pb2.Experiment, generation: int) -> analyst_pb2.LineageNode:
    return analyst_pb2.LineageNode(
        id=experiment.id,
        name=experiment.name,
        parent_ids=experiment.parent_ids,
        fitness=experiment.fitness.total,
        generation=generation,
        status=experiment.status,
    )


def _knowledge_hit(collection: int, hit: Hit) -> analyst_pb2.KnowledgeHit:
    payload = hit.payload
    if collection == analyst_pb2.COLLECTION_COGNITION:
        return analyst_pb2.KnowledgeHit(
            id=payload["entry_id"],
            collection=collection,
            score=hit.score,
            title=payload.get("title", ""),
            text=payload.get("document", ""),
        )
    return analyst_pb2.KnowledgeHit(
        id=payload["experiment_id"],
        collection=collection,
        score=hit.score,
        title=payload.get("name", ""),
        text=payload.get("text", ""),
        experiment_id=payload["experiment_id"],
    )


class AnalystServicer(analyst_pb2_grpc.AnalystServicer):
    def __init__(
        self,
        settings: AnalystSettings,
        repository: ExperimentRepository,
        vectors: VectorIndex,
        cognition: CognitionBase,
        recorder: Recorder,
    ) -> None:
        self.settings, self.repository, self.vectors = settings, repository, vectors
        self.cognition, self.recorder = cognition, recorder

    async def Record(
        self, request: analyst_pb2.RecordRequest, context: grpc.aio.ServicerContext
    ) -> analyst_pb2.RecordResponse:
        if not request.HasField("experiment"):
            raise InvalidArgument("experiment is required")
        validation.check_experiment(request.experiment, self.settings.analyst_max_experiment_kb * 1024)
        experiment, created = await self.recorder.record(request.experiment)
        status = common_pb2.ExperimentStatus.Name(experiment.status).removeprefix("EXPERIMENT_STATUS_")
        RECORDS.labels(status.lower(), "created" if created else "existing").inc()
        return analyst_pb2.RecordResponse(experiment=experiment, created=created)

    async def Confirm(
        self, request: analyst_pb2.ConfirmRequest, context: grpc.aio.ServicerContext
    ) -> analyst_pb2.ConfirmResponse:
        validation.check_id(request.experiment_id, "experiment_id")
        validation.check_id(request.against_id, "against_id")
        if request.rung > 2:
            raise InvalidArgument(f"rung must be 1 or 2 (0 = 2), got {request.rung}")
        experiment = await self.recorder.confirm(request.experiment_id, request.against_id, request.rung or 2)
        return analyst_pb2.ConfirmResponse(experiment=experiment)

    async def _get(self, experiment_id: str) -> common_pb2.Experiment:
        validation.check_id(experiment_id, "id")
        experiment = await self.repository.get(experiment_id)
        if experiment is None:
            raise NotFound(f"no experiment with id {experiment_id!r}")
        return experiment

    async def GetExperiment(
        self, request: analyst_pb2.GetExperimentRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.Experiment:
        return await self._get(request.id)

    async def ListExperiments(
        self, request: analyst_pb2.ListExperimentsRequest, context: grpc.aio.ServicerContext
    ) -> analyst_pb2.ListExperimentsResponse:
        if request.run_id:
            validation.check_id(request.run_id, "run_id")
        # Undefined values never get here: the interceptor applies asiarch.common.fields to every request.
        for i, status in enumerate(request.statuses):
            if status == common_pb2.EXPERIMENT_STATUS_UNSPECIFIED:
                raise InvalidArgument(f"statuses[{i}] EXPERIMENT_STATUS_UNSPECIFIED is not a status to list")
        experiments, token, total = await self.repository.page(
            request.run_id,
            list(request.statuses),
            request.sort,
            validation.page_size(request.page_size),
            request.page_token,
            include_replicates=request.include_replicates,
        )
        return analyst_pb2.ListExperimentsResponse(
            experiments=experiments, next_page_token=token, total=total
        )

    async def Lineage(
        self, request: analyst_pb2.LineageRequest, context: grpc.aio.ServicerContext
    ) -> analyst_pb2.LineageResponse:
        root = await self._get(request.id)
        limit = request.max_depth or None
        ancestors: list[analyst_pb2.LineageNode] = []
        seen = {root.id}
        frontier, depth = list(root.parent_ids), 1
        while frontier and (limit is None or depth <= limit):
            found = [await self.repository.get(i) for i in frontier if i not in seen]
            level = [e for e in found if e is not None]
            seen.update(e.id for e in level)
            ancestors += [_node(e, -depth) for e in level]
            frontier = list(dict.fromkeys(p for e in level for p in e.parent_ids if p not in seen))
            depth += 1
        descendants: list[analyst_pb2.LineageNode] = []
        frontier, depth = [root.id], 1
        while frontier and (limit is None or depth <= limit):
            level = [e for e in await self.repository.children(frontier) if e.id not in seen]
            seen.update(e.id for e in level)
            descendants += [_node(e, depth) for e in level]
            frontier, depth = [e.id for e in level], depth + 1
        return analyst_pb2.LineageResponse(node=_node(root, 0), ancestors=ancestors, descendants=descendants)

    async def Retrieve(
        self, request: analyst_pb2.RetrieveRequest, context: grpc.aio.ServicerContext
    ) -> analyst_pb2.RetrieveResponse:
        validation.check_text(request.query, "query")
        collections = validation.collections(list(request.collections))
        k = validation.top_k(request.k)
        validation.check_min_score(request.min_score)
        if request.run_id:
            validation.check_id(request.run_id, "run_id")
        [vector] = await self.vectors.embedder.encode([request.query])
        threshold = request.min_score if request.min_score else None
        hits: list[analyst_pb2.KnowledgeHit] = []
        for collection in collections:
            name = _COLLECTION_NAMES[collection]
            if collection == analyst_pb2.COLLECTION_COGNITION:
                found = await self.vectors.search(name, vector, k * FACETS_PER_ENTRY, min_score=threshold)
                best: dict[str, Hit] = {}
                for hit in found:  # best first: the first facet seen of an entry is its best
                    best.setdefault(hit.payload["entry_id"], hit)
                found = list(best.values())
            else:
                equals = {"run_id": request.run_id} if request.run_id else None
                found = await self.vectors.search(name, vector, k, equals=equals, min_score=threshold)
            hits += [_knowledge_hit(collection, hit) for hit in found]
        hits.sort(key=lambda h: h.score, reverse=True)
        COGNITION_HITS.inc(sum(h.collection == analyst_pb2.COLLECTION_COGNITION for h in hits[:k]))
        return analyst_pb2.RetrieveResponse(hits=hits[:k])

    async def FindSimilar(
        self, request: analyst_pb2.FindSimilarRequest, context: grpc.aio.ServicerContext
    ) -> analyst_pb2.FindSimilarResponse:
        validation.check_text(request.motivation, "motivation")
        k = validation.top_k(request.k)
        if request.run_id:
            validation.check_id(request.run_id, "run_id")
        [vector] = await self.vectors.embedder.encode([request.motivation])
        found = await self.vectors.search(
            MOTIVATIONS,
            vector,
            k,
            equals={"run_id": request.run_id} if request.run_id else None,
            exclude={"experiment_id": request.exclude_id} if request.exclude_id else None,
        )
        matches = [
            analyst_pb2.SimilarExperiment(
                experiment_id=hit.payload["experiment_id"],
                name=hit.payload.get("name", ""),
                similarity=hit.score,
                motivation=hit.payload.get("text", ""),
            )
            for hit in found
        ]
        closest = contract.novelty(matches[0].similarity) if matches else 1.0
        return analyst_pb2.FindSimilarResponse(matches=matches, novelty=closest)

    async def IngestCognition(
        self, request: analyst_pb2.IngestCognitionRequest, context: grpc.aio.ServicerContext
    ) -> analyst_pb2.IngestCognitionResponse:
        if not request.entries and not request.include_builtin:
            raise InvalidArgument("nothing to ingest: give entries or set include_builtin")
        seen: set[str] = set()
        for i, entry in enumerate(request.entries):
            validate_entry(entry, f"entries[{i}]")
            if entry.id in seen:
                raise InvalidArgument(f"entries[{i}].id {entry.id!r} appears twice")
            seen.add(entry.id)
        entries = (builtin_entries() if request.include_builtin else []) + list(request.entries)
        ingested, unchanged, total = await self.cognition.ingest(entries)
        return analyst_pb2.IngestCognitionResponse(ingested=ingested, unchanged=unchanged, total=total)


async def _ingest_builtin(cognition: CognitionBase) -> None:
    """Ingest the shipped cognition base."""
    ingested, unchanged, total = await cognition.ingest(builtin_entries())
    log.info("cognition base ready", ingested=ingested, unchanged=unchanged, total=total)


# The attempts after a first one (at start-up) that found the stores unavailable: 10 s, 15 s, ... 60 s apart.
INGEST_RETRY = Policy(
    lambda exc: isinstance(exc, Unavailable),
    Backoff(10.0, step=5.0, cap=60.0),
    event="cognition base not ingested yet; retrying",
    log=log,
    describe=lambda exc: {"error": str(exc)[:300]},
)


async def _start_ingesting(cognition: CognitionBase) -> asyncio.Task[None] | None:
    """The first attempt now, so that a service whose stores are up starts with the cognition base; while
    they are unavailable, the next ones in a background task (returned, to cancel at shutdown): a store
    still coming up must not keep the service down."""
    try:
        await _ingest_builtin(cognition)
    except Unavailable as exc:
        ingest = functools.partial(_ingest_builtin, cognition)
        return asyncio.create_task(INGEST_RETRY.call("cognition ingest", ingest, failed_first=exc))
    return None


async def _store_unreadable(server: grpc.aio.Server, error: StoreUnreadable) -> None:
    """A store found damaged while serving: every call already fails UNAVAILABLE; health says so too."""
    await report_not_serving(server, [ANALYST])
    log.error("document store unreadable: health NOT_SERVING", error=error.message)


def _llm_label(settings: LLMSettings) -> str:
    return f"llm:{settings.llm_backend}:{settings.llm_model or 'default'}"


@asynccontextmanager
async def lifespan(server: grpc.aio.Server, settings: AnalystSettings) -> AsyncIterator[Sequence[str]]:
    async with AsyncExitStack() as stack:
        embedder = Embedder(settings.embedding_model, settings.embedding_device)
        database = open_database(
            mongo_uri=settings.mongo_uri.get_secret_value() if settings.mongo_uri else None,
            database=settings.mongo_database,
            run_dir=settings.run_dir,
            timeout_ms=settings.mongo_timeout_ms,
            attempts=settings.analyst_write_attempts,
            on_unreadable=functools.partial(_store_unreadable, server),
        )
        stack.push_async_callback(database.close)
        try:
            # Fail fast: an analyst on a store it cannot read must not report SERVING.
            await database.verify()
        except StoreUnreadable as exc:
            raise ConfigError(exc.message) from None
        vectors = VectorIndex.open(
            url=settings.qdrant_url,
            api_key=settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None,
            run_dir=settings.run_dir,
            embedder=embedder,
            prefix=settings.qdrant_collection_prefix,
        )
        stack.push_async_callback(vectors.close)
        if settings.analyst_preload_vectors:
            # Configuration errors (a model that will not load, a collection of another size) stop the
            # start-up here rather than fail the first Record; a reader sets this off (see config.py).
            await vectors.ensure_collections()
        cognition = CognitionBase(database.collection("cognition"), vectors)
        if settings.analyst_ingest_builtin and (ingestion := await _start_ingesting(cognition)):
            stack.callback(ingestion.cancel)
        llm = create_llm(settings)
        await llm.start()
        stack.push_async_callback(llm.close)
        repository = ExperimentRepository(database.collection("experiments"))
        recorder = Recorder(settings, repository, vectors, llm, _llm_label(settings))
        servicer = AnalystServicer(settings, repository, vectors, cognition, recorder)
        analyst_pb2_grpc.add_AnalystServicer_to_server(servicer, server)
        log.info(
            "analyst ready",
            store=database.backend,
            vectors="qdrant-server" if settings.qdrant_url else "qdrant-local",
            embedding_model=settings.embedding_model,
            embedding_model_loaded=embedder.loaded,
            llm=settings.llm_backend,
        )
        try:
            yield [ANALYST]
        finally:
            # What this process ended up loading: tells whether a read-only analyst stayed light.
            log.info(
                "analyst closing",
                embedding_model_loaded=embedder.loaded,
                vector_store_opened=vectors.client is not None,
                torch_imported="torch" in sys.modules,
            )


SERVICE = ServiceDefinition(
    name="analyst",
    default_port=DEFAULT_PORT,
    lifespan=lifespan,  # type: ignore[arg-type]
    settings_type=AnalystSettings,
    summary="experiment store, fitness, analyses and the cognition base",
    default_metrics_port=9454,
)
