"""Word vectors that carry meaning across the four languages, at n-gram speed.

Hashed n-grams learn the words of the languages they were trained on: an attack phrased
in Chinese words the dev rows never used scores as ordinary text. The multilingual e5 model
knows that "ignore", "忽略" and "игнорируй" mean one thing, but reading a text with it costs
about 0.8 ms per token, far over the user-input budget. So Ownlight reads e5 once per
*word*, ahead of time (model2vec's idea): each of wordfreq's most frequent words of English,
Russian, Chinese and Japanese was embedded alone by e5, the vectors reduced by PCA and kept
in ``data/guard/lexicon.npz``. A text's vector is the mean of its words' vectors, weighted
down for frequent words (SIF weighting: ``a / (a + p(word))``). Built by
``python -m ownlight.guard.lexicon_build``.

Words: Latin and Cyrillic runs are looked up whole (then with up to three letters of an
inflection cut); CJK runs are matched greedily, longest word first.

The table's first ``base`` rows are those words. After them come Russian words the base
lists lack (``lexicon_build.russian_extension``): wordfreq's top 20,000 Russian words miss
14% of the Russian words of the dev direct sets, among them the imperatives an instruction
is made of ("выполни", "переведи", "игнорируй"), which a network then never sees. A model
reads the rows it was trained with: ``extended`` lookups (a network trained since the
extension) reach the whole table and fold "ё" to "е"; the others stop at ``base``, so
models trained before read exactly what they were trained on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

_RUN = re.compile(r"[a-z\u00e0-\u024f\u0400-\u04ff]+|[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]+")
_CJK_LONGEST = 6
# The lexicon columns enter the models at this scale beside the n-grams (1 beat 3 in the dev
# cross-validation of ``ownlight guard train --untrusted``).
LEXICON_SCALE = 1.0
_STEMS = 3  # letters an inflected Cyrillic or Latin word may lose before it is found


@dataclass
class Lexicon:
    index: dict[str, int]
    vectors: np.ndarray  # (words, dims) float32, rows L2-normalised
    weights: np.ndarray  # (words,) SIF weight of each word
    base: int = -1  # rows of the base vocabulary (-1: all of them); the extension follows

    def __post_init__(self) -> None:
        if self.base < 0:
            self.base = len(self.index)

    @property
    def dims(self) -> int:
        return int(self.vectors.shape[1])

    def words(self, text: str, extended: bool = False) -> list[int]:
        """The lexicon rows of ``text``'s words, in order (unknown words skipped);
        ``extended``: the extension's rows too."""
        found: list[int] = []
        limit = len(self.index) if extended else self.base
        for run in _RUN.findall(text.lower()):
            if run[0] < "\u3040":
                row = self._word(run, limit)
                if row is None and extended and "ё" in run:
                    row = self._word(run.replace("ё", "е"), limit)
                if row is not None:
                    found.append(row)
                continue
            at = 0
            while at < len(run):
                for size in range(min(_CJK_LONGEST, len(run) - at), 0, -1):
                    row = self.index.get(run[at : at + size])
                    if row is not None:
                        found.append(row)
                        at += size
                        break
                else:
                    at += 1
        return found

    def listed(self, word: str) -> bool:
        """Whether ``word`` is a word of the base vocabulary, as written."""
        row = self.index.get(word)
        return row is not None and row < self.base

    def knows(self, word: str) -> bool:
        """Whether ``word`` (lower case, one Latin or Cyrillic run) or its stem is listed
        in the base vocabulary."""
        return self._word(word, self.base) is not None

    def _word(self, word: str, limit: int) -> int | None:
        row = self.index.get(word)
        if row is not None and row < limit:
            return row
        if len(word) < 5:
            return None
        for cut in range(1, _STEMS + 1):
            row = self.index.get(word[:-cut])
            if row is not None and row < limit:
                return row
        return None

    def vector(self, text: str) -> np.ndarray:
        """The SIF-weighted mean of the words' vectors, L2-normalised (zeros: no word known)."""
        rows = self.words(text)
        if not rows:
            return np.zeros(self.dims, dtype=np.float32)
        picked = np.asarray(rows)
        mean = self.weights[picked] @ self.vectors[picked]
        norm = float(np.linalg.norm(mean))
        return (mean / norm).astype(np.float32) if norm else mean.astype(np.float32)

    def save(self, path: Path) -> None:
        words = sorted(self.index, key=self.index.__getitem__)
        # the scale is the base rows': the extension is clipped to it, so that the base rows
        # read back exactly as before it was added
        scale = np.abs(self.vectors[: self.base]).max() / 127.0
        np.savez_compressed(path, words=np.array("\n".join(words)),
                            vectors=np.clip(np.round(self.vectors / scale), -127, 127)
                            .astype(np.int8),
                            scale=np.float32(scale), weights=self.weights.astype(np.float16),
                            base=np.int64(self.base))

    @classmethod
    def load(cls, path: Path) -> Lexicon:
        with np.load(path) as data:
            words = str(data["words"]).split("\n")
            vectors = data["vectors"].astype(np.float32) * float(data["scale"])
            weights = data["weights"].astype(np.float32)
            base = int(data["base"]) if "base" in data.files else len(words)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-6)
        return cls({w: i for i, w in enumerate(words)}, vectors, weights, base)


@lru_cache(maxsize=1)
def packaged() -> Lexicon:
    with resources.as_file(resources.files("ownlight") / "data" / "guard" / "lexicon.npz") as p:
        return Lexicon.load(Path(p))
