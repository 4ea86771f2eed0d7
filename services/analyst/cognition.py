"""The cognition base: distilled linear-attention knowledge the researcher retrieves.

The shipped entries are TOML files in `cognition_base/` (our own summaries of
the papers). Entries live in the document store (the source of truth, with a
content hash for idempotent ingestion) and in Qdrant as one point per facet.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Sequence
from importlib import resources

from google.protobuf import json_format

from asiarch.analyst.store import Document, DocumentCollection, DuplicateId
from asiarch.analyst.vectors import COGNITION, Point, VectorIndex
from asiarch.common.errors import InvalidArgument
from asiarch.v1 import analyst_pb2

ENTRY_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
MAX_FIELD_CHARS = 4000


def builtin_entries() -> list[analyst_pb2.CognitionEntry]:
    folder = resources.files("asiarch.analyst") / "cognition_base"
    entries = []
    for item in sorted(folder.iterdir(), key=lambda f: f.name):
        if item.name.endswith(".toml"):
            data = tomllib.loads(item.read_text(encoding="utf-8"))
            entries.append(json_format.ParseDict(data, analyst_pb2.CognitionEntry()))
    return entries


def validate_entry(entry: analyst_pb2.CognitionEntry, where: str) -> None:
    if not ENTRY_ID.fullmatch(entry.id):
        raise InvalidArgument(
            f"{where}.id must be 1-64 characters of [a-z0-9-] starting with a letter or digit"
        )
    for field in ("title", "design_insight"):
        if not getattr(entry, field).strip():
            raise InvalidArgument(f"{where}.{field} must not be empty")
    if not any(p.strip() for p in entry.trigger_patterns):
        raise InvalidArgument(f"{where}.trigger_patterns needs at least one non-empty pattern")
    for field in ("title", "design_insight", "algorithm", "implementation_guidance", "reference"):
        if len(getattr(entry, field)) > MAX_FIELD_CHARS:
            raise InvalidArgument(f"{where}.{field} is longer than {MAX_FIELD_CHARS} characters")


def entry_text(entry: analyst_pb2.CognitionEntry) -> str:
    """What a retrieval hit returns: the entry as the researcher's prompt shows it."""
    parts = [
        f"Insight: {entry.design_insight.strip()}",
        f"Algorithm: {entry.algorithm.strip()}" if entry.algorithm.strip() else "",
        f"Implementation: {entry.implementation_guidance.strip()}" if entry.implementation_guidance else "",
        f"Reference: {entry.reference.strip()}" if entry.reference.strip() else "",
    ]
    return "\n".join(p for p in parts if p)


def _fingerprint(entry: analyst_pb2.CognitionEntry) -> str:
    canonical = json.dumps(json_format.MessageToDict(entry), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _facets(entry: analyst_pb2.CognitionEntry, fingerprint: str) -> list[Point]:
    payload = {"entry_id": entry.id, "title": entry.title, "hash": fingerprint, "document": entry_text(entry)}
    texts = [("insight", f"{entry.title}. {entry.design_insight}")]
    texts += [
        (f"trigger-{i}", pattern) for i, pattern in enumerate(entry.trigger_patterns) if pattern.strip()
    ]
    return [
        Point(key=f"{entry.id}#{facet}", text=text, payload={**payload, "facet": facet})
        for facet, text in texts
    ]


class CognitionBase:
    def __init__(self, documents: DocumentCollection, vectors: VectorIndex) -> None:
        self.documents, self.vectors = documents, vectors

    async def ingest(self, entries: Sequence[analyst_pb2.CognitionEntry]) -> tuple[int, int, int]:
        """(ingested, unchanged, total). Idempotent on entry id and content."""
        changed: list[tuple[analyst_pb2.CognitionEntry, str, Document | None]] = []
        for entry in entries:
            fingerprint = _fingerprint(entry)
            stored = await self.documents.find_one({"_id": entry.id})
            indexed = await self.vectors.payloads(COGNITION, [f"{entry.id}#insight"])
            in_sync = indexed.get(f"{entry.id}#insight", {}).get("hash") == fingerprint
            if not (stored is not None and stored.get("hash") == fingerprint and in_sync):
                changed.append((entry, fingerprint, stored))
        # Points of an older version may have more trigger facets than the new one.
        for entry, _, _ in changed:
            await self.vectors.delete_where(COGNITION, "entry_id", entry.id)
        # One upsert for every facet: the encoder batches texts of similar length together.
        await self.vectors.upsert(COGNITION, [p for e, f, _ in changed for p in _facets(e, f)])
        for entry, fingerprint, stored in changed:
            document = {"_id": entry.id, "hash": fingerprint, "entry": json_format.MessageToDict(entry)}
            if stored is None:
                try:
                    await self.documents.insert_one(document)
                    continue
                except DuplicateId:  # another replica ingested it meanwhile: ours is as good
                    pass
            await self.documents.replace_one({"_id": entry.id}, document)
        return len(changed), len(entries) - len(changed), await self.documents.count({})
