"""Document store backends: MongoDB (PyMongo async) or an embedded store (one SQLite file).

Both answer the analyst's queries, written once in `repository.py` in MongoDB's query language behind
one small async interface (`DocumentCollection`); the embedded store evaluates the subset they use
(`query.py`). Every operation is retried on transient failures and then reported as `Unavailable`: a
write the database rejects or times out on is never silently dropped.

The embedded store survives a kill at any instant: a write returns only once it is durable (SQLite's WAL,
fsynced), and an interrupted one is rolled back on the next open. A file that cannot be read (damaged on
disk, or another format) is `StoreUnreadable` (an `Unavailable` naming the file and how to repair it) for
every call, and reported once through `on_unreadable`; `verify()` reads the whole store, so the analyst
refuses to start on one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

import bson
import structlog
from bson.errors import InvalidBSON
from prometheus_client import Histogram

from asiarch.analyst.query import UnsupportedQuery, compile_filter, sort_documents
from asiarch.analyst.query import fields as query_fields
from asiarch.common.errors import Unavailable
from asiarch.common.retry import Backoff, Policy

log = structlog.get_logger("asiarch.analyst.store")
STORE_SECONDS = Histogram(
    "asiarch_analyst_store_seconds",
    "One document-store operation, retries included, by collection and operation.",
    ["collection", "operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

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
    async def verify(self) -> None: ...
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
        self.policy = Policy(
            # A duplicate id is the caller's answer, never the store's trouble.
            lambda exc: isinstance(exc, transient) and not isinstance(exc, DuplicateId),
            Backoff(backoff_seconds),
            attempts=attempts,
            event="store operation failed",
            log=log.bind(collection=name),
        )

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            with STORE_SECONDS.labels(self.name, operation).time():
                return await self.policy.call(operation, call)
        except Exception as exc:
            if not self.policy.retryable(exc):
                raise
            failed = Unavailable(
                f"the document store failed {operation} on {self.name!r} "
                f"{self.attempts} time(s): {type(exc).__name__}: {str(exc)[:300]}"
            )
            log.warning("store operation failed; giving up", error=failed.message)  # the status has it too
            raise failed from exc

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

    async def verify(self) -> None:
        # Nothing at start-up: the service starts (and answers health) while MongoDB is still coming up;
        # each call then fails UNAVAILABLE until it is reachable.
        return None

    async def close(self) -> None:
        await self.client.close()


# --- Embedded (SQLite) -----------------------------------------------------------------------------------

STORE_FILE = "asiarch.sqlite3"
# How long a write waits for another process's write lock (a second analyst on the same run dir) before
# it counts as a transient failure.
BUSY_SECONDS = 10.0
# Primary result codes that mean the file is not a readable database; a busy lock, a full disk or an I/O
# error is transient instead (retried, then Unavailable).
_UNREADABLE_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS documents (collection TEXT NOT NULL, id TEXT NOT NULL, body BLOB NOT NULL, "
    "PRIMARY KEY (collection, id))"
)
UnreadableHook = Callable[["StoreUnreadable"], Awaitable[None]]


class StoreUnreadable(Unavailable):
    """The embedded store's file cannot be read (damaged, or not this store's format): nothing is served."""


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _key(document: Document) -> str:
    key = document.get("_id")
    if not isinstance(key, str):
        raise UnsupportedQuery(f"the embedded store keys documents by string _id, got {type(key).__name__}")
    return key


class SqliteDocuments:
    """The store's one SQLite file, and an in-memory index of its documents; used by one thread only.

    Durability: WAL journal with synchronous=FULL, one transaction per write, so a write has reached the
    disk (the WAL fsynced) when it returns, and a process killed at any instant leaves the file at the last
    committed write (SQLite replays or discards the WAL tail on the next open). Queries run over the index:
    every document's fields except binary ones (the experiment's protobuf bytes, read from the file only
    for the documents returned), rebuilt when another connection has committed (`PRAGMA data_version`).
    """

    def __init__(self, directory: Path) -> None:
        self.directory, self.path = directory, directory / STORE_FILE
        self._connection: sqlite3.Connection | None = None
        self._index: dict[str, dict[str, Document]] = {}
        self._binary: dict[str, set[str]] = {}
        self._version: int | None = None
        self._unreadable: str | None = None

    def guarded(self, operation: Callable[..., T], *args: Any) -> T:
        """Run one operation; a damaged file becomes StoreUnreadable, now and for every later call."""
        if self._unreadable is None:
            try:
                return operation(*args)
            except sqlite3.DatabaseError as exc:
                if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in _UNREADABLE_CODES:
                    raise
                self._unreadable = self._damaged(exc)
            except InvalidBSON as exc:
                self._unreadable = self._damaged(exc)
        raise StoreUnreadable(self._unreadable)

    def _damaged(self, error: Exception) -> str:
        log.error("embedded store unreadable", path=str(self.path), error=f"{type(error).__name__}: {error}")
        return (
            f"the embedded store {self.path} is damaged ({type(error).__name__}: {str(error)[:200]}); "
            "nothing is served from it until it is repaired: stop the analyst, keep a copy of the store "
            f"folder, then `sqlite3 {self.path} .recover | sqlite3 recovered.sqlite3` and put the result "
            "in its place, or start on another ASIARCH_RUN_DIR"
        )

    def connection(self) -> sqlite3.Connection:
        if self._connection is None:
            self._connection = self._open()
        return self._connection

    def _open(self) -> sqlite3.Connection:
        if not self.path.exists() and (self.directory / "asiarch").is_dir():
            raise StoreUnreadable(
                f"{self.directory} holds a store written by an older asiarch (mongita files under "
                f"{self.directory / 'asiarch'}), which this version does not read: it keeps experiments in "
                f"{STORE_FILE}. Start on another ASIARCH_RUN_DIR (the old run stays readable by the older "
                "version)"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        connection = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level=None)
        try:
            journal = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if journal != "wal":
                raise OSError(f"SQLite could not use a WAL journal for {self.path} (got {journal!r})")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute(_SCHEMA)
        except BaseException:
            connection.close()
            raise
        if created:  # the new file's directory entry (and the directory's own) must survive a crash too
            _fsync_directory(self.directory)
            _fsync_directory(self.directory.parent)
        return connection

    def verify(self) -> None:
        """Read the whole file once: SQLite's own check, then every document (which fills the index)."""
        connection = self.connection()
        problems = [row[0] for row in connection.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            self._unreadable = self._damaged(sqlite3.DatabaseError("; ".join(problems[:5])))
            raise StoreUnreadable(self._unreadable)
        for (collection,) in connection.execute("SELECT DISTINCT collection FROM documents").fetchall():
            self._documents(collection)

    def _documents(self, collection: str) -> dict[str, Document]:
        """The index of one collection: every document without its binary fields, by id."""
        version = self.connection().execute("PRAGMA data_version").fetchone()[0]
        if version != self._version:  # another connection committed since: what we hold may be stale
            self._index.clear()
            self._binary.clear()
            self._version = version
        if collection not in self._index:
            self._index[collection], self._binary[collection] = {}, set()
            rows = self.connection().execute(
                "SELECT id, body FROM documents WHERE collection = ?", (collection,)
            )
            for key, body in rows:
                self._remember(collection, key, body)
        return self._index[collection]

    def _remember(self, collection: str, key: str, body: bytes | None) -> None:
        if collection not in self._index:
            return  # not loaded yet: the first query loads it from the file
        if body is None:
            self._index[collection].pop(key, None)
            return
        document = bson.decode(body)  # decoded, not the caller's dict: the types every reader sees
        self._binary[collection].update(k for k, v in document.items() if isinstance(v, bytes))
        self._index[collection][key] = {k: v for k, v in document.items() if not isinstance(v, bytes)}

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: the index and the bodies fetched after it agree."""
        connection = self.connection()
        connection.execute("BEGIN")
        try:
            yield connection
        finally:
            connection.execute("COMMIT")

    def _matching(self, collection: str, query: Filter, sort: SortKeys = ()) -> list[str]:
        documents = self._documents(collection)
        binary = query_fields(query, sort) & self._binary[collection]
        if binary:  # the index leaves binary fields out, so it would answer as if they were missing
            raise UnsupportedQuery(
                f"the embedded store does not filter or sort on binary fields: {sorted(binary)}"
            )
        predicate = compile_filter(query)
        matched = [d for d in documents.values() if predicate(d)]
        return [str(d["_id"]) for d in (sort_documents(matched, sort) if sort else matched)]

    def _bodies(self, connection: sqlite3.Connection, collection: str, keys: Sequence[str]) -> list[Document]:
        found: dict[str, bytes] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ", ".join("?" * len(chunk))
            query = f"SELECT id, body FROM documents WHERE collection = ? AND id IN ({marks})"
            found.update(connection.execute(query, (collection, *chunk)).fetchall())
        return [bson.decode(found[key]) for key in keys if key in found]

    def find(self, collection: str, query: Filter, sort: SortKeys, skip: int, limit: int) -> list[Document]:
        with self._snapshot() as connection:
            keys = self._matching(collection, query, sort)[skip : skip + limit if limit else None]
            return self._bodies(connection, collection, keys)

    def find_one(self, collection: str, query: Filter) -> Document | None:
        if set(query) == {"_id"} and isinstance(query["_id"], str):  # by key: no index needed
            select = "SELECT body FROM documents WHERE collection = ? AND id = ?"
            row = self.connection().execute(select, (collection, query["_id"])).fetchone()
            return None if row is None else bson.decode(row[0])
        found = self.find(collection, query, (), 0, 1)
        return found[0] if found else None

    def count(self, collection: str, query: Filter) -> int:
        with self._snapshot():
            return len(self._matching(collection, query))

    def insert(self, collection: str, document: Document) -> None:
        key, body = _key(document), bson.encode(document)
        try:
            self.connection().execute(
                "INSERT INTO documents (collection, id, body) VALUES (?, ?, ?)", (collection, key, body)
            )
        except sqlite3.IntegrityError as exc:
            raise DuplicateId(key) from exc
        self._remember(collection, key, body)

    def _target(self, collection: str, query: Filter) -> str | None:
        """The key of the document a replace/delete applies to: MongoDB's first match."""
        if set(query) == {"_id"} and isinstance(query["_id"], str):
            return str(query["_id"])
        with self._snapshot():
            keys = self._matching(collection, query)
        return keys[0] if keys else None

    def replace(self, collection: str, query: Filter, document: Document) -> int:
        key = self._target(collection, query)
        if key is None:
            return 0
        if document.get("_id", key) != key:
            raise UnsupportedQuery(f"replace_one cannot change _id {key!r} to {document['_id']!r}")
        body = bson.encode({"_id": key, **document})
        update = "UPDATE documents SET body = ? WHERE collection = ? AND id = ?"
        updated = self.connection().execute(update, (body, collection, key)).rowcount
        if updated:
            self._remember(collection, key, body)
        return int(updated)

    def delete(self, collection: str, query: Filter) -> int:
        key = self._target(collection, query)
        if key is None:
            return 0
        delete = "DELETE FROM documents WHERE collection = ? AND id = ?"
        deleted = self.connection().execute(delete, (collection, key)).rowcount
        if deleted:
            self._remember(collection, key, None)
        return int(deleted)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class EmbeddedCollection:
    """One collection of the embedded store; every call runs on the database's one worker thread."""

    def __init__(self, database: EmbeddedDatabase, name: str) -> None:
        self.database, self.name = database, name

    async def insert_one(self, document: Document) -> None:
        await self.database.run(self.database.file.insert, self.name, document)

    async def find_one(self, query: Filter) -> Document | None:
        return await self.database.run(self.database.file.find_one, self.name, query)

    async def find(self, query: Filter, sort: SortKeys = (), skip: int = 0, limit: int = 0) -> list[Document]:
        return await self.database.run(self.database.file.find, self.name, query, sort, skip, limit)

    async def count(self, query: Filter) -> int:
        return await self.database.run(self.database.file.count, self.name, query)

    async def replace_one(self, query: Filter, document: Document) -> int:
        return await self.database.run(self.database.file.replace, self.name, query, document)

    async def delete_one(self, query: Filter) -> int:
        return await self.database.run(self.database.file.delete, self.name, query)

    async def create_index(self, keys: SortKeys) -> None:
        # Deliberately none: queries run over the in-memory index (see SqliteDocuments); MongoDB gets them.
        return None


class EmbeddedDatabase:
    """The embedded store: one SQLite file under `path` (see SqliteDocuments for what it guarantees)."""

    backend = "embedded"

    def __init__(self, path: Path, attempts: int, on_unreadable: UnreadableHook | None = None) -> None:
        self.path, self.file = path, SqliteDocuments(path)
        # sqlite3 connections belong to the thread that made them; one worker also orders the writes.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self.attempts, self.transient = attempts, (sqlite3.OperationalError, OSError)
        self.on_unreadable, self.reported = on_unreadable, False

    async def run(self, operation: Callable[..., T], *args: Any) -> T:
        call = functools.partial(self.file.guarded, operation, *args)
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, call)
        except StoreUnreadable as exc:
            if self.on_unreadable is not None and not self.reported:
                self.reported = True
                await self.on_unreadable(exc)
            raise

    async def verify(self) -> None:
        # Not through `run`: the caller refuses to start on an unreadable store, so no health to turn.
        call = functools.partial(self.file.guarded, self.file.verify)
        try:
            await asyncio.get_running_loop().run_in_executor(self.executor, call)
        except self.transient as exc:  # a folder it may not write, a lock another process holds, ...
            raise StoreUnreadable(
                f"the embedded store {self.file.path} could not be opened: {type(exc).__name__}: {exc}"
            ) from exc

    def collection(self, name: str) -> DocumentCollection:
        return Retrying(EmbeddedCollection(self, name), name, self.attempts, self.transient)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self.executor, self.file.close)
        self.executor.shutdown(wait=True)


def open_database(
    *,
    mongo_uri: str | None,
    database: str,
    run_dir: Path,
    timeout_ms: int,
    attempts: int,
    on_unreadable: UnreadableHook | None = None,
) -> DocumentDatabase:
    if mongo_uri:
        return MongoDatabase(mongo_uri, database, timeout_ms, attempts)
    return EmbeddedDatabase(run_dir / "store", attempts, on_unreadable)
