"""Shared helpers for the knowledge tests: a fast fake embedder and KB factories (the
SQLite index in a file, or the PostgreSQL one in a database of the test server)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

from ownlight.knowledge.base import KnowledgeBase
from ownlight.knowledge.postgres_store import PostgresKnowledgeStore
from ownlight.knowledge.sqlite_store import SQLiteKnowledgeStore


class HashEmbedder:
    """Deterministic bag-of-words vectors: instant, and texts sharing words are close."""

    dim = 384
    name = "test/hash"

    def _one(self, text: str) -> np.ndarray:
        vector = np.zeros(self.dim, dtype=np.float32)
        for word in re.findall(r"\w+", text.lower()):
            vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector + 1.0 / np.sqrt(self.dim)

    def passages(self, texts: list[str]) -> np.ndarray:
        return np.stack([self._one(t) for t in texts]) if texts else np.zeros((0, self.dim))

    def query(self, text: str) -> np.ndarray:
        return self._one(text)


def open_kb(path: Path, vectors: bool = True) -> KnowledgeBase:
    return KnowledgeBase(SQLiteKnowledgeStore(path), HashEmbedder() if vectors else None)


def open_pg_kb(url: str, vectors: bool = True) -> KnowledgeBase:
    return KnowledgeBase(PostgresKnowledgeStore.connect(url), HashEmbedder() if vectors else None)
