"""A single machine's knowledge index moved into another store (``ownlight db copy``):
every source with its documents, chunks, owners and access lists, and every collection-wide
grant, written through the target's own ``replace_source`` and ``grant``, so the target's
full-text index and access classes are built its own way. Vectors are not copied: the
chunks arrive pending, and every instance's background embedder embeds them (and scores
them for injections) as it does after an ingest; lexical search works at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from ownlight.knowledge.sqlite_store import SQLiteKnowledgeStore
from ownlight.knowledge.store import KnowledgeStore


@dataclass(frozen=True)
class CopiedKnowledge:
    sources: int
    documents: int
    chunks: int
    grants: int


def copy_knowledge(source: SQLiteKnowledgeStore, target: KnowledgeStore) -> CopiedKnowledge:
    """Copy every source and grant; running it again changes nothing (same hashes)."""
    sources = documents = chunks = 0
    for exported in source.exported_sources():
        target.replace_source(exported.tenant, exported.collection, exported.path,
                              exported.content_hash, exported.owner, exported.documents)
        sources += 1
        documents += len(exported.documents)
        chunks += sum(len(d.chunks) for d in exported.documents)
    grants = source.exported_grants()
    for tenant, collection, identity in grants:
        target.grant(tenant, collection, identity)
    return CopiedKnowledge(sources, documents, chunks, len(grants))
