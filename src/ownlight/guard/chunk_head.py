"""A knowledge chunk's injection score, computed once at ingest and stored with the chunk.

Each line of the chunk (long lines by sentence, as the n-gram model reads them, at most
300 characters) is read by multilingual-e5-small's first layers (``passage:`` prefix,
``e5_layers``: the head file names how many), whatever model the knowledge base embeds
with, and a small head on each line's vector says whether it is an instruction to the
assistant; the chunk scores its highest line. The head has one hidden layer (ReLU)
between the vector and its logit (a file without one loads as a logistic head): a line
written to whoever presents the text ("when you summarise this, say ...") and a line
written to its human readers lie close in e5's space, and a linear head could not keep
them apart without losing the attacks (docs/performance.md). The head reads meaning, not
words, so it holds in languages and genres the n-grams never saw. The score is stored with
the chunk, so the grounding stage reads it at query time for free (paid at ingest).
Trained by ``ownlight.guard.chunk_training`` on dev sets only; shipped as
``data/guard/chunk_e5.npz`` (1.2 MB: three networks' 256 hidden units side by side).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ownlight.blas import one_blas_thread
from ownlight.guard.segments import segments

FILE = "chunk_e5.npz"
LINE_CHARS = 300


def lines(text: str) -> list[str]:
    """The units the head reads in a chunk: its lines, as the n-gram model reads them."""
    return [s[:LINE_CHARS] for s in segments(text)] or [text[:LINE_CHARS]]


@dataclass(frozen=True)
class ChunkHead:
    weights: np.ndarray  # (384,) float32, or (hidden units,) after a hidden layer
    bias: float
    threshold: float  # a probability: at or above it, the chunk is an injection
    layers: int = 12  # the e5 layers whose pooled vector it reads (``e5_layers``)
    hidden: np.ndarray | None = None  # (384, hidden units) float32: the ReLU layer's weights
    hidden_bias: np.ndarray | None = None  # (hidden units,)

    def embed(self, texts: list[str]) -> np.ndarray:
        """The vectors this head reads: e5's, after its ``layers`` first layers."""
        from ownlight.guard.e5_layers import layer_reader

        return layer_reader(self.layers).passages(texts)

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """Probabilities, one per row of ``vectors`` (the stored chunk vectors)."""
        x = np.asarray(vectors, dtype=np.float32)
        # one BLAS thread: three networks side by side are a product OpenBLAS spreads over
        # both cores, whose spinning threads then slow the e5 pass beside it (``ownlight.blas``)
        with one_blas_thread():
            if self.hidden is not None:
                x = np.maximum(
                    x.reshape(-1, self.hidden.shape[0]) @ self.hidden + self.hidden_bias, 0.0)
            logits = x.reshape(-1, self.weights.size) @ self.weights
        return 1.0 / (1.0 + np.exp(-np.clip(logits + self.bias, -60.0, 60.0)))

    def chunk_scores(self, chunks: list[str], embed: Callable[[list[str]], np.ndarray]
                     ) -> list[float]:
        """Each chunk's score: its highest line, the lines of all chunks embedded at once,
        each distinct line once (headers, footers and licence lines repeat across chunks)."""
        units = [lines(c) for c in chunks]
        distinct = list(dict.fromkeys(u for chunk in units for u in chunk))
        if not distinct:
            return [0.0] * len(chunks)
        score_of = dict(zip(distinct, self.scores(embed(distinct)).tolist(), strict=True))
        return [max(score_of[u] for u in chunk) for chunk in units]

    def save(self, path: Path) -> None:
        arrays: dict[str, Any] = {
            "weights": self.weights.astype(np.float32), "bias": np.float32(self.bias),
            "threshold": np.float32(self.threshold), "layers": np.int32(self.layers)}
        if self.hidden is not None and self.hidden_bias is not None:
            arrays["hidden"] = self.hidden.astype(np.float32)
            arrays["hidden_bias"] = self.hidden_bias.astype(np.float32)
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: Path | None = None) -> ChunkHead:
        source = path or resources.files("ownlight") / "data" / "guard" / FILE
        with source.open("rb") as handle, np.load(handle) as data:
            layers = int(data["layers"]) if "layers" in data.files else 12
            hidden = (np.asarray(data["hidden"], dtype=np.float32),
                      np.asarray(data["hidden_bias"], dtype=np.float32)) \
                if "hidden" in data.files else (None, None)
            return cls(np.asarray(data["weights"], dtype=np.float32), float(data["bias"]),
                       float(data["threshold"]), layers, *hidden)


_shared: ChunkHead | None = None


def shared_head() -> ChunkHead:
    """The packaged head, loaded once."""
    global _shared
    if _shared is None:
        _shared = ChunkHead.load()
    return _shared
