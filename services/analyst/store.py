"""Document store backends: MongoDB (PyMongo async) or an embedded file store (mongita).

Both speak MongoDB's query language; this module only adapts their calling
conventions to one small async interface (`DocumentCollection`), so the
queries themselves live once, in `repository.py`. Every operation is retried
on transient failures and then reported as `Unavailable`: a write the
database rejects or times out on is never silently dropped.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

import structlog

from asiarch.common.errors import Unavailable

log = structlog.get_logger("asiarch.analyst.store")

Document = dict[str, Any]
Filter = Mapping[str, Any]
SortKeys = Sequence[tuple[str, int]]
T = TypeVar("T")


class DuplicateId(Exception):
    """A document with this `_id` already exists."""


class DocumentCollection(Protocol):
    async def insert_one(self, document: Document) -> None: ...
    async def find_one(self, query: Filter) -> Document | None: ...
    async def find(
        self, query: Filter, sort: SortKeys = (), skip: int = 0, limit: int = 0
    ) -> list[Document]: ...
    async def count(self, query: Filter) -> int: ...
    async def replace_one(self, query: Filter, document: Document) -> int: ...
    async def delete_one(self, query: Filter) -> int: ...
    async def create_index(self, keys: SortKeys) -> None: ...


class DocumentDatabase(Protocol):
    backend: str

    def collection(self, name: str) -> DocumentCollection: ...
    async def close(self) -> None: ...


class Retrying:
    """Wraps a collection: transient errors are retried with backoff, then become Unavailable."""

    def __init__(
        self,
        inner: DocumentCollection,
        name: str,
        attempts: int,
        transient: tuple[type[BaseException], ...],
        backoff_seconds: float = 0.2,
    ) -> None:
        self.inner, self.name, self.attempts = inner, name, attempts
        self.transient, self.backoff_seconds = transient, backoff_seconds

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return await call()
            except DuplicateId:
                raise
            except self.transient as exc:
                log.warning(
                    "store operation failed",
                    collection=self.name,
                    operation=operation,
                    attempt=attempt,
                    error=f"{type(exc).__name__}: {exc}"[:500],
                )
                if attempt == self.attempts:
                    raise Unavailable(
                        f"the document store failed {operation} on {self.name!r} "
                        f"{self.attempts} time(s): {type(exc).__name__}: {str(exc)[:300]}"
                    ) from exc
                await asyncio.sleep(self.backoff_seconds * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    async def insert_one(self, document: Document) -> None:
        await self._call("insert", lambda: self.inner.insert_one(document))

    async def find_one(self, query: Filter) -> Document | None:
        return await self._call("find", lambda: self.inner.find_one(query))

    async def find(self, query: Filter, sort: SortKeys = (), skip: int = 0, limit: int = 0) -> list[Document]:
        return await self._call("find", lambda: self.inner.find(query, sort, skip, limit))

    async def count(self, query: Filter) -> int:
        return await self._call("count", lambda: self.inner.count(query))

    async def replace_one(self, query: Filter, document: Document) -> int:
        return await self._call("replace", lambda: self.inner.replace_one(query, document))

    async def delete_one(self, query: Filter) -> int:
        return await self._call("delete", lambda: self.inner.delete_one(query))

    async def create_index(self, keys: SortKeys) -> None:
        await self._call("create_index", lambda: self.inner.create_index(keys))


# --- MongoDB ---------------------------------------------------------------------------------------------


class MongoCollection:
    def __init__(self, collection: Any) -> None:
        self.collection = collection

    async def insert_one(self, document: Document) -> None:
        from pymongo.errors import DuplicateKeyError

        try:
            await self.collection.insert_one(document)
        except DuplicateKeyError as exc:
            raise DuplicateId(str(document.get("_id"))) from exc

    async def find_one(self, query: Filter) -> Document | None:
        return await self.collection.find_one(dict(query))

    async def find(self, query: Filter, sort: SortKeys = (), skip: int = 0, limit: int = 0) -> list[Document]:
        cursor = self.collection.find(dict(query))
        if sort:
            cursor = cursor.sort(list(sort))
        return await cursor.skip(skip).limit(limit).to_list(None)

    async def count(self, query: Filter) -> int:
        return await self.collection.count_documents(dict(query))

    async def replace_one(self, query: Filter, document: Document) -> int:
        return (await self.collection.replace_one(dict(query), document)).matched_count

    async def delete_one(self, query: Filter) -> int:
        return (await self.collection.delete_one(dict(query))).deleted_count

    async def create_index(self, keys: SortKeys) -> None:
        await self.collection.create_index(list(keys))


class MongoDatabase:
    backend = "mongodb"

    def __init__(self, uri: str, database: str, timeout_ms: int, attempts: int) -> None:
        from pymongo import AsyncMongoClient
        from pymongo.errors import PyMongoError

        # Writes wait for the majority and are retried once by the driver on a
        # failover (retryWrites); what still fails is retried here, then reported.
        self.client: Any = AsyncMongoClient(
            uri,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            socketTimeoutMS=timeout_ms,
            retryWrites=True,
            tz_aware=True,
            appname="asiarch-analyst",
        )
        self.database = self.client[database]
        self.attempts, self.transient = attempts, (PyMongoError,)

    def collection(self, name: str) -> DocumentCollection:
        return Retrying(MongoCollection(self.database[name]), name, self.attempts, self.transient)

    async def close(self) -> None:
        await self.client.close()


# --- Embedded (mongita) ----------------------------------------------------------------------------------


class MongitaCollection:
    """mongita is synchronous and not thread-safe: every call runs on the database's one worker thread."""

    def __init__(self, collection: Any, executor: ThreadPoolExecutor) -> None:
        self.collection, self.executor = collection, executor

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self.executor, functools.partial(function, *args)
        )

    async def insert_one(self, document: Document) -> None:
        from mongita.errors import DuplicateKeyError

        try:
            await self._run(self.collection.insert_one, document)
        except DuplicateKeyError as exc:
            raise DuplicateId(str(document.get("_id"))) from exc

    async def find_one(self, query: Filter) -> Document | None:
        return await self._run(self.collection.find_one, dict(query))

    def _find(self, query: Filter, sort: SortKeys, skip: int, limit: int) -> list[Document]:
        cursor = self.collection.find(dict(query))
        if sort:
            cursor = cursor.sort(list(sort))
        if skip:
            cursor = cursor.skip(skip)
        if limit:
            cursor = cursor.limit(limit)
        return list(cursor)

    async def find(self, query: Filter, sort: SortKeys = (), skip: int = 0, limit: int = 0) -> list[Document]:
        return await self._run(self._find, query, sort, skip, limit)

    async def count(self, query: Filter) -> int:
        return await self._run(self.collection.count_documents, dict(query))

    async def replace_one(self, query: Filter, document: Document) -> int:
        return (await self._run(self.collection.replace_one, dict(query), document)).matched_count

    async def delete_one(self, query: Filter) -> int:
        return (await self._run(self.collection.delete_one, dict(query))).deleted_count

    async def create_index(self, keys: SortKeys) -> None:
        # Deliberately none: mongita rewrites an index on every insert (measured: 31 ms per insert with the
        # repository's indexes at 2,000 documents, 3 ms without) and answers these queries from its
        # in-memory documents no faster with them. MongoDB gets the indexes.
        return None


class EmbeddedDatabase:
    backend = "embedded"

    def __init__(self, path: Path, attempts: int) -> None:
        from mongita import MongitaClientDisk

        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mongita")
        self.client = MongitaClientDisk(str(path))
        self.database = self.client["asiarch"]
        self.attempts, self.transient = attempts, (OSError,)

    def collection(self, name: str) -> DocumentCollection:
        inner = MongitaCollection(self.database[name], self.executor)
        return Retrying(inner, name, self.attempts, self.transient)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self.executor, self.client.close)
        self.executor.shutdown(wait=True)


def open_database(
    *, mongo_uri: str | None, database: str, run_dir: Path, timeout_ms: int, attempts: int
) -> DocumentDatabase:
    if mongo_uri:
        return MongoDatabase(mongo_uri, database, timeout_ms, attempts)
    return EmbeddedDatabase(run_dir / "store", attempts)
