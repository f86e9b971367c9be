"""The interface between the knowledge base and its storage engine.

The embedded engine is SQLite (FTS5 + sqlite-vec, ``sqlite_store.py``); a PostgreSQL +
pgvector engine implements the same methods. Every read method takes the principal and
the collections, so an engine cannot forget to filter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ownlight.knowledge.types import Hit, PreparedDocument
from ownlight.principal import Principal

__all__ = ["KnowledgeStore", "PreparedDocument", "SourceChange"]


@dataclass(frozen=True)
class SourceChange:
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0


class KnowledgeStore(Protocol):
    def source_hash(self, tenant: str, collection: str, source: str) -> str | None:
        """The content hash recorded for a source (file) when it was last ingested."""
        ...

    def replace_source(
        self,
        tenant: str,
        collection: str,
        source: str,
        source_hash: str,
        owner: str | None,
        documents: Sequence[PreparedDocument],
    ) -> SourceChange:
        """Atomically make the source's documents exactly ``documents``."""
        ...

    def prune(self, tenant: str, collection: str, root: str, keep: set[str]) -> int:
        """Remove sources under ``root`` not in ``keep``; returns documents removed."""
        ...

    def pending_chunks(self, limit: int) -> list[tuple[int, str]]:
        """Chunks still without a vector, oldest first: (chunk_id, text to embed)."""
        ...

    def count_pending(self) -> int: ...

    def store_vectors(self, chunk_ids: Sequence[int], vectors: np.ndarray,
                      injection_scores: Sequence[float] | None = None) -> None:
        """Save vectors (and the guard's score of each chunk, read from its lines) for
        chunks that still exist (others were deleted meanwhile)."""
        ...

    def unscored_chunks(self, limit: int) -> list[tuple[int, str]]:
        """Chunks with a vector but no guard score (scored by a head since replaced, whose
        scores a migration cleared), oldest first: (chunk_id, text as embedded)."""
        ...

    def store_scores(self, chunk_ids: Sequence[int], injection_scores: Sequence[float]) -> None:
        """Save the guard's scores of chunks that still exist."""
        ...

    def lexical(
        self, terms: Sequence[str], principal: Principal, collections: Sequence[str], k: int
    ) -> list[tuple[int, float]]:
        """Best readable chunks for query terms (``segment.terms``): (chunk_id, score)."""
        ...

    def vector(
        self, query: np.ndarray, principal: Principal, collections: Sequence[str], k: int
    ) -> list[tuple[int, float]]:
        """Nearest readable embedded chunks: (chunk_id, cosine similarity), best first."""
        ...

    def hits(
        self, chunk_ids: Sequence[int], principal: Principal, collections: Sequence[str]
    ) -> dict[int, Hit]:
        """Details of readable chunks (score 0; the caller sets it)."""
        ...

    def readable_collections(self, principal: Principal) -> list[str]:
        """Names of the principal's tenant's collections holding a document they may read
        (the same access rule as search: a name says nothing about what others hold)."""
        ...

    def access_list(self, tenant: str, collection: str) -> tuple[list[str], list[str]]:
        """Who owns documents in a collection, and what the collection grants besides."""
        ...

    def grant(self, tenant: str, collection: str, identity: str) -> None: ...

    def revoke(self, tenant: str, collection: str, identity: str) -> None: ...

    def close(self) -> None: ...
